package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/console"
	"github.com/sockeye/sockeye/exporters/pcapng"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/tcpreceive"
)

const captureUsage = `usage: sockeye capture [-i IFACE] [-w FILE|-] [-s SNAPLEN] [-c COUNT] [-C MB] [-W FILES]
                       [-G SECONDS] [-B KiB] [--udp] [--hook RUNG] [--btf FILE] [FILTER]

Every TCP segment (with --udp, every UDP datagram too) this host receives.
Without -w, one row per packet as tcpdumplike.stp printed it; with -w, a
pcapng file (raw IP, one interface block per namespace and interface) for
Wireshark, tshark and tcpdump. Options mean what they mean to tcpdump.

FILTER is a subset of pcap-filter(7), applied in the kernel:
  tcp | udp | ip | ip6 | [src|dst] host ADDR | [src|dst] port N, joined by "and"

Examples:
  sudo sockeye capture port 80
  sudo sockeye capture -i lo -w lo.pcapng -c 1000
  sudo sockeye capture -w - | wireshark -k -i -
  sudo sockeye capture -w ring.pcapng -C 100 -W 10 --udp

Options:
`

// cmdCapture is tcpdump for the tcp_receive source: the same source and
// writer as a packets pipeline, driven from the command line.
func cmdCapture(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("capture", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, captureUsage)
		fs.PrintDefaults()
	}
	iface := fs.String("i", "", "capture on `IFACE` only (an interface of this network namespace); default all, in every namespace")
	file := fs.String("w", "", "write pcapng to `FILE` (- for standard output) instead of printing rows")
	snapFlag := &rangeFlag{n: config.MaxSnaplen, max: config.MaxSnaplen, unit: "bytes"}
	fs.Var(snapFlag, "s", "bytes of each packet to keep from the network header, 0 for 262144 (at most 65000 are kept: a perf record's limit)")
	countFlag := &rangeFlag{max: math.MaxInt64, unit: "packets"}
	fs.Var(countFlag, "c", "exit after `COUNT` packets")
	rotFlag := &rangeFlag{max: 1 << 20, unit: "millions of bytes"}
	fs.Var(rotFlag, "C", "start a new file when the current one exceeds `MB` millions of bytes")
	filesFlag := &rangeFlag{max: 1 << 20, unit: "files"}
	fs.Var(filesFlag, "W", "with -C, cycle through `FILES` files; with -G alone, exit after FILES files")
	secFlag := &rangeFlag{max: math.MaxInt32, unit: "seconds"}
	fs.Var(secFlag, "G", "start a new file every `SECONDS` (FILE may hold strftime %Y %m %d %H %M %S)")
	bufFlag := &rangeFlag{n: config.DefaultCaptureBuffer >> 10, min: config.MinCaptureBuffer >> 10, max: config.MaxCaptureBuffer >> 10, unit: "KiB"}
	fs.Var(bufFlag, "B", "kernel buffer per CPU in `KiB`")
	udp := fs.Bool("udp", false, "also capture UDP datagrams")
	hook := fs.String("hook", "auto", "hook rung: auto, fentry, kprobe, tp_btf")
	transport := fs.String("transport", "auto", "kernel to user transport: auto (on tp_btf the BPF ring buffer for packets it holds whole, perf buffers for the rest), perf (perf buffers, bpf_skb_output) or ring (BPF ring buffer; tp_btf only, at most 256 bytes a packet)")
	btf := fs.String("btf", "", "external kernel BTF `FILE`")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	snaplen, count, rotMB, files, rotSec := int(snapFlag.n), uint64(countFlag.n), int(rotFlag.n), int(filesFlag.n), int(secFlag.n)
	hooksList := []string{config.HookAuto, config.HookFentry, config.HookKprobe, config.HookTpBTF}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sockeye capture: "+format+"\n", a...)
		return exitUsage
	}
	// flag stops at the first argument that is not an option: one after
	// the filter would otherwise be reported as a filter token.
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return bad("option %s after the filter: options come before the filter expression", a)
		}
	}
	expr := strings.Join(fs.Args(), " ")
	filter, err := config.ParseCaptureFilter(expr)
	if err != nil {
		return bad("%v", err)
	}
	rotating := func() string {
		if rotMB > 0 {
			return "-C"
		}
		return "-G"
	}
	switch {
	case files > 0 && rotMB == 0 && rotSec == 0:
		return bad("-W %d needs -C or -G: it bounds the number of rotated files", files)
	case (rotMB > 0 || rotSec > 0) && *file == "":
		return bad("%s needs -w FILE: only files are rotated", rotating())
	case (rotMB > 0 || rotSec > 0) && *file == "-":
		return bad("%s cannot rotate standard output (-w -): give a file name", rotating())
	case *transport != "auto" && *transport != "perf" && *transport != "ring":
		return bad("--transport %q: want auto, perf or ring", *transport)
	case !slices.Contains(hooksList, *hook):
		return bad("--hook %q: want one of %s", *hook, strings.Join(hooksList, ", "))
	case *transport == "ring" && *hook != config.HookAuto && *hook != config.HookTpBTF:
		return bad("--transport ring works with --hook tp_btf (or auto) only, not %s", *hook)
	case *udp && filter.TCP:
		return bad("--udp conflicts with the filter's \"tcp\", which keeps TCP only")
	}
	if *iface != "" {
		// Checked now, before the kernel is asked for anything.
		if _, err := net.InterfaceByName(*iface); err != nil {
			return bad("-i %q: no such interface in this network namespace (see `ip link`)", *iface)
		}
	}
	if snaplen == 0 {
		snaplen = config.MaxSnaplen
	}
	src := config.TCPReceiveSource{
		Hook:        *hook,
		Snaplen:     uint32(snaplen),
		UDP:         *udp,
		Interface:   *iface,
		Filter:      filter,
		BufferSize:  int(bufFlag.n) << 10,
		Attribution: "socket",
		Transport:   *transport,
	}
	if *file == "" {
		// The rows need no packet bytes: none are copied.
		src.Snaplen = 0
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("could not raise RLIMIT_MEMLOCK; loading may fail on kernels before 5.11", "error", err)
	}
	// The output comes first: a path that cannot be written stops the
	// capture before anything is loaded into the kernel.
	var (
		exp   pipelines.PacketExporter
		pcap  *pcapng.Exporter
		limit <-chan struct{}
	)
	if *file != "" {
		pcap, err = pcapng.New("pcapng", pcapng.Options{
			Path:           *file,
			Stdout:         stdout,
			RotateBytes:    int64(rotMB) * 1_000_000,
			RotateEvery:    time.Duration(rotSec) * time.Second,
			Files:          files,
			StopAfterFiles: rotMB == 0 && rotSec > 0,
			Application:    "sockeye " + Version,
			Log:            log,
		})
		if err != nil {
			fmt.Fprintf(stderr, "sockeye capture: -w: %v\n", err)
			return exitFailure
		}
		exp, limit = pcap, pcap.Limit()
	} else {
		exp = console.New("console", stdout)
	}
	kernel, err := hooks.LoadKernel(*btf)
	if err == nil {
		s := tcpreceive.New("tcp_receive", src, kernel, log)
		if err = s.Start(ctx); err == nil {
			defer s.Close()
			return runCapture(ctx, s, exp, pcap, limit, *iface, *file != "", count, stderr, log)
		}
	}
	if pcap != nil {
		pcap.Shutdown(context.Background())
	}
	fmt.Fprintf(stderr, "sockeye capture: %v\n", err)
	return exitFailure
}

// runCapture runs a started source into exp until ctx is done or the
// limits are reached, and prints tcpdump's summary.
func runCapture(ctx context.Context, s *tcpreceive.Source, exp pipelines.PacketExporter, pcap *pcapng.Exporter,
	limit <-chan struct{}, iface string, toFile bool, count uint64, stderr io.Writer, log *slog.Logger) int {
	where := "every interface"
	if iface != "" {
		where = iface
	}
	if toFile {
		fmt.Fprintf(stderr, "sockeye capture: listening on %s (hook %s), link-type LINUX_SLL (Linux cooked v1), snapshot length %d bytes from the network header\n",
			where, s.Rung(), s.Snaplen())
	} else {
		fmt.Fprintf(stderr, "sockeye capture: listening on %s (hook %s)\n", where, s.Rung())
	}

	if limit != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-limit:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	// Losses are logged every second, as the source logs the kernel's.
	p := &pipelines.PacketsPipeline{Name: "packets/capture", Sources: []pipelines.PacketSource{s},
		Exporters: []pipelines.PacketExporter{exp}, Log: log, Limit: count, SelfInterval: time.Second}
	runErr := p.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	shutErr := exp.Shutdown(sctx)

	c := s.Counts()
	captured := c.Delivered
	var notWritten uint64
	if pcap != nil {
		pc := pcap.Counts()
		captured, notWritten = pc.Written, pc.Failed
	}
	fmt.Fprintf(stderr, "%d packets captured\n", captured)
	fmt.Fprintf(stderr, "%d packets received by filter\n", c.Delivered+c.KernelDropped+c.Undecodable)
	fmt.Fprintf(stderr, "%d packets dropped by kernel\n", c.KernelDropped)
	if c.Undecodable+notWritten > 0 {
		fmt.Fprintf(stderr, "%d packets lost in sockeye (%d undecodable, %d not written)\n",
			c.Undecodable+notWritten, c.Undecodable, notWritten)
	}
	for _, err := range []error{runErr, shutErr} {
		if err != nil && !errors.Is(err, pipelines.ErrLimit) {
			fmt.Fprintf(stderr, "sockeye capture: %v\n", err)
			return exitFailure
		}
	}
	return exitOK
}

// rangeFlag is a whole number within [min, max]; its errors say which
// numbers the flag takes (flag adds the flag's name and the value).
type rangeFlag struct {
	n, min, max int64
	unit        string
}

func (f *rangeFlag) String() string { return strconv.FormatInt(f.n, 10) }
func (f *rangeFlag) Set(s string) error {
	want := fmt.Sprintf("want %s from %d to %d", f.unit, f.min, f.max)
	if f.max == math.MaxInt64 {
		want = fmt.Sprintf("want %s, %d or more", f.unit, f.min)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		return fmt.Errorf("not a whole number (%s)", want)
	case n < 0 && f.min == 0:
		return fmt.Errorf("must not be negative (%s)", want)
	case n < f.min || n > f.max:
		return fmt.Errorf("out of range (%s)", want)
	}
	f.n = n
	return nil
}
