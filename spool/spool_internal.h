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

	/* Written by workers: ring slots promised to submitted requests. */
	alignas(SPOOL_CACHE_LINE) atomic_uint reserved;

	/* Written by the committer, read by workers: "about to sleep, wake me". */
	alignas(SPOOL_CACHE_LINE) atomic_bool sleeping;
	atomic_bool stop; /* written once by spool_close() */

	/* Written by the committer, read by spool_shard_stats(). */
	alignas(SPOOL_CACHE_LINE) atomic_uint_least64_t commits;
	atomic_uint_least64_t messages;
	atomic_uint_least64_t failures;
	atomic_uint_least64_t bytes;
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
};

struct spool {
	char *dir;
	unsigned nshards;
	unsigned nworkers;
	rocksdb_writeoptions_t *write_options; /* sync = 1 */
	struct spool_shard *shards;
	struct spool_worker *workers;
	atomic_bool poll_workers; /* some attached worker cannot ring an eventfd */
	atomic_bool closing;
};

/* Allocates the committer's private state and starts its thread. */
int spool_committer_start(struct spool_shard *shard, char *err, size_t errlen);
/* Waits for a committer that was told to stop (shard->stop) and frees its state. */
void spool_committer_join(struct spool_shard *shard);

/* Wakes a committer that may be sleeping on its eventfd. */
void spool_committer_wake(struct spool_shard *shard);

#endif
