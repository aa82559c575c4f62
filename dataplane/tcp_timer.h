/*
 * tcp_timer.h: one hashed timer wheel per worker lcore.
 *
 * Timers are intrusive (embedded in the TCB, the SYN-queue entry, the
 * TIME_WAIT entry), so arming one never allocates.  The wheel ticks in
 * milliseconds; a timer further away than the wheel's span stays in its slot
 * and is skipped until its absolute expiry comes round.  Arming, re-arming and
 * cancelling are O(1); advancing costs one slot visit per elapsed tick (capped
 * at one full turn after a long stall).  Single-threaded: the owning lcore
 * only.
 */
#ifndef PA_TCP_TIMER_H
#define PA_TCP_TIMER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#define TCP_WHEEL_SLOTS 4096u /* a power of two: 4.096 s of 1 ms slots */

struct tcp_timer;
typedef void (*tcp_timer_fn)(struct tcp_timer *timer, void *arg);

struct tcp_timer {
	TAILQ_ENTRY(tcp_timer) link;
	uint64_t expire_ms; /* 0: not armed */
	tcp_timer_fn fn;
};

TAILQ_HEAD(tcp_timer_list, tcp_timer);

struct tcp_wheel {
	uint64_t now_ms; /* last tick processed */
	uint64_t armed;  /* timers pending, for stats */
	struct tcp_timer_list slots[TCP_WHEEL_SLOTS];
};

void tcp_wheel_init(struct tcp_wheel *wheel, uint64_t now_ms);

static inline bool
tcp_timer_armed(const struct tcp_timer *t)
{
	return t->expire_ms != 0;
}

/* Arms (or re-arms) t to fire fn(t, arg) delay_ms from the wheel's now; delay 0 means 1. */
void tcp_timer_arm(struct tcp_wheel *wheel, struct tcp_timer *t, uint64_t delay_ms,
                   tcp_timer_fn fn);
void tcp_timer_cancel(struct tcp_wheel *wheel, struct tcp_timer *t);

/*
 * Runs every timer due at or before now_ms, in slot order; a callback may
 * arm or cancel any timer, including its own.  arg is handed to each
 * callback.  Returns how many fired.
 */
unsigned tcp_wheel_advance(struct tcp_wheel *wheel, uint64_t now_ms, void *arg);

#endif
