//go:build linux

package socketcalls

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

const childEnv = "SOCKEYE_SOCKETCALLS_CHILD"

// TestMain turns the test binary into the traced program when asked: it
// waits for a line on stdin (the probe is attached), then makes a known
// sequence of blocking socket calls on one thread.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runtime.LockOSThread()
		bufio.NewReader(os.Stdin).ReadString('\n')
		if err := socketWork(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%d\n", unix.Gettid())
		os.Exit(0)
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	os.Exit(m.Run())
}

// socketWork: a TCP exchange of "hello" over 127.0.0.1, then a connect to a
// closed port (ECONNREFUSED). Blocking calls, so each is one system call.
func socketWork() error {
	srv, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(srv, lo); err != nil {
		return err
	}
	if err := unix.Listen(srv, 4); err != nil {
		return err
	}
	sa, err := unix.Getsockname(srv)
	if err != nil {
		return err
	}
	port := sa.(*unix.SockaddrInet4).Port
	cli, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(cli, &unix.SockaddrInet4{Addr: lo.Addr, Port: port}); err != nil {
		return err
	}
	acc, _, err := unix.Accept4(srv, 0)
	if err != nil {
		return err
	}
	if err := unix.Sendto(cli, []byte("hello"), 0, nil); err != nil {
		return err
	}
	buf := make([]byte, 16)
	if _, _, err := unix.Recvfrom(acc, buf, 0); err != nil {
		return err
	}
	if err := unix.Sendto(acc, []byte("hello"), 0, nil); err != nil {
		return err
	}
	if _, _, err := unix.Recvfrom(cli, buf, 0); err != nil {
		return err
	}
	unix.Close(acc)
	unix.Close(cli)
	unix.Close(srv)
	refused, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	// Port 1 on loopback: nothing listens there in a test environment.
	if err := unix.Connect(refused, &unix.SockaddrInet4{Addr: lo.Addr, Port: 1}); !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("connect to port 1: %v, want ECONNREFUSED", err)
	}
	unix.Close(refused)
	return nil
}

// child starts the traced program, stopped until go is called.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   strings.Builder
}

func startChild(t *testing.T) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = &c.out
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	return c
}

func (c *child) run(t *testing.T) int {
	t.Helper()
	c.stdin.Write([]byte("go\n"))
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, c.out.String())
	}
	var tid int
	fmt.Sscanf(strings.TrimSpace(c.out.String()), "%d", &tid)
	return tid
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
		if strings.Contains(msg, "CONFIG_KPROBES") || strings.Contains(msg, "needs the kernel's own BTF") {
			continue
		}
		return false
	}
	return true
}

// TestRungs traces the child on every rung and checks the call trees: the
// system calls in order as roots, with their socket, return values and
// errors, and the children the rung can see.
func TestRungs(t *testing.T) {
	testenv.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Log(err)
	}
	k, err := hooks.LoadKernel(os.Getenv("SOCKEYE_TEST_BTF"))
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	for _, rung := range Rungs {
		t.Run(rung, func(t *testing.T) {
			c := startChild(t)
			start := time.Now()
			p, err := Open(Options{
				Hook: rung, Functions: []string{SocketC, "inet_sendmsg", "tcp_sendmsg"}, PIDs: []uint32{uint32(c.cmd.Process.Pid)},
				Kernel: k, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				if unsupported(err) {
					testenv.Matrix("socket_calls", rung, "unsupported", oneLine(err))
					t.Skipf("rung %s not allowed here: %v", rung, err)
				}
				testenv.Matrix("socket_calls", rung, "fail", oneLine(err))
				t.Fatalf("open on rung %s: %v", rung, err)
			}
			defer p.Close()
			t.Logf("rung %s: %d functions attached in %v; notes: %v", rung, len(p.Functions), time.Since(start), p.Notes)
			rd, err := p.Reader()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			tid := c.run(t)
			var recs []Record
			for {
				rd.SetDeadline(time.Now().Add(300 * time.Millisecond))
				raw, err := rd.Read()
				if err != nil {
					break
				}
				r, _ := Decode(raw.RawSample)
				if int(r.Tid) == tid {
					recs = append(recs, *r)
				}
			}
			ok := t.Run("trees", func(t *testing.T) { checkTrees(t, p, rung, recs) })
			result := "pass"
			if !ok {
				result = "fail"
			}
			testenv.Matrix("socket_calls", rung, result, "")
		})
	}
}

func checkTrees(t *testing.T, p *Probe, rung string, recs []Record) {
	var roots []Record
	byID := map[uint64]Record{}
	for _, r := range recs {
		byID[r.Id] = r
		if r.Kind != KindEvent && r.ParentId == 0 {
			roots = append(roots, r)
		}
	}
	slices.SortFunc(roots, func(a, b Record) int { return int(int64(a.StartNs) - int64(b.StartNs)) })
	var names []string
	for _, r := range roots {
		names = append(names, SyscallName(r.Func))
	}
	// x/sys/unix reads SO_PROTOCOL (getsockopt) to decode the addresses of
	// getsockname and accept4.
	want := []string{"socket", "bind", "listen", "getsockname", "getsockopt", "socket", "connect", "accept4", "getsockopt",
		"sendto", "recvfrom", "sendto", "recvfrom", "close", "close", "close", "socket", "connect", "close"}
	if !slices.Equal(names, want) {
		t.Fatalf("roots %v\nwant %v", names, want)
	}
	connect, accept, send, refused := roots[6], roots[7], roots[9], roots[17]
	if connect.Ret != 0 || connect.Flags&FlagSock == 0 || connect.Family != unix.AF_INET || connect.Rport != accept.Lport {
		t.Errorf("connect: ret %d flags %d family %d rport %d", connect.Ret, connect.Flags, connect.Family, connect.Rport)
	}
	if [4]byte(connect.Raddr[:4]) != [4]byte{127, 0, 0, 1} || [4]byte(connect.Laddr[:4]) != [4]byte{127, 0, 0, 1} ||
		connect.Protocol != unix.IPPROTO_TCP || connect.SockType != unix.SOCK_STREAM {
		t.Errorf("connect socket: laddr %v raddr %v protocol %d type %d", connect.Laddr[:4], connect.Raddr[:4], connect.Protocol, connect.SockType)
	}
	if accept.Ret < 0 || accept.Fd != int32(accept.Ret) || accept.Rport != connect.Lport {
		t.Errorf("accept4: ret %d fd %d rport %d, want the client's port %d", accept.Ret, accept.Fd, accept.Rport, connect.Lport)
	}
	if send.Ret != 5 {
		t.Errorf("sendto returned %d, want 5", send.Ret)
	}
	if refused.Ret != -int64(unix.ECONNREFUSED) {
		t.Errorf("connect to a closed port returned %d, want -ECONNREFUSED", refused.Ret)
	}
	// Children of the first sendto, by name.
	children := map[string]bool{}
	for _, r := range recs {
		if r.RootId == send.Id && r.Id != send.Id && r.Kind != KindEvent {
			children[name(p, &r)] = true
			if r.EndNs < r.StartNs || r.StartNs < send.StartNs || r.EndNs > send.EndNs {
				t.Errorf("child %s [%d, %d] outside its root [%d, %d]", name(p, &r), r.StartNs, r.EndNs, send.StartNs, send.EndNs)
			}
			if _, ok := byID[r.ParentId]; !ok {
				t.Errorf("child %s: parent %x not among the records", name(p, &r), r.ParentId)
			}
		}
	}
	switch rung {
	case hooks.Fentry, hooks.Kprobe:
		// sock_sendmsg is on the path on some kernels only (6.12 calls the
		// static __sock_sendmsg, inlined): not required.
		for _, fn := range []string{"__sys_sendto", "inet_sendmsg", "tcp_sendmsg"} {
			if slices.Contains(p.Functions, fn) && !children[fn] {
				t.Errorf("sendto has no child %s (children: %v)", fn, children)
			}
		}
		// tcp_sendmsg nests under inet_sendmsg, which nests (through
		// whatever else is traced) under __sys_sendto.
		for _, r := range recs {
			if r.RootId != send.Id || name(p, &r) != "tcp_sendmsg" {
				continue
			}
			parent, ok := byID[r.ParentId]
			if !ok || name(p, &parent) != "inet_sendmsg" {
				t.Errorf("tcp_sendmsg's parent is %s, want inet_sendmsg", name(p, &parent))
				continue
			}
			up := parent
			for up.ParentId != 0 && name(p, &up) != "__sys_sendto" {
				up = byID[up.ParentId]
			}
			if name(p, &up) != "__sys_sendto" {
				t.Errorf("inet_sendmsg is not under __sys_sendto")
			}
		}
	default:
		if !children["netdev_start_xmit"] || !children["netif_rx"] {
			t.Errorf("sendto over lo: children %v, want netdev_start_xmit and netif_rx", children)
		}
	}
}

func name(p *Probe, r *Record) string {
	switch r.Kind {
	case KindSyscall:
		return SyscallName(r.Func)
	case KindFunc:
		if int(r.Func) < len(p.Functions) {
			return p.Functions[r.Func]
		}
	case KindPair:
		return PairName(r.Func)
	}
	return EventName(r.Func)
}

// TestSelection checks the in-kernel selections other than pids: by
// command and by cgroup v2 (with the child moved into a new cgroup).
func TestSelection(t *testing.T) {
	testenv.RequireRoot(t)
	k, err := hooks.LoadKernel(os.Getenv("SOCKEYE_TEST_BTF"))
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	roots := func(t *testing.T, opts Options, c *child) int {
		t.Helper()
		opts.Hook, opts.Kernel, opts.Log = "auto", k, quiet
		p, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		rd, err := p.Reader()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		tid := c.run(t)
		n := 0
		for {
			rd.SetDeadline(time.Now().Add(300 * time.Millisecond))
			raw, err := rd.Read()
			if err != nil {
				return n
			}
			if r, _ := Decode(raw.RawSample); int(r.Tid) == tid && r.Kind == KindSyscall && r.ParentId == 0 {
				n++
			}
		}
	}
	t.Run("command", func(t *testing.T) {
		c := startChild(t)
		comm := filepath.Base(os.Args[0])
		if len(comm) > 15 {
			comm = comm[:15]
		}
		if n := roots(t, Options{Commands: []string{comm}}, c); n != 19 {
			t.Errorf("%d root calls of %q, want 19", n, comm)
		}
	})
	t.Run("other command", func(t *testing.T) {
		c := startChild(t)
		if n := roots(t, Options{Commands: []string{"not-the-child"}}, c); n != 0 {
			t.Errorf("%d root calls traced for another command", n)
		}
	})
	t.Run("cgroup", func(t *testing.T) {
		root := cgroup2Mount(t)
		dir, err := os.MkdirTemp(root, "sockeye-test-")
		if err != nil {
			testenv.Unavailable(t, "cannot create a cgroup: "+err.Error())
		}
		c := startChild(t)
		t.Cleanup(func() {
			c.cmd.Process.Kill()
			c.cmd.Wait()
			os.Remove(dir)
		})
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(c.cmd.Process.Pid)), 0o644); err != nil {
			testenv.Unavailable(t, "cannot move the child into a cgroup: "+err.Error())
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		if n := roots(t, Options{CgroupIDs: []uint64{st.Ino}, CgroupLevel: 1}, c); n != 19 {
			t.Errorf("%d root calls in the cgroup, want 19", n)
		}
	})
}

func cgroup2Mount(t *testing.T) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if before, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
				if f := strings.Fields(before); len(f) >= 5 {
					return f[4]
				}
			}
		}
	}
	testenv.Unavailable(t, "no cgroup2 mount")
	return ""
}
