//go:build linux

package socketcalls

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Options say what to trace and how to load the programs.
type Options struct {
	// Hook pins a rung (hooks.Fentry, hooks.Kprobe, hooks.TpBTF,
	// hooks.RawTracepoint) or is hooks.Auto / "".
	Hook string
	// Functions are names, globs and SocketC, matched against the kernel's
	// BTF, traced as children on the fentry and kprobe rungs.
	Functions []string
	// MaxFunctions bounds how many functions are attached.
	MaxFunctions int
	// Syscalls names the root system calls; empty means all of Syscalls().
	Syscalls []string
	// Selection; a thread is traced when it matches any of them, or always
	// with All.
	All       bool
	PIDs      []uint32
	Commands  []string
	UIDs      []uint32
	CgroupIDs []uint64
	// CgroupLevel is the deepest level among CgroupIDs, so that threads in
	// sub-cgroups of a selected cgroup are traced too.
	CgroupLevel uint32
	// MaxDepth caps the frames kept per thread (at most MaxDepthLimit).
	MaxDepth uint32
	// SampleRatio is the share of root calls traced, in (0, 1].
	SampleRatio float64
	// RateLimit is the most root calls traced per second (0: no limit).
	RateLimit uint64
	// MaxThreads bounds the threads that can be mid-call at once.
	MaxThreads uint32
	// RingBufferSize is the ring buffer's size in bytes (a power of two).
	RingBufferSize uint32
	// RootsOutsideSyscalls makes a traced function called outside a traced
	// system call (sock_poll from epoll, ...) a root of its own.
	RootsOutsideSyscalls bool
	// StaleAfter expires a root that is a function after this long.
	StaleAfter time.Duration
	Kernel     *hooks.Kernel
	Log        *slog.Logger
}

// MaxDepthLimit is the deepest stack the kernel side keeps (MAX_DEPTH).
const MaxDepthLimit = 32

// Rungs lists the rungs of the socket calls ladder, best first.
var Rungs = []string{hooks.Fentry, hooks.Kprobe, hooks.TpBTF, hooks.RawTracepoint}

// Probe is the attached programs and their maps.
type Probe struct {
	base  *ebpf.Collection
	extra []*ebpf.Collection
	links []link.Link
	// progs are the loaded programs, for the kernel's miss counters.
	progs []*ebpf.Program
	rung  string
	// Notes are limits of the chosen rung on this kernel.
	Notes []string
	// Functions are the names of the traced functions; a KIND_FUNC record's
	// func is an index in it.
	Functions []string

	events  *ebpf.Map
	threads *ebpf.Map
	stats   *ebpf.Map
}

// tracepoint is one networking tracepoint the base programs hook.
type tracepoint struct {
	name string
	prog string // program name without the flavour prefix
	// pair is the tracepoint that closes or opens this one; both or neither attach.
	pair string
}

func tracepoints() []tracepoint {
	return []tracepoint{
		{"net_dev_start_xmit", "xmit_start", "net_dev_xmit"},
		{"net_dev_xmit", "xmit_end", "net_dev_start_xmit"},
		{"netif_rx_entry", "netif_rx_entry", "netif_rx_exit"},
		{"netif_rx_exit", "netif_rx_exit", "netif_rx_entry"},
		{"netif_receive_skb_entry", "receive_skb_entry", "netif_receive_skb_exit"},
		{"netif_receive_skb_exit", "receive_skb_exit", "netif_receive_skb_entry"},
		{"napi_gro_receive_entry", "gro_entry", "napi_gro_receive_exit"},
		{"napi_gro_receive_exit", "gro_exit", "napi_gro_receive_entry"},
		{"sock_send_length", "send_length", ""},
		{"sock_recv_length", "recv_length", ""},
		{"tcp_sendmsg_locked", "tcp_sendmsg_locked", ""},
		{"netif_receive_skb", "netif_receive_skb", ""},
		{"inet_sock_set_state", "inet_sock_set_state", ""},
	}
}

// Open loads and attaches on the best rung the kernel allows (or the pinned one).
func Open(opts Options) (*Probe, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Kernel == nil {
		return nil, errors.New("socket_calls: no kernel BTF given")
	}
	var rungs []hooks.Rung[*Probe]
	for _, name := range Rungs {
		rungs = append(rungs, hooks.Rung[*Probe]{Name: name, Try: func() (*Probe, error) { return open(name, opts) }})
	}
	p, _, err := hooks.Climb("socket_calls", opts.Hook, rungs, opts.Log)
	if err != nil {
		return nil, err
	}
	for _, n := range p.Notes {
		opts.Log.Warn("socket_calls: rung limit", "rung", p.rung, "note", n)
	}
	return p, nil
}

func open(rung string, opts Options) (_ *Probe, err error) {
	k := opts.Kernel
	if (rung == hooks.Fentry || rung == hooks.TpBTF) && !k.Native {
		return nil, fmt.Errorf("%s needs the kernel's own BTF", rung)
	}
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		if !k.HasTracepoint(tp) {
			return nil, fmt.Errorf("tracepoint %s: %w", tp, hooks.ErrMissing)
		}
	}
	p := &Probe{rung: rung}
	var funcs []string
	if rung == hooks.Fentry || rung == hooks.Kprobe {
		matched, missing := MatchFunctions(k.Types, opts.Functions)
		if len(missing) > 0 {
			p.Notes = append(p.Notes, fmt.Sprintf("not in this kernel's BTF, not traced: %s", strings.Join(missing, ", ")))
		}
		if len(matched) == 0 {
			return nil, fmt.Errorf("no function of the list is in this kernel: %w", hooks.ErrMissing)
		}
		if opts.MaxFunctions > 0 && len(matched) > opts.MaxFunctions {
			p.Notes = append(p.Notes, fmt.Sprintf("%d functions match, only the first %d are traced (max_functions)", len(matched), opts.MaxFunctions))
			matched = matched[:opts.MaxFunctions]
		}
		funcs = matched
		// A do-nothing program first: where the kernel refuses the hook
		// kind, that is known in milliseconds, before the costly loads.
		if err := tryHookKind(rung, funcs[0]); err != nil {
			return nil, err
		}
	}
	// The roots and the networking tracepoints: tp_btf on the tp_btf rung,
	// raw tracepoints elsewhere (they need no BTF of the kernel's own).
	flavour := "raw_tp_"
	if rung == hooks.TpBTF {
		flavour = "tp_btf_"
	}
	keep := map[string]string{flavour + "sys_enter": "sys_enter", flavour + "sys_exit": "sys_exit"}
	var absent []string
	for _, tp := range tracepoints() {
		if k.HasTracepoint(tp.name) && (tp.pair == "" || k.HasTracepoint(tp.pair)) {
			keep[flavour+tp.prog] = tp.name
		} else {
			absent = append(absent, tp.name)
		}
	}
	if len(absent) > 0 {
		p.Notes = append(p.Notes, "tracepoints not in this kernel, their spans and events are missing: "+strings.Join(absent, ", "))
	}

	spec, err := loadSocketcalls()
	if err != nil {
		return nil, err
	}
	funcSpecs := map[string]*ebpf.ProgramSpec{}
	for name, ps := range spec.Programs {
		if _, ok := keep[name]; ok {
			if rung == hooks.TpBTF {
				ps.AttachTo = keep[name]
			}
			continue
		}
		funcSpecs[name] = ps
		delete(spec.Programs, name)
	}
	if opts.CgroupLevel > 0 && features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnGetCurrentAncestorCgroupId) != nil {
		// Older kernels give tracing programs only the thread's own cgroup.
		opts.CgroupLevel = 0
		p.Notes = append(p.Notes, "bpf_get_current_ancestor_cgroup_id is not available to tracing programs here: only threads directly in the listed cgroups are traced, not those of sub-cgroups")
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}
	cache := btf.NewCache()
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: k.Types},
		Cache:    cache,
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	p.base = coll
	p.events = coll.Maps[socketcallsMapEvents]
	p.threads = coll.Maps[socketcallsMapThreads]
	p.stats = coll.Maps[socketcallsMapStats]
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := fillSelection(coll, opts); err != nil {
		return nil, err
	}

	// Functions first, so that no root opens before its children can be seen.
	switch rung {
	case hooks.Fentry:
		err = p.attachFentry(spec, funcSpecs, funcs, k, cache)
	case hooks.Kprobe:
		err = p.attachKprobes(spec, funcSpecs, funcs, k, cache)
	}
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(keep) {
		prog := coll.Programs[name]
		var l link.Link
		if rung == hooks.TpBTF {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		} else {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: keep[name], Program: prog})
		}
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", keep[name], err)
		}
		p.links = append(p.links, l)
	}
	for _, c := range append([]*ebpf.Collection{p.base}, p.extra...) {
		for _, prog := range c.Programs {
			p.progs = append(p.progs, prog)
		}
	}
	return p, nil
}

// tryHookKind loads and attaches a do-nothing fentry or kprobe program on fn.
func tryHookKind(rung, fn string) error {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	if rung == hooks.Fentry {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry,
			AttachTo: fn, Instructions: insns, License: "GPL"})
		if err != nil {
			return err
		}
		defer prog.Close()
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return err
		}
		return l.Close()
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, Instructions: insns, License: "GPL"})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.Kprobe(fn, prog, nil)
	if err != nil {
		return err
	}
	return l.Close()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// configure sets the loader-set constants and map sizes.
func configure(spec *ebpf.CollectionSpec, opts Options) error {
	var sys, fdSys, newFD [8]uint64
	want := opts.Syscalls
	for _, s := range Syscalls() {
		if len(want) > 0 && !slices.Contains(want, s.Name) {
			continue
		}
		sys[s.Nr/64] |= 1 << (s.Nr % 64)
		if s.FDSocket {
			fdSys[s.Nr/64] |= 1 << (s.Nr % 64)
		}
		if s.NewFD {
			newFD[s.Nr/64] |= 1 << (s.Nr % 64)
		}
	}
	var flags uint32
	if opts.All {
		flags |= 1
	}
	if len(opts.PIDs) > 0 {
		flags |= 2
	}
	if len(opts.Commands) > 0 {
		flags |= 4
	}
	if len(opts.UIDs) > 0 {
		flags |= 8
	}
	if len(opts.CgroupIDs) > 0 {
		flags |= 16
	}
	depth := opts.MaxDepth
	if depth == 0 || depth > MaxDepthLimit {
		depth = 16
	}
	threshold := uint32(math.MaxUint32)
	if opts.SampleRatio > 0 && opts.SampleRatio < 1 {
		threshold = uint32(opts.SampleRatio * math.MaxUint32)
	}
	stale := opts.StaleAfter
	if stale <= 0 {
		stale = 10 * time.Second
	}
	roots := uint32(0)
	if opts.RootsOutsideSyscalls {
		roots = 1
	}
	vars := map[string]any{
		socketcallsVarSyscallMask:          sys,
		socketcallsVarFdSyscallMask:        fdSys,
		socketcallsVarNewfdSyscallMask:     newFD,
		socketcallsVarSelectFlags:          flags,
		socketcallsVarCgroupLevels:         min(opts.CgroupLevel, 16),
		socketcallsVarMaxDepth:             depth,
		socketcallsVarSampleThreshold:      threshold,
		socketcallsVarRateCount:            opts.RateLimit,
		socketcallsVarRateWindowNs:         uint64(time.Second),
		socketcallsVarRootsOutsideSyscalls: roots,
		socketcallsVarStaleNs:              uint64(stale),
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if opts.MaxThreads > 0 {
		spec.Maps[socketcallsMapThreads].MaxEntries = opts.MaxThreads
	}
	if opts.RingBufferSize > 0 {
		spec.Maps[socketcallsMapEvents].MaxEntries = opts.RingBufferSize
	}
	return nil
}

func fillSelection(coll *ebpf.Collection, opts Options) error {
	one := uint8(1)
	for _, pid := range opts.PIDs {
		if err := coll.Maps[socketcallsMapSelPids].Put(pid, one); err != nil {
			return fmt.Errorf("select pid %d: %w", pid, err)
		}
	}
	for _, uid := range opts.UIDs {
		if err := coll.Maps[socketcallsMapSelUids].Put(uid, one); err != nil {
			return fmt.Errorf("select uid %d: %w", uid, err)
		}
	}
	for _, c := range opts.Commands {
		var key [16]byte
		copy(key[:15], c)
		if err := coll.Maps[socketcallsMapSelComms].Put(key, one); err != nil {
			return fmt.Errorf("select command %q: %w", c, err)
		}
	}
	for _, id := range opts.CgroupIDs {
		if err := coll.Maps[socketcallsMapSelCgroups].Put(id, one); err != nil {
			return fmt.Errorf("select cgroup %d: %w", id, err)
		}
	}
	return nil
}

// replacements makes a program loaded apart from the base collection use
// the base collection's maps, constants included.
func (p *Probe) replacements(spec *ebpf.CollectionSpec) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name := range spec.Maps {
		if m, ok := p.base.Maps[name]; ok {
			out[name] = m
		}
	}
	return out
}

// loadOne loads one program of spec (with the base's maps) and returns it.
func (p *Probe) loadOne(spec *ebpf.CollectionSpec, ps *ebpf.ProgramSpec, k *hooks.Kernel, cache *btf.Cache) (*ebpf.Program, error) {
	sub := spec.Copy()
	sub.Programs = map[string]*ebpf.ProgramSpec{ps.Name: ps}
	coll, err := ebpf.NewCollectionWithOptions(sub, ebpf.CollectionOptions{
		Programs:        ebpf.ProgramOptions{KernelTypes: k.Types},
		MapReplacements: p.replacements(sub),
		Cache:           cache,
	})
	if err != nil {
		return nil, err
	}
	p.extra = append(p.extra, coll)
	return coll.Programs[ps.Name], nil
}

// withFuncID returns a copy of ps whose func_id() constant is id.
func withFuncID(ps *ebpf.ProgramSpec, id uint32) (*ebpf.ProgramSpec, error) {
	c := ps.Copy()
	n := 0
	for i := range c.Instructions {
		ins := &c.Instructions[i]
		if ins.OpCode.IsDWordLoad() && uint64(ins.Constant) == funcIDMagic {
			ins.Constant = int64(id)
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: function id placeholder not found", ps.Name)
	}
	return c, nil
}

// funcIDMagic is FUNC_ID_MAGIC of socketcalls.bpf.c.
const funcIDMagic = 0x5ca1ab1e5ca1ab1e

// fexitVariant picks the fexit program for fn: the return value sits after
// the arguments in its context. ok is false for functions fexit cannot
// serve here (struct arguments passed by value, more than six arguments).
func fexitVariant(spec *btf.Spec, fn string) (string, bool, error) {
	var f *btf.Func
	if err := spec.TypeByName(fn, &f); err != nil {
		return "", false, err
	}
	proto, ok := f.Type.(*btf.FuncProto)
	if !ok {
		return "", false, nil
	}
	if len(proto.Params) > 6 {
		return "", false, nil
	}
	for _, prm := range proto.Params {
		switch btf.UnderlyingType(prm.Type).(type) {
		case *btf.Struct, *btf.Union:
			return "", false, nil
		}
	}
	if _, void := proto.Return.(*btf.Void); void || proto.Return == nil {
		return "fexit_func_void", true, nil
	}
	return fmt.Sprintf("fexit_func%d", len(proto.Params)), true, nil
}

func (p *Probe) attachFentry(spec *ebpf.CollectionSpec, progs map[string]*ebpf.ProgramSpec, funcs []string, k *hooks.Kernel, cache *btf.Cache) error {
	var skipped []string
	var firstErr error
	for _, fn := range funcs {
		exitName, ok, err := fexitVariant(k.Types, fn)
		if err != nil || !ok {
			skipped = append(skipped, fn)
			continue
		}
		id := uint32(len(p.Functions))
		var links []link.Link
		var failure error
		for _, name := range []string{"fentry_func", exitName} {
			ps, err := withFuncID(progs[name], id)
			if err != nil {
				return err
			}
			ps.AttachTo = fn
			prog, err := p.loadOne(spec, ps, k, cache)
			if err != nil {
				failure = err
				break
			}
			l, err := link.AttachTracing(link.TracingOptions{Program: prog})
			if err != nil {
				failure = err
				break
			}
			links = append(links, l)
		}
		if failure != nil {
			for _, l := range links {
				l.Close()
			}
			if len(p.Functions) == 0 && errors.Is(failure, os.ErrPermission) {
				// The first one already says the kernel refuses fentry.
				return failure
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", fn, failure)
			}
			skipped = append(skipped, fn)
			continue
		}
		p.links = append(p.links, links...)
		p.Functions = append(p.Functions, fn)
	}
	if len(p.Functions) == 0 {
		return fmt.Errorf("no function could be attached (%d tried)", len(funcs))
	}
	if len(skipped) > 0 {
		why := "struct arguments or more than six"
		if firstErr != nil {
			why = oneLine(firstErr)
			if len(why) > 200 {
				why = why[:200] + "..."
			}
		}
		p.Notes = append(p.Notes, fmt.Sprintf("fentry/fexit refused for %d functions, not traced: %s (first reason: %s)",
			len(skipped), strings.Join(skipped, ", "), why))
	}
	return nil
}

func (p *Probe) attachKprobes(spec *ebpf.CollectionSpec, progs map[string]*ebpf.ProgramSpec, funcs []string, k *hooks.Kernel, cache *btf.Cache) error {
	unique, err := uniqueSymbols()
	if err != nil {
		return err
	}
	var names, ambiguous []string
	for _, fn := range funcs {
		if unique[fn] {
			names = append(names, fn)
		} else {
			ambiguous = append(ambiguous, fn)
		}
	}
	if len(ambiguous) > 0 {
		p.Notes = append(p.Notes, "not a single kernel symbol (absent, or several static copies), not traced: "+strings.Join(ambiguous, ", "))
	}
	if len(names) == 0 {
		return fmt.Errorf("no function of the list is a kernel symbol: %w", hooks.ErrMissing)
	}
	// One multi link for all the functions where the kernel has them (5.18+).
	if err := p.attachKprobeMulti(spec, progs, names, k, cache); err == nil {
		return nil
	} else {
		p.Notes = append(p.Notes, fmt.Sprintf("kprobe.multi unavailable (%v): one kprobe per function", oneLine(err)))
	}
	var skipped []string
	for _, fn := range names {
		id := uint32(len(p.Functions))
		var links []link.Link
		var failure error
		for _, name := range []string{"kprobe_func", "kretprobe_func"} {
			ps, err := withFuncID(progs[name], id)
			if err != nil {
				return err
			}
			prog, err := p.loadOne(spec, ps, k, cache)
			if err != nil {
				failure = err
				break
			}
			var l link.Link
			if name == "kprobe_func" {
				l, err = link.Kprobe(fn, prog, nil)
			} else {
				l, err = link.Kretprobe(fn, prog, nil)
			}
			if err != nil {
				failure = err
				break
			}
			links = append(links, l)
		}
		if failure != nil {
			for _, l := range links {
				l.Close()
			}
			if len(p.Functions) == 0 && len(skipped) >= 3 {
				return failure
			}
			skipped = append(skipped, fn)
			continue
		}
		p.links = append(p.links, links...)
		p.Functions = append(p.Functions, fn)
	}
	if len(p.Functions) == 0 {
		return fmt.Errorf("no kprobe could be attached (%d tried)", len(names))
	}
	if len(skipped) > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("kprobe refused for %d functions, not traced: %s", len(skipped), strings.Join(skipped, ", ")))
	}
	return nil
}

func (p *Probe) attachKprobeMulti(spec *ebpf.CollectionSpec, progs map[string]*ebpf.ProgramSpec, names []string, k *hooks.Kernel, cache *btf.Cache) error {
	cookies := make([]uint64, len(names))
	for i := range cookies {
		cookies[i] = uint64(i)
	}
	entry, err := p.loadOne(spec, progs["kprobe_multi_func"].Copy(), k, cache)
	if err != nil {
		return err
	}
	exit, err := p.loadOne(spec, progs["kretprobe_multi_func"].Copy(), k, cache)
	if err != nil {
		return err
	}
	le, err := link.KprobeMulti(entry, link.KprobeMultiOptions{Symbols: names, Cookies: cookies})
	if err != nil {
		return err
	}
	lx, err := link.KretprobeMulti(exit, link.KprobeMultiOptions{Symbols: names, Cookies: cookies})
	if err != nil {
		le.Close()
		return err
	}
	p.links = append(p.links, le, lx)
	p.Functions = append(p.Functions, names...)
	return nil
}

// uniqueSymbols reads the text symbols of /proc/kallsyms that occur once:
// a kprobe by name cannot choose among several static functions of one name.
func uniqueSymbols() (map[string]bool, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	count := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") || len(fields) > 3 {
			continue // data, or a module's symbol
		}
		count[fields[2]]++
	}
	out := make(map[string]bool, len(count))
	for n, c := range count {
		if c == 1 {
			out[n] = true
		}
	}
	return out, sc.Err()
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// Reader opens a reader of the ring buffer of finished spans.
func (p *Probe) Reader() (*ringbuf.Reader, error) { return ringbuf.NewReader(p.events) }

// closers bounds the goroutines that detach links at Close.
const closers = 16

// Close detaches every program and frees the maps. The links are closed
// from several goroutines: detaching a kprobe waits for an RCU grace
// period, and waits that overlap share one, so a rung of one kprobe per
// function (kernels without kprobe.multi) stops in a fraction of the time
// (under emulation a serial close of 190 kprobes took over 15 s).
func (p *Probe) Close() error {
	errs := make([]error, len(p.links))
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(closers, len(p.links)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(p.links); i = int(next.Add(1) - 1) {
				errs[i] = p.links[i].Close()
			}
		})
	}
	wg.Wait()
	p.links, p.progs = nil, nil
	for _, c := range p.extra {
		c.Close()
	}
	p.extra = nil
	if p.base != nil {
		p.base.Close()
		p.base = nil
	}
	return errors.Join(errs...)
}
