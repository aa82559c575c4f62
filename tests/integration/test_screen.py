"""Connection screening against DNS lists (docs/security.md, "Screening").

A real DNS server, Debian's unbound, serves a DNSBL zone and a DNSWL zone
from local-data written by the test, on its own loopback address and port
(inside the test's namespace on the DPDK backend, where pigeond's resolver
thread asks it).  The client's address is listed as each test needs: a
listed client gets 550 in place of the banner, an allow-listed one is
greeted, a dead server is answered by screen.temporary_action within
dns.timeout, and a client seen again is decided from the caches without a
second query reaching the server (unbound logs every query it gets).
"""

import json
import re
import socket
import struct
import subprocess
import time

import pytest

import helpers

pytestmark = pytest.mark.both_backends

DNS_ADDR = "127.0.53.1"
SOA = "{z}. {ttl} IN SOA ns.{z}. hostmaster.{z}. 1 3600 600 86400 {ttl}"


def reversed_name(addr, zone):
    return ".".join(reversed(addr.split("."))) + "." + zone


def dns_query(port, name, timeout=1.0):
    """One A query over UDP; the rcode, or None without an answer."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", 0x5053, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, (DNS_ADDR, port))
        try:
            return s.recv(512)[3] & 0xF
        except socket.timeout:
            return None


class Unbound:
    """unbound -d with local zones only; every query it receives is logged."""

    def __init__(self, workdir):
        self.dir = workdir / "unbound"
        self.dir.mkdir(exist_ok=True)
        self.conf = self.dir / "unbound.conf"
        self.log = self.dir / "queries.log"
        self.proc = None
        self.port = None

    def start(self, records, port=None, ttl=300, extra=()):
        """records: {zone: {name: "A-address"}}; each zone gets an SOA; every record and
        negative answer has TTL ttl (0: nothing may be cached).  extra: more server:
        lines (other records, zones)."""
        self.port = port or helpers.free_port(DNS_ADDR)
        lines = [
            "server:",
            f"    interface: {DNS_ADDR}@{self.port}",
            "    do-daemonize: no", '    username: ""', '    chroot: ""',
            f'    directory: "{self.dir}"', '    pidfile: ""', "    use-syslog: no",
            f'    logfile: "{self.log}"', "    log-queries: yes", "    verbosity: 0",
            "    access-control: 127.0.0.0/8 allow", "    do-ip6: no",
            '    module-config: "iterator"', "    num-threads: 1",
        ]
        for zone, names in records.items():
            lines.append(f'    local-zone: "{zone}." static')
            lines.append(f'    local-data: "{SOA.format(z=zone, ttl=ttl)}"')
            for name, a in names.items():
                lines.append(f'    local-data: "{name}. {ttl} IN A {a}"')
        lines += [f"    {line}" for line in extra]
        lines += ["remote-control:", "    control-enable: no"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["/usr/sbin/unbound", "-d", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while dns_query(self.port, "probe.invalid", timeout=0.2) is None:
            assert self.proc.poll() is None, f"unbound exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "unbound did not answer within 10 s"
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def queries(self, name):
        """How many times unbound was asked for name."""
        text = self.log.read_text() if self.log.exists() else ""
        return len(re.findall(r" info: \S+ %s\. A IN$" % re.escape(name), text, re.M))


@pytest.fixture
def unbound(workdir):
    u = Unbound(workdir)
    yield u
    u.stop()


def ctl(p, *args):
    r = helpers.run_ctl([*args, "--socket", p.spool_dir / "pigeond.sock"])
    return r.stdout.decode()


def stats(p):
    reply = json.loads(ctl(p, "stats", "--json"))
    assert reply["ok"] is True, reply
    return reply["result"]


def metric(p, pattern):
    vals = re.findall(r"^%s (\d+)$" % pattern, ctl(p, "metrics"), re.M)
    assert vals, f"no metric {pattern}"
    return sum(int(v) for v in vals)


def first_reply(p, timeout=10.0):
    """Connects as the backend's client; the first reply line and how long it took."""
    t = time.monotonic()
    with helpers.RawSMTP(p.host, p.port, timeout=timeout) as c:
        code, lines = c.reply()
        text = lines[0]
        took = time.monotonic() - t
        if code == 220:
            c.cmd("QUIT")
        else:
            assert c.at_eof(), "not closed after the refusal"
    return code, text, took


def screened(pigeond_factory, dns_port, **settings):
    s = {
        "dns.servers": f"{DNS_ADDR}:{dns_port}",
        # Ample for a local unbound on a loaded machine: a timeout would be a fallback.
        "dns.timeout": "5000",
        "screen.dnsbl_sites": "bl.test=127.0.0.[2..11]*2 other.test=127.0.0.[2..11]*2",
        "screen.threshold": "2",
    }
    s.update({k.replace("__", "."): v for k, v in settings.items()})
    return pigeond_factory(**{k.replace(".", "__"): v for k, v in s.items()}).start()


def wait_for(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_listed_client_refused_at_connect(pigeond_factory, backend, unbound):
    client = backend.client_addr
    # bl.test lists the client in its filter; other.test answers outside it (127.0.0.1)
    unbound.start({"bl.test": {reversed_name(client, "bl.test"): "127.0.0.2"},
                   "other.test": {reversed_name(client, "other.test"): "127.0.0.1"}})
    p = screened(pigeond_factory, unbound.port)
    code, text, _ = first_reply(p)
    assert code == 550, text
    assert text.startswith(f"5.7.1 Service unavailable; client [{client}] blocked using bl.test"), text
    p.wait_for_log(r"refused client=%s reason=dnsbl detail=bl.test" % re.escape(client))
    total = stats(p)["total"]
    assert total["refused"]["dnsbl"] >= 1
    assert total["screen"]["listed"] >= 1
    assert total["screen"]["bl.test"]["listed"] >= 1
    assert total["screen"]["other.test"]["listed"] == 0
    assert total["screen"]["other.test"]["clear"] >= 1
    assert metric(p, r'pigeonair_refusals_total\{worker="\d+",reason="dnsbl"\}') >= 1
    assert metric(p, r'pigeonair_screen_list_answers_total\{worker="\d+",list="bl.test",'
                     r'kind="dnsbl",result="listed"\}') >= 1
    assert re.search(r"^\s+dnsbl\s+[1-9]", ctl(p, "stats"), re.M)
    # screen.allow, by reload: the client is no longer looked up, and greeted
    p.settings["screen.allow"] = client
    p.write_config(p.settings)
    ctl(p, "reload")
    code, text, _ = first_reply(p)
    assert code == 220, text
    assert stats(p)["total"]["screen"]["allowed"] >= 1


def test_proxied_client_screened(pigeond_factory, backend, unbound):
    """The client a trusted balancer's PROXY header names is screened, not the balancer."""
    listed = "192.0.2.7"
    unbound.start({"bl.test": {reversed_name(listed, "bl.test"): "127.0.0.3"},
                   "other.test": {}})
    p = screened(pigeond_factory, unbound.port, smtp__trusted_proxies=backend.client_addr,
                 smtp__proxy_protocol="true")
    with helpers.RawSMTP(p.host, p.port) as c:
        c.send(f"PROXY TCP4 {listed} 198.51.100.1 56324 25\r\n".encode())
        code, lines = c.reply()
        assert code == 550, lines
        assert f"client [{listed}] blocked using bl.test" in lines[0], lines
    # a client the lists do not name, through the same balancer, is greeted
    with helpers.RawSMTP(p.host, p.port) as c:
        c.send(b"PROXY TCP4 192.0.2.8 198.51.100.1 56325 25\r\n")
        code, lines = c.reply()
        assert code == 220, lines


def test_dnswl_listed_client_passes(pigeond_factory, backend, unbound):
    client = backend.client_addr
    unbound.start({"bl.test": {reversed_name(client, "bl.test"): "127.0.0.2"},
                   "wl.test": {reversed_name(client, "wl.test"): "127.0.9.3"}})
    p = screened(pigeond_factory, unbound.port,
                 screen__dnswl_sites="wl.test=127.0.[0..255].[1..3]*-5")
    code, text, _ = first_reply(p)
    assert code == 220, text
    total = stats(p)["total"]
    assert total["screen"]["allowlisted"] >= 1
    assert total["screen"]["wl.test"]["listed"] >= 1
    assert total["refused"]["dnsbl"] == 0
    # A reload that drops the allow list applies at once: the cached verdict is forgotten.
    p.settings["screen.dnswl_sites"] = ""
    p.write_config(p.settings)
    ctl(p, "reload")
    code, text, _ = first_reply(p)
    assert code == 550, text


def test_dns_down_fallback_without_hang(pigeond_factory, backend, unbound):
    # Nothing answers on this port: every lookup times out (or is refused).
    port = helpers.free_port(DNS_ADDR)
    p = screened(pigeond_factory, port, dns__timeout="500")
    code, text, took = first_reply(p)
    assert code == 220, text  # screen.temporary_action=accept (the default)
    assert took < 10.0, f"the banner took {took:.1f} s with dns.timeout=500"
    wait_for(lambda: stats(p)["total"]["screen"]["fallback"] >= 1, "no fallback counted")
    # tempfail, by reload: 421 at once once the lists cannot be asked
    p.settings["screen.temporary_action"] = "tempfail"
    p.write_config(p.settings)
    ctl(p, "reload")
    code, text, took = first_reply(p)
    assert code == 421, text
    assert "cannot be checked now" in text, text
    assert took < 10.0
    wait_for(lambda: stats(p)["total"]["refused"]["dnsbl_unavailable"] >= 1,
             "dnsbl_unavailable not counted")
    assert stats(p)["dns"]["timeouts"] + stats(p)["dns"]["failures"] >= 2


def test_second_connection_answered_from_cache(pigeond_factory, backend, unbound):
    client = backend.client_addr
    bl, other = reversed_name(client, "bl.test"), reversed_name(client, "other.test")
    unbound.start({"bl.test": {}, "other.test": {}})  # the client is listed nowhere
    p = screened(pigeond_factory, unbound.port)
    for _ in range(3):
        code, text, _ = first_reply(p)
        assert code == 220, text
    wait_for(lambda: unbound.queries(bl) >= 1 and unbound.queries(other) >= 1,
             "unbound was never asked")
    # The readiness probe and three clients: one query per list reached the server.
    assert unbound.queries(bl) == 1, unbound.log.read_text()
    assert unbound.queries(other) == 1, unbound.log.read_text()
    result = stats(p)
    assert result["total"]["screen"]["cached"] >= 2
    assert result["total"]["screen"]["passed"] >= 1
    assert result["dns"]["sent"] == 2
    assert metric(p, r"pigeonair_dns_sent_total") == 2


def test_lookups_run_during_banner_delay(pigeond_factory, backend, unbound):
    """The lists are asked while smtp.banner_delay runs: the refusal comes when the
    delay is over, not later; a client that talks first is an early talker still."""
    client = backend.client_addr
    unbound.start({"bl.test": {reversed_name(client, "bl.test"): "127.0.0.2"}, "other.test": {}})
    p = screened(pigeond_factory, unbound.port, smtp__banner_delay="400")
    code, text, took = first_reply(p)
    assert code == 550, text
    assert took >= 0.35, f"refused after {took:.3f} s, before smtp.banner_delay"
    assert took < 10.0, f"refused after {took:.3f} s"  # bounded, whatever the machine's load
    with helpers.RawSMTP(p.host, p.port) as c:
        c.send(b"EHLO early.example\r\n")
        code, lines = c.reply()
        assert code == 554, lines
    wait_for(lambda: stats(p)["total"]["refused"]["early_talker"] >= 1, "early talker not counted")
