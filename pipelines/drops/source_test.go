//go:build linux

package drops

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	bpfdrops "github.com/sockeye/sockeye/bpf/drops"
	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testnet"
	"github.com/sockeye/sockeye/pipelines"
)

// How many packets each situation sends.
const nDrops = 25

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
		if strings.Contains(a.Err.Error(), "needs the kernel's own BTF") {
			continue
		}
		return false
	}
	return true
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), " ", "_")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// TestDropsRungs makes the three situations happen on every rung the
// kernel allows and checks where and why the kernel says it dropped.
func TestDropsRungs(t *testing.T) {
	k := kernel(t)
	net := newDropNet(t)
	for _, rung := range bpfdrops.Rungs {
		t.Run(rung, func(t *testing.T) {
			src := New("drops", config.DropsSource{Hook: rung, MaxEntries: 1024, Interface: true}, k, testLogger(t))
			if err := src.Start(context.Background()); err != nil {
				if unsupported(err) {
					testenv.Matrix("drops", rung, "unsupported", oneLine(err))
					t.Logf("rung %s not allowed here: %v", rung, err)
					return
				}
				testenv.Matrix("drops", rung, "fail", oneLine(err))
				t.Fatalf("start on rung %s: %v", rung, err)
			}
			defer src.Close()
			if src.Rung() != rung {
				t.Fatalf("pinned %s, got %s", rung, src.Rung())
			}
			ok := t.Run("situations", func(t *testing.T) { checkSituations(t, src, net) })
			result := "pass"
			if !ok {
				result = "fail"
			}
			testenv.Matrix("drops", rung, result, "")
		})
	}
	t.Run("auto", func(t *testing.T) {
		src := New("drops", config.DropsSource{Hook: "auto", MaxEntries: 1024}, k, testLogger(t))
		if err := src.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		want := hooks.TpBTF
		if !k.Native {
			want = hooks.RawTracepoint
		}
		if src.Rung() != want {
			t.Errorf("auto chose %s, want %s", src.Rung(), want)
		}
		collect(t, src)
		sendUDP(t, net4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")
		reasons := NewReasons(k.Types)
		udp := row{fn: "__udp4_lib_rcv", reason: reasonFor(reasons, "NO_SOCKET"), typ: "ipv4", tr: "udp"}
		b := collectUntil(t, src, func(b *pipelines.Batch) bool { return count(b, udp) >= nDrops })
		if got := count(b, udp); got < nDrops {
			t.Errorf("auto: %d UDP drops at __udp4_lib_rcv, want at least %d\n%s", got, nDrops, dump(b))
		}
		for _, r := range b.Rows {
			if _, ok := attr(r, AttrDevice); ok {
				t.Errorf("interface off, but a row has a device: %v", r.Attrs)
			}
		}
	})
}

// reasonFor is the name a drop reason has on this kernel: "unknown"
// before 5.17.
func reasonFor(r *Reasons, name string) string {
	if !r.Has() {
		return ReasonUnknown
	}
	return name
}

func net4(a, b, c, d byte) net.IP { return net.IPv4(a, b, c, d) }

func checkSituations(t *testing.T, src *Source, dn *dropNet) {
	reasons := src.reasons
	collect(t, src) // start from a clean slate

	// 1. TCP SYNs to a closed port on lo: the kernel answers RST and drops
	// the SYN, having no socket for it.
	tcpPort := closedPort(t, "tcp4")
	for i := 0; i < nDrops; i++ {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(tcpPort), time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("port %d is open", tcpPort)
		}
	}
	// 2. UDP datagrams to a closed port on lo, and on ::1 where lo has it.
	sendUDP(t, net4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")
	v6 := loHasIPv6()
	if v6 {
		sendUDP(t, net.IPv6loopback, closedPort(t, "udp6"), nDrops, "")
	}
	// 3. UDP datagrams into the test namespace, where an nftables rule
	// drops them on input.
	dn.send(t, nDrops)

	noSocket := reasonFor(reasons, "NO_SOCKET")
	b := collectUntil(t, src, func(b *pipelines.Batch) bool {
		return count(b, row{fn: "tcp_v4_rcv", tr: "tcp", dev: "lo"}) >= nDrops &&
			count(b, row{fn: "__udp4_lib_rcv", tr: "udp", dev: "lo"}) >= nDrops &&
			(!v6 || count(b, row{fn: "__udp6_lib_rcv", tr: "udp", dev: "lo"}) >= nDrops) &&
			count(b, row{dev: dn.pair.PeerDev}) >= nDrops
	})
	// Anything more on the namespace's device would come now.
	b.Rows = append(b.Rows, collect(t, src).Rows...)
	t.Logf("interval:\n%s", dump(b))
	var buf strings.Builder
	Dropwatch{}.Write(&buf, b)
	t.Logf("console:%s", buf.String())

	if got := count(b, row{fn: "tcp_v4_rcv", reason: noSocket, typ: "ipv4", tr: "tcp", dev: "lo"}); got < nDrops {
		t.Errorf("TCP SYN to a closed port: %d drops at tcp_v4_rcv (%s, lo), want at least %d", got, noSocket, nDrops)
	}
	if got := count(b, row{fn: "__udp4_lib_rcv", reason: noSocket, typ: "ipv4", tr: "udp", dev: "lo"}); got < nDrops {
		t.Errorf("UDP to a closed port: %d drops at __udp4_lib_rcv (%s, lo), want at least %d", got, noSocket, nDrops)
	}
	if v6 {
		if got := count(b, row{fn: "__udp6_lib_rcv", reason: noSocket, typ: "ipv6", tr: "udp", dev: "lo"}); got < nDrops {
			t.Errorf("UDP to a closed port on ::1: %d drops at __udp6_lib_rcv (%s, lo), want at least %d", got, noSocket, nDrops)
		}
	} else {
		t.Log("lo has no ::1: the IPv6 case was not run")
	}
	// The namespace's device sees nothing else: the count is exact. Where
	// the kernel frees the packet depends on its version: nf_hook_slow
	// acting on the NF_DROP verdict (5.10, 6.1), or nft_do_chain itself
	// (6.12, 6.18; "nft_do_chain [nf_tables]" where nf_tables is a module).
	nfReason := reasonFor(reasons, "NETFILTER_DROP")
	var nfGot int64
	for _, fn := range []string{"nf_hook_slow", "nft_do_chain"} {
		nfGot += count(b, row{fn: fn, reason: nfReason, typ: "ipv4", tr: "udp", dev: dn.pair.PeerDev})
	}
	if nfGot != nDrops {
		t.Errorf("nftables drop in the namespace: %d drops at nf_hook_slow or nft_do_chain (%s, %s), want exactly %d",
			nfGot, nfReason, dn.pair.PeerDev, nDrops)
	}
	if got := count(b, row{dev: dn.pair.PeerDev}); got != nDrops {
		t.Errorf("%d drops in all on %s, want exactly %d", got, dn.pair.PeerDev, nDrops)
	}
	for _, r := range b.Rows {
		if v, _ := attr(r, AttrReason); v == "CONSUMED" {
			t.Errorf("a normal free (SKB_CONSUMED) was counted: %v", r.Attrs)
		}
	}
	checkSelf(t, b)
}

// row selects rows; empty fields match anything.
type row struct{ fn, reason, typ, tr, dev string }

func attr(r pipelines.Row, k attribute.Key) (string, bool) {
	for _, kv := range r.Attrs {
		if kv.Key == k {
			return kv.Value.AsString(), true
		}
	}
	return "", false
}

func count(b *pipelines.Batch, sel row) int64 {
	var n int64
	for _, r := range b.Rows {
		fn, _ := attr(r, AttrLocation)
		reason, _ := attr(r, AttrReason)
		typ, _ := attr(r, AttrType)
		tr, _ := attr(r, AttrTransport)
		dev, _ := attr(r, AttrDevice)
		// Module code carries its module: "nft_do_chain [nf_tables]".
		if (sel.fn == "" || sel.fn == fn || strings.HasPrefix(fn, sel.fn+" [")) && (sel.reason == "" || sel.reason == reason) && (sel.typ == "" || sel.typ == typ) &&
			(sel.tr == "" || sel.tr == tr) && (sel.dev == "" || sel.dev == dev) {
			n += r.Values[ColPackets]
		}
	}
	return n
}

func dump(b *pipelines.Batch) string {
	var s strings.Builder
	for _, r := range b.Rows {
		fmt.Fprintf(&s, "  %d", r.Values[ColPackets])
		for _, kv := range r.Attrs {
			fmt.Fprintf(&s, " %s=%s", kv.Key, kv.Value.Emit())
		}
		s.WriteString("\n")
	}
	return s.String()
}

func collect(t *testing.T, src *Source) *pipelines.Batch {
	t.Helper()
	// Drops on lo are counted in the sender's own softirq; a short pause
	// covers the namespace's receive queue.
	time.Sleep(50 * time.Millisecond)
	b, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// collectUntil drains src until ok says the intervals drained so far hold
// what the test expects, or 10 s pass. Drops are counted in softirq, which a
// busy machine may run well after the sender has returned. The rows of all
// intervals are returned together; Self is the last interval's.
func collectUntil(t *testing.T, src *Source, ok func(*pipelines.Batch) bool) *pipelines.Batch {
	t.Helper()
	all := &pipelines.Batch{Metrics: Metrics}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b := collect(t, src)
		all.Rows = append(all.Rows, b.Rows...)
		all.Self = b.Self
		if ok(all) || time.Now().After(deadline) {
			return all
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkSelf(t *testing.T, b *pipelines.Batch) {
	t.Helper()
	got := map[string]int64{}
	reasons := map[string]bool{}
	for _, p := range b.Self {
		got[p.Name] = p.Value
		for _, a := range p.Attrs {
			if p.Name == "sockeye.agent.events.lost" && a.Key == "sockeye.reason" {
				reasons[a.Value.AsString()] = true
			}
		}
	}
	if !reasons["map_update_error"] || !reasons["probe_missed"] {
		t.Errorf("sockeye.agent.events.lost reasons %v, want map_update_error and probe_missed", reasons)
	}
	for _, n := range []string{"sockeye.agent.map.entries", "sockeye.agent.map.capacity", "sockeye.agent.map.full", "sockeye.agent.events.lost"} {
		if _, ok := got[n]; !ok {
			t.Errorf("self metric %s missing", n)
		}
	}
	if got["sockeye.agent.map.capacity"] != 1024 || got["sockeye.agent.map.full"] != 0 {
		t.Errorf("self metrics %v", got)
	}
}

// closedPort returns a loopback port nothing listens on (bound, then released).
func closedPort(t *testing.T, network string) int {
	t.Helper()
	host := "127.0.0.1"
	if strings.HasSuffix(network, "6") {
		host = "::1"
	}
	addr := net.JoinHostPort(host, "0")
	if strings.HasPrefix(network, "tcp") {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// sendUDP sends n datagrams to ip:port from an unconnected socket (a
// connected one would fail every other send with the previous datagram's
// ICMP port unreachable), bound to device dev when given.
func sendUDP(t *testing.T, ip net.IP, port, n int, dev string) {
	t.Helper()
	network := "udp4"
	if ip.To4() == nil {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if dev != "" {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), dev) }); err != nil || serr != nil {
			t.Fatalf("bind to %s: %v %v", dev, err, serr)
		}
	}
	for i := 0; i < n; i++ {
		if _, err := c.WriteToUDP([]byte("sockeye drops test"), &net.UDPAddr{IP: ip, Port: port}); err != nil {
			t.Fatal(err)
		}
	}
}

func loHasIPv6() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// dropNet is a namespace joined by a veth pair whose input hook drops UDP
// to one port.
type dropNet struct {
	pair *testnet.Pair
	port int
}

// Addresses of this test's pair. testnet gives every pair the same ones,
// and two host interfaces holding one subnet would let a test running in
// parallel route into this namespace; these are this test's alone.
var (
	dropHostIP = net.IPv4(198, 18, 61, 1)
	dropPeerIP = net.IPv4(198, 18, 61, 2)
)

func newDropNet(t *testing.T) *dropNet {
	t.Helper()
	p := testnet.NewPair(t, "d"+strconv.Itoa(os.Getpid()%100000))
	readdress(t, p, dropHostIP, dropPeerIP)
	p.PinNeighbours(t)
	dn := &dropNet{pair: p, port: 9}
	if err := dropUDPInput(p, dn.port); err != nil {
		t.Fatalf("nftables rule in the namespace: %v", err)
	}
	return dn
}

// readdress moves the pair to host/peer addresses of its own /30.
func readdress(t *testing.T, p *testnet.Pair, host, peer net.IP) {
	t.Helper()
	move := func(dev string, from, to net.IP) error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if err := netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: from, Mask: net.CIDRMask(30, 32)}}); err != nil {
			return fmt.Errorf("%s: del %s: %w", dev, from, err)
		}
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: to, Mask: net.CIDRMask(30, 32)}})
	}
	if err := move(p.HostDev, p.HostIP, host); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(func() error { return move(p.PeerDev, p.PeerIP, peer) }); err != nil {
		t.Fatal(err)
	}
	p.HostIP, p.PeerIP = host, peer
}

// dropUDPInput adds, inside the pair's namespace, the equivalent of
//
//	nft add table ip sockeye_test
//	nft add chain ip sockeye_test input '{ type filter hook input priority 0; }'
//	nft add rule ip sockeye_test input udp dport PORT drop
//
// through netlink, so no nft binary is needed (the kernel matrix's guests
// have none).
func dropUDPInput(p *testnet.Pair, port int) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(p.NS)))
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "sockeye_test"})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	dport := make([]byte, 2)
	binary.BigEndian.PutUint16(dport, uint16(port))
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

// send sends n datagrams from the host to the namespace's dropped port,
// out of this pair's host device whatever else the host routes.
func (dn *dropNet) send(t *testing.T, n int) {
	sendUDP(t, dn.pair.PeerIP, dn.port, n, dn.pair.HostDev)
}

// TestMapFull: a map with room for one key counts what does not fit in
// sockeye.agent.map.full, and the next interval starts empty again.
func TestMapFull(t *testing.T) {
	k := kernel(t)
	src := New("drops/full", config.DropsSource{Hook: "auto", MaxEntries: 1}, k, testLogger(t))
	if err := src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	collect(t, src)
	sendUDP(t, net4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")
	for i := 0; i < nDrops; i++ {
		if c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(closedPort(t, "tcp4")), time.Second); err == nil {
			c.Close()
		}
	}
	self := map[string]int64{}
	var maxEntries int64
	collectUntil(t, src, func(b *pipelines.Batch) bool {
		for _, p := range b.Self {
			self[p.Name] = p.Value
		}
		maxEntries = max(maxEntries, self["sockeye.agent.map.entries"])
		return self["sockeye.agent.map.full"] >= nDrops
	})
	// UDP and TCP drops are two keys; at most one fits.
	if self["sockeye.agent.map.full"] < nDrops || maxEntries != 1 || self["sockeye.agent.map.capacity"] != 1 {
		t.Errorf("self metrics %v (entries at most %d): want map.full >= %d, one entry of one", self, maxEntries, nDrops)
	}
}

// TestHiddenSymbols: where kallsyms shows only zeros, locations are raw
// addresses, and the log says why once.
func TestHiddenSymbols(t *testing.T) {
	k := kernel(t)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	src := New("drops", config.DropsSource{Hook: "auto", MaxEntries: 256}, k, log)
	// What /proc/kallsyms shows a process that may not see addresses.
	hidden := t.TempDir() + "/kallsyms"
	if err := os.WriteFile(hidden, []byte("0000000000000000 T _text\n0000000000000000 t tcp_v4_rcv\n0000000000000000 t __udp4_lib_rcv\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src.kallsyms = hidden
	if err := src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	collect(t, src)
	sendUDP(t, net4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")
	b := collectUntil(t, src, func(b *pipelines.Batch) bool { return count(b, row{tr: "udp"}) >= nDrops })
	var udp int64
	for _, r := range b.Rows {
		fn, _ := attr(r, AttrLocation)
		if !strings.HasPrefix(fn, "0xffffffff") {
			t.Errorf("location %q with hidden symbols, want a raw address", fn)
		}
		if tr, _ := attr(r, AttrTransport); tr == "udp" {
			udp += r.Values[ColPackets]
		}
	}
	if udp < nDrops {
		t.Errorf("%d UDP drops, want at least %d\n%s", udp, nDrops, dump(b))
	}
	if n := strings.Count(logs.String(), "shown as raw addresses"); n != 1 || !strings.Contains(logs.String(), "kptr_restrict") {
		t.Errorf("want one warning naming kptr_restrict, got %d:\n%s", n, logs.String())
	}
}
