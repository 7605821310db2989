package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/sockeye/sockeye/pipelines"
)

type rowFormat struct{}

func (rowFormat) Begin(w io.Writer) error { _, err := io.WriteString(w, "HEADER\n"); return err }
func (rowFormat) End(io.Writer) error     { return nil }
func (rowFormat) WriteLog(w io.Writer, r *pipelines.LogRecord) error {
	_, err := fmt.Fprintf(w, "%s\n", r.Body)
	return err
}

type tableFormat struct{}

func (tableFormat) Begin(io.Writer) error { return nil }
func (tableFormat) End(io.Writer) error   { return nil }
func (tableFormat) Write(w io.Writer, _ *pipelines.Batch) error {
	_, err := io.WriteString(w, "TABLE\n")
	return err
}

// TestLogsKeepOrder checks that log rows are held until FlushLogs, yet
// come out before a metrics table written after them.
func TestLogsKeepOrder(t *testing.T) {
	var b bytes.Buffer
	e := New("console", &b)
	ctx := context.Background()
	if err := e.BeginLogs("logs", rowFormat{}); err != nil {
		t.Fatal(err)
	}
	e.ExportLog(ctx, &pipelines.LogRecord{Body: "one", Console: rowFormat{}})
	if b.String() != "HEADER\n" {
		t.Errorf("before flush: %q", b.String())
	}
	e.ExportLog(ctx, &pipelines.LogRecord{Body: "two", Console: rowFormat{}})
	e.ExportMetrics(ctx, &pipelines.Batch{Console: tableFormat{}})
	e.ExportLog(ctx, &pipelines.LogRecord{Body: "three", Console: rowFormat{}})
	e.ExportLog(ctx, &pipelines.LogRecord{Body: "no console"})
	if err := e.FlushLogs(); err != nil {
		t.Fatal(err)
	}
	if want := "HEADER\none\ntwo\nTABLE\nthree\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
