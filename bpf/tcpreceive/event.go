package tcpreceive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// EventSize is the size of struct event in tcpreceive.bpf.c; the packet
// bytes start right after it.
const EventSize = 112

// Event flags, as enum ev_flags in tcpreceive.bpf.c.
const (
	FlagOwner = 1 // PID, UID and Comm are the local socket's owner
	FlagL4    = 2 // ports and TCP flags were read
)

// IP protocol numbers the programs report.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Event is one received packet as the kernel described it.
type Event struct {
	// Mono is bpf_ktime_get_ns: CLOCK_MONOTONIC nanoseconds.
	Mono     uint64
	Netns    uint32
	Ifindex  uint32
	Len      uint32 // packet length from the network header
	PID, UID uint32
	Src, Dst netip.Addr
	SrcPort  uint16
	DstPort  uint16
	TCPFlags uint16
	Proto    uint8
	Flags    uint8
	// Comm and Dev alias the record, without their NUL padding; Comm is
	// empty unless FlagOwner is set.
	Comm []byte
	Dev  []byte
	// Data is the packet from its network header, at most the snap length.
	// It aliases the record it was decoded from.
	Data []byte
}

// ErrShort is returned for a record too short for what it claims to hold.
var ErrShort = errors.New("tcpreceive: short record")

// Decode parses a record written by the programs. A perf record may carry up
// to 7 bytes of padding after the data, which Decode ignores.
func Decode(raw []byte, ev *Event) error {
	if len(raw) < EventSize {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrShort, len(raw), EventSize)
	}
	le := binary.LittleEndian
	ev.Mono = le.Uint64(raw[0:])
	ev.Netns = le.Uint32(raw[8:])
	ev.Ifindex = le.Uint32(raw[12:])
	ev.Len = le.Uint32(raw[16:])
	caplen := le.Uint32(raw[20:])
	ev.PID = le.Uint32(raw[24:])
	ev.UID = le.Uint32(raw[28:])
	ev.SrcPort = le.Uint16(raw[64:])
	ev.DstPort = le.Uint16(raw[66:])
	ev.TCPFlags = le.Uint16(raw[68:])
	// raw[70:72] is hdr_len: the header is already in place in front of the data.
	family := raw[72]
	ev.Proto = raw[73]
	ev.Flags = raw[74]
	switch family {
	case 4:
		ev.Src = netip.AddrFrom4([4]byte(raw[32:36]))
		ev.Dst = netip.AddrFrom4([4]byte(raw[48:52]))
	case 6:
		ev.Src = netip.AddrFrom16([16]byte(raw[32:48]))
		ev.Dst = netip.AddrFrom16([16]byte(raw[48:64]))
	default:
		return fmt.Errorf("tcpreceive: unknown address family %d", family)
	}
	if ev.Flags&FlagOwner != 0 {
		ev.Comm = cstring(raw[76:92])
	} else {
		ev.Comm = nil
	}
	ev.Dev = cstring(raw[92:108])
	if uint64(caplen) > uint64(len(raw)-EventSize) {
		return fmt.Errorf("%w: caplen %d, %d bytes follow", ErrShort, caplen, len(raw)-EventSize)
	}
	if caplen > ev.Len {
		return fmt.Errorf("tcpreceive: caplen %d > length %d", caplen, ev.Len)
	}
	ev.Data = raw[EventSize : EventSize+int(caplen)]
	return nil
}

func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
