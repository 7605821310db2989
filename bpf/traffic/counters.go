//go:build linux

package traffic

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Key is one row of the kernel's counter map, laid out as in traffic.bpf.c.
type Key = trafficTrafficKey

// Counts are a row's totals since the key was created, summed over CPUs.
type Counts struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
}

// Stats are the kernel-side loss counters, totals since load.
type Stats struct {
	// MapFull counts packets not counted because the map had no room for a new key.
	MapFull uint64
	// UpdateErrors counts other failures to insert a key.
	UpdateErrors uint64
	// LastErrno is the errno of the most recent failed insert, 0 if none.
	LastErrno uint64
	// Missed counts runs of the programs the kernel skipped (hooks.Missed):
	// a kprobe program is not run on a CPU where another one is running,
	// as when a receive interrupts a send.
	Missed uint64
}

// Read calls fn for every key with its totals, summed over CPUs, and the
// part of them still in the per-CPU fronts (counts a CPU has not yet moved
// into the map, see traffic.bpf.c), and returns how many keys the map
// holds. The map is read before the fronts: a CPU moving a front's counts
// into the map in between can hide them from this read (they show in the
// next), but no count is ever seen twice.
func (p *Probe) Read(fn func(k Key, total, front Counts)) (int, error) {
	type sums struct{ total, front Counts }
	all := map[Key]*sums{}
	var (
		k    Key
		vals []trafficTrafficValue
		n    int
	)
	it := p.counters.Iterate()
	for it.Next(&k, &vals) {
		s := &sums{}
		for _, v := range vals {
			s.total.add(v)
		}
		all[k] = s
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("read traffic map: %w", err)
	}
	var fronts []trafficFront
	if err := p.fronts.Lookup(uint32(0), &fronts); err != nil {
		return n, fmt.Errorf("read traffic fronts: %w", err)
	}
	for _, f := range fronts {
		if f.Used == 0 {
			continue
		}
		s := all[f.Key]
		if s == nil {
			s = &sums{}
			all[f.Key] = s
		}
		s.total.add(f.V)
		s.front.add(f.V)
	}
	for k, s := range all {
		fn(k, s.total, s.front)
	}
	return n, nil
}

func (c *Counts) add(v trafficTrafficValue) {
	c.TxPackets += v.TxPackets
	c.TxBytes += v.TxBytes
	c.RxPackets += v.RxPackets
	c.RxBytes += v.RxBytes
}

// Delete removes keys, e.g. those of processes that have exited. A key
// already gone is not an error.
func (p *Probe) Delete(keys []Key) error {
	var errs []error
	for i := range keys {
		if err := p.counters.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
		return s, fmt.Errorf("read traffic stats: %w", err)
	}
	if s.UpdateErrors, err = read(1); err != nil {
		return s, fmt.Errorf("read traffic stats: %w", err)
	}
	// Per-CPU slots: any non-zero one is a recent error; report the largest.
	var vals []uint64
	if err := p.stats.Lookup(uint32(2), &vals); err != nil {
		return s, fmt.Errorf("read traffic stats: %w", err)
	}
	for _, v := range vals {
		s.LastErrno = max(s.LastErrno, v)
	}
	s.Missed = hooks.Missed(p.progs, p.links)
	return s, nil
}
