//go:build linux

package drops

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Key is one row of the kernel's counter map, laid out as in drops.bpf.c.
type Key = dropsDropKey

// Stats are the kernel-side loss counters, totals since load.
type Stats struct {
	// MapFull counts drops not counted because the map had no room for a new key.
	MapFull uint64
	// UpdateErrors counts other failures to insert a key.
	UpdateErrors uint64
	// LastError is the errno of the latest of those failures, 0 if none.
	LastError uint64
	// Missed counts runs of the program the kernel skipped (hooks.Missed):
	// drops not counted. The classic tracepoint rung is skipped on a CPU
	// where another BPF program or a map system call is under way.
	Missed uint64
}

// drainBatch is how many keys one batch call moves; a hash bucket holding
// more than this would make the kernel answer ENOSPC.
const drainBatch = 256

// Drain calls fn for every key with its count summed over CPUs and removes
// the keys, so the map holds only what was counted since the previous
// drain. It returns how many keys the map held.
func (p *Probe) Drain(fn func(Key, uint64)) (int, error) {
	n, err := p.drainBatch(fn)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return p.drainOneByOne(fn)
	}
	return n, err
}

func (p *Probe) drainBatch(fn func(Key, uint64)) (int, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, err
	}
	keys := make([]Key, drainBatch)
	vals := make([]uint64, drainBatch*ncpu)
	var (
		cursor ebpf.MapBatchCursor
		total  int
	)
	for {
		n, err := p.counters.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			var sum uint64
			for _, v := range vals[i*ncpu : (i+1)*ncpu] {
				sum += v
			}
			fn(keys[i], sum)
		}
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("drain drops map: %w", err)
		}
	}
}

// drainOneByOne is for kernels without batch map operations: a drop
// counted between the read of a key and its removal is lost.
func (p *Probe) drainOneByOne(fn func(Key, uint64)) (int, error) {
	var (
		k    Key
		vals []uint64
		keys []Key
		sums []uint64
	)
	it := p.counters.Iterate()
	for it.Next(&k, &vals) {
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		keys = append(keys, k)
		sums = append(sums, sum)
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read drops map: %w", err)
	}
	var errs []error
	for i := range keys {
		fn(keys[i], sums[i])
		if err := p.counters.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return len(keys), errors.Join(errs...)
}

// Stats reads the loss counters.
func (p *Probe) Stats() (Stats, error) {
	var s Stats
	read := func(idx uint32) (uint64, error) {
		var vals []uint64
		if err := p.stats.Lookup(idx, &vals); err != nil {
			return 0, err
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		return sum, nil
	}
	var err error
	if s.MapFull, err = read(0); err != nil {
		return s, fmt.Errorf("read drops stats: %w", err)
	}
	if s.UpdateErrors, err = read(1); err != nil {
		return s, fmt.Errorf("read drops stats: %w", err)
	}
	// Per-CPU slots: any non-zero one is a recent errno.
	var vals []uint64
	if err := p.stats.Lookup(uint32(2), &vals); err != nil {
		return s, fmt.Errorf("read drops stats: %w", err)
	}
	for _, v := range vals {
		if v != 0 {
			s.LastError = v
		}
	}
	s.Missed = hooks.Missed([]*ebpf.Program{p.prog}, nil)
	return s, nil
}
