#!/usr/bin/env bash
# bench-stack.sh: what one message costs in the DPDK stack, the SMTP engine and
# the ingest host (perf/bench-stack.c: one thread, an in-memory net_ring port,
# a null store), as time and as instructions.
#
#   perf/bench-stack.sh [-m MESSAGES] [-c CONNECTIONS] [-s SIZE] [-r PER_CONN]
#                       [-n CALLGRIND_MESSAGES] [-b BUILD] [-6]
#
# 1. bench-stack natively: messages/s and ns per message.
# 2. bench-stack twice under valgrind --tool=callgrind, counting only inside
#    dpdk_backend_poll() (the server's loop iteration: RX, TCP/IP, engine,
#    ingest, store completions, TX), with N and 2N messages: the difference
#    divided by N is instructions per message with connection set-up and
#    start-up cancelled out.  Instruction counts repeat from run to run, so a
#    regression shows on any machine (this one has no hardware counters).
# 3. The top functions of the 2N run, by instructions (exclusive).
# -6: steps 1 and 2 over IPv4 and then over IPv6 (bench-stack -6), the two
#    instruction counts side by side with their ratio, and step 3 for IPv6.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${PIGEON_BUILD:-build}
MESSAGES=100000
CONNS=16
SIZE=4096
PER_CONN=1000
CG=2000
FAMILIES=4

usage() {
	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while getopts "m:c:s:r:n:b:6h" o; do
	case $o in
	m) MESSAGES=$OPTARG ;;
	c) CONNS=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	r) PER_CONN=$OPTARG ;;
	n) CG=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	6) FAMILIES="4 6" ;;
	*) usage ;;
	esac
done

BIN=$BUILD/perf/bench-stack
[ -x "$BIN" ] || { echo "bench-stack.sh: no $BIN (ninja -C $BUILD)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "bench-stack.sh: valgrind is not installed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-stack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

args=(-c "$CONNS" -s "$SIZE" -r "$PER_CONN")

collected() { # family messages -> Ir counted inside dpdk_backend_poll()
	local f=()
	[ "$1" = 6 ] && f=(-6)
	valgrind --tool=callgrind --toggle-collect=dpdk_backend_poll \
		--callgrind-out-file="$tmp/cg.$1.$2" "$BIN" "${f[@]}" -m "$2" "${args[@]}" -q \
		>"$tmp/log.$1.$2" 2>&1 || { cat "$tmp/log.$1.$2" >&2; exit 1; }
	awk '/^totals:/ {print $2}' "$tmp/cg.$1.$2"
}

declare -A per_msg
for fam in $FAMILIES; do
	f=()
	[ "$fam" = 6 ] && f=(-6)
	echo "== IPv$fam native: $BIN ${f[*]} -m $MESSAGES ${args[*]}"
	"$BIN" "${f[@]}" -m "$MESSAGES" "${args[@]}"
	echo
	echo "== IPv$fam callgrind: instructions in dpdk_backend_poll(), $CG and $((2 * CG)) messages"
	a=$(collected "$fam" "$CG")
	b=$(collected "$fam" $((2 * CG)))
	per_msg[$fam]=$(((b - a) / CG))
	echo "  Ir with $CG messages         $a"
	echo "  Ir with $((2 * CG)) messages         $b"
	echo "  instructions/message         ${per_msg[$fam]}"
	echo
done
if [ -n "${per_msg[6]:-}" ]; then
	echo "== instructions/message: IPv4 ${per_msg[4]}, IPv6 ${per_msg[6]}," \
		"IPv6/IPv4 $(awk -v a="${per_msg[4]}" -v b="${per_msg[6]}" 'BEGIN {printf "%.3f", b / a}')"
	echo
fi
last=${FAMILIES##* }
echo "== top functions by instructions (exclusive), IPv$last, $((2 * CG)) messages"
callgrind_annotate "$tmp/cg.$last.$((2 * CG))" 2>/dev/null |
	sed -n 's/^ *\([0-9,]*\) *( *\([0-9.]*%\)) *\([^ ]*\).*/\1 \2 \3/p' |
	awk -v n=$((2 * CG)) '$3 != "PROGRAM" && shown < 15 {
		ir = $1; gsub(",", "", ir); fn = $3; sub(/.*\//, "", fn)
		printf "  %8.0f /msg  %7s  %s\n", ir / n, $2, fn; shown++
	}'
