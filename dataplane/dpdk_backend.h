/*
 * dpdk_backend.h: the SMTP engine over the user-space TCP/IP stack, one
 * poll-mode loop per worker lcore (dpdk_port.c sets up the port and the
 * shared objects, dpdk_backend.c runs the loop and binds TCP to ingest).
 */
#ifndef PA_DPDK_BACKEND_H
#define PA_DPDK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "dataplane/dp_counters.h"

struct pa_worker;
struct dp_shared;

/* On the main lcore after EAL: the port, its queues, the mempool, rings, neighbour table. */
int dpdk_global_init(const struct pa_config *config);
void dpdk_global_fini(void);
/* The shared objects dpdk_global_init() made (NULL before). */
struct dp_shared *dpdk_shared(void);

/* On the main lcore, per worker, before launch. */
int dpdk_backend_init(struct pa_worker *worker, const struct pa_config *config);
/* The worker lcore's poll loop (an lcore_function_t); returns when the server stops. */
int dpdk_backend_run(void *worker);
/*
 * One iteration of that loop (RX bursts, TCP and the engine, spool
 * completions, timers, the TX flush); returns the frames received.  For a
 * program that interleaves the loop with its own work in one thread
 * (perf/bench-stack.c); dpdk_backend_run() is this plus stopping.
 */
unsigned dpdk_backend_poll(struct pa_worker *worker);

/*
 * A copy of one worker's counters, for the control socket: word-sized
 * fields read racily, so a value may be slightly stale, never torn.
 * PA_ERROR when there is no such worker.
 */
int dpdk_backend_counters(unsigned worker, struct dp_counters *out);
/* Connections of one worker in TIME_WAIT now (a racy read); 0 when there is no such worker. */
uint64_t dpdk_backend_time_wait(unsigned worker);

/* The port and how flows reach their worker, for status (dpdk.rss, docs/dataplane.md). */
struct dpdk_port_status {
	const char *port;     /* the port's description */
	bool rss;             /* hardware RSS, or software steering */
	const char *steering; /* which, and why */
};
/* PA_ERROR before dpdk_global_init(); the strings live as long as the port. */
int dpdk_backend_port_status(struct dpdk_port_status *out);

#endif
