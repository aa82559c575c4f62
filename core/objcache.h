/*
 * objcache.h: per-thread caches of fixed-size objects.
 *
 * A poll-mode worker takes the memory of each message's transaction,
 * envelope and command line from its own cache and gives it back there when
 * the message ends, so in steady state it calls no malloc or free per
 * message (DEVELOPERS.md, rule 3), and no two workers share a free list (no
 * lock, no cache line bounced between cores).  A cache keeps at most `keep`
 * objects per thread: a burst grows it through malloc, and what comes back
 * beyond `keep` is freed, so idle memory stays bounded.  A thread's cached
 * objects are freed when the thread exits.
 *
 * Built with AddressSanitizer, nothing is cached: every get is a malloc and
 * every put a free, so ASan still sees each use after free.
 */
#ifndef PA_OBJCACHE_H
#define PA_OBJCACHE_H

#include <stddef.h>

/* Every cache in the process, so that no two share a free list. */
enum pa_objcache_id {
	PA_OBJCACHE_SMTP_TXN,   /* smtp/: struct smtp_txn */
	PA_OBJCACHE_SMTP_PATH,  /* smtp/: an envelope address */
	PA_OBJCACHE_SMTP_RCPTS, /* smtp/: a transaction's recipient pointers */
	PA_OBJCACHE_SMTP_LINE,  /* smtp/: a partial command line */
	PA_OBJCACHE_SMTP_BODY,  /* smtp/: a message body's first buffer */
	PA_OBJCACHE_SMTP_OUT,   /* smtp/: a session's reply buffer's first allocation */
	PA_OBJCACHE_MAX
};

struct pa_objcache {
	enum pa_objcache_id id;
	size_t size;   /* of every object, at least sizeof(void *) */
	unsigned keep; /* objects kept per thread at most */
};

/* An object of c->size octets (contents undefined), or NULL when out of memory. */
void *pa_objcache_get(const struct pa_objcache *c);

/* Gives obj (from pa_objcache_get(c), or NULL) back to this thread's cache. */
void pa_objcache_put(const struct pa_objcache *c, void *obj);

/* Objects in this thread's cache c, for tests. */
unsigned pa_objcache_cached(const struct pa_objcache *c);

#endif
