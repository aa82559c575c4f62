/*
 * spool.c: the worker-facing side of the spool: open, close, submit, poll.
 *
 * What it promises: spool_submit() and spool_poll() never block and never call
 * RocksDB; a submit either queues one request on every shard the message
 * touches or queues nothing (PA_AGAIN).  Ring slots are reserved before
 * anything is enqueued, because an MP ring cannot take back what one producer
 * put on it while others race; the completion ring cannot overflow because a
 * worker never has more messages in flight than it holds.
 */
#include "spool/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rte_errno.h>

#include "core/clock.h"
#include "core/dir_sync.h"
#include "core/log.h"
#include "core/pa.h"
#include "spool/spool_db.h"
#include "spool/spool_record.h"

#define POLL_BURST 64

/* Ring names are process-wide in DPDK; the spool's address keeps two spools apart. */
static struct rte_ring *
ring_create(const struct spool *spool, char kind, unsigned index, unsigned size, char *err,
            size_t errlen)
{
	char name[RTE_RING_NAMESIZE];
	struct rte_ring *r;

	snprintf(name, sizeof(name), "sp%c%" PRIxPTR "_%u", kind, (uintptr_t)spool & 0xffffffffffu,
	         index);
	r = rte_ring_create(name, size, SOCKET_ID_ANY,
	                    RING_F_MP_RTS_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
	if (r == NULL)
		snprintf(err, errlen, "rte_ring_create(%s, %u): %s", name, size,
		         rte_strerror(rte_errno));
	return r;
}

static int
check_config(const struct spool_config *c, char *err, size_t errlen)
{
	if (c->dir == NULL || c->dir[0] == '\0') {
		snprintf(err, errlen, "spool_open: no spool directory");
		return PA_ERROR;
	}
	if (c->shards == 0 || c->shards > SPOOL_MAX_SHARDS) {
		snprintf(err, errlen, "spool_open: shards must be 1..%u, not %u", SPOOL_MAX_SHARDS,
		         c->shards);
		return PA_ERROR;
	}
	if (c->workers == 0 || c->workers > SPOOL_MAX_WORKERS) {
		snprintf(err, errlen, "spool_open: workers must be 1..%u, not %u",
		         SPOOL_MAX_WORKERS, c->workers);
		return PA_ERROR;
	}
	if (c->format > SPOOL_FORMAT_LOG) {
		snprintf(err, errlen, "spool_open: format must be %u or %u, not %u",
		         SPOOL_FORMAT_VERSION, SPOOL_FORMAT_LOG, c->format);
		return PA_ERROR;
	}
	if (c->segment_size != 0 &&
	    (c->segment_size < SEGLOG_SEGMENT_MIN || c->segment_size > SEGLOG_RECORD_MAX)) {
		snprintf(err, errlen, "spool_open: segment size must be %u..%u, not %llu",
		         SEGLOG_SEGMENT_MIN, SEGLOG_RECORD_MAX,
		         (unsigned long long)c->segment_size);
		return PA_ERROR;
	}
	if (c->ring_size < 2 || c->ring_size > RTE_RING_SZ_MASK ||
	    (c->ring_size & (c->ring_size - 1)) != 0) {
		snprintf(err, errlen, "spool_open: ring_size must be a power of 2, not %u",
		         c->ring_size);
		return PA_ERROR;
	}
	return PA_OK;
}

/* A new shard must be empty before it gets its meta record: data without one is foreign. */
static int
init_meta(struct spool *spool, struct spool_shard *sh, char *err, size_t errlen)
{
	struct spool_meta meta;
	bool found;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	bool empty;
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_META_SIZE];
	char *rerr = NULL;

	if (spool_db_read_meta(sh->db, sh->path, &meta, &found, err, errlen) != PA_OK)
		return PA_ERROR;
	if (found) {
		/* An existing shard keeps the format it was created with. */
		sh->format = meta.format;
		if (meta.format == SPOOL_FORMAT_VERSION && spool->format == SPOOL_FORMAT_LOG)
			pa_log_notice("spool: shard %u is of format 1 and stays so; to move it to "
			              "format 2, stop pigeond and run pigeond -U with this "
			              "configuration (docs/spool-format.md)",
			              sh->index);
		return spool_db_check_meta(&meta, sh->path, spool->nshards, sh->index, err, errlen);
	}

	ro = rocksdb_readoptions_create();
	it = rocksdb_create_iterator(sh->db, ro);
	rocksdb_iter_seek_to_first(it);
	empty = !rocksdb_iter_valid(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (!empty) {
		snprintf(err, errlen, "%s: holds data but no spool meta record; not a spool shard",
		         sh->path);
		return PA_ERROR;
	}

	sh->format = spool->format;
	meta = (struct spool_meta){spool->format, spool->nshards, sh->index, pa_wall_clock_us()};
	spool_record_meta_encode(&meta, val);
	rocksdb_put(sh->db, spool->write_options, (const char *)key, spool_key_meta(key),
	            (const char *)val, sizeof(val), &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_put(%s, meta): %s", sh->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	return PA_OK;
}

static int
open_shard(struct spool *spool, struct spool_shard *sh, const rocksdb_options_t *options,
           unsigned ring_size, char *err, size_t errlen)
{
	char path[SPOOL_PATH_MAX];

	if (spool_db_path(path, sizeof(path), spool->dir, sh->index) != PA_OK) {
		snprintf(err, errlen, "spool_open: directory name too long: %s", spool->dir);
		return PA_ERROR;
	}
	sh->path = strdup(path);
	if (sh->path == NULL) {
		snprintf(err, errlen, "strdup: %s", strerror(errno));
		return PA_ERROR;
	}
	sh->db = spool_db_open(options, path, false, err, errlen);
	if (sh->db == NULL || init_meta(spool, sh, err, errlen) != PA_OK)
		return PA_ERROR;
	if (sh->format == SPOOL_FORMAT_LOG && spool_shard_open_log(sh, err, errlen) != PA_OK)
		return PA_ERROR;
	sh->ring = ring_create(spool, 'q', sh->index, ring_size, err, errlen);
	if (sh->ring == NULL)
		return PA_ERROR;
	sh->capacity = rte_ring_get_capacity(sh->ring);
	if (spool_stream_init(sh, err, errlen) != PA_OK)
		return PA_ERROR;
	sh->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sh->wake_fd == -1) {
		snprintf(err, errlen, "eventfd(%s): %s", path, strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

static void
free_trackers(struct rte_ring *r)
{
	void *t;

	while (rte_ring_dequeue(r, &t) == 0)
		free(t);
}

static void
destroy(struct spool *spool)
{
	for (unsigned i = 0; spool->shards != NULL && i < spool->nshards; i++) {
		struct spool_shard *sh = &spool->shards[i];

		if (sh->thread_started) {
			atomic_store_explicit(&sh->stop, true, memory_order_release);
			spool_committer_wake(sh);
		}
	}
	for (unsigned i = 0; spool->shards != NULL && i < spool->nshards; i++) {
		struct spool_shard *sh = &spool->shards[i];

		if (sh->thread_started)
			spool_committer_join(sh);
		if (sh->db != NULL)
			rocksdb_close(sh->db);
		seglog_close(sh->log);
		free(sh->log_dir);
		free(sh->reclaim_box.numbers);
		rte_ring_free(sh->ring);
		spool_stream_fini(sh);
		if (sh->wake_fd != -1)
			close(sh->wake_fd);
		free(sh->path);
	}
	for (unsigned i = 0; spool->workers != NULL && i < spool->nworkers; i++) {
		struct spool_worker *w = &spool->workers[i];

		/* Completions nobody polled: the worker is gone, so are its sessions. */
		if (w->done != NULL)
			free_trackers(w->done);
		rte_ring_free(w->done);
	}
	if (spool->write_options != NULL)
		rocksdb_writeoptions_destroy(spool->write_options);
	spool_health_fini(spool);
	free(spool->shards);
	free(spool->workers);
	free(spool->dir);
	free(spool);
}

static int
open_all(struct spool *spool, const struct spool_config *config, char *err, size_t errlen)
{
	rocksdb_options_t *options;
	int rc = PA_OK;

	/*
	 * Only pigeond's user may read the spool (docs/security.md, "Privileges").
	 * Every level made here is synced with its parent before a shard exists.
	 */
	if (pa_mkdir_durable(config->dir, 0700, NULL, err, errlen) != PA_OK)
		return PA_ERROR;
	options = spool_db_options(true);
	/* Shard 0 first: its meta record refuses a changed shard count before anything is created.
	 */
	for (unsigned i = 0; i < spool->nshards && rc == PA_OK; i++)
		rc = open_shard(spool, &spool->shards[i], options, config->ring_size, err, errlen);
	rocksdb_options_destroy(options);
	/*
	 * RocksDB syncs the entries it makes inside a shard's directory, but not
	 * the shard directory's own name in the spool directory: without this,
	 * a power cut soon after a shard was created could take back shard-NNN
	 * and every message acknowledged in it.  Done on every open (one fsync),
	 * since a shard may have been created by an open that was cut short.
	 */
	if (rc == PA_OK)
		rc = pa_fsync_dir(config->dir, err, errlen);
	for (unsigned i = 0; i < spool->nworkers && rc == PA_OK; i++) {
		struct spool_worker *w = &spool->workers[i];

		w->done = ring_create(spool, 'c', i, config->ring_size, err, errlen);
		if (w->done == NULL)
			return PA_ERROR;
		w->capacity = rte_ring_get_capacity(w->done);
	}
	for (unsigned i = 0; i < spool->nshards && rc == PA_OK; i++)
		rc = spool_committer_start(&spool->shards[i], err, errlen);
	return rc;
}

int
spool_open(struct spool **out, const struct spool_config *config, char *err, size_t errlen)
{
	struct spool *spool;

	*out = NULL;
	if (check_config(config, err, errlen) != PA_OK)
		return PA_ERROR;
	spool = calloc(1, sizeof(*spool));
	if (spool == NULL) {
		snprintf(err, errlen, "calloc: %s", strerror(errno));
		return PA_ERROR;
	}
	spool->nshards = config->shards;
	spool->nworkers = config->workers;
	spool->format = config->format != 0 ? config->format : SPOOL_FORMAT_VERSION;
	spool->segment_size = config->segment_size;
	spool->idle_poll_us = config->idle_poll_us;
	spool->linger_us = config->idle_poll_us == 0 ? config->linger_us : 0;
	if (config->committer_cpus != NULL) {
		spool->pin_committers = true;
		spool->committer_cpus = *config->committer_cpus;
	}
	spool->dir = strdup(config->dir);
	spool->shards = aligned_alloc(SPOOL_CACHE_LINE, config->shards * sizeof(*spool->shards));
	spool->workers = aligned_alloc(SPOOL_CACHE_LINE, config->workers * sizeof(*spool->workers));
	spool->write_options = rocksdb_writeoptions_create();
	if (spool->shards != NULL)
		memset(spool->shards, 0, config->shards * sizeof(*spool->shards));
	if (spool->workers != NULL)
		memset(spool->workers, 0, config->workers * sizeof(*spool->workers));
	for (unsigned i = 0; spool->shards != NULL && i < config->shards; i++) {
		struct spool_shard *sh = &spool->shards[i];

		sh->spool = spool;
		sh->index = i;
		sh->wake_fd = -1;
	}
	for (unsigned i = 0; spool->workers != NULL && i < config->workers; i++)
		spool->workers[i].notify_fd = -1;
	atomic_init(&spool->stream_fd, -1);
	if (spool->dir == NULL || spool->shards == NULL || spool->workers == NULL) {
		snprintf(err, errlen, "spool_open: out of memory");
		destroy(spool);
		return PA_ERROR;
	}
	/* The promise of a PA_OK completion: every commit is fsynced through the WAL. */
	rocksdb_writeoptions_set_sync(spool->write_options, 1);
	rocksdb_writeoptions_disable_WAL(spool->write_options, 0);
	if (spool_health_init(spool, config, err, errlen) != PA_OK ||
	    open_all(spool, config, err, errlen) != PA_OK) {
		destroy(spool);
		return PA_ERROR;
	}
	*out = spool;
	return PA_OK;
}

void
spool_close(struct spool *spool)
{
	if (spool == NULL)
		return;
	atomic_store_explicit(&spool->closing, true, memory_order_release);
	/* destroy() stops each committer only after it has drained its ring. */
	destroy(spool);
}

int
spool_attach_worker(struct spool *spool, unsigned worker, int notify_fd, bool may_syscall)
{
	struct spool_worker *w;

	if (worker >= spool->nworkers)
		return PA_ERROR;
	w = &spool->workers[worker];
	w->notify_fd = notify_fd;
	w->may_syscall = may_syscall;
	w->attached = true;
	if (!may_syscall && spool->idle_poll_us > 0) {
		atomic_store_explicit(&spool->poll_workers, true, memory_order_release);
		/* Committers in a long idle sleep switch to short ones now, not after it. */
		for (unsigned i = 0; i < spool->nshards; i++)
			spool_committer_wake(&spool->shards[i]);
	}
	return PA_OK;
}

static bool
reserve(struct spool_shard *sh)
{
	unsigned cur = atomic_load_explicit(&sh->reserved, memory_order_acquire);

	do {
		if (cur >= sh->capacity)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
	    &sh->reserved, &cur, cur + 1, memory_order_acquire, memory_order_acquire));
	return true;
}

static void
unreserve(struct spool_shard *sh)
{
	atomic_fetch_sub_explicit(&sh->reserved, 1, memory_order_release);
}

static bool
message_valid(const struct spool_message *m)
{
	const struct smtp_message *msg = m == NULL ? NULL : m->msg;

	if (msg == NULL || msg->queue_id == NULL || msg->rcpts == NULL || msg->nrcpt == 0 ||
	    (msg->data == NULL && msg->size != 0))
		return false;
	if (!spool_queue_id_valid(msg->queue_id, strlen(msg->queue_id)))
		return false;
	for (size_t i = 0; i < msg->nrcpt; i++)
		if (msg->rcpts[i] == NULL)
			return false;
	return true;
}

/* Groups the recipients by shard: one request per distinct shard, in first-seen order. */
static struct spool_tracker *
tracker_new(const struct spool *spool, unsigned worker, const struct spool_message *m)
{
	const struct smtp_message *msg = m->msg;
	size_t maxreq = msg->nrcpt < spool->nshards ? msg->nrcpt : spool->nshards;
	struct spool_tracker *t;
	uint64_t seen[SPOOL_MAX_SHARDS / 64] = {0};

	t = malloc(sizeof(*t) + maxreq * sizeof(t->req[0]) + msg->nrcpt * sizeof(uint16_t));
	if (t == NULL)
		return NULL;
	t->message = m;
	t->worker = worker;
	t->status = PA_ERROR;
	t->nreq = 0;
	t->rcpt_shard = (uint16_t *)&t->req[maxreq];
	for (size_t i = 0; i < msg->nrcpt; i++) {
		const char *rcpt = msg->rcpts[i];
		unsigned s = spool_shard_of(spool->nshards, rcpt, strlen(rcpt));

		t->rcpt_shard[i] = (uint16_t)s;
		if ((seen[s / 64] >> (s % 64) & 1) == 0) {
			seen[s / 64] |= UINT64_C(1) << (s % 64);
			t->req[t->nreq++] = (struct spool_request){t, s};
		}
	}
	atomic_init(&t->remaining, t->nreq);
	atomic_init(&t->failed, false);
	return t;
}

int
spool_submit(struct spool *spool, unsigned worker, const struct spool_message *message)
{
	struct spool_worker *w;
	struct spool_tracker *t;
	unsigned got = 0;

	if (worker >= spool->nworkers || !spool->workers[worker].attached ||
	    atomic_load_explicit(&spool->closing, memory_order_relaxed) || !message_valid(message))
		return PA_ERROR;
	w = &spool->workers[worker];
	if (w->outstanding >= w->capacity)
		return PA_AGAIN;
	t = tracker_new(spool, worker, message);
	if (t == NULL)
		return PA_ERROR;
	while (got < t->nreq && reserve(&spool->shards[t->req[got].shard]))
		got++;
	if (got < t->nreq) {
		while (got > 0)
			unreserve(&spool->shards[t->req[--got].shard]);
		free(t);
		return PA_AGAIN;
	}
	for (unsigned i = 0; i < t->nreq; i++) {
		/* Cannot fail: the slot was reserved above. */
		if (rte_ring_enqueue(spool->shards[t->req[i].shard].ring, &t->req[i]) != 0) {
			fprintf(stderr,
			        "spool: rte_ring_enqueue(shard %u) failed on a reserved "
			        "slot; aborting\n",
			        t->req[i].shard);
			abort();
		}
	}
	w->outstanding++;
	if (w->may_syscall) {
		/* Pairs with the committer's fence between setting sleeping and re-checking its
		 * ring. */
		atomic_thread_fence(memory_order_seq_cst);
		for (unsigned i = 0; i < t->nreq; i++) {
			struct spool_shard *sh = &spool->shards[t->req[i].shard];

			if (atomic_load_explicit(&sh->sleeping, memory_order_relaxed))
				spool_committer_wake(sh);
		}
	} else if (spool->idle_poll_us == 0) {
		/* The doorbell is rung by the next spool_poll(), once for the whole burst. */
		for (unsigned i = 0; i < t->nreq; i++)
			w->ring[t->req[i].shard / 64] |= UINT64_C(1) << (t->req[i].shard % 64);
		w->ring_pending = true;
	}
	return PA_OK;
}

/*
 * The doorbell of a poll-mode worker: the committers it submitted to since
 * its last call, and that announced they sleep, get one eventfd write each.
 * A busy committer (in its sync, or taking the next group) has not announced
 * it, so under load this is a fence and a load per shard, no system call.
 */
static void
ring_doorbells(struct spool *spool, struct spool_worker *w)
{
	/* Pairs with the committer's fence between setting sleeping and re-checking its ring. */
	atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < (spool->nshards + 63) / 64; i++) {
		while (w->ring[i] != 0) {
			struct spool_shard *sh =
			    &spool->shards[i * 64 + (unsigned)__builtin_ctzll(w->ring[i])];

			w->ring[i] &= w->ring[i] - 1;
			if (atomic_load_explicit(&sh->sleeping, memory_order_relaxed)) {
				atomic_fetch_add_explicit(&sh->doorbells, 1, memory_order_relaxed);
				spool_committer_wake(sh);
			}
		}
	}
	w->ring_pending = false;
}

unsigned
spool_poll(struct spool *spool, unsigned worker, struct spool_completion *out, unsigned max)
{
	struct spool_worker *w;
	unsigned got = 0;

	if (worker >= spool->nworkers)
		return 0;
	w = &spool->workers[worker];
	if (w->done == NULL)
		return 0;
	if (w->ring_pending)
		ring_doorbells(spool, w);
	while (got < max) {
		void *objs[POLL_BURST];
		unsigned want = max - got < POLL_BURST ? max - got : POLL_BURST;
		unsigned n = rte_ring_dequeue_burst(w->done, objs, want, NULL);

		for (unsigned i = 0; i < n; i++) {
			struct spool_tracker *t = objs[i];

			out[got++] = (struct spool_completion){t->message->cookie, t->status};
			free(t);
		}
		w->outstanding -= n;
		if (n < want)
			break;
	}
	return got;
}

void
spool_shard_stats(const struct spool *spool, unsigned shard, struct spool_shard_stats *out)
{
	const struct spool_shard *sh;

	memset(out, 0, sizeof(*out));
	if (shard >= spool->nshards)
		return;
	sh = &spool->shards[shard];
	out->commits = atomic_load_explicit(&sh->commits, memory_order_relaxed);
	out->messages = atomic_load_explicit(&sh->messages, memory_order_relaxed);
	out->failures = atomic_load_explicit(&sh->failures, memory_order_relaxed);
	out->bytes = atomic_load_explicit(&sh->bytes, memory_order_relaxed);
	out->stalls = atomic_load_explicit(&sh->stalls, memory_order_relaxed);
	out->write_errors = atomic_load_explicit(&sh->write_errors, memory_order_relaxed);
	out->reopens = atomic_load_explicit(&sh->reopens, memory_order_relaxed);
	out->recoveries = atomic_load_explicit(&sh->recoveries, memory_order_relaxed);
	out->streamed = atomic_load_explicit(&sh->streamed, memory_order_relaxed);
	out->stream_overflow = atomic_load_explicit(&sh->stream_overflow, memory_order_relaxed);
	out->doorbells = atomic_load_explicit(&sh->doorbells, memory_order_relaxed);
	for (unsigned i = 0; i < SPOOL_GROUP_BUCKETS; i++)
		out->groups[i] = atomic_load_explicit(&sh->groups[i], memory_order_relaxed);
	out->healthy = atomic_load_explicit(&sh->health, memory_order_acquire) == SPOOL_SHARD_OK;
}
