/*
 * lg_run.c: what every transport shares (lg_transport.h): per-thread set-up,
 * the workload of each new session, CPU pinning, and the monitor that
 * reports every second and stops the run.
 */
#include "loadgen/lg_transport.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t
lg_now_us(void)
{
	struct timespec ts;

	/* Monotonic: latencies must not jump with NTP. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
lg_thread_init(struct lg_thread *t, struct lg_run *run, unsigned idx)
{
	const struct lg_options *o = run->opt;

	memset(t, 0, sizeof(*t));
	t->run = run;
	t->idx = idx;
	t->stats = &run->stats[idx];
	lg_source_init(&t->src, run->gen, &run->shared, idx, o->rate / o->threads);
	t->src.late = &t->stats->late;
	/* Threads start at different points so small shares still spread over them. */
	t->tls_acc = o->tls_share * idx / o->threads;
}

unsigned
lg_thread_connections(const struct lg_run *run, unsigned idx)
{
	unsigned n = run->opt->connections, k = run->opt->threads;

	return n / k + (idx < n % k ? 1 : 0);
}

void
lg_thread_workload(struct lg_thread *t, struct lg_workload *w)
{
	const struct lg_options *o = t->run->opt;

	memset(w, 0, sizeof(*w));
	w->helo = o->helo;
	w->source = lg_source_next;
	w->source_arg = &t->src;
	w->msgs_per_conn = o->per_conn;
	w->pipelining = o->pipelining;
	w->idle = o->idle;
	w->reply_timeout_us = (uint64_t)(o->reply_timeout_s * 1e6);
	/* An accumulator, not a coin: exactly the asked share, also on short runs. */
	t->tls_acc += o->tls_share;
	if (t->tls_acc >= 1.0 - 1e-9 && t->run->tls_ctx != NULL) {
		t->tls_acc -= 1.0;
		w->starttls = true;
		w->tls_ctx = t->run->tls_ctx;
	}
}

void
lg_thread_done(struct lg_thread *t)
{
	uint64_t now = lg_now_us(),
	         prev = __atomic_load_n(&t->run->shared.end_us, __ATOMIC_RELAXED);

	/* The run's length ends with its last thread, not with the monitor's next nap. */
	while (prev < now && !__atomic_compare_exchange_n(&t->run->shared.end_us, &prev, now, false,
	                                                  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&t->run->shared.threads_done, 1, __ATOMIC_RELEASE);
}

int
lg_run_state(const struct lg_run *run)
{
	return __atomic_load_n(&run->shared.stop, __ATOMIC_RELAXED);
}

static void
set_state(struct lg_run *run, int state)
{
	int cur = lg_run_state(run);

	/* Only ever forward: RUN → DRAIN → ABORT. */
	while (cur < state && !__atomic_compare_exchange_n(&run->shared.stop, &cur, state, false,
	                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static void
snapshot(const struct lg_run *run, struct lg_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < run->opt->threads; i++)
		lg_stats_merge(out, &run->stats[i]);
}

/*
 * SIGINT and SIGTERM are blocked in every thread (main.c blocks them before
 * any thread starts), so they are taken here, synchronously, as the
 * monitor's sleep: the first drains, the second aborts.  No handler, no
 * global flag.
 */
void
lg_monitor(struct lg_run *run)
{
	const struct lg_options *o = run->opt;
	struct lg_stats prev, cur;
	uint64_t last_report = run->start_us;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	memset(&prev, 0, sizeof(prev));
	while (__atomic_load_n(&run->shared.threads_done, __ATOMIC_ACQUIRE) < o->threads) {
		struct timespec nap = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
		uint64_t now;
		double elapsed;
		int sig = sigtimedwait(&set, NULL, &nap);

		if (sig == -1 && errno != EAGAIN && errno != EINTR)
			perror("pigeon-loadgen: sigtimedwait");
		if (sig != -1) {
			fprintf(stderr, "pigeon-loadgen: %s, %s\n", strsignal(sig),
			        lg_run_state(run) == LG_RUN ? "draining (again to abort)"
			                                    : "aborting");
			set_state(run, lg_run_state(run) == LG_RUN ? LG_DRAIN : LG_ABORT);
		}
		now = lg_now_us();
		elapsed = (double)(now - run->start_us) / 1e6;
		if (o->duration_s > 0 && elapsed >= o->duration_s)
			set_state(run, LG_DRAIN);
		if (elapsed >= o->reply_timeout_s && lg_run_state(run) == LG_RUN) {
			snapshot(run, &cur);
			if (cur.connects == 0) {
				/* Nothing listens there: waiting for --timeout would only count
				 * refusals. */
				fprintf(stderr,
				        "pigeon-loadgen: no connection succeeded in %.1f s: giving "
				        "up\n",
				        elapsed);
				set_state(run, LG_ABORT);
			}
		}
		if (elapsed >= o->timeout_s && lg_run_state(run) != LG_ABORT) {
			fprintf(stderr, "pigeon-loadgen: hard timeout (%.1f s): aborting\n",
			        o->timeout_s);
			set_state(run, LG_ABORT);
		}
		if (now - last_report >= 1000000) {
			if (!o->quiet) {
				snapshot(run, &cur);
				lg_stats_report_line(stderr, &cur, &prev,
				                     (double)(now - last_report) / 1e6, elapsed);
				prev = cur;
			}
			last_report = now;
		}
	}
}

int
lg_pin_thread(const struct lg_options *opt, unsigned idx)
{
	cpu_set_t set;
	int cpu, rc;

	if (opt->ncpus == 0)
		return 0;
	cpu = opt->cpus[idx % opt->ncpus];
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc != 0) {
		fprintf(stderr, "pigeon-loadgen: pthread_setaffinity_np(cpu %d): %s\n", cpu,
		        strerror(rc));
		return -1;
	}
	return 0;
}
