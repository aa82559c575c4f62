#!/usr/bin/env bash
# bench-tls.sh: full STARTTLS handshakes with ECDSA P-256 per second per
# server core: pigeond (kernel backend, 1 worker) against Postfix's smtpd
# with the same certificate under the same client load, and the openssl
# bound, in one run.  The bound is what the arithmetic of one full TLS 1.3
# ECDSA handshake costs the server on one core, 1 / (sign + keygen + derive):
# one ECDSA P-256 signature (`openssl speed ecdsap256`), one ephemeral
# X25519 key pair (perf/bench-tls-filter --keygen: openssl speed 3.0 times
# no key generation) and one X25519 derivation (`openssl speed ecdhx25519`);
# X25519 because the client's key share decides the group and OpenSSL
# clients send X25519 (P-256 is shown beside it).  The sign rate alone, once
# used as the bound, is printed for reference: no TLS server can reach it.
# Also perf/bench-tls-filter (the same handshake in pigeond's TLS filter in
# memory) to show where the time goes.
#
#   perf/bench-tls.sh [-t SECONDS] [-c CLIENTS] [-n ROUNDS] [-b BUILD_DIR] [-k]
#
# Defaults: 3 rounds of 10 s per server (alternating), 4 client threads of
# perf/bench-tls-load (connect, EHLO, STARTTLS, full handshake offering only
# ECDSA+SHA256 and no session, QUIT in TLS, reset close).  A 1 s warm-up
# precedes every measured run.  Reported per server: handshakes/s (wall)
# and handshakes per CPU second of the server (all its processes and
# threads: /proc utime+stime, plus what exited children used), which is the
# rate of one fully busy core whatever the client leaves it.  The client
# runs on the same machine and costs more than the server per handshake (it
# verifies the signature), so on a small machine the wall rate is the
# client's; the per-CPU-second rate is the comparable one.  -k keeps the
# temp directory.  Needs openssl, /usr/lib/postfix/sbin/master (postfix).
set -euo pipefail

RUN_S=10
CLIENTS=4
ROUNDS=3
KEEP=0
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${PIGEON_BUILD:-$HERE/../build}
MASTER=/usr/lib/postfix/sbin/master
PY=/usr/bin/python3

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "t:c:n:b:kh" opt; do
	case $opt in
	t) RUN_S=$OPTARG ;;
	c) CLIENTS=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	k) KEEP=1 ;;
	h) usage 0 ;;
	*) usage 2 >&2 ;;
	esac
done
LOAD=$BUILD/perf/bench-tls-load
FILTER=$BUILD/perf/bench-tls-filter
for bin in "$MASTER" "$BUILD/pigeond" "$LOAD" "$FILTER" "$(command -v openssl)"; do
	[ -x "$bin" ] || { echo "bench-tls: $bin not found (apt-get install postfix openssl; build pigeond)" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pigeonair-bench-tls.XXXXXX")
PIGEOND_PID=
MASTER_PID=
stop_pid() { # pid
	local pid=$1 i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
	stop_pid "$PIGEOND_PID"
	stop_pid "$MASTER_PID"
	if [ "$KEEP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU ticks used so far by a process tree: every live member's utime+stime,
# plus what its reaped children used (cutime+cstime), so a Postfix smtpd that
# exits between two samples is still counted.
tree_ticks() { # root pid
	$PY - "$1" <<'PYEOF'
import os, sys
root = int(sys.argv[1])
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            s = f.read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))  # ppid; utime stime cutime cstime
tree, grew = {root}, True
while grew:
    grew = False
    for pid, (ppid, _) in procs.items():
        if ppid in tree and pid not in tree:
            tree.add(pid); grew = True
print(sum(procs[p][1] for p in tree if p in procs))
PYEOF
}

wait_port() { # port
	local i
	for i in $(seq 200); do
		if $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1).close()" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench-tls: nothing listens on port $1" >&2
	return 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
# Postfix's daemons run as user postfix below $TMP: it must be searchable (the
# key stays root's: smtpd reads it before it drops privileges).
chmod 755 "$TMP"

start_pigeond() { # port
	rm -rf "$TMP/spool"
	"$BUILD/pigeond" -o listen=127.0.0.1:"$1" -o workers=1 -o spool.dir="$TMP/spool" \
		-o log.level=warning -o tls.cert="$TMP/cert.pem" -o tls.key="$TMP/key.pem" \
		>>"$TMP/pigeond.log" 2>&1 &
	PIGEOND_PID=$!
	wait_port "$1"
	SERVER_PID=$PIGEOND_PID
}

# A private Postfix instance: its own config, queue and data directories, only
# the services smtpd needs for EHLO/STARTTLS/QUIT; master in the foreground.
start_postfix() { # port
	local P=$TMP/postfix
	rm -rf "$P"
	mkdir -p "$P/etc" "$P/queue/pid" "$P/queue/private" "$P/queue/public" "$P/data"
	chown postfix "$P/queue/private" "$P/queue/public" "$P/data"
	chmod 700 "$P/queue/private"
	cat >"$P/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $P/queue
data_directory = $P/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.pigeonair.test
mydestination =
alias_maps =
alias_database =
maillog_file = /dev/stdout
smtpd_peername_lookup = no
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
default_process_limit = 100
smtpd_tls_security_level = may
smtpd_tls_chain_files = $TMP/key.pem, $TMP/cert.pem
smtpd_tls_loglevel = 0
EOF
	cat >"$P/etc/master.cf" <<EOF
127.0.0.1:$1 inet n - n - - smtpd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
rewrite   unix  -       -       n       -       -       trivial-rewrite
proxymap  unix  -       -       n       -       -       proxymap
EOF
	"$MASTER" -c "$P/etc" -d >>"$TMP/postfix.log" 2>&1 &
	MASTER_PID=$!
	wait_port "$1"
	SERVER_PID=$MASTER_PID
}

stop_server() {
	stop_pid "$SERVER_PID"
	PIGEOND_PID=
	MASTER_PID=
}

TCK=$(getconf CLK_TCK)
declare -A RATE PERCORE
run_one() { # name round
	local name=$1 round=$2 port out t0 t1 hs err secs
	port=$(free_port)
	"start_$name" "$port"
	"$LOAD" 127.0.0.1 "$port" 1 "$CLIENTS" >/dev/null # warm-up: processes, caches
	t0=$(tree_ticks "$SERVER_PID")
	out=$("$LOAD" 127.0.0.1 "$port" "$RUN_S" "$CLIENTS")
	t1=$(tree_ticks "$SERVER_PID")
	stop_server
	read -r _ hs _ err _ secs <<<"$out"
	RATE[$name,$round]=$($PY -c "print(f'{$hs/$secs:.0f}')")
	PERCORE[$name,$round]=$($PY -c "print(f'{$hs*$TCK/max(1,$t1-$t0):.0f}')")
	printf '%-8s round %d: %6d handshakes in %5.1f s, %d errors: %6s/s wall, %6s per server CPU second (%.2f CPU s)\n' \
		"$name" "$round" "$hs" "$secs" "$err" "${RATE[$name,$round]}" "${PERCORE[$name,$round]}" \
		"$($PY -c "print(($t1-$t0)/$TCK)")"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== openssl speed -seconds 3 ecdsap256 ecdhx25519 ecdhp256 (one core)"
SPEED=$(openssl speed -seconds 3 ecdsap256 ecdhx25519 ecdhp256 2>/dev/null)
SIGN=$(awk '/ecdsa \(nistp256\)/ {print $(NF-1)}' <<<"$SPEED")
X25519=$(awk '/ecdh \(X25519\)/ {print $NF}' <<<"$SPEED")
P256=$(awk '/ecdh \(nistp256\)/ {print $NF}' <<<"$SPEED")
KG_X25519=$("$FILTER" --keygen X25519 20000 | awk '{print $(NF-6)}')
KG_P256=$("$FILTER" --keygen P-256 20000 | awk '{print $(NF-6)}')
echo "ECDSA P-256 sign/s: $SIGN ($(openssl version))"
echo "X25519: derive/s $X25519, keygen/s $KG_X25519; P-256: derive/s $P256, keygen/s $KG_P256"
BOUND=$($PY -c "print(f'{1/(1/$SIGN + 1/$KG_X25519 + 1/$X25519):.0f}')")
BOUND_P256=$($PY -c "print(f'{1/(1/$SIGN + 1/$KG_P256 + 1/$P256):.0f}')")
echo "bound, 1/(sign + keygen + derive): X25519 $BOUND handshakes/s (the one used), P-256 $BOUND_P256"
# The same handshake in pigeond's TLS filter, in memory: OpenSSL's own cost, no TCP, no SMTP.
INPROC=$("$FILTER" "$TMP/cert.pem" "$TMP/key.pem" 5000)
echo "in memory (perf/bench-tls-filter), $INPROC"
INPROC=$(awk '{print $(NF-6)}' <<<"$INPROC")
echo "== $ROUNDS rounds of $RUN_S s, $CLIENTS client threads, $(nproc) CPUs"
for r in $(seq "$ROUNDS"); do
	run_one pigeond "$r"
	run_one postfix "$r"
done
pr=() pc=() fr=() fc=()
for r in $(seq "$ROUNDS"); do
	pr+=("${RATE[pigeond,$r]}"); pc+=("${PERCORE[pigeond,$r]}")
	fr+=("${RATE[postfix,$r]}"); fc+=("${PERCORE[postfix,$r]}")
done
P_RATE=$(median "${pr[@]}") P_CORE=$(median "${pc[@]}")
F_RATE=$(median "${fr[@]}") F_CORE=$(median "${fc[@]}")
echo "== medians"
echo "pigeond: $P_RATE handshakes/s wall, $P_CORE per server CPU second"
echo "postfix: $F_RATE handshakes/s wall, $F_CORE per server CPU second"
$PY - "$P_CORE" "$F_CORE" "$SIGN" "$BOUND" "$INPROC" <<'PYEOF'
import sys
p, f, sign, bound, inproc = (float(x) for x in sys.argv[1:])
print(f"pigeond per core / openssl bound: {p / bound:.1%} (of sign/s alone: {p / sign:.1%})")
print(f"postfix per core / openssl bound: {f / bound:.1%} (of sign/s alone: {f / sign:.1%})")
print(f"pigeond per core / the same handshake in memory: {p / inproc:.1%}")
print(f"pigeond / postfix per core: {p / f:.2f}x")
PYEOF
