/*
 * tcp_connect.c: active open (RFC 9293 3.10.1 OPEN call, 3.10.7.3 SYN-SENT).
 *
 * What it promises: with several local IPv4 addresses (dp_port_conf.ip_count)
 * the opens take them in turn, and an address whose ports are all taken
 * passes the open to the next; an IPv6 open goes from our usable addresses
 * for the peer (RFC 6724 in short: net_ipv6_src_set()), likewise in turn; the local port is chosen
 * so that the flow's software steering hash lands on the opening worker (net_pick_local_port), so
 * the SYN-ACK and everything after it reach the worker that holds the TCB; the 4-tuple is free (no
 * connection, SYN-queue or TIME_WAIT entry holds it); the ISN follows RFC 6528 (over the IPv6 tuple
 * for IPv6); the SYN goes out only once ARP, or Neighbor Discovery for an IPv6 peer (RFC 4861 7.2),
 * has resolved the next hop (a SYN dropped for want of a neighbour would cost a whole RTO); the SYN
 * offers MSS, window scaling, SACK-permitted and timestamps (RFC 9293 3.7.1, RFC 7323 2.2 and 3.2,
 * RFC 2018 2) and is retransmitted on the RFC 6298 schedule (1 s, doubling) up to TCP_SYN_RETRIES
 * times; the SYN-ACK is accepted only with an acceptable ACK.  The application learns the outcome
 * through its ops: established() or closed() with tcb->err set.
 *
 * Not implemented: simultaneous open (a SYN without ACK in SYN_SENT is
 * dropped and counted; our SYN's retransmission goes on).
 */
#include <rte_byteorder.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/tcp.h"

static void
send_syn(struct dp_worker *dw, struct tcb *tcb)
{
	/* Our SYN offers everything we implement; tcp_send_raw() lays the options out. */
	const struct tcp_syn offer = {.ws_ok = true, .sack_ok = true};

	/* RFC 7323 3.2: TSecr is 0 in a SYN; RFC 7323 2.2: the SYN's window is unscaled. */
	tcp_send_raw(dw, &tcb->key, tcb->iss, 0, RTE_TCP_SYN_FLAG, tcp_syn_window(dw), &offer, true,
	             0);
	tcb->rtt_start_ms = (uint32_t)dw->now_ms;
}

/* The open failed before ESTABLISHED: the application hears it through closed(). */
static void
connect_failed(struct dp_worker *dw, struct tcb *tcb, enum tcp_err why)
{
	tcb->err = (uint8_t)why;
	dw->c.connects_failed++;
	tcp_conn_detach(dw, tcb);
	tcp_app_closed(dw, tcb, true);
}

/*
 * The next hop's MAC towards the key's peer: ARP, or Neighbor Discovery for
 * IPv6; false (the request out, retried by net_arp.c or net_nd.c) when not
 * known yet.  The route was checked by the open.
 */
static bool
resolve_hop(struct dp_worker *dw, const struct tcp_key *key, struct rte_ether_addr *mac)
{
	const uint8_t *hop6;

	if (!tcp_key_v6(key))
		return net_arp_resolve(dw, net_next_hop(dw->sh, key->raddr.v4), mac);
	hop6 = net_next_hop6(dw->sh, key->raddr.a6);
	return hop6 != NULL && net_nd_resolve(dw, hop6, mac);
}

static void
synsent_timeout(struct tcp_timer *t, void *arg)
{
	struct dp_worker *dw = arg;
	struct tcb *tcb = pa_container_of(t, struct tcb, rtx_timer);
	struct rte_ether_addr mac;

	if (tcb->arp_wait) {
		/* Still resolving: net_arp.c (net_nd.c) retries the request itself; we only look.
		 */
		if (resolve_hop(dw, &tcb->key, &mac)) {
			tcb->arp_wait = false;
			send_syn(dw, tcb);
			tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms, synsent_timeout);
		} else if ((uint32_t)dw->now_ms - tcb->rtt_start_ms >= TCP_ARP_WAIT_MS) {
			connect_failed(dw, tcb, TCP_ERR_UNREACHABLE);
		} else {
			tcp_timer_arm(dw->wheel, &tcb->rtx_timer, TCP_ARP_POLL_MS, synsent_timeout);
		}
		return;
	}
	if (++tcb->rtx_count > TCP_SYN_RETRIES) {
		connect_failed(dw, tcb, TCP_ERR_TIMEOUT);
		return;
	}
	/* RFC 6298 5.5: back off; 5.6: restart the timer with the new RTO. */
	dw->c.syn_retransmits++;
	tcb->rto_ms = RTE_MIN(tcb->rto_ms * 2, (uint32_t)TCP_RTO_MAX_MS);
	send_syn(dw, tcb);
	tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms, synsent_timeout);
}

/*
 * A free local port on key->laddr whose flow this worker owns; *next is
 * where the address's next search starts.  -1 when every one is taken.
 */
static int
pick_port(struct dp_worker *dw, struct tcp_key *key, uint16_t *next)
{
	const uint32_t span = TCP_EPHEMERAL_HI - TCP_EPHEMERAL_LO + 1;
	const bool v6 = tcp_key_v6(key);
	uint32_t scanned = 0;
	uint16_t start = *next;

	if (start < TCP_EPHEMERAL_LO || start > TCP_EPHEMERAL_HI)
		start = (uint16_t)(TCP_EPHEMERAL_LO + (dw->rng ^ dw->now_ms) % span);
	/* Bounded: every round moves past at least one port, and stops after a full turn. */
	while (scanned < span) {
		int p =
		    v6 ? net_pick_local_port6(dw->sh, dw->id, key->laddr.a6, key->raddr.a6,
		                              key->rport, TCP_EPHEMERAL_LO, TCP_EPHEMERAL_HI, start)
		       : net_pick_local_port(dw->sh, dw->id, key->laddr.v4, key->raddr.v4,
		                             key->rport, TCP_EPHEMERAL_LO, TCP_EPHEMERAL_HI, start);
		enum tcp_tag tag;

		if (p < 0)
			return -1;
		scanned += ((uint32_t)p - start + span) % span + 1;
		start = p == TCP_EPHEMERAL_HI ? TCP_EPHEMERAL_LO : (uint16_t)(p + 1);
		key->lport = rte_cpu_to_be_16((uint16_t)p);
		if (tcp_lookup(dw, key, &tag) == NULL) {
			*next = start;
			return p;
		}
	}
	return -1;
}

/* The open of a key whose addresses and ports are chosen: SYN_SENT, the SYN out or ARP/ND. */
static int
open_key(struct dp_worker *dw, struct tcb *tcb, const struct tcp_key *key)
{
	struct rte_ether_addr mac;

	tcb->key = *key;
	tcb->state = TCP_SYN_SENT;
	tcb->err = TCP_ERR_NONE;
	tcb->iss = tcp_key_isn(dw, key); /* RFC 6528: ISN = M + F(4-tuple, secret) */
	/* RFC 9293 3.10.1: SND.UNA = ISS, SND.NXT = ISS + 1 (the SYN). */
	tcb->snd_una = tcb->iss;
	tcb->snd_nxt = tcb->snd_max = tcb->iss + 1;
	tcb->recover = tcb->iss;
	tcb->mss = tcp_our_mss(dw, key);
	tcb->rto_ms = TCP_RTO_INIT_MS; /* RFC 6298 2.1 */
	tcb->rtx_count = 0;
	if (tcp_hash_add(dw, &tcb->key, tcb, TCP_TAG_CONN) != PA_OK) {
		tcb->state = TCP_CLOSED;
		return PA_ERROR;
	}
	dw->c.active_opens++;
	if (resolve_hop(dw, key, &mac)) {
		send_syn(dw, tcb);
		tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms, synsent_timeout);
	} else {
		/* ARP (ND) first: the request is out, look again shortly. */
		tcb->arp_wait = true;
		tcb->rtt_start_ms = (uint32_t)dw->now_ms;
		tcp_timer_arm(dw->wheel, &tcb->rtx_timer, TCP_ARP_POLL_MS, synsent_timeout);
	}
	return PA_OK;
}

int
tcp_connect(struct dp_worker *dw, struct tcb *tcb, uint32_t raddr, uint16_t rport)
{
	const struct dp_shared *sh = dw->sh;
	struct tcp_key key = {.raddr = tcp_addr_v4(raddr), .rport = rport};
	const unsigned naddr = sh->ip_extra + 1;
	unsigned ai = dw->next_laddr % naddr, tried;

	if (net_next_hop(sh, raddr) == 0) {
		dw->c.drops[DP_DROP_NO_ROUTE]++;
		return PA_ERROR;
	}
	/* Our addresses in turn; one with no free port left hands over to the next. */
	for (tried = 0; tried < naddr; tried++, ai = (ai + 1) % naddr) {
		key.laddr = tcp_addr_v4(rte_cpu_to_be_32(rte_be_to_cpu_32(sh->ip) + ai));
		if (pick_port(dw, &key, &dw->next_lport[ai]) >= 0)
			break;
	}
	if (tried == naddr)
		return PA_ERROR;
	dw->next_laddr = (ai + 1) % naddr;
	return open_key(dw, tcb, &key);
}

int
tcp_connect6(struct dp_worker *dw, struct tcb *tcb, const uint8_t *raddr, uint16_t rport)
{
	const struct dp_shared *sh = dw->sh;
	struct tcp_key key = {.raddr = tcp_addr_v6(raddr), .rport = rport};
	uint8_t set[DP_MAX_ADDRS6];
	unsigned n, tried, ai;

	if (sh->nip6 == 0 || net_next_hop6(sh, raddr) == NULL) {
		dw->c.drops[DP_DROP_NO_ROUTE]++;
		return PA_ERROR;
	}
	/* What IPv6 input would refuse as a source is no TCP peer (and no key of ours). */
	if (!net_ipv6_peer_ok(sh, raddr, false))
		return PA_ERROR;
	/*
	 * Our usable addresses for it (none while DAD runs, or of too small a
	 * scope), in turn as IPv4's; one with no free port left hands over.
	 */
	n = net_ipv6_src_set(sh, raddr, set);
	for (tried = 0; tried < n; tried++) {
		ai = set[(dw->next_laddr6 + tried) % n];
		key.laddr = tcp_addr_v6(sh->ip6[ai].a);
		if (pick_port(dw, &key, &dw->next_lport6[ai]) >= 0)
			break;
	}
	if (tried >= n)
		return PA_ERROR;
	dw->next_laddr6 += tried + 1;
	return open_key(dw, tcb, &key);
}

/* The SYN-ACK's options against what our SYN offered (RFC 7323 1.3, 2.2, 3.2; RFC 2018 2). */
static void
take_options(struct dp_worker *dw, struct tcb *tcb, const struct tcp_seg *seg)
{
	const struct tcp_opts *o = &seg->opts;

	tcb->mss = tcp_peer_mss(dw, &tcb->key, o);
	tcb->ws_ok = o->has_wscale;
	tcb->snd_wscale = o->has_wscale ? o->wscale : 0;
	tcb->rcv_wscale = o->has_wscale ? TCP_RCV_WSCALE : 0;
	tcb->sack_ok = o->sack_ok;
	tcb->ts_ok = o->has_ts;
	tcb->ts_recent = o->has_ts ? o->tsval : 0;
}

void
tcp_synsent_input(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg)
{
	uint8_t flags = seg->flags;
	bool ack_ok = false;

	/* RFC 9293 3.10.7.3, first: the ACK bit.  Acceptable: ISS < SEG.ACK =< SND.NXT. */
	if (flags & RTE_TCP_ACK_FLAG) {
		if (seq_leq(seg->ack, tcb->iss) || seq_gt(seg->ack, tcb->snd_nxt)) {
			dw->c.drops[DP_DROP_TCP_BAD_ACK]++;
			/* <SEQ=SEG.ACK><CTL=RST>, unless the segment is itself a RST. */
			tcp_send_rst_for(dw, seg);
			return;
		}
		ack_ok = true;
	}
	/*
	 * Second: the RST bit.  Only a RST whose ACK acknowledges our SYN ends
	 * the attempt (RFC 9293 3.10.7.3; RFC 5961 3.2 keeps that rule for
	 * SYN-SENT): a blind RST without an acceptable ACK is dropped.
	 */
	if (flags & RTE_TCP_RST_FLAG) {
		if (ack_ok) {
			dw->c.conns_reset++;
			connect_failed(dw, tcb, TCP_ERR_REFUSED);
		} else {
			dw->c.drops[DP_DROP_TCP_RST_OUT_OF_WINDOW]++;
		}
		return;
	}
	/* Fourth: the SYN bit; neither SYN nor RST: drop. */
	if (!(flags & RTE_TCP_SYN_FLAG) || !ack_ok) {
		/* !ack_ok here is a simultaneous open, which we do not implement. */
		dw->c.drops[DP_DROP_TCP_STATE]++;
		return;
	}
	/* RCV.NXT = SEG.SEQ + 1, IRS = SEG.SEQ, SND.UNA = SEG.ACK: our SYN is acknowledged. */
	tcb->irs = seg->seq;
	tcb->rcv_nxt = seg->seq + 1;
	tcb->snd_una = seg->ack;
	take_options(dw, tcb, seg);
	/* RFC 7323 2.2: the window of a SYN-ACK is never scaled. */
	tcb->snd_wnd = seg->win;
	tcb->max_snd_wnd = tcb->snd_wnd;
	tcb->snd_wl1 = seg->seq;
	tcb->snd_wl2 = seg->ack;
	tcb->rcv_adv = tcb->rcv_nxt + tcp_syn_window(dw);
	tcp_timer_cancel(dw->wheel, &tcb->rtx_timer);
	if (tcb->rtx_count == 0) {
		/* RFC 6298 2.2 with Karn's rule (3): the SYN went once, its RTT is a sample. */
		tcp_rtt_sample(tcb, (uint32_t)dw->now_ms - tcb->rtt_start_ms);
		/* RFC 6928 2: IW = min(10*MSS, max(2*MSS, 14600)). */
		tcb->cwnd =
		    RTE_MIN(TCP_IW_SEGMENTS * (uint32_t)tcb->mss, RTE_MAX(2u * tcb->mss, 14600u));
	} else {
		/* RFC 6298 5.7: RTO of 3 s once data flows; RFC 5681 3.1: a lost SYN means IW 1. */
		tcb->rto_ms = RTE_MAX(tcb->rto_ms, (uint32_t)TCP_SYN_RTO_DATA_MS);
		tcb->cwnd = tcb->mss;
	}
	tcb->ssthresh = UINT32_MAX / 2; /* RFC 5681 3.1: arbitrarily high */
	tcb->rtx_count = 0;
	tcb->state = TCP_ESTABLISHED;
	dw->c.conns_opened++;
	/* <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>: owed now, sent at the end of the burst. */
	tcb->ack_now = true;
	tcp_app_want_output(dw, tcb);
	if (tcp_app_established(dw, tcb) != PA_OK) {
		tcp_send_raw(dw, &tcb->key, tcb->snd_nxt, tcb->rcv_nxt,
		             RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, NULL, false, 0);
		tcb->err = TCP_ERR_RESET;
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, true);
		return;
	}
	/* Data or a FIN riding on the SYN-ACK: on from the sixth check, past the SYN. */
	if ((seg->len > 0 || (flags & RTE_TCP_FIN_FLAG)) && tcb->state == TCP_ESTABLISHED) {
		seg->seq++;
		seg->flags &= (uint8_t)~RTE_TCP_SYN_FLAG;
		tcp_conn_input(dw, tcb, seg);
	}
}

void
tcp_abort(struct dp_worker *dw, struct tcb *tcb)
{
	if (tcb->state == TCP_CLOSED || tcb->state == TCP_TIME_WAIT)
		return;
	/* RFC 9293 3.10.5 ABORT: <SEQ=SND.NXT><CTL=RST> when synchronized; SYN_SENT just goes. */
	if (tcb->state != TCP_SYN_SENT)
		tcp_send_raw(dw, &tcb->key, tcb->snd_nxt, 0, RTE_TCP_RST_FLAG, 0, NULL, false, 0);
	tcp_conn_detach(dw, tcb);
}
