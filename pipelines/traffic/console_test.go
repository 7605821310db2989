package traffic

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/sockeye/sockeye/pipelines"
)

var update = flag.Bool("update", false, "rewrite golden files")

// seedSample is the second sample of nettop.stp's published output, as rows
// (KB columns there are bytes/1024, so the bytes here are chosen to land on them).
func seedSample() *pipelines.Batch {
	rows := []Entry{
		{PID: 11178, UID: 0, Device: "eth0", Command: "synergyc", TxPackets: 3, TxBytes: 400},
		{PID: 2886, UID: 4, Device: "eth0", Command: "cups-polld", TxPackets: 79, TxBytes: 5 * 1024},
		{PID: 0, UID: 0, Device: "eth0", Command: "swapper", TxPackets: 3, RxPackets: 32, TxBytes: 200, RxBytes: 3*1024 + 500},
		{PID: 11362, UID: 0, Device: "eth0", Command: "firefox", RxPackets: 61, RxBytes: 5*1024 + 1023},
		{PID: 2886, UID: 4, Device: "lo", Command: "cups-polld", TxPackets: 4, RxPackets: 4, TxBytes: 300, RxBytes: 300},
		{PID: 4242, UID: 1000, Device: "eth1", Command: "idle-proc"}, // no packets: not printed
	}
	b := &pipelines.Batch{Metrics: Metrics}
	for _, e := range rows {
		b.Rows = append(b.Rows, e.Row(false))
	}
	return b
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
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

func TestNettopGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := (Nettop{}).Write(&buf, seedSample()); err != nil {
		t.Fatal(err)
	}
	if err := (Nettop{}).Write(&buf, &pipelines.Batch{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "nettop.golden", buf.Bytes())
}

func TestNettopAttributesDropped(t *testing.T) {
	b := seedSample()
	for i := range b.Rows {
		b.Rows[i].Attrs = b.Rows[i].Attrs[1:] // no process.pid
	}
	var buf bytes.Buffer
	if err := (Nettop{}).Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	golden(t, "nettop-nopid.golden", buf.Bytes())
}

func TestCommand(t *testing.T) {
	cases := []struct {
		pid  uint32
		comm string
		want string
	}{
		{0, "swapper/0", "swapper"},
		{0, "swapper/13", "swapper"},
		{7, "swapper/1", "swapper/1"}, // only the idle task is renamed
		{1, "systemd", "systemd"},
	}
	for _, c := range cases {
		if got := Command(c.pid, c.comm); got != c.want {
			t.Errorf("Command(%d, %q) = %q, want %q", c.pid, c.comm, got, c.want)
		}
	}
}

func TestCString(t *testing.T) {
	var b [16]int8
	for i, c := range "curl" {
		b[i] = int8(c)
	}
	if got := CString(b[:]); got != "curl" {
		t.Errorf("got %q", got)
	}
	var full [16]int8
	for i := range full {
		full[i] = 'x'
	}
	if got := CString(full[:]); len(got) != 16 {
		t.Errorf("unterminated: got %d bytes", len(got))
	}
	if got := CString(nil); got != "" {
		t.Errorf("nil: got %q", got)
	}
}
