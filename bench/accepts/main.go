// Command accepts is an accept storm on 127.0.0.1: client goroutines
// connect and reset as fast as they can for a while, acceptor goroutines
// accept and close. It prints one JSON line with its pid and how many
// connections it accepted, for bench/accepts.sh to compare with what the
// agent reported.
//
// Raw blocking system calls keep the storm's own cost low, so the machine
// spends its time on connections rather than on a poller.
//
// With -syscalls it instead times getppid(2) in a loop on one thread: the
// cost a hook at every system call's exit adds to every process.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long the clients connect")
	clients := flag.Int("clients", 2, "connecting goroutines")
	acceptors := flag.Int("acceptors", 1, "accepting goroutines")
	syscalls := flag.Bool("syscalls", false, "time getppid(2) instead of storming")
	listenPort := flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free port)")
	flag.Parse()
	if *syscalls {
		timeSyscalls(*duration)
		return
	}
	if err := run(*duration, *clients, *acceptors, *listenPort); err != nil {
		fmt.Fprintln(os.Stderr, "accepts:", err)
		os.Exit(1)
	}
}

type result struct {
	PID        int     `json:"pid"`
	Port       int     `json:"port"`
	Seconds    float64 `json:"seconds"`
	Connects   int64   `json:"connects"`
	ConnectErr int64   `json:"connect_errors"`
	Accepts    int64   `json:"accepts"`
	Rate       float64 `json:"accepts_per_second"`
	// CPUPerAccept is the storm's own CPU (both ends, kernel included) per
	// connection: what a hook in its path adds shows here even when the
	// machine is too busy for the rate to tell.
	CPUPerAccept float64 `json:"cpu_us_per_accept"`
}

func run(d time.Duration, clients, acceptors, listenPort int) error {
	ls, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// SO_REUSEADDR: storms restart on the same port while the last one's
	// connections sit in TIME_WAIT.
	if err := unix.SetsockoptInt(ls, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(ls, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: listenPort}); err != nil {
		return err
	}
	if err := unix.Listen(ls, 4096); err != nil {
		return err
	}
	sa, err := unix.Getsockname(ls)
	if err != nil {
		return err
	}
	port := sa.(*unix.SockaddrInet4).Port
	target := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}

	var accepts, connects, connectErrs atomic.Int64
	var stop atomic.Bool
	var acc sync.WaitGroup
	for i := 0; i < acceptors; i++ {
		acc.Add(1)
		go func() {
			defer acc.Done()
			for {
				fd, _, err := unix.Accept4(ls, unix.SOCK_CLOEXEC)
				if err != nil {
					if err == unix.EINTR || err == unix.ECONNABORTED {
						continue
					}
					return // the listener was shut down
				}
				accepts.Add(1)
				unix.Close(fd)
			}
		}()
	}
	start, cpu0 := time.Now(), processCPU()
	var cl sync.WaitGroup
	for i := 0; i < clients; i++ {
		cl.Add(1)
		go func() {
			defer cl.Done()
			// A reset close leaves no TIME_WAIT to exhaust the ports.
			linger := &unix.Linger{Onoff: 1, Linger: 0}
			for !stop.Load() {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					connectErrs.Add(1)
					continue
				}
				if err := unix.Connect(fd, target); err != nil {
					connectErrs.Add(1)
				} else {
					connects.Add(1)
				}
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
				unix.Close(fd)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	cl.Wait()
	elapsed := time.Since(start)
	// Let the acceptors take what is still queued, then stop them.
	for last := int64(-1); accepts.Load() != last; {
		last = accepts.Load()
		time.Sleep(200 * time.Millisecond)
	}
	unix.Shutdown(ls, unix.SHUT_RDWR)
	acc.Wait()
	unix.Close(ls)
	cpu := processCPU() - cpu0
	return json.NewEncoder(os.Stdout).Encode(result{
		PID: os.Getpid(), Port: port, Seconds: elapsed.Seconds(),
		Connects: connects.Load(), ConnectErr: connectErrs.Load(), Accepts: accepts.Load(),
		Rate:         float64(accepts.Load()) / elapsed.Seconds(),
		CPUPerAccept: float64(cpu.Microseconds()) / float64(max(accepts.Load(), 1)),
	})
}

// timeSyscalls prints the mean CPU time of getppid(2) over d, on one
// thread, in blocks of 100000 calls. CPU time of the thread, not wall
// time: on a loaded machine the wait for a CPU would swamp it.
func timeSyscalls(d time.Duration) {
	runtime.LockOSThread()
	var calls int64
	cpu0 := threadCPU()
	start := time.Now()
	for time.Since(start) < d {
		for i := 0; i < 100000; i++ {
			unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		calls += 100000
	}
	cpu := threadCPU() - cpu0
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"pid": os.Getpid(), "calls": calls, "seconds": time.Since(start).Seconds(),
		"cpu_seconds": cpu.Seconds(), "ns_per_call": float64(cpu.Nanoseconds()) / float64(calls),
	})
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
