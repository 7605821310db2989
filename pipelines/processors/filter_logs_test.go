package processors

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

func TestFilterLogs(t *testing.T) {
	f := NewFilter("filter", &config.FilterProcessor{
		Include: &config.Match{Commands: []string{"nginx", "sshd"}},
		Exclude: &config.Match{UIDs: []int{0}},
	})
	rec := func(comm string, uid int) *pipelines.LogRecord {
		return &pipelines.LogRecord{Attrs: []attribute.KeyValue{
			attribute.Int("process.pid", 10), attribute.String("process.executable.name", comm), attribute.Int("process.user.id", uid),
		}}
	}
	for _, tt := range []struct {
		comm string
		uid  int
		keep bool
	}{
		{"nginx", 33, true},
		{"nginx", 0, false},
		{"curl", 33, false},
		{"sshd", 1000, true},
	} {
		if got := f.ProcessLog(rec(tt.comm, tt.uid)); got != tt.keep {
			t.Errorf("%s uid %d: kept %v, want %v", tt.comm, tt.uid, got, tt.keep)
		}
	}
}
