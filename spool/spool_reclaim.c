/*
 * spool_reclaim.c: a format-2 shard's closed segments are removed once no
 * copy in them is indexed any longer (docs/spool-format.md, "Reclaiming
 * segments"), and the shard's log usage is published for spool summary.
 *
 * The shard's committer runs a pass at most once per RECLAIM_INTERVAL_US:
 * an iterator over the 'L' keys (one per indexed copy, deleted by the
 * hand-off with the copy) counts the live copies and bytes per segment, a
 * bounded number of keys per step between groups, so a long queue never
 * holds up a commit for long.  At the end, every segment that was closed
 * when the pass began (no record can have been added to it since, and the
 * index of each record in it was written before, on this same thread) and
 * has no live copy is removed, after a sync of RocksDB's WAL: the deletes
 * the pass saw are then durable, so no index entry that survives a crash
 * points into a removed segment, and neither does the checkpoint (every
 * group's batch moves it past the segments closed before it).
 *
 * What it promises: a segment is removed only when closed and empty; a pass
 * never spans a reopen of the shard's db (spool_reclaim_abort() first);
 * usage figures are those of the last pass (atomics, read from any thread).
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
#define RECLAIM_STEP 1024 /* 'L' keys per step */

/* Live copies and record bytes of one segment, as the pass counted them. */
struct use {
	uint64_t segment;
	uint64_t copies;
	uint64_t bytes;
};

struct spool_reclaim {
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it; /* NULL: no pass under way */
	uint8_t bound[SPOOL_KEY_MAX];
	uint64_t open_from; /* the segments below it were closed when the pass began */
	struct use *use;
	size_t nuse, cap;
	size_t last; /* use[] entry of the previous key: keys of a segment come in runs */
	uint64_t *gone;
	size_t gone_cap;
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

void
spool_reclaim_abort(struct spool_reclaim *r)
{
	if (r->it != NULL)
		rocksdb_iter_destroy(r->it);
	r->it = NULL;
	r->nuse = 0;
}

void
spool_reclaim_free(struct spool_reclaim *r)
{
	if (r == NULL)
		return;
	spool_reclaim_abort(r);
	rocksdb_readoptions_destroy(r->ro);
	free(r->use);
	free(r->gone);
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
	rocksdb_iter_seek(r->it, (const char *)prefix,
	                  spool_key_prefix(prefix, SPOOL_KEY_LOCATION));
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

/* The pass is complete: removes the closed segments it found empty, publishes usage. */
static void
finish(struct spool_shard *sh, struct spool_reclaim *r)
{
	const struct seglog_segment *segs;
	size_t nclosed = seglog_closed(sh->log, &segs), ngone = 0;
	uint64_t live = 0, dead = 0, gone_bytes = 0, total = 0, nsegs;
	char *rerr = NULL;
	char err[256];
	struct seglog_stats st;

	for (size_t i = 0; i < r->nuse; i++)
		live += r->use[i].bytes;
	if (nclosed > r->gone_cap) {
		uint64_t *g = realloc(r->gone, nclosed * sizeof(*g));

		if (g == NULL)
			return;
		r->gone = g;
		r->gone_cap = nclosed;
	}
	for (size_t i = 0; i < nclosed && segs[i].number < r->open_from; i++) {
		struct use *u = use_of(r, segs[i].number);

		if (u == NULL)
			return;
		if (u->copies == 0) {
			r->gone[ngone++] = segs[i].number;
			gone_bytes += segs[i].size;
		} else if (segs[i].size > u->bytes) {
			dead += segs[i].size - u->bytes;
		}
	}
	if (ngone > 0) {
		/* The deletes this pass saw reach the disk before the segments go. */
		rocksdb_flush_wal(sh->db, 1, &rerr);
		if (rerr != NULL) {
			pa_log_warning(
			    "spool: shard %u: rocksdb_flush_wal(sync) failed, no segment "
			    "reclaimed: %s",
			    sh->index, rerr);
			rocksdb_free(rerr);
			ngone = 0;
		} else if (seglog_reclaim(sh->log, r->gone, ngone, err, sizeof(err)) != PA_OK) {
			pa_log_warning("spool: shard %u: %s", sh->index, err);
			dead += gone_bytes; /* some may remain: the next pass sees them again */
			ngone = 0;
		} else {
			atomic_fetch_add_explicit(&sh->log_reclaimed, ngone, memory_order_relaxed);
			atomic_fetch_add_explicit(&sh->log_reclaimed_bytes, gone_bytes,
			                          memory_order_relaxed);
		}
	}
	seglog_stats(sh->log, &st);
	nsegs = st.segments;
	total = st.bytes;
	atomic_store_explicit(&sh->log_segments, nsegs, memory_order_relaxed);
	atomic_store_explicit(&sh->log_bytes, total, memory_order_relaxed);
	atomic_store_explicit(&sh->log_live_bytes, live, memory_order_relaxed);
	atomic_store_explicit(&sh->log_reclaimable_bytes, dead, memory_order_relaxed);
}

void
spool_reclaim_step(struct spool_shard *sh, struct spool_reclaim *r, uint64_t now_us)
{
	char *rerr = NULL;

	if (r->it == NULL) {
		if (now_us < r->next_us)
			return;
		begin(sh, r);
	}
	if (!count(sh, r)) {
		spool_reclaim_abort(r);
		r->next_us = now_us + RECLAIM_INTERVAL_US;
		return;
	}
	if (rocksdb_iter_valid(r->it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(r->it, &klen);

		if (klen >= 1 && (uint8_t)k[0] == SPOOL_KEY_LOCATION)
			return; /* more next step */
	}
	rocksdb_iter_get_error(r->it, &rerr);
	if (rerr != NULL) {
		pa_log_warning("spool: shard %u: rocksdb_iter(locations): %s", sh->index, rerr);
		rocksdb_free(rerr);
	} else {
		finish(sh, r);
	}
	spool_reclaim_abort(r);
	r->next_us = now_us + RECLAIM_INTERVAL_US;
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
	};
}
