//go:build linux

package traffic

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"unsafe"

	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
	"github.com/sockeye/sockeye/pipelines"
)

// keyBytes lays out a map key as traffic.bpf.c writes it.
func keyBytes(pid, uid, ifindex uint32, comm, dev string) []byte {
	k := bpftraffic.Key{Pid: pid, Uid: uid, Ifindex: ifindex, Netns: 4026531840}
	for i := 0; i < len(comm) && i < len(k.Comm); i++ {
		k.Comm[i] = int8(comm[i])
	}
	for i := 0; i < len(dev) && i < len(k.Dev); i++ {
		k.Dev[i] = int8(dev[i])
	}
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, &k)
	return b.Bytes()
}

func countBytes(cs ...bpftraffic.Counts) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		binary.Write(&b, binary.NativeEndian, &c)
	}
	return b.Bytes()
}

// FuzzKey feeds random map entries (a key, the previous totals, then one
// value per CPU) through the byte-to-struct step the map iterator does,
// the per-CPU sum, the delta, the row and nettop's table: nothing may
// panic, names never grow past the kernel's 16 bytes, a delta never
// exceeds the totals.
func FuzzKey(f *testing.F) {
	f.Add(append(append(keyBytes(4242, 1000, 1, "curl", "lo"), countBytes(bpftraffic.Counts{TxPackets: 3, TxBytes: 180})...),
		countBytes(bpftraffic.Counts{TxPackets: 5, TxBytes: 300, RxPackets: 5, RxBytes: 300}, bpftraffic.Counts{RxPackets: 1, RxBytes: 1500})...))
	f.Add(append(keyBytes(0, 0, 2, "swapper/1", "eth0"), countBytes(bpftraffic.Counts{}, bpftraffic.Counts{RxPackets: 1 << 63})...))
	f.Add(append(keyBytes(1, 2, 3, "a-command-of-16b", "a-device-of-16by"), countBytes(bpftraffic.Counts{TxPackets: 9})...))
	f.Add(keyBytes(7, 7, 7, "short", "x")[:40])
	keySize := binary.Size(bpftraffic.Key{})
	countSize := binary.Size(bpftraffic.Counts{})
	// binary.Read reads what the map iterator copies only if the struct
	// has no implicit padding.
	if keySize != int(unsafe.Sizeof(bpftraffic.Key{})) {
		f.Fatalf("key: %d bytes encoded, %d in memory", keySize, unsafe.Sizeof(bpftraffic.Key{}))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k bpftraffic.Key
		if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &k); err != nil {
			if len(raw) >= keySize {
				t.Fatalf("%d bytes: %v", len(raw), err)
			}
			return
		}
		rest := raw[keySize:]
		var prev, cur bpftraffic.Counts
		if len(rest) >= countSize {
			binary.Read(bytes.NewReader(rest), binary.NativeEndian, &prev)
			rest = rest[countSize:]
		}
		// One value per CPU, summed as Probe.Read sums them.
		for ; len(rest) >= countSize; rest = rest[countSize:] {
			var v bpftraffic.Counts
			binary.Read(bytes.NewReader(rest), binary.NativeEndian, &v)
			cur.TxPackets += v.TxPackets
			cur.TxBytes += v.TxBytes
			cur.RxPackets += v.RxPackets
			cur.RxBytes += v.RxBytes
		}
		d := delta(cur, prev)
		if d.TxPackets > cur.TxPackets || d.RxPackets > cur.RxPackets || d.TxBytes > cur.TxBytes || d.RxBytes > cur.RxBytes {
			t.Fatalf("delta %+v of totals %+v (previous %+v)", d, cur, prev)
		}
		e := Entry{PID: k.Pid, UID: k.Uid, Device: CString(k.Dev[:]), Command: Command(k.Pid, CString(k.Comm[:])),
			TxPackets: d.TxPackets, RxPackets: d.RxPackets, TxBytes: d.TxBytes, RxBytes: d.RxBytes}
		if len(e.Device) > len(k.Dev) || len(e.Command) > len(k.Comm) || strings.ContainsRune(e.Device+e.Command, 0) {
			t.Fatalf("names %q %q from key %+v", e.Device, e.Command, k)
		}
		row := e.Row(k.Pid%2 == 0)
		if len(row.Values) != numCols || len(row.Attrs) != len(Attributes) {
			t.Fatalf("row %+v", row)
		}
		b := &pipelines.Batch{Metrics: Metrics, Rows: []pipelines.Row{row, row}, Console: Nettop{}}
		if err := (Nettop{}).Write(io.Discard, b); err != nil {
			t.Fatal(err)
		}
	})
}
