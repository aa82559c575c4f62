/*
 * svc_thread.c: a service thread's sleep, wake and notify (svc_thread.h).
 */
#include "core/svc_thread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

static const uint64_t one = 1;

int
pa_svc_init(struct pa_svc *s, const char *name, unsigned nworkers, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->nworkers = nworkers;
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd == -1) {
		snprintf(err, errlen, "%s: eventfd() failed: %s", name, strerror(errno));
		return PA_ERROR;
	}
	s->w = calloc(nworkers > 0 ? nworkers : 1, sizeof(*s->w));
	if (s->w == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		close(s->wake_fd);
		s->wake_fd = -1;
		return PA_ERROR;
	}
	for (unsigned i = 0; i < nworkers; i++)
		s->w[i].notify_fd = -1;
	return PA_OK;
}

int
pa_svc_start(struct pa_svc *s, void *(*fn)(void *), void *arg, char *err, size_t errlen)
{
	int rc = pthread_create(&s->thread, NULL, fn, arg);

	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(%s) failed: %s", s->name, strerror(rc));
		return PA_ERROR;
	}
	pthread_setname_np(s->thread, s->name);
	s->thread_started = true;
	return PA_OK;
}

void
pa_svc_stop(struct pa_svc *s)
{
	if (s->thread_started) {
		atomic_store_explicit(&s->stop, true, memory_order_release);
		pa_svc_kick(s);
		pthread_join(s->thread, NULL);
		s->thread_started = false;
	}
}

void
pa_svc_fini(struct pa_svc *s)
{
	if (s->wake_fd != -1)
		close(s->wake_fd);
	s->wake_fd = -1;
	free(s->w);
	s->w = NULL;
}

int
pa_svc_attach(struct pa_svc *s, unsigned worker, int notify_fd, bool may_syscall)
{
	if (worker >= s->nworkers)
		return PA_ERROR;
	s->w[worker].notify_fd = notify_fd;
	s->w[worker].may_syscall = may_syscall;
	if (!may_syscall) {
		atomic_store_explicit(&s->poll_workers, true, memory_order_release);
		/* The thread may be asleep for long: it learns now. */
		if (write(s->wake_fd, &one, sizeof(one)) == -1)
			return PA_ERROR;
	}
	return PA_OK;
}

void
pa_svc_wake(struct pa_svc *s, unsigned worker)
{
	if (!s->w[worker].may_syscall)
		return;
	/* Pairs with the fence in pa_svc_sleeping(): a submit is seen or the thread is woken. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&s->sleeping, memory_order_relaxed) &&
	    write(s->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		return; /* the thread's poll(2) is bounded: it wakes soon anyway */
}

void
pa_svc_kick(struct pa_svc *s)
{
	if (write(s->wake_fd, &one, sizeof(one)) == -1)
		pa_log_warning("%s: write(eventfd) failed: %s", s->name, strerror(errno));
}

void
pa_svc_sleeping(struct pa_svc *s)
{
	atomic_store_explicit(&s->sleeping, true, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

void
pa_svc_awake(struct pa_svc *s)
{
	atomic_store_explicit(&s->sleeping, false, memory_order_relaxed);
}

void
pa_svc_drain(struct pa_svc *s)
{
	uint64_t v;

	if (read(s->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		pa_log_warning("%s: read(eventfd) failed: %s", s->name, strerror(errno));
}

void
pa_svc_notify_workers(struct pa_svc *s)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct pa_svc_worker *w = &s->w[i];

		if (!w->notify_due)
			continue;
		w->notify_due = false;
		if (w->may_syscall && w->notify_fd != -1 &&
		    write(w->notify_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
			pa_log_warning("%s: write(worker %u eventfd) failed: %s", s->name, i,
			               strerror(errno));
	}
}

void
pa_svc_stats_copy(void *dst, const void *src, size_t size)
{
	const uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < size / sizeof(uint64_t); i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}
