// Package pcapng writes packet pipelines as pcapng files that Wireshark,
// tshark and tcpdump open: a section header naming sockeye, one interface
// block per (network namespace, interface), all of one link type and one
// snap length, nanosecond timestamps, the inbound direction and the
// owning process as a packet comment, and interface statistics at every
// rotation and at close.
//
// The link type is Linux cooked capture (LINKTYPE_LINUX_SLL, 113), the one
// tcpdump -i any writes: packets are taken from the network header on, and a
// 16-byte cooked header (packet type "to us", no link-layer address, the
// EtherType) goes in front. Raw IP (LINKTYPE_RAW, 101) would be simpler, but
// libpcap up to at least 1.10.3 maps the first interface block's 101 to
// DLT_RAW (12) and then rejects every further block of type 101 as a
// different link type, so tcpdump -r could not read a file with two
// interfaces.
//
// One goroutine owns the file: gopacket's NgWriter is not safe for
// concurrent use.
package pcapng

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/pipelines"
)

// LinkType is the link type of every interface block.
const LinkType = layers.LinkTypeLinuxSLL

// sllLen is the cooked header's length; sllNone is ARPHRD_NONE: no
// link-layer header was captured.
const (
	sllLen  = 16
	sllNone = 0xfffe
)

// Flush policies.
const (
	FlushAuto     = "auto"
	FlushPacket   = "packet"
	FlushInterval = "interval"
)

// Options say where and how to write.
type Options struct {
	// Path is the file, or "-" for Stdout. With rotation, a number is
	// appended (see Name); strftime-style %Y %m %d %H %M %S are expanded.
	Path   string
	Stdout io.Writer
	// RotateBytes starts a new file once the current one exceeds it (tcpdump -C).
	RotateBytes int64
	// RotateEvery starts a new file at this interval (tcpdump -G).
	RotateEvery time.Duration
	// Files, when not 0, bounds the number of files: names cycle through
	// Files numbers (tcpdump -W with -C), or, with StopAfterFiles, writing
	// stops after Files files (tcpdump -W with -G only).
	Files          int
	StopAfterFiles bool
	// Flush is FlushAuto (every packet to a pipe or terminal, every
	// FlushInterval to a regular file), FlushPacket or FlushInterval.
	Flush         string
	FlushInterval time.Duration
	// Application names the writer in the section header (shb_userappl).
	Application string
	Log         *slog.Logger
}

// Counts are what the exporter did since it started.
type Counts struct {
	// Written packets reached the file, or its buffer when nothing failed
	// since; a packet whose bytes did not all reach the file is Failed.
	Written uint64
	// Failed packets could not be written (a write error, e.g. a full disk).
	Failed uint64
	Files  int
}

// ReasonWriteFailed is the sockeye.reason of packets lost to write errors.
const ReasonWriteFailed = "write_failed"

// Exporter is a pcapng exporter. It is safe for concurrent use.
type Exporter struct {
	name string
	log  *slog.Logger
	reqs chan request
	// exited is closed when the writer goroutine has returned.
	exited chan struct{}
	// limit is closed once StopAfterFiles files have been written.
	limit    chan struct{}
	shutdown sync.Once
	closeErr error

	written, failed atomic.Uint64
	files           atomic.Int64
}

type request struct {
	b    *pipelines.PacketBatch
	stop bool
	ack  chan error
}

var (
	_ pipelines.PacketExporter = (*Exporter)(nil)
	_ pipelines.SelfReporter   = (*Exporter)(nil)
)

// New opens the first file (so that a bad path fails now) and starts the
// writer goroutine.
func New(name string, opts Options) (*Exporter, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.Flush == "" {
		opts.Flush = FlushAuto
	}
	if opts.Path == "" {
		return nil, errors.New("pcapng: no path")
	}
	if opts.Path == "-" && (opts.RotateBytes > 0 || opts.RotateEvery > 0) {
		return nil, errors.New("pcapng: standard output cannot be rotated")
	}
	e := &Exporter{
		name:   name,
		log:    opts.Log.With("exporter", name),
		reqs:   make(chan request),
		exited: make(chan struct{}),
		limit:  make(chan struct{}),
	}
	w := &writer{opts: opts, e: e, ids: map[ifKey]int{}, stats: map[string][]pipelines.IfaceStats{},
		comments: map[pipelines.Owner]string{}, start: time.Now()}
	inbound := pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound}
	w.flags = inbound.ToUint32()
	if err := w.open(w.start); err != nil {
		return nil, err
	}
	go w.loop()
	return e, nil
}

func (e *Exporter) Name() string { return e.name }

// Limit is closed when StopAfterFiles files have been written.
func (e *Exporter) Limit() <-chan struct{} { return e.limit }

// Counts are the totals so far; final after Shutdown.
func (e *Exporter) Counts() Counts {
	return Counts{Written: e.written.Load(), Failed: e.failed.Load(), Files: int(e.files.Load())}
}

// Self reports the packets lost to write errors.
func (e *Exporter) Self() []pipelines.SelfPoint {
	return []pipelines.SelfPoint{{
		Name: pipelines.MetricEventsLost, Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.",
		Kind: pipelines.SelfCounter,
		Attrs: []attribute.KeyValue{attribute.String("sockeye.exporter", e.name),
			pipelines.AttrReason.String(ReasonWriteFailed)},
		Value: int64(e.failed.Load()),
	}}
}

// ExportPackets hands the batch to the writer goroutine and waits until it
// is written (into the file's buffer; see Flush).
func (e *Exporter) ExportPackets(ctx context.Context, b *pipelines.PacketBatch) error {
	ack := make(chan error, 1)
	select {
	case e.reqs <- request{b: b, ack: ack}:
	case <-e.exited:
		return errors.New("pcapng: exporter is shut down")
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-ack
}

// Shutdown writes the interface statistics, flushes and closes the file.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdown.Do(func() {
		ack := make(chan error, 1)
		select {
		case e.reqs <- request{stop: true, ack: ack}:
			e.closeErr = <-ack
		case <-e.exited:
		case <-ctx.Done():
			e.closeErr = ctx.Err()
		}
	})
	return e.closeErr
}

type ifKey struct{ netns, index uint32 }

// writer is the state of the writer goroutine.
type writer struct {
	opts  Options
	e     *Exporter
	start time.Time

	file  *os.File // nil for standard output
	name  string   // of the current file, for the log
	bw    *bufio.Writer
	cw    countWriter
	ng    *pcapgo.NgWriter
	index int // of the current file
	// perPacket flushes after every packet (pipes, terminals).
	perPacket bool
	dirty     bool
	stopped   bool // StopAfterFiles reached: nothing more is written
	// failErr is the first write error of the current file. The buffer
	// keeps it and a block may be cut short, so nothing more is written to
	// that file: its packets are counted as failed until the next one.
	failErr error
	// pending are the stream offsets at which the packets counted as
	// written since the last successful flush end; those past what reached
	// the file are lost when a write fails.
	pending []int64

	snaplen int // of every interface block, from the first batch
	snapSet bool
	// known lists every interface seen, so each new file declares them again.
	known []pipelines.Interface
	ids   map[ifKey]int // interface ids of the current file
	// stats holds the latest per-interface totals of each source.
	stats    map[string][]pipelines.IfaceStats
	comments map[pipelines.Owner]string
	flags    uint32 // of every packet: inbound
	cooked   [sllLen]byte
	epb      []byte // the block being written, reused
}

// countWriter counts the bytes given to the file, for size rotation.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (w *writer) loop() {
	defer close(w.e.exited)
	flush := time.NewTicker(w.opts.FlushInterval)
	defer flush.Stop()
	// The rotation clock starts with the first batch, which brings the snap
	// length every interface block of a file must share.
	var rotate <-chan time.Time
	for {
		select {
		case r := <-w.reqs():
			if r.stop {
				r.ack <- w.close(time.Now())
				return
			}
			r.ack <- w.write(r.b)
			if rotate == nil && w.opts.RotateEvery > 0 {
				t := time.NewTicker(w.opts.RotateEvery)
				defer t.Stop()
				rotate = t.C
			}
		case <-flush.C:
			if w.dirty {
				w.flush()
			}
		case now := <-rotate:
			if !w.stopped {
				w.rotate(now)
			}
		}
	}
}

func (w *writer) reqs() chan request { return w.e.reqs }

// Name is the file name of the index-th file started at t.
func Name(opts Options, index int, t time.Time) string {
	base := opts.Path
	timed := strings.Contains(base, "%")
	if timed {
		base = strftime(base, t)
	}
	if opts.RotateBytes == 0 && (opts.RotateEvery == 0 || timed) {
		return base
	}
	if opts.Files > 0 && !opts.StopAfterFiles {
		width := len(strconv.Itoa(opts.Files - 1))
		return fmt.Sprintf("%s%0*d", base, width, index%opts.Files)
	}
	if index == 0 {
		return base
	}
	return base + strconv.Itoa(index)
}

// open starts file number w.index. The section header and the interface
// blocks are written as soon as one interface is known.
func (w *writer) open(now time.Time) error {
	var out io.Writer
	if w.opts.Path == "-" {
		w.name = "standard output"
		out = w.opts.Stdout
		if out == nil {
			out = os.Stdout
		}
		w.perPacket = w.opts.Flush != FlushInterval
		if f, ok := out.(*os.File); ok {
			w.perPacket = w.perPacket && !isRegular(f)
		}
	} else {
		name := Name(w.opts, w.index, now)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			// The path error would name the file twice.
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("cannot create capture file %s: %w", name, err)
		}
		w.file, out, w.name = f, f, name
		w.perPacket = w.opts.Flush == FlushPacket || w.opts.Flush == FlushAuto && !isRegular(f)
	}
	w.cw = countWriter{w: out}
	w.bw = bufio.NewWriterSize(&w.cw, 256<<10)
	w.ng = nil
	clear(w.ids)
	w.failErr, w.pending = nil, w.pending[:0]
	w.e.files.Add(1)
	if len(w.known) > 0 {
		return w.begin()
	}
	return nil
}

func isRegular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

// begin writes the section header and declares every known interface.
func (w *writer) begin() error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	info := pcapgo.NgSectionInfo{
		Application: w.opts.Application,
		OS:          "Linux " + unix.ByteSliceToString(uts.Release[:]),
		Hardware:    runtime.GOARCH,
	}
	ng, err := pcapgo.NewNgWriterInterface(w.bw, w.idb(w.known[0]), pcapgo.NgWriterOptions{SectionInfo: info})
	if err != nil {
		return w.fail(err)
	}
	w.ng = ng
	w.ids[keyOf(w.known[0])] = 0
	for _, ifc := range w.known[1:] {
		if err := w.declare(ifc); err != nil {
			return err
		}
	}
	w.dirty = true
	if w.perPacket {
		w.flush()
	}
	return nil
}

func keyOf(i pipelines.Interface) ifKey { return ifKey{i.Netns, i.Index} }

func (w *writer) idb(i pipelines.Interface) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:        i.Name,
		Description: fmt.Sprintf("%s: ifindex %d in network namespace %d (from the network header, cooked)", i.Name, i.Index, i.Netns),
		OS:          "Linux",
		LinkType:    LinkType,
		SnapLength:  uint32(w.frameSnaplen()),
	}
}

func (w *writer) declare(i pipelines.Interface) error {
	id, err := w.ng.AddInterface(w.idb(i))
	if err != nil {
		return w.fail(err)
	}
	w.ids[keyOf(i)] = id
	return nil
}

// see makes sure interface i is known and declared in the current file.
func (w *writer) see(i pipelines.Interface) (int, error) {
	k := keyOf(i)
	if id, ok := w.ids[k]; ok {
		return id, nil
	}
	known := false
	for _, x := range w.known {
		if keyOf(x) == k {
			known = true
			break
		}
	}
	if !known {
		w.known = append(w.known, i)
	}
	if w.failErr != nil {
		return 0, w.failErr
	}
	if w.ng == nil {
		if err := w.begin(); err != nil {
			return 0, err
		}
		if id, ok := w.ids[k]; ok {
			return id, nil
		}
	}
	if err := w.declare(i); err != nil {
		return 0, err
	}
	return w.ids[k], nil
}

func (w *writer) write(b *pipelines.PacketBatch) error {
	if w.stopped {
		if w.failErr != nil {
			// No file could be started: what comes is lost, and counted.
			w.e.failed.Add(uint64(len(b.Packets)))
			return w.failErr
		}
		return nil
	}
	if !w.snapSet {
		w.snaplen, w.snapSet = b.Snaplen, true
	}
	if b.Stats != nil {
		w.stats[b.Source] = append(w.stats[b.Source][:0], b.Stats...)
		for _, s := range b.Stats {
			// A failure is recorded by fail; the batch's packets are
			// still counted, one by one, below.
			w.see(s.Iface)
		}
	}
	var firstErr error
	for i := range b.Packets {
		if w.opts.RotateBytes > 0 && w.size() > w.opts.RotateBytes {
			w.rotate(time.Now())
			if w.stopped {
				if w.failErr != nil {
					w.e.failed.Add(uint64(len(b.Packets) - i))
					return w.failErr
				}
				return nil
			}
		}
		if err := w.packet(&b.Packets[i]); err != nil {
			w.e.failed.Add(1)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		w.e.written.Add(1)
		if w.perPacket {
			w.flush()
		}
	}
	w.dirty = w.dirty || len(b.Packets) > 0
	return firstErr
}

// size is the current file's length, buffers included.
func (w *writer) size() int64 { return w.cw.n + int64(w.bw.Buffered()) }

func (w *writer) packet(p *pipelines.Packet) error {
	if w.failErr != nil {
		return w.failErr
	}
	id, err := w.see(p.Iface)
	if err != nil {
		return err
	}
	data := p.Data
	if w.snaplen > 0 && len(data) > w.snaplen {
		data = data[:w.snaplen]
	}
	w.cooked = [sllLen]byte{0, 0, sllNone >> 8, sllNone & 0xff, 14: 0x08, 15: 0x00}
	if !p.Src.Is4() {
		w.cooked[14], w.cooked[15] = 0x86, 0xdd
	}
	comment := ""
	if p.Owned {
		comment = w.comment(p.Owner)
	}
	w.epb = appendEPB(w.epb[:0], id, p.Time.UnixNano(), sllLen+max(p.Len, len(data)), w.cooked[:], data, comment, w.flags)
	if _, err := w.bw.Write(w.epb); err != nil {
		return w.fail(err)
	}
	// Blocks go straight into bw (gopacket's NgWriter writes into it too:
	// bufio reuses a large enough bufio.Writer), so the stream offset where
	// the packet ends is known.
	w.pending = append(w.pending, w.size())
	if len(w.pending) > 64 && w.pending[0] <= w.cw.n {
		// bw wrote its buffer on its own: those packets are in the file.
		i := 0
		for i < len(w.pending) && w.pending[i] <= w.cw.n {
			i++
		}
		w.pending = append(w.pending[:0], w.pending[i:]...)
	}
	return nil
}

// frameSnaplen is the interface blocks' snap length: the source's, plus
// the cooked header; 0 (no limit) stays 0.
func (w *writer) frameSnaplen() int {
	if w.snaplen == 0 {
		return 0
	}
	return w.snaplen + sllLen
}

// comment is the packet comment for an owner, cached: a few owners send
// most packets.
func (w *writer) comment(o pipelines.Owner) string {
	if c, ok := w.comments[o]; ok {
		return c
	}
	if len(w.comments) >= 4096 {
		clear(w.comments)
	}
	c := fmt.Sprintf("pid=%d comm=%s uid=%d", o.PID, o.Command, o.UID)
	w.comments[o] = c
	return c
}

// fail records the current file's first write error, logs it once and
// moves the packets whose bytes did not all reach the file from written to
// failed.
func (w *writer) fail(err error) error {
	if w.failErr != nil {
		return w.failErr
	}
	w.failErr = err
	var lost uint64
	for _, end := range w.pending {
		if end > w.cw.n {
			lost++
		}
	}
	w.pending = w.pending[:0]
	if lost > 0 {
		w.e.written.Add(-lost)
		w.e.failed.Add(lost)
	}
	until := "from now on"
	if w.opts.RotateBytes > 0 || w.opts.RotateEvery > 0 {
		until = "until the next file"
	}
	w.e.log.Error("cannot write the capture file; its packets are counted as lost (reason "+ReasonWriteFailed+") "+until,
		"file", w.name, "error", err, "lost_buffered", lost)
	return err
}

func (w *writer) flush() {
	w.dirty = false
	if w.failErr != nil {
		return
	}
	if w.ng != nil {
		if err := w.ng.Flush(); err != nil {
			w.fail(err)
			return
		}
	}
	if err := w.bw.Flush(); err != nil {
		w.fail(err)
		return
	}
	w.pending = w.pending[:0]
}

// statistics writes one statistics block per interface of the file: the
// totals since the capture started.
func (w *writer) statistics(now time.Time) {
	if w.ng == nil {
		return
	}
	totals := map[ifKey]pipelines.IfaceStats{}
	for _, ss := range w.stats {
		for _, s := range ss {
			t := totals[keyOf(s.Iface)]
			t.Matched += s.Matched
			t.Dropped += s.Dropped
			totals[keyOf(s.Iface)] = t
		}
	}
	for _, ifc := range w.known {
		id, ok := w.ids[keyOf(ifc)]
		if !ok {
			continue
		}
		st := pcapgo.NgInterfaceStatistics{LastUpdate: now, StartTime: w.start, EndTime: now,
			PacketsReceived: pcapgo.NgNoValue64, PacketsDropped: pcapgo.NgNoValue64}
		if t, ok := totals[keyOf(ifc)]; ok {
			st.PacketsReceived, st.PacketsDropped = t.Matched, t.Dropped
		}
		if err := w.ng.WriteInterfaceStats(id, st); err != nil {
			w.fail(err)
			return
		}
	}
}

// finish ends the current file: statistics, flush, close.
func (w *writer) finish(now time.Time) error {
	if w.ng == nil && len(w.known) == 0 {
		// Nothing was ever seen: still leave a file every reader opens.
		w.known = []pipelines.Interface{{Name: "none"}}
		err := w.begin()
		w.known = nil
		if err != nil {
			return err
		}
	}
	w.statistics(now)
	w.flush()
	var err error
	if w.failErr != nil {
		err = fmt.Errorf("pcapng: %w", w.failErr)
		if !strings.Contains(w.failErr.Error(), w.name) {
			err = fmt.Errorf("pcapng: %s: %w", w.name, w.failErr)
		}
	}
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("pcapng: %w", cerr)
		}
		w.file = nil
	}
	return err
}

func (w *writer) rotate(now time.Time) {
	if err := w.finish(now); err != nil {
		w.e.log.Warn("closing capture file", "error", err)
	}
	w.index++
	if w.opts.StopAfterFiles && w.opts.Files > 0 && w.index >= w.opts.Files {
		w.stopped = true
		close(w.e.limit)
		return
	}
	if err := w.open(now); err != nil {
		w.e.log.Error("cannot start the next capture file; packets are counted as lost (reason "+ReasonWriteFailed+") from now on", "error", err)
		w.stopped, w.failErr = true, err
		close(w.e.limit)
	}
}

func (w *writer) close(now time.Time) error {
	if w.stopped {
		if w.failErr != nil {
			return fmt.Errorf("pcapng: %w", w.failErr)
		}
		return nil
	}
	return w.finish(now)
}

// strftime expands %Y %m %d %H %M %S %s and %% in local time, the subset
// tcpdump -G file names use in practice.
func strftime(pattern string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' || i+1 == len(pattern) {
			b.WriteByte(c)
			continue
		}
		i++
		switch pattern[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(pattern[i])
		}
	}
	return b.String()
}
