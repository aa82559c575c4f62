/*
 * tcp_timer.c: the per-worker hashed timer wheel (tcp_timer.h).
 */
#include <stddef.h>

#include "dataplane/tcp_timer.h"

#define SLOT(ms) ((ms) & (TCP_WHEEL_SLOTS - 1))

void
tcp_wheel_init(struct tcp_wheel *wheel, uint64_t now_ms)
{
	wheel->now_ms = now_ms;
	wheel->armed = 0;
	for (unsigned i = 0; i < TCP_WHEEL_SLOTS; i++)
		TAILQ_INIT(&wheel->slots[i]);
}

void
tcp_timer_cancel(struct tcp_wheel *wheel, struct tcp_timer *t)
{
	if (t->expire_ms == 0)
		return;
	TAILQ_REMOVE(&wheel->slots[SLOT(t->expire_ms)], t, link);
	t->expire_ms = 0;
	wheel->armed--;
}

void
tcp_timer_arm(struct tcp_wheel *wheel, struct tcp_timer *t, uint64_t delay_ms, tcp_timer_fn fn)
{
	tcp_timer_cancel(wheel, t);
	if (delay_ms == 0)
		delay_ms = 1; /* never into the slot being processed */
	t->expire_ms = wheel->now_ms + delay_ms;
	t->fn = fn;
	TAILQ_INSERT_TAIL(&wheel->slots[SLOT(t->expire_ms)], t, link);
	wheel->armed++;
}

static unsigned
run_slot(struct tcp_wheel *wheel, uint64_t tick, void *arg)
{
	struct tcp_timer_list *slot = &wheel->slots[SLOT(tick)];
	struct tcp_timer_list due = TAILQ_HEAD_INITIALIZER(due);
	struct tcp_timer *t, *next;
	unsigned fired = 0;

	/* Move what is due first: callbacks may re-arm into this very slot. */
	for (t = TAILQ_FIRST(slot); t != NULL; t = next) {
		next = TAILQ_NEXT(t, link);
		if (t->expire_ms <= tick) {
			TAILQ_REMOVE(slot, t, link);
			TAILQ_INSERT_TAIL(&due, t, link);
		}
	}
	while ((t = TAILQ_FIRST(&due)) != NULL) {
		TAILQ_REMOVE(&due, t, link);
		t->expire_ms = 0;
		wheel->armed--;
		t->fn(t, arg);
		fired++;
	}
	return fired;
}

unsigned
tcp_wheel_advance(struct tcp_wheel *wheel, uint64_t now_ms, void *arg)
{
	unsigned fired = 0;
	uint64_t tick;

	if (now_ms <= wheel->now_ms)
		return 0;
	/* After a stall longer than a turn, one pass over every slot catches all up. */
	if (now_ms - wheel->now_ms > TCP_WHEEL_SLOTS)
		wheel->now_ms = now_ms - TCP_WHEEL_SLOTS;
	for (tick = wheel->now_ms + 1; tick <= now_ms; tick++) {
		wheel->now_ms = tick;
		fired += run_slot(wheel, tick, arg);
	}
	return fired;
}
