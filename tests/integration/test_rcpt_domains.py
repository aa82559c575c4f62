"""Recipient domain policy at RCPT: postmaster and internationalized domains.

Postmaster (RFC 5321 4.1.1.3, 4.5.1): `<Postmaster>` without a domain, in any
case, is accepted and stored as the `postmaster` address (by default
postmaster@ the first of `domains`); postmaster@ a served domain is accepted
even when the directory does not list it; postmaster@ any other domain, an
address literal or a source route in front of a bare Postmaster are still
refused (never an open relay).

Internationalized domains (RFC 6531, IDNA2008): `domains` may list a domain
with U-labels or A-labels; a recipient in either form matches, is stored with
the lower-case A-label domain and so lands in one shard; U-labels need
SMTPUTF8 on MAIL.

Parametrised over the conftest's `backend`, and run over both backends by
tests/run.sh.
"""

import signal

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends

# Any refusal counts as a session error; the tests send several on purpose.
BASE = {"smtp__max_errors": 1000}

ULABEL = "müller.example"
ALABEL = "xn--mller-kva.example"


def transaction(server, rcpts, mail_params="", content=b"Subject: t\r\n\r\nbody\r\n"):
    """One transaction: (the (code, text) of each RCPT, the queue id or None)."""
    replies = []
    qid = None
    with server.raw() as c:
        c.greet()
        code, text = c.cmd(f"MAIL FROM:<sender@example.org>{mail_params}")
        assert code == 250, text
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            replies.append((code, " ".join(text)))
        if any(code == 250 for code, _ in replies):
            assert c.cmd("DATA")[0] == 354
            c.send(helpers.dot_stuff(content) + b".\r\n")
            code, text = c.reply()
            assert code == 250, text
            qid = helpers.queue_id_of(text[-1])
        assert c.cmd("QUIT")[0] == 221
    return replies, qid


def assert_replies(replies, rcpts, want):
    for r, (code, text), (wcode, wstatus) in zip(rcpts, replies, want):
        assert code == wcode and text.startswith(wstatus), (
            f"RCPT <{r}>: got {code} {text!r}, want {wcode} {wstatus}")


def stored_rcpts(spool_dir, qid):
    return sorted(r for e in helpers.spool_ls(spool_dir) if e["id"] == qid for r in e["rcpt"])


def test_postmaster_without_domain(pigeond_factory):
    server = pigeond_factory(**BASE).start()
    qids = []
    for form in ("Postmaster", "POSTMASTER", "postmaster"):
        replies, qid = transaction(server, [form])
        assert_replies(replies, [form], [(250, "2.1.5")])
        qids.append(qid)
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    want = f"postmaster@{helpers.DOMAINS[0]}"  # the first of `domains`
    for qid in qids:
        (e,) = helpers.assert_stored_once_per_shard(entries, qid, [want])
        assert e["rcpt"] == [want]


def test_postmaster_key(pigeond_factory):
    # any domain, in either form: stored with its canonical domain
    server = pigeond_factory(postmaster=f"Hostmaster@{ULABEL}", **BASE).start()
    replies, qid = transaction(server, ["Postmaster"])
    assert_replies(replies, ["Postmaster"], [(250, "2.1.5")])
    assert server.stop() == 0
    assert stored_rcpts(server.spool_dir, qid) == [f"Hostmaster@{ALABEL}"]


def test_reload_changes_postmaster_and_domains_for_new_sessions(pigeond_factory):
    server = pigeond_factory(**BASE).start()
    _, before = transaction(server, ["Postmaster"])
    replies, _ = transaction(server, [f"user@{ULABEL}"], mail_params=" SMTPUTF8")
    assert_replies(replies, ["u"], [(550, "5.7.1")])
    server.settings["postmaster"] = "abuse-desk@example.net"
    server.settings["domains"] += f",{ULABEL}"
    server.write_config(server.settings)
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("reloaded configuration", timeout=10), server.log()
    _, after = transaction(server, ["Postmaster"])
    replies, utf8 = transaction(server, [f"user@{ULABEL}"], mail_params=" SMTPUTF8")
    assert_replies(replies, ["u"], [(250, "2.1.5")])
    assert server.stop() == 0
    assert stored_rcpts(server.spool_dir, before) == [f"postmaster@{helpers.DOMAINS[0]}"]
    assert stored_rcpts(server.spool_dir, after) == ["abuse-desk@example.net"]
    assert stored_rcpts(server.spool_dir, utf8) == [f"user@{ALABEL}"]


def test_postmaster_of_served_domains_and_relay_attempts(pigeond_factory):
    server = pigeond_factory(**BASE).start()
    cases = {
        "postmaster@example.com": (250, "2.1.5"),
        "PostMaster@EXAMPLE.NET": (250, "2.1.5"),
        "postmaster@other.example": (550, "5.7.1"),   # not ours: relaying
        "Postmaster@[192.0.2.1]": (550, "5.7.1"),     # an address literal: not ours
        "@example.com,@example.net:postmaster": (501, "5.1.3"),  # <Postmaster> takes no route
        "@example.com:postmaster@other.example": (550, "5.7.1"),  # the route is ignored
        "nobody@sub.example.com": (550, "5.7.1"),
    }
    replies, qid = transaction(server, list(cases))
    assert_replies(replies, list(cases), list(cases.values()))
    assert server.stop() == 0
    assert stored_rcpts(server.spool_dir, qid) == [
        "postmaster@example.com", "postmaster@example.net"]
    refused = server.refused_lines()
    assert sum("reason=relay_denied" in l for l in refused) == 4, refused


def test_postmaster_not_in_directory(pigeond_factory, workdir):
    path = workdir / "directory.txt"
    path.write_text("alice@example.com\n")
    server = pigeond_factory(directory__file=path, **BASE).start()
    cases = {
        "Postmaster": (250, "2.1.5"),
        "postmaster@example.com": (250, "2.1.5"),   # the directory knows the domain, not him
        "POSTMASTER@example.net": (250, "2.1.5"),   # in `domains` only
        "nobody@example.com": (550, "5.1.1"),       # a local refusal, not "relay"
        "postmaster@other.example": (550, "5.7.1"),
    }
    replies, qid = transaction(server, list(cases))
    assert_replies(replies, list(cases), list(cases.values()))
    assert server.stop() == 0  # the log is whole once pigeond has stopped
    refused = server.refused_lines()
    assert any("reason=unknown_user" in l and "nobody@example.com" in l for l in refused), refused
    # <Postmaster> and postmaster@example.com are one recipient: stored once
    assert stored_rcpts(server.spool_dir, qid) == [
        "postmaster@example.com", "postmaster@example.net"]


def test_postmaster_alias_in_directory(pigeond_factory, workdir):
    path = workdir / "directory.txt"
    path.write_text("alice@example.com\npostmaster@example.com: alice@example.com\n")
    server = pigeond_factory(directory__file=path, **BASE).start()
    replies, qid = transaction(server, ["Postmaster", "PostMaster@Example.com"])
    assert_replies(replies, ["Postmaster", "PostMaster@Example.com"], [(250, "2.1.5")] * 2)
    assert server.stop() == 0
    # both through the directory's alias: stored (and sharded) as its mailbox, once
    assert stored_rcpts(server.spool_dir, qid) == ["alice@example.com"]


@pytest.mark.parametrize("domains", [f"example.com,{ALABEL}", f"example.com,{ULABEL}"])
def test_unicode_and_alabel_forms(pigeond_factory, domains):
    server = pigeond_factory(domains=domains, **BASE).start()
    rcpts = [f"user@{ULABEL}", f"user@{ALABEL}", "user@MÜLLER.example", f"user@{ALABEL.upper()}"]
    replies, qid = transaction(server, rcpts, mail_params=" SMTPUTF8")
    assert_replies(replies, rcpts, [(250, "2.1.5")] * len(rcpts))
    others = []
    refusals = {
        "user@bücher.example": (550, "5.7.1"),  # not served, in either form
        "user@xn--bcher-kva.example": (550, "5.7.1"),
        "user@☃.example": (553, "5.1.3"),       # IDNA2008 disallows the snowman
        "user@mü_ller.example": (501, "5.1.3"),  # not a domain at all
    }
    refused, none = transaction(server, list(refusals), mail_params=" SMTPUTF8")
    # each spelling on its own is accepted and stored canonical (the other
    # spellings would be dropped as duplicates of the first)
    for r in rcpts[1:]:
        replies, other = transaction(server, [r], mail_params=" SMTPUTF8")
        assert_replies(replies, [r], [(250, "2.1.5")])
        others.append((r, other))
    assert none is None
    assert_replies(refused, list(refusals), list(refusals.values()))
    # RFC 6531 3.7.4: an address with UTF-8 needs SMTPUTF8 on MAIL
    replies, qid_ascii = transaction(server, [f"user@{ULABEL}", f"user@{ALABEL}"])
    assert_replies(replies, ["u", "a"], [(553, "5.6.7"), (250, "2.1.5")])
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    want = f"user@{ALABEL}"
    # all four spellings are one recipient in one shard, stored once (the
    # engine drops a recipient already in the transaction, in any case)
    (e,) = helpers.assert_stored_once_per_shard(entries, qid, [want])
    assert e["rcpt"] == [want]
    assert e["shard"] == helpers.shard_of(want)
    (e,) = helpers.assert_stored_once_per_shard(entries, qid_ascii, [want])
    assert e["rcpt"] == [want]
    for r, other in others:
        (e,) = helpers.assert_stored_once_per_shard(entries, other, [want])
        # U-labels become A-labels; an ASCII domain stays as written
        assert e["rcpt"] == [r if r.isascii() else want], r


def test_directory_lists_either_form(pigeond_factory, workdir):
    # The directory's own domain, written with U-labels in the file, not in `domains`.
    path = workdir / "directory.txt"
    path.write_text(f"anna@{ULABEL}\nsales@{ALABEL}: anna@{ULABEL}\n", encoding="utf-8")
    server = pigeond_factory(directory__file=path, **BASE).start()
    cases = {
        f"anna@{ALABEL}": (250, "2.1.5"),
        f"Sales@{ULABEL}": (250, "2.1.5"),      # alias, in the other spelling
        f"bob@{ULABEL}": (550, "5.1.1"),        # the directory knows the domain, not bob
        f"postmaster@{ULABEL}": (250, "2.1.5"),  # RFC 5321 4.5.1
    }
    replies, qid = transaction(server, list(cases), mail_params=" SMTPUTF8")
    assert_replies(replies, list(cases), list(cases.values()))
    assert server.stop() == 0
    assert stored_rcpts(server.spool_dir, qid) == [f"anna@{ALABEL}", f"postmaster@{ALABEL}"]
