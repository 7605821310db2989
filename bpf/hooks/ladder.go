package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Rung names, best first. A source lists the ones it implements.
const (
	Fentry        = "fentry"
	Kprobe        = "kprobe"
	TpBTF         = "tp_btf"
	RawTracepoint = "raw_tracepoint"
	Tracepoint    = "tracepoint"
	Auto          = "auto"
)

// Rung is one way of attaching a source.
type Rung[T any] struct {
	Name string
	// Try loads and attaches; on error it must leave nothing attached.
	Try func() (T, error)
}

// Attempt records why a rung was not used.
type Attempt struct {
	Rung string
	Err  error
}

// ClimbError says why no rung could be used.
type ClimbError struct {
	Source   string
	Attempts []Attempt
}

func (e *ClimbError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: no hook rung works on this kernel", e.Source)
	for _, a := range e.Attempts {
		fmt.Fprintf(&b, "; %s: %v", a.Rung, a.Err)
	}
	return b.String()
}

func (e *ClimbError) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts))
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}

// Climb tries rungs best first and returns the first that works, or, when
// pinned names one, only that one. The log says which rung runs and why the
// better ones did not.
func Climb[T any](source, pinned string, rungs []Rung[T], log *slog.Logger) (T, string, error) {
	var zero T
	var attempts []Attempt
	known := make([]string, 0, len(rungs))
	for _, r := range rungs {
		known = append(known, r.Name)
		if pinned != "" && pinned != Auto && pinned != r.Name {
			continue
		}
		v, err := r.Try()
		if err == nil {
			for _, a := range attempts {
				log.Info("hook rung skipped", "rung", a.Rung, "reason", a.Err)
			}
			log.Info("hook rung chosen", "rung", r.Name)
			return v, r.Name, nil
		}
		attempts = append(attempts, Attempt{Rung: r.Name, Err: explain(r.Name, err)})
	}
	if len(attempts) == 0 {
		return zero, "", fmt.Errorf("%s: hook %q is not one of %s", source, pinned, strings.Join(known, ", "))
	}
	return zero, "", &ClimbError{Source: source, Attempts: attempts}
}

// ErrMissing marks a rung that cannot work because the kernel lacks a
// function or tracepoint it needs.
var ErrMissing = errors.New("not in this kernel")
