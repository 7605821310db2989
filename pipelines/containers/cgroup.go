package containers

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

var (
	errNoCgroupLine = errors.New("no hierarchy-ID:controllers:path line")
	errBadStat      = errors.New("malformed stat")
)

// parseCgroup returns the container id and pod UID named by the contents of
// /proc/<pid>/cgroup. It takes the first line that names a container: v1 and
// hybrid hosts list one line per hierarchy, and some of them (the 0:: line
// of a hybrid host, controllers a runtime does not manage) may show a host
// path. An error means the contents are not a cgroup file at all.
func parseCgroup(data []byte) (id, podUID string, err error) {
	found := false
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		// hierarchy-ID:controllers:path; the path itself may hold ':' (the
		// containerd systemd-driver shape), so split at the first two only.
		_, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		_, path, ok := bytes.Cut(rest, []byte{':'})
		if !ok {
			continue
		}
		found = true
		// cgroup v2 marks a removed cgroup this way; a zombie can still be in one.
		path = bytes.TrimSuffix(path, []byte(" (deleted)"))
		if id, podUID = parsePath(string(path)); id != "" {
			return id, podUID, nil
		}
	}
	if !found {
		return "", "", errNoCgroupLine
	}
	return "", "", nil
}

// parsePath finds the container id in the last path element that holds one
// (the innermost container, when runtimes nest, as in kind) and the pod UID
// in the nearest element above it. Elements are split at ':' too, for
// .../kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>.
func parsePath(path string) (id, podUID string) {
	elems := strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == ':' })
	for i := len(elems) - 1; i >= 0; i-- {
		if id = containerIDOf(elems[i]); id == "" {
			continue
		}
		for j := i - 1; j >= 0 && containerIDOf(elems[j]) == ""; j-- {
			if podUID = podUIDOf(elems[j]); podUID != "" {
				break
			}
		}
		return id, podUID
	}
	return "", ""
}

// containerIDOf returns the 64-hex id an element names: bare (cgroupfs
// drivers, /actions_job/<id>, buildkit/<id>) or as <runtime>-<id>[.scope]
// (systemd drivers). <...>conmon-<id> is the runtime's monitor process,
// which is outside the container.
func containerIDOf(e string) string {
	e = strings.TrimSuffix(e, ".scope")
	if len(e) < 64 {
		return ""
	}
	id := e[len(e)-64:]
	if !isHex(id) {
		return ""
	}
	if prefix := e[:len(e)-64]; prefix != "" {
		if !strings.HasSuffix(prefix, "-") || strings.HasSuffix(prefix, "conmon-") {
			return ""
		}
	}
	return strings.Clone(id) // not a view of the whole file
}

// podUIDOf returns the UID in pod<uid> (cgroupfs) or
// kubepods[-<qos>]-pod<uid>.slice (systemd, which writes the UID's dashes as
// underscores). Static pods have a 32-hex UID instead of a UUID.
func podUIDOf(e string) string {
	e = strings.TrimSuffix(e, ".slice")
	for _, n := range [...]int{36, 32} {
		if len(e) < n+3 {
			continue
		}
		head, uid := e[:len(e)-n], e[len(e)-n:]
		if !strings.HasSuffix(head, "pod") || (len(head) > 3 && head[len(head)-4] != '-') {
			continue
		}
		uid = strings.ReplaceAll(uid, "_", "-")
		if validUID(uid) {
			return uid
		}
	}
	return ""
}

// validUID accepts a lowercase UUID or a static pod's 32-hex UID.
func validUID(s string) bool {
	switch len(s) {
	case 32:
		return isHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHexDigit(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// parseStartTime returns field 22 of /proc/<pid>/stat, the start time in
// clock ticks since boot. Fields are counted from the last ')': the comm
// field (2) may hold spaces and parentheses.
func parseStartTime(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errBadStat
	}
	rest := data[i+1:]
	for field := 3; ; field++ {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return 0, errBadStat
		}
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		if field == 22 {
			return strconv.ParseUint(string(rest[:end]), 10, 64)
		}
		rest = rest[end:]
	}
}

// parsePodDir splits a kubelet pod log directory name,
// <namespace>_<pod-name>_<pod-uid>.
func parsePodDir(name string) (namespace, pod, uid string, ok bool) {
	namespace, rest, ok := strings.Cut(name, "_")
	if !ok || namespace == "" {
		return "", "", "", false
	}
	pod, uid, ok = strings.Cut(rest, "_")
	if !ok || pod == "" || !validUID(uid) {
		return "", "", "", false
	}
	return namespace, pod, uid, true
}
