package tcpreceive

import (
	"encoding/binary"
	"testing"
)

// record builds a record as the programs write it.
func record(family, caplen, length byte, data []byte) []byte {
	raw := make([]byte, EventSize, EventSize+len(data)+7)
	binary.LittleEndian.PutUint32(raw[16:], uint32(length))
	binary.LittleEndian.PutUint32(raw[20:], uint32(caplen))
	raw[72], raw[73], raw[74] = family, ProtoTCP, FlagL4|FlagOwner
	copy(raw[32:], []byte{127, 0, 0, 1})
	copy(raw[76:], "curl\x00")
	copy(raw[92:], "lo\x00")
	raw = append(raw, data...)
	// perf pads records to 8 bytes
	return append(raw, make([]byte, 7)...)
}

func TestDecode(t *testing.T) {
	var ev Event
	if err := Decode(record(4, 3, 40, []byte{0x45, 0, 0}), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Src.String() != "127.0.0.1" || string(ev.Comm) != "curl" || string(ev.Dev) != "lo" || len(ev.Data) != 3 || ev.Len != 40 {
		t.Errorf("decoded %+v", ev)
	}
	for name, raw := range map[string][]byte{
		"short":          make([]byte, EventSize-1),
		"caplen too big": record(4, 50, 60, []byte{1, 2}),
		"caplen > len":   record(4, 3, 2, []byte{1, 2, 3}),
		"family":         record(5, 0, 0, nil),
	} {
		if err := Decode(raw, &ev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzDecode: no record, however broken, makes the decoder panic or hand
// out data beyond the record.
func FuzzDecode(f *testing.F) {
	f.Add(record(4, 3, 40, []byte{0x45, 0, 0}))
	f.Add(record(6, 0, 60, nil))
	f.Add(make([]byte, EventSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev Event
		if err := Decode(raw, &ev); err != nil {
			return
		}
		if len(ev.Data) > len(raw)-EventSize || uint32(len(ev.Data)) > ev.Len {
			t.Fatalf("data of %d bytes from a %d-byte record (len %d)", len(ev.Data), len(raw), ev.Len)
		}
		if !ev.Src.IsValid() || !ev.Dst.IsValid() || len(ev.Comm) > 16 || len(ev.Dev) > 16 {
			t.Fatalf("decoded %+v", ev)
		}
	})
}
