"""Real delivery-tier servers for the hand-off tests: Postfix and Dovecot LMTP.

Each instance lives in its own temporary directory with its own loopback
port, delivers into Maildirs below that directory, and is stopped by stop()
(also called by the fixtures on failure).  Everything is bounded in time.
"""

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import helpers

POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
START_TIMEOUT = 20.0


def wait_port(port, timeout=START_TIMEOUT, host="127.0.0.1", proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"nothing answered 220 on {host}:{port} within {timeout}s"
                         + (f"; log:\n{log()}" if log else ""))


def maildir_messages(root):
    """{(domain, user): [bytes, ...]} of every message in the Maildirs below root."""
    out = {}
    root = Path(root)
    if not root.exists():
        return out
    for new in root.glob("*/*/new"):
        user_dir = new.parent
        key = (user_dir.parent.name, user_dir.name)
        for sub in ("new", "cur"):
            for f in sorted((user_dir / sub).glob("*")):
                if f.is_file():
                    out.setdefault(key, []).append(f.read_bytes())
    return out


def pigeon_ids(messages):
    """The X-PigeonAir-Id values found in a list of delivered messages."""
    ids = []
    for m in messages:
        hdr = m.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        for mm in re.finditer(rb"^X-PigeonAir-Id: (\S+)", hdr, re.M):
            ids.append(mm.group(1).decode())
    return ids


def body_after_added_headers(delivered: bytes, original: bytes) -> bool:
    """True when `delivered` is `original` with only header lines put in front."""
    d = delivered.replace(b"\r\n", b"\n")
    o = original.replace(b"\r\n", b"\n")
    if not d.endswith(o):
        return False
    prefix = d[:len(d) - len(o)]
    for line in prefix.split(b"\n"):
        if line and not re.match(rb"^([!-9;-~]+:|[ \t])", line):
            return False
    return True


class Postfix:
    """One Postfix instance: smtpd on a loopback port, virtual delivery to Maildirs."""

    def __init__(self, workdir, users, name="postfix", domains=helpers.DOMAINS, access=None):
        self.users = list(users)
        self.dir = Path(workdir) / name
        self.name = name
        self.conf = self.dir / "etc"
        self.mail = self.dir / "mail"
        self.port = None
        self.domains = domains
        self.access = access or []  # (regexp, action) pairs for check_recipient_access
        self.running = False

    def _write(self):
        pf = pwd.getpwnam("postfix")
        # the work directory is mkdtemp's 0700: Postfix's daemons must reach below it
        os.chmod(self.dir.parent, 0o755)
        for d in (self.conf, self.dir / "queue", self.dir / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        os.chown(self.dir / "data", pf.pw_uid, pf.pw_gid)
        os.chown(self.mail, pf.pw_uid, pf.pw_gid)
        (self.conf / "vmailbox").write_text(
            "".join(f"{u} {u.split('@')[1]}/{u.split('@')[0]}/\n" for u in self.users))
        self.write_access(self.access)
        (self.conf / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {self.dir}/queue
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.name}.delivery.test
mydomain = delivery.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains =
local_recipient_maps =
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = check_recipient_access regexp:{self.conf}/access, permit_mynetworks, reject
virtual_mailbox_domains = {" ".join(self.domains)}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.conf}/vmailbox
virtual_uid_maps = static:{pf.pw_uid}
virtual_gid_maps = static:{pf.pw_gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
message_size_limit = 0
maillog_file_prefixes = {self.dir}
maillog_file = {self.dir}/maillog
smtputf8_enable = yes
local_header_rewrite_clients =
always_add_missing_headers = no
smtpd_discard_ehlo_keywords =
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
""")
        (self.conf / "master.cf").write_text(f"""
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def write_access(self, rules):
        self.access = rules
        text = "".join(f"/{r}/ {a}\n" for r, a in rules) or "/^$/ DUNNO\n"
        (self.conf / "access").write_text(text)

    def _postfix(self, *args, timeout=30):
        return helpers.run_bounded(["postfix", "-c", str(self.conf)] + list(args), timeout)

    def start(self, port=None):
        self.port = port or self.port or helpers.free_port()
        self._write()
        p = self._postfix("start")
        if p.returncode != 0:
            # postfix(1) reports to syslog unless stderr is a terminal: ask again with one
            p = helpers.run_bounded(["script", "-qc", f"postfix -c {self.conf} check",
                                     "/dev/null"], 30)
            raise AssertionError(f"postfix start: {p.stderr.decode(errors='replace')}"
                                 f"{p.stdout.decode(errors='replace')}")
        self.running = True
        wait_port(self.port, log=self.log)
        return self

    def reload(self):
        self._postfix("reload")

    def stop(self):
        if not self.running:
            return
        self.running = False
        self._postfix("stop")
        # postfix stop returns before every child is gone: wait for the pid file to go
        pidfile = self.dir / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pidfile.exists() and time.monotonic() < deadline:
            try:
                pid = int(pidfile.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)

    def kill(self):
        """Abrupt: the master and its children go at once (a node failing)."""
        pidfile = self.dir / "queue" / "pid" / "master.pid"
        try:
            pid = int(pidfile.read_text().strip())
            os.killpg(os.getpgid(pid), 9)
        except (OSError, ValueError):
            pass
        self.running = False
        # let the next start find no stale pid/lock
        shutil.rmtree(self.dir / "queue" / "pid", ignore_errors=True)

    def log(self):
        try:
            return (self.dir / "maillog").read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def messages(self):
        return maildir_messages(self.mail)

    def queue_empty(self):
        q = self.dir / "queue"
        for sub in ("incoming", "active", "deferred", "maildrop"):
            d = q / sub
            if d.exists() and any(p.is_file() for p in d.rglob("*")):
                return False
        return True


class DovecotLMTP:
    """Dovecot with only LMTP, a passwd-file userdb and Maildirs under its directory."""

    def __init__(self, workdir, users, name="dovecot", address="127.0.0.1"):
        self.dir = Path(workdir) / name
        self.name = name
        self.address = address  # another 127.0.0.x: several stores on one port
        self.users = users
        self.mail = self.dir / "mail"
        self.port = None
        self.proc = None

    def start(self, port=None):
        self.port = port or self.port or helpers.free_port()
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.dir.parent, 0o755)
        self.dir.mkdir(parents=True, exist_ok=True)
        nogroup = grp.getgrgid(nobody.pw_gid)
        for d in (self.dir / "run", self.dir / "state", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.mail, 0o777)
        lines = []
        for u in self.users:
            local, domain = u.split("@")
            lines.append(f"{u}:{{PLAIN}}x:{nobody.pw_uid}:{nobody.pw_gid}::{self.mail}/{domain}/{local}::\n")
        (self.dir / "passwd").write_text("".join(lines))
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = lmtp
listen = {self.address}
ssl = no
first_valid_uid = 1
mail_location = maildir:~/
auth_username_format = %Lu
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/passwd
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.address}
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0600
  }}
}}
""")
        self.conf = conf
        self.logf = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, start_new_session=True)
        wait_port(self.port, host=self.address, proc=self.proc, log=self.log)
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.proc = None
        self.logf.close()

    def log(self):
        out = ""
        for f in ("dovecot.log", "stdout.log"):
            try:
                out += (self.dir / f).read_text(errors="replace")[-4000:]
            except FileNotFoundError:
                pass
        return out

    def messages(self):
        return maildir_messages(self.mail)


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
