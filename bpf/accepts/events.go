//go:build linux

package accepts

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Event is one connection as the kernel wrote it (struct event in
// accepts.bpf.c).
type Event = acceptsEvent

// Kinds of Event.
const (
	KindAccept  = 0
	KindConnect = 1
)

// Address families of Event.Family.
const (
	FamilyINET  = 2
	FamilyINET6 = 10
)

// EventSize is the size of one ring-buffer record.
const EventSize = int(unsafe.Sizeof(acceptsEvent{}))

// Offsets in a record, from the generated struct so they follow the C.
const (
	offTs     = unsafe.Offsetof(acceptsEvent{}.TsNs)
	offPid    = unsafe.Offsetof(acceptsEvent{}.Pid)
	offTid    = unsafe.Offsetof(acceptsEvent{}.Tid)
	offUid    = unsafe.Offsetof(acceptsEvent{}.Uid)
	offFamily = unsafe.Offsetof(acceptsEvent{}.Family)
	offLport  = unsafe.Offsetof(acceptsEvent{}.Lport)
	offRport  = unsafe.Offsetof(acceptsEvent{}.Rport)
	offKind   = unsafe.Offsetof(acceptsEvent{}.Kind)
	offLaddr  = unsafe.Offsetof(acceptsEvent{}.Laddr)
	offRaddr  = unsafe.Offsetof(acceptsEvent{}.Raddr)
	offComm   = unsafe.Offsetof(acceptsEvent{}.Comm)
)

// Decode errors; static so a bad record costs no allocation.
var (
	ErrShort  = errors.New("accepts: record shorter than an event")
	ErrFamily = errors.New("accepts: record with an unknown address family")
	ErrKind   = errors.New("accepts: record of an unknown kind")
)

// Decode fills e from one ring-buffer record without allocating.
func Decode(b []byte, e *Event) error {
	if len(b) < EventSize {
		return ErrShort
	}
	ne := binary.NativeEndian
	e.TsNs = ne.Uint64(b[offTs:])
	e.Pid = ne.Uint32(b[offPid:])
	e.Tid = ne.Uint32(b[offTid:])
	e.Uid = ne.Uint32(b[offUid:])
	e.Family = ne.Uint16(b[offFamily:])
	e.Lport = ne.Uint16(b[offLport:])
	e.Rport = ne.Uint16(b[offRport:])
	e.Kind = b[offKind]
	copy(e.Laddr[:], b[offLaddr:])
	copy(e.Raddr[:], b[offRaddr:])
	for i := range e.Comm {
		e.Comm[i] = int8(b[int(offComm)+i])
	}
	if e.Family != FamilyINET && e.Family != FamilyINET6 {
		return ErrFamily
	}
	if e.Kind != KindAccept && e.Kind != KindConnect {
		return ErrKind
	}
	return nil
}
