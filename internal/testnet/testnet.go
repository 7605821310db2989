// Package testnet builds small test networks: a network namespace joined to
// the host's by a veth pair, with fixed addresses and static neighbours so
// no ARP or IPv6 chatter disturbs exact packet counts.
package testnet

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Pair is a veth pair with one end in a namespace of its own.
type Pair struct {
	HostDev, PeerDev string
	HostIP, PeerIP   net.IP
	HostIndex        int
	PeerIndex        int
	NS               netns.NsHandle
	// HostIP6 and PeerIP6 are set with WithIPv6, nil otherwise.
	HostIP6, PeerIP6 net.IP
	// The pair's own IPv6 subnet, used when WithIPv6 asks for it.
	hostIP6, peerIP6 net.IP
}

// Option changes how NewPair builds the pair.
type Option func(*Pair)

// WithIPv6 keeps IPv6 on the pair and gives both ends an address that needs
// no duplicate address detection, usable at once. Router solicitations stay
// off; multicast listener reports may still appear on the link.
func WithIPv6() Option {
	return func(p *Pair) { p.HostIP6, p.PeerIP6 = p.hostIP6, p.peerIP6 }
}

// Addresses come from 198.18.0.0/15, the range set aside for benchmark
// networks, and 2001:2::/48, the IPv6 benchmarking range; they exist only
// inside this machine's test namespaces. Each pair claims a subnet of its own
// (see claimSubnet): test binaries of several packages run at once, and two
// pairs with the same addresses would route each other's packets.
const maxSubnets = 1024

func subnetAddrs(i int) (host, peer, host6, peer6 net.IP) {
	host = net.IPv4(198, 18, byte(8+i/64), byte(i%64*4+1))
	peer = net.IPv4(198, 18, byte(8+i/64), byte(i%64*4+2))
	host6 = net.ParseIP(fmt.Sprintf("2001:2:0:%x::1", 0x100+i))
	peer6 = net.ParseIP(fmt.Sprintf("2001:2:0:%x::2", 0x100+i))
	return
}

// claimSubnet takes the first subnet no other live pair holds, by an
// exclusive lock on a file named after it. The kernel drops the lock when the
// file is closed or the process dies, so a killed test leaks nothing.
func claimSubnet() (int, *os.File, error) {
	dir := "/tmp/sockeye-testnet"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	for i := 0; i < maxSubnets; i++ {
		f, err := os.OpenFile(fmt.Sprintf("%s/%d.lock", dir, i), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return i, f, nil
		}
		f.Close()
	}
	return 0, nil, fmt.Errorf("all %d test subnets are in use", maxSubnets)
}

// NewPair makes a namespace and a veth pair named after tag (at most 8
// characters: interface names are 15 at most). Everything is removed at test end.
func NewPair(t testing.TB, tag string, opts ...Option) *Pair {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the original netns: %v", err)
	}
	subnet, lock, err := claimSubnet()
	if err != nil {
		ns.Close()
		t.Fatalf("test subnet: %v", err)
	}
	hostIP, peerIP, hostIP6, peerIP6 := subnetAddrs(subnet)
	p := &Pair{HostDev: "sk" + tag + "h", PeerDev: "sk" + tag + "p", HostIP: hostIP, PeerIP: peerIP, NS: ns,
		hostIP6: hostIP6, peerIP6: peerIP6}
	for _, o := range opts {
		o(p)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(p.HostDev); err == nil {
			netlink.LinkDel(l)
		}
		ns.Close()
		lock.Close() // the subnet is free again only once its link is gone
	})
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.HostDev}, PeerName: p.PeerDev}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", p.HostDev, err)
	}
	peer, err := netlink.LinkByName(p.PeerDev)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		t.Fatalf("move %s into the namespace: %v", p.PeerDev, err)
	}
	host, err := netlink.LinkByName(p.HostDev)
	if err != nil {
		t.Fatal(err)
	}
	p.HostIndex = host.Attrs().Index
	disableIPv6(p.HostDev)
	if err := setup(host, hostIP, peerIP); err != nil {
		t.Fatalf("host side: %v", err)
	}
	if err := p.setupIPv6(host, p.HostDev, p.HostIP6); err != nil {
		t.Fatalf("host side: %v", err)
	}
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	pl, err := nh.LinkByName(p.PeerDev)
	if err != nil {
		t.Fatal(err)
	}
	p.PeerIndex = pl.Attrs().Index
	if err := p.Do(func() error {
		disableIPv6(p.PeerDev)
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		if err := setup(pl, peerIP, hostIP); err != nil {
			return err
		}
		return p.setupIPv6(pl, p.PeerDev, p.PeerIP6)
	}); err != nil {
		t.Fatalf("namespace side: %v", err)
	}
	return p
}

// setup gives link its address, brings it up and pins the other end's MAC.
func setup(l netlink.Link, self, other net.IP) error {
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: self, Mask: net.CIDRMask(30, 32)}}); err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	return nil
}

// PinNeighbours adds permanent neighbour entries on both sides, so the
// first packet does not wait for ARP.
func (p *Pair) PinNeighbours(t testing.TB) {
	t.Helper()
	host, err := netlink.LinkByName(p.HostDev)
	if err != nil {
		t.Fatal(err)
	}
	var peerMAC net.HardwareAddr
	if err := p.Do(func() error {
		l, err := netlink.LinkByName(p.PeerDev)
		if err != nil {
			return err
		}
		peerMAC = l.Attrs().HardwareAddr
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: p.HostIP, HardwareAddr: host.Attrs().HardwareAddr, Family: netlink.FAMILY_V4})
	}); err != nil {
		t.Fatalf("neighbour in namespace: %v", err)
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: host.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: p.PeerIP, HardwareAddr: peerMAC, Family: netlink.FAMILY_V4}); err != nil {
		t.Fatalf("neighbour on host: %v", err)
	}
	if p.HostIP6 == nil {
		return
	}
	if err := p.Do(func() error {
		l, err := netlink.LinkByName(p.PeerDev)
		if err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: p.HostIP6, HardwareAddr: host.Attrs().HardwareAddr, Family: netlink.FAMILY_V6})
	}); err != nil {
		t.Fatalf("IPv6 neighbour in namespace: %v", err)
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: host.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: p.PeerIP6, HardwareAddr: peerMAC, Family: netlink.FAMILY_V6}); err != nil {
		t.Fatalf("IPv6 neighbour on host: %v", err)
	}
}

// Do runs fn on a thread inside the namespace. Sockets made there stay in it.
func (p *Pair) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(p.NS); err != nil {
		return err
	}
	defer netns.Set(orig)
	return fn()
}

// setupIPv6 turns IPv6 back on for the link and adds addr, without DAD.
func (p *Pair) setupIPv6(l netlink.Link, dev string, addr net.IP) error {
	if addr == nil {
		return nil
	}
	for _, k := range []string{"accept_ra", "router_solicitations", "disable_ipv6"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/"+k, []byte("0"), 0o644); err != nil {
			return err
		}
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr, Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("addr %s: %w", addr, err)
	}
	return nil
}

// disableIPv6 keeps router solicitations and MLD reports off the link.
func disableIPv6(dev string) {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0o644)
}
