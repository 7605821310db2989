//go:build linux

package traffic

import (
	"testing"

	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
)

func TestDelta(t *testing.T) {
	c := func(tp, rp, tb, rb uint64) bpftraffic.Counts {
		return bpftraffic.Counts{TxPackets: tp, RxPackets: rp, TxBytes: tb, RxBytes: rb}
	}
	cases := []struct{ cur, prev, want bpftraffic.Counts }{
		{c(10, 5, 1000, 500), c(0, 0, 0, 0), c(10, 5, 1000, 500)},
		{c(10, 5, 1000, 500), c(4, 5, 400, 500), c(6, 0, 600, 0)},
		// A read that missed counts on their way from a CPU's front into
		// the map: nothing new where the total stepped back.
		{c(2, 0, 100, 0), c(9, 3, 900, 300), c(0, 0, 0, 0)},
		{c(10, 2, 1000, 200), c(9, 3, 900, 300), c(1, 0, 100, 0)},
	}
	for _, tc := range cases {
		if got := delta(tc.cur, tc.prev); got != tc.want {
			t.Errorf("delta(%+v, %+v) = %+v, want %+v", tc.cur, tc.prev, got, tc.want)
		}
	}
}
