package drops

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/processors"
)

var update = flag.Bool("update", false, "rewrite golden files (not dropwatch.golden: that is the seed's own output)")

// keyed is one kernel key of a sample: its address and decoded entry.
type keyed struct {
	addr uint64
	e    Entry
}

// Addresses as a kernel would have them; unix_stream_recvmsg+0x30d is the
// seed's own example. tun_do_read lies above nf_hook_slow, which orders
// the tie of the third sample the way the seed printed it.
const (
	unixRecv = 0xffffffff8149a5e0
	nfHook   = 0xffffffff81a2b300
	tunRead  = 0xffffffff81c01200
)

func at(fn string, base, off uint64) (uint64, string, string) {
	return base + off, fn, fn + "+0x" + strconv.FormatUint(off, 16)
}

func k(fn string, base, off uint64, reason, dev string, n uint64) keyed {
	addr, f, site := at(fn, base, off)
	return keyed{addr, Entry{Function: f, Site: site, Reason: reason, Type: "ipv4", Transport: "udp", Device: dev, Packets: n}}
}

// seedSamples are the three samples of dropwatch.stp's published output,
// spread over several kernel keys per location (addresses, devices) as the
// kernel would count them.
func seedSamples() [][]keyed {
	return [][]keyed{
		{
			k("unix_stream_recvmsg", unixRecv, 0x30d, "NOT_SPECIFIED", "", 1700),
			k("nf_hook_slow", nfHook, 0xa4, "NETFILTER_DROP", "eth0", 2),
			k("unix_stream_recvmsg", unixRecv, 0x412, "NOT_SPECIFIED", "", 62),
			k("tun_do_read", tunRead, 0x51, "NOT_SPECIFIED", "tun0", 4),
		},
		{
			k("tun_do_read", tunRead, 0x51, "NOT_SPECIFIED", "tun0", 6),
			k("nf_hook_slow", nfHook, 0xa4, "NETFILTER_DROP", "eth0", 15),
			k("nf_hook_slow", nfHook, 0xa4, "NETFILTER_DROP", "eth1", 5),
			k("unix_stream_recvmsg", unixRecv, 0x30d, "NOT_SPECIFIED", "", 467),
		},
		{
			k("nf_hook_slow", nfHook, 0xa4, "NETFILTER_DROP", "eth0", 4),
			k("unix_stream_recvmsg", unixRecv, 0x30d, "NOT_SPECIFIED", "", 446),
			k("tun_do_read", tunRead, 0x51, "NOT_SPECIFIED", "tun0", 4),
		},
	}
}

func batch(f Dropwatch, keys []keyed) *pipelines.Batch {
	b := &pipelines.Batch{Metrics: Metrics}
	bt := newBatcher(b, f)
	for _, kk := range keys {
		bt.add(kk.addr, kk.e)
	}
	bt.done()
	return b
}

// run prints the samples as the console exporter would, processors applied.
func run(t *testing.T, f Dropwatch, samples [][]keyed, procs ...pipelines.MetricProcessor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.Begin(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		b := batch(f, s)
		for _, p := range procs {
			b = p.Process(b)
		}
		if err := b.Console.Write(&buf, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.End(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func golden(t *testing.T, name string, got []byte, updatable bool) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update && updatable {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// TestDropwatchGolden: the seed's published output, byte for byte.
func TestDropwatchGolden(t *testing.T) {
	golden(t, "dropwatch.golden", run(t, Dropwatch{}, seedSamples()), false)
}

func TestDropwatchReasonOffset(t *testing.T) {
	golden(t, "dropwatch-reason-offset.golden", run(t, Dropwatch{Reason: true, Offset: true}, seedSamples()), true)
}

// TestDropwatchProcessors: the console shows what the processors left.
func TestDropwatchProcessors(t *testing.T) {
	filter := processors.NewFilter("filter", &config.FilterProcessor{Include: &config.Match{Devices: []string{"eth0"}}})
	got := run(t, Dropwatch{Reason: true}, seedSamples(), filter)
	golden(t, "dropwatch-filter-eth0.golden", got, true)

	// Dropping the location attribute merges rows, but the console still
	// knows where each drop happened.
	attrs := processors.NewAttributes("attributes", &config.AttributesProcessor{Keep: []string{"sockeye.drop.reason"}})
	if got := run(t, Dropwatch{}, seedSamples(), attrs); !bytes.Equal(got, run(t, Dropwatch{}, seedSamples())) {
		t.Errorf("attributes processor changed the console:\n%s", got)
	}
}

// TestDropwatchRows: batches without sites print from their rows.
func TestDropwatchRows(t *testing.T) {
	b := &pipelines.Batch{Metrics: Metrics}
	for _, e := range []Entry{
		{Function: "tcp_v4_rcv", Reason: "NO_SOCKET", Packets: 3},
		{Function: "__udp4_lib_rcv", Reason: "NO_SOCKET", Packets: 3},
		{Function: "nf_hook_slow", Reason: "NETFILTER_DROP", Packets: 7},
		{Function: "tcp_v4_rcv", Reason: "TCP_CSUM", Packets: 1},
	} {
		b.Rows = append(b.Rows, e.Row())
	}
	var buf bytes.Buffer
	if err := (Dropwatch{}).Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	want := "\n7 packets dropped at nf_hook_slow\n4 packets dropped at tcp_v4_rcv\n3 packets dropped at __udp4_lib_rcv\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
	buf.Reset()
	(Dropwatch{}).Write(&buf, &pipelines.Batch{})
	if buf.String() != "\n" {
		t.Errorf("empty interval: %q, want a blank line as the seed prints", buf.String())
	}
}

func TestEntryRow(t *testing.T) {
	r := Entry{Function: "tcp_v4_rcv", Reason: "NO_SOCKET", Type: "ipv4", Transport: "tcp", Device: "lo", Packets: 2}.Row()
	got := map[string]string{}
	for _, kv := range r.Attrs {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{"sockeye.drop.location": "tcp_v4_rcv", "sockeye.drop.reason": "NO_SOCKET",
		"network.type": "ipv4", "network.transport": "tcp", "network.interface.name": "lo"}
	if len(got) != len(want) || r.Values[ColPackets] != 2 {
		t.Errorf("row %v %v", got, r.Values)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// Unknown protocol and no device: the attributes are left out.
	if r := (Entry{Function: "f", Reason: "r"}).Row(); len(r.Attrs) != 2 {
		t.Errorf("attrs %v", r.Attrs)
	}
	for _, a := range Attributes {
		if !contains(config.SourceAttributes("drops"), a) {
			t.Errorf("attribute %s not declared in config's drops source", a)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestTransport(t *testing.T) {
	cases := []struct {
		l3         uint16
		l4, family uint8
		typ, tr    string
	}{
		{0x0800, 6, 0, "ipv4", "tcp"},
		{0x0800, 17, 0, "ipv4", "udp"},
		{0x0800, 1, 0, "ipv4", "icmp"},
		{0x86DD, 58, 0, "ipv6", "ipv6-icmp"},
		{0x86DD, 0, 0, "ipv6", ""},
		{0x0800, 253, 0, "ipv4", "253"},
		{0, 0, 1, "", "unix"},
		{0, 0, 16, "", "netlink"},
		{0x0806, 0, 0, "", ""}, // ARP
	}
	for _, c := range cases {
		if typ, tr := NetworkType(c.l3), Transport(c.l3, c.l4, c.family); typ != c.typ || tr != c.tr {
			t.Errorf("(%#x, %d, %d) = %q %q, want %q %q", c.l3, c.l4, c.family, typ, tr, c.typ, c.tr)
		}
	}
}
