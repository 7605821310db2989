//go:build linux

package socketcalls

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/pipelines"
)

// records lays out records back to back, as the ring buffer hands them over.
func records(rs ...*bpfsc.Record) []byte {
	var b bytes.Buffer
	for _, r := range rs {
		binary.Write(&b, binary.NativeEndian, r)
	}
	return b.Bytes()
}

// FuzzRecords feeds random ring-buffer records through the decoder, the
// span builder and the console: nothing may panic or loop, every span is
// named and identified, and no record yields more than one span.
func FuzzRecords(f *testing.F) {
	const us = 1000
	f.Add(records(
		rec(bpfsc.KindFunc, 1, 0x12, 0x11, 0x10, 2, 12*us, 16*us, 0, 3883, "scim-bridge"),
		rec(bpfsc.KindFunc, 0, 0x11, 0x10, 0x10, 1, 4*us, 28*us, 5, 3883, "scim-bridge"),
		rec(bpfsc.KindSyscall, 45, 0x10, 0, 0x10, 0, 0, 35*us, 5, 3883, "scim-bridge"),
	))
	ev := rec(bpfsc.KindEvent, 5, 0, 0x21, 0x21, 1, 1010*us, 1010*us, 0, 3611, "Xorg")
	ev.Value, ev.Flags, ev.Family, ev.Protocol, ev.Lport = 2<<8|7, bpfsc.FlagSock, 2, 6, 40000
	pair := rec(bpfsc.KindPair, 3, 0x22, 0x21, 0x21, 1, 1004*us, 1030*us, 0, 3611, "Xorg")
	pair.Ifindex, pair.Value = 1, 60
	f.Add(records(ev, pair, rec(bpfsc.KindSyscall, 42, 0x21, 0, 0x21, 0, 1000*us, 1035*us, -111, 3611, "Xorg")))
	f.Add(records(rec(bpfsc.KindFunc, 99, 1, 1, 1, 1, 0, 0, 0, 1, "self-parent"))[:bpfsc.RecordSize+3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := NewBuilder([3]uint64{1, 2, 3}, []string{"__sys_connect", "sock_poll"}, 4)
		b.ProcessResource = true
		var spans []pipelines.Span
		n := 0
		for len(raw) > 0 {
			r, err := bpfsc.Decode(raw)
			if err != nil {
				if len(raw) >= bpfsc.RecordSize {
					t.Fatalf("%d-byte record: %v", len(raw), err)
				}
				break
			}
			before := len(spans)
			spans = b.Add(r, spans)
			if len(spans)-before > 1 {
				t.Fatalf("one record made %d spans", len(spans)-before)
			}
			for _, s := range spans[before:] {
				if s.Name == "" || !s.SpanID.IsValid() || !s.TraceID.IsValid() || s.Depth != int(r.Depth) {
					t.Fatalf("span %+v from record %+v", s, *r)
				}
			}
			raw = raw[bpfsc.RecordSize:]
			n++
		}
		if b.Pending() > 4 {
			t.Fatalf("%d spans hold events, bound is 4", b.Pending())
		}
		c := NewThreadIndent()
		c.MaxThreads, c.MaxSpans = 2, 3
		// Split in two batches: trees wait for their root across calls.
		half := len(spans) / 2
		if err := c.WriteSpans(io.Discard, spans[:half]); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteSpans(io.Discard, spans[half:]); err != nil {
			t.Fatal(err)
		}
		if err := c.End(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}

// TestThreadIndentRepeatedIDs: records repeating their root's id, or naming
// themselves as parent, print once each instead of recursing forever.
func TestThreadIndentRepeatedIDs(t *testing.T) {
	b := testBuilder()
	var spans []pipelines.Span
	for _, r := range []*bpfsc.Record{
		rec(bpfsc.KindFunc, 0, 0x10, 0x10, 0x10, 1, 1000, 2000, 0, 7, "dup"),
		rec(bpfsc.KindFunc, 1, 0x11, 0x11, 0x10, 1, 1100, 1900, 0, 7, "dup"),
		rec(bpfsc.KindSyscall, 42, 0x10, 0, 0x10, 0, 0, 3000, 0, 7, "dup"),
	} {
		spans = b.Add(r, spans)
	}
	var out bytes.Buffer
	if err := NewThreadIndent().WriteSpans(&out, spans); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out.Bytes(), []byte("->")); n != 2 {
		t.Errorf("%d calls printed, want the root and its duplicate once each:\n%s", n, out.String())
	}
}
