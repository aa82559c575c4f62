"""STARTTLS (RFC 3207) with real clients: openssl s_client, swaks, smtplib.

Every test runs over each backend of the `backend` fixture.  Certificates
(RSA 2048 and ECDSA P-256, self-signed for CN=localhost) are made once per
session with `openssl req` in a temporary directory removed at the end.
What is checked: TLS 1.2 and 1.3 with either key type; the message is stored
with a Received: header naming ESMTPS, the version and the cipher; bytes
pipelined after STARTTLS are never executed (CVE-2011-0411); a garbage,
stalled or abandoned handshake does not keep the server from serving others
and is counted in the log; a session ticket resumes a second connection,
also on another worker; tls.required refuses MAIL in clear.
"""

import json
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import helpers

OPENSSL = shutil.which("openssl")
# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = [pytest.mark.both_backends,
              pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")]

CLIENT_TIMEOUT = 30
QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as (\S+)")
# The signature algorithm a client offers decides which certificate the server picks.
SIGALGS = {"ecdsa": "ecdsa_secp256r1_sha256", "rsa": "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"}
KEY_BITS = {"ecdsa": 256, "rsa": 2048}


@pytest.fixture(scope="session")
def certs():
    d = Path(tempfile.mkdtemp(prefix="pigeonair-tls-", dir=helpers.tmp_base()))
    try:
        specs = {
            "ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "rsa": ["-newkey", "rsa:2048"],
        }
        for name, newkey in specs.items():
            helpers.run_bounded([OPENSSL, "req", "-x509", *newkey, "-nodes", "-days", "2",
                                 "-subj", "/CN=localhost", "-keyout", str(d / f"{name}.key"),
                                 "-out", str(d / f"{name}.pem")], timeout=60)
            assert (d / f"{name}.pem").is_file(), f"openssl req made no {name} certificate"
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tls_settings(certs, kinds=("ecdsa", "rsa")):
    return {"tls__cert": ",".join(str(certs / f"{k}.pem") for k in kinds),
            "tls__key": ",".join(str(certs / f"{k}.key") for k in kinds)}


@pytest.fixture
def tls_server(pigeond_factory, certs):
    return pigeond_factory(**tls_settings(certs)).start()


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def s_client(server, args, stdin, timeout=CLIENT_TIMEOUT):
    """openssl s_client -starttls smtp, fed `stdin` (lines, LF -> CRLF) after the handshake."""
    cmd = server.client_cmd([OPENSSL, "s_client", "-starttls", "smtp", "-connect",
                             f"{server.host}:{server.port}", "-crlf", "-ign_eof", *args])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(stdin.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"s_client did not finish: {out[-3000:]!r}")
    return out.decode("utf-8", errors="replace")


def message_lines(rcpt="bob@example.com", subject="tls"):
    return (f"EHLO sclient.example.org\nMAIL FROM:<alice@example.org>\nRCPT TO:<{rcpt}>\n"
            f"DATA\nSubject: {subject}\n\nover TLS\n.\nQUIT\n")


def stored_headers(server, queue_ids):
    """Stops the server and returns {queue id: Received header} from the spool."""
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    out = {}
    for qid in queue_ids:
        e = [x for x in entries if x["id"] == qid]
        assert len(e) == 1, (qid, entries)
        data = helpers.spool_show(server.spool_dir, qid, e[0]["shard"])
        out[qid] = helpers.received_header(data).decode()
    return out


def starttls_raw(server):
    """A raw client that said EHLO and STARTTLS and read the 220."""
    c = server.raw()
    c.greet()
    code, text = c.cmd("STARTTLS")
    assert code == 220, text
    return c


def closed_by_server(c, timeout):
    """True once the server closed the connection; a TLS alert before the FIN is fine."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        c.sock.settimeout(left)
        try:
            chunk = c.sock.recv(65536)
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False
        if not chunk:
            return True
        c.buf += chunk


def client_hello():
    """The first flight of a real TLS client, made without a network."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    data = outgoing.read()
    assert len(data) > 100
    return data


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["tls1_2", "tls1_3"])
@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_s_client(tls_server, version, kind):
    out = s_client(tls_server, [f"-{version}", "-sigalgs", SIGALGS[kind]],
                   message_lines(subject=f"{version} {kind}"))
    want = "TLSv1.2" if version == "tls1_2" else "TLSv1.3"
    assert re.search(rf"New, {want}, Cipher is (\S+)", out), out
    cipher = re.search(rf"New, {want}, Cipher is (\S+)", out).group(1)
    assert f"Server public key is {KEY_BITS[kind]} bit" in out, out
    # Inside TLS, EHLO no longer offers STARTTLS, and the message is queued.
    assert "250 CHUNKING" in out and "STARTTLS" not in out.split("Cipher is")[-1], out
    ids = QUEUED.findall(out)
    assert len(ids) == 1, out
    assert "221 2.0.0 Bye" in out, out
    header = stored_headers(tls_server, ids)[ids[0]]
    assert " with ESMTPS id " + ids[0] in header, header
    assert f"(version={want} cipher={cipher})" in header, header


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
@pytest.mark.parametrize("protocol", ["tlsv1_2", "tlsv1_3"])
def test_swaks_tls(tls_server, workdir, protocol):
    cmd = tls_server.client_cmd([
        "swaks", "--server", helpers.hostport(tls_server.host, tls_server.port), "--tls",
        "--tls-protocol", protocol, "--ehlo", "swaks.example.org",
        "--from", "carol@example.org", "--to", "dave@example.net", "--timeout", "10"])
    p = helpers.run_bounded(cmd, timeout=CLIENT_TIMEOUT)
    out = p.stdout.decode("utf-8", errors="replace")
    assert p.returncode == 0, out + p.stderr.decode(errors="replace")
    assert "250-STARTTLS" in out, out
    assert "220 2.0.0 Ready to start TLS" in out, out
    ids = re.findall(r"250 2\.0\.0 Ok: queued as (\S+)", out)
    assert len(ids) == 1, out
    want = "TLSv1.2" if protocol == "tlsv1_2" else "TLSv1.3"
    header = stored_headers(tls_server, ids)[ids[0]]
    assert re.search(rf"with ESMTPS id {ids[0]}\r\n\t\(version={want} cipher=\S+\)\r\n",
                     header), header


@pytest.mark.dpdk_ipv6
def test_smtplib_starttls(tls_server):
    with smtplib.SMTP(tls_server.host, tls_server.port, timeout=helpers.SOCKET_TIMEOUT) as s:
        s.ehlo("smtplib.example.org")
        assert s.has_extn("starttls")
        code, text = s.starttls(context=client_context())
        assert code == 220, text
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        # RFC 3207 4.2: the client must EHLO again, and STARTTLS is gone.
        code, text = s.docmd("MAIL FROM:<alice@example.org>")
        assert code == 503, text
        s.ehlo("smtplib.example.org")
        assert not s.has_extn("starttls")
        code, text = s.docmd("STARTTLS")
        assert code == 503 and b"TLS already active" in text, text
        refused = s.sendmail("alice@example.org", ["bob@example.com"],
                             b"Subject: smtplib\r\n\r\nhello\r\n")
        assert refused == {}
        code, text = s.docmd("NOOP")
        assert code == 250
    assert tls_server.wait_for_log(r": accepted client=" + re.escape(tls_server.backend.client_addr) + r" from=<alice@example\.org>")


def tls_session(server):
    """EHLO, STARTTLS, then a TLS socket and its reader, after the EHLO inside TLS."""
    c = starttls_raw(server)
    tls = client_context().wrap_socket(c.sock, server_hostname="localhost")
    tls.settimeout(helpers.SOCKET_TIMEOUT)
    f = tls.makefile("rb")
    tls.sendall(b"EHLO client.example.org\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    return c, tls, f


def exchange(tls, payload, replies, timeout=CLIENT_TIMEOUT):
    """Sends payload while reading, in one thread (an SSL object is not for two threads),
    until `replies` CRLF-ended lines arrived; returns them."""
    got, deadline, crlf = b"", time.monotonic() + timeout, b"\r\n"
    tls.setblocking(False)
    try:
        while got.count(crlf) < replies:
            assert time.monotonic() < deadline, f"{got.count(crlf)} of {replies} replies"
            r, w, _ = select.select([tls], [tls] if payload else [], [], 1.0)
            if payload and w:
                try:
                    payload = payload[tls.send(payload[:16384]):]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            if r or tls.pending():
                try:
                    data = tls.recv(65536)
                    assert data, f"server closed after {got.count(crlf)} replies"
                    got += data
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
    finally:
        tls.setblocking(True)
        tls.settimeout(helpers.SOCKET_TIMEOUT)
    return got.split(b"\r\n")[:-1]


def test_pipelining_and_large_message_in_tls(tls_server):
    """Replies beyond every buffer bound (engine, TLS queues, socket) all arrive, in order,
    and a 2 MB message goes through intact.  Over the DPDK stack the end of the burst
    sits in the TLS filter's queues with no segment left to come: only the client's
    ACKs of the replies may run it (it used to stall there)."""
    c = starttls_raw(tls_server)
    tls = client_context().wrap_socket(c.sock, server_hostname="localhost")
    try:
        n = 8000
        lines = exchange(tls, b"EHLO client.example.org\r\n" + b"NOOP\r\n" * n, 7 + n)
        assert lines[6] == b"250 CHUNKING", lines[:7]
        assert lines[7:] == [b"250 2.0.0 Ok"] * n
        body = b"".join(b"%07d " % i + b"x" * 92 + b"\r\n" for i in range(20000))
        head, data = helpers.smtp_message_bytes("alice@example.org", ["bob@example.com"],
                                                b"Subject: big\r\n\r\n" + body)
        lines = exchange(tls, head + data + b"QUIT\r\n", 5)
        assert [l[:3] for l in lines] == [b"250", b"250", b"354", b"250", b"221"], lines
        qid = helpers.queue_id_of(lines[3].decode())
    finally:
        tls.close()
        c.close()
    assert tls_server.stop() == 0
    stored = helpers.spool_show(tls_server.spool_dir, qid,
                                helpers.shard_of("bob@example.com"))
    assert helpers.strip_received(stored) == b"Subject: big\r\n\r\n" + body


def test_not_offered_without_certificate(pigeond):
    with pigeond.raw() as c:
        _, caps = c.greet()
        assert "STARTTLS" not in caps, caps
        code, text = c.cmd("STARTTLS")
        assert code == 502, text


def test_required(pigeond_factory, certs):
    server = pigeond_factory(tls__required="true", **tls_settings(certs)).start()
    with smtplib.SMTP(server.host, server.port, timeout=helpers.SOCKET_TIMEOUT) as s:
        s.ehlo("client.example.org")
        code, text = s.docmd("MAIL FROM:<alice@example.org>")
        assert code == 530 and b"5.7.0 Must issue a STARTTLS command first" in text, text
        s.starttls(context=client_context())
        s.ehlo("client.example.org")
        code, text = s.docmd("MAIL FROM:<alice@example.org>")
        assert code == 250, text


def served_key_bits(server):
    out = s_client(server, ["-tls1_3"], "QUIT\n")
    m = re.search(r"Server public key is (\d+) bit", out)
    assert m, out
    return int(m.group(1))


def test_reload_rereads_certificates(pigeond_factory, certs, workdir):
    """SIGHUP reads renewed files under the same names; a bad file refuses the reload."""
    cert, key = workdir / "live.pem", workdir / "live.key"
    shutil.copy(certs / "ecdsa.pem", cert)
    shutil.copy(certs / "ecdsa.key", key)
    server = pigeond_factory(tls__cert=str(cert), tls__key=str(key)).start()
    assert served_key_bits(server) == 256
    shutil.copy(certs / "rsa.pem", cert)
    shutil.copy(certs / "rsa.key", key)
    server.signal(signal.SIGHUP)
    assert server.wait_for_log(r"reloaded configuration \(generation 2\)")
    assert served_key_bits(server) == 2048
    key.write_text("not a key\n")
    server.signal(signal.SIGHUP)
    assert server.wait_for_log(r"reload refused, the running certificates stay: "
                               r"SSL_CTX_use_PrivateKey_file\(" + re.escape(str(key)))
    assert served_key_bits(server) == 2048
    assert server.running()


# ---------------------------------------------------------------------------
# CVE-2011-0411: what is sent with STARTTLS must never be executed.

def test_injection_rset_in_same_write(tls_server):
    with tls_server.raw() as c:
        c.greet()
        c.send(b"STARTTLS\r\nRSET\r\n")
        code, text = c.reply()
        assert code == 220, text
        assert c.buf == b"", f"server answered the injected RSET: {c.buf!r}"
        tls = client_context().wrap_socket(c.sock, server_hostname="localhost")
        tls.settimeout(helpers.SOCKET_TIMEOUT)
        tls.sendall(b"NOOP\r\n")
        got = b""
        while b"\r\n" not in got:
            chunk = tls.recv(4096)
            assert chunk, got
            got += chunk
        # Exactly one reply, to NOOP: the RSET's 250 would come first.
        assert got == b"250 2.0.0 Ok\r\n", got
        tls.close()


def test_injection_pipelined_mail_discarded(tls_server):
    with tls_server.raw() as c:
        c.greet()
        c.send(b"STARTTLS\r\nMAIL FROM:<mallory@example.org>\r\n"
               b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
        code, text = c.reply()
        assert code == 220, text
        tls = client_context().wrap_socket(c.sock, server_hostname="localhost")
        tls.settimeout(helpers.SOCKET_TIMEOUT)
        f = tls.makefile("rb")
        tls.sendall(b"RCPT TO:<bob@example.com>\r\n")
        line = f.readline()
        assert line.startswith(b"503 5.5.1"), line  # no MAIL was ever accepted
        tls.sendall(b"EHLO client.example.org\r\nRCPT TO:<bob@example.com>\r\nQUIT\r\n")
        lines = [f.readline() for _ in range(9)]
        assert lines[-2].startswith(b"503 5.5.1 Error: need MAIL"), lines
        assert lines[-1].startswith(b"221"), lines
        f.close()
        tls.close()
    assert tls_server.stop() == 0
    assert tls_server.accepted_lines() == []
    assert helpers.spool_ls(tls_server.spool_dir) == []


def test_bytes_before_handshake_fail_it(tls_server):
    """Pipelined bytes in a later read become the handshake's input: it fails, closed."""
    with starttls_raw(tls_server) as c:
        c.send(b"RSET\r\nMAIL FROM:<mallory@example.org>\r\n")
        assert closed_by_server(c, 10), c.buf
    assert tls_server.wait_for_log(r"tls handshake failed client="
                                + re.escape(tls_server.backend.client_addr))


# ---------------------------------------------------------------------------
# Bad handshakes: each one is closed and counted; the server goes on serving.

def good_session(server, results, index):
    try:
        with smtplib.SMTP(server.host, server.port, timeout=helpers.SOCKET_TIMEOUT) as s:
            s.ehlo("good.example.org")
            s.starttls(context=client_context())
            s.ehlo("good.example.org")
            s.sendmail("alice@example.org", ["bob@example.com"],
                       f"Subject: good {index}\r\n\r\nok\r\n".encode())
        results[index] = "ok"
    except Exception as e:  # reported by the assertion in the test
        results[index] = repr(e)


def test_bad_handshakes_do_not_block_others(pigeond_factory, certs):
    server = pigeond_factory(tls__handshake_timeout="3", **tls_settings(certs)).start()
    hello = client_hello()

    garbage = starttls_raw(server)
    stalled = starttls_raw(server)
    closing = starttls_raw(server)
    try:
        garbage.send(b"\x16\x03\x01\x00\x05garbage that is no TLS record" + bytes(range(256)))
        stalled.send(hello[:20])  # then nothing: a client stuck mid-handshake
        closing.send(hello[:40])
        closing.close()           # a client that gives up mid-handshake

        results = {}
        threads = [threading.Thread(target=good_session, args=(server, results, i))
                   for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CLIENT_TIMEOUT)
        assert results == {0: "ok", 1: "ok", 2: "ok"}, results

        assert closed_by_server(garbage, 10), garbage.buf
        started = time.monotonic()
        assert closed_by_server(stalled, 15), stalled.buf
        assert time.monotonic() - started < 10
    finally:
        for c in (garbage, stalled, closing):
            c.close()
    assert server.wait_for_log(r"tls handshake timeout client="
                            + re.escape(server.backend.client_addr))
    assert server.wait_for_log(r"connection closed by the client")
    assert len(re.findall(r"tls handshake failed client=", server.log())) >= 2, server.log()
    assert len(server.accepted_lines()) == 3
    assert server.running()


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["tls1_2", "tls1_3"])
def test_session_ticket_resumption(pigeond_factory, certs, workdir, version):
    """A ticket from one connection resumes the next ones, whichever worker they land on."""
    server = pigeond_factory(workers="2", log__level="debug", **tls_settings(certs)).start()
    sess = workdir / f"{version}.sess"
    first = s_client(server, [f"-{version}", "-sess_out", str(sess)],
                     "EHLO one.example.org\nQUIT\n")
    assert "New, TLSv1." in first and "221 2.0.0 Bye" in first, first
    assert sess.is_file() and sess.stat().st_size > 0, first
    for _ in range(12):
        again = s_client(server, [f"-{version}", "-sess_in", str(sess)],
                         "EHLO again.example.org\nQUIT\n")
        assert "Reused, TLSv1." in again, again
        assert "221 2.0.0 Bye" in again, again
    log = server.log()
    workers = re.findall(r"debug: tls worker=(\d+) client=\S+ version=\S+ cipher=\S+ resumed", log)
    assert len(workers) == 12, log
    issuer = re.findall(r"debug: tls worker=(\d+) client=\S+ version=\S+ cipher=\S+$", log, re.M)
    assert len(issuer) == 1, log
    # With two SO_REUSEPORT listeners, 12 connections all on the issuer has odds 2**-12.
    assert set(workers) - set(issuer), f"every resumption landed on worker {issuer}: {workers}"


def rotate(server, *args, check=True):
    return helpers.run_ctl(["tls", "rotate", *args, "--socket", server.spool_dir / "pigeond.sock"],
                           check=check)


def test_ticket_key_rotation(pigeond_factory, certs, workdir):
    """Rotations by `pigeonctl tls rotate` (tls.ticket_lifetime is an hour, so only the
    command rotates and OpenSSL's session timeout, 2 lifetimes, never decides): a ticket
    sealed with the previous key still resumes and is renewed; two rotations on it no
    longer does, while the renewed one, sealed one rotation ago, does.  The keys alone
    decide, whatever the load on the machine; the timed schedule has the next test."""
    server = pigeond_factory(log__level="info", tls__ticket_lifetime="3600",
                             **tls_settings(certs, kinds=("ecdsa",))).start()
    first, renewed = workdir / "first.sess", workdir / "renewed.sess"

    def connect(args):
        out = s_client(server, ["-tls1_3", *args], "EHLO rot.example.org\nQUIT\n")
        assert "221 2.0.0 Bye" in out, out
        return out

    assert "New, TLSv1.3" in connect(["-sess_out", str(first)])
    out = rotate(server).stdout.decode()
    assert out == "new session-ticket key: generation 2\n", out
    assert server.wait_for_log(r"new session-ticket key \(generation 2\)", timeout=8), server.log()
    out = connect(["-sess_in", str(first), "-sess_out", str(renewed)])
    assert "Reused, TLSv1.3" in out, out
    reply = json.loads(rotate(server, "--json").stdout)
    assert reply == {"ok": True, "result": {"ticket_generation": 3}}, reply
    out = connect(["-sess_in", str(renewed)])
    assert "Reused, TLSv1.3" in out, out
    out = connect(["-sess_in", str(first)])
    assert "New, TLSv1.3" in out, out


def test_tls_rotate_without_tls(pigeond_factory):
    """Without tls.cert the command fails with a reason, and pigeond carries on."""
    server = pigeond_factory().start()
    r = rotate(server, check=False)
    assert r.returncode == 1, r
    assert "TLS is not configured (tls.cert)" in r.stderr.decode(), r.stderr
    assert server.running()


def test_ticket_key_rotation_on_schedule_under_traffic(pigeond_factory, certs):
    """Keys rotate one tls.ticket_lifetime after the other from ready, however busy the
    network: over DPDK every packet the TAP receives interrupts the main lcore's wait
    (net_tap's SIGIO), and a control loop that started over on EINTR skipped its tick,
    so rotations waited for a second without packets, which under traffic never came."""
    lifetime = 2
    server = pigeond_factory(log__level="info", tls__ticket_lifetime=str(lifetime),
                             **tls_settings(certs, kinds=("ecdsa",))).start()
    seen = [time.monotonic()]
    stop = threading.Event()
    connects = []

    def traffic():
        """A TCP connection to pigeond every 0.2 s (at most 100): packets on its link."""
        for _ in range(100):
            try:
                socket.create_connection((server.host, server.port), timeout=2).close()
                connects.append(time.monotonic())
            except OSError:
                pass
            if stop.wait(0.2):
                return

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        for gen in (2, 3, 4):
            assert server.wait_for_log(rf"new session-ticket key \(generation {gen}\)",
                                       timeout=lifetime + 3), server.log()
            seen.append(time.monotonic())
        assert sender.is_alive()  # traffic lasted throughout
    finally:
        stop.set()
        sender.join(CLIENT_TIMEOUT)
    # Connections completed between every two rotations: packets reached pigeond throughout.
    assert all(any(a < c < b for c in connects) for a, b in zip(seen, seen[1:])), (seen, connects)
    gaps = [b - a for a, b in zip(seen, seen[1:])]
    # Each rotation within a second of its time (the loop's tick), and no drift: a gap
    # stays near one lifetime (a late rotation does not push the next one back).
    assert gaps[0] < lifetime + 1.5, gaps
    assert all(lifetime - 1.5 < g < lifetime + 1.5 for g in gaps[1:]), gaps
