//go:build linux

package tcpreceive

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

// TestMixedTransport sends small and large UDP datagrams over lo through
// the auto transport: the small ones come through the ring buffer, the
// large ones through the perf buffers, every one whole and in time order.
func TestMixedTransport(t *testing.T) {
	k := testenv.Kernel(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	p, err := Open(Options{Hook: hooks.TpBTF, Mixed: true, Snaplen: MaxSnaplen, Kernel: k,
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Filter: Filter{UDP: true, NoTCP: true, Ports: []Port{{Port: port, Dir: Destination}}}})
	if err != nil {
		if unsupported(err) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	defer p.Close()
	recs, err := p.NewRecords(1<<16, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	m, ok := recs.(*mixedRecords)
	if !ok {
		t.Fatalf("auto transport on tp_btf reads %T, want both buffers", recs)
	}
	// Payload sizes, each filled with its index: 100 bytes fit a ring
	// record, 1000 and 3000 do not.
	sizes := []int{100, 1000, 100, 3000, 100}
	out, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for i, n := range sizes {
		if _, err := out.Write(bytes.Repeat([]byte{byte('a' + i)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	type got struct {
		mono uint64
		tag  byte
		n    int
	}
	var seen []got
	recs.SetDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < len(sizes) {
		raw, lost, err := recs.Next()
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(seen), len(sizes), err)
		}
		if lost > 0 {
			t.Fatalf("%d records lost", lost)
		}
		var ev Event
		if err := Decode(raw, &ev); err != nil {
			t.Fatal(err)
		}
		// The whole datagram: IPv4 and UDP headers and every payload byte.
		if len(ev.Data) != int(ev.Len) || ev.Len < 28 {
			t.Fatalf("record of %d bytes for a %d-byte packet", len(ev.Data), ev.Len)
		}
		payload := ev.Data[28:]
		if len(payload) == 0 || !bytes.Equal(payload, bytes.Repeat(payload[:1], len(payload))) {
			t.Fatalf("payload not one repeated byte: % x", payload[:min(len(payload), 16)])
		}
		seen = append(seen, got{ev.Mono, payload[0], len(payload)})
	}
	slices.SortFunc(seen, func(a, b got) int { return int(a.mono - b.mono) })
	for i, g := range seen {
		if g.tag != byte('a'+i) || g.n != sizes[i] {
			t.Errorf("datagram %d by time: %d bytes of %q, want %d of %q", i, g.n, g.tag, sizes[i], byte('a'+i))
		}
	}
	if m.fromRing != 3 || m.fromPerf != 2 {
		t.Errorf("records from the ring %d, from perf buffers %d; want 3 and 2", m.fromRing, m.fromPerf)
	}
	// A flush drains both and ends with ErrFlushed.
	if err := recs.Flush(); err != nil {
		t.Fatal(err)
	}
	recs.SetDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := recs.Next(); !errors.Is(err, ErrFlushed) {
		t.Errorf("after Flush: %v, want ErrFlushed", err)
	}
}
