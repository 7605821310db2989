//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// tcpreceive: the tcpdumplike job. Every TCP segment (and, when asked, UDP
// datagram) the host receives becomes one event: parsed addresses, ports and
// flags, the receiving device and namespace, the owner of the local socket
// where known, and the packet's bytes from the network header up to a snap
// length. Filters run here, before anything is copied.
//
// Rungs: fentry and kprobe on tcp_v4_rcv/tcp_v6_rcv (udp_rcv/udpv6_rcv),
// tp_btf on netif_receive_skb. fentry and tp_btf append the bytes with
// bpf_skb_output (non-linear skbs included); kprobes cannot, and copy the
// linear part through a per-CPU scratch buffer.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_SYN_SENT 2
#define TCP_LISTEN 10
#define TASK_COMM_LEN 16
#define IFNAMSIZ 16
#define MAX_HOSTS 4
#define MAX_PORTS 4
// Network header bytes carried in front of the data on the fentry rung,
// where skb->data is already past them.
#define HDR_MAX 128
// A perf record's size is 16 bits: the event, the header and the data must fit.
#define SAMPLE_MAX 65000
// The fentry and kprobe rungs' scratch buffer (a per-CPU map value is at
// most 32 KiB).
#define KPROBE_DATA_MAX 16384

char LICENSE[] SEC("license") = "GPL";

enum ev_flags {
	EV_OWNER = 1,    // pid, uid and comm are the local socket's owner
	EV_L4 = 2,       // ports (and TCP flags) were read
};

// One received packet. The event is followed by hdr_len bytes of network
// header (fentry rung only) and then the packet from where skb->data points;
// together they are caplen bytes starting at the network header.
struct event {
	__u64 ts;        // bpf_ktime_get_ns: CLOCK_MONOTONIC
	__u32 netns;     // inode of the device's network namespace
	__u32 ifindex;
	__u32 len;       // packet length from the network header
	__u32 caplen;    // bytes that follow the event
	__u32 pid;
	__u32 uid;
	__u8 saddr[16];  // IPv4 in the first 4 bytes
	__u8 daddr[16];
	__u16 sport;     // host byte order
	__u16 dport;
	__u16 tcp_flags; // byte 13 of the TCP header, and bit 8 for AE (NS)
	__u16 hdr_len;
	__u8 family;     // 4 or 6
	__u8 proto;      // IPPROTO_TCP or IPPROTO_UDP
	__u8 flags;      // enum ev_flags
	__u8 pad;
	char comm[TASK_COMM_LEN];
	char dev[IFNAMSIZ];
};

struct scratch {
	struct event e;
	__u8 data[KPROBE_DATA_MAX];
};

// The local end of a socket. IPv4 addresses are stored v4-mapped so that a
// dual-stack socket bound to :: matches both families; all zero is a
// wildcard bind.
struct owner_key {
	__u32 netns;
	__u16 port;
	__u8 proto;
	__u8 pad;
	__u8 addr[16];
};

struct owner {
	__u32 pid;
	__u32 uid;
	char comm[TASK_COMM_LEN];
};

struct ifkey {
	__u32 netns;
	__u32 ifindex;
};

struct host_match {
	__u8 addr[16];
	__u8 family; // 4 or 6
	__u8 dir;    // 0 either, 1 source, 2 destination
	__u8 pad[2];
};

struct port_match {
	__u16 port;
	__u8 dir;
	__u8 pad;
};

enum stat_index {
	STAT_LOST_UNATTRIBUTED = 0, // lost, and the per-interface map had no room to say where
	STAT_OWNER_ERR = 1,         // an owner could not be remembered
	STAT_MAX = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

// The ring buffer alternative to events, measured against it (see
// docs/capture.md): fixed-size records, linear bytes only.
#define RING_DATA_MAX 256

struct ring_rec {
	struct event e;
	__u8 data[RING_DATA_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} ring SEC(".maps");

// Wake the reader only once this many bytes wait, as perf's watermark
// does: a wakeup per record costs more than the record (set by the loader).
volatile const __u64 ring_wakeup = 1 << 22;

// Set by the loader for the auto transport: see tp_btf_recv_ring.
volatile const __u8 ring_spill = 0;

// Packets that matched but could not be handed to user space (buffer full),
// per interface; touched only on that failure path.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ifkey);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct owner_key);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// The socket each CPU remembered last: a process sending or receiving in a
// loop costs one lookup per call, not a walk of the socket and a hash update.
struct last_owner {
	__u64 sk;
	__u32 pid;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_owner);
} last_owner SEC(".maps");

// owner_of's answer for the last key each CPU asked about, good while
// owners_gen is unchanged: a flow's packets come in runs, and a copy
// compared in place costs less than two hash lookups per packet.
struct owner_cache {
	__u64 gen;
	struct owner_key k;
	struct owner o;
	__u32 found;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owner_cache);
} owner_cache SEC(".maps");

// Bumped after every insert into owners, which is also where the LRU
// evicts: nothing else changes the table.
__u64 owners_gen = 0;

// Settings, set by the loader. snaplen 0 copies no bytes (console only).
volatile const __u32 snaplen = 262144;
volatile const __u8 headers_only = 0;
volatile const __u8 want_tcp = 1;
volatile const __u8 want_udp = 0;
volatile const __u8 want_v4 = 1;
volatile const __u8 want_v6 = 1;
volatile const __u8 attribute_owner = 1;
volatile const __u32 if_index = 0; // 0: every interface
volatile const __u32 if_netns = 0;
volatile const __u32 n_hosts = 0;
volatile const struct host_match hosts[MAX_HOSTS] = {};
volatile const __u32 n_ports = 0;
volatile const struct port_match ports[MAX_PORTS] = {};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void count_lost(struct event *e)
{
	struct ifkey k = {.netns = e->netns, .ifindex = e->ifindex};
	__u64 *v = bpf_map_lookup_elem(&lost, &k);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&lost, &k, &one, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&lost, &k);
		if (v)
			__sync_fetch_and_add(v, 1);
		else
			stat_inc(STAT_LOST_UNATTRIBUTED);
	}
}

static __always_inline bool addr_eq(const volatile __u8 *a, const __u8 *b, int n)
{
	for (int i = 0; i < 16; i++) {
		if (i >= n)
			break;
		if (a[i] != b[i])
			return false;
	}
	return true;
}

// match applies the host and port filters; every listed item must match.
static __always_inline bool match(struct event *e)
{
#pragma unroll
	for (int i = 0; i < MAX_HOSTS; i++) {
		if (i >= n_hosts)
			break;
		if (hosts[i].family != e->family)
			return false;
		int n = e->family == 4 ? 4 : 16;
		bool s = hosts[i].dir != 2 && addr_eq(hosts[i].addr, e->saddr, n);
		bool d = hosts[i].dir != 1 && addr_eq(hosts[i].addr, e->daddr, n);
		if (!s && !d)
			return false;
	}
#pragma unroll
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= n_ports)
			break;
		if (!(e->flags & EV_L4))
			return false;
		bool s = ports[i].dir != 2 && ports[i].port == e->sport;
		bool d = ports[i].dir != 1 && ports[i].port == e->dport;
		if (!s && !d)
			return false;
	}
	return true;
}

// parse reads the network and transport headers at nh (len bytes from
// there) and fills e. It returns the length of both headers, or 0 when the
// packet is not one we want.
static __always_inline __u32 parse(unsigned char *nh, __u32 len, __u16 proto_be, struct event *e)
{
	__u32 l3;
	bool first = true;
	// The network header and the first 14 bytes after it come in one read:
	// each helper call is dear per packet, and without IP options or IPv6
	// extension headers those bytes are the transport header. Reading past
	// a short packet's end stays inside the skb's buffer (its shared info
	// follows the data); those bytes are used only when len covers them.
	__u8 th[14];
	bool have_th = false;
	e->len = len;
	if (proto_be == bpf_htons(ETH_P_IP)) {
		if (!want_v4)
			return 0;
		struct {
			struct iphdr ip;
			__u8 th[14];
		} __attribute__((packed)) h;
		if (bpf_probe_read_kernel(&h, sizeof(h), nh))
			return 0;
		if (h.ip.version != 4 || h.ip.ihl < 5)
			return 0;
		l3 = h.ip.ihl * 4;
		e->family = 4;
		e->proto = h.ip.protocol;
		__builtin_memcpy(e->saddr, &h.ip.saddr, 4);
		__builtin_memcpy(e->daddr, &h.ip.daddr, 4);
		first = (bpf_ntohs(h.ip.frag_off) & 0x1fff) == 0;
		if (l3 == sizeof(h.ip)) {
			__builtin_memcpy(th, h.th, sizeof(th));
			have_th = true;
		}
	} else if (proto_be == bpf_htons(ETH_P_IPV6)) {
		if (!want_v6)
			return 0;
		struct {
			struct ipv6hdr ip;
			__u8 th[14];
		} __attribute__((packed)) h;
		if (bpf_probe_read_kernel(&h, sizeof(h), nh))
			return 0;
		l3 = sizeof(h.ip);
		e->family = 6;
		e->proto = h.ip.nexthdr;
		__builtin_memcpy(e->saddr, &h.ip.saddr, 16);
		__builtin_memcpy(e->daddr, &h.ip.daddr, 16);
		__builtin_memcpy(th, h.th, sizeof(th));
		have_th = true;
	} else {
		return 0;
	}
	if (e->proto == IPPROTO_TCP) {
		if (!want_tcp)
			return 0;
	} else if (e->proto == IPPROTO_UDP) {
		if (!want_udp)
			return 0;
	} else {
		return 0;
	}
	__u32 l4 = 0;
	if (first) {
		__u32 need = e->proto == IPPROTO_TCP ? 14 : 4;
		if (l3 + need <= len && (have_th || !bpf_probe_read_kernel(th, sizeof(th), nh + l3))) {
			e->sport = (th[0] << 8) | th[1];
			e->dport = (th[2] << 8) | th[3];
			e->flags |= EV_L4;
			if (e->proto == IPPROTO_TCP) {
				e->tcp_flags = th[13] | ((th[12] & 1) << 8);
				l4 = (th[12] >> 4) * 4;
			} else {
				l4 = 8;
			}
		}
	}
	if (!match(e))
		return 0;
	return l3 + l4;
}

static __always_inline bool owner_key_eq(const struct owner_key *a, const struct owner_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

static __always_inline void owner_of(struct event *e)
{
	if (!attribute_owner || !(e->flags & EV_L4))
		return;
	struct owner_key k = {.netns = e->netns, .port = e->dport, .proto = e->proto};
	if (e->family == 4) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], e->daddr, 4);
	} else {
		__builtin_memcpy(k.addr, e->daddr, 16);
	}
	__u32 zero = 0;
	struct owner_cache *c = bpf_map_lookup_elem(&owner_cache, &zero);
	// Read before the lookups: an insert racing with them leaves the
	// cache behind the counter, so the next packet looks again.
	__u64 gen = *(volatile __u64 *)&owners_gen;
	const struct owner *o;
	if (c && c->gen == gen && owner_key_eq(&c->k, &k)) {
		if (!c->found)
			return;
		o = &c->o;
	} else {
		struct owner_key ask = k;
		o = bpf_map_lookup_elem(&owners, &ask);
		if (!o) {
			__builtin_memset(ask.addr, 0, sizeof(ask.addr));
			o = bpf_map_lookup_elem(&owners, &ask);
		}
		if (c) {
			c->gen = gen;
			c->k = k;
			c->found = o != 0;
			if (o)
				c->o = *o;
		}
		if (!o)
			return;
	}
	e->pid = o->pid;
	e->uid = o->uid;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	e->flags |= EV_OWNER;
}

// cap is how many bytes from the network header to copy.
static __always_inline __u32 cap_of(struct event *e, __u32 hdrs)
{
	__u32 cap = e->len;
	if (cap > snaplen)
		cap = snaplen;
	if (headers_only && cap > hdrs)
		cap = hdrs;
	if (cap > SAMPLE_MAX)
		cap = SAMPLE_MAX;
	return cap;
}

static __always_inline bool device(struct net_device *dev, struct event *e)
{
	if (!dev)
		return false;
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (if_index && (e->ifindex != if_index || e->netns != if_netns))
		return false;
	BPF_CORE_READ_STR_INTO(&e->dev, dev, name);
	return true;
}

// device_btf is device for the BTF-typed rungs: the same fields read
// directly, without a helper call each.
static __always_inline bool device_btf(struct net_device *dev, struct event *e)
{
	if (!dev)
		return false;
	e->ifindex = dev->ifindex;
	e->netns = dev->nd_net.net->ns.inum;
	if (if_index && (e->ifindex != if_index || e->netns != if_netns))
		return false;
	__builtin_memcpy(e->dev, dev->name, IFNAMSIZ);
	return true;
}

// ---- rung: tp_btf -----------------------------------------------------------
// netif_receive_skb fires before the stack resets the network header, but
// skb->data already points at it (the link-layer header has been pulled).

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_recv, struct sk_buff *skb)
{
	struct event e = {};
	if (!device_btf(skb->dev, &e))
		return 0;
	__u32 hdrs = parse((unsigned char *)(__u64)skb->data, skb->len, skb->protocol, &e);
	if (!hdrs)
		return 0;
	e.ts = bpf_ktime_get_ns();
	owner_of(&e);
	e.caplen = cap_of(&e, hdrs);
	__u64 flags = BPF_F_CURRENT_CPU | ((__u64)e.caplen << 32);
	if (bpf_skb_output(skb, &events, flags, &e, sizeof(e)))
		count_lost(&e);
	return 0;
}

// The same rung writing into the ring buffer: bpf_skb_output has no ring
// buffer form, so the bytes are read from the linear part of the skb. With
// ring_spill set (the auto transport), a packet the ring cannot carry whole
// (more than RING_DATA_MAX bytes wanted, or bytes outside the linear part)
// goes through bpf_skb_output instead: small packets, the many, take the
// cheaper ring, and nothing is cut short.
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_recv_ring, struct sk_buff *skb)
{
	struct event e = {};
	if (!device_btf(skb->dev, &e))
		return 0;
	__u64 data = (__u64)skb->data;
	__u32 hdrs = parse((unsigned char *)data, skb->len, skb->protocol, &e);
	if (!hdrs)
		return 0;
	e.ts = bpf_ktime_get_ns();
	owner_of(&e);
	__u32 cap = cap_of(&e, hdrs);
	__u32 linear = skb->len - skb->data_len;
	if (ring_spill && (cap > linear || cap > RING_DATA_MAX)) {
		e.caplen = cap;
		__u64 flags = BPF_F_CURRENT_CPU | ((__u64)cap << 32);
		if (bpf_skb_output(skb, &events, flags, &e, sizeof(e)))
			count_lost(&e);
		return 0;
	}
	if (cap > linear)
		cap = linear;
	if (cap > RING_DATA_MAX)
		cap = RING_DATA_MAX;
	e.caplen = cap;
	struct ring_rec *r = bpf_ringbuf_reserve(&ring, sizeof(*r), 0);
	if (!r) {
		count_lost(&e);
		return 0;
	}
	__builtin_memcpy(&r->e, &e, sizeof(e));
	// Bounds the verifier can follow: cap is at most RING_DATA_MAX.
	__u64 n = cap;
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(2 * RING_DATA_MAX - 1));
	if (n > RING_DATA_MAX)
		n = RING_DATA_MAX;
	if (n && bpf_probe_read_kernel(r->data, n, (void *)data))
		r->e.caplen = 0;
	__u64 wake = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA) >= ring_wakeup ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(r, wake);
	return 0;
}

// ---- rung: fentry -----------------------------------------------------------
// At tcp_v4_rcv and its siblings skb->data points at the transport header:
// the network header travels in front of the data, inside the metadata.

static __always_inline int fentry_rcv(struct sk_buff *skb, __u16 proto_be)
{
	__u32 zero = 0;
	// The event and the header go out as one piece of metadata: built in
	// the scratch buffer, whose data follows the event as in the record.
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct event *e = &s->e;
	__builtin_memset(e, 0, sizeof(*e));
	if (!device_btf(skb->dev, e))
		return 0;
	__u64 nh = (__u64)skb->head + skb->network_header;
	__u32 nhlen = (__u64)skb->data - nh;
	if (nhlen > HDR_MAX)
		return 0;
	__u32 hdrs = parse((unsigned char *)nh, skb->len + nhlen, proto_be, e);
	if (!hdrs)
		return 0;
	e->ts = bpf_ktime_get_ns();
	owner_of(e);
	__u32 cap = cap_of(e, hdrs);
	__u64 hlen = nhlen;
	if (hlen > cap)
		hlen = cap;
	// Bounds the verifier can follow whatever the compiler made of the above.
	asm volatile("%[n] &= 0xff" : [n] "+r"(hlen));
	if (hlen && bpf_probe_read_kernel(s->data, hlen, (void *)nh))
		return 0;
	e->hdr_len = hlen;
	e->caplen = cap;
	__u64 flags = BPF_F_CURRENT_CPU | ((__u64)(cap - hlen) << 32);
	if (bpf_skb_output(skb, &events, flags, s, sizeof(struct event) + hlen))
		count_lost(e);
	return 0;
}

SEC("fentry/tcp_v4_rcv")
int BPF_PROG(fentry_tcp_v4, struct sk_buff *skb)
{
	return fentry_rcv(skb, bpf_htons(ETH_P_IP));
}

SEC("fentry/tcp_v6_rcv")
int BPF_PROG(fentry_tcp_v6, struct sk_buff *skb)
{
	return fentry_rcv(skb, bpf_htons(ETH_P_IPV6));
}

SEC("fentry/udp_rcv")
int BPF_PROG(fentry_udp_v4, struct sk_buff *skb)
{
	return fentry_rcv(skb, bpf_htons(ETH_P_IP));
}

SEC("fentry/udpv6_rcv")
int BPF_PROG(fentry_udp_v6, struct sk_buff *skb)
{
	return fentry_rcv(skb, bpf_htons(ETH_P_IPV6));
}

// ---- rung: kprobe -----------------------------------------------------------
// No bpf_skb_output for kprobes: the linear part of the skb is copied into a
// per-CPU buffer and sent with bpf_perf_event_output.

static __always_inline int kprobe_rcv(void *ctx, struct sk_buff *skb, __u16 proto_be)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct event *e = &s->e;
	__builtin_memset(e, 0, sizeof(*e));
	if (!device(BPF_CORE_READ(skb, dev), e))
		return 0;
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	unsigned char *nh = head + BPF_CORE_READ(skb, network_header);
	__u32 nhlen = data - nh;
	__u32 len = BPF_CORE_READ(skb, len);
	__u32 linear = len - BPF_CORE_READ(skb, data_len) + nhlen;
	if (nhlen > HDR_MAX)
		return 0;
	__u32 hdrs = parse(nh, len + nhlen, proto_be, e);
	if (!hdrs)
		return 0;
	e->ts = bpf_ktime_get_ns();
	owner_of(e);
	__u32 cap = cap_of(e, hdrs);
	if (cap > linear)
		cap = linear;
	if (cap > KPROBE_DATA_MAX - 1)
		cap = KPROBE_DATA_MAX - 1;
	__u64 n = cap;
	// KPROBE_DATA_MAX is a power of two: the mask keeps n within the buffer.
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(KPROBE_DATA_MAX - 1));
	if (n && bpf_probe_read_kernel(s->data, n, nh))
		return 0;
	e->caplen = n;
	if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, s, sizeof(struct event) + n))
		count_lost(e);
	return 0;
}

SEC("kprobe/tcp_v4_rcv")
int BPF_KPROBE(kprobe_tcp_v4, struct sk_buff *skb)
{
	return kprobe_rcv(ctx, skb, bpf_htons(ETH_P_IP));
}

SEC("kprobe/tcp_v6_rcv")
int BPF_KPROBE(kprobe_tcp_v6, struct sk_buff *skb)
{
	return kprobe_rcv(ctx, skb, bpf_htons(ETH_P_IPV6));
}

SEC("kprobe/udp_rcv")
int BPF_KPROBE(kprobe_udp_v4, struct sk_buff *skb)
{
	return kprobe_rcv(ctx, skb, bpf_htons(ETH_P_IP));
}

SEC("kprobe/udpv6_rcv")
int BPF_KPROBE(kprobe_udp_v6, struct sk_buff *skb)
{
	return kprobe_rcv(ctx, skb, bpf_htons(ETH_P_IPV6));
}

// ---- socket owners (every rung) -----------------------------------------------
// Tracepoints that fire in the owning task: listen() (inet_sock_set_state
// to LISTEN) and sends and receives (sock_send_length / sock_recv_length for
// every protocol, or TCP's own tracepoints where UDP is not captured). They
// run on every send and receive, so on the BTF rungs (tp_btf programs, the
// socket a BTF-typed pointer) the fields are plain loads; raw tracepoints
// must read each one with a helper call.

static __always_inline void remember(struct sock *sk, const bool direct)
{
	if (!attribute_owner || !sk)
		return;
	struct owner_key k = {};
	k.port = direct ? sk->__sk_common.skc_num : BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!k.port)
		return;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	struct last_owner *last = bpf_map_lookup_elem(&last_owner, &zero);
	if (last && last->sk == (__u64)sk && last->pid == pid && last->port == k.port)
		return;
	// sk_protocol is a full u16 since 5.6, older than any BTF rung here.
	k.proto = direct ? sk->sk_protocol : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return;
	__u16 family;
	if (direct) {
		k.netns = sk->__sk_common.skc_net.net->ns.inum;
		family = sk->__sk_common.skc_family;
	} else {
		k.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		family = BPF_CORE_READ(sk, __sk_common.skc_family);
	}
	if (family == 2 /* AF_INET */) {
		__u32 a = direct ? sk->__sk_common.skc_rcv_saddr : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		if (a) {
			k.addr[10] = 0xff;
			k.addr[11] = 0xff;
			__builtin_memcpy(&k.addr[12], &a, 4);
		}
	} else if (family == 10 /* AF_INET6 */) {
		if (direct)
			__builtin_memcpy(k.addr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		else
			BPF_CORE_READ_INTO(&k.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	} else {
		return;
	}
	struct owner *o = bpf_map_lookup_elem(&owners, &k);
	if (!o || o->pid != pid) {
		struct owner n = {.pid = pid, .uid = (__u32)bpf_get_current_uid_gid()};
		bpf_get_current_comm(n.comm, sizeof(n.comm));
		if (bpf_map_update_elem(&owners, &k, &n, BPF_ANY)) {
			stat_inc(STAT_OWNER_ERR);
			return;
		}
		__sync_fetch_and_add(&owners_gen, 1);
	}
	if (last) {
		last->sk = (__u64)sk;
		last->pid = pid;
		last->port = k.port;
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_LISTEN)
		remember(sk, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_btf_sock_recv_length, struct sock *sk)
{
	remember(sk, true);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_btf_sock_send_length, struct sock *sk)
{
	remember(sk, true);
	return 0;
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(tp_btf_tcp_sendmsg_locked, struct sock *sk)
{
	remember(sk, true);
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(tp_btf_tcp_rcv_space_adjust, struct sock *sk)
{
	remember(sk, true);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	if ((int)ctx->args[2] == TCP_LISTEN)
		remember((struct sock *)ctx->args[0], false);
	return 0;
}

SEC("raw_tracepoint/sock_recv_length")
int raw_tp_sock_recv_length(struct bpf_raw_tracepoint_args *ctx)
{
	remember((struct sock *)ctx->args[0], false);
	return 0;
}

SEC("raw_tracepoint/sock_send_length")
int raw_tp_sock_send_length(struct bpf_raw_tracepoint_args *ctx)
{
	remember((struct sock *)ctx->args[0], false);
	return 0;
}

// TCP's own: before data is queued (6.6+), and as data is copied out.
SEC("raw_tracepoint/tcp_sendmsg_locked")
int raw_tp_tcp_sendmsg_locked(struct bpf_raw_tracepoint_args *ctx)
{
	remember((struct sock *)ctx->args[0], false);
	return 0;
}

SEC("raw_tracepoint/tcp_rcv_space_adjust")
int raw_tp_tcp_rcv_space_adjust(struct bpf_raw_tracepoint_args *ctx)
{
	remember((struct sock *)ctx->args[0], false);
	return 0;
}
