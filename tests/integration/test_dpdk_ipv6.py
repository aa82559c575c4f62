"""IPv6 on the DPDK dataplane: pigeond on a TAP with dpdk.ip6, the TAP's kernel
side at 2001:db8::1 (nodad), crafted packets from python3-scapy
(dpdk_scapy6.py), SMTP from smtplib and swaks.  Needs root.

Checked, in one pigeond: duplicate address detection passes for the engine's
address and its link-local one; a neighbor solicitation for our address gets
a solicited, overriding advertisement with our MAC from that address (hop
limit 255); one not from the link, or for an address not ours, gets none; a
DAD probe for our address is defended (advertisement to all-nodes); a
router advertisement is ignored and counted; a SYN from a neighbour never
heard of makes the engine solicit it (at its solicited-node group) and the
SYN-ACK follows; an MLDv2 query gets a report of our solicited-node groups
(the start-up join counted too).  ICMPv6 echo, unicast and to all-nodes (answered from our
unicast address).  Extension headers: a hop-by-hop and destination options
chain is walked to the SYN, nine headers are refused, routing type 0 gets a
parameter problem pointing at its type, an atomic fragment passes,
overlapping fragments are never answered, an unknown next header gets a
parameter problem code 1 pointing at the field that named it.  TCP: the
SYN-ACK's MSS is the MTU's less 60, banner, EHLO, QUIT, our FIN and the
peer's, a closed port gets a RST, a RST at RCV.NXT ends the connection.  A
packet too big quoting a segment in flight lowers the live connection's MSS
to 1220 and the data is resent in that size, and a new connection from the
peer starts with that MSS (the path MTU kept per destination).  Mail over IPv6 (smtplib, swaks
-6) is accepted and logged with the client's IPv6 address; a SYN flood from
off-link IPv6 sources overflows the SYN queue and a client is still served
through a SYN cookie; every drop counted by reason.  In a second pigeond:
an address the link already has fails DAD, is logged and never answers.  In
a third, with STARTTLS: mail over IPv6 from smtplib and from swaks -6 --tls,
pigeond killed with -9 and restarted, and every message that got 250 is in
the spool, intact.
"""

import concurrent.futures as cf
import ipaddress
import json
import os
import re
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from dpdk_env import PEER_IP6, SERVER_IP6, DpdkPigeond, is_root
from test_dpdk_basic import queued_id, stored

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

SCRIPT = Path(__file__).with_name("dpdk_scapy6.py")


def solicited_node(addr):
    """ff02::1:ffXX:XXXX, the address's last 24 bits (RFC 4291 2.7.1)."""
    a = ipaddress.IPv6Address(addr).packed
    return str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + a[13:]))


def scapy(srv, *scenarios, timeout=120):
    mac = re.search(r"mac ([0-9A-F:]{17})", srv.log()).group(1)
    r = srv.run(["/usr/bin/python3", str(SCRIPT), srv.netns.iface, mac, *scenarios],
                timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), mac


def test_ipv6_end_to_end(binaries, workdir):
    with DpdkPigeond(binaries, workdir, {"dpdk.syn_backlog": "16"}, ip6=True) as srv:
        assert srv.wait_ip6(SERVER_IP6) is True
        log = srv.log()
        ll = re.search(r"IPv6 address (fe80::[0-9a-f:]+)/64 ready", log)
        assert ll, log[-2000:]

        res, mac = scapy(srv, "nd", "echo", "ext", "tcp", "ptb", "mld")
        nd, echo, ext, tcp, ptb = (res[k] for k in ("nd", "echo", "ext", "tcp", "ptb"))
        # MLDv2 (RFC 3810): a query answered from our link-local address with our groups.
        assert res["mld"] == {"report": True, "src": ll.group(1), "dst": "ff02::16", "hlim": 1,
                              "router_alert": True,
                              "groups": sorted([solicited_node(SERVER_IP6),
                                                solicited_node(ll.group(1))])}, res["mld"]
        assert nd["na"] and nd["na_flags"] == {"R": 0, "S": 1, "O": 1}, nd
        assert nd["na_src"] == SERVER_IP6 and nd["na_dst"] == "2001:db8::77", nd
        assert nd["na_hlim"] == 255 and nd["na_lladdr"] == mac.lower(), nd
        assert nd["bad_answered"] is False and nd["dad_defended"] is True, nd
        assert nd["new_peer_synack"] is True, nd
        assert nd["ns_for_new_peer"], nd
        assert nd["ns_for_new_peer"][0]["dst"] == nd["solicited_node_of_new_peer"], nd
        assert nd["ns_for_new_peer"][0]["hlim"] == 255, nd
        assert echo == {"reply": True, "group_reply_src": SERVER_IP6}, echo
        assert ext == {"valid_chain": True, "nine_headers": False, "routing0": False,
                       "routing0_param_problem": [0, 42], "atomic_fragment": True,
                       "overlapping_fragments": False, "unknown_nh_param_problem": [1, 6]}, ext
        assert tcp["synack_mss"] == 1440, tcp  # MTU 1500 less 40 of IPv6 and 20 of TCP
        assert tcp["banner"].startswith("220 "), tcp
        assert "250-PIPELINING" in tcp["ehlo"] and tcp["quit"].startswith("221 "), tcp
        assert tcp["engine_fin"] and tcp["fin_acked"], tcp
        assert tcp["closed_port"] == "RA" and tcp["after_reset"] == "R", tcp
        assert ptb["sizes_before"][0] == 1440, ptb
        assert ptb["resent_size"] == 1220, ptb
        assert ptb["new_conn_sizes"] and max(ptb["new_conn_sizes"]) == 1220, ptb

        # Mail over IPv6: smtplib in the namespace, and swaks.
        with srv.netns.entered():
            with smtplib.SMTP(SERVER_IP6, srv.port, timeout=30) as s:
                s.ehlo("v6.example.org")
                s.mail("sender@example.org")
                s.rcpt("user@example.com")
                assert s.data(b"Subject: over IPv6\r\n\r\nhello\r\n")[0] == 250
        r = srv.run(["swaks", "-6", "--server", SERVER_IP6, "--port", str(srv.port),
                     "--from", "sender@example.org", "--to", "user@example.com",
                     "--timeout", "20"])
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(re.findall(rf"accepted client={PEER_IP6} ", srv.log())) == 2, srv.log()[-3000:]

        res, _ = scapy(srv, "flood=400")
        flood = res["flood"]
        assert flood["synack_options"] == ["MSS"], flood  # a cookie: no state, no options
        assert flood["banner"].startswith("220 ") and flood["noop"].startswith("250 "), flood

        assert srv.stop() == 0
        c = srv.counters()[0]
        assert c["drop_ip6_ext_chain"] >= 1 and c["drop_ip6_routing0"] >= 1, c
        assert c["drop_ip6_fragment"] >= 2 and c["drop_ip6_protocol"] >= 1, c
        assert c["drop_nd_bad"] >= 1 and c["drop_nd_not_us"] >= 1, c
        assert c["drop_nd_untrusted"] >= 1, c  # the router advertisement
        assert c["drop_no_route"] >= 300, c  # SYN-ACKs to the off-link flood
        assert c["icmp6_echo"] == 2 and c["pmtu_lowered"] == 1 and c["dad_conflicts"] == 0, c
        assert c["pmtu_learned"] == 1 and c["pmtu_cached"] >= 1, c
        assert c["cookies_ok"] >= 1 and c["ip6_rx"] > 400, c
        assert c["mld_reports"] >= 2, c  # the join at start-up, the query's answer


def test_dad_conflict(binaries, workdir):
    """2001:db8::3 is the kernel side's already: ours fails DAD and is never used.
    Three solicitations, a second apart: the kernel side gets its addresses as soon
    as the TAP appears, well within them whatever the load."""
    with DpdkPigeond(binaries, workdir, {"dpdk.ip6": f"{SERVER_IP6}/64,2001:db8::3/64",
                                         "dpdk.dad_transmits": "3"},
                     ip6=True, peer_ip6_extra=["2001:db8::3"]) as srv:
        assert srv.wait_ip6("2001:db8::3") is False
        assert srv.wait_ip6(SERVER_IP6) is True
        # Never answered for: the echo to it gets no reply, the one to ::2 does.
        res, _ = scapy(srv, "echo_dup")
        assert res["echo_dup"] == {"dup": False, "ok": True}, res
        assert srv.stop() == 0
        assert srv.total("dad_conflicts") >= 1


def test_kill9_and_starttls_over_ipv6(binaries, workdir):
    key, cert = Path(workdir) / "v6.key", Path(workdir) / "v6.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with DpdkPigeond(binaries, workdir, {"tls.cert": str(cert), "tls.key": str(key)},
                     ip6=True) as srv:
        assert srv.wait_ip6(SERVER_IP6) is True
        acked = {}

        def send(i):
            body = f"Subject: v6 {i}\r\n\r\nmessage {i} {os.urandom(8).hex()}\r\n".encode()
            with smtplib.SMTP(SERVER_IP6, srv.port, timeout=30) as s:
                s.ehlo("v6.example.org")
                s.mail("sender@example.org")
                s.rcpt("user@example.com")
                code, reply = s.data(body)
                assert code == 250
                return queued_id(reply), body

        with srv.netns.entered():
            with cf.ThreadPoolExecutor(4) as ex:
                for qid, body in ex.map(send, range(24)):
                    acked[qid] = body
        r = srv.run(["swaks", "-6", "--server", SERVER_IP6, "--port", str(srv.port), "--tls",
                     "--from", "sender@example.org", "--to", "user@example.com",
                     "--timeout", "20"])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "TLS started" in r.stdout, r.stdout
        srv.kill()
        readies = srv.log().count(f"IPv6 address {SERVER_IP6}/64 ready")
        srv.start()
        # wait_ip6() would find the first run's line: wait for a new one.
        for _ in range(300):
            if srv.log().count(f"IPv6 address {SERVER_IP6}/64 ready") > readies:
                break
            time.sleep(0.1)
        with srv.netns.entered():
            qid, body = send(1000)
            acked[qid] = body
        assert srv.stop() == 0
        got = stored(srv)
        missing = [q for q in acked if q not in got]
        assert not missing, f"{len(missing)} messages that got 250 over IPv6 are gone"
        for q, body in acked.items():
            assert got[q] == body, q
