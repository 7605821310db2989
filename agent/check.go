package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
)

// cmdCheck reports what the running kernel allows and, for each pipeline of
// the config, the rung it would use: each source is really loaded, attached
// and released, since only that proves it works.
func cmdCheck(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	cfgPath := fs.String("config", "", "config `FILE` (default: the embedded default config)")
	btf := fs.String("btf", "", "external kernel BTF `FILE`")
	if parseFlags(fs, args, stderr) != nil {
		return exitUsage
	}
	cfg, err := loadConfig(*cfgPath, *btf, env)
	if err != nil {
		fmt.Fprintf(stderr, "sockeye: %v\n", err)
		return exitFailure
	}
	_ = rlimit.RemoveMemlock()
	raiseMemlock()
	// The rung-by-rung story goes to the log only at debug level; the report says it.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.Log.Level == "debug" {
		log, _ = newLogger(cfg, stderr)
	}
	if !report(cfg, stdout, log) {
		return exitFailure
	}
	return exitOK
}

func report(cfg *config.Config, w io.Writer, log *slog.Logger) bool {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(w, "sockeye %s check on Linux %s\n\n", Version, unix.ByteSliceToString(uts.Release[:]))

	kernel, kerr := hooks.LoadKernel(cfg.BTF)
	switch {
	case kerr != nil:
		fmt.Fprintf(w, "BTF: missing: %v\n", kerr)
	case kernel.Source == hooks.KernelBTFPath:
		fmt.Fprintf(w, "BTF: %s (from the kernel)\n", kernel.Source)
	default:
		fmt.Fprintf(w, "BTF: %s (external file; kernel has its own: %v)\n", kernel.Source, kernel.Native)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(w, "note: not running as root; results reflect this process's capabilities")
	}
	if set, err := effectiveCaps(); err == nil {
		fmt.Fprintf(w, "Capabilities: %s\n", capsReport(set))
	}

	fmt.Fprintln(w, "\nHook kinds:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range hooks.ProbeKinds(kernel) {
		if k.OK {
			fmt.Fprintf(tw, "  %s\tyes\t\n", k.Name)
		} else {
			fmt.Fprintf(tw, "  %s\tno\t%s\n", k.Name, oneLine(k.Err))
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nPipelines (%s):\n", cfg.Path)
	ok := true
	ctx := context.Background()
	a := New(cfg, io.Discard, log, os.Getenv)
	kinds := signalKinds()
	for _, pl := range cfg.Pipelines {
		for _, id := range pl.Sources {
			if kerr != nil {
				fmt.Fprintf(w, "  %s  source %s: cannot run: %v\n", pl.ID, id, kerr)
				ok = false
				continue
			}
			kind, known := kinds[pl.Signal]
			if !known {
				fmt.Fprintf(w, "  %s  source %s: cannot run: %s pipelines are not supported yet\n", pl.ID, id, pl.Signal)
				ok = false
				continue
			}
			if err := a.checkCapabilities(pl); err != nil {
				fmt.Fprintf(w, "  %s  source %s: cannot run: %s\n", pl.ID, id, err)
				ok = false
				continue
			}
			st, err := kind.probe(a, ctx, cfg.Sources[id], kernel)
			if err != nil {
				fmt.Fprintf(w, "  %s  source %s: cannot run: %s\n", pl.ID, id, oneLine(err))
				ok = false
				continue
			}
			fmt.Fprintf(w, "  %s  source %s: rung %s\n", pl.ID, id, st.Rung)
			for _, note := range st.Notes {
				fmt.Fprintf(w, "      note: %s\n", note)
			}
		}
	}
	if ok {
		fmt.Fprintln(w, "\nAll pipelines can run.")
	} else {
		fmt.Fprintln(w, "\nSome pipelines cannot run on this kernel.")
	}
	return ok
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
