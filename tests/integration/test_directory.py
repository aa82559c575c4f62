"""The recipient directory at RCPT time, from a file and from a real OpenLDAP slapd.

File source: known, unknown, alias (stored under its mailbox), catch-all
domain, case rules.  LDAP source: a slapd started here on a loopback port with
a temporary mdb database and a few thousand entries (more than its size
limit, so only a paged search sees them all): lookups right; an entry added
with ldapadd is accepted after the next refresh; slapd stopped: the last
snapshot keeps serving; slapd never reachable at start: 451 at RCPT.

Parametrised over the conftest's `backend`, and run over both backends by
tests/run.sh.  Every slapd is started by a function-scoped fixture that
depends on `backend`, so it starts after the backend has moved the test's
thread into the DPDK namespace: slapd, ldapadd and pigeond's directory
thread then share that namespace's loopback (on the kernel backend, the
host's).  Needs slapd and ldap-utils (tools/setup-deps.sh).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import helpers

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=pigeon,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
ADMIN = f"cn=admin,{SUFFIX}"
PASSWORD = "pigeon-secret"
ENTRIES = 3000
PAGE_LIMIT = 500  # slapd's size limit: a search that does not page gets no more
LDAP_TIMEOUT = 20.0

# run again over the DPDK backend by tests/run.sh (conftest.py)
pytestmark = [pytest.mark.both_backends, pytest.mark.skipif(
    not (os.path.exists(SLAPD) and shutil.which("ldapadd")),
    reason="slapd and ldap-utils are not installed (tools/setup-deps.sh)")]

# Any refusal counts as a session error; the tests send many on purpose.
BASE_SETTINGS = {"smtp__max_errors": 1000}


def rcpt_replies(server, rcpts):
    """One transaction: the (code, text) of each RCPT, in order."""
    out = []
    with server.raw() as c:
        c.greet()
        code, text = c.cmd("MAIL FROM:<sender@example.org>")
        assert code == 250, text
        for r in rcpts:
            code, text = c.cmd(f"RCPT TO:<{r}>")
            out.append((code, " ".join(text)))
        assert c.cmd("QUIT")[0] == 221
    return out


def assert_rcpts(server, expected):
    """expected: {address: (code, enhanced status)}."""
    got = rcpt_replies(server, list(expected))
    for (addr, (code, status)), (got_code, text) in zip(expected.items(), got):
        assert got_code == code and text.startswith(status), (
            f"RCPT {addr}: got {got_code} {text!r}, want {code} {status}")


def send(server, rcpts, subject="directory test"):
    """A whole message; returns its queue id."""
    head, tail = helpers.smtp_message_bytes(
        "sender@example.org", rcpts,
        helpers.crlf(f"From: sender@example.org\nSubject: {subject}\n\nbody\n".encode()))
    with server.raw() as c:
        c.greet()
        c.send(head)
        replies = c.replies(2 + len(rcpts))
        assert all(code == 250 for code, _ in replies[:-1]), replies
        assert replies[-1][0] == 354, replies
        c.send(tail)
        code, text = c.reply()
        assert code == 250, text
        return helpers.queue_id_of(text[-1])


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


# --------------------------------------------------------------------------
# File source

DIRECTORY_FILE = """\
# test directory
alice@example.com
Bob.Smith@example.com   store-2
sales@example.com: alice@example.com
abuse@example.com : sales@example.com
@catchall.example
"""


def test_file_source(pigeond_factory, workdir):
    path = workdir / "directory.txt"
    path.write_text(DIRECTORY_FILE)
    server = pigeond_factory(directory__file=path, **BASE_SETTINGS).start()

    assert_rcpts(server, {
        "alice@example.com": (250, "2.1.5"),
        "ALICE@Example.COM": (250, "2.1.5"),       # local parts fold by default
        "bob.smith@example.com": (250, "2.1.5"),
        "sales@example.com": (250, "2.1.5"),       # alias
        "Abuse@example.com": (250, "2.1.5"),       # alias of an alias
        "anyone@catchall.example": (250, "2.1.5"),  # catch-all domain
        "nobody@example.com": (550, "5.1.1"),      # unknown address, known domain
        "nobody@example.net": (550, "5.1.1"),      # in `domains`, nobody in the directory
        "alice@elsewhere.example": (550, "5.7.1"),  # neither: relay denied
    })
    assert any("reason=unknown_user" in l and "nobody@example.com" in l
               for l in server.refused_lines()), server.refused_lines()

    # Aliases are stored (and so sharded) under their mailbox; mailboxes in the
    # directory's spelling; catch-all addresses as written.
    qid = send(server, ["sales@example.com", "Bob.Smith@Example.COM", "Who@catchall.example"])
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    stored = ["alice@example.com", "bob.smith@example.com", "Who@catchall.example"]
    helpers.assert_stored_once_per_shard(entries, qid, stored)
    assert sorted(r for e in entries if e["id"] == qid for r in e["rcpt"]) == sorted(stored)


def test_file_source_case_sensitive(pigeond_factory, workdir):
    path = workdir / "directory.txt"
    path.write_text(DIRECTORY_FILE)
    server = pigeond_factory(directory__file=path, directory__case_sensitive_local="true",
                             **BASE_SETTINGS).start()
    assert_rcpts(server, {
        "Bob.Smith@EXAMPLE.com": (250, "2.1.5"),   # domains always fold
        "bob.smith@example.com": (550, "5.1.1"),
        "alice@example.com": (250, "2.1.5"),
        "ALICE@example.com": (550, "5.1.1"),
    })


def test_file_source_bad_file_gives_451(pigeond_factory, workdir):
    path = workdir / "directory.txt"
    path.write_text("alice@example.com\nthis line is wrong\n")
    server = pigeond_factory(directory__file=path, **BASE_SETTINGS).start()
    assert server.wait_for_log(r"directory\.txt:2: ", timeout=5), server.log()
    assert_rcpts(server, {
        "alice@example.com": (451, "4.3.0"),
        "someone@elsewhere.example": (451, "4.3.0"),
    })


def test_backpressure_checks_the_alias_canonical_shard(pigeond_factory, workdir):
    # An alias is stored in its mailbox's shard, so that is the shard whose
    # high-water mark decides its 452: not the shard of the address as typed.
    by_shard = helpers.addresses_in_shards(per_shard=2, domain="example.com", prefix="box")
    alias_names = helpers.addresses_in_shards(per_shard=2, domain="example.com", prefix="alias")
    full_box = by_shard[0][0]      # its shard (0) will be over the mark
    free_box = by_shard[2][0]      # shard 2 stays empty
    other_box = by_shard[1][0]     # shard 1 stays empty
    to_full = alias_names[1][0]    # typed in shard 1, stored in shard 0
    to_free = alias_names[0][0]    # typed in shard 0, stored in shard 2
    path = workdir / "directory.txt"
    path.write_text(f"{full_box}\n{free_box}\n{other_box}\n"
                    f"{to_full}: {full_box}\n{to_free}: {free_box}\n")
    # No relay: the message stays queued; one message is over a 1-byte mark.
    server = pigeond_factory(directory__file=path, spool__high_water=1, **BASE_SETTINGS).start()
    send(server, [full_box])
    wait_until(lambda: rcpt_replies(server, [full_box])[0][0] == 452, 10,
               f"shard 0 over its high-water mark ({full_box} gets 452)")
    assert_rcpts(server, {
        to_full: (452, "4.3.1"),      # its mailbox's shard is full
        to_free: (250, "2.1.5"),      # typed in the full shard, stored in an empty one
        other_box: (250, "2.1.5"),    # the alias's typed shard itself takes mail
    })
    qid = send(server, [to_free])
    assert server.stop() == 0
    entries = [e for e in helpers.spool_ls(server.spool_dir) if e["id"] == qid]
    assert [(e["shard"], e["rcpt"]) for e in entries] == [(2, [free_box])]


# --------------------------------------------------------------------------
# LDAP source

class Slapd:
    """One slapd of our own: temporary mdb database, loopback port, foreground."""

    def __init__(self, workdir: Path):
        self.dir = workdir / f"slapd-{helpers.free_port()}"
        self.dir.mkdir()
        (self.dir / "db").mkdir()
        self.port = None
        self.proc = None
        self.log_path = self.dir / "slapd.log"
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ADMIN}"
rootpw {PASSWORD}
directory {self.dir}/db
dbnosync
limits * size.soft={PAGE_LIMIT} size.hard={PAGE_LIMIT} size.prtotal=unlimited
""")
        self.uri = None

    def start(self):
        for _ in range(3):
            self.port = helpers.free_port()
            self.uri = f"ldap://127.0.0.1:{self.port}/"
            logf = open(self.log_path, "ab")
            try:
                # -d 0: stay in the foreground, so this process is the server.
                self.proc = subprocess.Popen(
                    [SLAPD, "-d", "0", "-h", self.uri, "-f", str(self.conf)],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
            finally:
                logf.close()
            deadline = time.monotonic() + LDAP_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                p = subprocess.run(["ldapsearch", "-x", "-H", self.uri, "-b", "",
                                    "-s", "base", "(objectClass=*)"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=LDAP_TIMEOUT)
                if p.returncode == 0:
                    return self
                time.sleep(0.1)
            self.stop()
        raise AssertionError(f"slapd did not start: {self.log_path.read_text(errors='replace')}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def ldapadd(self, ldif: str):
        p = subprocess.run(["ldapadd", "-x", "-H", self.uri, "-D", ADMIN, "-w", PASSWORD],
                           input=ldif.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        assert p.returncode == 0, p.stderr.decode(errors="replace")


def person(i, domain="example.com"):
    ldif = (f"dn: uid=user{i},{PEOPLE}\n"
            "objectClass: inetOrgPerson\n"
            "objectClass: inetLocalMailRecipient\n"
            f"uid: user{i}\ncn: User {i}\nsn: {i}\n"
            f"mail: user{i}@{domain}\n"
            f"mailHost: store-{i % 3}.internal\n")
    if i % 10 == 0:
        ldif += f"mailLocalAddress: alias{i}@{domain}\n"
    return ldif + "\n"


def populate(slapd, n):
    ldif = (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
            "dc: pigeon\no: pigeon\n\n"
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
    ldif += "".join(person(i) for i in range(n))
    # A catch-all domain: a mail value "@domain".
    ldif += (f"dn: cn=catchall,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: catchall\n"
             "sn: catchall\nmail: @catchall.example\n\n")
    # Outside the filter: must not be loaded.
    ldif += (f"dn: cn=printer,{PEOPLE}\nobjectClass: device\ncn: printer\n"
             "description: printer@example.com\n\n")
    slapd.ldapadd(ldif)


@pytest.fixture
def slapd_factory(workdir, backend):
    # `backend` first: with dpdk the test's thread, and so slapd, is in pigeond's namespace.
    made = []

    def make():
        s = Slapd(workdir)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def big_slapd(backend):
    """A slapd with a few thousand entries, in the namespace of the test's backend.

    Not module-scoped: each DPDK test has a namespace of its own, made after
    module fixtures, which a slapd started there first could not be reached from.
    """
    base = Path(tempfile.mkdtemp(prefix="pigeonair-ldap-", dir=helpers.tmp_base()))
    s = Slapd(base)
    try:
        s.start()
        populate(s, ENTRIES)
        yield s
    finally:
        s.stop()
        shutil.rmtree(base, ignore_errors=True)


def ldap_settings(workdir, uri, refresh=300):
    pw = workdir / "ldap.password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    return {
        "directory__ldap__uri": uri,
        "directory__ldap__bind_dn": ADMIN,
        "directory__ldap__bind_password_file": pw,
        "directory__ldap__base": PEOPLE,
        "directory__ldap__alias_attr": "mailLocalAddress",
        "directory__ldap__host_attr": "mailHost",
        "directory__refresh": refresh,
        "directory__max_age": 3600,
        **BASE_SETTINGS,
    }


def test_ldap_lookups(pigeond_factory, workdir, big_slapd):
    server = pigeond_factory(**ldap_settings(workdir, big_slapd.uri)).start()
    assert server.wait_for_log(rf"directory: loaded mailboxes={ENTRIES} aliases={ENTRIES // 10} ",
                               timeout=10), server.log()
    expected = {}
    for i in (0, 1, 499, 500, 501, 1234, ENTRIES - 1):  # across the page boundaries
        expected[f"user{i}@example.com"] = (250, "2.1.5")
    expected["USER42@EXAMPLE.COM"] = (250, "2.1.5")
    expected[f"alias{ENTRIES - 10}@example.com"] = (250, "2.1.5")
    expected[f"user{ENTRIES}@example.com"] = (550, "5.1.1")
    expected["alias1@example.com"] = (550, "5.1.1")
    expected["printer@example.com"] = (550, "5.1.1")  # not matched by the filter
    expected["whoever@catchall.example"] = (250, "2.1.5")
    expected["user1@example.org"] = (550, "5.7.1")
    assert_rcpts(server, expected)

    qid = send(server, ["alias2990@example.com"])
    assert server.stop() == 0
    entries = helpers.spool_ls(server.spool_dir)
    helpers.assert_stored_once_per_shard(entries, qid, ["user2990@example.com"])
    assert [r for e in entries if e["id"] == qid for r in e["rcpt"]] == ["user2990@example.com"]


def test_ldap_entry_added_is_accepted_after_refresh(pigeond_factory, workdir, slapd_factory):
    slapd = slapd_factory().start()
    populate(slapd, 20)
    server = pigeond_factory(**ldap_settings(workdir, slapd.uri, refresh=1)).start()
    assert_rcpts(server, {"user5@example.com": (250, "2.1.5"),
                          "user900@example.com": (550, "5.1.1")})
    slapd.ldapadd(person(900))
    wait_until(lambda: rcpt_replies(server, ["user900@example.com"])[0][0] == 250, 10,
               "user900 accepted after ldapadd")
    assert_rcpts(server, {"alias900@example.com": (250, "2.1.5"),
                          "user5@example.com": (250, "2.1.5")})


def test_ldap_down_last_snapshot_keeps_serving(pigeond_factory, workdir, slapd_factory):
    slapd = slapd_factory().start()
    populate(slapd, 20)
    server = pigeond_factory(**ldap_settings(workdir, slapd.uri, refresh=1)).start()
    assert_rcpts(server, {"user7@example.com": (250, "2.1.5")})
    slapd.stop()
    assert server.wait_for_log(r"directory: load failed, the snapshot of \d+ s ago keeps serving",
                               timeout=10), server.log()
    assert_rcpts(server, {
        "user7@example.com": (250, "2.1.5"),
        "alias10@example.com": (250, "2.1.5"),
        "user999@example.com": (550, "5.1.1"),
        "user7@example.org": (550, "5.7.1"),
    })


def test_ldap_never_reachable_gives_451(pigeond_factory, workdir):
    nobody = f"ldap://127.0.0.1:{helpers.free_port()}/"  # nothing listens there
    server = pigeond_factory(**ldap_settings(workdir, nobody, refresh=1)).start()
    assert server.wait_for_log(r"directory: load failed, no snapshot yet", timeout=5), server.log()
    assert_rcpts(server, {
        "user1@example.com": (451, "4.3.0"),
        "someone@example.net": (451, "4.3.0"),
    })
    assert any("reason=tempfail" in l for l in server.refused_lines()), server.refused_lines()


@pytest.mark.parametrize("overrides,message", [
    ({"directory.refresh": "600", "directory.max_age": "60"},
     "config key 'directory.max_age': 60 must be longer than directory.refresh (600)"),
    ({"directory.case_sensitive_local": "maybe"},
     "config key 'directory.case_sensitive_local': 'maybe' is not true or false"),
    ({"directory.file": "", "directory.ldap.uri": "ldap://127.0.0.1:1/"},
     "directory.ldap.uri is set: directory.ldap.base"),
])
def test_bad_directory_config_refused(binaries, workdir, overrides, message):
    cmd = [str(helpers.binary("pigeond")), "-t", "-o", f"directory.file={workdir}/d.txt"]
    for key, value in overrides.items():
        cmd += ["-o", f"{key}={value}"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert message in p.stderr.decode(errors="replace"), p.stderr
