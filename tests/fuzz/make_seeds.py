#!/usr/bin/python3
"""make_seeds.py: writes the seed corpora of tests/fuzz/corpus/<target>/.

Seeds are small and meaningful: real SMTP sessions (smuggling variants
included), real frames built with scapy, a real TLS ClientHello, real
configuration, route-map and directory files, spool records encoded as
docs/spool-format.md says.  Each seed's first octets are the harness's
settings (see the comment at the top of each fuzz_*.c).  Running it again
rewrites the same files, but for the TLS ClientHellos (their random and key
share are new each time).  Crash reproducers found by
fuzzing live next to the seeds as regress-* files and are never rewritten.

    /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import os
import ssl
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- SMTP sessions: [settings][chunking][client bytes] -----------------------
NORMALIZE, TLS, TLS_REQUIRED, STORE_FAILS, SHUTDOWN, TIMEOUT, REWRITE, TRUSTED = (
    1 << i for i in range(8))
ENV = "EHLO client.example\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\n"
SMUGGLED = "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n.\r\n"
SMUGGLE_SEQS = {
    "lf-dot-lf": "\n.\n", "cr-dot-cr": "\r.\r", "cr-dot-lf": "\r.\n", "lf-dot-cr": "\n.\r",
    "lf-dot-crlf": "\n.\r\n", "crlf-dot-lf": "\r\n.\n", "cr-dot-crlf": "\r.\r\n",
    "crlf-dot-cr": "\r\n.\r", "crlf-nul-dot": "\r\n\0.\r\n", "crlf-dot-nul": "\r\n.\0\r\n",
    "crlf-dot-crcrlf": "\r\n.\r\r\n",
}


def smtp_seeds():
    s = lambda name, settings, chunk, text: write(
        "smtp_session", name, bytes([settings, chunk]) + text.encode("latin-1"))
    basic = ENV + "DATA\r\nSubject: hi\r\n\r\nbody\r\n..stuffed\r\n.\r\nQUIT\r\n"
    s("basic-whole", 0, 0, basic)
    s("basic-chunked", 0, 7, basic)
    s("basic-bytewise", STORE_FAILS, 1, basic)
    s("helo-rset-noop", 0, 3, "HELO a\r\nNOOP\r\nRSET\r\nVRFY bob\r\nHELP\r\nEXPN x\r\n"
      "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.\r\nQUIT\r\n")
    s("rcpt-verdicts", REWRITE, 5, "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n"
      "RCPT TO:<unknown@example.org>\r\nRCPT TO:<tempfail@example.org>\r\n"
      "RCPT TO:<full@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\n"
      "RCPT TO:<alias-carol@example.org>\r\nRCPT TO:<Dave@EXAMPLE.ORG>\r\n"
      "RCPT TO:<e@example.org>\r\nRCPT TO:<f@example.org>\r\nRCPT TO:<g@example.org>\r\n"
      "DATA\r\n\r\n.\r\nQUIT\r\n")
    s("bdat", 0, 9, ENV + "BDAT 5\r\nab\r\ncBDAT 3 LAST\r\n.\r\nQUIT\r\n")
    s("bdat-bare-lf", NORMALIZE, 0, ENV + "BDAT 4 LAST\r\na\nb\r")
    s("size-exceeded", 0, 0, "EHLO c\r\nMAIL FROM:<a@b> SIZE=99999999\r\nMAIL FROM:<a@b>\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\n" + "x" * 998 + "\r\n" + ("y" * 500 + "\r\n") * 8
      + ".\r\nQUIT\r\n")
    s("utf8-paused", 0, 2, "EHLO c\r\nMAIL FROM:<paused@x>\r\n"
      "MAIL FROM:<j\u00f6rg@example.net> SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
      "Subject: \u00e9\r\n\r\n.\r\nQUIT\r\n")
    s("long-line-errors", 0, 0, "EHLO " + "a" * 600 + "\r\n" + "BOGUS\r\n" * 12)
    s("sequence-errors", SHUTDOWN, 0, "DATA\r\nRCPT TO:<bob@example.org>\r\nMAIL FROM:<a@b>\r\n"
      "MAIL FROM:<a@b>\r\nEHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
      "unfinished")
    s("timeout-mid-data", TIMEOUT, 4, ENV + "DATA\r\npartial line")
    s("starttls-injection", TLS, 0, "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n")
    s("starttls-then-mail", TLS | TLS_REQUIRED, 6, "EHLO c\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n")
    for name, seq in SMUGGLE_SEQS.items():
        msg = ENV + "DATA\r\nSubject: test\r\n\r\nlegit body" + seq + SMUGGLED + "\r\n.\r\nQUIT\r\n"
        s("smuggle-" + name, 0, 0, msg)
        s("smuggle-" + name + "-normalize", NORMALIZE, 3, msg)
    s("smuggle-bdat", 0, 0, ENV + "BDAT %d LAST\r\nx\r\n.\r\n%sQUIT\r\n"
      % (len("x\r\n.\r\n" + SMUGGLED), SMUGGLED))
    s("bare-lf-commands", NORMALIZE, 0, "EHLO c\nMAIL FROM:<a@b>\rRCPT TO:<bob@example.org>\r\n")
    s("xclient", TRUSTED, 4, "EHLO lb.example\r\nXCLIENT ADDR=192.0.2.7 PORT=4000 "
      "HELO=real.example PROTO=ESMTP\r\nEHLO real.example\r\nMAIL FROM:<a@b>\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\nXCLIENT ADDR=IPV6:2001:db8::1\r\n")
    s("xclient-refused", TRUSTED, 0, "EHLO lb\r\nXCLIENT ADDR=192.0.2.66\r\nNOOP\r\n")
    s("xclient-untrusted", 0, 0, "EHLO x\r\nXCLIENT ADDR=192.0.2.7 HELO=a+20b\r\nQUIT\r\n")
    s("http-request", 0, 0, "GET / HTTP/1.1\r\nHost: mx.example.org\r\n\r\n")
    s("many-commands", 0, 0, "NOOP\r\n" * 210)
    # issue 15: only CR LF ends a command line; no extensions after HELO; no NUL in data
    s("issue15-rset-lf-mail", 0, 0, "EHLO c\r\nRSET\nMAIL FROM:<x@example.org>\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    s("issue15-rset-cr-mail-normalize", NORMALIZE, 1, "EHLO c\r\nRSET\rMAIL FROM:<x@example.org>"
      "\r\nNOOP\r\r\n\n\r\nQUIT\r\n")
    s("bdat-cr-then-lf", 0, 0, ENV + "BDAT 2\r\nx\r\nNOOP\r\nBDAT 1 LAST\r\n\nQUIT\r\n")
    s("long-line-bare-lf", 0, 5, "NOOP\n" + "x" * 600 + "\nQUIT\r\nNOOP\n" + "y" * 500
      + "\r\nNOOP\r\n")
    s("helo-no-extensions", 0, 4, "HELO c\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@b> SIZE=10\r\n"
      "MAIL FROM:<a@b> SMTPUTF8 BODY=8BITMIME\r\nMAIL FROM:<a@b>\r\n"
      "RCPT TO:<bob@example.org> NOTIFY=NEVER\r\nRCPT TO:<bob@example.org>\r\n"
      "BDAT 5 LAST\r\nRSET\rDATA\r\nx\r\n.\r\nQUIT\r\n")
    s("helo-starttls", TLS, 0, "HELO c\r\nSTARTTLS\r\nEHLO c\r\nSTARTTLS\r\nEHLO c\r\n")
    s("nul-in-data-normalize", NORMALIZE, 2, ENV + "DATA\r\na\0b\r\n.\r\n"
      "MAIL FROM:<a@b>\r\nRCPT TO:<bob@example.org>\r\nBDAT 3 LAST\r\na\0bQUIT\r\n")


# ---- TCP/IP frames: records [ctl][len16][frame] ------------------------------
def tcp_seeds():
    from scapy.layers.inet import IP, TCP, ICMP
    from scapy.layers.l2 import ARP, Ether
    our, peer, pmac = "198.18.0.2", "198.18.0.1", "02:00:00:00:00:01"
    FIX, REL, KEEPMAC = 0x01, 0x02, 0x04
    BANNER = len("220 fuzz ESMTP\r\n")

    def rec(ctl, frame):
        b = bytes(frame)
        return bytes([ctl]) + struct.pack(">H", len(b)) + b

    def eth():
        return Ether(dst="02:00:00:00:00:02", src=pmac)

    def seg(flags, seq, ack=0, data=b"", sport=40000, opts=None, win=65535):
        t = TCP(sport=sport, dport=25, flags=flags, seq=seq, ack=ack, window=win,
                options=opts or [])
        return eth() / IP(src=peer, dst=our) / t / data

    SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("WScale", 7)]
    isn = 1000
    hs = [rec(FIX, seg("S", isn, opts=SYN_OPTS)),
          rec(FIX | REL, seg("A", isn + 1, 1, opts=[("Timestamp", (1001, 0))]))]
    sess = b"".join(hs)
    ack = 1 + BANNER
    lines = [b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"QUIT\r\n"]
    seq = isn + 1
    replies = 0
    for ln in lines:
        sess += rec(FIX | REL, seg("PA", seq, ack + replies, ln, opts=[("Timestamp", (1002, 0))]))
        seq += len(ln)
        replies += len("250 ok\r\n")
    sess += rec(FIX | REL | 0x10, seg("A", seq, ack + replies + 1))
    sess += rec(FIX | REL, seg("FA", seq, ack + replies + 1))
    sess += rec(FIX | REL | 0xf0, seg("A", seq + 1, ack + replies + 1))
    write("tcp_input", "session-quit", sess)

    # No options (MSS 536), data before the handshake ACK, then out of order with SACK.
    plain = rec(FIX, seg("S", 5000)) + rec(FIX | REL, seg("A", 5001, 1))
    plain += rec(FIX | REL, seg("PA", 5011, 1 + BANNER, b"world\r\n"))
    plain += rec(FIX | REL, seg("PA", 5001, 1 + BANNER, b"hello\r\n"))
    plain += rec(FIX | REL, seg("PA", 5001, 1 + BANNER, b"hello\r\nabc"))
    plain += rec(FIX | REL | 0x40, seg("R", 5030, 0))
    write("tcp_input", "out-of-order-rst", plain)

    # Zero window from the peer, the persist timer, and retransmissions by RTO.
    zw = b"".join(hs[:1]) + rec(FIX | REL, seg("A", isn + 1, 1, win=0))
    zw += rec(FIX | REL | 0x80, seg("A", isn + 1, 1, win=0))
    zw += rec(FIX | REL | 0xc0, seg("A", isn + 1, 5, win=4))
    zw += rec(FIX | REL | 0xf0, seg("A", isn + 1, 1 + BANNER, win=100))
    write("tcp_input", "zero-window-rto", zw)

    # A SYN flood from one source: the SYN queue fills, cookies go out; one cookie ACK.
    flood = b"".join(rec(FIX, seg("S", 7000 + i, sport=41000 + i, opts=[("MSS", 1400)]))
                     for i in range(12))
    flood += rec(FIX | REL, seg("A", 7012, 1, sport=41011))
    flood += rec(FIX | 0xf0, seg("S", 9, sport=41000))
    write("tcp_input", "syn-flood-cookie", flood)

    # RFC 5961: RST and SYN in window get a challenge ACK; old duplicate; bad ack.
    rfc5961 = sess[:sum(len(h) for h in hs)]
    rfc5961 += rec(FIX | REL, seg("R", isn + 100, 0))
    rfc5961 += rec(FIX | REL, seg("S", isn + 5, 0))
    rfc5961 += rec(FIX | REL, seg("A", isn + 1, 0x7fff0000))
    rfc5961 += rec(FIX | REL, seg("PA", isn - 10, 1, b"old"))
    write("tcp_input", "rfc5961", rfc5961)

    # Our FIN first (QUIT), TIME_WAIT, then a new SYN for the same tuple.
    tw = b"".join(hs) + rec(FIX | REL, seg("PA", isn + 1, 1 + BANNER, b"QUIT\r\n"))
    tw += rec(FIX | REL, seg("FA", isn + 7, 1 + BANNER + 1))
    tw += rec(FIX | REL | 0x30, seg("FA", isn + 7, 1 + BANNER + 1))
    tw += rec(FIX | 0x20, seg("S", isn + 100000, opts=SYN_OPTS))
    write("tcp_input", "time-wait-reuse", tw)

    icmp = eth() / IP(src=peer, dst=our) / ICMP(type=8, id=1, seq=1) / b"ping"
    arp = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:09") / ARP(
        op=1, hwsrc="02:00:00:00:00:09", psrc="198.18.0.9", pdst=our)
    reply = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:07") / ARP(
        op=2, hwsrc="02:00:00:00:00:07", psrc="198.18.0.7", hwdst="02:00:00:00:00:02", pdst=our)
    frag = eth() / IP(src=peer, dst=our, flags="MF") / TCP(dport=25, flags="S")
    opts = eth() / IP(src=peer, dst=our, options=[b"\x01\x01\x01\x00"]) / TCP(dport=25, flags="S")
    other = eth() / IP(src=peer, dst="198.18.0.3") / TCP(dport=25, flags="S")
    closed = eth() / IP(src=peer, dst=our) / TCP(dport=80, flags="S")
    write("tcp_input", "l2-l3-misc",
          rec(FIX, icmp) + rec(KEEPMAC, arp) + rec(KEEPMAC, reply) + rec(FIX, frag)
          + rec(FIX, opts) + rec(FIX, other) + rec(FIX, closed) + rec(0, icmp)
          + rec(0, b"\x02\x00\x00\x00\x00\x02" + b"\x00" * 8))


def tcp6_seeds():
    """IPv6 frames for the same harness: a session, extension headers, ND, ICMPv6."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA,
                                    ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                                    ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt,
                                    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                    PadN)
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    our, peer, pmac = "2001:db8::2", "2001:db8::1", "02:00:00:00:00:01"
    FIX, REL, KEEPMAC = 0x01, 0x02, 0x04
    BANNER = len("220 fuzz ESMTP\r\n")

    def rec(ctl, frame):
        b = bytes(frame)
        return bytes([ctl]) + struct.pack(">H", len(b)) + b

    def ip6(hdrs=None, src=peer, dst=our, hlim=64):
        p = Ether(dst="02:00:00:00:00:02", src=pmac) / IPv6(src=src, dst=dst, hlim=hlim)
        return p / hdrs if hdrs is not None else p

    def seg(flags, seq, ack=0, data=b"", sport=40000, opts=None, hdrs=None):
        t = TCP(sport=sport, dport=25, flags=flags, seq=seq, ack=ack, options=opts or [])
        return ip6(hdrs) / t / data if hdrs is not None else ip6() / t / data

    SYN_OPTS = [("MSS", 1440), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("WScale", 7)]
    isn = 1000
    sess = rec(FIX, seg("S", isn, opts=SYN_OPTS))
    sess += rec(FIX | REL, seg("A", isn + 1, 1, opts=[("Timestamp", (1001, 0))]))
    sess += rec(FIX | REL, seg("PA", isn + 1, 1 + BANNER, b"NOOP\r\n" * 40,
                               opts=[("Timestamp", (1002, 0))]))
    # A packet too big quoting our reply's first segment (as the harness sends it).
    quote = bytes(IPv6(src=our, dst=peer, plen=20 + 8, nh=6) /
                  TCP(sport=25, dport=40000, flags="PA", seq=1 + BANNER))[:48]
    sess += rec(FIX | REL, ip6() / ICMPv6PacketTooBig(mtu=1280) / quote)
    sess += rec(FIX | REL | 0x20, seg("PA", isn + 241, 1 + BANNER, b"QUIT\r\n"))
    sess += rec(FIX | REL | 0xf0, seg("FA", isn + 247, 1 + BANNER + 8 * 41))
    write("tcp_input", "ipv6-session-ptb", sess)

    chains = rec(FIX, seg("S", 5, sport=41000, hdrs=IPv6ExtHdrHopByHop(
        options=[PadN(optdata=b"\0" * 4)]) / IPv6ExtHdrDestOpt()))
    long_chain = IPv6ExtHdrDestOpt()
    for _ in range(9):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    chains += rec(FIX, seg("S", 6, sport=41001, hdrs=long_chain))
    chains += rec(FIX, seg("S", 7, sport=41002, hdrs=IPv6ExtHdrRouting(
        type=0, addresses=["2001:db8::9"], segleft=1)))
    chains += rec(FIX, seg("S", 8, sport=41003, hdrs=IPv6ExtHdrFragment(offset=0, m=0)))
    chains += rec(FIX, ip6(IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=3)) / (b"\0" * 16))
    chains += rec(FIX, ip6(IPv6ExtHdrFragment(nh=6, offset=1, m=0, id=3)) / (b"\0" * 12))
    # A jumbo payload option (type 0xc2: discard with a parameter problem) by hand.
    chains += rec(FIX, ip6() / Raw(b"\x06\x00\xc2\x04\0\0\0\0") / TCP())
    chains += rec(FIX, ip6() / (b"\0" * 8))
    write("tcp_input", "ipv6-ext-headers", chains)

    nd = rec(FIX, ip6(ICMPv6EchoRequest(id=1, seq=1, data=b"ping")))
    nd += rec(FIX, ip6(ICMPv6ND_NS(tgt=our) / ICMPv6NDOptSrcLLAddr(lladdr=pmac),
                       dst="ff02::1:ff00:2", hlim=255))
    nd += rec(FIX, ip6(ICMPv6ND_NS(tgt=our), src="::", dst="ff02::1:ff00:2", hlim=255))
    nd += rec(FIX, ip6(ICMPv6ND_NA(tgt="2001:db8::7", S=1, O=1) /
                       ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:07"), hlim=255))
    nd += rec(FIX, ip6(ICMPv6ND_NA(tgt=our, S=0, O=1), dst="ff02::1", hlim=255))
    nd += rec(FIX, ip6(ICMPv6ND_RA(), src="fe80::1", dst="ff02::1", hlim=255))
    nd += rec(FIX | 0xf0, seg("S", 9, sport=41009, hdrs=None))
    nd += rec(FIX | 0xf0, ip6(TCP(sport=41010, dport=25, flags="S"), src="2001:db8::7"))
    write("tcp_input", "ipv6-nd-icmp", nd)


# ---- TLS: [mode][...] ---------------------------------------------------------
def tls_seeds():
    def client_hello(version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="mx.example.org")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()

    hello13 = client_hello(ssl.TLSVersion.TLSv1_3)
    hello12 = client_hello(ssl.TLSVersion.TLSv1_2)
    write("tls_filter", "raw-clienthello-13", b"\x00\x00" + hello13)
    write("tls_filter", "raw-clienthello-12-chunked", b"\x00\x05" + hello12)
    write("tls_filter", "raw-http-on-tls", b"\x00\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    write("tls_filter", "raw-sslv2-hello", b"\x00\x00\x80\x2e\x01\x00\x02\x00\x15\x00\x00"
          b"\x00\x10\x00\x00\x05\x00\x00\x04" + bytes(range(16)))

    def op(code, data):
        return bytes([code, len(data)]) + data
    lines = op(0x00, b"EHLO x\r\n") + op(0x10, b"MAIL FROM:<a@b>\r\n") + op(0x04, b"QUIT\r\n")
    write("tls_filter", "session-13", b"\x01" + lines + op(0x03, b""))
    write("tls_filter", "session-12", b"\x03" + lines + op(0x03, b""))
    write("tls_filter", "inject-13", b"\x01" + op(0x00, b"EHLO x\r\n")
          + op(0x01, b"\x17\x03\x03\x00\x05hello") + op(0x00, b"RSET\r\n"))
    write("tls_filter", "flip-12", b"\x03" + op(0x00, b"EHLO x\r\n") + op(0x02, b"\x07DATA\r\n"))
    write("tls_filter", "alert-12", b"\x03" + op(0x01, b"\x15\x03\x03\x00\x02\x01\x00"))


# ---- PROXY protocol headers -----------------------------------------------------
def proxy_seeds():
    w = lambda name, data: write("proxy_header", name, data)
    w("v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n")
    w("v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 25\r\n")
    w("v1-unknown", b"PROXY UNKNOWN\r\n")
    w("v1-unknown-addrs", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n")
    w("v1-bad-port", b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 25\r\n")
    w("v1-truncated", b"PROXY TCP4 192.0.2.1 19")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    v4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 56324, 25)
    w("v2-tcp4", sig + b"\x21\x11" + struct.pack(">H", len(v4)) + v4 + b"EHLO x\r\n")
    v6 = bytes(range(16)) + bytes(range(16, 32)) + struct.pack(">HH", 1, 25)
    tlv = b"\x01\x00\x02h2" + b"\x20\x00\x05\x01\x00\x00\x00\x00" + b"\x04\x00\x01\x00"
    w("v2-tcp6-tlvs", sig + b"\x21\x21" + struct.pack(">H", len(v6 + tlv)) + v6 + tlv)
    w("v2-local", sig + b"\x20\x00\x00\x00")
    w("v2-unix", sig + b"\x21\x31" + struct.pack(">H", 216) + b"/tmp/a".ljust(108, b"\0") * 2)
    w("v2-udp4", sig + b"\x21\x12" + struct.pack(">H", len(v4)) + v4)
    w("v2-short-len", sig + b"\x21\x11\x00\x04" + v4[:4])
    w("v2-huge-len", sig + b"\x21\x11\xff\xff" + v4)
    w("smtp-not-proxy", b"EHLO client.example\r\n")


# ---- configuration, route map, directory file ------------------------------------
def file_seeds():
    write("config", "defaults", "")
    write("config", "kernel", "listen = 127.0.0.1:2525\nhostname = mx.example.org\n"
          "workers = 2\ndomains = example.org, Example.NET\n[log]\nlevel = notice\n"
          "[spool]\ndir = /tmp/pa-spool\nshards = 8\nring_size = 1024\nmin_free = 5%\n"
          "[smtp]\nmax_message_size = 1048576\nbare_lf = normalize\n")
    write("config", "dpdk-tls-relay", "backend = dpdk\nlisten = 198.18.0.2:25\n"
          "[dpdk]\nip = 198.18.0.2/24\ngateway = 198.18.0.1\neal = --no-huge -m 512\n"
          "msl = 1000\nimpair = loss=1,delay=5\n[tls]\ncert = /a.pem, /b.pem\nkey = /a.key, /b.key\n"
          "min_version = TLSv1.3\nrequired = true\n[relay]\ndefault = smtp:192.0.2.25:25\n"
          "min_backoff = 10\nmax_backoff = 5\n")
    write("config", "overrides", b"workers = 1\n\0workers=4\nspool.shards=2\nlisten=[::1]:25\n"
          b"directory.file=/etc/pa/dir\nbogus\nmetrics.listen=127.0.0.1:9100\n")
    write("config", "bad-section", "[nosuch]\nkey = 1\n[spool\ndir=\n")
    write("route_map", "docs-example", b"\x1f" + b"""# shard ranges
shards 0-7    smtp:10.0.0.1:25,10.0.0.2:25
shards 8-15   lmtp:10.0.1.1:24/10,10.0.1.2:24/20
shard  16     lmtp:10.0.1.3:24
domain  vip.example.com      lmtp:10.0.2.1:24
address ceo@example.com      smtp:[2001:db8::25]:25
""")
    write("route_map", "default-only", b"\x83" + b"\n# nothing but the default\n\r\n")
    write("route_map", "errors", b"\x43" + b"shard 1 smtp:10.0.0.1:25\nshard 1 smtp:10.0.0.2:25\n"
          b"domain x smtp:host.example:25\nshards 3-1 lmtp:1.2.3.4:99999/70000\n")
    write("directory_file", "docs-example", b"\x00" + b"""# comment
alice@example.com                      # a mailbox
bob@example.com   store-2.internal     # a mailbox, and the store that holds it
@catchall.example                      # every address of this domain exists
postmaster@example.com: alice@example.com
abuse@example.com: postmaster@example.com
ALICE2@Example.COM
""")
    write("directory_file", "alias-loop", b"\x01a@x.example: b@x.example\r\nb@x.example: a@x.example\n")
    write("directory_file", "errors", b"\x00a@x: \n@d.example extra\nc@d\x01.example\n")


# ---- spool records: [decoder][record] ------------------------------------------
def spool_seeds():
    w = lambda name, kind, data: write("spool_record", name, bytes([kind]) + data)
    qid = b"0123456789ABCDEF012345"
    w("key-meta", 0, b"!\x01")
    w("key-message", 0, b"M\x01" + qid)
    w("key-body", 0, b"B\x01" + qid)
    w("key-delivery", 0, b"D\x01" + qid + b"\x00\x00\x03")
    w("key-schedule", 0, b"S\x01" + struct.pack(">Q", 1700000000000000) + qid)
    w("meta", 1, b"\x01" + struct.pack(">IIIQ", 1, 4, 2, 1700000000000000))

    def s16(b):
        return struct.pack(">H", len(b)) + b
    rcpts = [b"bob@example.org", b"carol@example.org"]
    msg = (b"\x01\x07" + struct.pack(">QQ", 1700000000000000, 1234) + s16(b"alice@example.net")
           + s16(b"192.0.2.1") + s16(b"client.example") + struct.pack(">H", len(rcpts))
           + b"".join(s16(r) for r in rcpts))
    w("message", 2, msg)
    w("message-null-sender", 2, msg[:18] + s16(b"") + msg[18 + 2 + 17:])
    w("body", 3, b"\x01Received: from x\r\n\r\nbody\r\n")
    w("delivery", 4, b"\x01\x02" + struct.pack(">IQQ", 3, 1700000060000000, 1700000000000000)
      + s16(b"550 5.1.1 no such user"))
    w("schedule", 5, b"\x01")
    w("key-location", 0, b"L\x01" + qid)
    w("key-checkpoint", 0, b"#\x01")
    w("location", 6, b"\x01" + struct.pack(">QQIQ", 7, 4096, 4242, 99))
    w("checkpoint", 7, b"\x01" + struct.pack(">QQQ", 7, 8338, 100))


# ---- segment log: [mode][...] (fuzz_seglog.c) -----------------------------------
def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF


def seglog_record(kind, seq, payload):
    tail = bytes([kind, 0, 0, 0]) + struct.pack(">Q", seq) + payload
    return b"PAR2" + struct.pack(">II", 24 + len(payload), crc32c(tail)) + tail


def seglog_seeds():
    w = lambda name, mode, data: write("seglog", name, bytes([mode]) + data)

    def s16(b):
        return struct.pack(">H", len(b)) + b
    qid = b"P066173D604400000100000001"
    body = b"Received: from x\r\n\r\nbody\r\n"
    env = (b"\x01\x01" + struct.pack(">QQ", 1700000000000000, len(body))
           + s16(b"alice@example.net") + s16(b"192.0.2.1") + s16(b"client.example")
           + struct.pack(">H", 1) + s16(b"bob@example.org"))
    message = bytes([len(qid)]) + qid + struct.pack(">I", len(env)) + env + body
    segment = struct.pack(">IIIQQ", 2, 4, 1, 7, 1700000000000000)
    w("header", 0, seglog_record(2, 5, message)[:24])
    w("message", 0, message)
    image = (seglog_record(1, 100, segment) + seglog_record(2, 101, message)
             + seglog_record(2, 102, message[:-1] + b"!"))
    w("image", 1, image + bytes(64))
    w("image-torn", 1, image[:-7])
    w("torn-cut", 2, bytes([5, 0x01, 0x20, 1]) + bytes(range(40, 120)))
    w("torn-flip", 2, bytes([9, 0x00, 0x90, 0x22]) + bytes(range(1, 60)))

    # Mode 3: segment files 1..3 of shard 1 of 4 in a log directory, and a checkpoint.
    def seg_file(number, seq, records):
        out = seglog_record(1, seq, struct.pack(">IIIQQ", 2, 4, 1, number, 1700000000000000))
        for i, r in enumerate(records):
            out += seglog_record(2, seq + 1 + i, r)
        return out

    def files(flags, cp, *images):
        return (bytes([len(images) - 1 | flags, cp[0]]) + struct.pack(">HB", cp[1], cp[2])
                + b"".join(struct.pack(">H", len(i)) + i for i in images))
    one, two = seg_file(1, 1, [message, message]), seg_file(2, 10, [message])
    w("log-two", 3, files(0, (1, 0, 0), one, two))
    w("log-torn", 3, files(0, (1, 0, 0), one[:-9], two))
    w("log-checkpoint", 3, files(4, (1, len(one) - len(seglog_record(2, 3, message)), 3), one, two))
    w("log-foreign", 3, files(0, (1, 0, 0), seg_file(5, 1, [message])))
    w("log-spare", 3, files(0, (1, 0, 0), one, bytes(100)))


def dns_seeds():
    """DNS answers as a server sends them: NXDOMAIN with an SOA (compressed names), NOERROR
    with an A record, one without authority, a truncated one."""
    import struct
    w = lambda name, data: write("dns_packet", name, data)
    qname = b"\x011\x010\x010\x03127\x02bl\x04test\x00"
    question = qname + struct.pack(">HH", 1, 1)
    soa_rdata = b"\x02ns\xc0\x16\x01h\xc0\x16" + struct.pack(">IIIII", 1, 3600, 600, 86400, 60)
    soa = b"\xc0\x16" + struct.pack(">HHIH", 6, 1, 300, len(soa_rdata)) + soa_rdata
    nx = struct.pack(">HHHHHH", 0x1234, 0x8183, 1, 0, 1, 0) + question + soa
    w("nxdomain-soa", nx)
    a = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([127, 0, 0, 2])
    w("noerror-a", struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + question + a)
    w("nodata-soa", struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 0, 1, 0) + question + soa)
    w("nxdomain-no-authority", struct.pack(">HHHHHH", 0x1234, 0x8183, 1, 0, 0, 0) + question)
    w("truncated", nx[:len(nx) - 7])


def milter_seeds():
    """Milter replies as a filter sends them: negotiation, rspamd's end of message (header
    edits, then continue), a reject with its reply, quarantine after progress."""
    import struct
    w = lambda name, data: write("milter_reply", name, data)

    def pk(code, data=b""):
        return struct.pack(">I", len(data) + 1) + code + data
    w("accept", pk(b"a"))
    w("optneg", pk(b"O", struct.pack(">III", 6, 0x1FF, 0xFF000)))
    w("eob-rspamd", pk(b"h", b"Authentication-Results\0mx.test;\r\n\tdkim=pass header.d=test\0")
      + pk(b"m", struct.pack(">I", 1) + b"X-Spam\0\0")
      + pk(b"i", struct.pack(">I", 0) + b"X-A\0b\0") + pk(b"c"))
    w("reject", pk(b"y", b"554 5.7.1 Gtube pattern\0") + pk(b"r"))
    w("multiline", pk(b"y", b"550-5.7.1 a\r\n550 5.7.1 b\0"))
    w("quarantine", pk(b"p") + pk(b"q", b"virus\0") + pk(b"a"))


def main():
    smtp_seeds()
    tls_seeds()
    proxy_seeds()
    file_seeds()
    spool_seeds()
    seglog_seeds()
    dns_seeds()
    milter_seeds()
    try:
        tcp_seeds()
        tcp6_seeds()
    except ImportError:
        print("make_seeds: no scapy (python3-scapy): tcp_input seeds left as they are",
              file=sys.stderr)


if __name__ == "__main__":
    main()
