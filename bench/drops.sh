#!/usr/bin/env bash
# Overhead of the drops (dropwatch) pipeline on a loopback flood of 64-byte
# UDP datagrams to a closed port, every one of them a drop: the send rate
# with no agent, with sockeye (bench/drops.yaml) and with bench/drops.bt
# under bpftrace, in interleaved runs whose order rotates every round.
# Needs root.
#
#   bench/drops.sh [-r ROUNDS] [-d SECONDS] [-c "CASES"]
#
# Environment (flags win): ROUNDS=5 DURATION=10 CASES="baseline sockeye bpftrace"
#   SEND_CPU=0 PORT=9 BPF_STATS=1 OUT=bench/out
#   SOCKEYE=path: run that agent binary instead of building one.
# Results: $OUT/drops-runs.jsonl, $OUT/drops-summary.json.
set -euo pipefail

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} CASES=${CASES:-"baseline sockeye bpftrace"}
SEND_CPU=${SEND_CPU:-0} PORT=${PORT:-9} BPF_STATS=${BPF_STATS:-1}
while getopts "r:d:c:h" o; do
	case $o in
	r) ROUNDS=$OPTARG ;; d) DURATION=$OPTARG ;; c) CASES=$OPTARG ;;
	*) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "drops.sh: needs root (BPF, tracefs, sysctl)" >&2; exit 1; }
mkdir -p "$OUT"
RUNS=$OUT/drops-runs.jsonl
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
# bpftrace's classic tracepoint needs tracefs.
[[ -d /sys/kernel/tracing/events ]] || mount -t tracefs nodev /sys/kernel/tracing

if [[ -z ${SOCKEYE:-} ]]; then
	log "building sockeye"
	go build -o "$OUT/sockeye-drops" ./agent/cmd/sockeye
	SOCKEYE=$OUT/sockeye-drops
fi
go build -o "$OUT/dropflood" bench/drops.go

stats_was=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS"
AGENT=
cleanup() {
	[[ -n $AGENT ]] && kill -INT "$AGENT" 2>/dev/null && sleep 2
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
}
trap cleanup EXIT

# progs prints the loaded tracing programs as {id: {name, ns, cnt}}.
progs() {
	timeout 30 bpftool prog show -j | jq -c 'map(select(.type | test("tracing|tracepoint|kprobe|raw_tracepoint")))
		| map({key: (.id | tostring), value: {name, ns: (.run_time_ns // 0), cnt: (.run_cnt // 0)}}) | from_entries'
}

# held PID prints, as a JSON list, the ids of the BPF programs PID holds.
held() {
	timeout 10 grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | jq -s -c 'map(tostring)'
}

# wait_for FILE PATTERN PID: until FILE holds PATTERN, or fail after 60 s.
wait_for() {
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return
		kill -0 "$3" 2>/dev/null || { log "$3 exited early:"; cat "$1" >&2; return 1; }
		sleep 0.1
	done
	log "timed out waiting for '$2' in $1"; return 1
}

# counted FILE CASE: drops the tool reported at __udp4_lib_rcv, all intervals.
counted() {
	case $2 in
	sockeye*) awk '/ packets dropped at __udp4_lib_rcv$/ {n += $1} END {print n + 0}' "$1" ;;
	bpftrace) awk -F': ' '/^@\[__udp4_lib_rcv\]/ {n += $2} END {print n + 0}' "$1" ;;
	*) echo 0 ;;
	esac
}

# spawn NAME OUT ERR CMD...: runs CMD detached from this shell (reparented to
# init, so never a child of it), stdout to OUT and stderr to ERR; sets
# SPAWNED to its pid. NAME.rc appears with its exit status when it ends.
# A long-lived background child made bash 5.2 hang now and then while
# waiting for an unrelated pipeline, which stalled whole runs.
spawn() {
	local name=$1 out=$2 err=$3
	shift 3
	rm -f "$name.pid" "$name.rc"
	setsid -f sh -c 'n=$1 o=$2 e=$3; shift 3; "$@" >"$o" 2>"$e" & echo $! >"$n.pid.tmp"
		mv "$n.pid.tmp" "$n.pid"; wait $!; echo $? >"$n.rc.tmp"; mv "$n.rc.tmp" "$n.rc"' sh "$name" "$out" "$err" "$@" </dev/null
	local i
	for ((i = 0; i < 100; i++)); do [[ -s $name.pid ]] && break; sleep 0.05; done
	read -r SPAWNED <"$name.pid"
}

# reap NAME SECONDS: waits up to SECONDS for a spawned command; sets REAPED
# to its exit status, or to 255 if it is still running.
reap() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do [[ -s $1.rc ]] && break; sleep 0.1; done
	REAPED=255
	[[ -s $1.rc ]] && read -r REAPED <"$1.rc"
	rm -f "$1.pid" "$1.rc"
}

run_case() { # run_case ROUND POSITION CASE
	local round=$1 pos=$2 case=$3 base="$OUT/drops-$3-r$1"
	AGENT=
	local start mine="[]" rss=0 rc=0
	case $case in
	baseline) ;;
	sockeye)
		spawn "$base.agent" "$base.out" "$base.log" "$SOCKEYE" run --config bench/drops.yaml
		AGENT=$SPAWNED
		wait_for "$base.log" "pipeline started" "$AGENT" ;;
	bpftrace)
		spawn "$base.agent" "$base.out" "$base.log" bpftrace bench/drops.bt
		AGENT=$SPAWNED
		# BEGIN runs once every probe is attached.
		wait_for "$base.out" "Monitoring for dropped packets" "$AGENT" ;;
	*) log "unknown case $case"; exit 2 ;;
	esac
	echo '[]' >"$base.ids"
	[[ -n $AGENT ]] && held "$AGENT" >"$base.ids"
	progs >"$base.start"
	spawn "$base.fl" "$base.flood" /dev/null "$OUT/dropflood" -d "${DURATION}s" -size 64 -port "$PORT" -cpu "$SEND_CPU"
	echo 0 >"$base.rss"
	while [[ ! -s $base.fl.rc ]]; do
		if [[ -n $AGENT ]]; then
			read -r rss <"$base.rss"
			awk -v m="$rss" '/^VmRSS/ {print ($2 > m ? $2 : m)}' "/proc/$AGENT/status" >"$base.rss.new" && mv "$base.rss.new" "$base.rss"
		fi
		sleep 0.2
	done
	reap "$base.fl" 1
	((REAPED == 0)) || { log "flood failed ($REAPED)"; exit 1; }
	progs >"$base.after"
	if [[ -n $AGENT ]]; then
		kill -INT "$AGENT"
		reap "$base.agent" 30
		rc=$REAPED
		# A tool that does not exit on SIGINT must not stall the rounds.
		((rc == 255)) && { log "$case ignored SIGINT; killing it"; kill -KILL "$AGENT"; }
		AGENT=
		if ((rc != 0)); then log "$case exited $rc after SIGINT"; tail -5 "$base.log" >&2; exit 1; fi
	fi
	# This case's programs are the ones its process held; any other
	# tracing program that ran during the flood is someone else's and makes
	# the run unclean (it may sit on the sender's path).
	local ids after
	ids=$(<"$base.ids") start=$(<"$base.start") after=$(<"$base.after") rss=$(<"$base.rss")
	rm -f "$base.ids" "$base.start" "$base.after" "$base.rss"
	mine=$(jq -n -c --argjson a "$start" --argjson b "$after" --argjson ids "$ids" '
		[$b | to_entries[] | select(.key as $k | $ids | index($k)) | .key as $k
		 | {id: ($k | tonumber), name: .value.name, runs: (.value.cnt - ($a[$k].cnt // 0)),
		    ns_per_run: ((.value.ns - ($a[$k].ns // 0)) / ([.value.cnt - ($a[$k].cnt // 0), 1] | max))}]')
	local foreign; foreign=$(jq -n -c --argjson a "$start" --argjson b "$after" --argjson ids "$ids" '
		[$b | to_entries[] | select(.key as $k | ($ids | index($k)) | not)
		 | select(.value.cnt > ($a[.key].cnt // 0)) | {name: .value.name, runs: (.value.cnt - ($a[.key].cnt // 0))}]')
	jq -c --arg case "$case" --argjson round "$round" --argjson pos "$pos" --argjson rss "$rss" \
		--argjson progs "$mine" --argjson foreign "$foreign" --argjson counted "$(counted "$base.out" "$case")" \
		--arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		'{round: $round, pos: $pos, case: $case} + . + {rss_max_kib: $rss, counted: $counted,
		  loadavg: ($load | tonumber), foreign: $foreign, progs: $progs}' \
		"$base.flood" | tee -a "$RUNS" | jq -r '"round \(.round) \(.case): \(.sent_pps | floor) drops/s sent, \(.cpu_ns_per_pkt_p10 | floor) CPU ns/pkt (p10)"
		+ (if .case != "baseline" then ", \(.counted) of \(.sent) counted at __udp4_lib_rcv" else "" end)
		+ (if .rss_max_kib > 0 then ", RSS max \(.rss_max_kib) KiB" else "" end)
		+ ", load \(.loadavg)"
		+ (if (.foreign | length) > 0 then ", other tracing programs ran: \([.foreign[] | "\(.name) x\(.runs)"] | join(" "))" else "" end)' >&2
}

# ---- rounds ----------------------------------------------------------------
read -r -a cases <<<"$CASES"
log "flood: 64-byte UDP to 127.0.0.1:$PORT (closed), ${DURATION}s, sender on CPU $SEND_CPU; $ROUNDS rounds of: ${cases[*]}"
"$OUT/dropflood" -d 2s -port "$PORT" -cpu "$SEND_CPU" >/dev/null # warm-up, not recorded
for ((r = 0; r < ROUNDS; r++)); do
	n=${#cases[@]}
	for ((i = 0; i < n; i++)); do
		run_case "$r" "$i" "${cases[(i + r) % n]}"
	done
done

# ---- summary ---------------------------------------------------------------
# Ratios are per round, case over that round's baseline; "clean" rounds are
# those in which no other tracing program ran during any of the floods.
jq -s --argjson dur "$DURATION" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def stats($runs; $base): {
		rounds: ($runs | length),
		median_pps: ($runs | map(.sent_pps) | median),
		median_cpu_ns_per_pkt_p10: ($runs | map(.cpu_ns_per_pkt_p10) | median),
		median_ratio: ([$runs[] | .round as $r | .sent_pps / ($base[] | select(.round == $r) | .sent_pps)] | median),
		median_cpu_ratio: ([$runs[] | .round as $r | ($base[] | select(.round == $r) | .cpu_ns_per_pkt_p10) / .cpu_ns_per_pkt_p10] | median)};
	. as $runs
	| ([$runs[] | select((.foreign | length) > 0) | .round] | unique) as $dirty
	| ($runs | map(select(.case == "baseline"))) as $base
	| {duration_s: $dur, rounds: ($runs | map(.round) | max + 1), unclean_rounds: $dirty,
	   cases: ($runs | group_by(.case) | map(.[0].case as $c | {key: $c, value: (stats(.; $base) + {
		runs_pps: map(.sent_pps | floor),
		runs_cpu_ns_per_pkt_p10: map(.cpu_ns_per_pkt_p10 | floor),
		clean: stats(map(select(.round as $r | $dirty | index($r) | not)); $base),
		counted_over_sent: (map(select(.case != "baseline") | .counted / .sent) | median),
		rss_max_kib: (map(.rss_max_kib) | max),
		median_loadavg: (map(.loadavg) | median),
		progs: ([.[].progs[]] | group_by(.name) | map({key: .[0].name, value: {
			median_ns_per_run: (map(.ns_per_run) | median), runs_per_flood: (map(.runs) | median)}}) | from_entries)
	   })}) | from_entries)}' "$RUNS" >"$OUT/drops-summary.json"

jq -r '"\nmedians over \(.rounds) rounds (\(.duration_s) s floods; unclean rounds: \(.unclean_rounds)):",
	(.cases | to_entries[] | "  \(.key | .+ "          " | .[:10]) \(.value.median_pps | floor) drops/s"
	+ "  ratio \(.value.median_ratio * 1000 | round / 1000)"
	+ "  CPU-normalised ratio \(.value.median_cpu_ratio * 1000 | round / 1000)"
	+ (if .value.clean.rounds > 0 then " (clean rounds: \(.value.clean.median_cpu_ratio * 1000 | round / 1000))" else "" end)
	+ (if .value.counted_over_sent then "  counted/sent \(.value.counted_over_sent * 1000 | round / 1000)" else "" end)
	+ (if .value.rss_max_kib > 0 then "  RSS max \(.value.rss_max_kib / 1024 * 10 | round / 10) MiB" else "" end),
	  (.value.progs | to_entries[] | "      \(.key): \(.value.median_ns_per_run | round) ns/run, \(.value.runs_per_flood) runs/flood"))' \
	"$OUT/drops-summary.json"
echo "runs: $RUNS  summary: $OUT/drops-summary.json"
