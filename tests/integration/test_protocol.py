"""Protocol details over raw sockets: BDAT (CHUNKING), bare LF policy, timeouts, error limit."""

import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends


def test_bdat_chunks_stored_verbatim(pigeond):
    r1, r2 = helpers.addresses_in_shards()[0][0], helpers.addresses_in_shards()[3][0]
    # BDAT content is not dot-stuffed: a line "." and leading dots are data
    part1 = b"Subject: bdat\r\n\r\n.leading dot\r\n.\r\n"
    part2 = b"..two\r\n8bit \xc3\xa9\r\nend\r\n"
    with pigeond.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<b@example.org> BODY=BINARYMIME")[0] in (250, 555, 501)
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:<b@example.org>")[0] == 250
        assert c.cmd(f"RCPT TO:<{r1}>")[0] == 250
        assert c.cmd(f"RCPT TO:<{r2}>")[0] == 250
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        code, text = c.reply()
        assert code == 250, text
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        code, text = c.reply()
        assert code == 250, text
        id1 = helpers.queue_id_of(text[-1])

        # pipelined: the whole transaction, two chunks and BDAT 0 LAST in one write
        content = b"Subject: bdat 2\r\n\r\nhello\r\n"
        c.send(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<%s>\r\nBDAT 5\r\n%sBDAT %d\r\n%sBDAT 0 LAST\r\n"
               % (r1.encode(), content[:5], len(content) - 5, content[5:]))
        replies = c.replies(5)
        assert [r[0] for r in replies] == [250] * 5, replies
        id2 = helpers.queue_id_of(replies[-1][1][-1])
        assert c.cmd("QUIT")[0] == 221
    assert pigeond.stop() == 0
    entries = helpers.copies_by_id(helpers.spool_ls(pigeond.spool_dir))
    for qid, rcpts, want in ((id1, [r1, r2], part1 + part2), (id2, [r1], content)):
        for e in helpers.assert_stored_once_per_shard(entries, qid, rcpts):
            assert helpers.strip_received(helpers.spool_show(pigeond.spool_dir, qid, e["shard"])) == want


def test_bare_lf_normalize(pigeond_factory):
    server = pigeond_factory(smtp__bare_lf="normalize").start()
    with server.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<lf@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<user@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        # only CRLF "." CRLF ends the data, whatever the policy
        c.send(b"Subject: lf\n\nline1\nline2\r\nline3\n\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
        qid = helpers.queue_id_of(text[-1])
    assert server.stop() == 0
    (e,) = helpers.spool_ls(server.spool_dir)
    stored = helpers.strip_received(helpers.spool_show(server.spool_dir, qid, e["shard"]))
    assert stored == b"Subject: lf\r\n\r\nline1\r\nline2\r\nline3\r\n\r\n"


def test_bare_lf_reject(pigeond_factory):
    server = pigeond_factory(smtp__bare_lf="reject").start()
    with server.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<lf@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<user@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: lf\n\nline1\nline2\r\n.\r\n")
        code, text = c.reply()
        assert 500 <= code < 600, text
        # the session is still in sync: the next command gets its own reply
        assert c.cmd("NOOP")[0] == 250
    assert server.stop() == 0
    assert helpers.spool_ls(server.spool_dir) == []
    assert any("reason=bare_lf" in l for l in server.refused_lines()), server.log()[-2000:]


def test_command_timeout(pigeond_factory):
    server = pigeond_factory(smtp__command_timeout=1).start()
    with server.raw() as c:
        c.greet()
        t0 = time.monotonic()
        code, text = c.reply()
        waited = time.monotonic() - t0
        assert code == 421 and text[0].startswith("4.4.2"), text
        assert 0.5 <= waited < 5, waited
        assert c.at_eof()
    assert any("reason=timeout" in l for l in server.refused_lines()), server.log()[-2000:]


def test_data_timeout(pigeond_factory):
    server = pigeond_factory(smtp__data_timeout=1, smtp__command_timeout=30).start()
    with server.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<slow@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<user@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: slow\r\n\r\nstuck here")
        t0 = time.monotonic()
        code, text = c.reply()
        assert code == 421, text
        assert time.monotonic() - t0 < 5
        assert c.at_eof()
    assert server.stop() == 0
    assert helpers.spool_ls(server.spool_dir) == []


def test_max_errors_closes_session(pigeond_factory):
    server = pigeond_factory(smtp__max_errors=3).start()
    with server.raw() as c:
        c.greet()
        codes = []
        for _ in range(10):
            try:
                code, _ = c.cmd("BOGUS")
            except (ConnectionError, OSError):
                break
            codes.append(code)
            if code == 421:
                break
        assert codes[-1] == 421, codes
        assert 3 <= len(codes) <= 4, codes
        assert all(500 <= x < 600 for x in codes[:-1]), codes
        assert c.at_eof()


def test_dot_unstuffing_on_the_first_line_and_empty_message(pigeond):
    """RFC 5321 4.5.2: the first line of the data is unstuffed like every other line;
    a "." right after the 354 ends an empty message."""
    cases = [
        b".first line begins with a dot\r\nSubject: x\r\n\r\nbody\r\n",
        b"..\r\n.\r\n",
        b"",
    ]
    sent = []
    with pigeond.raw() as c:
        c.greet()
        for content in cases:
            head, data = helpers.smtp_message_bytes("d@example.org", ["user@example.com"], content)
            c.send(head)
            assert [r[0] for r in c.replies(3)] == [250, 250, 354]
            c.send(data)
            code, text = c.reply()
            assert code == 250, (content, text)
            sent.append((helpers.queue_id_of(text[-1]), content))
    assert pigeond.stop() == 0
    entries = helpers.copies_by_id(helpers.spool_ls(pigeond.spool_dir))
    for qid, content in sent:
        (e,) = helpers.assert_stored_once_per_shard(entries, qid, ["user@example.com"])
        stored = helpers.strip_received(helpers.spool_show(pigeond.spool_dir, qid, e["shard"]))
        assert stored == content, f"{qid}: sent {content!r} (dot-stuffed), stored {stored!r}"


BARE_CMD = (500, ["5.5.2 Error: bare LF or CR in command refused"])
NEED_MAIL = (503, ["5.5.1 Error: need MAIL command"])


@pytest.mark.parametrize("policy", ["reject", "normalize"])
def test_bare_lf_or_cr_does_not_end_a_command_line(pigeond_factory, policy):
    """Issue 15: only CR LF ends a command line. RSET LF MAIL ... CR LF is one line, refused
    whole with one reply under either policy: the MAIL a CRLF-strict proxy in front would have
    seen as part of the RSET line never runs."""
    server = pigeond_factory(smtp__bare_lf=policy).start()
    with server.raw() as c:
        c.greet()
        c.send(b"RSET\nMAIL FROM:<x@example.org>\r\nNOOP\r\n")
        assert c.replies(2) == [BARE_CMD, (250, ["2.0.0 Ok"])]
        c.send(b"RSET\rMAIL FROM:<x@example.org>\r\nRCPT TO:<user@example.com>\r\n")
        assert c.replies(2) == [BARE_CMD, NEED_MAIL]
        # a CR ending one write and the LF opening the next are one CR LF
        c.send(b"NOOP\r")
        time.sleep(0.2)
        c.send(b"\nMAIL FROM:<x@example.org>\n\r\nRCPT TO:<user@example.com>\r\n")
        assert c.replies(3) == [(250, ["2.0.0 Ok"]), BARE_CMD, NEED_MAIL]
        # an over-long line holding bare LFs is refused once; its tail does not run
        c.send(b"NOOP\n" + b"x" * 600 + b"\nQUIT\r\nNOOP\r\n")
        assert c.replies(2) == [(500, ["5.5.2 Line too long"]), (250, ["2.0.0 Ok"])]
        assert c.cmd("QUIT")[0] == 221
    assert server.stop() == 0
    assert sum("reason=bare_lf" in l for l in server.refused_lines()) == 3, server.log()[-2000:]


def test_no_service_extensions_after_helo(pigeond):
    """RFC 5321 3.2: after HELO, MAIL/RCPT parameters get 555 5.5.4 (RFC 5321 4.1.1.11), BDAT
    and STARTTLS 502 5.5.1; the refused BDAT's octets are skipped, not run as commands."""
    def unsupported(option):
        return (555, [f"5.5.4 Unsupported option: {option} (no service extensions after HELO)"])

    def extension(verb):
        return (502, [f"5.5.1 Error: {verb} is a service extension: send EHLO, not HELO"])

    with pigeond.raw() as c:
        assert c.reply()[0] == 220
        assert c.cmd("HELO client.example.org")[0] == 250
        assert c.cmd("MAIL FROM:<h@example.org> SIZE=100") == unsupported("SIZE")
        assert c.cmd("MAIL FROM:<h@example.org> BODY=8BITMIME") == unsupported("BODY")
        assert c.cmd("MAIL FROM:<h@example.org> SMTPUTF8") == unsupported("SMTPUTF8")
        assert c.cmd("MAIL FROM:<h@example.org>") == (250, ["2.1.0 Ok"])
        assert c.cmd("RCPT TO:<user@example.com> NOTIFY=NEVER") == unsupported("NOTIFY")
        assert c.cmd("RCPT TO:<user@example.com>") == (250, ["2.1.5 Ok"])
        c.send(b"BDAT 6\r\nQUIT\r\nSTARTTLS\r\n")
        assert c.replies(2) == [extension("BDAT"), extension("STARTTLS")]
        c.send(b"DATA\r\nSubject: helo\r\n\r\nplain SMTP\r\n.\r\n")
        code, text = c.reply()
        assert code == 354, text
        code, text = c.reply()
        assert code == 250, text
        qid = helpers.queue_id_of(text[-1])
        # EHLO opens the extensions again
        c.send(b"EHLO client.example.org\r\nMAIL FROM:<h@example.org> SIZE=100\r\n")
        assert [r[0] for r in c.replies(2)] == [250, 250]
        assert c.cmd("QUIT")[0] == 221
    assert pigeond.stop() == 0
    (e,) = helpers.spool_ls(pigeond.spool_dir)
    stored = helpers.strip_received(helpers.spool_show(pigeond.spool_dir, qid, e["shard"]))
    assert stored == b"Subject: helo\r\n\r\nplain SMTP\r\n"


@pytest.mark.parametrize("policy", ["reject", "normalize"])
def test_nul_in_data_refused_under_either_policy(pigeond_factory, policy):
    """A NUL in message data is refused whatever smtp.bare_lf says; CRLF NUL . CRLF and
    CRLF . NUL CRLF do not end the data, so the pipelined transaction after them is content."""
    server = pigeond_factory(smtp__bare_lf=policy).start()
    smuggled = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nowned\r\n"
    with server.raw() as c:
        c.greet()
        for fake_end in (b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"):
            c.send(b"MAIL FROM:<n@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n")
            assert [r[0] for r in c.replies(3)] == [250, 250, 354]
            c.send(b"Subject: nul\r\n\r\nlegit" + fake_end + smuggled + b".\r\nNOOP\r\n")
            assert c.replies(2) == [(550, ["5.6.0 NUL in message refused"]), (250, ["2.0.0 Ok"])]
        assert c.cmd("QUIT")[0] == 221
    assert server.stop() == 0
    assert helpers.spool_ls(server.spool_dir) == []
