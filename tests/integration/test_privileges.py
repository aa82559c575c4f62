"""Privileges (docs/security.md): pigeond started as root runs as `user`.

pigeond is started as root with user=nobody on a privileged port (so the bind
must happen before the switch); then every thread of it must have nobody's
ids and no capability, mail must still flow, and the spool and the control
socket must be nobody's with tight modes.  Needs root; uses the system's
nobody/nogroup, creates no user.
"""

import grp
import os
import pwd
import random
import socket
import stat
import subprocess
from pathlib import Path

import pytest

import helpers

pytestmark = [pytest.mark.both_backends,
              pytest.mark.skipif(os.geteuid() != 0, reason="starting as root needs root")]

USER, GROUP = "nobody", "nogroup"


def privileged_free_port(host="127.0.0.1"):
    """A TCP port below 1024 that is free now: binding it needs root."""
    for port in random.sample(range(600, 1000), 400):
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024")


@pytest.fixture
def as_nobody(pigeond_factory, workdir, monkeypatch):
    """A pigeond factory with user=nobody on a port below 1024; the work directory is
    made traversable so that nobody can reach its spool."""
    os.chmod(workdir, 0o711)
    monkeypatch.setattr(helpers, "free_port", privileged_free_port)

    def make(**settings):
        return pigeond_factory(user=USER, **settings)

    return make


def thread_status(pid):
    """{tid: {field: value}} of every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            k, _, v = line.partition(":")
            fields[k] = v.strip()
        out[tid] = fields
    return out


def send(p, rcpt="priv@example.com"):
    with p.raw() as c:
        c.greet()
        head, data = helpers.smtp_message_bytes("s@example.org", [rcpt],
                                                b"Subject: unprivileged\r\n\r\nhello\r\n")
        c.send(head)
        assert [r[0] for r in c.replies(3)] == [250, 250, 354]
        c.send(data)
        code, text = c.reply()
        assert code == 250, text
        return helpers.queue_id_of(text[-1])


def test_runs_as_user_without_capabilities(as_nobody):
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    p = as_nobody().start()
    assert p.port < 1024
    pid = p.proc.pid
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "pigeond"
    threads = thread_status(pid)
    names = {f["Name"] for f in threads.values()}
    assert len(threads) >= 4 and any(n.startswith("spool-c") for n in names), names
    for tid, f in threads.items():
        assert f["Uid"].split() == [str(uid)] * 4, (f["Name"], f["Uid"])
        assert f["Gid"].split() == [str(gid)] * 4, (f["Name"], f["Gid"])
        assert f["Groups"].split() in ([], [str(gid)]), (f["Name"], f["Groups"])
        for cap in ("CapEff", "CapPrm", "CapAmb"):
            assert int(f[cap], 16) == 0, (f["Name"], cap, f[cap])
        assert f["NoNewPrivs"] == "1", f["Name"]
    assert f"running as user {USER} (uid {uid} gid {gid}), no capabilities" in p.log()

    # mail flows, and pigeonctl is served to root and to pigeond's own user
    ids = [send(p) for _ in range(3)]
    sock = p.spool_dir / "pigeond.sock"
    assert helpers.run_ctl(["status", "--socket", sock]).returncode == 0
    r = subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--clear-groups",
                        str(helpers.binary("pigeonctl")), "status", "--socket", str(sock)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr

    # tight modes, everything the user's
    st = os.stat(p.spool_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700 and (st.st_uid, st.st_gid) == (uid, gid)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (uid, gid)
    files = [f for f in p.spool_dir.rglob("*") if f.is_file() and not f.is_symlink()]
    assert files
    for f in files:
        st = os.lstat(f)
        assert st.st_uid == uid and stat.S_IMODE(st.st_mode) & 0o077 == 0, (f, oct(st.st_mode))
    assert p.stop() == 0
    stored = {e["id"] for e in helpers.spool_ls(p.spool_dir)}
    assert set(ids) <= stored


def test_ctl_group_reaches_socket_not_spool(as_nobody):
    """ctl.group with the socket in the spool: the directory is 0710 with that group, so a
    member reaches pigeond.sock and is served, but cannot list or read the spool."""
    p = as_nobody(ctl__group="daemon").start()
    send(p)
    st = os.stat(p.spool_dir)
    assert stat.S_IMODE(st.st_mode) == 0o710 and st.st_gid == grp.getgrnam("daemon").gr_gid
    as_daemon = ["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups"]
    r = subprocess.run(as_daemon + [str(helpers.binary("pigeonctl")), "status", "--socket",
                                    str(p.spool_dir / "pigeond.sock")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(as_daemon + ["ls", str(p.spool_dir)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode != 0 and b"Permission denied" in r.stderr
    r = subprocess.run(as_daemon + ["cat", str(p.spool_dir / "shard-000" / "CURRENT")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode != 0 and b"Permission denied" in r.stderr
    assert p.stop() == 0


def test_spool_made_by_root_is_handed_over(pigeond_factory, as_nobody):
    """A spool written by a pigeond that ran as root is given to `user` at the next start,
    and what it held is still there and still readable."""
    first = pigeond_factory(name="asroot").start()
    old_id = send(first)
    assert first.stop() == 0
    assert os.stat(first.spool_dir).st_uid == 0
    p = as_nobody()
    p.start()
    new_id = send(p)
    assert p.stop() == 0
    uid = pwd.getpwnam(USER).pw_uid
    for f in p.spool_dir.rglob("*"):
        assert os.lstat(f).st_uid == uid, f
    assert {old_id, new_id} <= {e["id"] for e in helpers.spool_ls(p.spool_dir)}


def test_bad_user_settings_exit_2(pigeond_factory):
    for settings, want in (({"user": "root"}, "is root"),
                           ({"user": "no-such-user-pigeonair"}, "no user"),
                           ({"group": GROUP}, "needs 'user'")):
        p = pigeond_factory(name="bad", **settings)
        p.write_config(p.settings)
        r = subprocess.run(p.command({"listen": "127.0.0.1:1"}), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 2, (settings, r.returncode, r.stderr[-500:])
        assert want in r.stderr.decode(), (settings, r.stderr[-500:])


def test_no_shell_or_exec_in_pigeond():
    """pigeond's own code imports nothing that starts a program."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(helpers.binary("pigeond"))],
                         stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode()
    imported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    assert "rocksdb_open" in imported  # the listing is the real one
    forbidden = {"system", "popen", "execve", "execv", "execl", "execle", "execlp", "execvp",
                 "execvpe", "fexecve", "posix_spawn", "posix_spawnp", "fork", "vfork"}
    assert not imported & forbidden, imported & forbidden
