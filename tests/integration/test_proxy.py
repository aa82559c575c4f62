"""Behind load balancers (docs/security.md): PROXY protocol v1/v2 and XCLIENT.

Only peers in smtp.trusted_proxies may name another client.  From them, the
address they give is the one logged, rate-limited and written in Received:;
from anyone else a PROXY header drops the connection and XCLIENT gets
550 5.7.0.  The test's own connections play the balancer.
"""

import ipaddress
import json
import re
import socket
import struct
import subprocess
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
RCPT = f"user@{helpers.DOMAINS[0]}"


def ctl_stats(p):
    cmd = [str(helpers.binary("pigeonctl")), "stats", "--json", "--socket",
           str(p.spool_dir / "pigeond.sock")]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=helpers.CTL_TIMEOUT, check=True)
    return json.loads(r.stdout)["result"]["total"]


def metric(p, name, labels=""):
    """The sum over workers of a metric whose labels contain `labels`."""
    cmd = [str(helpers.binary("pigeonctl")), "metrics", "--socket",
           str(p.spool_dir / "pigeond.sock")]
    text = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=helpers.CTL_TIMEOUT,
                          check=True).stdout.decode()
    return sum(int(v) for v in re.findall(r"^%s(?:\{[^}]*%s[^}]*\})? (\d+)$" %
                                          (name, re.escape(labels)), text, re.M))


def v1(src, dst="198.51.100.1", sport=56324, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, dst="198.51.100.1", sport=56324, dport=25, local=False, tlvs=b""):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def connect(p):
    return p.raw()


def send_message(c, helo="client.example.org"):
    """A whole transaction after the banner; returns the queue id."""
    code, caps = c.cmd(f"EHLO {helo}")
    assert code == 250, caps
    assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert c.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    code, text = c.cmd("Subject: balancer\r\n\r\nhello\r\n.")
    assert code == 250, text
    return helpers.queue_id_of(text[-1])


def received_of(p, qid):
    """The stored message's Received: header (pigeond stopped first: the spool is its)."""
    assert p.stop() == 0
    data = helpers.spool_show(p.spool_dir, qid, helpers.shard_of(RCPT))
    return helpers.received_header(data[data.index(b"Received:"):]).decode()


def trusted(pigeond_factory, backend, **settings):
    settings.setdefault("smtp__trusted_proxies", f"{backend.client_addr}/32")
    settings.setdefault("smtp__proxy_protocol", "true")
    return pigeond_factory(**settings).start()


@pytest.mark.parametrize("header,client", [
    (v1("192.0.2.7"), "192.0.2.7"),
    (v1("2001:db8::7", "2001:db8::1"), "2001:db8::7"),
    (v2("192.0.2.8"), "192.0.2.8"),
    (v2("2001:db8::8", "2001:db8::1", tlvs=b"\x04\x00\x02ab"), "2001:db8::8"),
], ids=["v1-ipv4", "v1-ipv6", "v2-ipv4", "v2-ipv6-tlv"])
def test_proxy_from_trusted_names_the_client(pigeond_factory, backend, header, client):
    p = trusted(pigeond_factory, backend)
    with connect(p) as c:
        # In two pieces: a header may span segments.
        c.send(header[:7])
        time.sleep(0.1)
        c.send(header[7:])
        code, text = c.reply()
        assert code == 220, text
        qid = send_message(c)
    assert ctl_stats(p)["proxy_headers"] >= 1
    assert metric(p, "pigeonair_proxy_headers_total") >= 1
    assert re.search(r"%s: accepted client=%s " % (qid, re.escape(client)), p.log()), p.log()
    assert f"([{client}])" in received_of(p, qid)


def test_proxy_v2_local_keeps_the_balancer(pigeond_factory, backend):
    """LOCAL (a health check) is valid and names nobody: the connection is the balancer's."""
    p = trusted(pigeond_factory, backend)
    with connect(p) as c:
        c.send(v2(local=True))
        assert c.reply()[0] == 220
        qid = send_message(c)
    assert f"([{backend.client_addr}])" in received_of(p, qid)


def test_proxy_from_untrusted_is_dropped(pigeond_factory, backend):
    p = pigeond_factory(smtp__trusted_proxies="192.0.2.0/24", smtp__proxy_protocol="true").start()
    for header in (v1("192.0.2.7"), v2("192.0.2.7")):
        with connect(p) as c:
            assert c.reply()[0] == 220  # an ordinary client to us
            c.send(header + b"EHLO x\r\n")
            assert c.at_eof(5), c.buf  # dropped without a word
            assert c.buf == b""
    assert ctl_stats(p)["refused"]["proxy_refused"] >= 2
    assert metric(p, "pigeonair_refusals_total", 'reason="proxy_refused"') >= 2
    assert p.wait_for_log(r"reason=proxy_refused detail=untrusted_peer")


def test_proxy_not_expected_is_dropped(pigeond_factory, backend):
    """A trusted peer without smtp.proxy_protocol: a header is a misconfiguration, dropped."""
    p = pigeond_factory(smtp__trusted_proxies=f"{backend.client_addr}/32").start()
    with connect(p) as c:
        assert c.reply()[0] == 220
        c.send(v2("192.0.2.7"))
        assert c.at_eof(5), c.buf
        assert c.buf == b""
    assert ctl_stats(p)["refused"]["proxy_refused"] == 1
    assert p.wait_for_log(r"reason=proxy_refused detail=not_expected")


@pytest.mark.parametrize("junk", [
    b"EHLO client.example\r\n",
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",
    V2_SIG + b"\x21\x12\x00\x0c" + bytes(12),
], ids=["smtp-instead", "v1-short", "v2-dgram"])
def test_bad_header_from_trusted_is_dropped(pigeond_factory, backend, junk):
    p = trusted(pigeond_factory, backend)
    with connect(p) as c:
        c.send(junk)
        assert c.at_eof(5), c.buf
        assert c.buf == b""
    assert ctl_stats(p)["refused"]["proxy_refused"] == 1


def test_proxy_client_is_rate_limited(pigeond_factory, backend):
    """limits.conn_per_ip counts the address the header names, not the balancer's."""
    p = trusted(pigeond_factory, backend, limits__conn_per_ip=1, limits__exempt="")
    first = connect(p)
    first.send(v1("192.0.2.9"))
    assert first.reply()[0] == 220
    with connect(p) as c:
        c.send(v1("192.0.2.9"))
        code, text = c.reply()
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Error: too many "
                                        "connections from 192.0.2.9")
    with connect(p) as c:  # another client behind the same balancer
        c.send(v2("192.0.2.10"))
        assert c.reply()[0] == 220
    first.close()
    assert ctl_stats(p)["refused"]["conn_per_ip"] == 1


def test_xclient_from_trusted(pigeond_factory, backend):
    p = pigeond_factory(smtp__trusted_proxies=f"{backend.client_addr}/32").start()
    with connect(p) as c:
        _, caps = c.greet(helo="proxy.example.net")
        assert "XCLIENT ADDR PORT HELO PROTO" in caps
        code, text = c.cmd("XCLIENT ADDR=203.0.113.5 PORT=4711 HELO=real+2Eclient PROTO=ESMTP")
        assert code == 220, text
        qid = send_message(c, helo="real.client")
        # Trust is spent once used.
        code, text = c.cmd("XCLIENT ADDR=203.0.113.6")
        assert (code, text[0]) == (550, "5.7.0 Error: insufficient authorization")
    st = ctl_stats(p)
    assert st["xclients"] == 1 and metric(p, "pigeonair_xclients_total") == 1
    assert re.search(r"xclient client=203\.0\.113\.5 port=4711 proxy=%s" %
                     re.escape(backend.client_addr), p.log())
    assert re.search(r"%s: accepted client=203\.0\.113\.5 " % qid, p.log())
    assert "Received: from real.client ([203.0.113.5])" in received_of(p, qid)


def test_xclient_from_untrusted(pigeond_factory):
    p = pigeond_factory(smtp__trusted_proxies="192.0.2.0/24").start()
    with connect(p) as c:
        _, caps = c.greet()
        assert not any(l.startswith("XCLIENT") for l in caps)
        code, text = c.cmd("XCLIENT ADDR=203.0.113.5")
        assert (code, text[0]) == (550, "5.7.0 Error: insufficient authorization")
        assert c.cmd("NOOP")[0] == 250  # refused, not cut off
    assert ctl_stats(p)["refused"]["xclient_denied"] == 1


def test_xclient_client_is_rate_limited(pigeond_factory, backend):
    p = pigeond_factory(smtp__trusted_proxies=f"{backend.client_addr}/32",
                        limits__conn_per_ip=1, limits__exempt="").start()
    first = connect(p)
    first.greet()
    assert first.cmd("XCLIENT ADDR=203.0.113.7")[0] == 220
    with connect(p) as c:
        c.greet()
        code, text = c.cmd("XCLIENT ADDR=203.0.113.7")
        assert (code, text[0]) == (421, f"4.7.0 {helpers.HOSTNAME} Error: too many "
                                        "connections from 203.0.113.7")
        assert c.at_eof(5)
    first.close()
    assert ctl_stats(p)["refused"]["conn_per_ip"] == 1
