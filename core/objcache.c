/*
 * objcache.c: per-thread free lists of fixed-size objects (objcache.h).
 *
 * Each cache is a singly linked list threaded through the free objects
 * themselves, in thread-local storage: get and put are a few loads and
 * stores.  A pthread key's destructor frees a thread's lists when it exits.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/objcache.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHING false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHING false
#endif
#endif
#ifndef CACHING
#define CACHING true
#endif

struct free_obj {
	struct free_obj *next;
};

struct thread_lists {
	struct free_obj *head[PA_OBJCACHE_MAX];
	unsigned n[PA_OBJCACHE_MAX];
	bool registered; /* the exit destructor knows this thread */
};

static __thread struct thread_lists lists;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void
free_lists(void *arg)
{
	struct thread_lists *l = arg;

	for (unsigned c = 0; c < PA_OBJCACHE_MAX; c++) {
		while (l->head[c] != NULL) {
			struct free_obj *o = l->head[c];

			l->head[c] = o->next;
			free(o);
		}
		l->n[c] = 0;
	}
}

static void
make_exit_key(void)
{
	/* Without the key the lists of an exiting thread leak; caching still works. */
	(void)pthread_key_create(&exit_key, free_lists);
}

void *
pa_objcache_get(const struct pa_objcache *c)
{
	struct free_obj *o = lists.head[c->id];

	if (o == NULL)
		return malloc(c->size);
	lists.head[c->id] = o->next;
	lists.n[c->id]--;
	return o;
}

void
pa_objcache_put(const struct pa_objcache *c, void *obj)
{
	struct free_obj *o = obj;

	if (o == NULL)
		return;
	if (!CACHING || lists.n[c->id] >= c->keep) {
		free(o);
		return;
	}
	if (!lists.registered) { /* once per thread, not per object */
		pthread_once(&exit_key_once, make_exit_key);
		(void)pthread_setspecific(exit_key, &lists);
		lists.registered = true;
	}
	o->next = lists.head[c->id];
	lists.head[c->id] = o;
	lists.n[c->id]++;
}

unsigned
pa_objcache_cached(const struct pa_objcache *c)
{
	return lists.n[c->id];
}
