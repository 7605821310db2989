//go:build linux

package tcpreceive

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/pipelines"
)

// segment is one TCP segment a raw socket sends: the rare flags (URG,
// ECE, CWR, AE) need one.
type segment struct {
	name    string
	flags   uint16
	urgent  uint16
	payload string
}

// segments covers every flag the console and tshark show, one per segment.
func segments() []segment {
	return []segment{
		{name: "SYN", flags: pipelines.TCPSyn},
		{name: "SYN-ACK", flags: pipelines.TCPSyn | pipelines.TCPAck},
		{name: "ACK", flags: pipelines.TCPAck},
		{name: "PSH-ACK", flags: pipelines.TCPPsh | pipelines.TCPAck, payload: "0123456789"},
		{name: "FIN-ACK", flags: pipelines.TCPFin | pipelines.TCPAck},
		{name: "RST", flags: pipelines.TCPRst},
		{name: "URG-ACK", flags: pipelines.TCPUrg | pipelines.TCPAck, urgent: 3, payload: "urgent"},
		{name: "ECE-CWR-SYN", flags: pipelines.TCPEce | pipelines.TCPCwr | pipelines.TCPSyn},
		{name: "AE-ACK", flags: pipelines.TCPAe | pipelines.TCPAck},
		// More than the ring buffer record holds: the auto transport
		// sends it through the perf buffers, between ring-borne ones.
		{name: "PSH-ACK-large", flags: pipelines.TCPPsh | pipelines.TCPAck, payload: strings.Repeat("L", 1200)},
		{name: "ACK-after", flags: pipelines.TCPAck},
	}
}

// tcpdumpFlags is how tcpdump prints the flags (print-tcp.c's table order).
func tcpdumpFlags(f uint16) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint16
		s   string
	}{{pipelines.TCPFin, "F"}, {pipelines.TCPSyn, "S"}, {pipelines.TCPRst, "R"}, {pipelines.TCPPsh, "P"},
		{pipelines.TCPAck, "."}, {pipelines.TCPUrg, "U"}, {pipelines.TCPEce, "E"}, {pipelines.TCPCwr, "W"}, {pipelines.TCPAe, "e"}} {
		if f&x.bit != 0 {
			b.WriteString(x.s)
		}
	}
	return b.String()
}

func tcpSegment(src, dst net.IP, sport, dport uint16, seq uint32, s segment) []byte {
	h := make([]byte, 20+len(s.payload))
	be := binary.BigEndian
	be.PutUint16(h[0:], sport)
	be.PutUint16(h[2:], dport)
	be.PutUint32(h[4:], seq)
	if s.flags&pipelines.TCPAck != 0 {
		be.PutUint32(h[8:], 1000)
	}
	h[12] = 5<<4 | byte(s.flags>>8&1)
	h[13] = byte(s.flags)
	be.PutUint16(h[14:], 65535)
	be.PutUint16(h[18:], s.urgent)
	copy(h[20:], s.payload)
	if src.To4() != nil {
		be.PutUint16(h[16:], checksum(src.To4(), dst.To4(), h))
	}
	return h
}

// checksum is the TCP checksum over the IPv4 pseudo-header; IPv6 raw
// sockets compute theirs (IPV6_CHECKSUM).
func checksum(src, dst net.IP, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	add([]byte{0, 6, byte(len(seg) >> 8), byte(len(seg))})
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// sendSegments sends every segment from src:sport to dst:dport through a raw
// socket of the calling thread's network namespace.
func sendSegments(src, dst net.IP, sport, dport uint16, segs []segment) error {
	v4 := src.To4() != nil
	family := unix.AF_INET6
	if v4 {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	var to, from unix.Sockaddr
	if v4 {
		to, from = &unix.SockaddrInet4{Addr: [4]byte(dst.To4())}, &unix.SockaddrInet4{Addr: [4]byte(src.To4())}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 16); err != nil {
			return fmt.Errorf("IPV6_CHECKSUM: %w", err)
		}
		to, from = &unix.SockaddrInet6{Addr: [16]byte(dst.To16())}, &unix.SockaddrInet6{Addr: [16]byte(src.To16())}
	}
	if err := unix.Bind(fd, from); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	for i, s := range segs {
		if err := unix.Sendto(fd, tcpSegment(src, dst, sport, dport, uint32(1+i*100), s), 0, to); err != nil {
			return fmt.Errorf("send %s: %w", s.name, err)
		}
	}
	return nil
}

func TestChecksum(t *testing.T) {
	// A segment whose checksum is in place sums to zero.
	src, dst := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)
	seg := tcpSegment(src, dst, 1, 2, 3, segment{flags: pipelines.TCPSyn, payload: "odd"})
	if c := checksum(src.To4(), dst.To4(), seg); c != 0 {
		t.Fatalf("checksum over a checksummed segment = %#x, want 0", c)
	}
}
