//go:build linux

package tcpreceive

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/pipelines"
)

// agent is `sockeye capture` running as a child process.
type agent struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{}
}

func startCapture(t *testing.T, stdout *os.File, args ...string) *agent {
	t.Helper()
	a := &agent{done: make(chan struct{})}
	if btf := os.Getenv("SOCKEYE_TEST_BTF"); btf != "" {
		args = append([]string{"--btf", btf}, args...)
	}
	a.cmd = exec.Command(agentbin.Build(t), append([]string{"capture"}, args...)...)
	a.cmd.Stderr = &a.stderr
	if stdout != nil {
		a.cmd.Stdout = stdout
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("sockeye capture stderr:\n%s", a.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(a.stderr.String(), "listening on") {
		select {
		case <-a.done:
			t.Fatalf("sockeye capture exited: %s", a.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockeye capture did not start:\n%s", a.stderr.String())
		}
	}
	return a
}

func (a *agent) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("sockeye capture did not exit after %v", sig)
	}
	return a.cmd.ProcessState.ExitCode()
}

// craft sends n segments over lo from sport to dport, payload bytes each.
func craft(t *testing.T, sport, dport uint16, n, payload int) {
	t.Helper()
	s := segment{name: "PSH-ACK", flags: pipelines.TCPPsh | pipelines.TCPAck, payload: strings.Repeat("x", payload)}
	segs := make([]segment, n)
	for i := range segs {
		segs[i] = s
	}
	lo := net.IPv4(127, 0, 0, 1)
	if err := sendSegments(lo, lo, sport, dport, segs); err != nil {
		t.Fatal(err)
	}
}

func tsharkCount(t *testing.T, file string) int {
	t.Helper()
	return len(tsharkFields(t, file, "frame.number"))
}

// TestCapturePipe: `-w -` into `tshark -r -` shows packets while the capture runs.
func TestCapturePipe(t *testing.T) {
	kernel(t)
	needHost(t)
	haveTools(t)
	sport, dport := ports()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a := startCapture(t, w, "-i", "lo", "-w", "-", "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
	w.Close()
	ts := exec.Command("tshark", "-l", "-r", "-", "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport")
	ts.Stdin = r
	out, err := ts.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer ts.Process.Kill()
	got := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	craft(t, sport, dport, 3, 10)
	want := fmt.Sprintf("%d\t%d", sport, dport)
	for i := range 3 {
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("tshark line %d: %q, want %q", i, l, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tshark showed %d of 3 packets while the capture runs", i)
		}
	}
	if code := a.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	if err := ts.Wait(); err != nil {
		t.Fatalf("tshark after the capture ended: %v", err)
	}
}

// TestCaptureSignals: after SIGTERM the file is complete, statistics
// included; after SIGKILL every flushed block reads.
func TestCaptureSignals(t *testing.T) {
	kernel(t)
	needHost(t)
	haveTools(t)
	t.Run("SIGTERM", func(t *testing.T) {
		sport, dport := ports()
		file := filepath.Join(t.TempDir(), "term.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
		craft(t, sport, dport, 25, 100)
		time.Sleep(200 * time.Millisecond)
		if code := a.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
		checkReaders(t, file, 25)
		for _, l := range []string{"25 packets captured\n", "25 packets received by filter\n", "0 packets dropped by kernel\n"} {
			if !strings.Contains(a.stderr.String(), l) {
				t.Errorf("stderr lacks %q:\n%s", l, a.stderr.String())
			}
		}
		recv, drop := statistics(t, file, "lo")
		if recv != 25 || drop != 0 {
			t.Errorf("interface statistics of lo: received %d, dropped %d; want 25, 0", recv, drop)
		}
	})
	t.Run("SIGKILL", func(t *testing.T) {
		sport, dport := ports()
		file := filepath.Join(t.TempDir(), "kill.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
		craft(t, sport, dport, 25, 100)
		// Files are flushed every second.
		time.Sleep(2500 * time.Millisecond)
		a.stop(t, syscall.SIGKILL)
		if n := tsharkCount(t, file); n != 25 {
			t.Fatalf("tshark reads %d packets after SIGKILL, want the 25 flushed", n)
		}
		checkReaders(t, file, 25)
	})
}

// statistics reads the last statistics block of the named interface.
func statistics(t *testing.T, file, name string) (recv, drop uint64) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	for i := range r.NInterfaces() {
		ifc, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		if ifc.Name == name {
			return ifc.Statistics.PacketsReceived, ifc.Statistics.PacketsDropped
		}
	}
	t.Fatalf("no interface %s in %s", name, file)
	return 0, 0
}

// TestCaptureRotation: files rotated by size and by time each open on
// their own, and together hold every packet.
func TestCaptureRotation(t *testing.T) {
	kernel(t)
	needHost(t)
	haveTools(t)
	check := func(t *testing.T, files []string, total int) {
		t.Helper()
		sum := 0
		for _, f := range files {
			n := tsharkCount(t, f)
			checkReaders(t, f, n)
			sum += n
		}
		if sum != total {
			t.Errorf("%d files hold %d packets, want %d", len(files), sum, total)
		}
	}
	t.Run("size", func(t *testing.T) {
		sport, dport := ports()
		dir := t.TempDir()
		file := filepath.Join(dir, "size.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "-C", "1", "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
		// About 2.8 MB: three files of at most 1 MB and a bit.
		for range 4 {
			craft(t, sport, dport, 500, 1400)
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		if code := a.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d", code)
		}
		files, _ := filepath.Glob(file + "*")
		if len(files) < 3 {
			t.Fatalf("files: %v, want at least 3", files)
		}
		for _, f := range files {
			if fi, _ := os.Stat(f); fi.Size() > 1_100_000 {
				t.Errorf("%s is %d bytes, over -C 1 and one batch", f, fi.Size())
			}
		}
		check(t, files, 2000)
	})
	t.Run("ring", func(t *testing.T) {
		sport, dport := ports()
		dir := t.TempDir()
		file := filepath.Join(dir, "ring.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "-C", "1", "-W", "2", "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
		for range 4 {
			craft(t, sport, dport, 500, 1400)
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		a.stop(t, syscall.SIGTERM)
		files, _ := filepath.Glob(file + "*")
		if strings.Join(files, " ") != file+"0 "+file+"1" {
			t.Fatalf("files: %v, want %s0 and %s1", files, file, file)
		}
		for _, f := range files {
			checkReaders(t, f, tsharkCount(t, f))
		}
	})
	t.Run("time", func(t *testing.T) {
		sport, dport := ports()
		dir := t.TempDir()
		file := filepath.Join(dir, "time.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "-G", "1", "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
		var sent int
		for start := time.Now(); time.Since(start) < 3500*time.Millisecond; sent++ {
			craft(t, sport, dport, 1, 10)
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		a.stop(t, syscall.SIGTERM)
		files, _ := filepath.Glob(file + "*")
		if len(files) < 3 {
			t.Fatalf("files: %v, want at least 3 after 3.5 s with -G 1", files)
		}
		check(t, files, sent)
	})
	t.Run("time-count", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "timecount.pcapng")
		a := startCapture(t, nil, "-i", "lo", "-w", file, "-G", "1", "-W", "2", "port", "9")
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			t.Fatal("-G 1 -W 2 did not exit after two files")
		}
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit %d", code)
		}
		files, _ := filepath.Glob(file + "*")
		if len(files) != 2 {
			t.Fatalf("files: %v, want 2", files)
		}
		check(t, files, 0)
	})
}

// TestCaptureConsole: without -w, the seed's table, and -c stops the capture.
func TestCaptureConsole(t *testing.T) {
	kernel(t)
	needHost(t)
	sport, dport := ports()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	a := startCapture(t, out, "-i", "lo", "-c", "4", "src", "port", fmt.Sprint(sport), "and", "dst", "port", fmt.Sprint(dport))
	craft(t, sport, dport, 6, 1)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("-c 4 did not stop the capture")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d: %s", code, a.stderr.String())
	}
	b, _ := os.ReadFile(out.Name())
	row := fmt.Sprintf(" %15s %15s  %5d  %5d  0  1  1  0  0  0\n", "127.0.0.1", "127.0.0.1", sport, dport)
	if !bytes.HasPrefix(b, []byte(header)) || strings.Count(string(b), row) != 4 {
		t.Errorf("stdout: want the header and 4 rows %q:\n%s", row, b)
	}
	if !strings.Contains(a.stderr.String(), "4 packets captured\n") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
}

// TestPipelineFromConfig: a packets pipeline of a config file, run by the
// agent, writes headers only by default and closes its file at SIGTERM.
func TestPipelineFromConfig(t *testing.T) {
	kernel(t)
	needHost(t)
	sport, dport := ports()
	dir := t.TempDir()
	file := filepath.Join(dir, "rx.pcapng")
	cfg := filepath.Join(dir, "sockeye.yaml")
	yaml := fmt.Sprintf(`sources:
  tcp_receive:
    interface: lo
    filter: src port %d and dst port %d
exporters:
  pcapng:
    path: %s
  console:
pipelines:
  packets:
    sources: [tcp_receive]
    exporters: [pcapng, console]
`, sport, dport, file)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runArgs := []string{"run", "--config", cfg}
	if btf := os.Getenv("SOCKEYE_TEST_BTF"); btf != "" {
		runArgs = append(runArgs, "--btf", btf)
	}
	a := agentbin.Start(t, nil, runArgs...)
	a.WaitLog(t, "pipeline started", 60*time.Second)
	craft(t, sport, dport, 5, 1000)
	time.Sleep(300 * time.Millisecond)
	if code := a.Stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, a.Stderr())
	}
	got := readPackets(t, file)
	if len(got) != 5 {
		t.Fatalf("%d packets in %s, want 5", len(got), file)
	}
	f, _ := os.Open(file)
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		// Cooked header, IPv4 and TCP headers: no payload by default.
		if len(data) != 16+20+20 || ci.Length != 16+20+20+1000 {
			t.Errorf("captured %d of %d bytes, want the 56 bytes of headers", len(data), ci.Length)
		}
	}
	row := fmt.Sprintf(" %15s %15s  %5d  %5d  0  1  1  0  0  0\n", "127.0.0.1", "127.0.0.1", sport, dport)
	if !strings.Contains(a.Stdout(), header) || strings.Count(a.Stdout(), row) != 5 {
		t.Errorf("console: want the header and 5 rows:\n%s", a.Stdout())
	}
	if recv, drop := statistics(t, file, "lo"); recv != 5 || drop != 0 {
		t.Errorf("statistics of lo: %d received, %d dropped; want 5, 0", recv, drop)
	}
}
