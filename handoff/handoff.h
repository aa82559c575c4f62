/*
 * handoff.h: the hand-off engine, which drains the spool into the delivery
 * tier (Postfix relays, LMTP stores) over kernel sockets.
 *
 * It runs on its own thread, never on a worker lcore.  Every scan it takes
 * the due copies of every shard, routes each pending recipient through the
 * route map (route_map.h), and hands the copy to that destination over a
 * pool of SMTP or LMTP connections.  docs/handoff.md is the operator's view.
 *
 * What it promises (at least once): a recipient is marked done only after
 * the peer's 2xx for it, and that mark is synced before the copy is deleted
 * (also synced); a crash re-sends at most what was in flight.  A 5xx, or a
 * message older than max_queue_lifetime, queues a DSN to the sender (synced,
 * before the recipient is marked failed).  Workers may read the backpressure
 * flags from any thread without a lock.
 */
#ifndef HANDOFF_H
#define HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;
struct handoff;

#define HANDOFF_WORKER_ID 255  /* the queue-id worker number of DSNs */
#define HANDOFF_MAX_RCPTS 1024 /* relay.max_recipients at most (HC_RCPT_MAX) */

/* What the recipient directory says of a recipient's store (relay.store_route). */
enum handoff_store {
	HANDOFF_STORE_FOUND,       /* store holds its host, NUL-terminated */
	HANDOFF_STORE_NONE,        /* no entry, or an entry without a store */
	HANDOFF_STORE_UNAVAILABLE, /* the directory has no fresh snapshot: wait */
};
/*
 * The store lookup the host gives the engine.  It must not block (the
 * directory's lock-free snapshot); reader 0 is the engine thread, reader 1
 * the callers of handoff_destination(), which the engine serializes.
 */
typedef enum handoff_store (*handoff_store_fn)(void *arg, unsigned reader, const char *rcpt,
                                               char *store, size_t storelen);
#define HANDOFF_STORE_READERS 2

struct handoff_config {
	char routes[1024];      /* route-map file; "" none */
	char default_dest[256]; /* relay.default; "" none */
	char store_route[256];  /* relay.store_route; "" none */
	char helo[256];         /* EHLO/LHLO name */
	char hostname[256];     /* Reporting-MTA of DSNs */
	char spool_dir[1024];   /* for the free-space check */
	unsigned shards;
	unsigned node_id;
	unsigned min_backoff_s, max_backoff_s;
	unsigned max_queue_lifetime_s;
	unsigned concurrency;     /* connections per destination: the ceiling */
	unsigned concurrency_min; /* where a destination's window starts, and its floor */
	uint64_t high_water;      /* queued bytes per shard; 0: no limit */
	uint64_t min_free_bytes;
	unsigned min_free_percent; /* used when min_free_bytes is 0 */
	unsigned breaker_failures; /* consecutive failures that open the breaker */
	unsigned breaker_cooldown_s;
	unsigned timeout_s;        /* per reply from a peer */
	unsigned max_rcpts;        /* recipients per transaction, 1..HANDOFF_MAX_RCPTS (0: 1000) */
	handoff_store_fn store_of; /* NULL: no directory, store_route routes nothing */
	void *store_arg;
};

/* Parses the route map and starts the thread; PA_ERROR with err naming what failed. */
int handoff_start(struct handoff **h, struct spool *sp, const struct handoff_config *cfg, char *err,
                  size_t errlen);

/* Stops the thread, closes its connections, frees everything; copies in flight stay queued. */
void handoff_stop(struct handoff *h);

/*
 * Re-reads the route map with a new configuration.  All or nothing: on
 * PA_ERROR (err names the file and line) the running map and settings stay.
 * On PA_OK every queued copy is looked at again, due or not.
 */
int handoff_reload(struct handoff *h, const struct handoff_config *cfg, char *err, size_t errlen);

/*
 * Operations (the control socket exposes them).  shard < 0: every shard.
 * PA_ERROR for an unknown shard, or for a hold while draining (handoff_drain()).
 */
int handoff_hold_shard(struct handoff *h, int shard, bool hold);
/* Makes every queued copy due now (what a reload does too). */
void handoff_retry_now(struct handoff *h);

/* Operations on every copy of one message (queue id). */
enum handoff_op {
	HANDOFF_OP_HOLD,    /* never due until released */
	HANDOFF_OP_RELEASE, /* due now */
	HANDOFF_OP_RETRY,   /* due now, held or not */
	HANDOFF_OP_DELETE,  /* removed without delivery or DSN */
};
/*
 * Queues the operation for the engine thread, which applies it within one
 * loop (a copy in flight at that moment is done once its transaction ends).
 * PA_ERROR for an invalid queue id or when out of memory.
 */
int handoff_message_op(struct handoff *h, const char *queue_id, enum handoff_op op);
/* The same on the copy in one shard only (shard < 0: every copy, as handoff_message_op()). */
int handoff_copy_op(struct handoff *h, const char *queue_id, int shard, enum handoff_op op);
/*
 * Operations queued and not yet applied: 0 once every operation queued
 * before the call has been written to the spool (any thread).
 */
uint64_t handoff_ops_pending(struct handoff *h);

/*
 * Drain: from now on no copy stays held, or a drain would wait for ever.
 * Shard holds are lifted (and handoff_hold_shard() refuses new ones); a
 * per-message hold applied from now on, even one queued before this call,
 * makes the copy due instead; and the engine thread, after applying every
 * operation queued before, releases each copy it finds held in the spool.
 * Any thread; not undone (pigeond exits once the spool is empty).
 */
void handoff_drain(struct handoff *h);
bool handoff_draining(const struct handoff *h);

/* Whether the operator holds this shard (handoff_hold_shard()). */
bool handoff_shard_held(const struct handoff *h, unsigned shard);

/*
 * The destination a recipient of a copy in `shard` goes to under the route
 * map in force (one parked by a reload counts already), with its store from
 * the directory's current snapshot (relay.store_route), as its canonical text
 * ("smtp:10.0.0.1:25/0,10.0.0.2:25/0"), into out; false when nothing routes
 * it.  Any thread: it takes the engine's lock for the lookup alone.
 */
bool handoff_destination(struct handoff *h, unsigned shard, const char *rcpt, char *out,
                         size_t outlen);

/* The engine's own state of a destination it has handed mail to, for the control socket. */
#define HANDOFF_DEST_MAX 512 /* ROUTE_KEY_MAX */
struct handoff_dest_state {
	char dest[HANDOFF_DEST_MAX]; /* the route map's canonical text of it */
	unsigned connections;        /* open now */
	unsigned concurrency;        /* connections it may have now (its adaptive window) */
	unsigned jobs;               /* transactions waiting in memory for a connection */
	unsigned failures;           /* connection failures in a row */
	uint64_t breaker_open_s;     /* seconds until the circuit breaker closes; 0: closed */
	uint64_t delivered, deferred, failed; /* recipients, since start */
};
/*
 * A copy of that state for every destination the engine knows, at most
 * 200 ms old (the engine publishes it with the backpressure flags): a
 * malloc'ed array of *n entries (NULL when none) the caller frees.  Any
 * thread.  PA_ERROR when out of memory.
 */
int handoff_dest_states(struct handoff *h, struct handoff_dest_state **out, size_t *n);

/* A snapshot of one shard's and the engine's counters, for logs and the control socket. */
struct handoff_stats {
	uint64_t delivered; /* recipients acknowledged with 2xx */
	uint64_t deferred;  /* temporary failures */
	uint64_t failed;    /* permanent failures (DSN queued when there is a sender) */
	uint64_t dsns;
	uint64_t queued_bytes;    /* per shard: the backpressure figure */
	uint64_t store_refused;   /* directory stores not routed (not an address literal) */
	uint64_t streamed;        /* copies taken in memory from the spool's commit stream */
	uint64_t stream_overflow; /* committed copies the stream had no room for (read from disk) */
	uint64_t disk_loads;      /* bodies read back from the spool */
};
void handoff_stats(const struct handoff *h, struct handoff_stats *out);
uint64_t handoff_shard_queued_bytes(const struct handoff *h, unsigned shard);

#endif
