//go:build linux

package drops

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TracefsDir is where the loader mounts tracefs when no tracefs is mounted.
const TracefsDir = "/sys/kernel/tracing"

// ensureTracefs returns a directory holding tracefs, mounting it at
// TracefsDir when the system has none; mounted tells whether it did.
func ensureTracefs() (dir string, mounted bool, err error) {
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		dir = findTracefs(f)
		f.Close()
		if dir != "" {
			return dir, false, nil
		}
	}
	// Older systems expose tracefs inside debugfs.
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return "/sys/kernel/debug/tracing", false, nil
	}
	if err := MountTracefs(TracefsDir); err != nil {
		return "", false, err
	}
	return TracefsDir, true, nil
}

// MountTracefs mounts tracefs at dir, as `mount -t tracefs nodev DIR` does.
func MountTracefs(dir string) error {
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed (mount -t tracefs nodev %s): %w", dir, dir, err)
	}
	return nil
}

// findTracefs returns the mount point of the first tracefs mounted from its
// root in a /proc/self/mountinfo listing, or "".
func findTracefs(mountinfo io.Reader) string {
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		fs := strings.Fields(post)
		if len(f) < 5 || len(fs) < 1 || fs[0] != "tracefs" || f[3] != "/" {
			continue
		}
		return unescapeMount(f[4])
	}
	return ""
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// perfEvent is a tracepoint perf event with a BPF program attached; closing
// it detaches the program.
type perfEvent struct{ fd int }

func (p *perfEvent) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// attachTracepoint attaches prog to group:name through the tracefs at dir.
// The library's own tracepoint attach looks tracefs up once per process and
// would not see a tracefs mounted after that, so the event is opened here.
func attachTracepoint(dir, group, name string, prog *ebpf.Program) (io.Closer, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "events", group, name, "id"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tracepoint %s:%s not in %s: %w", group, name, dir, err)
		}
		return nil, err
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s:%s id: %w", group, name, err)
	}
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_TRACEPOINT,
		Config:      id,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample_type: unix.PERF_SAMPLE_RAW,
		Sample:      1,
		Wakeup:      1,
	}
	// One event on CPU 0 is enough: the program runs on every CPU.
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open %s:%s: %w", group, name, err)
	}
	pe := &perfEvent{fd: fd}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
		pe.Close()
		return nil, fmt.Errorf("attach to %s:%s: %w", group, name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		pe.Close()
		return nil, fmt.Errorf("enable %s:%s: %w", group, name, err)
	}
	return pe, nil
}
