/*
 * directory_snapshot.c: the immutable recipient index and its builder.
 *
 * Sized for ten million addresses without one allocation per entry: every
 * record (mailbox, alias, domain, store name) lives in one string arena,
 * 4-byte aligned, and one open-addressing table of 64-bit slots (32-bit hash
 * tag, 32-bit arena reference) indexes them with linear probing at a load of
 * at most 3/4.  A lookup folds the address on the stack, hashes it once and
 * usually touches one table cache line and one arena cache line; a miss
 * probes the "@domain" record as well.  What it promises: once finished, a
 * snapshot is never written again, so any number of threads may look it up
 * at once with no lock; lookups never allocate and never make system calls.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "core/domain.h"
#include "core/pa.h"
#include "directory/directory.h"

enum rec_kind {
	REC_MAILBOX = 1,
	REC_ALIAS = 2,
	REC_DOMAIN = 3,
	REC_STORE = 4,
};
#define REC_KIND_MASK 0x0f
#define REC_IMPLICIT 0x10  /* mailbox known only as the target of an alias */
#define REC_CATCH_ALL 0x20 /* domain whose every address exists */

#define STORE_KEY_PREFIX '\x01' /* never in an address, so store keys cannot collide */
#define MAX_ALIAS_CHAIN 16
#define MIN_SLOTS 64
#define HUGE_PAGE (2u << 20)

/*
 * One arena record.  Refs are (offset / 4) + 1 so that a 32-bit ref reaches
 * 16 GiB of arena and 0 can mean "empty slot".
 */
struct dir_rec {
	uint32_t target; /* alias: ref of its mailbox; store: its index + 1 */
	uint16_t store;  /* mailbox: index + 1 into stores[]; 0 = none */
	uint8_t kind;
	uint8_t len; /* key octets, without the NUL */
	char key[];  /* len octets, then a NUL */
};

struct dir_snapshot {
	uint64_t seed;
	uint64_t *slots; /* tag << 32 | ref; 0 = empty */
	size_t mask;     /* slots - 1 */
	size_t used;
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *stores; /* refs of store records, by index */
	size_t nstores, stores_cap;
	bool case_sensitive_local;
	size_t mailboxes, aliases, catch_alls, domains;
};

struct dir_builder {
	struct dir_snapshot s;
	bool oom; /* an add ran out of memory: finishing must fail, not serve a partial index */
};

static inline uint64_t
mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;

	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A multiply-fold hash (wyhash's shape): 8 octets per step, full 64-bit output. */
static inline uint64_t
hash_key(const char *k, size_t n, uint64_t seed)
{
	uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
	uint64_t w;

	for (; n >= 8; k += 8, n -= 8) {
		memcpy(&w, k, 8);
		h = mix(w ^ 0xa0761d6478bd642fULL, h ^ 0xe7037ed1a0b428dbULL);
	}
	if (n > 0) {
		w = 0;
		memcpy(&w, k, n);
		h = mix(w ^ 0x8ebc6af09c88c6e3ULL, h ^ 0x589965cc75374cc3ULL);
	}
	return mix(h ^ 0x1d8e4e27c47d124fULL, 0xbf58476d1ce4e5b9ULL);
}

static inline struct dir_rec *
rec_at(const struct dir_snapshot *s, uint32_t ref)
{
	return (struct dir_rec *)(s->arena + (size_t)(ref - 1) * 4);
}

static inline size_t
rec_size(size_t keylen)
{
	return (sizeof(struct dir_rec) + keylen + 1 + 3) & ~(size_t)3;
}

static inline char
lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* Returns the ref of key, or 0. */
static inline uint32_t
find(const struct dir_snapshot *s, const char *key, size_t len, uint64_t h)
{
	uint32_t tag = (uint32_t)(h >> 32);

	for (size_t i = h & s->mask;; i = (i + 1) & s->mask) {
		uint64_t slot = s->slots[i];
		uint32_t ref = (uint32_t)slot;
		const struct dir_rec *r;

		if (ref == 0)
			return 0;
		if ((uint32_t)(slot >> 32) != tag)
			continue;
		r = rec_at(s, ref);
		if (r->len == len && memcmp(r->key, key, len) == 0)
			return ref;
	}
}

/* ---- building ------------------------------------------------------------ */

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return PA_ERROR;
}

/*
 * The table and the arena are mapped directly, 2 MiB-aligned and advised for
 * transparent huge pages: in a 10M-address directory every lookup misses the
 * cache, and with 4 KiB pages it would miss the TLB as well.  Zero-filled.
 */
static void *
region_alloc(size_t size)
{
	size_t span = size >= HUGE_PAGE ? size + HUGE_PAGE : size;
	char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *aligned;

	if (p == MAP_FAILED)
		return NULL;
	if (span == size)
		return p;
	aligned = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
	if (aligned > p)
		munmap(p, (size_t)(aligned - p));
	if (p + span > aligned + size)
		munmap(aligned + size, (size_t)(p + span - (aligned + size)));
	/* Advice only: without THP the index works the same, a little slower. */
	(void)madvise(aligned, size, MADV_HUGEPAGE);
	return aligned;
}

static void
region_free(void *p, size_t size)
{
	if (p != NULL)
		munmap(p, size);
}

/*
 * A larger region holding old's contents.  The pages are moved (mremap), not
 * copied, so growing a 512 MiB arena never holds two copies of it at once.
 */
static void *
region_grow(void *old, size_t old_size, size_t new_size)
{
	char *fresh = region_alloc(new_size);

	if (fresh == NULL || old == NULL || old_size == 0)
		return fresh;
	if (mremap(old, old_size, old_size, MREMAP_MAYMOVE | MREMAP_FIXED, fresh) == MAP_FAILED) {
		memcpy(fresh, old, old_size);
		region_free(old, old_size);
	}
	return fresh;
}

static size_t
page_round(size_t n)
{
	size_t page = 4096;

	return (n + page - 1) & ~(page - 1);
}

static int
out_of_memory(struct dir_builder *b, char *err, size_t errlen)
{
	b->oom = true;
	return fail(err, errlen, "out of memory");
}

static void
slot_put(uint64_t *slots, size_t mask, uint64_t h, uint32_t ref)
{
	size_t i = h & mask;

	while ((uint32_t)slots[i] != 0)
		i = (i + 1) & mask;
	slots[i] = (h & 0xffffffff00000000ULL) | ref;
}

static int
table_grow(struct dir_snapshot *s, size_t nslots)
{
	uint64_t *slots = region_alloc(nslots * sizeof(*slots));

	if (slots == NULL)
		return PA_ERROR;
	for (size_t i = 0; s->slots != NULL && i <= s->mask; i++) {
		uint32_t ref = (uint32_t)s->slots[i];

		if (ref != 0) {
			const struct dir_rec *r = rec_at(s, ref);

			slot_put(slots, nslots - 1, hash_key(r->key, r->len, s->seed), ref);
		}
	}
	region_free(s->slots, s->slots ? (s->mask + 1) * sizeof(*slots) : 0);
	s->slots = slots;
	s->mask = nslots - 1;
	return PA_OK;
}

/* Appends a record and indexes it; 0 when out of memory or the arena is full. */
static uint32_t
insert(struct dir_snapshot *s, const char *key, size_t len, uint64_t h, uint8_t kind)
{
	size_t size = rec_size(len);
	struct dir_rec *r;
	uint32_t ref;

	if ((s->used + 1) * 4 > (s->mask + 1) * 3 && table_grow(s, (s->mask + 1) * 2) != PA_OK)
		return 0;
	if (s->arena_len + size > s->arena_cap) {
		size_t cap = s->arena_cap ? s->arena_cap * 2 : 4096;
		char *grown;

		while (cap < s->arena_len + size)
			cap *= 2;
		if (cap / 4 >= UINT32_MAX)
			return 0;
		grown = region_grow(s->arena, s->arena_cap, cap);
		if (grown == NULL)
			return 0;
		s->arena = grown;
		s->arena_cap = cap;
	}
	ref = (uint32_t)(s->arena_len / 4) + 1;
	r = rec_at(s, ref);
	memset(r, 0, size);
	r->kind = kind;
	r->len = (uint8_t)len;
	memcpy(r->key, key, len);
	s->arena_len += size;
	slot_put(s->slots, s->mask, h, ref);
	s->used++;
	return ref;
}

/*
 * RFC 1035 letters, digits, hyphens, dots; labels of 1..63; folded to lower
 * case.  A domain with U-labels is stored in its canonical A-label form
 * (core/domain.h), the form the host looks recipients up in, so a source may
 * list either.  Writes at most room octets to out (no NUL) and returns how
 * many, 0 when invalid.  Runs when a snapshot is built, never at lookup.
 */
static size_t
fold_domain(const char *d, size_t len, char *out, size_t room)
{
	size_t label = 0;

	if (pa_domain_is_utf8(d, len)) {
		char canonical[PA_DOMAIN_MAX + 1];
		int n = pa_domain_canonical(d, len, canonical, 0);

		if (n <= 0 || (size_t)n > room)
			return 0;
		memcpy(out, canonical, (size_t)n);
		return (size_t)n;
	}
	if (len == 0 || len > 253 || len > room)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = lower(d[i]);

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
		out[i] = c;
	}
	return label > 0 ? len : 0;
}

/*
 * Validates and folds an address for storing: one '@', a local part of 1..64
 * octets with no space, control character, '@' or '"' (UTF-8 octets pass),
 * a valid domain (U-labels become A-labels).  Returns the key length, 0 when
 * invalid; *at is the index of the '@' in key.
 */
static size_t
fold_stored(const char *addr, size_t len, bool cs_local, char key[DIR_ADDR_MAX + 1], size_t *at)
{
	const char *sign = memchr(addr, '@', len);
	size_t local, dlen;

	if (sign == NULL || len > DIR_ADDR_MAX)
		return 0;
	local = (size_t)(sign - addr);
	if (local == 0 || local > 64)
		return 0;
	for (size_t i = 0; i < local; i++) {
		unsigned char c = (unsigned char)addr[i];

		if (c <= 0x20 || c == 0x7f || c == '@' || c == '"')
			return 0;
		key[i] = cs_local ? (char)c : lower((char)c);
	}
	key[local] = '@';
	dlen = fold_domain(sign + 1, len - local - 1, key + local + 1, DIR_ADDR_MAX - local - 1);
	if (dlen == 0)
		return 0;
	*at = local;
	return local + 1 + dlen;
}

static uint32_t
lookup_or_insert(struct dir_snapshot *s, const char *key, size_t len, uint8_t kind, bool *created)
{
	uint64_t h = hash_key(key, len, s->seed);
	uint32_t ref = find(s, key, len, h);

	*created = ref == 0;
	if (ref != 0)
		return ref;
	return insert(s, key, len, h, kind);
}

/* Makes sure "@domain" is a record, so that its other addresses answer 5.1.1. */
static uint32_t
ensure_domain(struct dir_snapshot *s, const char *at_domain, size_t len)
{
	bool created;
	uint32_t ref = lookup_or_insert(s, at_domain, len, REC_DOMAIN, &created);

	if (created && ref != 0)
		s->domains++;
	return ref;
}

/* Returns the store's index + 1, or 0 when out of memory / too many. */
static uint16_t
intern_store(struct dir_snapshot *s, const char *name, size_t len)
{
	char key[DIR_STORE_MAX + 2];
	bool created;
	uint32_t ref;

	key[0] = STORE_KEY_PREFIX;
	memcpy(key + 1, name, len);
	ref = lookup_or_insert(s, key, len + 1, REC_STORE, &created);
	if (ref == 0)
		return 0;
	if (!created)
		return (uint16_t)rec_at(s, ref)->target;
	if (s->nstores == DIR_MAX_STORES)
		return 0;
	if (s->nstores == s->stores_cap) {
		size_t cap = s->stores_cap ? 2 * s->stores_cap : 16;
		uint32_t *grown = realloc(s->stores, cap * sizeof(*grown));

		if (grown == NULL)
			return 0;
		s->stores = grown;
		s->stores_cap = cap;
	}
	s->stores[s->nstores++] = ref;
	rec_at(s, ref)->target = (uint32_t)s->nstores;
	return (uint16_t)s->nstores;
}

static bool
valid_store(const char *name, size_t len)
{
	if (len == 0 || len > DIR_STORE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= 0x20 || c >= 0x7f || c == '@')
			return false;
	}
	return true;
}

struct dir_builder *
dir_builder_new(bool case_sensitive_local, size_t expected)
{
	struct dir_builder *b = calloc(1, sizeof(*b));
	size_t nslots = MIN_SLOTS;

	if (b == NULL)
		return NULL;
	b->s.case_sensitive_local = case_sensitive_local;
	/* A fresh seed per snapshot: no two builds probe alike, whatever the keys. */
	if (getrandom(&b->s.seed, sizeof(b->s.seed), GRND_NONBLOCK) != (ssize_t)sizeof(b->s.seed))
		b->s.seed = 0x243f6a8885a308d3ULL ^ (uintptr_t)b;
	/* Domain records are few; size for the addresses at a load of at most 3/4. */
	while (nslots / 4 * 3 < expected)
		nslots *= 2;
	if (table_grow(&b->s, nslots) != PA_OK) {
		free(b);
		return NULL;
	}
	return b;
}

void
dir_builder_free(struct dir_builder *b)
{
	if (b == NULL)
		return;
	region_free(b->s.slots, (b->s.mask + 1) * sizeof(uint64_t));
	region_free(b->s.arena, b->s.arena_cap);
	free(b->s.stores);
	free(b);
}

int
dir_builder_add_mailbox(struct dir_builder *b, const char *addr, size_t len, const char *store,
                        size_t store_len, char *err, size_t errlen)
{
	struct dir_snapshot *s = &b->s;
	char key[DIR_ADDR_MAX + 1];
	size_t at, klen = fold_stored(addr, len, s->case_sensitive_local, key, &at);
	uint16_t store_idx = 0;
	struct dir_rec *r;
	uint32_t ref;
	bool created;

	if (klen == 0)
		return fail(err, errlen, "'%.*s' is not an address", (int)(len > 300 ? 300 : len),
		            addr);
	if (store != NULL && store_len > 0) {
		if (!valid_store(store, store_len))
			return fail(err, errlen, "'%.*s' is not a store name",
			            (int)(store_len > 300 ? 300 : store_len), store);
		store_idx = intern_store(s, store, store_len);
		if (store_idx == 0) {
			b->oom = true;
			return fail(err, errlen, "out of memory (or more than %d stores)",
			            DIR_MAX_STORES);
		}
	}
	if (ensure_domain(s, key + at, klen - at) == 0)
		return out_of_memory(b, err, errlen);
	ref = lookup_or_insert(s, key, klen, REC_MAILBOX, &created);
	if (ref == 0)
		return out_of_memory(b, err, errlen);
	r = rec_at(s, ref);
	if (created) {
		r->store = store_idx;
		return PA_OK;
	}
	if ((r->kind & REC_KIND_MASK) == REC_ALIAS)
		return fail(err, errlen, "'%.*s' is already an alias of '%s'", (int)klen, key,
		            rec_at(s, r->target)->key);
	if (store_idx != 0 && r->store != 0 && r->store != store_idx)
		return fail(err, errlen, "'%.*s' is already listed with store '%s'", (int)klen, key,
		            rec_at(s, s->stores[r->store - 1])->key + 1);
	r->kind &= (uint8_t)~REC_IMPLICIT;
	if (store_idx != 0)
		r->store = store_idx;
	return PA_OK;
}

int
dir_builder_add_alias(struct dir_builder *b, const char *alias, size_t alias_len,
                      const char *canonical, size_t canonical_len, char *err, size_t errlen)
{
	struct dir_snapshot *s = &b->s;
	char akey[DIR_ADDR_MAX + 1], ckey[DIR_ADDR_MAX + 1];
	size_t aat, cat;
	size_t alen = fold_stored(alias, alias_len, s->case_sensitive_local, akey, &aat);
	size_t clen = fold_stored(canonical, canonical_len, s->case_sensitive_local, ckey, &cat);
	uint32_t aref, cref;
	struct dir_rec *r;
	bool created;

	if (alen == 0)
		return fail(err, errlen, "'%.*s' is not an address",
		            (int)(alias_len > 300 ? 300 : alias_len), alias);
	if (clen == 0)
		return fail(err, errlen, "'%.*s' is not an address",
		            (int)(canonical_len > 300 ? 300 : canonical_len), canonical);
	if (alen == clen && memcmp(akey, ckey, alen) == 0)
		return fail(err, errlen, "'%.*s' is an alias of itself", (int)alen, akey);
	if (ensure_domain(s, akey + aat, alen - aat) == 0 ||
	    ensure_domain(s, ckey + cat, clen - cat) == 0)
		return out_of_memory(b, err, errlen);
	cref = lookup_or_insert(s, ckey, clen, REC_MAILBOX | REC_IMPLICIT, &created);
	if (cref == 0)
		return out_of_memory(b, err, errlen);
	aref = lookup_or_insert(s, akey, alen, REC_ALIAS, &created);
	if (aref == 0)
		return out_of_memory(b, err, errlen);
	r = rec_at(s, aref);
	if (created) {
		r->target = cref;
		return PA_OK;
	}
	switch (r->kind & REC_KIND_MASK) {
	case REC_ALIAS:
		if (r->target == cref)
			return PA_OK;
		return fail(err, errlen, "'%.*s' is already an alias of '%s'", (int)alen, akey,
		            rec_at(s, r->target)->key);
	case REC_MAILBOX:
		if (!(r->kind & REC_IMPLICIT))
			return fail(err, errlen, "'%.*s' is already a mailbox", (int)alen, akey);
		/* It was only the target of another alias: that alias now chains through it. */
		r->kind = REC_ALIAS;
		r->target = cref;
		r->store = 0;
		return PA_OK;
	default:
		return fail(err, errlen, "'%.*s' is not an address", (int)alen, akey);
	}
}

int
dir_builder_add_catch_all(struct dir_builder *b, const char *domain, size_t len, char *err,
                          size_t errlen)
{
	struct dir_snapshot *s = &b->s;
	char key[DIR_ADDR_MAX + 1];
	size_t dlen = fold_domain(domain, len, key + 1, DIR_ADDR_MAX - 1);
	uint32_t ref;

	key[0] = '@';
	if (dlen == 0)
		return fail(err, errlen, "'%.*s' is not a domain name",
		            (int)(len > 300 ? 300 : len), domain);
	ref = ensure_domain(s, key, dlen + 1);
	if (ref == 0)
		return out_of_memory(b, err, errlen);
	if (!(rec_at(s, ref)->kind & REC_CATCH_ALL)) {
		rec_at(s, ref)->kind |= REC_CATCH_ALL;
		s->catch_alls++;
	}
	return PA_OK;
}

struct dir_snapshot *
dir_builder_finish(struct dir_builder *b, char *err, size_t errlen)
{
	struct dir_snapshot *s = &b->s, *out;

	if (b->oom) {
		fail(err, errlen, "out of memory while building the snapshot");
		dir_builder_free(b);
		return NULL;
	}
	/* Point every alias straight at its mailbox, so a lookup never chains. */
	for (size_t off = 0; off < s->arena_len;) {
		struct dir_rec *r = (struct dir_rec *)(s->arena + off);

		switch (r->kind & REC_KIND_MASK) {
		case REC_MAILBOX:
			s->mailboxes++;
			break;
		case REC_ALIAS: {
			uint32_t t = r->target;
			int hops = 0;

			while ((rec_at(s, t)->kind & REC_KIND_MASK) == REC_ALIAS) {
				if (++hops > MAX_ALIAS_CHAIN) {
					fail(err, errlen,
					     "alias '%s': loop or chain longer than %d aliases",
					     r->key, MAX_ALIAS_CHAIN);
					dir_builder_free(b);
					return NULL;
				}
				t = rec_at(s, t)->target;
			}
			r->target = t;
			s->aliases++;
			break;
		}
		default:
			break;
		}
		off += rec_size(r->len);
	}
	out = malloc(sizeof(*out));
	if (out == NULL) {
		fail(err, errlen, "out of memory");
		dir_builder_free(b);
		return NULL;
	}
	*out = *s;
	/* Give back the unused tail of the last doubling (up to half the arena). */
	if (page_round(out->arena_len) < out->arena_cap) {
		size_t keep = page_round(out->arena_len);

		munmap(out->arena + keep, out->arena_cap - keep);
		out->arena_cap = keep;
	}
	free(b);
	return out;
}

void
dir_snapshot_free(struct dir_snapshot *s)
{
	if (s == NULL)
		return;
	region_free(s->slots, (s->mask + 1) * sizeof(uint64_t));
	region_free(s->arena, s->arena_cap);
	free(s->stores);
	free(s);
}

/* ---- lookups ------------------------------------------------------------- */

static void
answer(const struct dir_snapshot *s, const struct dir_rec *mailbox, struct dir_answer *out)
{
	memcpy(out->canonical, mailbox->key, (size_t)mailbox->len + 1);
	if (mailbox->store != 0) {
		const struct dir_rec *st = rec_at(s, s->stores[mailbox->store - 1]);

		memcpy(out->store, st->key + 1, st->len); /* past the prefix, with the NUL */
	} else {
		out->store[0] = '\0';
	}
}

enum dir_status
dir_snapshot_lookup(const struct dir_snapshot *s, const char *addr, struct dir_answer *out)
{
	/* Room for the folded address, or for "@" + domain when the address is too long. */
	char key[DIR_ADDR_MAX + 2];
	size_t len = strnlen(addr, DIR_ADDR_MAX + 2);
	const char *sign;
	size_t local, dlen;
	uint32_t ref;
	const struct dir_rec *r;

	if (len > DIR_ADDR_MAX + 1)
		len += strlen(addr + len);
	sign = memrchr(addr, '@', len);
	if (sign == NULL || sign + 1 == addr + len)
		return DIR_UNKNOWN_DOMAIN;
	local = (size_t)(sign - addr);
	dlen = len - local; /* with the '@' */
	if (local == 0 || dlen > DIR_ADDR_MAX + 1)
		return DIR_UNKNOWN_DOMAIN;
	if (len <= DIR_ADDR_MAX) {
		for (size_t i = 0; i < local; i++)
			key[i] = s->case_sensitive_local ? addr[i] : lower(addr[i]);
		for (size_t i = local; i < len; i++)
			key[i] = lower(addr[i]);
		ref = find(s, key, len, hash_key(key, len, s->seed));
		if (ref != 0) {
			r = rec_at(s, ref);
			if ((r->kind & REC_KIND_MASK) == REC_MAILBOX) {
				if (out != NULL)
					answer(s, r, out);
				return DIR_MAILBOX;
			}
			if ((r->kind & REC_KIND_MASK) == REC_ALIAS) {
				if (out != NULL)
					answer(s, rec_at(s, r->target), out);
				return DIR_ALIAS;
			}
		}
		ref = find(s, key + local, dlen, hash_key(key + local, dlen, s->seed));
	} else {
		for (size_t i = 0; i < dlen; i++)
			key[i] = lower(sign[i]);
		ref = find(s, key, dlen, hash_key(key, dlen, s->seed));
	}
	if (ref == 0 || (rec_at(s, ref)->kind & REC_KIND_MASK) != REC_DOMAIN)
		return DIR_UNKNOWN_DOMAIN;
	if (!(rec_at(s, ref)->kind & REC_CATCH_ALL))
		return DIR_UNKNOWN_USER;
	if (out != NULL) {
		/* Not listed: the address stays as the client wrote it. */
		size_t n = len < sizeof(out->canonical) ? len : sizeof(out->canonical) - 1;

		memcpy(out->canonical, addr, n);
		out->canonical[n] = '\0';
		out->store[0] = '\0';
	}
	return DIR_CATCH_ALL;
}

void
dir_snapshot_stats(const struct dir_snapshot *s, struct dir_snapshot_stats *out)
{
	out->mailboxes = s->mailboxes;
	out->aliases = s->aliases;
	out->catch_alls = s->catch_alls;
	out->domains = s->domains;
	out->stores = s->nstores;
	out->table_slots = s->mask + 1;
	out->bytes = sizeof(*s) + (s->mask + 1) * sizeof(uint64_t) + s->arena_cap +
	             s->stores_cap * sizeof(uint32_t);
}
