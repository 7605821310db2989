package ksym

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockeye/sockeye/internal/testenv"
)

func load(t *testing.T, name string) *Table {
	t.Helper()
	tb, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestLookupSynthetic(t *testing.T) {
	tb := load(t, "kallsyms")
	if tb.Hidden() {
		t.Fatal("synthetic table reported hidden")
	}
	cases := []struct {
		addr       uint64
		ok         bool
		function   string
		withOffset string
	}{
		{0xffffffff80ffffff, false, "", ""},                                            // below the first symbol
		{0xffffffff81000000, true, "_text", "_text+0x0"},                               // first symbol; its alias _stext loses
		{0xffffffff810000ff, true, "_text", "_text+0xff"},                              // just before the next
		{0xffffffff81000110, true, "first_func", "first_func+0x0"},                     // exact start
		{0xffffffff81000250, true, "first_func", "first_func+0x140"},                   // data symbols are skipped
		{0xffffffff81000301, true, "weak_func", "weak_func+0x1"},                       // weak symbols count
		{0xffffffff8149a8ed, true, "unix_stream_recvmsg", "unix_stream_recvmsg+0x30d"}, // the seed's example
		{0xffffffff81700000 + 0x20, true, "last_core_func", "last_core_func+0x20"},
		{0xffffffff81700000 + MaxOffset + 1, false, "", ""}, // in the gap before modules
		{0xffffffffc0a01010, true, "tun_do_read [tun]", "tun_do_read+0x10 [tun]"},
		{0xffffffffc0a01400, true, "tun_get_socket [tun]", "tun_get_socket+0x0 [tun]"},
		{0xffffffffc0b00810, true, "ovs_last [openvswitch]", "ovs_last+0x10 [openvswitch]"}, // last symbol
		{0xffffffffffffffff, false, "", ""},
	}
	for _, c := range cases {
		s, ok := tb.Lookup(c.addr)
		if ok != c.ok || (ok && (s.Function() != c.function || s.WithOffset() != c.withOffset)) {
			t.Errorf("Lookup(%#x) = %q %q %v; want %q %q %v", c.addr, s.Function(), s.WithOffset(), ok, c.function, c.withOffset, c.ok)
		}
	}
	if got := Raw(0xffffffff8149a8ed); got != "0xffffffff8149a8ed" {
		t.Errorf("Raw = %q", got)
	}
}

func TestHidden(t *testing.T) {
	tb := load(t, "kallsyms-hidden")
	if !tb.Hidden() {
		t.Fatal("all-zero listing not reported hidden")
	}
	if _, ok := tb.Lookup(0xffffffff8149a8ed); ok {
		t.Error("hidden table resolved an address")
	}
	empty, err := Parse(strings.NewReader(""))
	if err != nil || empty.Hidden() {
		t.Errorf("empty listing: hidden %v, %v", empty.Hidden(), err)
	}
	if !strings.Contains(HiddenReason(), "kptr_restrict") {
		t.Errorf("HiddenReason = %q", HiddenReason())
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"zzzz T x\n", "ffffffff81000000\n", "ffffffff81000000 Tx\n"} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
}

func TestResolverRefresh(t *testing.T) {
	dir := t.TempDir()
	kall := filepath.Join(dir, "kallsyms")
	mods := filepath.Join(dir, "modules")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(kall, "ffffffff81000000 T core\n")
	write(mods, "tun 61440 0 - Live 0xffffffffc0a00000\n")
	r, err := NewResolver(kall, mods)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := r.Lookup(0xffffffff81000010); s.Function() != "core" {
		t.Fatalf("got %q", s.Function())
	}
	// A reference count changes: no symbol moved, no reload.
	write(kall, "ffffffff81000000 T core\nffffffffc0b00000 t ovs_x\t[openvswitch]\n")
	write(mods, "tun 61440 3 - Live 0xffffffffc0a00000\n")
	if reloaded, err := r.Refresh(); err != nil || reloaded {
		t.Fatalf("refcount change: reloaded %v, %v", reloaded, err)
	}
	if _, ok := r.Lookup(0xffffffffc0b00010); ok {
		t.Fatal("table changed without a reload")
	}
	// A module is loaded: reload.
	write(mods, "openvswitch 200000 0 - Live 0xffffffffc0b00000\ntun 61440 3 - Live 0xffffffffc0a00000\n")
	if reloaded, err := r.Refresh(); err != nil || !reloaded {
		t.Fatalf("module load: reloaded %v, %v", reloaded, err)
	}
	if s, ok := r.Lookup(0xffffffffc0b00010); !ok || s.Function() != "ovs_x [openvswitch]" {
		t.Fatalf("after reload: %q %v", s.Function(), ok)
	}
	// No module support at all: never reloads.
	r2, err := NewResolver(kall, filepath.Join(dir, "absent"))
	if err != nil {
		t.Fatal(err)
	}
	if reloaded, err := r2.Refresh(); err != nil || reloaded {
		t.Fatalf("no /proc/modules: reloaded %v, %v", reloaded, err)
	}
}

// TestRealKallsyms resolves addresses taken from the running kernel's own
// listing back to their names.
func TestRealKallsyms(t *testing.T) {
	testenv.RequireRoot(t)
	r, err := NewResolver(KallsymsPath, ModulesPath)
	if err != nil {
		t.Fatal(err)
	}
	tb := r.Table()
	if tb.Hidden() {
		t.Fatalf("/proc/kallsyms hides addresses from root: %s", HiddenReason())
	}
	f, err := os.Open(KallsymsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]uint64{"tcp_v4_rcv": 0, "nf_hook_slow": 0, "kfree_skb_reason": 0, "sk_skb_reason_drop": 0}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 3 && (fs[1] == "T" || fs[1] == "t") {
			if _, ok := want[fs[2]]; ok {
				want[fs[2]], _ = strconv.ParseUint(fs[0], 16, 64)
			}
		}
	}
	found := 0
	for name, addr := range want {
		if addr == 0 {
			continue // not in this kernel (or inlined)
		}
		found++
		s, ok := tb.Lookup(addr + 3)
		if !ok || s.Name != name || s.Offset != 3 || s.Module != "" {
			t.Errorf("Lookup(%s+3 = %#x) = %+v, %v", name, addr+3, s, ok)
		}
	}
	if found == 0 {
		t.Fatal("none of the expected symbols found in /proc/kallsyms")
	}
	t.Logf("%d text symbols", tb.Len())
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := Load(KallsymsPath); err != nil {
			b.Fatal(err)
		}
	}
}
