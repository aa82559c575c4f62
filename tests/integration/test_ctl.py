"""The control socket and pigeonctl against a running pigeond (docs/operations.md).

Every test goes through the backend-parametrised `pigeond` fixtures, so it runs on
each backend in $PIGEON_BACKENDS.  pigeonctl talks to the socket in the test's
own spool directory; another user is simulated with setpriv as `nobody`.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def sock_path(p):
    return str(p.spool_dir / "pigeond.sock")


def ctl(p, *args, check=True, as_nobody=False, socket_path=None):
    """Runs pigeonctl against p's control socket; returns the CompletedProcess."""
    cmd = [str(helpers.binary("pigeonctl"))] + [str(a) for a in args]
    cmd += ["--socket", socket_path or sock_path(p)]
    if as_nobody:
        cmd = NOBODY + cmd
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=helpers.CTL_TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r


def ctl_json(p, *args, **kw):
    """pigeonctl ... --json: the reply object, checked to be ok."""
    r = ctl(p, *args, "--json", **kw)
    reply = json.loads(r.stdout.decode())
    assert reply["ok"] is True, reply
    return reply["result"]


def raw_request(path, data, timeout=10.0):
    """Sends raw bytes on the control socket; returns what came back until EOF or a line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the request was out: the refusal is still to be read
        out = b""
        while not out.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def send_message(p, mail_from, rcpts, body=b"Subject: ctl test\r\n\r\nhello\r\n"):
    """One message through raw SMTP; returns its queue id."""
    with p.raw() as c:
        c.greet()
        assert c.cmd(f"MAIL FROM:<{mail_from}>")[0] == 250
        for r in rcpts:
            assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(helpers.dot_stuff(body) + b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        c.cmd("QUIT")
        return helpers.queue_id_of(text[-1])


def assert_serving(p):
    """pigeond still answers on both sockets."""
    assert p.running()
    assert ctl_json(p, "status")["version"]
    with p.raw() as c:
        c.greet()


# --------------------------------------------------------------------------
# status, stats, reload, shutdown

def test_status(pigeond, backend):
    st = ctl_json(pigeond, "status")
    assert st["backend"] == backend.name
    assert st["workers"] == 1
    assert st["paused"] is False
    assert st["listeners"]["smtp"] == f"{pigeond.host}:{pigeond.port}"
    assert st["listeners"]["ctl"] == sock_path(pigeond)
    assert st["listeners"]["metrics"] is None
    assert st["spool"]["health"] == "ok"
    assert st["spool"]["shards"] == helpers.SHARDS
    assert st["uptime_s"] >= 0
    text = ctl(pigeond, "status").stdout.decode()
    assert "backend:" in text and "paused:     no" in text


def test_stats_counts_messages_refusals_and_latency(pigeond):
    # the fixture's readiness probe was a connection too
    base = ctl_json(pigeond, "stats")["total"]["conns_total"]
    send_message(pigeond, "a@example.org", ["u1@example.com"])
    with pigeond.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<x@elsewhere.test>")[0] == 550
        c.cmd("QUIT")
    deadline = time.monotonic() + 5
    while True:
        st = ctl_json(pigeond, "stats")
        if st["total"]["conns_open"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    tot = st["total"]
    assert len(st["workers"]) == 1 and st["workers"][0]["worker"] == 0
    assert tot["messages_accepted"] == 1
    assert tot["conns_total"] == base + 2
    assert tot["conns_open"] == 0
    assert tot["bytes_accepted"] > 0
    assert tot["refused"]["relay_denied"] == 1
    lat = tot["commit_latency_us"]
    assert lat["count"] == 1
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] < 10_000_000
    text = ctl(pigeond, "stats").stdout.decode()
    assert text.splitlines()[0].split()[:3] == ["WORKER", "OPEN", "CONNS"]
    assert "relay_denied" in text


def test_reload_ok_and_invalid_refused(pigeond):
    gen = ctl_json(pigeond, "status")["config_generation"]
    assert ctl_json(pigeond, "reload")["config_generation"] == gen + 1
    good = pigeond.config_path.read_text()
    pigeond.config_path.write_text(good + "\nno_such_key = 1\n")
    try:
        r = ctl(pigeond, "reload", check=False)
        assert r.returncode == 1
        assert b"no_such_key" in r.stderr
        # a key that needs a restart is refused too, naming it
        pigeond.settings["spool.shards"] = "8"
        pigeond.write_config(pigeond.settings)
        r = ctl(pigeond, "reload", "--json", check=False)
        assert r.returncode == 1
        reply = json.loads(r.stdout)
        assert reply["ok"] is False and "spool.shards" in reply["error"]
    finally:
        pigeond.settings["spool.shards"] = str(helpers.SHARDS)
        pigeond.write_config(pigeond.settings)
    assert ctl_json(pigeond, "status")["config_generation"] == gen + 1
    assert_serving(pigeond)


def test_shutdown_stops_like_sigterm(pigeond):
    send_message(pigeond, "a@example.org", ["u1@example.com"])
    assert ctl_json(pigeond, "shutdown") == {"stopping": True}
    pigeond.proc.wait(helpers.STOP_TIMEOUT)
    assert pigeond.proc.returncode == 0
    assert "stopped" in pigeond.log_since_start()
    assert not os.path.exists(sock_path(pigeond))
    # the message is in the spool a restart recovers
    assert len(helpers.spool_ls(pigeond.spool_dir)) == 1
    r = ctl(pigeond, "status", check=False)
    assert r.returncode == 1 and b"connect(" in r.stderr


# --------------------------------------------------------------------------
# pause / resume

def test_pause_refuses_new_mail_and_lets_data_finish(pigeond):
    # A session already in DATA, and one connected but not yet at MAIL.
    in_data = pigeond.raw()
    before_mail = pigeond.raw()
    try:
        in_data.greet()
        assert in_data.cmd("MAIL FROM:<a@example.org>")[0] == 250
        assert in_data.cmd("RCPT TO:<u1@example.com>")[0] == 250
        assert in_data.cmd("DATA")[0] == 354
        in_data.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        before_mail.greet()

        assert ctl_json(pigeond, "pause")["paused"] is True
        assert ctl_json(pigeond, "status")["paused"] is True

        with pigeond.raw() as c:
            code, text = c.reply()
            assert code == 421, text
            assert "paused" in " ".join(text)
            assert c.at_eof()
        code, text = before_mail.cmd("MAIL FROM:<b@example.org>")
        assert code == 451 and text[0].startswith("4.3.2"), (code, text)

        in_data.send(b"second half\r\n.\r\n")
        code, text = in_data.reply()
        assert code == 250, text
        qid = helpers.queue_id_of(text[-1])
    finally:
        in_data.close()
        before_mail.close()

    st = ctl_json(pigeond, "stats")["total"]
    assert st["conns_paused"] == 1
    assert ctl_json(pigeond, "resume")["paused"] is False
    qid2 = send_message(pigeond, "c@example.org", ["u2@example.com"])
    ids = {e["id"] for e in ctl_json(pigeond, "spool", "ls")["entries"]}
    assert {qid, qid2} <= ids


# --------------------------------------------------------------------------
# spool summary / ls / show on the running pigeond

def test_spool_summary_ls_show(pigeond):
    by_shard = helpers.addresses_in_shards(per_shard=1)
    r0, r1 = by_shard[0][0], by_shard[1][0]
    q1 = send_message(pigeond, "alice@example.org", [r0])
    q2 = send_message(pigeond, "bob@example.org", [r0, r1],
                      body=b"Subject: two\r\n\r\n\xc3\xa9 binary \x01 ok\r\n")
    q3 = send_message(pigeond, "carol@example.org", [r1])

    summ = ctl_json(pigeond, "spool", "summary")
    assert summ["buckets"] == ["0-5m", "5-10m", "10-20m", "20-40m", "40-80m", "80-160m", "160m+"]
    assert summ["total"]["messages"] == 4  # q2 has a copy in each of two shards
    assert summ["total"]["ages"]["0-5m"] == 4
    shards = {s["shard"]: s for s in summ["shards"]}
    assert shards[0]["messages"] == 2 and shards[1]["messages"] == 2
    assert summ["total"]["bytes"] == sum(s["bytes"] for s in summ["shards"])
    text = ctl(pigeond, "spool", "summary").stdout.decode()
    assert "TOTAL" in text and "160m+" in text

    ls = ctl_json(pigeond, "spool", "ls")
    assert ls["truncated"] is False
    assert sorted(e["id"] for e in ls["entries"]) == sorted([q1, q2, q2, q3])
    helpers.assert_stored_once_per_shard(ls["entries"], q2, [r0, r1])

    def ids(*args):
        return sorted(e["id"] for e in ctl_json(pigeond, "spool", "ls", *args)["entries"])

    assert ids("--from", "BOB@") == [q2, q2]
    assert ids("--rcpt", r1) == sorted([q2, q3])
    assert ids("--shard", "0") == sorted([q1, q2])
    assert ids("--min-age", "3600") == []
    assert ids("--max-age", "3600") == sorted([q1, q2, q2, q3])
    assert ids("--from", "carol", "--shard", "0") == []
    lim = ctl_json(pigeond, "spool", "ls", "--limit", "1")
    assert len(lim["entries"]) == 1 and lim["truncated"] is True
    text = ctl(pigeond, "spool", "ls").stdout.decode().splitlines()
    assert text[0].split()[0] == "QUEUE-ID" and len(text) == 5

    shown = ctl(pigeond, "spool", "show", q2).stdout
    assert shown.startswith(b"Received:")
    assert helpers.strip_received(shown) == b"Subject: two\r\n\r\n\xc3\xa9 binary \x01 ok\r\n"
    r = ctl(pigeond, "spool", "show", "NOSUCHID", check=False)
    assert r.returncode == 1 and b"no message" in r.stderr
    r = ctl(pigeond, "spool", "show", "bad id!", check=False)
    assert r.returncode == 1

    # the same bytes as the offline reader gives once pigeond is stopped
    assert pigeond.stop() == 0
    assert helpers.spool_show(pigeond.spool_dir, q2) == shown


# --------------------------------------------------------------------------
# metrics

def promtool_check(text: bytes):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (Debian package prometheus; tools/setup-deps.sh)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout.decode(errors="replace")


def series_names(text: str):
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_metrics_promtool_and_http(pigeond_factory):
    port = helpers.free_port()
    p = pigeond_factory(metrics__listen=f"127.0.0.1:{port}").start()
    send_message(p, "a@example.org", ["u1@example.com"])
    text = ctl(p, "metrics").stdout
    promtool_check(text)
    s = text.decode()
    assert 'pigeonair_messages_accepted_total{worker="0"} 1' in s
    assert 'pigeonair_refusals_total{worker="0",reason="relay_denied"} 0' in s
    assert 'pigeonair_commit_latency_seconds_count{worker="0"} 1' in s
    assert 'pigeonair_spool_messages_committed_total{shard="' in s
    # the one message was synced alone: a group of size 1 in one of the shards
    assert re.search(r'^pigeonair_spool_groups_total\{shard="\d+",size="1"\} 1$', s, re.M), s
    # bounded labels: worker, shard, reason, quantile, TLS version, route-map destination,
    # group size (SPOOL_GROUP_BUCKETS of them)
    for line in s.splitlines():
        if "{" in line and not line.startswith("#"):
            labels = line[line.index("{") + 1:line.rindex("}")]
            for name in re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', labels):
                assert name in ("worker", "shard", "reason", "quantile", "version",
                                "destination", "result", "size"), line

    assert ctl_json(p, "status")["listeners"]["metrics"] == f"127.0.0.1:{port}"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = resp.read()
    promtool_check(body)
    assert series_names(body.decode()) == series_names(s)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    assert e.value.code == 404
    # garbage on the HTTP port does not stop anything
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"\x00" * 9000)
        assert c.recv(100).startswith(b"HTTP/1.0 4")
    assert_serving(p)


# --------------------------------------------------------------------------
# who may use the socket

@pytest.fixture
def open_dir():
    """A directory every user may enter, for a socket that nobody can reach."""
    d = tempfile.mkdtemp(prefix="pa-ctl-", dir=helpers.tmp_base())
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_other_user_refused(pigeond_factory, open_dir):
    sock = str(open_dir / "ctl.sock")
    # 0666: the file lets anyone connect, so the peer-credential check must refuse.
    p = pigeond_factory(ctl__socket=sock, ctl__mode="0666").start()
    assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
    r = ctl(p, "status", as_nobody=True, check=False, socket_path=sock)
    assert r.returncode == 1
    assert b"permission denied" in r.stderr
    r = ctl(p, "pause", "--json", as_nobody=True, check=False, socket_path=sock)
    assert r.returncode == 1
    assert json.loads(r.stdout)["ok"] is False
    assert ctl_json(p, "status", socket_path=sock)["paused"] is False
    assert "control: refused uid=65534" in p.log_since_start()
    assert ctl_json(p, "status", socket_path=sock)["version"]


def test_default_mode_keeps_others_out_and_group_lets_in(pigeond_factory, open_dir):
    sock = str(open_dir / "ctl.sock")
    p = pigeond_factory(ctl__socket=sock, ctl__group="nogroup").start()
    st = os.stat(sock)
    assert oct(st.st_mode & 0o777) == "0o660"
    assert st.st_gid == 65534
    # nobody's primary group is nogroup: the socket's group, so it may connect and is served
    assert ctl_json(p, "status", as_nobody=True, socket_path=sock)["version"]
    # the same user in another group (gid 1, daemon): the file mode keeps it out
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=1", "--clear-groups",
                        str(helpers.binary("pigeonctl")), "status", "--socket", sock],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 1 and b"Permission denied" in r.stderr


def test_mode_0660_refuses_at_connect(pigeond):
    # The socket lives in pigeond's spool directory; another user cannot even connect.
    r = ctl(pigeond, "status", as_nobody=True, check=False)
    assert r.returncode == 1
    assert b"Permission denied" in r.stderr


# --------------------------------------------------------------------------
# hostile input on the socket

def test_garbage_and_oversized_requests(pigeond):
    path = sock_path(pigeond)
    cases = [
        (b"garbage\n", "not JSON"),
        (b"[1,2,3]\n", "one JSON object"),
        (b"{}\n", "\"cmd\""),
        (b'{"cmd":42}\n', "\"cmd\""),
        (b'{"cmd":"nope"}\n', "unknown command"),
        (b'{"cmd":"spool.ls","limit":"many"}\n', "limit"),
        (b'{"cmd":"spool.ls","shard":99999}\n', "shard"),
        (b'{"cmd":"spool.show"}\n', "id"),
        (b'{"cmd":"status","cmd":"stats"}\n', "not JSON"),
        (b"\xff\xfe\x00garbage\n", "not JSON"),
        (b"{\"cmd\":\"" + b"x" * 60000 + b"\"}\n", "unknown command"),
    ]
    for data, want in cases:
        reply = json.loads(raw_request(path, data))
        assert reply["ok"] is False and want in reply["error"], (data[:40], reply)
    # over 64 KiB without a newline: an error, then the connection is closed
    reply = raw_request(path, b"{" * (70 * 1024))
    assert json.loads(reply) == {"ok": False, "error": "request longer than 65536 octets"}
    # a client that connects and says nothing, one that closes mid-line
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(path)
    half = socket.socket(socket.AF_UNIX)
    half.connect(path)
    half.sendall(b'{"cmd":"sta')
    half.close()
    # several requests on one connection are answered in order
    out = b""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b'{"cmd":"status"}\n{"cmd":"bad"}\n{"cmd":"stats"}\n')
        while out.count(b"\n") < 3:
            chunk = s.recv(65536)
            assert chunk
            out += chunk
    replies = [json.loads(l) for l in out.splitlines()]
    assert [r["ok"] for r in replies] == [True, False, True]
    assert "version" in replies[0]["result"] and "workers" in replies[2]["result"]
    idle.close()
    assert_serving(pigeond)


def test_too_many_clients(pigeond):
    path = sock_path(pigeond)
    held = []
    try:
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            held.append(s)
        time.sleep(0.3)
        reply = json.loads(raw_request(path, b'{"cmd":"status"}\n'))
        assert reply["ok"] is False and "too many" in reply["error"]
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:
        reply = json.loads(raw_request(path, b'{"cmd":"status"}\n'))
        if reply["ok"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply["ok"] is True
    assert_serving(pigeond)


# --------------------------------------------------------------------------
# the socket file itself

def test_stale_socket_removed_and_second_server_refused(pigeond_factory, workdir):
    sock = str(workdir / "c.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()  # leaves the file, as a pigeond killed with SIGKILL does
    a = pigeond_factory("a", ctl__socket=sock).start()
    assert ctl_json(a, "status", socket_path=sock)["version"]
    b = pigeond_factory("b", ctl__socket=sock)
    b.spool_dir = workdir / "spool-b"
    b.settings["spool.dir"] = str(b.spool_dir)
    with pytest.raises(AssertionError):
        b.start(attempts=1)
    assert "another pigeond answers on it" in b.log()
    assert ctl_json(a, "status", socket_path=sock)["version"]
    assert a.stop() == 0
    assert not os.path.exists(sock)


def test_socket_path_too_long_is_a_clear_error(pigeond_factory, workdir):
    p = pigeond_factory(ctl__socket=str(workdir / ("s" * 120)))
    with pytest.raises(AssertionError):
        p.start(attempts=1)
    assert "longer than the 107" in p.log()


def test_pigeonctl_usage_errors(binaries):
    pc = str(helpers.binary("pigeonctl"))
    for args in (["nosuch"], ["status", "--bogus"], ["spool", "ls", "--limit", "0"],
                 ["spool", "show"], ["spool", "delete", "ID1", "ID2"],
                 ["spool", "hold", "--all"], ["spool", "summary", "--younger-than", "1w"],
                 ["spool", "release", "--dir", "/tmp"]):
        r = subprocess.run([pc] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        assert r.returncode == 2, (args, r.stderr)
    r = subprocess.run([pc, "status", "--socket", "/nonexistent/pigeond.sock"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 1 and b"is pigeond running" in r.stderr



def pigeonctl(*args):
    """pigeonctl with exactly these arguments (no --socket added); the CompletedProcess."""
    return subprocess.run([str(helpers.binary("pigeonctl"))] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=helpers.CTL_TIMEOUT)


def test_options_before_between_and_after_the_command(pigeond):
    """Issue 15: every option may stand before, between or after the command words,
    as --opt VALUE or --opt=VALUE, and `--` ends the options (docs/operations.md)."""
    sock = sock_path(pigeond)
    # -c: a configuration that names the socket (pigeond's own may need -o keys)
    conf = pigeond.workdir / "ctl-only.ini"
    conf.write_text(f"[ctl]\nsocket = {sock}\n")
    qid = send_message(pigeond, "alice@example.org", [helpers.addresses_in_shards(per_shard=1)[0][0]])
    for args in (["--socket", sock, "status", "--json"],
                 [f"--socket={sock}", "--json", "status"],
                 ["status", "--json", f"--socket={sock}"],
                 ["-c", conf, "status", "--json"],
                 ["--json", "status", f"--config={conf}"]):
        r = pigeonctl(*args)
        assert r.returncode == 0, (args, r.stderr)
        reply = json.loads(r.stdout)
        assert reply["ok"] is True and reply["result"]["listeners"]["ctl"] == sock, args
    # before, between and after the two words of a grouped command: the same listing
    listings = []
    for args in (["--socket", sock, "--json", "spool", "ls", "--from", "alice@"],
                 ["spool", f"--socket={sock}", "--from=alice@", "ls", "--json"],
                 ["spool", "ls", "--from", "alice@", "--json", "--socket", sock]):
        r = pigeonctl(*args)
        assert r.returncode == 0, (args, r.stderr)
        listings.append([e["id"] for e in json.loads(r.stdout)["result"]["entries"]])
    assert listings == [[qid]] * 3, listings
    # `--` ends the options: what follows is an argument even if it looks like one
    r = pigeonctl("--socket", sock, "spool", "show", "--", qid)
    assert r.returncode == 0 and r.stdout.startswith(b"Received:"), r.stderr
    r = pigeonctl("--socket", sock, "status", "--", "--json")
    assert r.returncode == 2 and b"unexpected argument: --json" in r.stderr, r.stderr

    # a stopped spool: --dir anywhere, the same lines
    assert pigeond.stop() == 0
    spool = str(pigeond.spool_dir)
    outs = [pigeonctl(*args) for args in (["spool", "ls", "--dir", spool],
                                          ["--dir", spool, "spool", "ls"],
                                          ["spool", f"--dir={spool}", "ls"])]
    for r in outs:
        assert r.returncode == 0, r.stderr
    assert outs[0].stdout == outs[1].stdout == outs[2].stdout
    assert qid in outs[0].stdout.decode(), outs[0].stdout
    r = pigeonctl("--dir", spool, "spool", "show", qid)
    assert r.returncode == 0 and r.stdout.startswith(b"Received:"), r.stderr


def test_option_usage_errors_exit_2_and_say_why():
    """Unknown options, missing or empty values, an option the command does not take,
    wherever they stand: exit 2, the reason on stderr, nothing run (no socket exists)."""
    nosock = "/nonexistent/pigeond.sock"
    cases = [
        (["--bogus", "status"], "unknown option --bogus"),
        (["status", "--bogus"], "unknown option --bogus"),
        (["spool", "--bogus=1", "ls"], "unknown option --bogus"),
        (["-x", "status"], "unknown option -x"),
        (["status", "--socket"], "option --socket needs a value"),
        (["status", "--socket="], "option --socket needs a value"),
        (["spool", "ls", "--dir"], "option --dir needs a value"),
        (["status", "-c"], "option -c needs a value"),
        (["--json=yes", "status", "--socket", nosock], "option --json takes no value"),
        (["--m", "1", "spool", "ls"], "ambiguous option --m"),
        (["--dir", "/tmp", "spool", "release"], "option --dir does not apply"),
        (["--all", "status", "--socket", nosock], "option --all does not apply"),
        (["spool", "ls", "--limit=0", "--socket", nosock], "--limit takes 1..100000"),
        (["--socket", nosock, "spool", "ls", "extra"], "unexpected argument: extra"),
        (["--socket", nosock, "spool", "show"], "a queue id is required"),
        (["--socket", nosock, "--dir", "/tmp", "spool", "ls"], "no --socket or -c"),
        (["--socket", nosock, "spool"], "spool needs a command"),
        (["--socket", nosock, "nosuch"], "unknown command: nosuch"),
        ([], "usage: pigeonctl"),
    ]
    for args, why in cases:
        r = pigeonctl(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert why.encode() in r.stderr, (args, r.stderr)
        assert r.stdout == b"", (args, r.stdout)
    # --help anywhere: that command's usage, on stdout, exit 0
    for args in (["--help"], ["help"], ["-h", "status"], ["spool", "--help", "ls"],
                 ["help", "spool", "ls"]):
        r = pigeonctl(*args)
        assert r.returncode == 0 and r.stderr == b"", (args, r.stderr)
        assert r.stdout.startswith(b"usage: pigeonctl"), (args, r.stdout)
    assert b"--socket PATH" in pigeonctl("--help").stdout
    assert pigeonctl("spool", "ls", "--help").stdout.startswith(b"usage: pigeonctl spool ls ")
    r = pigeonctl("status", "--version")
    assert r.returncode == 0 and r.stdout.startswith(b"pigeonctl "), r.stderr


# --------------------------------------------------------------------------
# hand-off: hold, release, retry, drain

class Sink:
    """A minimal SMTP server that accepts everything: the delivery tier for hand-off tests."""

    def __init__(self):
        import socketserver
        import threading

        sink = self
        self.messages = []
        self.lock = threading.Lock()
        self.refusing = False  # True: every RCPT gets 451 (a store that defers everything)
        # An Event: the reply to the next message's final dot waits for it and is then 451
        # (a transaction kept in flight); `stalled` is set while it waits.
        self.gate = None
        self.stalled = threading.Event()

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self):
                w = self.wfile
                w.write(b"220 sink ESMTP\r\n")
                data = None
                while True:
                    line = self.rfile.readline(65536)
                    if not line:
                        return
                    if data is not None:
                        if line == b".\r\n" and sink.gate is not None:
                            gate, sink.gate = sink.gate, None
                            sink.stalled.set()
                            gate.wait(60)
                            data = None
                            w.write(b"451 4.3.0 not now\r\n")
                        elif line == b".\r\n":
                            with sink.lock:
                                sink.messages.append(b"".join(data))
                            data = None
                            w.write(b"250 2.0.0 queued\r\n")
                        else:
                            data.append(line)
                        continue
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"LHLO"):
                        w.write(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    elif verb == b"DATA":
                        data = []
                        w.write(b"354 go on\r\n")
                    elif verb == b"QUIT":
                        w.write(b"221 bye\r\n")
                        return
                    elif verb == b"RCPT" and sink.refusing:
                        w.write(b"451 4.3.0 try again later\r\n")
                    else:
                        w.write(b"250 2.0.0 ok\r\n")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.messages)

    def subjects(self):
        with self.lock:
            return [line for m in self.messages for line in m.split(b"\r\n")
                    if line.startswith(b"Subject:")]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.stop()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spool_ids(p):
    return sorted(e["id"] for e in ctl_json(p, "spool", "ls")["entries"])


def test_hold_release_retry_drain(pigeond_factory, sink):
    p = pigeond_factory(relay__default=f"smtp:127.0.0.1:{sink.port}").start()
    assert ctl_json(p, "spool", "hold") == {"held": True, "shard": None}
    by_shard = helpers.addresses_in_shards(per_shard=1)
    q0 = send_message(p, "a@example.org", [by_shard[0][0]])
    q1 = send_message(p, "b@example.org", [by_shard[1][0]])
    time.sleep(1.5)
    assert spool_ids(p) == sorted([q0, q1]), "held messages must stay queued"
    assert sink.count() == 0

    assert ctl_json(p, "spool", "release", "--shard", "0") == {
        "held": False, "shard": 0, "messages": 0, "truncated": False}
    wait_until(lambda: spool_ids(p) == [q1], 20, "shard 0 handed off")
    assert sink.count() == 1
    assert ctl_json(p, "spool", "retry") == {"retrying": True}
    time.sleep(1.0)
    assert spool_ids(p) == [q1], "shard 1 is still held"

    r = ctl(p, "spool", "hold", "--shard", "99", check=False)
    assert r.returncode == 1 and b"shard" in r.stderr
    st = ctl_json(p, "status")
    assert st["handoff"]["delivered"] >= 1

    assert ctl_json(p, "drain") == {"draining": True, "paused": True}
    p.proc.wait(30)
    assert p.proc.returncode == 0
    assert "drain: the spool is empty: stopping" in p.log_since_start()
    assert sink.count() == 2
    assert helpers.spool_ls(p.spool_dir) == []


def test_hold_release_retry_without_routes(pigeond):
    # With no relay configured the engine runs but routes nothing: hold still works,
    # and a drain would wait forever, so only hold/release/retry are exercised here.
    assert ctl_json(pigeond, "spool", "hold", "--shard", "1")["held"] is True
    assert ctl_json(pigeond, "spool", "release", "--shard", "1")["held"] is False
    assert ctl_json(pigeond, "spool", "retry")["retrying"] is True


# --------------------------------------------------------------------------
# per-message hold, release, retry, delete; filters; the per-destination view

def ls_by_id(p, *args):
    return {e["id"]: e for e in ctl_json(p, "spool", "ls", *args)["entries"]}


def subject(tag):
    return f"Subject: {tag}\r\n\r\nbody of {tag}\r\n".encode()


def test_message_hold_release_delete_retry(pigeond_factory, sink):
    sink.refusing = True  # the store defers every recipient: each attempt counts
    p = pigeond_factory(relay__default=f"smtp:127.0.0.1:{sink.port}", relay__min_backoff=1,
                        relay__max_backoff=2, relay__breaker_cooldown=1).start()
    by_shard = helpers.addresses_in_shards(per_shard=2)
    qa = send_message(p, "a@example.org", [by_shard[0][0]], body=subject("msg-a"))
    qb = send_message(p, "b@example.org", [by_shard[1][0]], body=subject("msg-b"))
    qc = send_message(p, "c@example.org", [by_shard[0][1]], body=subject("msg-c"))
    wait_until(lambda: ctl_json(p, "spool", "summary")["total"]["deferred"] == 3, 20,
               "all three deferred by the refusing destination")
    dest = f"smtp:127.0.0.1:{sink.port}/0"
    assert all(e["destinations"] == [dest] and e["deferred"] for e in ls_by_id(p).values())

    def engine_view():
        (row,) = ctl_json(p, "spool", "summary")["destinations"]
        assert row["destination"] == dest
        return row["engine"] or {}

    # the hand-off engine's own view of the destination: its failures so far
    wait_until(lambda: engine_view().get("deferred", 0) >= 3, 10, "the engine's deferred count")

    assert ctl_json(p, "spool", "hold", qa) == {"op": "hold", "id": qa, "messages": 1,
                                                "truncated": False}
    wait_until(lambda: ls_by_id(p)[qa]["held"], 10, f"{qa} held")
    out = ctl(p, "spool", "ls").stdout.decode()
    assert any(line.startswith(qa + "!") for line in out.splitlines()), out
    r = ctl(p, "spool", "delete", qb).stdout.decode()
    assert r.startswith(f"delete {qb}: 1 copy"), r
    wait_until(lambda: qb not in ls_by_id(p), 10, f"{qb} deleted")

    # The destination comes back: the held message stays, the other one goes.
    sink.refusing = False
    assert ctl_json(p, "spool", "retry") == {"retrying": True}
    wait_until(lambda: sorted(ls_by_id(p)) == [qa], 20, f"{qc} handed off, {qa} still held")
    time.sleep(2.5)  # longer than relay.max_backoff: a held copy never comes due by itself
    assert sorted(ls_by_id(p)) == [qa] and sink.subjects() == [b"Subject: msg-c"]
    summ = ctl_json(p, "spool", "summary")
    assert summ["total"]["held"] == 1 and summ["total"]["messages"] == 1
    (row,) = summ["destinations"]
    assert row["destination"] == dest and row["held"] == 1 and row["messages"] == 1
    assert row["oldest_age_s"] >= 0 and row["ages"]["0-5m"] == 1
    wait_until(lambda: engine_view().get("delivered") == 1, 10, "the engine's delivered count")
    # a bulk retry does not lift a hold either
    assert ctl_json(p, "spool", "retry", "--from", "a@")["messages"] == 0

    r = ctl(p, "spool", "release", qa).stdout.decode()
    assert r.startswith(f"release {qa}: 1 copy"), r
    wait_until(lambda: ls_by_id(p) == {}, 20, f"{qa} handed off after its release")
    assert sorted(sink.subjects()) == [b"Subject: msg-a", b"Subject: msg-c"]

    # Errors: an unknown or malformed id, an id with a filter it does not match.
    for args in (["hold", "15D0A116ED700000000001"], ["delete", "bad id!"]):
        r = ctl(p, "spool", *args, check=False)
        assert r.returncode == 1 and r.stderr, (args, r.stderr)
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []
    assert b"Subject: msg-b" not in b"".join(sink.subjects()), "a deleted message went out"


def test_filters_on_ls_summary_and_bulk_operations(pigeond_factory, workdir):
    # Two destinations that are down (nothing listens): everything stays queued.
    port_a, port_b = helpers.free_port(), helpers.free_port()
    routes = workdir / "routes"
    routes.write_text(f"shards 0-1 smtp:127.0.0.1:{port_a}\nshards 2-3 smtp:127.0.0.1:{port_b}\n")
    p = pigeond_factory(relay__routes=routes, relay__min_backoff=60).start()
    by_shard = helpers.addresses_in_shards(per_shard=1)
    m1 = send_message(p, "alice@example.org", [by_shard[0][0]])
    m2 = send_message(p, "bob@example.org", [by_shard[2][0]])
    m3 = send_message(p, "alice@example.org", [by_shard[3][0]])

    def ids(*args):
        return sorted(ls_by_id(p, *args))

    assert ids("--dest", f":{port_a}/") == [m1]
    assert ids("--dest", f"127.0.0.1:{port_b}") == sorted([m2, m3])
    assert ids("--dest", "lmtp:") == []
    assert ids("--from", "ALICE@") == sorted([m1, m3])
    assert ids("--older-than", "1h") == [] and ids("--older-than", "3600") == []
    assert ids("--younger-than", "10m") == sorted([m1, m2, m3])
    assert ids("--from", "alice", "--dest", f":{port_b}/") == [m3]
    r = ctl(p, "spool", "ls", "--older-than", "10x", check=False)
    assert r.returncode == 2

    summ = ctl_json(p, "spool", "summary")
    rows = {d["destination"]: d for d in summ["destinations"]}
    assert set(rows) == {f"smtp:127.0.0.1:{port_a}/0", f"smtp:127.0.0.1:{port_b}/0"}
    assert rows[f"smtp:127.0.0.1:{port_a}/0"]["messages"] == 1
    assert rows[f"smtp:127.0.0.1:{port_b}/0"]["messages"] == 2
    assert summ["total"]["messages"] == 3 and summ["total"]["held"] == 0
    assert ctl_json(p, "spool", "summary", "--from", "bob")["total"]["messages"] == 1
    text = ctl(p, "spool", "summary").stdout.decode()
    lines = text.splitlines()
    assert lines[0].split()[:7] == ["SHARD", "MESSAGES", "BYTES", "OLDEST_S", "DEFERRED",
                                    "HELD", "0-5m"]
    assert any(l.startswith("DESTINATION") for l in lines), text
    assert any(l.startswith(f"smtp:127.0.0.1:{port_b}/0") and l.split()[1] == "2"
               for l in lines), text
    assert any(l.split()[:8] == ["DESTINATION", "MESSAGES", "BYTES", "OLDEST_S", "DEFERRED",
                                 "HELD", "CONNS", "BREAKER_S"] for l in lines), text
    # nothing listens there: the engine counts its connection failures
    wait_until(lambda: all(d["engine"] and d["engine"]["failures"] >= 1
                           for d in ctl_json(p, "spool", "summary")["destinations"]),
               10, "the engine's failures at both destinations")

    # Bulk forms: only what they change is counted.
    assert ctl_json(p, "spool", "hold", "--from", "alice")["messages"] == 2
    wait_until(lambda: [ls_by_id(p)[m]["held"] for m in (m1, m2, m3)] == [True, False, True],
               10, "alice's messages held")
    assert ctl_json(p, "spool", "summary")["total"]["held"] == 2
    assert ctl_json(p, "spool", "hold", "--from", "alice")["messages"] == 0
    assert ctl_json(p, "spool", "release", "--dest", f":{port_b}/")["messages"] == 1
    wait_until(lambda: not ls_by_id(p)[m3]["held"], 10, f"{m3} released")
    assert ctl_json(p, "spool", "retry", "--shard", "0")["messages"] == 0  # m1 is held
    assert ctl_json(p, "spool", "retry", "--shard", "2")["messages"] == 1
    # a retry that names the message makes it due now, held or not
    out = ctl(p, "spool", "retry", m1).stdout.decode()
    assert out.startswith(f"retry {m1}: 1 copy"), out
    wait_until(lambda: not ls_by_id(p)[m1]["held"], 10, f"{m1} due again after retry {m1}")
    assert ctl_json(p, "spool", "hold", m1, "--shard", "0")["messages"] == 1
    wait_until(lambda: ls_by_id(p)[m1]["held"], 10, f"{m1} held again")
    r = ctl(p, "spool", "hold", m1, "--shard", "1", check=False)  # it has no copy there
    assert r.returncode == 1 and b"no message" in r.stderr

    r = ctl(p, "spool", "delete", check=False)
    assert r.returncode == 1 and b"all" in r.stderr
    assert ctl_json(p, "spool", "delete", "--older-than", "1h")["messages"] == 0
    assert ctl_json(p, "spool", "delete", "--rcpt", by_shard[2][0])["messages"] == 1
    wait_until(lambda: ids() == sorted([m1, m3]), 10, f"{m2} deleted")
    out = ctl(p, "spool", "release").stdout.decode()
    assert out.startswith("hand-off of every shard released; 1 held message copy released"), out
    wait_until(lambda: not any(e["held"] for e in ls_by_id(p).values()), 10, "holds lifted")
    assert ctl_json(p, "spool", "delete", "--shard", "3", "--all")["messages"] == 1
    wait_until(lambda: ids() == [m1], 10, "shard 3 emptied")
    assert ctl_json(p, "spool", "delete", "--all")["messages"] == 1
    wait_until(lambda: ids() == [], 10, "the spool emptied")
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


# --------------------------------------------------------------------------
# DPDK's own telemetry socket stays available beside the control socket

def telemetry_dir(p, backend):
    """EAL's runtime directory of p: pigeond-PORT (kernel), the namespace's name (dpdk)."""
    base = Path("/var/run/dpdk") if os.geteuid() == 0 else \
        Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "dpdk"
    name = f"pigeond-{p.port}" if backend.name == "kernel" else backend.netns.name
    return base / name


def test_dpdk_telemetry_socket_answers(pigeond, backend):
    # What `dpdk-telemetry.py -f PREFIX` does: a SEQPACKET socket, a JSON greeting, commands.
    path = telemetry_dir(pigeond, backend) / "dpdk_telemetry.v2"
    assert path.exists(), f"no telemetry socket at {path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(10)
        s.connect(str(path))
        hello = json.loads(s.recv(16384))
        assert "version" in hello and "pid" in hello, hello
        s.send(b"/eal/params")
        params = json.loads(s.recv(16384))
        assert "/eal/params" in params, params
        s.send(b"/ethdev/list")
        assert "/ethdev/list" in json.loads(s.recv(16384))
    assert_serving(pigeond)
