#!/usr/bin/env bash
# The socket-calls benchmark (docs/benchmarks.md, "Socket calls"): a tight
# loop of sendto+recvfrom over loopback (bench/socketcalls/loop), untraced,
# traced by sockeye exporting spans over OTLP/gRPC to a counting receiver
# (bench/socketcalls/sink), and traced by the equivalent bpftrace script.
#
#   bench/socketcalls.sh [ITERATIONS] [ROUNDS]
#
# Prints, per round: the loop's CPU time per iteration in each mode, the
# spans the receiver got against those the calls make (and the agent's
# own total), and sockeye's CPU time per span. Needs root.
#
# Environment: RATE_LIMIT=N runs the agent with rate_limit: N (root calls
# per second) instead of none, NO_BPFTRACE=1 leaves out the bpftrace runs,
# SOCKEYE=PATH runs that agent binary instead of one built from the tree
# (to compare builds alternately), PIN=1 puts the agent alone on CPU 1 and
# the loop and the receiver on CPU 0 (taskset), and prints the spans per
# second of wall time the agent delivered from its one core; LOOP_RATE=N
# paces the traced loop to N iterations per second (5 spans each), leaving
# the rest of its CPU to the receiver, RAW_SINK=1 has the receiver count
# spans in the wire format instead of decoding them (a fraction of the CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-200000}
ROUNDS=${2:-3}
tools/install-deps.sh bench >/dev/null
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
if [ -n "${SOCKEYE:-}" ]; then
	cp "$SOCKEYE" "$OUT/sockeye"
else
	go build -o "$OUT/sockeye" ./agent/cmd/sockeye
fi
go build -o "$OUT/loop" ./bench/socketcalls/loop
go build -o "$OUT/sink" ./bench/socketcalls/sink
sed "s/rate_limit: 0/rate_limit: ${RATE_LIMIT:-0}/" bench/socketcalls.yaml >"$OUT/config.yaml"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
AGENT_CPU=() OTHERS_CPU=()
if [ -n "${PIN:-}" ]; then
	AGENT_CPU=(taskset -c 1) OTHERS_CPU=(taskset -c 0)
fi
hz=$(getconf CLK_TCK)

for round in $(seq "$ROUNDS"); do
	echo "== round $round, $N iterations"
	echo "untraced: $("${OTHERS_CPU[@]}" "$OUT/loop" -n "$N")"

	"${OTHERS_CPU[@]}" "$OUT/sink" -listen 127.0.0.1:4319 ${RAW_SINK:+-raw} >"$OUT/sink.out" &
	sink=$!
	OTEL_BSP_SCHEDULE_DELAY=100 "${AGENT_CPU[@]}" "$OUT/sockeye" run --config "$OUT/config.yaml" 2>"$OUT/agent.log" &
	agent=$!
	until grep -q "pipeline started" "$OUT/agent.log"; do sleep 0.2; done
	t0=$(cpu_ticks $agent)
	traced=$("${OTHERS_CPU[@]}" "$OUT/loop" -n "$N" -rate "${LOOP_RATE:-0}")
	echo "sockeye:  $traced"
	sleep 2 # let the last batches go out
	t1=$(cpu_ticks $agent)
	kill -INT $agent; wait $agent || true
	kill -INT $sink; wait $sink || true
	spans=$(sed -n 's/^spans=\([0-9]*\).*/\1/p' "$OUT/sink.out")
	echo "sockeye:  receiver: $(cat "$OUT/sink.out")"
	awk -v s="$spans" -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { if (t > 0) printf "sockeye:  agent CPU %.2f s, %.0f spans per agent CPU-second\n", t / hz, s / (t / hz) }'
	secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$traced")
	awk -v s="$spans" -v w="$secs" -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { if (w > 0) printf "sockeye:  %.0f spans per second of the loop'"'"'s wall time (%.2f s), agent busy %.0f%% of that time\n", s / w, w, 100 * t / hz / w }'
	grep -E "dropped|full|lost" "$OUT/agent.log" || echo "sockeye:  no loss logged"
	sed -n 's/.*msg="traces pipeline stopped".* spans=\([0-9]*\) queue_drops=\([0-9]*\).*/sockeye:  agent: \1 spans exported, \2 dropped at its queue/p' "$OUT/agent.log"

	[ -n "${NO_BPFTRACE:-}" ] && continue
	bpftrace bench/socketcalls.bt >/dev/null 2>"$OUT/bt.err" &
	bt=$!
	sleep 5 # bpftrace compiles and attaches
	echo "bpftrace: $("${OTHERS_CPU[@]}" "$OUT/loop" -n "$N")"
	kill -INT $bt; wait $bt || true
done
