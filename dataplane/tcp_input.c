/*
 * tcp_input.c: segment arrival (RFC 9293 3.10.7) for every TCP segment that
 * passed the IPv4 checks.
 *
 * What it promises: the checksum is verified before anything else (by the
 * port when it says so, here otherwise); a segment reaches at most one of a
 * connection, a SYN-queue entry, a TIME_WAIT entry or the listener; RSTs,
 * SYNs and ACKs are judged with RFC 5961's rules; PAWS (RFC 7323 5) guards
 * connections with timestamps; data is kept in its mbuf (headers trimmed),
 * never copied here.
 */
#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/tcp.h"

int
tcp_parse_options(const uint8_t *p, unsigned len, struct tcp_opts *o)
{
	unsigned i = 0;

	while (i < len) {
		uint8_t kind = p[i], olen;

		if (kind == 0)
			break; /* end of option list */
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			return PA_ERROR;
		olen = p[i + 1];
		if (olen < 2 || i + olen > len)
			return PA_ERROR;
		switch (kind) {
		case 2: /* MSS, RFC 9293 3.7.1 */
			if (olen == 4) {
				o->has_mss = true;
				o->mss = (uint16_t)(p[i + 2] << 8 | p[i + 3]);
			}
			break;
		case 3: /* window scale, RFC 7323 2.2; shifts above 14 are taken as 14 */
			if (olen == 3) {
				o->has_wscale = true;
				o->wscale = RTE_MIN(p[i + 2], (uint8_t)14);
			}
			break;
		case 4: /* SACK permitted, RFC 2018 2 */
			if (olen == 2)
				o->sack_ok = true;
			break;
		case 5: /* SACK blocks, RFC 2018 3 */
			for (unsigned b = 0; b < (olen - 2u) / 8 && o->nsack < 4; b++) {
				const uint8_t *q = p + i + 2 + 8 * b;

				o->sack[o->nsack][0] = get_be32(q);
				o->sack[o->nsack][1] = get_be32(q + 4);
				o->nsack++;
			}
			break;
		case 8: /* timestamps, RFC 7323 3.2 */
			if (olen == 10) {
				o->has_ts = true;
				o->tsval = get_be32(p + i + 2);
				o->tsecr = get_be32(p + i + 6);
			}
			break;
		default:
			break;
		}
		i += olen;
	}
	return PA_OK;
}

/*
 * RFC 5961 section 7: challenge ACKs are throttled, at most about
 * dpdk.challenge_ack_limit per second per worker, so that a flood of forged
 * RSTs, SYNs or ACKs does not turn into a flood of ACKs.  A fixed global
 * budget is itself an off-path side channel (CVE-2016-5696: its exhaustion
 * tells an attacker a guess hit a window), so, as Linux does since then,
 * each second's budget is drawn at random in [limit/2, 3*limit/2].
 */
bool
tcp_challenge_ack_allowed(struct dp_worker *dw)
{
	uint32_t limit = dw->sh->challenge_ack_limit;
	uint64_t sec = dw->now_ms / 1000;

	if (limit == 0)
		return true;
	if (sec != dw->cack_second) {
		dw->cack_second = sec;
		dw->cack_budget = limit / 2 + (uint32_t)(dp_worker_random(dw) % (limit + 1u));
	}
	if (dw->cack_budget == 0) {
		dw->c.challenge_acks_limited++;
		return false;
	}
	dw->cack_budget--;
	return true;
}

static void
challenge_ack(struct dp_worker *dw, struct tcb *tcb)
{
	/* RFC 5961 3.2, 4.2, 5.2, within section 7's rate limit. */
	if (!tcp_challenge_ack_allowed(dw))
		return;
	dw->c.challenge_acks++;
	tcp_send_ack(dw, tcb);
}

/* RFC 6298 2.2 and 2.3, in the fixed-point form of Jacobson's paper. */
void
tcp_rtt_sample(struct tcb *tcb, uint32_t rtt)
{
	/*
	 * A sample beyond the largest RTO is no round trip but a forged or stale
	 * timestamp echo (the peer picks TSecr); it would also overflow the
	 * signed arithmetic below (found by fuzz_tcp_input).
	 */
	if (rtt > TCP_RTO_MAX_MS)
		return;
	if (rtt == 0)
		rtt = 1;
	if (tcb->srtt_ms8 == 0) {
		tcb->srtt_ms8 = rtt << 3;
		tcb->rttvar_ms4 = rtt << 1;
	} else {
		int32_t delta = (int32_t)rtt - (int32_t)(tcb->srtt_ms8 >> 3);

		tcb->srtt_ms8 = (uint32_t)((int32_t)tcb->srtt_ms8 + delta);
		if (delta < 0)
			delta = -delta;
		delta -= (int32_t)(tcb->rttvar_ms4 >> 2);
		tcb->rttvar_ms4 = (uint32_t)((int32_t)tcb->rttvar_ms4 + delta);
	}
	tcb->rto_ms = (tcb->srtt_ms8 >> 3) + RTE_MAX(1u, tcb->rttvar_ms4);
	tcb->rto_ms = RTE_MAX(tcb->rto_ms, (uint32_t)TCP_RTO_MIN_MS);
	tcb->rto_ms = RTE_MIN(tcb->rto_ms, (uint32_t)TCP_RTO_MAX_MS);
}

/* Octets the peer SACKed above SND.UNA (the scoreboard, tcp_sack.c). */
static uint32_t
sacked_octets(const struct tcb *tcb)
{
	uint32_t n = 0;

	for (unsigned i = 0; i < tcb->nsacked; i++)
		n += tcb->sacked[i][1] - tcb->sacked[i][0];
	return n;
}

/* Whether our FIN has been sent and everything up to it acknowledged. */
static bool
fin_acked(const struct tcb *tcb)
{
	return tcb->fin_sent && tcb->snd_una == tcb->snd_max;
}

/* RFC 9293 3.10.7.4 fifth check, with RFC 5681/6582 congestion control. */
static int
process_ack(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg)
{
	uint32_t ack = seg->ack, win = (uint32_t)seg->win << tcb->snd_wscale;

	switch (tcp_ack_check(ack, tcb->snd_una, tcb->snd_max, tcb->max_snd_wnd)) {
	case TCP_ACK_CHALLENGE:
		dw->c.drops[DP_DROP_TCP_BAD_ACK]++;
		challenge_ack(dw, tcb);
		return PA_ERROR;
	case TCP_ACK_OLD:
		return PA_OK; /* ignore the ACK field, keep the data */
	case TCP_ACK_OK:
		break;
	}
	/* RFC 2018: what the peer holds beyond the cumulative ACK, for retransmission. */
	if (tcb->sack_ok && (seg->opts.nsack > 0 || tcb->nsacked > 0))
		tcp_sack_update(tcb, seq_max(ack, tcb->snd_una), seg->opts.sack, seg->opts.nsack);
	if (seq_gt(ack, tcb->snd_una)) {
		uint32_t acked = ack - tcb->snd_una, data = acked;
		bool was_fin = tcb->fin_sent && ack == tcb->snd_max;

		if (was_fin)
			data--; /* the FIN's sequence number is no data */
		/* RTT: timestamps (RFC 7323 4.1) or the timed segment (RFC 6298 3). */
		if (tcb->ts_ok && seg->opts.has_ts && seg->opts.tsecr != 0)
			tcp_rtt_sample(tcb, (uint32_t)dw->now_ms - seg->opts.tsecr);
		else if (tcb->timing && seq_gt(ack, tcb->rtt_seq))
			tcp_rtt_sample(tcb, (uint32_t)dw->now_ms - tcb->rtt_start_ms);
		if (tcb->timing && seq_gt(ack, tcb->rtt_seq))
			tcb->timing = false;
		tcb->rtx_count = 0;
		if (tcb->in_recovery) {
			if (seq_geq(ack, tcb->recover)) {
				/* RFC 6582 3.2 step 3, full acknowledgment: deflate. */
				uint32_t flight = tcb->snd_max - ack;

				tcb->cwnd = RTE_MIN(tcb->ssthresh,
				                    RTE_MAX(flight, (uint32_t)tcb->mss) + tcb->mss);
				tcb->in_recovery = false;
				tcb->dupacks = 0;
			} else {
				/* Step 3, partial acknowledgment: retransmit the next hole. */
				tcb->cwnd = tcb->cwnd > acked ? tcb->cwnd - acked : tcb->mss;
				if (acked >= tcb->mss)
					tcb->cwnd += tcb->mss;
				tcb->snd_una = ack;
				tcb->snd_nxt = ack;
				dw->c.fast_retransmits++;
				goto acked;
			}
		} else {
			tcb->dupacks = 0;
			/* RFC 5681 3.1: slow start, then congestion avoidance. */
			if (tcb->cwnd < tcb->ssthresh)
				tcb->cwnd += RTE_MIN(acked, (uint32_t)tcb->mss);
			else
				tcb->cwnd += RTE_MAX(1u, (uint32_t)tcb->mss * tcb->mss / tcb->cwnd);
		}
		tcb->snd_una = ack;
		if (seq_lt(tcb->snd_nxt, tcb->snd_una))
			tcb->snd_nxt = tcb->snd_una;
	acked:
		if (data > 0)
			tcp_app_acked(dw, tcb, data);
		/* RFC 6298 5.2 and 5.3. */
		if (tcb->snd_una == tcb->snd_max)
			tcp_timer_cancel(dw->wheel, &tcb->rtx_timer);
		else
			tcp_timer_arm(dw->wheel, &tcb->rtx_timer, tcb->rto_ms, tcp_rtx_timeout);
		tcb->persist = false;
		tcp_app_want_output(dw, tcb);
	} else if (ack == tcb->snd_una && seg->len == 0 && tcb->snd_max != tcb->snd_una &&
	           win == tcb->snd_wnd && !(seg->flags & (RTE_TCP_SYN_FLAG | RTE_TCP_FIN_FLAG))) {
		/*
		 * RFC 5681 2 duplicate ACK.  With SACK, RFC 6675 5 (IsLost) also
		 * starts recovery once DupThresh segments' worth above SND.UNA are
		 * SACKed, even if ACKs were coalesced and fewer than 3 came.
		 */
		++tcb->dupacks;
		if ((tcb->dupacks == 3 ||
		     (tcb->dupacks < 3 && sacked_octets(tcb) >= 3u * tcb->mss)) &&
		    !tcb->in_recovery && seq_gt(ack - 1, tcb->recover - 1)) {
			/* RFC 6582 3.2 steps 1-2: fast retransmit, enter recovery. */
			uint32_t flight = tcb->snd_max - tcb->snd_una;

			tcb->ssthresh = RTE_MAX(flight / 2, 2u * tcb->mss);
			tcb->recover = tcb->snd_max;
			tcb->cwnd = tcb->ssthresh + 3u * tcb->mss;
			tcb->in_recovery = true;
			tcb->timing = false;
			tcb->snd_nxt = tcb->snd_una;
			dw->c.fast_retransmits++;
			tcp_app_want_output(dw, tcb);
		} else if (tcb->in_recovery) {
			tcb->cwnd += tcb->mss; /* step 4: inflate */
			tcp_app_want_output(dw, tcb);
		}
	}
	/* Window update, RFC 9293 3.10.7.4 (SND.WL1/SND.WL2). */
	if (seq_lt(tcb->snd_wl1, seg->seq) ||
	    (tcb->snd_wl1 == seg->seq && seq_leq(tcb->snd_wl2, ack))) {
		if (win > tcb->snd_wnd)
			tcp_app_want_output(dw, tcb);
		if (win > 0 && tcb->persist) {
			/* The window opened: the probe timer is done. */
			tcp_timer_cancel(dw->wheel, &tcb->rtx_timer);
			tcb->persist = false;
			tcb->rtx_count = 0;
		}
		tcb->snd_wnd = win;
		tcb->snd_wl1 = seg->seq;
		tcb->snd_wl2 = ack;
		tcb->max_snd_wnd = RTE_MAX(tcb->max_snd_wnd, win);
	}
	/* State changes on our FIN being acknowledged. */
	if (fin_acked(tcb)) {
		switch (tcb->state) {
		case TCP_FIN_WAIT_1:
			tcb->state = TCP_FIN_WAIT_2;
			tcp_timer_arm(dw->wheel, &tcb->rtx_timer, TCP_FIN_WAIT_2_MS,
			              tcp_rtx_timeout);
			break;
		case TCP_CLOSING:
			tcp_enter_time_wait(dw, tcb);
			return PA_ERROR;
		case TCP_LAST_ACK:
			tcp_conn_detach(dw, tcb);
			tcp_app_closed(dw, tcb, false);
			return PA_ERROR;
		default:
			break;
		}
	}
	return PA_OK;
}

/* Takes the payload: in order onto the receive queue, else into reassembly. */
static void
process_data(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg, bool *fin)
{
	struct rte_mbuf *m = seg->m;
	uint32_t seq = seg->seq, len = seg->len;
	uint32_t win = tcp_rcv_window(dw, tcb);

	/* Trim to what is new and inside the window (RFC 9293 3.10.7.4). */
	if (seq_lt(seq, tcb->rcv_nxt)) {
		uint32_t old = tcb->rcv_nxt - seq;

		if (old >= len) {
			len = 0;
		} else {
			rte_pktmbuf_adj(m, (uint16_t)old);
			seq += old;
			len -= old;
		}
	}
	if (len > 0 && seq_gt(seq + len, tcb->rcv_nxt + win)) {
		uint32_t over = seq + len - (tcb->rcv_nxt + win);

		*fin = false; /* the FIN lies beyond the window */
		if (over >= len) {
			len = 0;
		} else {
			rte_pktmbuf_trim(m, (uint16_t)over);
			len -= over;
		}
	}
	if (len == 0) {
		if (seg->len > 0)
			tcb->ack_now = true; /* a duplicate: tell the peer where we are */
		return;
	}
	if (tcb->rxq_nbufs + tcb->ooo_nbufs >= dw->sh->conn_mbufs) {
		dw->c.drops[DP_DROP_TCP_RCV_FULL]++;
		*fin = false;
		tcb->ack_now = true;
		return;
	}
	if (seq == tcb->rcv_nxt) {
		bool ofin;

		seg->m = NULL; /* kept */
		tcp_rxq_append(tcb, m);
		tcb->rcv_nxt += len;
		if (tcb->ooo_head != NULL) {
			tcp_reass_pull(tcb, &ofin);
			if (ofin)
				*fin = true;
			tcb->ack_now = true; /* a hole filled: ACK at once (RFC 5681 4.2) */
		}
		/*
		 * ACK every burst that brought data (RFC 5681 4.2 asks at least every
		 * second full segment): owed now, sent once per connection after the
		 * burst, on the reply if the engine has one.
		 */
		tcb->ack_now = true;
		tcp_app_want_output(dw, tcb);
		tcp_app_data(dw, tcb);
		return;
	}
	/*
	 * Out of order: keep it and send a duplicate ACK with SACK at once, one
	 * per segment (RFC 5681 4.2), not one per burst: the sender counts them
	 * to start fast retransmit (RFC 5681 3.2).
	 */
	dw->c.ooo_segments++;
	seg->m = NULL;
	if (!tcp_reass_insert(tcb, m, seq, *fin, dw->sh->conn_mbufs))
		dw->c.drops[DP_DROP_TCP_RCV_FULL]++;
	*fin = false;
	tcp_send_ack(dw, tcb);
}

/* Our peer closed its side (RFC 9293 3.10.7.4 eighth check). */
static void
process_fin(struct dp_worker *dw, struct tcb *tcb)
{
	tcb->rcv_nxt++;
	tcb->ack_now = true;
	switch (tcb->state) {
	case TCP_ESTABLISHED:
		tcb->state = TCP_CLOSE_WAIT;
		tcp_app_want_output(dw, tcb);
		tcp_app_peer_fin(dw, tcb);
		break;
	case TCP_FIN_WAIT_1:
		if (fin_acked(tcb)) {
			tcp_send_ack(dw, tcb);
			tcp_enter_time_wait(dw, tcb);
		} else {
			tcb->state = TCP_CLOSING;
			tcp_app_want_output(dw, tcb);
		}
		break;
	case TCP_FIN_WAIT_2:
		tcp_send_ack(dw, tcb);
		tcp_enter_time_wait(dw, tcb);
		break;
	default:
		break;
	}
}

void
tcp_conn_input(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg)
{
	uint8_t flags = seg->flags;
	uint32_t seglen = seg->len + !!(flags & RTE_TCP_SYN_FLAG) + !!(flags & RTE_TCP_FIN_FLAG);
	uint32_t win = tcp_rcv_window(dw, tcb);
	bool fin = (flags & RTE_TCP_FIN_FLAG) != 0;

	/* RFC 7323 5.3 R1: PAWS. */
	if (tcb->ts_ok && seg->opts.has_ts && !(flags & RTE_TCP_RST_FLAG) &&
	    seq_lt(seg->opts.tsval, tcb->ts_recent)) {
		dw->c.drops[DP_DROP_TCP_PAWS]++;
		tcp_send_ack(dw, tcb);
		return;
	}
	/* First check: sequence number. */
	if (!tcp_seq_acceptable(seg->seq, seglen, tcb->rcv_nxt, win)) {
		if (flags & RTE_TCP_RST_FLAG) {
			dw->c.drops[DP_DROP_TCP_RST_OUT_OF_WINDOW]++;
			return;
		}
		dw->c.drops[DP_DROP_TCP_OUT_OF_WINDOW]++;
		tcp_send_ack(dw, tcb);
		return;
	}
	/* Second check: RST, RFC 5961 3.2. */
	if (flags & RTE_TCP_RST_FLAG) {
		switch (tcp_rst_check(seg->seq, tcb->rcv_nxt, win)) {
		case TCP_RST_ACCEPT:
			dw->c.conns_reset++;
			tcb->err = TCP_ERR_RESET;
			tcp_conn_detach(dw, tcb);
			tcp_app_closed(dw, tcb, true);
			return;
		case TCP_RST_CHALLENGE:
			challenge_ack(dw, tcb);
			return;
		case TCP_RST_DROP:
			dw->c.drops[DP_DROP_TCP_RST_OUT_OF_WINDOW]++;
			return;
		}
	}
	/* Fourth check: a SYN in a synchronized state, RFC 5961 4.2. */
	if (flags & RTE_TCP_SYN_FLAG) {
		challenge_ack(dw, tcb);
		return;
	}
	if (!(flags & RTE_TCP_ACK_FLAG)) {
		dw->c.drops[DP_DROP_TCP_NO_ACK]++;
		return;
	}
	/* RFC 7323 4.3: remember the peer's timestamp for in-window segments. */
	if (tcb->ts_ok && seg->opts.has_ts && seq_leq(seg->seq, tcb->rcv_nxt))
		tcb->ts_recent = seg->opts.tsval;
	if (process_ack(dw, tcb, seg) != PA_OK)
		return; /* dropped, or the connection is gone */
	/* Seventh check: data, in the states that still receive. */
	if (seg->len > 0 || fin) {
		if (tcb->state == TCP_ESTABLISHED || tcb->state == TCP_FIN_WAIT_1 ||
		    tcb->state == TCP_FIN_WAIT_2) {
			if (seg->len > 0)
				process_data(dw, tcb, seg, &fin);
			else if (seg->seq != tcb->rcv_nxt) {
				/* A FIN alone, ahead of a hole: wait for the retransmission. */
				fin = false;
				tcb->ack_now = true;
				tcp_app_want_output(dw, tcb);
			}
		} else {
			/* CLOSE_WAIT, CLOSING, LAST_ACK: the peer already sent its FIN. */
			fin = false;
			tcb->ack_now = true;
			tcp_app_want_output(dw, tcb);
		}
		if (fin)
			process_fin(dw, tcb);
	}
}

/* From the TCP header on: checksum, header and options, then the connection. */
void
tcp_input(struct dp_worker *dw, struct rte_mbuf *m, const union tcp_addr *src,
          const union tcp_addr *dst, uint16_t l4_len)
{
	struct rte_tcp_hdr *th = rte_pktmbuf_mtod(m, struct rte_tcp_hdr *);
	struct tcp_seg seg = {.m = m};
	unsigned hlen;
	enum tcp_tag tag;
	void *obj;

	if (l4_len < sizeof(*th)) {
		dp_drop(dw, m, DP_DROP_TCP_BAD_HDR);
		return;
	}
	hlen = (th->data_off >> 4) * 4u;
	if (hlen < sizeof(*th) || hlen > l4_len) {
		dp_drop(dw, m, DP_DROP_TCP_BAD_HDR);
		return;
	}
	seg.key.raddr = *src;
	seg.key.laddr = *dst;
	seg.key.rport = th->src_port;
	seg.key.lport = th->dst_port;
	seg.seq = rte_be_to_cpu_32(th->sent_seq);
	seg.ack = rte_be_to_cpu_32(th->recv_ack);
	seg.win = rte_be_to_cpu_16(th->rx_win);
	seg.flags = th->tcp_flags & 0x3f;
	seg.len = (uint16_t)(l4_len - hlen);
	if (tcp_parse_options((const uint8_t *)(th + 1), hlen - sizeof(*th), &seg.opts) != PA_OK) {
		dp_drop(dw, m, DP_DROP_TCP_BAD_HDR);
		return;
	}
	/* Data in place: the mbuf now starts at the payload. */
	rte_pktmbuf_adj(m, (uint16_t)hlen);
	if (rte_pktmbuf_data_len(m) > seg.len)
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) - seg.len));

	obj = tcp_lookup(dw, &seg.key, &tag);
	if (obj == NULL) {
		/* listen_port 0: no listener (pigeon-loadgen only opens actively). */
		if (seg.key.lport != dw->sh->listen_port || dw->sh->listen_port == 0) {
			dw->c.drops[DP_DROP_TCP_CLOSED_PORT]++;
			tcp_send_rst_for(dw, &seg);
		} else if ((seg.flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG)) ==
		           RTE_TCP_SYN_FLAG) {
			tcp_syn_listen_input(dw, &seg);
		} else if ((seg.flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG)) ==
		               RTE_TCP_ACK_FLAG &&
		           (obj = tcp_syn_cookie_ack(dw, &seg)) != NULL) {
			tcp_conn_input(dw, obj, &seg);
		} else {
			/* RFC 9293 3.10.7.2 LISTEN: a RST is ignored, an ACK gets a RST. */
			dw->c.drops[DP_DROP_TCP_STATE]++;
			if (!(seg.flags & RTE_TCP_RST_FLAG) && (seg.flags & RTE_TCP_ACK_FLAG))
				tcp_send_rst_for(dw, &seg);
		}
	} else if (tag == TCP_TAG_SYN) {
		tcp_syn_entry_input(dw, obj, &seg);
	} else if (tag == TCP_TAG_TW) {
		tcp_tw_input(dw, obj, &seg);
	} else if (((struct tcb *)obj)->state == TCP_SYN_SENT) {
		tcp_synsent_input(dw, obj, &seg);
	} else {
		tcp_conn_input(dw, obj, &seg);
	}
	if (seg.m != NULL)
		rte_pktmbuf_free(seg.m);
}
