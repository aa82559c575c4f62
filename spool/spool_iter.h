/*
 * spool_iter.h: read-only iteration over the spool pigeond has open, for the
 * control socket (spool summary, ls, show) while messages keep arriving.
 *
 * What it promises: it only reads, through RocksDB iterators and gets on the
 * open shards (safe next to the committer threads, which it never waits
 * for); it does not fill the block cache; an entry reflects the shard at the
 * moment the iterator was created.
 */
#ifndef SPOOL_ITER_H
#define SPOOL_ITER_H

#include "spool/spool.h"

/* The spool's shard count. */
unsigned spool_shard_count(const struct spool *spool);

/*
 * Calls fn once per message copy in shard `shard` (every shard when < 0), in
 * queue-id order within a shard, with the envelope only: entry->data is NULL
 * and entry->size the stored size, entry->states each recipient's delivery
 * record (pending, done or failed; attempts; next attempt, UINT64_MAX when
 * held).  Returns like spool_scan(): PA_OK, fn's
 * non-zero return value as soon as it returns one, or PA_ERROR with err set.
 */
int spool_iterate(struct spool *spool, int shard, spool_scan_fn fn, void *arg, char *err,
                  size_t errlen);

/* The copies of one queue id, with their stored bytes and states; like spool_scan_id(). */
int spool_lookup(struct spool *spool, const char *queue_id, int shard, spool_scan_fn fn, void *arg,
                 char *err, size_t errlen);

/*
 * The stored bytes (Received: header + content) of one copy in shard
 * `shard`, wherever its format keeps them: RocksDB's 'B' value (format 1,
 * and copies the hand-off writes itself) or the segment log record its 'L'
 * entry points at (format 2), checked (CRC, seq, queue id) before use.
 * PA_OK with body->data NULL: no such copy.  The bytes are a private copy,
 * valid until spool_body_release(); safe from any thread.
 */
struct spool_body {
	const uint8_t *data;
	size_t size;
	void *owner; /* what spool_body_release() frees */
};
int spool_body_read(struct spool *spool, unsigned shard, const char *queue_id,
                    struct spool_body *body, char *err, size_t errlen);
void spool_body_release(struct spool_body *body);

#endif
