/*
 * test_tcp_active_open.c: TCP active open (dataplane/tcp_connect.c) against
 * RFC 9293 3.10.7.3 SYN-SENT, driven segment by segment on a real worker
 * (no port: frames are taken from the worker's TX burst before any flush).
 *
 * The SYN offers MSS, window scaling, SACK-permitted and timestamps; the
 * local port lands on the opening worker; ARP resolves the next hop before
 * the SYN; an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>; a RST counts only
 * with an acceptable ACK; the SYN-ACK completes the handshake with the
 * options negotiated and an ACK sent; the SYN is retransmitted on the RFC 6298
 * schedule and the open fails after TCP_SYN_RETRIES; a next hop that never
 * answers ARP fails the open.  And RFC 5961 section 7: challenge ACKs are
 * held to a randomized per-second budget, the rest counted.  And the SACK
 * scoreboard: after fast retransmit only the holes are sent again.  And a
 * stack with several consecutive addresses: ARP and IPv4 input for each,
 * active opens spread over them.  And IPv6 (tcp_connect6): Neighbor
 * Discovery before the SYN, the SYN from our address on the peer's prefix
 * with the IPv6 MSS, the handshake completed; no open from a tentative
 * address, none without a route, a neighbour that never answers fails it.
 * And ARP entry ageing (net_neigh.c: STALE, DELAY, unicast probes,
 * unreachable, a reply confirming) and the half of the table unsolicited
 * ARP may take.  And the path MTU kept per IPv6 destination (net_pmtu.c).
 * And the random delays (the worker's random source seeded by the test, so
 * each delay is known): DAD's join and first NS wait 0..1 s after the link
 * comes up (RFC 4862 5.4.2), none without DAD; an MLD query is answered at
 * a random time within its Maximum Response Delay (RFC 3810 6.2, RFC 2710
 * 4), a sooner pending report standing, a second at least between two, and
 * MLDv2's exponential Maximum Response Code decoded (RFC 3810 5.1.3).
 * The peer answers the probes of its entries (take_tx()).
 */
/* rte_ipv4_udptcp_cksum_verify() is still experimental in DPDK 22.11. */
#define ALLOW_EXPERIMENTAL_API

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_eal.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_thash.h>

#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/net_cksum.h"
#include "dataplane/tcp.h"

/* Not RTE_IPV4(): it shifts a signed int into the sign bit (UBSan). */
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))
#define OUR_IP IP4(198, 18, 0, 2)
#define PEER_IP IP4(198, 18, 0, 1)
#define SILENT_IP IP4(198, 18, 0, 77) /* on link, never answers ARP */
#define PEER_PORT 25
#define CACK_LIMIT 4 /* dpdk.challenge_ack_limit for these tests */

static struct dp_shared sh;
static struct dp_worker *dw;

/* What the application saw. */
static struct {
	unsigned established, closed;
	bool reset;
	uint8_t err;
} app;

static struct tcb *
t_conn_alloc(struct dp_worker *w)
{
	(void)w;
	return NULL;
}
static int
t_established(struct dp_worker *w, struct tcb *tcb)
{
	(void)w;
	(void)tcb;
	app.established++;
	return PA_OK;
}
static void
t_data(struct dp_worker *w, struct tcb *tcb)
{
	(void)w;
	(void)tcb;
}
/* The application's send buffer: acknowledged bytes leave its front. */
static uint8_t out_data[16384];
static uint32_t out_off, out_len;

static void
t_acked(struct dp_worker *w, struct tcb *tcb, uint32_t n)
{
	(void)w;
	(void)tcb;
	assert_true(n <= out_len - out_off);
	out_off += n;
}
static const uint8_t *
t_sendbuf(struct dp_worker *w, struct tcb *tcb, uint32_t *len)
{
	(void)w;
	(void)tcb;
	*len = out_len - out_off;
	return out_data + out_off;
}
static void
t_peer_fin(struct dp_worker *w, struct tcb *tcb)
{
	(void)w;
	(void)tcb;
}
static void
t_closed(struct dp_worker *w, struct tcb *tcb, bool reset)
{
	(void)w;
	app.closed++;
	app.reset = reset;
	app.err = tcb->err;
}
static void
t_want_output(struct dp_worker *w, struct tcb *tcb)
{
	(void)w;
	(void)tcb;
}

static const struct tcp_app_ops ops = {
    .conn_alloc = t_conn_alloc,
    .established = t_established,
    .data = t_data,
    .acked = t_acked,
    .sendbuf = t_sendbuf,
    .peer_fin = t_peer_fin,
    .closed = t_closed,
    .want_output = t_want_output,
};

static const uint8_t OUR_IP6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
static const uint8_t PEER_IP6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
static const uint8_t SILENT_IP6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x77};
static const uint8_t OFFLINK_IP6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 9, [15] = 1};

/* A frame the worker queued for TX, parsed. */
struct frame {
	bool arp, tcp, v6;
	bool bcast;            /* to ff:ff:ff:ff:ff:ff */
	uint8_t dmac_last;     /* the destination MAC's last octet */
	uint8_t icmp6_type;    /* IPv6 only: ICMPv6's type, 0 for TCP */
	uint8_t nd_target[16]; /* of a solicitation */
	uint8_t saddr6[16];
	uint16_t arp_op;
	uint32_t arp_tip, arp_sip;
	uint32_t saddr; /* host order */
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	uint32_t len; /* payload octets */
	struct tcp_opts opts;
};

static void peer_replies_arp(void);
static void peer_advertises(void);

/*
 * The frames the worker queued, parsed, in out (max).  The peer is alive:
 * a unicast probe of its entry (an ARP request to its MAC, a unicast NS:
 * the neighbour entry ageing, net_neigh.c) is answered at once, as the peer
 * would, and not returned.
 */
static unsigned
take_tx(struct frame *out, unsigned max)
{
	unsigned n = 0;
	bool arp_probed = false, nd_probed = false;

	for (unsigned i = 0; i < dw->ntx; i++) {
		struct rte_mbuf *m = dw->tx[i];
		const struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
		struct frame f = {.bcast = rte_is_broadcast_ether_addr(&eh->dst_addr),
		                  .dmac_last = eh->dst_addr.addr_bytes[5]};
		bool probe = !rte_is_broadcast_ether_addr(&eh->dst_addr) &&
		             !rte_is_multicast_ether_addr(&eh->dst_addr);

		if (eh->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
			const struct rte_arp_hdr *ah = (const struct rte_arp_hdr *)(eh + 1);

			f.arp = true;
			f.arp_op = rte_be_to_cpu_16(ah->arp_opcode);
			f.arp_tip = rte_be_to_cpu_32(ah->arp_data.arp_tip);
			f.arp_sip = rte_be_to_cpu_32(ah->arp_data.arp_sip);
		} else if (eh->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
			const struct rte_ipv6_hdr *ip6 = (const struct rte_ipv6_hdr *)(eh + 1);
			const uint8_t *l4 = (const uint8_t *)(ip6 + 1);
			uint16_t plen = rte_be_to_cpu_16(ip6->payload_len);

			f.v6 = true;
			memcpy(f.saddr6, ip6->src_addr, 16);
			if (ip6->proto == 0 && l4[0] == IPPROTO_ICMPV6) {
				/* An MLD report: ICMPv6 behind a hop-by-hop header (Router Alert).
				 */
				f.icmp6_type = l4[8 * (l4[1] + 1)];
			} else if (ip6->proto == IPPROTO_ICMPV6) {
				f.icmp6_type = l4[0];
				if (l4[0] == 135)
					memcpy(f.nd_target, l4 + 8, 16);
			} else {
				const struct rte_tcp_hdr *th = (const struct rte_tcp_hdr *)l4;
				unsigned hlen = (th->data_off >> 4) * 4u;

				assert_int_equal(ip6->proto, IPPROTO_TCP);
				assert_true(net_cksum_ipv6_l4_ok(ip6, IPPROTO_TCP, th, plen));
				f.tcp = true;
				f.sport = rte_be_to_cpu_16(th->src_port);
				f.dport = rte_be_to_cpu_16(th->dst_port);
				f.seq = rte_be_to_cpu_32(th->sent_seq);
				f.flags = th->tcp_flags;
				f.len = plen - hlen;
				assert_int_equal(tcp_parse_options((const uint8_t *)(th + 1),
				                                   hlen - sizeof(*th), &f.opts),
				                 PA_OK);
			}
		} else {
			const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eh + 1);
			const struct rte_tcp_hdr *th =
			    (const struct rte_tcp_hdr *)((const uint8_t *)ip +
			                                 rte_ipv4_hdr_len(ip));
			unsigned hlen = (th->data_off >> 4) * 4u;

			assert_int_equal(ip->next_proto_id, IPPROTO_TCP);
			/* Software checksums (no offload here): the segment must verify. */
			assert_int_equal(rte_ipv4_udptcp_cksum_verify(ip, th), 0);
			f.tcp = true;
			f.saddr = rte_be_to_cpu_32(ip->src_addr);
			f.sport = rte_be_to_cpu_16(th->src_port);
			f.dport = rte_be_to_cpu_16(th->dst_port);
			f.seq = rte_be_to_cpu_32(th->sent_seq);
			f.ack = rte_be_to_cpu_32(th->recv_ack);
			f.flags = th->tcp_flags;
			f.win = rte_be_to_cpu_16(th->rx_win);
			f.len = rte_be_to_cpu_16(ip->total_length) - rte_ipv4_hdr_len(ip) - hlen;
			assert_int_equal(tcp_parse_options((const uint8_t *)(th + 1),
			                                   hlen - sizeof(*th), &f.opts),
			                 PA_OK);
		}
		rte_pktmbuf_free(m);
		if (probe && f.arp && f.arp_op == RTE_ARP_OP_REQUEST && f.arp_tip == PEER_IP) {
			arp_probed = true;
			continue;
		}
		if (probe && f.icmp6_type == 135 && memcmp(f.nd_target, PEER_IP6, 16) == 0) {
			nd_probed = true;
			continue;
		}
		if (n < max)
			out[n++] = f;
	}
	dw->ntx = 0;
	if (arp_probed)
		peer_replies_arp();
	if (nd_probed)
		peer_advertises();
	return n;
}

/* An ARP request or reply from sip at 02:..:mac_last for tip (host order), to ARP input. */
static void
arp_from(uint16_t op, uint32_t sip, uint8_t mac_last, uint32_t tip)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(sh.pool);
	struct rte_arp_hdr arp = {0}, *ah = &arp;
	void *p;

	ah->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	ah->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ah->arp_hlen = RTE_ETHER_ADDR_LEN;
	ah->arp_plen = 4;
	ah->arp_opcode = rte_cpu_to_be_16(op);
	ah->arp_data.arp_sha.addr_bytes[0] = 0x02;
	ah->arp_data.arp_sha.addr_bytes[5] = mac_last;
	ah->arp_data.arp_sip = rte_cpu_to_be_32(sip);
	ah->arp_data.arp_tip = rte_cpu_to_be_32(tip);
	assert_non_null(m);
	p = rte_pktmbuf_append(m, sizeof(arp));
	assert_non_null(p);
	memcpy(p, &arp, sizeof(arp));
	net_arp_input(dw, m);
}

static void
peer_asks_for(uint32_t tip)
{
	arp_from(RTE_ARP_OP_REQUEST, PEER_IP, 0x01, tip);
}

/* The peer answers a request of ours (a resolution, or a probe of its entry). */
static void
peer_replies_arp(void)
{
	arp_from(RTE_ARP_OP_REPLY, PEER_IP, 0x01, OUR_IP);
}

/* The peer announces itself (an ARP request for our address): the neighbour table learns it. */
static void
learn_peer(void)
{
	struct frame f[4];

	peer_asks_for(OUR_IP);
	take_tx(f, 4); /* our reply */
}

static void
advance(uint64_t ms)
{
	dw->now_ms += ms;
	dp_worker_timers(dw);
}

/* A segment from the peer to the connection, as tcp_input() would hand it over. */
static struct tcp_seg
from_peer(const struct tcb *tcb, uint8_t flags, uint32_t seq, uint32_t ack)
{
	struct tcp_seg seg = {.key = tcb->key, .seq = seq, .ack = ack, .flags = flags, .win = 8192};

	return seg;
}

static struct tcb *
fresh_tcb(void)
{
	struct tcb *tcb = calloc(1, sizeof(*tcb));

	assert_non_null(tcb);
	memset(&app, 0, sizeof(app));
	out_off = out_len = 0;
	return tcb;
}

static void
done(struct tcb *tcb)
{
	tcp_abort(dw, tcb);
	take_tx((struct frame[4]){0}, 0);
	free(tcb);
}

static void
test_syn_offers_everything(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];

	(void)state;
	assert_int_equal(
	    tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT)), PA_OK);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	assert_int_equal(take_tx(f, 4), 1);
	assert_true(f[0].tcp);
	assert_int_equal(f[0].flags, RTE_TCP_SYN_FLAG);
	assert_int_equal(f[0].seq, tcb->iss);
	assert_int_equal(f[0].dport, PEER_PORT);
	assert_in_range(f[0].sport, TCP_EPHEMERAL_LO, TCP_EPHEMERAL_HI);
	/* Software steering: the flow belongs to the opening worker. */
	assert_int_equal(net_flow_owner(&sh, tcb->key.laddr.v4, tcb->key.lport, tcb->key.raddr.v4,
	                                tcb->key.rport),
	                 dw->id);
	assert_true(f[0].opts.has_mss);
	assert_int_equal(f[0].opts.mss, 1460);
	assert_true(f[0].opts.has_wscale);
	assert_int_equal(f[0].opts.wscale, TCP_RCV_WSCALE);
	assert_true(f[0].opts.sack_ok);
	assert_true(f[0].opts.has_ts);
	assert_int_equal(f[0].opts.tsecr, 0); /* RFC 7323 3.2 */
	assert_int_equal(tcb->snd_una, tcb->iss);
	assert_int_equal(tcb->snd_nxt, tcb->iss + 1);
	done(tcb);
}

/*
 * With hardware RSS the local port is chosen by the port's Toeplitz hash and
 * redirection table: the SYN-ACK, hashed as it will arrive (from the peer),
 * lands on a bucket of the opening worker.  The standard verification-suite
 * key is not symmetric, so the direction matters.
 */
static void
test_port_lands_on_reta(void **state)
{
	static const uint8_t key[40] __rte_aligned(4) = {
	    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
	    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
	    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
	};
	uint8_t reta[128];

	(void)state;
	/* Worker 1 (dw) has one bucket in four. */
	for (unsigned i = 0; i < 128; i++)
		reta[i] = i % 4 == 1;
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, 128), PA_OK);
	for (unsigned i = 0; i < 20; i++) {
		struct tcb *tcb = fresh_tcb();
		union rte_thash_tuple t;
		struct frame f[4];

		assert_int_equal(
		    tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT)),
		    PA_OK);
		assert_int_equal(take_tx(f, 4), 1);
		assert_int_equal(f[0].sport, rte_be_to_cpu_16(tcb->key.lport));
		t.v4.src_addr = PEER_IP;
		t.v4.dst_addr = OUR_IP;
		t.v4.sport = PEER_PORT;
		t.v4.dport = f[0].sport;
		assert_int_equal(reta[rte_softrss((uint32_t *)&t, RTE_THASH_V4_L4_LEN, key) % 128],
		                 1);
		done(tcb);
	}
}

/* Back to software steering for the other tests, whether test_port_lands_on_reta passed or not. */
static int
rss_off(void **state)
{
	(void)state;
	sh.rss = false;
	return 0;
}

static void
test_two_opens_two_ports(void **state)
{
	struct tcb *a = fresh_tcb(), *b = fresh_tcb();

	(void)state;
	assert_int_equal(tcp_connect(dw, a, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT)),
	                 PA_OK);
	assert_int_equal(tcp_connect(dw, b, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT)),
	                 PA_OK);
	assert_int_not_equal(a->key.lport, b->key.lport);
	done(a);
	done(b);
}

static void
test_unacceptable_ack_gets_rst(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	take_tx(f, 4);
	/* SEG.ACK =< ISS: RFC 9293 3.10.7.3 answers <SEQ=SEG.ACK><CTL=RST>. */
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 1000, tcb->iss);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].flags & RTE_TCP_RST_FLAG, RTE_TCP_RST_FLAG);
	assert_int_equal(f[0].seq, tcb->iss);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	/* SEG.ACK > SND.NXT likewise. */
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 1000, tcb->iss + 2);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].seq, tcb->iss + 2);
	/* A RST with such an ACK is not answered, and does not reset. */
	seg = from_peer(tcb, RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, tcb->iss + 7);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(take_tx(f, 4), 0);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	assert_int_equal(app.closed, 0);
	done(tcb);
}

static void
test_rst_needs_acceptable_ack(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;
	uint64_t failed = dw->c.connects_failed;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	take_tx(f, 4);
	/* A blind RST (no ACK) is dropped: RFC 9293 3.10.7.3, RFC 5961 3.2. */
	seg = from_peer(tcb, RTE_TCP_RST_FLAG, 12345, 0);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	assert_int_equal(app.closed, 0);
	/* A SYN without ACK (simultaneous open) is not taken either. */
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG, 5000, 0);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	/* "Connection refused": RST with ACK = ISS + 1. */
	seg = from_peer(tcb, RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, tcb->iss + 1);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(app.closed, 1);
	assert_true(app.reset);
	assert_int_equal(app.err, TCP_ERR_REFUSED);
	assert_int_equal(app.established, 0);
	assert_int_equal(tcb->state, TCP_CLOSED);
	assert_int_equal(dw->c.connects_failed, failed + 1);
	assert_int_equal(take_tx(f, 4), 0);
	free(tcb);
}

static void
test_synack_establishes(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;
	enum tcp_tag tag;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	take_tx(f, 4);
	advance(3); /* an RTT of 3 ms */
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 0xfffffff0u, tcb->iss + 1);
	seg.win = 29200;
	seg.opts.has_mss = true;
	seg.opts.mss = 1400;
	seg.opts.has_wscale = true;
	seg.opts.wscale = 7;
	seg.opts.sack_ok = true;
	seg.opts.has_ts = true;
	seg.opts.tsval = 777;
	seg.opts.tsecr = (uint32_t)dw->now_ms - 3;
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(app.established, 1);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	assert_int_equal(tcb->irs, 0xfffffff0u);
	assert_int_equal(tcb->rcv_nxt, 0xfffffff1u);
	assert_int_equal(tcb->snd_una, tcb->iss + 1);
	assert_int_equal(tcb->mss, 1400);
	assert_true(tcb->ws_ok);
	assert_int_equal(tcb->snd_wscale, 7);
	assert_int_equal(tcb->rcv_wscale, TCP_RCV_WSCALE);
	assert_true(tcb->sack_ok);
	assert_true(tcb->ts_ok);
	assert_int_equal(tcb->ts_recent, 777);
	/* RFC 7323 2.2: the SYN-ACK's window is not scaled. */
	assert_int_equal(tcb->snd_wnd, 29200);
	/* RFC 6928 IW with the peer's MSS; an RTT sample from the SYN (RFC 6298 2.2). */
	assert_int_equal(tcb->cwnd, 10u * 1400u);
	assert_int_equal(tcb->srtt_ms8 >> 3, 3);
	assert_int_equal(dw->c.conns_opened > 0, true);
	assert_ptr_equal(tcp_lookup(dw, &tcb->key, &tag), tcb);
	/* The owed ACK goes out with the next output: <SEQ=ISS+1><ACK=IRS+1>, timestamps echoed. */
	tcp_output(dw, tcb);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].flags, RTE_TCP_ACK_FLAG);
	assert_int_equal(f[0].seq, tcb->iss + 1);
	assert_int_equal(f[0].ack, 0xfffffff1u);
	assert_true(f[0].opts.has_ts);
	assert_int_equal(f[0].opts.tsecr, 777);
	/* A second SYN-ACK now lands on an established connection: not this function's. */
	done(tcb);
}

static void
test_synack_without_options(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	take_tx(f, 4);
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 42, tcb->iss + 1);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	/* Nothing offered back: no scaling, no SACK, no timestamps, MSS 536 (RFC 9293 3.7.1). */
	assert_false(tcb->ws_ok);
	assert_int_equal(tcb->snd_wscale, 0);
	assert_int_equal(tcb->rcv_wscale, 0);
	assert_false(tcb->sack_ok);
	assert_false(tcb->ts_ok);
	assert_int_equal(tcb->mss, TCP_MSS_DEFAULT);
	done(tcb);
}

static void
test_syn_retransmitted_then_fails(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	uint64_t rtx = dw->c.syn_retransmits;
	uint32_t rto = TCP_RTO_INIT_MS;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	assert_int_equal(take_tx(f, 4), 1);
	for (unsigned i = 1; i <= TCP_SYN_RETRIES; i++) {
		/* Not before the RTO ... */
		advance(rto - 1);
		assert_int_equal(take_tx(f, 4), 0);
		/* ... then the same SYN again, and the RTO doubles (RFC 6298 5.5). */
		advance(1);
		assert_int_equal(take_tx(f, 4), 1);
		assert_int_equal(f[0].flags, RTE_TCP_SYN_FLAG);
		assert_int_equal(f[0].seq, tcb->iss);
		rto *= 2;
		assert_int_equal(tcb->rto_ms, rto);
	}
	assert_int_equal(dw->c.syn_retransmits, rtx + TCP_SYN_RETRIES);
	assert_int_equal(app.closed, 0);
	advance(rto);
	assert_int_equal(app.closed, 1);
	assert_int_equal(app.err, TCP_ERR_TIMEOUT);
	assert_int_equal(take_tx(f, 4), 0);
	free(tcb);
}

static void
test_late_synack_after_retransmission(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	advance(TCP_RTO_INIT_MS);
	take_tx(f, 4);
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 9, tcb->iss + 1);
	seg.opts.has_mss = true;
	seg.opts.mss = 1460;
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	/* Karn: no sample from a retransmitted SYN; RFC 6298 5.7 RTO 3 s; RFC 5681 3.1 IW 1. */
	assert_int_equal(tcb->srtt_ms8, 0);
	assert_int_equal(tcb->rto_ms, TCP_SYN_RTO_DATA_MS);
	assert_int_equal(tcb->cwnd, 1460);
	done(tcb);
}

static void
test_arp_before_syn(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	unsigned n;

	(void)state;
	/* An on-link address nobody answers for: ARP requests, never a SYN. */
	assert_int_equal(tcp_connect(dw, tcb, rte_cpu_to_be_32(SILENT_IP), rte_cpu_to_be_16(25)),
	                 PA_OK);
	n = take_tx(f, 4);
	assert_int_equal(n, 1);
	assert_true(f[0].arp);
	assert_int_equal(f[0].arp_op, RTE_ARP_OP_REQUEST);
	assert_int_equal(f[0].arp_tip, SILENT_IP);
	for (unsigned ms = 0; ms < TCP_ARP_WAIT_MS + 100 && app.closed == 0; ms += 50) {
		advance(50);
		n = take_tx(f, 4);
		for (unsigned i = 0; i < n; i++)
			assert_true(f[i].arp);
	}
	assert_int_equal(app.closed, 1);
	assert_int_equal(app.err, TCP_ERR_UNREACHABLE);
	free(tcb);
}

static void
test_no_route(void **state)
{
	struct tcb *tcb = fresh_tcb();

	(void)state;
	/* Off link and no gateway: refused at once, nothing to undo. */
	assert_int_equal(
	    tcp_connect(dw, tcb, rte_cpu_to_be_32(IP4(198, 19, 9, 9)), rte_cpu_to_be_16(25)),
	    PA_ERROR);
	assert_int_equal(dw->ntx, 0);
	free(tcb);
}

/* RFC 5961 7: challenge ACKs within a per-second budget, randomized in [limit/2, 3*limit/2]. */
static void
test_challenge_ack_rate_limit(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[32];
	struct tcp_seg seg;
	uint64_t acks0, limited0;
	unsigned sent;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 42, tcb->iss + 1);
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	take_tx(f, 32);
	/* The start of a second of its own. */
	advance(1000 - dw->now_ms % 1000);
	take_tx(f, 32); /* whatever timers sent (ARP retries of other tests) */
	acks0 = dw->c.challenge_acks;
	limited0 = dw->c.challenge_acks_limited;
	for (int i = 0; i < 20; i++) {
		/* In the window, not at RCV.NXT: a challenge ACK is due (RFC 5961 3.2). */
		seg = from_peer(tcb, RTE_TCP_RST_FLAG, tcb->rcv_nxt + 100, 0);
		tcp_conn_input(dw, tcb, &seg);
	}
	sent = take_tx(f, 32);
	assert_in_range(sent, CACK_LIMIT / 2, CACK_LIMIT + CACK_LIMIT / 2);
	for (unsigned i = 0; i < sent; i++) {
		assert_int_equal(f[i].flags, RTE_TCP_ACK_FLAG);
		assert_int_equal(f[i].ack, tcb->rcv_nxt);
	}
	assert_int_equal(dw->c.challenge_acks - acks0, sent);
	assert_int_equal(dw->c.challenge_acks_limited - limited0, 20 - sent);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	/* The next second brings a new budget. */
	advance(1000);
	take_tx(f, 32);
	seg = from_peer(tcb, RTE_TCP_RST_FLAG, tcb->rcv_nxt + 100, 0);
	tcp_conn_input(dw, tcb, &seg);
	assert_int_equal(take_tx(f, 32), 1);
	done(tcb);
}

/* RFC 2018 / RFC 6675: after fast retransmit only the holes the SACK blocks leave are resent. */
static void
test_sack_retransmits_holes_only(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[32];
	struct tcp_seg seg;
	uint32_t base;
	uint64_t skipped;
	unsigned n;

	(void)state;
	tcp_connect(dw, tcb, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(PEER_PORT));
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 500, tcb->iss + 1);
	seg.win = 65535;
	seg.opts.has_mss = true;
	seg.opts.mss = 1000;
	seg.opts.sack_ok = true;
	tcp_synsent_input(dw, tcb, &seg);
	assert_true(tcb->sack_ok);
	take_tx(f, 32);
	base = tcb->iss + 1;
	/* Ten segments of 1000 octets: the initial window (RFC 6928). */
	out_len = 10000;
	tcp_output(dw, tcb);
	n = take_tx(f, 32);
	assert_int_equal(n, 10);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(f[i].seq, base + 1000 * i);
		assert_int_equal(f[i].len, 1000);
	}
	/* Segments 0 and 5 were lost: three duplicate ACKs with SACK blocks. */
	skipped = dw->c.sack_rtx_skipped;
	for (int i = 0; i < 3; i++) {
		seg = from_peer(tcb, RTE_TCP_ACK_FLAG, 501, base);
		seg.win = 65535;
		seg.opts.nsack = 2;
		seg.opts.sack[0][0] = base + 1000;
		seg.opts.sack[0][1] = base + 5000;
		seg.opts.sack[1][0] = base + 6000;
		seg.opts.sack[1][1] = base + (i == 0 ? 8000 : 10000);
		tcp_conn_input(dw, tcb, &seg);
	}
	assert_true(tcb->in_recovery);
	assert_int_equal(tcb->nsacked, 2);
	tcp_output(dw, tcb);
	n = take_tx(f, 32);
	assert_int_equal(n, 2);
	assert_int_equal(f[0].seq, base);
	assert_int_equal(f[0].len, 1000);
	assert_int_equal(f[1].seq, base + 5000);
	assert_int_equal(f[1].len, 1000);
	assert_int_equal(dw->c.sack_rtx_skipped - skipped, 8000);
	/* Everything arrives: recovery ends, the scoreboard empties, the buffer is released. */
	seg = from_peer(tcb, RTE_TCP_ACK_FLAG, 501, base + 10000);
	seg.win = 65535;
	tcp_conn_input(dw, tcb, &seg);
	assert_false(tcb->in_recovery);
	assert_int_equal(tcb->nsacked, 0);
	assert_int_equal(out_off, 10000);
	done(tcb);
}

/*
 * A stack with three consecutive addresses (dp_port_conf.ip_count 3):
 * ARP is answered for each, from that address, and not for the one past
 * them; IPv4 input takes exactly that range; active opens take the
 * addresses in turn, each port still on the opening worker.
 */
static void
test_several_local_addresses(void **state)
{
	struct tcb *tcbs[6];
	struct frame f[4];
	uint64_t not_us = dw->c.drops[DP_DROP_ARP_NOT_US];

	(void)state;
	sh.ip_extra = 2;
	for (unsigned a = 0; a < 4; a++) {
		peer_asks_for(OUR_IP + a);
		if (a < 3) {
			assert_int_equal(take_tx(f, 4), 1);
			assert_true(f[0].arp);
			assert_int_equal(f[0].arp_op, RTE_ARP_OP_REPLY);
			assert_int_equal(f[0].arp_sip, OUR_IP + a);
			assert_int_equal(f[0].arp_tip, PEER_IP);
		} else {
			assert_int_equal(take_tx(f, 4), 0);
			assert_int_equal(dw->c.drops[DP_DROP_ARP_NOT_US], not_us + 1);
		}
	}
	assert_false(dp_is_local_addr(&sh, rte_cpu_to_be_32(OUR_IP - 1)));
	for (unsigned a = 0; a < 3; a++)
		assert_true(dp_is_local_addr(&sh, rte_cpu_to_be_32(OUR_IP + a)));
	assert_false(dp_is_local_addr(&sh, rte_cpu_to_be_32(OUR_IP + 3)));
	for (unsigned i = 0; i < 6; i++) {
		tcbs[i] = calloc(1, sizeof(*tcbs[i]));
		assert_non_null(tcbs[i]);
		assert_int_equal(tcp_connect(dw, tcbs[i], rte_cpu_to_be_32(PEER_IP),
		                             rte_cpu_to_be_16(PEER_PORT)),
		                 PA_OK);
		assert_int_equal(take_tx(f, 4), 1);
		assert_true(f[0].tcp);
		/* In turn from the first: the worker's cursor starts at address 0. */
		assert_int_equal(f[0].saddr, OUR_IP + i % 3);
		assert_int_equal(rte_be_to_cpu_32(tcbs[i]->key.laddr.v4), OUR_IP + i % 3);
		assert_int_equal(net_flow_owner(&sh, tcbs[i]->key.laddr.v4, tcbs[i]->key.lport,
		                                tcbs[i]->key.raddr.v4, tcbs[i]->key.rport),
		                 dw->id);
	}
	for (unsigned i = 0; i < 6; i++) {
		tcp_abort(dw, tcbs[i]);
		free(tcbs[i]);
	}
	take_tx(f, 0);
}

/*
 * The peer's solicited advertisement for PEER_IP6 (RFC 4861 4.4: hop limit
 * 255, S and O, its link-layer address), as a frame off the wire.
 */
static void
peer_advertises(void)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(sh.pool);
	const unsigned l4 = 32;
	struct rte_ether_hdr *eh;
	struct rte_ipv6_hdr *ip;
	uint8_t *na;
	uint16_t ck;

	assert_non_null(m);
	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eh) + sizeof(*ip) + l4);
	assert_non_null(eh);
	memset(eh, 0, sizeof(*eh) + sizeof(*ip) + l4);
	rte_ether_addr_copy(&sh.mac, &eh->dst_addr);
	eh->src_addr.addr_bytes[0] = 0x02;
	eh->src_addr.addr_bytes[5] = 0x01;
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip = (struct rte_ipv6_hdr *)(eh + 1);
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16(l4);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 255;
	memcpy(ip->src_addr, PEER_IP6, 16);
	memcpy(ip->dst_addr, OUR_IP6, 16);
	na = (uint8_t *)(ip + 1);
	na[0] = 136;  /* Neighbor Advertisement */
	na[4] = 0x60; /* Solicited, Override */
	memcpy(na + 8, PEER_IP6, 16);
	na[24] = 2; /* Target Link-Layer Address, 8 octets */
	na[25] = 1;
	rte_ether_addr_copy(&eh->src_addr, (struct rte_ether_addr *)(na + 26));
	ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, na, l4);
	memcpy(na + 2, &ck, 2);
	net_eth_input(dw, m, false);
}

/* IPv6: ND first, then the SYN from our address on the peer's prefix, then the handshake. */
static void
test_ipv6_open(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	struct tcp_seg seg;
	unsigned n;

	(void)state;
	assert_int_equal(tcp_connect6(dw, tcb, PEER_IP6, rte_cpu_to_be_16(PEER_PORT)), PA_OK);
	assert_int_equal(tcb->state, TCP_SYN_SENT);
	assert_true(tcp_key_v6(&tcb->key));
	assert_memory_equal(tcb->key.laddr.a6, OUR_IP6, 16);
	/* Not known yet: a solicitation (RFC 4861 7.2.2), no SYN. */
	n = take_tx(f, 4);
	assert_int_equal(n, 1);
	assert_true(f[0].v6);
	assert_int_equal(f[0].icmp6_type, 135);
	assert_memory_equal(f[0].nd_target, PEER_IP6, 16);
	peer_advertises();
	assert_int_equal(take_tx(f, 4), 0);
	advance(TCP_ARP_POLL_MS);
	n = take_tx(f, 4);
	assert_int_equal(n, 1);
	assert_true(f[0].v6 && f[0].tcp);
	assert_int_equal(f[0].flags, RTE_TCP_SYN_FLAG);
	assert_memory_equal(f[0].saddr6, OUR_IP6, 16);
	assert_int_equal(f[0].dport, PEER_PORT);
	assert_int_equal(f[0].seq, tcb->iss);
	/* RFC 8200 5 and RFC 9293 3.7.1: the MTU less IPv6's 40 and TCP's 20. */
	assert_true(f[0].opts.has_mss);
	assert_int_equal(f[0].opts.mss, 1440);
	assert_true(f[0].opts.sack_ok && f[0].opts.has_wscale && f[0].opts.has_ts);
	/* The SYN-ACK will reach this worker (software steering over the IPv6 tuple). */
	assert_int_equal(net_flow_owner6(&sh, tcb->key.raddr.a6, tcb->key.rport, tcb->key.laddr.a6,
	                                 tcb->key.lport),
	                 dw->id);
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 7000, tcb->iss + 1);
	seg.opts.has_mss = true;
	seg.opts.mss = 1440;
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	assert_int_equal(app.established, 1);
	assert_int_equal(tcb->mss, 1440);
	tcp_output(dw, tcb);
	n = take_tx(f, 4);
	assert_int_equal(n, 1);
	assert_true(f[0].v6 && f[0].tcp);
	assert_int_equal(f[0].flags, RTE_TCP_ACK_FLAG);
	done(tcb);
}

/*
 * No open off link without dpdk.gateway6, to a group or to ourselves, nor
 * from a tentative address: not from the link-local one instead either (too
 * small a scope for a global peer, RFC 6724 5 rule 2).
 */
static void
test_ipv6_refused(void **state)
{
	static const uint8_t group[16] = {0xff, 0x02, [15] = 1};
	struct tcb *tcb = fresh_tcb();
	uint64_t no_route = dw->c.drops[DP_DROP_NO_ROUTE];

	(void)state;
	assert_int_equal(tcp_connect6(dw, tcb, OFFLINK_IP6, rte_cpu_to_be_16(25)), PA_ERROR);
	assert_int_equal(dw->c.drops[DP_DROP_NO_ROUTE], no_route + 1);
	assert_int_equal(tcp_connect6(dw, tcb, group, rte_cpu_to_be_16(25)), PA_ERROR);
	assert_int_equal(tcp_connect6(dw, tcb, OUR_IP6, rte_cpu_to_be_16(25)), PA_ERROR);
	sh.ip6[1].state = DP_ADDR6_TENTATIVE;
	assert_int_equal(tcp_connect6(dw, tcb, PEER_IP6, rte_cpu_to_be_16(25)), PA_ERROR);
	sh.ip6[1].state = DP_ADDR6_PREFERRED;
	assert_int_equal(dw->ntx, 0);
	assert_int_equal(tcb->state, TCP_CLOSED);
	free(tcb);
}

/* A neighbour that never answers: solicitations only, then TCP_ERR_UNREACHABLE. */
static void
test_ipv6_neighbour_silent(void **state)
{
	struct tcb *tcb = fresh_tcb();
	struct frame f[4];
	unsigned n, solicits = 0;

	(void)state;
	assert_int_equal(tcp_connect6(dw, tcb, SILENT_IP6, rte_cpu_to_be_16(25)), PA_OK);
	n = take_tx(f, 4);
	assert_int_equal(n, 1);
	assert_int_equal(f[0].icmp6_type, 135);
	for (unsigned ms = 0; ms < TCP_ARP_WAIT_MS + 100 && app.closed == 0; ms += 50) {
		advance(50);
		n = take_tx(f, 4);
		/* Solicitations (and earlier tests' ARP retries): never a SYN. */
		for (unsigned i = 0; i < n; i++) {
			assert_false(f[i].tcp);
			solicits +=
			    f[i].icmp6_type == 135 && memcmp(f[i].nd_target, SILENT_IP6, 16) == 0;
		}
	}
	/*
	 * RFC 4861 7.2.2: MAX_MULTICAST_SOLICIT (3), 1 s apart; the open still
	 * waiting after them (TCP_ARP_WAIT_MS) starts one more resolution.
	 */
	assert_in_range(solicits, 2, 3);
	assert_int_equal(app.closed, 1);
	assert_int_equal(app.err, TCP_ERR_UNREACHABLE);
	free(tcb);
}

/*
 * ARP entries age (net_neigh.c's states): a neighbour that asked for us is
 * STALE, in use it goes to DELAY, 5 s on to PROBE: requests unicast to its
 * MAC, 1 s apart, 3 in all, the MAC still used meanwhile; unanswered, the
 * entry is dropped and the next packet resolves by broadcast.  A reply
 * confirms it (REACHABLE, no probe for 30 s).  A reply nobody asked for,
 * from a stranger, makes no entry (arp_unsolicited).
 */
static void
test_arp_entry_ages(void **state)
{
	const uint32_t ip = IP4(198, 18, 0, 9), stranger = IP4(198, 18, 0, 10);
	struct rte_ether_addr mac;
	struct frame f[4];
	uint64_t unsolicited = dw->c.drops[DP_DROP_ARP_UNSOLICITED];

	(void)state;
	for (unsigned i = 0; i < 10; i++) { /* earlier tests' resolutions give up first */
		advance(500);
		take_tx(f, 4);
	}
	arp_from(RTE_ARP_OP_REQUEST, ip, 0x09, OUR_IP);
	assert_int_equal(take_tx(f, 4), 1); /* our reply */
	assert_true(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
	assert_int_equal(mac.addr_bytes[5], 0x09);
	assert_int_equal(take_tx(f, 4), 0); /* STALE to DELAY: nothing sent */
	advance(4999);
	assert_true(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
	assert_int_equal(take_tx(f, 4), 0);
	/* DELAY_FIRST_PROBE_TIME: unicast probes, the MAC still in use. */
	for (unsigned i = 0; i < 3; i++) {
		advance(i == 0 ? 1 : 1000);
		assert_true(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
		assert_int_equal(take_tx(f, 4), 1);
		assert_true(f[0].arp && !f[0].bcast);
		assert_int_equal(f[0].arp_op, RTE_ARP_OP_REQUEST);
		assert_int_equal(f[0].arp_tip, ip);
		assert_int_equal(f[0].dmac_last, 0x09);
		/* Not again within RetransTimer. */
		assert_true(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
		assert_int_equal(take_tx(f, 4), 0);
	}
	/* Three unanswered: unreachable, resolved afresh by broadcast. */
	advance(1000);
	assert_false(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
	assert_int_equal(take_tx(f, 4), 1);
	assert_true(f[0].arp && f[0].bcast);
	assert_int_equal(f[0].arp_tip, ip);
	/* Its reply confirms it: REACHABLE, used without a probe for 30 s. */
	arp_from(RTE_ARP_OP_REPLY, ip, 0x0a, OUR_IP);
	assert_int_equal(take_tx(f, 4), 0);
	advance(29000);
	assert_true(net_arp_resolve(dw, rte_cpu_to_be_32(ip), &mac));
	assert_int_equal(mac.addr_bytes[5], 0x0a);
	assert_int_equal(take_tx(f, 4), 0);
	/* A stranger's reply nobody asked for: dropped and counted, no entry made. */
	arp_from(RTE_ARP_OP_REPLY, stranger, 0x0b, OUR_IP);
	assert_int_equal(dw->c.drops[DP_DROP_ARP_UNSOLICITED], unsolicited + 1);
	assert_false(net_arp_resolve(dw, rte_cpu_to_be_32(stranger), &mac));
	assert_int_equal(take_tx(f, 4), 1);
	assert_true(f[0].bcast);
	for (unsigned i = 0; i < 10; i++) { /* its resolution gives up (3 tries) */
		advance(500);
		take_tx(f, 4);
	}
}

/*
 * Unsolicited ARP cannot fill the table: requests for us from strangers
 * make entries only up to half of it; the rest are still answered.
 */
static void
test_arp_table_half_for_strangers(void **state)
{
	struct rte_ether_addr mac;
	struct frame f[4];
	unsigned made = 0;

	(void)state;
	for (unsigned i = 0; i < DP_ARP_ENTRIES; i++) {
		uint32_t ip = IP4(10, 0, 0, 0) + i;

		arp_from(RTE_ARP_OP_REQUEST, ip, 0x20, OUR_IP);
		assert_int_equal(take_tx(f, 4), 1); /* answered, entry or not */
		assert_int_equal(f[0].arp_op, RTE_ARP_OP_REPLY);
	}
	for (unsigned i = 0; i < DP_ARP_ENTRIES; i++) {
		made += net_arp_resolve(dw, rte_cpu_to_be_32(IP4(10, 0, 0, 0) + i), &mac);
		take_tx(f, 4);
	}
	/* The half not yet taken (the peer and earlier tests' neighbours have entries). */
	assert_in_range(made, DP_ARP_ENTRIES / 2 - 8, DP_ARP_ENTRIES / 2);
	assert_int_equal(rte_hash_count(sh.neigh), DP_ARP_ENTRIES / 2);
	for (unsigned i = 0; i < 10; i++) { /* the rest's resolutions give up */
		advance(500);
		take_tx(f, 4);
	}
}

/*
 * RFC 8201 5.2: the path MTU a destination taught bounds the send MSS of the
 * connections that follow, never below 1280's, never above the link's, per
 * destination, for 10 minutes.
 */
static void
test_pmtu_per_destination(void **state)
{
	const struct tcp_opts o = {.has_mss = true, .mss = 1440};
	struct tcp_key k = {.raddr = tcp_addr_v6(PEER_IP6), .laddr = tcp_addr_v6(OUR_IP6)};
	struct tcp_key other = {.raddr = tcp_addr_v6(SILENT_IP6), .laddr = tcp_addr_v6(OUR_IP6)};
	struct tcp_key v4 = {.raddr = tcp_addr_v4(rte_cpu_to_be_32(PEER_IP)),
	                     .laddr = tcp_addr_v4(rte_cpu_to_be_32(OUR_IP))};
	uint64_t learned = dw->c.pmtu_learned, cached = dw->c.pmtu_cached;
	struct tcb *tcb = fresh_tcb();
	struct tcp_seg seg;
	struct frame f[4];

	(void)state;
	assert_int_equal(tcp_peer_mss(dw, &k, &o), 1440);
	net_pmtu6_learn(dw, PEER_IP6, 1400);
	assert_int_equal(tcp_peer_mss(dw, &k, &o), 1340);
	assert_int_equal(tcp_peer_mss(dw, &other, &o), 1440);
	assert_int_equal(tcp_peer_mss(dw, &v4, &o), 1440);
	net_pmtu6_learn(dw, PEER_IP6, 1000); /* below IPv6's minimum link MTU: 1280 */
	assert_int_equal(tcp_peer_mss(dw, &k, &o), 1220);
	net_pmtu6_learn(dw, SILENT_IP6, 1500); /* the link's: nothing to keep */
	assert_int_equal(tcp_peer_mss(dw, &other, &o), 1440);
	assert_int_equal(dw->c.pmtu_learned, learned + 2);
	/* A connection to it: the SYN-ACK offers 1440, the MSS starts at 1220. */
	assert_int_equal(tcp_connect6(dw, tcb, PEER_IP6, rte_cpu_to_be_16(PEER_PORT)), PA_OK);
	take_tx(f, 4);
	seg = from_peer(tcb, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 9000, tcb->iss + 1);
	seg.opts = o;
	tcp_synsent_input(dw, tcb, &seg);
	assert_int_equal(tcb->state, TCP_ESTABLISHED);
	assert_int_equal(tcb->mss, 1220);
	assert_true(dw->c.pmtu_cached > cached);
	done(tcb);
	/* RFC 8201 4: ten minutes on, the link's MTU again. */
	advance(10 * 60 * 1000 - 1);
	assert_int_equal(tcp_peer_mss(dw, &k, &o), 1220);
	advance(1);
	assert_int_equal(tcp_peer_mss(dw, &k, &o), 1440);
	take_tx(f, 4);
}

/* Back to one address for the other tests, whether the test passed or not. */
static int
one_address(void **state)
{
	(void)state;
	sh.ip_extra = 0;
	dw->next_laddr = 0;
	return 0;
}

static int
setup(void **state)
{
	char *argv[] = {"test",
	                "--no-huge",
	                "--no-pci",
	                "-m",
	                "64",
	                "--no-shconf",
	                "--no-telemetry",
	                "--log-level=lib.eal:error",
	                "--file-prefix=test_tcp_active_open",
	                NULL};

	(void)state;
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0)
		return -1;
	sh.pool =
	    rte_pktmbuf_pool_create("ao", 1023, 0, DP_MBUF_PRIV_SIZE, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (sh.pool == NULL)
		return -1;
	sh.nworkers = 2;
	sh.ip = rte_cpu_to_be_32(OUR_IP);
	sh.mask = rte_cpu_to_be_32(0xffffff00u);
	sh.mtu = 1500;
	sh.msl_ms = 1000;
	sh.syn_backlog = 16;
	sh.max_conns = 64;
	sh.conn_mbufs = 64;
	sh.challenge_ack_limit = CACK_LIMIT;
	sh.tsc_per_ms = rte_get_tsc_hz() / 1000;
	sh.secret.k0 = 1;
	sh.secret.k1 = 2;
	sh.mac.addr_bytes[0] = 0x02;
	sh.mac.addr_bytes[5] = 0x02;
	if (net_arp_create(&sh) != PA_OK || net_nd_create(&sh) != PA_OK)
		return -1;
	/* IPv6: the link-local address and 2001:db8::2/64, DAD done. */
	sh.nip6 = 2;
	sh.ip6[0].a[0] = 0xfe;
	sh.ip6[0].a[1] = 0x80;
	sh.ip6[0].a[15] = 2;
	sh.ip6[0].prefix = 64;
	memcpy(sh.ip6[1].a, OUR_IP6, 16);
	sh.ip6[1].prefix = 64;
	sh.ip6[0].state = sh.ip6[1].state = DP_ADDR6_PREFERRED;
	/* Worker 1 of 2, so the port choice has to mind the steering hash. */
	dw = dp_worker_create(&sh, 1, &ops, NULL);
	if (dw == NULL)
		return -1;
	learn_peer();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	dp_worker_destroy(dw);
	rte_free(dw);
	rte_hash_free(sh.neigh);
	rte_free(sh.arp_e);
	rte_hash_free(sh.neigh6);
	rte_free(sh.nd);
	rte_mempool_free(sh.pool);
	return 0;
}

/* The delay dp_worker_random_ms(max) gives a worker whose random source is seeded with seed. */
static uint32_t
delay_for(uint64_t seed, uint32_t max)
{
	static struct dp_worker scratch;

	scratch.rng = seed;
	return dp_worker_random_ms(&scratch, max);
}

/* DAD on worker 0: the join (MLD report) and the first NS after 0..1 s, then the address. */
static void
test_dad_random_delay(void **state)
{
	struct dp_worker *keep = dw, *w0;
	struct frame f[4];
	const uint64_t seed = 0x5eed1234abcdull, t0 = 50000;
	const uint32_t d = delay_for(seed, 1000);

	(void)state;
	assert_in_range(d, 1, 1000);
	assert_true(delay_for(seed + 1, 1000) != d); /* the delay is the random source's */
	sh.dad_transmits = 1;
	sh.ip6[1].state = DP_ADDR6_TENTATIVE;
	w0 = dp_worker_create(&sh, 0, &ops, NULL);
	assert_non_null(w0);
	dw = w0; /* take_tx() reads dw */
	w0->dad_link_up = true;
	w0->rng = seed;
	w0->now_ms = t0;
	net_nd_tick(w0);
	assert_int_equal(take_tx(f, 4), 0);
	w0->now_ms = t0 + d - 1;
	net_nd_tick(w0);
	assert_int_equal(take_tx(f, 4), 0);
	w0->now_ms = t0 + d;
	net_nd_tick(w0);
	assert_int_equal(take_tx(f, 4), 2);
	assert_int_equal(f[0].icmp6_type, 143); /* the join first (RFC 4862 5.4.2) */
	assert_int_equal(f[1].icmp6_type, 135);
	assert_memory_equal(f[1].nd_target, OUR_IP6, 16);
	assert_memory_equal(f[1].saddr6, (uint8_t[16]){0}, 16); /* DAD's NS: from :: */
	w0->now_ms = t0 + d + 1000;
	net_nd_tick(w0);
	assert_int_equal(sh.ip6[1].state, DP_ADDR6_PREFERRED);
	take_tx(f, 4);
	dp_worker_destroy(w0);
	rte_free(w0);

	/* Without DAD there is nothing to wait for: the join goes at once. */
	sh.dad_transmits = 0;
	w0 = dp_worker_create(&sh, 0, &ops, NULL);
	assert_non_null(w0);
	dw = w0;
	w0->dad_link_up = true;
	w0->rng = seed;
	w0->now_ms = t0;
	net_nd_tick(w0);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].icmp6_type, 143);
	dp_worker_destroy(w0);
	rte_free(w0);
	dw = keep;
}

/* An MLD query of len octets (24: MLDv1, 28: MLDv2) with Maximum Response Code code. */
static void
mld_query(uint16_t code, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(sh.pool);
	struct rte_ipv6_hdr *ip;
	uint8_t *q;

	assert_non_null(m);
	ip = (struct rte_ipv6_hdr *)rte_pktmbuf_append(m, (uint16_t)(sizeof(*ip) + len));
	memset(ip, 0, sizeof(*ip) + len);
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16(len);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 1;
	ip->src_addr[0] = 0xfe;
	ip->src_addr[1] = 0x80;
	ip->src_addr[15] = 1;
	ip->dst_addr[0] = 0xff;
	ip->dst_addr[1] = 0x02;
	ip->dst_addr[15] = 1;
	q = (uint8_t *)(ip + 1);
	q[0] = 130;
	q[4] = (uint8_t)(code >> 8);
	q[5] = (uint8_t)code;
	rte_pktmbuf_adj(m, sizeof(*ip)); /* as net_ipv6_input() hands it over */
	net_mld_input(dw, m, ip, len);
}

static void
test_mld_query_random_delay(void **state)
{
	struct frame f[4];
	const uint64_t seed = 0xfeedbeef42ull, t0 = dw->now_ms + 100000;
	const uint32_t d = delay_for(seed, 2000);
	uint8_t q[28] = {130};

	(void)state;
	/* RFC 3810 5.1.3: below 32768 the code is the delay; then (mant | 0x1000) << (exp + 3). */
	q[4] = 0x03, q[5] = 0xe8;
	assert_int_equal(net_mld_max_delay_ms(q, 28), 1000);
	q[4] = 0x80, q[5] = 0x00;
	assert_int_equal(net_mld_max_delay_ms(q, 28), 0x1000u << 3);
	q[4] = 0xa1, q[5] = 0x23;
	assert_int_equal(net_mld_max_delay_ms(q, 28), 0x1123u << 5);
	q[4] = 0xff, q[5] = 0xff;
	assert_int_equal(net_mld_max_delay_ms(q, 28), 0x1fffu << 10);
	assert_int_equal(net_mld_max_delay_ms(q, 24), 0xffff); /* MLDv1: linear, in ms */

	take_tx(f, 4);
	assert_in_range(d, 1, 2000);
	dw->now_ms = t0;
	dw->rng = seed;
	mld_query(2000, 28);
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 0);
	dw->now_ms = t0 + d - 1;
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 0);
	/* A later query whose choice falls after the pending report leaves it be. */
	assert_true(delay_for(seed, 60000) >= 1);
	dw->rng = seed;
	mld_query(60000, 28);
	dw->now_ms = t0 + d;
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].icmp6_type, 143);
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 0); /* one report for both */

	/* An MLDv1 query with no delay: due at once, but a second after the last report. */
	mld_query(0, 24);
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 0);
	dw->now_ms = t0 + d + 999;
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 0);
	dw->now_ms = t0 + d + 1000;
	net_mld_tick(dw);
	assert_int_equal(take_tx(f, 4), 1);
	assert_int_equal(f[0].icmp6_type, 143);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_syn_offers_everything),
	    cmocka_unit_test(test_two_opens_two_ports),
	    cmocka_unit_test_teardown(test_port_lands_on_reta, rss_off),
	    cmocka_unit_test(test_unacceptable_ack_gets_rst),
	    cmocka_unit_test(test_rst_needs_acceptable_ack),
	    cmocka_unit_test(test_synack_establishes),
	    cmocka_unit_test(test_synack_without_options),
	    cmocka_unit_test(test_syn_retransmitted_then_fails),
	    cmocka_unit_test(test_late_synack_after_retransmission),
	    cmocka_unit_test(test_arp_before_syn),
	    cmocka_unit_test(test_no_route),
	    cmocka_unit_test(test_challenge_ack_rate_limit),
	    cmocka_unit_test(test_sack_retransmits_holes_only),
	    cmocka_unit_test_teardown(test_several_local_addresses, one_address),
	    cmocka_unit_test(test_ipv6_open),
	    cmocka_unit_test(test_ipv6_refused),
	    cmocka_unit_test(test_ipv6_neighbour_silent),
	    cmocka_unit_test(test_arp_entry_ages),
	    cmocka_unit_test(test_arp_table_half_for_strangers),
	    cmocka_unit_test(test_pmtu_per_destination),
	    cmocka_unit_test(test_dad_random_delay),
	    cmocka_unit_test(test_mld_query_random_delay),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
