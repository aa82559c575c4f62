"""Fixtures for PigeonAir's integration tests.

Run with Debian's interpreter (the first python3 on PATH may be another build):

    /usr/bin/python3 -m pytest -q tests/integration

The binaries come from $PIGEON_BUILD (default <repo>/build).  Every test gets
its own temporary directory (spool, config, log) under $TMPDIR (or /tmp) and
its own free port on 127.0.0.1; every pigeond a test starts is stopped in
teardown (SIGTERM, then SIGKILL), also when the test failed.

Backends: the `backend` fixture is parametrised over $PIGEON_BACKENDS
(comma-separated, default "kernel").  A backend object says where the server
listens (`host`) and how to launch the server (`wrap`) and the command-line
clients (`wrap_client`).  The DPDK backend will run pigeond inside a network
namespace: fill in DpdkBackend (set up the namespace and its veth/TAP pair in
setup(), tear it down in teardown(), prefix commands with `ip netns exec`) and
add "dpdk" to BACKENDS / $PIGEON_BACKENDS.
"""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import dpdk_env
import helpers

PER_TEST_TIMEOUT = int(os.environ.get("PIGEON_TEST_TIMEOUT", "150"))


class KernelBackend:
    """pigeond on kernel sockets, listening on the loopback interface."""

    name = "kernel"
    host = "127.0.0.1"
    client_addr = "127.0.0.1"  # what pigeond logs as client=

    def setup(self, workdir):
        pass

    def teardown(self):
        pass

    def wrap(self, argv):
        return argv

    def wrap_client(self, argv):
        return argv


# The DPDK backend: pigeond on a TAP vdev in a network namespace of the test's
# own, the test's thread (and so its sockets and subprocesses) inside it.
BACKENDS = {"kernel": KernelBackend, "dpdk": dpdk_env.ConftestBackend}


def _selected_backends():
    names = [n.strip() for n in os.environ.get("PIGEON_BACKENDS", "kernel").split(",") if n.strip()]
    for n in names:
        if n not in BACKENDS:
            raise pytest.UsageError(f"PIGEON_BACKENDS: unknown backend {n!r}")
    return names


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(autouse=True)
def _per_test_deadline():
    """A hard bound on every test: SIGALRM raises in the main thread."""

    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {PER_TEST_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(PER_TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def binaries():
    missing = [n for n in ("pigeond", "pigeonctl") if not helpers.binary(n).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found in {helpers.build_dir()}: build first "
                    f"(meson setup build && ninja -C build) or set PIGEON_BUILD", pytrace=False)
    return helpers.build_dir()


@pytest.fixture
def workdir():
    base = helpers.tmp_base()
    d = Path(tempfile.mkdtemp(prefix="pigeonair-it-", dir=base))
    yield d
    if os.environ.get("PIGEON_KEEP_TMP"):
        print(f"kept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=_selected_backends())
def backend(request, workdir):
    b = BACKENDS[request.param]()
    b.setup(workdir)
    yield b
    b.teardown()


@pytest.fixture
def pigeond_factory(binaries, workdir, backend, request):
    """Makes (not yet started) Pigeond objects; stops all of them at teardown."""
    made = []

    def make(name="pigeond", **settings):
        p = helpers.Pigeond(workdir, backend, name=name)
        p.settings.update({k.replace("__", "."): str(v) for k, v in settings.items()})
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            p.stop(timeout=helpers.STOP_TIMEOUT)
        except AssertionError:
            pass
        finally:
            p.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in made:
            print(f"---- {p.name} log ({p.log_path}) ----\n{p.log()[-8000:]}")


@pytest.fixture
def pigeond(pigeond_factory):
    """A running pigeond with the default test settings."""
    return pigeond_factory().start()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
