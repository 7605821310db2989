//go:build ignore

// Command drops floods a closed UDP port on 127.0.0.1 with small datagrams,
// so that every one is dropped (NO_SOCKET at __udp4_lib_rcv), and prints as
// one JSON line how many it sent. The loopback receive path, drop included,
// runs in the sending thread's softirq, so the send rate is what the drop
// path costs.
//
//	go build -o dropflood bench/drops.go
//	dropflood -d 10s -size 64 -port 9 -cpu 0
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

type result struct {
	Seconds    float64 `json:"seconds"`
	Size       int     `json:"size"`
	Port       int     `json:"port"`
	CPU        int     `json:"cpu"`
	Sent       uint64  `json:"sent"`
	SentPPS    float64 `json:"sent_pps"`
	CPUSeconds float64 `json:"cpu_seconds"` // the sender thread, softirq run inline included
	CPUNsPkt   float64 `json:"cpu_ns_per_pkt"`
	// CPUNsPktP10 is the 10th percentile of the CPU time per datagram over
	// chunks of chunk datagrams: other tasks only ever add time to a chunk
	// (cache pollution, preemption accounting), so it is close to the cost
	// on an idle CPU.
	CPUNsPktP10 float64 `json:"cpu_ns_per_pkt_p10"`
	Chunks      int     `json:"chunks"`
}

const chunk = 2048

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func main() {
	dur := flag.Duration("d", 10*time.Second, "how long to send")
	port := flag.Int("port", 9, "closed UDP port on 127.0.0.1")
	size := flag.Int("size", 64, "UDP payload bytes")
	cpu := flag.Int("cpu", 0, "CPU for the sending thread (-1: any)")
	flag.Parse()
	if err := run(*dur, *port, *size, *cpu); err != nil {
		fmt.Fprintln(os.Stderr, "dropflood:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, port, size, cpu int) error {
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	// The port must be closed: a listener would receive instead of drop.
	probe, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(probe, addr); err != nil {
		unix.Close(probe)
		return fmt.Errorf("127.0.0.1:%d is in use, not a closed port: %w", port, err)
	}
	unix.Close(probe)

	runtime.LockOSThread()
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	// Unconnected: a connected socket would fail sends with the ICMP port
	// unreachable errors the drops cause.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, size)
	var (
		n       uint64
		perPkt  []float64
		lastCPU = threadCPU()
	)
	start := time.Now()
	until := start.Add(dur)
	for i := 1; ; i++ {
		if err := unix.Sendto(fd, buf, 0, addr); err == nil {
			n++
		} else if err != unix.ENOBUFS && err != unix.EAGAIN && err != unix.ECONNREFUSED {
			return err
		}
		if i%chunk == 0 {
			now := threadCPU()
			perPkt = append(perPkt, float64(now-lastCPU)/chunk)
			lastCPU = now
			if time.Now().After(until) {
				break
			}
		}
	}
	elapsed := time.Since(start)
	var ru unix.Rusage
	res := result{Seconds: elapsed.Seconds(), Size: size, Port: port, CPU: cpu, Sent: n, SentPPS: float64(n) / elapsed.Seconds()}
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) == nil {
		res.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		if n > 0 {
			res.CPUNsPkt = 1e9 * res.CPUSeconds / float64(n)
		}
	}
	if len(perPkt) > 0 {
		sort.Float64s(perPkt)
		res.CPUNsPktP10 = perPkt[len(perPkt)/10]
		res.Chunks = len(perPkt)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
