/*
 * worker.h: the per-lcore structure that owns everything one worker touches.
 *
 * As in DPDK's l3fwd, each worker lcore has one cache-aligned structure: its
 * sessions, its queue-id generator, its counters, its backend state.  Nothing
 * in it is written by another thread; the main lcore only reads the counters
 * (word-sized, so a racy read is a slightly stale one, never a torn one).
 * What workers share is explicit and listed in struct pa_shared.
 */
#ifndef PA_WORKER_H
#define PA_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <rte_common.h>

#include "core/queue_id.h"
#include "core/runtime.h"
#include "smtp/smtp_session.h"

struct spool;
struct ingest_conn;
struct directory;

/* The objects every worker and the main lcore share. */
struct pa_shared {
	struct spool *spool;
	struct pa_runtime *runtime; /* current; replaced with __atomic_exchange_n on reload */
	int stopping;		    /* set once by the main lcore on SIGTERM */
	/* The recipient directory; NULL when none is configured: `domains` alone decides. */
	struct directory *directory;
};

struct pa_worker_counters {
	uint64_t conns_total;
	uint64_t conns_open;
	uint64_t conns_refused;
	uint64_t messages_accepted;
	uint64_t messages_failed; /* store failed: 451 */
	uint64_t bytes_accepted;
	uint64_t submit_retries; /* a spool ring was full */
	uint64_t refusals[SMTP_REFUSAL_COUNT];
};

typedef void (*worker_resume_fn)(struct ingest_conn *conn);

struct pa_worker {
	unsigned id;
	unsigned lcore;
	struct pa_shared *shared;
	struct pa_runtime *runtime; /* this worker's reference to the current runtime */
	struct queue_id_gen queue_ids;
	/* connections whose message could not be queued yet (a full spool ring) */
	TAILQ_HEAD(, ingest_conn) submit_backlog;
	unsigned awaiting_store; /* connections with a message in the spool's hands */
	worker_resume_fn resume; /* the backend's: a stored message was answered */
	void *backend;           /* the backend's own per-worker state */
	struct pa_worker_counters counters;
} __rte_cache_aligned;

/* Picks up a runtime published since the last call. */
void worker_refresh_runtime(struct pa_worker *worker);

static inline bool
worker_stopping(const struct pa_worker *worker)
{
	return __atomic_load_n(&worker->shared->stopping, __ATOMIC_ACQUIRE) != 0;
}

#endif
