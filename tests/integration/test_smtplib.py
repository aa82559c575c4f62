"""Python smtplib and raw pipelined sessions; recipients spread over the shards."""

import email.generator
import email.message
import io
import smtplib

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the reply to the end of data (it holds the queue id)."""

    def data(self, msg):
        code, resp = super().data(msg)
        self.last_data_reply = (code, resp)
        return code, resp


def smtplib_wire_content(msg_bytes: bytes) -> bytes:
    """What smtplib sends as content (before dot-stuffing), as the server must store it."""
    data = helpers.crlf(msg_bytes)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def test_banner_and_ehlo(pigeond):
    with pigeond.raw() as c:
        banner, caps = c.greet("client.example.org")
        assert banner == [f"{helpers.HOSTNAME} ESMTP PigeonAir"], banner
        keywords = {line.split()[0].upper() for line in caps[1:]}
        for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"):
            assert kw in keywords, f"EHLO does not advertise {kw}: {caps}"
        size = [l for l in caps[1:] if l.upper().startswith("SIZE")][0].split()
        assert len(size) == 2 and int(size[1]) == 10485760, caps
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        assert c.at_eof()


@pytest.mark.dpdk_ipv6
def test_smtplib_many_messages_one_connection(pigeond):
    by_shard = helpers.addresses_in_shards(per_shard=2)
    # every shard gets recipients; two recipients share each shard; mixed case too
    all_rcpts = [a for s in sorted(by_shard) for a in by_shard[s]]
    mixed = all_rcpts[0].upper().replace("EXAMPLE.COM", "Example.Com")
    sent = {}  # queue id -> (from, rcpts, content)

    with RecordingSMTP(pigeond.host, pigeond.port, local_hostname="py.example.org",
                       timeout=helpers.SOCKET_TIMEOUT) as s:
        code, _ = s.ehlo()
        assert code == 250
        for kw in ("pipelining", "size", "8bitmime", "smtputf8", "chunking"):
            assert s.has_extn(kw), kw

        # 1. sendmail() with bytes, one recipient per shard plus a second one in each shard
        body = (b"From: a@example.org\r\nSubject: across shards\r\n\r\n"
                b".dot at start\r\nline\r\n..\r\n8bit \xc3\xa9\xc3\xa8\r\n")
        refused = s.sendmail("a@example.org", all_rcpts, body)
        assert refused == {}
        code, resp = s.last_data_reply
        assert code == 250 and resp.startswith(b"2.0.0"), resp
        sent[helpers.queue_id_of(resp.decode())] = ("a@example.org", all_rcpts, smtplib_wire_content(body))

        # 2. send_message() with an EmailMessage, mixed-case recipient
        m = email.message.EmailMessage()
        m["From"] = "b@example.org"
        m["To"] = mixed
        m["Subject"] = "send_message"
        m.set_content("Hello from send_message.\n.leading dot\n")
        assert s.send_message(m, from_addr="b@example.org", to_addrs=[mixed, all_rcpts[-1]]) == {}
        code, resp = s.last_data_reply
        assert code == 250
        buf = io.BytesIO()
        email.generator.BytesGenerator(buf, policy=m.policy).flatten(m, linesep="\r\n")
        sent[helpers.queue_id_of(resp.decode())] = (
            "b@example.org", [mixed, all_rcpts[-1]], smtplib_wire_content(buf.getvalue()))

        # 3. the low-level API: mail / rcpt / data, twice, bare-LF text that smtplib converts
        for i in range(2):
            assert s.mail("c@example.org")[0] == 250
            rcpts = [by_shard[i][0], by_shard[i + 1][0]]
            for r in rcpts:
                code, resp = s.rcpt(r)
                assert code == 250 and resp.startswith(b"2.1.5"), resp
            # a str: smtplib turns its bare LFs into CRLF (bytes it would send as they are)
            text = f"Subject: low level {i}\n\nbody {i}\n.\n..\nno final newline"
            code, resp = s.data(text)
            assert code == 250, resp
            sent[helpers.queue_id_of(resp.decode())] = ("c@example.org", rcpts, smtplib_wire_content(text.encode()))

        # 4. an empty-bodied message and the null sender
        assert s.mail("<>")[0] == 250
        assert s.rcpt(all_rcpts[1])[0] == 250
        code, resp = s.data(b"Subject: bounce\r\n\r\n")
        assert code == 250, resp
        sent[helpers.queue_id_of(resp.decode())] = ("", [all_rcpts[1]], b"Subject: bounce\r\n\r\n")

        assert s.rset()[0] == 250
    assert len(sent) == 5, "queue ids must be unique"

    assert pigeond.stop() == 0
    entries = helpers.spool_ls(pigeond.spool_dir)
    assert {e["id"] for e in entries} == set(sent)
    assert len(entries) == sum(len({helpers.shard_of(r) for r in rc}) for _, rc, _ in sent.values())
    for qid, (msg_from, rcpts, content) in sent.items():
        for e in helpers.assert_stored_once_per_shard(entries, qid, rcpts):
            assert e["from"] == msg_from, e
            stored = helpers.spool_show(pigeond.spool_dir, qid, e["shard"])
            assert helpers.strip_received(stored) == content, (qid, e["shard"], stored[:400])


def test_pipelined_raw_session(pigeond):
    by_shard = helpers.addresses_in_shards()
    r1, r2, r3 = by_shard[0][0], by_shard[1][0], by_shard[2][0]
    content1 = b"Subject: pipelined 1\r\n\r\n.hidden dot\r\nbody\r\n"
    content2 = b"Subject: pipelined 2\r\n\r\nsecond\r\n"
    ids = []
    with pigeond.raw() as c:
        banner, caps = c.greet()
        assert "PIPELINING" in [l.split()[0].upper() for l in caps[1:]]
        # MAIL, RCPT, RCPT, DATA in one write
        head, data = helpers.smtp_message_bytes("p@example.org", [r1, r2], content1)
        c.send(head)
        (c1, t1), (c2, _), (c3, _), (c4, t4) = c.replies(4)
        assert (c1, c2, c3, c4) == (250, 250, 250, 354), (t1, t4)
        c.send(data)
        code, text = c.reply()
        assert code == 250, text
        ids.append((helpers.queue_id_of(text[-1]), [r1, r2], content1))

        # RSET + a whole transaction, the data and QUIT in one write after the 354
        head, data = helpers.smtp_message_bytes("q@example.org", [r3], content2)
        c.send(b"RSET\r\n" + head)
        codes = [r[0] for r in c.replies(4)]
        assert codes == [250, 250, 250, 354], codes
        c.send(data + b"QUIT\r\n")
        code, text = c.reply()
        assert code == 250, text
        ids.append((helpers.queue_id_of(text[-1]), [r3], content2))
        assert c.reply()[0] == 221
        assert c.at_eof()

    # the same, everything (even the message) in one write: a server may not
    # lose the bytes that follow DATA
    with pigeond.raw() as c:
        c.greet()
        head, data = helpers.smtp_message_bytes("r@example.org", [r1], content2)
        c.send(head + data + b"QUIT\r\n")
        codes = c.replies(5)
        assert [x[0] for x in codes] == [250, 250, 354, 250, 221], codes
        ids.append((helpers.queue_id_of(codes[3][1][-1]), [r1], content2))

    assert pigeond.stop() == 0
    entries = helpers.spool_ls(pigeond.spool_dir)
    assert len(entries) == 4
    for qid, rcpts, content in ids:
        for e in helpers.assert_stored_once_per_shard(entries, qid, rcpts):
            assert helpers.strip_received(helpers.spool_show(pigeond.spool_dir, qid, e["shard"])) == content


def test_size_limit(pigeond_factory):
    server = pigeond_factory(smtp__max_message_size=2000).start()
    with server.raw() as c:
        c.greet()
        code, text = c.cmd("MAIL FROM:<big@example.org> SIZE=5000")
        assert code == 552, text
        assert c.cmd("MAIL FROM:<big@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<x@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: too big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 40 + b".\r\n")
        code, text = c.reply()
        assert code == 552, text
        # the session goes on
        assert c.cmd("MAIL FROM:<small@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<x@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
        qid = helpers.queue_id_of(text[-1])
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    assert [e["id"] for e in entries] == [qid]


def test_too_many_recipients(pigeond_factory):
    server = pigeond_factory(smtp__max_recipients=3).start()
    with server.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<m@example.org>")[0] == 250
        for i in range(3):
            assert c.cmd(f"RCPT TO:<r{i}@example.com>")[0] == 250
        code, text = c.cmd("RCPT TO:<r3@example.com>")
        assert code == 452 and text[0].startswith("4.5.3"), text
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: three\r\n\r\nx\r\n.\r\n")
        code, text = c.reply()
        assert code == 250
        qid = helpers.queue_id_of(text[-1])
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    helpers.assert_stored_once_per_shard(entries, qid, [f"r{i}@example.com" for i in range(3)])


def test_smuggled_end_of_data_is_not_a_message_boundary(pigeond):
    """Bare-LF / bare-CR variants of <CRLF>.<CRLF> must not end the data (SMTP smuggling)."""
    smuggled = (b"MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nowned\r\n")
    for variant in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"):
        with pigeond.raw() as c:
            c.greet()
            assert c.cmd("MAIL FROM:<honest@example.org>")[0] == 250
            assert c.cmd("RCPT TO:<user@example.com>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: honest\r\n\r\nhello" + variant + smuggled + b".\r\n")
            code, text = c.reply()
            # exactly one reply to the whole thing: stored (250) or refused (5xx)
            assert code == 250 or 500 <= code < 600, (variant, code, text)
            # the next reply must be the one to our unknown command, not to a smuggled MAIL
            c.send(b"XYZZY\r\n")
            code, text = c.reply()
            assert 500 <= code <= 502, (variant, code, text)
    assert pigeond.stop() == 0
    for e in helpers.spool_ls(pigeond.spool_dir):
        assert e["from"] == "honest@example.org", e
