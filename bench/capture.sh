#!/usr/bin/env bash
# Cost of capturing to pcapng: a loopback flood of 64-byte UDP datagrams
# (bench/udpflood, one sendto per datagram) with no capture, with
# `sockeye capture --udp -i lo -w FILE udp port P` (the default auto
# transport, and the perf-only and ring-only variants) and with
# `tcpdump -i lo -w FILE udp port P`, in
# interleaved runs whose order rotates every round. Needs root.
#
#   bench/capture.sh [-r ROUNDS] [-d SECONDS] [-c "CASES"]
#
# Environment (flags win): ROUNDS=5 DURATION=10 CASES="baseline sockeye tcpdump"
#   SEND_CPU=0 RECV_CPU=1 PORT=5391 OUT=bench/out SNAPLEN=262144 BPF_STATS=1
#   SOCKEYE=path: run that binary instead of building bin/sockeye.
# CASES may also name sockeye-perf (--transport perf), sockeye-ring
# (--transport ring) and sockeye-headers (-s 64). For each run: the flood's received and sent rates over the
# baseline of the same round, packets in the file over packets sent, and
# (BPF_STATS=1) the run time of sockeye's programs per packet, which the
# load of a shared machine disturbs less than rates, as does the sender's CPU
# time per datagram (CPU-normalised ratio: baseline ns/pkt over the case's;
# the capturer's own reader runs elsewhere and shows in the rate). Results:
# $OUT/capture-runs.jsonl, $OUT/capture-summary.json.
set -euo pipefail

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CASES=${CASES:-"baseline sockeye tcpdump"}
SEND_CPU=${SEND_CPU:-0} RECV_CPU=${RECV_CPU:-1} PORT=${PORT:-5391} SNAPLEN=${SNAPLEN:-262144}
BPF_STATS=${BPF_STATS:-1}
while getopts "r:d:c:h" o; do
	case $o in
	r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;; c) CASES=$OPTARG ;;
	*) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "capture.sh: needs root (BPF, packet sockets)" >&2; exit 1; }
mkdir -p "$OUT"
RUNS=$OUT/capture-runs.jsonl
: >"$RUNS"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

need() { # need COMMAND [PACKAGE]
	command -v "$1" >/dev/null && return
	log "installing ${2:-$1}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null ||
		{ apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${2:-$1}" >/dev/null; }
}
need jq; need tcpdump; need capinfos wireshark-common; need bpftool

if [[ -z ${SOCKEYE:-} ]]; then
	log "building bin/sockeye"
	go build -o bin/sockeye ./agent/cmd/sockeye
	SOCKEYE=bin/sockeye
fi
go build -o "$OUT/udpflood" ./bench/udpflood

stats_was=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS"
CAP=
cleanup() {
	[[ -n $CAP ]] && kill -INT "$CAP" 2>/dev/null && wait "$CAP" 2>/dev/null
	rm -f "$OUT"/capture-*.pcapng
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
}
trap cleanup EXIT

# progs prints the loaded tracing programs as {id: {name, ns, cnt}}.
progs() {
	bpftool prog show -j | jq -c 'map(select(.type | test("tracing|tracepoint|kprobe|raw_tracepoint")))
		| map({key: (.id | tostring), value: {name, ns: (.run_time_ns // 0), cnt: (.run_cnt // 0)}}) | from_entries'
}

flood() {
	"$OUT/udpflood" -d "${DURATION}s" -size 64 -batch 1 -port "$PORT" -send-cpu "$SEND_CPU" -recv-cpu "$RECV_CPU" |
		jq -c '{recv_pps, sent_pps, sent, received, cpu_ns_per_pkt: .send_ns_per_pkt_p10}'
}

# wait_for FILE PATTERN PID: until FILE holds PATTERN, or fail after 60 s.
wait_for() {
	for _ in $(seq 600); do
		grep -q "$2" "$1" 2>/dev/null && return
		kill -0 "$3" 2>/dev/null || { log "capture exited early:"; cat "$1" >&2; return 1; }
		sleep 0.1
	done
	log "timed out waiting for '$2' in $1"; return 1
}

# field N "text" LOG: the number before "text" in a tcpdump-style summary.
count() { awk -v t="$1" 'index($0, t) { print $1; exit }' "$2"; }

run_case() { # run_case ROUND POSITION CASE
	local round=$1 pos=$2 case=$3 base="$OUT/capture-$3-r$1"
	local file="$OUT/capture-$case.pcapng"
	rm -f "$file"
	CAP=
	local before; before=$(progs)
	case $case in
	baseline) ;;
	sockeye*)
		local extra=()
		[[ $case == sockeye-perf ]] && extra=(--transport perf)
		[[ $case == sockeye-ring ]] && extra=(--transport ring)
		[[ $case == sockeye-headers ]] && extra=(-s 64)
		"$SOCKEYE" capture --udp -i lo -s "$SNAPLEN" "${extra[@]}" -w "$file" udp port "$PORT" 2>"$base.log" &
		CAP=$!
		wait_for "$base.log" "listening on" "$CAP" ;;
	tcpdump)
		tcpdump -i lo -s "$SNAPLEN" -w "$file" udp port "$PORT" 2>"$base.log" &
		CAP=$!
		wait_for "$base.log" "listening on" "$CAP"
		sleep 0.5 ;; # the line comes just before the socket is bound
	*) log "unknown case $case"; exit 2 ;;
	esac
	local start; start=$(progs)
	local res; res=$(flood)
	# Programs this case loaded: absent before it, present at the start of the flood.
	local mine; mine=$(jq -n -c --argjson a "$start" --argjson b "$(progs)" --argjson old "$before" '
		[$b | to_entries[] | select($old[.key] == null and $a[.key] != null) | .key as $k
		 | {name: .value.name, runs: (.value.cnt - $a[$k].cnt),
		    ns_per_run: ((.value.ns - $a[$k].ns) / ([.value.cnt - $a[$k].cnt, 1] | max))}]')
	local written=null captured=null dropped=null cpu=null
	if [[ -n $CAP ]]; then
		local ticks; ticks=$(awk '{print $14 + $15}' "/proc/$CAP/stat")
		kill -INT "$CAP"
		wait "$CAP" || { log "$case exited $? after SIGINT"; tail -5 "$base.log" >&2; exit 1; }
		CAP=
		cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" 'BEGIN { printf "%.3f", t / hz / d }')
		captured=$(count "packets captured" "$base.log")
		dropped=$(count "packets dropped by kernel" "$base.log")
		written=$(capinfos -c -M "$file" | awk '/Number of packets/ { print $NF }')
	fi
	jq -c --arg case "$case" --argjson round "$round" --argjson pos "$pos" --argjson written "$written" \
		--argjson captured "${captured:-null}" --argjson dropped "${dropped:-null}" --argjson cpu "$cpu" \
		--argjson progs "$mine" \
		--arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		'{round: $round, pos: $pos, case: $case} + . + {written: $written, captured: $captured,
		  kernel_dropped: $dropped, capture_cpu: $cpu, progs: $progs, loadavg: ($load | tonumber)}' <<<"$res" |
		tee -a "$RUNS" | jq -r '"round \(.round) \(.case): \(.recv_pps | floor) pkt/s received, \(.sent) sent, sender \(.cpu_ns_per_pkt | floor) CPU ns/pkt"
			+ (if .written then ", \(.written) in the file, \(.kernel_dropped) dropped by kernel, capture CPU \(.capture_cpu)" else "" end)
			+ ([.progs[] | select(.runs > 1000) | ", \(.name) \(.ns_per_run | floor) ns/run"] | join(""))
			+ ", load \(.loadavg)"' >&2
	rm -f "$file"
}

read -r -a cases <<<"$CASES"
log "flood: 64-byte UDP over lo, ${DURATION}s, sender on CPU $SEND_CPU, receiver on CPU $RECV_CPU; $ROUNDS rounds of: ${cases[*]}"
flood >/dev/null # warm-up, not recorded
for ((r = 0; r < ROUNDS; r++)); do
	n=${#cases[@]}
	for ((i = 0; i < n; i++)); do
		run_case "$r" "$i" "${cases[(i + r) % n]}"
	done
done

jq -s --argjson dur "$DURATION" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	. as $runs | ($runs | map(select(.case == "baseline"))) as $base
	| {duration_s: $dur, rounds: ($runs | map(.round) | max + 1),
	   cases: ($runs | group_by(.case) | map(.[0].case as $c | {key: $c, value: {
		median_recv_pps: (map(.recv_pps) | median),
		median_ratio: ([.[] | .round as $r | .recv_pps / ($base[] | select(.round == $r) | .recv_pps)] | median),
		ratios: [.[] | .round as $r | .recv_pps / ($base[] | select(.round == $r) | .recv_pps) | . * 1000 | round / 1000],
		median_sent_ratio: ([.[] | .round as $r | .sent_pps / ($base[] | select(.round == $r) | .sent_pps)] | median),
		median_cpu_ns_per_pkt: (map(.cpu_ns_per_pkt) | median | floor),
		median_cpu_ratio: ([.[] | .round as $r | ($base[] | select(.round == $r) | .cpu_ns_per_pkt) / .cpu_ns_per_pkt] | median),
		progs: ([.[].progs // [] | .[] | select(.runs > 1000)] | group_by(.name) | map({key: .[0].name,
			value: {median_ns_per_run: (map(.ns_per_run) | median), runs_per_flood: (map(.runs) | median)}}) | from_entries),
		written_over_sent: (if .[0].written == null then null else ([.[] | .written / .sent] | median) end),
		min_written_over_sent: (if .[0].written == null then null else ([.[] | .written / .sent] | min) end),
		kernel_dropped: (if .[0].written == null then null else (map(.kernel_dropped) | add) end),
		median_capture_cpu: (if .[0].written == null then null else (map(.capture_cpu) | median) end),
		median_loadavg: (map(.loadavg) | median)
	   }}) | from_entries)}' "$RUNS" >"$OUT/capture-summary.json"

jq -r '"\nmedians over \(.rounds) rounds (\(.duration_s) s floods):",
	(.cases | to_entries[] | "  \(.key | .+ "                " | .[:16]) \(.value.median_recv_pps | floor) pkt/s  ratio \(.value.median_ratio * 1000 | round / 1000) \(.value.ratios)  sent ratio \(.value.median_sent_ratio * 1000 | round / 1000)  CPU-normalised \(.value.median_cpu_ratio * 1000 | round / 1000) (\(.value.median_cpu_ns_per_pkt) ns/pkt)"
	+ (if .value.written_over_sent then "  written/sent \(.value.written_over_sent * 10000 | round / 10000) (min \(.value.min_written_over_sent * 10000 | round / 10000)), kernel drops \(.value.kernel_dropped), capture CPU \(.value.median_capture_cpu)" else "" end)
	+ "  load \(.value.median_loadavg)"
	+ ([.value.progs | to_entries[] | "\n      \(.key): \(.value.median_ns_per_run | round) ns/run, \(.value.runs_per_flood) runs/flood"] | join("")))' "$OUT/capture-summary.json"
echo "runs: $RUNS  summary: $OUT/capture-summary.json"
