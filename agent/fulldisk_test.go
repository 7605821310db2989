//go:build linux

package agent

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
)

const nettopHeader = "  PID   UID DEV     XMIT_PK RECV_PK XMIT_KB RECV_KB COMMAND"

// pingPong keeps small TCP exchanges going over loopback to addr until
// stop is closed: two segments per round, each its own packet.
func pingPong(t *testing.T, addr string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		c.(*net.TCPConn).SetNoDelay(true)
		b := []byte{1}
		for range 200 {
			if _, err := c.Write(b); err != nil {
				break
			}
			if _, err := io.ReadFull(c, b); err != nil {
				break
			}
		}
		c.Close()
	}
}

// echo answers every byte on every connection of l.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetNoDelay(true)
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// TestFullDisk runs the agent with a packets pipeline writing pcapng into
// a 256 KiB tmpfs and a metrics pipeline printing nettop's table, and
// fills the disk: the write error is logged once, naming the file and
// ENOSPC; the lost packets are counted and logged with reason
// write_failed every interval; the table goes on; nothing crashes.
func TestFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent")
	}
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	file := filepath.Join(dir, "rx.pcapng")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l)
	port := l.Addr().(*net.TCPAddr).Port

	cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  traffic:
  tcp_receive:
    interface: lo
    filter: port %d
exporters:
  console:
  pcapng:
    path: %s
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [console]
    interval: 1s
  packets:
    sources: [tcp_receive]
    exporters: [pcapng]
`, port, file)), 0o644)
	a := agentbin.Start(t, nil, "run", "--config", cfg)
	a.WaitLog(t, "pipeline=packets source=tcp_receive", 60*time.Second)
	a.WaitLog(t, "pipeline=metrics/traffic source=traffic", 10*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pingPong(t, l.Addr().String(), stop)
		}()
	}
	stopped := false
	stopTraffic := func() {
		if !stopped {
			close(stop)
			wg.Wait()
			stopped = true
		}
	}
	defer stopTraffic()

	a.WaitLog(t, "no space left on device", 90*time.Second)
	tablesAtFull := strings.Count(a.Stdout(), nettopHeader)
	// The loss is reported every interval (5 s for packets pipelines).
	a.WaitLog(t, `msg="packets lost" pipeline=packets exporter=pcapng reason=write_failed`, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(a.Stdout(), nettopHeader) < tablesAtFull+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the traffic table stopped after the disk filled: %d tables before, %d since",
				tablesAtFull, strings.Count(a.Stdout(), nettopHeader)-tablesAtFull)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The table still counts the traffic of this test.
	if !strings.Contains(a.Stdout()[strings.LastIndex(a.Stdout(), nettopHeader)-1:], " lo ") {
		t.Errorf("the last table shows no loopback traffic:\n%s", a.Stdout())
	}
	stopTraffic()
	code := a.Stop(t, syscall.SIGTERM, 30*time.Second)

	logs := a.Stderr()
	if strings.Contains(logs, "panic:") || strings.Contains(logs, "fatal error:") {
		t.Fatalf("the agent crashed:\n%s", logs)
	}
	// A disk that lost packets is a failed shutdown, said once more at exit.
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	errLine := regexp.MustCompile(`(?m)^.*msg="cannot write the capture file.*$`)
	lines := errLine.FindAllString(logs, -1)
	if len(lines) != 1 {
		t.Fatalf("the write error is logged %d times, want once:\n%s", len(lines), logs)
	}
	if !strings.Contains(lines[0], "file="+file) || !strings.Contains(lines[0], "write "+file+": no space left on device") {
		t.Errorf("the error names neither the file nor ENOSPC: %s", lines[0])
	}
	lost := regexp.MustCompile(`msg="packets lost" pipeline=packets exporter=pcapng reason=write_failed lost=(\d+) lost_total=(\d+)`)
	var total int
	for _, m := range lost.FindAllStringSubmatch(logs, -1) {
		total, _ = strconv.Atoi(m[2])
	}
	if total == 0 {
		t.Errorf("no packet counted as lost:\n%s", logs)
	}
	// What reached the disk reads up to the cut.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatalf("the full file does not start a pcapng file: %v", err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n == 0 {
		t.Error("no packet readable from the full disk")
	}
	t.Logf("%d bytes on disk, %d packets readable, %d counted as lost", len(b), n, total)
}
