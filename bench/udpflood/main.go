//go:build linux

// Command udpflood floods a UDP socket on 127.0.0.1 with small datagrams and
// prints, as one JSON line, how many the receiving socket actually got.
//
// The sender and the receiver are one thread each, pinned to -send-cpu and
// -recv-cpu. With -batch > 1 the sender uses sendmmsg and the receiver
// recvmmsg; with -batch 1, one sendto per datagram as iperf3 -u does.
//
//	udpflood -d 10s -size 64 -send-cpu 0 -recv-cpu 1
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type result struct {
	Seconds     float64 `json:"seconds"`
	Size        int     `json:"size"`
	Batch       int     `json:"batch"`
	SendCPU     int     `json:"send_cpu"`
	RecvCPU     int     `json:"recv_cpu"`
	Sent        uint64  `json:"sent"`
	Received    uint64  `json:"received"`
	SentPPS     float64 `json:"sent_pps"`
	RecvPPS     float64 `json:"recv_pps"`
	SendCPUSecs float64 `json:"send_cpu_seconds"` // sender thread CPU time, softirq run inline included
	RecvCPUSecs float64 `json:"recv_cpu_seconds"`
	// The sender's CPU ns per datagram over chunks of `chunk` datagrams: the
	// 10th percentile and the median. Time other tasks take only ever adds
	// to a chunk, so the low percentile is the cost on an idle CPU.
	SendNsP10 float64 `json:"send_ns_per_pkt_p10"`
	SendNsP50 float64 `json:"send_ns_per_pkt_p50"`
}

const chunk = 2048

func main() {
	dur := flag.Duration("d", 10*time.Second, "how long to send")
	port := flag.Int("port", 5301, "UDP port on 127.0.0.1")
	size := flag.Int("size", 64, "UDP payload bytes")
	batch := flag.Int("batch", 1, "datagrams per sendmmsg/recvmmsg (1: sendto/recvfrom)")
	sendCPU := flag.Int("send-cpu", 0, "CPU for the sending thread (-1: any)")
	recvCPU := flag.Int("recv-cpu", 1, "CPU for the receiving thread (-1: any)")
	flag.Parse()
	if err := run(*dur, *port, *size, *batch, *sendCPU, *recvCPU); err != nil {
		fmt.Fprintln(os.Stderr, "udpflood:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, port, size, batch, sendCPU, recvCPU int) error {
	if batch < 1 || batch > 1024 || size < 1 || size > 65507 {
		return fmt.Errorf("bad -batch or -size")
	}
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	rfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	// A deep queue so that short stalls of the receiver do not drop; root may
	// exceed net.core.rmem_max.
	_ = unix.SetsockoptInt(rfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	_ = unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
	if err := unix.Bind(rfd, addr); err != nil {
		return fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	sfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	if err := unix.Connect(sfd, addr); err != nil {
		return err
	}

	var (
		res      = result{Size: size, Batch: batch, SendCPU: sendCPU, RecvCPU: recvCPU}
		stop     atomic.Bool
		sendDone = make(chan error, 1)
		recvDone = make(chan error, 1)
		elapsed  time.Duration
	)
	go func() {
		recvDone <- onCPU(recvCPU, &res.RecvCPUSecs, func() error {
			return receive(rfd, size, batch, &res.Received, &stop)
		})
	}()
	go func() {
		sendDone <- onCPU(sendCPU, &res.SendCPUSecs, func() error {
			start := time.Now()
			costs, err := send(sfd, size, batch, start.Add(dur), &res.Sent)
			elapsed = time.Since(start)
			res.SendNsP10, res.SendNsP50 = percentile(costs, 0.1), percentile(costs, 0.5)
			return err
		})
	}()
	if err := <-sendDone; err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// Let the receiver drain what is queued, then stop it.
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	if err := <-recvDone; err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	res.Seconds = elapsed.Seconds()
	res.SentPPS = float64(res.Sent) / res.Seconds
	res.RecvPPS = float64(res.Received) / res.Seconds
	return json.NewEncoder(os.Stdout).Encode(res)
}

// onCPU runs fn on a thread of its own pinned to cpu and stores the thread's
// CPU time in secs.
func onCPU(cpu int, secs *float64, fn func() error) error {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	err := fn()
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) == nil {
		*secs = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return err
}

// send sends until the deadline and returns the CPU ns per datagram of
// each chunk.
func send(fd, size, batch int, until time.Time, sent *uint64) ([]float64, error) {
	buf := make([]byte, size)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(size)
	hdrs := make([]unix.Mmsghdr, batch)
	for i := range hdrs {
		hdrs[i].Hdr.Iov = &iov
		hdrs[i].Hdr.SetIovlen(1)
	}
	var (
		n, mark uint64
		costs   []float64
		t0      = threadCPU()
	)
	for i := 0; ; i++ {
		if i%64 == 0 && time.Now().After(until) {
			break
		}
		if n-mark >= chunk {
			t := threadCPU()
			costs = append(costs, float64(t-t0)/float64(n-mark))
			t0, mark = t, n
		}
		if batch == 1 {
			if err := unix.Send(fd, buf, 0); err != nil && err != unix.ENOBUFS && err != unix.EAGAIN {
				return nil, err
			} else if err == nil {
				n++
			}
			continue
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(batch), 0, 0, 0)
		if errno != 0 && errno != unix.ENOBUFS && errno != unix.EAGAIN {
			return nil, errno
		}
		if errno == 0 {
			n += uint64(r)
		}
	}
	*sent = n
	return costs, nil
}

func threadCPU() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[int(p*float64(len(xs)-1))]
}

func receive(fd, size, batch int, received *uint64, stop *atomic.Bool) error {
	bufs := make([]byte, batch*size)
	iovs := make([]unix.Iovec, batch)
	hdrs := make([]unix.Mmsghdr, batch)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*size]
		iovs[i].SetLen(size)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	var n uint64
	for !stop.Load() {
		var r uintptr
		var errno unix.Errno
		if batch == 1 {
			r, _, errno = unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&bufs[0])), uintptr(size), 0, 0, 0)
		} else {
			r, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(batch), 0, 0, 0)
		}
		switch {
		case errno == unix.EAGAIN || errno == unix.EINTR:
			continue
		case errno != 0:
			return errno
		case batch == 1:
			n++
		default:
			n += uint64(r)
		}
	}
	*received = n
	return nil
}
