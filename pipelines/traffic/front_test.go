//go:build linux

package traffic

import (
	"context"
	"io"
	"log/slog"
	"testing"

	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
	"github.com/sockeye/sockeye/config"
)

// fakeMaps plays the kernel's map and per-CPU fronts: each read returns
// the next scripted state.
type fakeMaps struct {
	reads   [][]fakeKey
	n       int
	deleted []bpftraffic.Key
}

type fakeKey struct {
	k            bpftraffic.Key
	total, front bpftraffic.Counts
}

func (f *fakeMaps) Read(fn func(k bpftraffic.Key, total, front bpftraffic.Counts)) (int, error) {
	for _, r := range f.reads[f.n] {
		fn(r.k, r.total, r.front)
	}
	f.n++
	return len(f.reads[f.n-1]), nil
}
func (f *fakeMaps) Delete(keys []bpftraffic.Key) error {
	f.deleted = append(f.deleted, keys...)
	return nil
}
func (f *fakeMaps) Stats() (bpftraffic.Stats, error) { return bpftraffic.Stats{}, nil }
func (f *fakeMaps) MaxEntries() uint32               { return 16 }

// TestCollectFronts follows one key through the reads the per-CPU fronts
// allow: a read that misses counts on their way from a front into the map,
// the process exiting while a front still holds its last counts, and those
// counts reaching the map again. Every packet is reported once.
func TestCollectFronts(t *testing.T) {
	tx := func(n uint64) bpftraffic.Counts { return bpftraffic.Counts{TxPackets: n, TxBytes: 100 * n} }
	k := bpftraffic.Key{Pid: 4242, Uid: 1000, Ifindex: 1}
	copy(k.Comm[:], []int8{'c', 'u', 'r', 'l'})
	copy(k.Dev[:], []int8{'l', 'o'})
	maps := &fakeMaps{reads: [][]fakeKey{
		{{k, tx(10), tx(4)}}, // 10 so far, 4 of them in a front
		{{k, tx(6), tx(0)}},  // the front moved between the reads: 4 unseen
		{{k, tx(12), tx(3)}}, // they are back, with 2 new
		{{k, tx(15), tx(5)}}, // the process has exited: its last 3; 5 still in a front
		{{k, tx(5), tx(5)}},  // the map entry removed, the front still holds them: nothing new
		{{k, tx(7), tx(0)}},  // the front's 5 reached the map again, 2 late packets with them
		{},                   // removed, and no front holds it
	}}
	alive := true
	s := New("traffic", config.TrafficSource{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.counters = maps
	s.alive = func(uint32) bool { return alive }
	want := []struct {
		packets uint64
		rows    int
		final   bool
	}{{10, 1, false}, {0, 0, false}, {2, 1, false}, {3, 1, true}, {0, 0, false}, {2, 1, true}, {0, 0, false}}
	var sum uint64
	for i, w := range want {
		if i == 3 {
			alive = false
		}
		b, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		for _, r := range b.Rows {
			e := entryOf(r)
			got += e.TxPackets
			if e.TxBytes != 100*e.TxPackets {
				t.Errorf("read %d: %d packets with %d bytes", i, e.TxPackets, e.TxBytes)
			}
			if r.Final != w.final {
				t.Errorf("read %d: final %v, want %v", i, r.Final, w.final)
			}
		}
		if got != w.packets || len(b.Rows) != w.rows {
			t.Errorf("read %d: %d packets in %d rows, want %d in %d", i, got, len(b.Rows), w.packets, w.rows)
		}
		sum += got
	}
	if sum != 17 {
		t.Errorf("reported %d packets in all, want the 17 counted", sum)
	}
	if len(maps.deleted) != 3 {
		t.Errorf("deleted %d keys, want the exited key removed at each of its 3 appearances after exit", len(maps.deleted))
	}
}
