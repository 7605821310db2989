package otelcol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
)

// Collector is a running collector child process. Its fields are fixed once
// Start returns.
type Collector struct {
	// GRPCEndpoint is the OTLP/gRPC receiver address, "127.0.0.1:PORT".
	GRPCEndpoint string
	// HTTPEndpoint is the OTLP/HTTP receiver base URL, "http://127.0.0.1:PORT"
	// ("https://..." with WithTLS). Signal paths are /v1/metrics, /v1/logs
	// and /v1/traces.
	HTTPEndpoint string
	// ConfigPath is the generated collector configuration.
	ConfigPath string
	// Dir holds the config and the exporter output; it is a test temp dir.
	Dir string
	// MetricsPath, LogsPath and TracesPath are the file exporter outputs,
	// one OTLP/JSON request per line.
	MetricsPath, LogsPath, TracesPath string

	out *syncBuffer
	// What Restart needs to run the same collector again.
	bin          string
	args         []string
	env          []string
	httpAddr     string
	startTimeout time.Duration

	mu sync.Mutex
	p  *process // the current child; replaced by Restart
}

// process is one run of the collector binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Option customises the collector started by Start.
type Option func(*settings)

type settings struct {
	certFile, keyFile, clientCAFile string
	debugVerbosity                  string
	extraConfigs                    []string
	startTimeout                    time.Duration
	env                             []string
}

// WithTLS makes both OTLP receivers serve TLS with the given certificate and
// key. If caFile is not empty, clients must present a certificate signed by
// it (mutual TLS).
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(s *settings) { s.certFile, s.keyFile, s.clientCAFile = certFile, keyFile, caFile }
}

// WithDebugExporter adds the debug exporter to every pipeline, so received
// telemetry also shows up in Output. verbosity is "basic", "normal" or
// "detailed".
func WithDebugExporter(verbosity string) Option {
	return func(s *settings) { s.debugVerbosity = verbosity }
}

// WithExtraConfig passes an additional YAML configuration that the collector
// merges over the generated one (maps merge, lists are replaced), e.g. to
// add receiver options such as max_recv_msg_size_mib.
func WithExtraConfig(yaml string) Option {
	return func(s *settings) { s.extraConfigs = append(s.extraConfigs, yaml) }
}

// WithStartTimeout changes how long Start waits for the receivers to accept
// connections (default 30s). Building the binary is not included.
func WithStartTimeout(d time.Duration) Option {
	return func(s *settings) { s.startTimeout = d }
}

// WithEnv adds "KEY=VALUE" entries to the collector's environment, for
// ${env:KEY} references in WithExtraConfig.
func WithEnv(kv ...string) Option {
	return func(s *settings) { s.env = append(s.env, kv...) }
}

// buildTimeout bounds a cold build of the collector on a small, busy machine.
const buildTimeout = 15 * time.Minute

// Start builds the collector if needed, runs it on free loopback ports and
// registers its shutdown with t.Cleanup. Any failure fails the test: a
// missing collector is a broken environment, not a reason to skip.
func Start(t testing.TB, opts ...Option) *Collector {
	t.Helper()
	s := settings{startTimeout: 30 * time.Second}
	for _, o := range opts {
		o(&s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	bin, err := Build(ctx)
	cancel()
	if err != nil {
		t.Fatalf("otelcol: build failed (the Go toolchain must be able to build tools/otelcol):\n%v", err)
	}

	dir := t.TempDir()
	// Free ports are picked by binding and releasing them, so another
	// process can grab one in between; retry on that rare collision.
	const attempts = 3
	for i := 1; ; i++ {
		c, err := start(bin, dir, s)
		if err == nil {
			t.Cleanup(func() {
				if err := c.Stop(); err != nil {
					t.Errorf("otelcol: stop: %v", err)
				}
				if t.Failed() {
					t.Logf("otelcol output (tail):\n%s", tail(c.Output(), 64<<10))
				}
			})
			return c
		}
		if i == attempts || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("otelcol: %v", err)
		}
	}
}

func start(bin, dir string, s settings) (*Collector, error) {
	grpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &Collector{
		GRPCEndpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		Dir:          dir,
		ConfigPath:   filepath.Join(dir, "config.yaml"),
		MetricsPath:  filepath.Join(dir, "metrics.jsonl"),
		LogsPath:     filepath.Join(dir, "logs.jsonl"),
		TracesPath:   filepath.Join(dir, "traces.jsonl"),
		out:          &syncBuffer{},
	}
	scheme := "http"
	if s.certFile != "" {
		scheme = "https"
	}
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	c.HTTPEndpoint = scheme + "://" + httpAddr

	// JSON is valid YAML and spares us quoting rules for paths.
	cfg, err := json.MarshalIndent(c.config(s, httpAddr), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.ConfigPath, cfg, 0o644); err != nil {
		return nil, err
	}
	args := []string{"--config", c.ConfigPath}
	for i, extra := range s.extraConfigs {
		p := filepath.Join(dir, fmt.Sprintf("extra-%d.yaml", i))
		if err := os.WriteFile(p, []byte(extra), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config", p)
	}

	c.bin, c.args, c.env, c.httpAddr, c.startTimeout = bin, args, s.env, httpAddr, s.startTimeout
	if err := c.launch(); err != nil {
		return nil, fmt.Errorf("%w\nconfig %s:\n%s", err, c.ConfigPath, cfg)
	}
	return c, nil
}

// launch runs the collector binary and waits until both receivers listen.
func (c *Collector) launch() error {
	p := &process{done: make(chan struct{})}
	p.cmd = exec.Command(c.bin, c.args...)
	p.cmd.Dir = c.Dir
	p.cmd.Env = append(os.Environ(), c.env...)
	p.cmd.Stdout = c.out
	p.cmd.Stderr = c.out
	setChildAttrs(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.p = p
	c.mu.Unlock()

	if err := p.waitReady(c.startTimeout, c.GRPCEndpoint, c.httpAddr); err != nil {
		_ = p.stop()
		return fmt.Errorf("%w\ncommand: %s %s\ncollector output:\n%s",
			err, c.bin, strings.Join(c.args, " "), tail(c.Output(), 32<<10))
	}
	return nil
}

func (c *Collector) current() *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p
}

func (c *Collector) config(s settings, httpAddr string) map[string]any {
	grpc := map[string]any{"endpoint": c.GRPCEndpoint}
	http := map[string]any{"endpoint": httpAddr}
	if s.certFile != "" {
		tls := map[string]any{"cert_file": s.certFile, "key_file": s.keyFile}
		if s.clientCAFile != "" {
			tls["client_ca_file"] = s.clientCAFile
		}
		grpc["tls"] = tls
		http["tls"] = tls
	}
	fileExporter := func(path string) map[string]any {
		// A short flush interval keeps polling readers from waiting on
		// the exporter's 1s default buffer.
		return map[string]any{"path": path, "format": "json", "flush_interval": "100ms"}
	}
	exporters := map[string]any{
		"file/metrics": fileExporter(c.MetricsPath),
		"file/logs":    fileExporter(c.LogsPath),
		"file/traces":  fileExporter(c.TracesPath),
	}
	pipeline := func(file string) map[string]any {
		exp := []string{file}
		if s.debugVerbosity != "" {
			exp = append(exp, "debug")
		}
		return map[string]any{"receivers": []string{"otlp"}, "exporters": exp}
	}
	if s.debugVerbosity != "" {
		exporters["debug"] = map[string]any{"verbosity": s.debugVerbosity}
	}
	return map[string]any{
		"receivers": map[string]any{
			"otlp": map[string]any{"protocols": map[string]any{"grpc": grpc, "http": http}},
		},
		"exporters": exporters,
		"service": map[string]any{
			// The collector's own metrics would otherwise serve on a fixed
			// :8888, which clashes between parallel collectors.
			"telemetry": map[string]any{"metrics": map[string]any{"level": "none"}},
			"pipelines": map[string]any{
				"metrics": pipeline("file/metrics"),
				"logs":    pipeline("file/logs"),
				"traces":  pipeline("file/traces"),
			},
		},
	}
}

func (p *process) waitReady(timeout time.Duration, addrs ...string) error {
	deadline := time.Now().Add(timeout)
	for _, addr := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-p.done:
				return fmt.Errorf("collector exited before listening on %s: %v", addr, p.waitErr)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("collector not listening on %s after %v: %v", addr, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Stop shuts the collector down (SIGTERM, then SIGKILL after 5s) and waits
// for it to exit; the file exporter flushes on the way out. It is idempotent
// and is called automatically at test cleanup. Stopping a collector that
// already died reports how it died.
func (c *Collector) Stop() error { return c.current().stop() }

func (p *process) stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			if p.waitErr != nil {
				p.stopErr = fmt.Errorf("collector had already exited: %w", p.waitErr)
			}
			return
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.done:
			var ee *exec.ExitError
			if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
				p.stopErr = p.waitErr
			}
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.stopErr = errors.New("collector ignored SIGTERM for 5s and was killed")
		}
	})
	return p.stopErr
}

// Kill ends the collector with SIGKILL, as a crash would: nothing is
// flushed and clients see their connections reset. It waits for the exit.
// Like Stop, it reports a collector that had died on its own.
func (c *Collector) Kill() error {
	p := c.current()
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			if p.waitErr != nil {
				p.stopErr = fmt.Errorf("collector had already exited: %w", p.waitErr)
			}
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p.stopErr
}

// Restart stops the collector if it still runs and starts it again with the
// same configuration on the same ports, so clients reconnect to the
// addresses they were given. Output files are appended to: what was
// received before stays readable. Failures fail the test.
func (c *Collector) Restart(t testing.TB) {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Fatalf("otelcol: stop before restart: %v", err)
	}
	// A killed collector may have left half a line; the next run would
	// append to it and make the file unreadable.
	for _, path := range []string{c.MetricsPath, c.LogsPath, c.TracesPath} {
		if err := trimPartialLine(path); err != nil {
			t.Fatalf("otelcol: %v", err)
		}
	}
	// The ports are fixed now: a client's socket may hold one for a moment.
	var err error
	for i := 0; i < 20; i++ {
		if err = c.launch(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("otelcol: restart: %v", err)
	}
}

// trimPartialLine cuts path after its last newline.
func trimPartialLine(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	keep := bytes.LastIndexByte(data, '\n') + 1
	if keep == len(data) {
		return nil
	}
	return os.Truncate(path, int64(keep))
}

// Exited reports whether the collector process has ended, and how.
func (c *Collector) Exited() (bool, error) {
	p := c.current()
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Output returns everything the collector has written to stdout and stderr
// so far (its own logs, and debug exporter output with WithDebugExporter).
func (c *Collector) Output() string { return c.out.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer = testenv.SyncBuffer

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
