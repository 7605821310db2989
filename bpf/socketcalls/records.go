//go:build linux

package socketcalls

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Record is one finished span or event from the ring buffer, laid out as
// struct span_rec in socketcalls.bpf.c.
type Record = socketcallsSpanRec

// RecordSize is the size of a ring-buffer record.
const RecordSize = int(unsafe.Sizeof(Record{}))

// Record kinds (enum kind).
const (
	KindSyscall = 0
	KindFunc    = 1
	KindPair    = 2
	KindEvent   = 3
)

// Record flags.
const (
	FlagIncomplete = 1
	FlagSock       = 2
	FlagFD         = 4
)

// Decode views raw as a record without copying; raw must stay alive and
// unchanged while the record is used.
func Decode(raw []byte) (*Record, error) {
	if len(raw) < RecordSize {
		return nil, fmt.Errorf("record of %d bytes, want %d", len(raw), RecordSize)
	}
	return (*Record)(unsafe.Pointer(&raw[0])), nil
}

// PairName names the span of a tracepoint pair after the kernel function
// the two tracepoints bracket.
func PairName(id uint32) string {
	switch id {
	case 1:
		return "netdev_start_xmit"
	case 2:
		return "netif_rx"
	case 3:
		return "netif_receive_skb"
	case 4:
		return "napi_gro_receive"
	}
	return fmt.Sprintf("pair_%d", id)
}

// EventName names a span event after its tracepoint, "subsystem:name".
func EventName(id uint32) string {
	switch id {
	case 1:
		return "sock:sock_send_length"
	case 2:
		return "sock:sock_recv_length"
	case 3:
		return "tcp:tcp_sendmsg_locked"
	case 4:
		return "net:netif_receive_skb"
	case 5:
		return "sock:inet_sock_set_state"
	}
	return fmt.Sprintf("event_%d", id)
}

// Stats are the kernel-side counters, totals since load.
type Stats struct {
	RingbufFull     uint64 // spans and events that did not fit in the ring buffer
	SampledOut      uint64 // root calls left out by head sampling
	RateLimited     uint64 // root calls left out by the rate limit
	Depth           uint64 // calls deeper than max_depth
	UnmatchedReturn uint64 // returns whose entry was not seen
	Incomplete      uint64 // frames closed without their return
	ThreadsFull     uint64 // thread states that could not be stored
	Roots           uint64 // root calls traced
	// Missed counts runs of the programs the kernel skipped (hooks.Missed):
	// an entry or return a fentry program would have seen while the same
	// program ran on that CPU, a kprobe while another BPF program did.
	Missed uint64
}

// Stats reads the kernel-side counters.
func (p *Probe) Stats() (Stats, error) {
	s, err := readStats(p.stats)
	if err != nil {
		return s, err
	}
	s.Missed = hooks.Missed(p.progs, p.links)
	return s, nil
}

func readStats(m *ebpf.Map) (Stats, error) {
	var s Stats
	dst := []*uint64{&s.RingbufFull, &s.SampledOut, &s.RateLimited, &s.Depth, &s.UnmatchedReturn, &s.Incomplete, &s.ThreadsFull, &s.Roots}
	for i, d := range dst {
		var vals []uint64
		if err := m.Lookup(uint32(i), &vals); err != nil {
			return s, fmt.Errorf("read socket_calls stats: %w", err)
		}
		for _, v := range vals {
			*d += v
		}
	}
	return s, nil
}

// ThreadsInUse counts the threads mid-call, i.e. holding a stack.
func (p *Probe) ThreadsInUse() (int, error) {
	var (
		k uint32
		n int
	)
	it := p.threads.Iterate()
	var v socketcallsThreadState
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return n, err
	}
	return n, nil
}

// MaxThreads is the capacity of the thread map.
func (p *Probe) MaxThreads() uint32 { return p.threads.MaxEntries() }
