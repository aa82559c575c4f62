/*
 * fuzz_tcp_input.c: the DPDK dataplane's input path from raw Ethernet frames
 * (net_eth.c, net_arp.c, net_ipv4.c, net_ipv6*.c, net_icmp6.c, net_nd.c,
 * tcp_*.c), on one worker of the stack, over IPv4 (198.18.0.2) and IPv6
 * (2001:db8::2/64 and the link-local address, usable at once: no DAD).
 *
 * EAL runs once, as pigeond's kernel-free tests run it (--no-huge --no-pci
 * --no-shconf), with a net_ring port: its TX ring is its RX ring, so every
 * frame the stack transmits comes back from rte_eth_rx_burst() to be checked
 * and freed.  Each input gets a fresh worker (dp_worker_create) bound to a
 * small application standing in for the SMTP engine: it sends a banner on
 * connect, answers every line with a reply, stops reading while its output
 * is full (the receive window closes), and closes after "QUIT" or once the
 * peer has closed, as dpdk_backend.c does.  The worker's clock starts at the
 * same value for every input, and the peer's MAC is learned from one ARP
 * request and one neighbor solicitation (from 2001:db8::1) first, so that
 * replies can leave.
 *
 * Input: records [ctl][len (2 octets, big-endian)][frame].  ctl bits:
 *   0x01  recompute the IPv4 and TCP/ICMP checksums, or the IPv6 TCP/ICMPv6
 *         one past the extension headers (else sent as given)
 *   0x02  the TCP ACK field is relative to the last ISN the stack sent
 *         (a SYN-ACK's sequence number): ISNs and cookies are keyed by a
 *         random secret and the clock, so inputs name them this way
 *   0x04  keep the destination MAC as given (else: the port's own)
 *   0xf0  advance the clock by (ctl >> 4)^2 * 50 ms before the frame
 *         and run the timers (retransmissions, TIME_WAIT, SYN queue, ARP)
 *
 * What must hold besides "no crash": every frame the stack sends is well
 * formed (lengths, IPv4 and TCP/ICMP checksums, or IPv6 and TCP/ICMPv6 ones,
 * our MAC and address, an on-link or group destination); TCP
 * never acknowledges more of the application's output than it sent; and
 * once the worker is torn down no mbuf is left in use (no leak on any path).
 */
#define ALLOW_EXPERIMENTAL_API /* rte_ipv4/6_udptcp_cksum_verify() */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/net_cksum.h"
#include "dataplane/net_ipv6.h"
#include "dataplane/net_ipv6_ext.h"
#include "dataplane/tcp.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define MAX_CONNS 4
#define OUT_MAX 2048 /* small, so that a talkative peer fills it and the window closes */
#define T0_MS 1000000
#define BANNER "220 fuzz ESMTP\r\n"
#define REPLY "250 ok\r\n"

static const uint8_t peer_mac[RTE_ETHER_ADDR_LEN] = {0x02, 0, 0, 0, 0, 0x01};
static uint32_t our_ip, peer_ip;
static const uint8_t our_ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
static const uint8_t peer_ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
static struct dp_shared *sh;

struct app_conn {
	struct tcb tcb; /* first: the TCB's address is the connection's */
	bool used, open, closing, in_out;
	uint32_t out_len;
	uint8_t out[OUT_MAX];
	unsigned match; /* how much of "QUIT" the input ended with */
	TAILQ_ENTRY(app_conn) out_link;
};

static struct app_conn conns[MAX_CONNS];
static TAILQ_HEAD(, app_conn) out_pending = TAILQ_HEAD_INITIALIZER(out_pending);
static uint32_t last_iss;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct app_conn *
app_of(struct tcb *tcb)
{
	return pa_container_of(tcb, struct app_conn, tcb);
}

static void
queue_out(struct app_conn *c, const char *s)
{
	size_t n = strlen(s);

	CHECK(c->out_len + n <= OUT_MAX);
	memcpy(c->out + c->out_len, s, n);
	c->out_len += (uint32_t)n;
}

static struct tcb *
app_conn_alloc(struct dp_worker *dw)
{
	(void)dw;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (!conns[i].used) {
			memset(&conns[i], 0, sizeof(conns[i]));
			conns[i].used = true;
			return &conns[i].tcb;
		}
	return NULL;
}

static void
app_want_output(struct dp_worker *dw, struct tcb *tcb)
{
	struct app_conn *c = app_of(tcb);

	(void)dw;
	if (c->in_out || !c->open)
		return;
	c->in_out = true;
	TAILQ_INSERT_TAIL(&out_pending, c, out_link);
}

/* What dpdk_backend.c's conn_process() does, with lines answered instead of SMTP. */
static void
app_process(struct dp_worker *dw, struct tcb *tcb)
{
	struct app_conn *c = app_of(tcb);
	uint32_t old_win = tcb->rcv_adv - tcb->rcv_nxt;
	bool consumed_any = false;
	struct rte_mbuf *m;

	if (!c->open)
		return;
	while (!c->closing && (m = tcb->rxq_head) != NULL) {
		const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
		uint16_t len = rte_pktmbuf_data_len(m), used = 0;

		/* Stops at a full output buffer, as the engine does: backpressure. */
		while (used < len && c->out_len + sizeof(REPLY) <= OUT_MAX && !c->closing) {
			uint8_t ch = p[used++];

			c->match = ch == "QUIT"[c->match] ? c->match + 1 : ch == 'Q';
			if (c->match == 4)
				c->closing = true;
			if (ch == '\n')
				queue_out(c, REPLY);
		}
		if (used == 0)
			break;
		consumed_any = true;
		tcp_rxq_consume(tcb, used);
	}
	if (tcb->state == TCP_CLOSE_WAIT && tcb->rxq_head == NULL)
		c->closing = true;
	if (c->closing && !tcb->fin_queued) {
		tcb->fin_queued = true;
		tcb->snd_end = tcb->snd_una + c->out_len;
	}
	if (consumed_any && old_win < 2u * tcb->mss)
		tcb->ack_now = true;
	app_want_output(dw, tcb);
}

static int
app_established(struct dp_worker *dw, struct tcb *tcb)
{
	struct app_conn *c = app_of(tcb);

	c->open = true;
	queue_out(c, BANNER);
	app_process(dw, tcb);
	return PA_OK;
}

static void
app_acked(struct dp_worker *dw, struct tcb *tcb, uint32_t n)
{
	struct app_conn *c = app_of(tcb);

	/* TCP acknowledges only what the application gave it. */
	CHECK(n <= c->out_len);
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= n;
	if (tcb->rxq_head != NULL)
		app_process(dw, tcb);
}

static const uint8_t *
app_sendbuf(struct dp_worker *dw, struct tcb *tcb, uint32_t *len)
{
	struct app_conn *c = app_of(tcb);

	(void)dw;
	*len = c->open ? c->out_len : 0;
	return c->out;
}

static void
app_closed(struct dp_worker *dw, struct tcb *tcb, bool reset)
{
	struct app_conn *c = app_of(tcb);

	(void)dw;
	(void)reset;
	if (c->in_out)
		TAILQ_REMOVE(&out_pending, c, out_link);
	/* TCP keeps no mbuf of a closed connection. */
	CHECK(tcb->rxq_head == NULL && tcb->ooo_head == NULL);
	c->in_out = c->open = c->used = false;
}

static const struct tcp_app_ops ops = {
    .conn_alloc = app_conn_alloc,
    .established = app_established,
    .data = app_process,
    .acked = app_acked,
    .sendbuf = app_sendbuf,
    .peer_fin = app_process,
    .closed = app_closed,
    .want_output = app_want_output,
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *eal[] = {"fuzz_tcp_input",      "--no-huge", "--no-pci", "--no-shconf",
	               "--no-telemetry",      "-m",        "128",      "--vdev=net_ring0",
	               "--log-level=*:error", NULL};
	struct dp_port_conf pc = {
	    .nworkers = 1,
	    .prefix = 24,
	    .listen_port = rte_cpu_to_be_16(25),
	    .msl_ms = 1000,
	    .syn_backlog = 8,
	    .syn_per_source = 4,
	    .max_conns = MAX_CONNS,
	    .conn_mbufs = 8,
	    .mbufs = 4095, /* dp_port_open() wants the RX/TX rings and caches covered */
	    .nip6 = 1,
	    .prefix6 = {64},
	    .dad_transmits = 0,
	};

	(void)argc;
	(void)argv;
	pa_log_set_level(PA_LOG_ERR);
	CHECK(rte_eal_init((int)pa_array_size(eal) - 1, eal) >= 0);
	/* 198.18.0.2 and .1 (RTE_IPV4() shifts an int: undefined for 198 << 24). */
	our_ip = pc.ip = rte_cpu_to_be_32(0xc6120002u);
	peer_ip = rte_cpu_to_be_32(0xc6120001u);
	memcpy(pc.ip6[0], our_ip6, 16);
	sh = dp_port_open(&pc);
	CHECK(sh != NULL && !sh->tx_ip_cksum && !sh->tx_tcp_cksum);
	return 0;
}

/* An IPv6 frame the stack sends: from one of our addresses, to the link or a group. */
static void
check_tx6(const struct rte_ipv6_hdr *ip, uint16_t len)
{
	struct net_ip6_chain ch;
	const uint8_t *l4;
	uint16_t l4_len;

	CHECK(len >= sizeof(*ip) &&
	      (ip->vtc_flow & rte_cpu_to_be_32(0xf0000000)) == rte_cpu_to_be_32(0x60000000));
	CHECK(rte_be_to_cpu_16(ip->payload_len) == len - sizeof(*ip));
	CHECK(net_ipv6_addr_index(sh, ip->src_addr) >= 0);
	/*
	 * No gateway6: a group, the link-local prefix or ours; but for ND, whose
	 * advertisement answers a solicitation from the link at the MAC it came
	 * from, whatever the soliciting address (RFC 4861 7.2.4).
	 */
	CHECK(ip->dst_addr[0] == 0xff || net_ipv6_is_link_local(ip->dst_addr) ||
	      memcmp(ip->dst_addr, our_ip6, 8) == 0 ||
	      (ip->proto == IPPROTO_ICMPV6 && ip->hop_limits == 255 && len >= sizeof(*ip) + 1 &&
	       ((const uint8_t *)(ip + 1))[0] == 136));
	/* No extension header, but an MLD report's hop-by-hop (Router Alert) one. */
	CHECK(net_ipv6_chain((const uint8_t *)ip, len, ip->dst_addr[0] == 0xff, &ch) ==
	      DP_DROP_COUNT);
	CHECK(ch.next == 0 || (ch.next == 1 && ch.proto == IPPROTO_ICMPV6 && ip->hop_limits == 1 &&
	                       ((const uint8_t *)ip)[ch.off] == 143));
	l4 = (const uint8_t *)ip + ch.off;
	l4_len = (uint16_t)(len - ch.off);
	CHECK(ch.next != 0 ? net_cksum_ipv6_l4_ok(ip, ch.proto, l4, l4_len)
	                   : rte_ipv6_udptcp_cksum_verify(ip, l4) == 0);
	if (ch.proto == IPPROTO_TCP) {
		const struct rte_tcp_hdr *th = (const struct rte_tcp_hdr *)l4;

		CHECK(l4_len >= sizeof(*th) && (th->data_off >> 4) * 4 <= l4_len);
		CHECK(th->src_port == sh->listen_port || (th->tcp_flags & RTE_TCP_RST_FLAG));
		if ((th->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) ==
		    (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG))
			last_iss = rte_be_to_cpu_32(th->sent_seq);
	} else {
		/* Echo replies, ND, parameter problems, MLD reports; within 1280. */
		CHECK(ch.proto == IPPROTO_ICMPV6 && l4_len >= 8 && len <= 1280);
		CHECK(l4[0] == 129 || l4[0] == 135 || l4[0] == 136 || l4[0] == 4 || l4[0] == 143);
		/* ND from the link only: hop limit 255. */
		CHECK((l4[0] != 135 && l4[0] != 136) || ip->hop_limits == 255);
	}
}

/* Every frame the stack sends: well formed, from us, to the peer we know. */
static void
check_tx(struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	uint16_t len = rte_pktmbuf_data_len(m), type, hlen, total;
	const struct rte_ipv4_hdr *ip;

	CHECK(m->nb_segs == 1 && len >= sizeof(*eh));
	CHECK(rte_is_same_ether_addr(&eh->src_addr, &sh->mac));
	type = rte_be_to_cpu_16(eh->ether_type);
	if (type == RTE_ETHER_TYPE_ARP) {
		CHECK(len >= sizeof(*eh) + sizeof(struct rte_arp_hdr));
		return;
	}
	/* (Any destination MAC: inputs may teach the neighbour table what they like.) */
	if (type == RTE_ETHER_TYPE_IPV6) {
		check_tx6((const struct rte_ipv6_hdr *)(eh + 1), (uint16_t)(len - sizeof(*eh)));
		return;
	}
	CHECK(type == RTE_ETHER_TYPE_IPV4);
	ip = (const struct rte_ipv4_hdr *)(eh + 1);
	CHECK(len >= sizeof(*eh) + sizeof(*ip));
	hlen = rte_ipv4_hdr_len(ip);
	total = rte_be_to_cpu_16(ip->total_length);
	CHECK((ip->version_ihl >> 4) == 4 && hlen >= sizeof(*ip));
	CHECK(total >= hlen && total == len - sizeof(*eh));
	CHECK(rte_raw_cksum(ip, hlen) == 0xffff);
	/* No gateway is configured: only on-link peers are reachable. */
	CHECK(ip->src_addr == our_ip && ((ip->dst_addr ^ our_ip) & sh->mask) == 0);
	if (ip->next_proto_id == IPPROTO_TCP) {
		const struct rte_tcp_hdr *th =
		    (const struct rte_tcp_hdr *)((const uint8_t *)ip + hlen);

		CHECK(total - hlen >= sizeof(*th) && (th->data_off >> 4) * 4 <= total - hlen);
		CHECK(rte_ipv4_udptcp_cksum_verify(ip, th) == 0);
		/* Only a RST answers for a closed port; everything else is from the listener. */
		CHECK(th->src_port == sh->listen_port || (th->tcp_flags & RTE_TCP_RST_FLAG));
		if ((th->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) ==
		    (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG))
			last_iss = rte_be_to_cpu_32(th->sent_seq);
	} else {
		CHECK(ip->next_proto_id == IPPROTO_ICMP);
		CHECK(rte_raw_cksum((const uint8_t *)ip + hlen, total - hlen) == 0xffff);
	}
}

/* What the stack sent since the last call: back from the ring port, checked, freed. */
static void
collect_tx(struct dp_worker *dw)
{
	struct rte_mbuf *pkts[DP_BURST];
	uint16_t n;

	net_eth_tx_flush(dw);
	while ((n = rte_eth_rx_burst(sh->port, 0, pkts, DP_BURST)) > 0)
		for (uint16_t i = 0; i < n; i++) {
			check_tx(pkts[i]);
			rte_pktmbuf_free(pkts[i]);
		}
}

/* The end of a burst in dpdk_backend.c: tcp_output() for every connection with news. */
static void
flush(struct dp_worker *dw)
{
	struct app_conn *c;

	while ((c = TAILQ_FIRST(&out_pending)) != NULL) {
		TAILQ_REMOVE(&out_pending, c, out_link);
		c->in_out = false;
		tcp_output(dw, &c->tcb);
	}
	collect_tx(dw);
}

/* patch() for an IPv6 packet of len octets: past its extension headers. */
static void
patch6(uint8_t ctl, struct rte_ipv6_hdr *ip, uint16_t len)
{
	uint16_t total = (uint16_t)(sizeof(*ip) + rte_be_to_cpu_16(ip->payload_len));
	struct net_ip6_chain ch;
	uint8_t *l4;
	uint16_t l4_len, ck;

	if (len < sizeof(*ip) || total > len ||
	    net_ipv6_chain((const uint8_t *)ip, total, false, &ch) != DP_DROP_COUNT)
		return;
	l4 = (uint8_t *)ip + ch.off;
	l4_len = (uint16_t)(total - ch.off);
	if (ch.proto == IPPROTO_TCP && l4_len >= sizeof(struct rte_tcp_hdr)) {
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)l4;

		if (ctl & 0x02)
			th->recv_ack = rte_cpu_to_be_32(rte_be_to_cpu_32(th->recv_ack) + last_iss);
		if (ctl & 0x01) {
			th->cksum = 0;
			th->cksum = net_cksum_ipv6_l4(ip, IPPROTO_TCP, th, l4_len);
		}
	} else if (ch.proto == IPPROTO_ICMPV6 && (ctl & 0x01) && l4_len >= 4) {
		l4[2] = l4[3] = 0;
		ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, l4, l4_len);
		memcpy(l4 + 2, &ck, sizeof(ck));
	}
}

/* ctl 0x01 and 0x02: patch the frame as the peer's own stack would have built it. */
static void
patch(uint8_t ctl, uint8_t *f, uint16_t len)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + sizeof(struct rte_ether_hdr));
	uint16_t hlen, total;

	if (!(ctl & 0x04) && len >= sizeof(struct rte_ether_hdr))
		memcpy(f, &sh->mac, RTE_ETHER_ADDR_LEN);
	if (len >= sizeof(struct rte_ether_hdr) && ((const struct rte_ether_hdr *)f)->ether_type ==
	                                               rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		patch6(ctl, (struct rte_ipv6_hdr *)(f + sizeof(struct rte_ether_hdr)),
		       (uint16_t)(len - sizeof(struct rte_ether_hdr)));
		return;
	}
	if (len < sizeof(struct rte_ether_hdr) + sizeof(*ip) || (ip->version_ihl >> 4) != 4)
		return;
	hlen = rte_ipv4_hdr_len(ip);
	total = rte_be_to_cpu_16(ip->total_length);
	if (hlen < sizeof(*ip) || total < hlen || total > len - sizeof(struct rte_ether_hdr))
		return;
	if (ip->next_proto_id == IPPROTO_TCP && total - hlen >= sizeof(struct rte_tcp_hdr)) {
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)((uint8_t *)ip + hlen);

		if (ctl & 0x02)
			th->recv_ack = rte_cpu_to_be_32(rte_be_to_cpu_32(th->recv_ack) + last_iss);
		if (ctl & 0x01) {
			th->cksum = 0;
			th->cksum = rte_ipv4_udptcp_cksum(ip, th);
		}
	} else if (ip->next_proto_id == IPPROTO_ICMP && (ctl & 0x01) &&
	           total - hlen >= sizeof(struct rte_icmp_hdr)) {
		struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)((uint8_t *)ip + hlen);

		ic->icmp_cksum = 0;
		ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, total - hlen);
	}
	if (ctl & 0x01) {
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	}
}

static void
input_frame(struct dp_worker *dw, uint8_t ctl, const uint8_t *f, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(sh->pool);
	uint8_t *p;

	CHECK(m != NULL);
	p = (uint8_t *)rte_pktmbuf_append(m, len);
	if (p == NULL) { /* longer than an mbuf holds: a port would not deliver it */
		rte_pktmbuf_free(m);
		return;
	}
	memcpy(p, f, len);
	patch(ctl, p, len);
	net_eth_input(dw, m, false);
	flush(dw);
}

/* The peer asks who has our address: the stack answers and learns the peer's MAC. */
static void
arp_hello(struct dp_worker *dw)
{
	uint8_t f[sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr)] = {0};
	struct rte_ether_hdr *eh = (struct rte_ether_hdr *)f;
	struct rte_arp_hdr *ah = (struct rte_arp_hdr *)(eh + 1);

	memset(&eh->dst_addr, 0xff, RTE_ETHER_ADDR_LEN);
	memcpy(&eh->src_addr, peer_mac, RTE_ETHER_ADDR_LEN);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	ah->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	ah->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ah->arp_hlen = RTE_ETHER_ADDR_LEN;
	ah->arp_plen = 4;
	ah->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
	memcpy(&ah->arp_data.arp_sha, peer_mac, RTE_ETHER_ADDR_LEN);
	ah->arp_data.arp_sip = peer_ip;
	ah->arp_data.arp_tip = our_ip;
	input_frame(dw, 0x04, f, sizeof(f));
}

/* The peer solicits our IPv6 address with its own: the stack answers and learns its MAC. */
static void
nd_hello(struct dp_worker *dw)
{
	uint8_t f[sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv6_hdr) + 32] = {0};
	struct rte_ether_hdr *eh = (struct rte_ether_hdr *)f;
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eh + 1);
	uint8_t *ns = (uint8_t *)(ip + 1);

	memcpy(&eh->src_addr, peer_mac, RTE_ETHER_ADDR_LEN);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16(32);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 255;
	memcpy(ip->src_addr, peer_ip6, 16);
	memcpy(ip->dst_addr, our_ip6, 16);
	ns[0] = 135;
	memcpy(ns + 8, our_ip6, 16);
	ns[24] = 1; /* source link-layer address */
	ns[25] = 1;
	memcpy(ns + 26, peer_mac, RTE_ETHER_ADDR_LEN);
	input_frame(dw, 0x01, f, sizeof(f));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dp_worker *dw = dp_worker_create(sh, 0, &ops, NULL);

	CHECK(dw != NULL);
	/* The same clock for every input: RTOs, timestamps and TIME_WAIT replay exactly. */
	dw->now_ms = T0_MS;
	tcp_wheel_init(dw->wheel, T0_MS);
	last_iss = 0;
	arp_hello(dw);
	nd_hello(dw);
	while (size >= 3) {
		uint8_t ctl = data[0], step = ctl >> 4;
		uint16_t len = (uint16_t)(data[1] << 8 | data[2]);

		data += 3;
		size -= 3;
		if (len > size)
			len = (uint16_t)size;
		if (step != 0) {
			dw->now_ms += 50ull * step * step;
			dp_worker_timers(dw);
			flush(dw);
		}
		input_frame(dw, ctl, data, len);
		data += len;
		size -= len;
	}
	/* Teardown as the backend's worker_fini(): queues freed, tables gone. */
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (conns[i].used)
			tcp_queues_free(&conns[i].tcb);
		conns[i].used = conns[i].in_out = false;
	}
	TAILQ_INIT(&out_pending);
	collect_tx(dw);
	dp_worker_destroy(dw);
	sh->workers[0] = NULL;
	rte_free(dw);
	rte_hash_reset(sh->neigh);
	/* Key positions are reused after a reset: their entries start afresh too. */
	memset(sh->arp_e, 0, sizeof(*sh->arp_e) * 2 * DP_ARP_ENTRIES);
	memset(sh->pmtu, 0, sizeof(sh->pmtu)); /* path MTUs an input taught */
	/* IPv6: a fresh cache, and our addresses usable again (an input may have claimed them). */
	rte_hash_reset(sh->neigh6);
	for (unsigned i = 0; i < sh->nip6; i++)
		sh->ip6[i].state = DP_ADDR6_PREFERRED;
	CHECK(rte_mempool_in_use_count(sh->pool) == 0);
	return 0;
}
