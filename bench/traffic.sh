#!/usr/bin/env bash
# Overhead of the traffic (nettop) pipeline on a loopback flood of 64-byte UDP
# datagrams: the packet rate the receiving socket gets (and the sender's CPU
# time per datagram) with no agent, with sockeye (bench/traffic.yaml) and with
# bench/nettop.bt under bpftrace, in interleaved runs whose order rotates
# every round. Needs root. See bench/README.md.
#
#   bench/traffic.sh [-r ROUNDS] [-d SECONDS] [-c "CASES"] [-f udpflood|iperf3]
#
# Environment (flags win): ROUNDS=5 DURATION=10 CASES="baseline sockeye bpftrace"
#   FLOOD=udpflood BATCH=1 SEND_CPU=0 RECV_CPU=1 BPF_STATS=1 OUT=bench/out
#   SOCKEYE=path: run that agent binary instead of building bin/sockeye.
# CASES may also name sockeye-current (attribution: current),
# sockeye-socket, and empty (bench/emptyhooks: programs that do nothing on the
# same two tracepoints, the floor of any counting there).
# Results: $OUT/traffic-runs.jsonl, $OUT/traffic-summary.json.
set -euo pipefail

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CASES=${CASES:-"baseline sockeye bpftrace"}
FLOOD=${FLOOD:-udpflood} BATCH=${BATCH:-1} SEND_CPU=${SEND_CPU:-0} RECV_CPU=${RECV_CPU:-1}
BPF_STATS=${BPF_STATS:-1} PORT=${PORT:-5301}
while getopts "r:d:c:f:h" o; do
	case $o in
	r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;; c) CASES=$OPTARG ;; f) FLOOD=$OPTARG ;;
	*) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "traffic.sh: needs root (BPF, tracefs, sysctl)" >&2; exit 1; }
mkdir -p "$OUT"
RUNS=$OUT/traffic-runs.jsonl
: >"$RUNS"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# ---- setup -----------------------------------------------------------------
updated=0
need() { # need COMMAND [PACKAGE]
	command -v "$1" >/dev/null && return
	log "installing ${2:-$1}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null; then
		((updated)) || { apt-get update -q >/dev/null; updated=1; }
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null
	fi
}
need jq; need bpftool
[[ " $CASES " == *" bpftrace "* ]] && need bpftrace
[[ $FLOOD == iperf3 ]] && { need iperf3; need taskset util-linux; }
# bpftrace's classic tracepoints need tracefs.
[[ -d /sys/kernel/tracing/events ]] || mount -t tracefs nodev /sys/kernel/tracing

if [[ -z ${SOCKEYE:-} ]]; then
	log "building bin/sockeye"
	go build -o bin/sockeye ./agent/cmd/sockeye
	SOCKEYE=bin/sockeye
fi
go build -o "$OUT/udpflood" ./bench/udpflood
go build -o "$OUT/emptyhooks" ./bench/emptyhooks

stats_was=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS"
AGENT=
cleanup() {
	[[ -n $AGENT ]] && kill -INT "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
}
trap cleanup EXIT

# ---- one flood -------------------------------------------------------------
# flood prints {recv_pps, sent_pps, cpu_ns_per_pkt}. The sender runs on
# SEND_CPU (it also runs the loopback receive softirq, so the counting hooks
# fire there), the receiver on RECV_CPU. cpu_ns_per_pkt (udpflood only) is the
# sender thread's CPU time per datagram, the 10th percentile over chunks of
# 2048: what a datagram costs when no other task is in the way.
flood() {
	if [[ $FLOOD == iperf3 ]]; then
		taskset -c "$RECV_CPU" iperf3 -s -1 -J -p "$PORT" >"$OUT/iperf3-server.json" &
		local srv=$!
		sleep 0.5
		taskset -c "$SEND_CPU" iperf3 -c 127.0.0.1 -p "$PORT" -u -b 0 -l 64 -t "$DURATION" -J >"$OUT/iperf3-client.json"
		wait "$srv"
		# The server's packet counts are sequence numbers: count bytes instead.
		jq -c --slurpfile c "$OUT/iperf3-client.json" '
			{recv_pps: ([.intervals[].sum.bytes] | add / 64 / $c[0].end.sum.seconds),
			 sent_pps: ($c[0].end.sum.packets / $c[0].end.sum.seconds), cpu_ns_per_pkt: null}' \
			"$OUT/iperf3-server.json"
	else
		"$OUT/udpflood" -d "${DURATION}s" -size 64 -batch "$BATCH" -port "$PORT" \
			-send-cpu "$SEND_CPU" -recv-cpu "$RECV_CPU" | jq -c '{recv_pps, sent_pps,
			cpu_ns_per_pkt: .send_ns_per_pkt_p10, send_ns_per_pkt_p50,
			send_ns_per_pkt: (1e9 * .send_cpu_seconds / .sent), recv_ns_per_pkt: (1e9 * .recv_cpu_seconds / .received)}'
	fi
}

# progs prints the loaded tracing programs as {id: {name, ns, cnt}}.
progs() {
	bpftool prog show -j | jq -c 'map(select(.type | test("tracing|tracepoint|kprobe")))
		| map({key: (.id | tostring), value: {name, ns: (.run_time_ns // 0), cnt: (.run_cnt // 0)}}) | from_entries'
}

# wait_for FILE PATTERN PID: until FILE holds PATTERN, or fail after 60 s.
wait_for() {
	for _ in $(seq 600); do
		grep -q "$2" "$1" 2>/dev/null && return
		kill -0 "$3" 2>/dev/null || { log "agent exited early:"; cat "$1" >&2; return 1; }
		sleep 0.1
	done
	log "timed out waiting for '$2' in $1"; return 1
}

run_case() { # run_case ROUND POSITION CASE
	local round=$1 pos=$2 case=$3 base="$OUT/$3-r$1" rss=0 hwm=0 rc=0 ours="[]" before after fl
	AGENT=
	case $case in
	baseline) ;;
	sockeye*)
		local attr=${case#sockeye}; attr=${attr#-}
		SOCKEYE_BENCH_ATTRIBUTION=${attr:-socket} "$SOCKEYE" run --config bench/traffic.yaml >"$base.out" 2>"$base.log" &
		AGENT=$!
		wait_for "$base.log" "pipeline started" "$AGENT" ;;
	empty)
		"$OUT/emptyhooks" >"$base.out" 2>"$base.log" &
		AGENT=$!
		wait_for "$base.out" "attached" "$AGENT" ;;
	bpftrace)
		bpftrace bench/nettop.bt >"$base.out" 2>"$base.log" &
		AGENT=$!
		wait_for "$base.out" "Attaching" "$AGENT"
		sleep 1 ;; # the line comes before the probes are attached
	*) log "unknown case $case"; exit 2 ;;
	esac
	before=$(progs)
	if [[ -n $AGENT ]]; then
		# The case's own programs: the BPF program fds the process holds.
		ours=$(awk '/^prog_id:/ {print $2}' /proc/"$AGENT"/fdinfo/* 2>/dev/null | sort -un | jq -sc .)
		flood >"$base.flood" &
		fl=$!
		while kill -0 "$fl" 2>/dev/null; do
			rss=$(awk -v m="$rss" '/^VmRSS/ {print ($2 > m ? $2 : m)}' "/proc/$AGENT/status" 2>/dev/null || echo "$rss")
			sleep 0.2
		done
		wait "$fl"
		kill -0 "$AGENT" 2>/dev/null || { log "$case died during the flood"; tail -5 "$base.log" >&2; exit 1; }
		hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT/status")
	else
		flood >"$base.flood"
	fi
	after=$(progs)
	if [[ -n $AGENT ]]; then
		kill -INT "$AGENT"
		wait "$AGENT" || rc=$?
		AGENT=
		if ((rc != 0)); then log "$case exited $rc after SIGINT"; tail -5 "$base.log" >&2; exit 1; fi
	fi
	# Per program: runs and ns/run during the flood; "others" are tracing
	# programs of other processes that ran meanwhile (they skew every case).
	jq -c --arg case "$case" --argjson round "$round" --argjson pos "$pos" --argjson rss "$rss" \
		--argjson hwm "$hwm" --argjson a "$before" --argjson b "$after" --argjson ours "$ours" \
		--arg load "$(cut -d' ' -f1 /proc/loadavg)" '
		[$b | to_entries[] | (.value.cnt - ($a[.key].cnt // 0)) as $runs
		 | {id: (.key | tonumber), name: .value.name, runs: $runs,
		    ns_per_run: ((.value.ns - ($a[.key].ns // 0)) / ([$runs, 1] | max))}] as $all
		| {round: $round, pos: $pos, case: $case} + . + {rss_max_kib: $rss, hwm_kib: $hwm, exit: 0,
		   loadavg: ($load | tonumber),
		   other_progs_ran: [$all[] | select((.id | IN($ours[])) | not) | select(.runs > 0) | .name],
		   progs: [$all[] | select(.id | IN($ours[]))]}
		| .stats_on = ((([.progs[].runs] | add) // 0) > 0)' \
		"$base.flood" | tee -a "$RUNS" | jq -r '"round \(.round) \(.case): \(.recv_pps | floor) pkt/s received, \(.sent_pps | floor) sent"
		+ (if .cpu_ns_per_pkt then ", \(.cpu_ns_per_pkt | floor) CPU ns/pkt" else "" end)
		+ (if .rss_max_kib > 0 then ", RSS max \(.rss_max_kib) KiB" else "" end)
		+ (if (.other_progs_ran | length) > 0 then ", other tracing programs ran: \(.other_progs_ran | join(","))" else "" end)
		+ (if .stats_on and '"$BPF_STATS"' == 0 then ", BPF stats were on (another process)" else "" end)' >&2
}

# ---- rounds ----------------------------------------------------------------
read -r -a cases <<<"$CASES"
log "flood: $FLOOD batch=$BATCH, ${DURATION}s, sender on CPU $SEND_CPU, receiver on CPU $RECV_CPU; $ROUNDS rounds of: ${cases[*]}"
flood >/dev/null # warm-up, not recorded
for ((r = 0; r < ROUNDS; r++)); do
	n=${#cases[@]}
	for ((i = 0; i < n; i++)); do
		run_case "$r" "$i" "${cases[(i + r) % n]}"
	done
done

# ---- summary ---------------------------------------------------------------
# Ratios are per round (a case over the baseline of the same round), then the
# median. Rounds in which another process's tracing programs ran (or, with
# BPF_STATS=0, another process had BPF stats on) are left out of the medians
# unless every round was.
jq -s --arg flood "$FLOOD" --argjson batch "$BATCH" --argjson dur "$DURATION" --argjson stats "$BPF_STATS" \
	--arg cpus "send $SEND_CPU, receive $RECV_CPU" --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
	--arg model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def r3: if . then . * 1000 | round / 1000 else null end;
	def quartiles: sort | if length == 0 then null else [.[(length - 1) / 4 | floor], .[(length - 1) * 3 / 4 | ceil]] | map(r3) end;
	. as $all | ([$all[] | select((.other_progs_ran | length > 0) or (.stats_on and $stats == 0)) | .round] | unique) as $dirty
	| ([$all[] | select(.round | IN($dirty[]) | not)] | if length > 0 then . else $all end) as $runs
	| ($runs | map(select(.case == "baseline"))) as $base
	| {flood: $flood, batch: $batch, duration_s: $dur, cpus: $cpus, bpf_stats: $stats,
	   machine: {nproc: $nproc, kernel: $kernel, cpu: $model},
	   rounds: ($all | map(.round) | unique | length), rounds_left_out: ($dirty | if length < ($all | map(.round) | unique | length) then . else [] end),
	   cases: ($runs | group_by(.case) | map({key: .[0].case, value: ({
		median_recv_pps: (map(.recv_pps) | median | floor),
		median_cpu_ns_per_pkt: (map(.cpu_ns_per_pkt) | if .[0] == null then null else median | floor end),
		ratios: [.[] | .round as $r | .recv_pps / ($base[] | select(.round == $r) | .recv_pps)],
		cpu_ratios: [.[] | select(.cpu_ns_per_pkt) | .round as $r
			| ($base[] | select(.round == $r) | .cpu_ns_per_pkt) / .cpu_ns_per_pkt],
		rss_max_kib: (map(.rss_max_kib) | max), hwm_max_kib: (map(.hwm_kib) | max),
		progs: ([.[].progs[]] | group_by(.name) | map({key: .[0].name, value: {
			median_ns_per_run: (map(.ns_per_run) | median | round), median_runs: (map(.runs) | median)}}) | from_entries)
	   }
	   | .median_ratio = (.ratios | median | r3) | .ratio_quartiles = (.ratios | quartiles)
	   | .median_cpu_ratio = (.cpu_ratios | median | r3) | .cpu_ratio_quartiles = (.cpu_ratios | quartiles)
	   | del(.ratios, .cpu_ratios))}) | from_entries)}' "$RUNS" >"$OUT/traffic-summary.json"

# [a, b]: the quartiles of the per-round ratios.
jq -r '"\nmedians over \(.rounds - (.rounds_left_out | length)) of \(.rounds) rounds (\(.flood), \(.duration_s) s floods)"
	+ (if (.rounds_left_out | length) > 0 then "; left out (other tracing programs ran, or BPF stats were on): rounds \(.rounds_left_out | join(","))" else "" end),
	(.cases | to_entries[] | "  \(.key | .+ "          " | .[:16]) \(.value.median_recv_pps) pkt/s"
	+ (if .value.median_ratio then "  ratio \(.value.median_ratio) \(.value.ratio_quartiles)" else "" end)
	+ (if .value.median_cpu_ratio then "  CPU-normalised \(.value.median_cpu_ratio) \(.value.cpu_ratio_quartiles)" else "" end)
	+ (if .value.rss_max_kib > 0 then "  RSS max \(.value.rss_max_kib / 1024 * 10 | round / 10) MiB (VmHWM \(.value.hwm_max_kib / 1024 * 10 | round / 10) MiB)" else "" end),
	  (.value.progs | to_entries[] | "      \(.key): \(.value.median_ns_per_run) ns/run, \(.value.median_runs) runs/flood"))' \
	"$OUT/traffic-summary.json"
echo "runs: $RUNS  summary: $OUT/traffic-summary.json"
