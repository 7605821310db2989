//go:build linux

// Package socketcalls is the socket-trace job as a sockeye source: every
// socket system call of a selected thread becomes a root span, with the
// kernel functions and networking tracepoints it went through nested inside
// it, built in the kernel by bpf/socketcalls and exported as OpenTelemetry
// traces.
package socketcalls

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/pipelines"
)

// Attributes beyond the semantic conventions.
const (
	AttrReturnValue = attribute.Key("sockeye.return_value")
	AttrBytes       = attribute.Key("sockeye.io.bytes")
	AttrFD          = attribute.Key("sockeye.socket.fd")
	AttrFamily      = attribute.Key("sockeye.socket.family")
	AttrSockType    = attribute.Key("sockeye.socket.type")
	AttrIncomplete  = attribute.Key("sockeye.span.incomplete")
	AttrFlags       = attribute.Key("sockeye.msg.flags")
	AttrSizeGoal    = attribute.Key("sockeye.tcp.size_goal")
	AttrOldState    = attribute.Key("sockeye.tcp.state.old")
	AttrNewState    = attribute.Key("sockeye.tcp.state.new")
)

func syscallNames() map[uint32]string {
	m := map[uint32]string{}
	for _, s := range bpfsc.Syscalls() {
		m[uint32(s.Nr)] = s.Name
	}
	return m
}

// byteSyscalls return a byte count on success.
func byteSyscalls() map[string]bool {
	return map[string]bool{"read": true, "write": true, "readv": true, "writev": true,
		"sendto": true, "recvfrom": true, "sendmsg": true, "recvmsg": true}
}

// Builder turns kernel records into spans. IDs are derived from the
// kernel's frame ids, so a child is exported before its parent without any
// waiting in user space; the salt keeps two agents (or two runs) apart.
type Builder struct {
	salt [3]uint64
	// GroupWindow > 0 gives a thread's roots starting in one window one trace.
	GroupWindow time.Duration
	// ProcessResource puts service.name = the executable on each span's resource.
	ProcessResource bool
	// Functions names the KindFunc ids.
	Functions []string
	// offset turns CLOCK_MONOTONIC nanoseconds into Unix nanoseconds.
	offset int64

	events  *eventStore
	ifnames map[uint32]string
	// syscalls names the traced system calls by number.
	syscalls map[uint32]string
	// procs keeps each process's resource attributes, one slice per
	// process, so exporters can recognise it without comparing attributes.
	procs     map[uint32]procResource
	bytesCall map[string]bool
	// threads, addrs and attrs spare a record its allocations: a thread's
	// names and an address's text are made once, and spans' attributes
	// are cut from shared chunks.
	threads map[uint32]*threadNames
	addrs   addrNames
	scratch []attribute.KeyValue
	attrs   []attribute.KeyValue
	evs     []pipelines.SpanEvent
	// Orphaned counts events whose span never came.
	Orphaned int64
}

// NewBuilder makes a builder; salt should be random per agent run.
func NewBuilder(salt [3]uint64, functions []string, maxPendingEvents int) *Builder {
	return &Builder{
		salt:      salt,
		Functions: functions,
		events:    newEventStore(maxPendingEvents),
		ifnames:   map[uint32]string{},
		procs:     map[uint32]procResource{},
		threads:   map[uint32]*threadNames{},
		addrs:     addrNames{},
		scratch:   make([]attribute.KeyValue, 0, 32),
		syscalls:  syscallNames(),
		bytesCall: byteSyscalls(),
	}
}

// SetClock sets the offset from the kernel's monotonic clock to wall time.
func (b *Builder) SetClock(offsetNs int64) { b.offset = offsetNs }

func (b *Builder) wall(ns uint64) time.Time { return time.Unix(0, b.offset+int64(ns)) }

// mix is splitmix64's finaliser: a bijection, so distinct frame ids give
// distinct span ids.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (b *Builder) spanID(id uint64) trace.SpanID {
	var s trace.SpanID
	v := mix(id ^ b.salt[2])
	if v == 0 {
		v = 1
	}
	binary.BigEndian.PutUint64(s[:], v)
	return s
}

func (b *Builder) traceID(r *bpfsc.Record) trace.TraceID {
	key := r.RootId
	if b.GroupWindow > 0 {
		window := r.RootStartNs / uint64(b.GroupWindow)
		key = mix(uint64(r.Tid)<<32|uint64(r.Pid)) ^ mix(window+0x9e3779b97f4a7c15)
	}
	var t trace.TraceID
	binary.BigEndian.PutUint64(t[:8], mix(key^b.salt[0]))
	binary.BigEndian.PutUint64(t[8:], mix(key^b.salt[1])|1)
	return t
}

// Name is the span name of a record: the system call, the function, or
// the function a tracepoint pair brackets.
func (b *Builder) Name(r *bpfsc.Record) string {
	switch r.Kind {
	case bpfsc.KindSyscall:
		if n, ok := b.syscalls[r.Func]; ok {
			return n
		}
		return "syscall_" + strconv.Itoa(int(r.Func))
	case bpfsc.KindFunc:
		if int(r.Func) < len(b.Functions) {
			return b.Functions[r.Func]
		}
		return "function_" + strconv.Itoa(int(r.Func))
	case bpfsc.KindPair:
		return bpfsc.PairName(r.Func)
	}
	return bpfsc.EventName(r.Func)
}

// Add turns one record into a span appended to out; an event is kept until
// its span comes.
func (b *Builder) Add(r *bpfsc.Record, out []pipelines.Span) []pipelines.Span {
	if r.Kind == bpfsc.KindEvent {
		if b.events.add(r.ParentId, b.event(r), b.oneEvent) {
			b.Orphaned++
		}
		return out
	}
	name := b.Name(r)
	comm, pcomm := b.names(r)
	s := pipelines.Span{
		TraceID: b.traceID(r),
		SpanID:  b.spanID(r.Id),
		Name:    name,
		Kind:    trace.SpanKindInternal,
		Start:   b.wall(r.StartNs),
		End:     b.wall(r.EndNs),
		Depth:   int(r.Depth),
		Thread:  pipelines.Thread{TID: int(r.Tid), Command: comm},
	}
	if r.ParentId != 0 {
		s.ParentID = b.spanID(r.ParentId)
	}
	attrs := b.scratch[:0]
	attrs = append(attrs,
		semconv.ProcessPIDKey.Int(int(r.Pid)),
		semconv.ThreadIDKey.Int(int(r.Tid)),
		semconv.ThreadNameKey.String(comm),
		semconv.ProcessExecutableNameKey.String(pcomm),
		semconv.ProcessUserIDKey.Int(int(r.Uid)),
		semconv.CodeFunctionNameKey.String(name),
	)
	if r.Flags&bpfsc.FlagIncomplete != 0 {
		attrs = append(attrs, AttrIncomplete.Bool(true))
		s.Error, s.StatusMessage = true, "return not seen"
	} else {
		attrs = append(attrs, AttrReturnValue.Int64(r.Ret))
		if errno, ok := ErrnoName(r.Ret); ok && r.Kind != bpfsc.KindPair {
			s.Error, s.StatusMessage = true, errno
			attrs = append(attrs, semconv.ErrorTypeKey.String(errno))
		} else if r.Kind == bpfsc.KindSyscall && r.Ret >= 0 && b.bytesCall[name] {
			attrs = append(attrs, AttrBytes.Int64(r.Ret))
		}
	}
	if r.Kind == bpfsc.KindPair {
		attrs = append(attrs, AttrBytes.Int64(int64(r.Value)))
		if n := b.ifname(r.Ifindex); n != "" {
			attrs = append(attrs, semconv.NetworkInterfaceNameKey.String(n))
		}
	}
	if r.Flags&bpfsc.FlagFD != 0 {
		attrs = append(attrs, AttrFD.Int(int(r.Fd)))
	}
	if r.Flags&bpfsc.FlagSock != 0 {
		attrs = b.sockAttrs(r, attrs)
	}
	b.scratch = attrs
	s.Attrs = b.keep(attrs)
	s.Events = b.events.take(r.Id)
	if b.ProcessResource {
		s.Resource = b.resource(r.Pid, pcomm)
	}
	return append(out, s)
}

type procResource struct {
	comm  string
	attrs []attribute.KeyValue
}

func (b *Builder) resource(pid uint32, comm string) []attribute.KeyValue {
	if p, ok := b.procs[pid]; ok && p.comm == comm {
		return p.attrs
	}
	if len(b.procs) >= 4096 {
		clear(b.procs)
	}
	attrs := []attribute.KeyValue{
		semconv.ServiceNameKey.String(comm),
		semconv.ProcessPIDKey.Int(int(pid)),
		semconv.ProcessExecutableNameKey.String(comm),
	}
	b.procs[pid] = procResource{comm: comm, attrs: attrs}
	return attrs
}

func (b *Builder) event(r *bpfsc.Record) pipelines.SpanEvent {
	ev := pipelines.SpanEvent{Name: bpfsc.EventName(r.Func), Time: b.wall(r.StartNs)}
	attrs := b.scratch[:0]
	switch r.Func {
	case 1, 2: // sock_send_length, sock_recv_length
		attrs = append(attrs, AttrReturnValue.Int64(r.Ret), AttrFlags.Int64(int64(r.Value)))
		if r.Ret >= 0 {
			attrs = append(attrs, AttrBytes.Int64(r.Ret))
		}
	case 3: // tcp_sendmsg_locked
		attrs = append(attrs, AttrSizeGoal.Int64(int64(r.Value)))
	case 4: // netif_receive_skb
		attrs = append(attrs, AttrBytes.Int64(int64(r.Value)))
		if n := b.ifname(r.Ifindex); n != "" {
			attrs = append(attrs, semconv.NetworkInterfaceNameKey.String(n))
		}
	case 5: // inet_sock_set_state
		attrs = append(attrs,
			AttrOldState.String(tcpState(int(r.Value>>8))),
			AttrNewState.String(tcpState(int(r.Value&0xff))),
		)
	}
	if r.Flags&bpfsc.FlagSock != 0 {
		attrs = b.sockAttrs(r, attrs)
	}
	b.scratch = attrs
	if len(attrs) > 0 {
		ev.Attrs = b.keep(attrs)
	}
	return ev
}

// ifname names an interface of the agent's network namespace; an index
// from another namespace may name another device or none.
func (b *Builder) ifname(idx uint32) string {
	if idx == 0 {
		return ""
	}
	if n, ok := b.ifnames[idx]; ok {
		return n
	}
	n := ""
	if ifc, err := net.InterfaceByIndex(int(idx)); err == nil {
		n = ifc.Name
	}
	if len(b.ifnames) > 1024 {
		clear(b.ifnames)
	}
	b.ifnames[idx] = n
	return n
}

func (b *Builder) sockAttrs(r *bpfsc.Record, attrs []attribute.KeyValue) []attribute.KeyValue {
	attrs = append(attrs, AttrFamily.String(familyName(r.Family)))
	if t := sockTypeName(r.SockType); t != "" {
		attrs = append(attrs, AttrSockType.String(t))
	}
	switch r.Family {
	case 1:
		attrs = append(attrs, semconv.NetworkTransportKey.String("unix"))
	case 2, 10:
		switch r.Protocol {
		case 6:
			attrs = append(attrs, semconv.NetworkTransportKey.String("tcp"))
		case 17, 136:
			attrs = append(attrs, semconv.NetworkTransportKey.String("udp"))
		}
		var la, ra netip.Addr
		if r.Family == 2 {
			attrs = append(attrs, semconv.NetworkTypeKey.String("ipv4"))
			la = netip.AddrFrom4([4]byte(r.Laddr[:4]))
			ra = netip.AddrFrom4([4]byte(r.Raddr[:4]))
		} else {
			attrs = append(attrs, semconv.NetworkTypeKey.String("ipv6"))
			la = netip.AddrFrom16(r.Laddr).Unmap()
			ra = netip.AddrFrom16(r.Raddr).Unmap()
		}
		if r.Lport != 0 || !la.IsUnspecified() {
			attrs = append(attrs, semconv.NetworkLocalAddressKey.String(b.addrs.name(la)), semconv.NetworkLocalPortKey.Int(int(r.Lport)))
		}
		if r.Rport != 0 {
			attrs = append(attrs, semconv.NetworkPeerAddressKey.String(b.addrs.name(ra)), semconv.NetworkPeerPortKey.Int(int(r.Rport)))
		}
	}
	return attrs
}

func familyName(f uint16) string {
	switch f {
	case 1:
		return "AF_UNIX"
	case 2:
		return "AF_INET"
	case 10:
		return "AF_INET6"
	case 16:
		return "AF_NETLINK"
	case 17:
		return "AF_PACKET"
	case 40:
		return "AF_VSOCK"
	}
	return fmt.Sprintf("AF_%d", f)
}

func sockTypeName(t uint16) string {
	switch t {
	case 0:
		return ""
	case 1:
		return "SOCK_STREAM"
	case 2:
		return "SOCK_DGRAM"
	case 3:
		return "SOCK_RAW"
	case 5:
		return "SOCK_SEQPACKET"
	}
	return fmt.Sprintf("SOCK_%d", t)
}

func tcpState(s int) string {
	names := []string{"", "TCP_ESTABLISHED", "TCP_SYN_SENT", "TCP_SYN_RECV", "TCP_FIN_WAIT1", "TCP_FIN_WAIT2",
		"TCP_TIME_WAIT", "TCP_CLOSE", "TCP_CLOSE_WAIT", "TCP_LAST_ACK", "TCP_LISTEN", "TCP_CLOSING", "TCP_NEW_SYN_RECV"}
	if s > 0 && s < len(names) {
		return names[s]
	}
	return strconv.Itoa(s)
}

// attrChunk is the number of attributes of a chunk spans' attributes are
// cut from: one allocation for some hundred spans instead of one each.
const attrChunk = 4096

// keep copies a span's attributes into the current chunk. The copy's
// capacity is its length, so a processor that appends to it reallocates
// rather than overwrite the next span's.
func (b *Builder) keep(attrs []attribute.KeyValue) []attribute.KeyValue {
	if len(attrs) > cap(b.attrs)-len(b.attrs) {
		b.attrs = make([]attribute.KeyValue, 0, max(attrChunk, len(attrs)))
	}
	n := len(b.attrs)
	b.attrs = append(b.attrs, attrs...)
	return b.attrs[n : n+len(attrs) : n+len(attrs)]
}

// oneEvent returns a one-event slice cut from a shared chunk, its capacity
// its length: a span's second event reallocates.
func (b *Builder) oneEvent(ev pipelines.SpanEvent) []pipelines.SpanEvent {
	if len(b.evs) == cap(b.evs) {
		b.evs = make([]pipelines.SpanEvent, 0, attrChunk/4)
	}
	n := len(b.evs)
	b.evs = append(b.evs, ev)
	return b.evs[n : n+1 : n+1]
}

// threadNames are a thread's command and its process's, as last seen.
type threadNames struct {
	comm, pcomm   [16]int8
	commS, pcommS string
}

// maxThreadNames bounds the threads whose names are kept.
const maxThreadNames = 4096

// names returns the record's thread and process commands, made into
// strings only when a thread's differ from what it last sent.
func (b *Builder) names(r *bpfsc.Record) (string, string) {
	t := b.threads[r.Tid]
	if t == nil {
		if len(b.threads) >= maxThreadNames {
			clear(b.threads)
		}
		t = &threadNames{}
		t.commS, t.pcommS = cstr(t.comm[:]), cstr(t.pcomm[:])
		b.threads[r.Tid] = t
	}
	if t.comm != r.Comm {
		t.comm, t.commS = r.Comm, cstr(r.Comm[:])
	}
	if t.pcomm != r.Pcomm {
		t.pcomm, t.pcommS = r.Pcomm, cstr(r.Pcomm[:])
	}
	return t.commS, t.pcommS
}

// addrNames keeps the text of the addresses seen, a bounded set.
type addrNames map[netip.Addr]string

func (a addrNames) name(ip netip.Addr) string {
	if s, ok := a[ip]; ok {
		return s
	}
	if len(a) >= 4096 {
		clear(a)
	}
	s := ip.String()
	a[ip] = s
	return s
}

func cstr(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	buf := make([]byte, n)
	for i := range n {
		buf[i] = byte(b[i])
	}
	return string(buf)
}

// eventStore keeps span events until their span's record comes (events
// fire inside a call, the span is sent when it returns). Bounded: when
// full, the oldest parent's events are dropped.
type eventStore struct {
	max   int
	byID  map[uint64][]pipelines.SpanEvent
	order []uint64 // insertion order of ids, a ring
	head  int
}

func newEventStore(max int) *eventStore {
	if max <= 0 {
		max = 4096
	}
	return &eventStore{max: max, byID: map[uint64][]pipelines.SpanEvent{}}
}

// add keeps ev for span id and reports whether an older entry was dropped;
// one makes the slice of a span's first event.
func (s *eventStore) add(id uint64, ev pipelines.SpanEvent, one func(pipelines.SpanEvent) []pipelines.SpanEvent) bool {
	if evs, ok := s.byID[id]; ok {
		if len(evs) < 64 {
			s.byID[id] = append(evs, ev)
			return false
		}
		return true
	}
	dropped := false
	if len(s.order) < s.max {
		s.order = append(s.order, id)
	} else {
		old := s.order[s.head]
		if _, ok := s.byID[old]; ok {
			delete(s.byID, old)
			dropped = true
		}
		s.order[s.head] = id
		s.head = (s.head + 1) % s.max
	}
	s.byID[id] = one(ev)
	return dropped
}

func (s *eventStore) take(id uint64) []pipelines.SpanEvent {
	if len(s.byID) == 0 {
		return nil
	}
	evs, ok := s.byID[id]
	if ok {
		delete(s.byID, id)
	}
	return evs
}

// Pending is how many spans have events waiting.
func (b *Builder) Pending() int { return len(b.events.byID) }
