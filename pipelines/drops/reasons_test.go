package drops

import (
	"bytes"
	"os"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/internal/testenv"
)

// specOf builds a BTF spec holding types, as a kernel would expose them.
func specOf(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func enum(name string, vals ...any) *btf.Enum {
	e := &btf.Enum{Name: name, Size: 4}
	for i := 0; i < len(vals); i += 2 {
		e.Values = append(e.Values, btf.EnumValue{Name: vals[i].(string), Value: uint64(vals[i+1].(int))})
	}
	return e
}

// TestReasonsSynthetic uses numbers unlike any real kernel's, so a table
// compiled in would fail it.
func TestReasonsSynthetic(t *testing.T) {
	spec := specOf(t,
		enum("skb_drop_reason", "SKB_NOT_DROPPED_YET", 0, "SKB_CONSUMED", 1, "SKB_DROP_REASON_NOT_SPECIFIED", 2,
			"SKB_DROP_REASON_NETFILTER_DROP", 5, "SKB_DROP_REASON_NO_SOCKET", 9, "SKB_DROP_REASON_MAX", 10,
			"SKB_DROP_REASON_SUBSYS_MASK", 0x7fff0000),
		enum("skb_drop_reason_subsys", "SKB_DROP_REASON_SUBSYS_CORE", 0, "SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1,
			"SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2, "SKB_DROP_REASON_SUBSYS_NUM", 3),
		enum("ovs_drop_reason", "OVS_DROP_LAST_ACTION", 2<<16, "OVS_DROP_ACTION_ERROR", 2<<16|1),
		enum("mac80211_drop_reason", "RX_CONTINUE", 1, "RX_QUEUED", 0, "RX_DROP_U_MIC_FAIL", 1<<16|1),
	)
	r := NewReasons(spec)
	r.moduleDir = t.TempDir() // no module BTF here
	cases := map[uint32]string{
		9:          "NO_SOCKET",
		5:          "NETFILTER_DROP",
		2:          "NOT_SPECIFIED",
		1:          "CONSUMED",
		0:          "NOT_DROPPED_YET",
		10:         "10", // the bound is not a reason
		77:         "77",
		2 << 16:    "OVS_DROP_LAST_ACTION",
		2<<16 | 1:  "OVS_DROP_ACTION_ERROR",
		2<<16 | 9:  "OPENVSWITCH_9",
		1<<16 | 1:  "RX_DROP_U_MIC_FAIL",
		1<<16 | 2:  "MAC80211_UNUSABLE_2",
		7<<16 | 1:  "458753", // no such subsystem
		^uint32(0): ReasonUnknown,
	}
	for v, want := range cases {
		if got := r.Name(v); got != want {
			t.Errorf("Name(%#x) = %q, want %q", v, got, want)
		}
	}
	if !r.Has() {
		t.Error("Has() = false")
	}

	old := NewReasons(specOf(t, enum("some_other_enum", "A", 1)))
	if old.Has() || old.Name(3) != ReasonUnknown {
		t.Errorf("kernel without reasons: Has %v, Name(3) = %q", old.Has(), old.Name(3))
	}
}

// TestReasonsKernel reads the running kernel's enum.
func TestReasonsKernel(t *testing.T) {
	testenv.RequireRoot(t)
	k, err := hooks.LoadKernel(os.Getenv("SOCKEYE_TEST_BTF"))
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	r := NewReasons(k.Types)
	var e *btf.Enum
	if k.Types.TypeByName("skb_drop_reason", &e) != nil {
		if r.Has() {
			t.Error("no enum skb_drop_reason, but Has() is true")
		}
		t.Log("kernel without drop reasons: every reason is unknown")
		return
	}
	byName := map[string]uint32{}
	for _, v := range e.Values {
		byName[v.Name] = uint32(v.Value)
	}
	for _, n := range []string{"NO_SOCKET", "NETFILTER_DROP", "NOT_SPECIFIED", "TCP_CSUM"} {
		v, ok := byName["SKB_DROP_REASON_"+n]
		if !ok {
			t.Errorf("kernel has no SKB_DROP_REASON_%s", n)
			continue
		}
		if got := r.Name(v); got != n {
			t.Errorf("Name(%d) = %q, want %q", v, got, n)
		}
	}
}
