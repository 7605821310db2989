// Package tcpreceive is the tcpdumplike job as a sockeye source: every TCP
// segment (and, when asked, UDP datagram) the host receives, with its bytes
// up to a snap length, for the console table of the seed and pcapng files.
package tcpreceive

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/sockeye/sockeye/pipelines"
)

// The seed's header, printed at start and then once a second.
const header = "-----------------------------------------------------------------\n" +
	"       Source IP         Dest IP  SPort  DPort  U  A  P  R  S  F \n" +
	"-----------------------------------------------------------------\n"

// Console prints packets as tcpdumplike.stp did: one row per TCP segment
// with its URG, ACK, PSH, RST, SYN and FIN flags, "UDP" rows for datagrams,
// and the header block again every second, in packet time.
type Console struct {
	next time.Time // when the next header is due; zero before the first
}

var _ pipelines.PacketConsole = (*Console)(nil)

func NewConsole() *Console { return &Console{} }

func (c *Console) WritePackets(w io.Writer, b *pipelines.PacketBatch) error {
	bw := bufio.NewWriter(w)
	if c.next.IsZero() {
		bw.WriteString(header)
		c.next = b.Time.Add(time.Second)
	}
	for i := range b.Packets {
		p := &b.Packets[i]
		c.headers(bw, p.Time)
		Row(bw, p)
	}
	c.headers(bw, b.Time)
	return bw.Flush()
}

// headers prints the headers due by t: one per second elapsed, as the
// seed's timer did even when nothing arrived.
func (c *Console) headers(w *bufio.Writer, t time.Time) {
	for !t.Before(c.next) {
		w.WriteString(header)
		c.next = c.next.Add(time.Second)
		if t.Sub(c.next) > time.Minute {
			// A clock step: do not print a minute of headers.
			c.next = t.Add(time.Second)
		}
	}
}

// Row prints one packet as the seed did.
func Row(w io.Writer, p *pipelines.Packet) {
	if p.Proto == 17 {
		fmt.Fprintf(w, " %15s %15s  %5d  %5d  UDP\n", p.Src, p.Dst, p.SrcPort, p.DstPort)
		return
	}
	f := func(bit uint16) int {
		if p.TCPFlags&bit != 0 {
			return 1
		}
		return 0
	}
	fmt.Fprintf(w, " %15s %15s  %5d  %5d  %d  %d  %d  %d  %d  %d\n",
		p.Src, p.Dst, p.SrcPort, p.DstPort,
		f(pipelines.TCPUrg), f(pipelines.TCPAck), f(pipelines.TCPPsh),
		f(pipelines.TCPRst), f(pipelines.TCPSyn), f(pipelines.TCPFin))
}
