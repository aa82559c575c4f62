"""Hand-off concurrency adapts per destination (docs/handoff.md, "Concurrency"):
a destination's window starts at relay.concurrency_min, doubles per window
of quick successes while jobs wait for it (slow start) until the replies
slow down or fail, then grows by one, never above relay.concurrency, and is
halved by temporary failures.

The delivery tier is Postfix's smtp-sink: first one that accepts everything
(a queued backlog drains through it), then one on the same port that answers
DATA with a 4xx (smtp-sink -r data), so the same destination sees failures.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import delivery
import helpers
from test_handoff import relay_settings

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
WINDOW = re.compile(r"hand-off: (\S+) concurrency (\d+) -> (\d+) \(([^)]*)\)")


class Sink:
    """smtp-sink on 127.0.0.1:port; extra arguments before the address."""

    def __init__(self, workdir, port, extra=()):
        self.port = port
        cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + list(extra) + \
            [f"127.0.0.1:{port}", "256"]
        self.log = open(workdir / f"smtp-sink-{port}-{len(extra)}.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"smtp-sink exited {self.proc.returncode}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("smtp-sink did not answer")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def sinks():
    made = []
    yield made
    for s in made:
        s.stop()


def delivered(p):
    r = helpers.run_ctl(["-c", p.config_path, "status", "--json"], check=False)
    try:
        return json.loads(r.stdout)["result"]["handoff"]["delivered"]
    except (ValueError, KeyError, TypeError):
        return -1


def windows(log, dest):
    return [(int(a), int(b), why) for d, a, b, why in WINDOW.findall(log) if d == dest]


@pytest.mark.skipif(not os.path.exists(SINK), reason="smtp-sink (postfix) not installed")
def test_window_grows_with_backlog_and_halves_on_4xx(pigeond_factory, workdir, sinks):
    n = 400
    port = helpers.free_port()
    dest = f"smtp:127.0.0.1:{port}/0"
    # A backlog first: no route, so everything stays queued.
    p = pigeond_factory(**{k.replace(".", "__"): v for k, v in relay_settings(
        **{"relay.concurrency": "6", "relay.concurrency_min": "1"}).items()})
    p.start()
    lg = helpers.run_bounded([str(helpers.binary("pigeon-loadgen")), "--kernel", "--target",
                              f"127.0.0.1:{p.port}", "--connections", "8", "--messages",
                              str(n), "--size", "2048", "--quiet", "--json"], 120)
    assert lg.returncode == 0, lg.stderr
    sinks.append(Sink(workdir, port))
    assert p.stop() == 0
    p.settings["relay.default"] = f"smtp:127.0.0.1:{port}"
    p.restart()
    delivery.wait_for(lambda: delivered(p) >= n, 60, f"{n} messages drained")
    grew = windows(p.log(), dest)
    print("window changes while draining:", grew)
    # starts at 1, grows while the backlog waits, never past the ceiling
    assert grew and grew[0][0] == 1, grew
    assert max(b for _, b, _ in grew) >= 3, grew
    assert all(b <= 6 for _, b, _ in grew), grew
    # slow start: doublings first, until the first slowdown or failure
    start = [(a, b) for a, b, why in grew if why.endswith("slow start")]
    assert start and start[0] == (1, 2), grew
    assert all(b == min(2 * a, 6) for a, b in start), grew
    first_other = next((i for i, (_, _, why) in enumerate(grew)
                        if not why.endswith("slow start")), len(grew))
    assert all(not why.endswith("slow start") for _, _, why in grew[first_other:]), grew
    top = grew[-1][1]

    # The same destination now answers DATA with 4xx: the window is halved.
    sinks.pop().stop()
    sinks.append(Sink(workdir, port, ["-r", "data"]))
    before = len(grew)

    def last_window():
        w = windows(p.log(), dest)
        return w[-1][1] if w else 1

    # each attempt is a 4xx; deferred copies come back after relay.min_backoff (1 s)
    for i in range(40):
        if last_window() == 1:
            break
        if i < 8:
            lg = helpers.run_bounded([str(helpers.binary("pigeon-loadgen")), "--kernel",
                                      "--target", f"127.0.0.1:{p.port}", "--connections", "1",
                                      "--messages", "1", "--size", "1024", "--quiet"], 30)
            assert lg.returncode == 0, lg.stderr
        time.sleep(0.25)
    later = windows(p.log(), dest)[before:]
    print(f"window at {top}, then after 4xx:", later)
    assert last_window() == 1, later
    cut = [(a, b) for a, b, why in later if why == "temporary failure"]
    # halved (never below relay.concurrency_min), not merely stepped down
    assert (top == 1 and not later) or cut, later
    assert all(b == max(1, a // 2) for a, b in cut), cut
    assert "status=deferred" in p.log()
    assert p.stop() == 0
