//go:build linux

package socketcalls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Source is the socket_calls source of one pipeline.
type Source struct {
	name   string
	cfg    config.SocketCallsSource
	kernel *hooks.Kernel
	log    *slog.Logger

	probe *bpfsc.Probe

	mu       sync.Mutex // guards stats and threads, read by Self while Run runs
	stats    bpfsc.Stats
	threads  int
	lastWarn bpfsc.Stats

	spans    atomic.Int64
	orphaned atomic.Int64
	decode   atomic.Int64
}

// Batching: a batch goes out when it is this big, or when the ring buffer
// has been empty this long.
const (
	maxBatch  = 1024
	batchWait = 50 * time.Millisecond
)

// The kernel wakes a waiting reader for every record it writes, and at a
// moderate rate each wake-up brings a few records and costs more than
// they do. So when the ring runs empty the reader first sleeps drainPause
// and then reads what gathered meanwhile, in rings big enough to hold
// that long a burst (pauseRing); it waits for the kernel only when
// nothing came.
const (
	drainPause = 2 * time.Millisecond
	pauseRing  = 1 << 20
	// fullPause is how long the reader leaves the ring alone while the
	// pipeline's queue is full.
	fullPause = time.Millisecond
)

// New makes a socket_calls source; nothing is loaded until Start.
func New(name string, cfg config.SocketCallsSource, kernel *hooks.Kernel, log *slog.Logger) *Source {
	return &Source{name: name, cfg: cfg, kernel: kernel, log: log.With("source", name)}
}

func (s *Source) Name() string                       { return s.name }
func (s *Source) NewConsole() pipelines.TraceConsole { return NewThreadIndent() }

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
	notes := s.probe.Notes
	if s.probe.Rung() == hooks.TpBTF || s.probe.Rung() == hooks.RawTracepoint {
		notes = append(notes, "no fentry or kprobe here: spans are the system calls and the networking tracepoint pairs inside them, not the kernel functions of the list")
	}
	return notes
}

func (s *Source) Start(ctx context.Context) error {
	var pids, uids []uint32
	for _, p := range s.cfg.PIDs {
		pids = append(pids, uint32(p))
	}
	for _, u := range s.cfg.UIDs {
		uids = append(uids, uint32(u))
	}
	cg, level, err := cgroupIDs(s.cfg.Cgroups)
	if err != nil {
		return err
	}
	p, err := bpfsc.Open(bpfsc.Options{
		Hook:                 s.cfg.Hook,
		Functions:            s.cfg.Functions,
		MaxFunctions:         s.cfg.MaxFunctions,
		Syscalls:             s.cfg.Syscalls,
		All:                  s.cfg.All,
		PIDs:                 pids,
		Commands:             s.cfg.Commands,
		UIDs:                 uids,
		CgroupIDs:            cg,
		CgroupLevel:          level,
		MaxDepth:             uint32(s.cfg.MaxDepth),
		SampleRatio:          s.cfg.SamplingRatio,
		RateLimit:            uint64(s.cfg.RateLimit),
		MaxThreads:           uint32(s.cfg.MaxThreads),
		RingBufferSize:       s.cfg.RingSize,
		RootsOutsideSyscalls: s.cfg.RootsOutsideSyscalls,
		Kernel:               s.kernel,
		Log:                  s.log,
	})
	if err != nil {
		return err
	}
	s.probe = p
	return nil
}

// cgroupIDs resolves cgroup v2 directories to their ids (the directory's
// inode number) and returns the deepest level among them.
func cgroupIDs(paths []string) ([]uint64, uint32, error) {
	var ids []uint64
	var level uint32
	root := cgroup2Root()
	for _, p := range paths {
		full := p
		if !filepath.IsAbs(p) {
			if root == "" {
				return nil, 0, fmt.Errorf("cgroup %q: no cgroup2 mount found to resolve a relative path", p)
			}
			full = filepath.Join(root, p)
		}
		var st unix.Stat_t
		if err := unix.Stat(full, &st); err != nil {
			return nil, 0, fmt.Errorf("cgroup %q: %w", p, err)
		}
		ids = append(ids, st.Ino)
		if root != "" {
			if rel, err := filepath.Rel(root, full); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
				level = max(level, uint32(strings.Count(rel, "/")+1))
			}
		}
	}
	return ids, level, nil
}

// cgroup2Root finds where cgroup v2 is mounted (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid systems).
func cgroup2Root() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if before, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
			if f := strings.Fields(before); len(f) >= 5 {
				return f[4]
			}
		}
	}
	return ""
}

func (s *Source) Close() error {
	if s.probe == nil {
		return nil
	}
	err := s.probe.Close()
	s.probe = nil
	return err
}

// clockOffset is wall time minus CLOCK_MONOTONIC (what bpf_ktime_get_ns reads).
func clockOffset() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}

// Run reads the ring buffer and hands spans to emit until ctx is done, then
// reads what the kernel has already written and returns. While the queue is
// full it reads nothing: the records wait in the ring, and what overflows
// it is counted there (ring_buffer_full), at no cost to the agent, instead
// of being read, built into spans and dropped at the queue (which, on an
// overloaded core, left the exporter too little CPU to catch up).
func (s *Source) Run(ctx context.Context, emit func([]pipelines.Span), full func() bool) error {
	if s.probe == nil {
		return errors.New("socket_calls: not started")
	}
	rd, err := s.probe.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	b := NewBuilder([3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}, s.probe.Functions, 8192)
	b.GroupWindow = s.cfg.GroupWindow
	b.ProcessResource = s.cfg.ServiceName != config.SocketCallsServiceAgent
	b.SetClock(clockOffset())
	lastClock, lastRefresh := time.Now(), time.Now()
	pause := s.cfg.RingSize >= pauseRing

	// Each batch is made the size the last one reached, so that it is not
	// grown (and copied) span by span.
	batch := make([]pipelines.Span, 0, 64)
	var rec ringbuf.Record
	flush := func() {
		if n := len(batch); n > 0 {
			s.spans.Add(int64(n))
			emit(batch)
			batch = make([]pipelines.Span, 0, min(maxBatch, max(64, n+n/4)))
		}
	}
	stopping := false
	// left bounds the records read after ctx is done: what the ring held
	// then, so a thread that keeps calling cannot hold up shutdown.
	left := 0
	for {
		if !stopping && ctx.Err() != nil {
			stopping = true
			left = rd.AvailableBytes()/(bpfsc.RecordSize+8) + 1
		}
		if stopping {
			if left <= 0 {
				flush()
				s.refresh()
				return nil
			}
			left--
		}
		if !stopping && full() {
			time.Sleep(fullPause)
			continue
		}
		wait := batchWait
		if stopping {
			wait = 0
		}
		// The deadline only matters when the read has to wait: it is not
		// renewed (a clock read) for every record of a full ring.
		if stopping || rd.AvailableBytes() == 0 {
			rd.SetDeadline(time.Now().Add(wait))
		}
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			r, derr := bpfsc.Decode(rec.RawSample)
			if derr != nil {
				s.decode.Add(1)
				continue
			}
			batch = b.Add(r, batch)
			s.orphaned.Store(b.Orphaned)
			if len(batch) >= maxBatch {
				flush()
				if time.Since(lastRefresh) > time.Second {
					s.refresh()
					lastRefresh = time.Now()
				}
			}
			if pause && !stopping && rd.AvailableBytes() == 0 {
				time.Sleep(drainPause)
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			flush()
			if time.Since(lastRefresh) > time.Second || stopping {
				s.refresh()
				lastRefresh = time.Now()
			}
			if stopping {
				return nil
			}
			if time.Since(lastClock) > 10*time.Second {
				// Follow NTP steps and slews of the wall clock.
				b.SetClock(clockOffset())
				lastClock = time.Now()
			}
		case errors.Is(err, syscall.EINTR):
			// The Go runtime's signals interrupt the wait; it is no error.
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			flush()
			return nil
		default:
			flush()
			return fmt.Errorf("socket_calls: read ring buffer: %w", err)
		}
	}
}

// refresh reads the kernel counters for Self, at most once a second, and
// warns about new losses.
func (s *Source) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.probe.Stats()
	if err != nil {
		return
	}
	s.stats = st
	if st.RingbufFull > s.lastWarn.RingbufFull {
		s.log.Warn("socket_calls: ring buffer full, spans lost; raise ring_size or lower rate_limit", "lost", st.RingbufFull-s.lastWarn.RingbufFull)
	}
	if st.Missed > s.lastWarn.Missed {
		s.log.Warn("socket_calls: the kernel skipped the programs, entries or returns not seen", "skipped", st.Missed-s.lastWarn.Missed)
	}
	if st.ThreadsFull > s.lastWarn.ThreadsFull {
		s.log.Warn("socket_calls: thread map full; raise max_threads", "lost", st.ThreadsFull-s.lastWarn.ThreadsFull)
	}
	s.lastWarn = st
}

// Self reports the source's counters (sockeye.agent.*).
func (s *Source) Self() []pipelines.SelfPoint {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	threads := 0
	if s.probe != nil {
		threads, _ = s.probe.ThreadsInUse()
	}
	src := attribute.String("sockeye.source", s.name)
	dropped := func(reason string, v uint64) pipelines.SelfPoint {
		return pipelines.SelfPoint{Name: "sockeye.agent.spans.dropped", Unit: "{span}", Description: "Spans dropped on the way, by reason.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", reason)}, Value: int64(v)}
	}
	out := []pipelines.SelfPoint{
		dropped("ring_buffer_full", st.RingbufFull),
		dropped("sampled_out", st.SampledOut),
		dropped("rate_limited", st.RateLimited),
		dropped("max_depth", st.Depth),
		dropped("thread_map_full", st.ThreadsFull),
		dropped("event_orphaned", uint64(s.orphaned.Load())),
		dropped("decode_error", uint64(s.decode.Load())),
		dropped("probe_missed", st.Missed),
		{Name: "sockeye.agent.spans.unmatched", Unit: "{span}", Description: "Returns seen without their entry (not traced) and entries closed without their return (sent as incomplete).",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "return_without_entry")}, Value: int64(st.UnmatchedReturn)},
		{Name: "sockeye.agent.spans.unmatched", Unit: "{span}", Description: "Returns seen without their entry (not traced) and entries closed without their return (sent as incomplete).",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src, attribute.String("sockeye.reason", "entry_without_return")}, Value: int64(st.Incomplete)},
		{Name: "sockeye.agent.spans.received", Unit: "{span}", Description: "Spans read from the kernel.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src}, Value: s.spans.Load()},
		{Name: "sockeye.agent.traces.roots", Unit: "{call}", Description: "Root calls traced in the kernel.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src}, Value: int64(st.Roots)},
	}
	if s.probe != nil {
		out = append(out,
			pipelines.SelfPoint{Name: "sockeye.agent.map.entries", Unit: "{entry}", Description: "Keys held in a kernel map.", Kind: pipelines.SelfGauge,
				Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "threads")}, Value: int64(threads)},
			pipelines.SelfPoint{Name: "sockeye.agent.map.capacity", Unit: "{entry}", Description: "Keys a kernel map can hold.", Kind: pipelines.SelfGauge,
				Attrs: []attribute.KeyValue{src, attribute.String("sockeye.map", "threads")}, Value: int64(s.probe.MaxThreads())})
	}
	return out
}

// String is for logs.
func (s *Source) String() string { return "socket_calls source " + s.name }
