package otelcol

import (
	"os/exec"
	"syscall"
)

// setChildAttrs kills the collector if the test binary dies without running
// its cleanups (e.g. a go test -timeout panic), so no orphan keeps running.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
