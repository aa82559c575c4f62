/*
 * service.h: pigeond as a systemd service (Type=notify): READY=1 once the
 * listeners and the spool are up, RELOADING=1/READY=1 around a reload,
 * STOPPING=1 on SIGTERM, and WATCHDOG=1 from the main loop only while every
 * watched thread (the worker lcores and the spool's committers) is alive.
 *
 * Alive is read from the kernel, not from the threads: a thread is alive
 * while its scheduler accounting (/proc/self/task/TID/schedstat: time on a
 * CPU and times scheduled) keeps changing.  A busy-polling worker adds CPU
 * time, a sleeping one (epoll_wait, an idle committer's ppoll) is scheduled
 * again at least every 100 ms; a thread stuck on a lock or in the kernel
 * (a hung disk) does neither.  So a poll-mode core does nothing at all for
 * the watchdog: no store, no counter, no cache line shared with the main
 * lcore.  What it cannot see: a thread spinning in a loop that never ends.
 *
 * Without $NOTIFY_SOCKET (not under systemd) every call is a no-op.
 */
#ifndef PA_SERVICE_H
#define PA_SERVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SERVICE_THREADS_MAX 1200 /* 64 workers and 1024 committers, with room */

struct service_thread {
	pid_t tid;
	char name[32];
	uint64_t last_sum;         /* CPU time in ns plus times scheduled, as last read */
	uint64_t last_progress_ms; /* monotonic: when last_sum last changed */
};

struct service {
	uint64_t watchdog_ms; /* WATCHDOG_USEC / 1000; 0: no watchdog */
	uint64_t last_ping_ms;
	bool stuck_logged; /* one warning per stall, not one per tick */
	unsigned nthreads;
	struct service_thread threads[SERVICE_THREADS_MAX];
};

/* Reads the watchdog's interval from the environment (sd_watchdog_enabled(3)). */
void service_init(struct service *s);

/*
 * Watches every thread of this process whose name starts with one of the
 * prefixes (NULL-ended): "rte-worker-", "spool-c".  Returns how many.
 */
unsigned service_watch_threads(struct service *s, const char *const *prefixes);

/*
 * From the main loop, about once a second: WATCHDOG=1 once half the interval
 * has passed since the last, if every watched thread made progress within
 * that half and running is true (the caller's own check: every worker lcore
 * is still in its loop).  Otherwise no ping, and systemd, after WatchdogSec,
 * kills and restarts pigeond (WatchdogSignal=SIGABRT: a core to look at).
 */
void service_tick(struct service *s, uint64_t now_ms, bool running);

/* READY=1 with a STATUS= line. */
void service_ready(const char *status);
/* RELOADING=1 (and MONOTONIC_USEC=, systemd 253's notify-reload wants it). */
void service_reloading(void);
/* STOPPING=1. */
void service_stopping(void);

#endif
