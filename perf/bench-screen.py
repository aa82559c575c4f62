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
  perf/bench-screen.py --build build --json FILE    # the figures, for perf/bench.py

Needs unbound and build/pigeon-loadgen; everything lives in a temporary
directory removed at the end.
"""
import argparse
import socket
import statistics
import subprocess
import tempfile
import shutil
from pathlib import Path

import benchlib as bl

DNS_ADDR = "127.0.53.2"
SOA = "{z}. 300 IN SOA ns.{z}. hostmaster.{z}. 1 3600 600 86400 300"


def start_unbound(tmp):
    port = bl.free_port(DNS_ADDR)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="pigeonair-bench-screen-"))
    procs = []
    try:
        load0 = bl.loadavg()
        unbound, dns_port = start_unbound(tmp)
        procs.append(unbound)
        screen = {"dns.servers": f"{DNS_ADDR}:{dns_port}", "dns.timeout": "1000",
                  "screen.dnsbl_sites": "bl1.test=127.0.0.[2..11]*2 bl2.test*2",
                  "screen.dnswl_sites": "wl.test*-2", "screen.threshold": "2"}
        off_proc, off_port, _ = bl.start_pigeond(build, tmp, "off", {})
        procs.append(off_proc)
        on_proc, on_port, on_sock = bl.start_pigeond(build, tmp, "on", screen)
        procs.append(on_proc)
        # The warm-up: the lists are asked once (the readiness probe already did).
        with socket.create_connection(("127.0.0.1", on_port), timeout=10) as s:
            s.settimeout(10)
            banner = s.recv(512)
        if not banner.startswith(b"220 "):
            bl.fail(f"warm-up got {banner!r}")
        bl.wait_for(lambda: bl.stats(build, on_sock)["dns"]["sent"] == 3, 10,
                    "the resolver did not ask the three lists")
        before = bl.stats(build, on_sock)
        figures, cpu = bl.ab_rounds(build, {"off": (off_proc.pid, off_port),
                                            "on": (on_proc.pid, on_port)}, args, 1,
                                    "connection")
        after = bl.stats(build, on_sock)
        screened = after["total"]["conns_total"] - before["total"]["conns_total"]
        cached = after["total"]["screen"]["cached"] - before["total"]["screen"]["cached"]
        sent = after["dns"]["sent"] - before["dns"]["sent"]
        print(f"on: {screened} connections screened during the runs, {cached} decided from "
              f"the verdict cache, {sent} DNS queries sent")
        if sent != 0 or cached != screened:
            bl.fail("not every lookup was answered from the caches")
        off, on = statistics.median(figures["off"]), statistics.median(figures["on"])
        ratios = [b / a for a, b in zip(figures["off"], figures["on"])]
        print(f"median off {off:.0f} connections/s, on {on:.0f} connections/s: "
              f"on/off = {on / off:.3f}x; median of the rounds' ratios "
              f"{statistics.median(ratios):.3f}x (target >= 0.9x)")
        print(f"pigeond CPU per connection (median): off {statistics.median(cpu['off']):.1f} us, "
              f"on {statistics.median(cpu['on']):.1f} us")
        bl.write_result(args.json, {
            "off_conns_per_sec": off, "on_conns_per_sec": on, "ratio": on / off,
            "round_ratios": ratios, "screened": screened, "cached": cached, "sent": sent,
            "cpu_us_off": statistics.median(cpu["off"]), "cpu_us_on": statistics.median(cpu["on"]),
            "rounds": args.rounds, "duration": args.duration, "connections": args.connections,
            "loadavg": [load0, bl.loadavg()]})
    finally:
        bl.stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
