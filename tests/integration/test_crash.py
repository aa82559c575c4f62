"""kill -9 under load loses nothing that got a 250; the spool reopens afterwards."""

import hashlib
import random
import signal
import threading
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

THREADS = 24
RUN_SECONDS = 1.5


def client_loop(server, tid, stop, acked, errors, rcpt_pool):
    """Sends messages until told to stop or the server goes away; records every 250 as
    (queue id, recipients, SHA-256 of the content sent)."""
    rng = random.Random(tid)
    n = 0
    while not stop.is_set():
        try:
            with server.raw(timeout=5) as c:
                c.greet(f"crash{tid}.example.org")
                while not stop.is_set():
                    rcpts = rng.sample(rcpt_pool, rng.randint(1, 3))
                    content = (f"Subject: crash test {tid}/{n}\r\n\r\n".encode()
                               + (b"%d " % n) * rng.randint(1, 400) + b"\r\n")
                    head, data = helpers.smtp_message_bytes(f"t{tid}@example.org", rcpts, content)
                    c.send(head)
                    codes = [c.reply()[0] for _ in range(2 + len(rcpts))]
                    if codes != [250] * (1 + len(rcpts)) + [354]:
                        errors.append((tid, codes))
                        return
                    c.send(data)
                    code, text = c.reply()
                    if code == 250:
                        acked.append((helpers.queue_id_of(text[-1]), rcpts,
                                      hashlib.sha256(content).hexdigest()))
                    n += 1
        except (OSError, ConnectionError, AssertionError):
            # the server was killed: connection reset, closed or refused
            if stop.is_set():
                return
            time.sleep(0.01)
            if not server.running():
                return


@pytest.mark.slow
def test_kill9_loses_no_acknowledged_message(pigeond):
    pool = [a for s, addrs in helpers.addresses_in_shards(per_shard=3).items() for a in addrs]
    stop = threading.Event()
    acked, errors = [], []
    threads = [threading.Thread(target=client_loop, args=(pigeond, i, stop, acked, errors, pool),
                                daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    count_at_kill = len(acked)
    pigeond.signal(signal.SIGKILL)
    pigeond.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    assert not errors, errors[:5]
    assert count_at_kill > 0, "nothing was acknowledged before the kill"
    assert len({a[0] for a in acked}) == len(acked), "a queue id was acknowledged twice"

    entries = helpers.spool_ls(pigeond.spool_dir)
    index = helpers.copies_by_id(entries)
    for qid, rcpts, _ in acked:
        helpers.assert_stored_once_per_shard(index, qid, rcpts)
    # no message copy is stored twice
    keys = [(e["id"], e["shard"]) for e in entries]
    assert len(keys) == len(set(keys))

    # the same spool opens again and takes new mail
    pigeond.restart()
    with pigeond.raw() as c:
        c.greet()
        head, data = helpers.smtp_message_bytes("after@example.org", ["back@example.com"],
                                                b"Subject: after restart\r\n\r\nok\r\n")
        c.send(head)
        assert [r[0] for r in c.replies(3)] == [250, 250, 354]
        c.send(data)
        code, text = c.reply()
        assert code == 250, text
        new_id = helpers.queue_id_of(text[-1])
    assert new_id not in {a[0] for a in acked}
    assert pigeond.stop() == 0
    index = helpers.copies_by_id(helpers.spool_ls(pigeond.spool_dir))
    helpers.assert_stored_once_per_shard(index, new_id, ["back@example.com"])
    for qid, rcpts, _ in acked:
        helpers.assert_stored_once_per_shard(index, qid, rcpts)
    print(f"{len(acked)} messages acknowledged before kill -9, all found")


def assert_content(spool_dir, acked, sample=40):
    """The stored bytes of (a sample of) the acknowledged messages are the ones sent."""
    rng = random.Random(len(acked))
    for qid, rcpts, digest in rng.sample(acked, min(sample, len(acked))):
        data = helpers.spool_show(spool_dir, qid, helpers.shard_of(rcpts[0]))
        assert hashlib.sha256(helpers.strip_received(data)).hexdigest() == digest, qid


def load_then(server, seconds, pool, action):
    """THREADS clients for `seconds`, then action() (the signal); returns what got 250."""
    stop = threading.Event()
    acked, errors = [], []
    threads = [threading.Thread(target=client_loop, args=(server, i, stop, acked, errors, pool),
                                daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    action()
    stop.set()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    assert not errors, errors[:5]
    return acked


@pytest.mark.slow
def test_kill9_repeated_rounds_lose_nothing(pigeond):
    """Three rounds of kill -9 under load on the same spool; after each restart every
    message any round acknowledged is there, with the bytes the client sent."""
    pool = [a for s, addrs in helpers.addresses_in_shards(per_shard=2).items() for a in addrs]
    all_acked = []

    def kill():
        pigeond.signal(signal.SIGKILL)
        pigeond.proc.wait(10)

    for round_no in range(3):
        if round_no > 0:
            pigeond.restart()
        acked = load_then(pigeond, 1.0, pool, kill)
        assert acked, f"round {round_no}: nothing was acknowledged before the kill"
        all_acked += acked
        index = helpers.copies_by_id(helpers.spool_ls(pigeond.spool_dir))
        for qid, rcpts, _ in all_acked:
            helpers.assert_stored_once_per_shard(index, qid, rcpts)
        assert len({a[0] for a in all_acked}) == len(all_acked), "a queue id came twice"
    assert_content(pigeond.spool_dir, all_acked)
    print(f"{len(all_acked)} messages acknowledged over 3 kill -9 rounds, all found")
