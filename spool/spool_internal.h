/*
 * spool_internal.h: the state shared by the worker side (spool.c) and the
 * committer threads (spool_committer.c).  Not for use outside spool/.
 *
 * Ownership: fields are grouped by the thread that writes them, each group on
 * its own cache line, so workers and committers do not false-share.
 */
#ifndef SPOOL_INTERNAL_H
#define SPOOL_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rocksdb/c.h>
#include <rte_ring.h>

#include "spool/seglog.h"
#include "spool/spool.h"

#define SPOOL_CACHE_LINE 64

struct spool_tracker;

/* One shard's share of a message: what travels on a request ring. */
struct spool_request {
	struct spool_tracker *tracker;
	unsigned shard;
};

/*
 * One submitted message, allocated by the worker at submit and freed by the
 * same worker when it polls the completion.  The last shard to finish sets
 * status and hands the tracker back over the worker's completion ring.
 */
struct spool_tracker {
	const struct spool_message *message;
	unsigned worker;
	int status;
	atomic_uint remaining; /* shards that have not finished yet */
	atomic_bool failed;    /* some shard's write failed */
	unsigned nreq;
	uint16_t *rcpt_shard; /* the shard of each recipient, nrcpt entries */
	struct spool_request req[];
};

struct spool_committer;

/*
 * Format 2: the closed segments a reclamation pass found empty, handed from
 * the committer to whoever removes them (spool_reclaim.c): the committer
 * fills it while EMPTY and posts it; the WAL-sync service
 * (spool_shard_sync_wal(), the hand-off's syncer) or the committer takes
 * it once the WAL is synced through need_seq, unlinks the files and marks
 * it DONE; the committer then drops them from its log and empties it.
 */
enum spool_box_state { SPOOL_BOX_EMPTY, SPOOL_BOX_POSTED, SPOOL_BOX_TAKEN, SPOOL_BOX_DONE };
struct spool_reclaim_box {
	atomic_int state;
	uint64_t need_seq;
	uint64_t *numbers; /* the committer's; freed by spool_close() */
	size_t n, cap;
	int rc; /* of the unlinks, written before DONE */
	char err[256];
};

struct spool_shard {
	/* Set at open, read-only afterwards. */
	struct spool *spool;
	unsigned index;
	char *path;
	rocksdb_t *db;
	struct rte_ring *ring;
	unsigned capacity; /* of ring */
	int wake_fd;       /* eventfd the committer sleeps on */
	pthread_t thread;
	bool thread_started;
	struct spool_committer *committer; /* committer-private state */
	unsigned format;                   /* of this shard: SPOOL_FORMAT_VERSION or _LOG */
	atomic_bool full;                  /* backpressure, set by spool_set_backpressure() */
	char *log_dir;                     /* format 2: its segment log */
	struct seglog *log;                /* format 2: written by the committer only */
	struct rte_ring *stream;           /* the commit stream: committer in, consumer out */

	/* Written by workers: ring slots promised to submitted requests. */
	alignas(SPOOL_CACHE_LINE) atomic_uint reserved;
	atomic_uint_least64_t doorbells; /* eventfd writes from spool_poll() */

	/* Written by the committer, read by workers: "about to sleep, wake me". */
	alignas(SPOOL_CACHE_LINE) atomic_bool sleeping;
	atomic_bool stop; /* written once by spool_close() */

	/* Written by the committer, read by spool_shard_stats(). */
	alignas(SPOOL_CACHE_LINE) atomic_uint_least64_t commits;
	atomic_uint_least64_t messages;
	atomic_uint_least64_t failures;
	atomic_uint_least64_t bytes;
	atomic_uint_least64_t groups[SPOOL_GROUP_BUCKETS]; /* commits by copies in them */
	/* Format 2, written by the committer's reclamation passes (spool_reclaim.c). */
	atomic_uint_least64_t log_segments;
	atomic_uint_least64_t log_bytes;
	atomic_uint_least64_t log_live_bytes;
	atomic_uint_least64_t log_reclaimable_bytes;
	atomic_uint_least64_t log_reclaimed;
	atomic_uint_least64_t log_reclaimed_bytes;
	/* The commit stream (spool_stream.c): */
	atomic_uint_least64_t streamed;
	atomic_uint_least64_t stream_overflow;
	atomic_uint_least64_t fresh_from; /* spool_stream_fresh_from() */
	uint64_t last_group_us;           /* committer only: the last group's time */
	atomic_uint_least64_t log_wal_syncs;
	atomic_uint_least64_t log_closed_bytes;
	/*
	 * RocksDB's WAL is synced through this sequence number
	 * (spool_shard_sync_wal(), any thread, under db_lock shared; reset to 0
	 * by a reopen, under db_lock exclusive).
	 */
	atomic_uint_least64_t wal_synced_seq;
	struct spool_reclaim_box reclaim_box;

	/*
	 * Health (spool_health.c), written by the committer only.  health is
	 * what workers read (an enum spool_shard_state); the rest is for the
	 * control socket.  db_lock guards db against a reopen: the hand-off
	 * engine and the control socket hold it shared around each use of db,
	 * the committer takes it exclusively to close and open the shard again
	 * (db is NULL while that failed).  The committer's own writes need no
	 * lock: it is the only thread that reopens.
	 */
	alignas(SPOOL_CACHE_LINE) atomic_int health;
	atomic_uint_least64_t health_since_us;
	atomic_uint_least64_t stalls;
	atomic_uint_least64_t write_errors;
	atomic_uint_least64_t reopens;
	atomic_uint_least64_t recoveries;
	uint64_t next_probe_us; /* committer only */
	pthread_mutex_t error_lock;
	char last_error[256]; /* under error_lock */
	pthread_rwlock_t db_lock;
	bool locks_made;
};

struct spool_worker {
	/* Set by spool_attach_worker(), read by committers. */
	alignas(SPOOL_CACHE_LINE) struct rte_ring *done;
	unsigned capacity; /* of done */
	int notify_fd;
	bool may_syscall;
	bool attached;

	/* Worker thread only: messages submitted and not yet polled. */
	alignas(SPOOL_CACHE_LINE) unsigned outstanding;
	/* Poll-mode worker only: shards submitted to since its last spool_poll(). */
	bool ring_pending;
	uint64_t ring[SPOOL_MAX_SHARDS / 64];
};

struct spool {
	char *dir;
	unsigned nshards;
	unsigned nworkers;
	rocksdb_writeoptions_t *write_options; /* sync = 1 */
	unsigned format;                       /* of shards created by this open */
	uint64_t segment_size;
	struct spool_shard *shards;
	struct spool_worker *workers;
	bool pin_committers; /* spool_config.committer_cpus was given */
	cpu_set_t committer_cpus;
	/* Faults (spool_health.c): set at open. */
	rocksdb_writeoptions_t *commit_options; /* sync = 1, no_slowdown = 1: a stall returns */
	rocksdb_writeoptions_t
	    *index_options; /* format 2: the same, sync = 0 (the log is synced) */
	uint64_t stall_timeout_us;
	uint64_t retry_us;
	unsigned impair_fail;      /* tests: the first N writes fail */
	uint64_t impair_stall_us;  /* tests: writes stall this long from the first one */
	atomic_uint impair_writes; /* writes seen while impaired */
	atomic_uint_least64_t impair_start_us;
	atomic_uint unhealthy;    /* shards not SPOOL_SHARD_OK: what the gate reads */
	atomic_uint full_shards;  /* shards with their backpressure flag set */
	atomic_bool poll_workers; /* idle_poll_us and some worker attached in poll mode */
	unsigned idle_poll_us;    /* spool_config.idle_poll_us */
	uint64_t linger_us;       /* spool_config.linger_us, 0 with idle_poll_us */
	/* The commit stream (spool_stream.c): */
	atomic_bool streaming;
	atomic_int stream_fd;
	atomic_uint_least64_t stream_gen;   /* bumped by every attach and detach */
	atomic_uint_least64_t stream_bytes; /* in the rings now */
	atomic_bool closing;
};

/* Format 2: opens the shard's segment log and re-indexes what RocksDB lost (spool_recover.c). */
int spool_shard_open_log(struct spool_shard *shard, char *err, size_t errlen);

/* A new copy's delivery records (pending, due at now_us) and its schedule entry, into b. */
void spool_put_pending(rocksdb_writebatch_t *b, const char *qid, size_t qlen, size_t nrcpt,
                       uint64_t now_us);

/*
 * Format 2: reclamation of empty segments (spool_reclaim.c), committer-private.
 * spool_reclaim_step() is called between groups (idle false) and when the
 * ring is empty (idle true), with the shard healthy; spool_reclaim_abort()
 * before anything may reopen the shard's db.
 */
struct spool_reclaim;
struct spool_reclaim *spool_reclaim_new(void);
void spool_reclaim_step(struct spool_shard *shard, struct spool_reclaim *r, uint64_t now_us,
                        bool idle);
void spool_reclaim_abort(struct spool_shard *shard, struct spool_reclaim *r);
void spool_reclaim_free(struct spool_reclaim *r);

/*
 * The commit stream, committer side (spool_stream.c).  A group is framed by
 * begin, which returns its schedule time (after every earlier group's, and
 * not before the wall clock when begin was called), and end.  Between them,
 * prepare copies one committed copy (NULL: not streaming, or no room:
 * counted) and publish pushes the prepared copies of the group once its
 * write succeeded (ok), or frees them.
 */
int spool_stream_init(struct spool_shard *shard, char *err, size_t errlen);
void spool_stream_fini(struct spool_shard *shard);
uint64_t spool_stream_begin(struct spool_shard *shard);
void spool_stream_end(struct spool_shard *shard);
struct spool_stream_copy *spool_stream_prepare(struct spool_shard *shard, const char *qid,
                                               const uint8_t *record, size_t record_len,
                                               const void *data, size_t size, uint64_t sched_us);
void spool_stream_publish(struct spool_shard *shard, struct spool_stream_copy **copies, unsigned n,
                          bool ok);

/* Allocates the committer's private state and starts its thread. */
int spool_committer_start(struct spool_shard *shard, char *err, size_t errlen);
/* Waits for a committer that was told to stop (shard->stop) and frees its state. */
void spool_committer_join(struct spool_shard *shard);

/* Wakes a committer that may be sleeping on its eventfd. */
void spool_committer_wake(struct spool_shard *shard);

/* Parses the fault settings and makes each shard's locks; PA_ERROR names the problem. */
int spool_health_init(struct spool *spool, const struct spool_config *config, char *err,
                      size_t errlen);
void spool_health_fini(struct spool *spool);

/*
 * The committer's synced write of a batch: retried while RocksDB stalls, up
 * to stall_timeout; false when it failed or stalled too long (the shard is
 * then unhealthy) or the shard is unhealthy already (nothing is tried).
 */
bool spool_shard_write(struct spool_shard *shard, rocksdb_writebatch_t *batch);
/* Format 2: the index of records already synced in the log, written without a sync. */
bool spool_shard_write_index(struct spool_shard *shard, rocksdb_writebatch_t *batch);
/* Format 2: the segment log's write or sync failed; the shard is unhealthy like after a
 * failed RocksDB write. */
void spool_shard_log_failed(struct spool_shard *shard, const char *why);

/* Committer, between batches: an unhealthy shard is probed and reopened when due. */
void spool_shard_recover(struct spool_shard *shard);

/* Shared use of a shard's db by other threads than its committer; NULL (unlocked, err set)
 * while a reopen failed. */
rocksdb_t *spool_shard_db_acquire(struct spool_shard *shard, char *err, size_t errlen);
void spool_shard_db_release(struct spool_shard *shard);

#endif
