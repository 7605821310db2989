package drops

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Drop reason numbers differ from kernel to kernel (reasons are inserted in
// the middle of the enum), so names are read from the running kernel's BTF.
// A reason is either a core one (enum skb_drop_reason) or a subsystem's, with
// the subsystem's id in the high 16 bits (SKB_DROP_REASON_SUBSYS_SHIFT) and
// its own enum (ovs_drop_reason, mac80211_drop_reason) naming the values.

// ReasonUnknown is the reason of every drop on kernels without drop
// reasons (before 5.17).
const ReasonUnknown = "unknown"

const subsysShift = 16

// subsysEnums names, per subsystem of enum skb_drop_reason_subsys, the enum
// holding its reasons and the module whose BTF has it when the subsystem is
// built as a module. Subsystems not listed are tried as
// "<first word>_drop_reason" in module "<first word>".
func subsysEnums() map[string]struct{ enum, module string } {
	return map[string]struct{ enum, module string }{
		"OPENVSWITCH":       {"ovs_drop_reason", "openvswitch"},
		"MAC80211_UNUSABLE": {"mac80211_drop_reason", "mac80211"},
		"MAC80211_MONITOR":  {"mac80211_drop_reason", "mac80211"},
	}
}

// Reasons names drop reasons.
type Reasons struct {
	// has is false on kernels without enum skb_drop_reason.
	has    bool
	names  map[uint32]string
	subsys map[uint32]string // subsystem id -> name without SKB_DROP_REASON_SUBSYS_
	// moduleDir holds the BTF of loaded modules (/sys/kernel/btf); a
	// subsystem built as a module has its enum there, not in vmlinux.
	moduleDir string
	// loadBase reads the kernel's types again for a module's split BTF:
	// holding them would keep tens of MiB alive for a rare lookup.
	loadBase func() (*btf.Spec, error)
	tried    map[uint32]bool // subsystems looked up in module BTF
}

// NewReasons reads the reason enums from the kernel's types.
func NewReasons(types *btf.Spec) *Reasons {
	r := &Reasons{names: map[uint32]string{}, subsys: map[uint32]string{}, moduleDir: "/sys/kernel/btf",
		loadBase: btf.LoadKernelSpec, tried: map[uint32]bool{}}
	var core *btf.Enum
	if types.TypeByName("skb_drop_reason", &core) != nil {
		return r
	}
	r.has = true
	for _, v := range core.Values {
		switch {
		case v.Name == "SKB_DROP_REASON_MAX", v.Name == "SKB_DROP_REASON_SUBSYS_MASK":
			// bounds, not reasons
		case strings.HasPrefix(v.Name, "SKB_DROP_REASON_"):
			r.names[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
		default: // SKB_NOT_DROPPED_YET, SKB_CONSUMED
			r.names[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_")
		}
	}
	var sub *btf.Enum
	if types.TypeByName("skb_drop_reason_subsys", &sub) == nil {
		for _, v := range sub.Values {
			name := strings.TrimPrefix(v.Name, "SKB_DROP_REASON_SUBSYS_")
			if v.Value == 0 || name == "NUM" {
				continue // CORE is enum skb_drop_reason itself
			}
			r.subsys[uint32(v.Value)] = name
			r.addSubsys(types, name)
		}
	}
	return r
}

// addSubsys adds the values of a subsystem's enum found in types.
func (r *Reasons) addSubsys(types *btf.Spec, subsys string) bool {
	var e *btf.Enum
	if types.TypeByName(enumOf(subsys).enum, &e) != nil {
		return false
	}
	for _, v := range e.Values {
		// Subsystem enums also hold verdicts in the core range (mac80211's
		// RX_CONTINUE): only values carrying a subsystem id are reasons.
		if uint32(v.Value)>>subsysShift != 0 {
			r.names[uint32(v.Value)] = v.Name
		}
	}
	return true
}

func enumOf(subsys string) struct{ enum, module string } {
	if e, ok := subsysEnums()[subsys]; ok {
		return e
	}
	first, _, _ := strings.Cut(strings.ToLower(subsys), "_")
	return struct{ enum, module string }{first + "_drop_reason", first}
}

// Has reports whether the kernel has drop reasons at all.
func (r *Reasons) Has() bool { return r.has }

// Name is the reason's name without the SKB_DROP_REASON_ prefix; a number
// the kernel's BTF does not name is shown as "SUBSYS_n" for a known
// subsystem, or as the number.
func (r *Reasons) Name(v uint32) string {
	if !r.has || v == ^uint32(0) {
		return ReasonUnknown
	}
	if n, ok := r.names[v]; ok {
		return n
	}
	id := v >> subsysShift
	if id == 0 {
		return strconv.FormatUint(uint64(v), 10)
	}
	sub, ok := r.subsys[id]
	if !ok {
		return strconv.FormatUint(uint64(v), 10)
	}
	if !r.tried[id] {
		r.tried[id] = true
		r.loadModule(sub)
		if n, ok := r.names[v]; ok {
			return n
		}
	}
	return sub + "_" + strconv.FormatUint(uint64(v&(1<<subsysShift-1)), 10)
}

// loadModule reads the subsystem's enum from its module's BTF, once per
// subsystem (again after ModulesChanged).
func (r *Reasons) loadModule(subsys string) {
	if r.loadBase == nil || r.moduleDir == "" {
		return
	}
	path := filepath.Join(r.moduleDir, enumOf(subsys).module)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	base, err := r.loadBase()
	if err != nil {
		return
	}
	spec, err := btf.LoadSplitSpecFromReader(f, base)
	if err != nil {
		return
	}
	r.addSubsys(spec, subsys)
}

// ModulesChanged lets subsystems whose module was missing be looked up again.
func (r *Reasons) ModulesChanged() { clear(r.tried) }
