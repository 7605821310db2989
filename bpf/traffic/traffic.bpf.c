//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// traffic: the nettop job. Counts packets and bytes per (pid, uid, device,
// command) in the kernel; user space drains the map once per interval, so no
// event per packet ever leaves the kernel.
//
// One counting routine, entered from several hook rungs: fentry, kprobe,
// tp_btf and raw tracepoint. The loader keeps the programs of the rung it
// picks and drops the rest.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16
#define IFNAMSIZ 16
#define E2BIG 7
#define EEXIST 17
#define ENOMEM 12

char LICENSE[] SEC("license") = "GPL";

struct traffic_key {
	__u32 pid;
	__u32 uid;
	__u32 ifindex;
	__u32 netns;
	char comm[TASK_COMM_LEN];
	char dev[IFNAMSIZ];
};

struct traffic_value {
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 rx_bytes;
};

// owner is who last sent or received on a TCP socket from process context:
// the answer to "whose packet is this" when the kernel sends for a socket
// from softirq or a timer (ACKs, retransmits, data released by a window
// update). Only TCP needs it: every other protocol sends in the sending
// task, so UDP packets never pay for an owner hook or lookup.
struct owner {
	__u32 pid;
	__u32 uid;
	char comm[TASK_COMM_LEN];
};

enum stat_index {
	STAT_MAP_FULL = 0,   // a new key did not fit in traffic
	STAT_UPDATE_ERR = 1, // any other failure to insert a key
	STAT_LAST_ERR = 2,   // errno of the last failed insert, for the log
	STAT_MAX = 3,
};

// max_entries is set by the loader from the config.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct traffic_key);
	__type(value, struct traffic_value);
} traffic SEC(".maps");

// LRU of TCP sockets keyed by socket cookie where the kernel lets tracing
// programs ask for it (owner_cookie), else by socket address: bounded
// without a cleanup hook. Cookies are never reused. An address is, so the
// rungs keyed by address forget a socket when the kernel destroys it
// (tcp:tcp_destroy_sock, attached only there).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// front holds, per CPU, the counts of the last key that CPU counted and
// not yet added to traffic. Packets come in runs of one key (a process
// sending, its receives on lo): a run costs a compare, not a hash lookup
// each. A key enters front only once it has its entry in traffic, so a full
// map is seen at once; its counts move into that entry when the CPU counts
// another key. The agent reads front with traffic and adds the two (see
// Probe.Read).
struct front {
	struct traffic_key key;
	struct traffic_value v;
	__u64 used;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct front);
} fronts SEC(".maps");

// Set by the loader: 1 attributes packets to the socket's owner where the
// packet has a socket we have seen, 0 to the task running (the seed's way).
volatile const __u32 attribute_socket = 1;

// Set by the loader: 1 keys owners by socket cookie on the rungs that read
// BTF pointers (fentry, tp_btf), where the kernel allows
// bpf_get_socket_cookie(struct sock *) in tracing programs (5.12+); 0 keys
// them by address. Where it is 0 the verifier drops the helper call as dead
// code, so the same programs load on older kernels.
volatile const __u32 owner_cookie = 0;

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n;
}

// owner_key is a socket's key in owners. A cookie is 0 until something asks
// for it: remember_owner does, so a socket whose cookie is still 0 has no
// entry and needs no lookup. Reading it is one load; the helper that makes
// it is called only by remember_owner, once per socket.
static __always_inline __u64 owner_key(struct sock *sk, const bool direct)
{
	if (direct && owner_cookie)
		return sk->__sk_common.skc_cookie.counter;
	return (__u64)sk;
}

// is_tcp: the owner table holds TCP sockets only. sk_protocol is a full
// u16 since 5.6, older than any kernel the BTF rungs run on.
static __always_inline bool is_tcp(struct sock *sk, const bool direct)
{
	if (direct)
		return sk->sk_protocol == IPPROTO_TCP;
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

// remember_owner records the current task as the owner of sk. any_proto:
// the hook fires for every protocol (sock_send_length and friends, the
// fallback where the kernel has no TCP-only hook), so filter to TCP.
static __always_inline void remember_owner(struct sock *sk, const bool direct, const bool any_proto)
{
	if (!sk)
		return;
	if (any_proto && !is_tcp(sk, direct))
		return;
	__u64 k = owner_key(sk, direct);
	if (direct && owner_cookie && !k)
		k = bpf_get_socket_cookie(sk);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct owner *o = bpf_map_lookup_elem(&owners, &k);
	if (o && o->pid == pid)
		return;
	struct owner n = {};
	n.pid = pid;
	n.uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(n.comm, sizeof(n.comm));
	bpf_map_update_elem(&owners, &k, &n, BPF_ANY);
}

static __always_inline bool key_eq(const struct traffic_key *a, const struct traffic_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
#pragma unroll
	for (int i = 0; i < sizeof(*a) / 8; i++)
		if (x[i] != y[i])
			return false;
	return true;
}

// Per-CPU values: no other CPU writes this slot, so plain adds suffice.
static __always_inline void add(struct traffic_value *v, bool tx, __u64 len)
{
	if (tx) {
		v->tx_packets++;
		v->tx_bytes += len;
	} else {
		v->rx_packets++;
		v->rx_bytes += len;
	}
}

// entry is key's counters in traffic, inserted when missing; NULL when the
// map has no room, counting the packets this loses.
static __always_inline struct traffic_value *entry(struct traffic_key *key, __u64 packets)
{
	struct traffic_value *v = bpf_map_lookup_elem(&traffic, key);
	if (v)
		return v;
	struct traffic_value zero = {};
	// int, not long: older kernels return the helper's int result
	// zero-extended, so a 64-bit compare with -E2BIG would miss.
	int err = bpf_map_update_elem(&traffic, key, &zero, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		// A preallocated map out of free elements says E2BIG on
		// recent kernels, ENOMEM on some older ones: both mean full.
		stat_add(err == -E2BIG || err == -ENOMEM ? STAT_MAP_FULL : STAT_UPDATE_ERR, packets);
		__u32 idx = STAT_LAST_ERR;
		__u64 *last = bpf_map_lookup_elem(&stats, &idx);
		if (last)
			*last = (__u32)-err;
		return NULL;
	}
	return bpf_map_lookup_elem(&traffic, key);
}

// count is inlined into every rung. With direct set (fentry, tp_btf) the
// skb is a BTF-typed pointer the verifier lets us dereference: plain loads,
// still relocated by CO-RE, cost a fraction of the probe-read helper calls
// the other rungs (kprobe, raw tracepoint) must make.
static __always_inline void count(struct sk_buff *skb, bool tx, const bool direct)
{
	struct traffic_key key = {};
	struct net_device *dev;
	struct sock *sk;
	__u64 len;
	__u16 mac, net;

	if (direct) {
		dev = skb->dev;
		if (!dev)
			return;
		key.ifindex = dev->ifindex;
		key.netns = dev->nd_net.net->ns.inum;
		// Two 8-byte loads instead of a string copy helper.
		*(__u64 *)&key.dev[0] = *(__u64 *)&dev->name[0];
		*(__u64 *)&key.dev[8] = *(__u64 *)&dev->name[8];
		len = skb->len;
		mac = skb->mac_header;
		net = skb->network_header;
		sk = skb->sk;
	} else {
		dev = BPF_CORE_READ(skb, dev);
		if (!dev)
			return;
		key.ifindex = BPF_CORE_READ(dev, ifindex);
		key.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		BPF_CORE_READ_STR_INTO(&key.dev, dev, name);
		len = BPF_CORE_READ(skb, len);
		mac = BPF_CORE_READ(skb, mac_header);
		net = BPF_CORE_READ(skb, network_header);
		sk = BPF_CORE_READ(skb, sk);
	}

	// On receive the link-layer header has been pulled already; add it
	// back so both directions count the frame tcpdump would show.
	if (!tx && mac != (__u16)~0U && net > mac)
		len += net - mac;

	bool owned = false;
	__u64 k = attribute_socket && sk ? owner_key(sk, direct) : 0;
	// A cookie of 0 was never asked for, so there is no entry; only TCP
	// sockets have entries (a cookie may have been made by someone else).
	if (k && is_tcp(sk, direct)) {
		struct owner *o = bpf_map_lookup_elem(&owners, &k);
		if (o) {
			key.pid = o->pid;
			key.uid = o->uid;
			__builtin_memcpy(key.comm, o->comm, sizeof(key.comm));
			owned = true;
		}
	}
	if (!owned) {
		if (direct && bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
			// 5.11+: read pid, uid and comm straight from the task: one
			// helper call instead of three, which matters per packet
			// where every call and return is dear (retpolines, SRSO).
			// The same values the helpers return: the global tgid, the
			// uid of the task's credentials in the initial namespace.
			struct task_struct *task = bpf_get_current_task_btf();
			key.pid = task->tgid;
			key.uid = task->cred->uid.val;
			*(__u64 *)&key.comm[0] = *(__u64 *)&task->comm[0];
			*(__u64 *)&key.comm[8] = *(__u64 *)&task->comm[8];
		} else {
			key.pid = bpf_get_current_pid_tgid() >> 32;
			key.uid = (__u32)bpf_get_current_uid_gid();
			bpf_get_current_comm(key.comm, sizeof(key.comm));
		}
	}

	__u32 zero = 0;
	struct front *f = bpf_map_lookup_elem(&fronts, &zero);
	if (!f)
		return;
	if (f->used && key_eq(&f->key, &key)) {
		add(&f->v, tx, len);
		return;
	}
	// Another key: make sure it has its entry, then move the counts of
	// the old one into its entry, which the agent may have removed
	// meanwhile (an exited process): insert it again, as any late packet
	// of an exited process does.
	if (!entry(&key, 1))
		return;
	if (f->used) {
		struct traffic_value *old = entry(&f->key, f->v.tx_packets + f->v.rx_packets);
		if (old) {
			old->tx_packets += f->v.tx_packets;
			old->tx_bytes += f->v.tx_bytes;
			old->rx_packets += f->v.rx_packets;
			old->rx_bytes += f->v.rx_bytes;
		}
	}
	f->key = key;
	__builtin_memset(&f->v, 0, sizeof(f->v));
	f->used = 1;
	add(&f->v, tx, len);
}

// ---- rung: fentry ----------------------------------------------------------
// Transmit: __dev_queue_xmit(skb, sb_dev) on 5.12+, dev_queue_xmit(skb)
// before; the loader attaches to whichever the kernel has (arg 0 is the skb
// in both). Receive stays on the netif_receive_skb tracepoint on every rung:
// the function under it is inlined on common distribution kernels.

SEC("fentry/__dev_queue_xmit")
int BPF_PROG(fentry_xmit, struct sk_buff *skb)
{
	count(skb, true, true);
	return 0;
}

// Owners: tcp_sendmsg and tcp_recvmsg, entered in the task that sends or
// receives, before any data moves; IPv4 and IPv6 alike, and TCP only.
SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_sendmsg, struct sock *sk)
{
	remember_owner(sk, true, false);
	return 0;
}

SEC("fentry/tcp_recvmsg")
int BPF_PROG(fentry_recvmsg, struct sock *sk)
{
	remember_owner(sk, true, false);
	return 0;
}

// ---- rung: kprobe ----------------------------------------------------------

SEC("kprobe/__dev_queue_xmit")
int BPF_KPROBE(kprobe_xmit, struct sk_buff *skb)
{
	count(skb, true, false);
	return 0;
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_sendmsg, struct sock *sk)
{
	remember_owner(sk, false, false);
	return 0;
}

SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kprobe_recvmsg, struct sock *sk)
{
	remember_owner(sk, false, false);
	return 0;
}

// ---- rung: tp_btf (no tracefs needed) ----------------------------------------

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_btf_xmit, struct sk_buff *skb)
{
	count(skb, true, true);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_recv, struct sk_buff *skb)
{
	count(skb, false, true);
	return 0;
}

// Owners on the tracepoint rungs, TCP-only hooks first:
// tcp:tcp_sendmsg_locked (6.6+) fires in the sending task before data is
// queued; tcp:tcp_rcv_space_adjust (4.16+) in the receiving task as it
// copies data out. sock:sock_send_length / sock_recv_length (6.3+) fire for
// every protocol after the call, the fallback where the TCP hook is missing.
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(tp_btf_tcp_sendmsg_locked, struct sock *sk)
{
	remember_owner(sk, true, false);
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(tp_btf_tcp_rcv_space_adjust, struct sock *sk)
{
	remember_owner(sk, true, false);
	return 0;
}

// Before both: sock:inet_sock_set_state (4.16+) on CLOSE -> SYN_SENT, which
// happens inside connect(), so at least clients are known before 6.3.
#define TCP_SYN_SENT_STATE 2

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT_STATE)
		remember_owner(sk, true, true);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_btf_sock_send_length, struct sock *sk)
{
	remember_owner(sk, true, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_btf_sock_recv_length, struct sock *sk)
{
	remember_owner(sk, true, true);
	return 0;
}

// ---- rung: raw tracepoint (no BTF-typed context) ----------------------------

SEC("raw_tracepoint/net_dev_start_xmit")
int raw_tp_xmit(struct bpf_raw_tracepoint_args *ctx)
{
	count((struct sk_buff *)ctx->args[0], true, false);
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb")
int raw_tp_recv(struct bpf_raw_tracepoint_args *ctx)
{
	count((struct sk_buff *)ctx->args[0], false, false);
	return 0;
}

SEC("raw_tracepoint/tcp_sendmsg_locked")
int raw_tp_tcp_sendmsg_locked(struct bpf_raw_tracepoint_args *ctx)
{
	remember_owner((struct sock *)ctx->args[0], false, false);
	return 0;
}

SEC("raw_tracepoint/tcp_rcv_space_adjust")
int raw_tp_tcp_rcv_space_adjust(struct bpf_raw_tracepoint_args *ctx)
{
	remember_owner((struct sock *)ctx->args[0], false, false);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	if ((int)ctx->args[2] == TCP_SYN_SENT_STATE)
		remember_owner((struct sock *)ctx->args[0], false, true);
	return 0;
}

SEC("raw_tracepoint/sock_send_length")
int raw_tp_sock_send_length(struct bpf_raw_tracepoint_args *ctx)
{
	remember_owner((struct sock *)ctx->args[0], false, true);
	return 0;
}

SEC("raw_tracepoint/sock_recv_length")
int raw_tp_sock_recv_length(struct bpf_raw_tracepoint_args *ctx)
{
	remember_owner((struct sock *)ctx->args[0], false, true);
	return 0;
}

// ---- forgetting destroyed TCP sockets (owners keyed by address only) --------
// tcp:tcp_destroy_sock fires once per TCP socket, when the kernel tears it
// down; nothing is sent on it afterwards, and its memory may then hold the
// next socket. Per socket, not per packet. UDP has no such tracepoint.

static __always_inline void forget_owner(struct sock *sk)
{
	__u64 k = (__u64)sk;
	bpf_map_delete_elem(&owners, &k);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tp_btf_sock_destroy, struct sock *sk)
{
	forget_owner(sk);
	return 0;
}

SEC("raw_tracepoint/tcp_destroy_sock")
int raw_tp_sock_destroy(struct bpf_raw_tracepoint_args *ctx)
{
	forget_owner((struct sock *)ctx->args[0]);
	return 0;
}
