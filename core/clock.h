/*
 * clock.h: the wall clock in microseconds, for queue ids, arrival times and
 * the spool's schedule, and a monotonic clock in milliseconds for intervals
 * (the control loop's timed work).  Both are served by the vDSO, so calling
 * them on a poll-mode core makes no system call.
 */
#ifndef PA_CLOCK_H
#define PA_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
pa_wall_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Milliseconds of CLOCK_MONOTONIC: for intervals, immune to clock steps. */
static inline uint64_t
pa_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
