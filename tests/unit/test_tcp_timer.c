/*
 * test_tcp_timer.c: the per-worker timer wheel fires every timer once, at or
 * after its time and never before, copes with timers beyond one turn, with
 * re-arming from a callback, cancelling, and a long stall.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/pa.h"
#include "dataplane/tcp_timer.h"

struct probe {
	struct tcp_timer t;
	uint64_t fired_at;
	unsigned fired;
	uint64_t rearm; /* re-arm this many ms from the callback, once */
};

static uint64_t now;

static void
fire(struct tcp_timer *t, void *arg)
{
	struct probe *p = pa_container_of(t, struct probe, t);

	p->fired++;
	p->fired_at = now;
	if (p->rearm) {
		uint64_t d = p->rearm;

		p->rearm = 0;
		tcp_timer_arm(arg, t, d, fire);
	}
}

static struct tcp_wheel *
new_wheel(uint64_t start)
{
	struct tcp_wheel *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	tcp_wheel_init(w, start);
	now = start;
	return w;
}

static void
run_until(struct tcp_wheel *w, uint64_t end)
{
	while (now < end) {
		now++;
		tcp_wheel_advance(w, now, w);
	}
}

static void
test_fires_on_time(void **state)
{
	struct tcp_wheel *w = new_wheel(1000);
	struct probe p[5] = {0};
	uint64_t delays[5] = {1, 7, 4095, 4096, 10000};

	(void)state;
	for (int i = 0; i < 5; i++)
		tcp_timer_arm(w, &p[i].t, delays[i], fire);
	assert_int_equal(w->armed, 5);
	run_until(w, 1000 + 20000);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(p[i].fired, 1);
		assert_int_equal(p[i].fired_at, 1000 + delays[i]);
	}
	assert_int_equal(w->armed, 0);
	free(w);
}

static void
test_cancel_and_rearm(void **state)
{
	struct tcp_wheel *w = new_wheel(0);
	struct probe a = {0}, b = {0}, c = {0};

	(void)state;
	tcp_timer_arm(w, &a.t, 10, fire);
	tcp_timer_arm(w, &b.t, 10, fire);
	tcp_timer_cancel(w, &b.t);
	tcp_timer_cancel(w, &b.t);        /* twice is harmless */
	tcp_timer_arm(w, &a.t, 50, fire); /* re-arm moves it */
	c.rearm = 5;
	tcp_timer_arm(w, &c.t, 20, fire);
	run_until(w, 200);
	assert_int_equal(a.fired, 1);
	assert_int_equal(a.fired_at, 50);
	assert_int_equal(b.fired, 0);
	assert_int_equal(c.fired, 2);
	assert_int_equal(c.fired_at, 25);
	assert_false(tcp_timer_armed(&a.t));
	free(w);
}

static void
test_long_stall(void **state)
{
	struct tcp_wheel *w = new_wheel(0);
	struct probe p[3] = {0};

	(void)state;
	tcp_timer_arm(w, &p[0].t, 3, fire);
	tcp_timer_arm(w, &p[1].t, 5000, fire);
	tcp_timer_arm(w, &p[2].t, 20000, fire);
	now = 12000; /* one jump over several turns */
	tcp_wheel_advance(w, now, w);
	assert_int_equal(p[0].fired, 1);
	assert_int_equal(p[1].fired, 1);
	assert_int_equal(p[2].fired, 0); /* never early */
	run_until(w, 20000);
	assert_int_equal(p[2].fired, 1);
	assert_int_equal(p[2].fired_at, 20000);
	free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fires_on_time),
	    cmocka_unit_test(test_cancel_and_rearm),
	    cmocka_unit_test(test_long_stall),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
