//go:build linux

package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testnet"
	"github.com/sockeye/sockeye/pipelines"
)

// The child sends this many datagrams of this size on each path.
const (
	childComm = "sockeye-udp-tx"
	nPackets  = 40
	payload   = 200
	// A UDP/IPv4 datagram on an Ethernet-framed device (lo and veth both are).
	frameBytes = payload + 8 + 20 + 14
)

// TestMain lets the test binary double as the traffic generator: a child
// process with a known command name, so its counts can be told apart.
func TestMain(m *testing.M) {
	if role := os.Getenv(ownersRoleEnv); role != "" {
		if err := ownersChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("SOCKEYE_TRAFFIC_CHILD") == "1" {
		if err := child(os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child sends nPackets datagrams to itself over lo, reading each back, and
// nPackets to target (host:port) across the veth pair. All from one thread
// whose name is childComm: comm is per thread.
func child(target string) error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafePtr(childComm)), 0, 0, 0); err != nil {
		return err
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer rx.Close()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer tx.Close()
	buf := make([]byte, payload)
	for i := 0; i < nPackets; i++ {
		if _, err := tx.Write(buf); err != nil {
			return err
		}
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rx.Read(buf); err != nil {
			return err
		}
	}
	if target == "-" {
		return nil
	}
	ua, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return err
	}
	out, err := net.DialUDP("udp4", nil, ua)
	if err != nil {
		return err
	}
	defer out.Close()
	for i := 0; i < nPackets; i++ {
		if _, err := out.Write(buf); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func kernel(t *testing.T) *hooks.Kernel {
	return testenv.Kernel(t)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// unsupported tells a rung the kernel refuses from a rung that broke.
func unsupported(err error) bool {
	var ce *hooks.ClimbError
	if !errors.As(err, &ce) {
		return false
	}
	for _, a := range ce.Attempts {
		if errors.Is(a.Err, hooks.ErrMissing) || errors.Is(a.Err, unix.EPERM) || errors.Is(a.Err, unix.ENOTSUP) ||
			errors.Is(a.Err, os.ErrNotExist) || errors.Is(a.Err, errors.ErrUnsupported) {
			continue
		}
		msg := a.Err.Error()
		if strings.Contains(msg, "CONFIG_KPROBES") || strings.Contains(msg, "needs the kernel's own BTF") || strings.Contains(msg, "tracefs") {
			continue
		}
		return false
	}
	return true
}

// TestTrafficRungs runs the same traffic through every rung this kernel
// allows and checks the counts of the child's pid, command and devices.
func TestTrafficRungs(t *testing.T) {
	k := kernel(t)
	kinds := map[string]bool{}
	for _, kd := range hooks.ProbeKinds(k) {
		kinds[kd.Name] = kd.OK
	}
	for _, rung := range bpftraffic.Rungs {
		t.Run(rung, func(t *testing.T) {
			src := New("traffic", config.TrafficSource{Attribution: "socket", Hook: rung, MaxEntries: 4096}, k, testLogger(t))
			if err := src.Start(context.Background()); err != nil {
				if unsupported(err) {
					testenv.Matrix("traffic", rung, "unsupported", oneLine(err))
					t.Logf("rung %s not allowed here: %v", rung, err)
					return
				}
				testenv.Matrix("traffic", rung, "fail", oneLine(err))
				t.Fatalf("start on rung %s: %v", rung, err)
			}
			defer src.Close()
			if src.Rung() != rung {
				t.Fatalf("pinned %s, got %s", rung, src.Rung())
			}
			ok := t.Run("counts", func(t *testing.T) { checkCounts(t, src) })
			result := "pass"
			if !ok {
				result = "fail"
			}
			testenv.Matrix("traffic", rung, result, "")
		})
	}
	t.Run("auto", func(t *testing.T) {
		src := New("traffic", config.TrafficSource{Attribution: "current", Hook: "auto", MaxEntries: 4096}, k, testLogger(t))
		if err := src.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		want := ""
		for _, r := range bpftraffic.Rungs {
			if kinds[r] {
				want = r
				break
			}
		}
		// fentry is chosen wherever the kernel allows it.
		if src.Rung() != want {
			t.Errorf("auto chose %s, want the best allowed rung %s", src.Rung(), want)
		}
		checkCounts(t, src)
	})
}

func oneLine(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func checkCounts(t *testing.T, src *Source) {
	pair := testnet.NewPair(t, strconv.Itoa(os.Getpid()%100000))
	pair.PinNeighbours(t)
	var sink *net.UDPConn
	if err := pair.Do(func() error {
		var err error
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: pair.PeerIP})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	// Start from a clean slate: whatever came before is drained now.
	if _, err := src.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", sink.LocalAddr().String())
	cmd.Env = append(os.Environ(), "SOCKEYE_TRAFFIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	pid := cmd.Process.Pid
	time.Sleep(100 * time.Millisecond)
	b, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Entry{}
	// The namespace end sees nothing but the child's datagrams (static
	// neighbours, no IPv6), so its totals over every pid are exact.
	var peerAll Entry
	for _, r := range b.Rows {
		e := entryOf(r)
		if e.Device == pair.PeerDev {
			peerAll.RxPackets += e.RxPackets
			peerAll.RxBytes += e.RxBytes
			peerAll.TxPackets += e.TxPackets
		}
		if int(e.PID) != pid {
			continue
		}
		if e.Command != childComm {
			t.Errorf("pid %d: command %q, want %q", pid, e.Command, childComm)
		}
		if e.UID != uint32(os.Getuid()) {
			t.Errorf("pid %d: uid %d, want %d", pid, e.UID, os.Getuid())
		}
		if !r.Final {
			t.Errorf("pid %d has exited but its row is not final", pid)
		}
		g := got[e.Device]
		g.TxPackets += e.TxPackets
		g.RxPackets += e.RxPackets
		g.TxBytes += e.TxBytes
		g.RxBytes += e.RxBytes
		got[e.Device] = g
	}
	if peerAll.RxPackets != nPackets || peerAll.RxBytes != nPackets*frameBytes || peerAll.TxPackets != 0 {
		t.Errorf("%s over all pids: rx %d/%dB tx %d, want rx %d/%dB tx 0", pair.PeerDev,
			peerAll.RxPackets, peerAll.RxBytes, peerAll.TxPackets, nPackets, nPackets*frameBytes)
	}
	// Transmits run in the child: exact. Receives are counted in softirq,
	// attributed (as the seed did) to the task it interrupted: the sender
	// itself on lo and veth unless the kernel deferred the softirq to
	// ksoftirqd, which a loaded machine sometimes does for a packet or two.
	type want struct {
		tx, rx, minRx uint64
	}
	wants := map[string]want{
		"lo":         {tx: nPackets, rx: nPackets, minRx: nPackets * 9 / 10},
		pair.HostDev: {tx: nPackets},
		pair.PeerDev: {rx: nPackets, minRx: nPackets * 9 / 10},
	}
	for dev, w := range wants {
		g := got[dev]
		okRx := g.RxPackets <= w.rx && g.RxPackets >= w.minRx
		if g.TxPackets != w.tx || !okRx || g.TxBytes != g.TxPackets*frameBytes || g.RxBytes != g.RxPackets*frameBytes {
			t.Errorf("%s: got tx %d/%dB rx %d/%dB, want tx %d rx %d (at least %d), %d bytes a frame", dev,
				g.TxPackets, g.TxBytes, g.RxPackets, g.RxBytes, w.tx, w.rx, w.minRx, frameBytes)
		} else if g.RxPackets != w.rx {
			t.Logf("%s: %d of %d receives ran in another task's softirq", dev, w.rx-g.RxPackets, w.rx)
		}
	}
	if len(got) != len(wants) {
		t.Errorf("child pid %d shows on devices %v, want exactly lo, %s, %s", pid, keys(got), pair.HostDev, pair.PeerDev)
	}
	// The exited child's keys are gone from the kernel map.
	b2, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range b2.Rows {
		if e := entryOf(r); int(e.PID) == pid {
			t.Errorf("exited pid %d still reported: %+v", pid, e)
		}
	}
	checkSelf(t, b)
}

func checkSelf(t *testing.T, b *pipelines.Batch) {
	names := map[string]bool{}
	reasons := map[string]bool{}
	for _, p := range b.Self {
		names[p.Name] = true
		for _, a := range p.Attrs {
			if p.Name == "sockeye.agent.events.lost" && a.Key == "sockeye.reason" {
				reasons[a.Value.AsString()] = true
			}
		}
	}
	if !reasons["map_update_error"] || !reasons["probe_missed"] {
		t.Errorf("sockeye.agent.events.lost reasons %v, want map_update_error and probe_missed", reasons)
	}
	for _, n := range []string{"sockeye.agent.map.entries", "sockeye.agent.map.full", "sockeye.agent.events.lost"} {
		if !names[n] {
			t.Errorf("self metric %s missing", n)
		}
	}
}

func keys(m map[string]Entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func entryOf(r pipelines.Row) Entry {
	var e Entry
	for _, kv := range r.Attrs {
		switch kv.Key {
		case AttrPID:
			e.PID = uint32(kv.Value.AsInt64())
		case AttrUID:
			e.UID = uint32(kv.Value.AsInt64())
		case AttrDevice:
			e.Device = kv.Value.AsString()
		case AttrCommand:
			e.Command = kv.Value.AsString()
		}
	}
	e.TxPackets = uint64(r.Values[ColTxPackets])
	e.RxPackets = uint64(r.Values[ColRxPackets])
	e.TxBytes = uint64(r.Values[ColTxBytes])
	e.RxBytes = uint64(r.Values[ColRxBytes])
	return e
}

// TestMapFull fills a tiny map and checks that the packets it could not
// count are counted as lost, not dropped silently.
func TestMapFull(t *testing.T) {
	k := kernel(t)
	src := New("traffic", config.TrafficSource{Attribution: "current", Hook: "auto", MaxEntries: 1}, k, testLogger(t))
	if err := src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Two processes on lo need at least two keys.
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-")
		cmd.Env = append(os.Environ(), "SOCKEYE_TRAFFIC_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
	}
	b, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var full, lost, capacity int64
	for _, p := range b.Self {
		switch p.Name {
		case "sockeye.agent.map.full":
			full = p.Value
		case "sockeye.agent.events.lost":
			lost += p.Value
		case "sockeye.agent.map.capacity":
			capacity = p.Value
		}
	}
	if capacity != 1 {
		t.Errorf("capacity %d, want 1", capacity)
	}
	if full < nPackets {
		t.Errorf("sockeye.agent.map.full = %d (events.lost %d), want at least %d (one child's packets had no room)", full, lost, nPackets)
	}
}

// unsafePtr gives prctl a NUL-terminated copy of s.
func unsafePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
