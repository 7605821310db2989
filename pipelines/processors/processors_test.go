package processors

import (
	"reflect"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

func row(pid int, comm string, uid int, dev string, vals ...int64) pipelines.Row {
	return pipelines.Row{Attrs: []attribute.KeyValue{
		KeyPID.Int(pid), KeyCommand.String(comm), KeyUID.Int(uid), KeyDevice.String(dev),
	}, Values: vals}
}

func batch() *pipelines.Batch {
	return &pipelines.Batch{Rows: []pipelines.Row{
		row(1, "sshd", 0, "eth0", 1, 2),
		row(2, "curl", 1000, "eth0", 3, 4),
		row(3, "curl", 1000, "lo", 5, 6),
		row(0, "swapper", 0, "eth0", 7, 8),
	}}
}

func pids(b *pipelines.Batch) []int64 {
	var out []int64
	for _, r := range b.Rows {
		for _, kv := range r.Attrs {
			if kv.Key == KeyPID {
				out = append(out, kv.Value.AsInt64())
			}
		}
	}
	return out
}

func TestFilter(t *testing.T) {
	cases := []struct {
		name string
		cfg  config.FilterProcessor
		want []int64
	}{
		{"include command", config.FilterProcessor{Include: &config.Match{Commands: []string{"curl"}}}, []int64{2, 3}},
		{"exclude pid", config.FilterProcessor{Exclude: &config.Match{PIDs: []int{0, 1}}}, []int64{2, 3}},
		{"include uid", config.FilterProcessor{Include: &config.Match{UIDs: []int{0}}}, []int64{1, 0}},
		{"exclude device", config.FilterProcessor{Exclude: &config.Match{Devices: []string{"lo"}}}, []int64{1, 2, 0}},
		{"include and exclude", config.FilterProcessor{
			Include: &config.Match{Devices: []string{"eth0"}},
			Exclude: &config.Match{Commands: []string{"swapper"}},
		}, []int64{1, 2}},
		{"include matches nothing", config.FilterProcessor{Include: &config.Match{PIDs: []int{99}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := pids(NewFilter("filter", &c.cfg).Process(batch()))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("kept pids %v, want %v", got, c.want)
			}
		})
	}
}

func TestAttributesDropMerges(t *testing.T) {
	b := NewAttributes("attributes", &config.AttributesProcessor{Drop: []string{"process.pid", "network.interface.name"}}).Process(batch())
	if len(b.Rows) != 3 {
		t.Fatalf("got %d rows, want 3 (the two curl rows merge): %+v", len(b.Rows), b.Rows)
	}
	for _, r := range b.Rows {
		for _, kv := range r.Attrs {
			if kv.Key == KeyPID || kv.Key == KeyDevice {
				t.Errorf("attribute %s kept", kv.Key)
			}
		}
		set := attribute.NewSet(r.Attrs...)
		if v, _ := set.Value(KeyCommand); v.AsString() == "curl" {
			if !reflect.DeepEqual(r.Values, []int64{8, 10}) {
				t.Errorf("merged curl values %v, want [8 10]", r.Values)
			}
		}
	}
}

func TestAttributesKeep(t *testing.T) {
	in := batch()
	in.Rows[1].Final = true
	in.Rows[2].Final = true
	in.Rows[0].Final = true
	b := NewAttributes("attributes", &config.AttributesProcessor{Keep: []string{"process.user.id"}}).Process(in)
	if len(b.Rows) != 2 {
		t.Fatalf("got %d rows, want 2 (uid 0 and uid 1000)", len(b.Rows))
	}
	for _, r := range b.Rows {
		if len(r.Attrs) != 1 || r.Attrs[0].Key != KeyUID {
			t.Errorf("attrs %v, want only process.user.id", r.Attrs)
		}
		uid := r.Attrs[0].Value.AsInt64()
		// uid 1000 rows were both final; uid 0 merges a final and a live row.
		if uid == 1000 && !r.Final {
			t.Error("uid 1000: all parts final, merged row not final")
		}
		if uid == 0 && r.Final {
			t.Error("uid 0: a live part, merged row final")
		}
	}
}
