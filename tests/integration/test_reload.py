"""SIGHUP: what may change at run time changes for new sessions; a bad file,
or a change that needs a restart, is refused and the running configuration stays."""

import signal
import time

import pytest

import helpers

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = pytest.mark.both_backends


def _wait_log(p, needle, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in p.log_since_start():
            return
        time.sleep(0.05)
    raise AssertionError(f"no '{needle}' in the log within {timeout}s:\n{p.log_since_start()}")


def _rcpt(p, addr):
    with p.raw() as c:
        c.greet()
        assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
        return c.cmd(f"RCPT TO:<{addr}>")


def test_sighup_adds_a_domain_for_new_sessions(pigeond):
    assert _rcpt(pigeond, "a@reloaded.example")[0] == 550
    old = pigeond.raw()            # a session that started before the reload
    old.greet()
    pigeond.settings["domains"] += ",reloaded.example"
    pigeond.settings["hostname"] = "mx-reloaded.example"
    pigeond.write_config(pigeond.settings)
    pigeond.signal(signal.SIGHUP)
    _wait_log(pigeond, "reloaded configuration")

    code, text = _rcpt(pigeond, "a@reloaded.example")
    assert code == 250, text
    with pigeond.raw() as c:
        code, text = c.reply()
        assert code == 220 and "mx-reloaded.example" in text[0], text
    # the old session keeps the settings it started with
    assert old.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert old.cmd("RCPT TO:<a@reloaded.example>")[0] == 550
    old.close()


def test_sighup_with_a_bad_file_keeps_the_running_config(pigeond):
    pigeond.config_path.write_text("domains = ok.example\nno_such_key = 1\n")
    pigeond.signal(signal.SIGHUP)
    _wait_log(pigeond, "reload refused")
    assert "no_such_key" in pigeond.log_since_start()
    assert _rcpt(pigeond, "a@ok.example")[0] == 550          # not applied
    assert _rcpt(pigeond, f"a@{helpers.DOMAINS[0]}")[0] == 250  # still served
    assert pigeond.running()


def test_sighup_refuses_a_change_that_needs_a_restart(pigeond):
    pigeond.settings["spool.shards"] = "8"
    pigeond.settings["domains"] += ",later.example"
    pigeond.write_config(pigeond.settings)
    pigeond.signal(signal.SIGHUP)
    _wait_log(pigeond, "reload refused: 'spool.shards' changed and needs a restart")
    assert _rcpt(pigeond, "a@later.example")[0] == 550       # nothing of it applied
    assert pigeond.running()
