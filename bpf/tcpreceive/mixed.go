//go:build linux

package tcpreceive

import (
	"errors"
	"os"
	"time"

	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
)

// mixedRecords reads the auto transport's two buffers as one stream: the
// ring buffer, which carries most packets, and the perf buffers, which
// carry those the ring cannot hold whole. Neither reader can wait on the
// other's descriptors, so each pass reads both without waiting, and an idle
// reader waits on the ring at most mixedWait at a time before looking at
// the perf buffers again. Packets reach the batch in either order; the
// source sorts each batch by time.
type mixedRecords struct {
	ring *ringbuf.Reader
	perf *perf.Reader
	rrec ringbuf.Record
	prec perf.Record

	deadline time.Time
	// onPerf: the current pass has emptied the ring (or taken mixedBurst
	// records from it) and reads the perf buffers. got: the current pass
	// returned a record. burst: ring records taken in this pass.
	onPerf, got bool
	burst       int
	// Each reader has reported the end of a drain started by Flush.
	ringDone, perfDone bool
	// Records returned from each buffer.
	fromRing, fromPerf uint64
}

// mixedWait bounds how long a packet in the perf buffers waits while the
// reader sleeps on the ring. At 8 MiB a CPU, the perf buffers fill in that
// time only beyond 400 MB/s of large packets a CPU, and a full buffer's
// losses are counted.
const mixedWait = 20 * time.Millisecond

// mixedBurst bounds the ring records taken in one pass: the ring reader
// follows the producer record by record, so under a flood it might never
// report empty, and the perf buffers would wait and overflow. A pass over
// the perf buffers ends by itself: it reads up to the heads it saw.
const mixedBurst = 1024

// gone is a deadline already past: read what is there without waiting.
var gone = time.Unix(0, 1)

func (m *mixedRecords) Next() ([]byte, uint64, error) {
	for {
		if !m.onPerf {
			if m.burst < mixedBurst {
				if raw, ok, err := m.fromRingBy(gone); ok || err != nil {
					m.burst++
					return raw, 0, err
				}
			}
			m.onPerf, m.burst = true, 0
		}
		if raw, lost, ok, err := m.fromPerfBy(gone); ok || err != nil {
			return raw, lost, err
		}
		m.onPerf = false
		if m.ringDone && m.perfDone {
			return nil, 0, ErrFlushed
		}
		if m.got {
			m.got = false
			continue
		}
		// Both empty: wait, on the ring unless its drain has ended.
		now := time.Now()
		if !m.deadline.IsZero() && !now.Before(m.deadline) {
			return nil, 0, os.ErrDeadlineExceeded
		}
		until := now.Add(mixedWait)
		if !m.deadline.IsZero() && m.deadline.Before(until) {
			until = m.deadline
		}
		if !m.ringDone {
			if raw, ok, err := m.fromRingBy(until); ok || err != nil {
				return raw, 0, err
			}
			continue
		}
		if raw, lost, ok, err := m.fromPerfBy(until); ok || err != nil {
			return raw, lost, err
		}
	}
}

// fromRingBy reads one ring record, waiting until the deadline at most.
// ok is false when there was none (deadline, or the end of a flush).
func (m *mixedRecords) fromRingBy(deadline time.Time) (raw []byte, ok bool, err error) {
	if m.ringDone {
		return nil, false, nil
	}
	m.ring.SetDeadline(deadline)
	switch err := m.ring.ReadInto(&m.rrec); {
	case err == nil:
		m.got = true
		m.fromRing++
		return m.rrec.RawSample, true, nil
	case errors.Is(err, ringbuf.ErrFlushed):
		m.ringDone = true
		return nil, false, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, false, nil
	default:
		return nil, false, err
	}
}

// fromPerfBy is fromRingBy for the perf buffers.
func (m *mixedRecords) fromPerfBy(deadline time.Time) (raw []byte, lost uint64, ok bool, err error) {
	if m.perfDone {
		return nil, 0, false, nil
	}
	m.perf.SetDeadline(deadline)
	switch err := m.perf.ReadInto(&m.prec); {
	case err == nil:
		m.got = true
		m.fromPerf++
		return m.prec.RawSample, m.prec.LostSamples, true, nil
	case errors.Is(err, perf.ErrFlushed):
		m.perfDone = true
		return nil, 0, false, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, 0, false, nil
	default:
		return nil, 0, false, err
	}
}

func (m *mixedRecords) SetDeadline(t time.Time) { m.deadline = t }

func (m *mixedRecords) Flush() error {
	return errors.Join(m.ring.Flush(), m.perf.Flush())
}

func (m *mixedRecords) Close() error {
	return errors.Join(m.ring.Close(), m.perf.Close())
}
