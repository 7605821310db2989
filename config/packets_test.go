package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseCaptureFilter(t *testing.T) {
	for _, c := range []struct {
		expr, want string
	}{
		{"", "{TCP:false UDP:false IPv4:false IPv6:false Hosts:[] Ports:[]}"},
		{"tcp port 80", "{TCP:true UDP:false IPv4:false IPv6:false Hosts:[] Ports:[{Port:80 Dir:}]}"},
		{"udp and src port 53 && dst host ::1", "{TCP:false UDP:true IPv4:false IPv6:false Hosts:[{Addr:::1 Dir:dst}] Ports:[{Port:53 Dir:src}]}"},
		{"ip and host 127.0.0.1 and host ::ffff:10.0.0.1", "{TCP:false UDP:false IPv4:true IPv6:false Hosts:[{Addr:127.0.0.1 Dir:} {Addr:10.0.0.1 Dir:}] Ports:[]}"},
		{"ip6", "{TCP:false UDP:false IPv4:false IPv6:true Hosts:[] Ports:[]}"},
	} {
		f, err := ParseCaptureFilter(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		got := fmt.Sprintf("{TCP:%v UDP:%v IPv4:%v IPv6:%v Hosts:%+v Ports:%+v}", f.TCP, f.UDP, f.IPv4, f.IPv6, f.Hosts, f.Ports)
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.expr, got, c.want)
		}
	}
	for expr, msg := range map[string]string{
		"tcp or udp":           `unsupported token "or"`,
		"not port 22":          `unsupported token "not"`,
		"net 10.0.0.0/8":       `unsupported token "net"`,
		"port http":            `port "http" is not a number`,
		"host example.com":     `host "example.com" is not an IPv4 or IPv6 address`,
		"tcp and udp":          `tcp and udp together match nothing`,
		"port 1 and":           `"and" at the end`,
		"src":                  `"src" needs host or port`,
		"port 80 port 81":      `unsupported token "port"`,
		"ip6 and host 1.2.3.4": `not of the family`,
		"port 1 and port 2 and port 3 and port 4 and port 5": `at most 4 ports`,
	} {
		if _, err := ParseCaptureFilter(expr); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want %q", expr, err, msg)
		}
	}
}

func TestPacketsConfig(t *testing.T) {
	cfg, err := Parse([]byte(`sources:
  tcp_receive:
  tcp_receive/full:
    snaplen: 65535
    udp: true
    interface: eth0
    filter: dst port 443
    buffer_size: 16MiB
    hook: tp_btf
exporters:
  pcapng:
    path: /var/lib/sockeye/rx.pcapng
    rotation: {size_mb: 100, interval: 1h, count: 24}
    flush: interval
    flush_interval: 500ms
pipelines:
  packets:
    sources: [tcp_receive, tcp_receive/full]
    exporters: [pcapng]
`), "sockeye.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	def := cfg.Sources[ID{Type: "tcp_receive"}].TCPReceive
	if def.Snaplen != 128 || !def.HeadersOnly || def.UDP || def.BufferSize != 8<<20 || def.Attribution != "socket" || def.Hook != "auto" {
		t.Errorf("defaults: %+v", def)
	}
	full := cfg.Sources[ID{Type: "tcp_receive", Name: "full"}].TCPReceive
	if full.Snaplen != 65535 || full.HeadersOnly || !full.UDP || full.Interface != "eth0" || full.BufferSize != 16<<20 ||
		len(full.Filter.Ports) != 1 || full.Filter.Ports[0].Dir != "dst" || full.Hook != "tp_btf" {
		t.Errorf("full: %+v", full)
	}
	p := cfg.Exporters[ID{Type: "pcapng"}].Pcapng
	if p.Path != "/var/lib/sockeye/rx.pcapng" || p.RotateMB != 100 || p.RotateEvery != time.Hour || p.Files != 24 ||
		p.Flush != "interval" || p.FlushInterval != 500*time.Millisecond {
		t.Errorf("pcapng: %+v", p)
	}
}
