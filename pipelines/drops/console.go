package drops

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/pipelines"
)

// Dropwatch prints batches as dropwatch.stp did: a line at start, then
// every interval a blank line and "N packets dropped at FUNCTION" per
// location, most drops first, and a line at exit.
type Dropwatch struct {
	// Reason appends the drop reason to each line: "... at tcp_v4_rcv (NO_SOCKET)".
	Reason bool
	// Offset shows the location as function+0xoff, one line per address.
	Offset bool
	// sites are the batch's drops before processors, one per kernel key;
	// the source sets them so the console can show offsets, which rows do
	// not carry. Without them the console reads the rows.
	sites []site
}

var _ pipelines.ConsoleFormatter = Dropwatch{}

// site is one kernel key of an interval: its row attributes (to tell which
// survived the processors), its address and its count.
type site struct {
	attrs    attribute.Set
	addr     uint64
	function string
	offset   string
	reason   string
	packets  int64
}

func (Dropwatch) Begin(w io.Writer) error {
	_, err := io.WriteString(w, "Monitoring for dropped packets\n")
	return err
}

func (Dropwatch) End(w io.Writer) error {
	_, err := io.WriteString(w, "Stopping dropped packet monitor\n")
	return err
}

type dropLine struct {
	where, reason string
	addr          uint64 // highest address of the line's sites, for ties
	n             int64
}

func (d Dropwatch) Write(w io.Writer, b *pipelines.Batch) error {
	var lines []dropLine
	index := map[dropLine]int{}
	add := func(where, reason string, addr uint64, n int64) {
		if n == 0 {
			return
		}
		k := dropLine{where: where}
		if d.Reason {
			k.reason = reason
		}
		if i, ok := index[k]; ok {
			lines[i].n += n
			lines[i].addr = max(lines[i].addr, addr)
			return
		}
		index[k] = len(lines)
		k.n, k.addr = n, addr
		lines = append(lines, k)
	}
	if d.sites != nil {
		for _, s := range d.sites {
			if !survived(s.attrs, b.Rows) {
				continue
			}
			where := s.function
			if d.Offset {
				where = s.offset
			}
			add(where, s.reason, s.addr, s.packets)
		}
	} else {
		for _, r := range b.Rows {
			if len(r.Values) <= ColPackets {
				continue
			}
			where, reason := "-", "-"
			for _, kv := range r.Attrs {
				switch kv.Key {
				case AttrLocation:
					where = kv.Value.AsString()
				case AttrReason:
					reason = kv.Value.AsString()
				}
			}
			add(where, reason, 0, r.Values[ColPackets])
		}
	}
	// Most drops first, as the seed's `foreach (l in locations-)`. Ties,
	// which the seed left to its hash order, go in a fixed one: the higher
	// address first (module code before the core kernel's), then by name.
	slices.SortStableFunc(lines, func(a, b dropLine) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		if c := cmp.Compare(b.addr, a.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.where, b.where); c != 0 {
			return c
		}
		return cmp.Compare(a.reason, b.reason)
	})
	bw := bufio.NewWriter(w)
	bw.WriteString("\n")
	for _, l := range lines {
		if d.Reason {
			fmt.Fprintf(bw, "%d packets dropped at %s (%s)\n", l.n, l.where, l.reason)
		} else {
			fmt.Fprintf(bw, "%d packets dropped at %s\n", l.n, l.where)
		}
	}
	return bw.Flush()
}

// survived reports whether a row left by the processors covers the site:
// every attribute the row still has equals the site's. A filter removes
// rows; an attributes processor removes attributes and merges rows.
func survived(attrs attribute.Set, rows []pipelines.Row) bool {
	for _, r := range rows {
		ok := true
		for _, kv := range r.Attrs {
			v, has := attrs.Value(kv.Key)
			if !has || v.Emit() != kv.Value.Emit() {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// batcher fills one interval's batch: rows for the metrics, sites for the
// console.
type batcher struct {
	b       *pipelines.Batch
	console Dropwatch
	merged  map[attribute.Distinct]int
}

func newBatcher(b *pipelines.Batch, console Dropwatch) *batcher {
	console.sites = []site{}
	return &batcher{b: b, console: console, merged: map[attribute.Distinct]int{}}
}

// add counts one kernel key, at address addr.
func (bt *batcher) add(addr uint64, e Entry) {
	row := e.Row()
	set := attribute.NewSet(row.Attrs...)
	bt.console.sites = append(bt.console.sites, site{attrs: set, addr: addr, function: e.Function, offset: e.Site, reason: e.Reason, packets: int64(e.Packets)})
	// Addresses within one function become one row.
	if i, ok := bt.merged[set.Equivalent()]; ok {
		bt.b.Rows[i].Values[ColPackets] += row.Values[ColPackets]
		return
	}
	bt.merged[set.Equivalent()] = len(bt.b.Rows)
	bt.b.Rows = append(bt.b.Rows, row)
}

func (bt *batcher) done() { bt.b.Console = bt.console }
