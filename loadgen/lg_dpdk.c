/*
 * lg_dpdk.c: pigeon-loadgen's transport over PigeonAir's user-space TCP/IP
 * stack (DPDK, active open: dataplane/tcp_connect.c).
 *
 *   pigeon-loadgen --eal "--no-huge -m 512 --vdev=net_memif0,role=client,socket=S" \
 *                  --ip 198.18.0.1/24 [--ip-count N] [--gateway ADDR] --target 198.18.0.2:25 ...
 *   pigeon-loadgen ... --ip 198.18.0.1/24 --ip6 2001:db8::1/64 --target [2001:db8::2]:25 ...
 *
 * --ip-count N gives the stack N consecutive addresses from --ip's; active
 * opens take them in turn (tcp_connect.c), so N server-port-sized port
 * ranges: what 100,000 connections to one server port need.  With --ip6
 * the stack is dual-stacked and an IPv6 --target is reached over IPv6
 * (tcp_connect6(), Neighbor Discovery for the next hop); the address runs
 * duplicate address detection (one solicitation, RFC 4862 5.4) before the
 * load threads start, so no SYN leaves from a tentative address.
 *
 * EAL starts with one lcore per --threads plus the main lcore (which runs
 * lg_monitor()); the first port EAL offers gets one queue pair per thread.
 * Each load lcore owns a cache-aligned struct lg_dthread: its stack worker
 * (struct dp_worker, bound to this file's struct tcp_app_ops), its
 * connections, their send buffers and its struct lg_thread.  It polls; it
 * never blocks and makes no system call in steady state (the clock is
 * clock_gettime through the vDSO; a PMD may make calls of its own, as
 * net_tap does).
 *
 * The session's output is copied into a per-connection send buffer only as
 * far as TCP can send it at once (the usable window), and consumed from the
 * session then: "handed to the network" is what lg_session_consume() means,
 * so the end-of-data clock starts when CRLF.CRLF leaves, not when its ACK
 * comes back.  Acknowledged bytes leave the buffer; an empty buffer goes back
 * to the thread's free list, so an idle connection holds none (buffers are
 * carved from one calloc'ed area, whose untouched pages cost nothing; at
 * most LG_SBUF_MAX per thread, a connection with output and no free buffer
 * waits for one).
 * Received bytes go to the session straight from their mbufs.
 *
 * A connection slot cycles: session created, tcp_connect(), established
 * (lg_session_connected), dialogue, session closed (QUIT answered, error or
 * abort) → our FIN (or ABORT in SYN_SENT), TCP closed → the slot reconnects
 * while lg_source_more() says so.  A failed connect waits LG_RECONNECT_US
 * before the next attempt, so a refusing server costs no busy loop.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/eal.h"
#include "dataplane/net_ipv6.h"
#include "dataplane/tcp.h"
#include "loadgen/lg_transport.h"

#define LG_EAL_ARGS_MAX 64
#define LG_SBUF_SIZE (32u * 1024u) /* per-connection send buffer: un-ACKed bytes */
#define LG_SBUF_MAX 4096u          /* send buffers per thread (128 MiB of address space) */
#define LG_RECONNECT_US 10000u     /* after a failed connect */
#define LG_TICK_US 100000u         /* lg_session_tick() period: "every few hundred ms" */
#define LG_LINGER_US 3000000u      /* after the last session: TCP closes, then RST */
#define LG_LINK_WAIT_S 15          /* the port's link must come up by then */
#define LG_DAD_WAIT_S 10           /* ...and --ip6 be usable (DAD: about a second) */
#define LG_MBUFS 16383u
#define LG_CONNECT_BURST 32u   /* new connects per loop: SYNs paced, not one burst of thousands */
#define LG_CONNECTING_MAX 128u /* handshakes in flight per thread (a connect window) */

/* --ip-count's bound is the stack's: lg_options.c cannot include dataplane headers. */
_Static_assert(LG_MAX_IP_COUNT == DP_MAX_ADDRS, "--ip-count and DP_MAX_ADDRS disagree");

struct lg_dthread;

struct lg_dconn {
	struct tcb tcb; /* TCP's part (tcp.h); container_of finds the rest */
	struct lg_dthread *th;
	struct lg_session *s; /* NULL between sessions */
	uint8_t *sbuf;        /* un-ACKed bytes from SND.UNA on; NULL when empty */
	uint32_t slen;
	uint64_t retry_us; /* no new connect before this */
	TAILQ_ENTRY(lg_dconn) out_link;
	TAILQ_ENTRY(lg_dconn) slot_link; /* on th->free_slots or th->starved */
	bool in_out;                     /* on th->out */
	bool on_slot;                    /* on th->free_slots (no session, no TCB) */
	bool on_starved;                 /* on th->starved (the session waits for the source) */
	bool on_wait;    /* on th->buf_wait (output pending, every send buffer in use) */
	bool connecting; /* counted in th->nconnecting: SYN sent, no answer yet */
	TAILQ_ENTRY(lg_dconn) wait_link;
	bool tcp_live;  /* TCP holds the TCB (from tcp_connect until closed/abort) */
	bool sess_done; /* the session closed: pull nothing more, FIN after what is buffered */
};

struct lg_dthread {
	struct lg_thread t;
	struct dp_worker *dw;
	unsigned lcore;
	struct lg_dconn *conns;
	unsigned nconns;
	uint8_t *bufs; /* nbufs * LG_SBUF_SIZE, calloc'ed */
	unsigned nbufs;
	TAILQ_HEAD(, lg_dconn) buf_wait; /* connections waiting for a send buffer */
	uint8_t **buf_free;              /* stack of free send buffers */
	unsigned nbuf_free;
	TAILQ_HEAD(, lg_dconn) out; /* tcp_output() before the TX flush */
	/* Slots to connect again, oldest first: a failed one waits for its retry_us. */
	TAILQ_HEAD(, lg_dconn) free_slots;
	/* Open loop: sessions waiting for a token, kicked in order as tokens come. */
	TAILQ_HEAD(, lg_dconn) starved;
	unsigned nbusy;       /* slots with a session or a TCB */
	unsigned nsessions;   /* slots with a session */
	unsigned nconnecting; /* handshakes in flight */
	uint64_t now_us;      /* this loop iteration's lg_now_us() */
	union tcp_addr raddr; /* the target, network order (IPv4 mapped, or IPv6) */
	uint16_t rport;
	bool v6;
	bool draining, aborted;
} __rte_cache_aligned;

static struct lg_dconn *
dconn_of(struct tcb *tcb)
{
	return pa_container_of(tcb, struct lg_dconn, tcb);
}

static void
want_output(struct lg_dthread *th, struct lg_dconn *c)
{
	if (c->in_out || !c->tcp_live)
		return;
	c->in_out = true;
	TAILQ_INSERT_TAIL(&th->out, c, out_link);
}

static void
out_remove(struct lg_dthread *th, struct lg_dconn *c)
{
	if (c->in_out) {
		TAILQ_REMOVE(&th->out, c, out_link);
		c->in_out = false;
	}
}

static void
sbuf_release(struct lg_dthread *th, struct lg_dconn *c)
{
	struct lg_dconn *w;

	if (c->on_wait) {
		TAILQ_REMOVE(&th->buf_wait, c, wait_link);
		c->on_wait = false;
	}
	if (c->sbuf != NULL) {
		th->buf_free[th->nbuf_free++] = c->sbuf;
		c->sbuf = NULL;
		/* A buffer is free again: the longest waiter may send now. */
		if ((w = TAILQ_FIRST(&th->buf_wait)) != NULL) {
			TAILQ_REMOVE(&th->buf_wait, w, wait_link);
			w->on_wait = false;
			want_output(th, w);
		}
	}
	c->slen = 0;
}

static enum lg_err
err_of(const struct tcb *tcb, bool established)
{
	switch (tcb->err) {
	case TCP_ERR_REFUSED:
		return LG_ERR_REFUSED;
	case TCP_ERR_TIMEOUT:
		return LG_ERR_TIMEOUT;
	case TCP_ERR_UNREACHABLE:
		return LG_ERR_CONNECT;
	default:
		return established ? LG_ERR_RESET : LG_ERR_CONNECT;
	}
}

/* The session is over and TCP is done with the slot: it may connect again. */
static void
slot_reset(struct lg_dthread *th, struct lg_dconn *c)
{
	out_remove(th, c);
	sbuf_release(th, c);
	if (c->s != NULL) {
		lg_session_free(c->s);
		c->s = NULL;
		th->nsessions--;
	}
	if (c->on_starved) {
		TAILQ_REMOVE(&th->starved, c, slot_link);
		c->on_starved = false;
	}
	if (c->connecting) {
		c->connecting = false;
		th->nconnecting--;
	}
	c->tcp_live = false;
	c->sess_done = false;
	memset(&c->tcb, 0, sizeof(c->tcb));
	if (!c->on_slot) {
		c->on_slot = true;
		th->nbusy--;
		TAILQ_INSERT_TAIL(&th->free_slots, c, slot_link);
	}
}

/* After any call into the session: close our side once it is over. */
static void
after_session(struct lg_dthread *th, struct lg_dconn *c)
{
	struct tcb *tcb = &c->tcb;

	if (c->s == NULL || !lg_session_closed(c->s)) {
		if (c->s != NULL && !c->on_starved && lg_session_starved(c->s)) {
			c->on_starved = true;
			TAILQ_INSERT_TAIL(&th->starved, c, slot_link);
		}
		want_output(th, c);
		return;
	}
	if (c->on_starved) {
		TAILQ_REMOVE(&th->starved, c, slot_link);
		c->on_starved = false;
	}
	lg_session_free(c->s);
	c->s = NULL;
	th->nsessions--;
	c->sess_done = true;
	if (!c->tcp_live) {
		slot_reset(th, c);
		return;
	}
	if (tcb->state == TCP_SYN_SENT) {
		/* Closed before the handshake (connect timeout, abort): RFC 9293 3.10.5. */
		tcp_abort(th->dw, tcb);
		slot_reset(th, c);
		return;
	}
	if (!tcb->fin_queued && (tcb->state == TCP_ESTABLISHED || tcb->state == TCP_CLOSE_WAIT)) {
		/* RFC 9293 3.10.4 CLOSE: the FIN follows what is already buffered. */
		tcb->fin_queued = true;
		tcb->snd_end = tcb->snd_una + c->slen;
	}
	want_output(th, c);
}

/* ---- TCP's application hooks (struct tcp_app_ops, dataplane/tcp.h) ---- */

static struct tcb *
lg_conn_alloc(struct dp_worker *dw)
{
	/* No listener (listen_port 0): TCP never asks for a passive connection. */
	(void)dw;
	return NULL;
}

static int
lg_established(struct dp_worker *dw, struct tcb *tcb)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);

	if (c->s == NULL)
		return PA_ERROR; /* the session already ended: refuse, TCP resets */
	if (c->connecting) {
		c->connecting = false;
		th->nconnecting--;
	}
	lg_session_connected(c->s, th->now_us);
	after_session(th, c);
	return PA_OK;
}

static void
lg_data(struct dp_worker *dw, struct tcb *tcb)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);
	uint32_t old_win = tcb->rcv_adv - tcb->rcv_nxt;
	struct rte_mbuf *m;

	/* The session always takes everything: free each mbuf once it has read it. */
	while ((m = tcb->rxq_head) != NULL) {
		if (c->s != NULL && !lg_session_closed(c->s))
			lg_session_input(c->s, rte_pktmbuf_mtod(m, const uint8_t *),
			                 rte_pktmbuf_data_len(m), th->now_us);
		tcp_rxq_consume(tcb, rte_pktmbuf_data_len(m));
	}
	/* A window that was nearly shut is open again: say so (RFC 9293 3.8.6.2.2). */
	if (old_win < 2u * tcb->mss)
		tcb->ack_now = true;
	after_session(th, c);
}

static void
lg_acked(struct dp_worker *dw, struct tcb *tcb, uint32_t n)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);

	if (n >= c->slen) {
		sbuf_release(th, c);
	} else {
		/* Small copies: the buffer holds at most one window of un-ACKed bytes. */
		memmove(c->sbuf, c->sbuf + n, c->slen - n);
		c->slen -= n;
	}
	want_output(th, c);
}

/*
 * The send buffer from SND.UNA on.  New bytes are taken from the session
 * only as far as the usable window reaches (RFC 9293 3.8.6, RFC 5681), and
 * only when nothing is being retransmitted, so what is consumed from the
 * session is what tcp_output() sends now.
 */
static const uint8_t *
lg_sendbuf(struct dp_worker *dw, struct tcb *tcb, uint32_t *len)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);
	uint32_t inflight = tcb->snd_max - tcb->snd_una;

	if (c->s != NULL && !c->sess_done && tcb->snd_nxt == tcb->snd_max && !tcb->fin_queued &&
	    inflight >= c->slen) {
		uint32_t win = RTE_MIN(tcb->snd_wnd, tcb->cwnd);
		uint32_t room = win > inflight ? win - inflight : 0;

		/* A zero window is probed only with something to send (RFC 9293 3.8.6.1). */
		if (room == 0 && tcb->snd_wnd == 0 && inflight == 0)
			room = 1;
		room = RTE_MIN(room, LG_SBUF_SIZE - c->slen);
		while (room > 0) {
			const uint8_t *p;
			size_t n = lg_session_output(c->s, &p), take;

			if (n == 0)
				break;
			if (c->sbuf == NULL) {
				if (th->nbuf_free == 0) {
					/* Every buffer is in flight: wait for one (sbuf_release).
					 */
					if (!c->on_wait) {
						c->on_wait = true;
						TAILQ_INSERT_TAIL(&th->buf_wait, c, wait_link);
					}
					break;
				}
				c->sbuf = th->buf_free[--th->nbuf_free];
			}
			take = RTE_MIN(n, (size_t)room);
			memcpy(c->sbuf + c->slen, p, take);
			c->slen += (uint32_t)take;
			room -= (uint32_t)take;
			lg_session_consume(c->s, take, th->now_us);
		}
	}
	*len = c->slen;
	return c->sbuf;
}

static void
lg_peer_fin(struct dp_worker *dw, struct tcb *tcb)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);

	if (c->s != NULL)
		lg_session_eof(c->s, th->now_us);
	else if (!tcb->fin_queued) {
		tcb->fin_queued = true;
		tcb->snd_end = tcb->snd_una + c->slen;
	}
	after_session(th, c);
}

static void
lg_closed(struct dp_worker *dw, struct tcb *tcb, bool reset)
{
	struct lg_dthread *th = dw->app_ctx;
	struct lg_dconn *c = dconn_of(tcb);
	bool established = tcb->err != TCP_ERR_REFUSED && tcb->err != TCP_ERR_TIMEOUT &&
	                   tcb->err != TCP_ERR_UNREACHABLE;

	c->tcp_live = false;
	out_remove(th, c);
	if (c->s != NULL) {
		if (!lg_session_closed(c->s))
			lg_session_abort(c->s, reset ? err_of(tcb, established) : LG_ERR_RESET,
			                 th->now_us);
		if (!established)
			c->retry_us = th->now_us + LG_RECONNECT_US;
	}
	slot_reset(th, c);
}

static void
lg_want_output(struct dp_worker *dw, struct tcb *tcb)
{
	want_output(dw->app_ctx, dconn_of(tcb));
}

static const struct tcp_app_ops lg_ops = {
    .conn_alloc = lg_conn_alloc,
    .established = lg_established,
    .data = lg_data,
    .acked = lg_acked,
    .sendbuf = lg_sendbuf,
    .peer_fin = lg_peer_fin,
    .closed = lg_closed,
    .want_output = lg_want_output,
};

/* ---- the load lcore ---- */

static void
start_conn(struct lg_dthread *th, struct lg_dconn *c)
{
	struct lg_workload w;

	TAILQ_REMOVE(&th->free_slots, c, slot_link);
	c->on_slot = false;
	th->nbusy++;
	lg_thread_workload(&th->t, &w);
	c->s = lg_session_new(&w, lg_stats_event, th->t.stats, th->now_us);
	if (c->s == NULL) {
		c->retry_us = th->now_us + LG_RECONNECT_US;
		slot_reset(th, c);
		return;
	}
	th->nsessions++;
	if ((th->v6 ? tcp_connect6(th->dw, &c->tcb, th->raddr.a6, th->rport)
	            : tcp_connect(th->dw, &c->tcb, th->raddr.v4, th->rport)) != PA_OK) {
		/* No route, or every local port of this worker is taken. */
		lg_session_abort(c->s, LG_ERR_CONNECT, th->now_us);
		c->retry_us = th->now_us + LG_RECONNECT_US;
		slot_reset(th, c);
		return;
	}
	c->tcp_live = true;
	c->connecting = true;
	th->nconnecting++;
}

static void
flush_output(struct lg_dthread *th)
{
	struct lg_dconn *c;

	while ((c = TAILQ_FIRST(&th->out)) != NULL) {
		TAILQ_REMOVE(&th->out, c, out_link);
		c->in_out = false;
		if (c->tcp_live)
			tcp_output(th->dw, &c->tcb);
	}
}

static void abort_all_tcp(struct lg_dthread *th);

/* LG_DRAIN: QUIT everywhere; LG_ABORT: abort every session and connection now. */
static void
apply_stop(struct lg_dthread *th, int state)
{
	if (state == LG_DRAIN && !th->draining) {
		th->draining = true;
		for (unsigned i = 0; i < th->nconns; i++) {
			struct lg_dconn *c = &th->conns[i];

			if (c->s != NULL) {
				lg_session_quit(c->s, th->now_us);
				after_session(th, c);
			}
		}
	}
	if (state == LG_ABORT && !th->aborted) {
		th->aborted = true;
		for (unsigned i = 0; i < th->nconns; i++) {
			struct lg_dconn *c = &th->conns[i];

			if (c->s != NULL)
				lg_session_abort(c->s, LG_ERR_TIMEOUT, th->now_us);
		}
		abort_all_tcp(th);
	}
}

/* Reply timeouts: every session, every LG_TICK_US. */
static void
tick_sessions(struct lg_dthread *th)
{
	for (unsigned i = 0; i < th->nconns; i++) {
		struct lg_dconn *c = &th->conns[i];

		if (c->s == NULL)
			continue;
		lg_session_tick(c->s, th->now_us);
		after_session(th, c);
	}
}

/* Open loop: a token is due; the oldest waiting session takes it (bounded by the queue). */
static void
kick_starved(struct lg_dthread *th)
{
	unsigned n = 0, max = th->nconns;
	struct lg_dconn *c;

	while (n++ < max && (c = TAILQ_FIRST(&th->starved)) != NULL) {
		uint64_t due = lg_source_due_us(&th->t.src);

		if (due == 0 || due > th->now_us)
			break;
		TAILQ_REMOVE(&th->starved, c, slot_link);
		c->on_starved = false;
		lg_session_kick(c->s, th->now_us);
		after_session(th, c);
		if (c->on_starved)
			break; /* the source said wait again: no token after all */
	}
}

/*
 * Free slots connect again while the source has work, oldest first, at most
 * LG_CONNECT_BURST a loop and LG_CONNECTING_MAX handshakes in flight:
 * 100,000 idle connections must not leave as one burst of SYNs through a TX
 * ring of 1024 descriptors (nor draw as many SYN-ACKs at once).
 */
static void
refill(struct lg_dthread *th, int state)
{
	struct lg_dconn *c;
	unsigned n = 0;

	if (state != LG_RUN)
		return;
	while (n++ < LG_CONNECT_BURST && th->nconnecting < LG_CONNECTING_MAX &&
	       (c = TAILQ_FIRST(&th->free_slots)) != NULL && th->now_us >= c->retry_us &&
	       lg_source_more(&th->t.src))
		start_conn(th, c);
}

/* After the last session: TCP closing handshakes get LG_LINGER_US, then RST. */
static void
abort_all_tcp(struct lg_dthread *th)
{
	for (unsigned i = 0; i < th->nconns; i++) {
		struct lg_dconn *c = &th->conns[i];

		if (c->tcp_live)
			tcp_abort(th->dw, &c->tcb);
		c->tcp_live = false;
		slot_reset(th, c);
	}
}

static int
load_lcore(void *arg)
{
	struct lg_dthread *th = arg;
	struct dp_worker *dw = th->dw;
	uint64_t next_tick = 0, linger_until = 0;

	lg_pin_thread(th->t.run->opt, th->t.idx);
	for (;;) {
		int state = lg_run_state(th->t.run);
		bool more;

		dp_worker_clock(dw);
		th->now_us = lg_now_us();
		apply_stop(th, state);
		if (th->aborted)
			break;
		net_eth_poll(dw);
		flush_output(th);
		if (!TAILQ_EMPTY(&th->starved))
			kick_starved(th);
		if (th->now_us >= next_tick) {
			tick_sessions(th);
			next_tick = th->now_us + LG_TICK_US;
		}
		refill(th, state);
		dp_worker_timers(dw);
		flush_output(th);
		net_eth_tx_flush(dw);
		more = state == LG_RUN && lg_source_more(&th->t.src);
		if (th->nbusy == 0 && !more)
			break;
		/* Only TCP closing handshakes left, and no new work: bounded. */
		if (!more && th->nsessions == 0) {
			if (linger_until == 0)
				linger_until = th->now_us + LG_LINGER_US;
			else if (th->now_us >= linger_until)
				abort_all_tcp(th);
		}
	}
	flush_output(th);
	net_eth_tx_flush(dw);
	lg_thread_done(&th->t);
	return 0;
}

/* ---- set-up on the main lcore ---- */

/* ADDR[/PREFIX] of family af (AF_INET: 4 octets, AF_INET6: 16) into addr; no prefix: all of it. */
static int
parse_prefix(const char *s, int af, void *addr, unsigned *prefix)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	char *end;
	unsigned long p = af == AF_INET6 ? 128 : 32, max = p;

	if (s == NULL || strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash != NULL) {
		*slash = '\0';
		p = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || end == slash + 1 || p > max)
			return -1;
	}
	if (inet_pton(af, buf, addr) != 1)
		return -1;
	*prefix = (unsigned)p;
	return 0;
}

static int
start_eal(const struct lg_options *opt)
{
	static char lcores[64], prefix[64], extra[1024];
	char *argv[LG_EAL_ARGS_MAX], *save = NULL;
	int argc = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *eal = opt->eal != NULL ? opt->eal : "";

	if (ncpu < 1)
		ncpu = 1;
	if (strlen(eal) >= sizeof(extra)) {
		fprintf(stderr, "pigeon-loadgen: --eal: too long\n");
		return -1;
	}
	argv[argc++] = "pigeon-loadgen";
	/* One lcore per load thread plus the main one, floating as pigeond's (--cpu pins). */
	if (strstr(eal, "--lcores") == NULL && strstr(eal, "-l ") == NULL) {
		snprintf(lcores, sizeof(lcores), "--lcores=(0-%u)@(0-%ld)", opt->threads, ncpu - 1);
		argv[argc++] = lcores;
	}
	/* Our own runtime files, so a loadgen and a pigeond on one machine never meet. */
	if (strstr(eal, "--file-prefix") == NULL && strstr(eal, "--in-memory") == NULL) {
		snprintf(prefix, sizeof(prefix), "--file-prefix=pigeon-loadgen-%d", (int)getpid());
		argv[argc++] = prefix;
		argv[argc++] = "--no-shconf";
	}
	argv[argc++] = "--log-level=lib.eal:warning";
	snprintf(extra, sizeof(extra), "%s", eal);
	for (char *tok = strtok_r(extra, " \t", &save); tok != NULL && argc < LG_EAL_ARGS_MAX - 1;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	if (rte_eal_init(argc, argv) < 0) {
		fprintf(stderr, "pigeon-loadgen: rte_eal_init() failed: %s\n",
		        rte_strerror(rte_errno));
		return -1;
	}
	if (rte_lcore_count() < opt->threads + 1) {
		fprintf(stderr, "pigeon-loadgen: EAL gave %u lcores, %u threads need %u\n",
		        rte_lcore_count(), opt->threads, opt->threads + 1);
		eal_stop();
		return -1;
	}
	return 0;
}

/* The port's link (a memif peer, a TAP's kernel side) must be up before the first SYN. */
static int
wait_link(uint16_t port)
{
	for (int i = 0; i < LG_LINK_WAIT_S * 10; i++) {
		struct rte_eth_link link;

		if (rte_eth_link_get_nowait(port, &link) == 0 &&
		    link.link_status == RTE_ETH_LINK_UP)
			return 0;
		usleep(100000);
	}
	fprintf(stderr, "pigeon-loadgen: port %u: link still down after %d s\n", port,
	        LG_LINK_WAIT_S);
	return -1;
}

/*
 * DAD for --ip6 (net_nd.c, run by worker 0's timers): worker 0's stack is
 * polled here on the main lcore until the address is usable, before any load
 * thread starts, so every SYN leaves from a usable address and the run's
 * clock does not count the wait.
 */
static int
wait_dad(struct dp_worker *dw, const uint8_t *a)
{
	const int ai = net_ipv6_addr_index(dw->sh, a);
	const uint64_t end = lg_now_us() + LG_DAD_WAIT_S * 1000000ull;

	while (ai >= 0 && lg_now_us() < end) {
		uint8_t st = __atomic_load_n(&dw->sh->ip6[ai].state, __ATOMIC_ACQUIRE);

		if (st == DP_ADDR6_PREFERRED)
			return 0;
		if (st == DP_ADDR6_DUPLICATE) {
			fprintf(stderr, "pigeon-loadgen: --ip6: another node on the link has the "
			                "address (DAD)\n");
			return -1;
		}
		dp_worker_clock(dw);
		net_eth_poll(dw);
		dp_worker_timers(dw);
		net_eth_tx_flush(dw);
		usleep(1000);
	}
	fprintf(stderr, "pigeon-loadgen: --ip6: DAD did not finish in %d s\n", LG_DAD_WAIT_S);
	return -1;
}

static int
thread_setup(struct lg_dthread *th, struct lg_run *run, struct dp_shared *sh, unsigned idx)
{
	th->nconns = lg_thread_connections(run, idx);
	th->v6 = run->opt->target.sa.sa_family == AF_INET6;
	if (th->v6) {
		th->raddr = tcp_addr_v6(run->opt->target.sin6.sin6_addr.s6_addr);
		th->rport = run->opt->target.sin6.sin6_port;
	} else {
		th->raddr = tcp_addr_v4(run->opt->target.sin.sin_addr.s_addr);
		th->rport = run->opt->target.sin.sin_port;
	}
	TAILQ_INIT(&th->out);
	TAILQ_INIT(&th->free_slots);
	TAILQ_INIT(&th->starved);
	TAILQ_INIT(&th->buf_wait);
	/* calloc: slots and buffers never used are never touched, so cost no memory. */
	th->conns = calloc(th->nconns ? th->nconns : 1, sizeof(*th->conns));
	th->nbufs = RTE_MAX(1u, RTE_MIN(th->nconns, LG_SBUF_MAX));
	th->bufs = calloc(th->nbufs, LG_SBUF_SIZE);
	th->buf_free = calloc(th->nbufs, sizeof(*th->buf_free));
	if (th->conns == NULL || th->bufs == NULL || th->buf_free == NULL) {
		fprintf(stderr, "pigeon-loadgen: out of memory for %u connections\n", th->nconns);
		return -1;
	}
	/* The stack top is the first buffer, so a few busy connections touch few pages. */
	for (unsigned i = 0; i < th->nbufs; i++)
		th->buf_free[th->nbuf_free++] =
		    th->bufs + (size_t)(th->nbufs - 1 - i) * LG_SBUF_SIZE;
	for (unsigned i = 0; i < th->nconns; i++) {
		th->conns[i].th = th;
		th->conns[i].on_slot = true;
		TAILQ_INSERT_TAIL(&th->free_slots, &th->conns[i], slot_link);
	}
	lg_thread_init(&th->t, run, idx);
	th->dw = dp_worker_create(sh, idx, &lg_ops, th);
	return th->dw != NULL ? 0 : -1;
}

static void
print_counters(const struct lg_dthread *th)
{
	const struct dp_counters *c = &th->dw->c;
	char drops[512] = "";
	size_t n = 0;

	for (unsigned i = 0; i < DP_DROP_COUNT && n < sizeof(drops); i++)
		if (c->drops[i] != 0)
			n += (size_t)snprintf(drops + n, sizeof(drops) - n, " %s=%llu",
			                      dp_drop_name((enum dp_drop)i),
			                      (unsigned long long)c->drops[i]);
	fprintf(stderr,
	        "pigeon-loadgen: dpdk thread %u: rx=%llu tx=%llu active_opens=%llu "
	        "connects_failed=%llu syn_rtx=%llu retransmits=%llu rto=%llu fast_rtx=%llu "
	        "sack_skipped=%llu resets=%llu steered_out=%llu steered_in=%llu drops:%s\n",
	        th->t.idx, (unsigned long long)c->rx_pkts, (unsigned long long)c->tx_pkts,
	        (unsigned long long)c->active_opens, (unsigned long long)c->connects_failed,
	        (unsigned long long)c->syn_retransmits, (unsigned long long)c->retransmits,
	        (unsigned long long)c->rto_expiries, (unsigned long long)c->fast_retransmits,
	        (unsigned long long)c->sack_rtx_skipped, (unsigned long long)c->conns_reset,
	        (unsigned long long)c->steered_out, (unsigned long long)c->steered_in,
	        drops[0] ? drops : " none");
}

/*
 * --ip6 and the --ip6-count - 1 addresses after it (the last 64 bits
 * counted up), each a global or unique local address in --ip6's prefix.
 */
static int
ip6_addresses(const struct lg_options *opt, struct dp_port_conf *pc)
{
	unsigned prefix;
	uint64_t low, last;

	if (parse_prefix(opt->ip6, AF_INET6, pc->ip6[0], &prefix) != 0 || prefix == 0 ||
	    pc->ip6[0][0] == 0xff || net_ipv6_is_link_local(pc->ip6[0]) ||
	    net_ipv6_is_unspecified(pc->ip6[0]) || net_ipv6_is_loopback(pc->ip6[0]) ||
	    net_ipv6_is_v4mapped(pc->ip6[0])) {
		fprintf(stderr,
		        "pigeon-loadgen: --ip6: want a global or unique local "
		        "ADDR/PREFIX (e.g. 2001:db8::1/64): %s\n",
		        opt->ip6);
		return -1;
	}
	memcpy(&low, pc->ip6[0] + 8, 8);
	low = rte_be_to_cpu_64(low);
	/* Within the prefix: no wrap, and the bits counted all below it. */
	last = low + (opt->ip6_count - 1);
	if (last < low || (prefix > 64 && ((low ^ last) >> (128 - prefix)) != 0)) {
		fprintf(stderr, "pigeon-loadgen: --ip6-count %u from %s: not all in the prefix\n",
		        opt->ip6_count, opt->ip6);
		return -1;
	}
	for (unsigned i = 0; i < opt->ip6_count; i++) {
		uint64_t v = rte_cpu_to_be_64(low + i);

		memcpy(pc->ip6[i], pc->ip6[0], 8);
		memcpy(pc->ip6[i] + 8, &v, 8);
		pc->prefix6[i] = (uint8_t)prefix;
	}
	pc->nip6 = opt->ip6_count;
	pc->dad_transmits = 1; /* RFC 4862 5.1's default DupAddrDetectTransmits */
	return 0;
}

/* One of our IPv6 addresses (--ip6, --ip6-count)? */
static bool
ip6_ours(const struct dp_port_conf *pc, const uint8_t *a)
{
	for (unsigned i = 0; i < pc->nip6; i++)
		if (net_ipv6_addr_eq(pc->ip6[i], a))
			return true;
	return false;
}

int
lg_dpdk_run(struct lg_run *run)
{
	const struct lg_options *opt = run->opt;
	struct dp_port_conf pc = {
	    .nworkers = opt->threads,
	    .msl_ms = 30000,
	    .syn_backlog = 16, /* no listener: the table's minimum */
	    .conn_mbufs = 64,
	    .mbufs = LG_MBUFS,
	};
	struct lg_dthread *ths = NULL;
	struct dp_shared *sh;
	unsigned lcore, idx = 0, prefix, gwprefix, max_per = 0;
	int rc = -1;

	/* The stack logs through core/log.c: under our own name, and quiet with --quiet. */
	pa_log_init("pigeon-loadgen");
	if (opt->quiet)
		pa_log_set_level(PA_LOG_WARNING);
	/* Without --ip (an IPv6 target) the stack has no IPv4 address: pc.ip 0. */
	if (opt->ip != NULL &&
	    (parse_prefix(opt->ip, AF_INET, &pc.ip, &prefix) != 0 || prefix == 0 || pc.ip == 0)) {
		fprintf(stderr,
		        "pigeon-loadgen: --ip: want ADDR/PREFIX (e.g. --ip 198.18.0.1/24): "
		        "%s\n",
		        opt->ip);
		return -1;
	}
	pc.prefix = opt->ip != NULL ? prefix : 0;
	/* dp_port_open() checks they all fit the prefix; each adds ~28k ports per server port. */
	pc.ip_count = opt->ip_count;
	if (opt->ip6 != NULL && ip6_addresses(opt, &pc) != 0)
		return -1;
	/* Our stack would answer ARP (ND) for the target itself and never reach it. */
	if ((opt->target.sa.sa_family == AF_INET && pc.ip != 0 &&
	     ntohl(opt->target.sin.sin_addr.s_addr) - ntohl(pc.ip) < pc.ip_count) ||
	    (opt->target.sa.sa_family == AF_INET6 &&
	     ip6_ours(&pc, opt->target.sin6.sin6_addr.s6_addr))) {
		fprintf(stderr, "pigeon-loadgen: --target is one of our own addresses (--ip, "
		                "--ip-count, --ip6, --ip6-count)\n");
		return -1;
	}
	if (opt->gateway != NULL &&
	    (parse_prefix(opt->gateway, AF_INET, &pc.gateway, &gwprefix) != 0 || gwprefix != 32)) {
		fprintf(stderr, "pigeon-loadgen: --gateway: not an IPv4 address: %s\n",
		        opt->gateway);
		return -1;
	}
	if (opt->gateway6 != NULL &&
	    (opt->ip6 == NULL ||
	     parse_prefix(opt->gateway6, AF_INET6, pc.gateway6, &gwprefix) != 0 ||
	     gwprefix != 128)) {
		fprintf(stderr, "pigeon-loadgen: --gateway: not an IPv6 address, or no --ip6: %s\n",
		        opt->gateway6);
		return -1;
	}
	if (opt->nsources > 0) {
		fprintf(stderr, "pigeon-loadgen: --source is for --kernel; the DPDK stack's "
		                "addresses are --ip and --ip-count\n");
		return -1;
	}
	if (opt->threads == 0 || opt->threads > DP_MAX_WORKERS) {
		fprintf(stderr, "pigeon-loadgen: --threads: 1 to %u with DPDK\n", DP_MAX_WORKERS);
		return -1;
	}
	for (unsigned i = 0; i < opt->threads; i++)
		max_per = RTE_MAX(max_per, lg_thread_connections(run, i));
	/* TCB hash and TIME_WAIT entries: every slot, and as many closing behind it. */
	pc.max_conns = RTE_MAX(2 * max_per + 64, 64u);
	if (start_eal(opt) != 0)
		return -1;
	sh = dp_port_open(&pc);
	if (sh == NULL || wait_link(sh->port) != 0)
		goto out;
	ths = rte_zmalloc("lg_dthreads", sizeof(*ths) * opt->threads, RTE_CACHE_LINE_SIZE);
	if (ths == NULL)
		goto out;
	for (unsigned i = 0; i < opt->threads; i++)
		if (thread_setup(&ths[i], run, sh, i) != 0)
			goto out;
	for (unsigned i = 0; i < pc.nip6; i++)
		if (wait_dad(ths[0].dw, pc.ip6[i]) != 0)
			goto out;
	/* The run starts with the load: EAL, the link and DAD were set-up, not load. */
	run->start_us = lg_now_us();
	RTE_LCORE_FOREACH_WORKER(lcore)
	{
		if (idx == opt->threads)
			break;
		ths[idx].lcore = lcore;
		if (rte_eal_remote_launch(load_lcore, &ths[idx], lcore) != 0) {
			fprintf(stderr, "pigeon-loadgen: cannot launch lcore %u\n", lcore);
			__atomic_store_n(&run->shared.stop, LG_ABORT, __ATOMIC_RELEASE);
			break;
		}
		idx++;
	}
	/* Threads never launched count as done, so lg_monitor() returns. */
	for (unsigned i = idx; i < opt->threads; i++)
		lg_thread_done(&ths[i].t);
	lg_monitor(run);
	rte_eal_mp_wait_lcore();
	for (unsigned i = 0; i < opt->threads; i++)
		if (ths[i].dw != NULL && !opt->quiet)
			print_counters(&ths[i]);
	rc = 0;
out:
	if (ths != NULL) {
		for (unsigned i = 0; i < opt->threads; i++) {
			if (ths[i].dw != NULL)
				dp_worker_destroy(ths[i].dw);
			free(ths[i].conns);
			free(ths[i].bufs);
			free(ths[i].buf_free);
		}
		rte_free(ths);
	}
	dp_port_close(sh);
	eal_stop(); /* rte_eal_cleanup(), and no runtime files left behind */
	return rc;
}
