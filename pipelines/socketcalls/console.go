package socketcalls

import (
	"bufio"
	"fmt"
	"io"
	"slices"

	"github.com/sockeye/sockeye/pipelines"
)

// ThreadIndent prints call trees as socket-trace.stp did with SystemTap's
// thread_indent: microseconds since the root call began, command(tid),
// indentation by depth, "->" on entry and "<-" on return:
//
//	 0 curl(4242):  -> connect
//	 3 curl(4242):   -> __sys_connect
//	41 curl(4242):   <- __sys_connect
//	44 curl(4242):  <- connect
//
// The kernel sends a span when it returns, children first, so a thread's
// tree is printed once its root returns. Bounded: MaxThreads trees waiting
// at once, MaxSpans spans per tree; past that the oldest tree is dropped.
type ThreadIndent struct {
	MaxThreads int
	MaxSpans   int
	pending    map[int][]pipelines.Span
	order      []int // threads in the order their trees began
	// Dropped counts spans not printed because of the bounds.
	Dropped int
}

var _ pipelines.TraceConsole = (*ThreadIndent)(nil)

// NewThreadIndent returns the console formatter with default bounds.
func NewThreadIndent() *ThreadIndent {
	return &ThreadIndent{MaxThreads: 4096, MaxSpans: 4096}
}

func (t *ThreadIndent) Begin(io.Writer) error { return nil }

// End prints what is left: trees whose root never returned.
func (t *ThreadIndent) End(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, tid := range t.order {
		if spans := t.pending[tid]; len(spans) > 0 {
			writeTree(bw, spans)
		}
	}
	t.pending, t.order = nil, nil
	return bw.Flush()
}

func (t *ThreadIndent) WriteSpans(w io.Writer, spans []pipelines.Span) error {
	if t.pending == nil {
		t.pending = map[int][]pipelines.Span{}
	}
	bw := bufio.NewWriter(w)
	for _, s := range spans {
		tid := s.Thread.TID
		group, ok := t.pending[tid]
		if !ok {
			if len(t.order) >= t.MaxThreads && len(t.order) > 0 {
				oldest := t.order[0]
				t.Dropped += len(t.pending[oldest])
				delete(t.pending, oldest)
				t.order = t.order[1:]
			}
			t.order = append(t.order, tid)
		}
		if len(group) >= t.MaxSpans {
			t.Dropped++
		} else {
			group = append(group, s)
		}
		if s.ParentID.IsValid() {
			t.pending[tid] = group
			continue
		}
		// A root: its tree is complete.
		writeTree(bw, group)
		delete(t.pending, tid)
		if i := slices.Index(t.order, tid); i >= 0 {
			t.order = slices.Delete(t.order, i, i+1)
		}
	}
	return bw.Flush()
}

// writeTree prints one thread's spans depth first, children in start
// order; spans whose parent is missing hang under the root.
func writeTree(w *bufio.Writer, spans []pipelines.Span) {
	var root *pipelines.Span
	known := map[[8]byte]bool{}
	for i := range spans {
		known[spans[i].SpanID] = true
		if !spans[i].ParentID.IsValid() {
			root = &spans[i]
		}
	}
	children := map[[8]byte][]*pipelines.Span{}
	var tops []*pipelines.Span
	for i := range spans {
		s := &spans[i]
		switch {
		case s == root:
		case root != nil && !known[s.ParentID]:
			children[root.SpanID] = append(children[root.SpanID], s)
		case root == nil && !known[s.ParentID]:
			tops = append(tops, s)
		default:
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	byStart := func(a, b *pipelines.Span) int { return a.Start.Compare(b.Start) }
	for _, c := range children {
		slices.SortStableFunc(c, byStart)
	}
	if root != nil {
		tops = []*pipelines.Span{root}
	}
	slices.SortStableFunc(tops, byStart)
	if len(tops) == 0 {
		return
	}
	base := tops[0].Start
	// Span ids come from the kernel's records: a broken record may repeat an
	// id or name itself as parent, which must not make the walk loop.
	printed := make(map[*pipelines.Span]bool, len(spans))
	var walk func(s *pipelines.Span, depth int)
	walk = func(s *pipelines.Span, depth int) {
		if printed[s] {
			return
		}
		printed[s] = true
		line := func(arrow string, us int64) {
			fmt.Fprintf(w, "%6d %s(%d):%-*s %s %s", us, s.Thread.Command, s.Thread.TID, depth+1, "", arrow, s.Name)
		}
		line("->", s.Start.Sub(base).Microseconds())
		w.WriteByte('\n')
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
		line("<-", s.End.Sub(base).Microseconds())
		if s.StatusMessage != "" {
			fmt.Fprintf(w, " (%s)", s.StatusMessage)
		}
		w.WriteByte('\n')
	}
	for _, s := range tops {
		walk(s, 0)
	}
}
