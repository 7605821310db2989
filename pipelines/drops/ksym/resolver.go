package ksym

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
)

// Resolver keeps a Table current: Refresh reloads it when the loaded
// modules change, which is the only time kernel text symbols move.
type Resolver struct {
	kallsyms, modules string
	table             *Table
	// modSig is the module list as names and load addresses; the other
	// columns of /proc/modules (reference counts) change without any
	// symbol moving.
	modSig []byte
}

// NewResolver loads kallsymsPath now; modulesPath is checked by Refresh
// (a kernel without modules has no /proc/modules and is never reloaded).
func NewResolver(kallsymsPath, modulesPath string) (*Resolver, error) {
	r := &Resolver{kallsyms: kallsymsPath, modules: modulesPath}
	sig, err := r.signature()
	if err != nil {
		return nil, err
	}
	t, err := Load(kallsymsPath)
	if err != nil {
		return nil, err
	}
	r.table, r.modSig = t, sig
	return r, nil
}

// Table is the current table.
func (r *Resolver) Table() *Table { return r.table }

// Lookup resolves addr in the current table.
func (r *Resolver) Lookup(addr uint64) (Symbol, bool) { return r.table.Lookup(addr) }

// Refresh reloads the table if the module list changed since the last
// load, and reports whether it did. Reading /proc/modules is cheap; the
// table itself is read only when needed.
func (r *Resolver) Refresh() (bool, error) {
	sig, err := r.signature()
	if err != nil {
		return false, err
	}
	if bytes.Equal(sig, r.modSig) {
		return false, nil
	}
	t, err := Load(r.kallsyms)
	if err != nil {
		// Keep the old table, and remember the new list so one change is
		// reported once: without CAP_SYSLOG (drop_capabilities) the module
		// addresses read as zero and would look changed at every refresh.
		r.modSig = sig
		return false, err
	}
	r.table, r.modSig = t, sig
	return true, nil
}

// signature is the first and sixth column (name, address) of each line of
// the module list, or nil when the kernel has none.
func (r *Resolver) signature() ([]byte, error) {
	b, err := os.ReadFile(r.modules)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var sig []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		sig = append(sig, f[0]...)
		if len(f) >= 6 {
			sig = append(sig, ' ')
			sig = append(sig, f[5]...)
		}
		sig = append(sig, '\n')
	}
	return sig, sc.Err()
}
