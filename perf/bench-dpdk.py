#!/usr/bin/python3
"""bench-dpdk.py: pigeond on the DPDK backend against pigeond on the kernel
backend, in one run, with the same clients and messages.

Both servers run in network namespaces of their own (so nothing leaves them
and both are measured the same way): the kernel backend listens on the
namespace's loopback, the DPDK backend on a TAP vdev whose kernel side is the
client's side.  Measured for each:

  - messages/s at saturation: smtp-source, SESSIONS parallel sessions reusing
    their connections, MESSAGES messages of SIZE octets (durable spool: every
    250 is after fsync);
  - the memory an idle connection costs: pigeond's RSS (VmRSS) before and
    after IDLE connections that got their banner and then sit idle, divided
    by IDLE, measured first on a fresh process.  For the kernel backend this
    leaves out the kernel's own socket memory (not in the process's RSS);
    for the DPDK backend everything is in it.

    sudo perf/bench-dpdk.py [-m MESSAGES] [-l SIZE] [-s SESSIONS] [-i IDLE] [-z SLEEP_US]
                            [-b BUILD] [-6 [-r ROUNDS]]

With -6 the DPDK backend is measured dual-stacked too (dpdk.ip6): the idle
connection's cost over IPv4 (dpdk-dual) and over IPv6 (dpdk-ipv6) each on a
fresh process, then on one process the message rate over IPv4 and over IPv6
(smtp-source -6, the TAP's kernel side at 2001:db8::1) in -r alternating
rounds, the median of each shown with the rounds: what IPv6 costs the
stack, in one run.

Needs root (ip netns) and smtp-source (Debian package postfix).  Prints one
table; docs/benchmarks.md records the figures.
"""

import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from dpdk_env import PEER_IP, PEER_IP6, PREFIX6, SERVER_IP6, DpdkNetns, DpdkPigeond  # noqa: E402


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pigeond_pid(proc):
    """The pigeond under `ip netns exec ... sh -c 'exec pigeond'`: the same pid, after exec."""
    for _ in range(50):
        try:
            if Path(f"/proc/{proc.pid}/exe").resolve().name == "pigeond":
                return proc.pid
        except OSError:
            pass
        time.sleep(0.1)
    return proc.pid


def saturate(netns, host, port, args):
    v6 = ":" in host
    t0 = time.monotonic()
    r = netns.run(["smtp-source", *(["-6"] if v6 else []), "-d", "-s", str(args.sessions),
                   "-m", str(args.messages), "-l", str(args.size), "-f", "bench@example.org",
                   "-t", "user@example.com", f"[{host}]:{port}" if v6 else f"{host}:{port}"],
                  timeout=1800)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {r.stderr}")
    return args.messages / dt


def idle_cost(netns, host, port, pid, n):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
    socks = []
    with netns.entered():
        time.sleep(1.0)
        before = rss_kib(pid)
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=10)
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            assert s.recv(512).startswith(b"220")
        time.sleep(1.0)
        after = rss_kib(pid)
    for s in socks:
        s.close()
    return (after - before) * 1024 / n


def wait_connect(netns, host, port, timeout=20):
    """Until a connection to host:port succeeds (an IPv6 address answers once DAD is over)."""
    deadline = time.monotonic() + timeout
    with netns.entered():
        while True:
            try:
                socket.create_connection((host, port), timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class KernelServer:
    """pigeond on kernel sockets, on the loopback of a namespace of its own."""

    def __init__(self, build, tmp):
        self.netns = DpdkNetns().setup()
        self.host, self.port = "127.0.0.1", 2525
        self.log = open(Path(tmp) / "kernel.log", "wb")
        self.proc = subprocess.Popen(self.netns.wrap_client(
            [str(Path(build) / "pigeond"), "-o", f"listen={self.host}:{self.port}",
             "-o", f"spool.dir={tmp}/kernel-spool", "-o", "domains=example.com",
             "-o", "log.level=warning", "-o", "smtp.command_timeout=600"]),
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                with self.netns.entered():
                    socket.create_connection((self.host, self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

    def close(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.netns.teardown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--messages", type=int, default=20000)
    ap.add_argument("-l", "--size", type=int, default=4096)
    ap.add_argument("-s", "--sessions", type=int, default=50)
    ap.add_argument("-i", "--idle", type=int, default=4000)
    ap.add_argument("-z", "--idle-sleep-us", type=int, default=0,
                    help="dpdk.idle_sleep_us (0: busy polling)")
    ap.add_argument("-b", "--build", default=os.environ.get("PIGEON_BUILD",
                                                           str(HERE.parent / "build")))
    ap.add_argument("-6", dest="ipv6", action="store_true",
                    help="also the DPDK backend dual-stacked, over IPv4 and over IPv6")
    ap.add_argument("-r", "--rounds", type=int, default=5,
                    help="-6: alternating IPv4/IPv6 rounds of -m messages (the median is shown)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench-dpdk.py: needs root (network namespaces)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pigeon-bench-") as tmp:
        k = KernelServer(args.build, tmp)
        try:
            pid = pigeond_pid(k.proc)
            # Idle cost first, on a fresh process: nothing freed earlier to reuse.
            idle = idle_cost(k.netns, k.host, k.port, pid, args.idle)
            rate = saturate(k.netns, k.host, k.port, args)
            rows.append(("kernel", rate, idle, ""))
        finally:
            k.close()
        settings = {"domains": "example.com", "log.level": "warning",
                    "smtp.command_timeout": "600", "dpdk.idle_sleep_us": str(args.idle_sleep_us),
                    "dpdk.mbufs": "16383",
                    # the clients' address, exempt from limits.* as the kernel
                    # backend's 127.0.0.1 is by default: thousands of idle
                    # connections from one address are the measurement here
                    "limits.exempt": f"127.0.0.0/8,::1,{PEER_IP}/32,{PEER_IP6}/{PREFIX6}"}
        with DpdkPigeond(args.build, Path(tmp) / "dpdk", settings) as srv:
            pid = pigeond_pid(srv.proc)
            idle = idle_cost(srv.netns, srv.host, srv.port, pid, args.idle)
            rate = saturate(srv.netns, srv.host, srv.port, args)
            rows.append(("dpdk", rate, idle, ""))
        if args.ipv6:
            # Idle cost per family on a fresh dual-stacked process each; then, on the
            # second, the message rate over IPv4 and IPv6 in alternating rounds (the
            # median of each), so that a shared machine's load swings hit both alike.
            idle = {}
            for over6 in (False, True):
                name = "ipv6" if over6 else "dual"
                with DpdkPigeond(args.build, Path(tmp) / name, settings, ip6=True) as srv:
                    host = SERVER_IP6 if over6 else srv.host
                    wait_connect(srv.netns, SERVER_IP6, srv.port)  # DAD over
                    idle[over6] = idle_cost(srv.netns, host, srv.port,
                                            pigeond_pid(srv.proc), args.idle)
                    if not over6:
                        continue
                    rates = {False: [], True: []}
                    for _ in range(args.rounds):
                        for fam in (False, True):
                            rates[fam].append(saturate(srv.netns, SERVER_IP6 if fam else srv.host,
                                                       srv.port, args))
            for fam, name in ((False, "dpdk-dual"), (True, "dpdk-ipv6")):
                r = sorted(rates[fam])
                rows.append((name, r[len(r) // 2], idle[fam],
                             f"rounds {' '.join(f'{x:.0f}' for x in rates[fam])}"))
    print(f"{args.messages} messages of {args.size} octets, {args.sessions} sessions "
          f"(smtp-source -d); {args.idle} idle connections")
    print(f"{'backend':10} {'messages/s':>12} {'idle conn (octets)':>20}")
    for name, rate, idle, note in rows:
        print(f"{name:10} {rate:12.0f} {idle:20.0f}  {note}")


if __name__ == "__main__":
    main()
