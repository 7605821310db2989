//go:build linux

package traffic

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	bpftraffic "github.com/sockeye/sockeye/bpf/traffic"
	"github.com/sockeye/sockeye/config"
)

// A TCP stream over lo between two processes: the source writes, the sink
// only reads. Over lo each side's packets are delivered in a softirq that
// runs inline in the other's system call, and what that delivery releases
// (the sink's ACKs, the source's data held back by a full window) is sent
// right there: with attribution "current" it is charged to the wrong
// process; with "socket" every segment goes to its socket's owner, learned
// when the source connected or sent and when the sink received.
const (
	streamSinkComm   = "sockeye-own-snk"
	streamSourceComm = "sockeye-own-src"
	streamPortEnv    = "SOCKEYE_TRAFFIC_STREAM_PORT"
	// streamBytes in streamChunk writes: enough segments that the ACKs
	// sent in the source's softirq dwarf the handful sent before an owner
	// is known (the SYN-ACK, the ACK of the first chunk).
	streamBytes = 8 << 20
	streamChunk = 16 << 10
)

// streamSink listens on lo, prints its port, accepts one connection, reads
// it to the end with small reads, closes it and prints the segments its
// socket sent (tcpi_segs_out).
func streamSink() error {
	ln, sa, err := boundLoopback(unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	// A small receive window (inherited by the accepted socket) makes the
	// source stall on it again and again: each read of the sink opens it,
	// and the ACK saying so releases the source's next data from the
	// softirq that runs in the sink's read.
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<10); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	fmt.Println(sa.(*unix.SockaddrInet4).Port)
	s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	if err := readToEOF(s, make([]byte, 4096)); err != nil {
		return err
	}
	return printSegsOut(s)
}

// streamSource connects to the sink, sends a first chunk and waits, so the
// sink is seen receiving before the bulk of the stream, then sends the
// rest, shuts its side down and waits for the sink's close.
func streamSource(port string) error {
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("%s: %w", streamPortEnv, err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrInet4{Addr: loopback, Port: p}); err != nil {
		return err
	}
	buf := make([]byte, streamChunk)
	for sent := 0; sent < streamBytes; sent += len(buf) {
		if _, err := unix.Write(c, buf); err != nil {
			return err
		}
		if sent == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return err
	}
	if err := readToEOF(c, buf); err != nil {
		return err
	}
	return printSegsOut(c)
}

func readToEOF(fd int, buf []byte) error {
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n == 0 {
			return err
		}
	}
}

func printSegsOut(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return err
	}
	fmt.Println(info.Segs_out)
	return nil
}

// streamRun runs sink and source to their ends and returns their pids and
// the segments each socket sent.
func streamRun(t *testing.T) (sinkPid, sourcePid int, sinkSegs, sourceSegs uint64) {
	t.Helper()
	child := func(role string, env ...string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), ownersRoleEnv+"="+role), env...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewScanner(out)
	}
	line := func(role string, sc *bufio.Scanner) string {
		if !sc.Scan() {
			t.Fatalf("%s: no output (%v)", role, sc.Err())
		}
		return strings.TrimSpace(sc.Text())
	}
	sink, sinkOut := child("stream-sink")
	port := line("sink", sinkOut)
	source, sourceOut := child("stream-source", streamPortEnv+"="+port)
	segs := func(role string, cmd *exec.Cmd, sc *bufio.Scanner) uint64 {
		n, err := strconv.ParseUint(line(role, sc), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		return n
	}
	sourceSegs = segs("source", source, sourceOut)
	sinkSegs = segs("sink", sink, sinkOut)
	return sink.Process.Pid, source.Process.Pid, sinkSegs, sourceSegs
}

// TestSocketOwnerGetsSoftirqSends: with attribution "socket", each process
// is charged what its socket sent, although much of it left while the other
// process ran: the source all of its data, the sink its ACKs (give or take
// the few sent before its owner was known) and no data. The same stream
// under "current" shows that it does exercise that case. Packets are
// compared for the sink, whose ACKs are one segment each; bytes for the
// source, whose packets may each carry several segments (GSO).
func TestSocketOwnerGetsSoftirqSends(t *testing.T) {
	k := kernel(t)
	// Before the owner is known: the SYN-ACK, the ACK of the first chunk,
	// perhaps a window update.
	const unowned = 4
	// An ACK frame is at most this long (Ethernet, IP and TCP with options).
	const ackFrame = 14 + 40 + 60
	for _, rung := range bpftraffic.Rungs {
		t.Run(rung, func(t *testing.T) {
			type charged struct{ packets, bytes uint64 }
			var sinkPid, sourcePid int
			var sinkSegs, sourceSegs uint64
			var sink, source charged
			ownerKey := ""
			for _, mode := range []string{"current", "socket"} {
				src := New("traffic", config.TrafficSource{Attribution: mode, Hook: rung, MaxEntries: 4096}, k, testLogger(t))
				if err := src.Start(context.Background()); err != nil {
					if unsupported(err) {
						t.Skipf("rung %s not allowed here: %v", rung, err)
					}
					t.Fatalf("start on rung %s: %v", rung, err)
				}
				if mode == "socket" {
					ownerKey = src.probe.OwnerKey()
				}
				if _, err := src.Collect(context.Background()); err != nil {
					t.Fatal(err)
				}
				sinkPid, sourcePid, sinkSegs, sourceSegs = streamRun(t)
				b, err := src.Collect(context.Background())
				src.Close()
				if err != nil {
					t.Fatal(err)
				}
				sink, source = charged{}, charged{}
				for _, r := range b.Rows {
					e := entryOf(r)
					if e.Device != "lo" {
						continue
					}
					switch int(e.PID) {
					case sinkPid:
						sink.packets, sink.bytes = sink.packets+e.TxPackets, sink.bytes+e.TxBytes
					case sourcePid:
						source.packets, source.bytes = source.packets+e.TxPackets, source.bytes+e.TxBytes
					}
				}
				t.Logf("%s: sink pid %d sent %d segments, charged %d packets / %d bytes; source pid %d sent %d segments, charged %d packets / %d bytes",
					mode, sinkPid, sinkSegs, sink.packets, sink.bytes, sourcePid, sourceSegs, source.packets, source.bytes)
				// The premise: the source's data goes out in the softirq
				// of the sink's reads (lo delivers inline).
				if mode == "current" && sink.bytes < streamBytes/8 {
					t.Fatalf("current: only %d bytes charged to the sink, which sends no data: the stream does not exercise softirq sends", sink.bytes)
				}
			}
			if ownerKey == "" {
				t.Logf("rung %s learns no socket owners on this kernel: nothing to check", rung)
				return
			}
			if diff(sink.packets, sinkSegs) > unowned || sink.bytes > sink.packets*ackFrame {
				t.Errorf("socket: sink pid %d charged %d packets / %d bytes, its socket sent %d ACKs and no data", sinkPid, sink.packets, sink.bytes, sinkSegs)
			}
			if source.bytes < streamBytes {
				t.Errorf("socket: source pid %d charged %d bytes, its socket sent %d bytes of data", sourcePid, source.bytes, streamBytes)
			}
		})
	}
}

func diff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
