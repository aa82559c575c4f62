/*
 * screen_cache.c: the verdict cache (screen_cache.h): sets of four entries,
 * the set chosen by a hash of the key (the address, an IPv6 one cut to its
 * /64).
 */
#include "dataplane/screen_cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_hash_crc.h>

#define WAYS 4

struct entry {
	uint8_t key[9]; /* family tag, then 4 or 8 octets */
	struct screen_verdict v;
	uint64_t expires_ms; /* 0: empty */
};

struct screen_cache {
	struct entry *e;
	unsigned nsets; /* a power of two */
	struct screen_cache_stats stats;
};

struct screen_cache *
screen_cache_new(unsigned capacity)
{
	struct screen_cache *c = calloc(1, sizeof(*c));
	unsigned n = WAYS;

	if (c == NULL)
		return NULL;
	while (n < capacity)
		n *= 2;
	c->nsets = n / WAYS;
	c->e = calloc(n, sizeof(*c->e));
	if (c->e == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void
screen_cache_free(struct screen_cache *cache)
{
	if (cache == NULL)
		return;
	free(cache->e);
	free(cache);
}

static void
make_key(int family, const uint8_t *addr, uint8_t key[9])
{
	memset(key, 0, 9);
	if (family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, addr, 4);
	} else {
		key[0] = 6;
		memcpy(key + 1, addr, 8); /* the /64 */
	}
}

static struct entry *
set_of(struct screen_cache *c, const uint8_t key[9])
{
	uint32_t h = rte_hash_crc(key, 9, 0);

	return &c->e[(h & (c->nsets - 1)) * WAYS];
}

bool
screen_cache_get(struct screen_cache *cache, int family, const uint8_t *addr, uint64_t now_ms,
                 struct screen_verdict *out)
{
	uint8_t key[9];
	struct entry *set;

	make_key(family, addr, key);
	set = set_of(cache, key);
	for (int i = 0; i < WAYS; i++) {
		if (set[i].expires_ms > now_ms && memcmp(set[i].key, key, sizeof(key)) == 0) {
			*out = set[i].v;
			cache->stats.hits++;
			return true;
		}
	}
	cache->stats.misses++;
	return false;
}

void
screen_cache_put(struct screen_cache *cache, int family, const uint8_t *addr,
                 const struct screen_verdict *v, uint32_t ttl_s, uint64_t now_ms)
{
	uint8_t key[9];
	struct entry *set, *victim = NULL;

	if (ttl_s == 0)
		return;
	make_key(family, addr, key);
	set = set_of(cache, key);
	for (int i = 0; i < WAYS && victim == NULL; i++)
		if (set[i].expires_ms != 0 && memcmp(set[i].key, key, sizeof(key)) == 0)
			victim = &set[i]; /* the same client again: replaced */
	for (int i = 0; i < WAYS && victim == NULL; i++)
		if (set[i].expires_ms <= now_ms)
			victim = &set[i]; /* empty or expired */
	if (victim == NULL) {
		victim = &set[0];
		for (int i = 1; i < WAYS; i++)
			if (set[i].expires_ms < victim->expires_ms)
				victim = &set[i];
		cache->stats.evictions++;
	}
	memcpy(victim->key, key, sizeof(key));
	victim->v = *v;
	victim->expires_ms = now_ms + (uint64_t)ttl_s * 1000u;
}

void
screen_cache_clear(struct screen_cache *cache)
{
	memset(cache->e, 0, (size_t)cache->nsets * WAYS * sizeof(*cache->e));
}

void
screen_cache_stats(const struct screen_cache *cache, struct screen_cache_stats *out)
{
	*out = cache->stats;
}
