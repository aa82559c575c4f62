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

#include "core/latency_hist.h"
#include "core/queue_id.h"
#include "core/runtime.h"
#include "core/screen_site.h"
#include "dataplane/ingest_store.h"
#include "smtp/smtp_session.h"

struct spool;
struct ingest_conn;
struct directory;
struct handoff;
struct tls_shared;
struct tls_ctx;
struct dns_resolver;
struct screen_cache;
struct milter_client;

/* The objects every worker and the main lcore share. */
struct pa_shared {
	struct spool *spool;
	/* Where ingest hands messages: the spool (ingest_store_spool()), or a benchmark's sink. */
	struct ingest_store store;
	struct pa_runtime *runtime; /* current; replaced with __atomic_exchange_n on reload */
	int stopping;		    /* set once by the main lcore on SIGTERM */
	/* The recipient directory; NULL when none is configured: `domains` alone decides. */
	struct directory *directory;
	/* The hand-off engine, for the control socket; workers read backpressure from the spool. */
	struct handoff *handoff;
	/* Set and cleared by the control socket (pause/resume): new connections 421, MAIL 451. */
	int paused;
	/* limits.* accounting shared by all workers (dataplane/conn_limits.h); NULL: none kept. */
	struct pa_limits *limits;
	/* BIO method and session-ticket keys, read-only after start; NULL without tls.cert. */
	struct tls_shared *tls;
	/* The `dns` thread (dns/resolver.h); NULL without dns.servers: no screening. */
	struct dns_resolver *resolver;
	/* The `milter` thread (filter/milter_client.h); NULL without milter.servers. */
	struct milter_client *milter;
};

/* Per-list screening counters, by position: DNSBLs, then DNSWLs at SCREEN_SITES_MAX. */
#define SCREEN_COUNTED_SITES (2 * SCREEN_SITES_MAX)

struct pa_worker_counters {
	uint64_t conns_total;
	uint64_t conns_open;
	uint64_t conns_refused;
	uint64_t messages_accepted;
	uint64_t messages_failed; /* store failed: 451 */
	uint64_t bytes_accepted;
	uint64_t submit_retries; /* a spool ring was full */
	uint64_t refusals[SMTP_REFUSAL_COUNT];
	uint64_t conns_paused; /* connections refused with 421 while paused */
	uint64_t conns_spool_unhealthy; /* refused with 421 by the spool's health gate */
	uint64_t proxy_headers;    /* PROXY headers taken from trusted balancers */
	uint64_t xclients;         /* XCLIENT commands taken from trusted peers */
	uint64_t limits_untracked; /* admitted without per-address accounting: table full */
	struct latency_hist commit_latency; /* spool submit -> completion */
	uint64_t tls_handshakes;            /* completed, full or resumed */
	uint64_t tls_resumed;               /* of which resumed with a session ticket */
	uint64_t tls_handshake_failures;    /* protocol errors, garbage, client gone */
	uint64_t tls_handshake_timeouts;    /* tls.handshake_timeout expired */
	uint64_t tls_handshakes_deferred;   /* over the per-loop budget: next loop */
	/* completed handshakes by the version negotiated (tls.min_version allows no older) */
	uint64_t tls_v1_2, tls_v1_3;
	/* connection screening (dataplane/ingest_screen.c): verdicts (ctl/ctl_counters.c) */
	uint64_t screen_passed;      /* under screen.threshold with every answer in */
	uint64_t screen_listed;      /* at or over it: refused */
	uint64_t screen_allowlisted; /* over it by the DNSBLs, brought under by a DNSWL */
	uint64_t screen_allowed;     /* in screen.allow: not looked up */
	uint64_t screen_fallback;    /* a lookup failed or timed out: screen.temporary_action */
	uint64_t screen_cached;      /* decided from the worker's verdict cache */
	uint64_t screen_busy;        /* no room for the queries: screen.temporary_action */
	/* each list's answers, by position in the runtime's lists */
	uint64_t screen_site_listed[SCREEN_COUNTED_SITES];
	uint64_t screen_site_clear[SCREEN_COUNTED_SITES];
	uint64_t screen_site_failed[SCREEN_COUNTED_SITES];
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
	struct tls_ctx *tls; /* this worker's SSL_CTX; NULL without tls.cert */
	/* A context with re-read certificates, set by the main lcore on reload, taken here. */
	struct tls_ctx *tls_next;
	/*
	 * Handshake steps left in this loop iteration (ingest_poll_spool()
	 * refills it): a burst of handshakes cannot starve packet processing.
	 * Connections over budget wait on tls_backlog for the next iteration.
	 */
	unsigned tls_budget;
	TAILQ_HEAD(, ingest_conn) tls_backlog;
	/* screening: this worker's verdicts, and its queries the resolver has not answered */
	struct screen_cache *screen_cache;
	unsigned dns_inflight;
	/* messages with the filters, or stored from an edited copy not handed back yet */
	unsigned milter_outstanding;
} __rte_cache_aligned;

/* Picks up a runtime published since the last call. */
void worker_refresh_runtime(struct pa_worker *worker);

static inline bool
worker_paused(const struct pa_worker *worker)
{
	return __atomic_load_n(&worker->shared->paused, __ATOMIC_ACQUIRE) != 0;
}

static inline bool
worker_stopping(const struct pa_worker *worker)
{
	return __atomic_load_n(&worker->shared->stopping, __ATOMIC_ACQUIRE) != 0;
}

#endif
