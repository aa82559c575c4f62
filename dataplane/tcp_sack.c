/*
 * tcp_sack.c: the sender's SACK scoreboard (RFC 2018, in the spirit of
 * RFC 6675, kept simple).
 *
 * What the peer reported holding above SND.UNA is kept as up to
 * TCP_SACK_SCORE sorted, disjoint ranges in the TCB (no allocation).  A
 * retransmission (after fast retransmit, a partial ACK, or in any go-back
 * from SND.UNA) skips what is in them and stops at the next one, so only the
 * holes are sent again; during recovery data above the highest SACKed octet
 * is taken to be still in flight, not lost (RFC 6675 IsLost), and is not
 * resent.  Blocks are believed only inside (SND.UNA, SND.MAX]: D-SACKs
 * (RFC 2883) and garbage say nothing here.  The scoreboard is cleared on a
 * retransmission timeout, since a receiver may renege (RFC 2018 8,
 * RFC 6675 5.1).  Recovery itself (when to enter, cwnd) stays NewReno
 * (RFC 6582).
 */
#include "dataplane/tcp.h"

/* Drops what SND.UNA (una) now covers. */
static void
prune(struct tcb *tcb, uint32_t una)
{
	unsigned k = 0;

	for (unsigned i = 0; i < tcb->nsacked; i++) {
		uint32_t s = tcb->sacked[i][0], e = tcb->sacked[i][1];

		if (seq_leq(e, una))
			continue;
		if (seq_lt(s, una))
			s = una;
		tcb->sacked[k][0] = s;
		tcb->sacked[k][1] = e;
		k++;
	}
	tcb->nsacked = (uint8_t)k;
}

/* Adds [s, e), merging with every range it overlaps or touches; keeps the lowest ranges. */
static void
insert(struct tcb *tcb, uint32_t s, uint32_t e)
{
	uint32_t out[TCP_SACK_SCORE + 1][2];
	unsigned n = 0, i = 0;
	bool placed = false;

	for (; i < tcb->nsacked; i++) {
		uint32_t bs = tcb->sacked[i][0], be = tcb->sacked[i][1];

		if (seq_lt(be, s)) { /* entirely below */
			out[n][0] = bs;
			out[n][1] = be;
			n++;
		} else if (seq_lt(e, bs)) { /* entirely above: ours goes first */
			break;
		} else { /* overlapping or adjacent: absorb */
			s = seq_min(s, bs);
			e = seq_max(e, be);
		}
	}
	out[n][0] = s;
	out[n][1] = e;
	n++;
	placed = true;
	for (; i < tcb->nsacked && n < TCP_SACK_SCORE + 1; i++) {
		out[n][0] = tcb->sacked[i][0];
		out[n][1] = tcb->sacked[i][1];
		n++;
	}
	(void)placed;
	/* The lowest ranges matter most: they bound the holes retransmitted first. */
	if (n > TCP_SACK_SCORE)
		n = TCP_SACK_SCORE;
	for (i = 0; i < n; i++) {
		tcb->sacked[i][0] = out[i][0];
		tcb->sacked[i][1] = out[i][1];
	}
	tcb->nsacked = (uint8_t)n;
}

void
tcp_sack_update(struct tcb *tcb, uint32_t una, const uint32_t blocks[][2], unsigned n)
{
	prune(tcb, una);
	for (unsigned i = 0; i < n; i++) {
		uint32_t s = blocks[i][0], e = blocks[i][1];

		/* RFC 2018 3 / RFC 6675 5: only news about (SND.UNA, SND.MAX]. */
		if (!seq_lt(s, e) || seq_leq(e, una) || seq_gt(e, tcb->snd_max))
			continue;
		if (seq_lt(s, una))
			s = una;
		insert(tcb, s, e);
	}
}

uint32_t
tcp_sack_next(const struct tcb *tcb, uint32_t seq, uint32_t *limit)
{
	*limit = tcb->snd_max;
	for (unsigned i = 0; i < tcb->nsacked; i++) {
		uint32_t s = tcb->sacked[i][0], e = tcb->sacked[i][1];

		if (seq_in(seq, s, e))
			seq = e; /* the ranges are sorted: a later one may start right here */
		else if (seq_lt(seq, s)) {
			*limit = s;
			break;
		}
	}
	return seq;
}

uint32_t
tcp_sack_high(const struct tcb *tcb)
{
	return tcb->nsacked > 0 ? tcb->sacked[tcb->nsacked - 1][1] : tcb->snd_una;
}
