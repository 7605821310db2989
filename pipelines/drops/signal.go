// Package drops is the dropwatch job as a sockeye source: every packet the
// kernel frees as dropped (skb:kfree_skb), counted in the kernel by
// bpf/drops per code location, reason and protocol, drained once per
// interval into an OpenTelemetry counter.
package drops

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/pipelines"
)

// ColPackets is the only value column of a drops row.
const ColPackets = 0

// MetricDropped has no semantic convention (system.network.packet.dropped
// counts an interface's drops from its statistics, not the stack's frees),
// so it lives under sockeye.*.
const MetricDropped = "sockeye.network.packet.dropped"

// Metrics maps the column to its OpenTelemetry counter.
var Metrics = []pipelines.MetricDef{
	{Name: MetricDropped, Unit: "{packet}", Description: "Packets the kernel's network stack dropped (skb:kfree_skb), by code location and reason.", Column: ColPackets},
}

// Row attributes.
var (
	AttrLocation  = attribute.Key("sockeye.drop.location")
	AttrReason    = attribute.Key("sockeye.drop.reason")
	AttrType      = semconv.NetworkTypeKey
	AttrTransport = semconv.NetworkTransportKey
	AttrDevice    = semconv.NetworkInterfaceNameKey
)

// Attributes are the names of the attributes drops rows may carry.
var Attributes = []string{string(AttrLocation), string(AttrReason), string(AttrType), string(AttrTransport), string(AttrDevice)}

// Entry is one decoded kernel key with its count over an interval.
type Entry struct {
	// Function is where the skb was freed: "name" or "name [module]", or
	// the raw address where the kernel hides its symbols.
	Function string
	// Site is Function with the offset, "name+0x1f"; the console may show it.
	Site      string
	Reason    string
	Type      string // ipv4, ipv6 or ""
	Transport string // tcp, udp, icmp, unix, ... or ""
	Device    string // "" unless interface keys are on and the skb had one
	Packets   uint64
}

// Row turns an entry into a pipeline row; attributes the kernel could not
// tell are left out rather than set empty.
func (e Entry) Row() pipelines.Row {
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, AttrLocation.String(e.Function), AttrReason.String(e.Reason))
	if e.Type != "" {
		attrs = append(attrs, AttrType.String(e.Type))
	}
	if e.Transport != "" {
		attrs = append(attrs, AttrTransport.String(e.Transport))
	}
	if e.Device != "" {
		attrs = append(attrs, AttrDevice.String(e.Device))
	}
	return pipelines.Row{Attrs: attrs, Values: []int64{int64(e.Packets)}}
}

// Ethernet protocol numbers of skb->protocol.
const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86DD
)

// NetworkType is network.type from skb->protocol: only IP has a value.
func NetworkType(l3 uint16) string {
	switch l3 {
	case ethIPv4:
		return "ipv4"
	case ethIPv6:
		return "ipv6"
	}
	return ""
}

// Transport is network.transport from the IP protocol number (lower-case
// IANA keywords; a number without one is shown as the number) or, for
// skbs without L3 protocol, from their socket's family. "" when unknown.
func Transport(l3 uint16, l4, family uint8) string {
	if l3 == ethIPv4 || l3 == ethIPv6 {
		switch l4 {
		case 0:
			// Unknown, or an IPv6 hop-by-hop header in front of it.
			return ""
		case 1:
			return "icmp"
		case 2:
			return "igmp"
		case 6:
			return "tcp"
		case 17:
			return "udp"
		case 33:
			return "dccp"
		case 47:
			return "gre"
		case 50:
			return "esp"
		case 51:
			return "ah"
		case 58:
			return "ipv6-icmp"
		case 132:
			return "sctp"
		case 136:
			return "udplite"
		}
		return strconv.Itoa(int(l4))
	}
	if l3 == 0 {
		switch family {
		case 1: // AF_UNIX
			return "unix"
		case 16: // AF_NETLINK
			return "netlink"
		}
	}
	return ""
}
