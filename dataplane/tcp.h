/*
 * tcp.h: the user-space TCP of the DPDK dataplane (RFC 9293 with RFC 7323,
 * 2018, 5681, 6298, 6582, 6928, 5961, 6528).
 *
 * A connection is a struct tcb embedded in the application's own connection
 * (pigeond's struct dp_conn, pigeon-loadgen's client connection); the TCP
 * code reaches the application only through the tcp_app_* hooks declared at
 * the end, which dispatch through the worker's ops table (struct
 * tcp_app_ops).  Connections are opened passively (tcp_syn.c) or actively
 * (tcp_connect.c).  The send buffer is the
 * application's own output (smtp_session_output()): bytes are released only
 * when acknowledged, so a retransmission re-reads them and nothing is copied
 * until a segment is built.  Received data stays in the mbufs it arrived in
 * (headers trimmed), on an in-order queue and an out-of-order queue, capped
 * per connection.
 *
 * The TCB hash maps the 4-tuple to a tagged pointer: a full connection, a
 * SYN-queue entry (tcp_syn.c) or a compact TIME_WAIT entry (tcp_conn.c).
 */
#ifndef PA_TCP_H
#define PA_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <rte_byteorder.h>

#include "dataplane/dp.h"
#include "dataplane/tcp_seq.h"
#include "dataplane/tcp_timer.h"

enum tcp_state {
	TCP_CLOSED,
	TCP_SYN_SENT,
	TCP_SYN_RECEIVED,
	TCP_ESTABLISHED,
	TCP_FIN_WAIT_1,
	TCP_FIN_WAIT_2,
	TCP_CLOSE_WAIT,
	TCP_CLOSING,
	TCP_LAST_ACK,
	TCP_TIME_WAIT,
};

/* Why a connection ended (tcb->err), so an active opener can count failures by kind. */
enum tcp_err {
	TCP_ERR_NONE,
	TCP_ERR_REFUSED,     /* RST in SYN_SENT (RFC 9293 3.10.7.3) */
	TCP_ERR_TIMEOUT,     /* no SYN-ACK after TCP_SYN_RETRIES retransmissions */
	TCP_ERR_UNREACHABLE, /* the next hop never answered ARP (or Neighbor Discovery) */
	TCP_ERR_RESET,       /* reset after ESTABLISHED */
	TCP_ERR_RTX_TIMEOUT, /* TCP_MAX_RETRIES expiries after ESTABLISHED */
};

/*
 * An address in a TCP key, network order: IPv6, or IPv4 as the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d (RFC 4291 2.5.5.2), its IPv4 address in v4.
 * IPv6 input refuses mapped sources and the engine has no mapped address of
 * its own, so an IPv6 key never looks like an IPv4 one.
 */
union tcp_addr {
	uint8_t a6[16];
	uint32_t w[4];
	struct {
		uint32_t pad[3];
		uint32_t v4;
	};
};

/* Network order, as on the wire; 36 octets, the rte_hash key. */
struct tcp_key {
	union tcp_addr raddr, laddr;
	uint16_t rport, lport;
};

static inline union tcp_addr
tcp_addr_v4(uint32_t a)
{
	union tcp_addr t = {.w = {0, 0, RTE_BE32(0xffff), a}};

	return t;
}

static inline union tcp_addr
tcp_addr_v6(const uint8_t *a)
{
	union tcp_addr t;

	memcpy(t.a6, a, 16);
	return t;
}

/* Whether the key's connection is over IPv6 (its local address tells). */
static inline bool
tcp_key_v6(const struct tcp_key *k)
{
	return (k->laddr.w[0] | k->laddr.w[1] | (k->laddr.w[2] ^ RTE_BE32(0xffff))) != 0;
}

enum tcp_tag { TCP_TAG_CONN = 0, TCP_TAG_SYN = 1, TCP_TAG_TW = 2 };
#define TCP_TAG_MASK 3ul

#define TCP_RTO_INIT_MS 1000 /* RFC 6298 2.1 */
#define TCP_RTO_MIN_MS 200   /* RFC 6298 2.4 says 1 s (SHOULD); 200 ms as Linux does */
#define TCP_RTO_MAX_MS 60000 /* RFC 6298 2.5 */
#define TCP_MAX_RETRIES 12
#define TCP_SYNACK_RETRIES 5
#define TCP_SYN_RETRIES 5        /* active open: 1+2+4+8+16+32 s, then the connect fails */
#define TCP_SYN_RTO_DATA_MS 3000 /* RFC 6298 5.7: RTO after a SYN timed out */
#define TCP_EPHEMERAL_LO 32768   /* local ports for active opens (as Linux) */
#define TCP_EPHEMERAL_HI 60999
#define TCP_ARP_POLL_MS 5    /* active open waiting for ARP: how often to look */
#define TCP_ARP_WAIT_MS 3500 /* ...and for how long (net_arp.c asks 3 times, 1 s apart) */
#define TCP_IW_SEGMENTS 10   /* RFC 6928 */
#define TCP_FIN_WAIT_2_MS 60000
#define TCP_RCV_WSCALE 4    /* window scale we offer (RFC 7323 2.2) */
#define TCP_MSS_DEFAULT 536 /* RFC 9293 3.7.1, when the peer sends no MSS */
#define TCP_SACK_SCORE 4    /* ranges the sender's SACK scoreboard keeps (tcp_sack.c) */

/* Options of a received segment (RFC 9293 3.1, RFC 7323, RFC 2018). */
struct tcp_opts {
	uint16_t mss;
	uint8_t wscale;
	bool has_mss, has_wscale, sack_ok, has_ts;
	uint32_t tsval, tsecr;
	uint8_t nsack;
	uint32_t sack[4][2];
};

struct tcb {
	struct tcp_key key;
	uint8_t state;
	bool ts_ok, sack_ok, ws_ok;
	bool fin_queued; /* the application is done: FIN after its last byte */
	bool fin_sent;
	bool ack_now;     /* an ACK is owed at the next output */
	bool in_recovery; /* NewReno fast recovery (RFC 6582) */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t dupacks;
	uint8_t rtx_count; /* consecutive RTO expiries (in SYN_SENT: SYN retransmissions) */
	uint8_t err;       /* enum tcp_err: why the connection ended, for the application */
	bool arp_wait;     /* SYN_SENT, the SYN not sent yet: the next hop is being resolved */
	bool timing;       /* an RTT sample is running (Karn: new data only) */
	bool persist;      /* rtx_timer is the zero-window probe timer */
	uint16_t mss;      /* send MSS, options not counted */
	uint32_t iss, irs;
	uint32_t snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1, snd_wl2, max_snd_wnd;
	uint32_t snd_end;          /* with fin_queued: the sequence number of our FIN */
	uint32_t rcv_nxt, rcv_adv; /* rcv_adv: right edge of the last advertised window */
	uint32_t cwnd, ssthresh, recover;
	uint32_t ts_recent;
	uint32_t rtt_seq, rtt_start_ms;
	uint32_t srtt_ms8, rttvar_ms4, rto_ms; /* RFC 6298 state, scaled as in the RFC's appendix */
	uint32_t sacked[TCP_SACK_SCORE][2];    /* the peer holds these, above SND.UNA (sorted) */
	uint8_t nsacked;
	struct tcp_timer rtx_timer; /* retransmission, persist, FIN_WAIT_2 */
	/* received data, in its mbufs: in order (not yet taken), and out of order */
	struct rte_mbuf *rxq_head, *rxq_tail;
	uint32_t rxq_bytes;
	uint16_t rxq_nbufs, ooo_nbufs;
	struct rte_mbuf *ooo_head;
};

/* Compact TIME_WAIT (RFC 9293 3.6.1): what it takes to re-ACK a FIN and judge a new SYN. */
struct tcp_tw {
	struct tcp_key key;
	uint32_t snd_nxt, rcv_nxt, ts_recent;
	bool ts_ok;
	struct tcp_timer timer;
	SLIST_ENTRY(tcp_tw) free_link;
};

/* SYN-queue entry: a half-open connection (SYN_RECEIVED) without a TCB. */
struct tcp_syn {
	struct tcp_key key;
	uint32_t iss, irs, tsval;
	uint16_t mss;
	uint8_t snd_wscale, tries;
	bool ts_ok, sack_ok, ws_ok;
	struct tcp_timer timer;
	SLIST_ENTRY(tcp_syn) free_link;
};

/* A segment being processed: header fields in host order. */
struct tcp_seg {
	struct rte_mbuf *m; /* data_off at the payload; NULL once the segment is kept */
	struct tcp_key key;
	uint32_t seq, ack;
	uint16_t win, len; /* len: payload octets */
	uint8_t flags;
	struct tcp_opts opts;
};

/*
 * tcp_input.c: one TCP segment, IP header already checked; m's data starts
 * at the TCP header; src is the peer, dst is us (IPv4 mapped).
 */
void tcp_input(struct dp_worker *dw, struct rte_mbuf *m, const union tcp_addr *src,
               const union tcp_addr *dst, uint16_t l4_len);
/*
 * ICMPv6 packet too big (RFC 8201) for the connection of key (as our segment
 * carried it, so raddr is the peer): its MSS lowered to fit mtu, when seq,
 * the quoted segment's, is one we sent and is not acknowledged yet (RFC 5927
 * 5.2).  False when no connection matched or nothing changed.
 */
bool tcp_pmtu_lower(struct dp_worker *dw, const struct tcp_key *key, uint32_t mtu, uint32_t seq);
/* Our MSS over the key's family at the port's MTU (IPv6: 20 octets less). */
uint16_t tcp_our_mss(const struct dp_worker *dw, const struct tcp_key *key);
int tcp_parse_options(const uint8_t *p, unsigned len, struct tcp_opts *o);

/* tcp_output.c */
void tcp_output(struct dp_worker *dw, struct tcb *tcb);
void tcp_send_ack(struct dp_worker *dw, struct tcb *tcb);
/* A segment outside any connection (RST, SYN-ACK from the SYN queue, TIME_WAIT ACK). */
void tcp_send_raw(struct dp_worker *dw, const struct tcp_key *key, uint32_t seq, uint32_t ack,
                  uint8_t flags, uint16_t win, const struct tcp_syn *synopts, bool ts,
                  uint32_t tsecr);
void tcp_send_rst_for(struct dp_worker *dw, const struct tcp_seg *seg);
uint32_t tcp_rcv_window(const struct dp_worker *dw, const struct tcb *tcb);
void tcp_rtx_timeout(struct tcp_timer *t, void *arg);

/* tcp_conn.c: the TCB hash and the pools */
int tcp_worker_init(struct dp_worker *dw);
void tcp_worker_fini(struct dp_worker *dw);
void *tcp_lookup(struct dp_worker *dw, const struct tcp_key *key, enum tcp_tag *tag);
int tcp_hash_add(struct dp_worker *dw, const struct tcp_key *key, void *obj, enum tcp_tag tag);
void tcp_hash_del(struct dp_worker *dw, const struct tcp_key *key);
/* A connection reached ESTABLISHED from the SYN queue or a cookie; NULL when at the limit. */
struct tcb *tcp_conn_create(struct dp_worker *dw, const struct tcp_syn *syn,
                            const struct tcp_seg *seg);
/* Frees queues, stops timers, leaves the hash; the backend decides when the memory goes. */
void tcp_conn_detach(struct dp_worker *dw, struct tcb *tcb);
/* Moves a connection into a compact TIME_WAIT entry for 2*MSL. */
void tcp_enter_time_wait(struct dp_worker *dw, struct tcb *tcb);
void tcp_tw_input(struct dp_worker *dw, struct tcp_tw *tw, struct tcp_seg *seg);
void tcp_tw_free(struct dp_worker *dw, struct tcp_tw *tw);
uint64_t tcp_now_us(const struct dp_worker *dw);

/* tcp_syn.c */
void tcp_syn_listen_input(struct dp_worker *dw, struct tcp_seg *seg);
void tcp_syn_entry_input(struct dp_worker *dw, struct tcp_syn *syn, struct tcp_seg *seg);
/* The ACK of a handshake whose SYN-ACK carried a cookie; true when it made a connection. */
struct tcb *tcp_syn_cookie_ack(struct dp_worker *dw, struct tcp_seg *seg);
/* RFC 6528: ISN = M + F(4-tuple, secret), over the IPv6 tuple for an IPv6 key. */
uint32_t tcp_key_isn(const struct dp_worker *dw, const struct tcp_key *key);
/* The window of a SYN or SYN-ACK (never scaled, RFC 7323 2.2). */
uint16_t tcp_syn_window(const struct dp_worker *dw);
/* The send MSS from a SYN's options: the peer's, 536 without one, at most our MTU's. */
uint16_t tcp_peer_mss(struct dp_worker *dw, const struct tcp_key *key, const struct tcp_opts *o);

/* tcp_connect.c: active open (RFC 9293 3.10.1 OPEN, 3.10.7.3 SYN-SENT) */
/*
 * Opens a connection from this worker to raddr:rport (network order) on tcb,
 * zeroed memory the application owns (its ops find their context from it).
 * Picks a free local port whose flow this worker owns (software steering),
 * resolves the next hop with ARP before the SYN, and reports through the ops:
 * established() on the SYN-ACK, closed(reset) with tcb->err on failure.
 * PA_ERROR (nothing to undo) when there is no route or no free local port.
 */
int tcp_connect(struct dp_worker *dw, struct tcb *tcb, uint32_t raddr, uint16_t rport);
/*
 * The same to an IPv6 peer (raddr 16 octets): from our usable address for
 * it (net_ipv6_src_for()), the next hop resolved by Neighbor Discovery
 * before the SYN.  PA_ERROR also when that address is not usable yet (DAD).
 */
int tcp_connect6(struct dp_worker *dw, struct tcb *tcb, const uint8_t *raddr, uint16_t rport);
/*
 * The application gives up a connection (RFC 9293 3.10.5 ABORT): a RST when
 * synchronized, then the TCB leaves the hash.  No closed() hook follows: the
 * caller knows.  A connection in TIME_WAIT or CLOSED is left as it is.
 */
void tcp_abort(struct dp_worker *dw, struct tcb *tcb);
/* A segment for a connection in SYN_SENT. */
void tcp_synsent_input(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg);

/* tcp_sack.c: the sender's SACK scoreboard (RFC 2018, RFC 6675 simplified) */
/* Forgets what una covers, then records the blocks of an acceptable ACK. */
void tcp_sack_update(struct tcb *tcb, uint32_t una, const uint32_t blocks[][2], unsigned n);
/* A retransmission at seq: past SACKed octets; *limit is where the next SACKed range starts. */
uint32_t tcp_sack_next(const struct tcb *tcb, uint32_t seq, uint32_t *limit);
/* The end of the highest SACKed range (SND.UNA when none). */
uint32_t tcp_sack_high(const struct tcb *tcb);

/* tcp_reass.c */
/* Queues an out-of-order segment's mbuf (data_off at the payload); false when it was freed. */
bool tcp_reass_insert(struct tcb *tcb, struct rte_mbuf *m, uint32_t seq, bool fin, unsigned cap);
/* Moves what became in order onto rxq; returns octets moved, *fin set when a FIN came in order. */
uint32_t tcp_reass_pull(struct tcb *tcb, bool *fin);
void tcp_rxq_append(struct tcb *tcb, struct rte_mbuf *m);
/*
 * The application has read n octets from the front of rxq (at most the
 * head mbuf's length: rxq is read one mbuf at a time): frees the head once
 * it is all read, else trims it; the queue's counts follow.
 */
void tcp_rxq_consume(struct tcb *tcb, uint32_t n);
void tcp_queues_free(struct tcb *tcb);
/* Fills up to max SACK blocks (RFC 2018) from the out-of-order queue. */
unsigned tcp_reass_sack(const struct tcb *tcb, uint32_t blocks[][2], unsigned max);

/* tcp_input.c: the established-side processing, also used by tcp_syn.c after a handshake */
void tcp_conn_input(struct dp_worker *dw, struct tcb *tcb, struct tcp_seg *seg);
/* RFC 5961 7: whether a challenge ACK may go now (else it is counted as limited). */
bool tcp_challenge_ack_allowed(struct dp_worker *dw);
/* RFC 6298 2.2/2.3: one RTT measurement (ms) into SRTT, RTTVAR and RTO. */
void tcp_rtt_sample(struct tcb *tcb, uint32_t rtt);

/*
 * Application hooks.  The TCP code reaches its application only through the
 * ops table of the worker (dw->app): pigeond's SMTP engine (dpdk_backend.c)
 * or pigeon-loadgen's client sessions (loadgen/lg_dpdk.c) plug into the same
 * TCP files.  A hook may call tcp_output(); none is called with the TCB in an
 * inconsistent state.
 */
struct tcp_app_ops {
	/* Memory for a new passive connection's TCB (zeroed); NULL at the connection limit. */
	struct tcb *(*conn_alloc)(struct dp_worker *dw);
	/* The handshake completed (either open): PA_ERROR refuses (the TCB is then reset). */
	int (*established)(struct dp_worker *dw, struct tcb *tcb);
	/* New in-order data waits on tcb->rxq_head. */
	void (*data)(struct dp_worker *dw, struct tcb *tcb);
	/* Bytes of the send buffer acknowledged: the application may release them. */
	void (*acked)(struct dp_worker *dw, struct tcb *tcb, uint32_t n);
	/* The send buffer from SND.UNA on (acknowledged bytes already released). */
	const uint8_t *(*sendbuf)(struct dp_worker *dw, struct tcb *tcb, uint32_t *len);
	/* The peer's FIN arrived in order. */
	void (*peer_fin)(struct dp_worker *dw, struct tcb *tcb);
	/*
	 * The connection is gone from TCP's side (reset, timed out, fully closed,
	 * TIME_WAIT).  For an active open that never reached ESTABLISHED this is
	 * the failure report; tcb->err says why.
	 */
	void (*closed)(struct dp_worker *dw, struct tcb *tcb, bool reset);
	/* Queue the TCB for tcp_output() at the end of this burst. */
	void (*want_output)(struct dp_worker *dw, struct tcb *tcb);
};

static inline struct tcb *
tcp_app_conn_alloc(struct dp_worker *dw)
{
	return dw->app->conn_alloc(dw);
}
static inline int
tcp_app_established(struct dp_worker *dw, struct tcb *tcb)
{
	return dw->app->established(dw, tcb);
}
static inline void
tcp_app_data(struct dp_worker *dw, struct tcb *tcb)
{
	dw->app->data(dw, tcb);
}
static inline void
tcp_app_acked(struct dp_worker *dw, struct tcb *tcb, uint32_t n)
{
	dw->app->acked(dw, tcb, n);
}
static inline const uint8_t *
tcp_app_sendbuf(struct dp_worker *dw, struct tcb *tcb, uint32_t *len)
{
	return dw->app->sendbuf(dw, tcb, len);
}
static inline void
tcp_app_peer_fin(struct dp_worker *dw, struct tcb *tcb)
{
	dw->app->peer_fin(dw, tcb);
}
static inline void
tcp_app_closed(struct dp_worker *dw, struct tcb *tcb, bool reset)
{
	dw->app->closed(dw, tcb, reset);
}
static inline void
tcp_app_want_output(struct dp_worker *dw, struct tcb *tcb)
{
	dw->app->want_output(dw, tcb);
}

#endif
