/*
 * dp_stack.c: a worker of the user-space stack, for any application
 * (dp_stack.h).  Its memory is allocated here once, on the main lcore, before
 * the worker's lcore starts: nothing is allocated per packet afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/tcp.h"

struct dp_worker *
dp_worker_create(struct dp_shared *sh, unsigned id, const struct tcp_app_ops *ops, void *app_ctx)
{
	struct dp_worker *dw = rte_zmalloc("pa_dp_worker", sizeof(*dw), RTE_CACHE_LINE_SIZE);

	if (dw == NULL || id >= sh->nworkers) {
		pa_log_err("dpdk: no memory for worker %u (or no queue for it)", id);
		rte_free(dw);
		return NULL;
	}
	dw->sh = sh;
	dw->app = ops;
	dw->app_ctx = app_ctx;
	dw->id = id;
	dw->queue = (uint16_t)id;
	dw->rng = rte_get_tsc_cycles() | 1;
	dp_worker_clock(dw);
	dw->wheel = rte_zmalloc("pa_wheel", sizeof(*dw->wheel), RTE_CACHE_LINE_SIZE);
	if (dw->wheel == NULL)
		goto fail;
	tcp_wheel_init(dw->wheel, dw->now_ms);
	SLIST_INIT(&dw->conn_free);
	TAILQ_INIT(&dw->out_pending);
	TAILQ_INIT(&dw->live);
	if (tcp_worker_init(dw) != PA_OK)
		goto fail;
	if (sh->impair.on) {
		dw->imp_rx = rte_zmalloc("pa_impair", sizeof(*dw->imp_rx), RTE_CACHE_LINE_SIZE);
		dw->imp_tx = rte_zmalloc("pa_impair", sizeof(*dw->imp_tx), RTE_CACHE_LINE_SIZE);
		if (dw->imp_rx == NULL || dw->imp_tx == NULL)
			goto fail;
		pa_log_warning("dpdk: worker %u impairs its link (dpdk.impair): for tests only",
		               dw->id);
	}
	sh->workers[id] = dw;
	return dw;
fail:
	pa_log_err("dpdk: out of memory for worker %u", id);
	rte_free(dw->wheel);
	rte_free(dw->imp_rx);
	rte_free(dw->imp_tx);
	rte_free(dw);
	return NULL;
}

void
dp_worker_destroy(struct dp_worker *dw)
{
	tcp_worker_fini(dw);
	rte_free(dw->wheel);
	rte_free(dw->imp_rx);
	rte_free(dw->imp_tx);
	dw->wheel = NULL;
	dw->imp_rx = dw->imp_tx = NULL;
}

static inline uint64_t
load64(const uint8_t *p)
{
	uint64_t q;

	memcpy(&q, p, sizeof(q));
	return q;
}

uint32_t
dp_hash_words(const void *key, uint32_t len, uint32_t init)
{
	const uint8_t *p = key;
	uint32_t i = 0, w;

	/* Written out for the hot keys: an IPv6 address (neighbour cache, per packet sent)... */
	if (len == 16)
		return rte_hash_crc_8byte(load64(p + 8), rte_hash_crc_8byte(load64(p), init));
	/* ...and an IPv6 TCB key (per segment received). */
	if (len == 36) {
		memcpy(&w, p + 32, sizeof(w));
		init = rte_hash_crc_8byte(load64(p), init);
		init = rte_hash_crc_8byte(load64(p + 8), init);
		init = rte_hash_crc_8byte(load64(p + 16), init);
		init = rte_hash_crc_8byte(load64(p + 24), init);
		return rte_hash_crc_4byte(w, init);
	}
	for (; i + 8 <= len; i += 8)
		init = rte_hash_crc_8byte(load64(p + i), init);
	if (i + 4 <= len) {
		memcpy(&w, p + i, sizeof(w));
		init = rte_hash_crc_4byte(w, init);
	}
	return init;
}

uint64_t
dp_worker_random(struct dp_worker *dw)
{
	uint64_t x = dw->rng ? dw->rng : 0x9e3779b97f4a7c15ull;

	/* xorshift64 (Marsaglia 2003): cheap, per worker, no lock. */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	dw->rng = x;
	return x;
}

uint32_t
dp_worker_random_ms(struct dp_worker *dw, uint32_t max_ms)
{
	return (uint32_t)(dp_worker_random(dw) % ((uint64_t)max_ms + 1));
}

void
dp_worker_timers(struct dp_worker *dw)
{
	tcp_wheel_advance(dw->wheel, dw->now_ms, dw);
	net_arp_tick(dw);
	net_nd_tick(dw);
	net_mld_tick(dw);
}
