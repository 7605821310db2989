package config

import (
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	f.Add([]byte(fullYAML))
	f.Add([]byte("sources: &x [*x]\npipelines: {metrics: {sources: *x}}\n"))
	f.Add([]byte("exporters: {otlp: {endpoint: \"${env:H:-[::1]:4317}\", headers: {a: $$}}}\n"))
	f.Add([]byte("pipelines:\n  metrics:\n    <<: {sources: [traffic]}\n---\nx: 1\n"))
	f.Add([]byte("\t- : {"))
	env := envMap(map[string]string{"H": "host:4317", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/p"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", env)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned along with an error")
			}
			if len(Errors(err)) == 0 {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		if len(cfg.Pipelines) == 0 {
			t.Fatal("valid config without pipelines")
		}
	})
}
