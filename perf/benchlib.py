"""benchlib.py: what perf/bench-screen.py and perf/bench-milter.py share:
pigeond instances of one build on the kernel backend in a temporary
directory, pigeon-loadgen --kernel runs against them, A/B rounds in
alternating order, and the processes' cleanup.

Every wait is bounded; a failure ends the script with a message (SystemExit),
and stop_all() in the caller's `finally` ends what was started.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def fail(msg):
    raise SystemExit(f"{Path(sys.argv[0]).name}: {msg}")


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            fail(f"{what} within {timeout} s")
        time.sleep(0.05)


def listening(proc, port, what, log=None):
    """True once port accepts; fails if proc exited first."""
    if proc.poll() is not None:
        fail(f"{what} exited" + (f": {Path(log).read_text()[-2000:]}" if log else ""))
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_pigeond(build, tmp, name, extra):
    """One worker, kernel backend, limits off, log level notice; (proc, port, ctl socket)."""
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
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    wait_for(lambda: listening(proc, port, f"pigeond {name}", log_path), 30,
             f"pigeond {name} did not listen")
    return proc, port, spool / "pigeond.sock"


def stats(build, sock):
    r = subprocess.run([str(build / "pigeonctl"), "stats", "--json", "--socket", str(sock)],
                       stdout=subprocess.PIPE, check=True, timeout=30)
    return json.loads(r.stdout)["result"]


def cpu_seconds(pid):
    """utime + stime of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadgen(build, port, connections, per_conn, size, duration):
    """pigeon-loadgen --kernel's JSON summary; fails on any failed message."""
    r = subprocess.run([str(build / "pigeon-loadgen"), "--kernel", "--target",
                        f"127.0.0.1:{port}", "--connections", str(connections),
                        "--per-conn", str(per_conn), "--size", str(size), "--duration",
                        str(duration), "--reply-timeout", "60", "--json", "--quiet"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=duration + 120)
    if r.returncode != 0:
        fail(f"pigeon-loadgen failed: {r.stderr.decode(errors='replace')}")
    out = json.loads(r.stdout)
    if out["failed"] != 0:
        fail(f"{out['failed']} messages failed: {out}")
    return out


def ab_rounds(build, targets, args, per_conn, per):
    """pigeon-loadgen against targets["off"] and targets["on"] ((pid, port)
    each), args.rounds times, the order alternating so that a drift in the
    machine's load favours neither.  per: "message" (msg/s) or "connection"
    (connections/s).  Prints each run; returns ({name: [rate]}, {name: [CPU
    µs per message or connection]})."""
    figures, cpu = {"off": [], "on": []}, {"off": [], "on": []}
    for r in range(args.rounds):
        for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
            pid, port = targets[name]
            t0 = cpu_seconds(pid)
            out = loadgen(build, port, args.connections, per_conn, args.size, args.duration)
            n = max(out["connects"] if per == "connection" else out["ok"], 1)
            rate = n / out["seconds"] if per == "connection" else out["msgs_per_sec"]
            us = (cpu_seconds(pid) - t0) * 1e6 / n
            figures[name].append(rate)
            cpu[name].append(us)
            tail = f", p99 end of data {out['p99_us'] / 1000:.1f} ms" if per == "message" else ""
            print(f"round {r + 1} {name:>3}: {rate:9.0f} {per}s/s{tail}, pigeond CPU "
                  f"{us:6.1f} us per {per}", flush=True)
    return figures, cpu


def quantiles(xs):
    """(p50, p99) of xs in seconds, as milliseconds."""
    xs = sorted(xs)
    return (xs[len(xs) // 2] * 1000, xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000)


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_result(path, result):
    """--json FILE: the figures for perf/bench.py."""
    if path:
        Path(path).write_text(json.dumps(result, indent=1))


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=30)
