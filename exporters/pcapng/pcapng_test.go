package pcapng

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sockeye/sockeye/pipelines"
)

var (
	lo   = pipelines.Interface{Netns: 4026531833, Index: 1, Name: "lo"}
	veth = pipelines.Interface{Netns: 4026532100, Index: 7, Name: "eth0"}
)

// ipv4 is a 40-byte IPv4/TCP SYN from 10.0.0.1:1000 to 10.0.0.2:80.
func ipv4() []byte {
	return []byte{
		0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x03, 0xe8, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
	}
}

func batch(t0 time.Time, n int, ifc pipelines.Interface, owned bool) *pipelines.PacketBatch {
	b := &pipelines.PacketBatch{Source: "tcp_receive", Time: t0, Snaplen: 128,
		Stats: []pipelines.IfaceStats{{Iface: lo, Matched: 10, Dropped: 2}, {Iface: veth, Matched: 5, Dropped: 0}}}
	for i := range n {
		p := pipelines.Packet{Time: t0.Add(time.Duration(i) * time.Microsecond), Iface: ifc, Len: 40, Data: ipv4(), Proto: 6,
			Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80, TCPFlags: pipelines.TCPSyn}
		if owned {
			p.Owned, p.Owner = true, pipelines.Owner{PID: 42, UID: 1000, Command: "curl"}
		}
		b.Packets = append(b.Packets, p)
	}
	return b
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestWriteRead(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.pcapng")
	e, err := New("pcapng", Options{Path: file, Application: "sockeye test", Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 123456789)
	ctx := context.Background()
	if err := e.ExportPackets(ctx, batch(t0, 3, lo, true)); err != nil {
		t.Fatal(err)
	}
	if err := e.ExportPackets(ctx, batch(t0.Add(time.Second), 2, veth, false)); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c := e.Counts(); c.Written != 5 || c.Failed != 0 || c.Files != 1 {
		t.Errorf("counts %+v", c)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if app := r.SectionInfo().Application; app != "sockeye test" {
		t.Errorf("shb_userappl %q", app)
	}
	for i := 0; ; i++ {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			if i != 5 {
				t.Errorf("read %d packets, want 5", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want := t0.Add(time.Duration(i) * time.Microsecond)
		if i >= 3 {
			want = t0.Add(time.Second + time.Duration(i-3)*time.Microsecond)
		}
		if !ci.Timestamp.Equal(want) {
			t.Errorf("packet %d at %v, want %v (nanoseconds kept)", i, ci.Timestamp, want)
		}
		if !bytes.Equal(data[sllLen:], ipv4()) || data[14] != 0x08 || data[15] != 0 || ci.Length != 56 {
			t.Errorf("packet %d: % x (length %d)", i, data, ci.Length)
		}
		if opts.Flags == nil || opts.Flags.Direction != pcapgo.NgEpbFlagDirectionInbound {
			t.Errorf("packet %d: flags %+v, want inbound", i, opts.Flags)
		}
		wantComment := []string(nil)
		if i < 3 {
			wantComment = []string{"pid=42 comm=curl uid=1000"}
		}
		if strings.Join(opts.Comments, ";") != strings.Join(wantComment, ";") {
			t.Errorf("packet %d: comments %q, want %q", i, opts.Comments, wantComment)
		}
	}
	if r.NInterfaces() != 2 {
		t.Fatalf("%d interfaces, want 2", r.NInterfaces())
	}
	for i, want := range []struct {
		name       string
		recv, drop uint64
	}{{"lo", 10, 2}, {"eth0", 5, 0}} {
		ifc, _ := r.Interface(i)
		if ifc.Name != want.name || ifc.LinkType != LinkType || ifc.SnapLength != 128+sllLen || ifc.TimestampResolution != 9 {
			t.Errorf("interface %d: %+v", i, ifc)
		}
		if ifc.Statistics.PacketsReceived != want.recv || ifc.Statistics.PacketsDropped != want.drop {
			t.Errorf("interface %s statistics: %+v, want received %d dropped %d", ifc.Name, ifc.Statistics, want.recv, want.drop)
		}
	}
	if _, err := exec.LookPath("tcpdump"); err == nil {
		// libpcap insists on one link type and snap length across interfaces.
		if out, err := exec.Command("tcpdump", "-nn", "-r", file).CombinedOutput(); err != nil || strings.Count(string(out), "Flags [S]") != 5 {
			t.Errorf("tcpdump -r: %v\n%s", err, out)
		}
	}
}

func TestEmptyFileOpens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "empty.pcapng")
	e, err := New("pcapng", Options{Path: file, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(file)
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Fatalf("want no packets, got %v", err)
	}
}

func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.pcapng")
	e, err := New("pcapng", Options{Path: file, RotateBytes: 2000, Files: 3, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	for i := range 10 {
		if err := e.ExportPackets(context.Background(), batch(t0.Add(time.Duration(i)*time.Second), 10, lo, true)); err != nil {
			t.Fatal(err)
		}
	}
	e.Shutdown(context.Background())
	files, _ := filepath.Glob(file + "*")
	if strings.Join(files, " ") != file+"0 "+file+"1 "+file+"2" {
		t.Fatalf("files %v", files)
	}
	for _, name := range files {
		f, _ := os.Open(name)
		r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for {
			if _, _, err := r.ReadPacketData(); err != nil {
				if err != io.EOF {
					t.Errorf("%s: %v", name, err)
				}
				break
			}
			n++
		}
		f.Close()
		if n == 0 {
			t.Errorf("%s holds no packet", name)
		}
	}
}

func TestName(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	for _, c := range []struct {
		opts  Options
		index int
		want  string
	}{
		{Options{Path: "a.pcapng"}, 0, "a.pcapng"},
		{Options{Path: "a.pcapng", RotateBytes: 1}, 0, "a.pcapng"},
		{Options{Path: "a.pcapng", RotateBytes: 1}, 2, "a.pcapng2"},
		{Options{Path: "a", RotateBytes: 1, Files: 10}, 12, "a2"},
		{Options{Path: "a", RotateBytes: 1, Files: 11}, 3, "a03"},
		{Options{Path: "a", RotateEvery: time.Second}, 1, "a1"},
		{Options{Path: "a-%Y%m%d-%H%M%S-%%", RotateEvery: time.Second}, 5, "a-20260304-050607-%"},
		{Options{Path: "a", RotateEvery: time.Second, Files: 3, StopAfterFiles: true}, 2, "a2"},
	} {
		if got := Name(c.opts, c.index, at); got != c.want {
			t.Errorf("Name(%+v, %d) = %q, want %q", c.opts, c.index, got, c.want)
		}
	}
}

// TestEPBMatchesGopacket: the hand-written packet blocks are what
// gopacket's NgWriter writes for the same packet, comment or not, for every
// padding.
func TestEPBMatchesGopacket(t *testing.T) {
	inbound := pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound}
	head := []byte{0, 0, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0}
	ts := time.Unix(1700000000, 123456789)
	for _, comment := range []string{"", "pid=1 comm=a uid=0", "pid=42 comm=curl uid=1000"} {
		for n := range 9 {
			data := bytes.Repeat([]byte{0xab}, 40+n)
			var want bytes.Buffer
			ng, err := pcapgo.NewNgWriter(&want, LinkType)
			if err != nil {
				t.Fatal(err)
			}
			if err := ng.Flush(); err != nil {
				t.Fatal(err)
			}
			headerLen := want.Len()
			frame := append(append([]byte{}, head...), data...)
			opts := pcapgo.NgPacketOptions{Flags: &inbound}
			if comment != "" {
				opts.Comments = []string{comment}
			}
			ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame) + 100}
			if err := ng.WritePacketWithOptions(ci, frame, opts); err != nil {
				t.Fatal(err)
			}
			if err := ng.Flush(); err != nil {
				t.Fatal(err)
			}
			got := appendEPB(nil, 0, ts.UnixNano(), len(frame)+100, head, data, comment, inbound.ToUint32())
			if !bytes.Equal(got, want.Bytes()[headerLen:]) {
				t.Errorf("comment %q, %d data bytes:\n got %x\nwant %x", comment, len(data), got, want.Bytes()[headerLen:])
			}
		}
	}
}

// BenchmarkWritePackets: the writer goroutine's cost per packet, owned
// (with a comment), into a file.
func BenchmarkWritePackets(b *testing.B) {
	file := filepath.Join(b.TempDir(), "x.pcapng")
	e, err := New("pcapng", Options{Path: file, Application: "sockeye bench", Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	bt := batch(time.Unix(1700000000, 0), 256, lo, true)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(bt.Packets) {
		if err := e.ExportPackets(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := e.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}
