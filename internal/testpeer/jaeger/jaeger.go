package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
)

// The fixed addresses of a Jaeger started with no config.
const (
	OTLPGRPC = "127.0.0.1:4317"
	OTLPHTTP = "http://127.0.0.1:4318"
	QueryURL = "http://127.0.0.1:16686"
)

// buildTimeout bounds a cold build (about 4 CPU-minutes; much more on a
// small, shared machine).
const buildTimeout = 30 * time.Minute

// Jaeger is a running Jaeger process.
type Jaeger struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start builds Jaeger if needed, runs it with its defaults and kills it at
// test cleanup. It waits for the machine-wide lock on Jaeger's fixed ports
// first. Any failure fails the test: a missing Jaeger is a broken
// environment, not a reason to skip.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin, err := Build(ctx)
	if err != nil {
		t.Fatalf("jaeger: build failed (the Go toolchain must be able to build tools/jaeger):\n%v", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "sockeye-jaeger-ports.lock"))
	if err != nil {
		t.Fatalf("jaeger: lock its fixed ports: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:4317", "127.0.0.1:4318", "127.0.0.1:16686"} {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			unlock()
			t.Fatalf("jaeger: %s is already in use by another process; Jaeger needs its default ports", addr)
		}
	}
	j := &Jaeger{out: &syncBuffer{}, done: make(chan struct{})}
	j.cmd = exec.Command(bin)
	j.cmd.Dir = t.TempDir()
	j.cmd.Stdout, j.cmd.Stderr = j.out, j.out
	// Killed with the test binary if that dies without cleanups.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := j.cmd.Start(); err != nil {
		unlock()
		t.Fatalf("jaeger: start %s: %v", bin, err)
	}
	go func() { j.err = j.cmd.Wait(); close(j.done) }()
	t.Cleanup(func() {
		j.Stop()
		unlock()
		if t.Failed() {
			t.Logf("jaeger output (tail):\n%s", tail(j.out.String(), 16<<10))
		}
	})
	// Generous: under the kernel matrix's emulated guests it starts in tens
	// of seconds.
	if err := j.waitReady(3 * time.Minute); err != nil {
		t.Fatalf("jaeger: %v\noutput:\n%s", err, tail(j.out.String(), 16<<10))
	}
	return j
}

func (j *Jaeger) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-j.done:
			return fmt.Errorf("exited before it was ready: %v", j.err)
		default:
		}
		grpc, err := net.DialTimeout("tcp", OTLPGRPC, time.Second)
		if err == nil {
			grpc.Close()
			if _, err = j.Services(); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop kills Jaeger (it does not always exit on SIGTERM: it keeps retrying
// its own OTLP self-export) and waits for it. Idempotent.
func (j *Jaeger) Stop() {
	select {
	case <-j.done:
		return
	default:
	}
	_ = j.cmd.Process.Kill()
	<-j.done
}

// Output is what Jaeger has logged so far.
func (j *Jaeger) Output() string { return j.out.String() }

// Span is a span as the query API returns it.
type Span struct {
	TraceID, SpanID string
	// ParentSpanID is the CHILD_OF reference, "" for a root.
	ParentSpanID string
	Operation    string
	Service      string
	Start        time.Time
	Duration     time.Duration
	Tags         map[string]string
	// ProcessTags are the resource attributes other than service.name.
	ProcessTags map[string]string
	Logs        []string // event names
}

// Trace is one trace with its spans.
type Trace struct {
	TraceID string
	Spans   []Span
}

// Root returns the spans without a parent.
func (tr Trace) Roots() []Span {
	var out []Span
	for _, s := range tr.Spans {
		if s.ParentSpanID == "" {
			out = append(out, s)
		}
	}
	return out
}

// Children returns the spans whose parent is id, by start time.
func (tr Trace) Children(id string) []Span {
	var out []Span
	for _, s := range tr.Spans {
		if s.ParentSpanID == id {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Start.Before(out[b].Start) })
	return out
}

func (j *Jaeger) get(path string, dst any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(QueryURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, tail(b.String(), 512))
	}
	return json.NewDecoder(resp.Body).Decode(dst)
}

// Services lists the services Jaeger has spans of (/api/services).
func (j *Jaeger) Services() ([]string, error) {
	var r struct {
		Data []string `json:"data"`
	}
	err := j.get("/api/services", &r)
	return r.Data, err
}

// Traces returns the service's traces of the last hour (/api/traces).
func (j *Jaeger) Traces(service string) ([]Trace, error) {
	var r struct {
		Data []struct {
			TraceID string `json:"traceID"`
			Spans   []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				StartTime int64 `json:"startTime"`
				Duration  int64 `json:"duration"`
				Tags      []tag `json:"tags"`
				Logs      []struct {
					Fields []tag `json:"fields"`
				} `json:"logs"`
				ProcessID string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
				Tags        []tag  `json:"tags"`
			} `json:"processes"`
		} `json:"data"`
	}
	q := url.Values{"service": {service}, "limit": {"1000"}, "lookback": {"1h"}}
	if err := j.get("/api/traces?"+q.Encode(), &r); err != nil {
		return nil, err
	}
	var out []Trace
	for _, d := range r.Data {
		tr := Trace{TraceID: d.TraceID}
		for _, s := range d.Spans {
			sp := Span{TraceID: s.TraceID, SpanID: s.SpanID, Operation: s.OperationName,
				Start: time.UnixMicro(s.StartTime), Duration: time.Duration(s.Duration) * time.Microsecond,
				Tags: tags(s.Tags), Service: d.Processes[s.ProcessID].ServiceName, ProcessTags: tags(d.Processes[s.ProcessID].Tags)}
			for _, ref := range s.References {
				if ref.RefType == "CHILD_OF" {
					sp.ParentSpanID = ref.SpanID
				}
			}
			for _, l := range s.Logs {
				sp.Logs = append(sp.Logs, tags(l.Fields)["event"])
			}
			tr.Spans = append(tr.Spans, sp)
		}
		out = append(out, tr)
	}
	return out, nil
}

// WaitTraces polls until match accepts the service's traces, and returns
// them; on timeout it fails the test with what Jaeger has.
func (j *Jaeger) WaitTraces(t testing.TB, timeout time.Duration, service string, match func([]Trace) bool) []Trace {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		trs []Trace
		err error
	)
	for {
		trs, err = j.Traces(service)
		if err == nil && match(trs) {
			return trs
		}
		select {
		case <-j.done:
			t.Fatalf("jaeger exited: %v", j.err)
		default:
		}
		if time.Now().After(deadline) {
			svcs, _ := j.Services()
			var b strings.Builder
			for _, tr := range trs {
				fmt.Fprintf(&b, "  trace %s:", tr.TraceID)
				for _, s := range tr.Spans {
					fmt.Fprintf(&b, " %s(%s<-%s)", s.Operation, s.SpanID, s.ParentSpanID)
				}
				b.WriteByte('\n')
			}
			t.Fatalf("jaeger: no matching traces of %q within %v (last error %v); services %v; %d traces:\n%s",
				service, timeout, err, svcs, len(trs), b.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type tag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

func tags(ts []tag) map[string]string {
	m := make(map[string]string, len(ts))
	for _, t := range ts {
		m[t.Key] = fmt.Sprint(t.Value)
	}
	return m
}

type syncBuffer = testenv.SyncBuffer

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
