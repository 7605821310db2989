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

. /sockeye/env

for m in $(cat /sockeye/modules.list); do
	insmod "/sockeye/modules/$m.ko" || echo "SOCKEYE-WARN insmod $m failed"
done

echo "SOCKEYE-UNAME $(uname -r)"
echo "SOCKEYE-UPTIME init $(cut -d' ' -f1 /proc/uptime)"
export SOCKEYE_REQUIRE_BPF=1 SOCKEYE_KERNEL_LABEL HOME=/root TMPDIR=/tmp

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
