/*
 * ctl_stats.h: one consistent-enough copy of every worker's counters, taken
 * on the main lcore for the stats command and the metrics.
 *
 * The workers never stop or lock for it: each counter is a word read with a
 * relaxed atomic load, so a value may be a little stale but is never torn.
 */
#ifndef PA_CTL_STATS_H
#define PA_CTL_STATS_H

#include <stdbool.h>

#include "dataplane/dp_counters.h"
#include "dataplane/worker.h"

struct ctl_env;

struct ctl_worker_stats {
	struct pa_worker_counters c;
	bool has_tcp; /* the DPDK backend's TCP counters below are valid */
	struct dp_counters tcp;
	uint64_t time_wait_now; /* connections in TIME_WAIT at the moment */
};

struct ctl_stats {
	unsigned nworkers;
	struct ctl_worker_stats *workers; /* nworkers entries */
	struct ctl_worker_stats total;
};

/* PA_OK, or PA_ERROR when out of memory. */
int ctl_stats_take(const struct ctl_env *env, struct ctl_stats *out);
void ctl_stats_free(struct ctl_stats *stats);

#endif
