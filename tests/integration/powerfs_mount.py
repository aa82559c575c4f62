"""powerfs (tests/powerfs) mounts for the power-loss tests.

A PowerFS object is one mount point over one backing directory.  The backing
directory holds only what was made durable; `cut()` is the power cut (SIGUSR1
to powerfs: everything not synced is gone, every operation then fails with
EIO); `unmount()` and `mount()` again show what survived.  Every wait is
bounded; `close()` (the fixture's teardown) unmounts lazily if it must and
kills powerfs, also after a failed test.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import helpers

MOUNT_TIMEOUT = 10.0
CUT_TIMEOUT = 5.0
UNMOUNT_TIMEOUT = 10.0
EXIT_GRACE = 0.2  # powerfs exits within milliseconds of an unmount


def binary():
    return helpers.build_dir() / "tests" / "powerfs" / "powerfs"


def fsync_dir(path):
    """open(O_DIRECTORY) + fsync: what makes a directory's entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_powerfs_mount(path):
    """True when `path` is a powerfs mount point (in /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) > 4 and fields[4] == target and right.split()[0] == "fuse.powerfs":
                return True
    return False


def threads_of(pid):
    """Where each thread of a stuck process waits (for the failure message)."""
    out = []
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            base = f"/proc/{pid}/task/{tid}"
            try:
                state = Path(base, "stat").read_text().split(")")[-1].split()[0]
                stack = Path(base, "stack").read_text().strip().replace("\n", " | ")
            except OSError as e:
                state, stack = "?", str(e)
            out.append(f"\n  thread {tid} {state}: {stack[:300]}")
    except OSError as e:
        out.append(f"\n  {e}")
    return "".join(out)


def holders_of(mountpoint):
    """Processes with a file open under `mountpoint`, or a mount namespace that still
    has it mounted (for the failure message)."""
    out = []
    target = os.path.realpath(mountpoint)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            if any(f.startswith(target + "/") or f == target for f in fds):
                out.append(f"\n  pid {pid} has files open there: {cmd!r}")
            if f" {target} " in Path(f"/proc/{pid}/mountinfo").read_text():
                out.append(f"\n  pid {pid} still has it mounted: {cmd!r}")
        except OSError:
            continue
    return "".join(out[:20])


class PowerFS:
    def __init__(self, backing, mountpoint, log_path):
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.log_path = Path(log_path)
        self.proc = None
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mount(self):
        assert self.proc is None, "already mounted"
        exe = binary()
        if not exe.is_file():
            pytest.fail(f"{exe} not found: build first (fuse3/libfuse3-dev are needed)",
                        pytrace=False)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([str(exe), f"--backing={self.backing}", "-f",
                                          str(self.mountpoint)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < deadline:
            if is_powerfs_mount(self.mountpoint):
                os.stat(self.mountpoint)  # answered by powerfs: it serves requests
                return self
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise AssertionError(f"powerfs exited {rc} before mounting:\n{self.log()}")
            time.sleep(0.02)
        self.close()
        raise AssertionError(f"powerfs did not mount within {MOUNT_TIMEOUT}s:\n{self.log()}")

    def cut(self):
        """The power cut: returns once powerfs has taken it (its log line)."""
        before = self.log().count("powerfs: power cut")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + CUT_TIMEOUT
        while time.monotonic() < deadline:
            if self.log().count("powerfs: power cut") > before:
                return
            time.sleep(0.005)
        raise AssertionError(f"powerfs did not report the cut within {CUT_TIMEOUT}s")

    def unmount(self):
        """Unmounts and waits for powerfs to exit; lazily when something still holds it."""
        if self.proc is None:
            return
        p = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=UNMOUNT_TIMEOUT)
        if p.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=UNMOUNT_TIMEOUT)
        stuck = ""
        try:
            self.proc.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            holders = holders_of(self.mountpoint)
            if "still has it mounted" in holders and "has files open" not in holders:
                # A process that entered a mount namespace of its own while this
                # mount existed (ip netns exec, as other tests on this machine do)
                # keeps a copy of it, and so powerfs's connection, until it exits.
                # Nothing uses it there: cut (no more writes to the backing
                # directory), then end powerfs.
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.1)
                self.proc.kill()
                self.proc.wait(UNMOUNT_TIMEOUT)
                self.proc.returncode = 0
            else:
                try:
                    self.proc.wait(UNMOUNT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    stuck = threads_of(self.proc.pid) + holders_of(self.mountpoint)
                    self.proc.kill()
                    self.proc.wait(UNMOUNT_TIMEOUT)
        rc = self.proc.returncode
        self.proc = None
        assert p.returncode == 0, (
            f"fusermount3 -u {self.mountpoint}: {p.stdout.decode(errors='replace')}")
        assert rc == 0, (f"powerfs exited {rc} (killed: did not exit within "
                         f"{UNMOUNT_TIMEOUT}s of the unmount){stuck}:\n{self.log()[-4000:]}")

    def remount(self):
        self.unmount()
        return self.mount()

    def close(self):
        """Teardown: never raises, leaves no mount and no process behind."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=UNMOUNT_TIMEOUT)
            try:
                self.proc.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                # still mounted in another mount namespace (see unmount()), or stuck
                self.proc.send_signal(signal.SIGUSR1)
                self.proc.kill()
                self.proc.wait(UNMOUNT_TIMEOUT)
        elif is_powerfs_mount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=UNMOUNT_TIMEOUT)
        self.proc = None


@pytest.fixture
def powerfs_factory(workdir):
    """Makes (not yet mounted) PowerFS objects in the test's directory; unmounts them all."""
    made = []

    def make(name="powerfs"):
        fs = PowerFS(workdir / f"{name}-backing", workdir / f"{name}-mnt",
                     workdir / f"{name}.log")
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()
