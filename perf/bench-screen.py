#!/usr/bin/python3
"""bench-screen.py: pigeond's connection rate with DNS-list screening on and
every lookup answered from the caches, beside the same pigeond build with
screening off, in one run (issue 17; docs/benchmarks.md).

One unbound (local zones only, on its own loopback address and port) serves a
DNSBL and a DNSWL zone in which the client is listed nowhere.  Two pigeond
instances of the same build run side by side on the kernel backend, one
worker each: `off` (no screen.* keys) and `on` (two block lists and one allow
list on that unbound).  pigeon-loadgen --kernel then runs against them in
turn, off, on, off, on, ... (--rounds each), each run --duration seconds of
--connections concurrent connections carrying one message each
(--per-conn 1: connect, banner, EHLO, one --size message, QUIT), so the
figure is new connections per second, every one of them screened on `on`.
A warm-up connection to `on` fills the caches first; afterwards
`pigeonctl stats` must show that the resolver sent no query beyond the
warm-up's and that every later connection was decided from the worker's
verdict cache: the `on` figure is the cached path's.

It prints each run, then the median connections/s of each and the ratio
on/off (issue 17's target: at least 0.9).

  perf/bench-screen.py --build build
  perf/bench-screen.py --build build --rounds 5 --duration 4 --connections 32

Needs unbound and build/pigeon-loadgen; everything lives in a temporary
directory removed at the end.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DNS_ADDR = "127.0.53.2"
SOA = "{z}. 300 IN SOA ns.{z}. hostmaster.{z}. 1 3600 600 86400 300"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            sys.exit(f"bench-screen: {what} within {timeout} s")
        time.sleep(0.05)


def start_unbound(tmp):
    port = free_port(DNS_ADDR)
    conf = tmp / "unbound.conf"
    lines = ["server:", f"    interface: {DNS_ADDR}@{port}", "    do-daemonize: no",
             '    username: ""', '    chroot: ""', f'    directory: "{tmp}"', '    pidfile: ""',
             "    use-syslog: no", f'    logfile: "{tmp}/unbound.log"', "    verbosity: 0",
             "    access-control: 127.0.0.0/8 allow", "    do-ip6: no",
             '    module-config: "iterator"', "    num-threads: 1"]
    for zone in ("bl1.test", "bl2.test", "wl.test"):
        lines += [f'    local-zone: "{zone}." static', f'    local-data: "{SOA.format(z=zone)}"',
                  f'    local-data: "2.0.0.127.{zone}. 300 IN A 127.0.0.2"']
    lines += ["remote-control:", "    control-enable: no"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["/usr/sbin/unbound", "-d", "-c", str(conf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    return proc, port


def start_pigeond(build, tmp, name, extra):
    port = free_port()
    spool = tmp / f"spool-{name}"
    spool.mkdir()
    argv = [str(build / "pigeond"), "-o", f"listen=127.0.0.1:{port}", "-o", "workers=1",
            "-o", "hostname=bench.pigeonair.test", "-o", "domains=example.com",
            "-o", f"spool.dir={spool}", "-o", "spool.shards=4", "-o", "log.level=notice",
            "-o", "limits.conn_total=0", "-o", "limits.conn_per_ip=0",
            "-o", "limits.conn_rate_per_ip=0"]
    for k, v in extra.items():
        argv += ["-o", f"{k}={v}"]
    log = open(tmp / f"{name}.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()

    def ready():
        if proc.poll() is not None:
            sys.exit(f"bench-screen: pigeond {name} exited: {(tmp / f'{name}.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(ready, 30, f"pigeond {name} did not listen")
    return proc, port, spool / "pigeond.sock"


def stats(build, sock):
    r = subprocess.run([str(build / "pigeonctl"), "stats", "--json", "--socket", str(sock)],
                       stdout=subprocess.PIPE, check=True, timeout=30)
    return json.loads(r.stdout)["result"]


def cpu_seconds(pid):
    """utime + stime of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadgen(build, port, args):
    r = subprocess.run([str(build / "pigeon-loadgen"), "--kernel", "--target",
                        f"127.0.0.1:{port}", "--connections", str(args.connections),
                        "--per-conn", "1", "--size", str(args.size), "--duration",
                        str(args.duration), "--json", "--quiet"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=args.duration + 60)
    if r.returncode != 0:
        sys.exit(f"bench-screen: pigeon-loadgen failed: {r.stderr.decode(errors='replace')}")
    out = json.loads(r.stdout)
    if out["failed"] != 0:
        sys.exit(f"bench-screen: {out['failed']} messages failed: {out}")
    return out["connects"], out["seconds"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    build = Path(args.build).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="pigeonair-bench-screen-"))
    procs = []
    try:
        unbound, dns_port = start_unbound(tmp)
        procs.append(unbound)
        screen = {"dns.servers": f"{DNS_ADDR}:{dns_port}", "dns.timeout": "1000",
                  "screen.dnsbl_sites": "bl1.test=127.0.0.[2..11]*2 bl2.test*2",
                  "screen.dnswl_sites": "wl.test*-2", "screen.threshold": "2"}
        off_proc, off_port, _ = start_pigeond(build, tmp, "off", {})
        procs.append(off_proc)
        on_proc, on_port, on_sock = start_pigeond(build, tmp, "on", screen)
        procs.append(on_proc)
        # The warm-up: the lists are asked once (the readiness probe already did).
        with socket.create_connection(("127.0.0.1", on_port), timeout=10) as s:
            s.settimeout(10)
            banner = s.recv(512)
        if not banner.startswith(b"220 "):
            sys.exit(f"bench-screen: warm-up got {banner!r}")
        wait_for(lambda: stats(build, on_sock)["dns"]["sent"] == 3, 10,
                 "the resolver did not ask the three lists")
        before = stats(build, on_sock)
        figures = {"off": [], "on": []}
        cpu = {"off": [], "on": []}
        pids = {"off": off_proc.pid, "on": on_proc.pid}
        ports = {"off": off_port, "on": on_port}
        for r in range(args.rounds):
            # Alternate which goes first, so that a drift in the machine's load favours neither.
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                t0 = cpu_seconds(pids[name])
                conns, seconds = loadgen(build, ports[name], args)
                us = (cpu_seconds(pids[name]) - t0) * 1e6 / conns
                figures[name].append(conns / seconds)
                cpu[name].append(us)
                print(f"round {r + 1} {name:>3}: {conns / seconds:9.0f} connections/s, "
                      f"pigeond CPU {us:6.1f} us per connection", flush=True)
        after = stats(build, on_sock)
        screened = after["total"]["conns_total"] - before["total"]["conns_total"]
        cached = after["total"]["screen"]["cached"] - before["total"]["screen"]["cached"]
        sent = after["dns"]["sent"] - before["dns"]["sent"]
        print(f"on: {screened} connections screened during the runs, {cached} decided from "
              f"the verdict cache, {sent} DNS queries sent")
        if sent != 0 or cached != screened:
            sys.exit("bench-screen: not every lookup was answered from the caches")
        off, on = statistics.median(figures["off"]), statistics.median(figures["on"])
        ratios = [b / a for a, b in zip(figures["off"], figures["on"])]
        print(f"median off {off:.0f} connections/s, on {on:.0f} connections/s: "
              f"on/off = {on / off:.3f}x; median of the rounds' ratios "
              f"{statistics.median(ratios):.3f}x (target >= 0.9x)")
        print(f"pigeond CPU per connection (median): off {statistics.median(cpu['off']):.1f} us, "
              f"on {statistics.median(cpu['on']):.1f} us")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
