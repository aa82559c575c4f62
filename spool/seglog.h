/*
 * seglog.h: one shard's segment log: the append-only files that hold every
 * message copy of the shard once (spool format 2, docs/spool-format.md,
 * "Segment log"; docs/design-spool-log.md).
 *
 * DIR/00000000000000000042.seg, DIR/00000000000000000043.seg, ...: each a
 * preallocated file (fallocate, so an append does not change its size and a
 * fdatasync writes data, not the size) that starts with a SEGMENT record and
 * is filled with MESSAGE records written sequentially.  Seqs grow by one per
 * record within a segment and only grow from one segment to the next.
 *
 * What it promises:
 *  - Writer (one thread, the shard's committer): seglog_add() only stages a
 *    record, seglog_commit() writes everything staged (pwritev) and
 *    fdatasyncs each segment written; a record is durable once the commit
 *    that wrote it returned PA_OK.  A group may span two segments; both
 *    are synced before the commit returns.  A new segment's file and its name
 *    in DIR are synced before a record is written into it.  After a failed
 *    commit every staged record counts as not written, their seqs are never
 *    used again and the writer moves to a new segment: nothing is appended
 *    behind bytes whose fate is unknown.
 *  - Recovery (seglog_open()): every segment from a checkpoint on is read
 *    from its start (or from the checkpoint's offset) and a record is
 *    accepted only when its magic, length, kind, CRC-32C and seq all hold;
 *    the first that fails ends that segment (a torn tail can only hold
 *    records no commit reported durable).  The writer then starts a new
 *    segment, so it never writes between a torn tail and older bytes after
 *    it.  Segment files without a whole SEGMENT record hold no record and
 *    are removed; a whole SEGMENT record of another spool, shard, number or
 *    format (a file put there by hand) makes the open fail, touching nothing.
 *  - Readers (seglog_read(), any thread): a record is returned only when its
 *    header and CRC hold and it is the record the location names.
 */
#ifndef SEGLOG_H
#define SEGLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/seglog_record.h"

#define SEGLOG_SEGMENT_MIN (64u << 10)
#define SEGLOG_SEGMENT_DEFAULT (64u << 20)
#define SEGLOG_NAME_MAX 32 /* "%020llu.seg" and its NUL */

struct seglog;

struct seglog_config {
	const char *dir;       /* the log's directory, made (durably) when absent */
	uint64_t segment_size; /* bytes per segment file; 0: SEGLOG_SEGMENT_DEFAULT */
	uint32_t shards;       /* written into every SEGMENT record, checked when read */
	uint32_t shard;
};

/* Where a record is: what the shard's index keeps for each copy. */
struct seglog_loc {
	uint64_t segment;
	uint64_t offset;
	uint32_t length; /* the whole record, header included */
	uint64_t seq;
};

/* A point in the log: recovery starts there (a checkpoint); seq is the next record's. */
struct seglog_pos {
	uint64_t segment;
	uint64_t offset;
	uint64_t seq;
};

/* Recovery: one call per MESSAGE record found after the checkpoint; non-zero fails the open. */
typedef int (*seglog_recover_fn)(const struct seglog_loc *loc, const uint8_t *payload, size_t len,
                                 void *arg);

/*
 * Opens (creating when absent) the log in config->dir, recovers from `from`
 * (NULL: from the first segment) calling fn (may be NULL) for each MESSAGE
 * record, and readies the writer on a new segment.
 */
int seglog_open(struct seglog **out, const struct seglog_config *config,
                const struct seglog_pos *from, seglog_recover_fn fn, void *arg, char *err,
                size_t errlen);
/*
 * Recovery's scan alone, for a reader while no writer runs (pigeonctl spool
 * ls --dir): fn for each MESSAGE record recovery would find from `from`
 * (NULL: the first segment); nothing is written, made or removed.
 */
int seglog_scan(const struct seglog_config *config, const struct seglog_pos *from,
                seglog_recover_fn fn, void *arg, char *err, size_t errlen);

/* Closes the files; staged records are dropped (never reported durable). */
void seglog_close(struct seglog *log);

/*
 * Stages one MESSAGE record whose payload is prefix then data (both must stay
 * unchanged until the next seglog_commit()); *loc is where it will be.  May
 * create the next segment file (synced) when the current one is full; fails
 * only then or when the record is too long, with nothing staged.
 */
int seglog_add(struct seglog *log, const void *prefix, size_t prefix_len, const void *data,
               size_t data_len, struct seglog_loc *loc, char *err, size_t errlen);

/* Writes and fdatasyncs everything staged; PA_ERROR: none of it counts as written. */
int seglog_commit(struct seglog *log, char *err, size_t errlen);

/*
 * Drops everything staged unwritten (none of it was durable); like after a
 * failed commit, the next record starts a new segment.
 */
void seglog_discard(struct seglog *log);

/* Records staged and not committed yet. */
unsigned seglog_staged(const struct seglog *log);

/* Makes the spare segment ahead of need (a committer's idle time); PA_OK when one exists. */
int seglog_prepare(struct seglog *log, char *err, size_t errlen);

/* The position right after the last committed record: a checkpoint for the next open. */
struct seglog_pos seglog_tail(const struct seglog *log);

struct seglog_stats {
	uint64_t segments;      /* segment files, the spare included */
	uint64_t bytes;         /* their allocated size */
	uint64_t first_segment; /* lowest number, 0 when none */
	uint64_t segment;       /* the one being written */
	uint64_t records;       /* records committed since open */
	uint64_t record_bytes;
	uint64_t syncs;
};
void seglog_stats(const struct seglog *log, struct seglog_stats *out);

/*
 * Reclamation.  A segment below seglog_open_from() is closed: no record is
 * ever written to it again.  seglog_closed() points at the closed segments,
 * by number (valid until the next call on the log that writes); both are
 * the writer's.  seglog_unlink_segments() removes segment files from any
 * thread (unlink, then one fsync of the directory; a file already gone is
 * no error); the caller must know that no index entry it keeps, nor a
 * checkpoint, points into them any longer, even after a crash.  Then the
 * writer drops them from its list with seglog_forget().
 */
struct seglog_segment {
	uint64_t number;
	uint64_t size; /* of its file */
};
uint64_t seglog_open_from(const struct seglog *log);
size_t seglog_closed(const struct seglog *log, const struct seglog_segment **out);
int seglog_unlink_segments(const char *dir, const uint64_t *numbers, size_t n, char *err,
                           size_t errlen);
void seglog_forget(struct seglog *log, const uint64_t *numbers, size_t n);

/* DIR/NNN.seg of a segment; PA_ERROR when it does not fit. */
int seglog_path(char *out, size_t outlen, const char *dir, uint64_t segment);

/*
 * Reads the MESSAGE record at loc from the log in dir into a malloc'ed
 * buffer (*rec, loc->length bytes; the payload starts at SEGLOG_HEADER):
 * PA_OK only when it is whole, its CRC holds and its seq is loc->seq.
 */
int seglog_read(const char *dir, const struct seglog_loc *loc, uint8_t **rec, char *err,
                size_t errlen);

#endif
