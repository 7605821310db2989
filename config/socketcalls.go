package config

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SocketCallsSource is the socket-trace job: each socket system call of a
// selected thread is a root span, the kernel functions and networking
// tracepoints it goes through are its children.
type SocketCallsSource struct {
	// Hook pins the hook rung (HookAuto by default).
	Hook string
	// Selection: a thread is traced when it matches any listed value of any
	// of these, or always with All. Without any, the source refuses to
	// start (validation error): tracing every thread floods a collector.
	PIDs     []int
	Commands []string
	UIDs     []int
	// Cgroups are cgroup v2 directories (absolute paths, or relative to the
	// cgroup2 mount); threads in them or below them are traced.
	Cgroups []string
	All     bool
	// Syscalls are the root system calls traced; empty is all of them.
	Syscalls []string
	// Functions are kernel function names, globs and "@net/socket.c",
	// traced as children where fentry or kprobes are allowed.
	Functions    []string
	MaxFunctions int
	// MaxDepth caps the nesting kept per thread.
	MaxDepth int
	// SamplingRatio is the share of root calls traced (head sampling).
	SamplingRatio float64
	// RateLimit is the most root calls traced per second; 0 is no limit.
	RateLimit int
	// GroupWindow > 0 puts a thread's root calls that start within the same
	// window into one trace; 0 is one trace per root call.
	GroupWindow time.Duration
	// MaxThreads bounds the threads that can be mid-call at once.
	MaxThreads int
	// RingSize is the kernel ring buffer's size in bytes, a power of two.
	RingSize uint32
	// RootsOutsideSyscalls makes a traced function called outside a traced
	// system call (sock_poll from epoll, ...) a root span of its own.
	RootsOutsideSyscalls bool
	// ServiceName is "process" (each traced process is a service named after
	// its executable) or "agent" (the agent's service.name for all spans).
	ServiceName string
}

// Socket calls source limits and defaults.
const (
	DefaultSocketCallsRateLimit  = 1000
	DefaultSocketCallsMaxDepth   = 16
	MaxSocketCallsMaxDepth       = 32
	DefaultSocketCallsMaxThreads = 4096
	MaxSocketCallsMaxThreads     = 1 << 20
	DefaultSocketCallsFunctions  = 512
	DefaultSocketCallsRingSize   = 4 << 20
	MinSocketCallsRingSize       = 4 << 10
	MaxSocketCallsRingSize       = 1 << 30
	SocketCallsServiceProcess    = "process"
	SocketCallsServiceAgent      = "agent"
	// SocketCFunctions stands for the functions of net/socket.c in a function list.
	SocketCFunctions = "@net/socket.c"
)

// SocketSyscalls are the system calls a socket_calls source can trace.
func SocketSyscalls() []string {
	return []string{"read", "write", "close", "readv", "writev", "socket", "connect", "accept",
		"sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind", "listen", "getsockname",
		"getpeername", "socketpair", "setsockopt", "getsockopt", "accept4", "recvmmsg", "sendmmsg"}
}

func socketCallsHooks() []string {
	return []string{HookAuto, HookFentry, HookKprobe, HookTpBTF, HookRawTracepoint}
}

func socketCallsKeys() []string {
	return []string{"hook", "pids", "commands", "uids", "cgroups", "all", "syscalls", "functions",
		"max_functions", "max_depth", "sampling_ratio", "rate_limit", "group_window", "max_threads",
		"ring_size", "roots_outside_syscalls", "service_name"}
}

func (d *decoder) socketCalls(f fields) *SocketCallsSource {
	s := &SocketCallsSource{
		Hook:          HookAuto,
		Functions:     []string{SocketCFunctions},
		MaxFunctions:  DefaultSocketCallsFunctions,
		MaxDepth:      DefaultSocketCallsMaxDepth,
		SamplingRatio: 1,
		RateLimit:     DefaultSocketCallsRateLimit,
		MaxThreads:    DefaultSocketCallsMaxThreads,
		RingSize:      DefaultSocketCallsRingSize,
		ServiceName:   SocketCallsServiceProcess,
	}
	key := func(k string) string { return join(f.path, k) }
	if v, ok := d.str(f.get("hook"), key("hook")); ok {
		if hooks := socketCallsHooks(); slices.Contains(hooks, v) {
			s.Hook = v
		} else {
			d.errorf(f.get("hook").Line, key("hook"), "invalid hook %q for a socket_calls source (want %s)", v, strings.Join(hooks, ", "))
		}
	}
	before := len(d.errs)
	s.PIDs, _ = d.intList(f.get("pids"), key("pids"), 1, math.MaxInt32)
	s.Commands, _ = d.strList(f.get("commands"), key("commands"))
	s.UIDs, _ = d.intList(f.get("uids"), key("uids"), 0, math.MaxUint32)
	s.Cgroups, _ = d.strList(f.get("cgroups"), key("cgroups"))
	if v, ok := d.boolean(f.get("all"), key("all")); ok {
		s.All = v
	}
	for i, c := range s.Commands {
		if len(c) > 15 {
			d.errorf(f.keyLine("commands"), key("commands"),
				"command %q (entry %d) is longer than 15 characters: the kernel keeps only the first 15 of a thread's name", c, i+1)
		}
	}
	if len(d.errs) == before && !s.All && len(s.PIDs)+len(s.Commands)+len(s.UIDs)+len(s.Cgroups) == 0 {
		d.errorf(f.line, f.path, "a socket_calls source needs a selection: give at least one of pids, commands, uids, cgroups "+
			"(or all: true): tracing every thread's socket calls would flood the collector")
	}
	if names, ok := d.strList(f.get("syscalls"), key("syscalls")); ok {
		known := SocketSyscalls()
		for _, n := range names {
			if !slices.Contains(known, n) {
				d.errorf(f.keyLine("syscalls"), key("syscalls"), "unknown system call %q%s", n, suggest(n, known))
			}
		}
		s.Syscalls = names
	}
	if names, ok := d.strList(f.get("functions"), key("functions")); ok {
		s.Functions = names
	}
	if v, ok := d.integer(f.get("max_functions"), key("max_functions"), 1, 4096); ok {
		s.MaxFunctions = int(v)
	}
	if v, ok := d.integer(f.get("max_depth"), key("max_depth"), 1, MaxSocketCallsMaxDepth); ok {
		s.MaxDepth = int(v)
	}
	if v, ok := d.str(f.get("sampling_ratio"), key("sampling_ratio")); ok {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 1 || math.IsNaN(r) {
			d.errorf(f.get("sampling_ratio").Line, key("sampling_ratio"), "invalid sampling ratio %q (want a number in (0, 1], e.g. 0.1)", v)
		} else {
			s.SamplingRatio = r
		}
	}
	if v, ok := d.integer(f.get("rate_limit"), key("rate_limit"), 0, math.MaxInt32); ok {
		s.RateLimit = int(v)
	}
	if v, ok := d.duration(f.get("group_window"), key("group_window"), 0); ok {
		s.GroupWindow = v
	}
	if v, ok := d.integer(f.get("max_threads"), key("max_threads"), 1, MaxSocketCallsMaxThreads); ok {
		s.MaxThreads = int(v)
	}
	if v, ok := d.integer(f.get("ring_size"), key("ring_size"), MinSocketCallsRingSize, MaxSocketCallsRingSize); ok {
		if v&(v-1) != 0 {
			d.errorf(f.get("ring_size").Line, key("ring_size"), "%d is not a power of two (e.g. 1048576, 4194304)", v)
		} else {
			s.RingSize = uint32(v)
		}
	}
	if v, ok := d.boolean(f.get("roots_outside_syscalls"), key("roots_outside_syscalls")); ok {
		s.RootsOutsideSyscalls = v
	}
	if v, ok := d.enum(f.get("service_name"), key("service_name"), SocketCallsServiceProcess, SocketCallsServiceAgent); ok {
		s.ServiceName = v
	}
	return s
}
