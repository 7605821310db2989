package accepts

import (
	"fmt"
	"io"

	"github.com/sockeye/sockeye/pipelines"
)

// TCPConnections prints records as tcp_connections.stp did: a header when
// the pipeline starts, then one row per connection as it comes.
//
// Widths are the seed's; a wider value (an IPv6 address, mostly) is printed
// whole and pushes the row out rather than being cut. An outbound
// connection (option connect) shows the remote port and "->" before the
// remote address.
type TCPConnections struct{}

var _ pipelines.LogConsoleFormatter = TCPConnections{}

// Header is the seed's header line.
var Header = fmt.Sprintf("%6s %16s %6s %6s %16s\n", "UID", "CMD", "PID", "PORT", "IP_SOURCE")

func (TCPConnections) Begin(w io.Writer) error {
	_, err := io.WriteString(w, Header)
	return err
}

func (TCPConnections) End(io.Writer) error { return nil }

func (TCPConnections) WriteLog(w io.Writer, r *pipelines.LogRecord) error {
	c, ok := r.Payload.(*Conn)
	if !ok {
		return nil
	}
	port, ip := c.Local.Port(), c.Remote.Addr().String()
	if c.Connect {
		port, ip = c.Remote.Port(), "->"+ip
	}
	_, err := fmt.Fprintf(w, "%6d %16s %6d %6d %16s\n", c.UID, c.Command, c.PID, port, ip)
	return err
}
