"""Content filters that fail, are slow, answer early, or are misconfigured
(milter.servers, docs/milter.md): the milter thread's side, the same on
either backend, so on the kernel backend only (test_milter.py runs the
worker's side on both).  A filter that is down gets its default_action
(tempfail: 451, nothing stored; accept: 250 after the sync); one slower
than its timeout likewise, within bounded time; a verdict before end of
message does not fail the messages waiting for the filter; pigeond -t
checks milter.servers.
"""

import os
import subprocess
import threading
import time

import helpers
from milter_peer import MilterPeer
from test_milter import CONTENT, RCPT, filtered, transaction


def test_filter_down_default_action(pigeond_factory, backend):
    """No filter listening: tempfail answers 451 and stores nothing; accept stores."""
    dead = helpers.free_port("127.0.0.1")
    p = filtered(pigeond_factory, f"inet:127.0.0.1:{dead}")
    t = time.monotonic()
    code, text = transaction(p)
    assert code == 451 and text[0].startswith("4.7.1"), text
    assert time.monotonic() - t < 10
    assert helpers.spool_ls(p.spool_dir) == []
    p.stop()
    spool = str(p.spool_dir) + "-accept"
    p2 = filtered(pigeond_factory, f"inet:127.0.0.1:{dead}{{default_action=accept}}",
                  name="accept", spool__dir=spool)
    code, text = transaction(p2)
    assert code == 250, text
    assert len(helpers.spool_ls(spool)) == 1


def test_every_step_answered_and_slow_filter(pigeond_factory, backend):
    """A filter that answers every step works; one slower than its timeout gets its default."""
    with MilterPeer(protocol=0) as m:
        p = filtered(pigeond_factory, f"inet:127.0.0.1:{m.port}{{timeout=500}}")
        assert transaction(p)[0] == 250
        assert m.messages[0]["commands"].count("L") == 4
        m.eom_delay = 1.5
        t = time.monotonic()
        code, text = transaction(p)
        assert code == 451, text
        assert 0.4 < time.monotonic() - t < 5
        assert len(helpers.spool_ls(p.spool_dir)) == 1


def test_verdict_before_end_of_message(pigeond_factory, backend):
    """A filter that answers every step rejects at MAIL: 550, and the message waiting for
    its only connection meanwhile gets a new connection, not the filter's default."""
    with MilterPeer(protocol=0) as m:
        m.on_command = lambda cmd, msg: (
            (0.5, [("r", b"")]) if cmd == "M" and msg["mail"] == "<early@example.org>" else None)
        p = filtered(pigeond_factory, f"inet:127.0.0.1:{m.port}{{connections=1}}")
        other = {}
        with helpers.RawSMTP(p.host, p.port) as c:
            c.greet()
            assert c.cmd("MAIL FROM:<early@example.org>")[0] == 250
            assert c.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(helpers.dot_stuff(CONTENT) + b".\r\n")
            # the second message waits for the filter's one connection
            t = threading.Thread(target=lambda: other.update(r=transaction(p)))
            t.start()
            assert c.reply() == (550, ["5.7.1 Command rejected"])
        t.join(timeout=30)
        assert other["r"][0] == 250, other
        assert m.connections == 2
        assert len(helpers.spool_ls(p.spool_dir)) == 1


def test_config_check(binaries, workdir):
    """pigeond -t takes a good milter.servers and refuses a bad one, naming the key."""
    conf = workdir / "milter.ini"

    def check(value):
        conf.write_text(f"[milter]\nservers = {value}\n")
        # a name that does not resolve: one try of a second at most if a server is asked
        env = dict(os.environ, RES_OPTIONS="timeout:1 attempts:1")
        r = subprocess.run([str(helpers.binary("pigeond")), "-t", "-c", str(conf)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, env=env)
        return r.returncode, r.stdout.decode(), r.stderr.decode(errors="replace")

    rc, out, err = check("inet:127.0.0.1:11332{default_action=accept}, unix:/run/m.sock, "
                         "inet:localhost:11332")
    assert rc == 0 and "configuration ok" in out, err
    for bad, why in (("inet:127.0.0.1:11332{timeout=fast}", "timeout"),
                     ("inet:no-such-host.invalid:11332", "does not resolve"),
                     (f"unix:{workdir}/no-such-dir/m.sock", "does not exist"),
                     (f"unix:{conf}", "is not a socket")):
        rc, out, err = check(bad)
        assert rc == 2 and "milter.servers" in err and why in err, (bad, err)
