/*
 * ctl_stats.c: copies the workers' counters for stats and metrics (ctl_stats.h).
 */
#include "ctl/ctl_stats.h"

#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "ctl/ctl_server.h"
#include "dataplane/dpdk_backend.h"

_Static_assert(sizeof(struct pa_worker_counters) % sizeof(uint64_t) == 0,
               "pa_worker_counters must hold only 64-bit counters");

/* Word by word with relaxed loads: a racy copy, but never a torn counter. */
static void
copy_words(void *dst, const void *src, size_t size)
{
	const uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < size / sizeof(uint64_t); i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

static void
add_words(void *dst, const void *src, size_t size)
{
	const uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < size / sizeof(uint64_t); i++)
		d[i] += s[i];
}

/* The count from the buckets themselves, so that percentiles never run past them. */
static void
settle_latency(struct latency_hist *h)
{
	h->count = 0;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		h->count += h->buckets[i];
}

int
ctl_stats_take(const struct ctl_env *env, struct ctl_stats *out)
{
	bool dpdk = strcmp(env->backend, "dpdk") == 0;

	memset(out, 0, sizeof(*out));
	out->nworkers = env->nworkers;
	out->workers = calloc(env->nworkers, sizeof(*out->workers));
	if (out->workers == NULL)
		return PA_ERROR;
	for (unsigned i = 0; i < env->nworkers; i++) {
		struct ctl_worker_stats *w = &out->workers[i];

		copy_words(&w->c, &env->workers[i]->counters, sizeof(w->c));
		settle_latency(&w->c.commit_latency);
		/* Sums of the histogram's own buckets are what adds up across workers. */
		add_words(&out->total.c, &w->c, sizeof(w->c));
		if (dpdk && dpdk_backend_counters(i, &w->tcp) == PA_OK) {
			w->has_tcp = true;
			w->time_wait_now = dpdk_backend_time_wait(i);
			add_words(&out->total.tcp, &w->tcp, sizeof(w->tcp));
			out->total.time_wait_now += w->time_wait_now;
			out->total.has_tcp = true;
		}
	}
	return PA_OK;
}

void
ctl_stats_free(struct ctl_stats *stats)
{
	free(stats->workers);
	stats->workers = NULL;
}
