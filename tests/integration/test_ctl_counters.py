"""Counters and metrics of the control socket (docs/operations.md): every DPDK TCP
counter, the TLS counters, per-destination hand-off metrics, DPDK's telemetry socket,
and a drain that a `hold` sent just before it cannot keep waiting.

Over each backend in $PIGEON_BACKENDS (tests/run.sh runs it again over DPDK).
"""

import json
import os
import re
import socket
import threading
from pathlib import Path

import pytest

import helpers
# sink and certs are fixtures: imported, pytest finds them here
from test_ctl import (ctl, ctl_json, promtool_check, send_message, sink,  # noqa: F401
                      sock_path, wait_until)
from test_tls import (OPENSSL, certs, client_hello, closed_by_server, s_client,  # noqa: F401
                      starttls_raw, tls_settings)

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parents[2]
NEW_TCP_COUNTERS = ("active_opens", "syn_retransmits", "connects_failed",
                    "challenge_acks_limited", "sack_rtx_skipped")
TLS_KEYS = {"handshakes", "resumed", "handshake_failures", "handshake_timeouts",
            "handshakes_deferred", "versions"}


def dp_counter_fields():
    """The scalar uint64_t fields of struct dp_counters, read from dataplane/dp_counters.h."""
    text = (ROOT / "dataplane" / "dp_counters.h").read_text()
    body = re.search(r"struct dp_counters \{(.*?)\n\};", text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in re.findall(r"uint64_t([^;]*);", body):
        for name in decl.split(","):
            name = name.strip()
            if "[" not in name:  # drops[] and rss_misqueued[]: by reason
                names.append(name)
    assert len(names) > 20, names
    return names


def metric_value(text, name, **labels):
    """The value of one series, or None when it is not in the text."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def families(text):
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


# --------------------------------------------------------------------------
# every counter reaches stats (JSON and text) and the metrics

def test_every_counter_reaches_stats_and_metrics(pigeond, backend):
    send_message(pigeond, "a@example.org", ["u1@example.com"])
    st = ctl_json(pigeond, "stats")
    text = ctl(pigeond, "stats").stdout.decode()
    metrics = ctl(pigeond, "metrics").stdout
    promtool_check(metrics)
    metrics = metrics.decode()
    for w in st["workers"] + [st["total"]]:
        assert set(w["tls"]) == TLS_KEYS, w["tls"]
        assert set(w["tls"]["versions"]) == {"TLSv1.2", "TLSv1.3"}
    assert "tls worker 0:" in text and "handshake_failures" in text, text
    for name in ("pigeonair_tls_handshakes_total", "pigeonair_tls_resumed_total",
                 "pigeonair_tls_handshake_failures_total", "pigeonair_tls_handshake_timeouts_total",
                 "pigeonair_tls_handshakes_by_version_total"):
        assert name in families(metrics), name

    if backend.name != "dpdk":
        assert "tcp" not in st["workers"][0]
        assert not any(f.startswith("pigeonair_tcp_") for f in families(metrics))
        return
    fields = dp_counter_fields()
    tcp = st["workers"][0]["tcp"]
    scalar = {k for k, v in tcp.items() if not isinstance(v, dict)} - {"time_wait"}
    # one JSON key per field of struct dp_counters, whatever its name
    assert len(scalar) == len(fields), (sorted(scalar), fields)
    assert tcp["rx_packets"] > 0 and tcp["tx_packets"] > 0 and tcp["syns"] >= 1
    assert set(tcp["rss_misqueued"]) and isinstance(tcp["drops"], dict)
    for key in NEW_TCP_COUNTERS:
        assert key in tcp, key
        assert re.search(rf"^  .*\b{key}\s+\d+", text, re.M), (key, text)
        assert metric_value(metrics, f"pigeonair_tcp_{key}_total", worker=0) is not None, key
    for key in scalar:
        assert re.search(rf"\b{key}\s+\d+", text), (key, text)
    tcp_families = {f for f in families(metrics)
                    if re.match(r"pigeonair_(tcp|rx|tx|steered|arp|icmp|ip6|nd|icmp6|pmtu|dad|mld)_", f)}
    # every field, plus the TIME_WAIT gauge
    assert len(tcp_families) == len(fields) + 1, sorted(tcp_families)
    assert metric_value(metrics, "pigeonair_rx_packets_total", worker=0) > 0
    # the operators' list names every one of them
    doc = (ROOT / "docs" / "operations.md").read_text()
    missing = [f for f in tcp_families | {"pigeonair_rss_misqueued_total"} if f"`{f}" not in doc]
    assert not missing, f"not in docs/operations.md: {missing}"


# --------------------------------------------------------------------------
# TLS: completed, resumed, by version, failed, timed out

@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_counters(pigeond_factory, certs, workdir):
    server = pigeond_factory(tls__handshake_timeout="2", **tls_settings(certs)).start()
    out = s_client(server, ["-tls1_2"], "EHLO one.example.org\nQUIT\n")
    assert "New, TLSv1.2" in out, out
    sess = workdir / "t13.sess"
    out = s_client(server, ["-tls1_3", "-sess_out", str(sess)], "EHLO two.example.org\nQUIT\n")
    assert "New, TLSv1.3" in out, out
    out = s_client(server, ["-tls1_3", "-sess_in", str(sess)], "EHLO three.example.org\nQUIT\n")
    assert "Reused, TLSv1.3" in out, out
    garbage = starttls_raw(server)
    stalled = starttls_raw(server)
    try:
        garbage.send(b"\x16\x03\x01\x00\x05garbage that is no TLS record" + bytes(range(256)))
        stalled.send(client_hello()[:20])
        assert closed_by_server(garbage, 10)
        assert closed_by_server(stalled, 15)
    finally:
        garbage.close()
        stalled.close()

    def tls():
        return ctl_json(server, "stats")["total"]["tls"]

    wait_until(lambda: tls()["handshake_timeouts"] == 1, 10, "the stalled handshake counted")
    t = tls()
    assert t["handshakes"] == 3 and t["resumed"] == 1, t
    assert t["versions"] == {"TLSv1.2": 1, "TLSv1.3": 2}, t
    assert t["handshake_failures"] >= 1, t
    assert ctl_json(server, "stats")["workers"][0]["tls"] == t  # one worker: the same
    metrics = ctl(server, "metrics").stdout
    promtool_check(metrics)
    m = metrics.decode()
    assert metric_value(m, "pigeonair_tls_handshakes_total", worker=0) == 3
    assert metric_value(m, "pigeonair_tls_resumed_total", worker=0) == 1
    assert metric_value(m, "pigeonair_tls_handshake_timeouts_total", worker=0) == 1
    assert metric_value(m, "pigeonair_tls_handshake_failures_total",
                        worker=0) == t["handshake_failures"]
    assert metric_value(m, "pigeonair_tls_handshakes_by_version_total", worker=0,
                        version="TLSv1.2") == 1
    assert metric_value(m, "pigeonair_tls_handshakes_by_version_total", worker=0,
                        version="TLSv1.3") == 2
    text = ctl(server, "stats").stdout.decode()
    assert re.search(r"versions\.TLSv1\.3\s+2", text), text


# --------------------------------------------------------------------------
# per-destination hand-off metrics

def test_destination_metrics(pigeond_factory, sink, workdir):
    down = helpers.free_port()
    routes = workdir / "routes"
    routes.write_text(f"shards 0-1 smtp:127.0.0.1:{sink.port}\n"
                      f"shards 2-3 smtp:127.0.0.1:{down}\n")
    # The breaker opens at the second failure, so both copies to the destination
    # that is down are attempted (and counted deferred) whatever their timing: with
    # 1, a copy that arrives after the first failure waits behind the open breaker
    # with no attempt, which the summary does not count as deferred.
    p = pigeond_factory(relay__routes=routes, relay__min_backoff=60, relay__breaker_failures=2,
                        relay__breaker_cooldown=300).start()
    up_dest, down_dest = f"smtp:127.0.0.1:{sink.port}/0", f"smtp:127.0.0.1:{down}/0"
    by_shard = helpers.addresses_in_shards(per_shard=1)
    send_message(p, "a@example.org", [by_shard[0][0]])
    send_message(p, "b@example.org", [by_shard[2][0]])
    m3 = send_message(p, "c@example.org", [by_shard[3][0]])

    def rows():
        return {d["destination"]: d for d in ctl_json(p, "spool", "summary")["destinations"]}

    wait_until(lambda: sink.count() == 1 and rows()[down_dest]["deferred"] == 2, 20,
               "one delivered, two deferred at the destination that is down")
    ctl_json(p, "spool", "hold", m3)
    wait_until(lambda: rows()[down_dest]["held"] == 1, 10, f"{m3} held")
    # the breaker state is published every 200 ms
    wait_until(lambda: (rows()[down_dest]["engine"] or {}).get("breaker_open_s", 0) > 0, 10,
               "the breaker of the destination that is down open")

    metrics = ctl(p, "metrics").stdout
    promtool_check(metrics)
    m = metrics.decode()
    summary = rows()
    for dest, row in summary.items():
        for name, key in (("queued_messages", "messages"), ("queued_bytes", "bytes"),
                          ("deferred_messages", "deferred"), ("held_messages", "held")):
            assert metric_value(m, f"pigeonair_destination_{name}", destination=dest) == \
                row[key], (dest, name, row)
    assert metric_value(m, "pigeonair_destination_queued_messages", destination=down_dest) == 2
    assert metric_value(m, "pigeonair_destination_held_messages", destination=down_dest) == 1
    assert metric_value(m, "pigeonair_destination_deferred_messages", destination=down_dest) == 1
    assert metric_value(m, "pigeonair_destination_queued_messages", destination=up_dest) == 0
    assert metric_value(m, "pigeonair_destination_oldest_age_seconds",
                        destination=down_dest) >= 0
    assert metric_value(m, "pigeonair_destination_deliveries_total", destination=up_dest,
                        result="ok") == 1
    assert metric_value(m, "pigeonair_destination_deliveries_total", destination=up_dest,
                        result="permfail") == 0
    assert metric_value(m, "pigeonair_destination_deliveries_total", destination=down_dest,
                        result="tempfail") >= 2
    assert metric_value(m, "pigeonair_destination_breaker_open", destination=down_dest) == 1
    assert metric_value(m, "pigeonair_destination_breaker_open", destination=up_dest) == 0
    assert metric_value(m, "pigeonair_destination_breaker_open_seconds",
                        destination=down_dest) > 0
    # bounded: one series per destination of the route map, never a recipient
    dests = set(re.findall(r'destination="([^"]*)"', m))
    assert dests == {up_dest, down_dest}, dests
    assert "example.com" not in "".join(dests)


# --------------------------------------------------------------------------
# a hold sent a moment before drain cannot keep the drain waiting

def test_hold_just_before_drain_does_not_block_it(pigeond_factory, sink):
    # relay.min_backoff 300: without the fix the copy would come due again only long
    # after this test's deadline, and then stay held anyway.
    p = pigeond_factory(relay__default=f"smtp:127.0.0.1:{sink.port}", relay__min_backoff=300,
                        relay__max_backoff=600).start()
    gate = threading.Event()
    sink.gate = gate
    qid = send_message(p, "a@example.org", ["u1@example.com"])
    # The copy is in flight (the sink sits on its final dot): the engine must put the
    # hold off until the transaction ends, so drain runs while the hold is still queued.
    assert sink.stalled.wait(20), "the hand-off never reached the sink"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path(p))
        s.sendall(json.dumps({"cmd": "spool.hold", "id": qid}).encode() + b"\n" +
                  json.dumps({"cmd": "drain"}).encode() + b"\n")
        out = b""
        while out.count(b"\n") < 2:
            chunk = s.recv(65536)
            assert chunk
            out += chunk
    hold, drain = [json.loads(line) for line in out.splitlines()]
    assert hold["ok"] and hold["result"]["messages"] == 1, hold
    assert drain == {"ok": True, "result": {"draining": True, "paused": True}}, drain
    # a hold asked for while draining is refused outright
    r = ctl(p, "spool", "hold", qid, check=False)
    assert r.returncode == 1 and b"draining" in r.stderr, r.stderr
    r = ctl(p, "spool", "hold", "--shard", "0", check=False)
    assert r.returncode == 1, r.stderr
    gate.set()  # the transaction ends in 451; then the queued hold is applied
    p.proc.wait(30)
    assert p.proc.returncode == 0, p.log_since_start()[-3000:]
    log = p.log_since_start()
    # The hold, applied once the transaction ended, never held the copy (a scan may
    # have taken the copy again first: then the hold found nothing left to act on).
    assert not re.search(rf"{qid}: shard \d+: held", log), log[-3000:]
    assert "drain: the spool is empty: stopping" in log
    assert sink.count() == 1
    assert helpers.spool_ls(p.spool_dir) == []


# --------------------------------------------------------------------------
# DPDK's telemetry socket: where status says, answering for the port

def telemetry(path, *commands):
    """What `dpdk-telemetry.py` does: SEQPACKET, a JSON greeting, one reply per command."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(10)
        s.connect(str(path))
        hello = json.loads(s.recv(65536))
        assert "version" in hello and "pid" in hello, hello
        out = []
        for c in commands:
            s.send(c.encode())
            out.append(json.loads(s.recv(65536)))
        return hello, out


def test_telemetry_ethdev_stats(pigeond, backend):
    send_message(pigeond, "a@example.org", ["u1@example.com"])
    path = ctl_json(pigeond, "status")["listeners"]["telemetry"]
    assert path and os.path.exists(path), path
    assert f"telemetry:  {path}" in ctl(pigeond, "status").stdout.decode()
    hello, (ports, stats) = telemetry(path, "/ethdev/list", "/ethdev/stats,0")
    assert hello["pid"] == pigeond.proc.pid or backend.name == "dpdk", hello
    if backend.name == "kernel":
        # no DPDK port: EAL runs with --no-pci and no vdev
        assert path.endswith(f"/pigeond-{pigeond.port}/dpdk_telemetry.v2"), path
        assert ports == {"/ethdev/list": []}, ports
        return
    assert ports == {"/ethdev/list": [0]}, ports
    s = stats["/ethdev/stats"]
    assert s["ipackets"] > 0 and s["opackets"] > 0, s
    assert s["ibytes"] > 0 and s["obytes"] > 0, s
    # the port saw at least what the stack counted
    tcp = ctl_json(pigeond, "stats")["total"]["tcp"]
    _, (again,) = telemetry(path, "/ethdev/stats,0")
    assert again["/ethdev/stats"]["ipackets"] >= tcp["rx_packets"] > 0


def _port_free_on(*hosts):
    for _ in range(50):
        port = helpers.free_port(hosts[0])
        try:
            for h in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((h, port))
            return port
        except OSError:
            continue
    raise AssertionError(f"no port free on all of {hosts}")


def test_two_instances_on_one_port_keep_their_telemetry(pigeond_factory, backend, workdir,
                                                        monkeypatch):
    if backend.name != "kernel":
        pytest.skip("the DPDK backend's prefix is per process (or dpdk.eal's) already")
    # A port free on both addresses: one free on 127.0.0.1 alone may be an
    # earlier test's source port on 127.0.0.2 (pigeon-loadgen --source).
    port = _port_free_on("127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(helpers, "free_port", lambda host="127.0.0.1": port)
    a = pigeond_factory("a").start()
    b = pigeond_factory("b")
    b.host = "127.0.0.2"  # the same port on another address
    b.spool_dir = workdir / "spool-b"
    b.settings["spool.dir"] = str(b.spool_dir)
    b.start(attempts=1)
    assert b.port == a.port
    pa = ctl_json(a, "status")["listeners"]["telemetry"]
    pb = ctl_json(b, "status")["listeners"]["telemetry"]
    assert pa.endswith(f"/pigeond-{a.port}/dpdk_telemetry.v2"), pa
    assert pb.endswith(f"/pigeond-{a.port}-{b.proc.pid}/dpdk_telemetry.v2"), pb
    assert telemetry(pa)[0]["pid"] == a.proc.pid
    assert telemetry(pb)[0]["pid"] == b.proc.pid
    # the one that stops first takes only its own directory with it
    assert b.stop() == 0
    assert not os.path.exists(pb)
    assert telemetry(pa)[0]["pid"] == a.proc.pid


def test_telemetry_with_the_default_dpdk_prefix(pigeond_factory, backend):
    """Without --file-prefix in dpdk.eal pigeond picks pigeond-dpdk-PID, removed at stop."""
    if backend.name != "dpdk":
        pytest.skip("the DPDK backend's own prefix")
    eal = backend.netns.eal_args().replace(f"--file-prefix={backend.netns.name} ", "")
    assert "--file-prefix" not in eal
    p = pigeond_factory().start(dpdk__eal=eal)
    path = ctl_json(p, "status")["listeners"]["telemetry"]
    # the pid EAL sees is pigeond's own, inside `ip netns exec`
    hello, (ports, stats) = telemetry(path, "/ethdev/list", "/ethdev/stats,0")
    assert path == f"/var/run/dpdk/pigeond-dpdk-{hello['pid']}/dpdk_telemetry.v2", path
    assert ports == {"/ethdev/list": [0]}, ports
    assert stats["/ethdev/stats"]["ipackets"] > 0, stats
    assert p.stop() == 0
    assert not os.path.exists(os.path.dirname(path)), "the runtime directory stays behind"
