"""Crafted TCP segments against pigeond's DPDK stack, run inside the test's
network namespace (`ip netns exec NS /usr/bin/python3 dpdk_scapy.py SCENARIO
IFACE SERVER_MAC [ARG]`); prints one JSON object with what was observed.

The crafted peer uses an address of its own (198.18.0.77) that the kernel
side of the TAP does not have, so the kernel never answers (or resets) the
engine's segments to it; the script announces it to the engine with an ARP
request first.  Flood sources are off-link (198.19.0.0/16): the engine drops
its SYN-ACKs to them for want of a route, and nothing leaves the namespace.
Every wait is bounded.
"""

import json
import queue
import random
import struct
import sys
import time

from scapy.all import ARP, IP, TCP, AsyncSniffer, Ether, conf, get_if_hwaddr  # noqa: E402

conf.verb = 0
SRC = "198.18.0.77"
DST = "198.18.0.2"
PORT = 25


class Peer:
    def __init__(self, iface, server_mac):
        self.iface = iface
        self.mac = get_if_hwaddr(iface)
        self.server_mac = server_mac
        self.sock = conf.L2socket(iface=iface)
        self.q = queue.Queue()
        # A kernel BPF filter, so that our own frames (a flood) cannot fill the
        # capture socket's buffer and crowd out the engine's answers.
        self.sniffer = AsyncSniffer(iface=iface, store=False, prn=self.q.put,
                                    filter=f"ip src {DST} and ip dst {SRC}",
                                    lfilter=lambda p: IP in p and p[IP].src == DST and
                                    p[IP].dst == SRC)
        self.sniffer.start()
        time.sleep(0.5)
        self.sock.send(Ether(src=self.mac, dst="ff:ff:ff:ff:ff:ff") /
                       ARP(op=1, hwsrc=self.mac, psrc=SRC, pdst=DST))
        time.sleep(0.2)

    def close(self):
        self.sniffer.stop()
        self.sock.close()

    def send_ip(self, pkt):
        self.sock.send(Ether(src=self.mac, dst=self.server_mac) / pkt)

    def expect(self, pred=lambda p: True, timeout=2.0):
        """The next segment from the engine that satisfies pred, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                p = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if TCP in p and pred(p):
                return p

    def drain(self, wait=0.3):
        time.sleep(wait)
        out = []
        while not self.q.empty():
            out.append(self.q.get())
        return out


class Conn:
    def __init__(self, peer, sport=None, dport=PORT):
        self.p = peer
        self.sport = sport or random.randint(20000, 60000)
        self.dport = dport
        self.seq = random.randint(1, 2**31)
        self.rcv_nxt = None

    def seg(self, flags, data=b"", seq=None, ack=None, win=65535, options=None, chksum=None):
        t = TCP(sport=self.sport, dport=self.dport, flags=flags,
                seq=self.seq if seq is None else seq,
                ack=(self.rcv_nxt or 0) if ack is None else ack, window=win,
                options=options or [])
        if chksum is not None:
            t.chksum = chksum
        pkt = IP(src=SRC, dst=DST) / t
        if data:
            pkt = pkt / data
        self.p.send_ip(pkt)

    def mine(self, p):
        return p[TCP].dport == self.sport and p[TCP].sport == self.dport

    def handshake(self, win=65535, options=None):
        # Like any TCP, retransmit the SYN when no SYN-ACK comes (RFC 6298 2.1 says 1 s).
        for _ in range(3):
            self.seg("S", options=options if options is not None else
                     [("MSS", 1460), ("SAckOK", b"")])
            sa = self.p.expect(lambda p: self.mine(p) and p[TCP].flags == "SA", 1.0)
            if sa is not None:
                break
        assert sa is not None, "no SYN-ACK"
        self.seq += 1
        self.rcv_nxt = sa[TCP].seq + 1
        self.seg("A", win=win)
        return sa

    def read_reply(self, timeout=3.0):
        """Collects data until a line ending in CRLF arrives; ACKs it."""
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.p.expect(lambda p: self.mine(p) and len(p[TCP].payload) > 0,
                              deadline - time.monotonic())
            if p is None:
                break
            if p[TCP].seq == self.rcv_nxt:
                chunk = bytes(p[TCP].payload)
                data += chunk
                self.rcv_nxt += len(chunk)
                self.seg("A")
            if data.endswith(b"\r\n"):
                break
        return data

    def send_data(self, data):
        self.seg("PA", data)
        self.seq += len(data)


def bad_checksum(peer):
    c1, c2, c3 = Conn(peer), Conn(peer), Conn(peer)
    c1.seg("S", chksum=0xdead)
    r1 = peer.expect(lambda p: c1.mine(p), 1.5)
    # A bad IP header checksum.
    pkt = IP(src=SRC, dst=DST, chksum=0xbeef) / TCP(sport=c2.sport, dport=PORT, flags="S",
                                                    seq=c2.seq)
    peer.send_ip(pkt)
    r2 = peer.expect(lambda p: c2.mine(p), 1.5)
    sa = c3.handshake()
    c3.seg("R")
    return {"bad_tcp_answered": r1 is not None, "bad_ip_answered": r2 is not None,
            "good_answered": sa is not None}


def closed_port(peer):
    c = Conn(peer, dport=26)
    c.seg("S")
    r = peer.expect(lambda p: c.mine(p), 2.0)
    return {"flags": str(r[TCP].flags) if r else None,
            "ack_ok": bool(r) and r[TCP].ack == c.seq + 1}


def rst(peer):
    c = Conn(peer)
    c.handshake()
    banner = c.read_reply()
    out = {"banner": banner.decode(errors="replace")}
    # Out of the window: ignored, no answer at all.
    c.seg("R", seq=c.seq + 5_000_000)
    out["out_of_window_answer"] = peer.expect(lambda p: c.mine(p), 1.0) is not None
    # In the window but not RCV.NXT: a challenge ACK for RCV.NXT (RFC 5961 3.2).
    c.seg("R", seq=c.seq + 10)
    ch = peer.expect(lambda p: c.mine(p), 2.0)
    out["challenge_flags"] = str(ch[TCP].flags) if ch else None
    out["challenge_ack_is_rcv_nxt"] = bool(ch) and ch[TCP].ack == c.seq
    # The connection survived both.
    c.send_data(b"NOOP\r\n")
    out["noop_after"] = c.read_reply().decode(errors="replace")
    # Exactly RCV.NXT: the connection is reset; more data then gets a RST.
    c.seg("R")
    time.sleep(0.3)
    peer.drain(0.1)
    c.send_data(b"NOOP\r\n")
    r = peer.expect(lambda p: c.mine(p), 2.0)
    out["after_reset_flags"] = str(r[TCP].flags) if r else None
    return out


def challenge_limit(peer, n):
    """n in-window RSTs not at RCV.NXT in a burst: how many challenge ACKs come
    back (RFC 5961 7 limits them), and whether the connection survived."""
    c = Conn(peer)
    c.handshake()
    out = {"banner": c.read_reply().decode(errors="replace")}
    peer.drain(0.1)
    for i in range(n):
        c.seg("R", seq=c.seq + 10 + i)
    acks = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        p = peer.expect(lambda p: c.mine(p), deadline - time.monotonic())
        if p is None:
            break
        if str(p[TCP].flags) == "A" and p[TCP].ack == c.seq:
            acks += 1
    out["challenge_acks"] = acks
    c.send_data(b"NOOP\r\n")
    out["noop_after"] = c.read_reply().decode(errors="replace")
    c.seg("R")
    return out


def reassembly(peer):
    c = Conn(peer)
    c.handshake()
    c.read_reply()
    base = c.seq
    data = b"NOOP\r\nNOOP\r\n"
    out = {}
    # Out of order first: [4, 10) then overlapping [8, 12).
    c.seg("PA", data[4:10], seq=base + 4)
    d = peer.expect(lambda p: c.mine(p), 2.0)
    out["dup_ack"] = bool(d) and d[TCP].ack == base
    sack = [o for o in (d[TCP].options if d else []) if o[0] == "SAck"]
    out["sack"] = [list(map(lambda v: v - base, sack[0][1]))] if sack else []
    c.seg("PA", data[8:12], seq=base + 8)
    peer.drain(0.3)
    # The hole, overlapping what is held: [0, 6).
    c.seg("PA", data[0:6], seq=base)
    c.seq = base + len(data)
    replies = c.read_reply()
    replies += c.read_reply(1.5)
    out["replies"] = replies.decode(errors="replace")
    out["final_ack_ok"] = c.rcv_nxt is not None
    c.seg("R")
    return out


def zero_window(peer):
    c = Conn(peer)
    c.handshake(win=0)
    data_during = 0
    probes = 0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        p = peer.expect(lambda p: c.mine(p), deadline - time.monotonic())
        if p is None:
            break
        if len(p[TCP].payload) > 0:
            data_during += len(p[TCP].payload)
        else:
            probes += 1
            c.seg("A", win=0)  # still closed
    c.seg("A", win=65535)  # open the window
    banner = c.read_reply(3.0)
    c.seg("R")
    return {"data_during_zero_window": data_during, "probes": probes,
            "banner_after_open": banner.decode(errors="replace")}


def lost_final_ack(peer):
    """The handshake's last ACK is lost: the SYN queue retransmits the SYN-ACK (SMTP is
    server-speaks-first: without it the client would wait for a banner forever)."""
    c = Conn(peer)
    c.seg("S", options=[("MSS", 1460)])
    sa = peer.expect(lambda p: c.mine(p) and p[TCP].flags == "SA", 2.0)
    t0 = time.monotonic()
    again = peer.expect(lambda p: c.mine(p) and p[TCP].flags == "SA", 3.0)
    out = {"first": sa is not None, "retransmitted": again is not None,
           "after_s": round(time.monotonic() - t0, 2),
           "same_isn": bool(sa and again) and sa[TCP].seq == again[TCP].seq}
    if again is not None:
        c.seq += 1
        c.rcv_nxt = again[TCP].seq + 1
        c.seg("A")
        out["banner"] = c.read_reply().decode(errors="replace")
        c.seg("R")
    return out


def time_wait(peer, msl_ms):
    """The engine closes first (221 after QUIT), so it holds TIME_WAIT for 2*MSL: a
    retransmitted FIN is ACKed again; after 2*MSL the tuple is unknown (RST)."""
    c = Conn(peer)
    c.handshake()
    c.read_reply()
    c.send_data(b"QUIT\r\n")
    out = {"quit": c.read_reply().decode(errors="replace")}
    fin = peer.expect(lambda p: c.mine(p) and "F" in str(p[TCP].flags), 3.0)
    out["engine_fin"] = fin is not None
    if fin is None:
        return out
    c.rcv_nxt = fin[TCP].seq + len(fin[TCP].payload) + 1
    c.seg("FA")  # ACK its FIN and close ours: the engine is now in TIME_WAIT
    a1 = peer.expect(lambda p: c.mine(p), 2.0)
    out["fin_acked"] = bool(a1) and a1[TCP].ack == c.seq + 1
    c.seg("FA")  # as if that ACK was lost
    a2 = peer.expect(lambda p: c.mine(p), 2.0)
    out["fin_reacked"] = bool(a2) and str(a2[TCP].flags) == "A" and a2[TCP].ack == c.seq + 1
    time.sleep(2 * msl_ms / 1000 + 0.5)
    c.seq += 1
    c.seg("A")
    r = peer.expect(lambda p: c.mine(p), 2.0)
    out["after_2msl"] = str(r[TCP].flags) if r else None
    return out


def csum(b):
    """The Internet checksum of b (RFC 1071), for frames crafted without scapy (floods)."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def syn_flood(peer, count):
    """count SYNs from random off-link sources, as fast as the socket takes them."""
    rnd = random.Random(4)
    sent = 0
    t0 = time.monotonic()
    tmpl = Ether(src=peer.mac, dst=peer.server_mac) / IP(src="198.19.0.1", dst=DST) / \
        TCP(sport=1, dport=PORT, flags="S", seq=1, options=[("MSS", 1460)])
    raw = bytearray(bytes(tmpl))
    ip_off, tcp_off = 14, 34
    while sent < count:
        src = bytes([198, 19, rnd.randrange(256), rnd.randrange(1, 255)])
        raw[ip_off + 12:ip_off + 16] = src
        raw[ip_off + 10:ip_off + 12] = b"\0\0"
        raw[ip_off + 10:ip_off + 12] = struct.pack("!H", csum(bytes(raw[ip_off:tcp_off])))
        raw[tcp_off:tcp_off + 2] = struct.pack("!H", rnd.randrange(1024, 65535))
        raw[tcp_off + 4:tcp_off + 8] = struct.pack("!I", rnd.randrange(2**32))
        raw[tcp_off + 16:tcp_off + 18] = b"\0\0"
        seg = bytes(raw[tcp_off:])
        pseudo = src + bytes([198, 18, 0, 2]) + struct.pack("!BBH", 0, 6, len(seg))
        raw[tcp_off + 16:tcp_off + 18] = struct.pack("!H", csum(pseudo + seg))
        peer.sock.send(bytes(raw))
        sent += 1
    return {"sent": sent, "seconds": round(time.monotonic() - t0, 2)}


def cookie(peer, flood):
    out = syn_flood(peer, flood)
    out.update(served(Conn(peer)))
    return out


def served(c):
    """A client after a flood: its SYN-ACK's options (a cookie carries MSS alone), the
    banner and a NOOP's reply."""
    out = {}
    sa = c.handshake(options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7),
                              ("Timestamp", (12345, 0))])
    out["synack_options"] = [o[0] for o in sa[TCP].options]
    out["banner"] = c.read_reply().decode(errors="replace")
    c.send_data(b"NOOP\r\n")
    out["noop"] = c.read_reply().decode(errors="replace")
    c.seg("R")
    return out


def main():
    scenario, iface, server_mac = sys.argv[1:4]
    arg = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    peer = Peer(iface, server_mac)
    try:
        fn = {"bad_checksum": bad_checksum, "closed_port": closed_port, "rst": rst,
              "reassembly": reassembly, "zero_window": zero_window,
              "lost_final_ack": lost_final_ack}.get(scenario)
        if fn is not None:
            res = fn(peer)
        elif scenario == "syn_flood":
            res = syn_flood(peer, arg)
        elif scenario == "time_wait":
            res = time_wait(peer, arg)
        elif scenario == "cookie":
            res = cookie(peer, arg)
        elif scenario == "challenge_limit":
            res = challenge_limit(peer, arg)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    finally:
        peer.close()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
