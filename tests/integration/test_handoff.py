"""Hand-off: pigeond drains its spool into real Postfix and Dovecot LMTP stores.

Each test starts its own delivery servers (delivery.py) on loopback ports in
its work directory, and stops them in teardown, also on failure.
"""

import json
import re
import socket

import pytest

import delivery
import helpers

DELIVER_TIMEOUT = 20.0


@pytest.fixture
def servers():
    """Collects delivery servers to stop at teardown."""
    made = []
    yield made
    for s in made:
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass


def relay_settings(default=None, routes=None, **extra):
    s = {"relay.min_backoff": "1", "relay.max_backoff": "2", "relay.timeout": "10",
         "relay.breaker_cooldown": "2",
         "log.level": "info"}
    if default:
        s["relay.default"] = default
    if routes:
        s["relay.routes"] = str(routes)
    s.update(extra)
    return s


def content_for(tag, extra=b""):
    return (b"From: Sender <sender@example.org>\r\n"
            b"To: <someone@example.com>\r\n"
            b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
            b"Message-ID: <" + tag.encode() + b"@example.org>\r\n"
            b"Subject: " + tag.encode() + b"\r\n\r\n"
            b"Hello " + tag.encode() + b".\r\n.leading dot line\r\n" + extra + b"bye\r\n")


def send_ids(server, mail_from, rcpts, content):
    """Sends one message; returns its queue id (from the 250 reply)."""
    with server.raw() as c:
        c.greet()
        assert c.cmd(f"MAIL FROM:<{mail_from}>")[0] == 250
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            assert code == 250, (r, code, text)
        assert c.cmd("DATA")[0] == 354
        c.send(helpers.dot_stuff(content) + b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        c.cmd("QUIT")
        return helpers.queue_id_of(text[-1])


def wait_delivered(store, want, timeout=DELIVER_TIMEOUT):
    """want: {(domain, user): count}; waits until every mailbox has at least that many."""
    def ok():
        got = store.messages()
        return all(len(got.get(k, [])) >= n for k, n in want.items())
    delivery.wait_for(ok, timeout, f"delivery of {want} into {store.name}; log:\n{store.log()}")
    return store.messages()


def key(addr):
    local, domain = addr.split("@")
    return (domain, local)


@pytest.mark.parametrize("fmt", [1, 2])
def test_handoff_postfix_maildir(fmt, pigeond_factory, workdir, servers):
    """Both spool formats: bodies in RocksDB (1) or in the segment log (2)."""
    rcpts = [a[0] for a in helpers.addresses_in_shards(per_shard=1).values()]
    pf = delivery.Postfix(workdir, rcpts)
    servers.append(pf)
    pf.start()
    p = pigeond_factory(**{k.replace(".", "__"): v
                           for k, v in relay_settings(f"smtp:127.0.0.1:{pf.port}",
                                                      **{"spool.format": str(fmt)}).items()})
    p.start()
    sent = {}
    for i, r in enumerate(rcpts):
        content = content_for(f"pf{i}", extra=b"x" * 100 + b"\r\n")
        qid = send_ids(p, "sender@example.org", [r], content)
        sent[r] = (qid, content)
    got = wait_delivered(pf, {key(r): 1 for r in rcpts})
    for r, (qid, content) in sent.items():
        (m,) = got[key(r)]
        assert delivery.body_after_added_headers(m, content), m[:600]
        ids = delivery.pigeon_ids([m])
        assert len(ids) == 1 and ids[0].startswith(qid + "."), (ids, qid)
    # every copy acknowledged and deleted
    delivery.wait_for(lambda: p.log().count("handed off completely") >= len(rcpts), 10,
                      "copies deleted")
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


def test_handoff_dovecot_lmtp(pigeond_factory, workdir, servers):
    rcpts = [r for pair in helpers.addresses_in_shards(per_shard=2).values() for r in pair]
    dv = delivery.DovecotLMTP(workdir, rcpts)
    servers.append(dv)
    dv.start()
    p = pigeond_factory(**{k.replace(".", "__"): v
                           for k, v in relay_settings(f"lmtp:127.0.0.1:{dv.port}").items()})
    p.start()
    content = content_for("lmtp-multi")
    qid = send_ids(p, "sender@example.org", rcpts, content)
    got = wait_delivered(dv, {key(r): 1 for r in rcpts})
    for r in rcpts:
        (m,) = got[key(r)]
        assert delivery.body_after_added_headers(m, content), m[:600]
        assert delivery.pigeon_ids([m])[0].startswith(qid + ".")
    delivery.wait_for(lambda: p.log().count("handed off completely") >= helpers.SHARDS, 10,
                      "copies deleted")
    # one LMTP reply recorded per recipient
    assert p.log().count(f"{qid}: to=<") >= len(rcpts)
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


@pytest.mark.parametrize("nrcpt,settings,transactions", [
    (5, {"relay.max_recipients": "2"}, [1, 2, 2]),
    # More than the client's 1024 per transaction: default 1000, what a default
    # Postfix accepts (smtpd_recipient_limit), not retried until it bounces.
    (1030, {"smtp.max_recipients": "2000"}, [30, 1000]),
])
def test_handoff_splits_at_max_recipients(pigeond_factory, workdir, servers, nrcpt, settings,
                                          transactions):
    """A copy with more recipients for one destination than relay.max_recipients
    goes out in several transactions of at most that many (Postfix logs nrcpt=)."""
    rcpts = helpers.addresses_in_shards(per_shard=nrcpt)[0]  # one copy, one destination
    pf = delivery.Postfix(workdir, rcpts)
    servers.append(pf)
    pf.start()
    p = pigeond_factory(**{k.replace(".", "__"): v
                           for k, v in relay_settings(f"smtp:127.0.0.1:{pf.port}",
                                                      **settings).items()})
    p.start()
    qid = send_ids(p, "sender@example.org", rcpts, content_for("split"))
    got = wait_delivered(pf, {key(r): 1 for r in rcpts}, timeout=120)
    assert sorted(got) == sorted(key(r) for r in rcpts)
    assert all(len(v) == 1 and delivery.pigeon_ids(v)[0].startswith(qid + ".")
               for v in got.values())
    maillog = (pf.dir / "maillog").read_text(errors="replace")
    sizes = sorted(int(n) for n in re.findall(r"from=<sender@example\.org>, size=\d+, nrcpt=(\d+)",
                                              maillog))
    assert sizes == transactions, maillog[-3000:]
    assert "status=deferred" not in p.log()
    delivery.wait_for(lambda: "handed off completely" in p.log(), 10, "copy deleted")
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


def log_usage(p, shard):
    """`pigeonctl spool summary`: the segment log of one shard (format 2)."""
    r = helpers.run_ctl(["spool", "summary", "--json", "--socket", p.spool_dir / "pigeond.sock"])
    reply = json.loads(r.stdout)
    assert reply["ok"] is True, reply
    (row,) = [s for s in reply["result"]["shards"] if s["shard"] == shard]
    return row["log"]


def log_disk_bytes(p, shard):
    """Blocks allocated to the shard's segment files."""
    d = p.spool_dir / f"shard-{shard:03d}" / "log"
    return sum(f.stat().st_blocks * 512 for f in d.glob("*.seg"))


def test_handoff_drain_reclaims_segments(pigeond_factory, workdir, servers):
    """Format 2: a drained shard gives its segments back.  Small (64 KiB) segments,
    twelve 30 KB messages for one shard, taken while the relay is down: segments fill
    and close; once Postfix has every message, the closed ones are removed and the
    disk use falls back."""
    rcpt = helpers.addresses_in_shards(per_shard=1)[0][0]
    pf = delivery.Postfix(workdir, [rcpt])
    servers.append(pf)
    # The relay's port, bound but not listening until Postfix starts: connections are
    # refused (the copies wait), and no other program on the machine can take it.
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hold.bind(("127.0.0.1", 0))
    port = hold.getsockname()[1]
    p = pigeond_factory(**{k.replace(".", "__"): v
                           for k, v in relay_settings(f"smtp:127.0.0.1:{port}",
                                                      **{"spool.segment_size": "65536",
                                                         "spool.format": "2"}).items()})
    p.start()
    for i in range(12):
        send_ids(p, "sender@example.org", [rcpt],
                 content_for(f"seg{i}", extra=(b"z" * 998 + b"\r\n") * 30))
    delivery.wait_for(lambda: log_usage(p, 0)["live_bytes"] >= 12 * 30000, 10, "usage")
    full = log_usage(p, 0)
    assert full["segments"] >= 6 and full["reclaimed_segments"] == 0, full
    disk_full = log_disk_bytes(p, 0)
    hold.close()
    pf.start(port)
    wait_delivered(pf, {key(rcpt): 12})
    # Left: the segment being written and the spare; nothing queued.
    delivery.wait_for(lambda: log_usage(p, 0)["segments"] <= 2, 10, "segments reclaimed")
    drained = log_usage(p, 0)
    assert drained["live_bytes"] == 0 and drained["reclaimed_segments"] >= 4, drained
    assert log_disk_bytes(p, 0) <= disk_full - 4 * 65536, (disk_full, drained)
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []
