/*
 * spool_health.c: what a shard does when its disk or RocksDB fails.
 *
 * What it promises:
 *  - A commit is reported successful only when RocksDB's synced write
 *    returned OK (rule 1 is untouched); everything else fails the batch,
 *    whose clients get 451 and retry.
 *  - The committer never waits on a stall for longer than stall_timeout: it
 *    writes with no_slowdown (RocksDB returns "Write stall" at once instead
 *    of blocking) and retries with a short sleep until the deadline.
 *  - A failed or stalled shard is unhealthy until a probe write (a WAL-only
 *    LogData record, synced) succeeds.  The gate workers read is one atomic
 *    counter of unhealthy shards: no lock, no system call on a poll-mode core.
 *  - RocksDB stays in its read-only background-error state after ENOSPC and
 *    7.8's C API has no DB::Resume(), so a shard whose probe still fails
 *    once the disk has room again is closed and opened again by its own
 *    committer thread (never by a worker), under db_lock held exclusively;
 *    opening replays the WAL (point-in-time recovery stops at the torn tail
 *    of the failed write, which no client saw acknowledged).
 *  - The backpressure flags (spool_set_backpressure()) live here beside the
 *    health gate, read the same way: one atomic load per check.
 */
#include "spool/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "spool/spool_db.h"

#define DEFAULT_STALL_TIMEOUT_MS 1000u
#define DEFAULT_RETRY_MS 1000u
#define STALL_SLEEP_MIN_US 1000u
#define STALL_SLEEP_MAX_US 50000u
/*
 * Opening writes RocksDB's LOG header, a new WAL and MANIFEST and flushes
 * the replayed memtable; on a disk without room for that the open fails
 * half-way, so a reopen waits until at least this much is free.
 */
#define REOPEN_MIN_FREE (8u << 20)
#define PROBE_RECORD "pigeonair-probe"

enum write_result { WRITE_OK, WRITE_STALL, WRITE_ERROR };

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* "fail=N": the first N writes fail; "stall=MS": writes stall for MS ms from the first. */
static int
parse_impair(struct spool *spool, const char *impair, char *err, size_t errlen)
{
	char *end;
	unsigned long v;

	if (impair == NULL || impair[0] == '\0')
		return PA_OK;
	if (strncmp(impair, "fail=", 5) == 0 || strncmp(impair, "stall=", 6) == 0) {
		const char *num = strchr(impair, '=') + 1;

		errno = 0;
		v = strtoul(num, &end, 10);
		if (num[0] >= '0' && num[0] <= '9' && *end == '\0' && errno == 0 && v <= 1000000u) {
			if (impair[0] == 'f')
				spool->impair_fail = (unsigned)v;
			else
				spool->impair_stall_us = (uint64_t)v * 1000u;
			return PA_OK;
		}
	}
	snprintf(err, errlen, "spool_open: impair '%s' is not fail=N or stall=MS", impair);
	return PA_ERROR;
}

int
spool_health_init(struct spool *spool, const struct spool_config *config, char *err, size_t errlen)
{
	uint64_t now = pa_wall_clock_us();

	spool->stall_timeout_us = (uint64_t)(config->stall_timeout_ms ? config->stall_timeout_ms
	                                                              : DEFAULT_STALL_TIMEOUT_MS) *
	                          1000u;
	spool->retry_us =
	    (uint64_t)(config->retry_ms ? config->retry_ms : DEFAULT_RETRY_MS) * 1000u;
	if (parse_impair(spool, config->impair, err, errlen) != PA_OK)
		return PA_ERROR;
	spool->commit_options = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(spool->commit_options, 1);
	rocksdb_writeoptions_disable_WAL(spool->commit_options, 0);
	/* A stalled write returns Status::Incomplete("Write stall") instead of blocking. */
	rocksdb_writeoptions_set_no_slowdown(spool->commit_options, 1);
	/* Format 2: the segment log's fdatasync made the copies durable; RocksDB's WAL need not. */
	spool->index_options = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(spool->index_options, 0);
	rocksdb_writeoptions_disable_WAL(spool->index_options, 0);
	rocksdb_writeoptions_set_no_slowdown(spool->index_options, 1);
	atomic_init(&spool->unhealthy, 0);
	for (unsigned i = 0; i < spool->nshards; i++) {
		struct spool_shard *sh = &spool->shards[i];
		int rc = pthread_mutex_init(&sh->error_lock, NULL);

		if (rc == 0) {
			/* Readers' preference: the engine's nested reads never wait on a reopen. */
			rc = pthread_rwlock_init(&sh->db_lock, NULL);
			if (rc != 0)
				pthread_mutex_destroy(&sh->error_lock);
		}
		if (rc != 0) {
			snprintf(err, errlen, "pthread_rwlock_init(shard %u): %s", i, strerror(rc));
			return PA_ERROR;
		}
		sh->locks_made = true;
		atomic_init(&sh->health, SPOOL_SHARD_OK);
		atomic_init(&sh->health_since_us, now);
	}
	return PA_OK;
}

void
spool_health_fini(struct spool *spool)
{
	for (unsigned i = 0; spool->shards != NULL && i < spool->nshards; i++) {
		struct spool_shard *sh = &spool->shards[i];

		if (!sh->locks_made)
			continue;
		pthread_mutex_destroy(&sh->error_lock);
		pthread_rwlock_destroy(&sh->db_lock);
		sh->locks_made = false;
	}
	if (spool->commit_options != NULL)
		rocksdb_writeoptions_destroy(spool->commit_options);
	spool->commit_options = NULL;
	if (spool->index_options != NULL)
		rocksdb_writeoptions_destroy(spool->index_options);
	spool->index_options = NULL;
}

/* Moves the shard to state; the gate's counter follows the OK/not-OK edge only. */
static void
set_state(struct spool_shard *sh, enum spool_shard_state state, const char *why)
{
	struct spool *spool = sh->spool;
	int old = atomic_exchange_explicit(&sh->health, (int)state, memory_order_acq_rel);

	if (why != NULL) {
		pthread_mutex_lock(&sh->error_lock);
		snprintf(sh->last_error, sizeof(sh->last_error), "%s", why);
		pthread_mutex_unlock(&sh->error_lock);
	}
	if (old == (int)state)
		return;
	atomic_store_explicit(&sh->health_since_us, pa_wall_clock_us(), memory_order_relaxed);
	if (old == SPOOL_SHARD_OK) {
		atomic_fetch_add_explicit(&spool->unhealthy, 1, memory_order_release);
		pa_log_err("spool: shard %u %s: new mail gets 451, new connections 421 until it "
		           "recovers: %s",
		           sh->index, spool_shard_state_name(state), why != NULL ? why : "");
	} else if (state == SPOOL_SHARD_OK) {
		atomic_fetch_sub_explicit(&spool->unhealthy, 1, memory_order_release);
		atomic_fetch_add_explicit(&sh->recoveries, 1, memory_order_relaxed);
		pa_log_notice("spool: shard %u healthy again: accepting mail", sh->index);
	} else {
		pa_log_err("spool: shard %u %s: %s", sh->index, spool_shard_state_name(state),
		           why != NULL ? why : "");
	}
}

/* tests/integration/test_faults.py's faults, counted over every shard's writes. */
static enum write_result
impaired(struct spool *spool, char *msg, size_t msglen)
{
	if (spool->impair_fail > 0 &&
	    atomic_fetch_add_explicit(&spool->impair_writes, 1, memory_order_relaxed) <
	        spool->impair_fail) {
		snprintf(msg, msglen, "IO error: injected by spool.impair");
		return WRITE_ERROR;
	}
	if (spool->impair_stall_us > 0) {
		uint64_t now = mono_us(), start = 0;

		if (atomic_compare_exchange_strong(&spool->impair_start_us, &start, now))
			start = now;
		if (now - start < spool->impair_stall_us) {
			snprintf(msg, msglen, "Result incomplete: Write stall (spool.impair)");
			return WRITE_STALL;
		}
	}
	return WRITE_OK;
}

static enum write_result
write_once(struct spool_shard *sh, const rocksdb_writeoptions_t *options, rocksdb_writebatch_t *b,
           char *msg, size_t msglen)
{
	enum write_result r = impaired(sh->spool, msg, msglen);
	char *rerr = NULL;

	if (r != WRITE_OK)
		return r;
	rocksdb_write(sh->db, options, b, &rerr);
	if (rerr == NULL)
		return WRITE_OK;
	snprintf(msg, msglen, "rocksdb_write(%s): %s", sh->path, rerr);
	/* Status::Incomplete is what no_slowdown returns for a write RocksDB would delay. */
	r = strncmp(rerr, "Result incomplete", 17) == 0 ? WRITE_STALL : WRITE_ERROR;
	rocksdb_free(rerr);
	return r;
}

static bool
write_batch(struct spool_shard *sh, const rocksdb_writeoptions_t *options, rocksdb_writebatch_t *b)
{
	uint64_t deadline = mono_us() + sh->spool->stall_timeout_us;
	unsigned sleep_us = STALL_SLEEP_MIN_US;
	char msg[sizeof(sh->last_error)];

	/* Unhealthy: RocksDB would refuse anyway; the probe alone tries again. */
	if (atomic_load_explicit(&sh->health, memory_order_acquire) != SPOOL_SHARD_OK)
		return false;
	for (;;) {
		enum write_result r = write_once(sh, options, b, msg, sizeof(msg));
		uint64_t now;

		if (r == WRITE_OK)
			return true;
		now = mono_us();
		if (r == WRITE_ERROR) {
			atomic_fetch_add_explicit(&sh->write_errors, 1, memory_order_relaxed);
			sh->next_probe_us = now + sh->spool->retry_us;
			set_state(sh, SPOOL_SHARD_FAILED, msg);
			return false;
		}
		if (now >= deadline) {
			atomic_fetch_add_explicit(&sh->stalls, 1, memory_order_relaxed);
			sh->next_probe_us = now + sh->spool->retry_us;
			set_state(sh, SPOOL_SHARD_STALLED, msg);
			return false;
		}
		nanosleep(&(struct timespec){0, (long)sleep_us * 1000}, NULL);
		sleep_us = sleep_us * 2 > STALL_SLEEP_MAX_US ? STALL_SLEEP_MAX_US : sleep_us * 2;
	}
}

bool
spool_shard_write(struct spool_shard *sh, rocksdb_writebatch_t *b)
{
	return write_batch(sh, sh->spool->commit_options, b);
}

bool
spool_shard_write_index(struct spool_shard *sh, rocksdb_writebatch_t *b)
{
	return write_batch(sh, sh->spool->index_options, b);
}

void
spool_shard_log_failed(struct spool_shard *sh, const char *why)
{
	atomic_fetch_add_explicit(&sh->write_errors, 1, memory_order_relaxed);
	sh->next_probe_us = mono_us() + sh->spool->retry_us;
	set_state(sh, SPOOL_SHARD_FAILED, why);
}

/* A synced WAL record that adds no key: what a commit needs, without touching the data. */
static enum write_result
probe(struct spool_shard *sh, char *msg, size_t msglen)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	enum write_result r;

	rocksdb_writebatch_put_log_data(b, PROBE_RECORD, sizeof(PROBE_RECORD) - 1);
	r = write_once(sh, sh->spool->commit_options, b, msg, msglen);
	rocksdb_writebatch_destroy(b);
	return r;
}

static bool
disk_has_room(const struct spool *spool)
{
	struct statvfs vfs;

	if (statvfs(spool->dir, &vfs) == -1) {
		pa_log_err("spool: statvfs(%s) failed: %s", spool->dir, strerror(errno));
		return false;
	}
	return (uint64_t)vfs.f_bavail * vfs.f_frsize >= REOPEN_MIN_FREE;
}

/* Closes and opens the shard again; the WAL replay brings back everything synced. */
static bool
reopen(struct spool_shard *sh, char *msg, size_t msglen)
{
	rocksdb_options_t *options = spool_db_options(true);
	struct spool_meta meta;
	bool found = false;
	rocksdb_t *db;

	pthread_rwlock_wrlock(&sh->db_lock);
	if (sh->db != NULL)
		rocksdb_close(sh->db);
	sh->db = NULL;
	db = spool_db_open(options, sh->path, false, msg, msglen);
	rocksdb_options_destroy(options);
	if (db != NULL &&
	    (spool_db_read_meta(db, sh->path, &meta, &found, msg, msglen) != PA_OK ||
	     (found
	          ? spool_db_check_meta(&meta, sh->path, sh->spool->nshards, sh->index, msg, msglen)
	          : (snprintf(msg, msglen, "%s: no meta record after reopen", sh->path),
	             PA_ERROR)) != PA_OK)) {
		rocksdb_close(db);
		db = NULL;
	}
	sh->db = db;
	/* Nothing of the new db is known synced yet (spool_shard_sync_wal() publishes it). */
	atomic_store_explicit(&sh->wal_synced_seq, 0, memory_order_relaxed);
	pthread_rwlock_unlock(&sh->db_lock);
	if (db == NULL)
		return false;
	atomic_fetch_add_explicit(&sh->reopens, 1, memory_order_relaxed);
	pa_log_notice("spool: shard %u closed and opened again (%s)", sh->index, sh->path);
	return true;
}

void
spool_shard_recover(struct spool_shard *sh)
{
	int state = atomic_load_explicit(&sh->health, memory_order_acquire);
	char msg[sizeof(sh->last_error)];
	enum write_result r = WRITE_ERROR;
	uint64_t now;

	if (state == SPOOL_SHARD_OK)
		return;
	now = mono_us();
	if (now < sh->next_probe_us)
		return;
	sh->next_probe_us = now + sh->spool->retry_us;
	snprintf(msg, sizeof(msg), "%s: not open", sh->path);
	if (sh->db != NULL)
		r = probe(sh, msg, sizeof(msg));
	if (r == WRITE_ERROR && state == SPOOL_SHARD_FAILED && disk_has_room(sh->spool)) {
		if (reopen(sh, msg, sizeof(msg)))
			r = probe(sh, msg, sizeof(msg));
		else
			pa_log_err("spool: shard %u: reopen failed: %s", sh->index, msg);
	}
	if (r == WRITE_OK)
		set_state(sh, SPOOL_SHARD_OK, NULL);
	else if (r == WRITE_STALL)
		set_state(sh, SPOOL_SHARD_STALLED, msg);
	else if (state != SPOOL_SHARD_FAILED)
		set_state(sh, SPOOL_SHARD_FAILED, msg);
}

rocksdb_t *
spool_shard_db_acquire(struct spool_shard *sh, char *err, size_t errlen)
{
	pthread_rwlock_rdlock(&sh->db_lock);
	if (sh->db != NULL)
		return sh->db;
	pthread_rwlock_unlock(&sh->db_lock);
	snprintf(err, errlen, "%s: not open (being reopened after a failure)", sh->path);
	return NULL;
}

void
spool_shard_db_release(struct spool_shard *sh)
{
	pthread_rwlock_unlock(&sh->db_lock);
}

bool
spool_set_backpressure(struct spool *spool, unsigned shard, bool full)
{
	bool was;

	if (spool == NULL || shard >= spool->nshards)
		return false;
	was = atomic_exchange_explicit(&spool->shards[shard].full, full, memory_order_acq_rel);
	if (was != full) {
		if (full)
			atomic_fetch_add_explicit(&spool->full_shards, 1, memory_order_release);
		else
			atomic_fetch_sub_explicit(&spool->full_shards, 1, memory_order_release);
	}
	return was;
}

bool
spool_shard_full(const struct spool *spool, unsigned shard)
{
	return spool != NULL && shard < spool->nshards &&
	       atomic_load_explicit(&((struct spool *)spool)->shards[shard].full,
	                            memory_order_acquire);
}

bool
spool_full(const struct spool *spool)
{
	return spool != NULL && spool->nshards > 0 &&
	       atomic_load_explicit(&((struct spool *)spool)->full_shards, memory_order_acquire) ==
	           spool->nshards;
}

bool
spool_healthy(const struct spool *spool)
{
	return spool == NULL ||
	       atomic_load_explicit(&((struct spool *)spool)->unhealthy, memory_order_acquire) == 0;
}

bool
spool_shard_healthy(const struct spool *spool, unsigned shard)
{
	if (spool == NULL || shard >= spool->nshards)
		return true;
	return atomic_load_explicit(&((struct spool *)spool)->shards[shard].health,
	                            memory_order_acquire) == SPOOL_SHARD_OK;
}

const char *
spool_shard_state_name(enum spool_shard_state state)
{
	switch (state) {
	case SPOOL_SHARD_OK:
		return "ok";
	case SPOOL_SHARD_STALLED:
		return "stalled";
	case SPOOL_SHARD_FAILED:
		return "failed";
	}
	return "unknown";
}

void
spool_shard_health(struct spool *spool, unsigned shard, struct spool_shard_health *out)
{
	struct spool_shard *sh;

	memset(out, 0, sizeof(*out));
	if (shard >= spool->nshards)
		return;
	sh = &spool->shards[shard];
	out->state = (enum spool_shard_state)atomic_load(&sh->health);
	out->since_us = atomic_load(&sh->health_since_us);
	pthread_mutex_lock(&sh->error_lock);
	snprintf(out->last_error, sizeof(out->last_error), "%s", sh->last_error);
	pthread_mutex_unlock(&sh->error_lock);
}
