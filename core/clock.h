/*
 * clock.h: the wall clock in microseconds, for queue ids, arrival times and
 * the spool's schedule.  CLOCK_REALTIME is served by the vDSO, so calling it
 * on a poll-mode core makes no system call.
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

#endif
