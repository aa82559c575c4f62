#!/bin/sh
# deb-test.sh: the Debian packages (make deb) installed and run in a fresh
# Debian 12 root, the way an operator installs and runs them.
# tools/fresh-check.sh makes the root (mmdebstrap minbase, its own mount and
# PID namespaces) and copies the packages and the check into it; its networked first step
# installs the two packages with apt (which brings their dependencies from
# Debian: nothing of the build is in the root), plus what the check uses:
# swaks (a message), systemd (systemd-analyze verify), man-db, python3 (the
# check itself).  Then tests/package/deb_check.py runs in a network namespace
# of the root's own: what is installed and with which owners and modes,
# systemd-analyze verify, the unit's ExecStartPre/ExecStart/ExecReload lines
# run as systemd runs them (there is no systemd to run them), a message from
# swaks, pigeonctl status as a member of the socket's group, stop, then
# dpkg --remove (spool and configuration stay) and --purge (both go).
# usage: tools/deb-test.sh DEB_DIR        (make deb-test)
set -eu

DEB_DIR=$(cd "${1:?usage: deb-test.sh DEB_DIR}" && pwd)
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "deb-test: needs root (tools/fresh-check.sh)" >&2; exit 2; }
# Only what the root needs: the two packages and the check.
stage=$DEB_DIR/deb-test
rm -rf "$stage"
mkdir -p "$stage"
cp "$DEB_DIR"/pigeonair_*.deb "$DEB_DIR"/pigeonair-loadgen_*.deb tests/package/deb_check.py "$stage/"
exec tools/fresh-check.sh --copy "$stage" \
	--setup 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /work/copy/pigeonair_*.deb /work/copy/pigeonair-loadgen_*.deb swaks systemd man-db python3' \
	-- /usr/bin/python3 /work/copy/deb_check.py
