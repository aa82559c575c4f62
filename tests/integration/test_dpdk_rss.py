"""How TCP flows reach their worker (dpdk.rss, docs/dataplane.md "Steering").

No machine here has a NIC, and no virtual PMD here spreads flows by a Toeplitz
hash over a redirection table (net_tap reports hash types and a key size but
no table: the kernel picks its queues), so the data path of hardware RSS is
covered by the unit tests (test_net_steering, test_net_rss_input,
test_tcp_active_open).  Here, end to end:

- on net_tap, dpdk.rss=auto falls back to software steering and says so in the
  start-up log and in `pigeonctl status`, and two workers still serve mail;
- dpdk.rss=on refuses to start on net_tap, naming the reason; dpdk.rss=off is
  reported as such;
- on net_null, the one PMD here that implements the RSS control operations
  (a redirection table and a key it stores, though it hashes nothing),
  dpdk.rss=on programs the symmetric key and a table over the workers'
  queues, reads both back and reports hardware RSS.

Needs root (network namespaces), as the other DPDK tests.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from dpdk_env import PEER_IP, DpdkNetns, DpdkPigeond, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

SENDER = "sender@example.org"
RCPT = "postmaster@example.com"


def ctl(spool_dir, *args):
    r = subprocess.run([str(helpers.binary("pigeonctl")), *args, "--socket",
                        str(Path(spool_dir) / "pigeond.sock")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def status(spool_dir):
    reply = json.loads(ctl(spool_dir, "status", "--json"))
    assert reply["ok"], reply
    return reply["result"]


def test_tap_auto_is_software_steering(binaries, workdir):
    """net_tap has no redirection table: auto means software steering, reported everywhere."""
    with DpdkPigeond(binaries, workdir, {"workers": "2"}) as srv:
        m = re.search(r"dpdk: port 0 \(net_tap0\) up, 2 queue pairs, .*, (rss=\S+ .*)$",
                      srv.log(), re.M)
        assert m, srv.log()[-2000:]
        assert m.group(1) == "rss=off (software steering: the port has no redirection table)"
        st = status(srv.spool_dir)
        assert st["dpdk"] == {"port": "port 0 (net_tap0, net_tap), 2 queue pairs, mtu 1500",
                              "rss": False, "steering": m.group(1)}, st
        text = ctl(srv.spool_dir, "status")
        assert f"steering:   {m.group(1)}\n" in text, text
        assert "port:       port 0 (net_tap0, net_tap), 2 queue pairs" in text, text
        # Flows still meet their TCB: over the rings, with no misqueue counted.
        r = srv.run(["smtp-source", "-c", "-s", "20", "-m", "100", "-l", "512", "-f", SENDER,
                     "-t", RCPT, f"{srv.host}:{srv.port}"], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert srv.stop() == 0
        assert srv.total("steered_in") > 0
        assert srv.total("steered_in") == srv.total("steered_out")
        for reason in ("no_hash", "hash_mismatch", "reta_mismatch"):
            assert srv.total(f"rss_misqueued_{reason}") == 0
        assert sorted(srv.counters()) == [0, 1]
        assert len({e["id"] for e in helpers.spool_ls(srv.spool_dir)}) == 100


def test_rss_on_is_refused_without_hardware_rss(binaries, workdir):
    netns = DpdkNetns().setup()
    try:
        settings = {**netns.settings(), "workers": "2", "dpdk.rss": "on",
                    "spool.dir": str(Path(workdir) / "spool")}
        argv = [str(Path(binaries) / "pigeond")]
        for k, v in settings.items():
            argv += ["-o", f"{k}={v}"]
        r = subprocess.run(netns.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
    finally:
        netns.teardown()
    assert r.returncode != 0, r.stdout
    assert ("dpdk.rss=on but port 0 (net_tap0, net_tap) cannot do hardware RSS: "
            "the port has no redirection table") in r.stdout, r.stdout


def test_rss_off_is_reported(binaries, workdir):
    with DpdkPigeond(binaries, workdir, {"dpdk.rss": "off"}) as srv:
        st = status(srv.spool_dir)
        assert st["dpdk"]["rss"] is False
        assert st["dpdk"]["steering"] == "rss=off (software steering: dpdk.rss=off)"
        assert "rss=off (software steering: dpdk.rss=off)" in srv.log()


def test_bad_rss_value_is_refused(binaries, workdir):
    r = subprocess.run([str(Path(binaries) / "pigeond"), "-o", "dpdk.rss=maybe", "-o",
                        f"spool.dir={workdir}/spool", "-t"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode != 0
    assert "'maybe' is not auto, on or off" in r.stdout, r.stdout


class NullPigeond:
    """pigeond on net_null (no traffic to speak of: it receives zero-filled frames)."""

    def __init__(self, binaries, workdir, overrides):
        self.spool_dir = Path(workdir) / "spool"
        self.log_path = Path(workdir) / "pigeond-null.log"
        prefix = f"pa-null-{os.getpid()}-{time.monotonic_ns()}"
        settings = {"backend": "dpdk",
                    "dpdk.eal": f"--no-huge --no-pci -m 512 --no-shconf --file-prefix={prefix} "
                                "--vdev=net_null0",
                    "dpdk.ip": "198.18.0.2/24", "listen": "198.18.0.2:25",
                    "dpdk.mbufs": "8191", "spool.dir": str(self.spool_dir),
                    "limits.exempt": f"127.0.0.0/8,::1,{PEER_IP}/32", **overrides}
        self.argv = [str(Path(binaries) / "pigeond")]
        for k, v in settings.items():
            self.argv += ["-o", f"{k}={v}"]
        self.proc = None

    def __enter__(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "ready listen=" not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"pigeond exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"pigeond not ready:\n{self.log()}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return False

    def log(self):
        return self.log_path.read_text(errors="replace")


def test_net_null_rss_on_programs_key_and_table(binaries, workdir):
    """The control path of hardware RSS on the PMD that implements it: key and table read back."""
    with NullPigeond(binaries, workdir, {"workers": "2", "dpdk.rss": "on"}) as srv:
        want = ("rss=on (hardware: Toeplitz with a 40-octet symmetric key, 128-entry "
                "redirection table over 2 queues)")
        assert re.search(r"dpdk: port 0 \(net_null0\) up, 2 queue pairs, .*, " + re.escape(want),
                         srv.log()), srv.log()
        st = status(srv.spool_dir)
        assert st["dpdk"] == {"port": "port 0 (net_null0, net_null), 2 queue pairs, mtu 1500",
                              "rss": True, "steering": want}, st
    assert srv.proc.returncode == 0, srv.log()


def test_net_null_one_worker_auto_needs_no_rss(binaries, workdir):
    with NullPigeond(binaries, workdir, {"workers": "1"}) as srv:
        assert "rss=off (software steering: one queue: nothing to spread)" in srv.log()
        assert status(srv.spool_dir)["dpdk"]["rss"] is False
