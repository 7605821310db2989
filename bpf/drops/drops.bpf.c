//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// drops: the dropwatch job. Counts every skb the kernel frees as dropped
// (skb:kfree_skb) per (location, reason, protocol[, device]) in a per-CPU
// hash; user space drains the map once per interval, so no event per packet
// ever leaves the kernel.
//
// One counting routine, entered from three rungs: tp_btf, raw tracepoint and
// the classic tracepoint. Each rung has two programs because the
// tracepoint's signature changed: (skb, location) before 5.17,
// (skb, location, reason) since, (skb, location, reason, rx_sk) since 6.11.
// Reading an argument the kernel does not pass fails to load or attach, so
// the loader picks the variant from the kernel's BTF.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define IFNAMSIZ 16
#define E2BIG 7
#define EEXIST 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

// REASON_NONE is the reason of drops on kernels without drop reasons.
#define REASON_NONE 0xffffffff

char LICENSE[] SEC("license") = "GPL";

// No implicit padding: the whole key is hashed, so every byte is zeroed.
struct drop_key {
	__u64 location; // kernel text address that freed the skb
	__u32 reason;   // enum skb_drop_reason, or REASON_NONE
	__u32 ifindex;  // skb->dev, when interface keys are on
	__u16 l3;       // skb->protocol in host order (ETH_P_*), 0 if unset
	__u8 l4;        // IP protocol from the network header, 0 if unknown
	__u8 family;    // socket family, only for skbs without L3 protocol
	__u8 pad[4];
	char dev[IFNAMSIZ];
};

enum stat_index {
	STAT_MAP_FULL = 0,   // a new key did not fit in drops
	STAT_UPDATE_ERR = 1, // any other failure to insert a key
	STAT_LAST_ERR = 2,   // errno of the last such failure, for the log
	STAT_MAX = 3,
};

// max_entries is set by the loader from the config.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Set by the loader. with_interface adds skb->dev to the key (cardinality).
// SKB_CONSUMED is a normal free, not a drop; its number depends on the
// kernel, so the loader reads it from BTF and sets skip_consumed where the
// kernel has it.
volatile const __u32 with_interface = 0;
volatile const __u32 skip_consumed = 0;
volatile const __u32 consumed_reason = 0;

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

// READ reads skb fields: tp_btf programs get a BTF-typed skb and load its
// fields directly (the verifier makes them fault-safe loads), the other
// rungs go through bpf_probe_read_kernel. `direct` is a constant in each
// program, so only one branch is compiled in.
#define READ(direct, ptr, field) ((direct) ? (ptr)->field : BPF_CORE_READ(ptr, field))

static __always_inline void count(struct sk_buff *skb, __u64 location, __u32 reason, const bool direct)
{
	if (skip_consumed && reason == consumed_reason)
		return;

	struct drop_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.location = location;
	key.reason = reason;

	__u16 proto = bpf_ntohs(READ(direct, skb, protocol));
	key.l3 = proto;
	if (proto == ETH_P_IP || proto == ETH_P_IPV6) {
		// The version nibble guards against a network header offset the
		// stack has not set yet (it then points at the headroom).
		unsigned char *head = READ(direct, skb, head);
		__u16 nh = READ(direct, skb, network_header);
		__u8 hdr[10] = {};
		if (head && nh != (__u16)~0U && bpf_probe_read_kernel(hdr, sizeof(hdr), head + nh) == 0) {
			__u8 version = hdr[0] >> 4;
			if (proto == ETH_P_IP && version == 4)
				key.l4 = hdr[9]; // iphdr.protocol
			else if (proto == ETH_P_IPV6 && version == 6)
				key.l4 = hdr[6]; // ipv6hdr.nexthdr
		}
	} else if (proto == 0) {
		// Local sockets (AF_UNIX, netlink) carry no L3 protocol; their
		// socket's family says what they are.
		struct sock *sk = READ(direct, skb, sk);
		if (sk)
			key.family = (__u8)BPF_CORE_READ(sk, __sk_common.skc_family);
	}

	if (with_interface) {
		struct net_device *dev = READ(direct, skb, dev);
		if (dev) {
			// skb->dev shares its slot with dev_scratch on some queues; a
			// name that cannot be read means it was not a device.
			if (BPF_CORE_READ_STR_INTO(&key.dev, dev, name) > 0)
				key.ifindex = BPF_CORE_READ(dev, ifindex);
			else
				__builtin_memset(key.dev, 0, sizeof(key.dev));
		}
	}

	__u64 *v = bpf_map_lookup_elem(&drops, &key);
	if (!v) {
		__u64 zero = 0;
		// int, not long: before 6.4 the verifier calls the map's update
		// directly and its int result reaches R0 zero-extended, so a
		// 64-bit -E2BIG would never match.
		int err = bpf_map_update_elem(&drops, &key, &zero, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			if (err == -E2BIG) {
				stat_inc(STAT_MAP_FULL);
			} else {
				stat_inc(STAT_UPDATE_ERR);
				__u32 idx = STAT_LAST_ERR;
				__u64 *last = bpf_map_lookup_elem(&stats, &idx);
				if (last)
					*last = (__u64)(-(__s64)err);
			}
			return;
		}
		v = bpf_map_lookup_elem(&drops, &key);
		if (!v)
			return;
	}
	// Per-CPU values: no other CPU writes this slot.
	*v += 1;
}

// ---- rung: tp_btf (no tracefs needed) --------------------------------------

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	count(skb, (__u64)location, (__u32)reason, true);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb_noreason, struct sk_buff *skb, void *location)
{
	count(skb, (__u64)location, REASON_NONE, true);
	return 0;
}

// ---- rung: raw tracepoint (no BTF-typed context) ---------------------------

SEC("raw_tracepoint/kfree_skb")
int raw_tp_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	count((struct sk_buff *)ctx->args[0], ctx->args[1], (__u32)ctx->args[2], false);
	return 0;
}

SEC("raw_tracepoint/kfree_skb")
int raw_tp_kfree_skb_noreason(struct bpf_raw_tracepoint_args *ctx)
{
	count((struct sk_buff *)ctx->args[0], ctx->args[1], REASON_NONE, false);
	return 0;
}

// ---- rung: classic tracepoint (needs tracefs) -------------------------------
// The record's layout moved (rx_sk was inserted before protocol in 6.11);
// CO-RE relocates the field offsets against the kernel's own struct.

SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	count((struct sk_buff *)ctx->skbaddr, (__u64)ctx->location, (__u32)ctx->reason, false);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb_noreason(struct trace_event_raw_kfree_skb *ctx)
{
	count((struct sk_buff *)ctx->skbaddr, (__u64)ctx->location, REASON_NONE, false);
	return 0;
}
