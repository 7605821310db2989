package pcapng

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sockeye/sockeye/pipelines"

	"github.com/sockeye/sockeye/internal/testenv"
)

// fullDisk takes limit bytes, then fails as a full disk does: a short
// write, then ENOSPC.
type fullDisk struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
	calls int // writes after the disk was full
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	room := d.limit - d.buf.Len()
	if room >= len(p) {
		return d.buf.Write(p)
	}
	d.calls++
	d.buf.Write(p[:max(room, 0)])
	return max(room, 0), &os.PathError{Op: "write", Path: "/var/lib/sockeye/rx.pcapng", Err: syscall.ENOSPC}
}

func (d *fullDisk) bytes() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.buf.Bytes())
}

type syncLog = testenv.SyncBuffer

// readable counts the packets a reader gets out of what reached the disk:
// a block cut short ends the file.
func readable(t *testing.T, b []byte) int {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatalf("the %d bytes on disk do not start a pcapng file: %v", len(b), err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n
		}
		n++
	}
}

// TestFullDisk: once the disk is full the error is logged once, naming the
// file and ENOSPC; every packet is either readable from what reached the
// disk or counted as failed, and reported as lost with reason write_failed;
// later batches are counted, not written, and nothing panics.
func TestFullDisk(t *testing.T) {
	for _, flush := range []string{FlushPacket, FlushInterval} {
		t.Run(flush, func(t *testing.T) {
			disk := &fullDisk{limit: 6000}
			var logs syncLog
			e, err := New("pcapng/rx", Options{Path: "-", Stdout: disk, Flush: flush, FlushInterval: 5 * time.Millisecond,
				Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(1700000000, 0)
			ctx := context.Background()
			const batches, per = 40, 5
			var failed int
			for i := range batches {
				if err := e.ExportPackets(ctx, batch(t0.Add(time.Duration(i)*time.Millisecond), per, lo, i%2 == 0)); err != nil {
					failed++
					if !errors.Is(err, syscall.ENOSPC) {
						t.Errorf("batch %d: %v, want ENOSPC", i, err)
					}
				}
				// Let the interval flush run between some batches.
				time.Sleep(time.Millisecond)
			}
			serr := e.Shutdown(ctx)
			if !errors.Is(serr, syscall.ENOSPC) {
				t.Errorf("Shutdown: %v, want ENOSPC", serr)
			}
			if failed == 0 {
				t.Error("no export reported the full disk")
			}
			c := e.Counts()
			if c.Written+c.Failed != batches*per || c.Failed == 0 {
				t.Errorf("counts %+v for %d packets", c, batches*per)
			}
			if n := readable(t, disk.bytes()); uint64(n) != c.Written {
				t.Errorf("%d packets readable on disk, %d counted as written", n, c.Written)
			}
			self := e.Self()
			if len(self) != 1 || self[0].Name != pipelines.MetricEventsLost || self[0].Value != int64(c.Failed) ||
				!hasAttr(self[0], "sockeye.reason", ReasonWriteFailed) || !hasAttr(self[0], "sockeye.exporter", "pcapng/rx") {
				t.Errorf("self points %+v, want %d lost with reason %s", self, c.Failed, ReasonWriteFailed)
			}
			out := logs.String()
			if n := strings.Count(out, "cannot write the capture file"); n != 1 {
				t.Errorf("the write error is logged %d times, want once:\n%s", n, out)
			}
			if !strings.Contains(out, "no space left on device") || !strings.Contains(out, "/var/lib/sockeye/rx.pcapng") {
				t.Errorf("the log names neither the file nor ENOSPC:\n%s", out)
			}
			// The buffer keeps the error: the disk is not written again.
			if disk.calls != 1 {
				t.Errorf("%d writes after the disk was full, want 1", disk.calls)
			}
		})
	}
}

func hasAttr(p pipelines.SelfPoint, key, value string) bool {
	for _, kv := range p.Attrs {
		if string(kv.Key) == key && kv.Value.AsString() == value {
			return true
		}
	}
	return false
}

// TestUnwritablePath: New fails at once, naming the file and the cause.
func TestUnwritablePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "x.pcapng")
	_, err := New("pcapng", Options{Path: path, Log: quiet()})
	if err == nil || !strings.Contains(err.Error(), "cannot create capture file "+path+": no such file or directory") ||
		!errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

// TestNextFileCannotStart: when rotation cannot create the next file, the
// packets that follow are counted as lost, not dropped unseen, and
// Shutdown reports why.
func TestNextFileCannotStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(dir, 0o755)
	e, err := New("pcapng", Options{Path: filepath.Join(dir, "r.pcapng"), RotateBytes: 2000, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Unix(1700000000, 0)
	e.ExportPackets(ctx, batch(t0, 5, lo, true))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		e.ExportPackets(ctx, batch(t0.Add(time.Duration(i+1)*time.Second), 10, lo, true))
	}
	err = e.Shutdown(ctx)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Shutdown: %v, want the reason the next file could not start", err)
	}
	select {
	case <-e.Limit():
	default:
		t.Error("writing stopped without closing Limit")
	}
	if c := e.Counts(); c.Written+c.Failed != 105 || c.Failed == 0 {
		t.Errorf("counts %+v for 105 packets", c)
	}
}
