package socketcalls

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrnoName names a negative kernel return value: ECONNREFUSED, or one of
// the kernel-internal codes a system call tracepoint sees before the kernel
// turns them into EINTR or a restart (ERESTARTSYS when a signal arrives
// during a blocking call). ok is false for values outside the errno range
// (kernel pointers and lengths are not errors).
func ErrnoName(ret int64) (name string, ok bool) {
	if ret >= 0 || ret < -4095 {
		return "", false
	}
	e := -ret
	if n := unix.ErrnoName(syscall.Errno(e)); n != "" {
		return n, true
	}
	switch e {
	case 512:
		return "ERESTARTSYS", true
	case 513:
		return "ERESTARTNOINTR", true
	case 514:
		return "ERESTARTNOHAND", true
	case 515:
		return "ENOIOCTLCMD", true
	case 516:
		return "ERESTART_RESTARTBLOCK", true
	case 517:
		return "EPROBE_DEFER", true
	case 518:
		return "EOPENSTALE", true
	case 524:
		return "ENOTSUPP", true
	case 529:
		return "EIOCBQUEUED", true
	}
	return "E" + strconv.FormatInt(e, 10), true
}
