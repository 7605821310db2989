package otlp

import (
	"context"
	"errors"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is a span processor that collects ended spans into batches under
// a lock and exports full batches from one goroutine. The SDK's batch
// processor passes every span through a channel to its goroutine; at the
// rates of socket-call tracing that hand-off costs as much as the rest of
// the span. When the exporter falls behind, OnEnd waits (at most
// maxInFlight batches queue up), so the pipeline's queue, not this one, is
// where an overload shows and is counted.
type batcher struct {
	exp      sdktrace.SpanExporter
	size     int
	delay    time.Duration
	timeout  time.Duration
	batches  chan []sdktrace.ReadOnlySpan
	flushReq chan chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	cur     []sdktrace.ReadOnlySpan
	stopped bool
	// sending is held (shared) while OnEnd hands a batch over, so Shutdown
	// never closes the channel under a sender.
	sending sync.RWMutex
	once    sync.Once
	err     error
}

const maxInFlight = 4

func newBatcher(exp sdktrace.SpanExporter, size int, delay, timeout time.Duration) *batcher {
	b := &batcher{
		exp: exp, size: size, delay: delay, timeout: timeout,
		batches:  make(chan []sdktrace.ReadOnlySpan, maxInFlight),
		flushReq: make(chan chan struct{}),
		done:     make(chan struct{}),
	}
	go b.run()
	return b
}

func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	if b.cur == nil {
		b.cur = make([]sdktrace.ReadOnlySpan, 0, b.size)
	}
	b.cur = append(b.cur, s)
	var full []sdktrace.ReadOnlySpan
	if len(b.cur) >= b.size {
		full, b.cur = b.cur, nil
	}
	b.mu.Unlock()
	if full != nil {
		b.sending.RLock()
		b.mu.Lock()
		stopped := b.stopped
		b.mu.Unlock()
		if !stopped {
			b.batches <- full // waits while maxInFlight batches are queued
		}
		b.sending.RUnlock()
	}
}

// take returns the partial batch, if any.
func (b *batcher) take() []sdktrace.ReadOnlySpan {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.cur
	b.cur = nil
	return out
}

func (b *batcher) export(spans []sdktrace.ReadOnlySpan) {
	if len(spans) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	// Failures are counted by the exporter.
	_ = b.exp.ExportSpans(ctx, spans)
}

func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.delay)
	defer t.Stop()
	for {
		select {
		case spans, ok := <-b.batches:
			if !ok {
				b.export(b.take())
				return
			}
			b.export(spans)
		case <-t.C:
			b.export(b.take())
		case ack := <-b.flushReq:
			for drained := false; !drained; {
				select {
				case spans := <-b.batches:
					b.export(spans)
				default:
					drained = true
				}
			}
			b.export(b.take())
			close(ack)
		}
	}
}

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

func (b *batcher) Shutdown(ctx context.Context) error {
	b.once.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		b.sending.Lock()
		close(b.batches)
		b.sending.Unlock()
		select {
		case <-b.done:
		case <-ctx.Done():
			b.err = errors.Join(ctx.Err(), errors.New("spans still being exported"))
		}
		b.err = errors.Join(b.err, b.exp.Shutdown(ctx))
	})
	return b.err
}
