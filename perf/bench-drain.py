#!/usr/bin/python3
"""bench-drain.py: how fast pigeond's hand-off drains a queue, beside how fast
the same pigeond ingested it, in one run (issue 14; docs/benchmarks.md).

For each binary given (--build DIR, repeatable: e.g. an old and a new build,
side by side in one run):

  1. pigeond starts with no route (relay.default unset): mail stays queued;
  2. pigeon-loadgen --kernel sends N messages of --size octets (ingest msg/s:
     what the client measured, every message 250 after its sync);
  3. pigeond stops (SIGTERM), Postfix's smtp-sink starts (no -c: it stores
     nothing), pigeond starts again with relay.default = smtp:<smtp-sink>
     and otherwise default relay.* settings (or --set KEY=VALUE);
  4. the drain is timed from pigeond's readiness to `pigeonctl status --json`
     showing handoff.delivered = N (polled every 50 ms), bounded by --timeout.

It prints one row per binary: queued, ingest msg/s, drain msg/s and their
ratio (drain / ingest; >= 1 means the hand-off keeps up with ingest).  A drain
cut short by --timeout prints what was delivered by then, marked.

  perf/bench-drain.py --build build-base --build build          # N = 20000
  perf/bench-drain.py --build build --messages 4000 --set relay.concurrency=64

Needs smtp-sink (postfix) and build/pigeon-loadgen; runs as root or not.
Everything lives in a temporary directory removed at the end.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMTP_SINK = "/usr/sbin/smtp-sink"
REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout} s")


def banner(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


class Run:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pa-drain-"))
        self.procs = []

    def spawn(self, cmd, log):
        p = subprocess.Popen([str(c) for c in cmd], stdout=open(log, "ab"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p, 10)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def pigeond(run, build, n, port, spool, ctl, extra):
    settings = {
        "backend": "kernel",
        "listen": f"127.0.0.1:{port}",
        "hostname": "bench.pigeonair.test",
        "domains": "example.com",
        "workers": "1",
        "spool.dir": str(spool),
        "spool.shards": str(run.args.shards),
        "ctl.socket": str(ctl),
        "limits.conn_per_ip": "0",
        "limits.conn_rate_per_ip": "0",
        **extra,
    }
    cmd = [build / "pigeond"]
    for k, v in settings.items():
        cmd += ["-o", f"{k}={v}"]
    p = run.spawn(cmd, run.tmp / f"pigeond-{n}.log")
    wait_for(lambda: banner(port), 60, "pigeond", p)
    return p


def status(build, ctl):
    r = subprocess.run([str(build / "pigeonctl"), "--socket", str(ctl), "status", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout).get("result")


def thread_cpu(pid):
    """CPU seconds per thread name of a process (utime + stime)."""
    out = {}
    hz = os.sysconf("SC_CLK_TCK")
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (t / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / hz
    return out


def one(run, build, n):
    a = run.args
    spool = run.tmp / f"spool-{n}"
    ctl = run.tmp / f"ctl-{n}.sock"
    port = free_port()
    extra = dict(kv.split("=", 1) for kv in a.set)

    # 1-2: fill the queue, no route
    p = pigeond(run, build, f"{n}-fill", port, spool, ctl, {})
    t0 = time.monotonic()
    r = subprocess.run([str(build / "pigeon-loadgen"), "--kernel", "--target",
                        f"127.0.0.1:{port}", "--connections", str(a.connections),
                        "--messages", str(a.messages), "--size", str(a.size), "--json",
                        "--quiet", "--timeout", str(a.timeout)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=a.timeout + 30)
    secs = time.monotonic() - t0
    j = json.loads([ln for ln in r.stdout.decode().splitlines() if ln.startswith("{")][-1])
    ok = j.get("ok", 0)
    ingest = ok / (j.get("seconds") or secs)
    run.stop(p)

    # 3: the tier, then pigeond again with a route
    sink_port = free_port()
    sink = [SMTP_SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + \
        ["-t", "900", "-m", "4096", f"127.0.0.1:{sink_port}", "4096"]
    s = run.spawn(sink, run.tmp / f"smtp-sink-{n}.log")
    wait_for(lambda: banner(sink_port), 20, "smtp-sink", s)
    extra = {"relay.default": f"smtp:127.0.0.1:{sink_port}", **extra}
    t0 = time.monotonic()
    p = pigeond(run, build, f"{n}-drain", port, spool, ctl, extra)
    # 4: delivered == what was queued, or the bound
    delivered, end = 0, t0 + a.timeout
    while time.monotonic() < end:
        st = status(build, ctl)
        if st is not None:
            delivered = st.get("handoff", {}).get("delivered", 0)
            if delivered >= ok:
                break
        time.sleep(0.05)
    drain_s = time.monotonic() - t0
    cpu = thread_cpu(p.pid)
    cpu["smtp-sink (process)"] = sum(thread_cpu(s.pid).values())
    run.stop(p)
    run.stop(s)
    shutil.rmtree(spool, ignore_errors=True)
    drain = delivered / drain_s
    return {"build": str(build), "queued": ok, "ingest": ingest, "drain": drain,
            "drain_s": drain_s, "complete": delivered >= ok, "delivered": delivered,
            "cpu": cpu}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", type=Path,
                    help="a build directory with pigeond, pigeonctl, pigeon-loadgen (repeatable)")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", default="4096")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300, help="bound on each fill and drain (s)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a pigeond setting for the drain (e.g. relay.concurrency=64)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    builds = a.build or [REPO / "build"]
    if not Path(SMTP_SINK).exists():
        sys.exit(f"{SMTP_SINK} not installed (postfix)")
    run = Run(a)
    rows = []
    try:
        for i, b in enumerate(builds):
            rows.append(one(run, b.resolve(), i))
    finally:
        run.cleanup()
    settings = " ".join(a.set) or "default relay.* settings"
    print(f"drain of {a.messages} x {a.size} octet messages into smtp-sink ({settings}, "
          f"{a.shards} shards, ingest by pigeon-loadgen --kernel, {a.connections} connections)")
    print(f"{'build':<28} {'queued':>8} {'ingest msg/s':>13} {'drain msg/s':>12} "
          f"{'drain/ingest':>13}")
    for r in rows:
        note = "" if r["complete"] else \
            f"  (cut at {r['drain_s']:.0f} s: {r['delivered']} delivered)"
        print(f"{Path(r['build']).name:<28} {r['queued']:>8} {r['ingest']:>13.0f} "
              f"{r['drain']:>12.0f} {r['drain'] / r['ingest']:>13.2f}{note}")
    print("CPU seconds during the drain, by pigeond thread (start included), and smtp-sink's:")
    for r in rows:
        busy = sorted(r["cpu"].items(), key=lambda kv: -kv[1])[:5]
        print(f"  {Path(r['build']).name:<26} " +
              ", ".join(f"{k} {v:.2f}" for k, v in busy))


if __name__ == "__main__":
    main()
