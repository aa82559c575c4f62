#!/usr/bin/env bash
# bench-sink.sh: pigeond (kernel backend, durable spool) against Postfix's
# smtp-sink (stores nothing), both driven by smtp-source over loopback with
# the same messages, in the same run, on different free ports.
#
#   perf/bench-sink.sh [-m MESSAGES] [-n ROUNDS] [-l BYTES] [-s SESSIONS] [-r RCPTS]
#                      [-w WORKERS] [-S SHARDS] [-b BUILD_DIR] [-k]
#
# Defaults: 3 rounds of 20000 messages of 4096 bytes, 1 recipient, 50 parallel
# sessions, each session reusing its connection (smtp-source -d), pigeond with
# 1 worker and 4 spool shards.  Rounds alternate between the two servers.
# -k keeps the temp directory (spool, logs).  Prints, per round and as
# medians, messages/s and CPU seconds per 1000 messages of each server
# process (all its threads), and the ratio pigeond / smtp-sink.
# Needs /usr/sbin/smtp-source and /usr/sbin/smtp-sink (Debian package postfix).
set -euo pipefail

MESSAGES=20000
ROUNDS=3
SIZE=4096
SESSIONS=50
RCPTS=1
WORKERS=1
SHARDS=4
KEEP=0
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${PIGEON_BUILD:-$HERE/../build}
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
TIMEOUT=600 # per smtp-source run, seconds

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "m:n:l:s:r:w:S:b:kh" opt; do
	case $opt in
	m) MESSAGES=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	l) SIZE=$OPTARG ;;
	s) SESSIONS=$OPTARG ;;
	r) RCPTS=$OPTARG ;;
	w) WORKERS=$OPTARG ;;
	S) SHARDS=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	k) KEEP=1 ;;
	h) usage 0 ;;
	*) usage 2 >&2 ;;
	esac
done

for bin in "$SMTP_SOURCE" "$SMTP_SINK" "$BUILD/pigeond"; do
	[ -x "$bin" ] || { echo "bench-sink: $bin not found (apt-get install postfix; build pigeond)" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pigeonair-bench.XXXXXX")
SINK_PID=
PIGEOND_PID=
cleanup() {
	local pid
	for pid in $PIGEOND_PID $SINK_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	if [ "$KEEP" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listening() { # port timeout-seconds
	local i
	for i in $(seq $(($2 * 10))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# CPU seconds a process (all its threads) has used so far.
cpu_secs() { # pid
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

# One smtp-source run: prints "seconds msgs/s server-cpu-seconds-per-1000-messages".
drive() { # port label server-pid
	local t0 t1 c0 c1 rc
	c0=$(cpu_secs "$3")
	t0=$(date +%s.%N)
	rc=0
	timeout "$TIMEOUT" "$SMTP_SOURCE" -d -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -r "$RCPTS" \
		-M bench.example.org -f sender@example.org -t rcpt@example.com \
		"127.0.0.1:$1" >"$TMP/$2.source.out" 2>&1 || rc=$?
	t1=$(date +%s.%N)
	c1=$(cpu_secs "$3")
	if [ "$rc" != 0 ]; then
		echo "bench-sink: smtp-source against $2 failed (exit $rc):" >&2
		tail -5 "$TMP/$2.source.out" >&2
		exit 1
	fi
	echo "$t0 $t1 $c0 $c1" | awk -v n="$MESSAGES" \
		'{ printf "%.3f %.0f %.3f\n", $2 - $1, n / ($2 - $1), ($4 - $3) * 1000 / n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ---- smtp-sink
SINK_PORT=$(free_port)
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
"$SMTP_SINK" "${sink_user[@]}" -m 1024 "127.0.0.1:$SINK_PORT" 1024 >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
wait_listening "$SINK_PORT" 10 || { echo "bench-sink: smtp-sink did not start" >&2; cat "$TMP/sink.log" >&2; exit 1; }

# ---- pigeond: the domain of the generated recipients must be served; smtp-source
# with -r N prepends a number to the local part, the domain stays.
PIGEON_PORT=$(free_port)
mkdir -p "$TMP/spool"
cat >"$TMP/pigeond.ini" <<EOF
backend=kernel
listen=127.0.0.1:$PIGEON_PORT
hostname=bench.pigeonair.test
workers=$WORKERS
domains=example.com
[spool]
dir=$TMP/spool
shards=$SHARDS
EOF
"$BUILD/pigeond" -c "$TMP/pigeond.ini" 2>"$TMP/pigeond.log" &
PIGEOND_PID=$!
for _ in $(seq 200); do
	grep -q "ready listen=127.0.0.1:$PIGEON_PORT" "$TMP/pigeond.log" && break
	kill -0 "$PIGEOND_PID" 2>/dev/null || break
	sleep 0.1
done
grep -q "ready listen=127.0.0.1:$PIGEON_PORT" "$TMP/pigeond.log" ||
	{ echo "bench-sink: pigeond did not start" >&2; cat "$TMP/pigeond.log" >&2; exit 1; }

echo "messages=$MESSAGES size=$SIZE sessions=$SESSIONS rcpts=$RCPTS (connection reuse)" \
	"pigeond workers=$WORKERS shards=$SHARDS; $(nproc) CPUs"

# Rounds alternate between the servers so that a noisy neighbour hurts both alike.
: >"$TMP/sink.rates"
: >"$TMP/pigeond.rates"
for round in $(seq "$ROUNDS"); do
	read -r secs rate cpu <<<"$(drive "$SINK_PORT" smtp-sink "$SINK_PID")"
	printf 'round %d  %-10s %8d msg/s  %6.3f CPU s/1000 msgs  (%s s)\n' "$round" smtp-sink "$rate" "$cpu" "$secs"
	echo "$rate $cpu" >>"$TMP/sink.rates"
	read -r secs rate cpu <<<"$(drive "$PIGEON_PORT" pigeond "$PIGEOND_PID")"
	printf 'round %d  %-10s %8d msg/s  %6.3f CPU s/1000 msgs  (%s s)\n' "$round" pigeond "$rate" "$cpu" "$secs"
	echo "$rate $cpu" >>"$TMP/pigeond.rates"
done

accepted=$(grep -c ': accepted ' "$TMP/pigeond.log" || true)
if [ "$accepted" != $((MESSAGES * ROUNDS)) ]; then
	echo "bench-sink: pigeond logged $accepted accepted messages, expected $((MESSAGES * ROUNDS))" >&2
	exit 1
fi
sink_rate=$(cut -d' ' -f1 "$TMP/sink.rates" | median)
pig_rate=$(cut -d' ' -f1 "$TMP/pigeond.rates" | median)
sink_cpu=$(cut -d' ' -f2 "$TMP/sink.rates" | median)
pig_cpu=$(cut -d' ' -f2 "$TMP/pigeond.rates" | median)
printf 'median     smtp-sink %d msg/s, %.3f CPU s/1000 msgs; pigeond %d msg/s, %.3f CPU s/1000 msgs\n' \
	"$sink_rate" "$sink_cpu" "$pig_rate" "$pig_cpu"
awk -v p="$pig_rate" -v s="$sink_rate" 'BEGIN { printf "ratio pigeond/smtp-sink (msg/s): %.3f\n", p / s }'
