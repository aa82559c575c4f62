"""Fixtures for PigeonAir's integration tests.

A NEW TEST FILE THAT SHOULD ALSO RUN OVER THE DPDK BACKEND opts in with a
module-level marker (tests/run.sh runs `-m both_backends` again with
PIGEON_BACKENDS=dpdk; nothing else lists files):

    pytestmark = pytest.mark.both_backends
    # or, beside other marks:
    pytestmark = [pytest.mark.both_backends, pytest.mark.skipif(...)]

Such a file's tests must take the `backend` fixture (directly or through
`pigeond`/`pigeond_factory`) and reach pigeond at `backend.host`; servers the
test starts for pigeond to reach (delivery tier, LDAP) run in the test's own
thread or under backend.wrap_client(), which is inside the DPDK namespace.

Run with Debian's interpreter (the first python3 on PATH may be another build):

    /usr/bin/python3 -m pytest -q tests/integration

The binaries come from $PIGEON_BUILD (default <repo>/build).  Every test gets
its own temporary directory (spool, config, log) under $TMPDIR (or /tmp) and
its own free port on 127.0.0.1; every pigeond a test starts is stopped in
teardown (SIGTERM, then SIGKILL), also when the test failed.

Backends: the `backend` fixture is parametrised over $PIGEON_BACKENDS
(comma-separated, default "kernel"; "dpdk6", the DPDK backend reached over
IPv6, only for tests marked `pytest.mark.dpdk_ipv6`, which tests/run.sh
adds to its DPDK run; such a test formats addresses with helpers.hostport()).  A backend object says where the server
listens (`host`) and how to launch the server (`wrap`) and the command-line
clients (`wrap_client`).  The DPDK backend will run pigeond inside a network
namespace: fill in DpdkBackend (set up the namespace and its veth/TAP pair in
setup(), tear it down in teardown(), prefix commands with `ip netns exec`) and
add "dpdk" to BACKENDS / $PIGEON_BACKENDS.
"""

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import dpdk_env
import helpers

PER_TEST_TIMEOUT = int(os.environ.get("PIGEON_TEST_TIMEOUT", "150"))

# Sanitized builds (meson -Dsanitize=true; tests/run.sh runs the suite on one
# too): every sanitizer report of any process a test starts, however started
# (pigeond through the fixtures, inside a namespace, or directly; pigeonctl),
# goes to a file of its own here, the process exits SANITIZER_EXIT, and
# _sanitizer_reports fails the test during which it happened.  A caller's own
# ASAN_OPTIONS etc. win; the reports then reach pigeond's log, which
# pigeond_factory checks.  Normal builds ignore all of this.
SANITIZER_DIR = tempfile.mkdtemp(prefix="pigeonair-sanitizer-", dir=helpers.tmp_base())
atexit.register(shutil.rmtree, SANITIZER_DIR, ignore_errors=True)  # reports were shown
SANITIZER_EXIT = 86
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")
_san = f"log_path={SANITIZER_DIR}/report:exitcode={SANITIZER_EXIT}"
os.environ.setdefault("ASAN_OPTIONS", f"{_san}:detect_leaks=1:abort_on_error=0")
os.environ.setdefault("UBSAN_OPTIONS", f"{_san}:print_stacktrace=1:halt_on_error=1")
os.environ.setdefault("LSAN_OPTIONS", _san)


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
# "dpdk6": the same dual-stacked, the clients reaching pigeond over IPv6; only
# for the tests marked dpdk_ipv6 (a chosen few: mail over IPv6 from each kind
# of client, not the whole suite a third time).
BACKENDS = {"kernel": KernelBackend, "dpdk": dpdk_env.ConftestBackend,
            "dpdk6": dpdk_env.ConftestBackend6}


def _selected_backends():
    names = [n.strip() for n in os.environ.get("PIGEON_BACKENDS", "kernel").split(",") if n.strip()]
    for n in names:
        if n not in BACKENDS:
            raise pytest.UsageError(f"PIGEON_BACKENDS: unknown backend {n!r}")
    return names


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "both_backends: tests/run.sh runs it again over the DPDK backend "
        "(PIGEON_BACKENDS=dpdk -m both_backends); see the top of conftest.py")
    config.addinivalue_line(
        "markers", "dpdk_ipv6: with dpdk6 in PIGEON_BACKENDS, runs over IPv6 on the DPDK "
        "backend too (backend.host is then pigeond's IPv6 address)")


def pytest_generate_tests(metafunc):
    """The `backend` parameters: $PIGEON_BACKENDS, dpdk6 only for tests marked dpdk_ipv6."""
    if "backend" not in metafunc.fixturenames:
        return
    v6 = metafunc.definition.get_closest_marker("dpdk_ipv6") is not None
    names = [n for n in _selected_backends() if n != "dpdk6" or v6]
    metafunc.parametrize("backend", names, indirect=True)


def pytest_collection_modifyitems(config, items):
    """dpdk_ipv6(only={"param": value}): the dpdk6 leg for those parameters alone."""
    dropped = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        mark = item.get_closest_marker("dpdk_ipv6")
        if params.get("backend") == "dpdk6" and mark is not None and any(
                params.get(k) != v for k, v in mark.kwargs.get("only", {}).items()):
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]


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


@pytest.fixture(autouse=True)
def _sanitizer_reports():
    """Fails the test during which a sanitized process wrote a report.  Autouse
    fixtures are set up first, so this one is torn down last: after every
    pigeond the test started has exited (LeakSanitizer reports at exit)."""
    before = set(os.listdir(SANITIZER_DIR))
    yield
    new = sorted(set(os.listdir(SANITIZER_DIR)) - before)
    if new:
        text = "".join(Path(SANITIZER_DIR, n).read_text(errors="replace")[:6000] for n in new)
        pytest.fail(f"sanitizer report(s) {', '.join(new)} in {SANITIZER_DIR}:\n{text}",
                    pytrace=False)


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


@pytest.fixture
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
    # A sanitized pigeond's report (when it went to the log): the test fails.
    for p in made:
        rc = p.proc.returncode if p.proc is not None else None
        log = p.log()
        if rc == SANITIZER_EXIT or any(m in log for m in SANITIZER_MARKS):
            pytest.fail(f"{p.name} exited {rc} with a sanitizer report; log "
                        f"{p.log_path}:\n{log[-6000:]}", pytrace=False)


@pytest.fixture
def pigeond(pigeond_factory):
    """A running pigeond with the default test settings."""
    return pigeond_factory().start()


# tests/run.sh sets PIGEON_REQUIRE_TOOLS=1: there, tools/setup-deps.sh has
# installed every tool the tests use, so a test skipped because one is "not
# installed" means the package list is incomplete (issue 15: swaks without its
# TLS modules passed unnoticed).  Such a skip then fails the test.  Run by hand
# on a partial machine, the skips stay skips.
REQUIRE_TOOLS = os.environ.get("PIGEON_REQUIRE_TOOLS") == "1"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_TOOLS and rep.skipped and isinstance(rep.longrepr, tuple) \
            and "not installed" in str(rep.longrepr[2]):
        rep.outcome = "failed"
        rep.longrepr = f"{rep.longrepr[2]}: tools/setup-deps.sh must install it"
    setattr(item, "rep_" + rep.when, rep)
