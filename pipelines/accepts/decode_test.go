//go:build linux

package accepts

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	bpfaccepts "github.com/sockeye/sockeye/bpf/accepts"
)

// rawEvent lays out a record as the kernel writes it.
func rawEvent(kind uint8, family uint16, laddr, raddr []byte, lport, rport uint16, comm string) []byte {
	b := make([]byte, bpfaccepts.EventSize)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], 123456789)
	ne.PutUint32(b[8:], 4242)  // pid
	ne.PutUint32(b[12:], 4243) // tid
	ne.PutUint32(b[16:], 33)   // uid
	ne.PutUint16(b[20:], family)
	ne.PutUint16(b[22:], lport)
	ne.PutUint16(b[24:], rport)
	b[26] = kind
	copy(b[28:44], laddr)
	copy(b[44:60], raddr)
	copy(b[60:76], comm)
	return b
}

func TestDecode(t *testing.T) {
	mapped := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1}
	var ev bpfaccepts.Event
	if err := bpfaccepts.Decode(rawEvent(bpfaccepts.KindAccept, bpfaccepts.FamilyINET6, mapped, mapped, 8080, 50000, "nginx"), &ev); err != nil {
		t.Fatal(err)
	}
	c := ConnOf(&ev, time.Unix(0, 0))
	if c.Connect || c.PID != 4242 || c.TID != 4243 || c.UID != 33 || c.Command != "nginx" ||
		c.Local.String() != "127.0.0.1:8080" || c.Remote.String() != "127.0.0.1:50000" || c.NetworkType() != "ipv4" {
		t.Errorf("v4-mapped accept decoded as %+v", c)
	}
	full := "a-command-of-16b"
	if err := bpfaccepts.Decode(rawEvent(bpfaccepts.KindConnect, bpfaccepts.FamilyINET, []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}, 1, 2, full), &ev); err != nil {
		t.Fatal(err)
	}
	if c := ConnOf(&ev, time.Unix(0, 0)); !c.Connect || c.Command != full || c.Remote.String() != "10.0.0.2:2" {
		t.Errorf("connect decoded as %+v", c)
	}
	for _, tt := range []struct {
		b   []byte
		err error
	}{
		{rawEvent(0, bpfaccepts.FamilyINET, nil, nil, 1, 2, "x")[:bpfaccepts.EventSize-1], bpfaccepts.ErrShort},
		{rawEvent(0, 1, nil, nil, 1, 2, "x"), bpfaccepts.ErrFamily},
		{rawEvent(7, bpfaccepts.FamilyINET, nil, nil, 1, 2, "x"), bpfaccepts.ErrKind},
	} {
		if err := bpfaccepts.Decode(tt.b, &ev); !errors.Is(err, tt.err) {
			t.Errorf("got %v, want %v", err, tt.err)
		}
	}
	raw := rawEvent(0, bpfaccepts.FamilyINET, nil, nil, 1, 2, "x")
	if n := testing.AllocsPerRun(100, func() { bpfaccepts.Decode(raw, &ev) }); n != 0 {
		t.Errorf("Decode allocates %.0f times per record", n)
	}
}

// FuzzDecode feeds random records through the decoder, the record and the
// console row: nothing may panic.
func FuzzDecode(f *testing.F) {
	f.Add(rawEvent(0, bpfaccepts.FamilyINET, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, 80, 4000, "sshd"))
	f.Add(rawEvent(1, bpfaccepts.FamilyINET6, make([]byte, 16), make([]byte, 16), 0, 0, ""))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev bpfaccepts.Event
		if err := bpfaccepts.Decode(b, &ev); err != nil {
			return
		}
		c := ConnOf(&ev, time.Unix(0, int64(ev.TsNs)))
		r := c.Record("accepts", time.Now())
		if err := (TCPConnections{}).WriteLog(io.Discard, r); err != nil {
			t.Fatal(err)
		}
		if len(r.Attrs) != len(Attributes) {
			t.Fatalf("%d attributes", len(r.Attrs))
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	raw := rawEvent(0, bpfaccepts.FamilyINET, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, 80, 4000, "sshd")
	var ev bpfaccepts.Event
	b.ReportAllocs()
	for b.Loop() {
		if err := bpfaccepts.Decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
		c := ConnOf(&ev, time.Unix(0, int64(ev.TsNs)))
		_ = c.Record("accepts", time.Time{})
	}
}
