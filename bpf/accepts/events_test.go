//go:build linux

package accepts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// record lays out an event as accepts.bpf.c writes it, through the
// generated struct so the layout follows the C.
func record(kind uint8, family uint16, laddr, raddr []byte, lport, rport uint16, comm string) []byte {
	e := Event{TsNs: 987654321, Pid: 812, Tid: 815, Uid: 33, Family: family, Lport: lport, Rport: rport, Kind: kind}
	copy(e.Laddr[:], laddr)
	copy(e.Raddr[:], raddr)
	for i := 0; i < len(comm) && i < len(e.Comm); i++ {
		e.Comm[i] = int8(comm[i])
	}
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, &e)
	return b.Bytes()
}

// FuzzDecode: any record either decodes to exactly the fields its bytes
// hold (as binary.Read of the generated struct reads them) or fails with
// one of the decoder's errors; nothing panics.
func FuzzDecode(f *testing.F) {
	f.Add(record(KindAccept, FamilyINET, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, 8080, 51000, "nginx"))
	f.Add(record(KindConnect, FamilyINET6, bytes.Repeat([]byte{0xfe}, 16), make([]byte, 16), 40000, 443, "curl"))
	f.Add(record(KindAccept, 1, nil, nil, 0, 0, "")[:EventSize-1])
	f.Add(append(record(9, FamilyINET, nil, nil, 1, 2, "a-command-of-16b"), 0xff, 0xff))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e Event
		err := Decode(raw, &e)
		if len(raw) < EventSize {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d-byte record: %v, want ErrShort", len(raw), err)
			}
			return
		}
		var want Event
		if rerr := binary.Read(bytes.NewReader(raw[:EventSize]), binary.NativeEndian, &want); rerr != nil {
			t.Fatal(rerr)
		}
		// Padding is not decoded.
		want.Pad1, want.Pad2 = 0, 0
		if e != want {
			t.Fatalf("decoded %+v, the bytes hold %+v", e, want)
		}
		switch {
		case err == nil:
			if e.Family != FamilyINET && e.Family != FamilyINET6 || e.Kind != KindAccept && e.Kind != KindConnect {
				t.Fatalf("accepted family %d kind %d", e.Family, e.Kind)
			}
		case errors.Is(err, ErrFamily), errors.Is(err, ErrKind):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
