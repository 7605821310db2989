package tcpreceive

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/sockeye/sockeye/pipelines"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestConsoleGolden prints batches spread over three seconds, one of them
// quiet: the header comes back every second, as the seed's timer printed it.
func TestConsoleGolden(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tcp := func(at time.Duration, src, dst string, sp, dp uint16, flags uint16) pipelines.Packet {
		return pipelines.Packet{Time: t0.Add(at), Proto: 6, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
			SrcPort: sp, DstPort: dp, TCPFlags: flags}
	}
	udp := pipelines.Packet{Time: t0.Add(2500 * time.Millisecond), Proto: 17,
		Src: netip.MustParseAddr("10.0.2.3"), Dst: netip.MustParseAddr("10.0.2.15"), SrcPort: 53, DstPort: 40001}
	batches := []*pipelines.PacketBatch{
		{Time: t0},
		{Time: t0.Add(100 * time.Millisecond), Packets: []pipelines.Packet{
			tcp(10*time.Millisecond, "92.122.126.240", "10.0.2.15", 80, 53214, pipelines.TCPSyn|pipelines.TCPAck),
			tcp(20*time.Millisecond, "92.122.126.240", "10.0.2.15", 80, 53214, pipelines.TCPAck),
			tcp(90*time.Millisecond, "209.85.229.147", "10.0.2.15", 80, 20373, pipelines.TCPAck|pipelines.TCPPsh),
		}},
		{Time: t0.Add(1200 * time.Millisecond), Packets: []pipelines.Packet{
			tcp(1100*time.Millisecond, "10.0.2.2", "10.0.2.15", 443, 41000, pipelines.TCPUrg|pipelines.TCPAck|pipelines.TCPPsh|pipelines.TCPRst|pipelines.TCPSyn|pipelines.TCPFin),
		}},
		{Time: t0.Add(2600 * time.Millisecond), Packets: []pipelines.Packet{
			tcp(2400*time.Millisecond, "2001:db8::1", "2001:db8::2", 22, 50000, pipelines.TCPFin|pipelines.TCPAck), udp,
		}},
		{Time: t0.Add(3100 * time.Millisecond)},
	}
	c := NewConsole()
	var out bytes.Buffer
	for _, b := range batches {
		if err := c.WritePackets(&out, b); err != nil {
			t.Fatal(err)
		}
	}
	const golden = "testdata/tcpdumplike.golden"
	if *update {
		os.WriteFile(golden, out.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("console:\n%s\nwant:\n%s", out.Bytes(), want)
	}
}
