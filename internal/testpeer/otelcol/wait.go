package otelcol

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// pollInterval is how often Wait* re-read the exporter files; it matches the
// exporter's flush interval.
const pollInterval = 100 * time.Millisecond

// WaitMetric polls until a metric point satisfies match and returns it. On
// timeout, or if the collector dies, it fails the test with a summary of the
// points seen. Like t.Fatal, call it from the test goroutine.
func (c *Collector) WaitMetric(t testing.TB, timeout time.Duration, match func(MetricPoint) bool) MetricPoint {
	t.Helper()
	return waitFor(t, c, timeout, "metric point", c.Metrics, match, func(p MetricPoint) string { return p.Name })
}

// WaitLog polls until a log record satisfies match; see WaitMetric.
func (c *Collector) WaitLog(t testing.TB, timeout time.Duration, match func(LogRecord) bool) LogRecord {
	t.Helper()
	return waitFor(t, c, timeout, "log record", c.Logs, match, func(r LogRecord) string {
		if r.EventName != "" {
			return r.EventName
		}
		return "body:" + r.Body
	})
}

// WaitSpan polls until a span satisfies match; see WaitMetric.
func (c *Collector) WaitSpan(t testing.TB, timeout time.Duration, match func(Span) bool) Span {
	t.Helper()
	return waitFor(t, c, timeout, "span", c.Spans, match, func(s Span) string { return s.Name })
}

func waitFor[T fmt.Stringer](t testing.TB, c *Collector, timeout time.Duration, what string,
	read func() ([]T, error), match func(T) bool, name func(T) string) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		seen    []T
		readErr error
	)
	for {
		// Check exit before reading so a final flush is still considered.
		exited, exitErr := c.Exited()
		items, err := read()
		if err != nil {
			readErr = err
		} else {
			seen, readErr = items, nil
			for _, it := range items {
				if match(it) {
					return it
				}
			}
		}
		if exited {
			t.Fatalf("otelcol: collector exited (%v) before a matching %s arrived\n%s\ncollector output:\n%s",
				exitErr, what, summarize(what, seen, readErr, name), tail(c.Output(), 16<<10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("otelcol: no matching %s within %v\n%s\ncollector output:\n%s",
				what, timeout, summarize(what, seen, readErr, name), tail(c.Output(), 16<<10))
		}
		time.Sleep(pollInterval)
	}
}

func summarize[T fmt.Stringer](what string, items []T, readErr error, name func(T) string) string {
	var b strings.Builder
	if readErr != nil {
		fmt.Fprintf(&b, "last read failed: %v\n", readErr)
	}
	fmt.Fprintf(&b, "%d %s(s) received", len(items), what)
	if len(items) == 0 {
		return b.String()
	}
	counts := map[string]int{}
	for _, it := range items {
		counts[name(it)]++
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("; names seen:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s (x%d)\n", n, counts[n])
	}
	const last = 20
	start := max(0, len(items)-last)
	fmt.Fprintf(&b, "last %d:\n", len(items)-start)
	for _, it := range items[start:] {
		fmt.Fprintf(&b, "  %s\n", it)
	}
	return b.String()
}
