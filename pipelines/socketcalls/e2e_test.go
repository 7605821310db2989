//go:build linux

package socketcalls

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/jaeger"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

const clientEnv = "SOCKEYE_SOCKETCALLS_CLIENT"

// stopWithin bounds the agent's exit after a signal: detaching a hundred
// fentry or kprobe links takes 10-20 s in the kernel matrix's emulated
// guests (an RCU grace period each).
const stopWithin = 3 * time.Minute

// init keeps the client on the main thread from the start: inits run
// there, but by TestMain the main goroutine may have moved to another
// thread, whose new name would not be the process's (Jaeger would list the
// spans under the binary's name instead).
func init() {
	if os.Getenv(clientEnv) != "" {
		runtime.LockOSThread()
	}
}

// TestMain makes the test binary the traced client when asked: it names
// itself (its comm is what the agent selects and what Jaeger lists as the
// service), then connects, sends, receives and closes on 127.0.0.1.
func TestMain(m *testing.M) {
	if comm := os.Getenv(clientEnv); comm != "" {
		// The main thread's name is the process's name.
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

// prebuilt tells whether the agent and Jaeger were built beforehand: the
// kernel matrix runs this test that way in its guests (under -short, with
// no Go toolchain), so Jaeger shows the spans of every rung.
func prebuilt() bool {
	return os.Getenv(agentbin.BinEnv) != "" && os.Getenv(jaeger.BinEnv) != ""
}

// btfArgs passes the matrix's external BTF file (its no-BTF guest) on.
func btfArgs() []string {
	if f := os.Getenv("SOCKEYE_TEST_BTF"); f != "" {
		return []string{"--btf", f}
	}
	return nil
}

var startedRung = regexp.MustCompile(`msg="pipeline started" .*source=socket_calls rung=(\S+)`)

// rungOf is the rung the agent says it picked.
func rungOf(t *testing.T, a *agentbin.Agent) string {
	t.Helper()
	m := startedRung.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("no rung in the agent's start log:\n%s", a.Stderr())
	}
	return m[1]
}

// refusals are the agent's words for a rung this kernel does not offer (as
// opposed to one that broke): fentry refused (lockdown, no CAP_BPF), no
// kprobes built, no kernel BTF for the BTF rungs.
var refusals = []string{"the kernel refuses it", "kernel built without CONFIG_KPROBES", "needs the kernel's own BTF"}

// TestJaeger runs the built agent exporting OTLP traces to a real Jaeger
// v2, first as `sockeye trace` over gRPC, then from a config file over
// HTTP, then on each hook rung in turn, and asks Jaeger's query API for the
// client's traces: one trace per socket call, named after the call, with
// the kernel's work nested inside. Jaeger's fixed ports keep this test from
// running in parallel with any other that uses Jaeger (jaeger.Start holds a
// lock).
func TestJaeger(t *testing.T) {
	if testing.Short() && !prebuilt() {
		t.Skip("end to end: builds the agent and Jaeger")
	}
	testenv.RequireRoot(t)
	j := jaeger.Start(t)

	t.Run("sockeye trace over grpc", func(t *testing.T) {
		const comm = "sc-e2e-grpc"
		a := agentbin.Start(t, []string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + jaeger.OTLPGRPC,
			"OTEL_BSP_SCHEDULE_DELAY=200",
		}, append([]string{"trace", "--comm", comm}, btfArgs()...)...)
		a.WaitLog(t, "pipeline started", 5*time.Minute)
		pid := runClient(t, comm)
		checkJaeger(t, j, comm, pid, rungOf(t, a), false)
		if code := a.Stop(t, syscall.SIGINT, stopWithin); code != 0 {
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
			append([]string{"run", "--config", cfg}, btfArgs()...)...)
		a.WaitLog(t, "pipeline started", 5*time.Minute)
		pid := runClient(t, comm)
		checkJaeger(t, j, comm, pid, rungOf(t, a), false)
		if code := a.Stop(t, syscall.SIGTERM, stopWithin); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	})

	// Each rung forced with `hook:`, and on the function rungs the
	// functions down to tcp_sendmsg, so Jaeger shows the deep nesting too.
	// A rung the kernel does not offer is reported so and skipped.
	for _, rung := range bpfsc.Rungs {
		t.Run("rung "+rung, func(t *testing.T) {
			comm := "sc-" + strings.Replace(rung, "tracepoint", "tp", 1) // 15 characters at most
			cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  socket_calls:
    commands: [%s]
    hook: %s
    functions: ["@net/socket.c", inet_sendmsg, tcp_sendmsg]
exporters:
  otlp/jaeger:
    enabled: auto
pipelines:
  traces/sockets:
    sources: [socket_calls]
    exporters: [otlp/jaeger]
`, comm, rung)), 0o644)
			a := agentbin.Start(t, []string{"OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + jaeger.OTLPGRPC},
				append([]string{"run", "--config", cfg}, btfArgs()...)...)
			if !a.WaitLogOrExit(t, "pipeline started", 5*time.Minute) {
				for _, r := range refusals {
					if strings.Contains(a.Stderr(), r) {
						testenv.Matrix("socket_calls-jaeger", rung, "unsupported", r)
						t.Skipf("rung %s not offered here: %s", rung, r)
					}
				}
				testenv.Matrix("socket_calls-jaeger", rung, "fail", "the agent did not start")
				t.Fatalf("the agent did not start on rung %s:\n%s", rung, a.Stderr())
			}
			if got := rungOf(t, a); got != rung {
				t.Fatalf("agent runs rung %s, want %s", got, rung)
			}
			pid := runClient(t, comm)
			ok := t.Run("traces", func(t *testing.T) { checkJaeger(t, j, comm, pid, rung, true) })
			if code := a.Stop(t, syscall.SIGTERM, stopWithin); code != 0 {
				t.Errorf("exit code %d after SIGTERM", code)
				ok = false
			}
			result := "pass"
			if !ok {
				result = "fail"
			}
			testenv.Matrix("socket_calls-jaeger", rung, result, "spans of a client's calls queried back from Jaeger")
		})
	}
}

// checkJaeger asks Jaeger for the client's traces and checks their roots,
// attributes and what nests under sendto on the agent's rung; deep: the
// functions down to tcp_sendmsg are traced.
func checkJaeger(t *testing.T, j *jaeger.Jaeger, comm string, pid int, rung string, deep bool) {
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
	// The kernel's work nests inside the call, within its time.
	send := byRoot["sendto"]
	root := send.Roots()[0]
	if root.Tags["sockeye.io.bytes"] != "5" {
		t.Errorf("sendto tags: %v", root.Tags)
	}
	byID := map[string]jaeger.Span{}
	for _, s := range send.Spans {
		byID[s.SpanID] = s
		if s.SpanID == root.SpanID {
			continue
		}
		if s.Start.Before(root.Start) || s.Start.Add(s.Duration).After(root.Start.Add(root.Duration).Add(time.Microsecond)) {
			t.Errorf("span %s [%v +%v] outside sendto [%v +%v]", s.Operation, s.Start, s.Duration, root.Start, root.Duration)
		}
	}
	children := send.Children(root.SpanID)
	var names []string
	for _, c := range children {
		names = append(names, c.Operation)
	}
	switch rung {
	case hooks.Fentry, hooks.Kprobe:
		// The functions of net/socket.c (and with deep, inet_sendmsg and
		// tcp_sendmsg) nest under the system call.
		if !contains(names, "__sys_sendto") {
			t.Fatalf("rung %s: sendto children %v, want __sys_sendto", rung, names)
		}
		if !deep {
			break
		}
		var tcp *jaeger.Span
		for i := range send.Spans {
			if send.Spans[i].Operation == "tcp_sendmsg" {
				tcp = &send.Spans[i]
			}
		}
		if tcp == nil {
			t.Fatalf("rung %s: no tcp_sendmsg span under sendto: %+v", rung, send.Spans)
		}
		var chain []string
		for s, ok := *tcp, true; ok; s, ok = byID[s.ParentSpanID] {
			chain = append(chain, s.Operation)
		}
		// tcp_sendmsg <- inet_sendmsg <- (whatever else is traced) <- __sys_sendto <- sendto
		if len(chain) < 4 || chain[1] != "inet_sendmsg" || chain[len(chain)-2] != "__sys_sendto" || chain[len(chain)-1] != "sendto" {
			t.Errorf("rung %s: tcp_sendmsg's ancestors %v, want inet_sendmsg ... __sys_sendto, sendto", rung, chain)
		}
	case hooks.TpBTF, hooks.RawTracepoint:
		// The networking tracepoint pairs: transmit, and inside it the
		// loopback delivery.
		if !contains(names, "netdev_start_xmit") {
			t.Fatalf("rung %s: sendto children %v, want netdev_start_xmit", rung, names)
		}
		x := children[index(names, "netdev_start_xmit")]
		if rx := send.Children(x.SpanID); len(rx) == 0 || rx[0].Operation != "netif_rx" {
			t.Errorf("netdev_start_xmit children %+v, want netif_rx (loopback delivery)", rx)
		}
		if x.Tags["network.interface.name"] != "lo" {
			t.Errorf("netdev_start_xmit tags %v", x.Tags)
		}
	default:
		t.Fatalf("unknown rung %q", rung)
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
	if code := a.Stop(t, syscall.SIGINT, stopWithin); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
}
