// Package agent is the sockeye binary: its command line and the lifecycle
// of the pipelines it runs.
package agent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const usage = `sockeye turns eBPF events from the Linux network stack into OpenTelemetry signals.

Usage:
  sockeye [run] [--config FILE] [--btf FILE]   run the configured pipelines until SIGINT/SIGTERM
  sockeye top [--interval D]                   live per-process traffic (nettop) on the console
  sockeye check [--config FILE] [--btf FILE]   what this kernel allows, and which hook each pipeline would use
  sockeye validate --config FILE               check a config file and exit
  sockeye capture [-i IFACE] [-w FILE|-] [-s SNAPLEN] [-c COUNT] [-C MB] [-W FILES] [-G SECONDS]
                  [-B KiB] [--udp] [--hook RUNG] [FILTER]
                                               received TCP segments as tcpdumplike rows, or pcapng (-w);
                                               options as in tcpdump; FILTER: tcp, udp, ip, ip6,
                                               [src|dst] host ADDR, [src|dst] port N, joined by "and"
  sockeye trace [--pid PID] [--comm NAME] [--uid UID] [--hook RUNG]
                                               socket calls of the selected threads as call trees
                                               (socket-trace) on the console, and as OTLP traces when
                                               OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set
  sockeye --version | --help

Without --config, sockeye runs its embedded default: the per-process traffic
table every 5 s on the console, and OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) is set.

Examples:
  sudo sockeye                                   # nettop on the console
  sudo OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 sockeye
  sudo sockeye run --config /etc/sockeye/sockeye.yaml
  sudo sockeye top --interval 1s
  sudo sockeye trace --comm curl                 # curl's socket calls as call trees
  sudo sockeye check
  sockeye validate --config sockeye.yaml
  sockeye run --print-default-config > sockeye.yaml

Environment: the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_METRIC_EXPORT_INTERVAL, ...) apply to every
otlp exporter for what the config file does not set.
`

// exitUsage is the exit status for a bad command line, as flag uses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Main runs the command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	for _, a := range args {
		switch a {
		case "--help", "-help", "-h":
			fmt.Fprint(stdout, usage)
			return exitOK
		case "--version", "-version":
			fmt.Fprintln(stdout, versionString())
			return exitOK
		}
	}
	env := os.Getenv
	switch cmd {
	case "run":
		return cmdRun(args, env, stdout, stderr)
	case "top":
		return cmdTop(args, env, stdout, stderr)
	case "check":
		return cmdCheck(args, env, stdout, stderr)
	case "validate":
		return cmdValidate(args, env, stdout, stderr)
	case "capture":
		return cmdCapture(args, stdout, stderr)
	case "trace":
		return cmdTrace(args, env, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "sockeye: unknown command %q (want run, top, check, validate, capture, trace, version)\n", cmd)
		return exitUsage
	}
}

// newFlags makes a flag set whose errors name the command and go to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sockeye "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage of sockeye %s:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and rejects stray arguments; the error is already
// printed by flag when it returns one of its own.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
		fmt.Fprintln(stderr, err)
		return err
	}
	return nil
}

// durationFlag rejects zero and negative durations with the flag's name.
type durationFlag struct {
	d    time.Duration
	name string
}

func (f *durationFlag) String() string { return f.d.String() }
func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 1s, 500ms)", s)
	}
	if d < 100*time.Millisecond {
		return errors.New("must be at least 100ms")
	}
	f.d = d
	return nil
}
