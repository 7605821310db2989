package accepts

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockeye/sockeye/pipelines"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// seedRows are the rows of the sample output of tcp_connections.stp in the
// seed, whose page lost the leading spaces of each line. (Its header line
// has two spaces fewer before CMD than its own printf("%6s %16s ...")
// makes; the header here is what the printf makes.)
const seedRows = `0             sshd   3165     22      10.64.0.227
0             sshd   3165     22      10.64.0.227
`

func logOf(c Conn) *pipelines.LogRecord {
	return c.Record("accepts", c.Time)
}

func sampleConns() []Conn {
	at := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	sshd := Conn{Time: at, PID: 3165, TID: 3165, UID: 0, Command: "sshd",
		Local:  netip.MustParseAddrPort("10.64.0.1:22"),
		Remote: netip.MustParseAddrPort("10.64.0.227:51234")}
	sshd2 := sshd
	sshd2.Remote = netip.MustParseAddrPort("10.64.0.227:51236")
	return []Conn{
		sshd, sshd2,
		{Time: at, PID: 1234, TID: 1240, UID: 33, Command: "nginx",
			Local:  netip.MustParseAddrPort("[2001:db8::1]:443"),
			Remote: netip.MustParseAddrPort("[2001:db8:0:1::9]:40000")},
		{Connect: true, Time: at, PID: 777, TID: 777, UID: 1000, Command: "curl",
			Local:  netip.MustParseAddrPort("198.18.0.2:51000"),
			Remote: netip.MustParseAddrPort("198.18.0.1:80")},
	}
}

// TestConsoleGolden prints the seed's rows (and an IPv6 and an outbound
// one) and compares with testdata/tcp_connections.golden.
func TestConsoleGolden(t *testing.T) {
	var b bytes.Buffer
	f := TCPConnections{}
	if err := f.Begin(&b); err != nil {
		t.Fatal(err)
	}
	for _, c := range sampleConns() {
		if err := f.WriteLog(&b, logOf(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.End(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "tcp_connections.golden")
	if *update {
		os.WriteFile(golden, b.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// The seed's own lines, less the leading spaces its page dropped.
	lines := strings.SplitAfter(b.String(), "\n")
	var trimmed strings.Builder
	for _, l := range lines[1:3] {
		trimmed.WriteString(strings.TrimLeft(l, " "))
	}
	if trimmed.String() != seedRows {
		t.Errorf("seed rows differ:\n%s\nwant:\n%s", trimmed.String(), seedRows)
	}
	if lines[0] != "   UID              CMD    PID   PORT        IP_SOURCE\n" {
		t.Errorf("header %q", lines[0])
	}
}

func TestRecord(t *testing.T) {
	cs := sampleConns()
	r := logOf(cs[2])
	if r.EventName != EventAccept || r.Severity != pipelines.SeverityInfo || r.Severity.String() != "INFO" {
		t.Errorf("record %+v", r)
	}
	if r.Body != "nginx[1234] accepted [2001:db8:0:1::9]:40000 on :443" {
		t.Errorf("body %q", r.Body)
	}
	want := map[string]string{
		"process.pid": "1234", "thread.id": "1240", "process.executable.name": "nginx", "process.user.id": "33",
		"network.transport": "tcp", "network.type": "ipv6",
		"server.address": "2001:db8::1", "server.port": "443", "client.address": "2001:db8:0:1::9", "client.port": "40000",
	}
	checkAttrs(t, r, want)

	r = logOf(cs[3])
	if r.EventName != EventConnect || r.Body != "curl[777] connected to 198.18.0.1:80 from :51000" {
		t.Errorf("connect record %q %q", r.EventName, r.Body)
	}
	checkAttrs(t, r, map[string]string{
		"process.pid": "777", "thread.id": "777", "process.executable.name": "curl", "process.user.id": "1000",
		"network.transport": "tcp", "network.type": "ipv4",
		"server.address": "198.18.0.1", "server.port": "80", "client.address": "198.18.0.2", "client.port": "51000",
	})
}

func checkAttrs(t *testing.T, r *pipelines.LogRecord, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, kv := range r.Attrs {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if len(got) != len(want) || len(r.Attrs) != len(Attributes) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
