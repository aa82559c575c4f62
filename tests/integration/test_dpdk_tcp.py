"""The DPDK stack's TCP against crafted segments (python3-scapy, dpdk_scapy.py)
and a SYN flood, each in its own network namespace.  Needs root.

Checked: bad TCP and IP checksums dropped without an answer; a SYN to a
closed port answered with RST; an out-of-window RST ignored; an in-window
RST not at RCV.NXT answered with a challenge ACK (RFC 5961 3.2) and the
connection kept, a burst of them answered within dpdk.challenge_ack_limit
(RFC 5961 7) and the rest counted; a RST at RCV.NXT resets it; a lost final handshake ACK
recovered by the SYN queue's SYN-ACK retransmission; TIME_WAIT re-ACKs a
retransmitted FIN and ends after 2*MSL; out-of-order and overlapping
segments reassembled (duplicate ACK with a SACK block, then both commands
answered once each); a zero window probed and never overrun; 50,000 SYNs from
random sources while legitimate clients are still served, through cookies
once the SYN queue overflows.
"""

import concurrent.futures as cf
import json
import re
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dpdk_env import DpdkPigeond, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

SCRIPT = Path(__file__).with_name("dpdk_scapy.py")
FLOOD = 50000


def scapy(srv, scenario, arg=None, timeout=120):
    mac = re.search(r"mac ([0-9A-F:]{17})", srv.log()).group(1)
    argv = ["/usr/bin/python3", str(SCRIPT), scenario, srv.netns.iface, mac]
    if arg is not None:
        argv.append(str(arg))
    r = srv.run(argv, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def dpdk(binaries, workdir):
    with DpdkPigeond(binaries, workdir) as srv:
        yield srv


def test_bad_checksums_are_dropped(dpdk):
    res = scapy(dpdk, "bad_checksum")
    assert res == {"bad_tcp_answered": False, "bad_ip_answered": False, "good_answered": True}
    assert dpdk.stop() == 0
    assert dpdk.total("drop_tcp_bad_checksum") >= 1
    assert dpdk.total("drop_ip_bad_checksum") >= 1


def test_syn_to_closed_port_gets_rst(dpdk):
    res = scapy(dpdk, "closed_port")
    assert res["flags"] == "RA" and res["ack_ok"], res


def test_rst_checks_rfc5961(dpdk):
    res = scapy(dpdk, "rst")
    assert res["banner"].startswith("220 "), res
    assert res["out_of_window_answer"] is False, res
    assert res["challenge_flags"] == "A" and res["challenge_ack_is_rcv_nxt"], res
    assert res["noop_after"].startswith("250 "), res
    assert res["after_reset_flags"] in ("R", "RA"), res
    assert dpdk.stop() == 0
    assert dpdk.total("challenge_acks") >= 1
    assert dpdk.total("drop_tcp_rst_out_of_window") >= 1


def test_challenge_acks_rate_limited(binaries, workdir):
    # RFC 5961 7: with dpdk.challenge_ack_limit=10 a burst of 60 in-window
    # RSTs (each due a challenge ACK) gets at most 15 a second (the budget is
    # drawn in [5, 15] each second; the burst may straddle two), the rest are
    # counted as limited, and the connection lives on.
    with DpdkPigeond(binaries, workdir, {"dpdk.challenge_ack_limit": "10"}) as srv:
        res = scapy(srv, "challenge_limit", 60)
        assert res["banner"].startswith("220"), res
        assert 5 <= res["challenge_acks"] <= 30, res
        assert res["noop_after"].startswith("250"), res
        assert srv.stop() == 0
        sent, limited = srv.total("challenge_acks"), srv.total("challenge_acks_limited")
        assert sent + limited == 60, (sent, limited)
        assert sent == res["challenge_acks"], (sent, res)


def test_out_of_order_and_overlapping_segments(dpdk):
    res = scapy(dpdk, "reassembly")
    assert res["dup_ack"], res
    assert res["sack"] == [[4, 10]], res
    # Exactly two replies: no octet was lost or taken twice.
    assert res["replies"].startswith("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"), res
    assert res["replies"].count("250 ") == 2, res


def test_zero_window_is_probed_not_overrun(dpdk):
    res = scapy(dpdk, "zero_window")
    assert res["data_during_zero_window"] == 0, res
    assert res["probes"] >= 1, res
    assert res["banner_after_open"].startswith("220 "), res


def test_synack_retransmitted_when_final_ack_is_lost(dpdk):
    res = scapy(dpdk, "lost_final_ack")
    assert res["first"] and res["retransmitted"] and res["same_isn"], res
    assert 0.5 <= res["after_s"] <= 2.5, res  # RFC 6298 2.1: 1 s
    assert res["banner"].startswith("220 "), res


def test_time_wait_lasts_two_msl(binaries, workdir):
    with DpdkPigeond(binaries, workdir, {"dpdk.msl": "500"}) as srv:
        res = scapy(srv, "time_wait", 500)
        assert res["quit"].startswith("221 "), res
        assert res["engine_fin"] and res["fin_acked"], res
        assert res["fin_reacked"], res  # TIME_WAIT answers a retransmitted FIN
        assert res["after_2msl"] == "R", res  # and is gone after 2*MSL
        assert srv.stop() == 0
        assert srv.total("time_wait") >= 1


def test_syn_flood_legitimate_clients_still_served(binaries, workdir):
    # With the abuse limits on and the clients' address not exempt (docs/security.md):
    # half-open flood connections never reach them, the legitimate clients stay within.
    limits = {"limits.exempt": "", "limits.conn_per_ip": "16", "limits.conn_total": "1000",
              "limits.conn_rate_per_ip": "200"}
    with DpdkPigeond(binaries, workdir, limits) as srv:
        results, errors = [], []

        def clients():
            def one(i):
                with smtplib.SMTP(srv.host, srv.port, timeout=30) as s:
                    s.ehlo("client.example.org")
                    s.mail("sender@example.org")
                    s.rcpt("user@example.com")
                    return s.data(f"Subject: during flood {i}\r\n\r\nhello\r\n".encode())[0]
            try:
                with srv.netns.entered():
                    with cf.ThreadPoolExecutor(8) as ex:
                        results.extend(ex.map(one, range(40)))
            except Exception as e:  # reported below, in the main thread
                errors.append(e)

        t = threading.Thread(target=clients)
        flood = srv.popen(["/usr/bin/python3", str(SCRIPT), "syn_flood", srv.netns.iface,
                           re.search(r"mac ([0-9A-F:]{17})", srv.log()).group(1), str(FLOOD)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t.start()
        try:
            out, err = flood.communicate(timeout=120)
        finally:
            if flood.poll() is None:
                flood.kill()
        t.join(timeout=120)
        assert flood.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["sent"] == FLOOD
        assert not errors, errors
        assert results == [250] * 40
        # And after the flood.
        r = srv.run(["swaks", "--server", f"{srv.host}:{srv.port}", "--from",
                     "sender@example.org", "--to", "user@example.com", "--timeout", "20"])
        assert r.returncode == 0, r.stdout + r.stderr
        assert srv.stop() == 0
        print("counters:", srv.counters(), file=sys.stderr)
        # The kernel's TAP queue (txqueuelen 1000) may drop some of a burst this
        # fast before the engine sees it; nearly all must arrive.
        assert srv.total("syns") >= FLOOD * 9 // 10
        assert srv.total("cookies_sent") > 0  # the SYN queue overflowed


def test_cookie_handshake_when_syn_queue_is_full(binaries, workdir):
    with DpdkPigeond(binaries, workdir, {"dpdk.syn_backlog": "16"}) as srv:
        res = scapy(srv, "cookie", 200)
        # A cookie SYN-ACK carries MSS only: no window scale, SACK or timestamps.
        assert res["synack_options"] == ["MSS"], res
        assert res["banner"].startswith("220 "), res
        assert res["noop"].startswith("250 "), res
        assert srv.stop() == 0
        assert srv.total("cookies_ok") >= 1
