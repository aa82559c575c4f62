"""The DPDK backend's test harness: pigeond on a TAP vdev inside its own
network namespace, the TAP's kernel side as the peer.

Every namespace is uniquely named (pa-<pid>-<n>), addresses are in
198.18.0.0/15 (RFC 2544's benchmarking range), and nothing is routed out of
the namespace: traffic never leaves it.  Everything made here is removed on
exit, also on failure: pigeond is killed (its TAP disappears with it) and the
namespace deleted.  Needs root.  Bounded: every wait has a deadline.

Two ways in:

    with DpdkPigeond(build_dir, tmpdir, {"workers": "2"}) as srv:
        srv.run(["swaks", "--server", f"{srv.host}:{srv.port}", ...])
        with srv.netns.entered():          # this thread's sockets in the netns
            smtplib.SMTP(srv.host, srv.port)
        srv.kill(); srv.start()           # kill -9 and restart

and, for conftest.py's backend hook, DpdkNetns alone: setup(), settings(port)
(the -o overrides pigeond needs), wrap(argv) (runs pigeond in the namespace and
configures the TAP's kernel side once it appears), wrap_client(argv),
teardown().
"""

import atexit
import contextlib
import ctypes
import glob
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import helpers

SERVER_IP = "198.18.0.2"
PEER_IP = "198.18.0.1"
PREFIX = 24
# IPv6 (DpdkNetns(ip6=True)): the documentation prefix, RFC 3849
SERVER_IP6 = "2001:db8::2"
PEER_IP6 = "2001:db8::1"
PREFIX6 = 64
CLONE_NEWNET = 0x40000000
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

_counter = itertools.count()
_live = set()  # namespaces made and not yet deleted: removed at exit whatever happened
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


@atexit.register
def _remove_leftovers():
    for ns in list(_live):
        with contextlib.suppress(Exception):
            ns.teardown()


def is_root():
    return os.geteuid() == 0


def _ip(*args, check=True, timeout=10):
    return subprocess.run(["ip", *args], check=check, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class DpdkNetns:
    """A uniquely named network namespace for one pigeond on a TAP vdev."""

    def __init__(self, memory_mb=512, ip6=False, peer_ip6_extra=()):
        """ip6: pigeond gets SERVER_IP6 too, the TAP's kernel side PEER_IP6 (and
        peer_ip6_extra: addresses of ours the kernel side claims as well, for DAD)."""
        self.ip6 = ip6
        self.peer_ip6_extra = tuple(peer_ip6_extra)
        n = next(_counter)
        pid = os.getpid()
        self.name = f"pa-{pid}-{n}"
        self.iface = f"pa{pid % 100000}x{n}"[:15]  # IFNAMSIZ
        self.host = SERVER_IP
        self.peer_ip = PEER_IP
        self.memory_mb = memory_mb
        self._made = False

    # ---- lifecycle
    def setup(self):
        _ip("netns", "add", self.name)
        self._made = True
        _live.add(self)
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def teardown(self):
        if not self._made:
            return
        # Whatever still runs in the namespace was started by this harness.
        r = _ip("netns", "pids", self.name, check=False)
        for pid in r.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        for _ in range(50):
            if _ip("netns", "del", self.name, check=False).returncode == 0:
                break
            time.sleep(0.1)
        self._made = False
        _live.discard(self)
        # EAL runtime directories of whatever this namespace's tests started
        # (pigeond, pigeon-loadgen: "<name>", "<name>-pd", "<name>-lg").
        for d in glob.glob(f"/var/run/dpdk/{self.name}") + glob.glob(f"/var/run/dpdk/{self.name}-*"):
            shutil.rmtree(d, ignore_errors=True)

    # ---- pigeond
    def eal_args(self):
        # A file prefix of this namespace's own, so that teardown can remove EAL's
        # runtime directory even after a kill -9 (pigeond removes it on a clean exit).
        return (f"--no-huge --no-pci -m {self.memory_mb} --file-prefix={self.name} "
                f"--no-shconf --vdev=net_tap0,iface={self.iface}")

    def settings(self, port=25):
        """The -o overrides that put pigeond on this namespace's TAP."""
        return {
            "backend": "dpdk",
            "dpdk.eal": self.eal_args(),
            "dpdk.ip": f"{SERVER_IP}/{PREFIX}",
            "listen": f"{SERVER_IP}:{port}",
            # a shared 2-core machine: yield the core when idle
            "dpdk.idle_sleep_us": "20",
            "dpdk.mbufs": "8191",
            **({"dpdk.ip6": f"{SERVER_IP6}/{PREFIX6}"} if self.ip6 else {}),
        }

    def peer_setup_script(self):
        """Shell that waits (bounded) for the TAP and gives its kernel side PEER_IP."""
        i = shlex.quote(self.iface)
        v6 = ""
        if self.ip6:
            # net_tap gives the kernel side the port's own MAC, so the kernel's EUI-64
            # link-local address would be the engine's: the kernel side makes none.
            # nodad: usable at once (the kernel's DAD would take a second).
            v6 = f"ip link set dev {i} addrgenmode none; "
            for a in (PEER_IP6, *self.peer_ip6_extra):
                v6 += f"ip -6 addr replace {a}/{PREFIX6} dev {i} nodad; "
        return (f"n=0; while ! ip link show {i} >/dev/null 2>&1; do "
                f"n=$((n+1)); [ $n -gt 300 ] && exit 1; sleep 0.05; done; "
                f"ip addr replace {PEER_IP}/{PREFIX} dev {i}; {v6}ip link set {i} up")

    def wrap(self, argv):
        """argv run inside the namespace, the TAP's kernel side configured once it appears."""
        script = f"( {self.peer_setup_script()} ) >/dev/null 2>&1 & exec \"$@\""
        return ["ip", "netns", "exec", self.name, "sh", "-c", script, "sh", *map(str, argv)]

    def wrap_client(self, argv):
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, argv, timeout=120, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.run(self.wrap_client(argv), timeout=timeout, **kw)

    def popen(self, argv, **kw):
        return subprocess.Popen(self.wrap_client(argv), **kw)

    @contextlib.contextmanager
    def entered(self):
        """The calling thread (and threads it starts) in the namespace; sockets stay there."""
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.name)
            try:
                yield self
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(own)
            os.close(target)

    def enter(self):
        """Moves the calling thread into the namespace until leave() (for whole-test use)."""
        assert not hasattr(self, "_own_fd"), "already entered"
        self._own_fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net",
                               os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.name)
        finally:
            os.close(target)

    def leave(self):
        fd = getattr(self, "_own_fd", None)
        if fd is None:
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(fd)
            del self._own_fd

    def tap_mac(self):
        r = _ip("-n", self.name, "-o", "link", "show", self.iface)
        return re.search(r"link/ether ([0-9a-f:]{17})", r.stdout).group(1)

    def qdisc(self, spec):
        """e.g. qdisc("netem loss 5% reorder 10% duplicate 1% delay 5ms") on the kernel side."""
        _ip("-n", self.name, "link", "show", self.iface)
        subprocess.run(["ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev",
                        self.iface, "root", *spec.split()], check=True, timeout=10)


class ConftestBackend:
    """What conftest.py's `backend` fixture needs for "dpdk" (see its DpdkBackend):

        BACKENDS["dpdk"] = dpdk_env.ConftestBackend

    setup() makes the namespace and moves the test's main thread into it, so
    the tests' own sockets (RawSMTP, smtplib, the readiness probe) and every
    subprocess they start are in the namespace; ip_nonlocal_bind lets
    helpers.free_port() bind the engine's address there.  wrap() runs pigeond
    in the namespace on a TAP vdev (the dpdk.* overrides are appended to its
    argv; the later -o listen=... wins) and brings the TAP's kernel side up
    once it appears.  teardown() leaves and deletes the namespace (pigeond is
    stopped by the fixture before).
    """

    name = "dpdk"
    host = SERVER_IP
    client_addr = PEER_IP  # what pigeond logs as client= (127.0.0.1 on the kernel backend)

    def __init__(self):
        self.netns = DpdkNetns()

    def setup(self, workdir):
        self.netns.setup()
        subprocess.run(["ip", "netns", "exec", self.netns.name, "sysctl", "-q", "-w",
                        "net.ipv4.ip_nonlocal_bind=1"], check=True, timeout=10)
        self.netns.enter()

    def teardown(self):
        try:
            self.netns.leave()
        finally:
            self.netns.teardown()

    extra_settings = {}

    def wrap(self, argv):
        extra = []
        for k, v in {**self.netns.settings(), **self.extra_settings}.items():
            if k not in ("backend", "listen"):
                extra += ["-o", f"{k}={v}"]
        return self.netns.wrap([*argv, *extra])

    def wrap_client(self, argv):
        return self.netns.wrap_client(argv)


class ConftestBackend6(ConftestBackend):
    """ConftestBackend dual-stacked (dpdk.ip6, the TAP's kernel side at PEER_IP6,
    nodad) with the clients reaching pigeond over IPv6: host is SERVER_IP6, so
    listen=[SERVER_IP6]:PORT; no DAD (dpdk.dad_transmits=0)."""

    host = SERVER_IP6
    client_addr = PEER_IP6
    # DAD is test_dpdk_ipv6.py's: here it would only add a second to every start.
    extra_settings = {"dpdk.dad_transmits": "0"}

    def __init__(self):
        self.netns = DpdkNetns(ip6=True)

    def setup(self, workdir):
        super().setup(workdir)
        subprocess.run(["ip", "netns", "exec", self.netns.name, "sysctl", "-q", "-w",
                        "net.ipv6.ip_nonlocal_bind=1"], check=True, timeout=10)


def netem_available():
    """Whether this kernel has sch_netem (probed on a throwaway TAP in a throwaway namespace)."""
    ns = DpdkNetns().setup()
    try:
        _ip("-n", ns.name, "tuntap", "add", "dev", "probe0", "mode", "tap")
        r = subprocess.run(["ip", "netns", "exec", ns.name, "tc", "qdisc", "add", "dev", "probe0",
                            "root", "netem", "delay", "1ms"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        return r.returncode == 0
    finally:
        ns.teardown()


class DpdkPigeond:
    """pigeond with backend=dpdk in its own namespace; a context manager."""

    def __init__(self, build_dir, tmpdir, overrides=None, port=25, memory_mb=512,
                 domains="example.com,example.net", ip6=False, peer_ip6_extra=()):
        self.build_dir = Path(build_dir)
        self.tmpdir = Path(tmpdir)
        self.netns = DpdkNetns(memory_mb=memory_mb, ip6=ip6, peer_ip6_extra=peer_ip6_extra)
        self.host = SERVER_IP
        self.port = port
        self.spool_dir = self.tmpdir / "spool"
        self.log_path = self.tmpdir / f"pigeond-{self.netns.name}.log"
        self.settings = {
            "spool.dir": str(self.spool_dir),
            "domains": domains,
            "hostname": "mx.pigeonair.test",
            "log.level": "info",
            # The tests' clients share the peer's address: keep limits.conn_per_ip
            # off it (test_limits.py and the SYN flood test set limits themselves).
            "limits.exempt": f"127.0.0.0/8,::1,{PEER_IP}/32,{PEER_IP6}/{PREFIX6}",
            **self.netns.settings(port),
        }
        self.settings.update({k: str(v) for k, v in (overrides or {}).items()})
        self.proc = None
        self._log = None

    # ---- context
    def __enter__(self):
        self.netns.setup()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.kill()
        finally:
            self.netns.teardown()

    # ---- process
    def argv(self):
        args = [str(self.build_dir / "pigeond")]
        for k, v in self.settings.items():
            args += ["-o", f"{k}={v}"]
        return args

    def start(self, timeout=READY_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.netns.wrap(self.argv()), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Until the engine answers a banner over the TAP (bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pigeond exited with {self.proc.returncode}:\n"
                                     f"{self.log()[-4000:]}")
            try:
                with self.netns.entered():
                    with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                        s.settimeout(2.0)
                        banner = s.recv(512)
                        if banner.startswith(b"220"):
                            s.sendall(b"QUIT\r\n")
                            with contextlib.suppress(OSError):
                                s.recv(512)
                            return
                        last = banner
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"pigeond not ready in {timeout}s ({last}):\n{self.log()[-4000:]}")

    def wait_ip6(self, addr, timeout=READY_TIMEOUT):
        """Until DAD has decided about addr (bounded): True when ready, False when in use."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if re.search(rf"IPv6 address {re.escape(addr)}/\d+ ready", log):
                return True
            if re.search(rf"IPv6 address {re.escape(addr)}/\d+ is in use", log):
                return False
            time.sleep(0.05)
        raise AssertionError(f"no DAD outcome for {addr} in {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pigeond did not stop in {timeout}s")
        finally:
            self._close_log()

    def kill(self):
        """SIGKILL (kill -9), and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    # ---- clients
    def run(self, argv, timeout=120, **kw):
        """A client command inside the namespace; a CompletedProcess (text)."""
        return self.netns.run(argv, timeout=timeout, **kw)

    def popen(self, argv, **kw):
        return self.netns.popen(argv, **kw)

    def log(self):
        """The log so far, once it has settled (helpers.settled_log())."""
        return helpers.settled_log(self.log_path, running=self.proc is not None
                                   and self.proc.poll() is None)

    def counters(self):
        """Per-worker counters from the lines a worker logs when it stops: {worker: {name: n}}."""
        out = {}
        for m in re.finditer(r"dpdk worker (\d+): (.*?) drops:(.*)", self.log()):
            c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            c.update({"drop_" + k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(3))})
            out[int(m.group(1))] = c
        return out

    def total(self, name):
        return sum(c.get(name, 0) for c in self.counters().values())


def spool_count(build_dir, spool_dir):
    """Messages in a stopped pigeond's spool, through pigeonctl (None when it cannot tell)."""
    r = subprocess.run([str(Path(build_dir) / "pigeonctl"), "spool", "ls", "--dir",
                        str(spool_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    if r.returncode != 0:
        return None
    return len([l for l in r.stdout.splitlines() if l.strip()])
