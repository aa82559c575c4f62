/*
 * svc_thread.h: the handshake between the workers and a plain service
 * thread that serves them through rings (dns/resolver.c's `dns`,
 * filter/milter_client.c's `milter`).
 *
 * The thread sleeps in poll(2) on its own sockets and an eventfd
 * (wake_fd) only while no worker that may not make system calls is
 * attached: a kernel-backend worker that queues work writes the eventfd,
 * but only when it sees the thread about to sleep (the `sleeping` flag,
 * set and fenced before the thread looks at its rings a last time, so a
 * submit is never missed and steady traffic costs no system call).  With
 * a poll-mode worker attached (poll_workers) the thread never sleeps long
 * enough to need waking: it polls its rings every millisecond.
 *
 * The other way, the thread marks a worker notify_due when it queues
 * something for it and, once per loop, writes the eventfd of each such
 * worker that waits in epoll (may_syscall); a poll-mode worker finds its
 * ring on its next loop.
 *
 * Promises: no lock; the worker side (pa_svc_wake()) is one fence, one
 * load and, rarely, one write(2), and none of it on a poll-mode worker.
 */
#ifndef PA_SVC_THREAD_H
#define PA_SVC_THREAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_svc_worker {
	int notify_fd; /* the worker's eventfd; -1: none */
	bool may_syscall;
	bool notify_due; /* the thread's: something was queued for it this loop */
};

struct pa_svc {
	const char *name; /* the thread's, for its log lines */
	pthread_t thread;
	bool thread_started;
	int wake_fd;
	atomic_bool stop;
	atomic_bool sleeping;
	atomic_bool poll_workers; /* a worker that may not make system calls is attached */
	unsigned nworkers;
	struct pa_svc_worker *w;
};

/* The eventfd and the workers' slots.  PA_ERROR with err naming what failed. */
int pa_svc_init(struct pa_svc *s, const char *name, unsigned nworkers, char *err, size_t errlen);

/* Starts fn(arg) as the thread `name`. */
int pa_svc_start(struct pa_svc *s, void *(*fn)(void *), void *arg, char *err, size_t errlen);

/* Stops and joins the thread, if started. */
void pa_svc_stop(struct pa_svc *s);
/* After pa_svc_stop() and the last pa_svc_notify_due(): frees what pa_svc_init() made. */
void pa_svc_fini(struct pa_svc *s);

/* Before the worker's loop: its eventfd, and whether it may make system calls. */
int pa_svc_attach(struct pa_svc *s, unsigned worker, int notify_fd, bool may_syscall);

/* Worker side, after it queued work: wakes the thread if it is about to sleep. */
void pa_svc_wake(struct pa_svc *s, unsigned worker);

/* Any thread: wakes the service thread whether or not it sleeps (a reload). */
void pa_svc_kick(struct pa_svc *s);

/* Thread side: the loop goes on until pa_svc_stop(). */
static inline bool
pa_svc_running(const struct pa_svc *s)
{
	return !atomic_load_explicit(&s->stop, memory_order_acquire);
}

/* Thread side: whether a poll-mode worker is attached (then: never sleep long). */
static inline bool
pa_svc_poll_workers(const struct pa_svc *s)
{
	return atomic_load_explicit(&s->poll_workers, memory_order_acquire);
}

/*
 * Thread side, before its last look at the rings and a poll(2) that may
 * sleep; pa_svc_awake() after the poll(2), whatever it returned.
 */
void pa_svc_sleeping(struct pa_svc *s);
void pa_svc_awake(struct pa_svc *s);

/* Thread side: poll(2) found wake_fd readable. */
void pa_svc_drain(struct pa_svc *s);

/* Thread side: something was queued for the worker. */
static inline void
pa_svc_notify_due(struct pa_svc *s, unsigned worker)
{
	s->w[worker].notify_due = true;
}

/* Thread side, once per loop: the eventfds of the workers notify_due. */
void pa_svc_notify_workers(struct pa_svc *s);

/* The thread's counters, a struct of uint64_t: one at a time from the thread... */
static inline void
pa_svc_count(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

/* ...and read by anyone, each word atomically (size: the struct's). */
void pa_svc_stats_copy(void *dst, const void *src, size_t size);

#endif
