#!/usr/bin/env bash
# bench-handoff.sh: end-to-end messages/s, client -> pigeond -> delivery tier
# -> mailbox, beside pigeond's ingest-only figure, in one run.
#
#   perf/bench-handoff.sh [-m MESSAGES] [-s SESSIONS] [-l BYTES] [-c RELAY_CONCURRENCY]
#                         [-w WORKERS] [--postfix] [-b BUILD_DIR] [-k]
#
# Defaults: 5000 messages of 4096 bytes, 1 recipient, 20 smtp-source sessions,
# relay.concurrency 8, a Dovecot LMTP store delivering into a Maildir
# (--postfix: a Postfix instance with virtual delivery instead).  Needs root
# (Postfix and Dovecot instances of their own), smtp-source (postfix) and
# dovecot-lmtpd; see perf/bench_handoff.py.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$HERE/bench_handoff.py" "$@"
