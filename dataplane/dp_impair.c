/*
 * dp_impair.c: the test-only link impairment (dp_impair.h).
 */
#include <stdio.h>
#include <string.h>

#include "core/pa.h"
#include "dataplane/dp_impair.h"

int
dp_impair_parse(const char *spec, struct dp_impair_conf *conf)
{
	char copy[128], *save = NULL;

	memset(conf, 0, sizeof(*conf));
	if (spec[0] == '\0')
		return PA_OK;
	if (strlen(spec) >= sizeof(copy))
		return PA_ERROR;
	strcpy(copy, spec);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned v;
		char name[16];

		if (sscanf(tok, "%15[a-z]=%u", name, &v) != 2)
			return PA_ERROR;
		if (strcmp(name, "loss") == 0 && v <= 100)
			conf->loss = v;
		else if (strcmp(name, "reorder") == 0 && v <= 100)
			conf->reorder = v;
		else if (strcmp(name, "duplicate") == 0 && v <= 100)
			conf->duplicate = v;
		else if (strcmp(name, "delay") == 0 && v <= 10000)
			conf->delay_ms = v;
		else
			return PA_ERROR;
	}
	conf->on = true;
	return PA_OK;
}

/* xorshift64*: cheap, per worker, good enough for coin flips. */
static unsigned
percent(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (unsigned)((x * 0x2545F4914F6CDD1DULL) >> 32) % 100;
}

static bool
hold(struct dp_impair_queue *q, struct rte_mbuf *m, uint64_t due)
{
	unsigned tail;

	if (q->count == DP_IMPAIR_QUEUE)
		return false;
	tail = (q->head + q->count) % DP_IMPAIR_QUEUE;
	q->m[tail] = m;
	q->due[tail] = due;
	q->count++;
	return true;
}

unsigned
dp_impair_apply(const struct dp_impair_conf *conf, struct dp_impair_queue *q,
                struct rte_mempool *pool, uint64_t now_ms, uint64_t *rng, struct rte_mbuf **in,
                unsigned n, struct rte_mbuf **out, unsigned max, uint64_t *dropped)
{
	unsigned nout = 0;

	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = in[i], *copies[2] = {m, NULL};

		if (percent(rng) < conf->loss) {
			rte_pktmbuf_free(m);
			(*dropped)++;
			continue;
		}
		if (percent(rng) < conf->duplicate)
			copies[1] = rte_pktmbuf_copy(m, pool, 0, UINT32_MAX);
		for (unsigned k = 0; k < 2 && copies[k] != NULL; k++) {
			bool now = conf->delay_ms == 0 || percent(rng) < conf->reorder;

			if (!now && hold(q, copies[k], now_ms + conf->delay_ms))
				continue;
			if (nout < max) {
				out[nout++] = copies[k];
			} else {
				rte_pktmbuf_free(copies[k]);
				(*dropped)++;
			}
		}
	}
	return nout;
}

unsigned
dp_impair_release(struct dp_impair_queue *q, uint64_t now_ms, struct rte_mbuf **out, unsigned max)
{
	unsigned n = 0;

	while (q->count > 0 && n < max && q->due[q->head] <= now_ms) {
		out[n++] = q->m[q->head];
		q->head = (q->head + 1) % DP_IMPAIR_QUEUE;
		q->count--;
	}
	return n;
}
