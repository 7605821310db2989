package otlp

import (
	"context"
	"errors"
	"sync"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sockeye/sockeye/pipelines"
)

// batcher converts spans into OTLP batches under a lock and exports full
// batches from one goroutine: one hand-off per batch, not per span. When
// the exporter falls behind, add waits (at most maxInFlight batches queue
// up), so the pipeline's queue, not this one, is where an overload shows
// and is counted. Batches go back to a free list after their export, with
// the messages they hold, for the next spans.
type batcher struct {
	conv    *converter
	size    int
	delay   time.Duration
	timeout time.Duration
	// upload exports one batch (n spans) and counts the outcome; lost
	// counts spans dropped because the batcher is shutting down.
	upload func(ctx context.Context, rs []*tracepb.ResourceSpans, n int)
	lost   func(n int)

	batches  chan *wireBatch
	free     chan *wireBatch
	flushReq chan chan struct{}
	stop     chan struct{} // closed at Shutdown: senders stop waiting
	done     chan struct{}
	// ctx bounds every export; cancelled when Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	cur     *wireBatch
	stopped bool
	// sending is held (shared) while add hands a batch over, so Shutdown
	// never closes the channel under a sender.
	sending sync.RWMutex
	once    sync.Once
	err     error
}

const maxInFlight = 4

func newBatcher(conv *converter, size int, delay, timeout time.Duration,
	upload func(context.Context, []*tracepb.ResourceSpans, int), lost func(int)) *batcher {
	b := &batcher{
		conv: conv, size: max(1, size), delay: delay, timeout: timeout, upload: upload, lost: lost,
		batches:  make(chan *wireBatch, maxInFlight),
		free:     make(chan *wireBatch, maxInFlight+2),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.run()
	return b
}

// add converts spans into the current batch, handing full ones over; it
// returns how many it took (all, unless shut down or not encodable).
func (b *batcher) add(spans []pipelines.Span) int {
	taken := 0
	for len(spans) > 0 {
		b.mu.Lock()
		if b.stopped {
			b.mu.Unlock()
			return taken
		}
		if b.cur == nil {
			b.cur = b.get()
		}
		n := min(len(spans), b.size-b.cur.n)
		for i := range n {
			if b.cur.add(b.conv, &spans[i]) {
				taken++
			}
		}
		spans = spans[n:]
		var full *wireBatch
		if b.cur.n >= b.size {
			full, b.cur = b.cur, nil
		}
		b.mu.Unlock()
		if full != nil {
			b.send(full)
		}
	}
	return taken
}

func (b *batcher) send(w *wireBatch) {
	b.sending.RLock()
	defer b.sending.RUnlock()
	select {
	case b.batches <- w: // waits while maxInFlight batches are queued
	case <-b.stop:
		b.lost(w.n)
	}
}

func (b *batcher) get() *wireBatch {
	select {
	case w := <-b.free:
		return w
	default:
		return newWireBatch()
	}
}

// take returns the partial batch, if any.
func (b *batcher) take() *wireBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.cur
	if w == nil || w.n == 0 {
		return nil
	}
	b.cur = nil
	return w
}

func (b *batcher) export(w *wireBatch) {
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	b.upload(ctx, w.request(b.conv), w.n)
	cancel()
	w.reset()
	select {
	case b.free <- w:
	default:
	}
}

func (b *batcher) run() {
	defer close(b.done)
	defer b.cancel()
	t := time.NewTicker(b.delay)
	defer t.Stop()
	for {
		select {
		case w, ok := <-b.batches:
			if !ok {
				b.export(b.take())
				return
			}
			b.export(w)
		case <-t.C:
			b.export(b.take())
		case ack := <-b.flushReq:
			for drained := false; !drained; {
				select {
				case w, ok := <-b.batches:
					if ok {
						b.export(w)
					} else {
						drained = true
					}
				default:
					drained = true
				}
			}
			b.export(b.take())
			close(ack)
		}
	}
}

// ForceFlush exports what is queued and the partial batch, waiting at most
// until ctx ends.
func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flushReq <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is left, waiting at most until ctx ends; then
// what is still being exported is abandoned (counted as failed), and
// closeClient closes the connection.
func (b *batcher) Shutdown(ctx context.Context, closeClient func(context.Context) error) error {
	b.once.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		close(b.stop)
		b.sending.Lock()
		close(b.batches)
		b.sending.Unlock()
		select {
		case <-b.done:
		case <-ctx.Done():
			b.cancel()
			b.err = errors.Join(ctx.Err(), errors.New("spans still being exported"))
		}
		b.err = errors.Join(b.err, closeClient(ctx))
	})
	return b.err
}
