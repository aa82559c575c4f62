"""Routing by the directory (relay.store_route): each recipient goes to the store
its LDAP entry names (mailHost), decided when its copy is handed off.

A slapd of our own (test_directory.Slapd) lists users spread over three Dovecot
LMTP stores, each `dovecot -F -c` on its own loopback address (127.0.0.2, .3,
.4) and one port, with Maildirs in its own directory; every store knows every
user, so a message in the wrong store would be delivered there, not refused.
A batch of mail lands in exactly the right Maildirs; an `address` rule wins
over the directory; a user without a store, or with a store value that is no
address literal, goes by relay.default.  A user moved in LDAP while its store
is down gets its waiting mail in the new store once the directory refreshed.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

import delivery
import helpers
from test_directory import ADMIN, PASSWORD, PEOPLE, SLAPD, SUFFIX, Slapd, ldap_settings, send
from test_handoff import servers  # noqa: F401 - the fixture that stops them at teardown

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SLAPD) and shutil.which("ldapadd") and shutil.which("dovecot")),
    reason="slapd, ldap-utils or dovecot are not installed (tools/setup-deps.sh)")

STORES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
DELIVER_TIMEOUT = 30.0


def entry(uid, host):
    ldif = (f"dn: uid={uid},{PEOPLE}\n"
            "objectClass: inetOrgPerson\n"
            "objectClass: inetLocalMailRecipient\n"
            f"uid: {uid}\ncn: {uid}\nsn: {uid}\n"
            f"mail: {uid}@example.com\n")
    if host is not None:
        ldif += f"mailHost: {host}\n"
    return ldif + "\n"


def ldapmodify(slapd, ldif):
    p = subprocess.run(["ldapmodify", "-x", "-H", slapd.uri, "-D", ADMIN, "-w", PASSWORD],
                       input=ldif.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def where(stores, user):
    """The stores (by address) holding mail for user@example.com."""
    return sorted(s.address for s in stores if s.messages().get(("example.com", user)))


def test_mail_goes_to_the_directory_store(pigeond_factory, workdir, servers):
    port = helpers.free_port()
    # user0..user5 spread over the three stores; the rest test the precedence rules.
    placed = {f"user{i}": STORES[i % 3] for i in range(6)}
    users = dict(placed)
    users.update({
        "vip": STORES[0],              # an address rule sends it to STORES[2]
        "nohost": None,                # no mailHost: relay.default (STORES[1])
        "hostile": "127.0.0.2:25",     # no address literal: refused, relay.default
        "named": "store-0.internal",   # a host name: never resolved, relay.default
        "mover": STORES[0],            # moved to STORES[2] while STORES[0] is down
    })
    expected = dict(placed, vip=STORES[2], nohost=STORES[1], hostile=STORES[1],
                    named=STORES[1])

    slapd = Slapd(workdir)
    servers.append(slapd)
    slapd.start()
    slapd.ldapadd(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                  "dc: pigeon\no: pigeon\n\n"
                  f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
                  + "".join(entry(u, h) for u, h in users.items()))
    addrs = [f"{u}@example.com" for u in users]
    stores = []
    for n, a in enumerate(STORES):
        s = delivery.DovecotLMTP(workdir, addrs, name=f"store{n}", address=a)
        servers.append(s)
        stores.append(s.start(port))

    routes = workdir / "routes"
    routes.write_text(f"address vip@example.com lmtp:{STORES[2]}:{port}\n")
    settings = ldap_settings(workdir, slapd.uri, refresh=1)
    settings.update({
        "relay__store_route": f"lmtp:%s:{port}",
        "relay__default": f"lmtp:{STORES[1]}:{port}",
        "relay__routes": routes,
        "relay__min_backoff": 1, "relay__max_backoff": 2, "relay__timeout": 10,
        "relay__breaker_cooldown": 2, "log__level": "info",
    })
    p = pigeond_factory(**settings).start()
    assert p.wait_for_log(r"directory: loaded mailboxes=", timeout=10), p.log()

    batch = [a for a in addrs if not a.startswith("mover@")]
    qids = [send(p, batch, "batch-a"), send(p, list(reversed(batch)), "batch-b")]
    for u, store in expected.items():
        delivery.wait_for(lambda: where(stores, u) == [store]
                          and len(stores[STORES.index(store)].messages()[("example.com", u)]) == 2,
                          DELIVER_TIMEOUT, f"{u} in {store} only; pigeond log:\n{p.log()[-3000:]}")
    for u, store in expected.items():
        got = stores[STORES.index(store)].messages()[("example.com", u)]
        ids = sorted(i.split(".")[0] for i in delivery.pigeon_ids(got))
        assert ids == sorted(qids), (u, ids, qids)
        assert where(stores, u) == [store], u
    # The refused store values were counted and named in the log, not routed.
    assert re.search(r"to=<hostile@example\.com>: directory store '127\.0\.0\.2:25' is no "
                     r"address literal", p.log()), p.log()[-3000:]
    assert "to=<named@example.com>: directory store 'store-0.internal'" in p.log()
    r = helpers.run_ctl(["status", "--json", "--socket", p.spool_dir / "pigeond.sock"])
    # hostile and named, once per message at least
    assert json.loads(r.stdout)["result"]["handoff"]["store_refused"] >= 4, r.stdout
    # Each store is a destination of its own in the per-destination series.
    want = {a: sum(2 for st in expected.values() if st == a) for a in STORES}

    def delivered_per_store():
        text = helpers.run_ctl(["metrics", "--socket", p.spool_dir / "pigeond.sock"]).stdout
        got = dict(re.findall(r'pigeonair_destination_deliveries_total\{destination="lmtp:'
                              rf'(127\.0\.0\.\d):{port}/0",result="ok"\}} (\d+)',
                              text.decode() if isinstance(text, bytes) else text))
        return {a: int(n) for a, n in got.items()}
    delivery.wait_for(lambda: delivered_per_store() == want, 5,
                      f"per-store deliveries {want}, got {delivered_per_store()}")

    # The mailbox moves while its store is down: the waiting mail follows it.
    stores[0].stop()
    qid = send(p, ["mover@example.com"], "moved")
    assert p.wait_for_log(rf"{qid}: to=<mover@example\.com> relay=lmtp:127\.0\.0\.2:{port}/0 "
                          r"status=deferred", timeout=DELIVER_TIMEOUT), p.log()[-3000:]
    ldapmodify(slapd, f"dn: uid=mover,{PEOPLE}\nchangetype: modify\n"
                      f"replace: mailHost\nmailHost: {STORES[2]}\n")
    delivery.wait_for(lambda: where(stores, "mover") == [STORES[2]], DELIVER_TIMEOUT,
                      f"mover's mail in the new store; pigeond log:\n{p.log()[-3000:]}")
    (m,) = stores[2].messages()[("example.com", "mover")]
    assert delivery.pigeon_ids([m])[0].startswith(qid + ".")
    assert p.wait_for_log(rf"{qid}: to=<mover@example\.com> relay=lmtp:127\.0\.0\.4:{port}/0 "
                          r"status=sent", timeout=5), p.log()[-3000:]
    assert p.wait_for_log(rf"{qid}: shard \d+ copy handed off completely", timeout=10)
    assert p.stop() == 0
    assert helpers.spool_ls(p.spool_dir) == []


@pytest.mark.parametrize("value,message", [
    ("lmtp:127.0.0.1:24", "must hold exactly one %s"),
    ("lmtp:%s", "with store 192.0.2.1 is no destination"),
    ("lmtp:%s:24,%s:25", "must hold exactly one %s"),
])
def test_bad_store_route_refused(binaries, workdir, value, message):
    p = subprocess.run([str(helpers.binary("pigeond")), "-t", "-o",
                        f"relay.store_route={value}"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.decode(errors="replace")
    assert "relay.store_route" in err and message in err, err
