/*
 * test_net_ipv6.c: the IPv6 pieces of the dataplane that need no port.
 *
 * The extension header walk (net_ipv6_ext.c): a valid chain reaches its
 * upper layer at the right offset; a chain longer than NET_IP6_MAX_EXT, a
 * truncated one, hop-by-hop anywhere but first, a routing header of type 0
 * (RFC 5095), another routing type with segments left, a real fragment, No
 * Next Header are refused with their reasons, and with a parameter problem
 * (code, pointer) where RFC 8200 sends one; an atomic fragment (RFC 6946)
 * and a routing header with no segments left pass; unknown options act by
 * their type's two high bits (4.2), group destinations getting no error for
 * type 11.  The IPv6 pseudo-header checksum against DPDK's
 * rte_ipv6_udptcp_cksum().  Steering on the IPv6 tuple: net_rss_hash6()
 * gives the published Toeplitz hashes of Microsoft's RSS verification suite
 * for IPv6 with TCP under the standard key, the owner is the table's entry
 * for the hash, and the software owner is the same from either end.  The
 * packet too big parser finds the quoted connection, and refuses what
 * quotes no TCP segment.  The address tests of net_ipv6.h (equality, the
 * link-local, unspecified, loopback and IPv4-mapped types) at their edges,
 * on-link prefixes of every length class (octet-aligned, not, across the
 * 64-bit halves, /128), and dp_hash_words() equal to DPDK's CRC32-C hash of
 * the same octets for the lengths the stack hashes.  The source address for
 * a peer (RFC 6724 5 in short) through DAD's states, and the set of equal
 * choices active opens take in turn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_thash.h>

#include "core/pa.h"
#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"
#include "dataplane/net_icmp6.h"
#include "dataplane/net_ipv6.h"
#include "dataplane/net_ipv6_ext.h"
#include "dataplane/tcp.h"

/* A packet under construction: the IPv6 header, then what add() appends. */
struct pkt {
	uint8_t b[2048];
	unsigned len;
	unsigned last_nh; /* offset of the Next Header field to fill next */
};

static void
pkt_init(struct pkt *p)
{
	memset(p, 0, sizeof(*p));
	p->b[0] = 0x60;
	p->len = NET_IP6_HDR_LEN;
	p->last_nh = 6;
}

/* Appends an extension header of type nh with hl octets (a multiple of 8), body zeroed. */
static unsigned
add(struct pkt *p, uint8_t nh, unsigned hl)
{
	unsigned off = p->len;

	p->b[p->last_nh] = nh;
	memset(p->b + off, 0, hl);
	if (nh != NET_IP6_NH_FRAGMENT)
		p->b[off + 1] = (uint8_t)(hl / 8 - 1);
	if (nh == NET_IP6_NH_HOPOPTS || nh == NET_IP6_NH_DSTOPTS) {
		/* PadN over the body. */
		p->b[off + 2] = 1;
		p->b[off + 3] = (uint8_t)(hl - 4);
	}
	p->last_nh = off;
	p->len += hl;
	return off;
}

/* Ends the chain with 20 octets of TCP. */
static void
add_tcp(struct pkt *p)
{
	p->b[p->last_nh] = NET_IP6_NH_TCP;
	p->len += 20;
}

static void
test_plain_and_valid_chain(void **state)
{
	struct net_ip6_chain c;
	struct pkt p;

	(void)state;
	pkt_init(&p);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_COUNT);
	assert_int_equal(c.proto, NET_IP6_NH_TCP);
	assert_int_equal(c.off, 40);
	assert_int_equal(c.nh_ptr, 6);

	/* Hop-by-hop, destination options, routing type 4 with no segment left, atomic fragment. */
	pkt_init(&p);
	add(&p, NET_IP6_NH_HOPOPTS, 8);
	add(&p, NET_IP6_NH_DSTOPTS, 16);
	unsigned rh = add(&p, NET_IP6_NH_ROUTING, 24);
	p.b[rh + 2] = 4;
	add(&p, NET_IP6_NH_FRAGMENT, 8);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_COUNT);
	assert_int_equal(c.proto, NET_IP6_NH_TCP);
	assert_int_equal(c.off, 40 + 8 + 16 + 24 + 8);
	assert_int_equal(c.next, 4);
}

static void
test_chain_bounds(void **state)
{
	struct net_ip6_chain c;
	struct pkt p;

	(void)state;
	/* NET_IP6_MAX_EXT headers pass, one more is refused whatever it is. */
	pkt_init(&p);
	for (int i = 0; i < NET_IP6_MAX_EXT; i++)
		add(&p, NET_IP6_NH_DSTOPTS, 8);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_COUNT);
	pkt_init(&p);
	for (int i = 0; i < NET_IP6_MAX_EXT + 1; i++)
		add(&p, NET_IP6_NH_DSTOPTS, 8);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_EXT_CHAIN);

	/* A header whose length runs past the packet: refused, every truncation of it too. */
	pkt_init(&p);
	add(&p, NET_IP6_NH_DSTOPTS, 64);
	add_tcp(&p);
	for (unsigned len = 40; len < 40 + 64; len++)
		assert_int_equal(net_ipv6_chain(p.b, len, false, &c), DP_DROP_IP6_EXT_CHAIN);
	p.b[41] = 200; /* 1608 octets claimed */
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_EXT_CHAIN);
	assert_true(c.icmp);
	assert_int_equal(c.pointer, 41);

	/* Hop-by-hop after another header: parameter problem, unrecognized next header. */
	pkt_init(&p);
	add(&p, NET_IP6_NH_DSTOPTS, 8);
	add(&p, NET_IP6_NH_HOPOPTS, 8);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_EXT_CHAIN);
	assert_true(c.icmp);
	assert_int_equal(c.icmp_code, 1);
	assert_int_equal(c.pointer, 40);

	/* No Next Header: nothing for us, and no error. */
	pkt_init(&p);
	add(&p, NET_IP6_NH_DSTOPTS, 8);
	p.b[40] = NET_IP6_NH_NONE;
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_PROTO);
	assert_false(c.icmp);
}

static void
test_routing_and_fragments(void **state)
{
	struct net_ip6_chain c;
	struct pkt p;
	unsigned rh, fh;

	(void)state;
	/* Type 0: refused even with no segment left; with some, a parameter problem. */
	pkt_init(&p);
	rh = add(&p, NET_IP6_NH_ROUTING, 24);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_ROUTING0);
	assert_false(c.icmp);
	p.b[rh + 3] = 1;
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_ROUTING0);
	assert_true(c.icmp);
	assert_int_equal(c.icmp_code, 0);
	assert_int_equal(c.pointer, rh + 2);
	/* Another type with segments left: we forward nothing. */
	p.b[rh + 2] = 4;
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_ROUTING);
	assert_true(c.icmp);

	/* Fragments: offset or M set refused, both clear (atomic) passes. */
	pkt_init(&p);
	fh = add(&p, NET_IP6_NH_FRAGMENT, 8);
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_COUNT);
	p.b[fh + 3] = 1; /* M */
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_FRAGMENT);
	p.b[fh + 3] = 0x08; /* offset 1 (8 octets) */
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_FRAGMENT);
	p.b[fh + 3] = 0x06; /* the reserved bits alone: still atomic */
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_COUNT);
}

static void
test_options(void **state)
{
	struct net_ip6_chain c;
	struct pkt p;
	unsigned h;

	(void)state;
	for (unsigned action = 0; action < 4; action++) {
		pkt_init(&p);
		h = add(&p, NET_IP6_NH_DSTOPTS, 16);
		/* Pad1, then an unknown option of this action, then PadN to the end. */
		p.b[h + 2] = 0;
		p.b[h + 3] = (uint8_t)(action << 6 | 0x1e);
		p.b[h + 4] = 2;
		p.b[h + 7] = 1;
		p.b[h + 8] = 6;
		add_tcp(&p);
		assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c),
		                 action == 0 ? DP_DROP_COUNT : DP_DROP_IP6_OPTION);
		assert_int_equal(c.icmp, action >= 2);
		if (action >= 2) {
			assert_int_equal(c.icmp_code, 2);
			assert_int_equal(c.pointer, h + 3);
		}
		/* To a group, type 11 sends no error (type 10 still does). */
		net_ipv6_chain(p.b, p.len, true, &c);
		assert_int_equal(c.icmp, action == 2);
	}
	/* An option running past its header. */
	pkt_init(&p);
	h = add(&p, NET_IP6_NH_HOPOPTS, 8);
	p.b[h + 3] = 5;
	add_tcp(&p);
	assert_int_equal(net_ipv6_chain(p.b, p.len, false, &c), DP_DROP_IP6_EXT_CHAIN);
}

static void
test_checksum(void **state)
{
	uint8_t buf[40 + 1500] __rte_aligned(8);
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)buf;
	uint8_t *l4 = buf + 40;
	uint64_t r = 1;

	(void)state;
	for (unsigned len = 20; len <= 1500; len += 37) {
		for (unsigned i = 0; i < sizeof(buf); i++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = (uint8_t)(r >> 56);
		}
		ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
		ip->payload_len = rte_cpu_to_be_16((uint16_t)len);
		ip->proto = IPPROTO_TCP;
		memset(l4 + 16, 0, 2);
		uint16_t ours = net_cksum_ipv6_l4(ip, IPPROTO_TCP, l4, (uint16_t)len);
		uint16_t ref = rte_ipv6_udptcp_cksum(ip, l4);

		/* rte_ipv6_udptcp_cksum() sends 0xffff where the sum is all ones; both verify. */
		assert_true(ours == ref || (ours == 0 && ref == 0xffff));
		memcpy(l4 + 16, &ours, 2);
		assert_true(net_cksum_ipv6_l4_ok(ip, IPPROTO_TCP, l4, (uint16_t)len));
		l4[len - 1] ^= 0x40;
		assert_false(net_cksum_ipv6_l4_ok(ip, IPPROTO_TCP, l4, (uint16_t)len));
	}
}

/* The verification suite's key (Microsoft's RSS specification; DPDK's test_thash.c). */
static const uint8_t ms_key[40] __rte_aligned(4) = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

/* "Verifying the RSS Hash Calculation", IPv6: source, destination, ports, IPv6+TCP hash. */
static const struct {
	const char *src, *dst;
	uint16_t sport, dport;
	uint32_t hash_tcp;
} ms_v6[] = {
    {"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x40207d3d},
    {"3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0xdde51bbf},
    {"3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x02d1feef},
};

static void
test_toeplitz_ipv6_vectors(void **state)
{
	static struct dp_shared sh;
	uint8_t reta[128];

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 2;
	for (unsigned i = 0; i < 128; i++)
		reta[i] = (uint8_t)(i % 2);
	assert_int_equal(net_rss_install(&sh, ms_key, 40, reta, 128), PA_OK);
	sh.rss6 = true;
	for (size_t i = 0; i < pa_array_size(ms_v6); i++) {
		uint8_t s[16], d[16];

		assert_int_equal(inet_pton(AF_INET6, ms_v6[i].src, s), 1);
		assert_int_equal(inet_pton(AF_INET6, ms_v6[i].dst, d), 1);
		assert_int_equal(net_rss_hash6(&sh, s, rte_cpu_to_be_16(ms_v6[i].sport), d,
		                               rte_cpu_to_be_16(ms_v6[i].dport)),
		                 ms_v6[i].hash_tcp);
		assert_int_equal(net_flow_owner6(&sh, s, rte_cpu_to_be_16(ms_v6[i].sport), d,
		                                 rte_cpu_to_be_16(ms_v6[i].dport)),
		                 (ms_v6[i].hash_tcp % 128) % 2);
	}
	/* A port that does not hash IPv6 TCP: the software owner, whatever the table says. */
	sh.rss6 = false;
	for (size_t i = 0; i < pa_array_size(ms_v6); i++) {
		uint8_t s[16], d[16];

		inet_pton(AF_INET6, ms_v6[i].src, s);
		inet_pton(AF_INET6, ms_v6[i].dst, d);
		assert_int_equal(net_flow_owner6(&sh, s, 1, d, 2),
		                 net_flow_owner6(&sh, d, 2, s, 1));
	}
}

static void
test_software_owner_symmetric_and_spread(void **state)
{
	static struct dp_shared sh;
	unsigned per[4] = {0};
	uint64_t r = 7;

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 4;
	for (int i = 0; i < 4000; i++) {
		uint8_t a[16], b[16];
		uint16_t ap, bp;

		for (int k = 0; k < 16; k++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			a[k] = (uint8_t)(r >> 56);
			b[k] = (uint8_t)(r >> 48);
		}
		ap = (uint16_t)(r >> 8);
		bp = (uint16_t)(r >> 24);
		unsigned o = net_flow_owner6(&sh, a, ap, b, bp);

		assert_int_equal(o, net_flow_owner6(&sh, b, bp, a, ap));
		per[o]++;
	}
	for (int w = 0; w < 4; w++)
		assert_in_range(per[w], 800, 1200);
}

static void
test_packet_too_big(void **state)
{
	uint8_t msg[8 + 40 + 20] = {2, 0, 0, 0, 0, 0, 0x05, 0x00};
	uint8_t *q = msg + 8;
	struct tcp_key key;
	uint32_t mtu, seq;

	(void)state;
	q[0] = 0x60;
	q[6] = NET_IP6_NH_TCP;
	inet_pton(AF_INET6, "2001:db8::2", q + 8);
	inet_pton(AF_INET6, "2001:db8::77", q + 24);
	q[40] = 0;
	q[41] = 25; /* source port 25: ours */
	q[42] = 0x9c;
	q[43] = 0x40;
	q[44] = 0x12;
	q[45] = 0x34;
	q[46] = 0x56;
	q[47] = 0x78;
	assert_true(net_icmp6_ptb_key(msg, sizeof(msg), &key, &mtu, &seq));
	assert_int_equal(mtu, 1280);
	assert_int_equal(seq, 0x12345678);
	assert_int_equal(key.lport, rte_cpu_to_be_16(25));
	assert_int_equal(key.rport, rte_cpu_to_be_16(40000));
	assert_memory_equal(key.laddr.a6, q + 8, 16);
	assert_memory_equal(key.raddr.a6, q + 24, 16);
	assert_true(tcp_key_v6(&key));
	/* Truncated, another type, another protocol, an IPv4 quote: not ours to act on. */
	assert_false(net_icmp6_ptb_key(msg, sizeof(msg) - 13, &key, &mtu, &seq));
	msg[0] = 1;
	assert_false(net_icmp6_ptb_key(msg, sizeof(msg), &key, &mtu, &seq));
	msg[0] = 2;
	q[6] = 17;
	assert_false(net_icmp6_ptb_key(msg, sizeof(msg), &key, &mtu, &seq));
	q[6] = NET_IP6_NH_TCP;
	q[0] = 0x45;
	assert_false(net_icmp6_ptb_key(msg, sizeof(msg), &key, &mtu, &seq));
}

static void
test_key_family(void **state)
{
	struct tcp_key k4 = {.raddr = tcp_addr_v4(RTE_BE32(0xc6120001)),
	                     .laddr = tcp_addr_v4(RTE_BE32(0xc6120002))};
	uint8_t a[16];
	struct tcp_key k6;

	(void)state;
	assert_false(tcp_key_v6(&k4));
	assert_int_equal(k4.laddr.v4, RTE_BE32(0xc6120002));
	inet_pton(AF_INET6, "::ffff:198.18.0.2", a);
	assert_memory_equal(k4.laddr.a6, a, 16);
	inet_pton(AF_INET6, "2001:db8::2", a);
	k6.laddr = tcp_addr_v6(a);
	assert_true(tcp_key_v6(&k6));
}

static void
a6(const char *text, uint8_t *a)
{
	assert_int_equal(inet_pton(AF_INET6, text, a), 1);
}

static void
test_address_types(void **state)
{
	uint8_t a[17], b[16];

	(void)state;
	/* At an odd offset, as out of a packet. */
	a6("2001:db8::2", a + 1);
	a6("2001:db8::2", b);
	assert_true(net_ipv6_addr_eq(a + 1, b));
	b[15] ^= 1;
	assert_false(net_ipv6_addr_eq(a + 1, b));
	b[15] ^= 1, b[0] ^= 0x80;
	assert_false(net_ipv6_addr_eq(a + 1, b));

	a6("fe80::1", b);
	assert_true(net_ipv6_is_link_local(b));
	a6("febf:ffff::1", b);
	assert_true(net_ipv6_is_link_local(b));
	a6("fec0::1", b); /* site-local, not fe80::/10 */
	assert_false(net_ipv6_is_link_local(b));
	a6("fe7f::1", b);
	assert_false(net_ipv6_is_link_local(b));

	a6("::", b);
	assert_true(net_ipv6_is_unspecified(b));
	assert_false(net_ipv6_is_loopback(b));
	a6("::1", b);
	assert_true(net_ipv6_is_loopback(b));
	assert_false(net_ipv6_is_unspecified(b));
	a6("::100", b);
	assert_false(net_ipv6_is_loopback(b));
	a6("1::1", b);
	assert_false(net_ipv6_is_loopback(b));

	a6("::ffff:198.18.0.1", b);
	assert_true(net_ipv6_is_v4mapped(b));
	a6("::ffff:0:0", b);
	assert_true(net_ipv6_is_v4mapped(b));
	a6("::fffe:198.18.0.1", b);
	assert_false(net_ipv6_is_v4mapped(b));
	a6("::1:ffff:198.18.0.1", b);
	assert_false(net_ipv6_is_v4mapped(b));
	a6("::198.18.0.1", b); /* IPv4-compatible (deprecated), not mapped */
	assert_false(net_ipv6_is_v4mapped(b));
}

static void
test_on_link_prefixes(void **state)
{
	static struct dp_shared sh;
	uint8_t a[16];

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nip6 = 5;
	a6("fe80::2", sh.ip6[0].a);
	sh.ip6[0].prefix = 64;
	a6("2001:db8:1::2", sh.ip6[1].a);
	sh.ip6[1].prefix = 48; /* octet-aligned, in the high half */
	a6("2001:db8:2:40::2", sh.ip6[2].a);
	sh.ip6[2].prefix = 58; /* not octet-aligned */
	a6("2001:db8:3::8000:0:0:2", sh.ip6[3].a);
	sh.ip6[3].prefix = 65; /* one bit into the low half */
	a6("2001:db8:4::2", sh.ip6[4].a);
	sh.ip6[4].prefix = 128;

	a6("fe80::99", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:1:ffff::1", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:1:0::1", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:2:7f::1", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:2:80::1", a);
	assert_false(net_ipv6_on_link(&sh, a));
	a6("2001:db8:2:3f::1", a);
	assert_false(net_ipv6_on_link(&sh, a));
	a6("2001:db8:3::ffff:1:2:3", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:3::7fff:1:2:3", a);
	assert_false(net_ipv6_on_link(&sh, a));
	a6("2001:db8:4::2", a);
	assert_true(net_ipv6_on_link(&sh, a));
	a6("2001:db8:4::3", a);
	assert_false(net_ipv6_on_link(&sh, a));
	a6("2001:db9::1", a);
	assert_false(net_ipv6_on_link(&sh, a));
}

static void
test_hash_words(void **state)
{
	uint64_t buf[6];
	uint8_t *p = (uint8_t *)buf;
	static const uint32_t lens[] = {4, 8, 12, 16, 20, 32, 36, 40};

	(void)state;
	for (unsigned i = 0; i < sizeof(buf); i++)
		p[i] = (uint8_t)(i * 37 + 11);
	for (unsigned i = 0; i < pa_array_size(lens); i++)
		assert_int_equal(dp_hash_words(buf, lens[i], 0x1234567),
		                 rte_hash_crc(buf, lens[i], 0x1234567));
	/* An unaligned key hashes as its octets do. */
	{
		uint64_t other[6];
		uint8_t *q = (uint8_t *)other + 1;

		memcpy(q, buf, 40);
		for (unsigned i = 0; i < pa_array_size(lens); i++)
			assert_int_equal(dp_hash_words(q, lens[i], 9),
			                 rte_hash_crc(buf, lens[i], 9));
	}
}

static void
test_source_address(void **state)
{
	static struct dp_shared sh;
	uint8_t a[16];

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nip6 = 3;
	a6("fe80::2", sh.ip6[0].a);
	a6("2001:db8:1::2", sh.ip6[1].a);
	sh.ip6[1].prefix = 64;
	a6("2001:db8:2::2", sh.ip6[2].a);
	sh.ip6[2].prefix = 64;
	/* All tentative (DAD): no source for TCP; the link-local one for on-link answers. */
	a6("fe80::9", a);
	assert_int_equal(net_ipv6_src_index(&sh, a), -1);
	assert_ptr_equal(net_ipv6_src_for(&sh, a), sh.ip6[0].a);
	a6("2001:db8:2::9", a);
	assert_int_equal(net_ipv6_src_index(&sh, a), -1);
	sh.ip6[0].state = DP_ADDR6_PREFERRED;
	/* A global peer never gets the link-local source (RFC 6724 rule 2). */
	assert_int_equal(net_ipv6_src_index(&sh, a), -1);
	a6("fe80::9", a);
	assert_int_equal(net_ipv6_src_index(&sh, a), 0);
	sh.ip6[1].state = DP_ADDR6_PREFERRED;
	sh.ip6[2].state = DP_ADDR6_PREFERRED;
	a6("2001:db8:2::9", a);
	assert_int_equal(net_ipv6_src_index(&sh, a), 2); /* the one on its prefix */
	a6("2001:db8:7::9", a);
	assert_int_equal(net_ipv6_src_index(&sh, a), 1); /* off-link: the first usable */
	sh.ip6[1].state = DP_ADDR6_DUPLICATE;
	assert_int_equal(net_ipv6_src_index(&sh, a), 2);
	assert_ptr_equal(net_ipv6_src_for(&sh, a), sh.ip6[2].a);

	/* The set active opens take in turn: every equal choice, the prefix first. */
	{
		uint8_t set[DP_MAX_ADDRS6];

		sh.nip6 = 5;
		a6("2001:db8:2::3", sh.ip6[3].a);
		sh.ip6[3].prefix = 64;
		sh.ip6[3].state = DP_ADDR6_PREFERRED;
		a6("2001:db8:2::4", sh.ip6[4].a); /* tentative still */
		sh.ip6[4].prefix = 64;
		sh.ip6[1].state = DP_ADDR6_PREFERRED;
		a6("2001:db8:2::9", a);
		assert_int_equal(net_ipv6_src_set(&sh, a, set), 2);
		assert_int_equal(set[0], 2);
		assert_int_equal(set[1], 3);
		a6("2001:db8:7::9", a);
		assert_int_equal(net_ipv6_src_set(&sh, a, set), 3);
		assert_int_equal(set[0], 1);
		assert_int_equal(set[2], 3);
		a6("fe80::9", a);
		assert_int_equal(net_ipv6_src_set(&sh, a, set), 1);
		assert_int_equal(set[0], 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_and_valid_chain),
	    cmocka_unit_test(test_chain_bounds),
	    cmocka_unit_test(test_routing_and_fragments),
	    cmocka_unit_test(test_options),
	    cmocka_unit_test(test_checksum),
	    cmocka_unit_test(test_toeplitz_ipv6_vectors),
	    cmocka_unit_test(test_software_owner_symmetric_and_spread),
	    cmocka_unit_test(test_packet_too_big),
	    cmocka_unit_test(test_key_family),
	    cmocka_unit_test(test_address_types),
	    cmocka_unit_test(test_on_link_prefixes),
	    cmocka_unit_test(test_hash_words),
	    cmocka_unit_test(test_source_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
