"""Debian's rspamd as pigeond's content filter (milter.servers, docs/milter.md).

rspamd runs once for the module as its proxy worker in milter mode, scanning
itself (self_scan: no normal worker, no Redis), with a configuration the test
writes (local.d/override.d over Debian's /etc/rspamd) and Debian's unbound as
its only DNS server: local zones with the test domains' SPF, DKIM and DMARC
records, everything else NXDOMAIN at once.  Checked: GTUBE is rejected with
rspamd's own reply and not stored; a message DKIM-signed in the test (dkimpy,
the key's public half in the zone) is stored with rspamd's
Authentication-Results (dkim=pass) right after our Received:; a sender whose
SPF fails gets what its domain's DMARC policy says (quarantine: stored with
spf=fail and rspamd's X-Spam header; reject: refused); rspamd stopped, the
filter's default_action applies (tempfail: 451 and nothing stored; accept:
250 after the sync).  Kernel backend only: the filter path over DPDK is
test_milter.py's (both backends).
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import helpers
from test_screen import DNS_ADDR, Unbound

dkim = pytest.importorskip("dkim", reason="python3-dkim not installed")

RSPAMD = "/usr/bin/rspamd"
RCPT = "user@example.com"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
START_TIMEOUT = 60


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=True, timeout=60).stdout


class Rspamd:
    """rspamd -f with the test's configuration; its proxy worker is the milter."""

    def __init__(self, workdir, dns_port):
        self.dir = workdir
        self.port = helpers.free_port("127.0.0.1")
        for d in ("local.d", "override.d", "db", "run"):
            (workdir / d).mkdir(exist_ok=True)
        (workdir / "override.d" / "worker-proxy.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.port}";\nmilter = yes;\ntimeout = 120s;\n'
            'upstream "local" { default = yes; self_scan = yes; }\ncount = 1;\n')
        for w in ("normal", "controller"):
            (workdir / "override.d" / f"worker-{w}.inc").write_text("enabled = false;\n")
        # A small public-suffix list: the full one takes rspamd tens of seconds to compile.
        (workdir / "tld.dat").write_text("com\norg\nnet\ntest\n")
        (workdir / "local.d" / "options.inc").write_text(
            f'url_tld = "{workdir}/tld.dat";\n'
            # pigeond's client is 127.0.0.1 here: check SPF and DMARC for it too
            "check_local = true;\ncheck_authed = true;\n"
            f'dns {{ nameserver = ["{DNS_ADDR}:{dns_port}"]; timeout = 2s; retransmits = 1; }}\n')
        (workdir / "local.d" / "milter_headers.conf").write_text(
            'use = ["authentication-results"];\nskip_local = false;\n'
            "skip_authenticated = false;\n")
        # DMARC's policy as the action (rspamd only scores it by default)
        (workdir / "local.d" / "dmarc.conf").write_text(
            'actions { reject = "reject"; quarantine = "add header"; }\n')
        (workdir / "local.d" / "logging.inc").write_text('type = "console";\nlevel = "info";\n')
        self.log = workdir / "rspamd.log"
        self.proc = None

    def start(self):
        cmd = [RSPAMD, "-f", "-i", "-u", "root", "-g", "root", "-c", "/etc/rspamd/rspamd.conf",
               f"--var=LOCAL_CONFDIR={self.dir}", f"--var=DBDIR={self.dir}/db",
               f"--var=RUNDIR={self.dir}/run", f"--var=LOGDIR={self.dir}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"rspamd exited: {self.log.read_text()[-3000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "rspamd did not listen within 60 s"
                time.sleep(0.2)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the main process stops its workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def keys():
    private = openssl("genrsa", "-traditional", "1024")
    public = openssl("rsa", "-pubout", "-outform", "DER", data=private)
    return {"private": private, "p": base64.b64encode(public).decode()}


@pytest.fixture(scope="module")
def rspamd(keys):
    work = Path(tempfile.mkdtemp(prefix="pigeonair-rspamd-", dir=helpers.tmp_base()))
    zone = [
        'local-zone: "." static',  # everything rspamd asks but these: NXDOMAIN at once
        'local-zone: "dkim.test." static',
        f'local-data: \'sel._domainkey.dkim.test. 300 IN TXT "v=DKIM1; k=rsa; p={keys["p"]}"\'',
        'local-data: \'dkim.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"\'',
        'local-data: \'_dmarc.dkim.test. 300 IN TXT "v=DMARC1; p=reject"\'',
        'local-zone: "spf-fail.test." static',
        'local-data: \'spf-fail.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"\'',
        'local-data: \'_dmarc.spf-fail.test. 300 IN TXT "v=DMARC1; p=quarantine"\'',
        'local-zone: "spf-reject.test." static',
        'local-data: \'spf-reject.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"\'',
        'local-data: \'_dmarc.spf-reject.test. 300 IN TXT "v=DMARC1; p=reject"\'',
    ]
    dns = Unbound(work)
    dns.start({}, extra=zone)
    r = Rspamd(work, dns.port)
    try:
        yield r.start()
    finally:
        r.stop()
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)


def send(p, sender, content):
    with helpers.RawSMTP(p.host, p.port, timeout=60) as c:
        c.greet()
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(helpers.dot_stuff(content) + b".\r\n")
        reply = c.reply()
        c.cmd("QUIT")
        return reply


def message(sender, subject, body):
    return (f"From: <{sender}>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{time.time_ns()}@x.test>\r\n"
            f"\r\n{body}\r\n").encode()


def stored(p, qid):
    data = helpers.spool_show(p.spool_dir, qid)
    return data[data.index(b"Received: "):]


def test_rspamd(pigeond_factory, backend, rspamd, keys):
    if backend.name != "kernel":
        pytest.skip("rspamd runs in the root namespace: kernel backend only")
    p = pigeond_factory(milter__servers=f"inet:127.0.0.1:{rspamd.port}{{timeout=30000}}").start()

    # GTUBE: rspamd's own reject, nothing stored
    code, text = send(p, "spam@spf-fail.test", message("spam@spf-fail.test", "gtube", GTUBE))
    assert code == 554 and "Gtube pattern" in " ".join(text), (code, text)
    assert helpers.spool_ls(p.spool_dir) == []

    # DKIM-signed for dkim.test, SPF passing: dkim=pass in rspamd's Authentication-Results,
    # which follows our Received:
    signed = message("alice@dkim.test", "signed", "hello, signed")
    sig = dkim.sign(signed, b"sel", b"dkim.test", keys["private"],
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    code, text = send(p, "alice@dkim.test", sig + signed)
    assert code == 250, text
    data = stored(p, helpers.queue_id_of(text[-1]))
    after = helpers.strip_received(data)
    assert after.startswith(b"Authentication-Results: "), data[:600]
    ar = after[:after.index(b"\r\nDKIM-Signature")]
    # the authserv-id (RFC 8601 2.5) is pigeond's hostname, sent as {daemon_name}
    assert ar.startswith(f"Authentication-Results: {helpers.HOSTNAME};".encode()), ar
    assert b"dkim=pass header.d=dkim.test" in ar, ar
    assert b"spf=pass" in ar and b"dmarc=pass" in ar, ar
    assert after.endswith(b"\r\n\r\nhello, signed\r\n"), after[-100:]

    # SPF failing (client 127.0.0.1, the records allow only 192.0.2.1), no DKIM: the domain's
    # DMARC policy decides.  p=quarantine: stored, with the failure recorded and rspamd's
    # spam header; p=reject: rspamd's reject, nothing stored.
    code, text = send(p, "bob@spf-fail.test", message("bob@spf-fail.test", "spf", "hi"))
    assert code == 250, text
    after = helpers.strip_received(stored(p, helpers.queue_id_of(text[-1])))
    ar = after[:after.index(b"\r\nFrom:")]
    assert b"spf=fail" in ar and b"dmarc=fail" in ar and b"policy=quarantine" in ar, ar
    assert b"\r\nX-Spam: Yes\r\n" in after, after[:800]
    before = len(helpers.spool_ls(p.spool_dir))
    code, text = send(p, "eve@spf-reject.test", message("eve@spf-reject.test", "spf", "hi"))
    assert code == 554 and text == ["5.7.1 Spam message rejected"], (code, text)
    assert len(helpers.spool_ls(p.spool_dir)) == before

    # rspamd stopped: default_action tempfail answers 451 and stores nothing...
    before = len(helpers.spool_ls(p.spool_dir))
    rspamd.stop()
    code, text = send(p, "alice@dkim.test", message("alice@dkim.test", "down", "x"))
    assert code == 451 and text[0].startswith("4.7.1"), text
    assert len(helpers.spool_ls(p.spool_dir)) == before
    # ...and with default_action accept, 250 after the sync, stored without rspamd's headers
    p.stop()
    spool = str(p.spool_dir) + "-accept"
    q = pigeond_factory(name="accept", spool__dir=spool,
                        milter__servers=f"inet:127.0.0.1:{rspamd.port}{{default_action=accept}}"
                        ).start()
    code, text = send(q, "alice@dkim.test", message("alice@dkim.test", "down", "x"))
    assert code == 250, text
    data = helpers.spool_show(spool, helpers.queue_id_of(text[-1]))
    assert b"Authentication-Results" not in data
