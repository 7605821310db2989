// Command sockeye turns eBPF events from the Linux network stack into
// OpenTelemetry signals. See `sockeye --help`.
package main

import (
	"os"

	"github.com/sockeye/sockeye/agent"
)

func main() {
	os.Exit(agent.Main(os.Args[1:], os.Stdout, os.Stderr))
}
