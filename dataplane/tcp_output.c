/*
 * tcp_output.c: building and sending segments, and the retransmission timer.
 *
 * What it promises: data goes out only within min(SND.WND, cwnd) (RFC 9293
 * 3.8.6, RFC 5681); every segment carries the current ACK and window (so
 * sending data is also sending the owed ACK); a retransmission re-reads the
 * application's unacknowledged bytes, never a copy; RFC 6298 governs the
 * timer, Karn's rule the RTT samples.  Segments are built in one mbuf each:
 * no allocation beyond the mbuf.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/tcp.h"

#define TCP_OPT_NOP 1
#define TCP_OPT_MSS 2
#define TCP_OPT_WS 3
#define TCP_OPT_SACK_PERM 4
#define TCP_OPT_SACK 5
#define TCP_OPT_TS 8
#define TCP_OPTS_MAX 40

uint32_t
tcp_rcv_window(const struct dp_worker *dw, const struct tcb *tcb)
{
	unsigned cap = dw->sh->conn_mbufs, held = tcb->rxq_nbufs + tcb->ooo_nbufs;
	uint32_t win = held >= cap ? 0 : (cap - held) * (uint32_t)(dw->sh->mtu - 40);
	uint32_t max = tcb->ws_ok ? (65535u << tcb->rcv_wscale) : 65535u;

	if (win > max)
		win = max;
	/* RFC 9293 3.8.6.2.2: never shrink what was offered. */
	if (seq_gt(tcb->rcv_adv, tcb->rcv_nxt + win))
		win = tcb->rcv_adv - tcb->rcv_nxt;
	return win;
}

static unsigned
put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr)
{
	p[0] = TCP_OPT_NOP;
	p[1] = TCP_OPT_NOP;
	p[2] = TCP_OPT_TS;
	p[3] = 10;
	put_be32(p + 4, tsval);
	put_be32(p + 8, tsecr);
	return 12;
}

/* Builds one segment with the TCP header first and hands it to IPv4. */
static void
send_segment(struct dp_worker *dw, const struct tcp_key *key, uint32_t seq, uint32_t ack,
             uint8_t flags, uint16_t win, const uint8_t *opts, unsigned optlen, const uint8_t *data,
             uint32_t len)
{
	struct rte_mbuf *m = dp_alloc(dw);
	unsigned hlen = sizeof(struct rte_tcp_hdr) + optlen;
	struct rte_tcp_hdr *th;

	if (m == NULL)
		return;
	th = (struct rte_tcp_hdr *)rte_pktmbuf_append(m, (uint16_t)(hlen + len));
	if (th == NULL) {
		dp_drop(dw, m, DP_DROP_NO_MBUF);
		return;
	}
	th->src_port = key->lport;
	th->dst_port = key->rport;
	th->sent_seq = rte_cpu_to_be_32(seq);
	th->recv_ack = rte_cpu_to_be_32(ack);
	th->data_off = (uint8_t)((hlen / 4) << 4);
	th->tcp_flags = flags;
	th->rx_win = rte_cpu_to_be_16(win);
	th->cksum = 0;
	th->tcp_urp = 0;
	if (optlen > 0)
		memcpy(th + 1, opts, optlen);
	if (len > 0)
		memcpy((uint8_t *)(th + 1) + optlen, data, len);
	if (flags & RTE_TCP_RST_FLAG)
		dw->c.rst_sent++;
	if (tcp_key_v6(key))
		net_ipv6_output_tcp(dw, m, key->laddr.a6, key->raddr.a6, (uint16_t)(hlen + len));
	else
		net_ipv4_output_tcp(dw, m, key->laddr.v4, key->raddr.v4, (uint16_t)(hlen + len));
}

void
tcp_send_raw(struct dp_worker *dw, const struct tcp_key *key, uint32_t seq, uint32_t ack,
             uint8_t flags, uint16_t win, const struct tcp_syn *syn, bool ts, uint32_t tsecr)
{
	uint8_t opts[TCP_OPTS_MAX];
	unsigned n = 0;

	if (syn != NULL) {
		/* SYN-ACK options: MSS, then what the peer offered (RFC 7323 2.2, 3.2; RFC 2018 2).
		 */
		opts[n++] = TCP_OPT_MSS;
		opts[n++] = 4;
		opts[n] = (uint8_t)(tcp_our_mss(dw, key) >> 8);
		opts[n + 1] = (uint8_t)tcp_our_mss(dw, key);
		n += 2;
		if (syn->ws_ok) {
			opts[n++] = TCP_OPT_NOP;
			opts[n++] = TCP_OPT_WS;
			opts[n++] = 3;
			opts[n++] = TCP_RCV_WSCALE;
		}
		if (syn->sack_ok) {
			opts[n++] = TCP_OPT_NOP;
			opts[n++] = TCP_OPT_NOP;
			opts[n++] = TCP_OPT_SACK_PERM;
			opts[n++] = 2;
		}
	}
	if (ts)
		n += put_ts(opts + n, (uint32_t)dw->now_ms, tsecr);
	send_segment(dw, key, seq, ack, flags, win, opts, n, NULL, 0);
}

/* RFC 9293 3.10.7.1: the RST for a segment that reached no connection. */
void
tcp_send_rst_for(struct dp_worker *dw, const struct tcp_seg *seg)
{
	uint32_t seglen =
	    seg->len + !!(seg->flags & RTE_TCP_SYN_FLAG) + !!(seg->flags & RTE_TCP_FIN_FLAG);

	if (seg->flags & RTE_TCP_RST_FLAG)
		return; /* never answer a RST */
	if (seg->flags & RTE_TCP_ACK_FLAG)
		tcp_send_raw(dw, &seg->key, seg->ack, 0, RTE_TCP_RST_FLAG, 0, NULL, false, 0);
	else
		tcp_send_raw(dw, &seg->key, 0, seg->seq + seglen,
		             RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, NULL, false, 0);
}

static unsigned
conn_options(struct dp_worker *dw, struct tcb *tcb, uint8_t *opts, bool with_sack)
{
	unsigned n = 0;

	if (tcb->ts_ok)
		n += put_ts(opts, (uint32_t)dw->now_ms, tcb->ts_recent);
	if (with_sack && tcb->sack_ok && tcb->ooo_head != NULL) {
		/* RFC 2018 3: SACK blocks for data held out of order; 3 fit beside timestamps. */
		uint32_t blocks[4][2];
		unsigned nb = tcp_reass_sack(tcb, blocks, tcb->ts_ok ? 3 : 4);

		opts[n++] = TCP_OPT_NOP;
		opts[n++] = TCP_OPT_NOP;
		opts[n++] = TCP_OPT_SACK;
		opts[n++] = (uint8_t)(2 + 8 * nb);
		for (unsigned i = 0; i < nb; i++) {
			put_be32(opts + n, blocks[i][0]);
			put_be32(opts + n + 4, blocks[i][1]);
			n += 8;
		}
	}
	return n;
}

static uint16_t
advertise(struct dp_worker *dw, struct tcb *tcb)
{
	uint32_t win = tcp_rcv_window(dw, tcb);

	tcb->rcv_adv = tcb->rcv_nxt + win;
	return (uint16_t)(win >> (tcb->ws_ok ? tcb->rcv_wscale : 0));
}

static void
send_conn_segment(struct dp_worker *dw, struct tcb *tcb, uint32_t seq, uint8_t flags,
                  const uint8_t *data, uint32_t len)
{
	uint8_t opts[TCP_OPTS_MAX];
	unsigned n = conn_options(dw, tcb, opts, len == 0);
	uint16_t win = advertise(dw, tcb);

	send_segment(dw, &tcb->key, seq, tcb->rcv_nxt, flags | RTE_TCP_ACK_FLAG, win, opts, n, data,
	             len);
	tcb->ack_now = false;
}

void
tcp_send_ack(struct dp_worker *dw, struct tcb *tcb)
{
	send_conn_segment(dw, tcb, tcb->snd_nxt, 0, NULL, 0);
}

static void
arm_rtx(struct dp_worker *dw, struct tcb *tcb)
{
	tcb->persist = false;
	tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms, tcp_rtx_timeout);
}

static bool
may_send_fin(const struct tcb *tcb)
{
	switch (tcb->state) {
	case TCP_ESTABLISHED:
	case TCP_CLOSE_WAIT:
	case TCP_FIN_WAIT_1:
	case TCP_CLOSING:
	case TCP_LAST_ACK:
		return tcb->fin_queued;
	default:
		return false;
	}
}

void
tcp_output(struct dp_worker *dw, struct tcb *tcb)
{
	uint32_t buflen, lim = 0, mss_eff = tcb->mss - (tcb->ts_ok ? 12u : 0u);
	bool clamp;
	const uint8_t *buf;

	if (tcb->state < TCP_ESTABLISHED || tcb->state == TCP_TIME_WAIT)
		return;
	buf = tcp_app_sendbuf(dw, tcb, &buflen);
	/* Once the FIN is queued nothing may be sent beyond it, whatever the application does. */
	if (tcb->fin_queued)
		buflen = seq_leq(tcb->snd_end, tcb->snd_una)
		             ? 0
		             : RTE_MIN(buflen, tcb->snd_end - tcb->snd_una);
	for (;;) {
		uint32_t off = tcb->snd_nxt - tcb->snd_una, unsent, win, inflight, usable, len;
		bool fin;
		uint8_t flags = 0;

		if (off > buflen)
			break; /* only our FIN is outstanding */
		clamp = false;
		if (tcb->nsacked > 0 && seq_lt(tcb->snd_nxt, tcb->snd_max)) {
			/* Resending: only the holes the peer's SACK blocks leave (tcp_sack.c). */
			uint32_t nxt = tcp_sack_next(tcb, tcb->snd_nxt, &lim);

			clamp = true;
			if (nxt != tcb->snd_nxt) {
				dw->c.sack_rtx_skipped += nxt - tcb->snd_nxt;
				tcb->snd_nxt = nxt;
				continue;
			}
			/* RFC 6675 IsLost: above the highest SACK, data is in flight, not lost. */
			if (tcb->in_recovery && seq_geq(tcb->snd_nxt, tcp_sack_high(tcb))) {
				tcb->snd_nxt = tcb->snd_max;
				continue;
			}
		}
		unsent = buflen - off;
		win = RTE_MIN(tcb->snd_wnd, tcb->cwnd);
		inflight = tcb->snd_nxt - tcb->snd_una;
		usable = win > inflight ? win - inflight : 0;
		len = RTE_MIN(RTE_MIN(unsent, usable), mss_eff);
		if (clamp && seq_lt(tcb->snd_nxt, lim))
			len = RTE_MIN(len, lim - tcb->snd_nxt); /* not into a SACKed range */
		fin = may_send_fin(tcb) && off + len == buflen;
		if (len == 0 && !fin) {
			/* RFC 9293 3.8.6.1: a zero window is probed, not waited on forever. */
			if (unsent > 0 && tcb->snd_wnd == 0 && inflight == 0 &&
			    !tcp_timer_armed(&tcb->rtx_timer)) {
				tcb->persist = true;
				tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms,
				              tcp_rtx_timeout);
			}
			break;
		}
		if (len > 0)
			flags |= RTE_TCP_PSH_FLAG;
		if (fin)
			flags |= RTE_TCP_FIN_FLAG;
		if (seq_lt(tcb->snd_nxt, tcb->snd_max)) {
			dw->c.retransmits++;
		} else if (!tcb->timing && len > 0) {
			/* RFC 6298 3, Karn: time only segments sent once. */
			tcb->timing = true;
			tcb->rtt_seq = tcb->snd_nxt;
			tcb->rtt_start_ms = (uint32_t)dw->now_ms;
		}
		send_conn_segment(dw, tcb, tcb->snd_nxt, flags, buf + off, len);
		tcb->snd_nxt += len + (fin ? 1 : 0);
		tcb->snd_max = seq_max(tcb->snd_max, tcb->snd_nxt);
		/* RFC 6298 5.1: start the timer when sending data and it is not running. */
		if (!tcp_timer_armed(&tcb->rtx_timer) || tcb->persist)
			arm_rtx(dw, tcb);
		if (fin) {
			tcb->fin_sent = true;
			if (tcb->state == TCP_ESTABLISHED)
				tcb->state = TCP_FIN_WAIT_1;
			else if (tcb->state == TCP_CLOSE_WAIT)
				tcb->state = TCP_LAST_ACK;
			break;
		}
	}
	if (tcb->ack_now)
		tcp_send_ack(dw, tcb);
}

/*
 * RFC 9293 3.8.6.1 / RFC 1122 4.2.2.17: probe a zero window.  As Linux does,
 * the probe is an empty segment at SND.UNA - 1: the peer must answer it with
 * an ACK carrying its current window, and no octet is sent beyond the window
 * (so SND.NXT stays where it is and nothing needs retransmitting later).
 */
static void
send_probe(struct dp_worker *dw, struct tcb *tcb)
{
	dw->c.zero_window_probes++;
	send_conn_segment(dw, tcb, tcb->snd_una - 1, 0, NULL, 0);
}

void
tcp_rtx_timeout(struct tcp_timer *t, void *arg)
{
	struct dp_worker *dw = arg;
	struct tcb *tcb = pa_container_of(t, struct tcb, rtx_timer);
	uint32_t flight;

	if (tcb->state == TCP_FIN_WAIT_2) {
		/* The peer never closed: give up the half-closed connection. */
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, false);
		return;
	}
	if (tcb->persist) {
		/* Probes back off exponentially (RFC 1122 4.2.2.17), the RTO itself unchanged. */
		uint64_t next = (uint64_t)tcb->rto_ms << RTE_MIN(tcb->rtx_count, (uint8_t)16);

		send_probe(dw, tcb);
		if (tcb->rtx_count < 16)
			tcb->rtx_count++;
		tcb->persist = true;
		tcp_timer_arm(dw->wheel, &tcb->rtx_timer, RTE_MIN(next, (uint64_t)TCP_RTO_MAX_MS),
		              tcp_rtx_timeout);
		return;
	}
	if (tcb->snd_una == tcb->snd_max)
		return; /* RFC 6298 5.2: nothing outstanding */
	if (++tcb->rtx_count > TCP_MAX_RETRIES) {
		tcb->err = TCP_ERR_RTX_TIMEOUT;
		tcp_send_raw(dw, &tcb->key, tcb->snd_nxt, tcb->rcv_nxt,
		             RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, NULL, false, 0);
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, true);
		return;
	}
	dw->c.rto_expiries++;
	flight = tcb->snd_max - tcb->snd_una;
	/* RFC 5681 3.1 eq. 4 and the loss window; RFC 6298 5.5 back-off. */
	tcb->ssthresh = RTE_MAX(flight / 2, 2u * tcb->mss);
	tcb->cwnd = tcb->mss;
	tcb->rto_ms = RTE_MIN(tcb->rto_ms * 2, (uint32_t)TCP_RTO_MAX_MS);
	/* RFC 6582 3.2 step 4 analogue: a timeout ends recovery and records recover. */
	tcb->recover = tcb->snd_max;
	tcb->in_recovery = false;
	tcb->dupacks = 0;
	tcb->timing = false;
	/* RFC 2018 8, RFC 6675 5.1: the receiver may have reneged; trust no SACK now. */
	tcb->nsacked = 0;
	/* Go back N from the oldest unacknowledged octet (RFC 6298 5.4). */
	tcb->snd_nxt = tcb->snd_una;
	tcp_output(dw, tcb);
	if (!tcp_timer_armed(&tcb->rtx_timer))
		arm_rtx(dw, tcb);
}

bool
tcp_pmtu_lower(struct dp_worker *dw, const struct tcp_key *key, uint32_t mtu, uint32_t seq)
{
	enum tcp_tag tag;
	struct tcb *tcb = tcp_lookup(dw, key, &tag);
	uint32_t hdr = tcp_key_v6(key) ? 60 : 40;

	if (tcb == NULL || tag != TCP_TAG_CONN || tcb->state == TCP_SYN_SENT ||
	    seq_lt(seq, tcb->snd_una) || seq_geq(seq, tcb->snd_max))
		return false;
	/* RFC 8201 4: never below the IPv6 minimum link MTU, whatever the message says. */
	if (tcp_key_v6(key) && mtu < 1280)
		mtu = 1280;
	if (mtu <= hdr || mtu - hdr >= tcb->mss)
		return false;
	tcb->mss = (uint16_t)(mtu - hdr);
	/*
	 * What is in flight was too big and is lost: resend it now in the new
	 * size (go back N from SND.UNA, as an RTO would), without the RTO's
	 * congestion response: the path's MTU, not congestion, lost it.
	 */
	if (tcb->snd_una != tcb->snd_max) {
		tcb->snd_nxt = tcb->snd_una;
		tcb->timing = false;
		tcb->nsacked = 0;
		tcp_app_want_output(dw, tcb);
	}
	return true;
}
