/*
 * dpdk_backend.c: the poll-mode worker loop, and TCP bound to the SMTP engine.
 *
 * Each worker lcore polls its RX queue and its steering ring in bursts of
 * DP_BURST, runs the stack, runs tcp_output() once per burst for every
 * connection that has something to send (so an ACK rides with the reply),
 * polls the spool's completions, advances its timer wheel and flushes its TX
 * burst.  Nothing in the loop blocks or makes a system call in steady state
 * (a PMD may: net_tap reads a file descriptor), except the optional idle
 * sleep of dpdk.idle_sleep_us for machines shared with other work.
 *
 * Binding to the engine (the same contract as kernel_backend.c): ingest_open
 * once the handshake completes; ingest_input with in-order bytes straight
 * from the mbufs; ingest_output() (the engine's replies, or TLS ciphertext after
 * STARTTLS) is the TCP send buffer, released (ingest_output_consumed) only as
 * it is acknowledged; the FIN follows
 * the last reply once the engine closes or the peer has closed and all its
 * input is consumed; ingest_close when TCP is done with the connection, and a
 * connection whose message is with the spool is freed only by the resume hook.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/dpdk_backend.h"
#include "dataplane/ingest.h"
#include "dataplane/tcp.h"
#include "dataplane/worker.h"

#define IDLE_POLLS_BEFORE_SLEEP 256

struct dp_conn {
	struct tcb tcb;
	struct ingest_conn ingest;
	struct dp_worker *dw;
	struct tcp_timer app_timer; /* the engine's command/data timeout */
	uint32_t progress;          /* ingest_progress() when app_timer was armed */
	unsigned timeout_ms;        /* ingest_timeout_ms() then */
	bool lingering;             /* app_timer bounds the wait for the FIN to be acknowledged */
	TAILQ_ENTRY(dp_conn) out_link;
	union {
		TAILQ_ENTRY(dp_conn) live_link;
		SLIST_ENTRY(dp_conn) free_link;
	};
	bool in_out;      /* on dw->out_pending */
	bool app_open;    /* ingest_open() done, ingest_close() not yet */
	bool held;        /* ingest_close() said the spool still holds its message */
	bool tcp_gone;    /* TCP is done with the TCB (closed or in TIME_WAIT) */
	bool app_closing; /* the engine ended the session */
};

static struct dp_conn *
conn_of(struct tcb *tcb)
{
	return pa_container_of(tcb, struct dp_conn, tcb);
}

static void
conn_free(struct dp_worker *dw, struct dp_conn *c)
{
	if (c->in_out) {
		TAILQ_REMOVE(&dw->out_pending, c, out_link);
		c->in_out = false;
	}
	SLIST_INSERT_HEAD(&dw->conn_free, c, free_link);
	dw->nconns--;
}

/* The engine's side is over: close the session (the spool may keep it a while). */
static void
app_finish(struct dp_worker *dw, struct dp_conn *c)
{
	if (!c->app_open)
		return;
	c->app_open = false;
	tcp_timer_cancel(dw->wheel, &c->app_timer);
	TAILQ_REMOVE(&dw->live, c, live_link);
	if (!ingest_close(&c->ingest))
		c->held = true;
}

static void
maybe_free(struct dp_worker *dw, struct dp_conn *c)
{
	if (c->tcp_gone && !c->app_open && !c->held)
		conn_free(dw, c);
}

static void app_timeout(struct tcp_timer *t, void *arg);

/* Runs the session as far as it goes without waiting; never frees the connection. */
static void
conn_process(struct dp_worker *dw, struct dp_conn *c)
{
	struct tcb *tcb = &c->tcb;
	uint32_t old_win = tcb->rcv_adv - tcb->rcv_nxt;
	bool consumed_any = false;

	if (!c->app_open || c->tcp_gone)
		return;
	while (!c->ingest.storing && !c->app_closing) {
		struct rte_mbuf *m = tcb->rxq_head;
		size_t len = m != NULL ? rte_pktmbuf_data_len(m) : 0, consumed;
		enum ingest_status st;

		/* Input the TLS filter holds goes on even when no new segment came. */
		if (m == NULL && !ingest_input_pending(&c->ingest))
			break;
		st = ingest_input(&c->ingest,
		                  m != NULL ? rte_pktmbuf_mtod(m, const uint8_t *) : NULL, len,
		                  &consumed);
		if (consumed > 0) {
			consumed_any = true;
			tcp_rxq_consume(tcb, (uint32_t)consumed);
		}
		if (st == INGEST_CLOSE) {
			c->app_closing = true;
			break;
		}
		if (st == INGEST_STORING || consumed == 0)
			break; /* the spool has it, or the engine holds back for its output */
	}
	if (ingest_closing(&c->ingest))
		c->app_closing = true;
	/* The client closed and everything it sent is consumed: close our side too. */
	if (tcb->state == TCP_CLOSE_WAIT && tcb->rxq_head == NULL && !c->ingest.storing)
		c->app_closing = true;
	if (c->app_closing && !c->ingest.storing && !tcb->fin_queued) {
		size_t len;

		ingest_output(&c->ingest, &len);
		tcb->fin_queued = true;
		tcb->snd_end = tcb->snd_una + (uint32_t)len; /* the stream ends here */
	}
	/* Receiver window update once the engine made room (RFC 9293 3.8.6.2.2). */
	if (consumed_any && old_win < 2u * tcb->mss)
		tcb->ack_now = true;
	tcp_app_want_output(dw, tcb);
	if (!c->ingest.storing && !tcb->fin_queued) {
		unsigned ms = ingest_timeout_ms(&c->ingest);
		uint32_t progress = ingest_progress(&c->ingest);

		/* Re-armed only on progress, never on bytes alone: slowloris meets the timeout. */
		if (!tcp_timer_armed(&c->app_timer) || progress != c->progress ||
		    ms != c->timeout_ms) {
			c->progress = progress;
			c->timeout_ms = ms;
			tcp_timer_arm(dw->wheel, &c->app_timer, ms, app_timeout);
		}
	} else if (!c->ingest.storing) {
		/*
		 * The FIN waits behind the last replies.  A client that never reads
		 * them would hold the connection, and its share of limits.*, for
		 * ever: one more timeout, then app_timeout() resets it.
		 */
		if (!c->lingering) {
			c->lingering = true;
			tcp_timer_arm(dw->wheel, &c->app_timer, ingest_timeout_ms(&c->ingest),
			              app_timeout);
		}
	} else {
		tcp_timer_cancel(dw->wheel, &c->app_timer);
	}
}

static void
app_timeout(struct tcp_timer *t, void *arg)
{
	struct dp_worker *dw = arg;
	struct dp_conn *c = pa_container_of(t, struct dp_conn, app_timer);

	if (!c->app_open || c->ingest.storing || c->tcp_gone)
		return;
	if (c->tcb.fin_queued) {
		struct tcb *tcb = &c->tcb;

		/*
		 * Replies and FIN unacknowledged for a whole timeout: give up as
		 * tcp_rtx_timeout() does, with a RST (RFC 9293 3.10.5 ABORT).
		 */
		tcp_send_raw(dw, &tcb->key, tcb->snd_nxt, tcb->rcv_nxt,
		             RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG, 0, NULL, false, 0);
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, true);
		return;
	}
	ingest_timeout(&c->ingest);
	conn_process(dw, c);
}

/* ---- TCP's application hooks (struct tcp_app_ops, tcp.h) ---- */

static struct tcb *
app_conn_alloc(struct dp_worker *dw)
{
	struct dp_conn *c = SLIST_FIRST(&dw->conn_free);

	if (c != NULL)
		SLIST_REMOVE_HEAD(&dw->conn_free, free_link);
	else if (dw->conns_used < dw->sh->max_conns)
		c = &dw->conns[dw->conns_used++];
	else
		return NULL;
	memset(c, 0, sizeof(*c));
	c->dw = dw;
	dw->nconns++;
	return &c->tcb;
}

static int
app_established(struct dp_worker *dw, struct tcb *tcb)
{
	struct dp_conn *c = conn_of(tcb);
	char addr[INET6_ADDRSTRLEN];

	/* The client as text, either family: ingest's limits parse it back (per /64 for IPv6). */
	if (tcp_key_v6(&tcb->key))
		inet_ntop(AF_INET6, tcb->key.raddr.a6, addr, sizeof(addr));
	else
		inet_ntop(AF_INET, &tcb->key.raddr.v4, addr, sizeof(addr));
	if (ingest_open(&c->ingest, dw->worker, addr) != PA_OK) {
		pa_log_err("out of memory for a connection from %s", addr);
		return PA_ERROR;
	}
	c->app_open = true;
	TAILQ_INSERT_TAIL(&dw->live, c, live_link);
	conn_process(dw, c);
	return PA_OK;
}

static void
app_data(struct dp_worker *dw, struct tcb *tcb)
{
	conn_process(dw, conn_of(tcb));
}

static void
app_peer_fin(struct dp_worker *dw, struct tcb *tcb)
{
	conn_process(dw, conn_of(tcb));
}

static void
app_acked(struct dp_worker *dw, struct tcb *tcb, uint32_t n)
{
	struct dp_conn *c = conn_of(tcb);

	if (!c->app_open)
		return;
	ingest_output_consumed(&c->ingest, n);
	/*
	 * Output drained: input the engine held back may go on now, whether it
	 * is still in the receive queue or already in the TLS filter's queues
	 * (then no segment may ever come again to run it).
	 */
	if (tcb->rxq_head != NULL || ingest_input_pending(&c->ingest))
		conn_process(dw, c);
}

static const uint8_t *
app_sendbuf(struct dp_worker *dw, struct tcb *tcb, uint32_t *len)
{
	struct dp_conn *c = conn_of(tcb);

	(void)dw;
	size_t n = 0;
	const uint8_t *p;

	if (!c->app_open) {
		*len = 0;
		return NULL;
	}
	p = ingest_output(&c->ingest, &n);
	*len = (uint32_t)n;
	return p;
}

static void
app_closed(struct dp_worker *dw, struct tcb *tcb, bool reset)
{
	struct dp_conn *c = conn_of(tcb);

	(void)reset;
	c->tcp_gone = true;
	if (c->in_out) {
		TAILQ_REMOVE(&dw->out_pending, c, out_link);
		c->in_out = false;
	}
	app_finish(dw, c);
	maybe_free(dw, c);
}

static void
app_want_output(struct dp_worker *dw, struct tcb *tcb)
{
	struct dp_conn *c = conn_of(tcb);

	if (c->in_out || c->tcp_gone)
		return;
	c->in_out = true;
	TAILQ_INSERT_TAIL(&dw->out_pending, c, out_link);
}

/* pigeond's side of TCP: passive opens only, each bound to an SMTP session. */
static const struct tcp_app_ops ingest_ops = {
    .conn_alloc = app_conn_alloc,
    .established = app_established,
    .data = app_data,
    .acked = app_acked,
    .sendbuf = app_sendbuf,
    .peer_fin = app_peer_fin,
    .closed = app_closed,
    .want_output = app_want_output,
};

/* ---- the loop ---- */

static void
flush_output(struct dp_worker *dw)
{
	struct dp_conn *c;

	while ((c = TAILQ_FIRST(&dw->out_pending)) != NULL) {
		TAILQ_REMOVE(&dw->out_pending, c, out_link);
		c->in_out = false;
		tcp_output(dw, &c->tcb);
		/* Everything we sent, FIN included, is acknowledged: the session may go. */
		if (c->app_open && c->tcb.fin_sent && c->tcb.snd_una == c->tcb.snd_max)
			app_finish(dw, c);
	}
}

/* The spool answered a message: send the reply and carry on reading. */
static void
dpdk_resume(struct ingest_conn *ingest)
{
	struct dp_conn *c = pa_container_of(ingest, struct dp_conn, ingest);
	struct dp_worker *dw = c->dw;

	if (ingest->transport_gone) {
		ingest_release(ingest);
		c->held = false;
		maybe_free(dw, c);
		return;
	}
	conn_process(dw, c);
}

int
dpdk_backend_init(struct pa_worker *worker, const struct pa_config *config)
{
	struct dp_shared *sh = dpdk_shared();
	struct dp_worker *dw;

	(void)config;
	if (sh == NULL)
		return PA_ERROR;
	dw = dp_worker_create(sh, worker->id, &ingest_ops, NULL);
	if (dw == NULL)
		return PA_ERROR;
	dw->worker = worker;
	/* calloc: pages of connections never used are never touched (idle capacity is free). */
	dw->conns = calloc(sh->max_conns, sizeof(*dw->conns));
	if (dw->conns == NULL) {
		pa_log_err("dpdk: out of memory for worker %u (dpdk.max_conns=%u)", worker->id,
		           sh->max_conns);
		return PA_ERROR;
	}
	if (ingest_attach(worker, -1, false) != PA_OK)
		return PA_ERROR;
	worker->backend = dw;
	worker->resume = dpdk_resume;
	return PA_OK;
}

int
dpdk_backend_counters(unsigned worker, struct dp_counters *out)
{
	struct dp_shared *sh = dpdk_shared();

	if (sh == NULL || worker >= sh->nworkers || sh->workers[worker] == NULL)
		return PA_ERROR;
	*out = sh->workers[worker]->c;
	return PA_OK;
}

uint64_t
dpdk_backend_time_wait(unsigned worker)
{
	struct dp_shared *sh = dpdk_shared();

	if (sh == NULL || worker >= sh->nworkers || sh->workers[worker] == NULL)
		return 0;
	return __atomic_load_n(&sh->workers[worker]->ntws, __ATOMIC_RELAXED);
}

int
dpdk_backend_port_status(struct dpdk_port_status *out)
{
	const struct dp_shared *sh = dpdk_shared();

	if (sh == NULL)
		return PA_ERROR;
	out->port = sh->port_desc;
	out->rss = sh->rss;
	out->steering = sh->steering;
	return PA_OK;
}

/*
 * The worker's line at exit: the table's rows that have a short name, the
 * RSS misqueues, then the drops seen (tests read the line: name=value).
 */
static void
log_counters(const struct dp_worker *dw)
{
	const struct dp_counters *c = &dw->c;
	char line[2048];
	size_t n = 0;
	bool dropped = false;

	line[0] = '\0';
	for (size_t i = 0; i < dp_counter_table_n && n < sizeof(line); i++)
		if (dp_counter_table[i].log != NULL)
			n += (size_t)snprintf(
			    line + n, sizeof(line) - n, " %s=%llu", dp_counter_table[i].log,
			    (unsigned long long)dp_counter_value(c, &dp_counter_table[i]));
	for (unsigned i = 0; i < DP_MISQ_COUNT && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " rss_misqueued_%s=%llu",
		                      dp_misq_name((enum dp_misq)i),
		                      (unsigned long long)c->rss_misqueued[i]);
	if (n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, " drops:");
	for (unsigned i = 0; i < DP_DROP_COUNT && n < sizeof(line); i++)
		if (c->drops[i] != 0) {
			dropped = true;
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu",
			                      dp_drop_name((enum dp_drop)i),
			                      (unsigned long long)c->drops[i]);
		}
	pa_log_info("dpdk worker %u:%s%s", dw->id, line, dropped ? "" : " none");
}

/* SIGTERM: 421 to idle sessions; stored messages still get their 250. */
static void
begin_stop(struct dp_worker *dw)
{
	struct dp_conn *c, *next;

	for (c = TAILQ_FIRST(&dw->live); c != NULL; c = next) {
		next = TAILQ_NEXT(c, live_link);
		/* A session already ending keeps its last reply: nothing may follow our FIN. */
		if (c->app_closing || c->tcb.fin_queued)
			continue;
		ingest_shutdown(&c->ingest);
		conn_process(dw, c);
	}
}

/* After the loop: sessions still open are closed (as at the shutdown timeout), memory freed. */
static void
worker_fini(struct dp_worker *dw)
{
	struct pa_worker *worker = dw->worker;
	struct dp_conn *c;

	while ((c = TAILQ_FIRST(&dw->live)) != NULL) {
		tcp_queues_free(&c->tcb);
		app_finish(dw, c);
	}
	for (unsigned i = 0; i < dw->conns_used; i++)
		tcp_queues_free(&dw->conns[i].tcb);
	worker->backend = NULL;
	free(dw->conns);
	dw->conns = NULL;
	dp_worker_destroy(dw);
	/*
	 * dw itself stays (DPDK memory, gone with EAL): its counters remain
	 * readable by the control socket until the process exits.
	 */
}

unsigned
dpdk_backend_poll(struct pa_worker *worker)
{
	struct dp_worker *dw = worker->backend;
	unsigned got;

	dw->now_ms = rte_get_tsc_cycles() / dw->sh->tsc_per_ms;
	got = net_eth_poll(dw);
	flush_output(dw);
	ingest_poll_spool(worker);
	dp_worker_timers(dw); /* the timer wheel, ARP and ND retries, DAD */
	flush_output(dw);
	net_eth_tx_flush(dw);
	worker_refresh_runtime(worker);
	return got;
}

int
dpdk_backend_run(void *arg)
{
	struct pa_worker *worker = arg;
	struct dp_worker *dw = worker->backend;
	uint64_t stop_deadline = 0;
	unsigned idle = 0;

	for (;;) {
		unsigned got = dpdk_backend_poll(worker);

		if (pa_unlikely(worker_stopping(worker))) {
			uint64_t now = dw->now_ms;

			if (stop_deadline == 0) {
				stop_deadline =
				    now + 1000ull * worker->runtime->config.shutdown_timeout_s;
				begin_stop(dw);
			}
			if (TAILQ_EMPTY(&dw->live) && worker->awaiting_store == 0 &&
			    worker->dns_inflight == 0)
				break;
			if (now > stop_deadline && worker->awaiting_store == 0) {
				pa_log_warning(
				    "worker %u: connections still open at shutdown timeout; "
				    "closing them",
				    worker->id);
				break;
			}
		}
		if (got == 0 && dw->sh->idle_sleep_us > 0 && ++idle > IDLE_POLLS_BEFORE_SLEEP) {
			/* Opt-in (dpdk.idle_sleep_us): yields the core on a shared machine. */
			struct timespec ts = {0, (long)dw->sh->idle_sleep_us * 1000};

			nanosleep(&ts, NULL);
		} else if (got != 0) {
			idle = 0;
		}
	}
	/* Last ACKs and FINs out before the port stops. */
	net_eth_tx_flush(dw);
	log_counters(dw);
	worker_fini(dw);
	return 0;
}
