package hooks

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Missed is what the kernel itself counts as not run for a set of attached
// programs: a program skipped because another BPF program was running on
// the CPU (its recursion misses, Linux 5.12+; a kprobe program is skipped
// while a map system call or another kprobe program holds the CPU), and a
// kprobe or kretprobe that did not fire at all (kretprobe instances all in
// use, re-entry; Linux 6.7+). Each one is an event lost before the ring
// buffer. Counters a kernel does not keep read as zero.
func Missed(progs []*ebpf.Program, links []link.Link) uint64 {
	var n uint64
	for _, p := range progs {
		if p == nil {
			continue
		}
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	for _, l := range links {
		info, err := l.Info()
		if err != nil {
			continue
		}
		if pe := info.PerfEvent(); pe != nil {
			if kp := pe.Kprobe(); kp != nil {
				n += kp.Missed
			}
		}
		if km := info.KprobeMulti(); km != nil {
			n += km.Missed
		}
	}
	return n
}
