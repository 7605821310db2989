package containers

import (
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Info is where a process runs. Fields are empty when unknown; all of them
// are empty for host processes.
type Info struct {
	ContainerID string
	PodUID      string
	PodName     string
	Namespace   string
}

// Attrs returns the non-empty fields as semantic-convention attributes.
func (i Info) Attrs() []attribute.KeyValue {
	if i == (Info{}) {
		return nil
	}
	return i.AppendAttrs(make([]attribute.KeyValue, 0, 4))
}

// AppendAttrs appends the non-empty fields to dst, so a caller building an
// attribute list for every row need not allocate a second one.
func (i Info) AppendAttrs(dst []attribute.KeyValue) []attribute.KeyValue {
	if i.ContainerID != "" {
		dst = append(dst, semconv.ContainerID(i.ContainerID))
	}
	if i.PodUID != "" {
		dst = append(dst, semconv.K8SPodUID(i.PodUID))
	}
	if i.PodName != "" {
		dst = append(dst, semconv.K8SPodName(i.PodName))
	}
	if i.Namespace != "" {
		dst = append(dst, semconv.K8SNamespaceName(i.Namespace))
	}
	return dst
}

// Options configures a Resolver. Zero values take the defaults.
type Options struct {
	// ProcRoot is the host's /proc (default "/proc"; with hostPID the
	// container's own /proc is the host's).
	ProcRoot string
	// PodLogsRoot holds kubelet's <namespace>_<pod-name>_<pod-uid>
	// directories (default "/var/log/pods"). Set it to "-" to turn pod
	// names off; a missing directory just yields none.
	PodLogsRoot string
	// TTL is how long an answer for a pid is trusted without looking at
	// /proc again (default 30s).
	TTL time.Duration
	// MaxEntries bounds the cache (default 16384); the least recently
	// resolved pid is evicted first.
	MaxEntries int
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// relistInterval bounds how often a pod UID missing from the name map makes
// the pod log directory be listed again: often enough that a new pod gets
// its name within seconds, seldom enough that many unknown UIDs cost one
// listing.
const relistInterval = 10 * time.Second

// Resolver maps pids to Info with a cache. It is safe for concurrent use.
type Resolver struct {
	procRoot string
	podsRoot string
	ttl      time.Duration
	max      int
	now      func() time.Time

	mu      sync.RWMutex
	entries map[uint32]*entry
	// Doubly linked in the order entries were last resolved, for eviction.
	oldest, newest *entry

	hits, misses atomic.Int64

	pods     atomic.Pointer[map[string]pod]
	listMu   sync.Mutex // serialises listings and guards the fields below
	listed   bool
	listedAt time.Time
	listings int
}

type entry struct {
	pid        uint32
	start      uint64 // process start time; 0 when the process was gone
	info       Info
	expires    time.Time
	prev, next *entry
}

type pod struct{ name, namespace string }

// New returns a Resolver. It does no I/O until the first Lookup.
func New(opts Options) *Resolver {
	r := &Resolver{
		procRoot: opts.ProcRoot,
		podsRoot: opts.PodLogsRoot,
		ttl:      opts.TTL,
		max:      opts.MaxEntries,
		now:      opts.Now,
		entries:  make(map[uint32]*entry),
	}
	if r.procRoot == "" {
		r.procRoot = "/proc"
	}
	switch r.podsRoot {
	case "":
		r.podsRoot = "/var/log/pods"
	case "-":
		r.podsRoot = ""
	}
	if r.ttl <= 0 {
		r.ttl = 30 * time.Second
	}
	if r.max <= 0 {
		r.max = 16384
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.pods.Store(&map[string]pod{})
	return r
}

// Lookup returns where pid runs: Info{} for pid 0, host processes and pids
// never seen alive. A cached answer costs a map read under a shared lock; a
// miss reads /proc/<pid>/stat and, unless the process is known, its cgroup.
func (r *Resolver) Lookup(pid uint32) Info {
	if pid == 0 {
		return Info{}
	}
	now := r.now()
	var prev entry
	r.mu.RLock()
	e := r.entries[pid]
	if e != nil {
		if now.Before(e.expires) {
			info := e.info
			r.mu.RUnlock()
			r.hits.Add(1)
			return info
		}
		prev = *e
	}
	r.mu.RUnlock()
	r.misses.Add(1)

	var last *entry
	if e != nil {
		last = &prev
	}
	start, info := r.resolve(pid, now, last)
	r.store(pid, start, info, now)
	return info
}

// Stats reports cache hits and misses since New, and the entries held.
func (r *Resolver) Stats() (hits, misses, entries int) {
	r.mu.RLock()
	entries = len(r.entries)
	r.mu.RUnlock()
	return int(r.hits.Load()), int(r.misses.Load()), entries
}

// resolve reads /proc for pid; last is its expired entry, if any.
func (r *Resolver) resolve(pid uint32, now time.Time, last *entry) (uint64, Info) {
	dir := r.procRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	data, err := os.ReadFile(dir + "/stat")
	var start uint64
	if err == nil {
		start, err = parseStartTime(data)
	}
	if err != nil {
		// Gone: rows about a process keep arriving after it exits, and the
		// last answer for the pid is still theirs.
		if last != nil {
			return last.start, last.info
		}
		return 0, Info{}
	}
	same := last != nil && last.start == start
	if same && last.info.ContainerID != "" {
		// The same process: processes do not leave their container, so
		// only a pod name that was not yet listed can have changed.
		info := last.info
		if info.PodUID != "" && info.PodName == "" {
			info.PodName, info.Namespace = r.pod(info.PodUID, now)
		}
		return start, info
	}
	data, err = os.ReadFile(dir + "/cgroup")
	if err != nil {
		if same {
			return start, last.info
		}
		return start, Info{}
	}
	id, uid, _ := parseCgroup(data)
	info := Info{ContainerID: id, PodUID: uid}
	if uid != "" {
		info.PodName, info.Namespace = r.pod(uid, now)
	}
	return start, info
}

func (r *Resolver) store(pid uint32, start uint64, info Info, now time.Time) {
	ttl := r.ttl
	if info.PodUID != "" && info.PodName == "" && r.podsRoot != "" && ttl > relistInterval {
		// Ask again once a new listing may have the pod.
		ttl = relistInterval
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[pid]
	if e == nil {
		for len(r.entries) >= r.max && r.oldest != nil {
			old := r.oldest
			r.unlink(old)
			delete(r.entries, old.pid)
		}
		e = &entry{pid: pid}
		r.entries[pid] = e
	} else {
		r.unlink(e)
	}
	e.start, e.info, e.expires = start, info, now.Add(ttl)
	e.prev = r.newest
	if r.newest != nil {
		r.newest.next = e
	} else {
		r.oldest = e
	}
	r.newest = e
}

func (r *Resolver) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		r.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		r.newest = e.prev
	}
	e.prev, e.next = nil, nil
}

// pod returns the name and namespace of the pod with uid, listing the pod
// log directory again if the UID is unknown and the last listing is old.
func (r *Resolver) pod(uid string, now time.Time) (name, namespace string) {
	if r.podsRoot == "" {
		return "", ""
	}
	if p, ok := (*r.pods.Load())[uid]; ok {
		return p.name, p.namespace
	}
	if !r.relist(now) {
		return "", ""
	}
	p := (*r.pods.Load())[uid]
	return p.name, p.namespace
}

func (r *Resolver) relist(now time.Time) bool {
	r.listMu.Lock()
	defer r.listMu.Unlock()
	if r.listed && now.Sub(r.listedAt) < relistInterval {
		return false
	}
	r.listed, r.listedAt = true, now
	r.listings++
	f, err := os.Open(r.podsRoot)
	if err != nil {
		r.pods.Store(&map[string]pod{})
		return true
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil && len(names) == 0 {
		return true // keep the previous map over a failed read
	}
	m := make(map[string]pod, len(names))
	for _, n := range names {
		if ns, name, uid, ok := parsePodDir(n); ok {
			m[uid] = pod{name: name, namespace: ns}
		}
	}
	r.pods.Store(&m)
	return true
}
