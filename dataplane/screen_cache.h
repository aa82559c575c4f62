/*
 * screen_cache.h: a worker's screening verdicts by client address
 * (dataplane/ingest_screen.c).  An IPv4 client is one entry; IPv6 clients
 * share one per /64, the block one customer is usually given (RFC 6177), so
 * that walking through a /64 does not buy a fresh lookup per address.  A
 * verdict is kept for the shortest TTL of the answers it was made from,
 * never longer.  Fixed memory (4-way set-associative, allocated once):
 * when a set is full, the entry nearest its expiry goes, counted as an
 * eviction if it was still live.  One per worker: no lock, no allocation
 * after creation.  Time is passed in (ms).
 */
#ifndef PA_SCREEN_CACHE_H
#define PA_SCREEN_CACHE_H

#include <stdbool.h>
#include <stdint.h>

struct screen_cache;

/* What the lists said; the threshold is applied when it is used, so a reload applies. */
struct screen_verdict {
	int16_t dnsbl; /* sum of the weights of the DNSBLs that list the client */
	int16_t dnswl; /* sum of the (negative) weights of the DNSWLs that list it */
	uint8_t site;  /* the listing DNSBL of highest weight, by position; 0xff: none */
};

struct screen_cache_stats {
	uint64_t hits, misses, evictions;
};

/* capacity is rounded up to a power of two, at least 4.  NULL when out of memory. */
struct screen_cache *screen_cache_new(unsigned capacity);
void screen_cache_free(struct screen_cache *cache);

/* family AF_INET (addr: 4 octets) or AF_INET6 (16; only the first 8 count). */
bool screen_cache_get(struct screen_cache *cache, int family, const uint8_t *addr, uint64_t now_ms,
                      struct screen_verdict *out);
void screen_cache_put(struct screen_cache *cache, int family, const uint8_t *addr,
                      const struct screen_verdict *v, uint32_t ttl_s, uint64_t now_ms);

/* Forgets every verdict (a reload changed the lists, or their weights). */
void screen_cache_clear(struct screen_cache *cache);

void screen_cache_stats(const struct screen_cache *cache, struct screen_cache_stats *out);

#endif
