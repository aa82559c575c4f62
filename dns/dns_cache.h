/*
 * dns_cache.h: the resolver's answer cache (dns/resolver.h).  One name, one
 * answer (its A records, or "no such name"), kept for the TTL the answer
 * gave and never longer; at most `capacity` entries, allocated once: when
 * full, the least recently used entry makes room and the eviction is
 * counted.  Owned by the resolver thread alone, so it takes no lock; the
 * workers share it by asking that thread.  Time is passed in (ms), which
 * keeps it testable.
 */
#ifndef PA_DNS_CACHE_H
#define PA_DNS_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "dns/dns_types.h"

struct dns_cache;

struct dns_cache_stats {
	uint64_t entries; /* held now */
	uint64_t hits, misses;
	uint64_t evictions; /* live entries dropped to make room */
	uint64_t expired;   /* entries found past their TTL and dropped */
};

/* NULL when out of memory. */
struct dns_cache *dns_cache_new(unsigned capacity);
void dns_cache_free(struct dns_cache *cache);

/*
 * The answer kept for name, with the TTL left in *ttl_left (seconds, at
 * least 1); false when there is none or it expired (then dropped).
 */
bool dns_cache_get(struct dns_cache *cache, const char *name, uint64_t now_ms,
                   struct dns_answer *out, uint32_t *ttl_left);

/*
 * Keeps an answer (status DNS_OK or DNS_NOTFOUND) for ttl seconds; a TTL of
 * 0 is not kept (RFC 1035 3.2.1: use it for this transaction only).
 * Replaces what name had.
 */
void dns_cache_put(struct dns_cache *cache, const char *name, const struct dns_answer *answer,
                   uint32_t ttl, uint64_t now_ms);

void dns_cache_stats(const struct dns_cache *cache, struct dns_cache_stats *out);

/* FNV-1a of a name: the cache's buckets, and the resolver's table of names in flight. */
uint32_t dns_name_hash(const char *name);

#endif
