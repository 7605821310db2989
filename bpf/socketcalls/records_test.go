//go:build linux

package socketcalls

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// rawRecord lays out a span record as socketcalls.bpf.c writes it.
func rawRecord(r Record) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, &r)
	return b.Bytes()
}

// FuzzDecode: the zero-copy view of a record reads exactly what its bytes
// hold (as binary.Read of the generated struct reads them), never beyond
// them, and a short record is an error, not a panic.
func FuzzDecode(f *testing.F) {
	connect := Record{StartNs: 1000, EndNs: 35000, Id: 0x21, RootId: 0x21, RootStartNs: 1000, Ret: -111,
		Pid: 3611, Tid: 3611, Uid: 1000, Func: 42, Kind: KindSyscall, Flags: FlagSock | FlagFD, Family: 2, Fd: 7,
		SockType: 1, Protocol: 6, Lport: 40000, Rport: 80}
	copy(connect.Raddr[:], []byte{127, 0, 0, 1})
	copy(connect.Comm[:], []int8{'X', 'o', 'r', 'g'})
	f.Add(rawRecord(connect))
	f.Add(rawRecord(Record{Kind: KindEvent, Func: 5, ParentId: 0x21, Value: 1<<8 | 10}))
	f.Add(rawRecord(Record{Kind: KindPair, Func: 3, Ifindex: 1, Value: 1500})[:RecordSize-1])
	f.Add(append(rawRecord(Record{Kind: 0xffff, Func: 0xffffffff, Depth: 0xffff}), 1, 2, 3))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Decode(raw)
		if len(raw) < RecordSize {
			if err == nil {
				t.Fatalf("%d-byte record decoded", len(raw))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var want Record
		if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &want); err != nil {
			t.Fatal(err)
		}
		if *r != want {
			t.Fatalf("view %+v, the bytes hold %+v", *r, want)
		}
		if PairName(r.Func) == "" || EventName(r.Func) == "" {
			t.Fatalf("no name for function id %d", r.Func)
		}
	})
}
