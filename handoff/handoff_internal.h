/*
 * handoff_internal.h: the hand-off engine's private state, shared by its
 * files: handoff_engine.c (thread, reload, backpressure), handoff_queue.c
 * (scan, copies, jobs, outcomes, DSNs) and handoff_conn.c (connections).
 *
 * Ownership: everything below `engine thread only` is touched by the engine
 * thread alone; the mutex guards the reload hand-over; the backpressure
 * flags are atomics written by the engine and read by workers.
 */
#ifndef HANDOFF_INTERNAL_H
#define HANDOFF_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/queue_id.h"
#include "handoff/handoff.h"
#include "handoff/handoff_client.h"
#include "handoff/handoff_store.h"
#include "handoff/route_map.h"

#define HO_COPY_BUCKETS 4096
#define HO_MAX_COPIES 2048         /* copies in memory at once */
#define HO_MAX_BYTES (256u << 20)  /* bodies in memory at once */
#define HO_SCAN_INTERVAL_US 20000u /* how often due schedule entries are looked for */
#define HO_IDLE_CLOSE_US 5000000u  /* an idle connection is closed after this */
/* Jobs a destination may have waiting in memory: BASE + PER_CONN * relay.concurrency. */
#define HO_DEST_QUEUE_BASE 64u
#define HO_DEST_QUEUE_PER_CONN 16u
#define HO_BACKPRESSURE_US 200000u /* how often the backpressure flags are recomputed */
/* The scan of due entries (handoff_queue.c): */
#define HO_SCAN_MAX_ENTRIES 8192u /* entries looked at per shard and scan */
#define HO_SCAN_BUSY_RUN 16u      /* copies in a row finding their destination full end it */
#define HO_FULL_SCAN_US 60000000u /* a scan from the head this often */
#define HO_WAL_SYNC_US 100000u    /* outcomes written unsynced are synced within this */

struct ho_dest;
struct ho_conn;

/* A queued per-message operation (handoff_message_op()). */
struct ho_op {
	char qid[SMTP_QUEUE_ID_MAX];
	int shard; /* < 0: every copy */
	enum handoff_op op;
	struct ho_op *next;
};

/*
 * A copy the engine holds in memory while some of its recipients are being
 * handed off, and after, until its outcome is written (settling): until
 * then the spool still shows it due, so it must stay "in flight".
 */
struct ho_copy {
	struct hs_copy *hc;
	unsigned jobs; /* jobs not finished yet */
	bool changed;  /* plan() changed a delivery record */
	bool deleted;  /* its outcome deletes it: no schedule entry left */
	bool settling;
	uint64_t settle_gen; /* its shard's batch generation that holds its outcome */
	struct ho_copy *hnext;
	TAILQ_ENTRY(ho_copy) slink;
};
TAILQ_HEAD(ho_copy_list, ho_copy);

/* The recipients of one copy that go to one destination, in one transaction. */
struct ho_job {
	struct ho_copy *copy;
	struct ho_dest *dest;
	size_t n;
	size_t *idx;        /* delivery-record index of each recipient */
	const char **rcpts; /* their addresses (point into copy->hc->rec) */
	bool *done;         /* outcome taken */
	size_t ndone;
	char id_header[96];
	char envid[64];
	TAILQ_ENTRY(ho_job) link;
};
TAILQ_HEAD(ho_job_list, ho_job);

struct ho_conn {
	struct ho_dest *dest;
	int fd;
	unsigned host;
	struct hc *hc;
	struct ho_job *job;
	/*
	 * PIPELINING: the job whose envelope went out right behind job's body
	 * (RFC 2920 3.1); its body waits for job's outcome to be written.
	 */
	struct ho_job *next_job;
	uint64_t next_start_us;
	bool connecting;
	bool want_write; /* EPOLLOUT is armed */
	/*
	 * The outcome of its last transaction: the next one's body is sent
	 * only once it is written (ho_written()), so a crash re-sends at most
	 * one copy per connection (docs/handoff.md).  0: none to wait for.
	 */
	unsigned wait_shard;
	uint64_t wait_gen;
	uint64_t deadline_us; /* connect or reply timeout; 0 none */
	uint64_t idle_since_us;
	uint64_t txn_start_us; /* when its transaction started: the latency fed to the window */
	LIST_ENTRY(ho_conn) link;
};
LIST_HEAD(ho_conn_list, ho_conn);

struct ho_dest {
	struct route_dest rd;
	struct ho_job_list queue;
	unsigned nqueued;
	struct ho_conn_list conns;
	unsigned nconns;
	unsigned host_next;     /* the host the next connection tries first */
	unsigned failures;      /* consecutive connection failures */
	uint64_t open_until_us; /* circuit breaker: no attempts before this */
	uint64_t delivered, deferred, failed;
	struct ho_job *filling; /* plan(): this copy's job for it that still takes recipients */
	bool wants_more; /* a scan left its mail due for lack of room: refill when there is */
	/* The adaptive window (handoff_window.c). */
	unsigned win;          /* connections it may have now */
	unsigned win_ok;       /* successful transactions in this window */
	uint64_t lat_sum_us;   /* their latencies */
	uint64_t lat_floor_us; /* lowest mean latency of a window (creeping up) */
	uint64_t win_cut_us;   /* when it was last halved */
	bool win_linear;       /* slow start is over: it grows by one, no longer doubles */
	struct ho_dest *next;
};

struct handoff {
	struct spool *spool;
	pthread_t thread;
	bool started;
	int epfd;
	int wake_fd;
	atomic_bool stop;

	/* Reload hand-over: the main thread parks a new map and config here. */
	pthread_mutex_t lock;
	struct route_map *pending_map;
	struct handoff_config pending_cfg;
	bool pending;
	atomic_bool rescan_all;
	struct ho_op *ops; /* per-message operations, newest first */
	/* handoff_ops_pending(): operations queued, and those applied */
	atomic_uint_least64_t ops_queued, ops_settled;
	/* handoff_dest_states(): published by the engine thread, under the lock */
	struct handoff_dest_state *dest_view;
	size_t ndest_view;

	/* Read by other threads (the control socket). */
	unsigned nshards;
	atomic_uint_least64_t *queued_bytes; /* per shard */
	atomic_uchar *held;                  /* per shard: hold requested */

	atomic_uint_least64_t delivered, deferred, failed, dsns;
	atomic_uint_least64_t store_refused; /* directory stores that were no address literal */
	atomic_uint_least64_t streamed;      /* copies taken from the commit stream */
	atomic_uint_least64_t disk_loads;    /* bodies read from the spool */
	bool stream_attached;
	atomic_bool draining; /* handoff_drain(): nothing may stay held */

	/*
	 * The outcome writer (handoff_writer.c): the engine hands a shard's
	 * batch over under wlock; the writer writes it, then publishes
	 * written_gen.  wbatch[s] is the writer's while wbusy[s].
	 */
	pthread_t wthread;
	bool wstarted;
	pthread_t sthread; /* the syncer: every HO_WAL_SYNC_US; ho_writer_stop() syncs last */
	bool sstarted;
	pthread_cond_t scond;
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	bool wstop;
	rocksdb_writebatch_t **wbatch;
	bool *wbusy;
	uint64_t *handed_gen;               /* per shard: batches handed over */
	atomic_uint_least64_t *written_gen; /* per shard: batches written */
	atomic_bool *unsynced;              /* per shard: written since the last sync */

	/* Engine thread only. */
	struct handoff_config cfg;
	struct route_map *map;
	struct queue_id_gen qids;
	struct ho_copy *copies[HO_COPY_BUCKETS];
	unsigned ncopies;
	uint64_t bytes_in_memory;
	struct ho_dest *dests;
	uint64_t next_scan_us;
	bool refill;                /* a destination that was full has room again: scan now */
	uint64_t *cursor_us;        /* per shard: where the next scan of the schedule starts */
	uint64_t *back_us;          /* per shard: ho_cursor_back() during its scan */
	uint64_t next_full_scan_us; /* the next scan from the head */
	unsigned first_shard;       /* the shard scanned first, in turn */
	uint64_t next_pressure_us;
	uint64_t *base_bytes;     /* per shard: at start */
	uint64_t *base_committed; /* per shard: committer byte count at start */
	uint64_t *removed_bytes;  /* per shard: deleted by the engine since start */
	uint64_t *added_bytes;    /* per shard: DSNs queued by the engine */
	bool warned_unrouted;
	bool warned_no_directory; /* store routing waits for a fresh directory; said once per outage
	                           */
	bool drain_swept;         /* the held copies were released once draining began */
	/* per shard: outcomes gathered in one turn, handed to the writer by ho_flush() */
	rocksdb_writebatch_t **batch;
	bool *dirty;                  /* per shard: someone waits for this batch's generation */
	struct ho_copy_list settling; /* finished copies whose outcome is not written yet */
};

/* handoff_queue.c */
/* Jobs a destination may have waiting in memory. */
static inline unsigned
ho_dest_queue_max(const struct handoff *h)
{
	return HO_DEST_QUEUE_BASE + HO_DEST_QUEUE_PER_CONN * h->cfg.concurrency;
}
/*
 * Where rcpt goes: an address or domain rule, else its store from the
 * directory (relay.store_route), else its shard's rule or relay.default.
 * The result points into map or is scratch; NULL when nothing routes it.
 * reader: 0 the engine thread, 1 handoff_destination().  *wait (may be
 * NULL) is set when the directory has no fresh snapshot: the recipient
 * should wait rather than go by the fallback rules to the wrong store.
 */
const struct route_dest *ho_route(struct handoff *h, const struct route_map *map,
                                  const struct handoff_config *cfg, unsigned reader, unsigned shard,
                                  const char *rcpt, struct route_dest *scratch, bool *wait);
/* False when it stopped at the in-memory limits before looking at everything due. */
bool ho_scan(struct handoff *h, uint64_t now, bool all);
/* Takes and plans what the commit stream holds, while the in-memory limits allow. */
void ho_stream(struct handoff *h, uint64_t now);
/* Frees what the commit stream holds (nothing routes mail now): the rings hold no memory. */
void ho_stream_drop(struct handoff *h);
/*
 * The schedule time from which a shard's entries may belong to copies still
 * on the commit stream (spool.h): read, then the stream taken.  0 when the
 * stream could not be taken whole (the limits): any entry may be on it.
 */
uint64_t ho_fresh_from(struct handoff *h, unsigned shard, uint64_t now);
/* Whether an entry at sched_us may be such a copy: not to be loaded from disk now. */
bool ho_maybe_streaming(uint64_t fresh_from, uint64_t sched_us);
/* A schedule entry at `us` was made behind the shard's scan cursor: the next scan goes back. */
void ho_cursor_back(struct handoff *h, unsigned shard, uint64_t us);
void ho_job_free(struct ho_job *job);
/* Returns how many recipients got a temporary failure. */
unsigned ho_job_outcomes(struct handoff *h, struct ho_job *job, struct hc *hc, uint64_t now);
void ho_job_fail(struct handoff *h, struct ho_job *job, const char *why, bool count_attempt,
                 uint64_t when, uint64_t now);
void ho_drop_all(struct handoff *h);
/* Forgets the settling copies whose outcome is written. */
void ho_settle(struct handoff *h);
void ho_dest_free_all(struct handoff *h);

/* handoff_ops.c: applies queued per-message operations (engine thread). */
void ho_apply_ops(struct handoff *h, uint64_t now);
/* Makes every copy held in the spool due now (a drain); copies in flight are not held. */
void ho_release_held(struct handoff *h, uint64_t now);
void ho_ops_free(struct ho_op *ops);
/* handoff_queue.c: whether a copy is in memory (in flight) now. */
bool ho_in_flight(struct handoff *h, unsigned shard, const char *qid);

/* handoff_engine.c: wakes the engine thread (its eventfd). */
void ho_wake(struct handoff *h);

/* handoff_writer.c */
int ho_writer_start(struct handoff *h, char *err, size_t errlen);
/* After the engine thread stopped: writes and syncs everything. */
void ho_writer_stop(struct handoff *h);
/*
 * Hands every shard's gathered outcomes to the writer (a shard whose
 * previous batch is still being written keeps gathering); never waits.
 */
void ho_flush(struct handoff *h);
/* The generation the shard's gathering batch gets: an outcome put there now is written with it. */
uint64_t ho_outcome_gen(struct handoff *h, unsigned shard);
bool ho_written(const struct handoff *h, unsigned shard, uint64_t gen);

/* handoff_window.c: a destination's adaptive concurrency. */
unsigned ho_window(struct handoff *h, struct ho_dest *d);
void ho_window_success(struct handoff *h, struct ho_dest *d, uint64_t latency_us);
void ho_window_failure(struct handoff *h, struct ho_dest *d, uint64_t now);

/* handoff_conn.c */
void ho_conn_event(struct handoff *h, struct ho_conn *c, uint32_t events, uint64_t now);
void ho_dispatch(struct handoff *h, uint64_t now);
void ho_timeouts(struct handoff *h, uint64_t now);
/* Sends the bodies held until their connection's previous outcome was written. */
void ho_release_bodies(struct handoff *h, uint64_t now);
void ho_conn_close_all(struct handoff *h);

#endif
