"""log.format = json, log.target = journal and syslog (docs/operations.md, "Logs").

Under load (smtp-source, two workers whose lines go through their rings to
the log thread), every line pigeond writes is one JSON object with the
documented fields, the accepted lines name exactly the messages the spool
holds, and a refusal carries its reason.  log.target = journal is checked
against a journal socket of the test's own, bound over
/run/systemd/journal/socket in a mount namespace that only pigeond sees
(and without one: stderr, with a warning); log.target = syslog likewise
against a /dev/log of the test's own.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import time

import pytest

import helpers

SMTP_SOURCE = "/usr/sbin/smtp-source"
MESSAGES = 300
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
QID_RE = re.compile(r"^P[0-9A-F]{25}$")
LEVELS = {"error", "warning", "notice", "info", "debug"}


def json_lines(text):
    """Every line of the log as an object; fails on the first that is not one."""
    objs = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            pytest.fail(f"log line {n} is not JSON ({e}): {line[:300]!r}")
        assert isinstance(obj, dict), line
        assert TIME_RE.match(obj["time"]), obj
        assert obj["level"] in LEVELS, obj
        assert obj["ident"] == "pigeond" and isinstance(obj["pid"], int), obj
        assert isinstance(obj["event"], str) and obj["event"], obj
        assert isinstance(obj["msg"], str), obj
        objs.append(obj)
    return objs


@pytest.mark.skipif(not os.access(SMTP_SOURCE, os.X_OK), reason="smtp-source not installed")
def test_json_lines_under_load(pigeond_factory):
    p = pigeond_factory(workers=2, log__format="json").start()
    cmd = [SMTP_SOURCE, "-c", "-s", "20", "-m", str(MESSAGES), "-l", "2048",
           "-M", "source.example.org", "-f", "sender@example.org", "-t", "rcpt@example.com",
           f"{p.host}:{p.port}"]
    r = helpers.run_bounded(cmd, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # A refusal, with a reason, and a sender with what JSON must escape.
    with smtplib.SMTP(p.host, p.port, timeout=helpers.SOCKET_TIMEOUT) as s:
        s.ehlo("client.example.org")
        assert s.mail('"odd \\"q\\""@example.org')[0] == 250
        assert s.rcpt("victim@evil.test")[0] == 550
        assert s.rcpt("rcpt@example.com")[0] == 250
        assert s.data(b"Subject: x\r\n\r\ny\r\n")[0] == 250
    p.signal(signal.SIGHUP)
    assert p.wait_for_log(r'"event":"reloaded_configuration"', timeout=10)
    assert p.stop() == 0

    objs = json_lines(p.log())
    ids = {e["id"] for e in helpers.spool_ls(p.spool_dir)}
    assert len(ids) == MESSAGES + 1
    accepted = [o for o in objs if o["event"] == "accepted"]
    assert {o["queue_id"] for o in accepted} == ids
    assert len(accepted) == len(ids)
    for o in accepted:
        assert o["level"] == "info"
        assert QID_RE.match(o["queue_id"]), o
        assert o["client"] == "127.0.0.1", o
        assert o["rcpt_count"] == 1 and isinstance(o["size"], int) and o["size"] > 0, o
        assert o["msg"].startswith(o["queue_id"] + ": accepted client=127.0.0.1 "), o
    senders = {o["sender"] for o in accepted}
    assert senders == {"sender@example.org", '"odd \\"q\\""@example.org'}, senders
    assert sum(o["size"] > 2048 for o in accepted) == MESSAGES

    refused = [o for o in objs if o["event"] == "refused"]
    assert any(o["reason"] == "relay_denied" and o["client"] == "127.0.0.1"
               and o["level"] == "notice" for o in refused), refused
    events = [o["event"] for o in objs]
    assert "ready" in events and events[-1] == "stopped", events[-5:]
    ready = next(o for o in objs if o["event"] == "ready")
    assert ready["listen"] == f"{p.host}:{p.port}" and ready["workers"] == 2, ready


def test_format_changes_on_reload(pigeond_factory):
    p = pigeond_factory().start()
    with smtplib.SMTP(p.host, p.port, timeout=helpers.SOCKET_TIMEOUT) as s:
        s.sendmail("a@example.org", ["rcpt@example.com"], b"Subject: 1\r\n\r\n1\r\n")
    assert len(p.accepted_lines()) == 1
    p.settings["log.format"] = "json"
    p.write_config(p.settings)
    p.signal(signal.SIGHUP)
    assert p.wait_for_log(r'"event":"reloaded_configuration"', timeout=10), p.log()[-2000:]
    with smtplib.SMTP(p.host, p.port, timeout=helpers.SOCKET_TIMEOUT) as s:
        s.sendmail("b@example.org", ["rcpt@example.com"], b"Subject: 2\r\n\r\n2\r\n")
    assert p.stop() == 0
    text = p.log()
    after = text[text.index('{"time"'):]
    objs = json_lines(after)
    assert [o["sender"] for o in objs if o["event"] == "accepted"] == ["b@example.org"]


def test_log_target_is_checked(pigeond_factory, tmp_path):
    p = pigeond_factory()
    p.write_config({**p.settings, "log.target": "kafka"})
    r = subprocess.run([str(helpers.binary("pigeond")), "-t", "-c", str(p.config_path)],
                       capture_output=True, timeout=30)
    assert r.returncode == 2
    assert b"config key 'log.target': 'kafka' is not stderr, journal or syslog" in r.stderr


def read_journal_datagram(data: bytes):
    """The journal's native protocol (systemd's JOURNAL_NATIVE_PROTOCOL):
    KEY=value lines, or KEY, a newline, a 64-bit little-endian length, the value."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            v = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[k.decode()] = v.decode(errors="replace")
    return fields


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_journal_native_fields(pigeond_factory, workdir):
    sock_path = workdir / "journal.socket"
    js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    js.bind(str(sock_path))
    js.settimeout(0.2)
    p = pigeond_factory(log__target="journal")
    orig = p.command

    # pigeond alone sees the socket as the journal's: its own mount namespace.
    script = ("set -e; mkdir -p /run/systemd; mount -t tmpfs -o size=1m tmpfs /run/systemd; "
              "mkdir /run/systemd/journal; : >/run/systemd/journal/socket; "
              f"mount --bind {sock_path} /run/systemd/journal/socket; exec \"$@\"")
    p.command = lambda extra=None: ["unshare", "--mount", "--propagation", "private", "--",
                                    "sh", "-c", script, "sh", *orig(extra)]
    fields = []

    def collect(until, deadline_s):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                fields.append(read_journal_datagram(js.recv(1 << 16)))
            except socket.timeout:
                pass
            if until():
                return True
        return False

    try:
        # The ready line reaches the journal, not stderr: wait for it there.
        p.settings["spool.dir"] = str(p.spool_dir)
        p.spool_dir.mkdir(parents=True, exist_ok=True)
        p.port = helpers.free_port(p.host)
        p.overrides["listen"] = f"{p.host}:{p.port}"
        p.write_config(p.settings)
        with open(p.log_path, "ab") as logf:
            p.proc = subprocess.Popen(p.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=logf)
        assert collect(lambda: any(f.get("PIGEONAIR_EVENT") == "ready" for f in fields), 30), \
            (fields, p.raw_log()[-2000:])
        with smtplib.SMTP(p.host, p.port, timeout=helpers.SOCKET_TIMEOUT) as s:
            s.sendmail("a@example.org", ["rcpt@example.com"], b"Subject: j\r\n\r\nj\r\n")
        assert collect(lambda: any(f.get("PIGEONAIR_EVENT") == "accepted" for f in fields), 10)
        assert p.stop() == 0
        collect(lambda: any(f.get("PIGEONAIR_EVENT") == "stopped" for f in fields), 5)
    finally:
        js.close()
    acc = next(f for f in fields if f.get("PIGEONAIR_EVENT") == "accepted")
    qid = helpers.spool_ls(p.spool_dir)[0]["id"]
    assert acc["PIGEONAIR_QUEUE_ID"] == qid
    assert acc["PIGEONAIR_CLIENT"] == "127.0.0.1"
    assert acc["PIGEONAIR_SENDER"] == "a@example.org"
    assert acc["PIGEONAIR_RCPT_COUNT"] == "1"
    assert int(acc["PIGEONAIR_SIZE"]) > 0
    assert acc["PRIORITY"] == "6" and acc["SYSLOG_IDENTIFIER"] == "pigeond"
    assert acc["SYSLOG_FACILITY"] == "2"
    assert acc["MESSAGE"].startswith(f"{qid}: accepted client=127.0.0.1 from=<a@example.org>")
    assert any(f.get("PIGEONAIR_EVENT") == "stopped" for f in fields)
    # Nothing went to stderr but what comes before the log settings are read.
    assert "accepted" not in p.raw_log()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_journal_missing_falls_back_to_stderr(pigeond_factory):
    """sd_journal_sendv drops lines silently without a journal: pigeond sees
    that there is none, says so, and logs to stderr (the JSON form here)."""
    p = pigeond_factory(log__target="journal", log__format="json")
    orig = p.command
    script = ("set -e; mkdir -p /run/systemd; mount -t tmpfs -o size=1m tmpfs /run/systemd; "
              "exec \"$@\"")
    p.command = lambda extra=None: ["unshare", "--mount", "--propagation", "private", "--",
                                    "sh", "-c", script, "sh", *orig(extra)]
    p.start()  # waits for the ready line in its stderr
    assert p.stop() == 0
    objs = json_lines(p.log())
    assert objs[0]["level"] == "warning" and objs[0]["msg"].startswith(
        "log.target = journal, but no journal here (access(/run/systemd/journal/socket):"), objs[0]
    assert objs[-1]["event"] == "stopped"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_syslog_target(pigeond_factory, workdir):
    """log.target = syslog: syslog(3) datagrams (RFC 3164 form, facility mail,
    the level's priority) to a /dev/log of the test's own, bound in a mount
    namespace only pigeond sees (its /dev a tmpfs holding the host's devices)."""
    sock_path = workdir / "devlog.socket"
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ls.bind(str(sock_path))
    ls.settimeout(0.2)
    old = workdir / "olddev"
    old.mkdir()
    devs = " ".join(f": >/dev/{d}; mount --bind {old}/{d} /dev/{d};"
                    for d in ("null", "zero", "full", "random", "urandom"))
    script = (f"set -e; mount --bind /dev {old}; mount -t tmpfs -o size=1m tmpfs /dev; {devs} "
              f"mkdir /dev/shm; mount --bind {old}/shm /dev/shm; "
              f": >/dev/log; mount --bind {sock_path} /dev/log; umount -l {old}; exec \"$@\"")
    p = pigeond_factory(log__target="syslog", log__format="json")
    orig = p.command
    p.command = lambda extra=None: ["unshare", "--mount", "--propagation", "private", "--",
                                    "sh", "-c", script, "sh", *orig(extra)]
    got = []

    def collect(until, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(ls.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
            if until():
                return True
        return False

    try:
        p.spool_dir.mkdir(parents=True, exist_ok=True)
        p.port = helpers.free_port(p.host)
        p.overrides["listen"] = f"{p.host}:{p.port}"
        p.write_config(p.settings)
        with open(p.log_path, "ab") as logf:
            p.proc = subprocess.Popen(p.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=logf)
        assert collect(lambda: any('"event":"ready"' in g for g in got), 30), \
            (got, p.raw_log()[-2000:])
        with smtplib.SMTP(p.host, p.port, timeout=helpers.SOCKET_TIMEOUT) as s:
            s.sendmail("a@example.org", ["rcpt@example.com"], b"Subject: s\r\n\r\ns\r\n")
        assert collect(lambda: any('"event":"accepted"' in g for g in got), 10), got
        assert p.stop() == 0
    finally:
        ls.close()
    line = next(g for g in got if '"event":"accepted"' in g)
    # <PRI>: mail (2) * 8 + info (6) = 22; the ident with LOG_PID; then the object.
    m = re.match(r"^<22>\w{3} [ \d]\d \d\d:\d\d:\d\d pigeond\[(\d+)\]: (\{.*\})$", line)
    assert m, line
    obj = json.loads(m.group(2))
    assert obj["sender"] == "a@example.org" and obj["rcpt_count"] == 1, obj
    assert "accepted" not in p.raw_log()
