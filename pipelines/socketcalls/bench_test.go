//go:build linux

package socketcalls

import (
	"syscall"
	"testing"
	"time"

	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/pipelines"
)

// BenchmarkBuilder measures turning kernel records into spans: a sendto
// root with a transmit pair and its loopback delivery, as the tracepoint
// rung sends them (see exporters/otlp BenchmarkTracesOTLP for the rest of
// the way out).
func BenchmarkBuilder(b *testing.B) {
	bd := testBuilder()
	recs := make([]*bpfsc.Record, 0, 3)
	rx := rec(bpfsc.KindPair, 2, 0x12, 0x11, 0x10, 2, 20, 30, 0, 4243, "client")
	rx.Value, rx.Ifindex = 64, 1
	tx := rec(bpfsc.KindPair, 1, 0x11, 0x10, 0x10, 1, 10, 40, 0, 4243, "client")
	tx.Value, tx.Ifindex = 64, 1
	root := rec(bpfsc.KindSyscall, 44, 0x10, 0, 0x10, 0, 0, 50, 64, 4243, "client")
	root.Flags, root.Fd, root.Family, root.Protocol, root.SockType = bpfsc.FlagFD|bpfsc.FlagSock, 3, 2, 17, 2
	recs = append(recs, rx, tx, root)
	out := make([]pipelines.Span, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		out = bd.Add(recs[i%3], out)
		if len(out) == cap(out) {
			out = out[:0]
		}
	}
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
}

// cpuTime is the user and system time of this process so far: on a shared
// machine wall time mostly measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
