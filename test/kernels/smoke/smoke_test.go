// Package smoke checks that each BPF hook kind sockeye relies on can be
// loaded, attached and seen firing on the running kernel, and that network
// namespaces and veth pairs work. It needs no clang: the programs are
// assembled in Go. The kernel matrix harness (test/kernels/run.sh) runs it on
// every pinned kernel and reads the KERNEL-MATRIX lines it prints.
package smoke

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const pipeline = "smoke"

// Result values of the KERNEL-MATRIX protocol.
const (
	resultPass        = "pass"
	resultFail        = "fail"
	resultUnsupported = "unsupported"
)

// Not in syscall: the kernel-internal ENOTSUPP leaks out of BPF attach paths.
const errnoENOTSUPP = syscall.Errno(524)

// report prints one KERNEL-MATRIX line on stdout (the harness parses stdout,
// t.Log output would be indented and buffered).
func report(t *testing.T, rung, result, note string) {
	t.Helper()
	line := fmt.Sprintf("KERNEL-MATRIX pipeline=%s rung=%s result=%s", pipeline, rung, result)
	if note != "" {
		line += " note=" + strings.Join(strings.Fields(note), " ")
	}
	fmt.Println(line)
}

// requireBPF is set by the kernel matrix harness: there a missing BPF
// capability is a failure, never a skip.
func requireBPF() bool { return os.Getenv("SOCKEYE_REQUIRE_BPF") != "" }

func skipUnlessPrivileged(t *testing.T) {
	t.Helper()
	if !requireBPF() && os.Geteuid() != 0 {
		t.Skip("needs root (set SOCKEYE_REQUIRE_BPF=1 to fail instead of skipping)")
	}
}

// notAllowed reports whether err means the kernel does not offer the hook
// (lockdown or policy EPERM, hook type not built, symbol or tracefs missing)
// rather than a broken program.
func notAllowed(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) ||
		errors.Is(err, syscall.EPERM) ||
		errors.Is(err, errnoENOTSUPP) ||
		errors.Is(err, syscall.EOPNOTSUPP) ||
		errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, os.ErrNotExist)
}

func tracefsMounted() bool {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return true
		}
	}
	return false
}

type hook struct {
	rung   string
	spec   ebpf.ProgramSpec // Instructions and License are filled in per run
	attach func(*ebpf.Program) (link.Link, error)
}

var hooks = []hook{
	{
		rung: "fentry",
		spec: ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: "tcp_v4_rcv"},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry})
		},
	},
	{
		rung: "kprobe",
		spec: ebpf.ProgramSpec{Type: ebpf.Kprobe},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Kprobe("tcp_v4_rcv", p, nil)
		},
	},
	{
		rung: "tp_btf",
		spec: ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "netif_receive_skb"},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		},
	},
	{
		rung: "raw_tracepoint",
		spec: ebpf.ProgramSpec{Type: ebpf.RawTracepoint},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "netif_receive_skb", Program: p})
		},
	},
	{
		rung: "tracepoint",
		spec: ebpf.ProgramSpec{Type: ebpf.TracePoint},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint("net", "netif_receive_skb", p, nil)
		},
	},
}

// counterProgram increments counters[slot] each time it runs.
func counterProgram(mapFD int, slot uint32) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -4, int64(slot), asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

// loopbackTraffic opens a few TCP connections over 127.0.0.1 and moves a
// little data, so that tcp_v4_rcv and netif_receive_skb run.
func loopbackTraffic(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		for range 3 {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			_, err = io.Copy(io.Discard, c)
			c.Close()
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 3 {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("connect over loopback: %v", err)
		}
		if _, err := c.Write([]byte("sockeye smoke")); err != nil {
			t.Fatalf("write over loopback: %v", err)
		}
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loopback server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loopback server did not finish")
	}
}

func TestHooks(t *testing.T) {
	skipUnlessPrivileged(t)
	t.Logf("kernel label %q", os.Getenv("SOCKEYE_KERNEL_LABEL"))

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
	counters, err := ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: uint32(len(hooks)),
	})
	if err != nil {
		if !requireBPF() && notAllowed(err) {
			t.Skipf("BPF maps unavailable: %v", err)
		}
		t.Fatalf("create counter map: %v", err)
	}
	defer counters.Close()

	for i, h := range hooks {
		t.Run(h.rung, func(t *testing.T) {
			slot := uint32(i)
			spec := h.spec
			spec.Name = "smoke_" + strings.ReplaceAll(h.rung, "_", "")
			spec.License = "GPL"
			spec.Instructions = counterProgram(counters.FD(), slot)

			prog, err := ebpf.NewProgram(&spec)
			if err != nil {
				if notAllowed(err) {
					report(t, h.rung, resultUnsupported, "load: "+err.Error())
					t.Skipf("load: %v", err)
				}
				report(t, h.rung, resultFail, "load: "+err.Error())
				t.Fatalf("load: %v", err)
			}
			defer prog.Close()

			l, err := h.attach(prog)
			if err != nil {
				// Classic tracepoints (and kprobes without the kprobe PMU)
				// are found through tracefs: without it the hook is not
				// offered here, the program is fine.
				if notAllowed(err) || (!tracefsMounted() && strings.Contains(err.Error(), "tracefs")) {
					report(t, h.rung, resultUnsupported, "attach: "+err.Error())
					t.Skipf("attach: %v", err)
				}
				report(t, h.rung, resultFail, "attach: "+err.Error())
				t.Fatalf("attach: %v", err)
			}
			defer l.Close()

			var before uint64
			if err := counters.Lookup(slot, &before); err != nil {
				t.Fatalf("read counter: %v", err)
			}
			loopbackTraffic(t)
			var after uint64
			deadline := time.Now().Add(3 * time.Second)
			for {
				if err := counters.Lookup(slot, &after); err != nil {
					t.Fatalf("read counter: %v", err)
				}
				if after > before || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if after == before {
				report(t, h.rung, resultFail, "attached but never fired on loopback TCP traffic")
				t.Fatal("attached but never fired")
			}
			report(t, h.rung, resultPass, fmt.Sprintf("fired %d times", after-before))
		})
	}
}

// TestVeth creates two named network namespaces (as `ip netns add` does),
// joins them with a veth pair and sends a UDP datagram across. Both ends live
// in namespaces made here, so nothing touches the caller's namespace.
func TestVeth(t *testing.T) {
	skipUnlessPrivileged(t)
	const rung = "veth"
	if err := vethRoundTrip(t); err != nil {
		var unsupported *unsupportedError
		if errors.As(err, &unsupported) {
			report(t, rung, resultUnsupported, err.Error())
			t.Skip(err)
		}
		report(t, rung, resultFail, err.Error())
		t.Fatal(err)
	}
	report(t, rung, resultPass, "named netns pair, veth, UDP datagram delivered")
}

type unsupportedError struct{ err error }

func (e *unsupportedError) Error() string { return e.err.Error() }
func (e *unsupportedError) Unwrap() error { return e.err }

func classify(err error, format string, args ...any) error {
	err = fmt.Errorf(format+": %w", append(args, err)...)
	if notAllowed(err) {
		return &unsupportedError{err}
	}
	return err
}

func vethRoundTrip(t *testing.T) (err error) {
	t.Helper()
	// Namespace switches apply to the OS thread; keep this goroutine on it.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	restored := true
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked so the runtime discards it.
			restored = false
			t.Errorf("restore netns: %v", err)
		}
		if restored {
			runtime.UnlockOSThread()
		}
	}()

	suffix := fmt.Sprint(os.Getpid())
	nameA, nameB := "sockeye-smoke-a-"+suffix, "sockeye-smoke-b-"+suffix
	nsA, err := netns.NewNamed(nameA)
	if err != nil {
		return classify(err, "create netns %s", nameA)
	}
	defer nsA.Close()
	defer netns.DeleteNamed(nameA)
	nsB, err := netns.NewNamed(nameB)
	if err != nil {
		return classify(err, "create netns %s", nameB)
	}
	defer nsB.Close()
	defer netns.DeleteNamed(nameB)
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("back to original netns: %w", err)
	}

	// Route family only: a handle for every family fails where xfrm is
	// a module that is not loaded.
	hA, err := netlink.NewHandleAt(nsA, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", nameA, err)
	}
	defer hA.Close()
	hB, err := netlink.NewHandleAt(nsB, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", nameB, err)
	}
	defer hB.Close()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "smk0"},
		PeerName:      "smk1",
		PeerNamespace: netlink.NsFd(int(nsB)),
	}
	if err := hA.LinkAdd(veth); err != nil {
		return classify(err, "add veth pair")
	}
	// Documentation-only addresses; both ends are in namespaces made above.
	ipA, ipB := net.IPv4(192, 0, 2, 1), net.IPv4(192, 0, 2, 2)
	for _, end := range []struct {
		h    *netlink.Handle
		name string
		ip   net.IP
	}{{hA, "smk0", ipA}, {hB, "smk1", ipB}} {
		l, err := end.h.LinkByName(end.name)
		if err != nil {
			return fmt.Errorf("find %s: %w", end.name, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: end.ip, Mask: net.CIDRMask(24, 32)}}
		if err := end.h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("address %s: %w", end.name, err)
		}
		if err := end.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", end.name, err)
		}
	}

	// Sockets belong to the namespace current at creation time.
	if err := netns.Set(nsB); err != nil {
		return fmt.Errorf("enter %s: %w", nameB, err)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ipB})
	if err != nil {
		return fmt.Errorf("listen in %s: %w", nameB, err)
	}
	defer rx.Close()
	if err := netns.Set(nsA); err != nil {
		return fmt.Errorf("enter %s: %w", nameA, err)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return fmt.Errorf("dial from %s: %w", nameA, err)
	}
	defer tx.Close()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("back to original netns: %w", err)
	}

	want := "sockeye veth smoke"
	buf := make([]byte, 64)
	// The first datagram can be lost while the carrier comes up; resend.
	for attempt := 0; attempt < 10; attempt++ {
		if _, err := tx.Write([]byte(want)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if err := rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			return err
		}
		n, from, err := rx.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		if got := string(buf[:n]); got != want || !from.IP.Equal(ipA) {
			return fmt.Errorf("received %q from %v, want %q from %v", got, from, want, ipA)
		}
		return nil
	}
	return errors.New("no datagram crossed the veth pair within 5s")
}
