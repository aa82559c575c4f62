/*
 * buf.h: one growable byte buffer, for every module that queues bytes of
 * unknown length (replies, protocol input, reports) instead of each writing
 * its own realloc loop.
 *
 * What it promises: the bytes pending are data[off, len); a buffer never
 * holds more than its max (hostile input cannot grow it without bound:
 * asking for more fails with PA_ERROR, as does running out of memory, and
 * either keeps the bytes pending); capacity grows geometrically from
 * its initial size, so appending n octets one piece at a time costs
 * O(log n) allocations; and it allocates nothing while the bytes fit, so a
 * buffer reused across messages on a poll-mode core allocates only until it
 * has reached its working size.  Consumed octets are reclaimed without an
 * allocation: at once when all is consumed, by moving the rest to the front
 * when room is needed.  No dependency but libc.
 */
#ifndef PA_BUF_H
#define PA_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_objcache;

struct pa_buf {
	uint8_t *data;  /* NULL until the first reservation */
	size_t off;     /* octets at the front already consumed */
	size_t len;     /* octets written: data[off, len) is pending */
	size_t cap;     /* octets allocated */
	size_t initial; /* the first allocation's size */
	size_t max;     /* cap never grows past it */
	/* When set, the first allocation is an object of this per-thread cache. */
	const struct pa_objcache *cache;
	bool cached; /* data is an object of cache (else malloc'ed) */
};

/* An empty buffer that allocates nothing yet; initial 0 is taken as 1, max below initial as
 * initial. */
void pa_buf_init(struct pa_buf *b, size_t initial, size_t max);

/*
 * An empty buffer whose first allocation (cache->size octets, its initial
 * size) comes from the calling thread's object cache and goes back there
 * when freed: a buffer emptied and refilled once per message on a poll-mode
 * core then calls no malloc (DEVELOPERS.md, rule 3).  Growing past it moves
 * the bytes to malloc'ed memory and returns the object at once.  Free it on
 * the thread that fills it.
 */
void pa_buf_init_cached(struct pa_buf *b, const struct pa_objcache *cache, size_t max);

/*
 * Room for n more octets at data + len: PA_OK, or PA_ERROR when len + n
 * would pass max (or overflow) or memory is short; the bytes pending are
 * kept either way (their address may change).
 */
int pa_buf_reserve(struct pa_buf *b, size_t n);

/* Appends n octets: PA_OK, or PA_ERROR as pa_buf_reserve(), with nothing appended. */
int pa_buf_append(struct pa_buf *b, const void *p, size_t n);

/* n octets of the pending ones have been used (more than pending counts as all). */
void pa_buf_consume(struct pa_buf *b, size_t n);

/* Empties the buffer and keeps its memory. */
void pa_buf_reset(struct pa_buf *b);

/* Empties the buffer and frees its memory; it may be used again. */
void pa_buf_free(struct pa_buf *b);

static inline size_t
pa_buf_pending(const struct pa_buf *b)
{
	return b->len - b->off;
}

static inline uint8_t *
pa_buf_head(const struct pa_buf *b)
{
	return b->data + b->off;
}

#endif
