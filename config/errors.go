package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a configuration. Parse and Load return
// several of them joined with errors.Join; Errors splits them again.
type Error struct {
	File string // file name, or "<embedded default>"
	Line int    // 1-based; 0 when unknown
	Key  string // key path such as "exporters.otlp/ship.timeout"; may be empty
	Msg  string
}

// Error formats as "FILE:LINE: KEY.PATH: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors returns every *Error contained in err, in order; it looks through
// errors.Join and %w wrapping.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// joinErrors sorts errs by line (keeping discovery order within a line) so a
// reader can walk the file top to bottom, and joins them.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
