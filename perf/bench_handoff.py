"""bench_handoff.py: end-to-end messages/s (client -> pigeond -> delivery tier ->
mailbox) beside pigeond's ingest-only figure, in one run (perf/bench-handoff.sh).

Ingest-only: pigeond with no route (mail stays queued), smtp-source sends
MESSAGES messages; the figure is messages / time until smtp-source is done
(every message got 250, i.e. was synced).
End-to-end: a fresh pigeond with relay.default pointing at a Dovecot LMTP
store (or Postfix with --postfix) started by this script; the clock runs from
the first connection until the last message is a file in a Maildir.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
import delivery  # noqa: E402
import helpers  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"


def start_pigeond(build, tmp, name, extra):
    port = helpers.free_port()
    spool = tmp / f"spool-{name}"
    log = open(tmp / f"{name}.log", "wb")
    cmd = [str(build / "pigeond"), "-o", f"listen=127.0.0.1:{port}", "-o", f"spool.dir={spool}",
           "-o", "domains=example.com", "-o", "log.level=warning", "-o", "hostname=bench.test",
           "-o", "relay.min_backoff=1", "-o", "relay.max_backoff=2"]
    for k, v in extra.items():
        cmd += ["-o", f"{k}={v}"]
    p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import socket
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit(f"pigeond {name} did not start; see {tmp}/{name}.log")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def source(port, n, sessions, size, rcpt):
    cmd = [SMTP_SOURCE, "-c", "-d", "-s", str(sessions), "-m", str(n), "-l", str(size),
           "-f", "bench@example.org", "-t", rcpt, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"smtp-source failed: {r.stderr.decode(errors='replace')[-500:]}")
    return t0, time.monotonic()


def count_files(root):
    return sum(1 for _ in Path(root).glob("*/*/new/*")) + sum(1 for _ in Path(root).glob("*/*/cur/*"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--messages", type=int, default=5000)
    ap.add_argument("-s", "--sessions", type=int, default=20)
    ap.add_argument("-l", "--size", type=int, default=4096)
    ap.add_argument("-c", "--concurrency", type=int, default=8, help="relay.concurrency")
    ap.add_argument("-w", "--workers", type=int, default=1)
    ap.add_argument("--postfix", action="store_true", help="Postfix instead of Dovecot LMTP")
    ap.add_argument("-b", "--build", default=os.environ.get("PIGEON_BUILD", str(HERE.parent / "build")))
    ap.add_argument("-k", "--keep", action="store_true")
    a = ap.parse_args()
    build = Path(a.build)
    tmp = Path(tempfile.mkdtemp(prefix="pigeonair-bench-handoff-"))
    os.chmod(tmp, 0o755)
    rcpt = "bench@example.com"
    store = None
    procs = []
    try:
        # ingest only: nothing routes, mail stays queued
        p, port = start_pigeond(build, tmp, "ingest", {"workers": a.workers})
        procs.append(p)
        t0, t1 = source(port, a.messages, a.sessions, a.size, rcpt)
        ingest = a.messages / (t1 - t0)
        stop(p)
        procs.remove(p)

        if a.postfix:
            store = delivery.Postfix(tmp, [rcpt])
            dest = "smtp"
        else:
            store = delivery.DovecotLMTP(tmp, [rcpt])
            dest = "lmtp"
        store.start()
        p, port = start_pigeond(build, tmp, "e2e", {
            "workers": a.workers, "relay.default": f"{dest}:127.0.0.1:{store.port}",
            "relay.concurrency": a.concurrency})
        procs.append(p)
        t0, t1 = source(port, a.messages, a.sessions, a.size, rcpt)
        deadline = time.monotonic() + 900
        while count_files(store.mail) < a.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        t2 = time.monotonic()
        got = count_files(store.mail)
        e2e = got / (t2 - t0)
        accept = a.messages / (t1 - t0)
        stop(p)
        procs.remove(p)
        kind = "Postfix (smtp, virtual to Maildir)" if a.postfix else "Dovecot LMTP (Maildir)"
        print(f"messages={a.messages} size={a.size} sessions={a.sessions} workers={a.workers} "
              f"relay.concurrency={a.concurrency} store={kind}")
        print(f"ingest only (250 = synced):             {ingest:10.0f} msgs/s")
        print(f"ingest while handing off:               {accept:10.0f} msgs/s")
        print(f"end to end (client -> mailbox file):    {e2e:10.0f} msgs/s "
              f"({got}/{a.messages} delivered in {t2 - t0:.1f}s)")
        print(f"end to end / ingest only:               {e2e / ingest:10.2f}")
    finally:
        for p in procs:
            p.kill()
        if store is not None:
            store.stop()
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
