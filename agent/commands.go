package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

func newLogger(cfg *config.Config, stderr io.Writer) *slog.Logger {
	var lvl slog.Level
	switch cfg.Log.Level {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

func cmdRun(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "config `FILE` (default: the embedded default config)")
	btf := fs.String("btf", "", "external kernel BTF `FILE`, for kernels without /sys/kernel/btf/vmlinux")
	printDefault := fs.Bool("print-default-config", false, "print the embedded default config and exit")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	if *printDefault {
		stdout.Write(config.DefaultYAML)
		return exitOK
	}
	cfg, err := loadConfig(*cfgPath, *btf, env)
	if err != nil {
		fmt.Fprintf(stderr, "sockeye: %v\n", err)
		return exitFailure
	}
	return run(cfg, stdout, stderr)
}

func run(cfg *config.Config, stdout, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("could not raise RLIMIT_MEMLOCK; loading may fail on kernels before 5.11", "error", err)
	}
	log.Info("sockeye starting", "version", Version, "config", cfg.Path)
	a := New(cfg, stdout, log, os.Getenv)
	if err := a.Start(ctx); err != nil {
		log.Error("sockeye cannot start", "error", err)
		return exitFailure
	}
	err := a.Run(ctx, shutdownTimeout)
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
	return run(cfg, stdout, stderr)
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
