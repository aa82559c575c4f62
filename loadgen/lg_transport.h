/*
 * lg_transport.h: the transports of pigeon-loadgen and what they share.
 *
 * A transport moves the bytes of struct lg_session (lg_session.h) over a
 * network: lg_kernel.c over kernel sockets and epoll, lg_dpdk.c over
 * PigeonAir's user-space TCP/IP stack (active open).  main.c parses the
 * options, builds the message generator, fills a struct lg_run and calls
 * one of the run functions below; the run function owns everything from
 * there until it returns:
 *
 *  - start opt->threads load threads (or lcores); thread i uses
 *    run->stats[i] and its own struct lg_source (lg_thread_init());
 *  - keep opt->connections connections open over all threads (thread i
 *    owns lg_thread_connections(run, i) of them), each with a fresh
 *    session from lg_thread_workload(), reconnecting after a session
 *    closes while lg_source_more() says so;
 *  - pass session events to lg_stats_event() with &run->stats[i];
 *  - stop by itself: when shared.stop becomes LG_DRAIN call
 *    lg_session_quit() on every session and return when all are closed;
 *    on LG_ABORT lg_session_abort(LG_ERR_TIMEOUT) them and return at once;
 *    on its own when the budget is spent and every session has closed;
 *  - while the threads run, the calling (main) thread runs lg_monitor(run):
 *    the per-second report, --duration and the hard timeout.  It returns
 *    once every load thread called lg_thread_done().
 *
 * Returns 0 when the run happened (whatever the server answered; the stats
 * say how it went), -1 when the transport could not run at all.
 */
#ifndef LG_TRANSPORT_H
#define LG_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "loadgen/lg_options.h"
#include "loadgen/lg_session.h"
#include "loadgen/lg_source.h"
#include "loadgen/lg_stats.h"

struct lg_run {
	const struct lg_options *opt;
	const struct lg_gen *gen;
	struct lg_shared shared;
	SSL_CTX *tls_ctx;       /* NULL when --tls-share is 0 */
	struct lg_stats *stats; /* opt->threads of them */
	uint64_t start_us;      /* lg_now_us() when the run began (DPDK: once set up) */
};

/* Per-thread state every transport needs; the transport keeps one per thread. */
struct lg_thread {
	struct lg_run *run;
	unsigned idx;
	struct lg_stats *stats;
	struct lg_source src;
	double tls_acc; /* --tls-share spread evenly: TLS when the accumulator crosses 1 */
};

/* A monotonic clock in µs: the one every transport passes to the sessions. */
uint64_t lg_now_us(void);

void lg_thread_init(struct lg_thread *t, struct lg_run *run, unsigned idx);

/* How many of opt->connections thread idx owns (spread evenly). */
unsigned lg_thread_connections(const struct lg_run *run, unsigned idx);

/* The workload of the thread's next session (decides STARTTLS by --tls-share). */
void lg_thread_workload(struct lg_thread *t, struct lg_workload *w);

/* The thread returned: the monitor waits for all of them. */
void lg_thread_done(struct lg_thread *t);

/* LG_RUN, LG_DRAIN or LG_ABORT. */
int lg_run_state(const struct lg_run *run);

/* Reports every second (unless --quiet), enforces --duration and --timeout. */
void lg_monitor(struct lg_run *run);

/* Pins the calling thread to --cpu's entry for thread idx; 0 when there is no --cpu. */
int lg_pin_thread(const struct lg_options *opt, unsigned idx);

int lg_kernel_run(struct lg_run *run);
int lg_dpdk_run(struct lg_run *run);

#endif
