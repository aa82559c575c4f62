/*
 * tcp_reass.c: a connection's received data, kept in the mbufs it arrived in.
 *
 * The in-order queue holds bytes the application has not taken yet; the
 * out-of-order queue is sorted by sequence number, with overlaps trimmed on
 * insert so that no octet is held twice (RFC 9293 3.10.7.4: segments are
 * trimmed to what is new).  The number of mbufs one connection holds is
 * capped by the caller's cap, so a peer sending many tiny segments cannot
 * exhaust the pool.  Links and sequence numbers live in each mbuf's private
 * area (struct dp_mbuf_priv): no allocation.
 */
#include <rte_mbuf.h>

#include "dataplane/tcp.h"

static uint32_t
mlen(struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

void
tcp_rxq_append(struct tcb *tcb, struct rte_mbuf *m)
{
	dp_priv(m)->next = NULL;
	if (tcb->rxq_tail != NULL)
		dp_priv(tcb->rxq_tail)->next = m;
	else
		tcb->rxq_head = m;
	tcb->rxq_tail = m;
	tcb->rxq_bytes += mlen(m);
	tcb->rxq_nbufs++;
}

void
tcp_rxq_consume(struct tcb *tcb, uint32_t n)
{
	struct rte_mbuf *m = tcb->rxq_head;

	if (m == NULL || n == 0)
		return;
	/* More than the head holds is a caller's bug: the counts must still add up. */
	if (n > mlen(m))
		n = mlen(m);
	tcb->rxq_bytes -= n;
	if (n < mlen(m)) {
		rte_pktmbuf_adj(m, (uint16_t)n);
		return;
	}
	tcb->rxq_head = dp_priv(m)->next;
	if (tcb->rxq_head == NULL)
		tcb->rxq_tail = NULL;
	tcb->rxq_nbufs--;
	rte_pktmbuf_free(m);
}

/* Drops the first n octets of m (the caller knows n < its length). */
static void
trim_front(struct rte_mbuf *m, uint32_t n)
{
	rte_pktmbuf_adj(m, (uint16_t)n);
	dp_priv(m)->seq += n;
}

bool
tcp_reass_insert(struct tcb *tcb, struct rte_mbuf *m, uint32_t seq, bool fin, unsigned cap)
{
	struct rte_mbuf **link = &tcb->ooo_head, *cur;
	uint32_t end;

	dp_priv(m)->seq = seq;
	dp_priv(m)->fin = fin;
	dp_priv(m)->next = NULL;
	/* Find the first segment that does not start before this one. */
	while ((cur = *link) != NULL && seq_lt(dp_priv(cur)->seq, seq)) {
		uint32_t cur_end = dp_priv(cur)->seq + mlen(cur);

		if (seq_lt(seq, cur_end)) {
			/* The previous one covers our front: keep only what is new. */
			uint32_t overlap = cur_end - seq;

			if (overlap >= mlen(m)) {
				if (fin && cur_end == seq + mlen(m))
					dp_priv(cur)->fin = 1;
				rte_pktmbuf_free(m);
				return false;
			}
			trim_front(m, overlap);
			seq = dp_priv(m)->seq;
		}
		link = &dp_priv(cur)->next;
	}
	end = seq + mlen(m);
	/* Later segments entirely covered by this one go. */
	while ((cur = *link) != NULL && seq_leq(dp_priv(cur)->seq + mlen(cur), end)) {
		if (dp_priv(cur)->fin && dp_priv(cur)->seq + mlen(cur) == end)
			fin = true;
		*link = dp_priv(cur)->next;
		tcb->ooo_nbufs--;
		rte_pktmbuf_free(cur);
	}
	dp_priv(m)->fin = fin;
	/* A later segment overlapping our tail: we give up our tail. */
	if (cur != NULL && seq_lt(dp_priv(cur)->seq, end)) {
		uint32_t keep = dp_priv(cur)->seq - seq;

		if (keep == 0) {
			rte_pktmbuf_free(m);
			return false;
		}
		rte_pktmbuf_trim(m, (uint16_t)(end - dp_priv(cur)->seq));
		dp_priv(m)->fin = 0;
	}
	if (tcb->ooo_nbufs + tcb->rxq_nbufs >= cap) {
		rte_pktmbuf_free(m);
		return false;
	}
	dp_priv(m)->next = cur;
	*link = m;
	tcb->ooo_nbufs++;
	return true;
}

uint32_t
tcp_reass_pull(struct tcb *tcb, bool *fin)
{
	struct rte_mbuf *m;
	uint32_t moved = 0;

	*fin = false;
	while ((m = tcb->ooo_head) != NULL && seq_leq(dp_priv(m)->seq, tcb->rcv_nxt)) {
		uint32_t seq = dp_priv(m)->seq, len = mlen(m);
		bool mfin = dp_priv(m)->fin;

		tcb->ooo_head = dp_priv(m)->next;
		tcb->ooo_nbufs--;
		if (seq_leq(seq + len, tcb->rcv_nxt)) {
			/* Nothing new (the in-order path overtook it). */
			if (mfin && seq + len == tcb->rcv_nxt) {
				*fin = true;
				rte_pktmbuf_free(m);
				break;
			}
			rte_pktmbuf_free(m);
			continue;
		}
		if (seq_lt(seq, tcb->rcv_nxt))
			trim_front(m, tcb->rcv_nxt - seq);
		len = mlen(m);
		tcb->rcv_nxt += len;
		moved += len;
		tcp_rxq_append(tcb, m);
		if (mfin) {
			*fin = true;
			break;
		}
	}
	return moved;
}

unsigned
tcp_reass_sack(const struct tcb *tcb, uint32_t blocks[][2], unsigned max)
{
	unsigned n = 0;

	for (struct rte_mbuf *m = tcb->ooo_head; m != NULL; m = dp_priv(m)->next) {
		uint32_t s = dp_priv(m)->seq, e = s + mlen(m);

		if (n > 0 && blocks[n - 1][1] == s) {
			blocks[n - 1][1] = e;
			continue;
		}
		if (n == max)
			break;
		blocks[n][0] = s;
		blocks[n][1] = e;
		n++;
	}
	return n;
}

void
tcp_queues_free(struct tcb *tcb)
{
	struct rte_mbuf *m, *next;

	for (m = tcb->rxq_head; m != NULL; m = next) {
		next = dp_priv(m)->next;
		rte_pktmbuf_free(m);
	}
	for (m = tcb->ooo_head; m != NULL; m = next) {
		next = dp_priv(m)->next;
		rte_pktmbuf_free(m);
	}
	tcb->rxq_head = tcb->rxq_tail = tcb->ooo_head = NULL;
	tcb->rxq_bytes = 0;
	tcb->rxq_nbufs = tcb->ooo_nbufs = 0;
}
