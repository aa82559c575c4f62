/*
 * test_objcache.c: per-thread object caches (core/objcache.h): an object
 * given back is the next one taken, a cache never keeps more than its bound,
 * threads do not share lists, and a sanitized build caches nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "core/objcache.h"

#include "sanitized.h"

static const struct pa_objcache small = {PA_OBJCACHE_SMTP_LINE, 100, 4};

static void
test_reuse_and_bound(void **state)
{
	void *objs[10];

	(void)state;
	for (int i = 0; i < 10; i++) {
		objs[i] = pa_objcache_get(&small);
		assert_non_null(objs[i]);
		memset(objs[i], 0xa5, small.size); /* the whole size is usable */
	}
	for (int i = 0; i < 10; i++)
		pa_objcache_put(&small, objs[i]);
	pa_objcache_put(&small, NULL); /* harmless */
	if (SANITIZED) {
		assert_int_equal(pa_objcache_cached(&small), 0);
		return;
	}
	assert_int_equal(pa_objcache_cached(&small), small.keep);
	/* Last in, first out: the objects given back last (objs[3] .. objs[0]) come first. */
	for (int i = 3; i >= 0; i--) {
		void *o = pa_objcache_get(&small);

		assert_ptr_equal(o, objs[i]);
		objs[i] = o;
	}
	assert_int_equal(pa_objcache_cached(&small), 0);
	for (int i = 0; i < 4; i++)
		pa_objcache_put(&small, objs[i]);
}

static void *
other_thread(void *arg)
{
	unsigned *seen = arg;
	void *o;

	seen[0] = pa_objcache_cached(&small); /* this thread's list: empty */
	o = pa_objcache_get(&small);
	pa_objcache_put(&small, o);
	seen[1] = pa_objcache_cached(&small);
	return NULL; /* its cached object is freed at exit (LeakSanitizer checks it) */
}

static void
test_threads_have_their_own(void **state)
{
	unsigned before = pa_objcache_cached(&small), seen[2];
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, other_thread, seen), 0);
	pthread_join(t, NULL);
	assert_int_equal(seen[0], 0);
	assert_int_equal(seen[1], SANITIZED ? 0 : 1);
	assert_int_equal(pa_objcache_cached(&small), before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reuse_and_bound),
	    cmocka_unit_test(test_threads_have_their_own),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
