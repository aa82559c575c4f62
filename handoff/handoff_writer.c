/*
 * handoff_writer.c: the hand-off engine's outcome writer, a thread of its
 * own ("handoff-wal") so that the socket loop never waits for the spool,
 * and its syncer ("handoff-sync").
 *
 * The engine gathers a turn's outcomes per shard in a batch and hands it
 * over (ho_flush()); the writer writes it into the shard unsynced (the WAL
 * file: a crash of pigeond keeps it) and tells the engine which generation
 * of the shard is written; the syncer syncs every shard written to within
 * HO_WAL_SYNC_US.  Appending to a WAL that a sync (ours or a committer's)
 * is flushing can wait for that sync on some disks: here that stalls no
 * socket.  The syncs have a thread of their own because a connection's
 * next body waits for its previous outcome's write (docs/handoff.md):
 * when the writer also synced, every such body waited for the syncs of
 * every shard in a row (3.6-6.1 ms each measured, docs/benchmarks.md).
 *
 * What it promises: batches of a shard are written in the order handed
 * over; written_gen[s] = G only once every batch up to generation G is in
 * the shard (so a copy whose outcome has generation G may be forgotten, and
 * a connection waiting for G may start its next transaction); stop writes
 * and syncs everything handed over or still gathered.
 */
#include "handoff/handoff_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"

/* Syncs every shard written to since its last sync. */
static void
sync_written(struct handoff *h)
{
	char err[512];

	for (unsigned s = 0; s < h->nshards; s++)
		if (atomic_exchange_explicit(&h->unsynced[s], false, memory_order_acq_rel) &&
		    hs_sync(h->spool, s, err, sizeof(err)) != PA_OK)
			/* Still in the WAL file: lost only with power, and then sent again. */
			pa_log_err("hand-off: %s", err);
}

/* Writes what was handed over; true when it wrote anything. */
static bool
write_handed(struct handoff *h)
{
	char err[512];
	bool wrote = false;

	for (unsigned s = 0; s < h->nshards; s++) {
		uint64_t gen;

		pthread_mutex_lock(&h->wlock);
		if (!h->wbusy[s]) {
			pthread_mutex_unlock(&h->wlock);
			continue;
		}
		gen = h->handed_gen[s];
		pthread_mutex_unlock(&h->wlock);
		/* The engine does not touch wbatch[s] while wbusy[s]. */
		if (hs_write_unsynced(h->spool, s, h->wbatch[s], err, sizeof(err)) != PA_OK)
			/* Not recorded: those copies go out again (at least once). */
			pa_log_err("hand-off: %s", err);
		else
			atomic_store_explicit(&h->unsynced[s], true, memory_order_release);
		pthread_mutex_lock(&h->wlock);
		h->wbusy[s] = false;
		pthread_mutex_unlock(&h->wlock);
		atomic_store_explicit(&h->written_gen[s], gen, memory_order_release);
		wrote = true;
	}
	return wrote;
}

static void *
writer_main(void *arg)
{
	struct handoff *h = arg;

	for (;;) {
		bool stop, any = false;

		pthread_mutex_lock(&h->wlock);
		for (;;) {
			for (unsigned s = 0; s < h->nshards && !any; s++)
				any = h->wbusy[s];
			stop = h->wstop;
			if (any || stop)
				break;
			pthread_cond_wait(&h->wcond, &h->wlock); /* ho_flush() or stop */
		}
		pthread_mutex_unlock(&h->wlock);
		if (write_handed(h))
			ho_wake(h); /* connections and copies waiting for these */
		if (stop)
			break;
	}
	return NULL;
}

static void *
syncer_main(void *arg)
{
	struct handoff *h = arg;

	for (;;) {
		struct timespec ts;
		bool stop;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(HO_WAL_SYNC_US % 1000000u) * 1000;
		ts.tv_sec += (time_t)(HO_WAL_SYNC_US / 1000000u) + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_mutex_lock(&h->wlock);
		if (!h->wstop)
			pthread_cond_timedwait(&h->scond, &h->wlock, &ts);
		stop = h->wstop;
		pthread_mutex_unlock(&h->wlock);
		if (stop)
			break; /* ho_writer_stop() syncs last, after the last write */
		sync_written(h);
	}
	return NULL;
}

int
ho_writer_start(struct handoff *h, char *err, size_t errlen)
{
	int rc = pthread_create(&h->wthread, NULL, writer_main, h);

	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(hand-off writer): %s", strerror(rc));
		return PA_ERROR;
	}
	h->wstarted = true;
	/* Only a name for top and gdb. */
	pthread_setname_np(h->wthread, "handoff-wal");
	rc = pthread_create(&h->sthread, NULL, syncer_main, h);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(hand-off syncer): %s", strerror(rc));
		ho_writer_stop(h);
		return PA_ERROR;
	}
	h->sstarted = true;
	pthread_setname_np(h->sthread, "handoff-sync");
	return PA_OK;
}

void
ho_writer_stop(struct handoff *h)
{
	char err[512];

	pthread_mutex_lock(&h->wlock);
	h->wstop = true;
	pthread_cond_signal(&h->wcond);
	pthread_cond_signal(&h->scond);
	pthread_mutex_unlock(&h->wlock);
	if (h->wstarted) {
		pthread_join(h->wthread, NULL);
		h->wstarted = false;
	}
	if (h->sstarted) {
		pthread_join(h->sthread, NULL);
		h->sstarted = false;
	}
	/* The engine has stopped: what it gathered but could not hand over. */
	write_handed(h);
	for (unsigned s = 0; h->batch != NULL && s < h->nshards; s++) {
		if (rocksdb_writebatch_count(h->batch[s]) == 0)
			continue;
		if (hs_write_unsynced(h->spool, s, h->batch[s], err, sizeof(err)) != PA_OK)
			pa_log_err("hand-off: %s", err);
		else
			atomic_store(&h->unsynced[s], true);
	}
	sync_written(h);
}

void
ho_flush(struct handoff *h)
{
	bool handed = false;
	char err[512];

	pthread_mutex_lock(&h->wlock);
	for (unsigned s = 0; s < h->nshards; s++) {
		rocksdb_writebatch_t *b;

		if (!h->dirty[s] && rocksdb_writebatch_count(h->batch[s]) == 0)
			continue;
		if (h->wbusy[s])
			continue; /* the writer is still at the previous one: next turn */
		/*
		 * At once when RocksDB takes it without waiting (a memtable insert
		 * and a WAL append): no thread hand-over for the bodies waiting for
		 * it.  Else the writer thread takes it, as below.
		 */
		if (hs_write_nowait(h->spool, s, h->batch[s], err, sizeof(err)) == PA_OK) {
			h->handed_gen[s]++;
			h->dirty[s] = false;
			atomic_store_explicit(&h->unsynced[s], true, memory_order_release);
			atomic_store_explicit(&h->written_gen[s], h->handed_gen[s],
			                      memory_order_release);
			continue;
		}
		b = h->wbatch[s];
		h->wbatch[s] = h->batch[s];
		h->batch[s] = b;
		rocksdb_writebatch_clear(b);
		h->handed_gen[s]++;
		h->wbusy[s] = true;
		h->dirty[s] = false;
		handed = true;
	}
	if (handed)
		pthread_cond_signal(&h->wcond);
	pthread_mutex_unlock(&h->wlock);
}

uint64_t
ho_outcome_gen(struct handoff *h, unsigned shard)
{
	/* The batch being filled is handed over with the next generation. */
	h->dirty[shard] = true;
	return h->handed_gen[shard] + 1;
}

bool
ho_written(const struct handoff *h, unsigned shard, uint64_t gen)
{
	struct handoff *m = (struct handoff *)h; /* an atomic read */

	return atomic_load_explicit(&m->written_gen[shard], memory_order_acquire) >= gen;
}
