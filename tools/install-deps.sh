#!/usr/bin/env bash
# Installs the Debian packages sockeye's tests and tools use, only those
# missing. Usage: tools/install-deps.sh [build|test|kernels|bench|deploy]...
set -euo pipefail

declare -A pkgs=(
	[build]="clang-14 llvm-14 libbpf-dev bpftool"
	[test]="iproute2 nftables iptables tshark tcpdump bpftool"
	[kernels]="qemu-system-x86 busybox-static cpio xz-utils"
	[bench]="iperf3 bpftrace bpftool jq"
	# docker-compose checks the compose file without an engine; prometheus brings promtool.
	[deploy]="docker-compose prometheus"
)

want=()
for group in "${@:-test}"; do
	for p in ${pkgs[$group]:?unknown group $group (want build, test, kernels, bench, deploy)}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || want+=("$p")
	done
done
if ((${#want[@]})); then
	echo "installing: ${want[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# tshark asks whether non-root users may capture; the default (no) is fine.
	apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
