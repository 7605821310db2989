#!/usr/bin/env bash
# Runs the BPF integration test binaries listed in packages.txt on every
# kernel pinned in kernels.conf (under QEMU) and on the host, and writes the
# kernel matrix to test/kernels/out/kernels.md. See README.md.
#
#   test/kernels/run.sh [--kernels 5.10,6.1-nobtf|none] [--no-host] [--write-docs]
#                       [--keep] [--timeout SECS] [--packages ./a,./b]
#
# Exits 0 only if every kernel ran, every binary passed and every result
# matched expect.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
CACHE=${SOCKEYE_KERNEL_CACHE:-/var/cache/sockeye/kernels}
BIN_TIMEOUT=${SOCKEYE_KERNEL_TIMEOUT:-300}
QEMU_MEM=${SOCKEYE_QEMU_MEM:-2048}
COMMAND_LINE="test/kernels/run.sh${*:+ $*}"

usage() {
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	cat <<'EOF'

Environment:
  SOCKEYE_KERNEL_CACHE    kernel packages and initramfs cache (default /var/cache/sockeye/kernels)
  SOCKEYE_KERNEL_TIMEOUT  seconds per test binary, as --timeout (default 300); a guest
                          gets 90 s to boot plus this much per binary
  SOCKEYE_QEMU_MEM        guest memory in MiB (default 2048)
  SOCKEYE_QEMU            qemu-system-x86_64 to use instead of the pinned one
  SOCKEYE_DEBIAN_MIRROR   Debian mirror URL (default: the one in /etc/apt/sources.list*)
  SOCKEYE_KERNEL_OVERRIDE_<label with _ for .>=PACKAGE=VERSION
                          use another kernel package for one label, e.g.
                          SOCKEYE_KERNEL_OVERRIDE_6_12=linux-image-6.12.99+deb12-cloud-amd64-unsigned=6.12.99-1~bpo12+1
EOF
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 2; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
TIMINGS=()
phase_done() { # name start
	local s
	s=$(elapsed "$2")
	TIMINGS+=("$1: ${s}s")
	log "$1 took ${s}s"
}

# ---------------------------------------------------------------- arguments

want_kernels=""
want_packages=""
run_host=1
write_docs=0
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernels) [ $# -ge 2 ] || die "--kernels needs a value"; want_kernels=$2; shift 2 ;;
	--kernels=*) want_kernels=${1#*=}; shift ;;
	--no-host) run_host=0; shift ;;
	--write-docs) write_docs=1; shift ;;
	--keep) keep=1; shift ;;
	--timeout) [ $# -ge 2 ] || die "--timeout needs a value"; BIN_TIMEOUT=$2; shift 2 ;;
	--timeout=*) BIN_TIMEOUT=${1#*=}; shift ;;
	--packages) [ $# -ge 2 ] || die "--packages needs a value"; want_packages=$2; shift 2 ;;
	--packages=*) want_packages=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ $BIN_TIMEOUT =~ ^[0-9]+$ ]] || die "timeout must be a number of seconds: $BIN_TIMEOUT"

# kernels.conf: label suite package version; the "qemu" label pins the
# emulator, every other label is a kernel. "label variant kernel setup"
# boots that kernel again with another guest setup (K_BASE, K_SETUP).
GUEST_SETUPS="nobtf"
declare -a K_LABELS=()
declare -A K_SUITE=() K_PKG=() K_VER=() K_BASE=() K_SETUP=()
while read -r label suite pkg ver rest; do
	case $label in '' | '#'*) continue ;; esac
	if [ -z "$ver" ] || [ -n "$rest" ]; then die "kernels.conf: bad line: $label $suite $pkg $ver $rest"; fi
	[ -z "${K_PKG[$label]:-}${K_BASE[$label]:-}" ] || die "kernels.conf: label $label given twice"
	if [ "$suite" = variant ]; then
		if [ -z "${K_PKG[$pkg]:-}" ] || [ "$pkg" = qemu ]; then
			die "kernels.conf: variant $label: no kernel labelled '$pkg' above it"
		fi
		[[ " $GUEST_SETUPS " == *" $ver "* ]] || die "kernels.conf: variant $label: unknown setup '$ver' (have: $GUEST_SETUPS)"
		K_LABELS+=("$label")
		K_BASE[$label]=$pkg K_SETUP[$label]=$ver
		continue
	fi
	[ "$label" = qemu ] || K_LABELS+=("$label")
	K_SUITE[$label]=$suite K_PKG[$label]=$pkg K_VER[$label]=$ver
done <"$HERE/kernels.conf"

declare -a KERNELS=()
case $want_kernels in
"") KERNELS=("${K_LABELS[@]}") ;;
none) ;;
*)
	IFS=, read -r -a KERNELS <<<"$want_kernels"
	for k in "${KERNELS[@]}"; do
		[ "$k" != qemu ] && [ -n "${K_PKG[$k]:-}${K_BASE[$k]:-}" ] ||
			die "no kernel labelled '$k' in kernels.conf (have: ${K_LABELS[*]})"
	done
	;;
esac
[ ${#KERNELS[@]} -gt 0 ] || [ $run_host = 1 ] || die "nothing to run: no kernels and --no-host"

# Per-label override of a pinned package; a variant follows its kernel's.
mapfile -t pinned < <(for l in "${KERNELS[@]}"; do echo "${K_BASE[$l]:-$l}"; done | sort -u)
for k in "${pinned[@]}" qemu; do
	var=SOCKEYE_KERNEL_OVERRIDE_${k//[^A-Za-z0-9]/_}
	if [ -n "${!var:-}" ]; then
		[[ ${!var} == *=* ]] || die "$var must be PACKAGE=VERSION"
		K_PKG[$k]=${!var%%=*} K_VER[$k]=${!var#*=}
		log "$k: using ${K_PKG[$k]}=${K_VER[$k]} from $var"
	fi
done
for k in "${!K_BASE[@]}"; do
	b=${K_BASE[$k]}
	K_SUITE[$k]=${K_SUITE[$b]} K_PKG[$k]=${K_PKG[$b]} K_VER[$k]=${K_VER[$b]}
done
# Guest setups among the selected kernels.
SETUPS=" "
for k in "${KERNELS[@]}"; do [ -z "${K_SETUP[$k]:-}" ] || SETUPS+="${K_SETUP[$k]} "; done
[ -n "${K_PKG[qemu]:-}" ] || [ -n "${SOCKEYE_QEMU:-}" ] || [ ${#KERNELS[@]} = 0 ] ||
	die "kernels.conf has no qemu line (or set SOCKEYE_QEMU=/path/to/qemu-system-x86_64)"

SUDO=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "needs root (to install packages, boot guests and run BPF tests on the host)"
	SUDO=(sudo)
fi

T_ALL=$(now)
WORK_BASE=$HERE/work
mkdir -p "$WORK_BASE" "$OUT"
WORK=$(mktemp -d "$WORK_BASE/run.XXXXXX")
cleanup() {
	if [ $keep = 1 ]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
		rmdir "$WORK_BASE" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Runs in one checkout share out/: take turns.
exec 8>"$OUT/.lock"
if ! flock -n 8; then
	log "another run.sh is writing ${OUT#"$REPO"/}; waiting for it"
	flock 8
fi
rm -f "$OUT"/*.log "$OUT"/results.tsv "$OUT"/kernels.md "$OUT"/problems.txt

# ---------------------------------------------------------------- tools

T=$(now)
apt_install() {
	local env=(env DEBIAN_FRONTEND=noninteractive)
	if ! "${SUDO[@]}" "${env[@]}" apt-get install -y -qq --no-install-recommends "$@" >"$WORK/apt-install.log" 2>&1; then
		"${SUDO[@]}" apt-get update -qq >>"$WORK/apt-install.log" 2>&1 || true
		"${SUDO[@]}" "${env[@]}" apt-get install -y -qq --no-install-recommends "$@" >>"$WORK/apt-install.log" 2>&1 ||
			{ cat "$WORK/apt-install.log" >&2; die "could not install: $*"; }
	fi
}
need=()
if [ ${#KERNELS[@]} -gt 0 ]; then
	# Only busybox-static's /bin/busybox runs in an initramfs without libc.
	dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
	command -v cpio >/dev/null || need+=(cpio)
	command -v xz >/dev/null || need+=(xz-utils)
	[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
fi
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_install "${need[@]}"
fi
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || die "go not found"
phase_done "tools" "$T"

# ---------------------------------------------------------------- kernels

APT_DIR=$CACHE/apt
apt_opts() {
	printf '%s\n' \
		-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache" \
		-o Acquire::Languages=none -o APT::Sandbox::User=root
}

debian_mirror() {
	if [ -n "${SOCKEYE_DEBIAN_MIRROR:-}" ]; then
		echo "${SOCKEYE_DEBIAN_MIRROR%/}"
		return
	fi
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -E '^[[:space:]]*(deb[[:space:]]|URIs:)' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' |
		sed -E 's/[[:space:]]+$//; s,/$,,' | head -n1 || true)
	echo "${m:-http://deb.debian.org/debian}"
}

apt_updated=0
apt_update() { # suites...
	[ $apt_updated = 0 ] || return 0
	local mirror s
	mirror=$(debian_mirror)
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
	: >"$APT_DIR/sources.list"
	for s in $(printf '%s\n' "$@" | sort -u); do
		if [[ $s == *-security ]]; then
			echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/debian}/debian-security $s main"
		else
			echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main"
		fi
	done >"$APT_DIR/sources.list"
	local -a o=()
	log "apt update ($(printf '%s ' "$@" | tr ' ' '\n' | sort -u | xargs) from $mirror)"
	mapfile -t o < <(apt_opts)
	apt-get "${o[@]}" update -qq >"$WORK/apt-update.log" 2>&1 ||
		{ cat "$WORK/apt-update.log" >&2; die "apt-get update for the kernel suites failed"; }
	apt_updated=1
}

# Fails with the versions the suite serves now when a pin is gone.
check_served() { # label suite package version
	local label=$1 suite=$2 pkg=$3 ver=$4 flavor have pattern
	local -a o=()
	mapfile -t o < <(apt_opts)
	apt-cache "${o[@]}" madison "$pkg" 2>/dev/null |
		awk -F'|' -v v="$ver" '{ gsub(/ /, "", $2) } $2 == v { f = 1 } END { exit !f }' && return 0
	if [[ $pkg == linux-image-* ]]; then
		flavor=$(sed -E 's/^linux-image-[0-9]+\.[0-9]+[^-]*(-[0-9]+)?(\+[a-z0-9]+)?-//' <<<"$pkg")
		pattern="^linux-image-${label//./\\.}[.-].*-${flavor}\$"
	else
		pattern="^${pkg//+/\\+}\$"
	fi
	have=$(apt-cache "${o[@]}" search --names-only "$pattern" 2>/dev/null | awk '{ print $1 }' |
		while read -r n; do
			apt-cache "${o[@]}" madison "$n" | awk -F'|' -v n="$n" '{ gsub(/ /, "", $2); gsub(/^ +| +$/, "", $3); print "  " n "=" $2 "  (" $3 ")" }'
		done | sort -uV)
	die "$label: $pkg=$ver is not served by $(debian_mirror) $suite (any more).
Versions there now:
${have:-  (none found)}
Pin one of them in test/kernels/kernels.conf, or for one run set
SOCKEYE_KERNEL_OVERRIDE_${label//[^A-Za-z0-9]/_}=PACKAGE=VERSION."
}

# Downloads packages (NAME=VERSION or NAME/SUITE) into a new directory
# under the cache and prints its path.
download() { # what packages...
	local what=$1 tmp
	shift
	local -a o=()
	mapfile -t o < <(apt_opts)
	log "$what: downloading $*"
	tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
	(cd "$tmp" && apt-get "${o[@]}" download -qq "$@" >"$WORK/apt-download.log" 2>&1) ||
		{ cat "$WORK/apt-download.log" >&2; rm -rf "$tmp"; die "download of $* failed"; }
	echo "$tmp"
}

pin_suites() {
	local k
	for k in "${KERNELS[@]}" qemu; do [ -z "${K_SUITE[$k]:-}" ] || echo "${K_SUITE[$k]}"; done
}

# Sets KDIR[label]: a cache directory holding the package's boot/ and
# modules/.
declare -A KDIR=() KPKGVER=()
fetch_kernel() {
	local label=$1 suite=${K_SUITE[$1]} pkg=${K_PKG[$1]} ver=${K_VER[$1]}
	local dir=$CACHE/kernels/${pkg}_${ver//:/%3a}
	KDIR[$label]=$dir KPKGVER[$label]="$pkg=$ver"
	[ -f "$dir/.complete" ] && return 0

	mapfile -t suites < <(pin_suites)
	apt_update "${suites[@]}"
	check_served "${K_BASE[$label]:-$label}" "$suite" "$pkg" "$ver"
	local tmp
	tmp=$(download "kernel $label" "$pkg=$ver")
	dpkg -x "$tmp"/*.deb "$tmp/x"
	# Keep what the guests use: the image, its config, the modules.
	mkdir -p "$tmp/keep"
	mv "$tmp/x/boot" "$tmp/keep/boot"
	if [ -d "$tmp/x/usr/lib/modules" ]; then
		mv "$tmp/x/usr/lib/modules" "$tmp/keep/modules"
	else
		mv "$tmp/x/lib/modules" "$tmp/keep/modules"
	fi
	rm -rf "$dir"
	mv "$tmp/keep" "$dir"
	rm -rf "$tmp"
	touch "$dir/.complete"
}

# Sets QEMU_CMD: the pinned qemu-system-x86_64, unpacked in the cache (not
# installed, so the machine's own QEMU, if any, is left alone), with its
# firmware search path. SOCKEYE_QEMU=/path uses that binary instead.
declare -a QEMU_CMD=()
QEMU_DESC=""
fetch_qemu() {
	if [ -n "${SOCKEYE_QEMU:-}" ]; then
		[ -x "$SOCKEYE_QEMU" ] || die "SOCKEYE_QEMU=$SOCKEYE_QEMU is not an executable"
		QEMU_CMD=("$SOCKEYE_QEMU")
		QEMU_DESC="$SOCKEYE_QEMU"
		return 0
	fi
	local suite=${K_SUITE[qemu]} pkg=${K_PKG[qemu]} ver=${K_VER[qemu]}
	local dir=$CACHE/qemu/${pkg}_${ver//:/%3a}
	QEMU_DESC="$pkg=$ver"
	if [ ! -f "$dir/.complete" ]; then
		mapfile -t suites < <(pin_suites)
		apt_update "${suites[@]}"
		check_served qemu "$suite" "$pkg" "$ver"
		local tmp f
		# The firmware packages of the same release; seabios from the
		# same suite as this QEMU wants a newer one than bookworm's.
		tmp=$(download qemu "$pkg=$ver" "qemu-system-data=$ver" "qemu-system-common=$ver" "seabios/$suite")
		for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/x"; done
		# Shared libraries it needs from the machine's own suite.
		dpkg-deb -f "$tmp"/"${pkg}"_*.deb Depends | tr ',' '\n' | sed -E 's/^ *//; s/[ (|].*//' |
			grep -vE '^(qemu-|seabios|ipxe)' >"$tmp/x/.depends"
		rm -rf "$tmp/x/usr/share/doc" "$tmp/x/usr/share/man"
		rm -rf "$dir"
		mkdir -p "$CACHE/qemu"
		mv "$tmp/x" "$dir"
		rm -rf "$tmp"
		touch "$dir/.complete"
	fi
	local -a missing=()
	local lib
	while read -r lib; do
		dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || missing+=("$lib")
	done <"$dir/.depends"
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing libraries QEMU needs: ${missing[*]}"
		apt_install "${missing[@]}"
	fi
	local bin=$dir/usr/bin/qemu-system-x86_64
	if ldd "$bin" | grep -q 'not found'; then
		ldd "$bin" | grep 'not found' >&2
		die "$bin: missing shared libraries"
	fi
	QEMU_CMD=(env "QEMU_MODULE_DIR=$dir/usr/lib/x86_64-linux-gnu/qemu" "$bin"
		-L "$dir/usr/share/qemu" -L "$dir/usr/share/seabios")
}

T=$(now)
if [ ${#KERNELS[@]} -gt 0 ]; then
	mkdir -p "$CACHE/kernels" "$CACHE/initramfs"
	exec 9>"$CACHE/.lock"
	flock 9 # one fetch at a time per cache
	for k in "${KERNELS[@]}"; do
		fetch_kernel "$k"
		compgen -G "${KDIR[$k]}/boot/vmlinuz-*" >/dev/null || die "kernel $k: no boot/vmlinuz-* in ${KDIR[$k]}"
	done
	fetch_qemu
	flock -u 9
	log "emulator: $("${QEMU_CMD[@]}" --version | head -n1)"
fi
phase_done "kernels and emulator (fetch or cache)" "$T"

# ---------------------------------------------------------------- test binaries

T=$(now)
BIN=$WORK/bin
mkdir -p "$BIN"
declare -a TESTS=()    # binary names, in packages.txt order
declare -A TPKG=() TDIR=()
PEERS=" " # peer binaries some package's tests run (packages.txt: words after the path)
while read -r pkg rest; do
	case $pkg in '' | '#'*) continue ;; esac
	for peer in $rest; do
		case $peer in
		agent | jaeger) [[ $PEERS == *" $peer "* ]] || PEERS+="$peer " ;;
		*) die "packages.txt: $pkg: unknown peer '$peer' (known: agent, jaeger)" ;;
		esac
	done
	info=$(cd "$REPO" && "$GO" list -f '{{.ImportPath}}|{{.Dir}}|{{len .TestGoFiles}}|{{len .XTestGoFiles}}' "$pkg") ||
		die "packages.txt: cannot load $pkg"
	[ "$(wc -l <<<"$info")" = 1 ] || die "packages.txt: $pkg matches several packages; list them one by one"
	IFS='|' read -r ipath dir nt nxt <<<"$info"
	[ $((nt + nxt)) -gt 0 ] || die "packages.txt: $pkg has no tests"
	name=${ipath#github.com/sockeye/sockeye/}
	name=${name//[^A-Za-z0-9]/_}
	[ -z "${TPKG[$name]:-}" ] || die "packages.txt: $pkg listed twice"
	log "building $pkg"
	(cd "$REPO" && CGO_ENABLED=0 "$GO" test -c -o "$BIN/$name.test" "$pkg") || die "build of $pkg failed"
	[ -x "$BIN/$name.test" ] || die "go test -c $pkg produced no binary"
	TESTS+=("$name")
	TPKG[$name]=$pkg TDIR[$name]=$dir
done < <(if [ -n "$want_packages" ]; then
	# --packages names paths; their peers come from packages.txt.
	for p in ${want_packages//,/ }; do
		grep -E "^$p([[:space:]]|\$)" "$HERE/packages.txt" || echo "$p"
	done
else cat "$HERE/packages.txt"; fi)
[ ${#TESTS[@]} -gt 0 ] || die "packages.txt lists no package"
EXPECTED_BINS=""
for t in "${TESTS[@]}"; do EXPECTED_BINS+="$t=${TPKG[$t]} "; done
# The nobtf setup runs the agent itself (`sockeye check`) before the tests,
# reported as one more binary.
AGENT_PKG=./agent/cmd/sockeye
if [[ $SETUPS == *" nobtf "* || $PEERS == *" agent "* ]]; then
	log "building $AGENT_PKG"
	(cd "$REPO" && CGO_ENABLED=0 "$GO" build -ldflags='-s -w' -o "$BIN/sockeye" "$AGENT_PKG") ||
		die "build of $AGENT_PKG failed"
fi
# Jaeger from the modules pinned in tools/jaeger, static, from the cache the
# tests share (a cold build takes minutes).
if [[ $PEERS == *" jaeger "* ]]; then
	log "building Jaeger (tools/jaeger/build.sh)"
	jaeger_bin=$(PATH=$(dirname "$GO"):$PATH "$REPO/tools/jaeger/build.sh" | tail -n1) || die "build of Jaeger failed"
	cp "$jaeger_bin" "$BIN/jaeger"
fi
phase_done "build test binaries" "$T"

# go test's own timeout per binary, so a hung test prints its goroutines and
# the next binary still runs; the guest as a whole gets time to boot on top.
TEST_TIMEOUT=${BIN_TIMEOUT}s
guest_timeout() { # label
	local n=${#TESTS[@]}
	[ "${K_SETUP[$1]:-}" != nobtf ] || n=$((n + 1))
	echo $((90 + n * (BIN_TIMEOUT + 10)))
}
expected_bins() { # label
	if [ "${K_SETUP[$1]:-}" = nobtf ]; then
		echo "sockeye=$AGENT_PKG $EXPECTED_BINS"
	else
		echo "$EXPECTED_BINS"
	fi
}

# ---------------------------------------------------------------- initramfs

# Writes the module names (dependencies first) that modules.txt asks for to
# stdout, copying the decompressed .ko files into $2.
resolve_modules() { # kernel-dir dest
	local mroot=$1/modules dest=$2
	local rel
	rel=$(ls "$mroot" | head -n1)
	mroot=$mroot/$rel
	declare -A file=() seen=()
	local f n
	while IFS= read -r f; do
		n=${f##*/}
		n=${n%%.ko*}
		file[${n//-/_}]=$f
	done < <(find "$mroot/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
	local builtin
	builtin=" $(sed -E 's,.*/,,; s,\.ko$,,; s,-,_,g' "$mroot/modules.builtin" 2>/dev/null | tr '\n' ' ') "
	visit() {
		local m=${1//-/_} f deps d
		[ -z "${seen[$m]:-}" ] || return 0
		seen[$m]=1
		if [ -z "${file[$m]:-}" ]; then
			[[ $builtin == *" $m "* ]] && return 0
			die "module $m: neither in $rel's modules nor built in"
		fi
		f=${file[$m]}
		case $f in
		*.xz) xz -dc "$f" >"$dest/$m.ko" ;;
		*.zst) zstd -qdc "$f" >"$dest/$m.ko" ;;
		*.gz) gzip -dc "$f" >"$dest/$m.ko" ;;
		*) cp "$f" "$dest/$m.ko" ;;
		esac
		deps=$({ tr '\0' '\n' <"$dest/$m.ko" | grep -a '^depends=' || true; } | sed -n '1s/^depends=//p' | tr ',' ' ')
		for d in $deps; do visit "$d"; done
		echo "$m"
	}
	while read -r m rest; do
		case $m in '' | '#'*) continue ;; esac
		visit "$m"
	done <"$HERE/modules.txt"
}

# Sets INITRD[label].
declare -A INITRD=()
build_initramfs() {
	local label=$1 root=$WORK/initramfs-$1
	rm -rf "$root"
	mkdir -p "$root"/{dev,sockeye/modules,sockeye/tests}
	cp /bin/busybox "$root/busybox"
	cp "$HERE/init.sh" "$root/init"
	chmod 755 "$root/init"
	resolve_modules "${KDIR[$label]}" "$root/sockeye/modules" >"$root/sockeye/modules.list"
	printf 'SOCKEYE_KERNEL_LABEL=%s\nSOCKEYE_TEST_TIMEOUT=%s\nSOCKEYE_GUEST_SETUP=%s\nSOCKEYE_AGENT_TIMEOUT=%s\n' \
		"$label" "$TEST_TIMEOUT" "${K_SETUP[$label]:-}" "$BIN_TIMEOUT" >"$root/sockeye/env"
	# The agent and the peers tests run; init.sh names them to the tests.
	if [[ ${K_SETUP[$label]:-} = nobtf || $PEERS == *" agent "* ]]; then
		mkdir -p "$root/sockeye/bin"
		cp "$BIN/sockeye" "$root/sockeye/bin/sockeye"
	fi
	if [[ $PEERS == *" jaeger "* ]]; then
		mkdir -p "$root/sockeye/bin"
		cp "$BIN/jaeger" "$root/sockeye/bin/jaeger"
	fi
	local t
	for t in "${TESTS[@]}"; do
		mkdir -p "$root/sockeye/tests/$t"
		cp "$BIN/$t.test" "$root/sockeye/tests/$t/"
		# testdata/ of the package and of the packages below it (a test
		# may read ksym/testdata/...), at the same relative paths.
		(cd "${TDIR[$t]}" && find . -type d -name testdata -prune -print0 |
			xargs -0 -r cp -r --parents -t "$root/sockeye/tests/$t/")
		echo "$t ${TPKG[$t]}"
	done >"$root/sockeye/tests.list"
	local key
	key=$(cd "$root" && { find . -printf '%p %y %m\n' | LC_ALL=C sort; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-24)
	local img=$CACHE/initramfs/$label-$key.cpio
	INITRD[$label]=$img
	if [ -f "$img" ]; then
		touch "$img"
		log "initramfs $label: cached ($(basename "$img"))"
		return 0
	fi
	# Without /dev/console in the archive, /init starts with no stdio.
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
	# Not compressed: inflating it is a large part of an emulated boot.
	(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$img.tmp.$$"
	mv "$img.tmp.$$" "$img"
	log "initramfs $label: built ($(du -h "$img" | cut -f1))"
}

T=$(now)
for k in "${KERNELS[@]}"; do build_initramfs "$k"; done
if [ ${#KERNELS[@]} -gt 0 ]; then
	# Keep the cache bounded: images unused for two days go.
	find "$CACHE/initramfs" -maxdepth 1 -name '*.cpio*' -mtime +2 -delete
fi
phase_done "initramfs" "$T"

# ---------------------------------------------------------------- runs

RESULTS=$OUT/results.tsv
: >"$RESULTS"
RUN_LOGS=() # this run's console logs, for the failure excerpts

boot() { # label
	local label=$1 logf=$OUT/$1.log t rc=0 secs
	local kimg pkgver=${KPKGVER[$label]} limit
	RUN_LOGS+=("$logf")
	limit=$(guest_timeout "$label")
	kimg=$(compgen -G "${KDIR[$label]}/boot/vmlinuz-*" | head -n1)
	[ -z "${K_SETUP[$label]:-}" ] || pkgver+=" (setup ${K_SETUP[$label]})"
	log "booting $label ($pkgver), timeout ${limit}s"
	t=$(now)
	# Software emulation: KVM guests hang on these machines.
	# no_timer_check: on a busy host the emulated timer can look dead to
	# the kernel's early IO-APIC check, which then panics.
	timeout -k 10 "$limit" "${QEMU_CMD[@]}" \
		-accel tcg -cpu max -m "$QEMU_MEM" -smp 2 \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-kernel "$kimg" -initrd "${INITRD[$label]}" \
		-append "console=ttyS0 panic=-1 quiet no_timer_check" \
		</dev/null >"$logf" 2>&1 || rc=$?
	secs=$(elapsed "$t")
	awk -v label="$label" -v runrc="$rc" -v secs="$secs" -v pkgver="$pkgver" \
		-v expected="$(expected_bins "$label")" -f "$HERE/parse.awk" "$logf" >>"$RESULTS"
	TIMINGS+=("boot+tests $label: ${secs}s")
	log "$label done in ${secs}s (qemu status $rc); console log: ${logf#"$REPO"/}"
}

host_run() {
	local rel label logf t rc=0 secs name
	local -a HOST_PEERS=()
	[[ $PEERS != *" agent "* ]] || HOST_PEERS+=("SOCKEYE_AGENT_BIN=$BIN/sockeye")
	[[ $PEERS != *" jaeger "* ]] || HOST_PEERS+=("SOCKEYE_JAEGER_BIN=$BIN/jaeger")
	rel=$(uname -r)
	label=host-$rel
	logf=$OUT/$label.log
	RUN_LOGS+=("$logf")
	log "running on the host ($rel)"
	# The same mounts the guests get; BPF tests need them.
	[ -d /sys/kernel/tracing/events ] || "${SUDO[@]}" mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null ||
		log "warning: could not mount tracefs"
	grep -qs ' /sys/fs/bpf bpf ' /proc/mounts || "${SUDO[@]}" mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
		log "warning: could not mount bpffs"
	t=$(now)
	{
		echo "SOCKEYE-UNAME $rel"
		for name in "${TESTS[@]}"; do
			echo "SOCKEYE-BEGIN $name ${TPKG[$name]}"
			local brc=0
			(cd "${TDIR[$name]}" && "${SUDO[@]}" env SOCKEYE_REQUIRE_BPF=1 SOCKEYE_KERNEL_LABEL="$label" "${HOST_PEERS[@]}" \
				timeout -k 10 "$((BIN_TIMEOUT + 10))" "$BIN/$name.test" -test.v -test.count=1 -test.short \
				-test.timeout="$TEST_TIMEOUT" </dev/null) 2>&1 || brc=$?
			echo "SOCKEYE-EXIT $name $brc"
		done
		echo "SOCKEYE-DONE"
	} >"$logf" 2>&1
	secs=$(elapsed "$t")
	awk -v label="$label" -v runrc="$rc" -v secs="$secs" -v pkgver="(host)" \
		-v expected="$EXPECTED_BINS" -f "$HERE/parse.awk" "$logf" >>"$RESULTS"
	TIMINGS+=("tests on host: ${secs}s")
	log "host done in ${secs}s; log: ${logf#"$REPO"/}"
}

T=$(now)
for k in "${KERNELS[@]}"; do boot "$k"; done
[ $run_host = 0 ] || host_run
phase_done "runs" "$T"

# ---------------------------------------------------------------- report

commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
header="Generated by \`$COMMAND_LINE\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $commit;
do not edit by hand, rerun the command. Guests are Debian cloud kernels under QEMU software emulation,
\`host-*\` is the machine that ran the script. Rows come from the \`KERNEL-MATRIX\` lines the tests
print; the protocol and how to add kernels or packages are in \`test/kernels/README.md\`.
Emulator: ${QEMU_DESC:-none} (\`-accel tcg -cpu max -smp 2 -m $QEMU_MEM\`)."
PROBLEMS=$OUT/problems.txt
rm -f "$PROBLEMS"
awk -v problems="$PROBLEMS" -v expect="$HERE/expect.txt" -v header="$header" \
	-f "$HERE/report.awk" "$RESULTS" >"$OUT/kernels.md"
if [ $write_docs = 1 ]; then
	mkdir -p "$REPO/docs"
	cp "$OUT/kernels.md" "$REPO/docs/kernels.md"
	log "wrote docs/kernels.md"
fi

echo
awk -F'\t' '$1 == "R" { printf "  %-24s %-10s %-16s %-12s %s\n", $2, $3, $4, $5, $7 }' "$RESULTS" | cut -c1-160
echo
log "timings:"
for line in "${TIMINGS[@]}"; do printf '    %s\n' "$line" >&2; done
printf '    total: %ss\n' "$(elapsed "$T_ALL")" >&2
log "report: ${OUT#"$REPO"/}/kernels.md"
if [ -s "$PROBLEMS" ]; then
	# The failing tests' own messages, so that a CI log's tail says why.
	for logf in "${RUN_LOGS[@]}"; do
		[ -s "$logf" ] || continue
		excerpt=$(awk -f "$HERE/failures.awk" "$logf")
		[ -z "$excerpt" ] || printf '==> failures in %s:\n%s\n' "${logf#"$REPO"/}" "$excerpt" >&2
	done
	log "FAILED:"
	sed 's/^/    /' "$PROBLEMS" >&2
	exit 1
fi
log "all kernels passed"
