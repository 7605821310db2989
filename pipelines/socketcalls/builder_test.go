//go:build linux

package socketcalls

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bpfsc "github.com/sockeye/sockeye/bpf/socketcalls"
	"github.com/sockeye/sockeye/pipelines"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// rec makes a record as the kernel would send it.
func rec(kind uint16, fn uint32, id, parent, root uint64, depth uint16, start, end uint64, ret int64, tid uint32, comm string) *bpfsc.Record {
	r := &bpfsc.Record{Kind: kind, Func: fn, Id: id, ParentId: parent, RootId: root, Depth: depth,
		StartNs: start, EndNs: end, RootStartNs: start, Ret: ret, Pid: 3800, Tid: tid, Uid: 1000}
	for i := 0; i < len(comm) && i < 15; i++ {
		r.Comm[i] = int8(comm[i])
		r.Pcomm[i] = int8(comm[i])
	}
	return r
}

func testBuilder() *Builder {
	b := NewBuilder([3]uint64{1, 2, 3}, []string{"__sys_recvfrom", "sockfd_lookup_light", "sock_recvmsg", "__sys_connect", "sock_poll"}, 16)
	b.SetClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return b
}

// seedLike is the seed's sample (a recvfrom of scim-bridge going through
// net/socket.c) with another thread's refused connect in between.
func seedLike(b *Builder) []pipelines.Span {
	const us = 1000
	var out []pipelines.Span
	for _, r := range []*bpfsc.Record{
		rec(bpfsc.KindFunc, 1, 0x12, 0x11, 0x10, 2, 12*us, 16*us, 0, 3883, "scim-bridge"),
		rec(bpfsc.KindFunc, 3, 0x22, 0x21, 0x21, 1, 1004*us, 1030*us, -111, 3611, "Xorg"),
		rec(bpfsc.KindFunc, 2, 0x13, 0x11, 0x10, 2, 20*us, 24*us, 5, 3883, "scim-bridge"),
		rec(bpfsc.KindSyscall, 42, 0x21, 0, 0x21, 0, 1000*us, 1035*us, -111, 3611, "Xorg"),
		rec(bpfsc.KindFunc, 0, 0x11, 0x10, 0x10, 1, 4*us, 28*us, 5, 3883, "scim-bridge"),
		rec(bpfsc.KindSyscall, 45, 0x10, 0, 0x10, 0, 0, 35*us, 5, 3883, "scim-bridge"),
	} {
		out = b.Add(r, out)
	}
	return out
}

func TestThreadIndentGolden(t *testing.T) {
	spans := seedLike(testBuilder())
	var sb strings.Builder
	c := NewThreadIndent()
	// Two batches, split inside a tree: trees wait for their root.
	if err := c.WriteSpans(&sb, spans[:3]); err != nil {
		t.Fatal(err)
	}
	if sb.Len() != 0 {
		t.Fatalf("printed before any root returned:\n%s", sb.String())
	}
	c.WriteSpans(&sb, spans[3:])
	c.End(&sb)
	golden(t, "thread_indent.golden", sb.String())
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// A tree whose root never comes (lost, or the thread still inside a call
// at shutdown) is printed at End; a bounded number of threads wait.
func TestThreadIndentBounds(t *testing.T) {
	b := testBuilder()
	c := &ThreadIndent{MaxThreads: 2, MaxSpans: 10}
	var sb strings.Builder
	for tid := uint32(1); tid <= 3; tid++ {
		c.WriteSpans(&sb, b.Add(rec(bpfsc.KindFunc, 0, uint64(tid)<<8|1, uint64(tid)<<8, uint64(tid)<<8, 1, 1, 2, 0, tid, "t"), nil))
	}
	if c.Dropped != 1 || len(c.pending) != 2 {
		t.Errorf("dropped %d pending %d, want 1 and 2", c.Dropped, len(c.pending))
	}
	c.End(&sb)
	if strings.Count(sb.String(), "-> __sys_recvfrom") != 2 {
		t.Errorf("End printed:\n%s", sb.String())
	}
}

func attrs(s pipelines.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attrs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestBuilderSpans(t *testing.T) {
	b := testBuilder()
	spans := seedLike(b)
	byName := map[string]pipelines.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	root, child, grand := byName["recvfrom"], byName["__sys_recvfrom"], byName["sock_recvmsg"]
	if root.ParentID.IsValid() || child.ParentID != root.SpanID || grand.ParentID != child.SpanID {
		t.Errorf("parents: root %v child %v->%v grand %v->%v", root.ParentID, child.ParentID, root.SpanID, grand.ParentID, child.SpanID)
	}
	if child.TraceID != root.TraceID || grand.TraceID != root.TraceID {
		t.Error("one root call must be one trace")
	}
	if byName["connect"].TraceID == root.TraceID {
		t.Error("two root calls share a trace without group_window")
	}
	if d := root.End.Sub(root.Start); d != 35*time.Microsecond {
		t.Errorf("root lasts %v, want 35µs", d)
	}
	a := attrs(root)
	for k, v := range map[string]string{"process.pid": "3800", "thread.id": "3883", "thread.name": "scim-bridge",
		"process.executable.name": "scim-bridge", "code.function.name": "recvfrom", "sockeye.return_value": "5",
		"sockeye.io.bytes": "5", "process.user.id": "1000"} {
		if a[k] != v {
			t.Errorf("%s = %q, want %q (%v)", k, a[k], v, a)
		}
	}
	refused := byName["connect"]
	if !refused.Error || refused.StatusMessage != "ECONNREFUSED" || attrs(refused)["error.type"] != "ECONNREFUSED" {
		t.Errorf("connect: error %v %q %v", refused.Error, refused.StatusMessage, attrs(refused))
	}
	if _, ok := attrs(refused)["sockeye.io.bytes"]; ok {
		t.Error("a failed call has no byte count")
	}
	if len(root.Resource) != 0 {
		t.Error("resource set without ProcessResource")
	}
	b.ProcessResource = true
	s := b.Add(rec(bpfsc.KindSyscall, 44, 0x30, 0, 0x30, 0, 1, 2, 0, 1, "curl"), nil)[0]
	res := map[string]string{}
	for _, kv := range s.Resource {
		res[string(kv.Key)] = kv.Value.Emit()
	}
	if res["service.name"] != "curl" || res["process.pid"] != "3800" {
		t.Errorf("process resource %v", res)
	}
}

func TestBuilderIDs(t *testing.T) {
	b1, b2 := testBuilder(), NewBuilder([3]uint64{4, 5, 6}, nil, 16)
	r := rec(bpfsc.KindSyscall, 44, 0x10, 0, 0x10, 0, 1, 2, 0, 1, "x")
	s1, s2 := b1.Add(r, nil)[0], b2.Add(r, nil)[0]
	if s1.SpanID == s2.SpanID || s1.TraceID == s2.TraceID {
		t.Error("ids do not depend on the salt: two agents would collide")
	}
	if !s1.SpanID.IsValid() || !s1.TraceID.IsValid() {
		t.Error("invalid ids")
	}
	// group_window: roots of a thread in one window share a trace.
	b1.GroupWindow = time.Second
	a := b1.Add(rec(bpfsc.KindSyscall, 44, 0x20, 0, 0x20, 0, 1e9+1, 1e9+2, 0, 1, "x"), nil)[0]
	c := b1.Add(rec(bpfsc.KindSyscall, 44, 0x21, 0, 0x21, 0, 1e9+5e8, 1e9+6e8, 0, 1, "x"), nil)[0]
	d := b1.Add(rec(bpfsc.KindSyscall, 44, 0x22, 0, 0x22, 0, 2e9+1, 2e9+2, 0, 1, "x"), nil)[0]
	e := b1.Add(rec(bpfsc.KindSyscall, 44, 0x23, 0, 0x23, 0, 1e9+7e8, 1e9+8e8, 0, 2, "x"), nil)[0]
	if a.TraceID != c.TraceID || a.TraceID == d.TraceID || a.TraceID == e.TraceID {
		t.Error("group_window: want one trace per thread and window")
	}
	if a.SpanID == c.SpanID {
		t.Error("span ids collide")
	}
}

func TestBuilderEventsAndIncomplete(t *testing.T) {
	b := testBuilder()
	ev := rec(bpfsc.KindEvent, 1, 0, 0x10, 0x10, 1, 5, 5, 5, 7, "x")
	var out []pipelines.Span
	out = b.Add(ev, out)
	if len(out) != 0 || b.Pending() != 1 {
		t.Fatal("an event waits for its span")
	}
	inc := rec(bpfsc.KindFunc, 0, 0x11, 0x10, 0x10, 1, 2, 3, 0, 7, "x")
	inc.Flags = bpfsc.FlagIncomplete
	out = b.Add(inc, out)
	out = b.Add(rec(bpfsc.KindSyscall, 44, 0x10, 0, 0x10, 0, 1, 9, 5, 7, "x"), out)
	if len(out[1].Events) != 1 || out[1].Events[0].Name != "sock:sock_send_length" || b.Pending() != 0 {
		t.Errorf("events %v pending %d", out[1].Events, b.Pending())
	}
	if a := attrs(out[0]); a["sockeye.span.incomplete"] != "true" || !out[0].Error {
		t.Errorf("incomplete span: %v", a)
	}
	// Bounded: events of spans that never come are dropped, counted.
	for i := range 40 {
		b.Add(rec(bpfsc.KindEvent, 1, 0, uint64(0x100+i), 0x100, 1, 5, 5, 5, 7, "x"), nil)
	}
	if b.Pending() != 16 || b.Orphaned != 24 {
		t.Errorf("pending %d orphaned %d, want 16 and 24", b.Pending(), b.Orphaned)
	}
}

func TestSockAttrs(t *testing.T) {
	b := testBuilder()
	r := rec(bpfsc.KindSyscall, 288, 0x10, 0, 0x10, 0, 1, 2, 7, 1, "x")
	r.Flags = bpfsc.FlagSock | bpfsc.FlagFD
	r.Fd, r.Family, r.Protocol, r.SockType, r.Lport, r.Rport = 7, 2, 6, 1, 8080, 40000
	copy(r.Laddr[:], []byte{127, 0, 0, 1})
	copy(r.Raddr[:], []byte{127, 0, 0, 2})
	a := attrs(b.Add(r, nil)[0])
	for k, v := range map[string]string{"sockeye.socket.fd": "7", "sockeye.socket.family": "AF_INET", "sockeye.socket.type": "SOCK_STREAM",
		"network.transport": "tcp", "network.type": "ipv4", "network.local.address": "127.0.0.1", "network.local.port": "8080",
		"network.peer.address": "127.0.0.2", "network.peer.port": "40000"} {
		if a[k] != v {
			t.Errorf("%s = %q, want %q", k, a[k], v)
		}
	}
}

func TestErrnoName(t *testing.T) {
	for ret, want := range map[int64]string{-111: "ECONNREFUSED", -11: "EAGAIN", -512: "ERESTARTSYS", -4000: "E4000"} {
		if got, ok := ErrnoName(ret); !ok || got != want {
			t.Errorf("%d: %q, want %q", ret, got, want)
		}
	}
	for _, ret := range []int64{0, 5, -4096, -0x7777000000000000} {
		if _, ok := ErrnoName(ret); ok {
			t.Errorf("%d is not an errno", ret)
		}
	}
}
