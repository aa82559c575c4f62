/*
 * spool_reclaim.c: a format-2 shard's closed segments are removed once no
 * copy in them is indexed any longer (docs/spool-format.md, "Reclaiming
 * segments"), the shard's log usage is published for spool summary, and
 * the shard's WAL-sync service (spool_shard_sync_wal()) says how far
 * RocksDB's WAL is known to be synced.
 *
 * The shard's committer runs a pass at most once per RECLAIM_INTERVAL_US:
 * an iterator over the 'L' keys (one per indexed copy, deleted by the
 * hand-off with the copy) counts the live copies and bytes per segment, a
 * bounded number of keys per step between groups, so a long queue never
 * holds up a commit for long.  Every segment that was closed when the pass
 * began (no record can have been added to it since, and the index of each
 * record in it was written before, on this same thread) and has no live
 * copy is a candidate.  Candidates are removed only once RocksDB's WAL is
 * synced through the sequence number read when the iterator was made: the
 * deletes the pass saw are then durable, so no index entry that survives a
 * crash points into a removed segment, and neither does the checkpoint
 * (every group's batch moves it past the segments closed before it, and
 * that batch precedes the deletes in the WAL).
 *
 * Neither the WAL sync nor the removal is done on the commit path: the pass
 * posts its candidates in the shard's reclaim_box with that sequence
 * number, and the shard's WAL-sync service (spool_shard_sync_wal(), called
 * by the hand-off's syncer for every shard it wrote outcomes to, within
 * 100 ms: those outcomes are the deletes that empty segments) publishes the
 * sequence each sync covered and, once it covers the box's, unlinks the
 * files and syncs the log's directory, on the syncer's thread.  The
 * committer then only drops them from its list.  When no such sync comes
 * (no hand-off, or the deletes came from elsewhere), the committer does it
 * itself: in its idle time after RECLAIM_GRACE_US, or between groups after
 * RECLAIM_FORCE_US, so a shard that is never idle still reclaims.
 *
 * What it promises: a segment is removed only when closed, empty, and the
 * deletes that emptied it are synced; a pass never spans a reopen of the
 * shard's db (spool_reclaim_abort() withdraws a box not yet taken; a box
 * taken was taken on a sync of the old db, which stands); usage figures
 * are those of the last pass (atomics, read from any thread).
 */
#include "spool/spool_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pa.h"
#include "spool/spool_record.h"

#define RECLAIM_INTERVAL_US 1000000u
#define RECLAIM_STEP 1024         /* 'L' keys per step */
#define RECLAIM_GRACE_US 1000000u /* idle: the committer removes them itself after this */
#define RECLAIM_FORCE_US 5000000u /* busy: ... and after this, between groups */

/* Live copies and record bytes of one segment, as the pass counted them. */
struct use {
	uint64_t segment;
	uint64_t copies;
	uint64_t bytes;
};

enum reclaim_state {
	RECLAIM_RESTING,  /* no pass under way; the next begins at next_us */
	RECLAIM_COUNTING, /* walking the 'L' keys */
	RECLAIM_WAITING,  /* candidates posted in the shard's reclaim_box */
};

struct spool_reclaim {
	enum reclaim_state state;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it; /* COUNTING */
	uint8_t bound[SPOOL_KEY_MAX];
	uint64_t open_from; /* the segments below it were closed when the pass began */
	uint64_t need_seq;  /* RocksDB's last sequence when the iterator was made */
	struct use *use;
	size_t nuse, cap;
	size_t last;         /* use[] entry of the previous key: keys of a segment come in runs */
	uint64_t gone_bytes; /* of the candidates in the box */
	uint64_t wait_since_us;
	uint64_t next_us; /* no pass begins before (monotonic) */
};

struct spool_reclaim *
spool_reclaim_new(void)
{
	struct spool_reclaim *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->ro = rocksdb_readoptions_create();
	/* A pass reads every 'L' key once: it must not evict what the committer uses. */
	rocksdb_readoptions_set_fill_cache(r->ro, 0);
	/* Past every 'L' key: the iterator stops there, not after the tombstones beyond. */
	r->bound[0] = SPOOL_KEY_LOCATION + 1;
	rocksdb_readoptions_set_iterate_upper_bound(r->ro, (const char *)r->bound, 1);
	return r;
}

static void
drop_iterator(struct spool_reclaim *r)
{
	if (r->it != NULL)
		rocksdb_iter_destroy(r->it);
	r->it = NULL;
}

/*
 * A posted box is withdrawn; one taken already was taken on the strength of
 * a sync of this db, so its unlinks stand, and a later step applies it.
 */
void
spool_reclaim_abort(struct spool_shard *sh, struct spool_reclaim *r)
{
	int posted = SPOOL_BOX_POSTED;

	drop_iterator(r);
	r->nuse = 0;
	r->state = RECLAIM_RESTING;
	atomic_compare_exchange_strong_explicit(&sh->reclaim_box.state, &posted, SPOOL_BOX_EMPTY,
	                                        memory_order_acq_rel, memory_order_acquire);
}

void
spool_reclaim_free(struct spool_reclaim *r)
{
	if (r == NULL)
		return;
	drop_iterator(r);
	rocksdb_readoptions_destroy(r->ro);
	free(r->use);
	free(r);
}

static struct use *
use_of(struct spool_reclaim *r, uint64_t segment)
{
	size_t i;

	if (r->last < r->nuse && r->use[r->last].segment == segment)
		return &r->use[r->last];
	for (i = 0; i < r->nuse && r->use[i].segment != segment; i++)
		;
	if (i == r->nuse) {
		if (r->nuse == r->cap) {
			size_t cap = r->cap > 0 ? 2 * r->cap : 64;
			struct use *u = realloc(r->use, cap * sizeof(*u));

			if (u == NULL)
				return NULL;
			r->use = u;
			r->cap = cap;
		}
		r->use[r->nuse++] = (struct use){segment, 0, 0};
	}
	r->last = i;
	return &r->use[i];
}

static void
begin(struct spool_shard *sh, struct spool_reclaim *r)
{
	uint8_t prefix[SPOOL_KEY_MAX];

	r->open_from = seglog_open_from(sh->log);
	r->nuse = 0;
	r->last = 0;
	r->it = rocksdb_create_iterator(sh->db, r->ro);
	/*
	 * Read after the iterator is made: at least the sequence of its
	 * implicit snapshot, so every delete the pass can see is covered.
	 */
	r->need_seq = rocksdb_get_latest_sequence_number(sh->db);
	rocksdb_iter_seek(r->it, (const char *)prefix,
	                  spool_key_prefix(prefix, SPOOL_KEY_LOCATION));
	r->state = RECLAIM_COUNTING;
}

/* Counts up to RECLAIM_STEP keys; false when the pass failed (it is dropped). */
static bool
count(struct spool_shard *sh, struct spool_reclaim *r)
{
	for (unsigned n = 0; n < RECLAIM_STEP && rocksdb_iter_valid(r->it); n++) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(r->it, &klen);
		const char *v = rocksdb_iter_value(r->it, &vlen);
		struct spool_location loc;
		struct use *u;

		if (klen < 1 || (uint8_t)k[0] != SPOOL_KEY_LOCATION)
			break;
		if (spool_record_location_decode((const uint8_t *)v, vlen, &loc) != PA_OK) {
			/* Not understood: nothing is removed on the strength of this pass. */
			pa_log_warning("spool: shard %u: a location does not decode; no segment "
			               "reclaimed",
			               sh->index);
			return false;
		}
		u = use_of(r, loc.segment);
		if (u == NULL)
			return false;
		u->copies++;
		u->bytes += loc.length;
		rocksdb_iter_next(r->it);
	}
	return true;
}

static void
publish_files(struct spool_shard *sh)
{
	const struct seglog_segment *segs;
	size_t nclosed = seglog_closed(sh->log, &segs);
	uint64_t closed = 0;
	struct seglog_stats st;

	for (size_t i = 0; i < nclosed; i++)
		closed += segs[i].size;
	seglog_stats(sh->log, &st);
	atomic_store_explicit(&sh->log_segments, st.segments, memory_order_relaxed);
	atomic_store_explicit(&sh->log_bytes, st.bytes, memory_order_relaxed);
	atomic_store_explicit(&sh->log_closed_bytes, closed, memory_order_relaxed);
}

/*
 * The count is complete: publishes usage and puts the closed segments found
 * empty into the (empty) box; false when there is none (or no memory).
 */
static bool
tally(struct spool_shard *sh, struct spool_reclaim *r)
{
	struct spool_reclaim_box *box = &sh->reclaim_box;
	const struct seglog_segment *segs;
	size_t nclosed = seglog_closed(sh->log, &segs);
	uint64_t live = 0, dead = 0;
	bool ok = true;

	for (size_t i = 0; i < r->nuse; i++)
		live += r->use[i].bytes;
	box->n = 0;
	r->gone_bytes = 0;
	if (nclosed > box->cap) {
		uint64_t *g = realloc(box->numbers, nclosed * sizeof(*g));

		if (g == NULL) {
			ok = false;
		} else {
			box->numbers = g;
			box->cap = nclosed;
		}
	}
	for (size_t i = 0; ok && i < nclosed && segs[i].number < r->open_from; i++) {
		struct use *u = use_of(r, segs[i].number);

		if (u == NULL) {
			ok = false;
		} else if (u->copies == 0) {
			box->numbers[box->n++] = segs[i].number;
			r->gone_bytes += segs[i].size;
		} else if (segs[i].size > u->bytes) {
			dead += segs[i].size - u->bytes;
		}
	}
	if (!ok)
		box->n = 0;
	publish_files(sh);
	atomic_store_explicit(&sh->log_live_bytes, live, memory_order_relaxed);
	/* The candidates stay reclaimable until they are gone. */
	atomic_store_explicit(&sh->log_reclaimable_bytes, dead + r->gone_bytes,
	                      memory_order_relaxed);
	return box->n > 0;
}

/* Any thread: removes the posted segments once the WAL is synced through need_seq. */
static void
take_box(struct spool_shard *sh)
{
	struct spool_reclaim_box *box = &sh->reclaim_box;
	int posted = SPOOL_BOX_POSTED;

	if (atomic_load_explicit(&box->state, memory_order_acquire) != SPOOL_BOX_POSTED ||
	    atomic_load_explicit(&sh->wal_synced_seq, memory_order_acquire) < box->need_seq ||
	    !atomic_compare_exchange_strong_explicit(&box->state, &posted, SPOOL_BOX_TAKEN,
	                                             memory_order_acq_rel, memory_order_acquire))
		return;
	/* A box withdrawn and posted again between the two loads: not this sync's to take. */
	if (atomic_load_explicit(&sh->wal_synced_seq, memory_order_acquire) < box->need_seq) {
		atomic_store_explicit(&box->state, SPOOL_BOX_POSTED, memory_order_release);
		return;
	}
	box->rc =
	    seglog_unlink_segments(sh->log_dir, box->numbers, box->n, box->err, sizeof(box->err));
	atomic_store_explicit(&box->state, SPOOL_BOX_DONE, memory_order_release);
}

/* Committer: the box is DONE; its segments are dropped from the log and counted. */
static void
apply_box(struct spool_shard *sh, struct spool_reclaim *r)
{
	struct spool_reclaim_box *box = &sh->reclaim_box;

	if (box->rc != PA_OK) {
		/* Some may remain: the next pass finds them again. */
		pa_log_warning("spool: shard %u: %s", sh->index, box->err);
	} else {
		seglog_forget(sh->log, box->numbers, box->n);
		atomic_fetch_add_explicit(&sh->log_reclaimed, box->n, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->log_reclaimed_bytes, r->gone_bytes,
		                          memory_order_relaxed);
		atomic_fetch_sub_explicit(&sh->log_reclaimable_bytes, r->gone_bytes,
		                          memory_order_relaxed);
	}
	publish_files(sh);
	atomic_store_explicit(&box->state, SPOOL_BOX_EMPTY, memory_order_release);
}

static void
rest(struct spool_shard *sh, struct spool_reclaim *r, uint64_t now_us)
{
	spool_reclaim_abort(sh, r);
	r->next_us = now_us + RECLAIM_INTERVAL_US;
}

/*
 * WAITING: the hand-off's syncer takes the box after its next sync; only
 * when none came (idle for RECLAIM_GRACE_US, or busy for RECLAIM_FORCE_US)
 * does the committer take it itself, syncing the WAL first if need be.
 */
static void
wait_for_sync(struct spool_shard *sh, struct spool_reclaim *r, uint64_t now_us, bool idle)
{
	uint64_t waited = now_us - r->wait_since_us;
	char err[512];

	if (waited < RECLAIM_FORCE_US && !(idle && waited >= RECLAIM_GRACE_US))
		return;
	if (atomic_load_explicit(&sh->wal_synced_seq, memory_order_acquire) <
	    sh->reclaim_box.need_seq) {
		if (spool_shard_sync_wal(sh->spool, sh->index, err, sizeof(err)) != PA_OK) {
			pa_log_warning("spool: shard %u: no segment reclaimed: %s", sh->index, err);
			rest(sh, r, now_us);
			return;
		}
		atomic_fetch_add_explicit(&sh->log_wal_syncs, 1, memory_order_relaxed);
	}
	take_box(sh); /* nothing left to do when spool_shard_sync_wal() took it */
}

void
spool_reclaim_step(struct spool_shard *sh, struct spool_reclaim *r, uint64_t now_us, bool idle)
{
	struct spool_reclaim_box *box = &sh->reclaim_box;
	int st = atomic_load_explicit(&box->state, memory_order_acquire);
	char *rerr = NULL;

	if (st == SPOOL_BOX_DONE) {
		apply_box(sh, r);
		rest(sh, r, now_us);
		return;
	}
	if (st == SPOOL_BOX_TAKEN)
		return; /* its files are being removed; applied at a later step */
	if (st == SPOOL_BOX_POSTED && r->state != RECLAIM_WAITING) {
		/* Put back by a taker after an abort could not withdraw it: withdrawn now. */
		int posted = SPOOL_BOX_POSTED;

		if (!atomic_compare_exchange_strong_explicit(&box->state, &posted, SPOOL_BOX_EMPTY,
		                                             memory_order_acq_rel,
		                                             memory_order_acquire))
			return;
	}
	switch (r->state) {
	case RECLAIM_RESTING:
		if (now_us < r->next_us)
			return;
		begin(sh, r);
		/* fallthrough */
	case RECLAIM_COUNTING:
		if (!count(sh, r)) {
			rest(sh, r, now_us);
			return;
		}
		if (rocksdb_iter_valid(r->it)) {
			size_t klen;
			const char *k = rocksdb_iter_key(r->it, &klen);

			if (klen >= 1 && (uint8_t)k[0] == SPOOL_KEY_LOCATION)
				return; /* more next step */
		}
		rocksdb_iter_get_error(r->it, &rerr);
		drop_iterator(r);
		if (rerr != NULL) {
			pa_log_warning("spool: shard %u: rocksdb_iter(locations): %s", sh->index,
			               rerr);
			rocksdb_free(rerr);
			rest(sh, r, now_us);
			return;
		}
		if (!tally(sh, r)) {
			rest(sh, r, now_us);
			return;
		}
		sh->reclaim_box.need_seq = r->need_seq;
		atomic_store_explicit(&box->state, SPOOL_BOX_POSTED, memory_order_release);
		r->state = RECLAIM_WAITING;
		r->wait_since_us = now_us;
		return;
	case RECLAIM_WAITING:
		wait_for_sync(sh, r, now_us, idle);
		return;
	}
}

int
spool_shard_sync_wal(struct spool *spool, unsigned shard, char *err, size_t errlen)
{
	struct spool_shard *sh = &spool->shards[shard];
	rocksdb_t *db = spool_shard_db_acquire(sh, err, errlen);
	uint64_t seq, cur;
	char *rerr = NULL;

	if (db == NULL)
		return PA_ERROR;
	/* Every write up to seq is in the WAL file already: the sync below covers it. */
	seq = rocksdb_get_latest_sequence_number(db);
	rocksdb_flush_wal(db, 1, &rerr);
	if (rerr != NULL) {
		spool_shard_db_release(sh);
		snprintf(err, errlen, "rocksdb_flush_wal(%s, sync): %s", sh->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	/* Published under the shared lock: a reopen (exclusive) resets it after, never before. */
	cur = atomic_load_explicit(&sh->wal_synced_seq, memory_order_relaxed);
	while (cur < seq &&
	       !atomic_compare_exchange_weak_explicit(&sh->wal_synced_seq, &cur, seq,
	                                              memory_order_release, memory_order_relaxed))
		;
	spool_shard_db_release(sh);
	/* Segments a reclamation pass found empty wait for such a sync: removed here. */
	if (sh->log_dir != NULL)
		take_box(sh);
	return PA_OK;
}

void
spool_shard_log_usage(const struct spool *spool, unsigned shard, struct spool_log_usage *out)
{
	const struct spool_shard *sh = &spool->shards[shard];

	*out = (struct spool_log_usage){
	    .log = sh->format == SPOOL_FORMAT_LOG,
	    .segments = atomic_load_explicit(&sh->log_segments, memory_order_relaxed),
	    .bytes = atomic_load_explicit(&sh->log_bytes, memory_order_relaxed),
	    .live_bytes = atomic_load_explicit(&sh->log_live_bytes, memory_order_relaxed),
	    .reclaimable_bytes =
	        atomic_load_explicit(&sh->log_reclaimable_bytes, memory_order_relaxed),
	    .reclaimed_segments = atomic_load_explicit(&sh->log_reclaimed, memory_order_relaxed),
	    .reclaimed_bytes = atomic_load_explicit(&sh->log_reclaimed_bytes, memory_order_relaxed),
	    .wal_syncs = atomic_load_explicit(&sh->log_wal_syncs, memory_order_relaxed),
	    .closed_bytes = atomic_load_explicit(&sh->log_closed_bytes, memory_order_relaxed),
	};
}
