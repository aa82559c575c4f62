/*
 * tcp_seq.h: sequence-number arithmetic and the pure acceptance checks of
 * RFC 9293 and RFC 5961, kept free of state so the unit tests can drive them.
 *
 * Sequence numbers compare modulo 2^32 (RFC 9293 3.4): a < b when the signed
 * difference a - b is negative.
 */
#ifndef PA_TCP_SEQ_H
#define PA_TCP_SEQ_H

#include <stdbool.h>
#include <stdint.h>

static inline bool
seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}
static inline bool
seq_leq(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}
static inline bool
seq_gt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}
static inline bool
seq_geq(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) >= 0;
}
static inline uint32_t
seq_max(uint32_t a, uint32_t b)
{
	return seq_gt(a, b) ? a : b;
}
static inline uint32_t
seq_min(uint32_t a, uint32_t b)
{
	return seq_lt(a, b) ? a : b;
}
/* lo <= x < hi */
static inline bool
seq_in(uint32_t x, uint32_t lo, uint32_t hi)
{
	return seq_geq(x, lo) && seq_lt(x, hi);
}

/*
 * RFC 9293 3.10.7.4, first check: is a segment of len octets (SYN and FIN
 * counted) starting at seq acceptable for a receive window [rcv_nxt,
 * rcv_nxt + rcv_wnd)?  The four cases of the table.
 */
static inline bool
tcp_seq_acceptable(uint32_t seq, uint32_t len, uint32_t rcv_nxt, uint32_t rcv_wnd)
{
	if (len == 0) {
		if (rcv_wnd == 0)
			return seq == rcv_nxt;
		return seq_in(seq, rcv_nxt, rcv_nxt + rcv_wnd);
	}
	if (rcv_wnd == 0)
		return false;
	return seq_in(seq, rcv_nxt, rcv_nxt + rcv_wnd) ||
	       seq_in(seq + len - 1, rcv_nxt, rcv_nxt + rcv_wnd);
}

enum tcp_rst_verdict {
	TCP_RST_DROP,      /* outside the window: ignore silently */
	TCP_RST_CHALLENGE, /* in the window but not exact: challenge ACK */
	TCP_RST_ACCEPT,    /* exactly RCV.NXT: reset the connection */
};

/* RFC 5961 3.2: blind reset attack mitigation. */
static inline enum tcp_rst_verdict
tcp_rst_check(uint32_t seq, uint32_t rcv_nxt, uint32_t rcv_wnd)
{
	if (seq == rcv_nxt)
		return TCP_RST_ACCEPT;
	/* An empty window still lets a RST at RCV.NXT in, nothing else. */
	if (rcv_wnd > 0 && seq_in(seq, rcv_nxt, rcv_nxt + rcv_wnd))
		return TCP_RST_CHALLENGE;
	return TCP_RST_DROP;
}

enum tcp_ack_verdict {
	TCP_ACK_OK,        /* SND.UNA <= SEG.ACK <= SND.NXT (new or duplicate) */
	TCP_ACK_OLD,       /* older than SND.UNA but within MAX.SND.WND: ignore the ACK field */
	TCP_ACK_CHALLENGE, /* RFC 5961 5.2: discard and send an ACK */
};

/*
 * RFC 5961 5.2: an ACK is acceptable only in
 * (SND.UNA - MAX.SND.WND) <= SEG.ACK <= SND.NXT; anything else is dropped and
 * answered with an ACK (which also covers RFC 9293's "ACK of something not
 * yet sent").
 */
static inline enum tcp_ack_verdict
tcp_ack_check(uint32_t ack, uint32_t snd_una, uint32_t snd_max, uint32_t max_snd_wnd)
{
	if (seq_gt(ack, snd_max))
		return TCP_ACK_CHALLENGE;
	if (seq_geq(ack, snd_una))
		return TCP_ACK_OK;
	if (seq_geq(ack, snd_una - max_snd_wnd))
		return TCP_ACK_OLD;
	return TCP_ACK_CHALLENGE;
}

/* Options sit at any octet offset: byte-wise big-endian access, no alignment assumed. */
static inline uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
