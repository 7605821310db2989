//go:build linux

package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Source is the traffic source of one pipeline.
type Source struct {
	name   string
	cfg    config.TrafficSource
	kernel *hooks.Kernel
	log    *slog.Logger

	probe *bpftraffic.Probe
	// counters is probe's maps (a fake in tests), nil when not started.
	counters counterMaps
	// prev holds each key's totals at the previous collection, to turn the
	// kernel's running totals into per-interval deltas.
	prev      map[bpftraffic.Key]baseline
	lastStats bpftraffic.Stats
	last      time.Time
	// alive tells whether a process still exists; replaced in tests.
	alive func(pid uint32) bool
}

// New makes a traffic source; nothing is loaded until Start.
func New(name string, cfg config.TrafficSource, kernel *hooks.Kernel, log *slog.Logger) *Source {
	return &Source{
		name:   name,
		cfg:    cfg,
		kernel: kernel,
		log:    log.With("source", name),
		prev:   map[bpftraffic.Key]baseline{},
		alive:  processAlive,
	}
}

func (s *Source) Name() string                        { return s.name }
func (s *Source) Console() pipelines.ConsoleFormatter { return Nettop{} }

// Rung is the hook rung in use, "" before Start.
func (s *Source) Rung() string {
	if s.probe == nil {
		return ""
	}
	return s.probe.Rung()
}

// Notes are the chosen rung's limits on this kernel.
func (s *Source) Notes() []string {
	if s.probe == nil {
		return nil
	}
	return s.probe.Notes
}

func (s *Source) Start(ctx context.Context) error {
	p, err := bpftraffic.Open(bpftraffic.Options{
		Hook:            s.cfg.Hook,
		AttributeSocket: s.cfg.Attribution != "current",
		MaxEntries:      s.cfg.MaxEntries,
		Kernel:          s.kernel,
		Log:             s.log,
	})
	if err != nil {
		return err
	}
	s.probe, s.counters = p, p
	s.last = time.Now()
	return nil
}

func (s *Source) Close() error {
	if s.probe == nil {
		return nil
	}
	err := s.probe.Close()
	s.probe, s.counters = nil, nil
	return err
}

// Collect reads the kernel's totals, returns what changed since the last
// call, and removes the keys of processes that have exited.
func (s *Source) Collect(ctx context.Context) (*pipelines.Batch, error) {
	if s.counters == nil {
		return nil, errors.New("traffic: not started")
	}
	now := time.Now()
	b := &pipelines.Batch{Source: s.name, Start: s.last, End: now, Metrics: Metrics, Console: Nettop{}}
	s.last = now

	merged := map[attribute.Distinct]int{}
	seen := make(map[bpftraffic.Key]bool, len(s.prev))
	var gone []bpftraffic.Key
	liveness := map[uint32]bool{}
	entries, err := s.counters.Read(func(k bpftraffic.Key, c, front bpftraffic.Counts) {
		seen[k] = true
		p, had := s.prev[k]
		d := delta(c, p.c)
		alive, ok := liveness[k.Pid]
		if !ok {
			alive = k.Pid == 0 || s.alive(k.Pid)
			liveness[k.Pid] = alive
		}
		if alive {
			s.prev[k] = baseline{c: highest(p.c, c)}
		} else {
			// The key leaves the map; what a CPU still holds in its front
			// comes back into it when moved, already counted here.
			gone = append(gone, k)
			s.prev[k] = baseline{c: front, gone: true}
		}
		// A row for what is new, and one final row for a process that
		// has exited; a key already reported gone only when it grows.
		if d == (bpftraffic.Counts{}) && (alive || had && p.gone) {
			return
		}
		e := Entry{
			PID: k.Pid, UID: k.Uid,
			Device:    CString(k.Dev[:]),
			Command:   Command(k.Pid, CString(k.Comm[:])),
			TxPackets: d.TxPackets, RxPackets: d.RxPackets, TxBytes: d.TxBytes, RxBytes: d.RxBytes,
		}
		row := e.Row(!alive)
		// Keys that differ only in what rows do not show (the idle task's
		// CPU, a device's namespace) become one row.
		set := attribute.NewSet(row.Attrs...)
		if i, ok := merged[set.Equivalent()]; ok {
			for c := range row.Values {
				b.Rows[i].Values[c] += row.Values[c]
			}
			b.Rows[i].Final = b.Rows[i].Final && row.Final
			return
		}
		merged[set.Equivalent()] = len(b.Rows)
		b.Rows = append(b.Rows, row)
	})
	if err != nil {
		return nil, err
	}
	for k := range s.prev {
		if !seen[k] {
			delete(s.prev, k)
		}
	}
	if err := s.counters.Delete(gone); err != nil {
		s.log.Warn("removing keys of exited processes", "error", err)
	}

	st, err := s.counters.Stats()
	if err != nil {
		return nil, err
	}
	if st.MapFull > s.lastStats.MapFull {
		s.log.Warn("traffic map full: packets were not counted; raise max_entries",
			"uncounted", st.MapFull-s.lastStats.MapFull, "max_entries", s.counters.MaxEntries(), "errno", unix.Errno(st.LastErrno).Error())
	}
	if st.UpdateErrors > s.lastStats.UpdateErrors {
		s.log.Warn("traffic map insert failed: packets were not counted", "uncounted", st.UpdateErrors-s.lastStats.UpdateErrors,
			"errno", unix.Errno(st.LastErrno).Error())
	}
	if st.Missed > s.lastStats.Missed {
		s.log.Warn("the kernel skipped the traffic programs: packets were not counted", "skipped", st.Missed-s.lastStats.Missed,
			"rung", s.Rung())
	}
	s.lastStats = st
	src := attribute.String("sockeye.source", s.name)
	b.Self = []pipelines.SelfPoint{
		{Name: "sockeye.agent.map.entries", Unit: "{entry}", Description: "Keys held in a kernel map.", Kind: pipelines.SelfGauge,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "traffic")}, Value: int64(entries)},
		{Name: "sockeye.agent.map.capacity", Unit: "{entry}", Description: "Keys a kernel map can hold.", Kind: pipelines.SelfGauge,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "traffic")}, Value: int64(s.counters.MaxEntries())},
		{Name: "sockeye.agent.map.full", Unit: "{packet}", Description: "Packets not counted because a kernel map had no room for a new key.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "traffic")}, Value: int64(st.MapFull)},
		{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "map_update_error")}, Value: int64(st.UpdateErrors)},
		{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "probe_missed")}, Value: int64(st.Missed)},
	}
	return b, nil
}

// counterMaps is what Collect needs of the kernel's maps.
type counterMaps interface {
	Read(fn func(k bpftraffic.Key, total, front bpftraffic.Counts)) (int, error)
	Delete(keys []bpftraffic.Key) error
	Stats() (bpftraffic.Stats, error)
	MaxEntries() uint32
}

// baseline is what a key's totals were at the last collection. gone: the
// key was reported as its process's last and removed from the map.
type baseline struct {
	c    bpftraffic.Counts
	gone bool
}

// delta is cur-prev field by field, 0 where cur is lower: a read can miss
// counts a CPU was moving from its front into the map (they come in the
// next), so totals may step back for one read and never count twice.
func delta(cur, prev bpftraffic.Counts) bpftraffic.Counts {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return bpftraffic.Counts{
		TxPackets: sub(cur.TxPackets, prev.TxPackets),
		RxPackets: sub(cur.RxPackets, prev.RxPackets),
		TxBytes:   sub(cur.TxBytes, prev.TxBytes),
		RxBytes:   sub(cur.RxBytes, prev.RxBytes),
	}
}

// highest is the field-by-field maximum: the totals reported so far.
func highest(a, b bpftraffic.Counts) bpftraffic.Counts {
	return bpftraffic.Counts{
		TxPackets: max(a.TxPackets, b.TxPackets),
		RxPackets: max(a.RxPackets, b.RxPackets),
		TxBytes:   max(a.TxBytes, b.TxBytes),
		RxBytes:   max(a.RxBytes, b.RxBytes),
	}
}

// processAlive is kill(pid, 0): EPERM still means the process exists.
func processAlive(pid uint32) bool {
	err := unix.Kill(int(pid), 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// String is for logs.
func (s *Source) String() string { return fmt.Sprintf("traffic source %s", s.name) }
