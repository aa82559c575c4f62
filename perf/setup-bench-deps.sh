#!/bin/sh
# setup-bench-deps.sh: what `make bench` needs beyond tools/setup-deps.sh
# (which the build already ran): gnuplot for the plot, Node.js and npm, and
# Haraka from npm at a pinned version (perf/haraka/package-lock.json pins it
# and everything under it), installed into a cache directory outside the
# source tree.  Idempotent: asks dpkg and the cache first and
# installs only what is missing.  Prints the Haraka directory on its last
# line (perf/bench.py reads it from $HARAKA_DIR or computes the same path).
#
#   perf/setup-bench-deps.sh
#
# HARAKA_VERSION (default 3.3.4: what the lock file holds; checked) and HARAKA_DIR (default
# /var/cache/pigeonair/haraka as root, else $XDG_CACHE_HOME/pigeonair/haraka)
# may be set in the environment.
set -eu

HARAKA_VERSION=${HARAKA_VERSION:-3.3.4}
if [ -z "${HARAKA_DIR:-}" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		HARAKA_DIR=/var/cache/pigeonair/haraka
	else
		HARAKA_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pigeonair/haraka
	fi
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo

missing=""
for p in gnuplot-nox postfix dovecot-core dovecot-lmtpd iproute2 util-linux; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing="$missing $p"
done
# Node.js may come from elsewhere than Debian (a nodesource build has npm
# inside the nodejs package): only ask apt when there is no npm at all.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
	echo "setup-bench-deps: installing:$missing" >&2
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi

# Haraka and every package under it at the versions of perf/haraka/package-lock.json
# (npm ci); installed again when the lock file changes.
HERE=$(cd "$(dirname "$0")" && pwd)
if ! cmp -s "$HERE/haraka/package-lock.json" "$HARAKA_DIR/package-lock.json" ||
	[ ! -x "$HARAKA_DIR/node_modules/.bin/haraka" ]; then
	echo "setup-bench-deps: installing Haraka from npm (perf/haraka/package-lock.json) into $HARAKA_DIR" >&2
	mkdir -p "$HARAKA_DIR"
	cp "$HERE/haraka/package.json" "$HERE/haraka/package-lock.json" "$HARAKA_DIR/"
	(cd "$HARAKA_DIR" && npm ci --no-audit --no-fund --loglevel=error --cache "$HARAKA_DIR/.npm" >&2)
fi
have=$(node -p "require('$HARAKA_DIR/node_modules/Haraka/package.json').version" 2>/dev/null || true)
[ "$have" = "$HARAKA_VERSION" ] ||
	{ echo "setup-bench-deps: Haraka $have in $HARAKA_DIR, want $HARAKA_VERSION" >&2; exit 1; }
[ -x "$HARAKA_DIR/node_modules/.bin/haraka" ] ||
	{ echo "setup-bench-deps: no haraka binary in $HARAKA_DIR" >&2; exit 1; }
echo "$HARAKA_DIR"
