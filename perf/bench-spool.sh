#!/usr/bin/env bash
# bench-spool.sh: the spool alone (perf/bench-spool.c), one build or two side
# by side in one run, as messages/s and as instructions per message.
#
#   perf/bench-spool.sh [-b BUILD] [-o OLD_BIN] [-F FORMATS] [-m MESSAGES]
#                       [-t THREADS] [-w WINDOW] [-s SIZE] [-r RCPTS] [-S SHARDS]
#                       [-n CALLGRIND_MESSAGES] [-R ROUNDS]
#
# FORMATS: the spool formats this build runs, each a row ("1 2" by default:
# RocksDB holds everything / the segment log); the ratios are against the
# first row.
# OLD_BIN: a bench-spool built from an older commit (for example the last
# format-1 spool: `git worktree add /tmp/old COMMIT && meson setup
# /tmp/old/build && ninja -C /tmp/old/build perf/bench-spool`, copying
# perf/bench-spool.c there first if that commit predates it); its rows and
# the ratio new/old are printed beside this build's.
# 1. ROUNDS native runs of each binary, alternating, each on a fresh spool
#    in $TMPDIR: the median messages/s, syncs and copies per sync.
# 2. Each binary twice under valgrind --tool=callgrind with N and 2N
#    messages, counting (a) only inside the committer threads
#    (committer_main: encoding, the writes and syncs, completions) and
#    (b) the whole process; the difference divided by N is instructions per
#    message with start-up and shutdown cancelled out.  System calls and the
#    kernel's work for them are not instructions valgrind sees; RocksDB's
#    background flushes are counted only when the run is long enough to
#    fill a memtable (64 MiB), which N messages of 4 KiB do not.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${PIGEON_BUILD:-build}
OLD=
FORMATS="1 2"
MESSAGES=20000
THREADS=2
WINDOW=32
SIZE=4096
RCPTS=1
SHARDS=4
CG=2000
ROUNDS=3

usage() {
	sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while getopts "b:o:F:m:t:w:s:r:S:n:R:h" o; do
	case $o in
	b) BUILD=$OPTARG ;;
	o) OLD=$OPTARG ;;
	F) FORMATS=$OPTARG ;;
	m) MESSAGES=$OPTARG ;;
	t) THREADS=$OPTARG ;;
	w) WINDOW=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	r) RCPTS=$OPTARG ;;
	S) SHARDS=$OPTARG ;;
	n) CG=$OPTARG ;;
	R) ROUNDS=$OPTARG ;;
	*) usage ;;
	esac
done

NEW=$BUILD/perf/bench-spool
[ -x "$NEW" ] || { echo "bench-spool.sh: no $NEW (ninja -C $BUILD)" >&2; exit 1; }
[ -z "$OLD" ] || [ -x "$OLD" ] || { echo "bench-spool.sh: no $OLD" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "bench-spool.sh: valgrind is not installed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-spool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

args=(-t "$THREADS" -w "$WINDOW" -s "$SIZE" -r "$RCPTS" -S "$SHARDS")
# label=binary=extra arguments; the old build gets no -F (it may predate it).
bins=()
[ -z "$OLD" ] || bins+=("old=$OLD=")
for f in $FORMATS; do
	bins+=("format$f=$NEW=-F $f")
done
first=${bins[0]%%=*}

binary() { local rest=${1#*=}; echo "${rest%%=*}"; }
extra() { local rest=${1#*=}; echo "${rest#*=}"; }

run_native() { # label bin round extra -> "msg/s syncs copies_per_sync"
	local dir="$tmp/spool.$1.$3"
	# shellcheck disable=SC2086 # extra: flags, split on purpose
	"$2" -d "$dir" -m "$MESSAGES" "${args[@]}" $4 >"$tmp/native.$1.$3" ||
		{ cat "$tmp/native.$1.$3" >&2; exit 1; }
	rm -rf "$dir"
	sed -E 's/.*: ([0-9]+) msg\/s, .*, ([0-9]+) syncs, ([0-9.]+) copies per sync.*/\1 \2 \3/' \
		"$tmp/native.$1.$3"
}

collected() { # label bin messages toggle extra -> Ir
	local out="$tmp/cg.$1.$3.${4:-all}" dir="$tmp/cgspool.$1.$3"
	local toggle=()
	[ -z "$4" ] || toggle=(--toggle-collect="$4")
	# shellcheck disable=SC2086
	valgrind --tool=callgrind "${toggle[@]}" --callgrind-out-file="$out" \
		"$2" -d "$dir" -m "$3" "${args[@]}" $5 -q >"$out.log" 2>&1 ||
		{ cat "$out.log" >&2; exit 1; }
	rm -rf "$dir"
	awk '/^totals:/ {print $2}' "$out"
}

echo "== native: bench-spool -m $MESSAGES ${args[*]}, $ROUNDS rounds, median"
declare -A rate syncs per
for ((r = 0; r < ROUNDS; r++)); do
	for b in "${bins[@]}"; do
		label=${b%%=*}
		run_native "$label" "$(binary "$b")" "$r" "$(extra "$b")" >>"$tmp/rows.$label"
	done
done
for b in "${bins[@]}"; do
	label=${b%%=*}
	read -r "rate[$label]" "syncs[$label]" "per[$label]" < <(sort -n "$tmp/rows.$label" |
		awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
	printf '%-8s %s %s: %s msg/s, %s syncs, %s copies per sync (all rounds: %s)\n' \
		"$label" "$(binary "$b")" "$(extra "$b")" "${rate[$label]}" "${syncs[$label]}" \
		"${per[$label]}" \
		"$(awk '{print $1}' "$tmp/rows.$label" | paste -sd, -)"
done

echo "== callgrind: instructions per message ($CG and $((2 * CG)) messages)"
declare -A cir air
for b in "${bins[@]}"; do
	label=${b%%=*}
	bin=$(binary "$b")
	x=$(extra "$b")
	c1=$(collected "$label" "$bin" "$CG" committer_main "$x")
	c2=$(collected "$label" "$bin" "$((2 * CG))" committer_main "$x")
	a1=$(collected "$label" "$bin" "$CG" "" "$x")
	a2=$(collected "$label" "$bin" "$((2 * CG))" "" "$x")
	cir[$label]=$(((c2 - c1) / CG))
	air[$label]=$(((a2 - a1) / CG))
	printf '%-8s committer threads: %s instructions/message; whole process: %s\n' \
		"$label" "${cir[$label]}" "${air[$label]}"
done

for b in "${bins[@]:1}"; do
	label=${b%%=*}
	echo "== $label / $first"
	awk -v a="${rate[$label]}" -v b="${rate[$first]}" 'BEGIN {printf "msg/s: %.2fx\n", a / b}'
	awk -v a="${cir[$label]}" -v b="${cir[$first]}" \
		'BEGIN {printf "committer instructions/message: %.2fx\n", a / b}'
	awk -v a="${air[$label]}" -v b="${air[$first]}" \
		'BEGIN {printf "whole-process instructions/message: %.2fx\n", a / b}'
done
