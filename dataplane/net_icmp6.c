/*
 * net_icmp6.c: ICMPv6 (RFC 4443) for the engine's addresses.
 *
 * Echo requests are answered in place (to a group, from our best unicast
 * address for the peer: 4.2); packet too big (3.2, RFC 8201) lowers the MSS
 * of the connection it quotes, once its quoted segment is shown to be one we
 * sent and not yet acknowledged (RFC 5927 5.2: a blind attacker cannot shrink
 * a connection's segments); Neighbor Discovery goes to net_nd.c, router
 * solicitations, advertisements and redirects are never trusted (dropped,
 * counted).  MLD queries get our report (net_mld.c).  Other messages (errors we have no use for:
 * TCP retransmits and times out on its own) are counted and dropped.  The checksum was verified by
 * net_ipv6.c.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"
#include "dataplane/net_icmp6.h"
#include "dataplane/net_ipv6_ext.h"
#include "dataplane/tcp.h"

#define ICMP6_PTB 2
#define ICMP6_ECHO_REQUEST 128
#define ICMP6_ECHO_REPLY 129
#define ND_ROUTER_SOLICIT 133
#define ND_ROUTER_ADVERT 134
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_REDIRECT 137
#define MLD_QUERY 130

bool
net_icmp6_ptb_key(const uint8_t *msg, unsigned len, struct tcp_key *key, uint32_t *mtu,
                  uint32_t *seq)
{
	const uint8_t *q = msg + 8; /* the invoking packet, as much as was quoted */
	unsigned qlen = len - 8;
	struct net_ip6_chain ch;

	if (len < 8 + NET_IP6_HDR_LEN + 8 || msg[0] != ICMP6_PTB || (q[0] >> 4) != 6)
		return false;
	if (net_ipv6_chain(q, qlen, false, &ch) != DP_DROP_COUNT || ch.proto != IPPROTO_TCP ||
	    ch.off + 8u > qlen)
		return false;
	*mtu = (uint32_t)msg[4] << 24 | (uint32_t)msg[5] << 16 | (uint32_t)msg[6] << 8 | msg[7];
	/* Our segment: from us (its source) to the peer. */
	memcpy(key->laddr.a6, q + 8, 16);
	memcpy(key->raddr.a6, q + 24, 16);
	memcpy(&key->lport, q + ch.off, 2);
	memcpy(&key->rport, q + ch.off + 2, 2);
	*seq = (uint32_t)q[ch.off + 4] << 24 | (uint32_t)q[ch.off + 5] << 16 |
	       (uint32_t)q[ch.off + 6] << 8 | q[ch.off + 7];
	return true;
}

static void
echo_reply(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ipv6_hdr *req,
           uint16_t l4_len)
{
	uint8_t peer[16], us[16];
	struct rte_ipv6_hdr *ip;
	uint8_t *ic = rte_pktmbuf_mtod(m, uint8_t *);
	uint16_t ck;

	memcpy(peer, req->src_addr, 16);
	/* To a group: from our best unicast address for the peer (RFC 4443 4.2). */
	memcpy(us, req->dst_addr[0] == 0xff ? net_ipv6_src_for(dw->sh, peer) : req->dst_addr, 16);
	if (!net_ipv6_is_local(dw->sh, us)) {
		dp_drop(dw, m, DP_DROP_IP6_TENTATIVE);
		return;
	}
	dw->c.icmp6_echo++;
	/* Same identifier, sequence and data; any extension headers are not echoed. */
	ic[0] = ICMP6_ECHO_REPLY;
	ic[2] = ic[3] = 0;
	ip = (struct rte_ipv6_hdr *)rte_pktmbuf_prepend(m, sizeof(*ip));
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16(l4_len);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 64;
	memcpy(ip->src_addr, us, 16);
	memcpy(ip->dst_addr, peer, 16);
	ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, ic, l4_len);
	memcpy(ic + 2, &ck, sizeof(ck));
	m->ol_flags = 0;
	net_eth_output_ipv6(dw, m, peer);
}

static void
packet_too_big(struct dp_worker *dw, struct rte_mbuf *m, uint16_t l4_len)
{
	struct tcp_key key;
	uint32_t mtu, seq;

	if (!net_icmp6_ptb_key(rte_pktmbuf_mtod(m, const uint8_t *), l4_len, &key, &mtu, &seq) ||
	    !net_ipv6_is_local(dw->sh, key.laddr.a6)) {
		dp_drop(dw, m, DP_DROP_ICMP6_BAD);
		return;
	}
	if (tcp_pmtu_lower(dw, &key, mtu, seq)) {
		dw->c.pmtu_lowered++;
		/* Validated (it quoted a segment in flight): the destination's, for what comes
		 * next. */
		net_pmtu6_learn(dw, key.raddr.a6, mtu);
	}
	rte_pktmbuf_free(m);
}

void
net_icmp6_input(struct dp_worker *dw, struct rte_mbuf *m, struct rte_ipv6_hdr *ip, uint16_t l4_len)
{
	const uint8_t *ic = rte_pktmbuf_mtod(m, const uint8_t *);

	switch (ic[0]) {
	case ND_NEIGHBOR_SOLICIT:
	case ND_NEIGHBOR_ADVERT:
		net_nd_input(dw, m, ip, l4_len);
		return;
	case ND_ROUTER_SOLICIT:
	case ND_ROUTER_ADVERT:
	case ND_REDIRECT:
		/* Never trusted: dpdk.gateway6 and dpdk.ip6 are the configuration. */
		dp_drop(dw, m, DP_DROP_ND_UNTRUSTED);
		return;
	default:
		break;
	}
	/* Anything but ND about a tentative address waits for DAD (RFC 4862 5.4). */
	if (ip->dst_addr[0] != 0xff && !net_ipv6_is_local(dw->sh, ip->dst_addr)) {
		dp_drop(dw, m, DP_DROP_IP6_TENTATIVE);
		return;
	}
	if (ic[0] == ICMP6_ECHO_REQUEST && ic[1] == 0 && l4_len >= 8) {
		echo_reply(dw, m, ip, l4_len);
		return;
	}
	if (ic[0] == MLD_QUERY) {
		net_mld_input(dw, m, ip, l4_len);
		return;
	}
	if (ic[0] == ICMP6_PTB && ip->dst_addr[0] != 0xff) {
		packet_too_big(dw, m, l4_len);
		return;
	}
	dp_drop(dw, m, DP_DROP_ICMP6_TYPE);
}
