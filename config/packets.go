package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TCPReceiveSource is the tcpdumplike job: every TCP segment (and, with
// UDP, every UDP datagram) the host receives, as a packet.
type TCPReceiveSource struct {
	// Hook pins the hook rung (HookAuto by default): fentry, kprobe or tp_btf.
	Hook string
	// Snaplen is how many bytes of each packet are kept, from the network header.
	Snaplen uint32
	// HeadersOnly keeps at most the IP and TCP/UDP headers ("snaplen: headers").
	HeadersOnly bool
	// UDP adds UDP datagrams.
	UDP bool
	// Interface restricts the capture to one interface of the agent's network namespace.
	Interface string
	// Filter is the parsed "filter" expression, applied in the kernel.
	Filter CaptureFilter
	// BufferSize is the kernel buffer per CPU, in bytes.
	BufferSize int
	// Attribution is "socket" (the local socket's owner where known) or "none".
	Attribution string
	// Transport is "auto" (default, also ""): on the tp_btf rung the BPF
	// ring buffer for every packet it carries whole and perf buffers
	// (bpf_skb_output) for the rest, perf buffers alone on the other
	// rungs; "perf"; or "ring" (tp_btf only, 256 linear bytes at most). Only
	// sockeye capture --transport sets it: it exists to measure the choice.
	Transport string
}

// Packet capture limits and defaults. The default snap length keeps headers
// only: packet payloads leave the host only when a config asks for them.
const (
	DefaultSnaplen        = 128
	MaxSnaplen            = 262144
	DefaultCaptureBuffer  = 8 << 20
	MinCaptureBuffer      = 64 << 10
	MaxCaptureBuffer      = 1 << 30
	DefaultFlushInterval  = time.Second
	MinRotationInterval   = time.Second
	DefaultPcapngFlush    = "auto"
	maxCaptureFilterItems = 4
)

// PcapngExporter writes packets as pcapng.
type PcapngExporter struct {
	// Path is the file to write, or "-" for standard output.
	Path string
	// RotateMB starts a new file when the current one exceeds this many
	// millions of bytes (tcpdump -C); 0 never.
	RotateMB int
	// RotateEvery starts a new file at this interval (tcpdump -G); 0 never.
	RotateEvery time.Duration
	// Files, when not 0, is how many files are kept: names cycle (tcpdump -W).
	Files int
	// Flush is "auto" (every packet to a pipe or terminal, every
	// FlushInterval to a file), "packet" or "interval".
	Flush         string
	FlushInterval time.Duration
}

func tcpReceiveHooks() []string {
	return []string{HookAuto, HookFentry, HookKprobe, HookTpBTF}
}

func (d *decoder) tcpReceive(f fields) *TCPReceiveSource {
	s := &TCPReceiveSource{
		Hook:        HookAuto,
		Snaplen:     DefaultSnaplen,
		HeadersOnly: true,
		BufferSize:  DefaultCaptureBuffer,
		Attribution: "socket",
	}
	if v, ok := d.str(f.get("hook"), join(f.path, "hook")); ok {
		if hooks := tcpReceiveHooks(); slices.Contains(hooks, v) {
			s.Hook = v
		} else {
			d.errorf(f.get("hook").Line, join(f.path, "hook"),
				"invalid hook %q for a tcp_receive source (want %s)", v, strings.Join(hooks, ", "))
		}
	}
	if v, ok := d.str(f.get("snaplen"), join(f.path, "snaplen")); ok {
		if v == "headers" {
			s.Snaplen, s.HeadersOnly = DefaultSnaplen, true
		} else if n, ok := d.integer(f.get("snaplen"), join(f.path, "snaplen"), 1, MaxSnaplen); ok {
			s.Snaplen, s.HeadersOnly = uint32(n), false
		}
	}
	if v, ok := d.boolean(f.get("udp"), join(f.path, "udp")); ok {
		s.UDP = v
	}
	if v, ok := d.str(f.get("interface"), join(f.path, "interface")); ok {
		if len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			d.errorf(f.get("interface").Line, join(f.path, "interface"), "invalid interface name %q", v)
		} else {
			s.Interface = v
		}
	}
	if v, ok := d.str(f.get("filter"), join(f.path, "filter")); ok {
		cf, err := ParseCaptureFilter(v)
		if err != nil {
			d.errorf(f.get("filter").Line, join(f.path, "filter"), "%v", err)
		} else {
			s.Filter = cf
		}
	}
	if v, ok := d.str(f.get("buffer_size"), join(f.path, "buffer_size")); ok {
		n, err := ParseSize(v)
		switch {
		case err != nil:
			d.errorf(f.get("buffer_size").Line, join(f.path, "buffer_size"), "%v", err)
		case n < MinCaptureBuffer || n > MaxCaptureBuffer:
			d.errorf(f.get("buffer_size").Line, join(f.path, "buffer_size"), "%s is out of range 64KiB-1GiB", v)
		default:
			s.BufferSize = int(n)
		}
	}
	if v, ok := d.enum(f.get("attribution"), join(f.path, "attribution"), "socket", "none"); ok {
		s.Attribution = v
	}
	return s
}

func (d *decoder) pcapng(f fields) *PcapngExporter {
	e := &PcapngExporter{Flush: DefaultPcapngFlush, FlushInterval: DefaultFlushInterval}
	if v, ok := d.str(f.get("path"), join(f.path, "path")); ok {
		e.Path = v
	} else if !f.written("path") {
		d.errorf(f.line, join(f.path, "path"), "missing: a pcapng exporter needs a path (a file, or - for standard output)")
	}
	if n := f.get("rotation"); n != nil {
		path := join(f.path, "rotation")
		r := d.fields(n, path, f.keyLine("rotation"), "size_mb", "interval", "count")
		if v, ok := d.integer(r.get("size_mb"), join(path, "size_mb"), 1, 1<<20); ok {
			e.RotateMB = int(v)
		}
		if v, ok := d.duration(r.get("interval"), join(path, "interval"), MinRotationInterval); ok {
			e.RotateEvery = v
		}
		if v, ok := d.integer(r.get("count"), join(path, "count"), 1, 1<<20); ok {
			e.Files = int(v)
			if e.RotateMB == 0 && e.RotateEvery == 0 {
				d.errorf(r.keyLine("count"), join(path, "count"), "count needs size_mb or interval")
			}
		}
		if e.Path == "-" && (e.RotateMB > 0 || e.RotateEvery > 0) {
			d.errorf(f.keyLine("rotation"), path, "standard output (path: -) cannot be rotated")
		}
	}
	if v, ok := d.enum(f.get("flush"), join(f.path, "flush"), "auto", "packet", "interval"); ok {
		e.Flush = v
	}
	if v, ok := d.duration(f.get("flush_interval"), join(f.path, "flush_interval"), 10*time.Millisecond); ok {
		e.FlushInterval = v
	}
	return e
}

// ParseSize reads a byte count: a plain number, or one with a KiB, MiB or
// GiB suffix.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.m
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a number with KiB, MiB or GiB)", s)
	}
	return n * mult, nil
}

// CaptureFilter is the subset of pcap-filter syntax the kernel programs
// apply: a protocol, an address family, hosts and ports, joined by "and".
type CaptureFilter struct {
	// Expr is the expression as written.
	Expr string
	// TCP and UDP are set when the expression names the protocol.
	TCP, UDP bool
	// IPv4, IPv6 are set by "ip" and "ip6".
	IPv4, IPv6 bool
	Hosts      []FilterHost
	Ports      []FilterPort
}

// FilterHost matches an address at either end, or only as source or destination.
type FilterHost struct {
	Addr netip.Addr
	Dir  string // "", "src" or "dst"
}

type FilterPort struct {
	Port uint16
	Dir  string
}

// filterHelp lists the supported syntax for error messages.
const filterHelp = `supported: tcp, udp, ip, ip6, [src|dst] host ADDR, [src|dst] port N, joined by "and"`

// ParseCaptureFilter parses the supported subset of pcap-filter(7):
//
//	tcp | udp | ip | ip6 | [src|dst] host ADDR | [src|dst] port N
//
// joined by "and" (or "&&"); a protocol may qualify a port directly, as in
// "tcp port 80". Anything else is an error naming the token.
func ParseCaptureFilter(expr string) (CaptureFilter, error) {
	f := CaptureFilter{Expr: strings.TrimSpace(expr)}
	toks := strings.Fields(expr)
	i := 0
	next := func() (string, bool) {
		if i >= len(toks) {
			return "", false
		}
		i++
		return toks[i-1], true
	}
	unsupported := func(tok string) error {
		return fmt.Errorf("filter: unsupported token %q (%s)", tok, filterHelp)
	}
	lastProto := false // the previous primitive was a bare tcp or udp
	for i < len(toks) {
		if i > 0 {
			switch tok := toks[i]; {
			case tok == "and" || tok == "&&":
				i++
				if i >= len(toks) {
					return f, fmt.Errorf("filter: %q at the end needs a primitive after it", tok)
				}
			case lastProto && (tok == "port" || tok == "src" || tok == "dst"):
				// "tcp port 80": the protocol qualifies the primitive after it.
			default:
				return f, unsupported(tok)
			}
		}
		lastProto = toks[i] == "tcp" || toks[i] == "udp"
		tok, _ := next()
		dir := ""
		if tok == "src" || tok == "dst" {
			dir = tok
			var ok bool
			if tok, ok = next(); !ok {
				return f, fmt.Errorf("filter: %q needs host or port after it", dir)
			}
			if tok != "host" && tok != "port" {
				return f, unsupported(tok)
			}
		}
		switch tok {
		case "tcp":
			f.TCP = true
		case "udp":
			f.UDP = true
		case "ip":
			f.IPv4 = true
		case "ip6":
			f.IPv6 = true
		case "host":
			v, ok := next()
			if !ok {
				return f, fmt.Errorf("filter: host needs an address")
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return f, fmt.Errorf("filter: host %q is not an IPv4 or IPv6 address (names are not resolved)", v)
			}
			f.Hosts = append(f.Hosts, FilterHost{Addr: a.Unmap(), Dir: dir})
		case "port":
			v, ok := next()
			if !ok {
				return f, fmt.Errorf("filter: port needs a number")
			}
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return f, fmt.Errorf("filter: port %q is not a number from 0 to 65535 (names are not resolved)", v)
			}
			f.Ports = append(f.Ports, FilterPort{Port: uint16(n), Dir: dir})
		default:
			return f, unsupported(tok)
		}
	}
	switch {
	case f.TCP && f.UDP:
		return f, fmt.Errorf("filter: tcp and udp together match nothing")
	case f.IPv4 && f.IPv6:
		return f, fmt.Errorf("filter: ip and ip6 together match nothing")
	case len(f.Hosts) > maxCaptureFilterItems:
		return f, fmt.Errorf("filter: at most %d hosts", maxCaptureFilterItems)
	case len(f.Ports) > maxCaptureFilterItems:
		return f, fmt.Errorf("filter: at most %d ports", maxCaptureFilterItems)
	}
	for _, h := range f.Hosts {
		if f.IPv4 && !h.Addr.Is4() || f.IPv6 && h.Addr.Is4() {
			return f, fmt.Errorf("filter: host %s is not of the family the filter asks for", h.Addr)
		}
	}
	return f, nil
}
