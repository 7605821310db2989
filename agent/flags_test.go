package agent

import (
	"strings"
	"testing"
)

// TestInvalidFlags: every bad command line is refused before anything is
// loaded, with a message naming the flag (or argument) and what is wrong,
// on stderr, and exit status 2 for usage errors.
func TestInvalidFlags(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msgs []string
	}{
		// sockeye capture: numbers
		{[]string{"capture", "-s", "abc"}, exitUsage, []string{`invalid value "abc" for flag -s: not a whole number (want bytes from 0 to 262144)`}},
		{[]string{"capture", "-s", "-1"}, exitUsage, []string{`invalid value "-1" for flag -s: must not be negative`}},
		{[]string{"capture", "-s", "300000"}, exitUsage, []string{`invalid value "300000" for flag -s: out of range (want bytes from 0 to 262144)`}},
		{[]string{"capture", "-c", "many"}, exitUsage, []string{`invalid value "many" for flag -c: not a whole number (want packets, 0 or more)`}},
		{[]string{"capture", "-c", "-5"}, exitUsage, []string{`invalid value "-5" for flag -c: must not be negative`}},
		{[]string{"capture", "-C", "-1", "-w", "x.pcapng"}, exitUsage, []string{`invalid value "-1" for flag -C: must not be negative (want millions of bytes`}},
		{[]string{"capture", "-C", "1.5", "-w", "x.pcapng"}, exitUsage, []string{`invalid value "1.5" for flag -C: not a whole number`}},
		{[]string{"capture", "-W", "-2"}, exitUsage, []string{`invalid value "-2" for flag -W: must not be negative`}},
		{[]string{"capture", "-G", "-1", "-w", "x.pcapng"}, exitUsage, []string{`invalid value "-1" for flag -G: must not be negative (want seconds`}},
		{[]string{"capture", "-G", "10s", "-w", "x.pcapng"}, exitUsage, []string{`invalid value "10s" for flag -G: not a whole number (want seconds`}},
		{[]string{"capture", "-B", "1"}, exitUsage, []string{`invalid value "1" for flag -B: out of range (want KiB from 64 to 1048576)`}},
		{[]string{"capture", "-w"}, exitUsage, []string{"flag needs an argument: -w"}},
		{[]string{"capture", "--snaplen", "64"}, exitUsage, []string{"flag provided but not defined: -snaplen"}},
		// sockeye capture: combinations
		{[]string{"capture", "-W", "3", "-w", "x.pcapng"}, exitUsage, []string{"-W 3 needs -C or -G"}},
		{[]string{"capture", "-C", "5"}, exitUsage, []string{"-C needs -w FILE"}},
		{[]string{"capture", "-G", "60"}, exitUsage, []string{"-G needs -w FILE"}},
		{[]string{"capture", "-C", "5", "-w", "-"}, exitUsage, []string{"-C cannot rotate standard output (-w -)"}},
		{[]string{"capture", "-G", "60", "-W", "2", "-w", "-"}, exitUsage, []string{"-G cannot rotate standard output (-w -)"}},
		{[]string{"capture", "--transport", "quic"}, exitUsage, []string{`--transport "quic": want auto, perf or ring`}},
		{[]string{"capture", "--hook", "uprobe"}, exitUsage, []string{`--hook "uprobe": want one of auto, fentry, kprobe, tp_btf`}},
		{[]string{"capture", "--hook", "raw_tracepoint"}, exitUsage, []string{`--hook "raw_tracepoint": want one of`}},
		{[]string{"capture", "--transport", "ring", "--hook", "kprobe"}, exitUsage, []string{"--transport ring works with --hook tp_btf (or auto) only, not kprobe"}},
		{[]string{"capture", "--udp", "tcp", "port", "53"}, exitUsage, []string{`--udp conflicts with the filter's "tcp"`}},
		{[]string{"capture", "-i", "nosuchif0"}, exitUsage, []string{`-i "nosuchif0": no such interface in this network namespace`}},
		// sockeye capture: the filter
		{[]string{"capture", "port", "80", "or", "port", "443"}, exitUsage, []string{`filter: unsupported token "or"`, "supported:"}},
		{[]string{"capture", "port", "70000"}, exitUsage, []string{`filter: port "70000" is not a number from 0 to 65535`}},
		{[]string{"capture", "host", "example.com"}, exitUsage, []string{`filter: host "example.com" is not an IPv4 or IPv6 address`}},
		{[]string{"capture", "tcp", "and", "udp"}, exitUsage, []string{"filter: tcp and udp together match nothing"}},
		{[]string{"capture", "port", "80", "and"}, exitUsage, []string{`filter: "and" at the end needs a primitive after it`}},
		{[]string{"capture", "port", "80", "-c", "5"}, exitUsage, []string{"option -c after the filter: options come before the filter expression"}},
		// sockeye top
		{[]string{"top", "--interval", "0"}, exitUsage, []string{`invalid value "0" for flag -interval: must be at least 100ms`}},
		{[]string{"top", "--interval", "-1s"}, exitUsage, []string{`invalid value "-1s" for flag -interval: must be at least 100ms`}},
		{[]string{"top", "--interval", "5"}, exitUsage, []string{`invalid value "5" for flag -interval: invalid duration "5" (want e.g. 1s, 500ms)`}},
		{[]string{"top", "--interval"}, exitUsage, []string{"flag needs an argument: -interval"}},
		{[]string{"top", "--hook", "bogus"}, exitUsage, []string{`--hook: invalid hook "bogus" for a traffic source`}},
		{[]string{"top", "--attribution", "bogus"}, exitUsage, []string{`--attribution: invalid value "bogus" (want socket, current)`}},
		{[]string{"top", "extra"}, exitUsage, []string{`sockeye top: unexpected argument "extra"`}},
		// sockeye run
		{[]string{"run", "--config", "/nonexistent/dir/sockeye.yaml"}, exitFailure, []string{"/nonexistent/dir/sockeye.yaml: no such file or directory"}},
		{[]string{"run", "--config"}, exitUsage, []string{"flag needs an argument: -config"}},
		{[]string{"run", "--bogus"}, exitUsage, []string{"flag provided but not defined: -bogus"}},
		{[]string{"run", "now", "please"}, exitUsage, []string{`sockeye run: unexpected argument "now"`}},
		{[]string{"--bogus"}, exitUsage, []string{"flag provided but not defined: -bogus"}},
		// sockeye trace
		{[]string{"trace", "--rate-limit", "-1", "--comm", "curl"}, exitUsage, []string{"--rate-limit: must not be negative"}},
		{[]string{"trace", "--uid", "root"}, exitUsage, []string{`"root" is not a number (--pid and --uid take numbers)`}},
		{[]string{"trace", "--all", "--hook", "bogus"}, exitUsage, []string{`--hook: invalid hook "bogus" for a socket_calls source`}},
		{[]string{"trace", "--comm", "curl", "--sampling-ratio", "0"}, exitUsage, []string{`--sampling-ratio: invalid sampling ratio "0"`}},
		// sockeye validate
		{[]string{"validate"}, exitUsage, []string{"sockeye validate: --config FILE is required"}},
		{[]string{"validate", "--config", "a.yaml", "b.yaml"}, exitUsage, []string{`sockeye validate: unexpected argument "b.yaml"`}},
		// sockeye check
		{[]string{"check", "--nope"}, exitUsage, []string{"flag provided but not defined: -nope"}},
		{[]string{"check", "--btf"}, exitUsage, []string{"flag needs an argument: -btf"}},
		{[]string{"check", "now"}, exitUsage, []string{`sockeye check: unexpected argument "now"`}},
		// commands
		{[]string{"Capture"}, exitUsage, []string{`unknown command "Capture" (want run, top, check, validate, capture, trace, version)`}},
		{[]string{"nettop", "--interval", "1s"}, exitUsage, []string{`unknown command "nettop"`}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, stderr)
			}
			for _, m := range c.msgs {
				if !strings.Contains(stderr, m) {
					t.Errorf("stderr does not say %q:\n%s", m, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("stdout %q: errors go to stderr", stdout)
			}
			if strings.Contains(stderr, "listening on") || strings.Contains(stderr, "sockeye starting") {
				t.Errorf("started despite the error:\n%s", stderr)
			}
		})
	}
}
