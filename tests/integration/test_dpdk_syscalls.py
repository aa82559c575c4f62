"""Rule 3 of DEVELOPERS.md, checked on a running pigeond: a poll-mode worker
lcore makes no system call per message.

pigeond runs on the DPDK backend (a TAP in a namespace of the test's own) with
dpdk.idle_sleep_us=0, so its worker never sleeps either; after a warm-up
(first allocations, the log ring, the spool's first completions) strace
attaches to the worker lcore's thread alone and counts its system calls while
smtp-source sends MESSAGES messages over 10 sessions.  A call per message
(a log write, a malloc that maps memory, an eventfd ring, a futex) would show
as hundreds.

The TAP vdev itself is a kernel interface: DPDK's net_tap PMD receives and
sends with readv(2)/writev(2) on the TAP's file descriptor and is woken by
SIGIO (hence rt_sigreturn).  Those are the port's I/O, not pigeond's, and do
not exist on a NIC or on memif (shared memory), so they are left out of the
count; every other call is counted.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from dpdk_env import DpdkPigeond, is_root

STRACE = shutil.which("strace")
SMTP_SOURCE = "/usr/sbin/smtp-source"
pytestmark = [
    pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)"),
    pytest.mark.skipif(STRACE is None, reason="strace not installed"),
]

MESSAGES = 400
SENDER = "sender@example.org"
RCPT = "user@example.com"


def worker_tid(pid):
    """The thread id of pigeond's first worker lcore (DPDK 22.11 names it rte-worker-N)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        comm = (task / "comm").read_text().strip()
        if comm.startswith("rte-worker"):
            return int(task.name)
    raise AssertionError(f"no rte-worker thread in pigeond {pid}")


def send(srv, n):
    r = srv.run([SMTP_SOURCE, "-s", "10", "-m", str(n), "-l", "4096", "-f", SENDER, "-t",
                 RCPT, f"{srv.host}:{srv.port}"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_worker_makes_no_syscall_per_message(binaries, workdir):
    with DpdkPigeond(binaries, workdir, overrides={"dpdk.idle_sleep_us": "0",
                                                   "workers": "1"}) as srv:
        pid = srv.proc.pid
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "pigeond"
        send(srv, 50)  # warm-up: first allocations, caches, rings
        tid = worker_tid(pid)
        out = Path(workdir) / "strace.txt"
        tracer = subprocess.Popen([STRACE, "-qq", "-c", "-o", str(out), "-p", str(tid)],
                                  stdin=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # attached before the first message
            t0 = time.monotonic()
            send(srv, MESSAGES)
            elapsed = time.monotonic() - t0
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        accepted = srv.log().count(": accepted client=")
        summary = out.read_text()
        per_call = {m.group(2): int(m.group(1)) for m in re.finditer(
            r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", summary, re.M)}
        assert per_call, summary
        assert per_call.get("writev", 0) >= MESSAGES, summary  # strace saw the worker work
        ours = {k: v for k, v in per_call.items()
                if k not in ("readv", "writev", "rt_sigreturn", "total")}
        assert accepted >= 50 + MESSAGES, srv.log()[-2000:]
        # Bounded by the sessions (10 here) and time, never by the messages.
        assert sum(ours.values()) < MESSAGES // 20, (
            f"worker thread made {ours} system calls for {MESSAGES} messages "
            f"in {elapsed:.1f}s:\n{summary}")


def test_worker_makes_no_syscall_per_screened_connection(binaries, workdir):
    """Screening on, nothing cacheable (every answer has TTL 0): each of the
    connections is looked up in two lists through the worker's rings and the
    dns thread, and still the worker makes no system call of its own."""
    from test_screen import DNS_ADDR, Unbound

    dns_port = helpers.free_port()  # the namespace is new: any port is free in it
    with DpdkPigeond(binaries, workdir, overrides={
            "dpdk.idle_sleep_us": "0", "workers": "1",
            "dns.servers": f"{DNS_ADDR}:{dns_port}", "dns.timeout": "5000",
            "screen.dnsbl_sites": "bl.test=127.0.0.[2..11]*2 other.test*2",
            "screen.threshold": "2"}) as srv:
        unbound = Unbound(Path(workdir))
        try:
            with srv.netns.entered():
                unbound.start({"bl.test": {}, "other.test": {}}, port=dns_port, ttl=0)
            pid = srv.proc.pid
            send(srv, 50)  # warm-up
            tid = worker_tid(pid)
            out = Path(workdir) / "strace-screen.txt"
            tracer = subprocess.Popen([STRACE, "-qq", "-c", "-o", str(out), "-p", str(tid)],
                                      stdin=subprocess.DEVNULL)
            try:
                time.sleep(1.0)
                send(srv, MESSAGES)
            finally:
                tracer.send_signal(signal.SIGINT)
                tracer.wait(timeout=30)
            summary = out.read_text()
            per_call = {m.group(2): int(m.group(1)) for m in re.finditer(
                r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", summary,
                re.M)}
            assert per_call.get("writev", 0) >= MESSAGES, summary
            ours = {k: v for k, v in per_call.items()
                    if k not in ("readv", "writev", "rt_sigreturn", "total")}
            assert sum(ours.values()) < MESSAGES // 20, (
                f"worker thread made {ours} system calls for {MESSAGES} screened messages:\n"
                f"{summary}")
            # Every connection was looked up: unbound saw the queries, none from a cache.
            bl = reversed_peer("bl.test")
            assert unbound.queries(bl) >= 50, unbound.log.read_text()[-2000:]
        finally:
            unbound.stop()


def reversed_peer(zone):
    from dpdk_env import PEER_IP
    return ".".join(reversed(PEER_IP.split("."))) + "." + zone
