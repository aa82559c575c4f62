"""The DPDK stack on a bad link: 5% loss, 10% reordering, 1% duplication,
5 ms delay.  500 messages from 25 concurrent clients must all get 250 and
arrive intact (bodies checked by SHA-256).  Bounded by the per-test deadline.
Needs root.

With sch_netem in the kernel, `tc qdisc add dev TAP root netem ...` on the
TAP's kernel side impairs what the kernel sends to the engine.  Kernels
without it (the CI VMs run one) get the same model from the dataplane's own
test impairment, dpdk.impair, applied to what the engine receives and sends.
"""

import concurrent.futures as cf
import hashlib
import os
import re
import smtplib

import pytest

import helpers
from dpdk_env import DpdkPigeond, is_root, netem_available

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

MESSAGES = 500
CLIENTS = 25


def test_netem_loss_reorder_duplicate(binaries, workdir):
    netem = netem_available()
    overrides = {} if netem else {"dpdk.impair": "loss=5,reorder=10,duplicate=1,delay=5"}
    with DpdkPigeond(binaries, workdir, overrides) as srv:
        if netem:
            srv.netns.qdisc("netem loss 5% reorder 10% duplicate 1% delay 5ms")
        print("impairment:", "tc netem" if netem else "dpdk.impair (no sch_netem here)")
        digests = {}

        def client(k):
            sent = {}
            for i in range(k, MESSAGES, CLIENTS):
                # Bodies of a few KiB so that losses hit data, not only commands.
                payload = os.urandom(1500 + 37 * i).hex().encode()
                lines = b"\r\n".join(payload[j:j + 76] for j in range(0, len(payload), 76))
                body = f"Subject: netem {i}\r\n\r\n".encode() + lines + b"\r\n"
                with smtplib.SMTP(srv.host, srv.port, timeout=60) as s:
                    s.ehlo("client.example.org")
                    s.mail("sender@example.org")
                    s.rcpt("user@example.com")
                    code, reply = s.data(body)
                    assert code == 250, reply
                qid = re.search(rb"queued as (\S+)", reply).group(1).decode()
                sent[qid] = hashlib.sha256(body).hexdigest()
            return sent

        with srv.netns.entered():
            with cf.ThreadPoolExecutor(CLIENTS) as ex:
                for sent in ex.map(client, range(CLIENTS)):
                    digests.update(sent)
        assert len(digests) == MESSAGES
        assert srv.stop() == 0
        c = srv.counters()
        print("counters:", c)
        entries = helpers.spool_ls(srv.spool_dir)
        assert {e["id"] for e in entries} == set(digests)
        for e in entries:
            data = helpers.strip_received(helpers.spool_show(srv.spool_dir, e["id"], e["shard"]))
            assert hashlib.sha256(data).hexdigest() == digests[e["id"]], e["id"]
        # The link really was bad: the stack saw out-of-order data.
        assert srv.total("ooo") > 0
