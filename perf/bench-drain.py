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
  4. the drain is timed from pigeond's readiness (the control socket's first
     answer: the spool is open and its WAL recovered, which takes seconds for
     a big queue and is printed apart, "start s") to `pigeonctl status
     --json` showing handoff.delivered = N (polled every 50 ms), over the
     messages delivered in between, bounded by --timeout.

It prints one row per binary: queued, ingest msg/s, drain msg/s and their
ratio (drain / ingest; >= 1 means the hand-off keeps up with ingest).  A drain
cut short by --timeout prints what was delivered by then, marked.

--figure adds issue 14's other figures, each in the same run (repeatable):

  sustained  pigeon-loadgen --kernel for --duration s (60) into pigeond
             without a route (ingest only), then the same into pigeond with
             relay.default = smtp-sink: delivered msg/s over the same
             seconds against the ingest-only msg/s (ratio), and the queue
             (handoff.queued_bytes, sampled every second) at its highest
             and at the end;
  lmtp       one Dovecot LMTP (tests/integration/delivery.py): smtp-source
             -L -s C straight into it, then N messages queued in pigeond by
             smtp-source (same sender, recipient, size) and drained into it
             with relay.concurrency_min = relay.concurrency = C (--tier-sessions);
  relay      the same with a Postfix (smtpd, queue, virtual delivery) as
             the tier and smtp-source over SMTP.

  perf/bench-drain.py --build build-base --build build          # N = 20000
  perf/bench-drain.py --build build --messages 4000 --set relay.concurrency=64
  perf/bench-drain.py --build build --figure sustained --figure lmtp --figure relay
  perf/bench-drain.py ... --json FILE      # the figures for perf/bench.py (make bench)

Needs smtp-sink and smtp-source (postfix), dovecot-lmtpd for lmtp, and
build/pigeon-loadgen; lmtp and relay run as root (the tiers' users).
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
SMTP_SOURCE = "/usr/sbin/smtp-source"
REPO = Path(__file__).resolve().parent.parent
# The tests' Dovecot and Postfix instances (their own directories and ports).
sys.path.insert(0, str(REPO / "tests" / "integration"))
TIER_RCPT = "user0@example.com"
TIER_FROM = "bench@example.org"


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


def wait_delivered(build, ctl, want, timeout):
    """Polls handoff.delivered every 50 ms until it reaches want.

    Returns (delivered, msg/s): the rate from the first answer of the control
    socket (pigeond is ready: the spool is open and recovered) to the last,
    over what was delivered in between.
    """
    end = time.monotonic() + timeout
    first = last = None
    while time.monotonic() < end:
        st = status(build, ctl)
        if st is not None:
            last = (time.monotonic(), st.get("handoff", {}).get("delivered", 0))
            first = first or last
            if last[1] >= want:
                break
        time.sleep(0.05)
    if first is None or last[0] <= first[0]:
        return (last[1] if last else 0), 0.0
    return last[1], (last[1] - first[1]) / (last[0] - first[0])


def start_sink(run, tag):
    port = free_port()
    sink = [SMTP_SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + \
        ["-t", "900", "-m", "4096", f"127.0.0.1:{port}", "4096"]
    s = run.spawn(sink, run.tmp / f"smtp-sink-{tag}.log")
    wait_for(lambda: banner(port), 20, "smtp-sink", s)
    return s, port


def loadgen(build, port, a, extra):
    """pigeon-loadgen --kernel with --connections; its JSON summary."""
    cmd = [str(build / "pigeon-loadgen"), "--kernel", "--target", f"127.0.0.1:{port}",
           "--connections", str(a.connections), "--size", str(a.size), "--json", "--quiet"]
    r = subprocess.run(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=a.timeout + 60)
    return json.loads([ln for ln in r.stdout.decode().splitlines() if ln.startswith("{")][-1])


def sustained(run, build, n):
    """Ingest-only msg/s, then ingest with hand-off into smtp-sink: delivered msg/s."""
    a = run.args
    port = free_port()
    ctl = run.tmp / f"ctl-s{n}.sock"
    spool = run.tmp / f"spool-s{n}"
    p = pigeond(run, build, f"{n}-ingest-only", port, spool, ctl, {})
    j = loadgen(build, port, a, ["--duration", str(a.duration),
                                 "--timeout", str(a.duration + 60)])
    only = j.get("ok", 0) / (j.get("seconds") or a.duration)
    run.stop(p)
    shutil.rmtree(spool, ignore_errors=True)

    s, sink_port = start_sink(run, f"s{n}")
    extra = {"relay.default": f"smtp:127.0.0.1:{sink_port}",
             **dict(kv.split("=", 1) for kv in a.set)}
    p = pigeond(run, build, f"{n}-sustained", port, spool, ctl, extra)
    lg = subprocess.Popen([str(build / "pigeon-loadgen"), "--kernel", "--target",
                           f"127.0.0.1:{port}", "--connections", str(a.connections),
                           "--size", str(a.size), "--json", "--quiet",
                           "--duration", str(a.duration), "--timeout", str(a.duration + 60)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    first = last = None
    peak = 0
    while time.monotonic() < t0 + a.duration:
        st = status(build, ctl)
        if st is not None:
            h = st.get("handoff", {})
            if first is None:
                first = (time.monotonic(), h.get("delivered", 0))
            last = (time.monotonic(), h.get("delivered", 0))
            peak = max(peak, h.get("queued_bytes", 0))
        time.sleep(1)
    out, _ = lg.communicate(timeout=a.duration + 90)
    j = json.loads([ln for ln in out.decode().splitlines() if ln.startswith("{")][-1])
    ingest = j.get("ok", 0) / (j.get("seconds") or a.duration)
    st = status(build, ctl) or {}
    end_q = st.get("handoff", {}).get("queued_bytes", 0)
    run.stop(p)
    run.stop(s)
    shutil.rmtree(spool, ignore_errors=True)
    delivered = (last[1] - first[1]) / max(last[0] - first[0], 1e-3) if first else 0.0
    return {"build": str(build), "only": only, "ingest": ingest, "delivered": delivered,
            "peak_q": peak, "end_q": end_q}


def smtp_source(target, n, sessions, lmtp, timeout):
    """smtp-source's N messages of TIER_FROM to TIER_RCPT; msg/s (all of them accepted)."""
    cmd = [SMTP_SOURCE] + (["-L"] if lmtp else []) + \
        ["-s", str(sessions), "-m", str(n), "-l", "4096", "-f", TIER_FROM, "-t", TIER_RCPT,
         "-M", "bench.pigeonair.test", target]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source: {r.stdout.decode(errors='replace')[-2000:]}")
    return n / secs


def tier(run, build, n, kind):
    """smtp-source straight into a Dovecot LMTP (or Postfix) against pigeond's drain into it."""
    import delivery

    a = run.args
    c = a.tier_sessions
    if kind == "lmtp":
        t = delivery.DovecotLMTP(run.tmp, [TIER_RCPT], name=f"dovecot-{n}").start()
    else:
        t = delivery.Postfix(run.tmp, [TIER_RCPT], name=f"postfix-{n}",
                             domains=("example.com",)).start()
    try:
        direct = smtp_source(f"127.0.0.1:{t.port}", a.tier_messages, c, kind == "lmtp",
                             a.timeout)
        port = free_port()
        ctl = run.tmp / f"ctl-t{n}.sock"
        spool = run.tmp / f"spool-t{n}"
        p = pigeond(run, build, f"{n}-{kind}-fill", port, spool, ctl, {})
        smtp_source(f"127.0.0.1:{port}", a.tier_messages, 32, False, a.timeout)
        run.stop(p)
        extra = {"relay.default": f"{'lmtp' if kind == 'lmtp' else 'smtp'}:127.0.0.1:{t.port}",
                 "relay.concurrency": str(c), "relay.concurrency_min": str(c),
                 **dict(kv.split("=", 1) for kv in a.set)}
        p = pigeond(run, build, f"{n}-{kind}-drain", port, spool, ctl, extra)
        delivered, drain = wait_delivered(build, ctl, a.tier_messages, a.timeout)
        run.stop(p)
        shutil.rmtree(spool, ignore_errors=True)
    finally:
        t.stop()
    return {"build": str(build), "kind": kind, "direct": direct, "drain": drain,
            "complete": delivered >= a.tier_messages, "delivered": delivered}


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
    s, sink_port = start_sink(run, n)
    extra = {"relay.default": f"smtp:127.0.0.1:{sink_port}", **extra}
    t0 = time.monotonic()
    p = pigeond(run, build, f"{n}-drain", port, spool, ctl, extra)
    start_s = time.monotonic() - t0  # the spool's recovery of its WAL at open, mostly
    # 4: delivered == what was queued, or the bound
    delivered, drain = wait_delivered(build, ctl, ok, a.timeout - start_s)
    drain_s = time.monotonic() - t0
    cpu = thread_cpu(p.pid)
    cpu["smtp-sink (process)"] = sum(thread_cpu(s.pid).values())
    run.stop(p)
    run.stop(s)
    shutil.rmtree(spool, ignore_errors=True)
    return {"build": str(build), "queued": ok, "ingest": ingest, "drain": drain,
            "drain_s": drain_s, "start_s": start_s, "complete": delivered >= ok,
            "delivered": delivered, "cpu": cpu}


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
    ap.add_argument("--figure", action="append", default=[],
                    choices=["sustained", "lmtp", "relay"],
                    help="another of issue 14's figures in the same run (repeatable)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of the sustained run")
    ap.add_argument("--tier-messages", type=int, default=5000,
                    help="messages for the lmtp and relay figures")
    ap.add_argument("--tier-sessions", type=int, default=16,
                    help="smtp-source -s, and pigeond's fixed concurrency, for lmtp and relay")
    ap.add_argument("--no-drain", action="store_true", help="only the --figure ones")
    ap.add_argument("--json", type=Path, help="also write every figure to this file (perf/bench.py)")
    a = ap.parse_args()
    builds = a.build or [REPO / "build"]
    if not Path(SMTP_SINK).exists():
        sys.exit(f"{SMTP_SINK} not installed (postfix)")
    run = Run(a)
    rows, sus, tiers = [], [], []
    try:
        for i, b in enumerate(builds):
            if not a.no_drain:
                rows.append(one(run, b.resolve(), i))
            if "sustained" in a.figure:
                sus.append(sustained(run, b.resolve(), i))
            for kind in ("lmtp", "relay"):
                if kind in a.figure:
                    tiers.append(tier(run, b.resolve(), i, kind))
    finally:
        run.cleanup()
    settings = " ".join(a.set) or "default relay.* settings"
    if a.json:
        a.json.write_text(json.dumps({"messages": a.messages, "size": a.size,
                                      "duration": a.duration, "settings": settings,
                                      "tier_messages": a.tier_messages,
                                      "tier_sessions": a.tier_sessions, "drain": rows,
                                      "sustained": sus, "tiers": tiers}, indent=1))
    if sus:
        print(f"sustained: pigeon-loadgen --kernel, {a.connections} connections, "
              f"{a.duration} s, {a.size} octets; hand-off into smtp-sink ({settings})")
        print(f"{'build':<28} {'ingest-only':>12} {'ingest':>8} {'delivered':>10} "
              f"{'deliv/only':>11} {'queue max':>11} {'queue end':>11}")
        for r in sus:
            print(f"{Path(r['build']).name:<28} {r['only']:>12.0f} {r['ingest']:>8.0f} "
                  f"{r['delivered']:>10.0f} {r['delivered'] / r['only']:>11.2f} "
                  f"{r['peak_q'] / 1e6:>9.1f}MB {r['end_q'] / 1e6:>9.1f}MB")
    for r in tiers:
        what = "Dovecot LMTP, smtp-source -L" if r["kind"] == "lmtp" else \
            "Postfix smtpd, smtp-source"
        note = "" if r["complete"] else f"  (cut: {r['delivered']} delivered)"
        print(f"{r['kind']}: {a.tier_messages} messages into {what} -s {a.tier_sessions} "
              f"direct {r['direct']:.0f} msg/s; pigeond drain (concurrency "
              f"{a.tier_sessions}) {r['drain']:.0f} msg/s; ratio "
              f"{r['drain'] / r['direct']:.2f}  [{Path(r['build']).name}]{note}")
    if not rows:
        return
    print(f"drain of {a.messages} x {a.size} octet messages into smtp-sink ({settings}, "
          f"{a.shards} shards, ingest by pigeon-loadgen --kernel, {a.connections} connections)")
    print("(drain msg/s from pigeond's readiness; start s: from its start to readiness, the "
          "spool's recovery)")
    print(f"{'build':<28} {'queued':>8} {'ingest msg/s':>13} {'start s':>8} {'drain msg/s':>12} "
          f"{'drain/ingest':>13}")
    for r in rows:
        note = "" if r["complete"] else \
            f"  (cut at {r['drain_s']:.0f} s: {r['delivered']} delivered)"
        print(f"{Path(r['build']).name:<28} {r['queued']:>8} {r['ingest']:>13.0f} "
              f"{r['start_s']:>8.1f} {r['drain']:>12.0f} {r['drain'] / r['ingest']:>13.2f}{note}")
    print("CPU seconds during the drain, by pigeond thread (start included), and smtp-sink's:")
    for r in rows:
        busy = sorted(r["cpu"].items(), key=lambda kv: -kv[1])[:5]
        print(f"  {Path(r['build']).name:<26} " +
              ", ".join(f"{k} {v:.2f}" for k, v in busy))


if __name__ == "__main__":
    main()
