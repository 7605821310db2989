package socketcalls

import (
	"path"
	"slices"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// SocketC is the function-list entry that stands for the functions of
// net/socket.c (DefaultFunctions).
const SocketC = "@net/socket.c"

// DefaultFunctions are the functions defined in net/socket.c that a kernel
// may keep out of line, from Linux 5.10 to 6.18. BTF says which functions a
// kernel has but not in which file (vmlinux BTF carries no line info, and
// decl tags are not emitted for it), so this list was written from the
// source of net/socket.c and each name checked against the BTF of 6.18;
// the ones a kernel lacks (inlined, renamed) are skipped at load. Left out:
// the __x64_sys_* wrappers (the system call is already the root span),
// __init functions (gone after boot) and the compat_* paths.
func DefaultFunctions() []string {
	return []string{
		// system call bodies
		"__sys_socket", "__sys_socket_file", "update_socket_protocol", "__sys_socketpair",
		"__sys_bind", "__sys_bind_socket", "__sys_listen", "__sys_listen_socket",
		"__sys_accept4", "__sys_accept4_file", "do_accept", "__sys_connect", "__sys_connect_file",
		"__sys_getsockname", "__sys_getpeername", "__sys_sendto", "__sys_recvfrom",
		"__sys_setsockopt", "do_sock_setsockopt", "__sys_getsockopt", "do_sock_getsockopt",
		"__sys_shutdown", "__sys_shutdown_sock",
		"__sys_sendmsg", "___sys_sendmsg", "____sys_sendmsg", "__sys_sendmsg_sock", "__sys_sendmmsg",
		"__sys_recvmsg", "___sys_recvmsg", "____sys_recvmsg", "__sys_recvmsg_sock", "do_recvmmsg", "__sys_recvmmsg",
		"copy_msghdr_from_user", "__copy_msghdr", "sendmsg_copy_msghdr", "recvmsg_copy_msghdr",
		"move_addr_to_kernel", "move_addr_to_user",
		// sockets and their files
		"sock_alloc", "sock_alloc_file", "sock_from_file", "sockfd_lookup", "sockfd_lookup_light",
		"sock_release", "__sock_release", "sock_alloc_inode", "sock_free_inode",
		"sock_create", "__sock_create", "sock_create_kern", "sock_create_lite",
		// file operations of a socket
		"sock_read_iter", "sock_write_iter", "sock_poll", "sock_mmap", "sock_close", "sock_fasync",
		"sock_ioctl", "sock_do_ioctl", "sock_splice_read", "sock_splice_eof", "sock_show_fdinfo",
		// sending and receiving
		"sock_sendmsg", "__sock_sendmsg", "sock_sendmsg_nosec", "kernel_sendmsg", "kernel_sendmsg_locked",
		"sock_recvmsg", "sock_recvmsg_nosec", "kernel_recvmsg", "__sock_tx_timestamp",
		"__sock_recv_timestamp", "__sock_recv_wifi_status", "__sock_recv_cmsgs", "sock_wake_async",
		// in-kernel socket users
		"kernel_bind", "kernel_listen", "kernel_accept", "kernel_connect", "kernel_getsockname",
		"kernel_getpeername", "kernel_sock_shutdown", "kernel_sock_ip_overhead",
		// ioctl helpers and registration
		"get_user_ifreq", "put_user_ifreq", "brioctl_set", "br_ioctl_call", "vlan_ioctl_set",
		"sock_register", "sock_unregister", "sock_is_registered",
		// sockfs
		"sockfs_setattr", "sockfs_listxattr", "sockfs_dname", "sockfs_init_fs_context",
		"sockfs_xattr_get", "sockfs_security_xattr_set", "socket_seq_show",
	}
}

// IsPattern reports whether an entry of the function list is a glob.
func IsPattern(s string) bool { return strings.ContainsAny(s, "*?[") }

// MatchFunctions expands the configured list (names, globs, SocketC)
// against the kernel's BTF functions, in list order without duplicates.
// missing are exact names (not from SocketC) the kernel does not have.
func MatchFunctions(spec *btf.Spec, list []string) (matched, missing []string) {
	have := map[string]bool{}
	var all []string
	for typ, err := range spec.All() {
		if err != nil {
			break
		}
		if fn, ok := typ.(*btf.Func); ok && !have[fn.Name] {
			have[fn.Name] = true
			all = append(all, fn.Name)
		}
	}
	slices.Sort(all)
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			matched = append(matched, n)
		}
	}
	for _, e := range list {
		switch {
		case e == SocketC:
			for _, n := range DefaultFunctions() {
				if have[n] {
					add(n)
				}
			}
		case IsPattern(e):
			for _, n := range all {
				if ok, _ := path.Match(e, n); ok {
					add(n)
				}
			}
		case have[e]:
			add(e)
		default:
			missing = append(missing, e)
		}
	}
	return matched, missing
}
