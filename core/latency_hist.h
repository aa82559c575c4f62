/*
 * latency_hist.h: a fixed-size log-bucketed latency histogram.
 *
 * One writer (a worker lcore) records; the main lcore reads racily for stats
 * and metrics.  Every field is a word-sized counter, so a reader sees a
 * slightly stale histogram, never a torn value, and nothing is ever locked.
 * Buckets are four per power of two of microseconds (at most 19% wide), so a
 * percentile is exact to within one bucket whatever the range, in 1 KiB.
 */
#ifndef PA_LATENCY_HIST_H
#define PA_LATENCY_HIST_H

#include <stdint.h>
#include <string.h>

#define LATENCY_SUB_BITS 2
#define LATENCY_SUB (1u << LATENCY_SUB_BITS)
#define LATENCY_BUCKETS (40u * LATENCY_SUB) /* up to 2^40 µs: beyond any real commit */

struct latency_hist {
	uint64_t count;
	uint64_t sum_us;
	uint64_t buckets[LATENCY_BUCKETS];
};

/* The bucket of a latency: the power of two, then the next two bits below it. */
static inline unsigned
latency_bucket(uint64_t us)
{
	unsigned log2, idx;

	if (us < LATENCY_SUB)
		return (unsigned)us;
	log2 = 63u - (unsigned)__builtin_clzll(us);
	idx = (log2 - LATENCY_SUB_BITS + 1) * LATENCY_SUB +
	      (unsigned)((us >> (log2 - LATENCY_SUB_BITS)) & (LATENCY_SUB - 1));
	return idx < LATENCY_BUCKETS ? idx : LATENCY_BUCKETS - 1;
}

/* The largest latency that falls in bucket idx: what a percentile reports. */
static inline uint64_t
latency_bucket_upper(unsigned idx)
{
	unsigned log2, sub;

	if (idx < LATENCY_SUB)
		return idx;
	log2 = idx / LATENCY_SUB + LATENCY_SUB_BITS - 1;
	sub = idx % LATENCY_SUB;
	return ((uint64_t)(LATENCY_SUB + sub + 1) << (log2 - LATENCY_SUB_BITS)) - 1;
}

static inline void
latency_record(struct latency_hist *h, uint64_t us)
{
	h->buckets[latency_bucket(us)]++;
	h->sum_us += us;
	h->count++;
}

/* Adds a racy snapshot of src to dst (the reader's own copy). */
static inline void
latency_merge(struct latency_hist *dst, const struct latency_hist *src)
{
	uint64_t count = 0;

	for (unsigned i = 0; i < LATENCY_BUCKETS; i++) {
		uint64_t n = __atomic_load_n(&src->buckets[i], __ATOMIC_RELAXED);

		dst->buckets[i] += n;
		count += n;
	}
	/* From the buckets, so that the percentiles agree with the count. */
	dst->count += count;
	dst->sum_us += __atomic_load_n(&src->sum_us, __ATOMIC_RELAXED);
}

/* The q-quantile (0 < q <= 1) in microseconds, to within one bucket; 0 when empty. */
static inline uint64_t
latency_quantile(const struct latency_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->count + 0.999999);
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank)
			return latency_bucket_upper(i);
	}
	return latency_bucket_upper(LATENCY_BUCKETS - 1);
}

#endif
