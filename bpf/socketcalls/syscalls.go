package socketcalls

import "slices"

// Syscall is one system call the source can take as a root span.
type Syscall struct {
	Name string
	// Nr is the x86-64 number.
	Nr int
	// FDSocket: traced only when the first argument is a socket fd (read,
	// write, close... serve every kind of file).
	FDSocket bool
	// NewFD: the return value is a new socket's fd, whose socket describes
	// the span (socket, accept).
	NewFD bool
}

// Syscalls are the root system calls, x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
func Syscalls() []Syscall {
	return []Syscall{
		{Name: "read", Nr: 0, FDSocket: true},
		{Name: "write", Nr: 1, FDSocket: true},
		{Name: "close", Nr: 3, FDSocket: true},
		{Name: "readv", Nr: 19, FDSocket: true},
		{Name: "writev", Nr: 20, FDSocket: true},
		{Name: "socket", Nr: 41, NewFD: true},
		{Name: "connect", Nr: 42},
		{Name: "accept", Nr: 43, NewFD: true},
		{Name: "sendto", Nr: 44},
		{Name: "recvfrom", Nr: 45},
		{Name: "sendmsg", Nr: 46},
		{Name: "recvmsg", Nr: 47},
		{Name: "shutdown", Nr: 48},
		{Name: "bind", Nr: 49},
		{Name: "listen", Nr: 50},
		{Name: "getsockname", Nr: 51},
		{Name: "getpeername", Nr: 52},
		{Name: "socketpair", Nr: 53},
		{Name: "setsockopt", Nr: 54},
		{Name: "getsockopt", Nr: 55},
		{Name: "accept4", Nr: 288, NewFD: true},
		{Name: "recvmmsg", Nr: 299},
		{Name: "sendmmsg", Nr: 307},
	}
}

// SyscallNames lists the names of Syscalls, for config validation.
func SyscallNames() []string {
	var out []string
	for _, s := range Syscalls() {
		out = append(out, s.Name)
	}
	return out
}

// SyscallName returns the name of a traced syscall number, or "".
func SyscallName(nr uint32) string {
	i := slices.IndexFunc(Syscalls(), func(s Syscall) bool { return s.Nr == int(nr) })
	if i < 0 {
		return ""
	}
	return Syscalls()[i].Name
}
