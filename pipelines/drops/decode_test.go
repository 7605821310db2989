//go:build linux

package drops

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"unsafe"

	bpfdrops "github.com/sockeye/sockeye/bpf/drops"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/drops/ksym"
)

// dropKey lays out a map key as drops.bpf.c writes it, followed by its count.
func dropKey(loc uint64, reason uint32, ifindex uint32, l3 uint16, l4, family uint8, dev string, n uint64) []byte {
	k := bpfdrops.Key{Location: loc, Reason: reason, Ifindex: ifindex, L3: l3, L4: l4, Family: family}
	for i := 0; i < len(dev) && i < len(k.Dev); i++ {
		k.Dev[i] = int8(dev[i])
	}
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, &k)
	binary.Write(&b, binary.NativeEndian, n)
	return b.Bytes()
}

// FuzzKey feeds random map entries through the byte-to-struct step of the
// map iterator, the key decoder (reason names, symbols from a kallsyms
// listing, protocol names) and the dropwatch console: nothing may panic,
// every row names a location and a reason, device names stay within the
// kernel's 16 bytes.
func FuzzKey(f *testing.F) {
	f.Add(dropKey(0xffffffff8149a5f3, 3, 1, 0x0800, 17, 2, "lo", 4))
	f.Add(dropKey(0xffffffffc0b00010, 3<<16|2, 0, 0x86dd, 58, 10, "", 1))
	f.Add(dropKey(0x10, bpfdrops.ReasonNone, 7, 0, 0, 1, "a-device-of-16by", 1<<63))
	f.Add(dropKey(0xffffffff81000110, 1<<16|9, 2, 0x0806, 0, 0, "eth0", 0)[:30])
	syms, err := ksym.NewResolver("ksym/testdata/kallsyms", "/nonexistent/modules")
	if err != nil {
		f.Fatal(err)
	}
	keySize := binary.Size(bpfdrops.Key{})
	// binary.Read reads what the map iterator copies only if the struct
	// has no implicit padding.
	if keySize != int(unsafe.Sizeof(bpfdrops.Key{})) {
		f.Fatalf("key: %d bytes encoded, %d in memory", keySize, unsafe.Sizeof(bpfdrops.Key{}))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k bpfdrops.Key
		var n uint64
		r := bytes.NewReader(raw)
		if err := binary.Read(r, binary.NativeEndian, &k); err != nil {
			if len(raw) >= keySize {
				t.Fatalf("%d bytes: %v", len(raw), err)
			}
			return
		}
		binary.Read(r, binary.NativeEndian, &n)
		s := &Source{syms: syms, reasons: &Reasons{has: true, tried: map[uint32]bool{},
			names:  map[uint32]string{2: "NOT_SPECIFIED", 3: "NO_SOCKET", 3<<16 | 1: "OVS_DROP_LAST_ACTION"},
			subsys: map[uint32]string{1: "MAC80211_UNUSABLE", 3: "OPENVSWITCH"}}}
		e := s.decode(k, n)
		if e.Function == "" || e.Site == "" || e.Reason == "" || e.Packets != n {
			t.Fatalf("entry %+v from key %+v", e, k)
		}
		if len(e.Device) > len(k.Dev) || strings.ContainsRune(e.Device, 0) {
			t.Fatalf("device %q from key %+v", e.Device, k)
		}
		for _, console := range []Dropwatch{{}, {Reason: true, Offset: true}} {
			b := &pipelines.Batch{Metrics: Metrics}
			bt := newBatcher(b, console)
			bt.add(k.Location, e)
			bt.add(k.Location+1, e)
			bt.done()
			if len(b.Rows) == 0 || len(b.Rows[0].Values) != 1 {
				t.Fatalf("rows %+v", b.Rows)
			}
			if err := b.Console.Write(io.Discard, b); err != nil {
				t.Fatal(err)
			}
		}
	})
}
