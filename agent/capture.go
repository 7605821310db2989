package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
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
	snaplen := fs.Int("s", 262144, "bytes of each packet to keep from the network header, 0 for 262144 (at most 65000 are kept: a perf record's limit)")
	count := fs.Uint64("c", 0, "exit after `COUNT` packets")
	rotMB := fs.Int("C", 0, "start a new file when the current one exceeds `MB` millions of bytes")
	files := fs.Int("W", 0, "with -C, cycle through `FILES` files; with -G alone, exit after FILES files")
	rotSec := fs.Int("G", 0, "start a new file every `SECONDS` (FILE may hold strftime %Y %m %d %H %M %S)")
	bufKiB := fs.Int("B", config.DefaultCaptureBuffer>>10, "kernel buffer per CPU in `KiB`")
	udp := fs.Bool("udp", false, "also capture UDP datagrams")
	hook := fs.String("hook", "auto", "hook rung: auto, fentry, kprobe, tp_btf")
	transport := fs.String("transport", "perf", "kernel to user transport: perf (perf buffers, bpf_skb_output) or ring (BPF ring buffer; tp_btf only, at most 256 bytes a packet)")
	btf := fs.String("btf", "", "external kernel BTF `FILE`")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	hooksList := []string{config.HookAuto, config.HookFentry, config.HookKprobe, config.HookTpBTF}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sockeye capture: "+format+"\n", a...)
		return exitUsage
	}
	expr := strings.Join(fs.Args(), " ")
	filter, err := config.ParseCaptureFilter(expr)
	if err != nil {
		return bad("%v", err)
	}
	switch {
	case *snaplen < 0 || *snaplen > config.MaxSnaplen:
		return bad("-s %d: want 0 to %d", *snaplen, config.MaxSnaplen)
	case *rotMB < 0 || *rotSec < 0 || *files < 0:
		return bad("-C, -G and -W must not be negative")
	case *files > 0 && *rotMB == 0 && *rotSec == 0:
		return bad("-W needs -C or -G")
	case (*rotMB > 0 || *rotSec > 0) && (*file == "" || *file == "-"):
		return bad("-C and -G need -w FILE")
	case int64(*bufKiB)<<10 < config.MinCaptureBuffer || int64(*bufKiB)<<10 > config.MaxCaptureBuffer:
		return bad("-B %d: want %d to %d KiB", *bufKiB, config.MinCaptureBuffer>>10, config.MaxCaptureBuffer>>10)
	case *transport != "perf" && *transport != "ring":
		return bad("--transport %q: want perf or ring", *transport)
	case !slices.Contains(hooksList, *hook):
		return bad("--hook %q: want one of %s", *hook, strings.Join(hooksList, ", "))
	}
	if *snaplen == 0 {
		*snaplen = config.MaxSnaplen
	}
	src := config.TCPReceiveSource{
		Hook:        *hook,
		Snaplen:     uint32(*snaplen),
		UDP:         *udp,
		Interface:   *iface,
		Filter:      filter,
		BufferSize:  *bufKiB << 10,
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
	kernel, err := hooks.LoadKernel(*btf)
	if err != nil {
		fmt.Fprintf(stderr, "sockeye capture: %v\n", err)
		return exitFailure
	}

	var (
		exp   pipelines.PacketExporter
		pcap  *pcapng.Exporter
		limit <-chan struct{}
	)
	if *file != "" {
		pcap, err = pcapng.New("pcapng", pcapng.Options{
			Path:           *file,
			Stdout:         stdout,
			RotateBytes:    int64(*rotMB) * 1_000_000,
			RotateEvery:    time.Duration(*rotSec) * time.Second,
			Files:          *files,
			StopAfterFiles: *rotMB == 0 && *rotSec > 0,
			Application:    "sockeye " + Version,
			Log:            log,
		})
		if err != nil {
			fmt.Fprintf(stderr, "sockeye capture: %v\n", err)
			return exitFailure
		}
		exp, limit = pcap, pcap.Limit()
	} else {
		exp = console.New("console", stdout)
	}
	s := tcpreceive.New("tcp_receive", src, kernel, log)
	if err := s.Start(ctx); err != nil {
		if pcap != nil {
			pcap.Shutdown(context.Background())
		}
		fmt.Fprintf(stderr, "sockeye capture: %v\n", err)
		return exitFailure
	}
	defer s.Close()
	where := "every interface"
	if *iface != "" {
		where = *iface
	}
	if *file != "" {
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
	p := &pipelines.PacketsPipeline{Name: "packets/capture", Sources: []pipelines.PacketSource{s},
		Exporters: []pipelines.PacketExporter{exp}, Log: log, Limit: *count}
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
