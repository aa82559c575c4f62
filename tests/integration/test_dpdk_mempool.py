"""The DPDK port's mbuf pool (dataplane/dpdk_port.c): enough mbufs for every
queue's descriptors and every lcore's cache, or pigeond refuses to start and
says how many it needs, rather than starting with RX starved.  Needs root."""

import re
import subprocess
from pathlib import Path

import pytest

from dpdk_env import DpdkNetns, DpdkPigeond, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")


def test_too_few_mbufs_for_the_queues_is_refused(binaries, workdir):
    netns = DpdkNetns().setup()
    try:
        settings = {**netns.settings(), "workers": "2", "dpdk.mbufs": "2047",
                    "spool.dir": str(Path(workdir) / "spool"), "dpdk.idle_sleep_us": "20"}
        argv = [str(Path(binaries) / "pigeond")]
        for k, v in settings.items():
            argv += ["-o", f"{k}={v}"]
        r = subprocess.run(netns.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
    finally:
        netns.teardown()
    assert r.returncode != 0, r.stdout
    m = re.search(r"dpdk\.mbufs=2047 is too few: 2 queue pairs of (\d+) RX and (\d+) TX "
                  r"descriptors and 3 lcore caches hold up to (\d+), and each worker needs "
                  r"dpdk\.conn_mbufs=64 more; give at least (\d+)", r.stdout)
    assert m, r.stdout
    rx, tx, held, need = map(int, m.groups())
    assert held == 2 * (rx + tx + 32) + 3 * 384
    assert need == held + 2 * 64 > 2047


def test_pool_accounting_is_logged(binaries, workdir):
    with DpdkPigeond(binaries, workdir) as srv:
        m = re.search(r"dpdk: (\d+) mbufs: up to (\d+) in descriptors and per-lcore caches, "
                      r"(\d+) for received data", srv.log())
        assert m, srv.log()[-2000:]
        total, held, rest = map(int, m.groups())
        assert total == 8191 and held + rest == total and rest >= 64
