#!/usr/bin/python3
"""deb_check.py: the installed Debian packages, checked the way an operator
uses them.  Run by tools/deb-test.sh (make deb-test) as root inside a fresh
Debian 12 root (tools/fresh-check.sh) where only the packages and the tools
below were installed, in a network namespace of its own (lo only).

There is no systemd running in that root (nor on the machines this runs on:
a container without systemd as PID 1, so neither systemd-nspawn --boot nor
systemd-run is available).  So the unit's own lines are run as systemd
would run them: ExecStartPre, then ExecStart with the environment of a
Type=notify service (NOTIFY_SOCKET, WATCHDOG_USEC from WatchdogSec), the
unit's LimitNOFILE and UMask, then ExecReload with $MAINPID, then SIGTERM
as KillMode=mixed sends it; systemd's side of the notify protocol is played
here.  The sandboxing directives are checked by systemd-analyze verify only.

usage: deb_check.py DEB_DIR
"""

import configparser
import glob
import os
import pwd
import grp
import re
import resource
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time

UNIT = "/lib/systemd/system/pigeond.service"
SPOOL = "/var/spool/pigeonair"
CONF = "/etc/pigeonair/pigeond.conf"
NOTIFY = "/run/deb-check.notify"
passed = 0


def say(msg):
    print(f"deb-check: {msg}", flush=True)


def check(cond, what, detail=""):
    global passed
    if not cond:
        say(f"FAILED: {what}" + (f"\n{detail}" if detail else ""))
        sys.exit(1)
    passed += 1
    say(f"ok: {what}")


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def unit_service():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    return cp["Service"]


def installed():
    for f in ("/usr/sbin/pigeond", "/usr/sbin/pigeonctl", "/usr/bin/pigeon-loadgen", CONF, UNIT,
              "/usr/share/man/man8/pigeond.8.gz", "/usr/share/man/man5/pigeond.conf.5.gz",
              "/usr/share/man/man8/pigeonctl.8.gz", "/usr/share/man/man1/pigeon-loadgen.1.gz",
              "/usr/share/doc/pigeonair/examples/pigeonair-dashboard.json",
              "/usr/share/doc/pigeonair/examples/dpdk.conf"):
        check(os.path.exists(f), f"installed: {f}")
    pw = pwd.getpwnam("pigeonair")
    check(pw.pw_uid < 1000 and pw.pw_shell == "/usr/sbin/nologin" and pw.pw_dir == SPOOL,
          f"system user pigeonair (uid {pw.pw_uid}, {pw.pw_shell}, home {pw.pw_dir})")
    check(grp.getgrgid(pw.pw_gid).gr_name == "pigeonair", "its group pigeonair")
    st = os.stat(SPOOL)
    check(st.st_uid == pw.pw_uid and st.st_gid == pw.pw_gid and stat.S_IMODE(st.st_mode) == 0o710,
          f"{SPOOL} pigeonair:pigeonair 0710 (0{stat.S_IMODE(st.st_mode):o})")
    r = run(["dpkg-query", "-W", "-f=${Conffiles}", "pigeonair"])
    check(CONF in r.stdout, f"{CONF} is a conffile")
    check(os.path.islink("/etc/systemd/system/multi-user.target.wants/pigeond.service"),
          "pigeond.service enabled on install (not started: no domains yet)")
    r = run(["systemd-analyze", "verify", UNIT])
    check(r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "",
          "systemd-analyze verify accepts the unit (man: links included)", r.stdout + r.stderr)
    for page in ("pigeond", "pigeond.conf", "pigeonctl", "pigeon-loadgen"):
        r = run(["man", "--warnings", page], env={**os.environ, "MANWIDTH": "80"})
        check(r.returncode == 0 and r.stderr == "" and page in r.stdout, f"man {page}",
              r.stderr[:500])


class Notify:
    def __init__(self):
        if os.path.exists(NOTIFY):
            os.unlink(NOTIFY)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(NOTIFY)
        # As systemd's own: pigeond says READY=1 after it became pigeonair.
        os.chmod(NOTIFY, 0o777)
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, key, value="1", timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(l.split("=", 1) for l in data.splitlines() if "=" in l)
            self.messages.append(fields)
            if fields.get(key) == value:
                return fields
        return None


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def service():
    svc = unit_service()
    check(svc.get("Type") == "notify", "Type=notify")
    pre = shlex.split(svc["ExecStartPre"])
    r = run(pre)
    check(r.returncode == 0 and "configuration ok" in r.stdout,
          f"ExecStartPre: {' '.join(pre)}", r.stdout + r.stderr)

    notes = Notify()
    nofile = int(svc["LimitNOFILE"])
    umask = int(svc.get("UMask", "0022"), 8)
    watchdog_usec = seconds(svc["WatchdogSec"]) * 1_000_000

    # systemd sets LimitNOFILE as root with CAP_SYS_RESOURCE; a container's
    # root may lack it (this project's machines do): then the hard limit it
    # has, and the log says so.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    except ValueError:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        say(f"note: LimitNOFILE={nofile} cannot be set here (no CAP_SYS_RESOURCE): {hard}")
        nofile = hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    def as_the_unit():
        os.umask(umask)

    start = shlex.split(svc["ExecStart"])
    log = open("/run/deb-check.pigeond.log", "w+")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "NOTIFY_SOCKET": NOTIFY, "WATCHDOG_USEC": str(watchdog_usec)}
    proc = subprocess.Popen(start, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            preexec_fn=as_the_unit)
    try:
        ready = notes.wait_for("READY", timeout=90)
        log.seek(0)
        text = log.read()
        check(ready is not None and proc.poll() is None, f"ExecStart: {' '.join(start)}: READY=1",
              text[-3000:])
        check(ready.get("STATUS", "").startswith("accepting on 127.0.0.1:25"),
              f"STATUS={ready.get('STATUS')}")
        uid = pwd.getpwnam("pigeonair").pw_uid
        creds = []
        for task in glob.glob(f"/proc/{proc.pid}/task/*/status"):
            st = open(task).read()
            creds.append((re.search(r"^Uid:\s+(.*)$", st, re.M).group(1).split(),
                          re.search(r"^CapEff:\s+(\S+)", st, re.M).group(1)))
        check(creds and all(u == [str(uid)] * 4 and int(c, 16) == 0 for u, c in creds),
              f"every thread ({len(creds)}) runs as pigeonair with no capability", str(creds))
        check(int(open(f"/proc/{proc.pid}/limits").read().split("Max open files")[1].split()[0])
              == nofile, f"open files limit {nofile}")

        r = run(["swaks", "--server", "127.0.0.1:25", "--from", "sender@example.org",
                 "--to", "postmaster@localhost", "--timeout", "30", "--h-Subject", "deb-test"])
        check(r.returncode == 0 and re.search(r"<[-~]  250 .*queued as", r.stdout),
              "swaks: 250 queued", r.stdout[-1500:] + r.stderr[-500:])

        r = run(["useradd", "--no-create-home", "--no-user-group", "--gid", "pigeonair",
                 "--shell", "/bin/sh", "oper"])
        check(r.returncode == 0, "useradd oper (primary group pigeonair)", r.stderr)
        r = run(["runuser", "-u", "oper", "--", "pigeonctl", "status"])
        check(r.returncode == 0 and "workers" in r.stdout,
              "pigeonctl status as oper, of the socket's group", r.stdout + r.stderr)
        r = run(["runuser", "-u", "nobody", "--", "pigeonctl", "status"])
        check(r.returncode != 0, "pigeonctl status as nobody is refused", r.stdout + r.stderr)

        ping = notes.wait_for("WATCHDOG", timeout=watchdog_usec / 1e6 / 2 + 10)
        check(ping is not None, f"WATCHDOG=1 within WatchdogSec/2 ({watchdog_usec // 2000} ms)")

        reload = shlex.split(svc["ExecReload"].replace("$MAINPID", str(proc.pid)))
        r = run(reload)
        check(r.returncode == 0 and notes.wait_for("RELOADING", timeout=30) is not None
              and notes.wait_for("READY", timeout=30) is not None,
              f"ExecReload: {' '.join(reload)}: RELOADING=1, READY=1", r.stderr)

        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the main process
        check(notes.wait_for("STOPPING", timeout=30) is not None, "SIGTERM: STOPPING=1")
        rc = proc.wait(seconds(svc["TimeoutStopSec"]))
        log.seek(0)
        text = log.read()
        check(rc == 0, f"pigeond exited {rc} within TimeoutStopSec", text[-3000:])
        check("reloaded configuration" in text and "running as user pigeonair" in text,
              "the log: running as user pigeonair, reloaded configuration")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = run(["pigeonctl", "spool", "ls", "--dir", SPOOL])
    rows = [l for l in r.stdout.splitlines() if re.match(r"P[0-9A-F]{25} ", l)]
    check(r.returncode == 0 and len(rows) == 1 and "<sender@example.org>" in rows[0],
          "the message is in the spool (pigeonctl spool ls --dir)", r.stdout + r.stderr)


def remove_and_purge():
    r = run(["dpkg", "--remove", "pigeonair", "pigeonair-loadgen"])
    check(r.returncode == 0, "dpkg --remove", r.stdout + r.stderr)
    check(not os.path.exists("/usr/sbin/pigeond") and not os.path.exists(UNIT),
          "removed: the binaries and the unit are gone")
    check(os.path.exists(CONF), "removed: the configuration stays")
    check(any(n.startswith("shard-") for n in os.listdir(SPOOL)),
          "removed: the spool, with its mail, stays")
    r = run(["dpkg", "--purge", "pigeonair", "pigeonair-loadgen"])
    check(r.returncode == 0, "dpkg --purge", r.stdout + r.stderr)
    check(not os.path.exists(SPOOL) and not os.path.exists("/etc/pigeonair"),
          "purged: the spool and /etc/pigeonair are gone")


def main():
    t0 = time.monotonic()
    installed()
    service()
    remove_and_purge()
    say(f"all {passed} checks passed in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
