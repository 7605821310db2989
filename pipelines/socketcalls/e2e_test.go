//go:build linux

package socketcalls

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/jaeger"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

const clientEnv = "SOCKEYE_SOCKETCALLS_CLIENT"

// TestMain makes the test binary the traced client when asked: it names
// itself (its comm is what the agent selects and what Jaeger lists as the
// service), then connects, sends, receives and closes on 127.0.0.1.
func TestMain(m *testing.M) {
	if comm := os.Getenv(clientEnv); comm != "" {
		// The main thread's name is the process's name.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafePointer(append([]byte(comm), 0))), 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := clientWork(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// clientWork: blocking calls on one thread, so each is one system call: a
// TCP exchange over 127.0.0.1, then a connect to a closed port.
func clientWork() error {
	lo := [4]byte{127, 0, 0, 1}
	srv, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(srv, &unix.SockaddrInet4{Addr: lo}); err != nil {
		return err
	}
	if err := unix.Listen(srv, 4); err != nil {
		return err
	}
	sa, err := unix.Getsockname(srv)
	if err != nil {
		return err
	}
	cli, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(cli, &unix.SockaddrInet4{Addr: lo, Port: sa.(*unix.SockaddrInet4).Port}); err != nil {
		return err
	}
	acc, _, err := unix.Accept4(srv, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 16)
	for _, step := range []func() error{
		func() error { return unix.Sendto(cli, []byte("hello"), 0, nil) },
		func() error { _, _, err := unix.Recvfrom(acc, buf, 0); return err },
		func() error { return unix.Sendto(acc, []byte("world"), 0, nil) },
		func() error { _, _, err := unix.Recvfrom(cli, buf, 0); return err },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	unix.Close(acc)
	unix.Close(cli)
	unix.Close(srv)
	refused, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(refused, &unix.SockaddrInet4{Addr: lo, Port: 1}); !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("connect to port 1: %v, want ECONNREFUSED", err)
	}
	return unix.Close(refused)
}

func runClient(t *testing.T, comm string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+comm)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	return cmd.Process.Pid
}

// TestJaeger runs the built agent exporting OTLP traces to a real Jaeger
// v2, first as `sockeye trace` over gRPC, then from a config file over
// HTTP, and asks Jaeger's query API for the client's traces: one trace per
// socket call, named after the call, with the kernel's work nested inside.
// Jaeger's fixed ports keep this test from running in parallel with any
// other that uses Jaeger (jaeger.Start holds a lock).
func TestJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and Jaeger")
	}
	testenv.RequireRoot(t)
	j := jaeger.Start(t)

	t.Run("sockeye trace over grpc", func(t *testing.T) {
		const comm = "sc-e2e-grpc"
		a := agentbin.Start(t, []string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + jaeger.OTLPGRPC,
			"OTEL_BSP_SCHEDULE_DELAY=200",
		}, "trace", "--comm", comm)
		a.WaitLog(t, "pipeline started", 120*time.Second)
		pid := runClient(t, comm)
		checkJaeger(t, j, comm, pid)
		if code := a.Stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGINT", code)
		}
		for _, want := range []string{fmt.Sprintf(" %s(%d):  -> connect", comm, pid), "<- connect (ECONNREFUSED)", "-> sendto"} {
			if !strings.Contains(a.Stdout(), want) {
				t.Errorf("console lacks %q:\n%s", want, a.Stdout())
			}
		}
	})

	t.Run("config file over http", func(t *testing.T) {
		const comm = "sc-e2e-http"
		cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
		// Jaeger takes traces only: the endpoint comes from the traces
		// variable, so the exporter's metrics side (the pipeline's own
		// counters) stays off instead of failing against Jaeger.
		os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  socket_calls:
    commands: [%s]
exporters:
  otlp/jaeger:
    enabled: auto
    protocol: http/protobuf
pipelines:
  traces/sockets:
    sources: [socket_calls]
    exporters: [otlp/jaeger]
`, comm)), 0o644)
		a := agentbin.Start(t, []string{"OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + jaeger.OTLPHTTP + "/v1/traces"},
			"run", "--config", cfg)
		a.WaitLog(t, "pipeline started", 120*time.Second)
		pid := runClient(t, comm)
		checkJaeger(t, j, comm, pid)
		if code := a.Stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	})
}

func checkJaeger(t *testing.T, j *jaeger.Jaeger, comm string, pid int) {
	t.Helper()
	want := []string{"socket", "bind", "listen", "getsockname", "connect", "accept4", "sendto", "recvfrom", "close"}
	byRoot := map[string]jaeger.Trace{}
	j.WaitTraces(t, 60*time.Second, comm, func(trs []jaeger.Trace) bool {
		clear(byRoot)
		for _, tr := range trs {
			for _, r := range tr.Roots() {
				// The refused connect is told apart by its error.
				key := r.Operation
				if r.Tags["error"] == "true" {
					key += "!"
				}
				byRoot[key] = tr
			}
		}
		for _, w := range append(want, "connect!") {
			if _, ok := byRoot[w]; !ok {
				return false
			}
		}
		return true
	})
	spid := strconv.Itoa(pid)
	for _, tr := range byRoot {
		if n := len(tr.Roots()); n != 1 {
			t.Errorf("trace %s has %d roots, want one root call per trace", tr.TraceID, n)
		}
		for _, s := range tr.Spans {
			if s.Service != comm || s.ProcessTags["process.pid"] != spid {
				t.Errorf("span %s: service %q pid %q, want %q %s", s.Operation, s.Service, s.ProcessTags["process.pid"], comm, spid)
			}
			if s.Tags["span.kind"] != "internal" || s.Tags["process.pid"] != spid || s.Tags["thread.id"] == "" || s.Tags["code.function.name"] != s.Operation {
				t.Errorf("span %s tags: %v", s.Operation, s.Tags)
			}
		}
	}
	connect := byRoot["connect"].Roots()[0]
	if connect.Tags["network.peer.address"] != "127.0.0.1" || connect.Tags["sockeye.return_value"] != "0" || connect.Tags["network.transport"] != "tcp" {
		t.Errorf("connect tags: %v", connect.Tags)
	}
	refused := byRoot["connect!"].Roots()[0]
	if refused.Tags["otel.status_description"] != "ECONNREFUSED" || refused.Tags["error.type"] != "ECONNREFUSED" {
		t.Errorf("refused connect tags: %v", refused.Tags)
	}
	// The kernel's work nests inside the call: on this kernel the
	// networking tracepoint pairs (transmit, loopback delivery), where
	// fentry or kprobes work the functions of net/socket.c.
	send := byRoot["sendto"]
	root := send.Roots()[0]
	if root.Tags["sockeye.io.bytes"] != "5" {
		t.Errorf("sendto tags: %v", root.Tags)
	}
	children := send.Children(root.SpanID)
	if len(children) == 0 {
		t.Fatalf("sendto has no children: %+v", send.Spans)
	}
	var names []string
	for _, c := range children {
		names = append(names, c.Operation)
		if c.Start.Before(root.Start) || c.Start.Add(c.Duration).After(root.Start.Add(root.Duration).Add(time.Microsecond)) {
			t.Errorf("child %s [%v +%v] outside sendto [%v +%v]", c.Operation, c.Start, c.Duration, root.Start, root.Duration)
		}
	}
	switch {
	case contains(names, "netdev_start_xmit"):
		x := children[index(names, "netdev_start_xmit")]
		if rx := send.Children(x.SpanID); len(rx) == 0 || rx[0].Operation != "netif_rx" {
			t.Errorf("netdev_start_xmit children %+v, want netif_rx (loopback delivery)", rx)
		}
		if x.Tags["network.interface.name"] != "lo" {
			t.Errorf("netdev_start_xmit tags %v", x.Tags)
		}
	case contains(names, "__sys_sendto"):
		x := children[index(names, "__sys_sendto")]
		if sub := send.Children(x.SpanID); len(sub) == 0 {
			t.Errorf("__sys_sendto has no children")
		}
	default:
		t.Errorf("sendto children %v: want the transmit pair or __sys_sendto", names)
	}
}

func contains(s []string, v string) bool { return index(s, v) >= 0 }

func index(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// TestCollector runs `sockeye trace` against a real OpenTelemetry
// Collector with the generic OTEL_EXPORTER_OTLP_ENDPOINT: the spans arrive
// with their tree, and the pipeline's own counters arrive as metrics.
func TestCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and a collector")
	}
	testenv.RequireRoot(t)
	col := otelcol.Start(t)
	const comm = "sc-e2e-col"
	a := agentbin.Start(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + col.GRPCEndpoint,
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
	}, "trace", "--comm", comm)
	a.WaitLog(t, "pipeline started", 120*time.Second)
	pid := strconv.Itoa(runClient(t, comm))
	send := col.WaitSpan(t, 30*time.Second, func(s otelcol.Span) bool {
		return s.Name == "sendto" && s.ParentSpanID == "" && s.Attrs["process.pid"] == pid
	})
	if send.Kind != "internal" || send.Resource["service.name"] != comm || send.Attrs["sockeye.io.bytes"] != "5" ||
		!send.End.After(send.Start) || send.End.Sub(send.Start) > time.Second {
		t.Errorf("sendto span: %v resource %v", send, send.Resource)
	}
	child := col.WaitSpan(t, 10*time.Second, func(s otelcol.Span) bool {
		return s.TraceID == send.TraceID && s.ParentSpanID == send.SpanID
	})
	if child.Start.Before(send.Start) || child.End.After(send.End) {
		t.Errorf("child %v outside its root %v", child, send)
	}
	refused := col.WaitSpan(t, 10*time.Second, func(s otelcol.Span) bool {
		return s.Name == "connect" && s.Attrs["process.pid"] == pid && s.StatusCode == "error"
	})
	if refused.StatusMessage != "ECONNREFUSED" || refused.Attrs["error.type"] != "ECONNREFUSED" {
		t.Errorf("refused connect: %v", refused)
	}
	col.WaitMetric(t, 20*time.Second, func(p otelcol.MetricPoint) bool {
		return p.Name == "sockeye.agent.traces.roots" && p.Attrs["sockeye.source"] == "socket_calls" && p.Int >= 19
	})
	if code := a.Stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
}
