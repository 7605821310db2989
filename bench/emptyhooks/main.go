// Command emptyhooks attaches programs that do nothing, as tp_btf programs,
// to the tracepoints the traffic pipeline counts at (net_dev_start_xmit and
// netif_receive_skb), until interrupted: the floor of what any counting at
// those hooks costs per packet (docs/benchmarks.md, traffic).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	tps := flag.String("tracepoints", "net_dev_start_xmit,netif_receive_skb", "comma-separated tracepoints")
	flag.Parse()
	var links []link.Link
	for _, tp := range strings.Split(*tps, ",") {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "empty",
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceRawTp,
			AttachTo:     tp,
			License:      "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			log.Fatalf("%s: %v", tp, err)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			log.Fatalf("attach %s: %v", tp, err)
		}
		links = append(links, l)
	}
	fmt.Println("attached")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, l := range links {
		l.Close()
	}
}
