"""Screening an IPv6 client (docs/security.md, "Screening"), on the kernel
backend listening on [::1] (the DPDK stack's IPv6 is tested with its own
address plan elsewhere).

The DNSBL is asked for the client's 32 nibbles in reverse order (RFC 5782
2.4), so unbound's zone lists 1.0.0.0....0.0.bl.test for ::1: the client is
refused at connect naming the list, and its second connection is decided
from the worker's verdict cache (kept per /64) without a second query.
"""

import socket
import subprocess
import time

import pytest

import helpers
from test_screen import DNS_ADDR, Unbound, ctl, stats, wait_for

NIBBLES_LOOPBACK = ".".join(["1"] + ["0"] * 31)


def start_v6(workdir, dns_port):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    spool = workdir / "spool"
    spool.mkdir(exist_ok=True)
    log_path = workdir / "pigeond-v6.log"
    argv = [str(helpers.binary("pigeond")), "-o", f"listen=[::1]:{port}", "-o", "workers=1",
            "-o", "hostname=mx.pigeonair.test", "-o", "domains=example.com",
            "-o", f"spool.dir={spool}", "-o", "spool.shards=2", "-o", "limits.exempt=::1",
            "-o", f"dns.servers={DNS_ADDR}:{dns_port}", "-o", "dns.timeout=5000",
            "-o", "screen.dnsbl_sites=bl.test=127.0.0.[2..11]*2", "-o", "screen.threshold=2"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + helpers.READY_TIMEOUT
    while f"ready listen=[::1]:{port}" not in log_path.read_text(errors="replace"):
        assert proc.poll() is None, log_path.read_text(errors="replace")
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.05)
    return proc, port, spool


def first_reply_v6(port):
    with socket.create_connection(("::1", port), timeout=10) as s:
        s.settimeout(10)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(512)
            assert chunk, f"closed before a reply: {data!r}"
            data += chunk
        return data.split(b"\r\n")[0].decode()


class Spool:
    """What test_screen's ctl() and stats() need of a pigeond: its control socket's directory."""

    def __init__(self, spool):
        self.spool_dir = spool


@pytest.fixture
def unbound_v6(workdir):
    u = Unbound(workdir)
    yield u
    u.stop()


def test_ipv6_client_screened_by_nibbles(workdir, unbound_v6):
    unbound = unbound_v6
    name = f"{NIBBLES_LOOPBACK}.bl.test"
    unbound.start({"bl.test": {name: "127.0.0.2"}})
    proc, port, spool = start_v6(workdir, unbound.port)
    try:
        line = first_reply_v6(port)
        assert line.startswith("550 5.7.1 Service unavailable; client [::1] blocked using "
                               "bl.test"), line
        line = first_reply_v6(port)
        assert line.startswith("550 5.7.1"), line
        p = Spool(spool)
        wait_for(lambda: stats(p)["total"]["screen"]["listed"] >= 2, "two refusals")
        assert stats(p)["total"]["screen"]["cached"] >= 1
        assert unbound.queries(name) == 1, unbound.log.read_text()
        assert "dnsbl" in ctl(p, "stats")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=helpers.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
