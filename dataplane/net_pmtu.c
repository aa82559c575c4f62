/*
 * net_pmtu.c: the path MTU per IPv6 destination (RFC 8201 5.2), so that a
 * new connection to a destination that sent us a packet too big starts with
 * the lowered MSS instead of losing its first full-sized segments again.
 *
 * What it promises: bounded memory, DP_PMTU_ENTRIES entries, direct-mapped
 * by a hash of the address (a newer destination takes the slot of an older
 * one: the cost is a second packet too big); only what tcp_pmtu_lower()
 * accepted is learned (the message quoted a segment in flight, RFC 5927
 * 5.2), so a blind attacker cannot shrink the connections to come; never
 * below 1280 (RFC 8201 4); an entry expires 10 minutes after it was
 * learned (RFC 8201 4: no increase is tried sooner than 5 minutes after a
 * packet too big, 10 recommended), the link's MTU then applying again.
 * Shared by the workers without waiting: a writer (a packet too big, rare)
 * takes the lock only if it is free (else the lesson is skipped: the next
 * packet too big teaches it), readers (every SYN over IPv6) check a
 * per-entry sequence number, a read torn by a write being a miss.
 */
#include <string.h>

#include <rte_spinlock.h>

#include "core/pa.h"
#include "dataplane/dp.h"

#define PMTU_EXPIRE_MS (10u * 60u * 1000u)
#define PMTU_IPV6_MIN 1280

static unsigned
slot(const uint8_t *a)
{
	return dp_hash_words(a, 16, 0) % DP_PMTU_ENTRIES;
}

void
net_pmtu6_learn(struct dp_worker *dw, const uint8_t *a, uint32_t mtu)
{
	struct dp_shared *sh = dw->sh;
	struct dp_pmtu *p = &sh->pmtu[slot(a)];
	uint32_t w[4], seq;

	if (mtu < PMTU_IPV6_MIN)
		mtu = PMTU_IPV6_MIN;
	if (mtu >= sh->mtu || !rte_spinlock_trylock(&sh->pmtu_lock))
		return;
	memcpy(w, a, 16);
	seq = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&p->seq, seq + 1, __ATOMIC_RELAXED); /* odd: being written */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < 4; i++)
		__atomic_store_n(&p->a[i], w[i], __ATOMIC_RELAXED);
	__atomic_store_n(&p->mtu, mtu, __ATOMIC_RELAXED);
	__atomic_store_n(&p->expires_ms, dw->now_ms + PMTU_EXPIRE_MS, __ATOMIC_RELAXED);
	__atomic_store_n(&p->seq, seq + 2, __ATOMIC_RELEASE);
	rte_spinlock_unlock(&sh->pmtu_lock);
	dw->c.pmtu_learned++;
}

uint32_t
net_pmtu6_get(const struct dp_worker *dw, const uint8_t *a)
{
	const struct dp_pmtu *p = &dw->sh->pmtu[slot(a)];
	uint32_t seq = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE), w[4], mtu;
	uint64_t expires;

	if (seq == 0 || (seq & 1) != 0)
		return 0; /* never written, or being written */
	for (unsigned i = 0; i < 4; i++)
		w[i] = __atomic_load_n(&p->a[i], __ATOMIC_RELAXED);
	mtu = __atomic_load_n(&p->mtu, __ATOMIC_RELAXED);
	expires = __atomic_load_n(&p->expires_ms, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) != seq || memcmp(w, a, 16) != 0 ||
	    dw->now_ms >= expires)
		return 0;
	return mtu;
}
