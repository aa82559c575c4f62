"""Never an open relay: recipients outside `domains` get 550 5.7.1 and nothing is stored."""

import re
import smtplib

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

DENIED = [
    "victim@evil.test",
    "user@sub.example.com",         # a subdomain is another domain
    "user@example.com.evil.test",   # a suffix trick
    "user@notexample.com",
    "USER@EVIL.TEST",
    "postmaster@evil.test",         # every domain has a postmaster: not ours to take
    "Postmaster@[192.0.2.1]",       # an address literal is never in `domains`
    "user@xn--mller-kva.example",   # an A-label domain we do not serve
]


def smtplib_client(server):
    return smtplib.SMTP(server.host, server.port, local_hostname="relay.example.org",
                        timeout=helpers.SOCKET_TIMEOUT)


def test_relay_denied_smtplib(pigeond):
    # one connection per address: each refusal counts towards smtp.max_errors
    for addr in DENIED:
        with smtplib_client(pigeond) as s:
            s.ehlo()
            assert s.mail("spammer@evil.test")[0] == 250
            code, resp = s.rcpt(addr)
            assert code == 550 and resp.startswith(b"5.7.1"), (addr, code, resp)
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.data(b"Subject: relay\r\n\r\nspam\r\n")
            assert 500 <= exc.value.smtp_code < 600, exc.value
            assert s.rset()[0] == 250
    with smtplib_client(pigeond) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            s.sendmail("spammer@evil.test", ["a@evil.test", "b@evil.test"], b"Subject: x\r\n\r\ny\r\n")
        assert set(exc.value.recipients) == {"a@evil.test", "b@evil.test"}
        for addr, (code, resp) in exc.value.recipients.items():
            assert code == 550 and resp.startswith(b"5.7.1"), (addr, code, resp)
    assert pigeond.stop() == 0
    assert helpers.spool_ls(pigeond.spool_dir) == []
    assert pigeond.accepted_lines() == []
    refused = [l for l in pigeond.refused_lines() if "reason=relay_denied" in l]
    assert len(refused) >= len(DENIED) + 2, pigeond.log()[-3000:]
    assert all(f"client={pigeond.backend.client_addr}" in l for l in refused)


def test_relay_denied_raw_pipelined(pigeond):
    with pigeond.raw() as c:
        c.greet()
        # pipelined: the DATA after a refused-only transaction is refused and the
        # message text that follows is then read as commands, so send none
        c.send(b"MAIL FROM:<spammer@evil.test>\r\nRCPT TO:<victim@evil.test>\r\n"
               b"RCPT TO:<@example.com:victim@evil.test>\r\nDATA\r\n")
        (c1, _), (c2, t2), (c3, t3), (c4, t4) = c.replies(4)
        assert c1 == 250
        assert c2 == 550 and t2[0].startswith("5.7.1"), t2
        # a source route is ignored (RFC 5321 3.6.1): the recipient is still at evil.test
        assert c3 in (550, 501, 553), t3
        assert c4 in (503, 554), t4
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    assert pigeond.stop() == 0
    assert helpers.spool_ls(pigeond.spool_dir) == []


def test_mixed_recipients_store_only_the_allowed(pigeond):
    allowed = "alice@example.com"
    content = b"Subject: mixed\r\n\r\nfor alice only\r\n"
    with pigeond.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
        code, text = c.cmd("RCPT TO:<mallory@evil.test>")
        assert code == 550 and text[0].startswith("5.7.1"), text
        assert c.cmd(f"RCPT TO:<{allowed}>")[0] == 250
        code, text = c.cmd("RCPT TO:<eve@sub.example.net>")
        assert code == 550 and text[0].startswith("5.7.1"), text
        assert c.cmd("DATA")[0] == 354
        c.send(helpers.dot_stuff(content) + b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        qid = helpers.queue_id_of(text[-1])
    assert pigeond.stop() == 0
    entries = helpers.spool_ls(pigeond.spool_dir)
    assert len(entries) == 1
    (e,) = helpers.assert_stored_once_per_shard(entries, qid, [allowed])
    assert e["rcpt"] == [allowed]
    assert helpers.strip_received(helpers.spool_show(pigeond.spool_dir, qid, e["shard"])) == content
    (line,) = pigeond.accepted_lines()
    assert f"{qid}: accepted" in line and "nrcpt=1" in line, line
