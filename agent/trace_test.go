package agent

import (
	"strings"
	"testing"
)

func TestTraceCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"trace"}, "give --pid, --comm or --uid (or --all)"},
		{[]string{"trace", "--pid", "abc"}, `"abc" is not a number`},
		{[]string{"trace", "--comm", "x", "--hook", "tracepoint"}, `--hook: invalid hook "tracepoint" for a socket_calls source`},
		{[]string{"trace", "--comm", "x", "--sampling-ratio", "2"}, `--sampling-ratio: invalid sampling ratio "2"`},
		{[]string{"trace", "--comm", "x", "--syscalls", "connect,bogus"}, `--syscalls: unknown system call "bogus"`},
		{[]string{"trace", "--comm", "a-name-longer-than-fifteen"}, "--comm: command"},
		{[]string{"trace", "--comm", "x", "extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: code %d, stderr %q, want %d and %q", c.args, code, errOut, exitUsage, c.msg)
		}
	}
	code, out, _ := runCLI(t, "--help")
	if code != 0 || !strings.Contains(out, "sockeye trace [--pid PID] [--comm NAME] [--uid UID]") {
		t.Errorf("usage lacks the trace command:\n%s", out)
	}
}
