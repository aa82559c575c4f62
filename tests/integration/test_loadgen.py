"""pigeon-loadgen (kernel sockets) against pigeond, Postfix's smtp-sink and scripted servers.

What is checked: every message the load generator counts as ok is stored
once (pigeonctl spool ls); a server that answers 4xx is counted as 4xx and
never as ok, whether it refuses DATA or the end of data; --duration ends the
run by itself, and --timeout bounds a run against a server that never
answers; a share of sessions uses STARTTLS (the Received: header says
ESMTPS); --idle holds connections past EHLO and closes them cleanly; a 421
after end of data (smtp-sink -Q) is a 4xx and a "rejected" session.
"""

import json
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import helpers

OPENSSL = shutil.which("openssl")
LOADGEN_TIMEOUT = 90


@pytest.fixture(scope="module")
def loadgen():
    path = helpers.binary("pigeon-loadgen")
    if not path.is_file():
        pytest.fail(f"pigeon-loadgen not found in {helpers.build_dir()}: build first", pytrace=False)
    return path


def run_loadgen(loadgen, server, *args, timeout=LOADGEN_TIMEOUT):
    """Runs pigeon-loadgen --kernel --json against a Pigeond (where its clients run) or a
    (host, port); returns (summary, process)."""
    if isinstance(server, tuple):
        host, port = server
        wrap = list
    else:
        host, port, wrap = server.host, server.port, server.client_cmd
    cmd = wrap([str(loadgen), "--kernel", "--json", "--quiet", "--target", f"{host}:{port}",
                *[str(a) for a in args]])
    t0 = time.monotonic()
    p = helpers.run_bounded(cmd, timeout=timeout)
    p.wall = time.monotonic() - t0
    out = p.stdout.decode(errors="replace").strip().splitlines()
    err = p.stderr.decode(errors="replace")
    assert out, f"no JSON on stdout (exit {p.returncode}); stderr:\n{err[-3000:]}"
    summary = json.loads(out[-1])
    for key in ("messages", "ok", "seconds", "msgs_per_sec", "p50_us", "p99_us", "p999_us",
                "connect_p99_us", "bytes", "replies", "errors"):
        assert key in summary, f"--json: no {key!r} in {out[-1]}"
    return summary, p


def no_errors(summary):
    return {k: v for k, v in summary["errors"].items() if v}


# --------------------------------------------------------------------------
# A scripted SMTP server: answers `refuse` at the stage named by `at`.

class ScriptedSMTP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, at=None, refuse="451 4.3.0 try again later", silent=False):
        self.at = at          # "data": refuse DATA; "eod": refuse the end of data
        self.refuse = refuse
        self.silent = silent  # accept, then never say a word
        self.counts = {"mail": 0, "data": 0, "eod": 0}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ScriptedHandler)

    def count(self, what):
        with self.lock:
            self.counts[what] += 1

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class ScriptedHandler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self):
        srv = self.server
        if srv.silent:
            # Hold the connection, answer nothing, until the client gives up.
            while self.rfile.read(4096):
                pass
            return
        w = self.wfile
        w.write(b"220 scripted ESMTP\r\n")
        while True:
            line = self.rfile.readline(2048)
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                w.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                srv.count("mail")
                w.write(b"250 2.1.0 ok\r\n")
            elif verb in (b"RCPT", b"RSET", b"NOOP"):
                w.write(b"250 ok\r\n")
            elif verb == b"DATA":
                srv.count("data")
                if srv.at == "data":
                    w.write(srv.refuse.encode() + b"\r\n")
                    continue
                w.write(b"354 go ahead\r\n")
                while True:
                    body = self.rfile.readline(65536)
                    if not body or body == b".\r\n":
                        break
                srv.count("eod")
                if srv.at == "eod":
                    w.write(srv.refuse.encode() + b"\r\n")
                else:
                    w.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                w.write(b"221 bye\r\n")
                return
            else:
                w.write(b"500 what\r\n")


# --------------------------------------------------------------------------

def test_loadgen_every_ok_is_stored(loadgen, pigeond):
    messages = 300
    s, p = run_loadgen(loadgen, pigeond, "--connections", 8,
                       "--messages", messages, "--rcpts", 2,
                       "--domains", ",".join(helpers.DOMAINS), "--size", 4096)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    assert s["messages"] == messages
    assert s["ok"] == messages, s
    assert s["replies"]["4xx"] == 0 and s["replies"]["5xx"] == 0, s
    assert not no_errors(s), s
    assert s["bytes"] >= messages * 4096
    assert 0 < s["p50_us"] <= s["p99_us"] <= s["p999_us"]
    assert s["connect_p99_us"] > 0
    assert s["msgs_per_sec"] > 0

    assert pigeond.stop() == 0, pigeond.log()[-2000:]
    entries = helpers.spool_ls(pigeond.spool_dir)
    ids = {e["id"] for e in entries}
    assert len(ids) == messages, f"{len(ids)} messages stored, loadgen said {messages} ok"
    assert len(pigeond.accepted_ids()) == messages
    assert all(e["from"] == "loadgen@example.org" for e in entries)
    # Two recipients per message, each in its own domain's pool: every copy has 1 or 2.
    by_id = helpers.copies_by_id(entries)
    for qid, copies in by_id.items():
        rcpts = [r for c in copies for r in c["rcpt"]]
        assert len(rcpts) == 2, (qid, copies)
        helpers.assert_stored_once_per_shard(by_id, qid, rcpts)


def test_loadgen_no_pipelining_size_dist_and_reconnects(loadgen, pigeond):
    messages = 60
    s, p = run_loadgen(loadgen, pigeond, "--connections", 3,
                       "--threads", 2, "--cpu", 0, "--messages", messages, "--per-conn", 4,
                       "--no-pipelining", "--size-dist", "1k:3,20k:1")
    assert p.returncode == 0
    assert s["ok"] == messages == s["messages"], s
    assert not no_errors(s), s
    # 4 messages per connection: at least 15 connections, each closed with QUIT.
    assert s["connects"] >= messages // 4
    assert s["clean_closes"] == s["connects"]
    assert pigeond.stop() == 0
    entries = helpers.spool_ls(pigeond.spool_dir)
    assert len({e["id"] for e in entries}) == messages
    sizes = sorted({e["size"] for e in entries})
    assert sizes[0] < 2048 and sizes[-1] > 20000, sizes


@pytest.mark.parametrize("at", ["data", "eod"])
def test_loadgen_counts_4xx_not_ok(loadgen, at):
    messages = 40
    with ScriptedSMTP(at=at) as srv:
        s, p = run_loadgen(loadgen, srv.server_address, "--connections", 2,
                           "--messages", messages)
    assert p.returncode == 0
    assert s["messages"] == messages
    assert s["ok"] == 0, s
    assert s["msgs_per_sec"] == 0
    assert s["replies"]["4xx"] == messages, s
    assert s["failed"] == messages
    if at == "eod":
        assert s["eod_replies"]["4xx"] == messages
        assert srv.counts["eod"] == messages
    else:
        assert srv.counts["data"] == messages and srv.counts["eod"] == 0
    assert not no_errors(s), s


def test_loadgen_5xx_at_data_counted(loadgen):
    with ScriptedSMTP(at="eod", refuse="554 5.6.0 rejected") as srv:
        s, p = run_loadgen(loadgen, srv.server_address, "--messages", 10)
    assert s["ok"] == 0 and s["replies"]["5xx"] == 10 and s["eod_replies"]["5xx"] == 10, s


SMTP_SINK = "/usr/sbin/smtp-sink"


@pytest.fixture
def smtp_sink():
    """Starts Postfix's smtp-sink with extra options on a free port; stops it at teardown."""
    if not os.access(SMTP_SINK, os.X_OK):
        pytest.skip("smtp-sink not installed")
    procs = []

    def start(*opts, host="127.0.0.1"):
        port = helpers.free_port()
        cmd = [SMTP_SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])
        cmd += [*opts, f"[{host}]:{port}" if ":" in host else f"{host}:{port}", "256"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + helpers.READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return (f"[{host}]" if ":" in host else host, port)
            except OSError:
                assert proc.poll() is None, f"smtp-sink exited: {proc.stderr.read()!r}"
                time.sleep(0.05)
        raise AssertionError("smtp-sink did not listen")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(helpers.STOP_TIMEOUT)


def test_loadgen_against_smtp_sink(loadgen, smtp_sink):
    s, p = run_loadgen(loadgen, smtp_sink(), "--connections", 4, "--messages", 200,
                       "--rcpts", 3)
    assert p.returncode == 0
    assert s["ok"] == s["messages"] == 200, s
    assert not no_errors(s), s


def test_loadgen_kernel_ipv6(loadgen, smtp_sink):
    # --target [ADDR6]:PORT and an IPv6 --source: the kernel transport over IPv6.
    s, p = run_loadgen(loadgen, smtp_sink(host="::1"), "--connections", 2, "--messages", 40,
                       "--source", "::1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert s["ok"] == s["messages"] == 40, s
    assert not no_errors(s), s
    # A family mix is refused at the command line, as is an unbracketed IPv6 target.
    for bad in (["--target", "[::1]:25", "--source", "127.0.0.1"], ["--target", "::1:25"]):
        r = helpers.run_bounded([str(loadgen), "--kernel", *bad], timeout=10)
        assert r.returncode == 2, (bad, r.returncode, r.stderr)


def test_loadgen_smtp_sink_soft_rejects_end_of_data(loadgen, smtp_sink):
    # -r .: a 4xx to every end of data (and no PIPELINING: the one-at-a-time path).
    s, p = run_loadgen(loadgen, smtp_sink("-r", "."), "--connections", 2, "--messages", 30)
    assert s["messages"] == 30 and s["ok"] == 0, s
    assert s["eod_replies"]["4xx"] == 30 and s["replies"]["4xx"] == 30, s
    assert s["msgs_per_sec"] == 0


def test_loadgen_smtp_sink_421_after_data(loadgen, smtp_sink):
    # -Q .: 421 and disconnect after every end of data: a 4xx, a "rejected" session, a reconnect.
    s, p = run_loadgen(loadgen, smtp_sink("-Q", "."), "--connections", 2, "--messages", 20)
    assert s["messages"] == 20 and s["ok"] == 0, s
    assert s["eod_replies"]["4xx"] == 20, s
    assert s["errors"]["rejected"] == 20, s
    assert s["connects"] >= 20


def test_loadgen_duration_bounds_the_run(loadgen, pigeond):
    s, p = run_loadgen(loadgen, pigeond, "--connections", 4,
                       "--duration", 2, "--rate", 100)
    assert p.returncode == 0
    assert 2.0 <= s["seconds"] < 6, s
    assert p.wall < 15
    # Open loop at 100/s for 2 s: about 200 messages, all answered in the drain.
    assert 150 <= s["messages"] <= 250, s
    assert s["ok"] == s["messages"], s
    assert not no_errors(s), s
    assert pigeond.stop() == 0
    assert len({e["id"] for e in helpers.spool_ls(pigeond.spool_dir)}) == s["ok"]


def test_loadgen_hard_timeout_against_a_silent_server(loadgen):
    with ScriptedSMTP(silent=True) as srv:
        s, p = run_loadgen(loadgen, srv.server_address, "--connections", 3,
                           "--messages", 10, "--timeout", 2, "--reply-timeout", 60)
    assert p.wall < 12, p.wall
    assert s["ok"] == 0 and s["messages"] == 0
    assert s["errors"]["timeout"] == 3, s


def test_loadgen_refused_gives_up(loadgen):
    port = helpers.free_port()
    cmd = [str(loadgen), "--kernel", "--json", "--quiet", "--target", f"127.0.0.1:{port}",
           "--messages", 5, "--reply-timeout", 1]
    p = helpers.run_bounded([str(c) for c in cmd], timeout=30)
    assert p.returncode == 1
    s = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert s["errors"]["connect_refused"] > 0 and s["ok"] == 0


def test_loadgen_idle_connections(loadgen, pigeond, backend):
    if backend.name != "kernel":
        pytest.skip("counts the held connections in this namespace's /proc/net/tcp")
    # Two source addresses, used in turn (how 100,000 connections find enough ports).
    cmd = [str(loadgen), "--kernel", "--json", "--quiet", "--target",
           f"{pigeond.host}:{pigeond.port}", "--connections", "40", "--idle", "--duration", "2",
           "--source", "127.0.0.1,127.0.0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        # While they are held: established connections from each source address.
        by_source = {}
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and sum(by_source.values()) < 40:
            time.sleep(0.1)
            by_source = held_connections(pigeond.port)
        out, err = proc.communicate(timeout=LOADGEN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert by_source == {"127.0.0.1": 20, "127.0.0.2": 20}, by_source
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert s["ready"] == 40 and s["connects"] == 40, s
    assert s["messages"] == 0
    assert s["clean_closes"] == 40, s
    assert not no_errors(s), s


def held_connections(port):
    """Established IPv4 connections to 127.0.0.1:port, counted by source address."""
    counts = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state != "01" or int(remote.split(":")[1], 16) != port:
                continue
            addr = socket.inet_ntoa(bytes.fromhex(local.split(":")[0])[::-1])
            counts[addr] = counts.get(addr, 0) + 1
    return counts


@pytest.fixture(scope="module")
def cert():
    if OPENSSL is None:
        pytest.skip("openssl not installed")
    d = Path(tempfile.mkdtemp(prefix="pigeonair-lg-tls-", dir=helpers.tmp_base()))
    try:
        helpers.run_bounded([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                             "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                             "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                             "-out", str(d / "cert.pem")], timeout=60)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_loadgen_starttls_share(loadgen, pigeond_factory, cert):
    server = pigeond_factory(tls__cert=cert / "cert.pem", tls__key=cert / "key.pem").start()
    messages = 24
    s, p = run_loadgen(loadgen, server, "--connections", 2,
                       "--messages", messages, "--per-conn", 2, "--tls-share", 0.5)
    assert p.returncode == 0
    assert s["ok"] == messages, s
    assert not no_errors(s), s
    # 12 sessions needed, half of them TLS (a last session may open as the budget runs out).
    assert 5 <= s["tls_handshakes"] <= 8, s
    assert server.stop() == 0
    ids = {e["id"] for e in helpers.spool_ls(server.spool_dir)}
    assert len(ids) == messages
    tls = plain = 0
    for qid in ids:
        received = helpers.received_header(helpers.spool_show(server.spool_dir, qid))
        if b"with ESMTPS" in received:
            tls += 1
        elif b"with ESMTP" in received:
            plain += 1
    assert tls + plain == messages
    # About half each way; a TLS session opened as the budget ran out may carry none.
    assert 8 <= tls <= 2 * s["tls_handshakes"], (tls, plain, s)
    assert plain >= 8, (tls, plain)
