//go:build linux

package tcpreceive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpftcp "github.com/sockeye/sockeye/bpf/tcpreceive"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/console"
	"github.com/sockeye/sockeye/exporters/pcapng"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testnet"
	"github.com/sockeye/sockeye/pipelines"
)

func kernel(t *testing.T) *hooks.Kernel {
	return testenv.Kernel(t)
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// inGuest is true inside the kernel matrix's QEMU guests, which have
// neither the Go toolchain nor Wireshark's tools.
func inGuest() bool {
	label := os.Getenv("SOCKEYE_KERNEL_LABEL")
	return label != "" && !strings.HasPrefix(label, "host")
}

// haveTools reports whether tshark, tcpdump and capinfos can check the
// files. On a host they must (CI installs them); in a matrix guest the
// files are checked with gopacket alone.
func haveTools(t *testing.T) bool {
	t.Helper()
	for _, tool := range []string{"tshark", "tcpdump", "capinfos"} {
		if _, err := exec.LookPath(tool); err != nil {
			if inGuest() {
				return false
			}
			testenv.Unavailable(t, tool+" is not installed (tools/install-deps.sh test installs it)")
		}
	}
	return true
}

// needHost skips end-to-end tests in the matrix guests: they build the
// binary with the Go toolchain. The host runs them (make test, CI).
func needHost(t *testing.T) {
	t.Helper()
	if inGuest() {
		t.Skip("end-to-end: runs on the host, where the binary can be built")
	}
}

// decoded is one packet of a file as gopacket reads it.
type decoded struct {
	iface, src, dst string
	sport, dport    uint16
	flags           uint16
	comment         string
	length          int
	udp             bool
}

func (d decoded) String() string {
	return fmt.Sprintf("%s|%s|%d|%d|0x%04x|%s|%d", d.iface, d.src, d.sport, d.dport, d.flags, d.comment, d.length)
}

// readPackets reads a pcapng file with gopacket, down to TCP or UDP.
func readPackets(t *testing.T, file string) []decoded {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []decoded
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		ifc, _ := r.Interface(ci.InterfaceIndex)
		d := decoded{iface: ifc.Name, length: ci.Length, comment: strings.Join(opts.Comments, ";")}
		pkt := gopacket.NewPacket(data, layers.LayerTypeLinuxSLL, gopacket.Default)
		if n := pkt.NetworkLayer(); n != nil {
			d.src, d.dst = n.NetworkFlow().Src().String(), n.NetworkFlow().Dst().String()
		}
		if tcp, ok := pkt.TransportLayer().(*layers.TCP); ok {
			d.sport, d.dport = uint16(tcp.SrcPort), uint16(tcp.DstPort)
			for _, b := range []struct {
				on  bool
				bit uint16
			}{{tcp.FIN, pipelines.TCPFin}, {tcp.SYN, pipelines.TCPSyn}, {tcp.RST, pipelines.TCPRst}, {tcp.PSH, pipelines.TCPPsh},
				{tcp.ACK, pipelines.TCPAck}, {tcp.URG, pipelines.TCPUrg}, {tcp.ECE, pipelines.TCPEce}, {tcp.CWR, pipelines.TCPCwr}, {tcp.NS, pipelines.TCPAe}} {
				if b.on {
					d.flags |= b.bit
				}
			}
		}
		if udp, ok := pkt.TransportLayer().(*layers.UDP); ok {
			d.sport, d.dport, d.udp = uint16(udp.SrcPort), uint16(udp.DstPort), true
		}
		out = append(out, d)
	}
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
		if strings.Contains(msg, "CONFIG_KPROBES") || strings.Contains(msg, "own BTF") || strings.Contains(msg, "tracefs") {
			continue
		}
		return false
	}
	return true
}

// capture runs a source with a pcapng exporter (and a console) around
// traffic, in process, and returns the file and the console output.
type capture struct {
	file    string
	console string
	counts  Counts
	written pcapng.Counts
}

func runCapture(t *testing.T, k *hooks.Kernel, cfg config.TCPReceiveSource, traffic func() error) (*capture, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "capture.pcapng")
	src := New("tcp_receive", cfg, k, testLogger())
	if err := src.Start(context.Background()); err != nil {
		return nil, err
	}
	defer src.Close()
	w, err := pcapng.New("pcapng", pcapng.Options{Path: file, Application: "sockeye test", Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	p := &pipelines.PacketsPipeline{Name: "packets/test", Sources: []pipelines.PacketSource{src},
		Exporters: []pipelines.PacketExporter{w, console.New("console", &out)}, Log: testLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	terr := traffic()
	// Packets sent are received before the send returns on lo and veth;
	// the pause covers a softirq deferred to ksoftirqd.
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatalf("pcapng: %v", err)
	}
	if terr != nil {
		t.Fatalf("traffic: %v", terr)
	}
	return &capture{file: file, console: out.String(), counts: src.Counts(), written: w.Counts()}, nil
}

type syncBuffer = testenv.SyncBuffer

// tsharkFields reads a file with tshark and returns one line per packet.
func tsharkFields(t *testing.T, file string, fields ...string) []string {
	t.Helper()
	args := []string{"-r", file, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v (%s)", file, err, stderrOf(err))
	}
	return lines(string(out))
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// checkReaders has capinfos and tcpdump read the file without complaint.
func checkReaders(t *testing.T, file string, want int) []string {
	t.Helper()
	out, err := exec.Command("capinfos", file).CombinedOutput()
	if err != nil || bytes.Contains(bytes.ToLower(out), []byte("error")) {
		t.Fatalf("capinfos %s: %v\n%s", file, err, out)
	}
	cmd := exec.Command("tcpdump", "-nn", "-r", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	tout, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, stderr.String())
	}
	got := lines(string(tout))
	if len(got) != want {
		t.Fatalf("tcpdump -r shows %d packets, want %d:\n%s", len(got), want, tout)
	}
	return got
}

type path struct {
	name     string
	src, dst net.IP
	iface    string
	// in runs the sender in the right network namespace.
	in func(func() error) error
}

func paths(t *testing.T) []path {
	pair := testnet.NewPair(t, "tcprx", testnet.WithIPv6())
	pair.PinNeighbours(t)
	here := func(f func() error) error { return f() }
	return []path{
		{"lo-ipv4", net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1), "lo", here},
		{"lo-ipv6", net.IPv6loopback, net.IPv6loopback, "lo", here},
		{"veth-ipv4", pair.HostIP, pair.PeerIP, pair.PeerDev, here},
		{"veth-ipv6", pair.HostIP6, pair.PeerIP6, pair.PeerDev, here},
	}
}

func ports() (uint16, uint16) {
	p := uint16(20000 + rand.IntN(20000))
	return p, p + 1
}

// TestCaptureSegments sends every kind of segment over lo and over a veth
// pair into a namespace, IPv4 and IPv6, on every rung this kernel allows,
// and checks that tshark, tcpdump and the console show exactly them.
func TestCaptureSegments(t *testing.T) {
	k := kernel(t)
	tools := haveTools(t)
	ps := paths(t)
	for _, rung := range bpftcp.Rungs {
		t.Run(rung, func(t *testing.T) {
			result, note := "pass", ""
			defer func() {
				if t.Failed() && result == "pass" {
					result = "fail"
				}
				testenv.Matrix("tcp_receive", rung, result, note)
			}()
			for _, p := range ps {
				ok := t.Run(p.name, func(t *testing.T) {
					sport, dport := ports()
					filter, err := config.ParseCaptureFilter(fmt.Sprintf("src port %d and dst port %d", sport, dport))
					if err != nil {
						t.Fatal(err)
					}
					segs := segments()
					cfg := config.TCPReceiveSource{Hook: rung, Snaplen: 65535, Filter: filter, BufferSize: 1 << 20, Attribution: "socket"}
					c, err := runCapture(t, k, cfg, func() error {
						return p.in(func() error { return sendSegments(p.src, p.dst, sport, dport, segs) })
					})
					if err != nil {
						if unsupported(err) {
							result, note = "unsupported", strings.ReplaceAll(err.Error(), " ", "_")
							t.Skip(err)
						}
						t.Fatal(err)
					}
					checkSegments(t, c, p, sport, dport, segs, tools)
				})
				if result == "unsupported" {
					t.Skip("rung not available here")
				}
				if !ok && note == "" {
					note = p.name + "_failed"
				}
			}
		})
	}
}

func checkSegments(t *testing.T, c *capture, p path, sport, dport uint16, segs []segment, tools bool) {
	t.Helper()
	if c.written.Written != uint64(len(segs)) || c.counts.Delivered != uint64(len(segs)) || c.counts.KernelDropped != 0 {
		t.Errorf("counts: source %+v, written %+v; want %d delivered and written, none dropped", c.counts, c.written, len(segs))
	}
	var want []string
	for _, s := range segs {
		ipLen := 20
		if p.src.To4() == nil {
			ipLen = 40
		}
		want = append(want, fmt.Sprintf("%s|%s|%d|%d|0x%04x||%d", p.iface, p.src, sport, dport, s.flags, 16+ipLen+20+len(s.payload)))
	}
	var read []string
	for _, d := range readPackets(t, c.file) {
		read = append(read, d.String())
	}
	if strings.Join(read, "\n") != strings.Join(want, "\n") {
		t.Errorf("gopacket reads:\n%s\nwant:\n%s", strings.Join(read, "\n"), strings.Join(want, "\n"))
	}
	checkConsole(t, c, p, sport, dport, segs)
	if !tools {
		return
	}
	src := "ip.src"
	if p.src.To4() == nil {
		src = "ipv6.src"
	}
	got := tsharkFields(t, c.file, "frame.interface_name", src, "tcp.srcport", "tcp.dstport", "tcp.flags", "frame.comment", "frame.len")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark shows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	dump := checkReaders(t, c.file, len(segs))
	for i, s := range segs {
		if i >= len(dump) {
			break
		}
		addrs := fmt.Sprintf("%s.%d > %s.%d:", p.src, sport, p.dst, dport)
		if !strings.Contains(dump[i], addrs) {
			t.Errorf("tcpdump line %d %q: want %q", i, dump[i], addrs)
		}
		if s.flags&pipelines.TCPAe == 0 && !strings.Contains(dump[i], "Flags ["+tcpdumpFlags(s.flags)+"]") {
			t.Errorf("tcpdump line %d %q: want flags [%s] (%s)", i, dump[i], tcpdumpFlags(s.flags), s.name)
		}
	}
}

// checkConsole compares the console with the seed's rows for segs.
func checkConsole(t *testing.T, c *capture, p path, sport, dport uint16, segs []segment) {
	t.Helper()
	var rows []string
	for _, l := range lines(c.console) {
		if !strings.HasPrefix(l, "---") && !strings.Contains(l, "Source IP") {
			rows = append(rows, l)
		}
	}
	var wantRows []string
	for _, s := range segs {
		var b bytes.Buffer
		Row(&b, &pipelines.Packet{Proto: 6, Src: addr(p.src), Dst: addr(p.dst), SrcPort: sport, DstPort: dport, TCPFlags: s.flags})
		wantRows = append(wantRows, strings.TrimSuffix(b.String(), "\n"))
	}
	if strings.Join(rows, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("console rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(wantRows, "\n"))
	}
	if !strings.HasPrefix(c.console, header) {
		t.Errorf("console does not start with the seed's header:\n%s", c.console)
	}
}

// TestCaptureOwner checks the owner comment of segments to a listening
// socket, and UDP datagrams with --udp.
func TestCaptureOwner(t *testing.T) {
	k := kernel(t)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	var tcpPort, udpPort int
	cfg := config.TCPReceiveSource{Snaplen: 128, HeadersOnly: true, UDP: true, BufferSize: 1 << 20, Attribution: "socket"}
	// The ports are only known once the sockets exist, after Start: filter
	// on the loopback interface instead and pick the rows out.
	cfg.Interface = "lo"
	c, err := runCapture(t, k, cfg, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		tcpPort = ln.Addr().(*net.TCPAddr).Port
		go func() {
			if c, err := ln.Accept(); err == nil {
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		conn, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		conn.Write([]byte("hello"))
		conn.Close()
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		defer u.Close()
		udpPort = u.LocalAddr().(*net.UDPAddr).Port
		tx, err := net.DialUDP("udp4", nil, u.LocalAddr().(*net.UDPAddr))
		if err != nil {
			return err
		}
		defer tx.Close()
		for range 3 {
			tx.Write([]byte("datagram"))
			buf := make([]byte, 64)
			u.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := u.Read(buf); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("pid=%d comm=%s uid=%d", os.Getpid(), strings.TrimSpace(string(comm)), os.Getuid())
	var syn, udp int
	for _, d := range readPackets(t, c.file) {
		if !d.udp && int(d.dport) == tcpPort && d.flags == pipelines.TCPSyn {
			syn++
			if d.comment != owner {
				t.Errorf("SYN to the listener: comment %q, want %q", d.comment, owner)
			}
		}
		if d.udp && int(d.dport) == udpPort {
			udp++
			// The receiving socket has been read from before on 6.3+ only.
			if d.comment != "" && d.comment != owner {
				t.Errorf("datagram: comment %q, want %q or none", d.comment, owner)
			}
		}
	}
	if syn != 1 || udp != 3 {
		t.Errorf("saw %d SYNs to the listener and %d datagrams, want 1 and 3", syn, udp)
	}
	if haveTools(t) {
		// Headers only: the cooked header, IP and UDP, no payload.
		for _, l := range tsharkFields(t, c.file, "udp.dstport", "frame.cap_len") {
			if f := strings.Split(l, "|"); f[0] == strconv.Itoa(udpPort) && f[1] != "44" {
				t.Errorf("datagram captured %s bytes, want 44", f[1])
			}
		}
	}
	wantRow := fmt.Sprintf("  %5d  UDP", udpPort)
	if strings.Count(c.console, wantRow) != 3 {
		t.Errorf("console: want 3 UDP rows ending %q:\n%s", wantRow, c.console)
	}
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// TestCaptureOwnerTCPClient checks the owner comment of segments to a TCP
// client once it has sent, with TCP alone captured: the owner is then
// learned at TCP's own tracepoints (or sock_send_length on 6.3-6.5), which
// UDP traffic does not run.
func TestCaptureOwnerTCPClient(t *testing.T) {
	k := kernel(t)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	sendHook := k.HasTracepoint("tcp_sendmsg_locked") || k.HasTracepoint("sock_send_length")
	cfg := config.TCPReceiveSource{Snaplen: 128, HeadersOnly: true, BufferSize: 1 << 20, Attribution: "socket", Interface: "lo"}
	var clientPort int
	c, err := runCapture(t, k, cfg, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				io.Copy(c, c) // echo
				c.Close()
			}
		}()
		conn, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		clientPort = conn.LocalAddr().(*net.TCPAddr).Port
		buf := make([]byte, 5)
		for range 3 {
			if _, err := conn.Write([]byte("hello")); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadFull(conn, buf); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("pid=%d comm=%s uid=%d", os.Getpid(), strings.TrimSpace(string(comm)), os.Getuid())
	echoes := 0
	for _, d := range readPackets(t, c.file) {
		if d.udp || int(d.dport) != clientPort || d.flags&pipelines.TCPPsh == 0 {
			continue
		}
		echoes++
		switch {
		case sendHook && d.comment != owner:
			t.Errorf("echo to the client (it had sent): comment %q, want %q", d.comment, owner)
		case !sendHook && d.comment != "" && d.comment != owner:
			t.Errorf("echo to the client: comment %q, want %q or none", d.comment, owner)
		}
	}
	if echoes != 3 {
		t.Errorf("saw %d echoes to the client, want 3", echoes)
	}
}
