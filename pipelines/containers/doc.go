// Package containers resolves a host pid to the container and Kubernetes pod
// it runs in, for the container.id, k8s.pod.uid, k8s.pod.name and
// k8s.namespace.name attributes of process-level signals.
//
// Sources of truth, all local to the node:
//
//   - /proc/<pid>/cgroup names the process's cgroup. Every common runtime
//     names a container's cgroup after its 64-hex id (docker-<id>.scope,
//     /docker/<id>, cri-containerd-<id>.scope, crio-<id>.scope,
//     libpod-<id>.scope, /kubepods/.../pod<uid>/<id>, ...), and kubelet names
//     the pod's parent cgroup after the pod UID. The path is read from its
//     end, so the /../ prefix seen from a private cgroup namespace does not
//     matter.
//   - /proc/<pid>/stat gives the process start time, which tells a reused
//     pid from the process the cache entry was made for.
//   - kubelet names each pod's log directory <namespace>_<pod-name>_<pod-uid>
//     under /var/log/pods, and neither a namespace nor a pod name may
//     contain "_", so listing that directory maps a pod UID to its name and
//     namespace. This needs no API-server access, hence no ServiceAccount
//     token and no RBAC, and its load does not grow with the cluster.
//
// A DaemonSet needs hostPID: true (so pids are host pids and /proc shows the
// host's processes) and a read-only hostPath mount of /var/log/pods at the
// same path (or Options.PodLogsRoot pointing at it).
//
// Limits: a pod whose logs live elsewhere (a kubelet with another
// --root-dir or log directory) gets container.id and k8s.pod.uid but no
// name or namespace; containers of runtimes outside Kubernetes (Docker,
// Podman, CI runners, BuildKit) get container.id only. A process that exited
// before its first lookup gets nothing, since its /proc entry is gone.
// Within TTL a cached answer is trusted without looking at /proc, so a pid
// reused within that time (which takes the pid space wrapping) keeps the old
// answer until the entry expires.
package containers
