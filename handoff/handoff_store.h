/*
 * handoff_store.h: the hand-off engine's reads and writes of the spool.
 *
 * The engine changes copies that the committers wrote: it finds due schedule
 * entries, reads a copy, records each recipient's outcome, reschedules or
 * deletes the copy, and queues new copies (DSNs).  Not for use outside
 * spool/: it reaches into struct spool for the shards' RocksDB handles.
 *
 * What it promises: every write is one WriteBatch with sync = 1 (the
 * engine may gather several outcomes into one, see hs_write()), except
 * hs_write_unsynced()'s (outcomes, synced later by hs_sync()); a copy is
 * deleted only as a whole (message, body or its log location, every
 * delivery record, schedule entry) in one batch; the schedule entry always names the earliest
 * next attempt among the copy's pending recipients (docs/spool-format.md).
 * Concurrency: committers only ever add copies under new queue ids and the
 * engine is the only writer of existing ones, so its read-modify-writes do
 * not race.
 */
#ifndef HANDOFF_STORE_H
#define HANDOFF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rocksdb/c.h>

#include "spool/spool.h"
#include "spool/spool_iter.h"
#include "spool/spool_record.h"

/* The schedule time of a held copy: it never comes due by itself. */
#define HS_HELD_US UINT64_MAX

/* One copy as read from its shard; every field owned by the struct. */
struct hs_copy {
	unsigned shard;
	char qid[SMTP_QUEUE_ID_MAX];
	size_t qlen;
	uint64_t sched_us; /* the schedule key it has on disk now */
	struct spool_msg_record *rec;
	struct spool_body body;   /* the stored bytes; body.owner NULL: not loaded */
	const uint8_t *data;      /* the stored message (body.data); NULL before */
	size_t size;              /* of data: rec->size once the body is loaded, 0 before */
	struct spool_delivery *d; /* rec->nrcpt delivery records */
};

/* A due schedule entry. */
typedef int (*hs_due_fn)(unsigned shard, const char *qid, uint64_t sched_us, void *arg);

/*
 * Calls fn for every schedule entry of the shard whose time is <= until_us,
 * in time order, until fn returns non-zero (returned) or max entries were seen.
 */
int hs_due(struct spool *sp, unsigned shard, uint64_t until_us, unsigned max, hs_due_fn fn,
           void *arg, char *err, size_t errlen);

/*
 * The same from a cursor: only entries whose time is >= from_us, found by a
 * seek, so the cost does not grow with the entries (and their tombstones)
 * before it.  until_us UINT64_MAX: held entries too.
 */
int hs_due_from(struct spool *sp, unsigned shard, uint64_t from_us, uint64_t until_us, unsigned max,
                hs_due_fn fn, void *arg, char *err, size_t errlen);

/*
 * Reads one copy.  PA_AGAIN when it is gone (already deleted).  sched_us 0:
 * not known, taken from the delivery records (the earliest pending attempt).
 */
int hs_load(struct spool *sp, unsigned shard, const char *qid, uint64_t sched_us,
            struct hs_copy **out, char *err, size_t errlen);
void hs_copy_free(struct hs_copy *c);

/*
 * The same without the body (data NULL, size 0): the message and delivery
 * records, enough to route the recipients before the body takes memory.
 */
int hs_load_meta(struct spool *sp, unsigned shard, const char *qid, uint64_t sched_us,
                 struct hs_copy **out, char *err, size_t errlen);
/*
 * A copy the commit stream handed over (spool.h), as hs_load() would have
 * read it: every recipient pending, due at its schedule time, the body the
 * stream's (no read).  Takes sc in every case (freed on failure).
 */
int hs_from_stream(struct spool_stream_copy *sc, struct hs_copy **out, char *err, size_t errlen);

/* Reads the body of a copy loaded by hs_load_meta() (nothing when it has one). */
int hs_load_body(struct spool *sp, struct hs_copy *c, char *err, size_t errlen);

/*
 * The two writes of outcomes take a batch: with `into` non-NULL they only
 * append to it and the caller writes it with hs_write() (one synced write
 * for many outcomes: the engine's group commit); with NULL they write now.
 */

/* The delivery records idx[0..n) of the copy; the schedule entry stays. */
int hs_record(struct spool *sp, const struct hs_copy *c, const size_t *idx, size_t n,
              rocksdb_writebatch_t *into, char *err, size_t errlen);

/*
 * Every delivery record, then either the deletion of the copy (no recipient
 * pending; *deleted = true) or its schedule entry moved to the earliest
 * pending next attempt.
 */
int hs_finish(struct spool *sp, struct hs_copy *c, bool *deleted, rocksdb_writebatch_t *into,
              char *err, size_t errlen);

/* Writes a batch filled by the above into its shard (synced) and empties it. */
int hs_write(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err, size_t errlen);

/*
 * The same without waiting for the disk: in the WAL file, so a crash of the
 * process keeps it, but power loss may lose it until the next synced write
 * of the shard (a committer's, or hs_sync()).  The WAL is replayed in
 * order: a write survives only with every write before it.
 */
int hs_write_unsynced(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err,
                      size_t errlen);

/*
 * The same, only when it can be done at once: PA_AGAIN (nothing written,
 * b kept) where RocksDB would stall or delay the write, or where the
 * shard's committers sync RocksDB's WAL themselves (format 1), a sync it
 * could wait behind; format 2's committers write RocksDB unsynced.
 */
int hs_write_nowait(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err,
                    size_t errlen);

/* Syncs the shard's WAL: every write made before it is on disk.  Thread-safe. */
int hs_sync(struct spool *sp, unsigned shard, char *err, size_t errlen);

/* Deletes a copy whatever its recipients' states (operator's delete). */
int hs_delete(struct spool *sp, const struct hs_copy *c, char *err, size_t errlen);

/* Sets every pending recipient's next attempt (HS_HELD_US: hold) and the schedule entry. */
int hs_reschedule(struct spool *sp, struct hs_copy *c, uint64_t when_us, char *err, size_t errlen);

/* Queues a new copy (a DSN) in one synced batch, due now. */
int hs_put(struct spool *sp, unsigned shard, const char *qid, const struct spool_msg_record *rec,
           const uint8_t *data, size_t size, uint64_t now_us, char *err, size_t errlen);

/* Bytes (sum of body sizes) and copies stored in a shard now. */
int hs_shard_usage(struct spool *sp, unsigned shard, uint64_t *bytes, uint64_t *copies, char *err,
                   size_t errlen);

#endif
