package traffic

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/pipelines"
)

// Nettop prints batches as nettop.stp did: a header, one row per key sorted
// by total packets, KB rounded down, and a blank line after every sample.
type Nettop struct{}

var _ pipelines.ConsoleFormatter = Nettop{}

const nettopHeader = "  PID   UID DEV     XMIT_PK RECV_PK XMIT_KB RECV_KB COMMAND\n"

func (Nettop) Begin(io.Writer) error { return nil }
func (Nettop) End(io.Writer) error   { return nil }

type nettopRow struct {
	pid, uid, dev, comm string
	v                   []int64
}

func (Nettop) Write(w io.Writer, b *pipelines.Batch) error {
	rows := make([]nettopRow, 0, len(b.Rows))
	for _, r := range b.Rows {
		if len(r.Values) < numCols {
			continue
		}
		if r.Values[ColTxPackets] == 0 && r.Values[ColRxPackets] == 0 {
			continue
		}
		nr := nettopRow{pid: "-", uid: "-", dev: "-", comm: "-", v: r.Values}
		for _, kv := range r.Attrs {
			switch kv.Key {
			case AttrPID:
				nr.pid = attrString(kv)
			case AttrUID:
				nr.uid = attrString(kv)
			case AttrDevice:
				nr.dev = kv.Value.AsString()
			case AttrCommand:
				nr.comm = kv.Value.AsString()
			}
		}
		rows = append(rows, nr)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		ti := rows[i].v[ColTxPackets] + rows[i].v[ColRxPackets]
		tj := rows[j].v[ColTxPackets] + rows[j].v[ColRxPackets]
		if ti != tj {
			return ti > tj
		}
		// Ties in a stable, readable order.
		if rows[i].pid != rows[j].pid {
			return rows[i].pid < rows[j].pid
		}
		return rows[i].dev < rows[j].dev
	})
	bw := bufio.NewWriter(w)
	bw.WriteString(nettopHeader)
	for _, r := range rows {
		fmt.Fprintf(bw, "%5s %5s %-7s %7d %7d %7d %7d %-15s\n",
			r.pid, r.uid, r.dev,
			r.v[ColTxPackets], r.v[ColRxPackets],
			r.v[ColTxBytes]/1024, r.v[ColRxBytes]/1024,
			r.comm)
	}
	bw.WriteString("\n")
	return bw.Flush()
}

func attrString(kv attribute.KeyValue) string {
	if kv.Value.Type() == attribute.INT64 {
		return strconv.FormatInt(kv.Value.AsInt64(), 10)
	}
	return kv.Value.Emit()
}
