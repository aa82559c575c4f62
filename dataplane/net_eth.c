/*
 * net_eth.c: Ethernet in and out, flow steering, the TX burst.
 *
 * Input: frames for our MAC (or broadcast) go to ARP or IPv4 (unless the
 * stack has no IPv4 address: pigeon-loadgen over IPv6 only), and with
 * dpdk.ip6 to IPv6 (also to an IPv6 group's 33:33 address: net_ipv6.c keeps
 * the groups we joined); anything else is counted and dropped.  Steering: each TCP segment must
 * reach the worker that owns its flow (net_flow_owner(), net_steer.c); a flow's TCB lives only
 * there, so workers share no connection state.  With hardware RSS the port's queue already is the
 * owner's and a segment that arrives elsewhere is counted by reason; where the port gives no usable
 * RSS (tap, memif, af_packet put a flow on any queue) that is the normal case.  Either way the
 * segment goes over the owner's rte_ring.  Output: one TX burst per worker, flushed when full and
 * once per loop.  net_eth_poll() is the RX half of every worker's loop (pigeond's and
 * pigeon-loadgen's); the names of the drop reasons are in dp_counters.c.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/dp.h"
#include "dataplane/net_icmp6.h"
#include "dataplane/net_ipv6_ext.h"
#include "dataplane/tcp.h"

/*
 * Why the port put a segment whose Toeplitz hash is h on a queue that does
 * not own it: the port's own hash for the frame, when it gives one, tells a
 * different hash (another key, or fields we do not hash) from a redirection
 * table changed behind our back.
 */
static enum dp_misq
misq_reason(const struct rte_mbuf *m, uint32_t h)
{
	if ((m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) == 0)
		return DP_MISQ_NO_HASH;
	return m->hash.rss != h ? DP_MISQ_HASH : DP_MISQ_RETA;
}

/*
 * The owner of a TCP segment in an IPv4 frame; the receiving worker for
 * anything else.  With hardware RSS the port has already chosen the owner's
 * queue, so the owner is the receiving worker unless something went wrong,
 * which is counted by reason: the safety net.
 */
static unsigned
frame_owner(struct dp_worker *dw, struct rte_mbuf *m)
{
	const struct dp_shared *sh = dw->sh;
	const struct rte_ipv4_hdr *ip;
	const struct rte_tcp_hdr *th;
	unsigned hlen, owner;
	uint32_t h;

	if (rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + sizeof(*ip) + 4)
		return dw->id;
	ip = rte_pktmbuf_mtod_offset(m, const struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	hlen = rte_ipv4_hdr_len(ip);
	if (ip->next_proto_id != IPPROTO_TCP ||
	    rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + hlen + 4)
		return dw->id;
	/*
	 * Fragments are dropped wherever they arrive (net_ipv4.c), and a port
	 * hashes them by addresses alone (RSS hashes a 4-tuple only in an
	 * unfragmented datagram): not worth a hop, nor a misqueue.
	 */
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return dw->id;
	th = (const struct rte_tcp_hdr *)((const uint8_t *)ip + hlen);
	if (!sh->rss)
		return net_flow_owner(sh, ip->src_addr, th->src_port, ip->dst_addr, th->dst_port);
	h = net_rss_hash(sh, ip->src_addr, th->src_port, ip->dst_addr, th->dst_port);
	owner = sh->reta[h % sh->reta_size];
	if (owner != dw->id)
		dw->c.rss_misqueued[misq_reason(m, h)]++;
	return owner;
}

/*
 * The owner of an IPv6 frame: a TCP segment's (after its extension
 * headers), or, for a packet too big, the connection's it quotes (the TCB is
 * only there); the receiving worker for anything else.  As for IPv4, with
 * hardware RSS the port chose the queue; a port that does not hash IPv6 TCP
 * (sh->rss6 false) has its IPv6 flows owned by the software hash.
 */
static unsigned
frame_owner6(struct dp_worker *dw, struct rte_mbuf *m)
{
	const struct dp_shared *sh = dw->sh;
	const uint8_t *p =
	    rte_pktmbuf_mtod_offset(m, const uint8_t *, sizeof(struct rte_ether_hdr));
	unsigned len = rte_pktmbuf_data_len(m) - (unsigned)sizeof(struct rte_ether_hdr);
	struct net_ip6_chain ch;
	struct tcp_key key;
	uint32_t mtu, seq, h;
	uint16_t sport, dport;
	unsigned owner;

	if (rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + NET_IP6_HDR_LEN ||
	    net_ipv6_chain(p, len, p[24] == 0xff, &ch) != DP_DROP_COUNT)
		return dw->id;
	if (ch.proto == IPPROTO_ICMPV6 && ch.off + 8u <= len &&
	    net_icmp6_ptb_key(p + ch.off, len - ch.off, &key, &mtu, &seq))
		/* As a segment of that connection would arrive: from the peer, to us. */
		return net_flow_owner6(sh, key.raddr.a6, key.rport, key.laddr.a6, key.lport);
	if (ch.proto != IPPROTO_TCP || ch.off + 4u > len)
		return dw->id;
	memcpy(&sport, p + ch.off, 2);
	memcpy(&dport, p + ch.off + 2, 2);
	if (!sh->rss || !sh->rss6)
		return net_flow_owner6(sh, p + 8, sport, p + 24, dport);
	h = net_rss_hash6(sh, p + 8, sport, p + 24, dport);
	owner = sh->reta[h % sh->reta_size];
	if (owner != dw->id)
		dw->c.rss_misqueued[misq_reason(m, h)]++;
	return owner;
}

static bool
steer(struct dp_worker *dw, struct rte_mbuf *m, unsigned owner)
{
	if (owner == dw->id)
		return false;
	if (rte_ring_enqueue(dw->sh->steer[owner], m) != 0)
		dp_drop(dw, m, DP_DROP_STEER_FULL);
	else
		dw->c.steered_out++;
	return true;
}

void
net_eth_input(struct dp_worker *dw, struct rte_mbuf *m, bool steered)
{
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint16_t type;

	if (rte_pktmbuf_data_len(m) < sizeof(*eh)) {
		dp_drop(dw, m, DP_DROP_ETH_SHORT);
		return;
	}
	type = rte_be_to_cpu_16(eh->ether_type);
	/* IPv6 groups are 33:33:...; net_ipv6.c takes only the ones we joined. */
	if (!rte_is_same_ether_addr(&eh->dst_addr, &dw->sh->mac) &&
	    !rte_is_broadcast_ether_addr(&eh->dst_addr) &&
	    !(type == RTE_ETHER_TYPE_IPV6 && eh->dst_addr.addr_bytes[0] == 0x33 &&
	      eh->dst_addr.addr_bytes[1] == 0x33)) {
		dp_drop(dw, m, DP_DROP_ETH_DST);
		return;
	}
	if (type == RTE_ETHER_TYPE_IPV4 && dw->sh->ip != 0) {
		if (!steered && dw->sh->nworkers > 1) {
			unsigned owner = frame_owner(dw, m);

			if (owner != dw->id) {
				if (rte_ring_enqueue(dw->sh->steer[owner], m) != 0) {
					dp_drop(dw, m, DP_DROP_STEER_FULL);
					return;
				}
				dw->c.steered_out++;
				return;
			}
		}
		rte_pktmbuf_adj(m, sizeof(*eh));
		net_ipv4_input(dw, m);
	} else if (type == RTE_ETHER_TYPE_IPV6 && dw->sh->nip6 > 0) {
		if (!steered && dw->sh->nworkers > 1 && steer(dw, m, frame_owner6(dw, m)))
			return;
		rte_pktmbuf_adj(m, sizeof(*eh));
		net_ipv6_input(dw, m);
	} else if (type == RTE_ETHER_TYPE_ARP && dw->sh->ip != 0) {
		rte_pktmbuf_adj(m, sizeof(*eh));
		net_arp_input(dw, m);
	} else {
		dp_drop(dw, m, DP_DROP_ETH_TYPE);
	}
}

static void
tx_burst(struct dp_worker *dw, struct rte_mbuf **pkts, unsigned n)
{
	uint16_t sent;

	if (n == 0)
		return;
	sent = rte_eth_tx_burst(dw->sh->port, dw->queue, pkts, (uint16_t)n);
	for (unsigned i = 0; i < sent; i++)
		dw->c.tx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
	dw->c.tx_pkts += sent;
	/* A full TX ring is loss like any other: TCP retransmits. */
	for (unsigned i = sent; i < n; i++)
		dp_drop(dw, pkts[i], DP_DROP_TX_FULL);
}

void
net_eth_tx_flush(struct dp_worker *dw)
{
	struct rte_mbuf *pass[2 * DP_BURST];
	unsigned n;

	if (pa_likely(!dw->sh->impair.on)) {
		tx_burst(dw, dw->tx, dw->ntx);
		dw->ntx = 0;
		return;
	}
	n = dp_impair_apply(&dw->sh->impair, dw->imp_tx, dw->sh->pool, dw->now_ms, &dw->rng, dw->tx,
	                    dw->ntx, pass, pa_array_size(pass), &dw->c.drops[DP_DROP_IMPAIR]);
	dw->ntx = 0;
	tx_burst(dw, pass, n);
	while ((n = dp_impair_release(dw->imp_tx, dw->now_ms, pass, DP_BURST)) > 0)
		tx_burst(dw, pass, n);
}

void
net_eth_impair_release(struct dp_worker *dw)
{
	struct rte_mbuf *pass[DP_BURST];
	unsigned n;

	while ((n = dp_impair_release(dw->imp_rx, dw->now_ms, pass, DP_BURST)) > 0)
		for (unsigned i = 0; i < n; i++)
			net_eth_input(dw, pass[i], false);
}

/* Prepends the Ethernet header (to mac, of type) and queues the frame for the TX burst. */
static void
eth_queue(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ether_addr *mac, uint16_t type)
{
	struct rte_ether_hdr *eh = (struct rte_ether_hdr *)rte_pktmbuf_prepend(m, sizeof(*eh));

	if (eh == NULL) {
		dp_drop(dw, m, DP_DROP_NO_MBUF);
		return;
	}
	rte_ether_addr_copy(mac, &eh->dst_addr);
	rte_ether_addr_copy(&dw->sh->mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(type);
	if (dw->ntx == DP_BURST)
		net_eth_tx_flush(dw);
	dw->tx[dw->ntx++] = m;
}

uint32_t
net_next_hop(const struct dp_shared *sh, uint32_t dst)
{
	return ((dst ^ sh->ip) & sh->mask) == 0 ? dst : sh->gateway;
}

void
net_eth_output_ipv4(struct dp_worker *dw, struct rte_mbuf *m, uint32_t dst)
{
	const struct dp_shared *sh = dw->sh;
	uint32_t hop = net_next_hop(sh, dst);
	struct rte_ether_addr mac;

	if (hop == 0) {
		dp_drop(dw, m, DP_DROP_NO_ROUTE);
		return;
	}
	if (!net_arp_resolve(dw, hop, &mac)) {
		dp_drop(dw, m, DP_DROP_NO_NEIGHBOUR);
		return;
	}
	eth_queue(dw, m, &mac, RTE_ETHER_TYPE_IPV4);
}

const uint8_t *
net_next_hop6(const struct dp_shared *sh, const uint8_t *dst)
{
	if (net_ipv6_on_link(sh, dst))
		return dst;
	return sh->has_gateway6 ? sh->gateway6 : NULL;
}

void
net_eth_output_ipv6(struct dp_worker *dw, struct rte_mbuf *m, const uint8_t *dst)
{
	const struct dp_shared *sh = dw->sh;
	const uint8_t *hop = dst[0] == 0xff ? dst : net_next_hop6(sh, dst);
	struct rte_ether_addr mac;

	if (hop == NULL) {
		dp_drop(dw, m, DP_DROP_NO_ROUTE);
		return;
	}
	if (!net_nd_resolve(dw, hop, &mac)) {
		dp_drop(dw, m, DP_DROP_NO_NEIGHBOUR);
		return;
	}
	eth_queue(dw, m, &mac, RTE_ETHER_TYPE_IPV6);
}

unsigned
net_eth_poll(struct dp_worker *dw)
{
	struct rte_mbuf *pkts[DP_BURST], *pass[2 * DP_BURST];
	unsigned n = rte_eth_rx_burst(dw->sh->port, dw->queue, pkts, DP_BURST), k = 0, np = n;

	for (unsigned i = 0; i < n; i++)
		dw->c.rx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
	dw->c.rx_pkts += n;
	if (pa_unlikely(dw->sh->impair.on)) {
		np = dp_impair_apply(&dw->sh->impair, dw->imp_rx, dw->sh->pool, dw->now_ms,
		                     &dw->rng, pkts, n, pass, pa_array_size(pass),
		                     &dw->c.drops[DP_DROP_IMPAIR]);
		for (unsigned i = 0; i < np; i++)
			net_eth_input(dw, pass[i], false);
		net_eth_impair_release(dw);
	} else {
		for (unsigned i = 0; i < n; i++)
			net_eth_input(dw, pkts[i], false);
	}
	(void)np;
	if (dw->sh->nworkers > 1) {
		k = rte_ring_dequeue_burst(dw->sh->steer[dw->id], (void **)pkts, DP_BURST, NULL);
		for (unsigned i = 0; i < k; i++)
			net_eth_input(dw, pkts[i], true);
		dw->c.steered_in += k;
	}
	return n + k;
}
