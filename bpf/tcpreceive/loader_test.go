//go:build linux

package tcpreceive

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

// TestOpenEveryRung loads each rung this kernel allows and sees one TCP
// connection over lo through it.
func TestOpenEveryRung(t *testing.T) {
	k := testenv.Kernel(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, rung := range Rungs {
		t.Run(rung, func(t *testing.T) {
			// A port picked before the programs load, listened on after, so
			// that listen() is seen.
			port := uint16(testenv.FreePort(t))
			p, err := Open(Options{Hook: rung, Snaplen: 256, AttributeOwner: true, Kernel: k, Log: log,
				Filter: Filter{Ports: []Port{{Port: port, Dir: Destination}}}})
			if err != nil {
				if unsupported(err) {
					testenv.Matrix("tcp_receive-load", rung, "unsupported", oneWord(err))
					t.Skip(err)
				}
				testenv.Matrix("tcp_receive-load", rung, "fail", oneWord(err))
				t.Fatal(err)
			}
			defer p.Close()
			rd, err := p.NewReader(1<<16, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("hello"))
			c.Close()
			rd.SetDeadline(time.Now().Add(5 * time.Second))
			var sawSyn bool
			for !sawSyn {
				rec, err := rd.Read()
				if err != nil {
					testenv.Matrix("tcp_receive-load", rung, "fail", "no SYN seen")
					t.Fatal(err)
				}
				var ev Event
				if err := Decode(rec.RawSample, &ev); err != nil {
					t.Fatal(err)
				}
				if ev.DstPort != port || ev.Dst != netip.MustParseAddr("127.0.0.1") {
					t.Fatalf("unexpected event %+v", ev)
				}
				if len(ev.Data) < 40 || ev.Data[0]>>4 != 4 {
					t.Fatalf("data does not start with an IPv4 header: % x", ev.Data)
				}
				if ev.TCPFlags == 0x02 {
					sawSyn = true
					if ev.Flags&FlagOwner == 0 {
						t.Errorf("SYN to a listener not attributed: %+v", ev)
					} else if ev.PID != uint32(os.Getpid()) {
						t.Errorf("SYN attributed to pid %d, want %d", ev.PID, os.Getpid())
					}
				}
			}
			testenv.Matrix("tcp_receive-load", rung, "pass", "")
		})
	}
}

func unsupported(err error) bool {
	var ce *hooks.ClimbError
	if !errors.As(err, &ce) {
		return false
	}
	for _, a := range ce.Attempts {
		if errors.Is(a.Err, hooks.ErrMissing) || errors.Is(a.Err, unix.EPERM) || errors.Is(a.Err, unix.ENOTSUP) ||
			errors.Is(a.Err, os.ErrNotExist) || errors.Is(a.Err, errors.ErrUnsupported) {
			continue
		}
		if strings.Contains(a.Err.Error(), "CONFIG_KPROBES") || strings.Contains(a.Err.Error(), "own BTF") {
			continue
		}
		return false
	}
	return true
}

func oneWord(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
