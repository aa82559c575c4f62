#!/usr/bin/env bash
# bench-handoff.sh: the hand-off scenario of `make bench` alone: end-to-end
# messages/s, client -> pigeond -> delivery tier -> Maildir file, beside
# pigeond's ingest-only figure, in one run (perf/bench.py --only handoff;
# docs/benchmarks.md).  Options are perf/bench.py's, e.g.
#
#   perf/bench-handoff.sh                                  # Dovecot LMTP store
#   perf/bench-handoff.sh --handoff-store postfix          # Postfix, virtual delivery
#   perf/bench-handoff.sh --handoff-messages 20000 --build build
#
# Needs root (Postfix and Dovecot instances of their own), dovecot-lmtpd and
# build/pigeon-loadgen.  Prints the figures; docs/ is not touched.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$HERE/bench.py" --only handoff --no-docs "$@"
