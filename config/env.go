package config

import (
	"fmt"
	"strings"
)

// expandEnv replaces ${env:NAME} and ${env:NAME:-default} in s, as the
// OpenTelemetry Collector does. "$$" is a literal "$"; any other "$" is kept
// as is. The default applies when NAME is unset or empty, because env cannot
// tell the two apart.
func expandEnv(s string, env func(string) string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated %q (want ${env:NAME} or ${env:NAME:-default})", s[i:])
			}
			ref := s[i+2 : i+2+end]
			val, err := lookupRef(ref, env)
			if err != nil {
				return "", err
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// lookupRef resolves the inside of one "${...}".
func lookupRef(ref string, env func(string) string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("malformed reference \"${%s}\": %s (want ${env:NAME} or ${env:NAME:-default})", ref, why)
	}
	rest, ok := strings.CutPrefix(ref, "env:")
	if !ok {
		return "", bad(`only the "env:" provider is supported`)
	}
	name, def, hasDef := strings.Cut(rest, ":-")
	if !validEnvName(name) {
		return "", bad(fmt.Sprintf("invalid variable name %q", name))
	}
	if v := env(name); v != "" || !hasDef {
		return v, nil
	}
	return def, nil
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
