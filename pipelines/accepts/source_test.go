//go:build linux

package accepts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	bpfaccepts "github.com/sockeye/sockeye/bpf/accepts"
	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testnet"
	"github.com/sockeye/sockeye/pipelines"
)

const childEnv = "SOCKEYE_ACCEPTS_CHILD"

// TestMain lets the test binary double as a TCP server with a known
// command name: SOCKEYE_ACCEPTS_CHILD=NETWORK,ADDRESS,COUNT,COMM where a
// COUNT of 0 listens and never accepts until stdin closes.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := serve(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve listens, prints "READY port tid", accepts COUNT connections from
// one thread named COMM (comm is per thread) and closes each.
func serve(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 4 {
		return fmt.Errorf("bad spec %q", spec)
	}
	count, err := strconv.Atoi(parts[2])
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	name, err := unix.BytePtrFromString(parts[3])
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0); err != nil {
		return err
	}
	l, err := net.Listen(parts[0], parts[1])
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Printf("READY %d %d\n", l.Addr().(*net.TCPAddr).Port, unix.Gettid())
	if count == 0 {
		io.Copy(io.Discard, os.Stdin)
		return nil
	}
	l.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < count; i++ {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// server is a running child.
type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
	tid   int
	port  int
	uid   uint32
	comm  string
}

type serverOpts struct {
	network, addr string
	count         int
	comm          string
	// uid runs the child as that user (and group) when not 0.
	uid uint32
	// in starts the child in a network namespace.
	in *testnet.Pair
}

func startServer(t *testing.T, o serverOpts) *server {
	t.Helper()
	// Absolute: the child runs in /, and the kernel matrix starts tests
	// as ./name.test.
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if o.uid != 0 {
		bin = worldExecutable(t)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d,%s", childEnv, o.network, o.addr, o.count, o.comm))
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	if o.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.uid, Gid: o.uid}}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := cmd.Start
	if o.in != nil {
		start = func() error { return o.in.Do(cmd.Start) }
	}
	if err := start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	s := &server{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid, uid: o.uid, comm: o.comm}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server did not start: %v", err)
	}
	if _, err := fmt.Sscanf(line, "READY %d %d", &s.port, &s.tid); err != nil {
		t.Fatalf("server said %q: %v", line, err)
	}
	return s
}

// wait waits for the child to exit successfully.
func (s *server) wait(t *testing.T) {
	t.Helper()
	s.stdin.Close()
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("server %s: %v", s.comm, err)
	}
}

// worldExecutable copies the test binary where any user may run it: the
// build directory is private to root.
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sockeye-accepts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "server")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// dial opens n connections to addr and returns their local ports.
func dial(t *testing.T, network, addr string, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		ports = append(ports, c.LocalAddr().(*net.TCPAddr).Port)
		t.Cleanup(func() { c.Close() })
	}
	return ports
}

// collector runs a source and keeps what it emits.
type collector struct {
	src  *Source
	mu   sync.Mutex
	recs []*pipelines.LogRecord
	stop context.CancelFunc
	done chan error
}

func collect(src *Source) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{src: src, stop: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- src.Run(ctx, func(r *pipelines.LogRecord) {
			c.mu.Lock()
			c.recs = append(c.recs, r)
			c.mu.Unlock()
		})
	}()
	return c
}

// conns returns the connections seen so far that match.
func (c *collector) conns(match func(*Conn) bool) []*Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Conn
	for _, r := range c.recs {
		if conn := r.Payload.(*Conn); match(conn) {
			out = append(out, conn)
		}
	}
	return out
}

// await waits until n connections match, then a little longer so that a
// duplicate would show, and returns them. The bound is generous: emulated
// guests of the kernel matrix run everything tens of times slower, and a
// passing run never waits for it.
func (c *collector) await(n int, match func(*Conn) bool) []*Conn {
	deadline := time.Now().Add(20 * time.Second)
	for len(c.conns(match)) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return c.conns(match)
}

// probeMissed is the source's probe_missed count so far.
func probeMissed(src *Source) int64 {
	var n int64
	for _, p := range src.Self() {
		if p.Name == "sockeye.agent.events.lost" && slices.Contains(p.Attrs, attribute.String("sockeye.reason", "probe_missed")) {
			n += p.Value
		}
	}
	return n
}

func (c *collector) close(t *testing.T) {
	t.Helper()
	c.stop()
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run did not return after cancel")
	}
}

func kernel(t *testing.T) *hooks.Kernel {
	return testenv.Kernel(t)
}

func testLogger() *slog.Logger {
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
			errors.Is(a.Err, errors.ErrUnsupported) {
			continue
		}
		msg := a.Err.Error()
		if strings.Contains(msg, "CONFIG_KPROBES") || strings.Contains(msg, "needs the kernel's own BTF") {
			continue
		}
		return false
	}
	return true
}

// mountTracefs makes the tracepoint rung testable where tracefs is not
// mounted yet, as on a fresh host; it stays mounted for other tests.
func mountTracefs(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		t.Logf("mount tracefs: %v", err)
	}
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// TestAcceptsRungs runs the same connections through every rung this
// kernel allows and checks that each accept is reported exactly once with
// the server's pid, thread, uid, command, ports and addresses, outbound
// connections too, and nothing else.
func TestAcceptsRungs(t *testing.T) {
	k := kernel(t)
	mountTracefs(t)
	for _, rung := range bpfaccepts.Rungs {
		t.Run(rung, func(t *testing.T) {
			src := New("accepts", config.AcceptsSource{Hook: rung, Connect: true}, k, testLogger())
			if err := src.Start(context.Background()); err != nil {
				if unsupported(err) {
					testenv.Matrix("accepts", rung, "unsupported", oneLine(err))
					t.Logf("rung %s not allowed here: %v", rung, err)
					return
				}
				testenv.Matrix("accepts", rung, "fail", oneLine(err))
				t.Fatalf("start on rung %s: %v", rung, err)
			}
			defer src.Close()
			if src.Rung() != rung {
				t.Fatalf("pinned %s, got %s", rung, src.Rung())
			}
			ok := t.Run("connections", func(t *testing.T) { checkConnections(t, src) })
			ok = t.Run("reset before accept", func(t *testing.T) { checkReset(t, src) }) && ok
			result, note := "pass", ""
			if !ok {
				result = "fail"
			}
			if m := probeMissed(src); m > 0 {
				note = fmt.Sprintf("the kernel skipped the programs %d times, counted as probe_missed", m)
			}
			testenv.Matrix("accepts", rung, result, note)
		})
	}
}

// TestAcceptsAuto checks that auto picks the best allowed rung and that
// outbound connections stay unreported without the connect option.
func TestAcceptsAuto(t *testing.T) {
	k := kernel(t)
	mountTracefs(t)
	src := New("accepts", config.AcceptsSource{Hook: config.HookAuto}, k, testLogger())
	if err := src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kinds := map[string]bool{}
	for _, kd := range hooks.ProbeKinds(k) {
		kinds[kd.Name] = kd.OK
	}
	// fentry and kprobe here stand for fexit and kretprobe, which the
	// kernels of this project allow exactly where they allow the others;
	// the tracepoint kind stands for the syscall events.
	want := ""
	for _, r := range bpfaccepts.Rungs {
		if kinds[r] {
			want = r
			break
		}
	}
	if src.Rung() != want {
		t.Errorf("auto chose %s, want the best allowed rung %s", src.Rung(), want)
	}
	col := collect(src)
	defer col.close(t)
	s := startServer(t, serverOpts{network: "tcp4", addr: "127.0.0.1:0", count: 2, comm: "sk-acc-auto"})
	ports := dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", s.port), 2)
	s.wait(t)
	checkAccepts(t, col, s, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), ports)
	if got := col.conns(func(c *Conn) bool { return c.Connect }); len(got) != 0 {
		t.Errorf("outbound connections reported without the connect option: %+v", got)
	}
}

func checkConnections(t *testing.T, src *Source) {
	col := collect(src)
	defer col.close(t)
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	const k = 5

	t.Run("ipv4 loopback", func(t *testing.T) {
		s := startServer(t, serverOpts{network: "tcp4", addr: "127.0.0.1:0", count: k, comm: "sk-acc-v4"})
		ports := dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", s.port), k)
		s.wait(t)
		checkAccepts(t, col, s, lo4, lo4, ports)
		checkConnects(t, col, s.port, lo4, ports)
	})
	t.Run("ipv6 loopback as nobody", func(t *testing.T) {
		s := startServer(t, serverOpts{network: "tcp6", addr: "[::1]:0", count: k, comm: "sk-acc-v6", uid: 65534})
		ports := dial(t, "tcp6", fmt.Sprintf("[::1]:%d", s.port), k)
		s.wait(t)
		checkAccepts(t, col, s, lo6, lo6, ports)
		checkConnects(t, col, s.port, lo6, ports)
	})
	t.Run("ipv4 client of a dual-stack server", func(t *testing.T) {
		s := startServer(t, serverOpts{network: "tcp", addr: "[::]:0", count: 3, comm: "sk-acc-dual"})
		ports := dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", s.port), 3)
		s.wait(t)
		checkAccepts(t, col, s, lo4, lo4, ports)
	})
	t.Run("never accepted", func(t *testing.T) {
		s := startServer(t, serverOpts{network: "tcp4", addr: "127.0.0.1:0", count: 0, comm: "sk-acc-none"})
		ports := dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", s.port), 3)
		// The handshakes complete in the kernel's backlog: the client
		// side is established (and reported), nothing is accepted.
		checkConnects(t, col, s.port, lo4, ports)
		s.wait(t)
		if got := col.await(0, func(c *Conn) bool { return !c.Connect && int(c.Local.Port()) == s.port }); len(got) != 0 {
			t.Errorf("connections never accepted were reported: %+v", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		port := refusedPort(t)
		got := col.await(0, func(c *Conn) bool { return int(c.Local.Port()) == port || int(c.Remote.Port()) == port })
		if len(got) != 0 {
			t.Errorf("a refused connection was reported: %+v", got)
		}
	})
	if bad := src.bad.Load(); bad != 0 {
		t.Errorf("%d records did not decode", bad)
	}
	checkSelf(t, src)
}

// refusedPort returns a loopback port a connection was just refused on.
func refusedPort(t *testing.T) int {
	t.Helper()
	for range 5 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return port
		}
		c.Close() // someone took the port meanwhile; try another
	}
	t.Fatal("no refused port found")
	return 0
}

// checkAccepts wants exactly one accept per client port, from the server,
// or the ones missing counted as runs the kernel skipped (probe_missed).
func checkAccepts(t *testing.T, col *collector, s *server, local, remote netip.Addr, clientPorts []int) {
	t.Helper()
	got := col.await(len(clientPorts), func(c *Conn) bool { return !c.Connect && int(c.PID) == s.pid })
	seen := map[int]int{}
	for _, c := range got {
		seen[int(c.Remote.Port())]++
		if int(c.TID) != s.tid || c.UID != s.uid || c.Command != s.comm {
			t.Errorf("accept by tid %d uid %d comm %q, want tid %d uid %d comm %q", c.TID, c.UID, c.Command, s.tid, s.uid, s.comm)
		}
		if c.Local != netip.AddrPortFrom(local, uint16(s.port)) || c.Remote.Addr() != remote {
			t.Errorf("accept %s <- %s, want %s:%d <- %s", c.Local, c.Remote, local, s.port, remote)
		}
		if d := time.Since(c.Time); d < 0 || d > 30*time.Second {
			t.Errorf("accept time %s is %s from now", c.Time, d)
		}
	}
	for p := range seen {
		if !slices.Contains(clientPorts, p) {
			t.Errorf("accept from client port %d reported for pid %d, which did not connect from there", p, s.pid)
		}
	}
	col.checkEach(t, "accepts", clientPorts, seen)
}

// checkConnects wants exactly one outbound connection per client port,
// from this process.
func checkConnects(t *testing.T, col *collector, serverPort int, addr netip.Addr, clientPorts []int) {
	t.Helper()
	want := map[int]bool{}
	for _, p := range clientPorts {
		want[p] = true
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	got := col.await(len(clientPorts), func(c *Conn) bool {
		return c.Connect && int(c.Remote.Port()) == serverPort && want[int(c.Local.Port())]
	})
	seen := map[int]int{}
	for _, c := range got {
		seen[int(c.Local.Port())]++
		if int(c.PID) != os.Getpid() || c.UID != uint32(os.Getuid()) || c.Command != strings.TrimSpace(string(comm)) {
			t.Errorf("connect by pid %d uid %d comm %q, want pid %d uid %d comm %q", c.PID, c.UID, c.Command, os.Getpid(), os.Getuid(), strings.TrimSpace(string(comm)))
		}
		if c.Remote.Addr() != addr || c.Local.Addr() != addr {
			t.Errorf("connect %s -> %s, want %s on both ends", c.Local, c.Remote, addr)
		}
	}
	col.checkEach(t, "connects", clientPorts, seen)
}

// checkEach wants every client port seen once; one not seen at all passes
// only if the kernel counted at least that many skipped program runs
// (probe_missed): a program is not run when it would nest in another on
// the same CPU, which an emulated guest's slow interrupts make likely.
func (c *collector) checkEach(t *testing.T, what string, clientPorts []int, seen map[int]int) {
	t.Helper()
	var missing []int
	for _, p := range clientPorts {
		switch seen[p] {
		case 1:
		case 0:
			missing = append(missing, p)
		default:
			t.Errorf("client port %d: %d %s reported, want 1", p, seen[p], what)
		}
	}
	if len(missing) == 0 {
		return
	}
	if m := probeMissed(c.src); m < int64(len(missing)) {
		t.Errorf("client ports %v: no %s reported, and only %d program runs counted as skipped (probe_missed): lost silently", missing, what, m)
	} else {
		t.Logf("client ports %v: no %s reported; the kernel skipped %d program runs, counted as probe_missed", missing, what, m)
	}
}

// checkSelf wants the counters there, events read and none lost, but for
// program runs the kernel skipped, which it counted (see checkEach).
func checkSelf(t *testing.T, src *Source) {
	t.Helper()
	names := map[string]int64{}
	for _, p := range src.Self() {
		names[p.Name] += p.Value
	}
	for _, n := range []string{"sockeye.agent.events.read", "sockeye.agent.ringbuf.full", "sockeye.agent.events.lost"} {
		if _, ok := names[n]; !ok {
			t.Errorf("self metric %s missing", n)
		}
	}
	missed := probeMissed(src)
	if names["sockeye.agent.events.read"] == 0 || names["sockeye.agent.ringbuf.full"] != 0 || names["sockeye.agent.events.lost"] != missed {
		t.Errorf("self metrics %v (probe_missed %d): want events read, none lost but skipped runs", names, missed)
	}
	if missed > 0 {
		t.Logf("the kernel skipped the programs %d times (probe_missed)", missed)
	}
}

// TestAcceptsNamespace accepts on a veth address inside a network
// namespace made for the test, from a client on the host side.
func TestAcceptsNamespace(t *testing.T) {
	k := kernel(t)
	pair := testnet.NewPair(t, "ac"+strconv.Itoa(os.Getpid()%100000))
	pair.PinNeighbours(t)
	src := New("accepts", config.AcceptsSource{Hook: config.HookAuto}, k, testLogger())
	if err := src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	col := collect(src)
	defer col.close(t)
	s := startServer(t, serverOpts{network: "tcp4", addr: pair.PeerIP.String() + ":0", count: 3, comm: "sk-acc-ns", in: pair})
	ports := dial(t, "tcp4", fmt.Sprintf("%s:%d", pair.PeerIP, s.port), 3)
	s.wait(t)
	peer, _ := netip.AddrFromSlice(pair.PeerIP.To4())
	host, _ := netip.AddrFromSlice(pair.HostIP.To4())
	checkAccepts(t, col, s, peer, host, ports)
}

// checkReset: a connection the client resets before the server accepts it
// is still reported with the listening port (closing it clears the port
// the kernel keeps in skc_num).
func checkReset(t *testing.T, src *Source) {
	col := collect(src)
	defer col.close(t)
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	clientPort := c.LocalAddr().(*net.TCPAddr).Port
	c.SetLinger(0) // close sends a reset
	c.Close()
	time.Sleep(100 * time.Millisecond)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept of the reset connection: %v", err)
	}
	conn.Close()
	pid := uint32(os.Getpid())
	got := col.await(1, func(c *Conn) bool { return c.PID == pid && int(c.Remote.Port()) == clientPort && !c.Connect })
	col.checkEach(t, "accepts", []int{clientPort}, map[int]int{clientPort: len(got)})
	if want := ln.Addr().(*net.TCPAddr).Port; len(got) == 1 && int(got[0].Local.Port()) != want {
		t.Errorf("server port %d, want %d (record %+v)", got[0].Local.Port(), want, got[0])
	}
}

// TestAcceptsKretprobeMissesCounted blocks more threads in accept(2) than a
// kretprobe has instances (max(10, 2 x CPUs) by default), then connects to
// each: the accepts the kprobe rung cannot see must show up as probe_missed,
// so that reported plus missed is every accept.
func TestAcceptsKretprobeMissesCounted(t *testing.T) {
	k := kernel(t)
	if !testenv.KernelAtLeast(6, 7) {
		t.Skip("the kernel keeps a kretprobe's misses for BPF links from Linux 6.7")
	}
	src := New("accepts", config.AcceptsSource{Hook: hooks.Kprobe}, k, testLogger())
	if err := src.Start(context.Background()); err != nil {
		if unsupported(err) {
			t.Skipf("kprobe rung not allowed here: %v", err)
		}
		t.Fatal(err)
	}
	defer src.Close()
	col := collect(src)
	defer col.close(t)

	// A blocking listener: Go's own would park goroutines in epoll instead.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	n := 2*runtime.NumCPU() + 30
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nfd, _, err := unix.Accept(fd)
			if err != nil {
				t.Errorf("accept: %v", err)
				return
			}
			unix.Close(nfd)
		}()
	}
	// Every accepter is in the kernel, holding an instance or not, before
	// the first connection arrives.
	deadline := time.Now().Add(30 * time.Second)
	for blockedIn(unix.SYS_ACCEPT4) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d threads blocked in accept4(2) after 30 s", blockedIn(unix.SYS_ACCEPT4), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", port), n)
	wg.Wait()

	pid := uint32(os.Getpid())
	mine := func(c *Conn) bool { return !c.Connect && c.PID == pid && int(c.Local.Port()) == port }
	var reported, missed int64
	deadline = time.Now().Add(10 * time.Second)
	for {
		reported = int64(len(col.conns(mine)))
		missed = probeMissed(src)
		if reported+missed >= int64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d accepts: %d reported, %d counted as probe_missed", n, reported, missed)
	ok := true
	if reported+missed != int64(n) {
		t.Errorf("%d accepts reported and %d counted missed, want %d in all", reported, missed, n)
		ok = false
	}
	if missed == 0 {
		t.Errorf("no kretprobe miss with %d threads blocked in accept(2): the test did not exceed the instances", n)
		ok = false
	}
	result := "pass"
	if !ok {
		result = "fail"
	}
	testenv.Matrix("accepts-kretprobe-misses", hooks.Kprobe, result,
		fmt.Sprintf("%d threads blocked in accept(2): %d accepts reported, %d counted as probe_missed", n, reported, missed))
}

// blockedIn counts this process's threads inside system call nr.
func blockedIn(nr int) int {
	tasks, _ := filepath.Glob("/proc/self/task/*/syscall")
	count := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(string(b), strconv.Itoa(nr)+" ") {
			count++
		}
	}
	return count
}
