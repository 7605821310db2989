package containers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// statLine is a /proc/<pid>/stat line as a sleeping process has it, with
// start as field 22.
func statLine(pid int, comm string, start uint64) string {
	return fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194560 1510 0 0 0 3 2 0 0 20 0 1 0 %d "+
		"11214848 1862 18446744073709551615 94251 94259 140730 0 0 0 0 4096 1260 1 0 0 17 1 0 0 0 0 0 94261 94262 94263 140731 140732 140733 140734 0\n",
		pid, comm, pid, pid, start)
}

// fakeProc is a /proc with only the stat and cgroup files of each pid.
type fakeProc struct {
	t    testing.TB
	root string
}

func newFakeProc(t testing.TB) fakeProc { return fakeProc{t, t.TempDir()} }

func (p fakeProc) set(pid uint32, start uint64, cgroup string) {
	p.t.Helper()
	dir := filepath.Join(p.root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(int(pid), "app server", start)), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p fakeProc) remove(pid uint32) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.root, strconv.Itoa(int(pid)))); err != nil {
		p.t.Fatal(err)
	}
}

// podLogs makes kubelet pod log directories, <namespace>_<pod>_<uid>.
func podLogs(t testing.TB, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	idA = "7b4e8c6a22a2f4bfbc8e1e06b5fe768703b5210382b997396839ed4326efb4c8"
	idB = "a7d742d26e3fdcff842f7b86033e3c6d8e770a1a5c875acdb504b8a728dd34b0"
)

func dockerCgroup(id string) string { return "0::/system.slice/docker-" + id + ".scope\n" }

func kubeCgroup(uid, id string) string {
	return "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
		underscored(uid) + ".slice/cri-containerd-" + id + ".scope\n"
}

func underscored(uid string) string {
	b := []byte(uid)
	for i := range b {
		if b[i] == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func TestLookupShapes(t *testing.T) {
	proc := newFakeProc(t)
	pods := t.TempDir()
	podLogs(t, pods,
		"shop_cart-7d9f8b6c5-x2x9q_1135940c-12e4-4fac-a88d-9dd46733c8db",
		"default_batch-28511230-k8v2m_dc201b12-f31c-4ca8-9334-c729fb946674",
		"monitoring_node-exporter-6wz4l_c9869f41-f244-4092-8913-b3ef877d9a8a",
		"kube-system_coredns-5d78c9869d-8xq2k_86f682fd-1a92-4881-b5c4-9ccd9fcd4e5a",
		"ci_runner-0_b28fd614-6e65-4e48-a192-952ff24133f6",
		"kube-system_kube-apiserver-node-1_b06bbcf497d2f69950f45333e6f32c5f",
		// kind's pod (74b588e6-...) has its logs inside the node container.
	)
	if err := os.WriteFile(filepath.Join(pods, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	names := map[string][2]string{
		"1135940c-12e4-4fac-a88d-9dd46733c8db": {"cart-7d9f8b6c5-x2x9q", "shop"},
		"dc201b12-f31c-4ca8-9334-c729fb946674": {"batch-28511230-k8v2m", "default"},
		"c9869f41-f244-4092-8913-b3ef877d9a8a": {"node-exporter-6wz4l", "monitoring"},
		"86f682fd-1a92-4881-b5c4-9ccd9fcd4e5a": {"coredns-5d78c9869d-8xq2k", "kube-system"},
		"b28fd614-6e65-4e48-a192-952ff24133f6": {"runner-0", "ci"},
		"b06bbcf497d2f69950f45333e6f32c5f":     {"kube-apiserver-node-1", "kube-system"},
	}
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: pods, Now: newClock().Now})
	for i, c := range cgroupCases {
		pid := uint32(1000 + i)
		data, err := os.ReadFile(filepath.Join("testdata", "cgroup", c.file))
		if err != nil {
			t.Fatal(err)
		}
		proc.set(pid, uint64(500+i), string(data))
		want := Info{ContainerID: c.id, PodUID: c.podUID}
		want.PodName, want.Namespace = names[c.podUID][0], names[c.podUID][1]
		if got := r.Lookup(pid); got != want {
			t.Errorf("%s: Lookup = %+v, want %+v", c.file, got, want)
		}
	}
	if got := r.Lookup(0); got != (Info{}) {
		t.Errorf("Lookup(0) = %+v, want Info{}", got)
	}
	if got := r.Lookup(999); got != (Info{}) {
		t.Errorf("Lookup of a pid not in /proc = %+v, want Info{}", got)
	}
	// Every UID above was in the first listing, and the kind one may not
	// list again for 10 s.
	if r.listings != 1 {
		t.Errorf("pod log directory listed %d times, want 1", r.listings)
	}
}

func TestPodNamesRelist(t *testing.T) {
	const (
		uidOld = "1135940c-12e4-4fac-a88d-9dd46733c8db"
		uidNew = "dc201b12-f31c-4ca8-9334-c729fb946674"
	)
	proc := newFakeProc(t)
	pods := t.TempDir()
	podLogs(t, pods, "shop_cart-0_"+uidOld)
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: pods, Now: clk.Now})

	proc.set(10, 1, kubeCgroup(uidOld, idA))
	if got := r.Lookup(10); got.PodName != "cart-0" || got.Namespace != "shop" {
		t.Fatalf("Lookup(10) = %+v", got)
	}
	// A pod started after the listing: its log directory appears just after
	// the first lookup of one of its processes.
	proc.set(11, 1, kubeCgroup(uidNew, idB))
	clk.Add(time.Second)
	if got := r.Lookup(11); got.PodUID != uidNew || got.PodName != "" {
		t.Fatalf("Lookup(11) = %+v, want the UID only (listing is 1 s old)", got)
	}
	podLogs(t, pods, "shop_cart-1_"+uidNew)
	// A storm of unknown pods within the interval costs no listing.
	for pid := uint32(100); pid < 200; pid++ {
		proc.set(pid, 1, kubeCgroup(fmt.Sprintf("00000000-0000-0000-0000-%012d", pid), idA))
		r.Lookup(pid)
	}
	if r.listings != 1 {
		t.Fatalf("listed %d times within 10 s, want 1", r.listings)
	}
	clk.Add(5 * time.Second)
	if got := r.Lookup(11); got.PodName != "" {
		t.Fatalf("Lookup(11) at 6 s = %+v, want a cache hit without the name", got)
	}
	// An entry without its pod name expires with the listing interval, not
	// the TTL, so the name shows up once a listing may have it.
	clk.Add(5 * time.Second)
	if got := r.Lookup(11); got.PodName != "cart-1" || got.Namespace != "shop" {
		t.Fatalf("Lookup(11) at 11 s = %+v, want cart-1 in shop", got)
	}
	if r.listings != 2 {
		t.Errorf("listed %d times, want 2", r.listings)
	}
}

func TestPodNamesOff(t *testing.T) {
	proc := newFakeProc(t)
	pods := t.TempDir()
	podLogs(t, pods, "shop_cart-0_1135940c-12e4-4fac-a88d-9dd46733c8db")
	proc.set(10, 1, kubeCgroup("1135940c-12e4-4fac-a88d-9dd46733c8db", idA))
	want := Info{ContainerID: idA, PodUID: "1135940c-12e4-4fac-a88d-9dd46733c8db"}
	for _, root := range []string{"-", filepath.Join(pods, "missing")} {
		r := New(Options{ProcRoot: proc.root, PodLogsRoot: root})
		if got := r.Lookup(10); got != want {
			t.Errorf("PodLogsRoot %q: Lookup = %+v, want %+v", root, got, want)
		}
	}
}

func TestTTL(t *testing.T) {
	proc := newFakeProc(t)
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-", TTL: 30 * time.Second, Now: clk.Now})
	proc.set(42, 100, dockerCgroup(idA))
	if got := r.Lookup(42); got.ContainerID != idA {
		t.Fatalf("Lookup = %+v", got)
	}
	// Another process now has pid 42; within the TTL the answer is trusted
	// without looking.
	proc.set(42, 200, dockerCgroup(idB))
	clk.Add(29 * time.Second)
	if got := r.Lookup(42); got.ContainerID != idA {
		t.Fatalf("Lookup within TTL = %+v, want the cached %s", got, idA)
	}
	clk.Add(time.Second)
	if got := r.Lookup(42); got.ContainerID != idB {
		t.Fatalf("Lookup after TTL = %+v, want %s", got, idB)
	}
	if hits, misses, entries := r.Stats(); hits != 1 || misses != 2 || entries != 1 {
		t.Errorf("Stats = %d hits, %d misses, %d entries; want 1, 2, 1", hits, misses, entries)
	}
}

func TestPIDReuse(t *testing.T) {
	proc := newFakeProc(t)
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-", TTL: time.Second, Now: clk.Now})
	proc.set(42, 100, dockerCgroup(idA))
	r.Lookup(42)

	// Same start time: the same process, whose container does not change,
	// so the cgroup is not read again.
	proc.set(42, 100, dockerCgroup(idB))
	clk.Add(time.Second)
	if got := r.Lookup(42); got.ContainerID != idA {
		t.Fatalf("same process: Lookup = %+v, want %s", got, idA)
	}

	// New start time: a new process with the pid, in another container.
	proc.set(42, 300, dockerCgroup(idB))
	clk.Add(time.Second)
	if got := r.Lookup(42); got.ContainerID != idB {
		t.Fatalf("reused pid: Lookup = %+v, want %s", got, idB)
	}

	// Reused by a host process: nothing of the old answer stays.
	proc.set(42, 400, "0::/user.slice/user-1000.slice/session-3.scope\n")
	clk.Add(time.Second)
	if got := r.Lookup(42); got != (Info{}) {
		t.Fatalf("reused by a host process: Lookup = %+v, want Info{}", got)
	}

	// A host process that joins a container is seen at the next refresh.
	proc.set(42, 400, dockerCgroup(idA))
	clk.Add(time.Second)
	if got := r.Lookup(42); got.ContainerID != idA {
		t.Fatalf("host process moved into a container: Lookup = %+v, want %s", got, idA)
	}
}

func TestExitedProcess(t *testing.T) {
	proc := newFakeProc(t)
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-", TTL: time.Second, Now: clk.Now})
	proc.set(42, 100, dockerCgroup(idA))
	r.Lookup(42)
	proc.remove(42)
	for i := 0; i < 3; i++ {
		clk.Add(time.Second)
		if got := r.Lookup(42); got.ContainerID != idA {
			t.Fatalf("exited process: Lookup = %+v, want the last answer %s", got, idA)
		}
	}

	// Never seen alive: nothing, and that answer is cached too, so rows
	// about a short-lived process do not each try /proc.
	if got := r.Lookup(43); got != (Info{}) {
		t.Fatalf("Lookup(43) = %+v", got)
	}
	h0, m0, _ := r.Stats()
	r.Lookup(43)
	if h, m, _ := r.Stats(); h != h0+1 || m != m0 {
		t.Errorf("second Lookup of an exited pid: hits %d->%d, misses %d->%d; want a hit", h0, h, m0, m)
	}
	// The pid comes back as a new process.
	proc.set(43, 500, dockerCgroup(idB))
	clk.Add(time.Second)
	if got := r.Lookup(43); got.ContainerID != idB {
		t.Errorf("pid reused after a negative answer: Lookup = %+v, want %s", got, idB)
	}
}

func TestEviction(t *testing.T) {
	proc := newFakeProc(t)
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-", MaxEntries: 3, TTL: time.Minute, Now: clk.Now})
	for pid := uint32(1); pid <= 4; pid++ {
		proc.set(pid, 1, dockerCgroup(idA))
	}
	r.Lookup(1)
	r.Lookup(2)
	r.Lookup(3)
	// 1 is refreshed after its TTL, which makes 2 the oldest.
	clk.Add(time.Minute)
	r.Lookup(1)
	r.Lookup(4)
	if _, _, n := r.Stats(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if _, ok := r.entries[2]; ok {
		t.Errorf("pid 2, the oldest, was not evicted")
	}
	for _, pid := range []uint32{1, 3, 4} {
		if _, ok := r.entries[pid]; !ok {
			t.Errorf("pid %d was evicted", pid)
		}
	}
	// The order list and the map agree.
	n := 0
	for e := r.oldest; e != nil; e = e.next {
		if r.entries[e.pid] != e {
			t.Errorf("list entry for pid %d is not the map's", e.pid)
		}
		n++
	}
	if n != len(r.entries) {
		t.Errorf("list has %d entries, map %d", n, len(r.entries))
	}
}

func TestConcurrentLookups(t *testing.T) {
	const pids = 64
	proc := newFakeProc(t)
	pods := t.TempDir()
	clk := newClock()
	uid := func(pid uint32) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", pid) }
	id := func(pid uint32) string { return fmt.Sprintf("%064x", pid) }
	for pid := uint32(1); pid <= pids; pid++ {
		proc.set(pid, uint64(pid), kubeCgroup(uid(pid), id(pid)))
		if pid%2 == 0 {
			podLogs(t, pods, fmt.Sprintf("ns_pod-%d_%s", pid, uid(pid)))
		}
	}
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: pods, MaxEntries: pids / 2, TTL: time.Second, Now: clk.Now})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				pid := uint32((i*7+g*13)%pids + 1)
				got := r.Lookup(pid)
				if got.ContainerID != id(pid) || got.PodUID != uid(pid) {
					t.Errorf("Lookup(%d) = %+v", pid, got)
					return
				}
				if got.PodName != "" && got.PodName != fmt.Sprintf("pod-%d", pid) {
					t.Errorf("Lookup(%d) = %+v", pid, got)
					return
				}
				if i%100 == 0 {
					clk.Add(300 * time.Millisecond)
				}
				if i%500 == 0 {
					r.Stats()
				}
			}
		}()
	}
	wg.Wait()
	if _, _, n := r.Stats(); n > pids/2 {
		t.Errorf("%d entries, bound is %d", n, pids/2)
	}
}

func TestLookupHitAllocs(t *testing.T) {
	proc := newFakeProc(t)
	proc.set(42, 1, kubeCgroup("1135940c-12e4-4fac-a88d-9dd46733c8db", idA))
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-"})
	r.Lookup(42)
	var attrs [4]attribute.KeyValue
	if n := testing.AllocsPerRun(1000, func() {
		_ = r.Lookup(42).AppendAttrs(attrs[:0])
	}); n != 0 {
		t.Errorf("cache hit allocates %v times", n)
	}
}

func TestAttrs(t *testing.T) {
	if a := (Info{}).Attrs(); a != nil {
		t.Errorf("Info{}.Attrs() = %v, want nil", a)
	}
	got := Info{ContainerID: idA, PodName: "cart-0", Namespace: "shop"}.Attrs()
	want := []attribute.KeyValue{
		attribute.String("container.id", idA),
		attribute.String("k8s.pod.name", "cart-0"),
		attribute.String("k8s.namespace.name", "shop"),
	}
	if len(got) != len(want) {
		t.Fatalf("Attrs() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Attrs()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	all := Info{ContainerID: idA, PodUID: "u", PodName: "p", Namespace: "n"}.AppendAttrs(nil)
	if len(all) != 4 || all[1].Key != "k8s.pod.uid" {
		t.Errorf("AppendAttrs = %v", all)
	}
}

func BenchmarkLookupHit(b *testing.B) {
	proc := newFakeProc(b)
	proc.set(42, 1, kubeCgroup("1135940c-12e4-4fac-a88d-9dd46733c8db", idA))
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-"})
	r.Lookup(42)
	b.ReportAllocs()
	for b.Loop() {
		r.Lookup(42)
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	proc := newFakeProc(b)
	proc.set(42, 1, kubeCgroup("1135940c-12e4-4fac-a88d-9dd46733c8db", idA))
	clk := newClock()
	r := New(Options{ProcRoot: proc.root, PodLogsRoot: "-", TTL: time.Nanosecond, Now: clk.Now})
	b.ReportAllocs()
	for b.Loop() {
		// A new start time each time, so both files are read.
		r.mu.Lock()
		if e := r.entries[42]; e != nil {
			e.start = 0
		}
		r.mu.Unlock()
		clk.Add(time.Second)
		r.Lookup(42)
	}
}
