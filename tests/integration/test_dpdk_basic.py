"""The DPDK backend end to end: pigeond on a TAP vdev in its own network
namespace, Linux's TCP on the TAP's kernel side as the client (dpdk_env.py).

ping and ARP, swaks, smtplib with a 1 MiB message checked by digest, hundreds
of concurrent smtp-source sessions, kill -9 and restart losing nothing that
got 250, a clean SIGTERM, two workers with software steering, and the
connection limit.  Needs root; skipped otherwise.
"""

import concurrent.futures as cf
import hashlib
import os
import re
import smtplib
import socket
import time

import pytest

import helpers
from dpdk_env import DpdkPigeond, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

SENDER = "sender@example.org"
RCPT = "user@example.com"


@pytest.fixture
def dpdk(binaries, workdir):
    with DpdkPigeond(binaries, workdir) as srv:
        yield srv


def stored(srv):
    """{queue id: stored bytes without the Received: header}, pigeond stopped."""
    out = {}
    for e in helpers.spool_ls(srv.spool_dir):
        if e["id"] not in out:
            data = helpers.spool_show(srv.spool_dir, e["id"], e["shard"])
            out[e["id"]] = helpers.strip_received(data)
    return out


def queued_id(reply):
    m = re.search(rb"queued as (\S+)", reply)
    assert m, reply
    return m.group(1).decode()


def test_ping_and_arp(dpdk):
    r = dpdk.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", dpdk.host], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    mac = re.search(r"mac ([0-9A-F:]{17})", dpdk.log()).group(1).lower()
    r = dpdk.run(["ip", "neigh", "show", dpdk.host])
    assert mac in r.stdout, r.stdout
    # Forget it and ask again: the engine answers ARP requests, not only once.
    dpdk.run(["ip", "neigh", "flush", "dev", dpdk.netns.iface])
    r = dpdk.run(["ping", "-c", "1", "-W", "2", dpdk.host], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert mac in dpdk.run(["ip", "neigh", "show", dpdk.host]).stdout
    assert dpdk.stop() == 0
    assert dpdk.total("icmp_echo") >= 4
    assert dpdk.total("arp_replies") >= 2


def test_swaks(dpdk):
    r = dpdk.run(["swaks", "--server", f"{dpdk.host}:{dpdk.port}", "--from", SENDER, "--to",
                  RCPT, "--body", "over the user-space stack\n", "--timeout", "20"], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0" in r.stdout
    assert dpdk.stop() == 0
    bodies = list(stored(dpdk).values())
    assert len(bodies) == 1 and b"over the user-space stack" in bodies[0]


def test_smtplib_one_mebibyte(dpdk):
    line = b"".join(bytes([33 + (i % 90)]) for i in range(76)) + b"\r\n"
    body = b"Subject: big\r\n\r\n" + b"".join(
        str(i).encode() + line for i in range(1024 * 1024 // 80))
    assert len(body) >= 1024 * 1024
    with dpdk.netns.entered():
        with smtplib.SMTP(dpdk.host, dpdk.port, timeout=60) as s:
            s.ehlo("client.example.org")
            s.mail(SENDER)
            s.rcpt(RCPT)
            code, reply = s.data(body)
            assert code == 250, reply
    qid = queued_id(reply)
    assert dpdk.stop() == 0
    data = stored(dpdk)[qid]
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(body + b"\r\n").hexdigest() or \
        hashlib.sha256(data).hexdigest() == hashlib.sha256(body).hexdigest()


def test_smtp_source_concurrent_sessions(dpdk):
    n, sessions = 2000, 200
    r = dpdk.run(["smtp-source", "-c", "-s", str(sessions), "-m", str(n), "-l", "2048",
                  "-f", SENDER, "-t", RCPT, f"{dpdk.host}:{dpdk.port}"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dpdk.stop() == 0
    entries = helpers.spool_ls(dpdk.spool_dir)
    assert len({e["id"] for e in entries}) == n
    assert dpdk.total("conns") >= n


def test_kill9_restart_loses_nothing_that_got_250(dpdk):
    acked = {}

    def send(i):
        body = f"Subject: m{i}\r\n\r\nmessage {i} {os.urandom(8).hex()}\r\n".encode()
        with smtplib.SMTP(dpdk.host, dpdk.port, timeout=30) as s:
            s.ehlo("client.example.org")
            s.mail(SENDER)
            s.rcpt(RCPT)
            code, reply = s.data(body)
            assert code == 250
            return queued_id(reply), body

    with dpdk.netns.entered():
        with cf.ThreadPoolExecutor(16) as ex:
            for qid, body in ex.map(send, range(200)):
                acked[qid] = body
    dpdk.kill()
    dpdk.start()
    with dpdk.netns.entered():
        qid, body = send(1000)
        acked[qid] = body
    assert dpdk.stop() == 0
    got = stored(dpdk)
    missing = [q for q in acked if q not in got]
    assert not missing, f"{len(missing)} messages that got 250 are gone"
    for q, body in acked.items():
        assert got[q] == body, q


def test_sigterm_answers_and_exits_cleanly(dpdk):
    with dpdk.netns.entered():
        s = smtplib.SMTP(dpdk.host, dpdk.port, timeout=10)
        s.ehlo("client.example.org")
    assert dpdk.stop() == 0
    assert "stopped" in dpdk.log()


def test_two_workers_software_steering(binaries, workdir):
    """net_tap has no usable RSS: segments reaching the wrong worker go to the owner over a ring."""
    with DpdkPigeond(binaries, workdir, {"workers": "2"}) as srv:
        n = 400
        r = srv.run(["smtp-source", "-c", "-s", "40", "-m", str(n), "-l", "1024",
                     "-f", SENDER, "-t", RCPT, f"{srv.host}:{srv.port}"], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert srv.stop() == 0
        c = srv.counters()
        assert sorted(c) == [0, 1], c
        # Both workers served connections, and frames crossed between them.
        assert all(w["conns"] > 0 for w in c.values()), c
        assert srv.total("steered_in") > 0 and srv.total("steered_in") == srv.total("steered_out")
        assert srv.total("drop_steer_ring_full") == 0
        assert len({e["id"] for e in helpers.spool_ls(srv.spool_dir)}) == n


def test_connection_limit_resets_and_recovers(binaries, workdir):
    """dpdk.max_conns per worker: the connection beyond it is reset, and once one
    closes a new client is served again."""
    with DpdkPigeond(binaries, workdir, {"dpdk.max_conns": "16"}) as srv:
        held = []
        with srv.netns.entered():
            for _ in range(16):
                s = socket.create_connection((srv.host, srv.port), timeout=10)
                assert s.recv(512).startswith(b"220")
                held.append(s)
            # Reset once the handshake completes: seen at connect() or at the first read.
            with pytest.raises(ConnectionResetError):
                with socket.create_connection((srv.host, srv.port), timeout=10) as extra:
                    if not extra.recv(512):
                        raise ConnectionResetError("closed without a banner")
            last = held.pop()
            last.sendall(b"QUIT\r\n")
            assert last.recv(512).startswith(b"221")
            last.close()  # its TCB goes (into a compact TIME_WAIT entry): room again
            time.sleep(0.5)
            r = srv.run(["swaks", "--server", f"{srv.host}:{srv.port}", "--from", SENDER,
                         "--to", RCPT, "--timeout", "20"], timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            for s in held:
                s.close()
        assert srv.stop() == 0
        assert srv.total("drop_syn_conn_limit") >= 1
