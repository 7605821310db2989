package agent

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sockeye/sockeye/config"
)

// listFlag collects a repeatable flag, also splitting comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// cmdTrace runs the socket_calls source alone: its call trees on the
// console as socket-trace.stp printed them, and its spans over OTLP when
// the OTEL_EXPORTER_OTLP_* variables name an endpoint.
func cmdTrace(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("trace", stderr)
	var pids, comms, uids, syscalls, functions listFlag
	fs.Var(&pids, "pid", "trace the process `PID` (repeatable, or comma-separated)")
	fs.Var(&comms, "comm", "trace threads whose command (or whose process's) is `NAME` (repeatable)")
	fs.Var(&uids, "uid", "trace threads of user `UID` (repeatable)")
	all := fs.Bool("all", false, "trace every thread (mind the rate limit)")
	fs.Var(&syscalls, "syscalls", "only these system calls, e.g. connect,accept4 (default: all socket calls)")
	fs.Var(&functions, "functions", "kernel functions traced as children where fentry or kprobes work: names, globs, @net/socket.c (default)")
	hook := fs.String("hook", "auto", "hook rung: auto, fentry, kprobe, tp_btf, raw_tracepoint")
	rate := fs.Int("rate-limit", config.DefaultSocketCallsRateLimit, "most root calls traced per second (0: no limit)")
	sample := fs.String("sampling-ratio", "1", "share of root calls traced, in (0, 1]")
	btf := fs.String("btf", "", "external kernel BTF `FILE`")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	if len(pids)+len(comms)+len(uids) == 0 && !*all {
		fmt.Fprintln(stderr, "sockeye trace: give --pid, --comm or --uid (or --all): tracing every thread's socket calls would flood the console")
		return exitUsage
	}
	for _, v := range append(append([]string{}, pids...), uids...) {
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			fmt.Fprintf(stderr, "sockeye trace: %q is not a number (--pid and --uid take numbers)\n", v)
			return exitUsage
		}
	}
	var b strings.Builder
	b.WriteString("sources:\n  socket_calls:\n")
	fmt.Fprintf(&b, "    hook: %q\n    rate_limit: %d\n    sampling_ratio: %q\n    all: %t\n", *hook, *rate, *sample, *all)
	writeList := func(key string, vals []string, quote bool) {
		if len(vals) == 0 {
			return
		}
		fmt.Fprintf(&b, "    %s: [", key)
		for i, v := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			if quote {
				v = strconv.Quote(v)
			}
			b.WriteString(v)
		}
		b.WriteString("]\n")
	}
	writeList("pids", pids, false)
	writeList("uids", uids, false)
	writeList("commands", comms, true)
	writeList("syscalls", syscalls, true)
	writeList("functions", functions, true)
	b.WriteString(`exporters:
  console:
  otlp:
    enabled: auto
pipelines:
  traces/socket_calls:
    sources: [socket_calls]
    exporters: [console, otlp]
`)
	cfg, err := config.Parse([]byte(b.String()), "sockeye trace", env)
	if err != nil {
		// Map config keys back to the flags they came from.
		msg := err.Error()
		for key, flag := range map[string]string{
			"sources.socket_calls.hook": "--hook", "sources.socket_calls.rate_limit": "--rate-limit",
			"sources.socket_calls.sampling_ratio": "--sampling-ratio", "sources.socket_calls.pids": "--pid",
			"sources.socket_calls.uids": "--uid", "sources.socket_calls.commands": "--comm",
			"sources.socket_calls.syscalls": "--syscalls", "sources.socket_calls.functions": "--functions",
		} {
			msg = strings.ReplaceAll(msg, key, flag)
		}
		fmt.Fprintf(stderr, "sockeye trace: %s\n", msg)
		return exitUsage
	}
	cfg.BTF = *btf
	return run(cfg, stdout, stderr, nil)
}
