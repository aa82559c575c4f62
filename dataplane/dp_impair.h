/*
 * dp_impair.h: a netem-like link impairment inside the dataplane, for tests.
 *
 * Off unless dpdk.impair is set ("loss=5,reorder=10,duplicate=1,delay=5":
 * percentages and milliseconds).  It exists because the kernels these tests
 * run on may lack sch_netem; it applies netem's model to the frames a worker
 * receives and sends: drop with probability loss, duplicate with probability
 * duplicate, hold for delay ms except a reorder fraction that goes at once
 * (overtaking held frames).  Per worker, no allocation beyond mbuf copies,
 * bounded queues (a full queue sends at once).
 */
#ifndef PA_DP_IMPAIR_H
#define PA_DP_IMPAIR_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_mbuf.h>

#define DP_IMPAIR_QUEUE 4096

struct dp_impair_conf {
	bool on;
	unsigned loss, reorder, duplicate; /* percent */
	unsigned delay_ms;
};

struct dp_impair_queue {
	unsigned head, count;
	struct rte_mbuf *m[DP_IMPAIR_QUEUE];
	uint64_t due[DP_IMPAIR_QUEUE];
};

/* PA_OK, or PA_ERROR for a malformed spec. */
int dp_impair_parse(const char *spec, struct dp_impair_conf *conf);

/*
 * Runs n frames through the impairment: writes the frames to pass now to
 * out (at most max) and returns their count; held frames wait in q.  Frames
 * dropped are freed and counted in *dropped.
 */
unsigned dp_impair_apply(const struct dp_impair_conf *conf, struct dp_impair_queue *q,
                         struct rte_mempool *pool, uint64_t now_ms, uint64_t *rng,
                         struct rte_mbuf **in, unsigned n, struct rte_mbuf **out, unsigned max,
                         uint64_t *dropped);

/* Frames whose delay is over, up to max. */
unsigned dp_impair_release(struct dp_impair_queue *q, uint64_t now_ms, struct rte_mbuf **out,
                           unsigned max);

#endif
