"""Many concurrent sessions from Postfix's smtp-source; every message is stored once."""

import os
import re

import pytest

import helpers

SMTP_SOURCE = "/usr/sbin/smtp-source"

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = [pytest.mark.both_backends,
              pytest.mark.skipif(not os.access(SMTP_SOURCE, os.X_OK),
                                 reason="smtp-source not installed")]

SESSIONS = int(os.environ.get("PIGEON_IT_SESSIONS", "200"))
MESSAGES = int(os.environ.get("PIGEON_IT_MESSAGES", "2000"))


def smtp_source(server, sessions, messages, *extra, timeout=120):
    family = ["-6"] if ":" in server.host else []
    cmd = server.client_cmd([
        SMTP_SOURCE, "-c", *family, "-s", str(sessions), "-m", str(messages), "-l", "4096",
        "-M", "source.example.org", "-f", "sender@example.org", "-t", "rcpt@example.com",
        *extra, helpers.hostport(server.host, server.port)])
    return helpers.run_bounded(cmd, timeout=timeout)


def last_counter(stdout: bytes) -> int:
    # -c prints a running count of completed DATA commands, separated by \r
    nums = re.findall(rb"(\d+)", stdout)
    return int(nums[-1]) if nums else 0


@pytest.mark.slow
@pytest.mark.dpdk_ipv6(only={"reuse": True})
@pytest.mark.parametrize("reuse", [False, True], ids=["conn-per-msg", "reuse"])
def test_smtp_source_concurrent_sessions(pigeond, reuse):
    messages = MESSAGES if not reuse else MESSAGES // 2
    if ":" in pigeond.host:
        messages //= 5  # over IPv6 (dpdk6): the family is what is checked, not the load
    p = smtp_source(pigeond, SESSIONS, messages, *(["-d"] if reuse else []))
    assert p.returncode == 0, f"smtp-source exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}"
    assert last_counter(p.stdout) == messages, p.stdout[-200:]

    assert pigeond.stop() == 0, pigeond.log()[-2000:]
    lines = helpers.spool_ls_plain(pigeond.spool_dir)
    assert len(lines) == messages
    entries = helpers.spool_ls(pigeond.spool_dir)
    assert len({e["id"] for e in entries}) == messages, "queue ids must be unique"
    shard = helpers.shard_of("rcpt@example.com")
    assert all(e["shard"] == shard and e["rcpt"] == ["rcpt@example.com"] for e in entries)
    assert all(e["from"] == "sender@example.org" for e in entries)
    accepted = pigeond.accepted_ids()
    assert len(accepted) == messages
    assert set(accepted) == {e["id"] for e in entries}
