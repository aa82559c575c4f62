"""Messages sent with swaks are stored byte for byte (after the Received: header)."""

import re
import shutil

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = [pytest.mark.both_backends,
              pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")]

# Bodies are written to files without a final newline: swaks turns LF into
# CRLF, dot-stuffs lines that begin with ".", and ends the data with CRLF "." CRLF,
# so the content the server receives is body.replace(LF, CRLF) + CRLF.
MESSAGES = [
    ("plain", "alice@example.org", ["bob@example.com"],
     b"From: alice@example.org\nTo: bob@example.com\nSubject: plain\n\nHello, world.\nSecond line."),
    ("dots-8bit", "carol@example.org", ["dave@example.net"],
     b"From: carol@example.org\nTo: dave@example.net\nSubject: dots and 8bit\n"
     b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
     b".leading dot\n..two leading dots\n.\n. dot space\nafter a lone dot\n"
     b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac \xf0\x9f\x90\xa6\n"
     b"raw high bytes \x80\x81\xfe\xff\n...\nend"),
    ("two-rcpt", "erin@example.org", ["frank@example.com", "Grace@Example.NET"],
     b"From: erin@example.org\nSubject: two recipients\n\n" + b"x" * 900 + b"\n" + b"y" * 10),
    ("large", "heidi@example.org", ["ivan@example.com"],
     b"From: heidi@example.org\nSubject: large\n\n"
     + b"\n".join(b"%06d " % i + b"abcdefghij" * 7 for i in range(3000))),
]

QUEUED = re.compile(r"^<-\s+250 .*queued as (\S+)\s*$", re.M)


def swaks(server, msg_from, rcpts, data_file):
    cmd = server.client_cmd([
        "swaks", "--server", helpers.hostport(server.host, server.port), "--ehlo",
        "swaks.example.org",
        "--from", msg_from, "--to", ",".join(rcpts), "--data", f"@{data_file}",
        "--timeout", "10"])
    return helpers.run_bounded(cmd, timeout=30)


@pytest.mark.dpdk_ipv6
def test_swaks_messages_stored_verbatim(pigeond, workdir):
    sent = {}
    for name, msg_from, rcpts, body in MESSAGES:
        path = workdir / f"{name}.eml"
        path.write_bytes(body)
        p = swaks(pigeond, msg_from, rcpts, path)
        out = p.stdout.decode("utf-8", errors="replace")
        assert p.returncode == 0, f"swaks {name} exited {p.returncode}:\n{out}\n{p.stderr!r}"
        assert "220 " + helpers.HOSTNAME + " ESMTP PigeonAir" in out, out
        ids = QUEUED.findall(out)
        assert len(ids) == 1, f"{name}: expected one 'queued as' reply:\n{out}"
        assert ids[0] not in sent, f"queue id {ids[0]} reused"
        sent[ids[0]] = (msg_from, rcpts, helpers.crlf(body) + b"\r\n")

    # the log has one accepted line per message, naming its id
    assert pigeond.stop() == 0
    accepted = pigeond.accepted_lines()
    for qid, (msg_from, rcpts, content) in sent.items():
        lines = [l for l in accepted if f": {qid}: accepted " in l]
        assert len(lines) == 1, f"{qid}: accepted lines {lines}"
        assert f"from=<{msg_from}>" in lines[0] and f"nrcpt={len(rcpts)}" in lines[0], lines[0]
        assert f"client={pigeond.backend.client_addr}" in lines[0], lines[0]

    entries = helpers.spool_ls(pigeond.spool_dir)
    assert {e["id"] for e in entries} == set(sent), entries
    for qid, (msg_from, rcpts, content) in sent.items():
        copies = helpers.assert_stored_once_per_shard(entries, qid, rcpts)
        for e in copies:
            assert e["from"] == msg_from, e
            stored = helpers.spool_show(pigeond.spool_dir, qid, e["shard"])
            header = helpers.received_header(stored)
            assert helpers.HOSTNAME.encode() in header, header
            assert header.endswith(b"\r\n"), header
            assert helpers.strip_received(stored) == content, (
                f"{qid}: stored content differs from what swaks sent")
            assert e["size"] == len(stored), (e["size"], len(stored))
