package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is Config.Path for the embedded default configuration.
const DefaultPath = "<embedded default>"

// DefaultYAML is the configuration used when none is given.
//
//go:embed default.yaml
var DefaultYAML []byte

// Default parses DefaultYAML.
func Default(env func(string) string) (*Config, error) {
	return Parse(DefaultYAML, DefaultPath, env)
}

// Load reads and parses the configuration file at path. env reads
// environment variables (os.Getenv in production).
func Load(path string, env func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(data, path, env)
}

// Parse parses and validates a configuration; path is only used in
// messages. env reads environment variables for ${env:NAME} references and
// the OTEL_* exporter variables; nil means an empty environment. All
// problems found are returned together, each an *Error (see Errors).
func Parse(data []byte, path string, env func(string) string) (*Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	d := &decoder{file: path, env: env, reported: map[string]bool{}}
	root := d.document(data)
	if root == nil {
		return nil, joinErrors(d.errs)
	}
	cfg := d.config(root)
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// syntaxError turns a yaml error into an *Error, keeping its line.
func (d *decoder) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	// yaml reports most problems as "yaml: line N: message".
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				d.errorf(line, "", "YAML syntax error: %s", text)
				return
			}
		}
	}
	d.errorf(anchorLine(data, msg), "", "YAML syntax error: %s", msg)
}

// anchorLine finds the line of the first use of the alias named in yaml's
// "unknown anchor 'NAME' referenced", which carries no line; 0 otherwise.
func anchorLine(data []byte, msg string) int {
	name, ok := strings.CutPrefix(msg, "unknown anchor '")
	if !ok {
		return 0
	}
	name, ok = strings.CutSuffix(name, "' referenced")
	if !ok {
		return 0
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "*"+name) {
			return i + 1
		}
	}
	return 0
}

// document parses data as exactly one YAML document and returns its root
// node, or nil after recording why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(1, "", "the configuration is empty (want at least one pipeline)")
		} else {
			d.syntaxError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorf(next.Line, "", "a second YAML document (---) is not supported")
		return nil
	case !errors.Is(err, io.EOF):
		d.syntaxError(data, err)
		return nil
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		line := doc.Line
		if len(doc.Content) > 0 {
			line = doc.Content[0].Line
		}
		d.errorf(max(line, 1), "", "the configuration is empty (want at least one pipeline)")
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) config(root *yaml.Node) *Config {
	f := d.fields(root, "", root.Line,
		"sources", "processors", "exporters", "pipelines", "resource", "btf", "log", "health", "drop_capabilities")
	cfg := &Config{Path: d.file}

	declared := [3]map[string]bool{{}, {}, {}}
	srcKinds, procKinds, expKinds := sourceKinds(), processorKinds(), exporterKinds()
	var sectionOK [3]bool
	cfg.Sources, sectionOK[0] = decodeSection(d, f.get("sources"), "sources", "source", srcKinds,
		func(id ID, pos Pos) *Source { return &Source{ID: id, Pos: pos} }, declared[0])
	cfg.Processors, sectionOK[1] = decodeSection(d, f.get("processors"), "processors", "processor", procKinds,
		func(id ID, pos Pos) *Processor { return &Processor{ID: id, Pos: pos} }, declared[1])
	cfg.Exporters, sectionOK[2] = decodeSection(d, f.get("exporters"), "exporters", "exporter", expKinds,
		func(id ID, pos Pos) *Exporter { return &Exporter{ID: id, Pos: pos} }, declared[2])

	cfg.Resource, _ = d.strMap(f.get("resource"), "resource")
	cfg.BTF, _ = d.str(f.get("btf"), "btf")
	cfg.Log = d.log(f)
	cfg.Health = d.health(f)
	cfg.DropCapabilities, _ = d.boolean(f.get("drop_capabilities"), "drop_capabilities")

	sets := [3]refSet{
		{key: "sources", noun: "source", verb: "emits", required: true,
			defined: idSet(cfg.Sources), declared: declared[0], broken: !sectionOK[0],
			signals: func(t string) []Signal { return srcKinds[t].signals }},
		{key: "processors", noun: "processor", verb: "handles",
			defined: idSet(cfg.Processors), declared: declared[1], broken: !sectionOK[1],
			signals: func(t string) []Signal { return procKinds[t].signals }},
		{key: "exporters", noun: "exporter", verb: "accepts", required: true,
			defined: idSet(cfg.Exporters), declared: declared[2], broken: !sectionOK[2],
			signals: func(t string) []Signal { return expKinds[t].signals }},
	}
	if _, ok := f.m["pipelines"]; ok {
		cfg.Pipelines = d.pipelines(f.get("pipelines"), f.keyLine("pipelines"), sets)
	} else {
		d.errorf(root.Line, "pipelines", "missing: at least one pipeline is required")
	}
	return cfg
}

func (d *decoder) health(parent fields) Health {
	f := d.fields(parent.get("health"), "health", parent.keyLine("health"), "endpoint")
	ep, ok := d.str(f.get("endpoint"), "health.endpoint")
	if !ok {
		return Health{}
	}
	if _, _, err := net.SplitHostPort(ep); err != nil {
		d.errorf(f.keyLine("endpoint"), "health.endpoint", "want host:port (e.g. localhost:13133), got %q", ep)
		return Health{}
	}
	return Health{Endpoint: ep}
}

func (d *decoder) log(parent fields) Log {
	l := Log{Level: "info", Format: "text"}
	f := d.fields(parent.get("log"), "log", parent.keyLine("log"), "level", "format")
	if v, ok := d.enum(f.get("level"), "log.level", "debug", "info", "warn", "error"); ok {
		l.Level = v
	}
	if v, ok := d.enum(f.get("format"), "log.format", "text", "json"); ok {
		l.Format = v
	}
	return l
}
