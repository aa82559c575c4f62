/*
 * net_ipv4.c: IPv4 (RFC 791, RFC 1122 3.2.1) and ICMP echo (RFC 792).
 *
 * Input promises: a packet reaches TCP or ICMP only with a valid header
 * (version, IHL, total length within the frame, checksum by the port or
 * here), addressed to one of the engine's addresses, and not a fragment: fragments
 * are counted and dropped (a TCP with MSS clamped to the MTU has no use for
 * them).  Output fills the header of a TCP segment and leaves checksums to
 * the port when it reported the offloads, computing them here otherwise.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"
#include "dataplane/tcp.h"

#define NET_IP_TTL 64

static void
icmp_echo(struct dp_worker *dw, struct rte_mbuf *m, struct rte_ipv4_hdr *ip, uint16_t l4_len)
{
	struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)((uint8_t *)ip + rte_ipv4_hdr_len(ip));
	uint32_t peer = ip->src_addr, us = ip->dst_addr; /* answered from the address pinged */

	if (l4_len < sizeof(*ic) || net_cksum(ic, l4_len, 0) != 0xffff) {
		dp_drop(dw, m, DP_DROP_ICMP_BAD);
		return;
	}
	if (ic->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || ic->icmp_code != 0) {
		dp_drop(dw, m, DP_DROP_ICMP_TYPE);
		return;
	}
	dw->c.icmp_echo++;
	/* Reply in place: same identifier, sequence and data (RFC 792). */
	ic->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	ic->icmp_cksum = 0;
	ic->icmp_cksum = (uint16_t)~net_cksum(ic, l4_len, 0);
	ip->src_addr = us;
	ip->dst_addr = peer;
	ip->time_to_live = NET_IP_TTL;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = (uint16_t)~net_cksum_ipv4_hdr(ip, rte_ipv4_hdr_len(ip));
	m->ol_flags = 0;
	net_eth_output_ipv4(dw, m, peer);
}

/*
 * The port's verdict when it gives one (never recomputed), else the sum here
 * over every octet of the segment (net_cksum.c: wide, not rte_raw_cksum()'s
 * 16 bits a turn, which was most of this function's cost).  NONE is "data
 * verified, checksum field not filled in" (virtio from a local guest): the
 * field would not verify, the data is good (rte_mbuf_core.h).
 */
static bool
tcp_cksum_ok(struct rte_mbuf *m, const struct rte_ipv4_hdr *ip, const void *l4, uint16_t l4_len)
{
	uint64_t f = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;

	if (f == RTE_MBUF_F_RX_L4_CKSUM_GOOD || f == RTE_MBUF_F_RX_L4_CKSUM_NONE)
		return true;
	if (f == RTE_MBUF_F_RX_L4_CKSUM_BAD)
		return false;
	return net_cksum_ipv4_tcp_ok(ip, l4, l4_len);
}

void
net_ipv4_input(struct dp_worker *dw, struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod(m, struct rte_ipv4_hdr *);
	uint16_t len = rte_pktmbuf_data_len(m), hlen, total, l4_len;
	uint64_t ipf = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;

	if (len < sizeof(*ip) || (ip->version_ihl >> 4) != 4) {
		dp_drop(dw, m, DP_DROP_IP_BAD_HDR);
		return;
	}
	hlen = rte_ipv4_hdr_len(ip);
	total = rte_be_to_cpu_16(ip->total_length);
	if (hlen < sizeof(*ip) || hlen > len || total < hlen || total > len) {
		dp_drop(dw, m, DP_DROP_IP_BAD_HDR);
		return;
	}
	/* GOOD and NONE (verified, field not filled in) pass; computed only with no verdict. */
	if (ipf == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
	    (ipf == RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN && net_cksum_ipv4_hdr(ip, hlen) != 0xffff)) {
		dp_drop(dw, m, DP_DROP_IP_BAD_CKSUM);
		return;
	}
	if (!dp_is_local_addr(dw->sh, ip->dst_addr)) {
		dp_drop(dw, m, DP_DROP_IP_NOT_US);
		return;
	}
	/* MF set or a non-zero offset: a fragment (RFC 791 3.2). */
	if (ip->fragment_offset &
	    rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
		dp_drop(dw, m, DP_DROP_IP_FRAGMENT);
		return;
	}
	/* Ethernet padding of short frames is not part of the packet. */
	if (len > total)
		rte_pktmbuf_trim(m, (uint16_t)(len - total));
	l4_len = (uint16_t)(total - hlen);
	switch (ip->next_proto_id) {
	case IPPROTO_TCP: {
		union tcp_addr src = tcp_addr_v4(ip->src_addr), dst = tcp_addr_v4(ip->dst_addr);

		if (l4_len < sizeof(struct rte_tcp_hdr) ||
		    !tcp_cksum_ok(m, ip, (uint8_t *)ip + hlen, l4_len)) {
			dp_drop(dw, m,
			        l4_len < sizeof(struct rte_tcp_hdr) ? DP_DROP_TCP_BAD_HDR
			                                            : DP_DROP_TCP_BAD_CKSUM);
			return;
		}
		rte_pktmbuf_adj(m, hlen);
		tcp_input(dw, m, &src, &dst, l4_len);
		return;
	}
	case IPPROTO_ICMP:
		icmp_echo(dw, m, ip, l4_len);
		return;
	default:
		dp_drop(dw, m, DP_DROP_IP_PROTO);
		return;
	}
}

void
net_ipv4_output_tcp(struct dp_worker *dw, struct rte_mbuf *m, uint32_t src, uint32_t dst,
                    uint16_t l4_len)
{
	struct rte_ipv4_hdr *ip =
	    (struct rte_ipv4_hdr *)rte_pktmbuf_prepend(m, sizeof(struct rte_ipv4_hdr));
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);

	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4_len));
	ip->packet_id = 0;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG); /* RFC 1191 */
	ip->time_to_live = NET_IP_TTL;
	ip->next_proto_id = IPPROTO_TCP;
	ip->hdr_checksum = 0;
	ip->src_addr = src;
	ip->dst_addr = dst;
	m->l2_len = sizeof(struct rte_ether_hdr);
	m->l3_len = sizeof(*ip);
	m->l4_len = (uint64_t)((th->data_off >> 4) * 4);
	m->ol_flags = RTE_MBUF_F_TX_IPV4;
	if (dw->sh->tx_ip_cksum)
		m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
	else
		ip->hdr_checksum = (uint16_t)~net_cksum_ipv4_hdr(ip, sizeof(*ip));
	if (dw->sh->tx_tcp_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
		th->cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
	} else {
		th->cksum = net_cksum_ipv4_tcp(ip, th, l4_len);
	}
	net_eth_output_ipv4(dw, m, dst);
}
