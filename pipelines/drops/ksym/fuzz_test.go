package ksym

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds kallsyms-like text to the parser and looks an address
// up: nothing may panic, a lookup never lands further than MaxOffset past
// a symbol, and every symbol found starts where the table says.
func FuzzParse(f *testing.F) {
	real, err := os.ReadFile(filepath.Join("testdata", "kallsyms"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(real), uint64(0xffffffff8149a5f3))
	f.Add("0000000000000000 T _text\n0000000000000000 t tun_do_read\t[tun]\n", uint64(0))
	f.Add("ffffffffc0a01000 t tun_do_read\t[tun\nffffffffc0a01000 W x\t\n", uint64(0xffffffffc0a01001))
	f.Add("ffffffff81000000 T \n1 T a\n", uint64(1<<20+1))
	f.Add("zzzz T x\n", uint64(7))
	f.Fuzz(func(t *testing.T, text string, addr uint64) {
		tb, err := Parse(strings.NewReader(text))
		if err != nil {
			if tb != nil {
				t.Fatal("table returned along with an error")
			}
			return
		}
		if tb.Len() > strings.Count(text, "\n")+1 {
			t.Fatalf("%d symbols from %d lines", tb.Len(), strings.Count(text, "\n")+1)
		}
		for i := 1; i < len(tb.entries); i++ {
			if tb.entries[i-1].addr >= tb.entries[i].addr {
				t.Fatalf("entries out of order at %d", i)
			}
		}
		sym, ok := tb.Lookup(addr)
		if !ok {
			return
		}
		if sym.Name == "" || sym.Offset > MaxOffset || strings.ContainsAny(sym.Name, "\n\t") {
			t.Fatalf("lookup of %#x: %+v", addr, sym)
		}
		if at, ok := tb.Lookup(addr - sym.Offset); !ok || at.Offset != 0 || at.Name != sym.Name || at.Module != sym.Module {
			t.Fatalf("%#x is %+v, but its start %#x is %+v", addr, sym, addr-sym.Offset, at)
		}
		_ = sym.Function() + sym.WithOffset()
	})
}
