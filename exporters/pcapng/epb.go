package pcapng

import "encoding/binary"

// appendEPB appends one Enhanced Packet Block to b, byte for byte what
// gopacket's NgWriter.WritePacketWithOptions writes (little-endian,
// nanosecond timestamps, the comment option then the flags option) but
// without the option slices and string copies it allocates for every
// packet, which made it half of a busy capture's CPU. Section, interface
// and statistics blocks still come from gopacket. head is written before
// data (the cooked header); comment is left out when empty.
func appendEPB(b []byte, ifID int, ts int64, origLen int, head, data []byte, comment string, flags uint32) []byte {
	capLen := len(head) + len(data)
	opts := 0
	if comment != "" {
		opts += 4 + pad4(len(comment))
	}
	opts += 8 + 4 // flags, end of options
	total := 28 + pad4(capLen) + opts + 4
	le := binary.LittleEndian
	b = le.AppendUint32(b, 6) // enhanced packet block
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, uint32(ifID))
	b = le.AppendUint32(b, uint32(uint64(ts)>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(capLen))
	b = le.AppendUint32(b, uint32(origLen))
	b = append(b, head...)
	b = append(b, data...)
	b = append(b, zeros[:pad4(capLen)-capLen]...)
	if comment != "" {
		b = le.AppendUint16(b, 1) // opt_comment
		b = le.AppendUint16(b, uint16(len(comment)))
		b = append(b, comment...)
		b = append(b, zeros[:pad4(len(comment))-len(comment)]...)
	}
	b = le.AppendUint16(b, 2) // epb_flags
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, 0) // opt_endofopt
	return le.AppendUint32(b, uint32(total))
}

var zeros [3]byte

func pad4(n int) int { return (n + 3) &^ 3 }
