package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree and collects every problem it finds, so a
// user sees them all at once instead of fixing one per run.
type decoder struct {
	file string
	env  func(string) string
	errs []*Error
	// reported holds environment problems already reported, so a bad
	// OTEL_* variable shared by several exporters is reported once.
	reported map[string]bool
}

func (d *decoder) errorf(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows aliases to the anchored node. The bound guards against
// alias chains the parser did not reject.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if v := []rune(n.Value); len(v) > 40 {
			return fmt.Sprintf("%q...", string(v[:40]))
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported YAML node"
}

// entry is one key/value pair of a mapping.
type entry struct {
	key  string
	path string
	kn   *yaml.Node // key node: its line is the entry's position
	vn   *yaml.Node // value node, aliases not yet resolved
}

// entries returns the pairs of mapping n (none for null) and reports
// non-string keys, merge keys and duplicates. ok is false when n is neither
// a mapping nor null.
func (d *decoder) entries(n *yaml.Node, path string) (out []entry, ok bool) {
	r := resolve(n)
	if isNull(r) {
		return nil, true
	}
	if r.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping, got %s", describe(r))
		return nil, false
	}
	first := map[string]int{}
	for i := 0; i+1 < len(r.Content); i += 2 {
		kn, vn := r.Content[i], r.Content[i+1]
		k := resolve(kn)
		switch {
		case k == nil || k.Kind != yaml.ScalarNode:
			d.errorf(kn.Line, path, "want a string key, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.errorf(kn.Line, path, "merge keys (<<) are not supported; use an alias for a whole value instead")
			continue
		case k.Value == "" || k.ShortTag() == "!!null":
			d.errorf(kn.Line, path, "empty key")
			continue
		}
		if line, dup := first[k.Value]; dup {
			d.errorf(kn.Line, join(path, k.Value), "key already defined at line %d", line)
			continue
		}
		first[k.Value] = kn.Line
		out = append(out, entry{key: k.Value, path: join(path, k.Value), kn: kn, vn: vn})
	}
	return out, true
}

// fields is a mapping with a fixed set of keys.
type fields struct {
	path string
	line int // where the mapping was introduced, for "missing key" errors
	m    map[string]entry
}

// get returns the value node of key, or nil when the key is absent.
func (f fields) get(key string) *yaml.Node {
	if e, ok := f.m[key]; ok {
		return e.vn
	}
	return nil
}

// written reports whether key is present with a non-null value.
func (f fields) written(key string) bool {
	return !isNull(f.get(key))
}

func (f fields) keyLine(key string) int {
	if e, ok := f.m[key]; ok {
		return e.kn.Line
	}
	return f.line
}

// fields decodes mapping n whose keys must be among known; line is where
// the mapping was introduced (usually its key's line).
func (d *decoder) fields(n *yaml.Node, path string, line int, known ...string) fields {
	f := fields{path: path, line: line, m: map[string]entry{}}
	es, _ := d.entries(n, path)
	for _, e := range es {
		if !slices.Contains(known, e.key) {
			d.errorf(e.kn.Line, e.path, "unknown key%s", suggest(e.key, known))
			continue
		}
		f.m[e.key] = e
	}
	return f
}

// suggest returns " (did you mean "x"? known: a, b)" for an unknown word.
func suggest(word string, known []string) string {
	if len(known) == 0 {
		return " (none are allowed here)"
	}
	// Allow about one typo per three letters, so short words are not
	// "corrected" into unrelated ones.
	best, bestDist := "", min(max(len(word)/3, 1), 3)+1
	for _, k := range known {
		if dist := editDistance(word, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q? known: %s)", best, strings.Join(known, ", "))
	}
	return fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str returns the scalar n after ${env:...} expansion. ok is false when n
// is absent, null, empty after expansion, or wrong (an error is recorded).
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	r := resolve(n)
	if isNull(r) {
		return "", false
	}
	if r.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "want a single value, got %s", describe(r))
		return "", false
	}
	v, err := expandEnv(r.Value, d.env)
	if err != nil {
		d.errorf(n.Line, path, "%v", err)
		return "", false
	}
	return v, v != ""
}

// enum is str restricted to the allowed values.
func (d *decoder) enum(n *yaml.Node, path string, allowed ...string) (string, bool) {
	v, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, v) {
		d.errorf(n.Line, path, "invalid value %q (want %s)", v, strings.Join(allowed, ", "))
		return "", false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	v, ok := d.str(n, path)
	if !ok {
		return false, false
	}
	b, err := parseBool(v)
	if err != nil {
		d.errorf(n.Line, path, "want true or false, got %q", v)
		return false, false
	}
	return b, true
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// integer returns the integer n, which must lie in [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	v, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	i, err := parseInt(v)
	if err != nil {
		d.errorf(n.Line, path, "want an integer, got %q", v)
		return 0, false
	}
	if i < lo || i > hi {
		switch {
		case lo == 0 && i < 0:
			d.errorf(n.Line, path, "must not be negative, got %d", i)
		case lo == 1 && i < 1:
			d.errorf(n.Line, path, "must be positive, got %d", i)
		default:
			d.errorf(n.Line, path, "%d is out of range %d-%d", i, lo, hi)
		}
		return 0, false
	}
	return i, true
}

// parseInt reads a decimal integer, or a 0x, 0o or 0b prefixed one. A
// leading zero alone does not mean octal: "010" is ten, as a reader expects.
func parseInt(s string) (int64, error) {
	digits := strings.TrimLeft(s, "+-")
	if len(digits) > 1 && digits[0] == '0' && strings.ContainsRune("xXoObB", rune(digits[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

// duration returns the duration n, which must be at least lo.
func (d *decoder) duration(n *yaml.Node, path string, lo time.Duration) (time.Duration, bool) {
	v, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	t, err := time.ParseDuration(v)
	if err != nil {
		d.errorf(n.Line, path, "invalid duration %q (want e.g. 10s, 1m)", v)
		return 0, false
	}
	if t < lo {
		switch lo {
		case 0:
			d.errorf(n.Line, path, "must not be negative, got %s", v)
		case 1:
			d.errorf(n.Line, path, "must be positive, got %s", v)
		default:
			d.errorf(n.Line, path, "must be at least %s, got %s", lo, v)
		}
		return 0, false
	}
	return t, true
}

// list returns the elements of sequence n. ok is false when n is absent,
// null or not a list (an error is recorded for the latter).
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	r := resolve(n)
	if isNull(r) {
		return nil, false
	}
	if r.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "want a list, got %s", describe(r))
		return nil, false
	}
	return r.Content, true
}

func (d *decoder) strList(n *yaml.Node, path string) ([]string, bool) {
	elems, ok := d.list(n, path)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		before := len(d.errs)
		if v, ok := d.str(e, p); ok {
			out = append(out, v)
		} else if len(d.errs) == before {
			d.errorf(e.Line, p, "empty value")
		}
	}
	return out, true
}

func (d *decoder) intList(n *yaml.Node, path string, lo, hi int64) ([]int, bool) {
	elems, ok := d.list(n, path)
	if !ok {
		return nil, false
	}
	out := make([]int, 0, len(elems))
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		before := len(d.errs)
		if v, ok := d.integer(e, p, lo, hi); ok {
			out = append(out, int(v))
		} else if len(d.errs) == before {
			d.errorf(e.Line, p, "empty value")
		}
	}
	return out, true
}

// strMap decodes a mapping of strings to strings; null values become "".
// Values are never quoted back in messages: headers often carry secrets.
func (d *decoder) strMap(n *yaml.Node, path string) (map[string]string, bool) {
	es, ok := d.entries(n, path)
	if !ok || len(es) == 0 {
		return nil, false
	}
	out := make(map[string]string, len(es))
	for _, e := range es {
		v, _ := d.str(e.vn, e.path)
		out[e.key] = v
	}
	return out, true
}
