"""End of data through content filters (milter.servers, docs/milter.md).

A small milter of the tests' own (milter_peer.py) on a loopback port, in
the test's namespace on the DPDK backend: what pigeond sends it (macros,
envelope, header fields, body) is checked, and each verdict it can give is
checked for its reply and for what the spool holds: accept with header
edits (stored after Received:), reject with its reply, tempfail, discard
(250, nothing stored).  Both backends: the worker's side of the rings.  The
milter thread's failure handling, the same on either backend, is
test_milter_failures.py's; Debian's rspamd is the real filter in
test_rspamd.py.
"""

import json
import socket
import threading
import time

import pytest

import helpers
from milter_peer import ACTIONS, MilterPeer, header

pytestmark = pytest.mark.both_backends

RCPT = "milter@example.com"
CONTENT = (b"From: sender@example.org\r\nSubject: hello\r\nX-Remove: me\r\n"
           b"\r\nbody line\r\n.leading dot\r\n")


@pytest.fixture
def milter(backend):
    m = MilterPeer()
    yield m
    m.close()


def filtered(pigeond_factory, servers, **settings):
    return pigeond_factory(milter__servers=servers, **settings).start()


def transaction(p, content=CONTENT, rcpts=(RCPT,)):
    """One message; its end-of-data reply (code, lines)."""
    with helpers.RawSMTP(p.host, p.port) as c:
        c.greet()
        assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
        for r in rcpts:
            assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(helpers.dot_stuff(content) + b".\r\n")
        reply = c.reply()
        assert c.cmd("QUIT")[0] == 221
        return reply


def reload(p):
    r = helpers.run_ctl(["reload", "--socket", p.spool_dir / "pigeond.sock"])
    assert r.returncode == 0, r


def stats(p):
    r = helpers.run_ctl(["stats", "--json", "--socket", p.spool_dir / "pigeond.sock"])
    return json.loads(r.stdout)["result"]


def test_accept_with_header_edits(pigeond_factory, milter):
    def eom(msg):
        return [("h", header("X-Milter", "seen " + msg["macros"]["i"])),
                ("m", header("X-Remove", "", index=1)),
                ("c", b"")]
    milter.on_eom = eom
    p = filtered(pigeond_factory, f"inet:127.0.0.1:{milter.port}")
    code, text = transaction(p)
    assert code == 250, text
    qid = helpers.queue_id_of(text[-1])
    # what the filter was shown: the envelope, our Received: first, the body after the empty line
    m = milter.messages[0]
    assert m["macros"]["i"] == qid
    assert m["mail"] == "<sender@example.org>" and m["rcpt"] == [f"<{RCPT}>"]
    assert m["connect"].startswith(b"unknown\0")
    assert m["helo"] == "client.example.org"
    assert [h[0] for h in m["headers"]] == ["Received", "From", "Subject", "X-Remove"]
    assert m["headers"][2] == ("Subject", "hello")
    assert m["body"] == b"body line\r\n.leading dot\r\n"
    assert m["offered"][0] == 6
    # stored: Received: first, the filter's header after it, X-Remove gone, body unchanged
    stored = helpers.spool_show(p.spool_dir, qid)
    assert stored.startswith(b"Received: "), stored[:200]
    rest = helpers.strip_received(stored[stored.index(b"Received: "):])
    assert rest == (f"X-Milter: seen {qid}\r\n".encode() +
                    b"From: sender@example.org\r\nSubject: hello\r\n"
                    b"\r\nbody line\r\n.leading dot\r\n"), rest
    # a second message reuses the filter's connection (SMFIC_QUIT_NC between them)
    assert transaction(p)[0] == 250
    assert milter.connections == 1
    assert "K" in milter.messages[1]["commands"] or len(milter.messages) == 2


def test_verdicts(pigeond_factory, milter):
    """reject (the filter's multi-line reply), tempfail, discard: none stored."""
    def eom(msg):
        subject = dict(msg["headers"]).get("Subject", "")
        if subject == "reject":
            return [("y", b"554-5.7.1 Go away\r\n554 5.7.1 Spam\0")]
        if subject == "plain-reject":
            return [("r", b"")]
        if subject == "tempfail":
            return [("t", b"")]
        if subject == "discard":
            return [("d", b"")]
        return [("c", b"")]
    milter.on_eom = eom
    p = filtered(pigeond_factory, f"inet:127.0.0.1:{milter.port}")
    msg = lambda s: f"Subject: {s}\r\n\r\nx\r\n".encode()
    assert transaction(p, msg("reject")) == (554, ["5.7.1 Go away", "5.7.1 Spam"])
    assert transaction(p, msg("plain-reject")) == (550, ["5.7.1 Command rejected"])
    code, text = transaction(p, msg("tempfail"))
    assert code == 451 and text[0].startswith("4.7.1"), text
    code, text = transaction(p, msg("discard"))
    assert code == 250, text
    assert helpers.spool_ls(p.spool_dir) == []
    st = stats(p)
    assert st["total"]["refused"]["milter_reject"] == 2
    assert st["total"]["refused"]["milter_tempfail"] == 1
    m = st["milter"]
    assert (m["messages"], m["rejected"], m["tempfailed"], m["discarded"]) == (4, 2, 1, 1), m
    metrics = helpers.run_ctl(["metrics", "--socket", p.spool_dir / "pigeond.sock"]).stdout
    assert b"\npigeonair_milter_discarded_total 1\n" in metrics
    p.wait_for_log(r"discarded by a content filter")
    assert transaction(p, msg("ok"))[0] == 250
    assert len(helpers.spool_ls(p.spool_dir)) == 1


def test_reload_gives_new_messages_new_filters(pigeond_factory, milter):
    """milter.servers reloaded from filter A to filter B, then to none: a message
    A holds finishes with A while new ones go to B at once; A's connection closes
    when its message is done; with none, messages are stored unfiltered.  B is
    named by a host name (localhost, /etc/hosts), resolved at the reload."""
    b = MilterPeer(host=socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0])
    release = threading.Event()  # A answers when the test says so
    try:
        milter.on_eom = lambda m: (release.wait(20) and None) or \
            [("h", header("X-Filter", "A")), ("c", b"")]
        b.on_eom = lambda m: [("h", header("X-Filter", "B")), ("c", b"")]
        p = filtered(pigeond_factory, f"inet:127.0.0.1:{milter.port}")
        held = {}
        t = threading.Thread(target=lambda: held.update(reply=transaction(p)), daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while not milter.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(milter.messages) == 1
        p.settings["milter.servers"] = f"inet:localhost:{b.port}{{default_action=accept}}"
        p.write_config(p.settings)
        reload(p)
        code, text = transaction(p)
        assert code == 250, text
        assert t.is_alive(), "B's message waited for A's"
        release.set()
        t.join(timeout=10)
        assert held["reply"][0] == 250, held
        assert len(milter.messages) == 1 and len(b.messages) == 1
        for reply, name in ((held["reply"], b"A"), ((code, text), b"B")):
            stored = helpers.spool_show(p.spool_dir, helpers.queue_id_of(reply[1][-1]))
            assert b"\r\nX-Filter: " + name + b"\r\n" in stored, stored[:300]
        # A's connection is closed once its message is done (the peer sees the end)
        deadline = time.monotonic() + 10
        while any(th.is_alive() for th in milter.threads) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(th.is_alive() for th in milter.threads)

        p.settings["milter.servers"] = ""
        p.write_config(p.settings)
        reload(p)
        code, text = transaction(p)
        assert code == 250, text
        stored = helpers.spool_show(p.spool_dir, helpers.queue_id_of(text[-1]))
        assert b"X-Filter:" not in stored and len(b.messages) == 1
        assert stats(p)["milter"]["messages"] == 2

        p.settings["milter.servers"] = f"inet:localhost:{b.port}"
        p.write_config(p.settings)
        reload(p)
        assert transaction(p)[0] == 250
        assert len(b.messages) == 2
    finally:
        release.set()
        b.close()


def test_body_replaced(pigeond_factory):
    """SMFIR_REPLBODY: the stored body is the filter's (header section and its
    edits kept, Received: first); a new body with a bare LF breaks the
    protocol: the filter's default_action (tempfail), nothing stored."""
    m = MilterPeer(actions=ACTIONS | 0x02)  # SMFIF_CHGBODY
    try:
        def eom(msg):
            if dict(msg["headers"]).get("Subject") == "bare":
                return [("b", b"smuggled\n.\r\n"), ("c", b"")]
            return [("h", header("X-Milter", "body")),
                    ("b", b"new body\r\n"), ("b", b"second chunk"), ("c", b"")]
        m.on_eom = eom
        p = filtered(pigeond_factory, f"inet:127.0.0.1:{m.port}")
        code, text = transaction(p)
        assert code == 250, text
        assert m.messages[0]["offered"][1] & 0x02
        stored = helpers.spool_show(p.spool_dir, helpers.queue_id_of(text[-1]))
        rest = helpers.strip_received(stored[stored.index(b"Received: "):])
        assert rest == (b"X-Milter: body\r\nFrom: sender@example.org\r\nSubject: hello\r\n"
                        b"X-Remove: me\r\n\r\nnew body\r\nsecond chunk\r\n"), rest
        code, text = transaction(p, b"Subject: bare\r\n\r\nx\r\n")
        assert code == 451, text
        assert len(helpers.spool_ls(p.spool_dir)) == 1
        assert stats(p)["milter"]["protocol_errors"] == 1
    finally:
        m.close()
