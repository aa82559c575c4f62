/*
 * service.c: sd_notify(3) for pigeond, and the watchdog's view of its
 * threads (service.h says what each promises).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/service.h"

void
service_init(struct service *s)
{
	uint64_t usec = 0;
	int rc;

	s->watchdog_ms = 0;
	s->last_ping_ms = 0;
	s->stuck_logged = false;
	s->nthreads = 0;
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		pa_log_warning("sd_watchdog_enabled: %s: no watchdog pings", strerror(-rc));
	else if (rc > 0)
		s->watchdog_ms = usec / 1000 > 0 ? usec / 1000 : 1;
}

/* Reads a small file of /proc into buf; false when it could not. */
static bool
read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd == -1)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* CPU time (ns) plus times scheduled, from /proc/self/task/TID/schedstat; 0 when gone. */
static uint64_t
progress_of(pid_t tid)
{
	char path[64], buf[128];
	unsigned long long run_ns, wait_ns, slices;

	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
	if (!read_small(path, buf, sizeof(buf)) ||
	    sscanf(buf, "%llu %llu %llu", &run_ns, &wait_ns, &slices) != 3)
		return 0;
	return (uint64_t)run_ns + (uint64_t)slices;
}

unsigned
service_watch_threads(struct service *s, const char *const *prefixes)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	uint64_t now = pa_monotonic_ms();

	if (d == NULL) {
		pa_log_warning("opendir(/proc/self/task): %s: the watchdog sees no thread",
		               strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL && s->nthreads < SERVICE_THREADS_MAX) {
		char path[64], name[32];
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
		if (!read_small(path, name, sizeof(name)))
			continue;
		name[strcspn(name, "\n")] = '\0';
		for (const char *const *p = prefixes; *p != NULL; p++) {
			if (strncmp(name, *p, strlen(*p)) != 0)
				continue;
			struct service_thread *t = &s->threads[s->nthreads++];

			t->tid = tid;
			snprintf(t->name, sizeof(t->name), "%s", name);
			t->last_sum = progress_of(tid);
			t->last_progress_ms = now;
			break;
		}
	}
	closedir(d);
	return s->nthreads;
}

void
service_tick(struct service *s, uint64_t now_ms, bool running)
{
	uint64_t half = s->watchdog_ms / 2;
	const struct service_thread *stuck = NULL;

	if (s->watchdog_ms == 0 || now_ms - s->last_ping_ms < half)
		return;
	for (unsigned i = 0; i < s->nthreads; i++) {
		struct service_thread *t = &s->threads[i];
		uint64_t sum = progress_of(t->tid);

		if (sum != 0 && sum != t->last_sum) {
			t->last_sum = sum;
			t->last_progress_ms = now_ms;
		} else if (now_ms - t->last_progress_ms >= half && stuck == NULL) {
			stuck = t;
		}
	}
	if (stuck != NULL || !running) {
		if (!s->stuck_logged)
			pa_log_err("watchdog: %s%s%s: no WATCHDOG=1 until it is (systemd restarts "
			           "pigeond after WatchdogSec)",
			           stuck != NULL ? "thread " : "a worker lcore left its loop",
			           stuck != NULL ? stuck->name : "",
			           stuck != NULL ? " made no progress" : "");
		s->stuck_logged = true;
		return;
	}
	if (s->stuck_logged)
		pa_log_notice("watchdog: every worker and committer alive again");
	s->stuck_logged = false;
	s->last_ping_ms = now_ms;
	sd_notify(0, "WATCHDOG=1");
}

void
service_ready(const char *status)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	sd_notify(0, msg);
}

void
service_reloading(void)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	         pa_monotonic_ms() * 1000);
	sd_notify(0, msg);
}

void
service_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}
