"""Faults (docs/security.md): a full disk, failed and stalled spool writes.

Every case checks rule 1 from the client's side: each message that got a 250
is in the spool afterwards; a failed store gets 451 (4xx: the client keeps
the mail), pigeond does not crash, and acceptance resumes by itself.  The
disk-full cases mount a small tmpfs of their own (root only) and unmount it
in teardown, also when the test failed.
"""

import contextlib
import json
import os
import re
import subprocess
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

RCPT = "fault@example.com"


def status(p):
    """pigeonctl status --json: the result object."""
    r = helpers.run_ctl(["status", "--json", "--socket", p.spool_dir / "pigeond.sock"])
    reply = json.loads(r.stdout.decode())
    assert reply["ok"] is True, reply
    return reply["result"]


def metrics(p):
    r = helpers.run_ctl(["metrics", "--socket", p.spool_dir / "pigeond.sock"])
    return r.stdout.decode()


def metric_sum(text, name):
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def send(p, rcpt=RCPT, size=200, timeout=helpers.SOCKET_TIMEOUT):
    """One message on a new connection: (code of the banner, code after the data, queue id)."""
    with p.raw(timeout=timeout) as c:
        code, text = c.reply()
        if code != 220:
            return code, None, None
        assert c.cmd("EHLO fault.example.org")[0] == 250
        head, data = helpers.smtp_message_bytes("s@example.org", [rcpt],
                                                b"Subject: fault\r\n\r\n" + b"x" * size + b"\r\n")
        c.send(head)
        codes = [r[0] for r in c.replies(3)]
        if codes != [250, 250, 354]:
            return 220, codes, None
        c.send(data)
        code, text = c.reply()
        return 220, code, helpers.queue_id_of(text[-1]) if code == 250 else None


def wait_accepting(p, deadline_s, acked):
    """Sends until a message gets 250 (recorded in acked); returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < deadline_s:
        banner, code, qid = send(p)
        last = (banner, code)
        if code == 250:
            acked.append(qid)
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"no 250 within {deadline_s}s after the fault; last {last}; "
                         f"log tail:\n{p.log()[-3000:]}")


def assert_all_stored(p, acked):
    entries = helpers.spool_ls(p.spool_dir)
    index = helpers.copies_by_id(entries)
    for qid in acked:
        helpers.assert_stored_once_per_shard(index, qid, [RCPT])


def test_write_error_451_gate_421_then_reopen(pigeond_factory):
    p = pigeond_factory(spool__impair="fail=2", spool__retry_interval=1000).start()
    banner, code, _ = send(p)
    assert (banner, code) == (220, 451), "a failed spool write must answer 451"
    # the health gate: 421 at connect while the shard is failed
    with p.raw() as c:
        code, text = c.reply()
        assert code == 421 and "4.3.0" in text[0], text
    st = status(p)["spool"]
    assert st["health"] == "unhealthy" and st["healthy"] is False, st
    assert st["unhealthy_shards"] and st["unhealthy_shards"][0]["state"] == "failed", st
    assert "injected" in st["unhealthy_shards"][0]["error"]
    assert "pigeonair_spool_healthy 0" in metrics(p)
    acked = []
    wait_accepting(p, 15, acked)
    # the probe failed too (fail=2), so the shard was closed and opened again
    assert p.wait_for_log(r"spool: shard \d+ closed and opened again"), p.log()[-2000:]
    assert p.wait_for_log(r"spool: shard \d+ healthy again"), p.log()[-2000:]
    st = status(p)["spool"]
    assert st["healthy"] is True and st["reopens"] >= 1 and st["write_errors"] >= 1, st
    m = metrics(p)
    assert "pigeonair_spool_healthy 1" in m
    assert metric_sum(m, "pigeonair_connections_spool_unhealthy_total") >= 1
    assert metric_sum(m, "pigeonair_spool_reopens_total") >= 1
    for _ in range(5):
        assert send(p)[1] == 250
    assert p.stop() == 0
    assert_all_stored(p, acked)
    assert len(helpers.spool_ls(p.spool_dir)) == 6


def test_write_stall_451_within_timeout_then_resumes(pigeond_factory):
    p = pigeond_factory(spool__impair="stall=3000", spool__stall_timeout=300,
                        spool__retry_interval=200).start()
    t0 = time.monotonic()
    banner, code, _ = send(p)
    elapsed = time.monotonic() - t0
    assert (banner, code) == (220, 451), "a stalled spool write must answer 451"
    assert 0.25 < elapsed < 2.5, f"451 after {elapsed:.2f}s, spool.stall_timeout is 0.3s"
    with p.raw() as c:
        code, text = c.reply()
        assert code == 421, text
    st = status(p)["spool"]
    assert st["unhealthy_shards"][0]["state"] == "stalled", st
    acked = []
    wait_accepting(p, 15, acked)
    st = status(p)["spool"]
    assert st["healthy"] is True and st["stalls"] >= 1, st
    assert p.stop() == 0
    assert_all_stored(p, acked)


# --------------------------------------------------------------------------
# a real full disk: a tmpfs of the test's own

@pytest.fixture
def small_fs(workdir):
    """A 32 MiB tmpfs at workdir/fs, unmounted at teardown (lazily if still busy)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = workdir / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", str(mnt)],
                   check=True, timeout=10)
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], timeout=30)


# Format 2 preallocates a segment and a spare per shard: 1 MiB ones leave most of the
# 32 MiB to fill (the 1.1 MB message below then needs a segment of its own).
SEGMENT = str(1 << 20)


def fill(path, leave=0):
    """Writes path until the file system has at most `leave` bytes free (0: until ENOSPC)."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if free <= leave:
                break
            want = min(len(chunk), free - leave) if leave else len(chunk)
            try:
                f.write(chunk[:want])
                f.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    f.close()
                break


def test_disk_below_min_free_452_421_then_resumes(pigeond_factory, small_fs):
    p = pigeond_factory(spool__min_free=str(8 << 20), spool__segment_size=SEGMENT)
    p.spool_dir = small_fs / "spool"
    p.settings["spool.dir"] = str(p.spool_dir)
    p.start()
    acked = []
    for _ in range(3):
        banner, code, qid = send(p)
        assert code == 250
        acked.append(qid)
    early = p.raw()
    early.greet()
    fill(small_fs / "filler", leave=4 << 20)
    # below the floor: RCPT gets 452 4.3.1 on the open session, new sessions 421 4.3.1
    deadline = time.monotonic() + 5
    while True:
        assert early.cmd("MAIL FROM:<s@example.org>")[0] == 250
        code, text = early.cmd(f"RCPT TO:<{RCPT}>")
        early.cmd("RSET")
        if code == 452 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 452 and "4.3.1" in text[0], text
    with p.raw() as c:
        code, text = c.reply()
        assert code == 421 and "4.3.1" in text[0], text
    early.close()
    assert p.running()
    os.unlink(small_fs / "filler")
    wait_accepting(p, 10, acked)
    assert p.stop() == 0
    assert_all_stored(p, acked)


def test_disk_full_451_gate_then_resumes(pigeond_factory, small_fs):
    """No floor (spool.min_free=0): the write itself hits ENOSPC."""
    p = pigeond_factory(spool__min_free="0", spool__retry_interval=300,
                        spool__segment_size=SEGMENT)
    p.spool_dir = small_fs / "spool"
    p.settings["spool.dir"] = str(p.spool_dir)
    p.start()
    acked = []
    for _ in range(3):
        banner, code, qid = send(p)
        assert code == 250
        acked.append(qid)
    c = p.raw(timeout=30)
    c.greet()
    head, data = helpers.smtp_message_bytes("s@example.org", [RCPT],
                                            b"Subject: full\r\n\r\n" + (b"y" * 76 + b"\r\n") * 14000)
    c.send(head)
    assert [r[0] for r in c.replies(3)] == [250, 250, 354]
    fill(small_fs / "filler")
    c.send(data)
    code, text = c.reply()
    assert code == 451, f"expected 451 on a full disk, got {code} {text}"
    c.close()
    assert p.running(), "pigeond died on a full disk"
    with p.raw() as g:
        code, text = g.reply()
        assert code == 421 and "4.3.0" in text[0], text
    st = status(p)["spool"]
    assert st["healthy"] is False and "space" in st["unhealthy_shards"][0]["error"].lower(), st
    os.unlink(small_fs / "filler")
    wait_accepting(p, 20, acked)
    assert p.running()
    for _ in range(3):
        assert send(p)[1] == 250
    assert p.stop() == 0
    assert_all_stored(p, acked)
