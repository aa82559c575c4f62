/*
 * test_buf.c: core/buf.h, the growable byte buffer: growth, the hard max,
 * size_t overflow, consumption and reclaiming consumed octets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/objcache.h"
#include "core/pa.h"

#include "sanitized.h"

static void
test_empty_allocates_nothing(void **state)
{
	struct pa_buf b;

	(void)state;
	pa_buf_init(&b, 64, 1024);
	assert_null(b.data);
	assert_int_equal(pa_buf_pending(&b), 0);
	assert_int_equal(pa_buf_append(&b, "", 0), PA_OK);
	assert_null(b.data);
	pa_buf_free(&b);
}

static void
test_append_grows_geometrically(void **state)
{
	struct pa_buf b;
	uint8_t expect[5000];

	(void)state;
	pa_buf_init(&b, 16, 1 << 20);
	for (size_t i = 0; i < sizeof(expect); i++) {
		uint8_t c = (uint8_t)(i * 7);

		expect[i] = c;
		assert_int_equal(pa_buf_append(&b, &c, 1), PA_OK);
		/* Doubling from 16: a power of two times 16, never more than twice the need. */
		assert_true(b.cap >= b.len && b.cap <= 2 * b.len + 16);
		assert_int_equal(b.cap & (b.cap - 1), 0);
	}
	assert_int_equal(pa_buf_pending(&b), sizeof(expect));
	assert_memory_equal(pa_buf_head(&b), expect, sizeof(expect));
	assert_int_equal(b.cap, 8192);
	pa_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

static void
test_max_is_a_hard_limit(void **state)
{
	struct pa_buf b;
	uint8_t big[100];

	(void)state;
	memset(big, 'x', sizeof(big));
	pa_buf_init(&b, 16, 100);
	assert_int_equal(pa_buf_append(&b, big, 60), PA_OK);
	/* The cap is clamped to max rather than doubled past it. */
	assert_int_equal(pa_buf_append(&b, big, 40), PA_OK);
	assert_int_equal(b.cap, 100);
	assert_int_equal(pa_buf_pending(&b), 100);
	/* One more octet is refused, and what was there stays. */
	assert_int_equal(pa_buf_append(&b, "y", 1), PA_ERROR);
	assert_int_equal(pa_buf_pending(&b), 100);
	assert_memory_equal(pa_buf_head(&b), big, 100);
	/* So is a single append larger than max on an empty buffer. */
	pa_buf_reset(&b);
	assert_int_equal(pa_buf_append(&b, big, 50), PA_OK);
	pa_buf_reset(&b);
	assert_int_equal(pa_buf_reserve(&b, 101), PA_ERROR);
	assert_int_equal(pa_buf_reserve(&b, 100), PA_OK);
	pa_buf_free(&b);
}

static void
test_size_overflow_is_refused(void **state)
{
	struct pa_buf b;

	(void)state;
	pa_buf_init(&b, 16, SIZE_MAX);
	assert_int_equal(pa_buf_append(&b, "abcd", 4), PA_OK);
	/* len + n wraps around: refused, not a tiny allocation. */
	assert_int_equal(pa_buf_reserve(&b, SIZE_MAX), PA_ERROR);
	assert_int_equal(pa_buf_reserve(&b, SIZE_MAX - 2), PA_ERROR);
	assert_int_equal(pa_buf_reserve(&b, SIZE_MAX - 3), PA_ERROR);
	assert_int_equal(pa_buf_pending(&b), 4);
	assert_memory_equal(pa_buf_head(&b), "abcd", 4);
	pa_buf_free(&b);
}

static void
test_consume_and_reclaim(void **state)
{
	struct pa_buf b;
	uint8_t *first;

	(void)state;
	pa_buf_init(&b, 8, 8);
	assert_int_equal(pa_buf_append(&b, "abcdefgh", 8), PA_OK);
	first = b.data;
	pa_buf_consume(&b, 3);
	assert_int_equal(pa_buf_pending(&b), 5);
	assert_memory_equal(pa_buf_head(&b), "defgh", 5);
	/* Full, but three octets consumed: moved to the front, no allocation, max kept. */
	assert_int_equal(pa_buf_append(&b, "ijk", 3), PA_OK);
	assert_ptr_equal(b.data, first);
	assert_int_equal(b.off, 0);
	assert_memory_equal(pa_buf_head(&b), "defghijk", 8);
	assert_int_equal(pa_buf_append(&b, "l", 1), PA_ERROR);
	/* All consumed: empty at once. */
	pa_buf_consume(&b, 8);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.off, 0);
	/* More than pending counts as all. */
	assert_int_equal(pa_buf_append(&b, "xy", 2), PA_OK);
	pa_buf_consume(&b, 100);
	assert_int_equal(pa_buf_pending(&b), 0);
	assert_ptr_equal(b.data, first);
	pa_buf_free(&b);
}

static void
test_reuse_does_not_allocate(void **state)
{
	struct pa_buf b;
	uint8_t chunk[300];
	uint8_t *data;
	size_t cap;

	(void)state;
	memset(chunk, 'm', sizeof(chunk));
	pa_buf_init(&b, 64, 4096);
	assert_int_equal(pa_buf_append(&b, chunk, sizeof(chunk)), PA_OK);
	data = b.data;
	cap = b.cap;
	assert_int_equal(cap, 512);
	for (int i = 0; i < 100; i++) {
		pa_buf_reset(&b);
		assert_int_equal(pa_buf_append(&b, chunk, sizeof(chunk)), PA_OK);
		assert_ptr_equal(b.data, data);
		assert_int_equal(b.cap, cap);
	}
	pa_buf_free(&b);
	/* Usable again after free. */
	assert_int_equal(pa_buf_append(&b, "z", 1), PA_OK);
	assert_int_equal(b.cap, 64);
	pa_buf_free(&b);
}

static void
test_init_bounds(void **state)
{
	struct pa_buf b;

	(void)state;
	pa_buf_init(&b, 0, 0);
	assert_int_equal(b.initial, 1);
	assert_int_equal(b.max, 1);
	assert_int_equal(pa_buf_append(&b, "a", 1), PA_OK);
	assert_int_equal(pa_buf_append(&b, "b", 1), PA_ERROR);
	pa_buf_free(&b);
	pa_buf_init(&b, 256, 16);
	assert_int_equal(b.max, 256);
}

/*
 * A cached buffer's first allocation is an object of the thread's cache and
 * goes back there on free, so refilling it per message allocates nothing;
 * growing past it keeps the bytes and returns the object at once.
 */
static void
test_cached_first_buffer(void **state)
{
	static const struct pa_objcache cache = {PA_OBJCACHE_SMTP_OUT, 128, 8};
	struct pa_buf b;
	uint8_t chunk[300];
	unsigned before;
	void *first;

	(void)state;
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)i;
	pa_buf_init_cached(&b, &cache, 4096);
	assert_null(b.data);
	assert_int_equal(b.initial, 128);
	assert_int_equal(pa_buf_append(&b, chunk, 100), PA_OK);
	assert_true(b.cached);
	assert_int_equal(b.cap, 128);
	first = b.data;
	pa_buf_free(&b);
	assert_false(b.cached);
	before = pa_objcache_cached(&cache);
	assert_int_equal(before, SANITIZED ? 0 : 1);
	/* Refilled: the same object again, taken from the cache. */
	assert_int_equal(pa_buf_append(&b, chunk, 100), PA_OK);
	if (!SANITIZED)
		assert_ptr_equal(b.data, first);
	assert_int_equal(pa_objcache_cached(&cache), 0);
	/* Growing past the object: the bytes move to the heap, the object goes back. */
	assert_int_equal(pa_buf_append(&b, chunk + 100, 200), PA_OK);
	assert_false(b.cached);
	assert_int_equal(b.cap, 512);
	assert_memory_equal(pa_buf_head(&b), chunk, 300);
	assert_int_equal(pa_objcache_cached(&cache), SANITIZED ? 0 : 1);
	pa_buf_consume(&b, 250);
	assert_memory_equal(pa_buf_head(&b), chunk + 250, 50);
	pa_buf_free(&b);
	assert_int_equal(pa_objcache_cached(&cache), SANITIZED ? 0 : 1);
	/* A first reservation larger than the object never takes one. */
	assert_int_equal(pa_buf_append(&b, chunk, 200), PA_OK);
	assert_false(b.cached);
	assert_int_equal(pa_objcache_cached(&cache), SANITIZED ? 0 : 1);
	pa_buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_allocates_nothing),
	    cmocka_unit_test(test_append_grows_geometrically),
	    cmocka_unit_test(test_max_is_a_hard_limit),
	    cmocka_unit_test(test_size_overflow_is_refused),
	    cmocka_unit_test(test_consume_and_reclaim),
	    cmocka_unit_test(test_reuse_does_not_allocate),
	    cmocka_unit_test(test_init_bounds),
	    cmocka_unit_test(test_cached_first_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
