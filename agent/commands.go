package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/sockeye/sockeye/config"
)

// shutdownTimeout bounds the final export, so a hung collector cannot keep
// the agent from exiting.
const shutdownTimeout = 10 * time.Second

// detachTimeout bounds detaching the kernel programs at shutdown, after the
// exports (slow only under emulation, or with very many links).
const detachTimeout = 2 * time.Minute

// loadConfig reads --config or the embedded default and applies --btf.
func loadConfig(path, btf string, env func(string) string) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if path == "" {
		cfg, err = config.Default(env)
	} else {
		cfg, err = config.Load(path, env)
	}
	if err != nil {
		return nil, err
	}
	if btf != "" {
		cfg.BTF = btf
	}
	return cfg, nil
}

func logLevel(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func newLogger(cfg *config.Config, stderr io.Writer) (*slog.Logger, *slog.LevelVar) {
	lvl := new(slog.LevelVar)
	lvl.Set(logLevel(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts)), lvl
	}
	return slog.New(slog.NewTextHandler(stderr, opts)), lvl
}

func cmdRun(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "config `FILE` (default: the embedded default config); SIGHUP reloads it")
	btf := fs.String("btf", "", "external kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	printDefault := fs.Bool("print-default-config", false, "print the embedded default config and exit")
	dropCaps := fs.Bool("drop-capabilities", false, "drop every capability once all pipelines are attached (as drop_capabilities: true)")
	health := fs.String("health-endpoint", "", "serve /healthz on `HOST:PORT` (as health.endpoint)")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	if *printDefault {
		stdout.Write(config.DefaultYAML)
		return exitOK
	}
	if *health != "" {
		if _, _, err := net.SplitHostPort(*health); err != nil {
			fmt.Fprintf(stderr, "sockeye run: --health-endpoint: want host:port (e.g. localhost:13133), got %q\n", *health)
			return exitUsage
		}
	}
	load := func() (*config.Config, error) {
		cfg, err := loadConfig(*cfgPath, *btf, env)
		if err != nil {
			return nil, err
		}
		if *dropCaps {
			cfg.DropCapabilities = true
		}
		if *health != "" {
			cfg.Health.Endpoint = *health
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "sockeye: %v\n", err)
		return exitFailure
	}
	if *cfgPath == "" {
		load = nil // the embedded default does not change
	}
	return run(cfg, stdout, stderr, load)
}

// run starts the pipelines of cfg and runs them until SIGINT or SIGTERM.
// SIGHUP calls reload (nil: nothing to reload) and applies what it
// returns; a config that does not load is rejected and the running one
// goes on.
func run(cfg *config.Config, stdout, stderr io.Writer, reload func() (*config.Config, error)) int {
	log, level := newLogger(cfg, stderr)
	routeOTelErrors(log, 30*time.Second)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from the start: one that comes while the pipelines
	// start (the health endpoint already says ok) waits for the reload
	// loop instead of killing the agent, its default action.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("could not raise RLIMIT_MEMLOCK; loading may fail on kernels before 5.11", "error", err)
	}
	raiseMemlock()
	log.Info("sockeye starting", "version", Version, "config", cfg.Path)
	a := New(cfg, stdout, log, os.Getenv).WithLevel(level)
	var healthSrv *healthServer
	if cfg.Health.Endpoint != "" {
		// Listen before attaching: a taken port fails fast with nothing attached.
		var err error
		if healthSrv, err = startHealth(cfg.Health.Endpoint, a, log); err != nil {
			log.Error("sockeye cannot start", "error", err)
			return exitFailure
		}
		defer healthSrv.Close()
	}
	if err := a.Start(ctx); err != nil {
		log.Error("sockeye cannot start", "error", err)
		return exitFailure
	}
	if cfg.DropCapabilities {
		if err := a.dropCapabilities(); err != nil {
			log.Error("drop_capabilities", "error", err)
			a.stopAll(shutdownTimeout)
			return exitFailure
		}
	}

	reloads := make(chan Reload)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if reload == nil {
				log.Warn("SIGHUP: no config file to reload (running the embedded or flag-built config)")
				continue
			}
			next, err := reload()
			if err != nil {
				log.Error("config reload rejected; the running config goes on", "error", err)
				continue
			}
			req := Reload{Config: next, Result: make(chan error, 1)}
			select {
			case reloads <- req:
			case <-ctx.Done():
				return
			}
			if err := <-req.Result; err != nil {
				log.Error("config reload rejected; the running config goes on", "error", err)
			}
		}
	}()

	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, shutdownTimeout, reloads) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Every stage bounds its own final flush; this bounds the sum, so a
		// stuck exporter cannot keep the agent (and its programs) alive.
		// Exiting closes every BPF fd: nothing stays attached. Detaching
		// the programs after the exports gets a bound of its own: exiting
		// would wait for the kernel just as long (a grace period per fentry
		// or kprobe link; seconds for socket_calls' hundreds of links).
		flush := time.NewTimer(shutdownTimeout + 5*time.Second)
		defer flush.Stop()
		detaching := a.Detaching()
		var detach <-chan time.Time
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-detaching:
				detaching = nil
				flush.Stop()
				detach = time.After(detachTimeout)
			case <-flush.C:
				log.Error("shutdown took too long; exiting without waiting further", "waited", shutdownTimeout+5*time.Second)
				return exitFailure
			case <-detach:
				log.Error("detaching the kernel programs took too long; exiting", "waited", detachTimeout)
				return exitFailure
			}
		}
	}
	if err != nil {
		log.Error("shutdown", "error", err)
		return exitFailure
	}
	log.Info("sockeye stopped")
	return exitOK
}

func cmdTop(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("top", stderr)
	interval := &durationFlag{d: 5 * time.Second, name: "interval"}
	fs.Var(interval, "interval", "sample `interval` (as nettop's timer)")
	attribution := fs.String("attribution", "socket", "`socket` (owner of the packet's socket) or current (task running when the packet passes)")
	hook := fs.String("hook", "auto", "hook rung: auto, fentry, kprobe, tp_btf, raw_tracepoint")
	btf := fs.String("btf", "", "external kernel BTF `FILE`")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	yaml := fmt.Sprintf(`sources:
  traffic:
    attribution: %q
    hook: %q
exporters:
  console:
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [console]
    interval: %s
`, *attribution, *hook, interval.d)
	cfg, err := config.Parse([]byte(yaml), "sockeye top", env)
	if err != nil {
		// Map config keys back to the flags they came from.
		msg := err.Error()
		msg = strings.ReplaceAll(msg, "sources.traffic.attribution", "--attribution")
		msg = strings.ReplaceAll(msg, "sources.traffic.hook", "--hook")
		fmt.Fprintf(stderr, "sockeye top: %s\n", msg)
		return exitUsage
	}
	cfg.BTF = *btf
	return run(cfg, stdout, stderr, nil)
}

func cmdValidate(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", "", "config `FILE` to check (required)")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "sockeye validate: --config FILE is required")
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath, env)
	if err != nil {
		fmt.Fprintf(stderr, "sockeye: %v\n", err)
		return exitFailure
	}
	var names []string
	for _, p := range cfg.Pipelines {
		names = append(names, p.ID.String())
	}
	fmt.Fprintf(stdout, "%s: valid (%d pipelines: %s)\n", cfg.Path, len(cfg.Pipelines), strings.Join(names, ", "))
	return exitOK
}
