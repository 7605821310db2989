//go:build linux

package drops

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

func TestFindTracefs(t *testing.T) {
	const mountinfo = `22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
40 22 0:12 /x /mnt/bind rw,relatime - tracefs nodev rw
41 22 0:12 / /sys/kernel/my\040tracing rw,relatime shared:20 - tracefs nodev rw
42 22 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
`
	if got := findTracefs(strings.NewReader(mountinfo)); got != "/sys/kernel/my tracing" {
		t.Errorf("findTracefs = %q", got)
	}
	if got := findTracefs(strings.NewReader("22 28 0:21 / /sys rw - sysfs sysfs rw\n")); got != "" {
		t.Errorf("no tracefs: got %q", got)
	}
}

func kernel(t *testing.T) *hooks.Kernel {
	return testenv.Kernel(t)
}

// TestMountTracefs mounts a second tracefs in a temporary directory and
// attaches through it, as the loader does where none is mounted; the
// system's own tracefs mounts are left alone.
func TestMountTracefs(t *testing.T) {
	k := kernel(t)
	dir := t.TempDir()
	if err := MountTracefs(dir); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if _, err := os.Stat(filepath.Join(dir, "events", "skb", "kfree_skb", "id")); err != nil {
		t.Fatalf("tracefs mounted at %s has no skb:kfree_skb: %v", dir, err)
	}
	spec, err := loadDrops()
	if err != nil {
		t.Fatal(err)
	}
	hasReason, err := tracepointHasReason(k.Types)
	if err != nil {
		t.Fatal(err)
	}
	name := dropsProgTpKfreeSkb
	if !hasReason {
		name = dropsProgTpKfreeSkbNoreason
	}
	for n := range spec.Programs {
		if n != name {
			delete(spec.Programs, n)
		}
	}
	if err := setConsts(spec, false, k.Types); err != nil {
		t.Fatal(err)
	}
	p := &Probe{}
	defer p.Close()
	coll, err := newCollection(spec, k)
	if err != nil {
		t.Fatal(err)
	}
	p.coll = coll
	c, err := attachTracepoint(dir, "skb", "kfree_skb", coll.Programs[name])
	if err != nil {
		t.Fatal(err)
	}
	p.closers = append(p.closers, c)
	if _, err := attachTracepoint(dir, "skb", "no_such_event", coll.Programs[name]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing event: got %v, want ErrNotExist", err)
	}
}

// TestTracepointHasReason reads the real kernel's signature and synthetic
// ones for the three shapes kfree_skb has had.
func TestTracepointHasReason(t *testing.T) {
	voidPtr := &btf.Pointer{Target: &btf.Void{}}
	skb := &btf.Pointer{Target: &btf.Struct{Name: "sk_buff"}}
	reason := &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: []btf.EnumValue{{Name: "SKB_CONSUMED", Value: 1}}}
	sk := &btf.Pointer{Target: &btf.Struct{Name: "sock"}}
	spec := func(params ...btf.Type) *btf.Spec {
		var ps []btf.FuncParam
		for _, p := range params {
			ps = append(ps, btf.FuncParam{Type: p})
		}
		b, err := btf.NewBuilder([]btf.Type{
			&btf.Typedef{Name: "btf_trace_kfree_skb", Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: ps}}},
			reason,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := b.Marshal(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := btf.LoadSpecFromReader(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name string
		spec *btf.Spec
		want bool
	}{
		{"5.10 (skb, location)", spec(voidPtr, skb, voidPtr), false},
		{"6.1 (skb, location, reason)", spec(voidPtr, skb, voidPtr, reason), true},
		{"6.12 (skb, location, reason, rx_sk)", spec(voidPtr, skb, voidPtr, reason, sk), true},
	}
	for _, c := range cases {
		got, err := tracepointHasReason(c.spec)
		if err != nil || got != c.want {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if v, ok := ConsumedReason(cases[0].spec); !ok || v != 1 {
		t.Errorf("ConsumedReason = %d, %v", v, ok)
	}

	k := kernel(t)
	got, err := tracepointHasReason(k.Types)
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	want := k.Types.TypeByName("skb_drop_reason", &e) == nil
	if got != want {
		t.Errorf("this kernel: has reason %v, but enum skb_drop_reason exists: %v", got, want)
	}
}

// TestRungsCountUDPNoSocket loads every rung and checks a UDP datagram to a
// closed port on lo is counted. The pipelines/drops tests check the details.
func TestRungsCountUDPNoSocket(t *testing.T) {
	k := kernel(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, rung := range Rungs {
		for _, noReason := range []bool{false, true} {
			name := rung
			if noReason {
				name += "/noreason"
			}
			t.Run(name, func(t *testing.T) {
				if rung == hooks.TpBTF && !k.Native {
					// The BTF came from a file: tp_btf attaches by the
					// kernel's own type ids, and this kernel has none.
					t.Skip("tp_btf needs the kernel's own BTF (" + hooks.KernelBTFPath + ")")
				}
				countUDP(t, Options{Hook: rung, MaxEntries: 1024, Kernel: k, Log: log, noReason: noReason})
			})
		}
	}
}

func countUDP(t *testing.T, opts Options) {
	p, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if opts.noReason && p.HasReason() {
		t.Errorf("noreason variant reports reasons")
	}
	defer p.Close()
	port := closedUDPPort(t)
	// Unconnected: a connected socket would fail every other send
	// with the ICMP port unreachable of the one before.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		if _, err := c.WriteToUDP([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	// Drops on lo are counted in softirq, which a busy machine may run
	// after the sender returns: drain until they are all in.
	var udp uint64
	for deadline := time.Now().Add(10 * time.Second); udp < 5 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := p.Drain(func(k Key, n uint64) {
			if k.L3 == unix.ETH_P_IP && k.L4 == unix.IPPROTO_UDP {
				udp += n
				if opts.noReason && k.Reason != ReasonNone {
					t.Errorf("noreason variant: reason %d", k.Reason)
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if udp < 5 {
		t.Errorf("rung %s: %d UDP drops counted, want at least 5", opts.Hook, udp)
	}
	// Drained: what is left was dropped since.
	left := 0
	p.Drain(func(Key, uint64) { left++ })
	if left > 50 {
		t.Errorf("%d keys after a drain", left)
	}
	st, err := p.Stats()
	if err != nil || st.MapFull != 0 {
		t.Errorf("stats %+v, %v", st, err)
	}
}

// closedUDPPort returns a loopback port nothing listens on (bound, then released).
func closedUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}
