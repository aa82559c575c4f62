"""Crafted IPv6 packets against pigeond's DPDK stack, run inside the test's
network namespace (`ip netns exec NS /usr/bin/python3 dpdk_scapy6.py IFACE
SERVER_MAC SCENARIO...`); prints one JSON object, one entry per scenario,
with what was observed.

The crafted peer uses addresses of its own (2001:db8::77, ::78) that the
kernel side of the TAP does not have, so the kernel never answers (or
resets) the engine's segments to them; the peer answers the engine's
neighbor solicitations for them itself, and records them.  Flood sources are
off-link (2001:db9::/32): with no dpdk.gateway6 the engine has no route to
them and drops its SYN-ACKs, so nothing leaves the namespace.  Every wait is
bounded.
"""

import json
import queue
import random
import socket
import struct
import sys
import time

import dpdk_scapy
from scapy.all import AsyncSniffer, Ether, Raw, conf, get_if_hwaddr  # noqa: E402
from scapy.layers.inet import TCP
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6MLDMultAddrRec,
                                ICMPv6MLQuery2,
                                ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS, RouterAlert,
                                ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                                ICMPv6PacketTooBig, ICMPv6ParamProblem, IPv6,
                                IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, PadN, in6_getnsma, in6_getnsmac)

conf.verb = 0
SRC = "2001:db8::77"
SRC_NEW = "2001:db8::78"  # never announced: the engine must solicit it
DST = "2001:db8::2"
PORT = 25


def link_local(mac):
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return socket.inet_ntop(socket.AF_INET6, b"\xfe\x80" + b"\0" * 6 + eui)


def solicited(addr):
    return socket.inet_ntop(socket.AF_INET6, in6_getnsma(socket.inet_pton(socket.AF_INET6, addr)))


class Peer:
    def __init__(self, iface, server_mac):
        self.iface = iface
        self.mac = get_if_hwaddr(iface)
        self.server_mac = server_mac
        self.sock = conf.L2socket(iface=iface)
        self.q = queue.Queue()
        self.kept = []
        self.ns_seen = []  # the engine's solicitations for our addresses
        self.answer_for = {SRC, SRC_NEW}
        # net_tap gives the kernel side the port's MAC: tell the engine's packets by
        # their source address (its global one, or its link-local one), not the MAC.
        ours = {DST, link_local(server_mac)}
        self.sniffer = AsyncSniffer(iface=iface, store=False, prn=self._rx, filter="ip6",
                                    lfilter=lambda p: IPv6 in p and p[IPv6].src in ours)
        self.sniffer.start()
        time.sleep(0.5)
        # Announce SRC: an NS for the engine's address with our link-layer address.
        self.send_ip(IPv6(src=SRC, dst=solicited(DST), hlim=255) /
                     ICMPv6ND_NS(tgt=DST) / ICMPv6NDOptSrcLLAddr(lladdr=self.mac),
                     dst_mac=in6_getnsmac(socket.inet_pton(socket.AF_INET6, solicited(DST))))
        time.sleep(0.2)

    def _rx(self, p):
        if ICMPv6ND_NS in p and p[ICMPv6ND_NS].tgt in self.answer_for:
            self.ns_seen.append({"tgt": p[ICMPv6ND_NS].tgt, "dst": p[IPv6].dst,
                                 "src": p[IPv6].src, "hlim": p[IPv6].hlim})
            self.sock.send(Ether(src=self.mac, dst=p[Ether].src) /
                           IPv6(src=p[ICMPv6ND_NS].tgt, dst=p[IPv6].src, hlim=255) /
                           ICMPv6ND_NA(tgt=p[ICMPv6ND_NS].tgt, R=0, S=1, O=1) /
                           ICMPv6NDOptDstLLAddr(lladdr=self.mac))
            return
        self.q.put(p)

    def close(self):
        self.sniffer.stop()
        self.sock.close()

    def send_ip(self, pkt, dst_mac=None):
        self.sock.send(Ether(src=self.mac, dst=dst_mac or self.server_mac) / pkt)

    def expect(self, pred=lambda p: True, timeout=2.0):
        """The next packet from the engine that satisfies pred, or None; the others are
        kept for a later expect() (an error may come while a SYN-ACK is awaited)."""
        for i, p in enumerate(self.kept):
            if pred(p):
                return self.kept.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                p = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if pred(p):
                return p
            self.kept.append(p)

    def drain(self, wait=0.3):
        time.sleep(wait)
        while not self.q.empty():
            self.q.get()
        self.kept = []


class Conn(dpdk_scapy.Conn):
    """dpdk_scapy's connection (handshake, replies, data) over IPv6 from src."""

    def __init__(self, peer, src=SRC, sport=None, dport=PORT):
        super().__init__(peer, sport=sport, dport=dport)
        self.src = src

    def tcp(self, flags, seq=None, ack=None, win=65535, options=None):
        return TCP(sport=self.sport, dport=self.dport, flags=flags,
                   seq=self.seq if seq is None else seq,
                   ack=(self.rcv_nxt or 0) if ack is None else ack, window=win,
                   options=options or [])

    def seg(self, flags, data=b"", **kw):
        pkt = IPv6(src=self.src, dst=DST) / self.tcp(flags, **kw)
        if data:
            pkt = pkt / data
        self.p.send_ip(pkt)

    def mine(self, p):
        return TCP in p and super().mine(p)

    def synack(self, timeout):
        return self.p.expect(lambda p: self.mine(p) and p[TCP].flags == "SA", timeout)


def nd(peer):
    out = {}
    # An NS for our address: a solicited, overriding NA from that address, with our MAC.
    peer.drain(0.1)
    peer.send_ip(IPv6(src=SRC, dst=solicited(DST), hlim=255) / ICMPv6ND_NS(tgt=DST) /
                 ICMPv6NDOptSrcLLAddr(lladdr=peer.mac),
                 dst_mac=in6_getnsmac(socket.inet_pton(socket.AF_INET6, solicited(DST))))
    na = peer.expect(lambda p: ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == DST, 2.0)
    out["na"] = na is not None
    if na is not None:
        out["na_flags"] = {"R": int(na[ICMPv6ND_NA].R), "S": int(na[ICMPv6ND_NA].S),
                           "O": int(na[ICMPv6ND_NA].O)}
        out["na_dst"] = na[IPv6].dst
        out["na_src"] = na[IPv6].src
        out["na_hlim"] = na[IPv6].hlim
        out["na_lladdr"] = (na[ICMPv6NDOptDstLLAddr].lladdr
                            if ICMPv6NDOptDstLLAddr in na else None)
    # Not from the link (hop limit 64), and for an address not ours: no answer.
    peer.send_ip(IPv6(src=SRC, dst=solicited(DST), hlim=64) / ICMPv6ND_NS(tgt=DST),
                 dst_mac=in6_getnsmac(socket.inet_pton(socket.AF_INET6, solicited(DST))))
    peer.send_ip(IPv6(src=SRC, dst=DST, hlim=255) / ICMPv6ND_NS(tgt="2001:db8::99"))
    out["bad_answered"] = peer.expect(lambda p: ICMPv6ND_NA in p, 1.0) is not None
    # A DAD probe for our (preferred) address: we defend it with an NA to all-nodes.
    peer.send_ip(IPv6(src="::", dst=solicited(DST), hlim=255) / ICMPv6ND_NS(tgt=DST),
                 dst_mac=in6_getnsmac(socket.inet_pton(socket.AF_INET6, solicited(DST))))
    d = peer.expect(lambda p: ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == DST, 2.0)
    out["dad_defended"] = bool(d) and d[IPv6].dst == "ff02::1" and int(d[ICMPv6ND_NA].S) == 0
    # A router advertisement: never trusted (counted, nothing changes).
    peer.send_ip(IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(),
                 dst_mac="33:33:00:00:00:01")
    # Our NS for a peer we never heard from: a SYN from SRC_NEW; its SYN-ACK needs ND.
    c = Conn(peer, src=SRC_NEW)
    c.seg("S", options=[("MSS", 1440)])
    sa = c.synack(4.0)  # the first SYN-ACK waits for the NA; the SYN queue resends it
    out["new_peer_synack"] = sa is not None
    out["ns_for_new_peer"] = [n for n in peer.ns_seen if n["tgt"] == SRC_NEW]
    out["solicited_node_of_new_peer"] = solicited(SRC_NEW)
    c.seq += 1
    c.seg("R")
    return out


def echo(peer):
    out = {}
    peer.send_ip(IPv6(src=SRC, dst=DST) / ICMPv6EchoRequest(id=0x4242, seq=7, data=b"pigeon" * 20))
    r = peer.expect(lambda p: ICMPv6EchoReply in p, 2.0)
    out["reply"] = r is not None and r[ICMPv6EchoReply].id == 0x4242 and \
        r[ICMPv6EchoReply].seq == 7 and bytes(r[ICMPv6EchoReply].data) == b"pigeon" * 20
    # To all-nodes: answered from a unicast address of ours.
    peer.send_ip(IPv6(src=SRC, dst="ff02::1") / ICMPv6EchoRequest(id=1, seq=1),
                 dst_mac="33:33:00:00:00:01")
    r = peer.expect(lambda p: ICMPv6EchoReply in p, 2.0)
    out["group_reply_src"] = r[IPv6].src if r is not None else None
    return out


def mld(peer):
    """A general MLDv2 query from a router: our report names our solicited-node groups."""
    peer.drain(0.1)
    peer.send_ip(IPv6(src="fe80::1", dst="ff02::1", hlim=1) /
                 IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLQuery2(mrd=500),
                 dst_mac="33:33:00:00:00:01")
    r = peer.expect(lambda p: ICMPv6MLReport2 in p, 2.0)
    if r is None:
        return {"report": False}
    return {"report": True, "src": r[IPv6].src, "dst": r[IPv6].dst, "hlim": r[IPv6].hlim,
            "router_alert": IPv6ExtHdrHopByHop in r,
            # (scapy 2.5 parses the second record on as the first one's payload)
            "groups": sorted(layer.dst for rec in r[ICMPv6MLReport2].records
                             for layer in rec.iterpayloads()
                             if isinstance(layer, ICMPv6MLDMultAddrRec))}


def echo_dup(peer):
    """Echo requests to 2001:db8::3 (failed DAD: never answered) and to DST."""
    out = {}
    for name, dst in (("dup", "2001:db8::3"), ("ok", DST)):
        peer.send_ip(IPv6(src=SRC, dst=dst) / ICMPv6EchoRequest(id=9, seq=len(out)))
        out[name] = peer.expect(lambda p: ICMPv6EchoReply in p, 1.5) is not None
    return out


def ext(peer):
    out = {}

    def syn_with(hdrs, timeout=1.5):
        c = Conn(peer)
        peer.send_ip(IPv6(src=SRC, dst=DST) / hdrs / c.tcp("S", options=[("MSS", 1440)]))
        sa = c.synack(timeout)
        if sa is not None:
            c.seq += 1
            c.seg("R")
        return sa is not None

    out["valid_chain"] = syn_with(IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 4)]) /
                                  IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 4)]))
    long_chain = IPv6ExtHdrDestOpt()
    for _ in range(8):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    out["nine_headers"] = syn_with(long_chain)
    peer.drain(0.1)
    out["routing0"] = syn_with(IPv6ExtHdrRouting(type=0, addresses=["2001:db8::99"], segleft=1))
    pp = peer.expect(lambda p: ICMPv6ParamProblem in p, 1.0)
    out["routing0_param_problem"] = [pp[ICMPv6ParamProblem].code, pp[ICMPv6ParamProblem].ptr] \
        if pp is not None else None
    out["atomic_fragment"] = syn_with(IPv6ExtHdrFragment(offset=0, m=0, id=99))
    # Two overlapping fragments of one SYN: never reassembled, never answered.
    c = Conn(peer)
    body = bytes(IPv6(src=SRC, dst=DST) / c.tcp("S", options=[("MSS", 1440)]))[40:]
    peer.send_ip(IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=7) /
                 Raw(body[:16]))
    peer.send_ip(IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(nh=6, offset=1, m=0, id=7) /
                 Raw(body[8:]))
    out["overlapping_fragments"] = c.synack(1.5) is not None
    # An unknown next header: parameter problem code 1 at the field that named it.
    peer.drain(0.1)
    peer.send_ip(IPv6(src=SRC, dst=DST, nh=253) / Raw(b"\0" * 16))
    pp = peer.expect(lambda p: ICMPv6ParamProblem in p, 1.5)
    out["unknown_nh_param_problem"] = [pp[ICMPv6ParamProblem].code, pp[ICMPv6ParamProblem].ptr] \
        if pp is not None else None
    return out


def tcp(peer):
    out = {}
    c = Conn(peer)
    sa = c.handshake(options=[("MSS", 1440), ("SAckOK", b""), ("WScale", 7),
                              ("Timestamp", (1, 0))])
    out["synack_mss"] = dict((k, v) for k, v in sa[TCP].options if k == "MSS").get("MSS")
    out["banner"] = c.read_reply().decode(errors="replace")
    c.send_data(b"EHLO crafted.example\r\n")
    out["ehlo"] = c.read_reply().decode(errors="replace")
    c.send_data(b"QUIT\r\n")
    out["quit"] = c.read_reply().decode(errors="replace")
    fin = peer.expect(lambda p: c.mine(p) and "F" in str(p[TCP].flags), 3.0)
    out["engine_fin"] = fin is not None
    if fin is not None:
        c.rcv_nxt = fin[TCP].seq + len(fin[TCP].payload) + 1
        c.seg("FA")
        a = peer.expect(lambda p: c.mine(p), 2.0)
        out["fin_acked"] = bool(a) and a[TCP].ack == c.seq + 1
    # A closed port: RST.
    d = Conn(peer, dport=26)
    d.seg("S")
    r = peer.expect(lambda p: d.mine(p), 2.0)
    out["closed_port"] = str(r[TCP].flags) if r else None
    # A RST at RCV.NXT ends a connection: more data then gets a RST.
    e = Conn(peer)
    e.handshake()
    e.read_reply()
    e.seg("R")
    time.sleep(0.3)
    peer.drain(0.1)
    e.send_data(b"NOOP\r\n")
    r = peer.expect(lambda p: e.mine(p), 2.0)
    out["after_reset"] = str(r[TCP].flags) if r else None
    return out


def noop_replies(peer, c):
    """150 pipelined NOOPs on c; the segments of their replies (not acknowledged), within 3 s."""
    c.send_data(b"NOOP\r\n" * 150)
    segs = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and sum(len(p[TCP].payload) for p in segs) < 150 * 14:
        p = peer.expect(lambda p: c.mine(p) and len(p[TCP].payload) > 0, 1.0)
        if p is None:
            break
        segs.append(p)
    return segs


def ptb(peer):
    """Replies bigger than one segment, not acknowledged; a packet too big quoting the
    first lowers the connection's MSS: the resent data comes in 1220-octet segments,
    and a new connection from the same address starts with them (the path MTU kept)."""
    out = {}
    c = Conn(peer)
    c.handshake(options=[("MSS", 1440)])
    c.read_reply()
    peer.drain(0.1)
    segs = noop_replies(peer, c)
    out["sizes_before"] = [len(p[TCP].payload) for p in segs]
    if not segs:
        return out
    first = segs[0]
    quote = bytes(first[IPv6])[:1232]
    peer.send_ip(IPv6(src=SRC, dst=DST) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote))
    again = peer.expect(lambda p: c.mine(p) and p[TCP].seq == first[TCP].seq and
                        len(p[TCP].payload) > 0, 2.0)
    out["resent_size"] = len(again[TCP].payload) if again is not None else None
    # A packet too big quoting a sequence number never sent: ignored (RFC 5927).
    c.seg("R", seq=c.seq)
    # A new connection from the same peer starts with the path MTU its address
    # taught (RFC 8201 5.2): its first replies come in 1220-octet segments.
    c2 = Conn(peer)
    c2.handshake(options=[("MSS", 1440)])
    c2.read_reply()
    peer.drain(0.1)
    out["new_conn_sizes"] = [len(p[TCP].payload) for p in noop_replies(peer, c2)]
    c2.seg("R", seq=c2.seq)
    return out


def flood(peer, count):
    """count SYNs from random off-link sources, then a real client (a cookie)."""
    rnd = random.Random(6)
    tmpl = bytearray(bytes(Ether(src=peer.mac, dst=peer.server_mac) /
                           IPv6(src="2001:db9::1", dst=DST) /
                           TCP(sport=1, dport=PORT, flags="S", seq=1, options=[("MSS", 1440)])))

    ip_off, tcp_off = 14, 54
    dst = socket.inet_pton(socket.AF_INET6, DST)
    t0 = time.monotonic()
    for _ in range(count):
        src = b"\x20\x01\x0d\xb9" + bytes(rnd.randrange(256) for _ in range(12))
        tmpl[ip_off + 8:ip_off + 24] = src
        tmpl[tcp_off:tcp_off + 2] = struct.pack("!H", rnd.randrange(1024, 65535))
        tmpl[tcp_off + 4:tcp_off + 8] = struct.pack("!I", rnd.randrange(2**32))
        tmpl[tcp_off + 16:tcp_off + 18] = b"\0\0"
        seg = bytes(tmpl[tcp_off:])
        pseudo = src + dst + struct.pack("!I", len(seg)) + b"\0\0\0\x06"
        tmpl[tcp_off + 16:tcp_off + 18] = struct.pack("!H", dpdk_scapy.csum(pseudo + seg))
        peer.sock.send(bytes(tmpl))
    out = {"sent": count, "seconds": round(time.monotonic() - t0, 2)}
    out.update(dpdk_scapy.served(Conn(peer)))
    return out


def main():
    iface, server_mac = sys.argv[1:3]
    peer = Peer(iface, server_mac)
    res = {}
    try:
        for scenario in sys.argv[3:]:
            name, _, arg = scenario.partition("=")
            fn = {"nd": nd, "echo": echo, "ext": ext, "tcp": tcp, "ptb": ptb,
                  "echo_dup": echo_dup, "mld": mld}.get(name)
            if fn is not None:
                res[name] = fn(peer)
            elif name == "flood":
                res[name] = flood(peer, int(arg))
            else:
                raise SystemExit(f"unknown scenario {name}")
            peer.drain(0.2)
    finally:
        peer.close()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
