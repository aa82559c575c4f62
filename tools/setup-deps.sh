#!/bin/sh
# setup-deps.sh: installs exactly the Debian 12 packages that PigeonAir's
# build, run and tests need.  Idempotent and non-interactive: it asks dpkg
# first and calls apt-get (after one 'apt-get update') only for what is
# missing, so the Makefile can run it before every target.
#
# Any change to this file, or to an external tool that a test uses (swaks,
# smtp-source, postfix, dovecot, slapd, promtool, scapy, ...), must be followed
# by `tools/fresh-check.sh` (as root, after committing): it runs `make deps`
# and `make test` in a minimal Debian 12 root, the only proof that this list
# is complete: CI's machine may keep what earlier runs installed.
set -eu

PACKAGES="
  gcc meson ninja-build pkg-config
  libdpdk-dev dpdk librocksdb-dev libjemalloc-dev libssl-dev libjansson-dev
  libsystemd-dev systemd scdoc man-db
  libcmocka-dev python3 python3-pytest
  clang libclang-rt-14-dev
  openssl
  swaks libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl postfix
  libidn2-dev libfuse3-dev fuse3
  dovecot-core dovecot-lmtpd
  slapd ldap-utils libldap-dev
  iproute2 procps strace
  python3-scapy tcpdump iputils-ping
  prometheus
  libc-ares-dev unbound
  rspamd python3-dkim
"

# Arguments are more packages, for targets that need more than the build,
# run and tests: `make deb` and `make deb-test` (debhelper dpkg-dev lintian
# mmdebstrap).
PACKAGES="$PACKAGES $*"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "setup-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "setup-deps: not root and no sudo; install as root:$missing" >&2
		exit 1
	fi
fi
# Postfix is a test peer (smtp-source, smtp-sink, a relay started by the tests
# themselves), never the machine's MTA: "No configuration" keeps it from
# asking questions or starting.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# slapd likewise is only a test peer, started by the directory tests with their own
# configuration and database: no site directory is created, none is started.
echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
# dovecot-core and dovecot-lmtpd are likewise test peers only: the hand-off tests run
# their own `dovecot -F -c CONF` (LMTP, passwd-file userdb) in a temporary directory.
# prometheus is here for promtool only: the tests check pigeond's metrics with
# `promtool check metrics`; no Prometheus server is configured by the tests.
# libnet-ssleay-perl and libio-socket-ssl-perl are swaks's TLS: without them
# (apt installs no Recommends here) `swaks --tls` cannot start TLS and the
# STARTTLS tests fail.  libidn2-dev: core/ (IDNA2008 domains).  libfuse3-dev and
# fuse3: tests/powerfs/ (a FUSE file system for power-loss tests) is built when
# fuse3 is found, and mounted with fusermount3.
# openssl (the command): `make run` makes its development certificate with it,
# and the TLS tests theirs (skipped as "not installed" without it, a failure
# under make test).  Only dovecot-core and postfix brought it in before.
# libsystemd-dev: log.target = journal (sd_journal_sendv) and pigeond's
# sd_notify (Type=notify, the watchdog); systemd-analyze (package systemd)
# checks the unit file in the tests.
# scdoc builds the man pages (docs/man), man-db's `man -l` checks that they
# render without warnings (tests/integration/test_man.py).
# clang and libclang-rt-14-dev (libFuzzer, sanitizer runtimes) build only the
# fuzz harnesses (tests/fuzz/, make fuzz); pigeond itself is built with gcc.
# libc-ares-dev: dns/ (the resolver thread of the connection screen).  unbound:
# a test peer only, the DNS server the screening tests start with their own
# local zones (its Recommends, dns-root-data, is for recursion and not needed).
# rspamd: a test peer only, the content filter (milter) test_rspamd.py runs with its own
# configuration (no Redis: its Recommends are not needed); python3-dkim signs the
# test's message (its Recommends, dnspython and nacl, are for verifying: not used).
# Servers among the packages (postfix, slapd, dovecot, prometheus, unbound, rspamd) are test
# peers that the tests start with their own configuration: keep the packages'
# maintainer scripts from starting system-wide instances of them.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
