/*
 * dns_cache.c: a fixed table of entries, chained by index from a bucket
 * array (FNV-1a of the name), and a doubly linked LRU list through the same
 * entries (dns_cache.h).  Index 0 means "none", so entry i lives at
 * slots[i - 1].
 */
#include "dns/dns_cache.h"

#include <stdlib.h>
#include <string.h>

struct slot {
	char name[DNS_NAME_MAX + 1];
	struct dns_answer answer;
	uint64_t expires_ms;
	uint32_t hnext;        /* next in the bucket's chain */
	uint32_t newer, older; /* LRU list */
	bool used;
};

struct dns_cache {
	struct slot *slots;
	uint32_t *buckets;
	unsigned capacity, nbuckets; /* nbuckets: a power of two */
	uint32_t newest, oldest;     /* LRU ends */
	uint32_t free_head;          /* unused slots, chained through hnext */
	struct dns_cache_stats stats;
};

uint32_t
dns_name_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

struct dns_cache *
dns_cache_new(unsigned capacity)
{
	struct dns_cache *c = calloc(1, sizeof(*c));
	unsigned nb = 16;

	if (c == NULL)
		return NULL;
	while (nb < capacity)
		nb *= 2;
	c->slots = calloc(capacity, sizeof(*c->slots));
	c->buckets = calloc(nb, sizeof(*c->buckets));
	if (c->slots == NULL || c->buckets == NULL) {
		dns_cache_free(c);
		return NULL;
	}
	c->capacity = capacity;
	c->nbuckets = nb;
	for (unsigned i = 0; i < capacity; i++)
		c->slots[i].hnext = i + 1 < capacity ? i + 2 : 0;
	c->free_head = capacity > 0 ? 1 : 0;
	return c;
}

void
dns_cache_free(struct dns_cache *cache)
{
	if (cache == NULL)
		return;
	free(cache->slots);
	free(cache->buckets);
	free(cache);
}

static struct slot *
at(struct dns_cache *c, uint32_t i)
{
	return &c->slots[i - 1];
}

static void
lru_unlink(struct dns_cache *c, uint32_t i)
{
	struct slot *s = at(c, i);

	if (s->newer != 0)
		at(c, s->newer)->older = s->older;
	else
		c->newest = s->older;
	if (s->older != 0)
		at(c, s->older)->newer = s->newer;
	else
		c->oldest = s->newer;
	s->newer = s->older = 0;
}

static void
lru_push(struct dns_cache *c, uint32_t i)
{
	struct slot *s = at(c, i);

	s->older = c->newest;
	s->newer = 0;
	if (c->newest != 0)
		at(c, c->newest)->newer = i;
	c->newest = i;
	if (c->oldest == 0)
		c->oldest = i;
}

/* The slot holding name, and the link that points at it (for removal). */
static uint32_t
find(struct dns_cache *c, const char *name, uint32_t **link)
{
	uint32_t *l = &c->buckets[dns_name_hash(name) & (c->nbuckets - 1)];

	while (*l != 0 && strcmp(at(c, *l)->name, name) != 0)
		l = &at(c, *l)->hnext;
	*link = l;
	return *l;
}

static void
remove_slot(struct dns_cache *c, uint32_t i)
{
	uint32_t *link;
	struct slot *s = at(c, i);

	if (find(c, s->name, &link) == i)
		*link = s->hnext;
	lru_unlink(c, i);
	s->used = false;
	s->hnext = c->free_head;
	c->free_head = i;
	c->stats.entries--;
}

bool
dns_cache_get(struct dns_cache *cache, const char *name, uint64_t now_ms, struct dns_answer *out,
              uint32_t *ttl_left)
{
	uint32_t *link, i = find(cache, name, &link);
	struct slot *s;

	if (i == 0) {
		cache->stats.misses++;
		return false;
	}
	s = at(cache, i);
	if (s->expires_ms <= now_ms) {
		remove_slot(cache, i);
		cache->stats.expired++;
		cache->stats.misses++;
		return false;
	}
	lru_unlink(cache, i);
	lru_push(cache, i);
	cache->stats.hits++;
	*out = s->answer;
	*ttl_left = (uint32_t)((s->expires_ms - now_ms + 999) / 1000);
	return true;
}

void
dns_cache_put(struct dns_cache *cache, const char *name, const struct dns_answer *answer,
              uint32_t ttl, uint64_t now_ms)
{
	uint32_t *link, i;
	struct slot *s;

	if (ttl == 0 || cache->capacity == 0 || strlen(name) > DNS_NAME_MAX ||
	    (answer->status != DNS_OK && answer->status != DNS_NOTFOUND))
		return;
	i = find(cache, name, &link);
	if (i != 0)
		remove_slot(cache, i);
	if (cache->free_head == 0) {
		/* Full: the least recently used entry goes, expired or not. */
		if (at(cache, cache->oldest)->expires_ms <= now_ms)
			cache->stats.expired++;
		else
			cache->stats.evictions++;
		remove_slot(cache, cache->oldest);
	}
	i = cache->free_head;
	s = at(cache, i);
	cache->free_head = s->hnext;
	memset(s, 0, sizeof(*s));
	strcpy(s->name, name);
	s->answer = *answer;
	s->answer.cookie = 0;
	s->answer.tag = 0;
	s->expires_ms = now_ms + (uint64_t)ttl * 1000u;
	s->used = true;
	(void)find(cache, name, &link);
	*link = i;
	lru_push(cache, i);
	cache->stats.entries++;
}

void
dns_cache_stats(const struct dns_cache *cache, struct dns_cache_stats *out)
{
	*out = cache->stats;
}
