/*
 * test_queue_id.c: queue ids are unique per worker and node, sort by time
 * across the point where the first layout's 44-bit time wrapped, survive a
 * clock that steps back, and sort after every id of the first layout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/queue_id.h"

/* Where the first layout's time (low 44 bits of the microseconds) wrapped. */
#define OLD_WRAP (UINT64_C(1) << 44)

static int
compare(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_format(void **state)
{
	struct queue_id_gen g;
	char id[QUEUE_ID_LEN + 1];

	(void)state;
	queue_id_gen_init(&g, 0xabc, 7);
	queue_id_next(&g, 0x123456789ULL, id);
	assert_int_equal(strlen(id), QUEUE_ID_LEN);
	assert_string_equal(id, "P"
	                        "00000123456789"
	                        "ABC"
	                        "07"
	                        "000001");
	/* A present-day time keeps its high digits (the first layout dropped them). */
	queue_id_next(&g, 1796000000000000ULL, id); /* 0x66173D6044000 */
	assert_string_equal(id, "P"
	                        "066173D6044000"
	                        "ABC"
	                        "07"
	                        "000002");
}

static void
test_unique_across_workers_nodes_and_clock_steps(void **state)
{
	enum { N = 20000 };
	char(*ids)[QUEUE_ID_LEN + 1] = calloc(4 * N, QUEUE_ID_LEN + 1);
	struct queue_id_gen g[4];
	size_t k = 0;

	(void)state;
	queue_id_gen_init(&g[0], 1, 0);
	queue_id_gen_init(&g[1], 1, 1);
	queue_id_gen_init(&g[2], 2, 0);
	queue_id_gen_init(&g[3], 2, 1);
	for (unsigned i = 0; i < N; i++) {
		/* the clock stands still, then steps back half-way */
		uint64_t now = i < N / 2 ? 1000000 : 999000;

		for (unsigned w = 0; w < 4; w++)
			queue_id_next(&g[w], now, ids[k++]);
	}
	qsort(ids, k, QUEUE_ID_LEN + 1, compare);
	for (size_t i = 1; i < k; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	free(ids);
}

static void
test_sorts_by_time(void **state)
{
	struct queue_id_gen g;
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];

	(void)state;
	queue_id_gen_init(&g, 5, 3);
	queue_id_next(&g, 1700000000000000ULL, a);
	queue_id_next(&g, 1700000000000001ULL, b);
	assert_true(strcmp(a, b) < 0);
}

/*
 * An injected clock runs across the old wrap points (2^44 µs after the epoch,
 * and the one of 2027 at 103 * 2^44): every id is strictly greater than the
 * one before, for each worker and node, and none repeats.
 */
static void
test_crosses_old_wrap(void **state)
{
	enum { STEPS = 4000, GENS = 3 };
	static const uint64_t wraps[] = {OLD_WRAP, 103 * OLD_WRAP};
	char(*ids)[QUEUE_ID_LEN + 1] = calloc(GENS * STEPS, QUEUE_ID_LEN + 1);
	struct queue_id_gen g[GENS];
	char prev[GENS][QUEUE_ID_LEN + 1];

	(void)state;
	assert_non_null(ids);
	for (size_t wi = 0; wi < sizeof(wraps) / sizeof(wraps[0]); wi++) {
		size_t k = 0;

		queue_id_gen_init(&g[0], 0, 0);
		queue_id_gen_init(&g[1], 0, 1);
		queue_id_gen_init(&g[2], 4095, 0);
		for (unsigned i = 0; i < STEPS; i++) {
			/* from 2 ms before the wrap to 2 ms after, several ids per µs at times */
			uint64_t now = wraps[wi] - 2000 + i - (i % 3 == 1);

			for (unsigned w = 0; w < GENS; w++) {
				queue_id_next(&g[w], now, ids[k]);
				assert_int_equal(strlen(ids[k]), QUEUE_ID_LEN);
				if (i > 0 && strcmp(prev[w], ids[k]) >= 0)
					fail_msg("not increasing at %llu: %s then %s",
					         (unsigned long long)now, prev[w], ids[k]);
				memcpy(prev[w], ids[k], sizeof(prev[w]));
				k++;
			}
		}
		qsort(ids, k, QUEUE_ID_LEN + 1, compare);
		for (size_t i = 1; i < k; i++)
			assert_string_not_equal(ids[i - 1], ids[i]);
	}
	free(ids);
}

static void
test_sequence_wrap_moves_time(void **state)
{
	struct queue_id_gen g;
	char first[QUEUE_ID_LEN + 1], id[QUEUE_ID_LEN + 1];

	(void)state;
	queue_id_gen_init(&g, 0, 0);
	queue_id_next(&g, 42, first);
	g.seq = 0xffffff; /* the next id wraps the sequence */
	queue_id_next(&g, 42, id);
	assert_true(strcmp(first, id) < 0);
	assert_memory_equal(id, "P0000000000002B", 15);
}

/* Ids of the first layout (22 hex digits) sort before every new one: they arrived earlier. */
static void
test_after_first_layout(void **state)
{
	static const char *const old[] = {"0000000000000000000000", "15D0A116ED700000000001",
	                                  "FFFFFFFFFFFFFFFFFFFFFF"};
	struct queue_id_gen g;
	char id[QUEUE_ID_LEN + 1];

	(void)state;
	queue_id_gen_init(&g, 0, 0);
	queue_id_next(&g, 0, id);
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++)
		assert_true(strcmp(old[i], id) < 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_unique_across_workers_nodes_and_clock_steps),
	    cmocka_unit_test(test_sorts_by_time),
	    cmocka_unit_test(test_crosses_old_wrap),
	    cmocka_unit_test(test_sequence_wrap_moves_time),
	    cmocka_unit_test(test_after_first_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
