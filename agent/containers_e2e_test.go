package agent_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

const containerChildEnv = "SOCKEYE_CONTAINER_CHILD"

// cgroup2Mount is where cgroup v2 is mounted ("" when it is not).
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ... mount point (field 5) ... " - " fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(pre); len(f) >= 5 {
			return f[4]
		}
	}
	return ""
}

// containerChild runs in the child: it moves itself into the cgroup named
// by the variable, says so, then keeps making traffic, accepted
// connections and socket calls until stdin closes.
func containerChild() {
	if err := os.WriteFile(filepath.Join(os.Getenv(containerChildEnv), "cgroup.procs"), []byte("0"), 0o644); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fmt.Println("ready")
	done := make(chan struct{})
	go func() { bufio.NewReader(os.Stdin).ReadString('\n'); close(done) }()
	for {
		select {
		case <-done:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}
}

// TestContainersEndToEnd: a process in a cgroup named like a Docker
// container scope; the agent's metrics, log records and spans about it reach
// a real collector with its container.id, added by the containers processor.
func TestContainersEndToEnd(t *testing.T) {
	if os.Getenv(containerChildEnv) != "" {
		containerChild()
		os.Exit(0)
	}
	testenv.RequireRoot(t)
	mount := cgroup2Mount(t)
	if mount == "" {
		testenv.Unavailable(t, "cgroup v2 is not mounted")
	}
	const id = "5e1f0c2d3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	scope := filepath.Join(mount, "sockeye-e2e.slice", "docker-"+id+".scope")
	if err := os.MkdirAll(scope, 0o755); err != nil {
		testenv.Unavailable(t, "cannot create a cgroup: "+err.Error())
	}
	t.Cleanup(func() {
		os.Remove(scope)
		os.Remove(filepath.Dir(scope))
	})

	col := otelcol.Start(t)
	cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
	writeFile(t, cfg, fmt.Sprintf(`sources:
  traffic:
  accepts:
  socket_calls:
    cgroups: [%q]
processors:
  containers:
    pod_logs_root: "-"
exporters:
  otlp:
    endpoint: %s
    insecure: true
    export_interval: 1s
pipelines:
  metrics/traffic: {sources: [traffic], processors: [containers], exporters: [otlp], interval: 1s}
  logs/accepts: {sources: [accepts], processors: [containers], exporters: [otlp]}
  traces/socket_calls: {sources: [socket_calls], processors: [containers], exporters: [otlp]}
`, scope, col.GRPCEndpoint))
	a := agentbin.Start(t, nil, "run", "--config", cfg)
	a.WaitLog(t, "pipeline=traces/socket_calls source=socket_calls rung=", 60*time.Second)

	child := exec.Command(os.Args[0], "-test.run=^TestContainersEndToEnd$")
	child.Env = append(os.Environ(), containerChildEnv+"="+scope)
	stdin, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); child.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("child: %q", line)
	}
	pid := strconv.Itoa(child.Process.Pid)

	m := col.WaitMetric(t, 30*time.Second, func(p otelcol.MetricPoint) bool {
		return p.Name == "process.network.io" && p.Attrs["process.pid"] == pid && p.Attrs["container.id"] != ""
	})
	if m.Attrs["container.id"] != id {
		t.Errorf("metric container.id %q, want %q", m.Attrs["container.id"], id)
	}
	r := col.WaitLog(t, 30*time.Second, func(r otelcol.LogRecord) bool { return r.Attrs["process.pid"] == pid })
	if r.Attrs["container.id"] != id {
		t.Errorf("log record of the child: container.id %q, want %q (%v)", r.Attrs["container.id"], id, r)
	}
	s := col.WaitSpan(t, 30*time.Second, func(s otelcol.Span) bool { return s.Resource["process.pid"] == pid })
	if s.Resource["container.id"] != id {
		t.Errorf("span of the child: resource container.id %q, want %q (%v)", s.Resource["container.id"], id, s)
	}
	// Processes outside containers get none.
	points, err := col.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(a.PID())
	for _, p := range points {
		if p.Attrs["process.pid"] == self && p.Attrs["container.id"] != "" {
			t.Errorf("the agent itself (on the host) got container.id %q", p.Attrs["container.id"])
			break
		}
	}
}
