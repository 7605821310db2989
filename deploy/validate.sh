#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster:
#
#   deploy/validate.sh        (make test-deploy)
#
#   1. docker-compose.yml with docker-compose's own parser;
#   2. deploy/otelcol.yaml with a collector built from the image's release
#      (deploy/otelcol-validate), cached like tools/otelcol/build.sh;
#   3. the Prometheus config, rules and rule tests with promtool;
#   4. deploy/sockeye.yaml with `sockeye validate`;
#   5. the Go tests of deploy/ (manifests, images, build context, and the
#      metric names the rules use, against the collector of step 2).
# Prints how long each step took. PROMTOOL=path uses another promtool than
# Debian's (e.g. one of the stack's Prometheus release; building it from the
# Go module takes about 15 CPU-minutes, too long for every CI run).
set -euo pipefail
promtool="${PROMTOOL:-promtool}"

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

step() {
	local name=$1 start=$SECONDS
	shift
	echo "== $name"
	"$@"
	echo "   ($name: $((SECONDS - start)) s)"
}

# The collector binary, rebuilt only when its sources change.
build_collector() {
	local src=deploy/otelcol-validate key cache
	key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
	cache="${SOCKEYE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sockeye-tools}/otelcol-validate-$key"
	collector="$cache/otelcol-validate"
	if [[ ! -x "$collector" ]]; then
		mkdir -p "$cache"
		local tmp
		tmp="$(mktemp "$cache/otelcol-validate.tmp-XXXXXX")"
		(cd "$src" && GOWORK=off go build -mod=readonly -buildvcs=false -o "$tmp" .)
		mv -f "$tmp" "$collector"
	fi
	echo "   $collector"
}

step "install docker-compose and promtool" tools/install-deps.sh deploy
step "docker-compose config" docker-compose -f docker-compose.yml config -q
step "build the validating collector" build_collector
step "collector validate" "$collector" validate --config deploy/otelcol.yaml
step "promtool check config" "$promtool" check config deploy/prometheus/prometheus.yml
step "promtool check rules" "$promtool" check rules deploy/prometheus/rules.yml
step "promtool test rules" "$promtool" test rules deploy/prometheus/rules_test.yml
step "sockeye validate" go run ./agent/cmd/sockeye validate --config deploy/sockeye.yaml
step "go test ./deploy" env SOCKEYE_OTELCOL_VALIDATE="$collector" go test -count=1 -v ./deploy/
