//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// accepts: the tcp_connections job. One ring-buffer record per TCP connection
// a process accepts (and, when asked, per outbound connection that reaches
// ESTABLISHED), written in the context of the accepting task.
//
// Accept rungs:
//   fentry          fexit/inet_csk_accept (two variants: the signature
//                   changed in 6.10 and the return value follows the args)
//   kprobe          kretprobe/inet_csk_accept
//   tp_btf          tp_btf/sys_exit, filtered to accept/accept4, reading the
//   raw_tracepoint  new socket through the task's file table
//   tracepoint      tracepoint/syscalls/sys_exit_accept{,4} (tracefs)
// Connect (optional): sock:inet_sock_set_state in the flavour of the rung,
// remembering the task at CLOSE->SYN_SENT (process context) and reporting at
// ->ESTABLISHED, when the ports are known.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define TASK_COMM_LEN 16
#define AF_INET 2
#define AF_INET6 10
#define E2BIG 7
#define S_IFMT 00170000
#define S_IFSOCK 0140000

char LICENSE[] SEC("license") = "GPL";

enum kind {
	KIND_ACCEPT = 0,
	KIND_CONNECT = 1,
};

// event is one connection. Laid out without implicit padding so user space
// decodes it at fixed offsets.
struct event {
	__u64 ts_ns; // bpf_ktime_get_ns: CLOCK_MONOTONIC
	__u32 pid;   // tgid
	__u32 tid;
	__u32 uid;
	__u16 family; // AF_INET or AF_INET6 (v4-mapped addresses stay AF_INET6)
	__u16 lport;  // host byte order
	__u16 rport;  // host byte order
	__u8 kind;
	__u8 pad1;
	__u8 laddr[16]; // IPv4 in the first 4 bytes
	__u8 raddr[16];
	char comm[TASK_COMM_LEN];
	__u32 pad2;
};

// task is who started an outbound connection, kept from SYN_SENT to
// ESTABLISHED (which runs in softirq, in no useful task).
struct task {
	__u32 pid;
	__u32 tid;
	__u32 uid;
	char comm[TASK_COMM_LEN];
};

enum stat_index {
	STAT_RINGBUF_FULL = 0, // an event did not fit in the ring buffer
	STAT_CONNECT_FULL = 1, // a connecting socket did not fit in connecting
	STAT_MAX = 2,
};

// max_entries (bytes) is set by the loader from the config.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// Every socket here leaves on ESTABLISHED or CLOSE, so a plain hash stays
// bounded by the connections in flight; a failed insert is counted.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct task);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Set by the loader: this architecture's accept and accept4 numbers.
volatile const __u32 nr_accept = 43;
volatile const __u32 nr_accept4 = 288;

// Set by the loader: wake the reader only once this much is unread (0: on
// every record). Waking it costs the accepting task an interrupt per
// record; the reader polls on a timer for the rest.
volatile const __u64 wakeup_bytes = 0;

// Named so that the types land in the object's BTF for bpf2go.
const struct event *unused_event __attribute__((unused));
const struct task *unused_task __attribute__((unused));

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline bool is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	// A bitfield before 5.6; the probed read works for both layouts.
	__u16 proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	return proto == IPPROTO_TCP || proto == IPPROTO_MPTCP;
}

// submit writes one event for sk with the task t. Only the kernel's accept
// paths and ESTABLISHED sockets get here, so the addresses are set.
static __always_inline void submit(struct sock *sk, __u8 kind, const struct task *t)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = t->pid;
	e->tid = t->tid;
	e->uid = t->uid;
	__builtin_memcpy(e->comm, t->comm, sizeof(e->comm));
	e->kind = kind;
	e->pad1 = 0;
	e->pad2 = 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	// A connection reset before accept() returned has been closed, and
	// closing clears skc_num; the source port of the inet socket stays.
	if (!e->lport)
		e->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->raddr, sk, __sk_common.skc_daddr);
	}
	__u64 flags = 0;
	if (wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void current_task(struct task *t)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	t->pid = pid_tgid >> 32;
	t->tid = (__u32)pid_tgid;
	t->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(t->comm, sizeof(t->comm));
}

static __always_inline void accepted(struct sock *sk)
{
	if (!sk || !is_tcp(sk))
		return;
	struct task t;
	current_task(&t);
	submit(sk, KIND_ACCEPT, &t);
}

// accepted_fd reports the socket behind fd, the value accept(2) returns, in
// the current task's file table. The fd was installed by this very syscall;
// the inode check guards against it having been closed and reused meanwhile.
static __always_inline void accepted_fd(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max)
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return;
	accepted(BPF_CORE_READ(sock, sk));
}

static __always_inline bool is_accept(long nr)
{
	return nr == nr_accept || nr == nr_accept4;
}

// ---- connect: sock:inet_sock_set_state ------------------------------------

static __always_inline void state_change(struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return;
	if (!sk || !is_tcp(sk))
		return;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		// connect(2) moves the socket here in the caller's context.
		if (oldstate != TCP_CLOSE)
			return;
		struct task t;
		current_task(&t);
		if (bpf_map_update_elem(&connecting, &key, &t, BPF_ANY) == -E2BIG)
			stat_inc(STAT_CONNECT_FULL);
		return;
	}
	struct task *t = bpf_map_lookup_elem(&connecting, &key);
	if (!t)
		return;
	if (newstate == TCP_ESTABLISHED)
		submit(sk, KIND_CONNECT, t);
	bpf_map_delete_elem(&connecting, &key);
}

// ---- rung: fentry (fexit) ---------------------------------------------------

// Up to 6.9: inet_csk_accept(sk, flags, err, kern).
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_accept_flags, struct sock *sk, int flags, int *err, bool kern, struct sock *ret)
{
	accepted(ret);
	return 0;
}

// 6.10 and later: inet_csk_accept(sk, struct proto_accept_arg *arg).
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_accept_arg, struct sock *sk, struct proto_accept_arg *arg, struct sock *ret)
{
	accepted(ret);
	return 0;
}

// ---- rung: kprobe (kretprobe) -----------------------------------------------

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kretprobe_accept, struct sock *ret)
{
	accepted(ret);
	return 0;
}

// ---- rung: tp_btf -------------------------------------------------------------

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_btf_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret < 0)
		return 0;
	if (!is_accept(regs->orig_ax))
		return 0;
	accepted_fd(ret);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_state, struct sock *sk, int oldstate, int newstate)
{
	state_change(sk, oldstate, newstate);
	return 0;
}

// ---- rung: raw tracepoint (no BTF-typed context) ----------------------------

SEC("raw_tracepoint/sys_exit")
int raw_tp_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	long ret = (long)ctx->args[1];
	if (ret < 0)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	if (!is_accept(BPF_CORE_READ(regs, orig_ax)))
		return 0;
	accepted_fd(ret);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp_state(struct bpf_raw_tracepoint_args *ctx)
{
	state_change((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2]);
	return 0;
}

// ---- rung: tracepoint (tracefs) ----------------------------------------------

// The context of the syscall events (the kernel's struct syscall_trace_exit)
// has had this layout since 2009; declared here without CO-RE, as the type
// is not in every kernel's BTF.
struct sys_exit_args {
	__u64 common; // struct trace_entry
	__s32 nr;
	__s32 pad;
	__s64 ret;
};

// The syscall events fire only for their syscall.
SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_sys_exit_accept4(struct sys_exit_args *ctx)
{
	if (ctx->ret >= 0)
		accepted_fd(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_sys_exit_accept(struct sys_exit_args *ctx)
{
	if (ctx->ret >= 0)
		accepted_fd(ctx->ret);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	state_change((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate);
	return 0;
}
