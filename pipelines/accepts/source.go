//go:build linux

package accepts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	bpfaccepts "github.com/sockeye/sockeye/bpf/accepts"
	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Source is the accepts source of one pipeline.
type Source struct {
	name   string
	cfg    config.AcceptsSource
	kernel *hooks.Kernel
	log    *slog.Logger

	probe *bpfaccepts.Probe
	// read counts ring-buffer records; bad those that did not decode.
	read, bad atomic.Int64

	mu        sync.Mutex // guards lastStats
	lastStats bpfaccepts.Stats
}

var _ pipelines.LogSource = (*Source)(nil)

// New makes an accepts source; nothing is loaded until Start.
func New(name string, cfg config.AcceptsSource, kernel *hooks.Kernel, log *slog.Logger) *Source {
	return &Source{name: name, cfg: cfg, kernel: kernel, log: log.With("source", name)}
}

func (s *Source) Name() string                           { return s.name }
func (s *Source) Console() pipelines.LogConsoleFormatter { return TCPConnections{} }

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

// pollInterval bounds how long a record waits in the ring: the kernel
// wakes the reader only when an eighth of the ring is unread, so a burst
// costs one wake-up instead of one per connection.
const pollInterval = 50 * time.Millisecond

func (s *Source) Start(context.Context) error {
	ring := s.cfg.RingSize
	if ring == 0 {
		ring = config.DefaultAcceptsRingSize
	}
	p, err := bpfaccepts.Open(bpfaccepts.Options{
		Hook:        s.cfg.Hook,
		RingSize:    ring,
		WakeupBytes: uint64(ring / 8),
		Connect:     s.cfg.Connect,
		Kernel:      s.kernel,
		Log:         s.log,
	})
	if err != nil {
		return err
	}
	s.probe = p
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

// Run reads the ring buffer until ctx is done, then reads what the kernel
// had written by then and returns.
func (s *Source) Run(ctx context.Context, emit func(*pipelines.LogRecord)) error {
	if s.probe == nil {
		return errors.New("accepts: not started")
	}
	rd := s.probe.Reader()
	// Flush wakes a blocked read; the reader then returns what is left and
	// ErrFlushed.
	stop := context.AfterFunc(ctx, func() { _ = rd.Flush() })
	defer stop()
	var (
		rec   ringbuf.Record
		ev    bpfaccepts.Event
		clock monoClock
	)
	rd.SetDeadline(time.Now().Add(pollInterval))
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Everything unread has been read; wait for the next batch.
			rd.SetDeadline(time.Now().Add(pollInterval))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return nil
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		s.read.Add(1)
		if err := bpfaccepts.Decode(rec.RawSample, &ev); err != nil {
			s.bad.Add(1)
			continue
		}
		now := time.Now()
		c := ConnOf(&ev, clock.wall(ev.TsNs, now))
		emit(c.Record(s.name, now))
	}
}

// ConnOf decodes a kernel event; wall is its time on the wall clock.
func ConnOf(ev *bpfaccepts.Event, wall time.Time) Conn {
	c := Conn{
		Connect: ev.Kind == bpfaccepts.KindConnect,
		Time:    wall,
		PID:     ev.Pid,
		TID:     ev.Tid,
		UID:     ev.Uid,
		Command: comm(&ev.Comm),
	}
	var local, remote netip.Addr
	if ev.Family == bpfaccepts.FamilyINET6 {
		// A dual-stack socket's IPv4 peer is ::ffff:a.b.c.d: shown as the
		// IPv4 address it is on the wire.
		local = netip.AddrFrom16(ev.Laddr).Unmap()
		remote = netip.AddrFrom16(ev.Raddr).Unmap()
	} else {
		local = netip.AddrFrom4([4]byte(ev.Laddr[:4]))
		remote = netip.AddrFrom4([4]byte(ev.Raddr[:4]))
	}
	c.Local = netip.AddrPortFrom(local, ev.Lport)
	c.Remote = netip.AddrPortFrom(remote, ev.Rport)
	return c
}

// comm turns the kernel's NUL-padded command name into a string.
func comm(c *[16]int8) string {
	var b [16]byte
	for i, v := range c {
		b[i] = byte(v)
	}
	return unix.ByteSliceToString(b[:])
}

// monoClock turns bpf_ktime_get_ns (CLOCK_MONOTONIC) into wall time. The
// offset between the clocks is measured at the first event and again every
// offsetRefresh, so a step of the wall clock (NTP, suspend) is followed
// within that time.
type monoClock struct {
	offset   int64 // CLOCK_REALTIME - CLOCK_MONOTONIC, ns
	measured time.Time
}

const offsetRefresh = 10 * time.Second

func (c *monoClock) wall(mono uint64, now time.Time) time.Time {
	if c.measured.IsZero() || now.Sub(c.measured) >= offsetRefresh {
		c.offset = clockOffset()
		c.measured = now
	}
	return time.Unix(0, int64(mono)+c.offset)
}

// clockOffset reads the monotonic clock on both sides of the wall clock
// and takes the midpoint, so the offset is off by half a clock read at most.
func clockOffset() int64 {
	var m1, r, m2 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
	return r.Nano() - (m1.Nano()+m2.Nano())/2
}

// Self reports the source's loss counters and warns, once per call, about
// events lost since the previous one.
func (s *Source) Self() []pipelines.SelfPoint {
	src := attribute.String("sockeye.source", s.name)
	points := []pipelines.SelfPoint{
		{Name: "sockeye.agent.events.read", Unit: "{event}", Description: "Events read from a kernel ring buffer.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src}, Value: s.read.Load()},
		{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "decode_error")}, Value: s.bad.Load()},
	}
	if s.probe == nil {
		return points
	}
	st, err := s.probe.Stats()
	if err != nil {
		s.log.Warn("reading the kernel's loss counters", "error", err)
		return points
	}
	s.mu.Lock()
	last := s.lastStats
	s.lastStats = st
	s.mu.Unlock()
	if st.RingbufFull > last.RingbufFull {
		s.log.Warn("ring buffer full: connections were not reported; raise ring_size",
			"lost", st.RingbufFull-last.RingbufFull, "ring_size", s.probe.RingSize())
	}
	if st.Missed > last.Missed {
		s.log.Warn("the kernel skipped the accepts programs: connections were not reported",
			"lost", st.Missed-last.Missed, "rung", s.probe.Rung())
	}
	if st.ConnectFull > last.ConnectFull {
		s.log.Warn("table of connecting sockets full: outbound connections were not reported",
			"lost", st.ConnectFull-last.ConnectFull)
	}
	return append(points,
		pipelines.SelfPoint{Name: "sockeye.agent.ringbuf.full", Unit: "{event}", Description: "Events dropped in the kernel because the ring buffer was full.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "events")}, Value: int64(st.RingbufFull)},
		pipelines.SelfPoint{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "connect_table_full")}, Value: int64(st.ConnectFull)},
		pipelines.SelfPoint{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "probe_missed")}, Value: int64(st.Missed)},
	)
}
