//go:build linux

package tcpreceive

import (
	"testing"
	"unsafe"
)

// The decoder reads fixed offsets; they must be those of the C struct.
func TestEventLayout(t *testing.T) {
	var e tcpreceiveEvent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(e), EventSize},
		{"len", unsafe.Offsetof(e.Len), 16},
		{"caplen", unsafe.Offsetof(e.Caplen), 20},
		{"pid", unsafe.Offsetof(e.Pid), 24},
		{"saddr", unsafe.Offsetof(e.Saddr), 32},
		{"daddr", unsafe.Offsetof(e.Daddr), 48},
		{"sport", unsafe.Offsetof(e.Sport), 64},
		{"tcp_flags", unsafe.Offsetof(e.TcpFlags), 68},
		{"family", unsafe.Offsetof(e.Family), 72},
		{"flags", unsafe.Offsetof(e.Flags), 74},
		{"comm", unsafe.Offsetof(e.Comm), 76},
		{"dev", unsafe.Offsetof(e.Dev), 92},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, decoder uses %d", c.name, c.got, c.want)
		}
	}
	var s tcpreceiveScratch
	if unsafe.Offsetof(s.Data) != EventSize {
		t.Errorf("scratch data at %d, want %d", unsafe.Offsetof(s.Data), EventSize)
	}
}
