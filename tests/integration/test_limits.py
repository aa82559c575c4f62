"""Abuse limits against a running pigeond (docs/security.md, "Abuse limits").

Each limit is hit for real: the client gets the documented reply and is cut
off, and the refusal's counter moves in both `pigeonctl stats` and the
Prometheus metrics.  Timeouts are set to a few seconds so that slowloris and
the banner delay run in test time.
"""

import json
import re
import socket
import subprocess
import threading
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends


def ctl(p, *args):
    cmd = [str(helpers.binary("pigeonctl")), *args, "--socket", str(p.spool_dir / "pigeond.sock")]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=helpers.CTL_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode()


def refused_stats(p):
    reply = json.loads(ctl(p, "stats", "--json"))
    assert reply["ok"] is True, reply
    return reply["result"]["total"]["refused"]


def refused_metric(p, reason):
    text = ctl(p, "metrics")
    vals = re.findall(r'^pigeonair_refusals_total\{worker="\d+",reason="%s"\} (\d+)$' % reason,
                      text, re.M)
    assert vals, f"no pigeonair_refusals_total for {reason}"
    return sum(int(v) for v in vals)


def assert_counted(p, reason, at_least=1):
    """The refusal shows in pigeonctl stats (JSON and text) and in the metrics."""
    deadline = time.monotonic() + 5
    while refused_stats(p)[reason] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refused_stats(p)[reason] >= at_least
    assert refused_metric(p, reason) >= at_least
    assert re.search(r"^\s+%s\s+[1-9]" % reason, ctl(p, "stats"), re.M)


def start(pigeond_factory, **settings):
    # The helpers exempt the tests' shared client address; these tests want it limited.
    settings.setdefault("limits__exempt", "")
    p = pigeond_factory(**settings).start()
    wait_probe_closed(p)
    return p


def wait_probe_closed(p, timeout=10.0):
    """The factory's readiness probe (one connect and close) is counted against
    the client's address until its worker sees the close; under ASan that can
    come after the test's first connections, so wait for the worker to have
    accepted and freed it (conns_open is dropped after the per-address share)."""
    deadline = time.monotonic() + timeout
    while True:
        total = json.loads(ctl(p, "stats", "--json"))["result"]["total"]
        if total["conns_total"] >= 1 and total["conns_open"] == 0:
            return
        assert time.monotonic() < deadline, f"probe still open: {total}"
        time.sleep(0.02)


def banner(c):
    code, text = c.reply()
    assert code == 220, text
    return text


def assert_closed(c, timeout=5.0):
    assert c.at_eof(timeout), f"still open; unread {c.buf!r}"


def test_conn_per_ip(pigeond_factory, backend):
    workers = 2 if backend.name == "kernel" else 1  # one client's flows on two workers
    p = start(pigeond_factory, limits__conn_per_ip=2, workers=workers)
    held = [p.raw(), p.raw()]
    for c in held:
        banner(c)
    with p.raw() as c:
        code, text = c.reply()
        assert code == 421, text
        assert text[0] == f"4.7.0 {helpers.HOSTNAME} Error: too many connections from " \
                          f"{backend.client_addr}"
        assert_closed(c)
    assert_counted(p, "conn_per_ip")
    # One leaves: there is room again.
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:
        with p.raw() as c:
            code, text = c.reply()
            if code == 220 or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert code == 220, text
    for c in held:
        c.close()


def test_conn_total(pigeond_factory):
    p = start(pigeond_factory, limits__conn_total=2)
    held = [p.raw(), p.raw()]
    for c in held:
        banner(c)
    with p.raw() as c:
        code, text = c.reply()
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Too many connections, try "
                                        "again later")
        assert_closed(c)
    assert_counted(p, "conn_total")
    for c in held:
        c.close()


def test_conn_rate_per_ip(pigeond_factory):
    p = start(pigeond_factory, limits__conn_rate_per_ip=3)
    # Ten attempts at once (all connected before any reply is read): at most three
    # per second are admitted, so even spread over three seconds one is refused.
    time.sleep(1.1)  # past the second of the readiness probe's connection (it counts too)
    clients = [p.raw() for _ in range(10)]
    codes = []
    for c in clients:
        code, text = c.reply()
        codes.append(code)
        if code == 421:
            assert "too many connections per second from" in text[0]
            assert_closed(c)
        c.close()
    assert codes.count(421) >= 1, codes
    assert codes.count(220) >= 3, codes
    assert_counted(p, "conn_rate")


def test_errors_per_session(pigeond_factory):
    p = start(pigeond_factory, smtp__max_errors=3)
    with p.raw() as c:
        c.greet()
        assert c.cmd("BOGUS")[0] == 500
        assert c.cmd("MAIL FROM:<a@b")[0] == 501
        c.send(b"VRFY\r\n")
        assert c.reply()[0] == 501
        code, text = c.reply()
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Too many errors")
        assert_closed(c)
    assert_counted(p, "too_many_errors")


def test_commands_per_session(pigeond_factory):
    p = start(pigeond_factory, limits__commands=5)
    with p.raw() as c:
        c.greet()  # EHLO is the first
        for _ in range(4):
            assert c.cmd("NOOP")[0] == 250
        code, text = c.cmd("NOOP")
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Error: too many commands")
        assert_closed(c)
    assert_counted(p, "too_many_commands")


def test_pipelined_input_beyond_the_bound_is_refused(pigeond_factory):
    """Thousands of pipelined commands: answered up to limits.commands, then 421 and close."""
    p = start(pigeond_factory, limits__commands=1000)
    with p.raw(timeout=30) as c:
        banner(c)
        sender = threading.Thread(target=lambda: _send_quietly(c, b"NOOP\r\n" * 20000),
                                  daemon=True)
        sender.start()
        for _ in range(1000):
            assert c.reply()[0] == 250
        code, text = c.reply()
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Error: too many commands")
        assert_closed(c, timeout=10)
        sender.join(10)
    assert_counted(p, "too_many_commands")


def _send_quietly(c, data):
    try:
        c.send(data)
    except OSError:
        pass  # the server hung up: that is the point


def test_client_that_never_reads_is_dropped(pigeond_factory, backend):
    """It pipelines without reading: pigeond stops reading it, and drops it at the timeout
    (the 421 that follows cannot reach it either: closed, or reset, one timeout later)."""
    p = start(pigeond_factory, smtp__command_timeout=3, limits__commands=0)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(30)
    s.connect((p.host, p.port))
    s.settimeout(1)
    t0 = time.monotonic()
    sent = 0
    gone = False
    chunk = b"NOOP\r\n" * 1000
    while time.monotonic() - t0 < 40:
        try:
            sent += s.send(chunk)
        except socket.timeout:
            continue  # the server does not read: our send buffer is full
        except OSError:
            gone = True
            break
    s.close()
    assert gone, f"still connected after {time.monotonic() - t0:.1f}s, {sent} octets sent"
    assert p.wait_for_log(r"reason=timeout", timeout=5)


def test_early_talker_refused(pigeond_factory):
    p = start(pigeond_factory, smtp__banner_delay=1500)
    with p.raw() as c:
        c.send(b"EHLO spambot.example\r\n")
        code, text = c.reply()
        assert (code, text[0]) == (554, f"5.5.1 {helpers.HOSTNAME} Protocol error: talked "
                                        "before the greeting")
        assert_closed(c)
    assert_counted(p, "early_talker")
    # A client that waits gets the banner after the delay and is served.
    with p.raw() as c:
        t0 = time.monotonic()
        banner(c)
        assert time.monotonic() - t0 >= 1.3
        code, caps = c.cmd("EHLO patient.example")
        assert code == 250, caps
        assert c.cmd("QUIT")[0] == 221


def _trickle(c, data, interval):
    """Sends data one octet at a time; returns seconds until the server hung up (or None)."""
    t0 = time.monotonic()
    for b in data:
        try:
            c.send(bytes([b]))
        except OSError:
            return time.monotonic() - t0
        c.sock.settimeout(interval)
        try:
            chunk = c.sock.recv(4096)
            if not chunk:
                return time.monotonic() - t0
            c.buf += chunk
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
    return None


def test_slowloris_command_dropped_at_timeout(pigeond_factory):
    p = start(pigeond_factory, smtp__command_timeout=3)
    with p.raw() as c:
        banner(c)
        # One octet every 0.4 s, never a whole line: the bytes must not hold the timeout off.
        took = _trickle(c, b"EHLO " + b"a" * 200, 0.4)
        assert took is not None, "still connected after 80 s of trickling"
        assert took < 8, f"dropped only after {took:.1f}s (command timeout 3s)"
        assert re.match(rb"421 4\.4\.2 \S+ Error: timeout exceeded", c.buf), c.buf
    assert_counted(p, "timeout")


def test_slowloris_data_dropped_at_timeout(pigeond_factory):
    p = start(pigeond_factory, smtp__data_timeout=3)
    with p.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<slow@example.org>")[0] == 250
        assert c.cmd(f"RCPT TO:<user@{helpers.DOMAINS[0]}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        took = _trickle(c, b"Subject: slow\r\n\r\n" + b"x" * 200, 0.4)
        assert took is not None and took < 8, took
        assert b"421 4.4.2" in c.buf
    assert_counted(p, "timeout")
    assert p.accepted_lines() == []


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: mx.example\r\n\r\n",
    b"POST /cgi-bin/form HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    b"CONNECT mail.example:25 HTTP/1.1\r\n\r\n",
], ids=["get", "post", "connect"])
def test_http_request_refused(pigeond_factory, request_bytes):
    p = start(pigeond_factory)
    with p.raw() as c:
        banner(c)
        c.send(request_bytes)
        code, text = c.reply()
        assert (code, text[0]) == (521, f"5.7.0 {helpers.HOSTNAME} Error: HTTP request on an "
                                        "SMTP port")
        assert_closed(c)
    assert_counted(p, "http_request")
