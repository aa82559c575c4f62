"""Every directory pigeond creates for its spool survives a power cut: each one
is fsynced after it was made, and so is the directory holding its name.

pigeond runs under strace (-f -y: every thread, file descriptors with their
paths); the test reads which directories mkdir created (spool.dir, any
missing parents of it, RocksDB's shard-NNN) and which directories were
fsynced afterwards.  A missing fsync does not show without a power cut (the
page cache keeps the entry), which is why the system calls are checked; the
FUSE power-loss test (tests/powerfs) checks the outcome.
"""

import os
import re
import shutil
import signal
import time

import pytest

import helpers

STRACE = shutil.which("strace")
# `1234 mkdir("/a/b", 0755) = 0`, `1234 mkdirat(AT_FDCWD, "/a/b", 0755) = 0`
MKDIR = re.compile(r'^(\d+)\s+mkdir(?:at\(AT_FDCWD(?:<[^>]*>)?,)?\(?\s*"([^"]+)",.*\)\s+=\s+0$')
# `1234 fsync(7</a/b>) = 0`, possibly split into `<unfinished ...>` and `<... fsync resumed>`
SYNC = re.compile(r"^(\d+)\s+f(?:data)?sync\(\d+<([^>]+)>\)\s+=\s+0$")
SYNC_START = re.compile(r"^(\d+)\s+f(?:data)?sync\(\d+<([^>]+)> <unfinished \.\.\.>$")
SYNC_END = re.compile(r"^(\d+)\s+<\.\.\. f(?:data)?sync resumed>\)\s+=\s+0$")

pytestmark = pytest.mark.skipif(STRACE is None, reason="strace not installed "
                                "(tools/setup-deps.sh installs it)")


def parse_trace(path):
    """(created, synced): directories made, in order, and (line, dir) of each fsync."""
    created, synced, pending = [], [], {}
    with open(path, errors="replace") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\n")
            m = MKDIR.match(line)
            if m:
                created.append((n, m.group(2)))
                continue
            m = SYNC.match(line)
            if m:
                synced.append((n, m.group(2)))
                continue
            m = SYNC_START.match(line)
            if m:
                pending[m.group(1)] = m.group(2)
                continue
            m = SYNC_END.match(line)
            if m and m.group(1) in pending:
                synced.append((n, pending.pop(m.group(1))))
    return created, synced


def run_traced(srv, trace):
    """Starts srv under strace, waits for it to be ready, stops it with SIGTERM."""
    plain = srv.command

    def command(extra_overrides=None):
        # LeakSanitizer cannot run under ptrace and fails the exit of a sanitized
        # build; its reports come from the other tests, which run untraced.
        env = ["env", f"ASAN_OPTIONS={os.environ.get('ASAN_OPTIONS', '')}:detect_leaks=0"]
        return [STRACE, "-f", "-y", "-qq", "-o", str(trace),
                "-e", "trace=mkdir,mkdirat,fsync,fdatasync"] + env + plain(extra_overrides)

    srv.command = command
    srv.start(ready_timeout=60)
    # SIGTERM goes to pigeond itself (strace's child), so it stops as it always does.
    children = []
    deadline = time.monotonic() + 10
    while not children and time.monotonic() < deadline:
        for task in os.listdir(f"/proc/{srv.proc.pid}/task"):
            with open(f"/proc/{srv.proc.pid}/task/{task}/children") as f:
                children += [int(p) for p in f.read().split()]
        time.sleep(0.05)
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGTERM)
    assert srv.proc.wait(60) == 0, srv.log_since_start()


def assert_all_durable(created, synced, root, spool_dir):
    """Every directory created below root (EAL's runtime directory is no spool's) was
    fsynced after its mkdir, and so was its parent."""
    for line, d in created:
        if not d.startswith(f"{root}/"):
            continue
        parent = os.path.dirname(d.rstrip("/"))
        after = {p for n, p in synced if n > line}
        assert d in after, f"{d} was created but never fsynced afterwards"
        assert parent in after, f"{d} was created but its parent {parent} was never fsynced"
    for shard in range(helpers.SHARDS):
        assert f"{spool_dir}/shard-{shard:03d}" in {d for _, d in created}


def test_new_spool_dir_and_parents_are_synced(pigeond_factory, workdir):
    """spool.dir two levels below an existing directory: pigeond makes three levels."""
    spool_dir = workdir / "var" / "spool" / "pigeonair"
    srv = pigeond_factory(spool__dir=str(spool_dir))
    srv.spool_dir = workdir  # start() makes this one: leave the rest to pigeond
    trace = workdir / "strace.out"
    run_traced(srv, trace)
    created, synced = parse_trace(trace)
    made = [d for _, d in created]
    for d in (workdir / "var", workdir / "var" / "spool", spool_dir):
        assert str(d) in made, f"pigeond did not create {d}: {made}"
    assert_all_durable(created, synced, workdir, spool_dir)
    # The spool works: a restart finds the shards it made.
    srv.command = helpers.Pigeond.command.__get__(srv)
    srv.start()
    assert srv.stop() == 0


def test_existing_spool_dir_gets_its_shards_synced(pigeond_factory, workdir):
    """spool.dir made beforehand: the shard-NNN names in it are synced."""
    srv = pigeond_factory()
    srv.spool_dir.mkdir(parents=True)
    trace = workdir / "strace.out"
    run_traced(srv, trace)
    created, synced = parse_trace(trace)
    assert str(srv.spool_dir) not in [d for _, d in created]
    assert_all_durable(created, synced, workdir, srv.spool_dir)
