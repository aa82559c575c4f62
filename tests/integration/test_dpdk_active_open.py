"""Active open on the DPDK stack, end to end, through pigeon-loadgen's DPDK
transport (loadgen/lg_dpdk.c over dataplane/tcp_connect.c).

- pigeon-loadgen on a TAP vdev inside a network namespace of the test's own,
  Postfix's smtp-sink on the TAP's kernel side: every message answered 2xx
  (connections reused, one connection per message, and two load threads on
  two queue pairs);
- a port nobody listens on: RST to our SYN, counted as refused, and the run
  still stops by itself;
- an unreachable target behind --gateway: the SYN is retransmitted (RFC 6298
  back-off) until the connect timeout;
- pigeon-loadgen to pigeond on the DPDK backend over net_memif (pigeond
  role=server, loadgen role=client, the socket in the test's temp dir): every
  message that got 250 is in pigeond's spool; with one worker and thread,
  with two of each (software steering on both sides), and with 2% loss at
  pigeond, where the loadgen's stack recovers by fast retransmit of the
  holes its SACK scoreboard leaves (RFC 2018, RFC 6675); and with the
  loadgen on three consecutive addresses (--ip-count 3), its stack answering
  pigeond's ARP for each and its active opens taking them in turn; and the
  same over IPv6 alone (--ip6-count 3, no --ip: the loadgen's stack has no
  IPv4 address), each address through DAD and Neighbor Discovery.

Addresses are in 198.18.0.0/15; processes run inside a namespace the test
makes and removes (also on failure: DpdkNetns.teardown kills whatever still
runs in it).  Needs root; skipped otherwise.
"""

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time

import pytest

import helpers
from dpdk_env import (PEER_IP, PEER_IP6, PREFIX, PREFIX6, SERVER_IP, SERVER_IP6, DpdkNetns,
                      is_root)

pytestmark = pytest.mark.skipif(not is_root(), reason="the DPDK tests need root (ip netns)")

SINK_PORT = 2525
DOMAIN = "example.com"


def loadgen():
    path = helpers.binary("pigeon-loadgen")
    if not path.is_file():
        pytest.fail(f"{path} not built", pytrace=False)
    return str(path)


@pytest.fixture
def netns(binaries):
    ns = DpdkNetns(memory_mb=256).setup()
    try:
        yield ns
    finally:
        ns.teardown()


def wait_listening(ns, port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        r = ns.run(["ss", "-Hltn", f"sport = :{port}"], timeout=10)
        if r.stdout.strip():
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


@pytest.fixture
def sink(netns, workdir):
    """Postfix's smtp-sink on the namespace's kernel side (every address, so it
    listens before the TAP exists; as root it needs -u nobody)."""
    log = open(workdir / "smtp-sink.log", "wb")
    sink_bin = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"  # not always on PATH
    proc = netns.popen([sink_bin, "-u", "nobody", "-c", f"0.0.0.0:{SINK_PORT}", "256"],
                       stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(netns, SINK_PORT, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        log.close()


def run_loadgen(ns, args, timeout=90, eal=None, ip=f"{SERVER_IP}/{PREFIX}", peer_setup=True,
                status=0):
    """pigeon-loadgen --json in the namespace; (json object, stderr).  With
    peer_setup the TAP's kernel side gets PEER_IP once the TAP appears.
    status: the exit status expected (1 when not one connection succeeds)."""
    argv = [loadgen(), "--eal", eal or ns.eal_args(), *(["--ip", ip] if ip else []), "--json",
            *map(str, args)]
    cmd = ns.wrap(argv) if peer_setup else ns.wrap_client(argv)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    assert r.returncode == status, f"pigeon-loadgen exited {r.returncode}:\n{r.stderr[-4000:]}"
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no JSON from pigeon-loadgen:\n{r.stdout}\n{r.stderr[-4000:]}"
    return json.loads(lines[-1]), r.stderr


def stack_counters(stderr):
    """The counters pigeon-loadgen's DPDK threads print at the end, summed."""
    total = {}
    for m in re.finditer(r"dpdk thread \d+: (.*?) drops:", stderr):
        for k, v in re.findall(r"(\w+)=(\d+)", m.group(1)):
            total[k] = total.get(k, 0) + int(v)
    return total


def assert_all_ok(out, n):
    assert out["messages"] == n, out
    assert out["ok"] == n, out
    assert out["failed"] == 0, out
    assert out["eod_replies"] == {"2xx": n, "4xx": 0, "5xx": 0}, out
    assert sum(out["errors"].values()) == 0, out


def test_loadgen_tap_to_smtp_sink(netns, sink):
    out, err = run_loadgen(netns, ["--target", f"{PEER_IP}:{SINK_PORT}", "--connections", 8,
                                   "--messages", 400, "--size", "4k", "--timeout", 60])
    assert_all_ok(out, 400)
    assert out["connects"] >= 8 and out["ready"] >= 8, out
    assert out["clean_closes"] == out["connects"], out
    c = stack_counters(err)
    assert c["active_opens"] == out["connects"], c
    assert c["connects_failed"] == 0, c


def test_loadgen_tap_one_connection_per_message(netns, sink):
    # Many active opens in a row: local ports chosen, closed, chosen again.
    out, err = run_loadgen(netns, ["--target", f"{PEER_IP}:{SINK_PORT}", "--connections", 4,
                                   "--messages", 150, "--per-conn", 1, "--size", "2k",
                                   "--no-pipelining", "--timeout", 60])
    assert_all_ok(out, 150)
    # A connection opened as the budget ran out just says QUIT: at least one per message.
    assert 150 <= out["connects"] <= 154, out
    assert out["clean_closes"] == out["connects"], out
    assert stack_counters(err)["active_opens"] == out["connects"]


def test_loadgen_tap_two_threads(netns, sink):
    # Two lcores, two queue pairs on the TAP: each thread opens from local
    # ports whose steering hash is its own, and every message gets its 2xx.
    out, err = run_loadgen(netns, ["--target", f"{PEER_IP}:{SINK_PORT}", "--threads", 2,
                                   "--connections", 8, "--messages", 400, "--per-conn", 10,
                                   "--size", "4k", "--timeout", 60])
    assert_all_ok(out, 400)
    opens = [int(n) for n in re.findall(r"dpdk thread \d+: .*? active_opens=(\d+)", err)]
    assert len(opens) == 2 and all(n > 0 for n in opens), opens
    assert sum(opens) == out["connects"], (opens, out)


def test_connect_refused(netns):
    # Nothing listens on the port: the kernel answers the SYN with RST,ACK
    # (RFC 9293 3.10.7.3: acceptable ACK, so "connection refused").
    t0 = time.monotonic()
    out, err = run_loadgen(netns, ["--target", f"{PEER_IP}:2599", "--connections", 2,
                                   "--duration", 1, "--timeout", 20], status=1)
    assert time.monotonic() - t0 < 20
    assert out["ok"] == 0, out
    assert out["errors"]["connect_refused"] > 0, out
    c = stack_counters(err)
    assert c["connects_failed"] == out["errors"]["connect_refused"], (c, out)
    assert c["resets"] >= c["connects_failed"], c


def test_syn_retransmitted_until_connect_timeout(netns):
    # 198.18.9.9 is off-link: the SYN goes to --gateway (the kernel side),
    # which does not forward, so no SYN-ACK ever comes.  In 3.5 s the SYN
    # leaves at 0, 1 s and 3 s (RFC 6298 2.1 and 5.5); then the session's
    # connect timeout gives up.
    out, err = run_loadgen(netns, ["--target", "198.18.9.9:25", "--gateway", PEER_IP,
                                   "--connections", 1, "--duration", 1, "--reply-timeout", 3.5,
                                   "--timeout", 20], status=1)
    assert out["ok"] == 0 and out["connects"] == 0, out
    assert out["errors"]["timeout"] >= 1, out
    c = stack_counters(err)
    assert c["active_opens"] >= 1, c
    assert 2 <= c["syn_rtx"] <= 3 * c["active_opens"], c


def memif_run(netns, workdir, lg_args, pd_settings=None, threads=1, lg_ip=PEER_IP,
              target=f"{SERVER_IP}:25"):
    """pigeond (DPDK backend, net_memif role=server) and pigeon-loadgen (role=client,
    --ip lg_ip, none when lg_ip is None) over a memif socket in the test's temp dir; pigeond stopped with
    SIGTERM at the end.  Returns (loadgen JSON, loadgen stderr, pigeond log, stored
    queue ids)."""
    sock = workdir / "memif.sock"
    spool = workdir / "spool"
    log_path = workdir / "pigeond.log"
    pd_log = open(log_path, "wb")
    pd_eal = (f"--no-huge --no-pci -m 512 --file-prefix={netns.name}-pd --no-shconf "
              f"--vdev=net_memif0,role=server,socket={sock}")
    settings = {
        "backend": "dpdk", "dpdk.eal": pd_eal, "dpdk.ip": f"{SERVER_IP}/{PREFIX}",
        "listen": f"{SERVER_IP}:25", "dpdk.idle_sleep_us": "20", "dpdk.mbufs": "8191",
        "spool.dir": str(spool), "domains": DOMAIN, "hostname": "mx.pigeonair.test",
        "log.level": "info", **(pd_settings or {}),
    }
    argv = [str(helpers.binary("pigeond"))]
    for k, v in settings.items():
        argv += ["-o", f"{k}={v}"]
    pd = netns.popen(argv, stdout=pd_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "info: ready " not in log_path.read_text(errors="replace"):
            assert pd.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "pigeond not ready in 30 s"
            time.sleep(0.1)
        lg_eal = (f"--no-huge --no-pci -m 256 --file-prefix={netns.name}-lg --no-shconf "
                  f"--vdev=net_memif0,role=client,socket={sock}")
        out, err = run_loadgen(netns, ["--target", target, "--domains", DOMAIN,
                                       "--threads", threads, "--timeout", 90, *lg_args],
                               eal=lg_eal, ip=lg_ip and f"{lg_ip}/{PREFIX}", peer_setup=False,
                               timeout=120)
        pd.send_signal(signal.SIGTERM)
        assert pd.wait(timeout=30) == 0
    finally:
        if pd.poll() is None:
            pd.kill()
            pd.wait(timeout=10)
        pd_log.close()
        for side in ("pd", "lg"):  # EAL's runtime files, had a process been killed
            shutil.rmtree(f"/var/run/dpdk/{netns.name}-{side}", ignore_errors=True)
    log = log_path.read_text(errors="replace")
    ids = {e["id"] for e in helpers.spool_ls(spool)}
    return out, err, log, ids


def loadgen_message(size):
    """The message pigeon-loadgen sends with --size size and the default
    --from (loadgen/lg_source.c's template), as stored: CRLF-terminated."""
    text = b"From: <loadgen@example.org>\r\nSubject: pigeon-loadgen\r\nMIME-Version: 1.0\r\n\r\n"
    n = 0
    while len(text) < size:
        if n % 64 == 63:
            line = ".\r\n"
        else:
            filler = ("the quick brown fox jumps over the lazy dog, pigeon-loadgen filler text"
                      )[:66]
            line = ("." if n % 16 == 15 else "") + f"{n:06d} {filler:<66}\r\n"
        text += line.encode()
        n += 1
    text = text[:size]
    return text if text.endswith(b"\r\n") else text + b"\r\n"


def pigeond_syns(log):
    return sum(int(n) for n in re.findall(r"dpdk worker \d+: .*? syns=(\d+)", log))


def test_loadgen_memif_to_pigeond(binaries, netns, workdir):
    out, err, log, ids = memif_run(netns, workdir, ["--connections", 4, "--messages", 300,
                                                    "--size", "4k"])
    assert_all_ok(out, 300)
    # Every 250 the loadgen counted is a message in pigeond's spool, once.
    assert len(ids) == 300, (len(ids), log[-3000:])
    assert pigeond_syns(log) == out["connects"], log[-3000:]


def test_loadgen_memif_two_threads_two_workers(binaries, netns, workdir):
    # Two queue pairs each side: memif spreads flows over queues as it likes,
    # software steering brings each segment to the worker holding its TCB, and
    # the loadgen's local ports make each flow land on the thread that opened it.
    out, err, log, ids = memif_run(netns, workdir, ["--connections", 8, "--messages", 240,
                                                    "--per-conn", 6, "--size", "2k"],
                                   pd_settings={"workers": "2"}, threads=2)
    assert_all_ok(out, 240)
    assert len(ids) == 240, (len(ids), log[-3000:])
    assert pigeond_syns(log) == out["connects"], log[-3000:]
    per_worker = re.findall(r"dpdk worker (\d+): .*? conns=(\d+)", log)
    assert len(per_worker) == 2 and all(int(n) > 0 for _, n in per_worker), per_worker


def test_loadgen_memif_loss_sack_recovery(binaries, netns, workdir):
    # pigeond loses 2% of what it receives (dpdk.impair): its duplicate ACKs
    # carry SACK blocks, the loadgen's stack enters fast retransmit and
    # resends only the holes (RFC 2018, RFC 6675), and every message arrives.
    out, err, log, ids = memif_run(netns, workdir, ["--connections", 4, "--messages", 30,
                                                    "--size", "100k"],
                                   pd_settings={"dpdk.impair": "loss=2"})
    assert_all_ok(out, 30)
    assert len(ids) == 30, (len(ids), log[-3000:])
    c = stack_counters(err)
    assert c["fast_rtx"] > 0 and c["sack_skipped"] > 0, c


def test_loadgen_memif_three_local_addresses(binaries, netns, workdir):
    # --ip-count 3: the loadgen's stack owns .10, .11 and .12 (SERVER_IP, .2, is
    # not among them); all three exempt from pigeond's per-address limits, as
    # one client address is in the other tests.  pigeond must resolve each by ARP to answer its SYNs, and
    # each thread's opens take the addresses in turn, so the Received: headers
    # in the spool name all three, and every message is still 2xx.  Two threads
    # and two workers: the port picker per address still lands each flow on
    # the thread that opened it.
    base = "198.18.0.10"
    ours = {"198.18.0.10", "198.18.0.11", "198.18.0.12"}
    out, err, log, ids = memif_run(
        netns, workdir, ["--connections", 6, "--messages", 120, "--per-conn", 5,
                         "--size", "2k", "--ip-count", 3],
        pd_settings={"workers": "2", "limits.exempt": f"127.0.0.0/8,::1,{base}/24"},
        threads=2, lg_ip=base)
    assert_all_ok(out, 120)
    assert len(ids) == 120, (len(ids), log[-3000:])
    assert pigeond_syns(log) == out["connects"], log[-3000:]
    seen = {}
    for e in helpers.spool_ls(workdir / "spool"):
        head = helpers.spool_show(workdir / "spool", e["id"], e["shard"])
        m = re.search(rb"Received: from [^\r\n]*\(\[([0-9.]+)\]\)", head)
        assert m, head[:500]
        addr = m.group(1).decode()
        seen[addr] = seen.get(addr, 0) + 1
    assert set(seen) == ours, seen
    # 24 connections over 3 addresses, in turn per thread: none is left far behind.
    assert all(n >= 120 // 3 // 2 for n in seen.values()), seen
    c = stack_counters(err)
    assert c["connects_failed"] == 0, c


def test_loadgen_memif_ipv6_impaired(binaries, netns, workdir):
    # IPv6 end to end on both stacks: the loadgen's address passes DAD, its
    # active opens resolve pigeond by Neighbor Discovery and go out over
    # IPv6 (tcp_connect6), pigeond loses and reorders what it receives and
    # sends (dpdk.impair), and every message is stored intact, once, with
    # the loadgen's IPv6 address in its Received: header.
    out, err, log, ids = memif_run(
        netns, workdir, ["--connections", 4, "--messages", 120, "--per-conn", 10,
                         "--size", "8k", "--ip6", f"{PEER_IP6}/{PREFIX6}"],
        pd_settings={"dpdk.ip6": f"{SERVER_IP6}/{PREFIX6}", "listen": f"[{SERVER_IP6}]:25",
                     "dpdk.impair": "loss=2,reorder=5", "limits.exempt": f"{PEER_IP6}"},
        target=f"[{SERVER_IP6}]:25")
    assert_all_ok(out, 120)
    assert len(ids) == 120, (len(ids), log[-3000:])
    assert pigeond_syns(log) >= out["connects"], log[-3000:]
    c = stack_counters(err)
    assert c["connects_failed"] == 0, c
    assert c["retransmits"] > 0, c  # the impairment did cost segments
    # Intact: every copy is our Received: header and then what the loadgen
    # sent.  Byte for byte in a sample (each `spool show` opens the spool:
    # 0.15 s), by size in all: the header's length differs between messages
    # only by the recipient's (spool ls gives the size and the recipient).
    want = loadgen_message(8192)
    spool = workdir / "spool"
    entries = sorted(helpers.spool_ls(spool), key=lambda e: e["id"])
    header = None
    for e in entries[::12]:
        msg = helpers.spool_show(spool, e["id"], e["shard"])
        m = re.match(rb"Received: from [^\r\n]*\(\[([^\]]+)\]\)\r\n(?:\t[^\r\n]*\r\n)+", msg)
        assert m and m.group(1) == PEER_IP6.encode(), msg[:500]
        assert msg[m.end():] == want, (e["id"], len(msg) - m.end(), len(want))
        assert e["size"] == len(msg), (e, len(msg))
        header = header or m.end() - len(e["rcpt"][0])
    for e in entries:
        assert e["size"] == header + len(e["rcpt"][0]) + len(want), e


def test_loadgen_memif_ipv6_only_three_addresses(binaries, netns, workdir):
    # No --ip: the loadgen's stack is IPv6 only.  --ip6-count 3 gives it
    # ::10, ::11 and ::12, each through DAD, each resolved by pigeond with
    # Neighbor Discovery, and the active opens take them in turn (all three
    # in the /64 pigeond counts one client by: exempted, as in the others).
    ours = {"2001:db8::10", "2001:db8::11", "2001:db8::12"}
    out, err, log, ids = memif_run(
        netns, workdir, ["--connections", 6, "--messages", 60, "--per-conn", 5,
                         "--size", "2k", "--ip6", f"2001:db8::10/{PREFIX6}", "--ip6-count", 3],
        pd_settings={"dpdk.ip6": f"{SERVER_IP6}/{PREFIX6}", "listen": f"[{SERVER_IP6}]:25",
                     "limits.exempt": f"127.0.0.0/8,::1,2001:db8::/{PREFIX6}"},
        lg_ip=None, target=f"[{SERVER_IP6}]:25")
    assert_all_ok(out, 60)
    assert len(ids) == 60, (len(ids), log[-3000:])
    assert "no IPv4 address, IPv6 only" in err, err[-2000:]
    seen = {}
    for e in helpers.spool_ls(workdir / "spool"):
        head = helpers.spool_show(workdir / "spool", e["id"], e["shard"])
        m = re.search(rb"Received: from [^\r\n]*\(\[([0-9a-f:]+)\]\)", head)
        assert m, head[:500]
        addr = m.group(1).decode()
        seen[addr] = seen.get(addr, 0) + 1
    assert set(seen) == ours, seen
    # 12 connections over 3 addresses in turn: 4 each, 5 messages each.
    assert all(n >= 60 // 3 // 2 for n in seen.values()), seen
    c = stack_counters(err)
    assert c["connects_failed"] == 0, c


def test_loadgen_ip_count_must_fit_prefix(netns):
    # 198.18.0.254 + 3 runs past the /24: refused at start-up, nothing sent.
    r = subprocess.run(netns.wrap_client([loadgen(), "--eal", netns.eal_args(), "--ip",
                                          "198.18.0.254/24", "--ip-count", "3", "--target",
                                          f"{PEER_IP}:{SINK_PORT}", "--messages", 1]),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "3 addresses from 198.18.0.254: at most 64, all in the /24" in r.stderr, r.stderr[-2000:]
