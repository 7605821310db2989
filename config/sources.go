package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Traffic source limits. The kernel map is preallocated, so max_entries is
// capped to keep its memory bounded.
const (
	DefaultTrafficMaxEntries = 10240
	MaxTrafficMaxEntries     = 1 << 20
)

// trafficHooks leaves out HookTracepoint: no plain tracepoint sees both the
// socket and the device of every packet.
func trafficHooks() []string {
	return []string{HookAuto, HookFentry, HookKprobe, HookTpBTF, HookRawTracepoint}
}

func (d *decoder) traffic(f fields) *TrafficSource {
	t := &TrafficSource{
		Attribution: "socket",
		MaxEntries:  DefaultTrafficMaxEntries,
		Hook:        HookAuto,
	}
	if v, ok := d.enum(f.get("attribution"), join(f.path, "attribution"), "socket", "current"); ok {
		t.Attribution = v
	}
	if v, ok := d.integer(f.get("max_entries"), join(f.path, "max_entries"), 1, MaxTrafficMaxEntries); ok {
		t.MaxEntries = uint32(v)
	}
	if v, ok := d.str(f.get("hook"), join(f.path, "hook")); ok {
		if hooks := trafficHooks(); slices.Contains(hooks, v) {
			t.Hook = v
		} else {
			d.errorf(f.get("hook").Line, join(f.path, "hook"),
				"invalid hook %q for a traffic source (want %s)", v, strings.Join(hooks, ", "))
		}
	}
	return t
}

// Drops source limits: keys are per interval (the map is drained), so the
// default is small; the cap bounds the preallocated map's memory.
const (
	DefaultDropsMaxEntries = 4096
	MaxDropsMaxEntries     = 1 << 20
)

// dropsHooks are the tracepoint family: kfree_skb is a tracepoint.
func dropsHooks() []string {
	return []string{HookAuto, HookTpBTF, HookRawTracepoint, HookTracepoint}
}

func (d *decoder) drops(f fields) *DropsSource {
	s := &DropsSource{MaxEntries: DefaultDropsMaxEntries, Hook: HookAuto}
	if v, ok := d.integer(f.get("max_entries"), join(f.path, "max_entries"), 1, MaxDropsMaxEntries); ok {
		s.MaxEntries = uint32(v)
	}
	if v, ok := d.str(f.get("hook"), join(f.path, "hook")); ok {
		if hooks := dropsHooks(); slices.Contains(hooks, v) {
			s.Hook = v
		} else {
			d.errorf(f.get("hook").Line, join(f.path, "hook"),
				"invalid hook %q for a drops source (want %s)", v, strings.Join(hooks, ", "))
		}
	}
	if v, ok := d.boolean(f.get("interface"), join(f.path, "interface")); ok {
		s.Interface = v
	}
	if v, ok := d.boolean(f.get("console_reason"), join(f.path, "console_reason")); ok {
		s.ConsoleReason = v
	}
	if v, ok := d.boolean(f.get("console_offset"), join(f.path, "console_offset")); ok {
		s.ConsoleOffset = v
	}
	return s
}

// Accepts ring buffer sizes, in bytes: the kernel wants a power of two and
// a multiple of the page size; the cap bounds its locked memory.
const (
	DefaultAcceptsRingSize = 1 << 20
	MinAcceptsRingSize     = 4 << 10
	MaxAcceptsRingSize     = 256 << 20
)

func acceptsHooks() []string {
	return []string{HookAuto, HookFentry, HookKprobe, HookTpBTF, HookRawTracepoint, HookTracepoint}
}

func (d *decoder) accepts(f fields) *AcceptsSource {
	s := &AcceptsSource{Hook: HookAuto, RingSize: DefaultAcceptsRingSize}
	key := join(f.path, "ring_size")
	if v, ok := d.integer(f.get("ring_size"), key, MinAcceptsRingSize, MaxAcceptsRingSize); ok {
		if v&(v-1) != 0 {
			d.errorf(f.get("ring_size").Line, key, "%d is not a power of two (e.g. 65536, 262144, 1048576)", v)
		} else {
			s.RingSize = uint32(v)
		}
	}
	if v, ok := d.str(f.get("hook"), join(f.path, "hook")); ok {
		if hooks := acceptsHooks(); slices.Contains(hooks, v) {
			s.Hook = v
		} else {
			d.errorf(f.get("hook").Line, join(f.path, "hook"),
				"invalid hook %q for an accepts source (want %s)", v, strings.Join(hooks, ", "))
		}
	}
	if v, ok := d.boolean(f.get("connect"), join(f.path, "connect")); ok {
		s.Connect = v
	}
	return s
}

func (d *decoder) filter(f fields) *FilterProcessor {
	p := &FilterProcessor{
		Include: d.match(f, "include"),
		Exclude: d.match(f, "exclude"),
	}
	if _, inc := f.m["include"]; !inc {
		if _, exc := f.m["exclude"]; !exc {
			d.errorf(f.line, f.path, "a filter needs include, exclude or both")
		}
	}
	return p
}

// match decodes parent's include or exclude; nil when the key is absent.
func (d *decoder) match(parent fields, key string) *Match {
	n := parent.get(key)
	if n == nil {
		return nil
	}
	path := join(parent.path, key)
	before := len(d.errs)
	f := d.fields(n, path, parent.keyLine(key), "pids", "commands", "uids", "devices")
	m := &Match{}
	m.PIDs, _ = d.intList(f.get("pids"), join(path, "pids"), 0, math.MaxInt32)
	m.Commands, _ = d.strList(f.get("commands"), join(path, "commands"))
	m.UIDs, _ = d.intList(f.get("uids"), join(path, "uids"), 0, math.MaxUint32)
	m.Devices, _ = d.strList(f.get("devices"), join(path, "devices"))
	// An empty match would match nothing (include) or be a no-op (exclude),
	// which is never what was meant.
	if len(d.errs) == before && len(m.PIDs)+len(m.Commands)+len(m.UIDs)+len(m.Devices) == 0 {
		d.errorf(parent.keyLine(key), path, "empty match: give at least one of pids, commands, uids, devices")
	}
	return m
}

func (d *decoder) attributes(f fields) *AttributesProcessor {
	p := &AttributesProcessor{}
	_, hasDrop := f.m["drop"]
	_, hasKeep := f.m["keep"]
	switch {
	case hasDrop && hasKeep:
		d.errorf(f.keyLine("keep"), f.path, "give either drop or keep, not both")
		return p
	case !hasDrop && !hasKeep:
		d.errorf(f.line, f.path, "give drop or keep: a list of attribute names")
		return p
	}
	key := "drop"
	if hasKeep {
		key = "keep"
	}
	path := join(f.path, key)
	before := len(d.errs)
	elems, _ := d.list(f.get(key), path)
	if len(d.errs) == before && len(elems) == 0 {
		d.errorf(f.keyLine(key), path, "want a non-empty list of attribute names")
	}
	// The containers processor's attributes may be cut as well.
	known := append(allSourceAttributes(), ContainerAttributes...)
	seen := map[string]int{}
	var names []string
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		before := len(d.errs)
		name, ok := d.str(e, p)
		switch {
		case !ok:
			if len(d.errs) == before {
				d.errorf(e.Line, p, "empty value")
			}
		case !slices.Contains(known, name):
			d.errorf(e.Line, p, "unknown attribute %q%s", name, suggest(name, known))
		case seen[name] != 0:
			d.errorf(e.Line, p, "attribute %q is listed twice (first at line %d)", name, seen[name])
		default:
			seen[name] = e.Line
			names = append(names, name)
		}
	}
	if hasDrop {
		p.Drop = names
	} else {
		p.Keep = names
	}
	return p
}

// ContainerAttributes are what the containers processor adds.
var ContainerAttributes = []string{"container.id", "k8s.pod.uid", "k8s.pod.name", "k8s.namespace.name"}

func (d *decoder) containers(f fields) *ContainersProcessor {
	p := &ContainersProcessor{ProcRoot: "/proc", PodLogsRoot: "/var/log/pods"}
	for _, o := range []struct {
		key string
		dst *string
	}{{"proc_root", &p.ProcRoot}, {"pod_logs_root", &p.PodLogsRoot}} {
		key, dst := o.key, o.dst
		v, ok := d.str(f.get(key), join(f.path, key))
		if !ok {
			continue
		}
		if v != "-" && !strings.HasPrefix(v, "/") {
			d.errorf(f.keyLine(key), join(f.path, key), "want an absolute path, got %q", v)
			continue
		}
		*dst = v
	}
	return p
}
