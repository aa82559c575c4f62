"""Helpers for PigeonAir's integration tests.

Everything here is bounded in time: every subprocess has a timeout, every
socket has a timeout, every wait loop has a deadline.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Default recipient domains the test server accepts; anything else is a relay.
DOMAINS = ("example.com", "example.net")
HOSTNAME = "mx.pigeonair.test"
SHARDS = 4

SOCKET_TIMEOUT = 10.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CTL_TIMEOUT = 60.0


def build_dir():
    return Path(os.environ.get("PIGEON_BUILD") or (REPO / "build"))


def binary(name):
    return build_dir() / name


def tmp_base():
    return os.environ.get("TMPDIR") or "/tmp"


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hostport(host, port):
    """HOST:PORT as pigeond's listen, swaks and smtp-source take it: [IPv6]:PORT."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78; the spool's shard hash.

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def shard_of(addr: str, shards: int = SHARDS) -> int:
    return crc32c(addr.lower().encode("utf-8")) % shards


def addresses_in_shards(shards=SHARDS, per_shard=1, domain="example.com", prefix="user"):
    """Recipient addresses, `per_shard` of them in every shard."""
    found = {s: [] for s in range(shards)}
    i = 0
    while any(len(v) < per_shard for v in found.values()):
        addr = f"{prefix}{i}@{domain}"
        s = shard_of(addr, shards)
        if len(found[s]) < per_shard:
            found[s].append(addr)
        i += 1
        assert i < 100000
    return found


# --------------------------------------------------------------------------
# Stored messages

def strip_received(data: bytes) -> bytes:
    """Drops the first header (Received:, with its continuation lines)."""
    assert data.startswith(b"Received:"), data[:200]
    pos = 0
    while True:
        nl = data.index(b"\n", pos)
        pos = nl + 1
        if pos >= len(data) or data[pos:pos + 1] not in (b" ", b"\t"):
            return data[pos:]


def received_header(data: bytes) -> bytes:
    return data[:len(data) - len(strip_received(data))]


def crlf(data: bytes) -> bytes:
    """Bare LF -> CRLF, as SMTP clients send text."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# --------------------------------------------------------------------------
# pigeonctl

def run_ctl(args, timeout=CTL_TIMEOUT, check=True):
    cmd = [str(binary("pigeonctl"))] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


def spool_ls(spool_dir):
    """Every stored message copy, as the dicts of `pigeonctl spool ls --json`."""
    p = run_ctl(["spool", "ls", "--dir", spool_dir, "--json"])
    entries = []
    for line in p.stdout.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            e = json.loads(line)
            for key in ("id", "shard", "size", "from", "rcpt"):
                assert key in e, f"spool ls --json: no {key!r} in {line}"
            assert isinstance(e["rcpt"], list), line
            entries.append(e)
    return entries


def spool_ls_plain(spool_dir):
    """The lines of `pigeonctl spool ls` (text form), without its column-title line."""
    p = run_ctl(["spool", "ls", "--dir", spool_dir])
    lines = [l for l in p.stdout.decode("utf-8", errors="replace").splitlines() if l.strip()]
    if lines and lines[0].split()[0] == "QUEUE-ID":
        lines = lines[1:]
    return lines


def spool_show(spool_dir, queue_id, shard=None):
    args = ["spool", "show", "--dir", spool_dir, queue_id]
    if shard is not None:
        args += ["--shard", str(shard)]
    return run_ctl(args).stdout


def copies_by_id(entries):
    out = {}
    for e in entries:
        out.setdefault(e["id"], []).append(e)
    return out


def assert_stored_once_per_shard(entries, queue_id, rcpts, shards=SHARDS):
    """The message is stored exactly once in every shard of its recipients, nowhere else,
    each copy naming exactly the recipients of its shard.  `entries`: the list from
    spool_ls(), or (faster for many checks) its copies_by_id() index."""
    if isinstance(entries, dict):
        copies = entries.get(queue_id, [])
    else:
        copies = [e for e in entries if e["id"] == queue_id]
    want = {}
    for r in rcpts:
        want.setdefault(shard_of(r, shards), set()).add(r.lower())
    got_shards = sorted(e["shard"] for e in copies)
    assert got_shards == sorted(want), (
        f"{queue_id}: stored in shards {got_shards}, expected once in each of {sorted(want)}")
    for e in copies:
        assert {r.lower() for r in e["rcpt"]} == want[e["shard"]], (
            f"{queue_id} shard {e['shard']}: rcpt {e['rcpt']}, expected {sorted(want[e['shard']])}")
    return copies


# --------------------------------------------------------------------------
# Raw SMTP over a socket

class RawSMTP:
    """A minimal SMTP client over a plain socket, for pipelining and odd input."""

    def __init__(self, host, port, timeout=SOCKET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One (possibly multi-line) reply: (code, [text lines])."""
        lines = []
        while True:
            line = self._line()
            assert len(line) >= 3 and line[:3].isdigit(), f"bad reply line {line!r}"
            lines.append(line[4:].decode("utf-8", errors="replace"))
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def at_eof(self, timeout=5.0):
        """True when the server closed the connection (with nothing more unread)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        if chunk:
            self.buf += chunk
            return False
        return not self.buf

    def greet(self, helo="client.example.org"):
        code, banner = self.reply()
        assert code == 220, banner
        code, caps = self.cmd(f"EHLO {helo}")
        assert code == 250, caps
        return banner, caps


def dot_stuff(content: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2) for content that uses CRLF line ends."""
    if content.startswith(b"."):
        content = b"." + content
    return content.replace(b"\r\n.", b"\r\n..")


def queue_id_of(reply_text: str) -> str:
    """`250 2.0.0 Ok: queued as QUEUEID`: the id is the last token."""
    m = re.search(r"queued as (\S+)\s*$", reply_text)
    assert m, f"no queue id in {reply_text!r}"
    return m.group(1)


def smtp_message_bytes(msg_from, rcpts, content):
    """One complete transaction (after EHLO) as raw bytes, content with CRLF line ends."""
    out = f"MAIL FROM:<{msg_from}>\r\n".encode()
    for r in rcpts:
        out += f"RCPT TO:<{r}>\r\n".encode()
    return out + b"DATA\r\n", dot_stuff(content) + b".\r\n"


# --------------------------------------------------------------------------
# The server process

class Pigeond:
    """One pigeond process writing its log (stderr) to a file in the work dir."""

    def __init__(self, workdir: Path, backend, name="pigeond"):
        self.workdir = Path(workdir)
        self.backend = backend
        self.name = name
        self.proc = None
        self.port = None
        self.host = backend.host
        self.spool_dir = self.workdir / "spool"
        self.config_path = self.workdir / f"{name}.ini"
        self.log_path = self.workdir / f"{name}.log"
        self.settings = {
            "backend": backend.name,
            "hostname": HOSTNAME,
            "workers": "1",
            "node_id": "1",
            "domains": ",".join(DOMAINS),
            "spool.dir": str(self.spool_dir),
            "spool.shards": str(SHARDS),
            # Every test's clients share one address (loopback, or the DPDK
            # namespace's peer in 198.18.0.0/15): keep the per-address limits
            # off it; test_limits.py sets limits.exempt itself.
            "limits.exempt": "127.0.0.0/8,::1,198.18.0.0/15,2001:db8::/32",
        }
        self.overrides = {}
        self.restarts = 0

    # -- config ---------------------------------------------------------
    def write_config(self, settings):
        top = []
        sections = {}
        for key, value in settings.items():
            if "." in key:
                sec, k = key.split(".", 1)
                sections.setdefault(sec, []).append(f"{k}={value}")
            else:
                top.append(f"{key}={value}")
        text = "; written by tests/integration\n" + "\n".join(top) + "\n"
        for sec, lines in sections.items():
            text += f"\n[{sec}]\n" + "\n".join(lines) + "\n"
        self.config_path.write_text(text)

    def command(self, extra_overrides=None):
        cmd = self.backend.wrap([str(binary("pigeond")), "-c", str(self.config_path)])
        for key, value in {**self.overrides, **(extra_overrides or {})}.items():
            cmd += ["-o", f"{key}={value}"]
        return cmd

    # -- lifecycle ------------------------------------------------------
    def start(self, ready_timeout=READY_TIMEOUT, attempts=3, **overrides):
        """Starts with a fresh free port (the listen address goes in -o, the rest
        in the INI file); retries with another port when the bind raced."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.overrides.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
        last = ""
        for _ in range(attempts):
            self.port = free_port(self.host)
            self.write_config(self.settings)
            self.overrides["listen"] = hostport(self.host, self.port)
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            logf = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=logf)
            finally:
                logf.close()
            ok, last = self._wait_ready(ready_timeout)
            if ok:
                return self
            if self.proc.poll() is None:
                self.kill()
            if "in use" not in last.lower():
                break
        raise AssertionError(f"pigeond did not become ready: {last}")

    def restart(self, **overrides):
        self.restarts += 1
        return self.start(**overrides)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        want = f"ready listen={hostport(self.host, self.port)}"
        while time.monotonic() < deadline:
            log = self.log_since_start()
            if want in log:
                # the ready line is written once listening; make sure it is
                try:
                    socket.create_connection((self.host, self.port), timeout=2).close()
                    return True, log
                except OSError:
                    pass
            if self.proc.poll() is not None:
                return False, f"exited {self.proc.returncode}; log:\n{log}"
            time.sleep(0.05)
        return False, f"no '{want}' line within {timeout}s; log:\n{self.log_since_start()}"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`.  Returns the exit status (or None)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"pigeond did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            pid = self.proc.pid
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            # A killed pigeond leaves EAL's runtime directory behind (a clean
            # exit removes it): the kernel backend's prefix is pigeond-PORT,
            # or pigeond-PORT-PID when the first was taken (dataplane/eal.c).
            for d in (f"pigeond-{self.port}", f"pigeond-{self.port}-{pid}"):
                shutil.rmtree(os.path.join(dpdk_runtime_dir(), d), ignore_errors=True)

    # -- log ------------------------------------------------------------
    def log(self):
        """The log so far, once it has settled (settled_log())."""
        return settled_log(self.log_path, running=self.proc is not None
                           and self.proc.poll() is None)

    def raw_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def accepted_lines(self):
        return [l for l in self.log().splitlines() if re.search(r"pigeond\[\d+\]: info: \S+: accepted ", l)]

    def accepted_ids(self):
        out = []
        for l in self.accepted_lines():
            m = re.search(r"info: (\S+): accepted ", l)
            out.append(m.group(1))
        return out

    def refused_lines(self):
        return [l for l in self.log().splitlines() if re.search(r"pigeond\[\d+\]: notice: refused ", l)]

    def wait_for_log(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.raw_log()):
                return True
            time.sleep(0.05)
        return False

    # -- clients --------------------------------------------------------
    def raw(self, timeout=SOCKET_TIMEOUT):
        return RawSMTP(self.host, self.port, timeout=timeout)

    def client_cmd(self, argv):
        """A client command line to run where the server is reachable."""
        return self.backend.wrap_client(argv)


# Worker lcores do not write their log lines: they queue them, and pigeond's
# log thread writes them a moment later (core/log.h), after the client has
# already seen the reply that followed the line.  A test that reads the log of
# a running pigeond waits until the file has not grown for LOG_SETTLE_S, at
# most LOG_SETTLE_MAX_S; the log of a stopped pigeond is complete (pa_log_stop).
LOG_SETTLE_S = 0.1
LOG_SETTLE_MAX_S = 3.0


def settled_log(path, running=True):
    def read():
        try:
            return Path(path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    text = read()
    if not running:
        return text
    deadline = time.monotonic() + LOG_SETTLE_MAX_S
    while time.monotonic() < deadline:
        time.sleep(LOG_SETTLE_S)
        again = read()
        if again == text:
            break
        text = again
    return text


def dpdk_runtime_dir():
    """Where EAL keeps its runtime directories: /var/run/dpdk for root."""
    if os.geteuid() == 0:
        return "/var/run/dpdk"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")


def run_bounded(cmd, timeout, **kw):
    """subprocess.run with a hard timeout that also kills the whole process group."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"{cmd[:3]}... did not finish within {timeout}s;"
                             f" stdout tail: {out[-2000:]!r} stderr tail: {err[-2000:]!r}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
