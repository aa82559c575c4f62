/*
 * net_neigh.c: the state machine of a neighbour entry, shared by ARP's
 * table (net_arp.c) and IPv6's neighbour cache (net_nd.c): RFC 4861 7.3.2
 * and 7.3.3, which RFC 1122 2.3.2.1 asks of an ARP cache in substance
 * (entries revalidated by unicast probes, flushed when they go unanswered).
 *
 * An entry is one word (MAC, state, probes sent) and a time stamp, each
 * written atomically, so readers on any worker take no lock and a race
 * between two workers' updates costs at most an extra probe.  States:
 * REACHABLE for NEIGH_REACHABLE_MS after a confirmation (a solicited
 * advertisement, an ARP reply), then STALE; a STALE entry in use goes to
 * DELAY and, still unconfirmed NEIGH_DELAY_MS later, to PROBE: the caller
 * sends unicast probes NEIGH_RETRANS_MS apart, NEIGH_MAX_PROBES at most;
 * without an answer the entry goes to NONE and the next packet resolves the
 * address afresh (multicast NS, broadcast ARP request).  An address being
 * resolved (INCOMPLETE) is on the resolving worker's pending list, one list
 * per protocol, bounded, retried by net_neigh_pending_tick() with the
 * protocol's request.  The table of entries stays with the protocol.
 */
#include <string.h>

#include <rte_ether.h>

#include "core/pa.h"
#include "dataplane/dp.h"

#define NEIGH_REACHABLE_MS 30000 /* RFC 4861 10: REACHABLE_TIME */
#define NEIGH_DELAY_MS 5000      /* DELAY_FIRST_PROBE_TIME */
#define NEIGH_RETRANS_MS 1000    /* RetransTimer */
#define NEIGH_MAX_PROBES 3       /* MAX_UNICAST_SOLICIT */

uint64_t
net_neigh_word(const struct rte_ether_addr *mac, enum dp_nd_state st, unsigned probes)
{
	uint64_t v = 0;

	for (int i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		v |= (uint64_t)mac->addr_bytes[i] << (8 * i);
	return v | (uint64_t)st << 48 | (uint64_t)probes << 56;
}

void
net_neigh_mac(uint64_t w, struct rte_ether_addr *mac)
{
	for (int i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		mac->addr_bytes[i] = (uint8_t)(w >> (8 * i));
}

void
net_neigh_set(struct dp_worker *dw, struct dp_nd_entry *e, uint64_t w)
{
	__atomic_store_n(&e->stamp, dw->now_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&e->word, w, __ATOMIC_RELEASE);
}

/* The same MAC in another state, no probes counted. */
static uint64_t
restate(uint64_t w, enum dp_nd_state st)
{
	return (w & DP_NEIGH_MAC_MASK) | (uint64_t)st << 48;
}

void
net_neigh_heard(struct dp_worker *dw, struct dp_nd_entry *e, const struct rte_ether_addr *mac,
                bool confirmed)
{
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	uint64_t nw = net_neigh_word(mac, confirmed ? DP_ND_REACHABLE : DP_ND_STALE, 0);

	/* RFC 4861 7.2.3 (and 7.2.5 for a solicited answer): STALE when new or changed only. */
	if (confirmed || net_neigh_state(w) == DP_ND_NONE ||
	    (w & DP_NEIGH_MAC_MASK) != (nw & DP_NEIGH_MAC_MASK))
		net_neigh_set(dw, e, nw);
}

enum dp_neigh_use
net_neigh_use(struct dp_worker *dw, struct dp_nd_entry *e, struct rte_ether_addr *mac)
{
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	uint64_t age = dw->now_ms - __atomic_load_n(&e->stamp, __ATOMIC_RELAXED);
	unsigned probes = (unsigned)(w >> 56);

	net_neigh_mac(w, mac);
	switch (net_neigh_state(w)) {
	case DP_ND_REACHABLE:
		if (age < NEIGH_REACHABLE_MS)
			return DP_NEIGH_OK;
		/* REACHABLE_TIME passed: the entry is STALE, and now in use */
		/* fall through */
	case DP_ND_STALE:
		net_neigh_set(dw, e, restate(w, DP_ND_DELAY));
		return DP_NEIGH_OK;
	case DP_ND_DELAY:
		if (age < NEIGH_DELAY_MS)
			return DP_NEIGH_OK;
		net_neigh_set(dw, e, restate(w, DP_ND_PROBE) | 1ull << 56);
		return DP_NEIGH_PROBE;
	case DP_ND_PROBE:
		if (age < NEIGH_RETRANS_MS)
			return DP_NEIGH_OK;
		if (probes >= NEIGH_MAX_PROBES) {
			/* 7.3.3: unreachable; the slot stays for the address, resolved afresh. */
			net_neigh_set(dw, e, (uint64_t)DP_ND_NONE << 48);
			return DP_NEIGH_RESOLVE;
		}
		net_neigh_set(dw, e, restate(w, DP_ND_PROBE) | (uint64_t)(probes + 1) << 56);
		return DP_NEIGH_PROBE;
	default:
		return DP_NEIGH_RESOLVE;
	}
}

/* ---- the pending lists ---- */

static struct dp_neigh_pending *
pending_find(struct dp_neigh_pending *list, const uint8_t *a)
{
	for (unsigned i = 0; i < DP_NEIGH_PENDING; i++)
		if (list[i].used && memcmp(list[i].a, a, 16) == 0)
			return &list[i];
	return NULL;
}

bool
net_neigh_pending_add(struct dp_worker *dw, enum dp_neigh_proto p, const uint8_t *a,
                      uint32_t retrans_ms)
{
	struct dp_neigh_pending *list = dw->pending[p], *free_slot = NULL;

	if (pending_find(list, a) != NULL)
		return false; /* already asking: the tick retries */
	for (unsigned i = 0; i < DP_NEIGH_PENDING && free_slot == NULL; i++)
		if (!list[i].used)
			free_slot = &list[i];
	if (free_slot == NULL)
		return false; /* as many resolutions in flight as we track: don't flood */
	memcpy(free_slot->a, a, 16);
	free_slot->tries = 1;
	free_slot->next_ms = dw->now_ms + retrans_ms;
	free_slot->used = true;
	return true;
}

bool
net_neigh_pending_anywhere(const struct dp_shared *sh, enum dp_neigh_proto p, const uint8_t *a)
{
	for (unsigned w = 0; w < sh->nworkers; w++) {
		struct dp_worker *o = sh->workers[w];

		if (o != NULL && pending_find(o->pending[p], a) != NULL)
			return true;
	}
	return false;
}

void
net_neigh_pending_done(struct dp_worker *dw, enum dp_neigh_proto p, const uint8_t *a)
{
	struct dp_neigh_pending *e = pending_find(dw->pending[p], a);

	if (e != NULL)
		e->used = false;
}

void
net_neigh_pending_tick(struct dp_worker *dw, enum dp_neigh_proto p, const struct dp_neigh_ops *ops)
{
	for (unsigned i = 0; i < DP_NEIGH_PENDING; i++) {
		struct dp_neigh_pending *q = &dw->pending[p][i];
		const struct dp_nd_entry *e;

		if (!q->used || dw->now_ms < q->next_ms)
			continue;
		e = ops->find(dw->sh, q->a);
		if ((e != NULL &&
		     net_neigh_state(__atomic_load_n(&e->word, __ATOMIC_ACQUIRE)) != DP_ND_NONE) ||
		    q->tries >= ops->max_tries) {
			q->used =
			    false; /* resolved, or given up until the next packet asks again */
			continue;
		}
		q->tries++;
		q->next_ms = dw->now_ms + ops->retrans_ms;
		ops->ask(dw, q->a);
	}
}
