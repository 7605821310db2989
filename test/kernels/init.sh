#!/busybox sh
# shellcheck shell=dash
# /init of the guest initramfs built by run.sh: prepare a minimal system like
# the one the agent runs on, run every test binary, report, power off.
# run.sh parses the SOCKEYE-* marker lines from the serial console.

/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run /var /root
/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The kernel gives /init no console when the archive lacks /dev/console.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing || echo "SOCKEYE-WARN tracefs not mounted"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf || echo "SOCKEYE-WARN bpffs not mounted"
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ln -s /run /var/run
hostname sockeye-guest
ip link set lo up
# Peers (Jaeger) listen on "localhost"; there is no resolver here.
mkdir -p /etc
printf '127.0.0.1 localhost\n::1 localhost\n' >/etc/hosts

. /sockeye/env

for m in $(cat /sockeye/modules.list); do
	insmod "/sockeye/modules/$m.ko" || echo "SOCKEYE-WARN insmod $m failed"
done

echo "SOCKEYE-UNAME $(uname -r)"
echo "SOCKEYE-UPTIME init $(cut -d' ' -f1 /proc/uptime)"
export SOCKEYE_REQUIRE_BPF=1 SOCKEYE_KERNEL_LABEL HOME=/root TMPDIR=/tmp
# Prebuilt binaries for end-to-end tests (packages.txt peers): no Go here.
[ ! -x /sockeye/bin/sockeye ] || export SOCKEYE_AGENT_BIN=/sockeye/bin/sockeye
[ ! -x /sockeye/bin/jaeger ] || export SOCKEYE_JAEGER_BIN=/sockeye/bin/jaeger

# A line of the tests' result protocol.
matrix() { # pipeline rung result note
	echo "KERNEL-MATRIX pipeline=$1 rung=$2 result=$3 note=$4"
}

# Setup nobtf: the kernel's BTF moves to a file and an empty tmpfs covers
# /sys/kernel/btf (module BTF included), as on a kernel built without
# CONFIG_DEBUG_INFO_BTF. The agent must refuse to start without --btf and
# say so, and start with the file; the tests get it via SOCKEYE_TEST_BTF.
hide_btf() {
	mkdir -p /btf
	cp /sys/kernel/btf/vmlinux /btf/vmlinux || echo "SOCKEYE-WARN nobtf: cannot copy /sys/kernel/btf/vmlinux"
	mount -t tmpfs -o ro,mode=0555 nobtf /sys/kernel/btf || echo "SOCKEYE-WARN nobtf: cannot hide /sys/kernel/btf"
	export SOCKEYE_TEST_BTF=/btf/vmlinux
}

# Runs `sockeye check` without and with --btf; reported as binary "sockeye".
check_agent() {
	local rc=0 out st note
	echo "SOCKEYE-BEGIN sockeye ./agent/cmd/sockeye"
	if [ -e /sys/kernel/btf/vmlinux ] || [ ! -s /btf/vmlinux ]; then
		matrix agent setup fail "/sys/kernel/btf/vmlinux still visible, or /btf/vmlinux missing"
		rc=1
	else
		matrix agent setup pass "/sys/kernel/btf hidden, its vmlinux copied to /btf/vmlinux ($(wc -c </btf/vmlinux) bytes)"
	fi

	out=$(cd /tmp && timeout "$SOCKEYE_AGENT_TIMEOUT" /sockeye/bin/sockeye check </dev/null 2>&1)
	st=$?
	echo "$out" | sed 's/^/sockeye check: /'
	if [ $st = 0 ]; then
		matrix agent check-without-btf fail "exit status 0 with no BTF"
		rc=1
	elif ! echo "$out" | grep -q -e '--btf FILE'; then
		matrix agent check-without-btf fail "exit status $st, but the output does not name --btf FILE"
		rc=1
	else
		matrix agent check-without-btf pass "exit status $st, says: $(echo "$out" | grep -o -m1 'give a BTF file for it with --btf FILE[^(]*')"
	fi

	out=$(cd /tmp && timeout "$SOCKEYE_AGENT_TIMEOUT" /sockeye/bin/sockeye check --btf /btf/vmlinux </dev/null 2>&1)
	st=$?
	echo "$out" | sed 's/^/sockeye check --btf: /'
	note=$(echo "$out" | sed -n 's/^ *[^ ]* *source \([^:]*\): rung \(.*\)/\1=\2/p' | tr '\n' ' ')
	if ! echo "$out" | grep -q '^BTF: /btf/vmlinux (external file'; then
		matrix agent check-btf-file fail "exit status $st; BTF not reported from /btf/vmlinux"
		rc=1
	elif [ $st != 0 ]; then
		matrix agent check-btf-file fail "exit status $st: $(echo "$out" | grep 'cannot run' | tr '\n' ' ')"
		rc=1
	else
		matrix agent check-btf-file pass "exit status 0, BTF from /btf/vmlinux; rungs: $note"
	fi
	echo "SOCKEYE-EXIT sockeye $rc"
}

if [ "$SOCKEYE_GUEST_SETUP" = nobtf ]; then
	hide_btf
	check_agent
fi

while read -r name pkg; do
	echo "SOCKEYE-BEGIN $name $pkg"
	# Run from the package's copy so relative testdata/ paths resolve as
	# under go test.
	(cd "/sockeye/tests/$name" && "./$name.test" -test.v -test.count=1 -test.short \
		-test.timeout="$SOCKEYE_TEST_TIMEOUT" </dev/null)
	echo "SOCKEYE-EXIT $name $?"
done </sockeye/tests.list

echo "SOCKEYE-UPTIME done $(cut -d' ' -f1 /proc/uptime)"
echo "SOCKEYE-DONE"
sync
poweroff -f
