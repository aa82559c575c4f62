"""SIGTERM: idle sessions get 421, acknowledged mail stays, pigeond exits 0."""

import signal
import socket
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends


def test_sigterm_idle_sessions_get_421_and_exit_0(pigeond):
    idle = pigeond.raw()
    idle.greet()
    in_txn = pigeond.raw()
    in_txn.greet()
    assert in_txn.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert in_txn.cmd("RCPT TO:<r@example.com>")[0] == 250
    # a message stored before the signal must survive it
    done = pigeond.raw()
    done.greet()
    head, data = helpers.smtp_message_bytes("s@example.org", ["kept@example.com"],
                                            b"Subject: before SIGTERM\r\n\r\nkept\r\n")
    done.send(head)
    assert [r[0] for r in done.replies(3)] == [250, 250, 354]
    done.send(data)
    code, text = done.reply()
    assert code == 250, text
    kept_id = helpers.queue_id_of(text[-1])

    t0 = time.monotonic()
    pigeond.signal(signal.SIGTERM)
    for c in (idle, in_txn, done):
        code, text = c.reply()
        assert code == 421, text
        assert c.at_eof(), "connection not closed after 421"
        c.close()
    pigeond.proc.wait(10)
    elapsed = time.monotonic() - t0
    assert pigeond.proc.returncode == 0, pigeond.log()[-2000:]
    assert elapsed < 5, f"pigeond took {elapsed:.1f}s to exit"

    # no longer listening
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((pigeond.host, pigeond.port)) != 0

    entries = helpers.spool_ls(pigeond.spool_dir)
    assert [e["id"] for e in entries] == [kept_id]


def test_sigterm_with_no_sessions(pigeond):
    pigeond.signal(signal.SIGTERM)
    pigeond.proc.wait(5)
    assert pigeond.proc.returncode == 0
    assert helpers.spool_ls(pigeond.spool_dir) == []


def test_sigterm_during_data_upload(pigeond):
    """A client in the middle of its data gets 421 (or its 250 if the data completed)."""
    c = pigeond.raw()
    c.greet()
    assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: half\r\n\r\nhalf a message\r\n")
    time.sleep(0.2)
    pigeond.signal(signal.SIGTERM)
    code, text = c.reply()
    assert code == 421, text
    c.close()
    pigeond.proc.wait(10)
    assert pigeond.proc.returncode == 0
    assert helpers.spool_ls(pigeond.spool_dir) == []


def test_sigterm_under_load_keeps_every_250(pigeond):
    """SIGTERM while 24 clients send: pigeond exits 0 in bounded time; each message that
    got 250 (in-flight commits are still answered) is stored with the bytes sent."""
    import test_crash

    pool = [a for s, addrs in helpers.addresses_in_shards(per_shard=2).items() for a in addrs]
    t0 = []

    def term():
        t0.append(time.monotonic())
        pigeond.signal(signal.SIGTERM)
        pigeond.proc.wait(15)

    acked = test_crash.load_then(pigeond, 1.0, pool, term)
    assert pigeond.proc.returncode == 0, pigeond.log()[-2000:]
    assert time.monotonic() - t0[0] < 10
    assert acked, "nothing was acknowledged before SIGTERM"
    index = helpers.copies_by_id(helpers.spool_ls(pigeond.spool_dir))
    for qid, rcpts, _ in acked:
        helpers.assert_stored_once_per_shard(index, qid, rcpts)
    test_crash.assert_content(pigeond.spool_dir, acked)
