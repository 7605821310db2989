//go:build linux

package socketcalls

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

// These tests drive the kernel-side stack logic (the same C functions the
// hooks call) with synthetic sequences through BPF_PROG_TEST_RUN of the
// never-attached test_step program: entries, returns, system calls and
// events of the calling thread, in any order a real kernel could produce.

const (
	opEnter    = 1
	opReturn   = 2
	opSysEnter = 3
	opSysExit  = 4
	opEvent    = 5

	sysConnect  = 42
	sysSendto   = 44
	sysRecvfrom = 45
)

type stackRig struct {
	t    *testing.T
	coll *ebpf.Collection
	prog *ebpf.Program
	rd   *ringbuf.Reader
}

func newRig(t *testing.T, opts Options) *stackRig {
	t.Helper()
	testenv.RequireRoot(t)
	// CO-RE needs the kernel's types; from a file where the kernel has none.
	k, err := hooks.LoadKernel(os.Getenv("SOCKEYE_TEST_BTF"))
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	spec, err := loadSocketcalls()
	if err != nil {
		t.Fatal(err)
	}
	for name := range spec.Programs {
		if name != "test_step" {
			delete(spec.Programs, name)
		}
	}
	if opts.PIDs == nil && !opts.All {
		opts.PIDs = []uint32{uint32(os.Getpid())}
	}
	if err := configure(spec, opts); err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: k.Types},
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("%+v", ve)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { coll.Close() })
	if err := fillSelection(coll, opts); err != nil {
		t.Fatal(err)
	}
	rd, err := ringbuf.NewReader(coll.Maps[socketcallsMapEvents])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return &stackRig{t: t, coll: coll, prog: coll.Programs["test_step"], rd: rd}
}

// step runs one synthetic event on the calling OS thread.
func (r *stackRig) step(op, kind, fn uint64, v int64) {
	r.t.Helper()
	ctx := []uint64{op, kind, fn, uint64(v)}
	if _, err := r.prog.Run(&ebpf.RunOptions{Context: ctx}); err != nil {
		r.t.Fatalf("test run: %v", err)
	}
}

func (r *stackRig) enter(fn uint64)              { r.step(opEnter, KindFunc, fn, 0) }
func (r *stackRig) ret(fn uint64, v int64)       { r.step(opReturn, KindFunc, fn, v) }
func (r *stackRig) sysEnter(nr uint64, fd int64) { r.step(opSysEnter, 0, nr, fd) }
func (r *stackRig) sysExit(nr uint64, v int64)   { r.step(opSysExit, 0, nr, v) }

// records reads everything the steps sent.
func (r *stackRig) records() []Record {
	r.t.Helper()
	var out []Record
	for {
		r.rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
		rec, err := r.rd.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				r.t.Fatal(err)
			}
			return out
		}
		d, err := Decode(rec.RawSample)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, *d)
	}
}

func (r *stackRig) stats() Stats {
	r.t.Helper()
	s, err := readStats(r.coll.Maps[socketcallsMapStats])
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (r *stackRig) threads() int {
	var k uint32
	var v socketcallsThreadState
	n := 0
	it := r.coll.Maps[socketcallsMapThreads].Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n
}

// shape is what a test expects of a record.
type shape struct {
	kind, fn, depth int
	parent          int // index in the records of the parent, -1 for a root
	incomplete      bool
	ret             int64
}

func (r *stackRig) expect(got []Record, want []shape) {
	r.t.Helper()
	if len(got) != len(want) {
		for _, g := range got {
			r.t.Logf("got kind=%d func=%d depth=%d id=%x parent=%x flags=%d ret=%d", g.Kind, g.Func, g.Depth, g.Id, g.ParentId, g.Flags, g.Ret)
		}
		r.t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if int(g.Kind) != w.kind || int(g.Func) != w.fn || int(g.Depth) != w.depth ||
			(g.Flags&FlagIncomplete != 0) != w.incomplete || (!w.incomplete && g.Ret != w.ret) {
			r.t.Errorf("record %d: kind=%d func=%d depth=%d incomplete=%v ret=%d, want %+v",
				i, g.Kind, g.Func, g.Depth, g.Flags&FlagIncomplete != 0, g.Ret, w)
		}
		wantParent := uint64(0)
		if w.parent >= 0 {
			wantParent = got[w.parent].Id
		}
		if g.ParentId != wantParent {
			r.t.Errorf("record %d: parent %x, want %x (record %d)", i, g.ParentId, wantParent, w.parent)
		}
		if g.EndNs < g.StartNs {
			r.t.Errorf("record %d ends before it starts", i)
		}
		if g.Pid != uint32(os.Getpid()) {
			r.t.Errorf("record %d: pid %d", i, g.Pid)
		}
	}
}

func locked(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

func TestStackNesting(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.sysEnter(sysSendto, 3)
	r.enter(10)
	r.enter(11)
	r.ret(11, 0)
	r.enter(12)
	r.ret(12, 5)
	r.ret(10, 5)
	r.sysExit(sysSendto, 5)
	got := r.records()
	r.expect(got, []shape{
		{KindFunc, 11, 2, 2, false, 0},
		{KindFunc, 12, 2, 2, false, 5},
		{KindFunc, 10, 1, 3, false, 5},
		{KindSyscall, sysSendto, 0, -1, false, 5},
	})
	if got[3].Fd != 3 || got[3].Flags&FlagFD == 0 {
		t.Errorf("root fd %d flags %d, want fd 3", got[3].Fd, got[3].Flags)
	}
	for _, g := range got {
		if g.RootId != got[3].Id {
			t.Errorf("record func=%d root %x, want %x", g.Func, g.RootId, got[3].Id)
		}
	}
	if n := r.threads(); n != 0 {
		t.Errorf("%d thread states left after the root returned", n)
	}
}

// A return whose entry was never seen (the probe attached mid-call) is
// ignored and counted; it must not close the frame below it.
func TestStackReturnWithoutEntry(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.ret(10, 0)                // no state at all
	r.sysExit(sysRecvfrom, -11) // the system call began before attach
	r.sysEnter(sysSendto, 4)
	r.enter(10)
	r.ret(99, 0) // never entered
	r.ret(10, 1)
	r.sysExit(sysSendto, 1)
	r.expect(r.records(), []shape{
		{KindFunc, 10, 1, 1, false, 1},
		{KindSyscall, sysSendto, 0, -1, false, 1},
	})
	if s := r.stats(); s.UnmatchedReturn != 1 {
		t.Errorf("unmatched returns %d, want 1 (the one inside a traced call)", s.UnmatchedReturn)
	}
}

// An entry whose return is lost (a kretprobe that missed, an fexit skipped
// for recursion protection) is closed as incomplete when an outer frame
// returns, and the outer frame still nests right.
func TestStackEntryWithoutReturn(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.sysEnter(sysConnect, 3)
	r.enter(10)
	r.enter(11)
	r.enter(12)
	r.ret(10, 0) // 11 and 12 never return
	r.sysExit(sysConnect, -111)
	r.expect(r.records(), []shape{
		{KindFunc, 12, 3, 1, true, 0},
		{KindFunc, 11, 2, 2, true, 0},
		{KindFunc, 10, 1, 3, false, 0},
		{KindSyscall, sysConnect, 0, -1, false, -111},
	})
	got := r.stats()
	if got.Incomplete != 2 {
		t.Errorf("incomplete %d, want 2", got.Incomplete)
	}
}

// A system call whose exit was missed leaves its frames open; the next
// system call of the thread closes them (incomplete) and starts fresh.
func TestStackMissedSysExit(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.sysEnter(sysRecvfrom, 3)
	r.enter(10)
	r.sysEnter(sysSendto, 3)
	r.enter(20)
	r.ret(20, 0)
	r.sysExit(sysSendto, 2)
	r.expect(r.records(), []shape{
		{KindFunc, 10, 1, 1, true, 0},
		{KindSyscall, sysRecvfrom, 0, -1, true, 0},
		{KindFunc, 20, 1, 3, false, 0},
		{KindSyscall, sysSendto, 0, -1, false, 2},
	})
}

// Recursion: a function entered again before it returns nests inside
// itself, and each return closes the innermost open call.
func TestStackRecursion(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.sysEnter(sysSendto, 3)
	r.enter(10)
	r.enter(10)
	r.enter(10)
	r.ret(10, 3)
	r.ret(10, 2)
	r.ret(10, 1)
	r.sysExit(sysSendto, 0)
	r.expect(r.records(), []shape{
		{KindFunc, 10, 3, 1, false, 3},
		{KindFunc, 10, 2, 2, false, 2},
		{KindFunc, 10, 1, 3, false, 1},
		{KindSyscall, sysSendto, 0, -1, false, 0},
	})
}

// A signal during a blocking call: the call returns -ERESTARTSYS, the
// handler's own socket calls are roots of their own, and the restarted call
// is a new root; nothing nests across them.
func TestStackSignal(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.sysEnter(sysRecvfrom, 3)
	r.enter(10)
	r.ret(10, -512)
	r.sysExit(sysRecvfrom, -512)
	r.sysEnter(sysSendto, 5) // in the handler
	r.sysExit(sysSendto, 1)
	r.sysEnter(sysRecvfrom, 3) // restarted
	r.sysExit(sysRecvfrom, 7)
	r.expect(r.records(), []shape{
		{KindFunc, 10, 1, 1, false, -512},
		{KindSyscall, sysRecvfrom, 0, -1, false, -512},
		{KindSyscall, sysSendto, 0, -1, false, 1},
		{KindSyscall, sysRecvfrom, 0, -1, false, 7},
	})
}

// Calls deeper than max_depth are not recorded, their returns are absorbed,
// and the frames below them close normally.
func TestStackDepthCap(t *testing.T) {
	locked(t)
	r := newRig(t, Options{MaxDepth: 3})
	r.sysEnter(sysSendto, 3)
	for fn := uint64(10); fn < 16; fn++ {
		r.enter(fn)
	}
	for fn := uint64(15); fn >= 10; fn-- {
		r.ret(fn, int64(fn))
	}
	r.sysExit(sysSendto, 0)
	r.expect(r.records(), []shape{
		{KindFunc, 11, 2, 1, false, 11},
		{KindFunc, 10, 1, 2, false, 10},
		{KindSyscall, sysSendto, 0, -1, false, 0},
	})
	if s := r.stats(); s.Depth != 4 || s.UnmatchedReturn != 0 {
		t.Errorf("depth drops %d (want 4), unmatched %d (want 0)", s.Depth, s.UnmatchedReturn)
	}
}

// Events attach to the innermost open call.
func TestStackEvents(t *testing.T) {
	locked(t)
	r := newRig(t, Options{})
	r.step(opEvent, 0, 1, 5) // outside any call: dropped
	r.sysEnter(sysSendto, 3)
	r.enter(10)
	r.step(opEvent, 0, 1, 5)
	r.ret(10, 0)
	r.step(opEvent, 0, 2, 6)
	r.sysExit(sysSendto, 5)
	got := r.records()
	r.expect(got, []shape{
		{KindEvent, 1, 2, 1, false, 5},
		{KindFunc, 10, 1, 3, false, 0},
		{KindEvent, 2, 1, 3, false, 6},
		{KindSyscall, sysSendto, 0, -1, false, 5},
	})
}

// Function roots outside any system call expire when stale, so a lost
// return cannot make later calls nest under it forever.
func TestStackStaleFunctionRoot(t *testing.T) {
	locked(t)
	r := newRig(t, Options{RootsOutsideSyscalls: true, StaleAfter: 50 * time.Millisecond})
	r.enter(10) // sock_poll from epoll, say; its return is lost
	time.Sleep(100 * time.Millisecond)
	r.enter(11)
	r.ret(11, 0)
	r.expect(r.records(), []shape{
		{KindFunc, 10, 0, -1, true, 0},
		{KindFunc, 11, 0, -1, false, 0},
	})
}

// Threads that are not selected leave no state and send nothing.
func TestStackUnselected(t *testing.T) {
	locked(t)
	r := newRig(t, Options{PIDs: []uint32{1}})
	r.sysEnter(sysSendto, 3)
	r.enter(10)
	r.ret(10, 0)
	r.sysExit(sysSendto, 0)
	if got := r.records(); len(got) != 0 {
		t.Errorf("%d records from an unselected thread", len(got))
	}
	if n := r.threads(); n != 0 {
		t.Errorf("%d thread states for an unselected thread", n)
	}
}

// Head sampling and the rate limit drop whole trees, counted.
func TestStackVolumeControl(t *testing.T) {
	locked(t)
	r := newRig(t, Options{RateLimit: 3})
	for range 10 {
		r.sysEnter(sysSendto, 3)
		r.enter(10)
		r.ret(10, 0)
		r.sysExit(sysSendto, 0)
	}
	got := r.records()
	s := r.stats()
	// The window may turn over once during the loop.
	if len(got) < 6 || len(got) > 12 || len(got)%2 != 0 || s.RateLimited+s.Roots != 10 || s.Roots*2 != uint64(len(got)) {
		t.Errorf("rate limit 3/s: %d records, stats %+v", len(got), s)
	}

	r = newRig(t, Options{SampleRatio: 0.000001})
	for range 20 {
		r.sysEnter(sysSendto, 3)
		r.sysExit(sysSendto, 0)
	}
	if s := r.stats(); s.SampledOut < 19 {
		t.Errorf("sampling 1e-6: %+v", s)
	}
}

// The thread map is bounded: more threads mid-call than it holds evict the
// oldest, whose return is then counted as unmatched.
func TestStackThreadsBounded(t *testing.T) {
	r := newRig(t, Options{MaxThreads: 2})
	const n = 6
	var entered, exit sync.WaitGroup
	entered.Add(n)
	exit.Add(1)
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			r.sysEnter(sysRecvfrom, 3)
			entered.Done()
			exit.Wait()
			r.sysExit(sysRecvfrom, 1)
		}()
	}
	entered.Wait()
	if got := r.threads(); got > 2 {
		t.Errorf("%d thread states in a map of 2", got)
	}
	exit.Done()
	done.Wait()
	roots := len(r.records())
	if roots < 1 || roots > 2 {
		t.Errorf("%d roots, want 1 or 2 (the threads the map kept)", roots)
	}
	if n := r.threads(); n != 0 {
		t.Errorf("%d thread states left", n)
	}
}
