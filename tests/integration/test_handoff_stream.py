"""The spool's commit stream (spool.h): mail committed while the hand-off runs
reaches it in memory, and a stop leaves what it held to the next start.

Counters from `pigeonctl status --json` (handoff): streamed (copies taken from
the stream), stream_overflow, disk_loads (bodies read back from the spool).
"""

import json
import socket

import delivery
import helpers
from test_handoff import content_for, key, relay_settings, send_ids, wait_delivered
from test_handoff import servers  # noqa: F401 - the fixture that stops the delivery servers


def handoff_counters(p):
    r = helpers.run_ctl(["status", "--json", "--socket", p.spool_dir / "pigeond.sock"])
    return json.loads(r.stdout)["result"]["handoff"]


def settings(port):
    return {k.replace(".", "__"): v
            for k, v in relay_settings(f"smtp:127.0.0.1:{port}").items()}


def test_stream_drain_reads_no_body_from_disk(pigeond_factory, workdir, servers):
    """Every copy committed while the hand-off runs is delivered from memory: as
    many copies streamed as committed, and a body read from disk only for a copy
    whose attempt was deferred (none when Postfix takes everything)."""
    per_shard = 3
    rcpts = [r for rs in helpers.addresses_in_shards(per_shard=per_shard).values() for r in rs]
    pf = delivery.Postfix(workdir, rcpts)
    servers.append(pf)
    pf.start()
    p = pigeond_factory(**settings(pf.port)).start()
    # One message per recipient, and one to all of them (a copy in every shard).
    for i, r in enumerate(rcpts):
        send_ids(p, "sender@example.org", [r], content_for(f"s{i}"))
    send_ids(p, "sender@example.org", rcpts, content_for("all"))
    copies = len(rcpts) + helpers.SHARDS
    wait_delivered(pf, {key(r): 2 for r in rcpts})
    delivery.wait_for(lambda: p.log().count("handed off completely") >= copies, 10,
                      "copies deleted")
    c = handoff_counters(p)
    assert c["streamed"] == copies, c
    assert c["stream_overflow"] == 0, c
    assert c["disk_loads"] <= c["deferred"], c
    assert c["delivered"] == 2 * len(rcpts), c
    # A copy that arrived after the engine's turn began is no age, not a wrapped one.
    assert c["failed"] == 0 and c["dsns"] == 0, c
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


def test_stream_restart_delivers_what_was_held(pigeond_factory, workdir, servers):
    """Copies taken from the stream but not delivered when pigeond stops (the
    relay accepts connections and never greets) are on disk: the next start
    reads them and delivers each exactly once."""
    rcpts = [r for rs in helpers.addresses_in_shards(per_shard=2).values() for r in rs]
    # Listening, never accepting: connections complete in the kernel's backlog and
    # wait for a greeting that does not come (relay.timeout 10 s, longer than this).
    mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)
    try:
        p = pigeond_factory(**settings(mute.getsockname()[1])).start()
        qids = [send_ids(p, "sender@example.org", [r], content_for(f"r{i}"))
                for i, r in enumerate(rcpts)]
        delivery.wait_for(lambda: handoff_counters(p)["streamed"] == len(rcpts), 10,
                          "copies streamed")
        c = handoff_counters(p)
        assert c["delivered"] == 0 and c["disk_loads"] == 0, c
        assert p.stop() == 0
    finally:
        mute.close()
    pf = delivery.Postfix(workdir, rcpts)
    servers.append(pf)
    pf.start()
    p.settings["relay.default"] = f"smtp:127.0.0.1:{pf.port}"
    p.restart()
    got = wait_delivered(pf, {key(r): 1 for r in rcpts})
    delivery.wait_for(lambda: p.log().count("handed off completely") >= len(rcpts), 10,
                      "copies deleted")
    for r, qid in zip(rcpts, qids):
        (m,) = got[key(r)]
        assert delivery.pigeon_ids([m])[0].startswith(qid + ".")
    c = handoff_counters(p)
    # Queued before this start: read from disk, none from the stream.
    assert c["streamed"] == 0, c
    assert len(rcpts) <= c["disk_loads"] <= len(rcpts) + c["deferred"], c
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []
