#!/usr/bin/env bash
# Builds Jaeger v2 (the all-in-one `jaeger` binary) from the modules pinned in
# this directory's go.mod, for the end-to-end tests of the traces pipelines.
#
#   tools/jaeger/build.sh [OUT]
#
# With OUT, writes the binary there. Without it, builds into the cache that
# internal/testpeer/jaeger.Build reads (same key, same go build flags), so
# running this first (e.g. in CI) makes the tests start without compiling.
# A cold build takes about 4 CPU-minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# Same flags as Build, so both share Go's build cache. Jaeger's go.mod has
# replace directives, so it cannot be `go install`ed: it is a tool of this
# module instead.
# Static (CGO_ENABLED=0): the kernel matrix runs the same binary in guests
# that have no C library.
build() { GOWORK=off CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -o "$1" github.com/jaegertracing/jaeger/cmd/jaeger; }

if [[ $# -ge 1 ]]; then
	build "$1"
	echo "$1"
	exit 0
fi

if command -v sha256sum >/dev/null; then
	key="$(cat go.mod go.sum | sha256sum | cut -c1-16)"
else
	key="$(cat go.mod go.sum | shasum -a 256 | cut -c1-16)"
fi

# Mirrors os.UserCacheDir.
if [[ -n "${SOCKEYE_TOOLS_CACHE:-}" ]]; then
	cache="$SOCKEYE_TOOLS_CACHE"
elif [[ "$(uname -s)" == Darwin ]]; then
	cache="$HOME/Library/Caches/sockeye-tools"
else
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/sockeye-tools"
fi

dir="$cache/jaeger-static-$key"
bin="$dir/jaeger"
if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp "$dir/jaeger.tmp-XXXXXX")"
trap 'rm -f "$tmp"' EXIT
build "$tmp"
chmod 755 "$tmp"
# Atomic publish: concurrent test binaries never see a partial file.
mv -f "$tmp" "$bin"
echo "$bin"
