//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// socketcalls: the socket-trace job. Every socket system call of a selected
// thread is a root span; the kernel functions it goes through (fentry/fexit
// or kprobe/kretprobe on a configured list) and the networking tracepoint
// pairs that fire inside it are its children.
//
// The call stack of each thread is kept here, in a depth-capped per-thread
// map, so that only finished spans cross to user space: one ring-buffer
// record per span, each carrying its parent's id. Stacks are repaired where
// the kernel does not give clean pairs: a return without its entry is
// ignored, frames whose return never came are closed as incomplete when an
// outer frame returns or a new system call starts.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define TASK_COMM_LEN 16
#define MAX_DEPTH 32
#define NR_SYSCALL_WORDS 8 /* 512 syscall numbers */
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define SYS_CLOSE 3 /* x86-64 */

char LICENSE[] SEC("license") = "GPL";

// FRAME_INDEX bounds an index so the verifier sees it bounded: the empty asm
// keeps the compiler from dropping the mask after an earlier range check.
#define FRAME_INDEX(i) ({ __u32 __i = (i); asm volatile("" : "+r"(__i)); __i & (MAX_DEPTH - 1); })

// Frame and record kinds.
enum kind {
	KIND_SYSCALL = 0, // func is the syscall number
	KIND_FUNC = 1,    // func is an index in the loader's function table
	KIND_PAIR = 2,    // func is a tracepoint pair (enum pair)
	KIND_EVENT = 3,   // a single tracepoint inside a span (enum event)
};

enum pair {
	PAIR_XMIT = 1,              // net_dev_start_xmit .. net_dev_xmit
	PAIR_NETIF_RX = 2,          // netif_rx_entry .. netif_rx_exit
	PAIR_NETIF_RECEIVE_SKB = 3, // netif_receive_skb_entry .. _exit
	PAIR_NAPI_GRO_RECEIVE = 4,  // napi_gro_receive_entry .. _exit
};

enum event {
	EVENT_SOCK_SEND_LENGTH = 1,
	EVENT_SOCK_RECV_LENGTH = 2,
	EVENT_TCP_SENDMSG_LOCKED = 3,
	EVENT_NETIF_RECEIVE_SKB = 4,
	EVENT_INET_SOCK_SET_STATE = 5,
};

// Record flags.
#define REC_INCOMPLETE 1 // the return was never seen: end is the last time the thread was seen
#define REC_SOCK 2       // family, type, protocol, ports and addresses are set
#define REC_FD 4         // fd is set

enum stat_index {
	STAT_RINGBUF_FULL = 0,    // a finished span or event did not fit in the ring buffer
	STAT_SAMPLED_OUT = 1,     // root calls not traced by head sampling
	STAT_RATE_LIMITED = 2,    // root calls not traced because of the rate limit
	STAT_DEPTH = 3,           // calls deeper than max_depth, not recorded
	STAT_UNMATCHED_RETURN = 4,// returns whose entry was not seen
	STAT_INCOMPLETE = 5,      // frames closed without their return
	STAT_THREADS_FULL = 6,    // a new thread state could not be stored
	STAT_ROOTS = 7,           // root calls traced
	STAT_MAX = 8,
};

struct frame {
	__u64 id;
	__u64 start_ns;
	__u64 arg; // syscall: the fd argument; pair: ifindex << 32 | skb length
	__u32 func;
	__u16 kind;
	__u16 pad;
};

struct thread_state {
	__u32 depth;    // frames in use
	__u32 overflow; // entries past max_depth whose returns are still due
	__u64 last_ns;  // last entry, return or event seen on this thread
	struct frame frames[MAX_DEPTH];
};

// span_rec is one finished span or one event, as user space reads it from
// the ring buffer. Naturally aligned, so Go reads it in place.
struct span_rec {
	__u64 start_ns; // CLOCK_MONOTONIC; for an event, its time
	__u64 end_ns;
	__u64 id;        // this frame's id (0 for an event)
	__u64 parent_id; // 0 for a root
	__u64 root_id;
	__u64 root_start_ns;
	__s64 ret;
	__u64 value; // pair: bytes; event: the tracepoint's length or state
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 func;
	__u16 kind;
	__u16 depth;
	__u16 flags;
	__u16 family;
	__s32 fd;
	__u32 ifindex;
	__u16 sock_type;
	__u16 protocol;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[TASK_COMM_LEN];
	char pcomm[TASK_COMM_LEN];
};

// Keeps span_rec in the object's BTF for bpf2go.
const struct span_rec *unused_span_rec __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); // set by the loader
} events SEC(".maps");

// LRU: a thread that dies mid-call, or more threads mid-call than fit,
// cannot make the map grow; the oldest state is evicted.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); // set by the loader
	__type(key, __u32);
	__type(value, struct thread_state);
} threads SEC(".maps");

// A zeroed thread state to insert from: it is too big for the BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread_state);
} zero_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Selection: a thread is traced when it matches any entry of any map in use.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} sel_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[TASK_COMM_LEN]);
	__type(value, __u8);
} sel_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} sel_uids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} sel_cgroups SEC(".maps");

// Fixed-window rate limit shared by all CPUs: slot (window & 1) counts the
// roots admitted in that window.
struct rate_slot {
	__u64 window;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct rate_slot);
} rate SEC(".maps");

// Loader-set settings.
#define SELECT_ALL 1
#define SELECT_PIDS 2
#define SELECT_COMMS 4
#define SELECT_UIDS 8
#define SELECT_CGROUPS 16
volatile const __u32 select_flags = 0;
// Deepest cgroup level to compare ancestors at; 0 compares only the
// thread's own cgroup (kernels without bpf_get_current_ancestor_cgroup_id).
volatile const __u32 cgroup_levels = 0;
// Socket system calls traced (a bit per x86-64 number), and those whose
// first argument must be a socket fd to be traced (read, write, close...).
volatile const __u64 syscall_mask[NR_SYSCALL_WORDS] = {};
volatile const __u64 fd_syscall_mask[NR_SYSCALL_WORDS] = {};
// The syscalls whose return value is a new socket fd (socket, accept, accept4).
volatile const __u64 newfd_syscall_mask[NR_SYSCALL_WORDS] = {};
volatile const __u32 max_depth = 16;
// Head sampling: a root is traced when a random u32 is <= this.
volatile const __u32 sample_threshold = 0xffffffff;
// Rate limit: at most rate_count roots per rate_window_ns; 0 is no limit.
volatile const __u64 rate_count = 0;
volatile const __u64 rate_window_ns = 1000000000;
// Traced functions called outside any traced system call start a root.
volatile const __u32 roots_outside_syscalls = 0;
// A function root older than this is stale when the thread enters another.
volatile const __u64 stale_ns = 10000000000ULL;

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline bool mask_has(volatile const __u64 *mask, long nr)
{
	if (nr < 0 || nr >= NR_SYSCALL_WORDS * 64)
		return false;
	return (mask[(nr >> 6) & (NR_SYSCALL_WORDS - 1)] >> (nr & 63)) & 1;
}

static __always_inline __u64 next_id(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&seq, &zero);
	if (!c)
		return 0;
	*c += 1;
	// Per-CPU counters, told apart by the CPU in the top bits.
	return ((__u64)(bpf_get_smp_processor_id() + 1) << 48) | (*c & 0xffffffffffffULL);
}

static __always_inline bool selected(__u64 pid_tgid)
{
	__u32 flags = select_flags;
	if (flags & SELECT_ALL)
		return true;
	if (flags & SELECT_PIDS) {
		__u32 pid = pid_tgid >> 32;
		if (bpf_map_lookup_elem(&sel_pids, &pid))
			return true;
	}
	if (flags & SELECT_UIDS) {
		__u32 uid = (__u32)bpf_get_current_uid_gid();
		if (bpf_map_lookup_elem(&sel_uids, &uid))
			return true;
	}
	if (flags & SELECT_COMMS) {
		char comm[TASK_COMM_LEN] = {};
		bpf_get_current_comm(comm, sizeof(comm));
		if (bpf_map_lookup_elem(&sel_comms, comm))
			return true;
		// A thread may have renamed itself: try the process's name too.
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		char pcomm[TASK_COMM_LEN] = {};
		BPF_CORE_READ_STR_INTO(&pcomm, task, group_leader, comm);
		if (bpf_map_lookup_elem(&sel_comms, pcomm))
			return true;
	}
	if (flags & SELECT_CGROUPS) {
		__u64 id = bpf_get_current_cgroup_id();
		if (bpf_map_lookup_elem(&sel_cgroups, &id))
			return true;
		for (__u32 level = 1; level <= 16; level++) {
			if (level > cgroup_levels)
				break;
			id = bpf_get_current_ancestor_cgroup_id(level);
			if (bpf_map_lookup_elem(&sel_cgroups, &id))
				return true;
		}
	}
	return false;
}

// admit applies head sampling, then the rate limit, to a new root.
static __always_inline bool admit(__u64 now)
{
	if (sample_threshold != 0xffffffff && bpf_get_prandom_u32() > sample_threshold) {
		stat_inc(STAT_SAMPLED_OUT);
		return false;
	}
	if (rate_count) {
		__u64 w = now / rate_window_ns;
		__u32 idx = w & 1;
		struct rate_slot *s = bpf_map_lookup_elem(&rate, &idx);
		if (!s)
			return false;
		if (s->window != w) {
			// Two CPUs may both reset at a window change: a few extra
			// roots pass, which a limit meant against floods can afford.
			s->window = w;
			s->count = 0;
		}
		__sync_fetch_and_add(&s->count, 1);
		if (s->count > rate_count) {
			stat_inc(STAT_RATE_LIMITED);
			return false;
		}
	}
	stat_inc(STAT_ROOTS);
	return true;
}

static __always_inline struct thread_state *new_state(__u32 tid)
{
	__u32 zero = 0;
	struct thread_state *z = bpf_map_lookup_elem(&zero_state, &zero);
	if (!z)
		return NULL;
	if (bpf_map_update_elem(&threads, &tid, z, BPF_ANY)) {
		stat_inc(STAT_THREADS_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&threads, &tid);
}

static __always_inline struct socket *fd_socket(long fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return (struct socket *)BPF_CORE_READ(f, private_data);
}

static __always_inline void sk_info(struct span_rec *r, struct sock *sk)
{
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r->family = family;
	r->protocol = BPF_CORE_READ(sk, sk_protocol);
	if (!r->sock_type)
		r->sock_type = BPF_CORE_READ(sk, sk_type);
	r->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		// Through a __u32: BPF_CORE_READ_INTO copies sizeof(*dst) bytes.
		__u32 la = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 ra = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(r->laddr, &la, 4);
		__builtin_memcpy(r->raddr, &ra, 4);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_v6_daddr);
	}
	r->flags |= REC_SOCK;
}

static __always_inline void sock_info(struct span_rec *r, struct socket *sock)
{
	if (!sock)
		return;
	r->sock_type = BPF_CORE_READ(sock, type);
	sk_info(r, BPF_CORE_READ(sock, sk));
}

static __always_inline void fill_task(struct span_rec *r, struct thread_state *st, __u32 depth)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	r->pid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->uid = (__u32)bpf_get_current_uid_gid();
	r->depth = depth;
	r->root_id = st->frames[0].id;
	r->root_start_ns = st->frames[0].start_ns;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&r->pcomm, task, group_leader, comm);
}

// emit sends frame i of thread tid as a finished span. A global function:
// the verifier checks it once, not at every call site in the loops below.
__noinline int emit(__u32 tid, __u32 i, __u64 end, __s64 ret, __u32 flags)
{
	if (i >= MAX_DEPTH)
		return 0;
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (!st)
		return 0;
	struct span_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		stat_inc(STAT_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	struct frame *f = &st->frames[FRAME_INDEX(i)];
	r->start_ns = f->start_ns;
	r->end_ns = end;
	r->id = f->id;
	if (i > 0)
		r->parent_id = st->frames[FRAME_INDEX(i - 1)].id;
	r->ret = ret;
	r->func = f->func;
	r->kind = f->kind;
	r->flags = flags;
	fill_task(r, st, i);
	if (f->kind == KIND_SYSCALL) {
		long fd = (long)f->arg;
		if (!(flags & REC_INCOMPLETE) && ret >= 0 && mask_has(newfd_syscall_mask, f->func))
			fd = ret;
		if (fd >= 0 && fd <= 0x7fffffff) {
			r->fd = fd;
			r->flags |= REC_FD;
			// After close the fd may already name another file.
			if (!(flags & REC_INCOMPLETE) && f->func != SYS_CLOSE)
				sock_info(r, fd_socket(fd));
		}
	} else if (f->kind == KIND_PAIR) {
		r->ifindex = f->arg >> 32;
		r->value = (__u32)f->arg;
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline void push(struct thread_state *st, __u16 kind, __u32 func, __u64 now, __u64 arg)
{
	st->last_ns = now;
	__u32 d = st->depth;
	if (d >= max_depth || d >= MAX_DEPTH || st->overflow) {
		st->overflow++;
		stat_inc(STAT_DEPTH);
		return;
	}
	struct frame *f = &st->frames[FRAME_INDEX(d)];
	f->id = next_id();
	f->start_ns = now;
	f->func = func;
	f->kind = kind;
	f->arg = arg;
	st->depth = d + 1;
}

static __always_inline void drop_state(__u32 tid)
{
	bpf_map_delete_elem(&threads, &tid);
}

// close_frames emits the frames at index keep and above as incomplete (their
// return was never seen) and leaves keep frames. Global, like emit and
// pop_frame: the verifier checks each once instead of once per path into
// it, which keeps every program far below its instruction budget.
__noinline int close_frames(__u32 tid, __u32 keep)
{
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (!st)
		return 0;
	__u32 d = st->depth;
	__u64 last = st->last_ns;
	// Counting down from the top with an unknown depth keeps one path
	// through the loop for the verifier.
	for (__u32 n = 0; n < MAX_DEPTH; n++) {
		if (n >= d || d - 1 - n < keep)
			break;
		emit(tid, d - 1 - n, last, 0, REC_INCOMPLETE);
		stat_inc(STAT_INCOMPLETE);
	}
	if (keep < d)
		st->depth = keep;
	st->overflow = 0;
	return 0;
}

// pop_frame handles a return: the nearest frame of that kind and function
// closes, with any frame above it (whose return was missed) closed as
// incomplete. A return with no such frame is ignored.
__noinline int pop_frame(__u32 tid, __u32 kind, __u32 func, __s64 ret, __u64 now)
{
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (!st || !st->depth)
		return 0;
	if (st->overflow) {
		// The return of a call past max_depth; its entry was not recorded.
		st->overflow--;
		st->last_ns = now;
		return 0;
	}
	int found = -1;
	__u32 d = st->depth;
	for (__u32 n = 0; n < MAX_DEPTH; n++) {
		if (n >= d)
			break;
		__u32 i = d - 1 - n;
		struct frame *f = &st->frames[FRAME_INDEX(i)];
		if (f->kind == kind && f->func == func) {
			found = i;
			break;
		}
	}
	if (found < 0) {
		// Attached mid-call, or the entry was lost: nothing to close.
		stat_inc(STAT_UNMATCHED_RETURN);
		return 0;
	}
	close_frames(tid, found + 1);
	st->last_ns = now;
	emit(tid, found, now, ret, 0);
	st->depth = found;
	if (found == 0)
		drop_state(tid);
	return 0;
}

// ---- the shared bodies of every rung ----------------------------------------

static __always_inline void sys_enter_core(long id, long fd)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!selected(pid_tgid))
		return;
	__u32 tid = (__u32)pid_tgid;
	__u64 now = bpf_ktime_get_ns();
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (st && st->depth) {
		// No system call starts inside another: what is open is stale.
		close_frames(tid, 0);
		drop_state(tid);
		st = NULL;
	}
	if (mask_has(fd_syscall_mask, id) && !fd_socket(fd))
		return;
	if (!admit(now))
		return;
	if (!st)
		st = new_state(tid);
	if (!st)
		return;
	st->depth = 0;
	st->overflow = 0;
	push(st, KIND_SYSCALL, (__u32)id, now, (__u64)fd);
}

static __always_inline void on_sys_enter(struct pt_regs *regs, long id)
{
	// Every system call of every thread passes here: the bit test comes first.
	if (!mask_has(syscall_mask, id))
		return;
	sys_enter_core(id, (long)BPF_CORE_READ(regs, di));
}

static __always_inline void sys_exit_core(long id, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&threads, &tid))
		return;
	pop_frame(tid, KIND_SYSCALL, (__u32)id, ret, bpf_ktime_get_ns());
}

static __always_inline void on_sys_exit(struct pt_regs *regs, long ret)
{
	long id = (long)BPF_CORE_READ(regs, orig_ax);
	if (!mask_has(syscall_mask, id))
		return;
	sys_exit_core(id, ret);
}

static __always_inline void on_entry(__u16 kind, __u32 func, __u64 arg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	__u64 now = bpf_ktime_get_ns();
	if (st && st->depth && st->frames[0].kind != KIND_SYSCALL && now - st->frames[0].start_ns > stale_ns) {
		close_frames(tid, 0);
		st->depth = 0;
	}
	if (!st || !st->depth) {
		if (kind != KIND_FUNC || !roots_outside_syscalls || !selected(pid_tgid) || !admit(now))
			return;
		if (!st)
			st = new_state(tid);
		if (!st)
			return;
		st->depth = 0;
		st->overflow = 0;
	}
	push(st, kind, func, now, arg);
}

static __always_inline void on_return(__u16 kind, __u32 func, __s64 ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (!st || !st->depth)
		return;
	pop_frame(tid, kind, func, ret, bpf_ktime_get_ns());
}

static __always_inline void on_event(__u32 ev, __s64 ret, __u64 value, struct sock *sk, __u32 ifindex)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	if (!st || !st->depth)
		return;
	__u32 d = st->depth;
	if (d > MAX_DEPTH)
		return;
	__u64 now = bpf_ktime_get_ns();
	st->last_ns = now;
	struct span_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		stat_inc(STAT_RINGBUF_FULL);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->start_ns = now;
	r->end_ns = now;
	r->parent_id = st->frames[FRAME_INDEX(d - 1)].id;
	r->func = ev;
	r->kind = KIND_EVENT;
	r->ret = ret;
	r->value = value;
	r->ifindex = ifindex;
	fill_task(r, st, d);
	sk_info(r, sk);
	bpf_ringbuf_submit(r, 0);
}

static __always_inline __u64 skb_arg(struct sk_buff *skb)
{
	__u32 len = BPF_CORE_READ(skb, len);
	__u32 ifindex = BPF_CORE_READ(skb, dev, ifindex);
	return ((__u64)ifindex << 32) | len;
}

// func_id returns a 64-bit constant the loader rewrites in each copy of a
// function program (fentry and single kprobes carry no cookie on older
// kernels), so one program body serves every traced function.
#define FUNC_ID_MAGIC 0x5ca1ab1e5ca1ab1eULL
static __always_inline __u32 func_id(void)
{
	__u64 v;
	asm volatile("%0 = 0x5ca1ab1e5ca1ab1e ll" : "=r"(v));
	return (__u32)v;
}

// ---- rung: fentry (functions) ----------------------------------------------
// One copy per traced function; the fexit copy is chosen by the function's
// number of arguments, since the return value follows them in the context.

SEC("fentry/sock_sendmsg")
int fentry_func(void *ctx)
{
	on_entry(KIND_FUNC, func_id(), 0);
	return 0;
}

// The return value is read with bpf_probe_read_kernel: where the function
// returns a pointer, the verifier types ctx[n] as that kernel pointer,
// which cannot be passed on as a plain number.
#define FEXIT(n)                                                   \
	SEC("fexit/sock_sendmsg")                                  \
	int fexit_func##n(unsigned long long *ctx)                 \
	{                                                          \
		__s64 ret = 0;                                     \
		bpf_probe_read_kernel(&ret, sizeof(ret), &ctx[n]); \
		on_return(KIND_FUNC, func_id(), ret);              \
		return 0;                                          \
	}
FEXIT(0)
FEXIT(1)
FEXIT(2)
FEXIT(3)
FEXIT(4)
FEXIT(5)
FEXIT(6)

SEC("fexit/sock_sendmsg")
int fexit_func_void(void *ctx)
{
	on_return(KIND_FUNC, func_id(), 0);
	return 0;
}

// ---- rung: kprobe (functions) ----------------------------------------------

SEC("kprobe/sock_sendmsg")
int kprobe_func(struct pt_regs *ctx)
{
	on_entry(KIND_FUNC, func_id(), 0);
	return 0;
}

SEC("kretprobe/sock_sendmsg")
int kretprobe_func(struct pt_regs *ctx)
{
	on_return(KIND_FUNC, func_id(), (__s64)PT_REGS_RC(ctx));
	return 0;
}

// kprobe.multi: one program for every function, told apart by the cookie.
SEC("kprobe.multi/sock_sendmsg")
int kprobe_multi_func(struct pt_regs *ctx)
{
	on_entry(KIND_FUNC, (__u32)bpf_get_attach_cookie(ctx), 0);
	return 0;
}

SEC("kretprobe.multi/sock_sendmsg")
int kretprobe_multi_func(struct pt_regs *ctx)
{
	on_return(KIND_FUNC, (__u32)bpf_get_attach_cookie(ctx), (__s64)PT_REGS_RC(ctx));
	return 0;
}

// ---- every rung: system calls and networking tracepoints, tp_btf flavour ----

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_btf_sys_enter, struct pt_regs *regs, long id)
{
	on_sys_enter(regs, id);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_btf_sys_exit, struct pt_regs *regs, long ret)
{
	on_sys_exit(regs, ret);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_btf_xmit_start, struct sk_buff *skb)
{
	on_entry(KIND_PAIR, PAIR_XMIT, skb_arg(skb));
	return 0;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(tp_btf_xmit_end, struct sk_buff *skb, int rc)
{
	on_return(KIND_PAIR, PAIR_XMIT, rc);
	return 0;
}

SEC("tp_btf/netif_rx_entry")
int BPF_PROG(tp_btf_netif_rx_entry, struct sk_buff *skb)
{
	on_entry(KIND_PAIR, PAIR_NETIF_RX, skb_arg(skb));
	return 0;
}

SEC("tp_btf/netif_rx_exit")
int BPF_PROG(tp_btf_netif_rx_exit, int ret)
{
	on_return(KIND_PAIR, PAIR_NETIF_RX, ret);
	return 0;
}

SEC("tp_btf/netif_receive_skb_entry")
int BPF_PROG(tp_btf_receive_skb_entry, struct sk_buff *skb)
{
	on_entry(KIND_PAIR, PAIR_NETIF_RECEIVE_SKB, skb_arg(skb));
	return 0;
}

SEC("tp_btf/netif_receive_skb_exit")
int BPF_PROG(tp_btf_receive_skb_exit, int ret)
{
	on_return(KIND_PAIR, PAIR_NETIF_RECEIVE_SKB, ret);
	return 0;
}

SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(tp_btf_gro_entry, struct sk_buff *skb)
{
	on_entry(KIND_PAIR, PAIR_NAPI_GRO_RECEIVE, skb_arg(skb));
	return 0;
}

SEC("tp_btf/napi_gro_receive_exit")
int BPF_PROG(tp_btf_gro_exit, int ret)
{
	on_return(KIND_PAIR, PAIR_NAPI_GRO_RECEIVE, ret);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_btf_send_length, struct sock *sk, int ret, int flags)
{
	on_event(EVENT_SOCK_SEND_LENGTH, ret, flags, NULL, 0);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_btf_recv_length, struct sock *sk, int ret, int flags)
{
	on_event(EVENT_SOCK_RECV_LENGTH, ret, flags, NULL, 0);
	return 0;
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(tp_btf_tcp_sendmsg_locked, struct sock *sk, struct msghdr *msg, struct sk_buff *skb, int size_goal)
{
	on_event(EVENT_TCP_SENDMSG_LOCKED, 0, size_goal, NULL, 0);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_btf_netif_receive_skb, struct sk_buff *skb)
{
	__u64 a = skb_arg(skb);
	on_event(EVENT_NETIF_RECEIVE_SKB, 0, (__u32)a, NULL, a >> 32);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	on_event(EVENT_INET_SOCK_SET_STATE, 0, ((__u64)oldstate << 8) | (newstate & 0xff), sk, 0);
	return 0;
}

// ---- the same, raw tracepoint flavour (no BTF-typed context) ----------------

#define RAW_ARG(i) (ctx->args[i])

SEC("raw_tracepoint/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	on_sys_enter((struct pt_regs *)RAW_ARG(0), (long)RAW_ARG(1));
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int raw_tp_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	on_sys_exit((struct pt_regs *)RAW_ARG(0), (long)RAW_ARG(1));
	return 0;
}

SEC("raw_tracepoint/net_dev_start_xmit")
int raw_tp_xmit_start(struct bpf_raw_tracepoint_args *ctx)
{
	on_entry(KIND_PAIR, PAIR_XMIT, skb_arg((struct sk_buff *)RAW_ARG(0)));
	return 0;
}

SEC("raw_tracepoint/net_dev_xmit")
int raw_tp_xmit_end(struct bpf_raw_tracepoint_args *ctx)
{
	on_return(KIND_PAIR, PAIR_XMIT, (int)RAW_ARG(1));
	return 0;
}

SEC("raw_tracepoint/netif_rx_entry")
int raw_tp_netif_rx_entry(struct bpf_raw_tracepoint_args *ctx)
{
	on_entry(KIND_PAIR, PAIR_NETIF_RX, skb_arg((struct sk_buff *)RAW_ARG(0)));
	return 0;
}

SEC("raw_tracepoint/netif_rx_exit")
int raw_tp_netif_rx_exit(struct bpf_raw_tracepoint_args *ctx)
{
	on_return(KIND_PAIR, PAIR_NETIF_RX, (int)RAW_ARG(0));
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb_entry")
int raw_tp_receive_skb_entry(struct bpf_raw_tracepoint_args *ctx)
{
	on_entry(KIND_PAIR, PAIR_NETIF_RECEIVE_SKB, skb_arg((struct sk_buff *)RAW_ARG(0)));
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb_exit")
int raw_tp_receive_skb_exit(struct bpf_raw_tracepoint_args *ctx)
{
	on_return(KIND_PAIR, PAIR_NETIF_RECEIVE_SKB, (int)RAW_ARG(0));
	return 0;
}

SEC("raw_tracepoint/napi_gro_receive_entry")
int raw_tp_gro_entry(struct bpf_raw_tracepoint_args *ctx)
{
	on_entry(KIND_PAIR, PAIR_NAPI_GRO_RECEIVE, skb_arg((struct sk_buff *)RAW_ARG(0)));
	return 0;
}

SEC("raw_tracepoint/napi_gro_receive_exit")
int raw_tp_gro_exit(struct bpf_raw_tracepoint_args *ctx)
{
	on_return(KIND_PAIR, PAIR_NAPI_GRO_RECEIVE, (int)RAW_ARG(0));
	return 0;
}

SEC("raw_tracepoint/sock_send_length")
int raw_tp_send_length(struct bpf_raw_tracepoint_args *ctx)
{
	on_event(EVENT_SOCK_SEND_LENGTH, (int)RAW_ARG(1), (int)RAW_ARG(2), NULL, 0);
	return 0;
}

SEC("raw_tracepoint/sock_recv_length")
int raw_tp_recv_length(struct bpf_raw_tracepoint_args *ctx)
{
	on_event(EVENT_SOCK_RECV_LENGTH, (int)RAW_ARG(1), (int)RAW_ARG(2), NULL, 0);
	return 0;
}

SEC("raw_tracepoint/tcp_sendmsg_locked")
int raw_tp_tcp_sendmsg_locked(struct bpf_raw_tracepoint_args *ctx)
{
	on_event(EVENT_TCP_SENDMSG_LOCKED, 0, (int)RAW_ARG(3), NULL, 0);
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb")
int raw_tp_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 a = skb_arg((struct sk_buff *)RAW_ARG(0));
	on_event(EVENT_NETIF_RECEIVE_SKB, 0, (__u32)a, NULL, a >> 32);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int raw_tp_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	on_event(EVENT_INET_SOCK_SET_STATE, 0, ((__u64)(int)RAW_ARG(1) << 8) | ((int)RAW_ARG(2) & 0xff),
		 (struct sock *)RAW_ARG(0), 0);
	return 0;
}

// ---- tests only: drives the stack logic with synthetic sequences ------------
// Never attached. args: op, kind, func, ret or arg. The thread is the caller
// of BPF_PROG_TEST_RUN; selection, sampling and the rate limit apply as set.

#define TEST_ENTER 1
#define TEST_RETURN 2
#define TEST_SYS_ENTER 3
#define TEST_SYS_EXIT 4
#define TEST_EVENT 5

SEC("raw_tracepoint/sys_enter")
int test_step(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 op = ctx->args[0];
	__u16 kind = ctx->args[1];
	__u32 func = ctx->args[2];
	__s64 v = ctx->args[3];
	switch (op) {
	case TEST_ENTER:
		on_entry(kind, func, v);
		break;
	case TEST_RETURN:
		on_return(kind, func, v);
		break;
	case TEST_SYS_ENTER:
		if (mask_has(syscall_mask, func))
			sys_enter_core(func, v);
		break;
	case TEST_SYS_EXIT:
		if (mask_has(syscall_mask, func))
			sys_exit_core(func, v);
		break;
	case TEST_EVENT:
		on_event(func, v, 0, NULL, 0);
		break;
	}
	return 0;
}
