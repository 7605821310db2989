#!/usr/bin/env bash
# Accept storm against the accepts (tcp_connections) pipeline: how many
# connections per second a client/server pair on 127.0.0.1 sustains with no
# agent and with sockeye running bench/accepts.yaml, whether every accept
# was reported (console rows of the storm's pid vs the storm's own count),
# the agent's CPU (utime+stime from /proc/PID/stat) and, with
# kernel.bpf_stats_enabled, the cost of its system-call exit program. Needs root.
#
#   bench/accepts.sh [-r ROUNDS] [-d SECONDS] [-c CLIENTS] [-a ACCEPTORS] [-k "CASES"]
#
# Environment (flags win): ROUNDS=3 DURATION=10 CLIENTS=2 ACCEPTORS=1
#   CASES="baseline sockeye" OUT=bench/out SOCKEYE=path (else builds bin/sockeye)
#   KEEP=1 keeps each run's console output ($OUT/accepts-sockeye-rN.out).
#   HOOK=auto pins the agent's rung (tracepoint, tp_btf, ...).
#   OTLP=1 also ships to a local OpenTelemetry Collector (built from
#   tools/otelcol) and counts the records it wrote.
# Results: $OUT/accepts-runs.jsonl, one line per run.
set -euo pipefail

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CLIENTS=${CLIENTS:-2} ACCEPTORS=${ACCEPTORS:-1}
export HOOK=${HOOK:-auto}
CASES=${CASES:-"baseline sockeye"} OTLP=${OTLP:-0}
while getopts "r:d:c:a:k:h" o; do
	case $o in
	r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;; c) CLIENTS=$OPTARG ;; a) ACCEPTORS=$OPTARG ;; k) CASES=$OPTARG ;;
	*) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "accepts.sh: needs root (BPF)" >&2; exit 1; }
need() { # need COMMAND [PACKAGE]
	command -v "$1" >/dev/null && return
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null; }
}
need jq
need bpftool
mkdir -p "$OUT"
RUNS=$OUT/accepts-runs.jsonl
: >"$RUNS"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

if [[ -z ${SOCKEYE:-} ]]; then
	log "building bin/sockeye"
	go build -o bin/sockeye ./agent/cmd/sockeye
	SOCKEYE=bin/sockeye
fi
go build -o "$OUT/acceptstorm" ./bench/accepts
CONFIG=bench/accepts.yaml
ENV=()
COL=
if [[ $OTLP == 1 ]]; then
	COLBIN=$(tools/otelcol/build.sh | tail -n1)
	COLDIR=$(mktemp -d)
	COLPORT=$((20000 + RANDOM % 20000))
	cat >"$COLDIR/config.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:$COLPORT}}}}
exporters:
  file/logs: {path: $COLDIR/logs.jsonl, format: json, flush_interval: 100ms}
  file/metrics: {path: $COLDIR/metrics.jsonl, format: json, flush_interval: 100ms}
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    logs: {receivers: [otlp], exporters: [file/logs]}
    metrics: {receivers: [otlp], exporters: [file/metrics]}
YAML
	"$COLBIN" --config "$COLDIR/config.yaml" >"$COLDIR/out.log" 2>&1 &
	COL=$!
	ENV=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$COLPORT)
	sleep 2
fi
stats_was=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
AGENT=
cleanup() {
	[[ -z $AGENT ]] || kill -INT "$AGENT" 2>/dev/null || true
	[[ -z $COL ]] || kill "$COL" 2>/dev/null || true
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run_case() { # case round
	local c=$1 r=$2 base=$OUT/accepts-$1-r$2
	local storm agent_cpu=null reported=null lost_log=0 rung=null prog=null otlp=null
	if [[ $c == sockeye ]]; then
		local before
		before=$(bpftool -j prog show | jq -c '[.[].id]')
		# Emptied here: the child's redirection may come after the first grep.
		: >"$base.log"
		env "${ENV[@]}" "$SOCKEYE" run --config "$CONFIG" >"$base.out" 2>>"$base.log" &
		AGENT=$!
		for _ in $(seq 300); do grep -q "pipeline started" "$base.log" && break; sleep 0.1; done
		rung=$(sed -n 's/.*pipeline started.*rung=\([a-z_]*\).*/"\1"/p' "$base.log" | head -n1)
		rung=${rung:-null}
	fi
	# What every other process pays: a system call with the hook in place.
	local sys t0
	sys=$("$OUT/acceptstorm" -syscalls -duration 2s | jq .ns_per_call)
	if [[ $c == sockeye ]]; then
		t0=$(cpu_ticks "$AGENT")
	fi
	storm=$("$OUT/acceptstorm" -duration "${DURATION}s" -clients "$CLIENTS" -acceptors "$ACCEPTORS")
	if [[ $c == sockeye ]]; then
		local t1
		t1=$(cpu_ticks "$AGENT")
		# Runs and time of the programs loaded since the agent started
		# (its own, unless another loader started at the same moment).
		prog=$(bpftool -j prog show | jq -c --argjson before "$before" \
			'[.[] | select((.id as $id | $before | index($id)) == null)
			  | select(.name | test("sys_exit|accept|_state$")) | {name, run_cnt, run_time_ns,
			  ns_per_run: (if (.run_cnt // 0) > 0 then (.run_time_ns / .run_cnt) else null end)}]' || echo null)
		sleep 1
		kill -INT "$AGENT"
		wait "$AGENT" || true
		AGENT=
		agent_cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v d="$(jq .seconds <<<"$storm")" 'BEGIN { printf "%.3f", (b - a) / hz / d }')
		local pid
		pid=$(jq .pid <<<"$storm")
		reported=$(awk -v pid="$pid" '$3 == pid' "$base.out" | wc -l)
		lost_log=$(grep -c "ring buffer full\|queue full" "$base.log" || true)
		# A row per connection: megabytes a run; kept with KEEP=1.
		[[ ${KEEP:-0} == 1 ]] || rm -f "$base.out"
		if [[ -n $COL ]]; then
			sleep 2
			otlp=$(jq -c --arg pid "$pid" '.resourceLogs[].scopeLogs[].logRecords[]
				| select(any(.attributes[]; .key == "process.pid" and .value.intValue == $pid))' \
				"$COLDIR/logs.jsonl" | wc -l)
		fi
	fi
	jq -c --arg case "$c" --argjson round "$r" --argjson reported "$reported" --argjson agent_cpu "$agent_cpu" \
		--argjson lost_warnings "$lost_log" --argjson rung "$rung" --argjson prog "${prog:-null}" --argjson otlp "$otlp" \
		--argjson sys "$sys" \
		'. + {case: $case, round: $round, reported: $reported, reported_otlp: $otlp, agent_cpu_cores: $agent_cpu,
		      getppid_ns: $sys,
		      lost_warnings: $lost_warnings, rung: $rung, programs: $prog}' \
		<<<"$storm" | tee -a "$RUNS"
}

# The order of the cases rotates every round, so a drift of the machine's
# load does not favour one case.
read -r -a cases <<<"$CASES"
for r in $(seq 0 $((ROUNDS - 1))); do
	for i in "${!cases[@]}"; do
		run_case "${cases[$(((i + r) % ${#cases[@]}))]}" "$r"
	done
done
log "runs: $RUNS"
jq -s 'group_by(.case) | map({case: .[0].case, runs: length,
	accepts_per_second: (map(.accepts_per_second) | add / length | floor),
	median_accepts_per_second: (map(.accepts_per_second) | sort | .[length / 2 | floor] | floor),
	median_cpu_us_per_accept: (map(.cpu_us_per_accept) | sort | .[length / 2 | floor]),
	reported_all: (map(.reported == null or .reported == .accepts) | all),
	reported_all_otlp: (map(.reported_otlp == null or .reported_otlp == .accepts) | all),
	agent_cpu_cores: (map(.agent_cpu_cores // 0) | add / length),
	median_getppid_ns: (map(.getppid_ns) | sort | .[length / 2 | floor])})' "$RUNS"
