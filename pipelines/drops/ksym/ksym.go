// Package ksym turns kernel text addresses into function names through
// /proc/kallsyms, the way SystemTap's symname() does for dropwatch.stp:
// one sorted table, binary search, reloaded when the set of loaded modules
// changes.
package ksym

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Default paths of the kernel's symbol and module lists.
const (
	KallsymsPath = "/proc/kallsyms"
	ModulesPath  = "/proc/modules"
)

// MaxOffset bounds how far past a symbol's start an address may be and still
// be attributed to it. Kernel functions are far smaller; an address further
// away lies in a gap (past the kernel's text, or in a module loaded after
// the table was read) and is better shown raw than blamed on a neighbour.
const MaxOffset = 1 << 20

// Symbol is a resolved address.
type Symbol struct {
	Name   string
	Module string // "" for the kernel itself
	Offset uint64
}

// Function is "name", or "name [module]" for a module's symbol.
func (s Symbol) Function() string {
	if s.Module == "" {
		return s.Name
	}
	return s.Name + " [" + s.Module + "]"
}

// WithOffset is "name+0x1f", or "name+0x1f [module]".
func (s Symbol) WithOffset() string {
	n := s.Name + "+0x" + strconv.FormatUint(s.Offset, 16)
	if s.Module == "" {
		return n
	}
	return n + " [" + s.Module + "]"
}

// Raw is how an address without a symbol is shown, as symname() shows it.
func Raw(addr uint64) string { return "0x" + strconv.FormatUint(addr, 16) }

// entry is one symbol; names live in Table.names so the table holds no
// pointers for the garbage collector to scan.
type entry struct {
	addr uint64
	off  uint32 // start of the name in Table.names
	n    uint16 // name length (KSYM_NAME_LEN is 512)
	mod  uint16 // index in Table.modules; 0 is the kernel
}

// Table is a sorted snapshot of the kernel's text symbols.
type Table struct {
	entries []entry
	names   string
	modules []string
	lines   int
}

// Parse reads a kallsyms listing ("ffffffff81000000 T _text", module
// symbols followed by "\t[module]"). Only text symbols are kept: drop
// locations are code addresses. Where every address is zero (kptr_restrict,
// no CAP_SYSLOG), the table is empty and Hidden reports it.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{modules: []string{""}}
	modIndex := map[string]uint16{"": 0}
	var names strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		t.lines++
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || len(line) < sp+4 || line[sp+2] != ' ' {
			return nil, fmt.Errorf("kallsyms line %d: malformed %q", t.lines, line)
		}
		addr, err := strconv.ParseUint(string(line[:sp]), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %d: address: %w", t.lines, err)
		}
		switch line[sp+1] {
		case 't', 'T', 'w', 'W':
		default:
			continue
		}
		if addr == 0 {
			continue
		}
		rest := line[sp+3:]
		name, mod := rest, []byte(nil)
		if tab := bytes.IndexByte(rest, '\t'); tab >= 0 {
			name = rest[:tab]
			mod = bytes.TrimSuffix(bytes.TrimPrefix(bytes.TrimSpace(rest[tab+1:]), []byte("[")), []byte("]"))
		}
		if len(name) == 0 || len(name) > 0xffff {
			continue
		}
		mi, ok := modIndex[string(mod)]
		if !ok {
			if len(t.modules) > 0xffff {
				return nil, fmt.Errorf("kallsyms: more than %d modules", 0xffff)
			}
			mi = uint16(len(t.modules))
			modIndex[string(mod)] = mi
			t.modules = append(t.modules, string(mod))
		}
		t.entries = append(t.entries, entry{addr: addr, off: uint32(names.Len()), n: uint16(len(name)), mod: mi})
		names.Write(name)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kallsyms: %w", err)
	}
	t.names = names.String()
	// Aliases share an address; the first listed wins, as in the kernel's
	// own lookup of the core kernel's symbols.
	slices.SortStableFunc(t.entries, func(a, b entry) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	t.entries = slices.CompactFunc(t.entries, func(a, b entry) bool { return a.addr == b.addr })
	return t, nil
}

// Load parses the kallsyms file at path.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Hidden reports a listing whose addresses are all zero: the kernel hides
// them from this process.
func (t *Table) Hidden() bool { return t.lines > 0 && len(t.entries) == 0 }

// Len is the number of symbols in the table.
func (t *Table) Len() int { return len(t.entries) }

// Lookup finds the symbol addr lies in: the last one starting at or below
// it, no further than MaxOffset.
func (t *Table) Lookup(addr uint64) (Symbol, bool) {
	i, found := slices.BinarySearchFunc(t.entries, addr, func(e entry, a uint64) int {
		switch {
		case e.addr < a:
			return -1
		case e.addr > a:
			return 1
		}
		return 0
	})
	if !found {
		i-- // the symbol before the insertion point
	}
	if i < 0 {
		return Symbol{}, false
	}
	e := t.entries[i]
	if addr-e.addr > MaxOffset {
		return Symbol{}, false
	}
	return Symbol{
		Name:   t.names[e.off : e.off+uint32(e.n)],
		Module: t.modules[e.mod],
		Offset: addr - e.addr,
	}, true
}

// HiddenReason says why the kernel hides its addresses, for the log.
func HiddenReason() string {
	restrict := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/kptr_restrict"); err == nil {
		restrict = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("kernel.kptr_restrict=%s: reading kernel addresses needs CAP_SYSLOG (and kptr_restrict below 2)", restrict)
}
