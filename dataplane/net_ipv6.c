/*
 * net_ipv6.c: IPv6 (RFC 8200) in and out, and the engine's IPv6 addresses.
 *
 * Input promises: a packet reaches TCP or ICMPv6 only with a valid header
 * (version 6, payload length within the frame), from a unicast source that
 * is not IPv4-mapped (RFC 4291 2.5.5.2: such an address never appears on the
 * wire; refused, it can never alias an IPv4 flow in the TCB hash), to one of
 * our addresses once DAD has passed (RFC 4862 5.4: a tentative address takes
 * only Neighbor Discovery), to all-nodes or to the solicited-node group of
 * one of ours; and only after the extension headers were walked with a bound
 * (net_ipv6_ext.c).  What RFC 8200 answers with a parameter problem gets one,
 * rate-limited (RFC 4443 2.4(f)); every drop is counted by reason.  Output
 * fills the header of a TCP segment (hop limit 64, no flow label) and leaves
 * the checksum to the port when it reported the offload.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"
#include "dataplane/net_ipv6.h"
#include "dataplane/net_ipv6_ext.h"
#include "dataplane/tcp.h"

#define NET_IP6_HOP_LIMIT 64
#define ICMP6_ERRORS_PER_S 100 /* RFC 4443 2.4(f): per worker */
#define ICMP6_MIN_MTU 1280     /* an error fits the IPv6 minimum MTU (RFC 4443 2.4(c)) */

int
net_ipv6_addr_index(const struct dp_shared *sh, const uint8_t *a)
{
	for (unsigned i = 0; i < sh->nip6; i++)
		if (net_ipv6_addr_eq(sh->ip6[i].a, a))
			return (int)i;
	return -1;
}

static bool
usable(const struct dp_addr6 *ad)
{
	return __atomic_load_n(&ad->state, __ATOMIC_ACQUIRE) == DP_ADDR6_PREFERRED;
}

bool
net_ipv6_is_local(const struct dp_shared *sh, const uint8_t *a)
{
	int i = net_ipv6_addr_index(sh, a);

	return i >= 0 && usable(&sh->ip6[i]);
}

/* a and b agree in their first prefix bits (0..128), compared a 64-bit word at a time. */
static bool
prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	uint64_t ah, al, bh, bl, mh, ml;

	net_ipv6_words(a, &ah, &al);
	net_ipv6_words(b, &bh, &bl);
	mh = prefix >= 64 ? ~0ull : prefix == 0 ? 0 : ~0ull << (64 - prefix);
	ml = prefix >= 128 ? ~0ull : prefix <= 64 ? 0 : ~0ull << (128 - prefix);
	return (((ah ^ bh) & rte_cpu_to_be_64(mh)) | ((al ^ bl) & rte_cpu_to_be_64(ml))) == 0;
}

bool
net_ipv6_on_link(const struct dp_shared *sh, const uint8_t *a)
{
	if (net_ipv6_is_link_local(a))
		return true;
	for (unsigned i = 1; i < sh->nip6; i++)
		if (prefix_match(a, sh->ip6[i].a, sh->ip6[i].prefix))
			return true;
	return false;
}

unsigned
net_ipv6_src_set(const struct dp_shared *sh, const uint8_t *dst, uint8_t *out)
{
	unsigned n = 0, on_prefix = 0;

	/*
	 * RFC 6724 5, in short: the same scope (rule 2: the link-local
	 * address for a link-local peer, a global one for any other), then
	 * the longest matching prefix (ours: on-link).
	 */
	if (net_ipv6_is_link_local(dst)) {
		if (sh->nip6 > 0 && usable(&sh->ip6[0]))
			out[n++] = 0;
		return n;
	}
	for (unsigned i = 1; i < sh->nip6; i++)
		if (usable(&sh->ip6[i]) && prefix_match(dst, sh->ip6[i].a, sh->ip6[i].prefix))
			out[on_prefix++] = (uint8_t)i;
	if (on_prefix > 0)
		return on_prefix;
	for (unsigned i = 1; i < sh->nip6; i++)
		if (usable(&sh->ip6[i]))
			out[n++] = (uint8_t)i;
	return n;
}

int
net_ipv6_src_index(const struct dp_shared *sh, const uint8_t *dst)
{
	uint8_t set[DP_MAX_ADDRS6];

	return net_ipv6_src_set(sh, dst, set) > 0 ? set[0] : -1;
}

const uint8_t *
net_ipv6_src_for(const struct dp_shared *sh, const uint8_t *dst)
{
	int i = net_ipv6_src_index(sh, dst);

	return sh->ip6[i < 0 ? 0 : i].a;
}

bool
net_ipv6_peer_ok(const struct dp_shared *sh, const uint8_t *a, bool unspecified_ok)
{
	/*
	 * Multicast, IPv4-mapped, loopback, or one of our usable addresses
	 * (a loop or a spoof); a tentative one may be another node's: DAD
	 * hears its advertisement from that very address.
	 */
	if (a[0] == 0xff || net_ipv6_is_v4mapped(a) || net_ipv6_is_loopback(a) ||
	    net_ipv6_is_local(sh, a))
		return false;
	return unspecified_ok || !net_ipv6_is_unspecified(a);
}

/* ff02::1, or ff02::1:ffXX:XXXX for one of our addresses (tentative ones too: DAD). */
static bool
our_group(const struct dp_shared *sh, const uint8_t *a)
{
	static const uint8_t all_nodes[16] = {0xff, 0x02, [15] = 1};
	static const uint8_t solicited[13] = {0xff, 0x02, [11] = 1, [12] = 0xff};

	if (net_ipv6_addr_eq(a, all_nodes))
		return true;
	if (memcmp(a, solicited, sizeof(solicited)) != 0)
		return false;
	for (unsigned i = 0; i < sh->nip6; i++)
		if (memcmp(a + 13, sh->ip6[i].a + 13, 3) == 0)
			return true;
	return false;
}

/* The port's verdict when it gives one, else the sum here (as net_ipv4.c's). */
static bool
l4_cksum_ok(struct rte_mbuf *m, const struct rte_ipv6_hdr *ip, uint8_t proto, const void *l4,
            uint16_t l4_len)
{
	uint64_t f = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;

	if (proto == IPPROTO_TCP &&
	    (f == RTE_MBUF_F_RX_L4_CKSUM_GOOD || f == RTE_MBUF_F_RX_L4_CKSUM_NONE))
		return true;
	if (proto == IPPROTO_TCP && f == RTE_MBUF_F_RX_L4_CKSUM_BAD)
		return false;
	return net_cksum_ipv6_l4_ok(ip, proto, l4, l4_len);
}

void
net_ipv6_input(struct dp_worker *dw, struct rte_mbuf *m)
{
	const struct dp_shared *sh = dw->sh;
	struct rte_ipv6_hdr *ip = rte_pktmbuf_mtod(m, struct rte_ipv6_hdr *);
	uint16_t len = rte_pktmbuf_data_len(m), total, l4_len;
	struct net_ip6_chain ch;
	enum dp_drop r;
	bool group;
	int ai;

	/* A multi-segment mbuf (never from our pool's 2 KiB buffers at MTU 1500) is refused. */
	if (len < sizeof(*ip) ||
	    (ip->vtc_flow & rte_cpu_to_be_32(0xf0000000)) != rte_cpu_to_be_32(0x60000000) ||
	    m->nb_segs != 1) {
		dp_drop(dw, m, DP_DROP_IP6_BAD_HDR);
		return;
	}
	total = (uint16_t)(sizeof(*ip) + rte_be_to_cpu_16(ip->payload_len));
	/* payload_len 0 is a jumbogram (RFC 2675): no link here carries one. */
	if (ip->payload_len == 0 || total > len) {
		dp_drop(dw, m, DP_DROP_IP6_BAD_HDR);
		return;
	}
	if (!net_ipv6_peer_ok(sh, ip->src_addr, true)) {
		dp_drop(dw, m, DP_DROP_IP6_BAD_SRC);
		return;
	}
	group = ip->dst_addr[0] == 0xff;
	ai = group ? -1 : net_ipv6_addr_index(sh, ip->dst_addr);
	if (group ? !our_group(sh, ip->dst_addr) : ai < 0) {
		dp_drop(dw, m, DP_DROP_IP6_NOT_US);
		return;
	}
	/* Ethernet padding of short frames is not part of the packet. */
	if (len > total)
		rte_pktmbuf_trim(m, (uint16_t)(len - total));
	r = net_ipv6_chain((const uint8_t *)ip, total, group, &ch);
	if (r != DP_DROP_COUNT) {
		if (ch.icmp)
			net_icmp6_error(dw, m, total, 4, ch.icmp_code, ch.pointer);
		dp_drop(dw, m, r);
		return;
	}
	l4_len = (uint16_t)(total - ch.off);
	/* A tentative address takes Neighbor Discovery only (RFC 4862 5.4). */
	if (ai >= 0 && !usable(&sh->ip6[ai]) && ch.proto != IPPROTO_ICMPV6) {
		dp_drop(dw, m, DP_DROP_IP6_TENTATIVE);
		return;
	}
	/* The unspecified source is for DAD's solicitations alone (RFC 4861 7.1.1). */
	if (ch.proto != IPPROTO_ICMPV6 && net_ipv6_is_unspecified(ip->src_addr)) {
		dp_drop(dw, m, DP_DROP_IP6_BAD_SRC);
		return;
	}
	dw->c.ip6_rx++;
	switch (ch.proto) {
	case IPPROTO_TCP: {
		union tcp_addr src = tcp_addr_v6(ip->src_addr), dst = tcp_addr_v6(ip->dst_addr);

		if (group) {
			dp_drop(dw, m, DP_DROP_IP6_NOT_US); /* TCP is unicast only */
			return;
		}
		if (l4_len < sizeof(struct rte_tcp_hdr) ||
		    !l4_cksum_ok(m, ip, IPPROTO_TCP, (uint8_t *)ip + ch.off, l4_len)) {
			dp_drop(dw, m,
			        l4_len < sizeof(struct rte_tcp_hdr) ? DP_DROP_TCP_BAD_HDR
			                                            : DP_DROP_TCP_BAD_CKSUM);
			return;
		}
		rte_pktmbuf_adj(m, ch.off);
		tcp_input(dw, m, &src, &dst, l4_len);
		return;
	}
	case IPPROTO_ICMPV6:
		if (l4_len < 4 ||
		    !l4_cksum_ok(m, ip, IPPROTO_ICMPV6, (uint8_t *)ip + ch.off, l4_len)) {
			dp_drop(dw, m, DP_DROP_ICMP6_BAD);
			return;
		}
		/* Until DAD is done only NS and NA about the address are looked at. */
		rte_pktmbuf_adj(m, ch.off);
		net_icmp6_input(dw, m, ip, l4_len);
		return;
	default:
		/* RFC 8200 4: an unrecognized Next Header gets a parameter problem, code 1. */
		if (!group)
			net_icmp6_error(dw, m, total, 4, 1, ch.nh_ptr);
		dp_drop(dw, m, DP_DROP_IP6_PROTO);
		return;
	}
}

static void
fill_header(struct rte_ipv6_hdr *ip, const uint8_t *src, const uint8_t *dst, uint8_t proto,
            uint16_t l4_len, uint8_t hops)
{
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16(l4_len);
	ip->proto = proto;
	ip->hop_limits = hops;
	memcpy(ip->src_addr, src, 16);
	memcpy(ip->dst_addr, dst, 16);
}

void
net_ipv6_output_tcp(struct dp_worker *dw, struct rte_mbuf *m, const uint8_t *src,
                    const uint8_t *dst, uint16_t l4_len)
{
	struct rte_ipv6_hdr *ip =
	    (struct rte_ipv6_hdr *)rte_pktmbuf_prepend(m, sizeof(struct rte_ipv6_hdr));
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);

	fill_header(ip, src, dst, IPPROTO_TCP, l4_len, NET_IP6_HOP_LIMIT);
	m->l2_len = sizeof(struct rte_ether_hdr);
	m->l3_len = sizeof(*ip);
	m->l4_len = (uint64_t)((th->data_off >> 4) * 4);
	m->ol_flags = RTE_MBUF_F_TX_IPV6;
	if (dw->sh->tx_tcp_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
		th->cksum = rte_ipv6_phdr_cksum(ip, m->ol_flags);
	} else {
		th->cksum = net_cksum_ipv6_l4(ip, IPPROTO_TCP, th, l4_len);
	}
	net_eth_output_ipv6(dw, m, dst);
}

/* RFC 4443 2.4(f): a token bucket per worker, refilled each second. */
static bool
icmp6_error_allowed(struct dp_worker *dw)
{
	uint64_t s = dw->now_ms / 1000;

	if (s != dw->icmp6_second) {
		dw->icmp6_second = s;
		dw->icmp6_budget = ICMP6_ERRORS_PER_S;
	}
	if (dw->icmp6_budget == 0) {
		dw->c.icmp6_errors_limited++;
		return false;
	}
	dw->icmp6_budget--;
	return true;
}

void
net_icmp6_error(struct dp_worker *dw, const struct rte_mbuf *m, uint16_t plen, uint8_t type,
                uint8_t code, uint32_t param)
{
	const struct rte_ipv6_hdr *bad = rte_pktmbuf_mtod(m, const struct rte_ipv6_hdr *);
	const unsigned room = ICMP6_MIN_MTU - sizeof(struct rte_ipv6_hdr) - 8;
	uint16_t quote = (uint16_t)RTE_MIN((unsigned)plen, room);
	struct rte_ipv6_hdr *ip;
	struct rte_mbuf *e;
	uint16_t ck;
	uint8_t *ic;

	/*
	 * RFC 4443 2.4(e): never about a multicast destination (but for the
	 * exceptions, which we do not send), an unspecified or multicast
	 * source, or an ICMPv6 error (the caller sends none for those).
	 */
	if (bad->dst_addr[0] == 0xff || bad->src_addr[0] == 0xff ||
	    net_ipv6_is_unspecified(bad->src_addr) || !icmp6_error_allowed(dw))
		return;
	e = dp_alloc(dw);
	if (e == NULL)
		return;
	ip = (struct rte_ipv6_hdr *)rte_pktmbuf_append(e, (uint16_t)(sizeof(*ip) + 8 + quote));
	if (ip == NULL || quote > rte_pktmbuf_data_len(m)) {
		rte_pktmbuf_free(e);
		return;
	}
	ic = (uint8_t *)(ip + 1);
	ic[0] = type;
	ic[1] = code;
	ic[2] = ic[3] = 0;
	put_be32(ic + 4, param);
	memcpy(ic + 8, bad, quote);
	/* From the address the packet went to when it is ours, else our best for its source. */
	fill_header(ip,
	            net_ipv6_is_local(dw->sh, bad->dst_addr)
	                ? bad->dst_addr
	                : net_ipv6_src_for(dw->sh, bad->src_addr),
	            bad->src_addr, IPPROTO_ICMPV6, (uint16_t)(8 + quote), NET_IP6_HOP_LIMIT);
	ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, ic, (uint16_t)(8 + quote));
	memcpy(ic + 2, &ck, sizeof(ck));
	dw->c.icmp6_errors_out++;
	net_eth_output_ipv6(dw, e, ip->dst_addr);
}
