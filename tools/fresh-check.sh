#!/usr/bin/env bash
# fresh-check.sh: do the README's commands work on a Debian 12 machine that has
# nothing installed?  Builds a minimal Debian 12 (bookworm) root with
# mmdebstrap, clones the repository's committed HEAD into it (not the work
# tree: no build dirs, no uncommitted files), and runs, as root in a chroot:
#   1. `make deps` (tools/setup-deps.sh: apt-get from Debian's mirror), then
#   2. CMD, by default `make test`; its exit status is this script's.
# Run it after any change to tools/setup-deps.sh or to an external tool a test
# uses (swaks, smtp-source, postfix, dovecot, slapd, promtool, scapy, ...): CI
# runs on a machine that may keep what earlier sessions installed, so a green
# CI does not prove that setup-deps.sh installs everything.
#
# usage: tools/fresh-check.sh [--keep] [--no-cache] [--host-net] [--reuse DIR]
#                             [--copy DIR] [--setup SHELL-CMD] [-- CMD...]
#   --keep      keep the root (unmounted) and print where it is
#   --reuse DIR run in a root kept by --keep (DIR as printed), no new root/clone
#   --no-cache  build the base root anew and download every package again
#               (default: the base root tarball is cached per day, and the
#               downloaded .debs are kept, under $PIGEON_FRESH_CACHE,
#               /var/cache/pigeonair-fresh)
#   --copy DIR  copy DIR into the root as /work/copy (make deb-test: the
#               .debs just built, which the clone of HEAD does not hold)
#   --setup C   run the shell command C instead of `make deps` in the first,
#               networked, step (make deb-test: apt-get install the .debs)
#   --host-net  run CMD in the host's network namespace, as CI does (default:
#               a network namespace of its own with only lo up, so the TAP
#               devices, namespaces and ports of `make test` or `make run`
#               cannot meet those of other work on the same machine)
#   CMD         e.g. `make build`, or `sh -c 'make build && PIGEON_BUILD=$PWD/build
#               /usr/bin/python3 -m pytest -q tests/integration/test_swaks.py'`;
#               it starts in the clone's top directory (/work/pigeonair).
# Needs root (mmdebstrap --mode=root, chroot, mounts).  Times measured on the
# project's 2-core machine shared with other work: the base root 4 min
# (seconds when cached), `make deps` 10-11 min (210 MB of packages, downloaded
# in under a minute: the time is dpkg's), then `make test` itself.
# The script must not be edited in place while it runs (bash reads it as it
# goes): write a new file and mv it over.
#
# Nothing is left behind: every mount (proc, sys, dev, devpts, the tests' own
# mounts and `ip netns add` namespaces) is made in a mount namespace of this
# run's own, and every process in a PID namespace of its own, so both go away
# with the run, also on failure, Ctrl-C or kill; the trap then checks that no
# mount is left under the work directory (lazily unmounting any it finds)
# before it deletes the root.
set -euo pipefail

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
# What the base root holds beyond mmdebstrap's minbase variant (Essential:yes
# packages and apt: dpkg, coreutils, bash, perl-base, debconf, util-linux,
# mount, ...).  Only what is needed to start the README's commands, so that
# anything else the build or the tests need must come from setup-deps.sh:
#   make  runs `make test`/`make run` (and so tools/setup-deps.sh);
#   git   is how a contributor gets the repository (and `make format` uses it).
# Left out on purpose, although a fresh machine of this project's kind has
# them: python3, gcc, openssl, ca-certificates, iproute2, procps, curl...;
# setup-deps.sh must name each one the build, `make run` or a test uses.
# Recommends are not installed (mmdebstrap's default), as setup-deps.sh does.
INCLUDE=make,git
CACHE_DIR=${PIGEON_FRESH_CACHE:-/var/cache/pigeonair-fresh}
WORK_BASE=${PIGEON_FRESH_WORK:-/var/tmp}
CLONE=/work/pigeonair        # where the clone lives inside the root

keep=0 no_cache=0 host_net=0 reuse="" copy="" setup=""
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=1 ;;
	--no-cache) no_cache=1 ;;
	--host-net) host_net=1 ;;
	--reuse) reuse=${2:?--reuse needs a directory}; keep=1; shift ;;
	--copy) copy=$(cd "${2:?--copy needs a directory}" && pwd); shift ;;
	--setup) setup=${2:?--setup needs a command}; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	*) echo "fresh-check: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ $# -gt 0 ] || set -- make test
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: needs root (chroot, mounts, mmdebstrap)" >&2; exit 2; }

REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
HEAD=""
start=$(date +%s)
say() { echo "fresh-check: $*"; }

# --- tools on the host -------------------------------------------------------
need=""
command -v mmdebstrap >/dev/null || need="$need mmdebstrap"
command -v unshare >/dev/null || need="$need util-linux"
command -v ip >/dev/null || need="$need iproute2"
if [ -n "$need" ]; then
	say "installing on the host:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends $need ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends $need; }
fi

# --- the work directory and its clean-up ---------------------------------------
if [ -n "$reuse" ]; then
	WORK=$(cd "$reuse" && pwd)
	[ -d "$WORK/root$CLONE" ] || { echo "fresh-check: $WORK is not a kept root" >&2; exit 2; }
else
	mkdir -p "$WORK_BASE"
	WORK=$(mktemp -d "$WORK_BASE/pigeonair-fresh.XXXXXX")
fi
ROOT=$WORK/root
LOG=$WORK.log
[ -z "$reuse" ] || HEAD=$(git -C "$ROOT$CLONE" rev-parse --short HEAD)
child=""

mounts_under() { findmnt -rn -o TARGET | grep -F "$1" || true; }
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		# unshare --fork ignores SIGINT and SIGTERM; its death SIGKILLs the
		# namespace's PID 1 (--kill-child), and with it every process in it.
		kill -KILL "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	# Everything was mounted in the run's own mount namespace, gone with it;
	# this only guards against a bug here.
	local left
	left=$(mounts_under "$WORK")
	if [ -n "$left" ]; then
		say "unmounting what is left under $WORK:"; echo "$left"
		umount -R -l "$ROOT" 2>/dev/null || true
		sort -r <<<"$left" | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	fi
	# The tests' network namespaces were files in the root's /run/netns bound
	# in the run's mount namespace: with it gone, no mount holds them.
	left=$(mounts_under "$WORK")
	if [ -n "$left" ]; then
		say "mounts still under $WORK, root NOT deleted:"; echo "$left"; rc=1
	elif [ "$keep" = 1 ] && [ -d "$ROOT$CLONE" ]; then
		say "root kept: $WORK (rerun in it: $0 --reuse $WORK -- CMD; delete: rm -rf $WORK)"
	else
		rm -rf --one-file-system "$WORK"
	fi
	[ -z "${tarball:-}" ] || rm -rf --one-file-system "$tarball.part"
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM HUP

# Runs at the same time share the cache: one builds the base root, or runs
# apt-get with the .debs cache, at a time.
lock() {
	[ "$no_cache" = 1 ] && return 0
	mkdir -p "$CACHE_DIR"
	exec 9>"$CACHE_DIR/lock"
	flock -n 9 || { say "waiting for another fresh-check's cache lock"; flock 9; }
}
unlock() { [ "$no_cache" = 1 ] || { flock -u 9; exec 9>&-; }; }

# --- the base root: cached tarball or a new one ---------------------------------
lock
if [ -z "$reuse" ]; then
	key=$(printf '%s\n' "$SUITE" "$INCLUDE" "$MIRROR" "$SECURITY_MIRROR" | md5sum | cut -c1-8)
	if [ "$no_cache" = 1 ]; then
		tarball=$WORK/base.tar
	else
		mkdir -p "$CACHE_DIR/debs/partial"
		tarball=$CACHE_DIR/$SUITE-minbase-$key-$(date -u +%Y%m%d).tar
	fi
	if [ ! -s "$tarball" ]; then
		say "building a $SUITE minbase root (+ $INCLUDE) with mmdebstrap"
		t0=$(date +%s)
		mmdebstrap --mode=root --format=tar --variant=minbase --include="$INCLUDE" --quiet \
			"$SUITE" "$tarball.part" \
			"deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
			"deb $SECURITY_MIRROR $SUITE-security main"
		mv "$tarball.part" "$tarball"
		say "base root built in $(($(date +%s) - t0)) s ($(du -h "$tarball" | cut -f1))"
		# yesterday's tarballs go
		[ "$no_cache" = 1 ] || find "$CACHE_DIR" -maxdepth 1 -name "$SUITE-minbase-*.tar" \
			! -path "$tarball" -delete
	else
		say "base root from the cache: $tarball"
	fi
	mkdir "$ROOT"
	tar -C "$ROOT" --numeric-owner -xpf "$tarball"
	[ "$no_cache" = 1 ] && rm -f "$tarball"

	# What a machine has besides its packages: a resolver for apt, localhost.
	cat /etc/resolv.conf >"$ROOT/etc/resolv.conf"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
	echo pigeonair-fresh >"$ROOT/etc/hostname"
	# No package's maintainer script may start a service (postfix, slapd,
	# dovecot, prometheus are test peers only).  setup-deps.sh leaves an
	# existing policy-rc.d alone.
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	mkdir -p "$ROOT/run/netns" "$ROOT/run/lock" "$ROOT$(dirname "$CLONE")"
	# The committed HEAD only, as a contributor's `git clone` gets it.
	git clone -q --no-hardlinks "$REPO" "$ROOT$CLONE"
	HEAD=$(git -C "$ROOT$CLONE" rev-parse --short HEAD)   # what was cloned, not what was there at start
	say "cloned $REPO at $HEAD into $ROOT$CLONE"
fi
if [ -n "$copy" ]; then
	rm -rf "$ROOT/work/copy"
	cp -a "$copy" "$ROOT/work/copy"
	say "copied $copy into the root as /work/copy"
fi
unlock

# --- running in the root ---------------------------------------------------------
# Runs as PID 1 of a new PID namespace, in a new mount namespace (and a new
# network namespace unless --host-net; for `make deps` the host's, for apt).
# It mounts what the build and tests need, then runs the command in the chroot
# as its child (bash as PID 1 reaps the orphans that the tests' daemons leave).
#   /             the root bound onto itself, so that it is a mount point:
#                 `ip netns exec` and `ip -n` make "/" a slave mount (EINVAL
#                 on a mere directory)
#   /proc, /sys   this namespace's own (sysfs shows this network namespace)
#   /dev          a tmpfs with the host's null zero full random urandom tty,
#                 net/tun (DPDK's net_tap, TAP devices) and fuse (FUSE tests)
#                 bound in, a devpts of its own, a tmpfs /dev/shm
#   /run, /tmp    the root's own directories on disk, as a machine has them
#                 (a tmpfs /tmp would make a test that needs a file system
#                 less than 99% free skip); /run/netns for `ip netns add`
#   /var/cache/apt/archives  the downloaded .debs cache (unless --no-cache)
INNER='
set -e
R=$1 net=$2 debs=$3; shift 3
mount --bind "$R" "$R"   # the root a mount point: `ip netns exec` needs "/" to be one
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=755,size=64m,nosuid tmpfs "$R/dev"
mkdir -p "$R/dev/net" "$R/dev/pts" "$R/dev/shm"
for d in null zero full random urandom tty net/tun fuse; do
	[ -e "/dev/$d" ] || { echo "fresh-check: the host has no /dev/$d" >&2; continue; }
	: >"$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mkdir -p "$R/run/netns" "$R/run/lock"
find "$R/run/netns" -mindepth 1 -delete   # stale names from an interrupted run (--reuse)
[ -z "$debs" ] || mount --bind "$debs" "$R/var/cache/apt/archives"
[ "$net" = own ] && ip link set lo up
chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/sh -c "cd $CLONE && exec \"\$@\"" fresh-check "$@" &
wait $!
'
run_in_root() { # host|own CMD...
	local net=$1; shift
	local netflag=() debs="" from
	from=$(stat -c %s "$LOG")
	[ "$net" = own ] && netflag=(--net)
	[ "$no_cache" = 1 ] || debs=$CACHE_DIR/debs
	unshare --mount --pid --fork --kill-child --propagation private "${netflag[@]}" -- \
		env CLONE="$CLONE" bash -c "$INNER" inner "$ROOT" "$net" "$debs" "$@" \
		>>"$LOG" 2>&1 </dev/null 9>&- &
	child=$!
	tail -c +$((from + 1)) -f --pid="$child" "$LOG" &
	local tailpid=$!
	local rc=0
	wait "$child" || rc=$?
	child=""
	wait "$tailpid" 2>/dev/null || true
	return "$rc"
}

: >"$LOG"
t0=$(date +%s)
rc=0
lock
if [ -n "$setup" ]; then
	say "setup in the root: $setup; log: $LOG"
	run_in_root host sh -c "$setup" || rc=$?
else
	say "make deps (tools/setup-deps.sh) in the root; log: $LOG"
	run_in_root host make deps || rc=$?
fi
unlock
t_deps=$(($(date +%s) - t0))
what="make deps"; [ -z "$setup" ] || what=setup
say "$what: exit $rc in ${t_deps} s"
if [ "$rc" -eq 0 ]; then
	net=own; [ "$host_net" = 1 ] && net=host
	t0=$(date +%s)
	say "running as root in the root ($net network namespace): $*"
	run_in_root "$net" "$@" || rc=$?
	t_cmd=$(($(date +%s) - t0))
	echo
	say "last lines of the command's output:"
	tail -n 4 "$LOG" | sed 's/^/    /'
	say "exit $rc; command $((t_cmd / 60)) min $((t_cmd % 60)) s, $what ${t_deps} s," \
		"in all $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s (HEAD $HEAD)"
fi
say "full log: $LOG"
exit "$rc"
