"""pigeond under systemd (core/service.h, contrib/systemd/pigeond.service).

systemd's side is played by the test: $NOTIFY_SOCKET is a datagram socket
of its own and $WATCHDOG_USEC a short interval, as systemd sets them for a
Type=notify unit with WatchdogSec.  pigeond must say READY=1 once it serves,
RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, and ping
WATCHDOG=1 only while every worker and committer makes progress: a worker
thread held still (ptrace-stopped, the rest of the process running) stops
the pings, and they come back when it runs again.  The unit file itself is
checked with `systemd-analyze verify`.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "pigeond.service"
WATCHDOG_USEC = 2_000_000


class Notifications:
    """The socket systemd would read sd_notify(3) messages from."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {key: value})

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(l.split("=", 1) for l in data.splitlines() if "=" in l)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key, value="1", timeout=30.0, since=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (_, m) in enumerate(self.messages[since:], since):
                if m.get(key) == value:
                    return i
            self.pump(0.2)
        raise AssertionError(f"no {key}={value} within {timeout}s: {self.messages[since:]}")

    def pings_between(self, t0, t1):
        return [t for t, m in self.messages if m.get("WATCHDOG") == "1" and t0 <= t <= t1]

    def close(self):
        self.sock.close()


@pytest.fixture
def notified(pigeond_factory, workdir):
    notes = Notifications(workdir / "notify.socket")
    p = pigeond_factory(workers=2)
    orig = p.command
    env = [f"NOTIFY_SOCKET={workdir / 'notify.socket'}", f"WATCHDOG_USEC={WATCHDOG_USEC}"]
    p.command = lambda extra=None: ["env", *env, *orig(extra)]
    yield p, notes
    notes.close()


def test_ready_reload_stopping_and_pings(notified):
    p, notes = notified
    p.start()
    i = notes.wait_for("READY")
    assert notes.messages[i][1]["STATUS"].startswith(f"accepting on {p.host}:{p.port} "), \
        notes.messages[i]
    assert "watchdog: every 2000 ms, over 6 workers and committers" in p.log()
    t0 = time.monotonic()
    notes.pump(3.5)
    assert len(notes.pings_between(t0, time.monotonic())) >= 2, notes.messages

    n = len(notes.messages)
    p.signal(signal.SIGHUP)
    r = notes.wait_for("RELOADING", since=n)
    assert int(notes.messages[r][1]["MONOTONIC_USEC"]) > 0
    notes.wait_for("READY", since=r)
    n = len(notes.messages)
    p.proc.send_signal(signal.SIGTERM)
    notes.wait_for("STOPPING", since=n, timeout=15)
    assert p.stop() == 0


libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


def thread_named(pid, prefix):
    for tid in os.listdir(f"/proc/{pid}/task"):
        if Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith(prefix):
            return int(tid)
    raise AssertionError(f"no thread {prefix}* in pigeond {pid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="ptrace of pigeond's threads needs root")
def test_pings_stop_while_a_worker_is_held(notified):
    p, notes = notified
    p.start()
    notes.wait_for("READY")
    notes.pump(1.5)
    tid = thread_named(p.proc.pid, "rte-worker-")
    # Only this thread stops (a ptrace-stop): main, the other worker and the
    # committers keep running, so only the watchdog's view of it can stop the pings.
    ptrace(PTRACE_SEIZE, tid)
    try:
        ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, WALL)
        held = time.monotonic()
        notes.pump(WATCHDOG_USEC / 1e6 * 2)
        # At most the ping already due when the thread stopped.
        late = notes.pings_between(held + WATCHDOG_USEC / 1e6 / 2 + 1.1, time.monotonic())
        assert late == [], f"pings while a worker was held: {late}"
        assert p.wait_for_log(r"watchdog: thread rte-worker-\d+ made no progress", timeout=5)
    finally:
        ptrace(PTRACE_DETACH, tid)
    resumed = time.monotonic()
    notes.pump(3.0)
    assert notes.pings_between(resumed, time.monotonic()), notes.messages[-5:]
    assert p.wait_for_log(r"watchdog: every worker and committer alive again", timeout=5)
    assert p.stop() == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_verifies(workdir):
    """The unit as shipped, with its binary paths pointed at this build's."""
    unit = workdir / "pigeond.service"
    unit.write_text(UNIT.read_text().replace("/usr/sbin/pigeond", str(helpers.binary("pigeond"))))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecStartPre=/usr/sbin/pigeond -t -c /etc/pigeonair/pigeond.conf",
                 "ExecStart=/usr/sbin/pigeond -c /etc/pigeonair/pigeond.conf",
                 "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "CapabilityBoundingSet=", "LimitNOFILE="):
        assert line in text, line
