"""Power loss loses nothing that got a 250 (issue 13, section 4).

kill -9 keeps the kernel's page cache, so it cannot catch a missing fsync
(test_crash.py still runs it).  Here pigeond's spool lives on powerfs
(tests/powerfs): a FUSE file system that keeps every write and directory
change not yet synced in its own memory and drops it when the power is "cut".
Each round: 24 clients send, the power is cut at a random moment, pigeond is
killed, the file system is mounted again on what was durable, and then:

- `pigeonctl spool ls --dir` on the stopped spool: RocksDB's WAL recovers
  and every acknowledged message is there, once in each shard of its
  recipients (and `spool show --dir` of one of them);
- pigeond starts on it again (RocksDB recovers, writes on), and every stored
  copy is read over the control socket: each one is whole (its checksum,
  carried in the message, matches: nothing half-written is visible) and an
  acknowledged one is byte-identical to what its client sent.

Some rounds also cut while pigeond is starting (RocksDB's recovery flush).
A separate test cuts right after pigeond created its spool: the directory
entries it made must have been synced too (issue 15).

Both run on spool format 1 (RocksDB holds the bodies) and format 2 (the
segment log holds them, fdatasync'ed before the 250; RocksDB's index is
written unsynced and rebuilt from the log at start): `pigeonctl spool ls
--dir` reads a format-2 spool's log past the index's checkpoint, as the
next start re-indexes it.
"""

import base64
import hashlib
import json
import os
import random
import socket
import subprocess
import threading
import time

import pytest

import helpers
from powerfs_mount import fsync_dir, powerfs_factory  # noqa: F401 (a fixture)

CLIENTS = 24
ROUNDS = 8
SOCKET_TIMEOUT = 5.0
CLIENT_DEADLINE = 60.0


def make_content(test_id, rng):
    """A message that proves itself whole: its id and the SHA-256 of its body inside."""
    lines = [f"{test_id} line {i} ".encode() + bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz")
                                                     for _ in range(rng.randint(0, 70)))
             for i in range(rng.choice((1, 4, 30, 120)))]  # some over 4 KiB: blob files
    body = b"\r\n".join(lines) + b"\r\n"
    head = (f"Subject: power loss {test_id}\r\nX-Test-Id: {test_id}\r\n"
            f"X-Test-Sum: {hashlib.sha256(body).hexdigest()}\r\n\r\n").encode()
    return head + body


def check_whole(qid, data):
    """A stored copy: pigeond's Received header naming qid, then a message whose
    checksum matches.  Returns (test id, SHA-256 of the content)."""
    assert data.startswith(b"Received:"), f"{qid}: stored bytes do not start with Received:"
    received = helpers.received_header(data)
    assert f" id {qid}".encode() in received, f"{qid}: Received header {received!r}"
    content = helpers.strip_received(data)
    head, sep, body = content.partition(b"\r\n\r\n")
    assert sep, f"{qid}: no end of header in the stored message"
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line)
    assert b"X-Test-Id" in fields and b"X-Test-Sum" in fields, f"{qid}: header {head!r}"
    assert hashlib.sha256(body).hexdigest().encode() == fields[b"X-Test-Sum"], (
        f"{qid} ({fields[b'X-Test-Id'].decode()}): the stored body is not the one sent "
        f"(half-written?): {len(body)} bytes")
    return fields[b"X-Test-Id"].decode(), hashlib.sha256(content).hexdigest()


class Ctl:
    """One control-socket connection, many requests (docs/operations.md)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(helpers.CTL_TIMEOUT)
        self.sock.connect(str(path))
        self.buf = b""

    def close(self):
        self.sock.close()

    def request(self, **req):
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "control socket closed"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        assert reply.get("ok"), f"{req}: {reply}"
        return reply["result"]

    def show(self, qid, shard):
        return base64.b64decode(self.request(cmd="spool.show", id=qid, shard=shard)["data_base64"])


class Load:
    """CLIENTS threads sending to pigeond until stopped; every 250 recorded."""

    def __init__(self, pigeond, round_no, pool, sent):
        self.pigeond = pigeond
        self.round_no = round_no
        self.pool = pool
        self.sent = sent  # test id -> SHA-256 of the content, every message ever sent
        self.acked = []  # (queue id, recipients, test id, SHA-256 of the content)
        self.errors = []
        self.cutting = threading.Event()  # set before the cut: failures are expected then
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def unexpected(self, what):
        if not self.cutting.is_set():
            self.errors.append(what)

    def client(self, tid):
        rng = random.Random(f"{self.round_no}/{tid}")
        n = 0
        deadline = time.monotonic() + CLIENT_DEADLINE
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with self.pigeond.raw(timeout=SOCKET_TIMEOUT) as c:
                    code, text = c.reply()
                    if code != 220:
                        self.unexpected((tid, "banner", code, text))
                        time.sleep(0.01)
                        continue
                    code, text = c.cmd(f"EHLO power{tid}.example.org")
                    if code != 250:
                        self.unexpected((tid, "EHLO", code, text))
                        continue
                    while not self.stop.is_set() and time.monotonic() < deadline:
                        rcpts = rng.sample(self.pool, rng.choice((1, 1, 2, 3)))
                        test_id = f"r{self.round_no}-c{tid}-m{n}"
                        n += 1
                        content = make_content(test_id, rng)
                        digest = hashlib.sha256(content).hexdigest()
                        self.sent[test_id] = digest
                        head, data = helpers.smtp_message_bytes(f"c{tid}@example.org", rcpts,
                                                                content)
                        c.send(head)
                        codes = [c.reply()[0] for _ in range(2 + len(rcpts))]
                        if codes != [250] * (1 + len(rcpts)) + [354]:
                            self.unexpected((tid, test_id, codes))
                            break
                        c.send(data)
                        code, text = c.reply()
                        if code == 250:
                            self.acked.append((helpers.queue_id_of(text[-1]), rcpts, test_id,
                                               digest))
                        else:
                            self.unexpected((tid, test_id, code, text))
                        # a pause now and then: group commits of every size, and a spool
                        # that stays small enough to read whole after every round
                        time.sleep(rng.choice((0, 0.02, 0.05, 0.1)))
            except (OSError, ConnectionError, AssertionError) as e:
                # the power was cut and pigeond killed: reset, closed or refused
                if self.stop.is_set():
                    return
                if not self.pigeond.running():
                    return
                self.unexpected((tid, "connection", repr(e)))
                time.sleep(0.01)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(SOCKET_TIMEOUT * 3)
        assert not any(t.is_alive() for t in self.threads), "client threads did not finish"
        assert not self.errors, f"failures before the power cut: {self.errors[:5]}"
        assert len({a[0] for a in self.acked}) == len(self.acked), "a queue id came twice"
        return self.acked


def spool_pigeond(pigeond_factory, workdir, spool, fmt):
    """A pigeond (not started) whose spool is `spool`, of format `fmt`, and whose control
    socket is outside the mount."""
    # Small segments: powerfs keeps a file's whole size in memory.
    p = pigeond_factory(spool__dir=str(spool), ctl__socket=str(workdir / "pl.sock"),
                        spool__format=str(fmt), spool__segment_size=str(1 << 20))
    # Pigeond.start() makes its spool_dir (without a sync): give it one that exists, so
    # that only pigeond creates `spool`.
    p.spool_dir = spool.parent
    while not p.spool_dir.exists():
        p.spool_dir = p.spool_dir.parent
    return p


def launch_unready(p):
    """Starts pigeond without waiting for it: a cut may then fall inside its start-up."""
    p.port = helpers.free_port(p.host)
    p.write_config(p.settings)
    p.overrides["listen"] = f"{p.host}:{p.port}"
    with open(p.log_path, "ab") as logf:
        p.proc = subprocess.Popen(p.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                  stderr=logf)


def check_shards(spool):
    assert spool.is_dir(), f"{spool} is gone after the power cut"
    lost = [f"shard-{i:03d}" for i in range(helpers.SHARDS)
            if not (spool / f"shard-{i:03d}" / "CURRENT").is_file()]
    assert not lost, (f"{lost} lost (or lost CURRENT) in the power cut: a directory entry "
                      f"was never synced; {spool} holds {sorted(os.listdir(spool))}")


def check_stopped_spool(spool, acked, shows=1):
    """pigeonctl on the stopped spool: every acknowledged message in every shard of its
    recipients; `shows` of them read with `spool show --dir` (the running pigeond
    reads them all).  Returns the ls entries."""
    check_shards(spool)
    entries = check_acked(helpers.spool_ls(spool), acked)
    for qid, rcpts, test_id, digest in random.Random(len(acked)).sample(acked,
                                                                        min(shows, len(acked))):
        data = helpers.spool_show(spool, qid, helpers.shard_of(rcpts[0]))
        assert check_whole(qid, data) == (test_id, digest), f"{qid}: not the bytes sent"
    return entries


def ls_running(p):
    """Every stored copy, listed by the running pigeond (`spool.ls`)."""
    ctl = Ctl(p.settings["ctl.socket"])
    try:
        r = ctl.request(cmd="spool.ls", limit=100000)
    finally:
        ctl.close()
    assert not r["truncated"]
    return r["entries"]


def check_acked(entries, acked):
    """Every acknowledged message once in every shard of its recipients, no copy twice."""
    index = helpers.copies_by_id(entries)
    for qid, rcpts, test_id, _ in acked:
        copies = index.get(qid)
        assert copies, (f"{qid} ({test_id}) got 250 and is not in the spool after the "
                        f"power cut ({len(index)} messages are)")
        helpers.assert_stored_once_per_shard(index, qid, rcpts)
    keys = [(e["id"], e["shard"]) for e in entries]
    assert len(keys) == len(set(keys)), "a message copy is stored twice"
    return entries


def check_restarted(p, entries):
    """The restarted pigeond (format 2: its index rebuilt from the log) holds exactly
    the copies that the offline reader listed."""
    running = sorted((e["id"], e["shard"]) for e in ls_running(p))
    offline = sorted((e["id"], e["shard"]) for e in entries)
    assert running == offline, (f"pigeond lists {len(running)} copies, the stopped spool "
                                f"{len(offline)}: {set(running) ^ set(offline)}")


def check_running_spool(p, entries, acked, sent, verified):
    """Every copy of `entries` not yet in `verified`, read through the running pigeond:
    whole, sent by a client, and byte-identical for the acknowledged ones."""
    by_qid = {a[0]: a for a in acked}
    ctl = Ctl(p.settings["ctl.socket"])
    try:
        for e in entries:
            key = (e["id"], e["shard"])
            if key in verified:
                continue
            data = ctl.show(e["id"], e["shard"])
            assert len(data) == e["size"], f"{key}: {len(data)} bytes, ls said {e['size']}"
            test_id, digest = check_whole(e["id"], data)
            assert sent.get(test_id) == digest, f"{key}: {test_id} is not a message sent"
            if e["id"] in by_qid:
                assert by_qid[e["id"]][2:] == (test_id, digest), (
                    f"{e['id']} was acknowledged for {by_qid[e['id']][2]}, holds {test_id}")
            verified.add(key)
    finally:
        ctl.close()


def durable_mkdir(path):
    os.mkdir(path)
    fsync_dir(path.parent)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [1, 2])
def test_power_cuts_under_load_lose_no_acknowledged_message(fmt, workdir,
                                                          powerfs_factory,  # noqa: F811
                                                          pigeond_factory):
    fs = powerfs_factory().mount()
    spool = fs.mountpoint / "spool"
    durable_mkdir(spool)  # an existing spool: issue 15's bug is the next test's
    p = spool_pigeond(pigeond_factory, workdir, spool, fmt)
    pool = [a for s, addrs in helpers.addresses_in_shards(per_shard=2).items() for a in addrs]
    seed = int(os.environ.get("PIGEON_POWER_SEED") or random.randrange(1 << 32))
    print(f"cut moments: PIGEON_POWER_SEED={seed}")
    rng = random.Random(seed)
    sent, all_acked, verified = {}, [], set()
    p.start()
    for round_no in range(ROUNDS):
        load = Load(p, round_no, pool, sent).start()
        time.sleep(rng.uniform(0.05, 0.9))
        load.cutting.set()
        fs.cut()
        p.kill()
        acked = load.finish()
        all_acked += acked
        started = time.monotonic()
        fs.remount()
        entries = check_stopped_spool(spool, all_acked)
        if round_no % 3 == 1:
            # cut again while pigeond starts on what survived (WAL recovery and flush;
            # format 2: re-indexing from the segment log)
            launch_unready(p)
            time.sleep(rng.uniform(0.0, 1.0))
            fs.cut()
            p.kill()
            fs.remount()
            entries = check_stopped_spool(spool, all_acked)
        p.restart()
        check_restarted(p, entries)
        check_running_spool(p, entries, all_acked, sent, verified)
        print(f"round {round_no}: {len(acked)} acknowledged, {len(entries)} copies stored, "
              f"checked in {time.monotonic() - started:.1f}s")
    assert len(all_acked) > ROUNDS * 5, f"only {len(all_acked)} messages acknowledged"
    # The last restart takes new mail on the recovered spool; then a clean stop
    # (SIGTERM) and the power goes (an unmount keeps only what was synced too).
    load = Load(p, ROUNDS, pool, sent).start()
    time.sleep(0.3)
    load.cutting.set()
    assert p.stop() == 0
    all_acked += load.finish()
    fs.remount()
    entries = check_stopped_spool(spool, all_acked)
    p.restart()
    check_restarted(p, entries)
    check_running_spool(p, entries, all_acked, sent, set())  # every copy once more
    assert p.stop() == 0
    print(f"{len(all_acked)} messages acknowledged over {ROUNDS} power cuts, all found")


@pytest.mark.parametrize("where,fmt", [("spool", 1), ("a/spool", 1), ("spool", 2)])
def test_power_cut_right_after_spool_creation(where, fmt, workdir, powerfs_factory,  # noqa: F811
                                              pigeond_factory):
    """pigeond makes its spool directory (and a missing parent) and its shards; a cut
    soon after must not take their names back with every acknowledged message."""
    fs = powerfs_factory().mount()
    spool = fs.mountpoint / where
    assert not spool.exists()
    p = spool_pigeond(pigeond_factory, workdir, spool, fmt)
    p.start()
    rcpts = [a for s, addrs in helpers.addresses_in_shards(per_shard=1).items() for a in addrs]
    sent, acked = {}, []
    rng = random.Random(7)
    with p.raw() as c:
        c.greet("creation.example.org")
        for n in range(4):
            test_id = f"created-{n}"
            content = make_content(test_id, rng)
            sent[test_id] = hashlib.sha256(content).hexdigest()
            to = [rcpts[n % len(rcpts)], rcpts[(n + 1) % len(rcpts)]]
            head, data = helpers.smtp_message_bytes("creator@example.org", to, content)
            c.send(head)
            assert [r[0] for r in c.replies(4)] == [250, 250, 250, 354]
            c.send(data)
            code, text = c.reply()
            assert code == 250, text
            acked.append((helpers.queue_id_of(text[-1]), to, test_id, sent[test_id]))
    fs.cut()
    p.kill()
    fs.remount()
    assert spool.is_dir(), (f"{spool} is gone after the power cut, and with it {len(acked)} "
                            f"acknowledged messages: its directory entry was never synced")
    entries = check_stopped_spool(spool, acked)
    p.restart()
    check_restarted(p, entries)
    check_running_spool(p, entries, acked, sent, set())
    assert p.stop() == 0
