"""Where the spool's committer threads run (spool.committer_cpus, docs/configuration.md).

With the DPDK backend a worker lcore busy-polls its core; a committer that
shared it would take time from the packet loop, and the worker from the
committer's syncs.  Automatic placement puts the committers on the CPUs no
worker lcore may run on.  Checked through /proc/PID/task/*/status
(Cpus_allowed_list) of a running pigeond, over the DPDK backend with EAL
-l lists.  Needs root (ip netns) and two CPUs.
"""

import os
import subprocess
from pathlib import Path

import pytest

from dpdk_env import DpdkPigeond, is_root

CPUS = sorted(os.sched_getaffinity(0))

needs_dpdk = [
    pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)"),
    pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs to set workers apart"),
]


def threads(pid):
    """{thread name: [Cpus_allowed_list, ...]} of a running process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        cpus = next(l.split(":", 1)[1].strip() for l in status.splitlines()
                    if l.startswith("Cpus_allowed_list:"))
        out.setdefault(name, []).append(cpus)
    return out


def committers(pid):
    t = threads(pid)
    found = [cpus for name, l in t.items() if name.startswith("spool-c") for cpus in l]
    assert found, f"no spool-c* threads in {sorted(t)}"
    return found


def as_list(cpus):
    """[0, 2, 3] -> "0,2-3", as the kernel and pigeond's log write CPU lists."""
    runs = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def start(binaries, workdir, eal_extra="", **overrides):
    """pigeond on the DPDK backend, two shards, extra EAL arguments (an -l list)."""
    srv = DpdkPigeond(binaries, workdir, {"spool.shards": "2", **overrides})
    srv.settings["dpdk.eal"] = srv.netns.eal_args() + eal_extra
    return srv


class TestDpdk:
    pytestmark = needs_dpdk

    def test_automatic_puts_committers_off_the_worker_cpu(self, binaries, workdir):
        main_cpu, worker_cpu = CPUS[0], CPUS[1]
        with start(binaries, workdir, f" -l {main_cpu},{worker_cpu}") as srv:
            pid = srv.proc.pid  # ip netns exec and sh exec pigeond: the same pid
            t = threads(pid)
            workers = [cpus for name, l in t.items() if "worker" in name for cpus in l]
            # The set-up is what the test means: one worker lcore, pinned to worker_cpu.
            assert workers == [str(worker_cpu)], t
            # Every CPU pigeond may use but the worker's: here only the main lcore's.
            free = [c for c in CPUS if c != worker_cpu]
            assert committers(pid) == [as_list(free)] * 2, t
            assert f"spool committers on CPUs {as_list(free)}, away from the worker lcores" \
                in srv.log()

    def test_main_lcore_sharing_the_worker_cpu_keeps_committers_off_it(self, binaries,
                                                                         workdir):
        # The main lcore may run on both CPUs, the worker on the second only: a
        # committer inheriting the main lcore's affinity could land on the
        # worker's CPU; placed automatically it stays on the first.
        first, second = CPUS[0], CPUS[1]
        layout = f" --lcores=0@({first},{second}),1@{second}"
        with start(binaries, workdir, layout) as srv:
            pid = srv.proc.pid
            t = threads(pid)
            assert [c for n, l in t.items() if "worker" in n for c in l] == [str(second)], t
            main = Path(f"/proc/{pid}/status").read_text()
            assert f"Cpus_allowed_list:\t{as_list([first, second])}\n" in main, main
            assert committers(pid) == [as_list(c for c in CPUS if c != second)] * 2, t

    def test_explicit_list_wins(self, binaries, workdir):
        main_cpu, worker_cpu = CPUS[0], CPUS[1]
        with start(binaries, workdir, f" -l {main_cpu},{worker_cpu}",
                   **{"spool.committer_cpus": str(worker_cpu)}) as srv:
            assert committers(srv.proc.pid) == [str(worker_cpu)] * 2
            assert f"spool committers on CPUs {worker_cpu} (spool.committer_cpus)" in srv.log()

    def test_floating_workers_leave_committers_with_the_main_lcore(self, binaries, workdir):
        # The default lcore layout lets every lcore run on every CPU: nothing to set apart.
        with start(binaries, workdir) as srv:
            pid = srv.proc.pid
            main = Path(f"/proc/{pid}/status").read_text()
            main_cpus = next(l.split(":", 1)[1].strip() for l in main.splitlines()
                             if l.startswith("Cpus_allowed_list:"))
            assert committers(pid) == [main_cpus] * 2
            assert "spool committers share the workers' CPUs" in srv.log()


def test_bad_cpu_list_is_refused(binaries, workdir):
    r = subprocess.run([str(Path(binaries) / "pigeond"), "-t", "-o", "spool.committer_cpus=0-x",
                        "-o", f"spool.dir={workdir}/spool"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 2, r.stdout
    assert "config key 'spool.committer_cpus': '0-x' is not a CPU list" in r.stdout
