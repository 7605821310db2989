//go:build linux

package drops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	bpfdrops "github.com/sockeye/sockeye/bpf/drops"
	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/drops/ksym"
)

// Source is the drops source of one pipeline.
type Source struct {
	name   string
	cfg    config.DropsSource
	kernel *hooks.Kernel
	log    *slog.Logger

	probe   *bpfdrops.Probe
	syms    *ksym.Resolver // nil when kallsyms cannot be read: raw addresses
	reasons *Reasons
	// Paths of the symbol lists; replaced in tests.
	kallsyms, modules string

	lastStats bpfdrops.Stats
	last      time.Time
}

// New makes a drops source; nothing is loaded until Start.
func New(name string, cfg config.DropsSource, kernel *hooks.Kernel, log *slog.Logger) *Source {
	return &Source{
		name:     name,
		cfg:      cfg,
		kernel:   kernel,
		log:      log.With("source", name),
		kallsyms: ksym.KallsymsPath,
		modules:  ksym.ModulesPath,
	}
}

func (s *Source) Name() string { return s.name }

func (s *Source) Console() pipelines.ConsoleFormatter {
	return Dropwatch{Reason: s.cfg.ConsoleReason, Offset: s.cfg.ConsoleOffset}
}

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
	if s.kernel == nil {
		return errors.New("drops: no kernel BTF given")
	}
	p, err := bpfdrops.Open(bpfdrops.Options{
		Hook:       s.cfg.Hook,
		MaxEntries: s.cfg.MaxEntries,
		Interface:  s.cfg.Interface,
		Kernel:     s.kernel,
		Log:        s.log,
	})
	if err != nil {
		return err
	}
	s.probe = p
	s.reasons = NewReasons(s.kernel.Types)
	syms, err := ksym.NewResolver(s.kallsyms, s.modules)
	switch {
	case err != nil:
		s.log.Warn("drop locations are shown as raw addresses: cannot read kernel symbols", "error", err)
	case syms.Table().Hidden():
		s.log.Warn("drop locations are shown as raw addresses: "+s.kallsyms+" hides kernel addresses", "why", ksym.HiddenReason())
		s.syms = syms
	default:
		s.syms = syms
	}
	s.last = time.Now()
	return nil
}

func (s *Source) Close() error {
	if s.probe == nil {
		return nil
	}
	err := s.probe.Close()
	s.probe = nil
	return err
}

// Collect drains the kernel's counters: everything dropped since the last
// call, one row per (function, reason, protocol[, device]).
func (s *Source) Collect(ctx context.Context) (*pipelines.Batch, error) {
	if s.probe == nil {
		return nil, errors.New("drops: not started")
	}
	s.refreshSymbols()
	now := time.Now()
	b := &pipelines.Batch{Source: s.name, Start: s.last, End: now, Metrics: Metrics}
	s.last = now

	bt := newBatcher(b, s.Console().(Dropwatch))
	entries, err := s.probe.Drain(func(k bpfdrops.Key, n uint64) {
		if n != 0 {
			bt.add(k.Location, s.decode(k, n))
		}
	})
	if err != nil {
		return nil, err
	}
	bt.done()

	st, err := s.probe.Stats()
	if err != nil {
		return nil, err
	}
	if st.MapFull > s.lastStats.MapFull {
		s.log.Warn("drops map full: drops were not counted; raise max_entries",
			"uncounted", st.MapFull-s.lastStats.MapFull, "max_entries", s.probe.MaxEntries())
	}
	if st.UpdateErrors > s.lastStats.UpdateErrors {
		s.log.Warn("drops map insert failed: drops were not counted", "uncounted", st.UpdateErrors-s.lastStats.UpdateErrors,
			"error", unix.Errno(st.LastError).Error())
	}
	if st.Missed > s.lastStats.Missed {
		s.log.Warn("the kernel skipped the drops program: drops were not counted", "uncounted", st.Missed-s.lastStats.Missed,
			"rung", s.probe.Rung())
	}
	s.lastStats = st
	src := attribute.String("sockeye.source", s.name)
	m := attribute.String("sockeye.map", "drops")
	b.Self = []pipelines.SelfPoint{
		{Name: "sockeye.agent.map.entries", Unit: "{entry}", Description: "Keys held in a kernel map.", Kind: pipelines.SelfGauge,
			Attrs: []attribute.KeyValue{src, m}, Value: int64(entries)},
		{Name: "sockeye.agent.map.capacity", Unit: "{entry}", Description: "Keys a kernel map can hold.", Kind: pipelines.SelfGauge,
			Attrs: []attribute.KeyValue{src, m}, Value: int64(s.probe.MaxEntries())},
		{Name: "sockeye.agent.map.full", Unit: "{packet}", Description: "Packets not counted because a kernel map had no room for a new key.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, m}, Value: int64(st.MapFull)},
		{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "map_update_error")}, Value: int64(st.UpdateErrors)},
		{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "probe_missed")}, Value: int64(st.Missed)},
	}
	return b, nil
}

// refreshSymbols reloads kallsyms when modules were loaded or removed.
func (s *Source) refreshSymbols() {
	if s.syms == nil {
		return
	}
	reloaded, err := s.syms.Refresh()
	if err != nil {
		s.log.Warn("reloading kernel symbols", "error", err)
		return
	}
	if reloaded {
		s.log.Debug("kernel modules changed: symbols reloaded", "symbols", s.syms.Table().Len())
		s.reasons.ModulesChanged()
	}
}

// decode turns a kernel key into an entry.
func (s *Source) decode(k bpfdrops.Key, n uint64) Entry {
	e := Entry{
		Reason:    s.reasons.Name(k.Reason),
		Type:      NetworkType(k.L3),
		Transport: Transport(k.L3, k.L4, k.Family),
		Device:    cString(k.Dev[:]),
		Packets:   n,
	}
	if k.Reason == bpfdrops.ReasonNone {
		e.Reason = ReasonUnknown
	}
	e.Function, e.Site = ksym.Raw(k.Location), ksym.Raw(k.Location)
	if s.syms != nil {
		if sym, ok := s.syms.Lookup(k.Location); ok {
			e.Function, e.Site = sym.Function(), sym.WithOffset()
		}
	}
	return e
}

// cString turns a fixed-size, NUL-padded kernel string into a Go string.
func cString(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	buf := make([]byte, n)
	for i := range n {
		buf[i] = byte(b[i])
	}
	return string(buf)
}

// String is for logs.
func (s *Source) String() string { return fmt.Sprintf("drops source %s", s.name) }
