/*
 * test_queue_id.c: queue ids are unique per worker and node, sort by time,
 * and survive a clock that steps back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/queue_id.h"

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
	assert_string_equal(id, "00123456789" "ABC" "07" "000001");
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
	assert_memory_equal(id, "0000000002B", 11);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_unique_across_workers_nodes_and_clock_steps),
		cmocka_unit_test(test_sorts_by_time),
		cmocka_unit_test(test_sequence_wrap_moves_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
