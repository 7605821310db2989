// Command loop is the traced program of the socket-calls benchmark: a
// tight loop of sendto and recvfrom of 64 bytes to itself over UDP on
// 127.0.0.1, on one thread, named sc-loop. It prints the calls made and
// the time per iteration.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() { runtime.LockOSThread() } // main runs on the main thread: its name is the process's

func main() {
	n := flag.Int("n", 200000, "iterations (one sendto and one recvfrom each)")
	name := flag.String("name", "sc-loop", "process name (comm) to take")
	rate := flag.Int("rate", 0, "iterations per second at most, paced every 64 iterations (0: as fast as it can)")
	flag.Parse()
	comm := append([]byte(*name), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&comm[0])), 0, 0, 0); err != nil {
		fail(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		fail(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fail(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		fail(err)
	}
	msg, buf := make([]byte, 64), make([]byte, 64)
	cpu0 := threadCPU()
	start := time.Now()
	for i := range *n {
		// Paced, the loop leaves its CPU to others (the benchmark's
		// receiver) and offers the agent a steady rate.
		if *rate > 0 && i%64 == 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
				time.Sleep(d)
			}
		}
		if err := unix.Sendto(fd, msg, 0, sa); err != nil {
			fail(err)
		}
		if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
			fail(err)
		}
	}
	d, cpu := time.Since(start), threadCPU()-cpu0
	// CPU time of the thread (the BPF programs run in it, as system time)
	// is what tracing costs it; wall time on a shared machine is mostly
	// the neighbours.
	fmt.Printf("iterations=%d calls=%d seconds=%.3f ns_per_iteration=%.0f cpu_ns_per_iteration=%.0f\n",
		*n, 2**n, d.Seconds(), float64(d.Nanoseconds())/float64(*n), float64(cpu.Nanoseconds())/float64(*n))
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loop:", err)
	os.Exit(1)
}
