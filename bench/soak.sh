#!/usr/bin/env bash
# Soak: sockeye with every pipeline (bench/soak.yaml) under mixed load for
# DURATION seconds: UDP floods (traffic), an accept storm on port 5400
# (accepts, and tcp_receive's capture of it), a traced socket-call loop
# (socket_calls), and a churn of short-lived processes each sending one
# datagram (new traffic keys that must be removed when they exit). OTLP goes
# to a local OpenTelemetry Collector built from tools/otelcol. Every SAMPLE
# seconds it records the agent's RSS, goroutines and heap (/healthz), open
# fds, and the entries of its kernel maps (bpftool). Needs root.
#
#   bench/soak.sh [-d SECONDS] [-s SAMPLE]
#
# Environment (flags win): DURATION=600 SAMPLE=15 OUT=bench/out
# Results: $OUT/soak-samples.tsv, $OUT/soak-summary.json, $OUT/soak-agent.log.
# The summary compares the mean of the last quarter of samples with the
# mean of the second (after warm-up): "flat" means within 10%.
set -euo pipefail

DURATION=${DURATION:-600} SAMPLE=${SAMPLE:-15}
while getopts "d:s:h" o; do
	case $o in
	d) DURATION=$OPTARG ;; s) SAMPLE=$OPTARG ;;
	*) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "soak.sh: needs root (BPF)" >&2; exit 1; }
need() { # need COMMAND [PACKAGE]
	command -v "$1" >/dev/null && return
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null; }
}
need jq
need bpftool
need curl
need capinfos tshark
mkdir -p "$OUT"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

WORK=$(mktemp -d)
log "building sockeye, load generators and the collector"
CGO_ENABLED=0 go build -o "$WORK/sockeye" ./agent/cmd/sockeye
go build -o "$WORK/udpflood" ./bench/udpflood
go build -o "$WORK/acceptstorm" ./bench/accepts
go build -o "$WORK/sc-loop" ./bench/socketcalls/loop
COLBIN=$(tools/otelcol/build.sh | tail -n1)

port() { echo $((20000 + RANDOM % 20000)); }
COLPORT=$(port) HEALTHPORT=$(port)
cat >"$WORK/otelcol.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:$COLPORT}}}}
exporters: {debug: {verbosity: basic}}
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    logs: {receivers: [otlp], exporters: [debug]}
    metrics: {receivers: [otlp], exporters: [debug]}
    traces: {receivers: [otlp], exporters: [debug]}
YAML
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
"$COLBIN" --config "$WORK/otelcol.yaml" >"$WORK/otelcol.log" 2>&1 &
PIDS+=($!)

export SOAK_COLLECTOR=127.0.0.1:$COLPORT SOAK_CAPTURE=$WORK/rx.pcapng SOAK_HEALTH=127.0.0.1:$HEALTHPORT
"$WORK/sockeye" run --config bench/soak.yaml >/dev/null 2>"$OUT/soak-agent.log" &
AGENT=$!
PIDS+=($AGENT)
for _ in $(seq 300); do
	[[ $(curl -s "http://$SOAK_HEALTH/healthz" | jq -r .status 2>/dev/null) == ok ]] && break
	sleep 0.2
done
[[ $(curl -s "http://$SOAK_HEALTH/healthz" | jq -r .status) == ok ]] || { cat "$OUT/soak-agent.log" >&2; exit 1; }
log "agent $AGENT up; load for ${DURATION}s"

END=$((SECONDS + DURATION))
# Each load runs in bursts so the two CPUs are shared, not monopolised.
( while ((SECONDS < END)); do "$WORK/udpflood" -d 5s -send-cpu -1 -recv-cpu -1 >/dev/null 2>&1 || true; sleep 5; done ) &
PIDS+=($!)
( while ((SECONDS < END)); do "$WORK/acceptstorm" -port 5400 -duration 5s >/dev/null 2>&1 || true; sleep 5; done ) &
PIDS+=($!)
( while ((SECONDS < END)); do "$WORK/sc-loop" -n 20000 >/dev/null 2>&1 || true; sleep 1; done ) &
PIDS+=($!)
( while ((SECONDS < END)); do bash -c 'echo x >/dev/udp/127.0.0.1/5999' 2>/dev/null || true; sleep 0.05; done ) &
PIDS+=($!)

maps() { # "name:entries,..." of the agent's maps with a fixed capacity
	local ids
	ids=$(grep -h '^map_id:' /proc/"$AGENT"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u)
	for id in $ids; do
		local info
		info=$(bpftool -j map show id "$id" 2>/dev/null) || continue
		case $(jq -r .type <<<"$info") in
		hash | percpu_hash | lru_hash | lru_percpu_hash)
			printf '%s:%s/%s,' "$(jq -r .name <<<"$info")" "$(bpftool -j map dump id "$id" 2>/dev/null | jq length)" "$(jq -r .max_entries <<<"$info")" ;;
		esac
	done
}
SAMPLES=$OUT/soak-samples.tsv
printf 'seconds\trss_kib\tgoroutines\theap_bytes\tfds\tmaps\n' >"$SAMPLES"
START=$SECONDS
while ((SECONDS < END)); do
	kill -0 "$AGENT" 2>/dev/null || { log "agent died"; cat "$OUT/soak-agent.log" >&2; exit 1; }
	h=$(curl -s "http://$SOAK_HEALTH/healthz")
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' $((SECONDS - START)) \
		"$(awk '/^VmRSS/{print $2}' /proc/"$AGENT"/status)" \
		"$(jq .goroutines <<<"$h")" "$(jq .heap_bytes <<<"$h")" \
		"$(ls /proc/"$AGENT"/fd | wc -l)" "$(maps)" >>"$SAMPLES"
	sleep "$SAMPLE"
done
wait_status=0
kill -INT "$AGENT"
wait "$AGENT" || wait_status=$?
PIDS=("${PIDS[@]/$AGENT/}")
capinfos -c "$WORK"/rx.pcapng* >"$WORK/capinfos.txt" 2>&1 || { cat "$WORK/capinfos.txt" >&2; wait_status=99; }

# Flatness: mean of the last quarter against the mean of the second quarter.
jq -R -s --argjson exit "$wait_status" --argjson duration "$DURATION" '
	split("\n") | .[1:] | map(select(length > 0) | split("\t")) as $rows
	| ($rows | length) as $n
	| def col(i): $rows | map(.[i] | tonumber);
	  def mean(a): (a | add) / (a | length);
	  def ratio(i): mean(col(i)[($n*3/4|floor):]) / mean(col(i)[($n/4|floor):($n/2|floor)]);
	{duration_s: $duration, samples: $n, exit: $exit,
	 rss_kib: {first: col(1)[0], max: (col(1)|max), last: col(1)[-1], late_vs_early: ratio(1)},
	 goroutines: {first: col(2)[0], max: (col(2)|max), last: col(2)[-1], late_vs_early: ratio(2)},
	 heap_bytes: {max: (col(3)|max), late_vs_early: ratio(3)},
	 fds: {first: col(4)[0], max: (col(4)|max), last: col(4)[-1]},
	 maps_last: $rows[-1][5]}
	| .flat = (.rss_kib.late_vs_early < 1.10 and .rss_kib.late_vs_early > 0.90
	           and .goroutines.late_vs_early < 1.10 and .goroutines.late_vs_early > 0.90)
' "$SAMPLES" >"$OUT/soak-summary.json"
grep -c 'panic' "$OUT/soak-agent.log" >/dev/null && { log "panic in the agent log"; exit 1; }
cat "$OUT/soak-summary.json"
log "agent exit $wait_status; captures: $(grep -c 'Number of packets' "$WORK/capinfos.txt") files"
