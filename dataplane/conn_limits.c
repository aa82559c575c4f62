/*
 * conn_limits.c: connection accounting shared by every worker (conn_limits.h).
 *
 * Per worker: one rte_hash created with RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF
 * and no multi-writer flag, so that the owner is its only writer and takes no
 * lock, and every other worker reads it lock-free; an array of entries the
 * hash's data word indexes; a free list and a "limbo" FIFO of deleted entries
 * waiting for a QSBR grace period (rte_rcu_qsbr) before their slot and their
 * hash key position (rte_hash_free_key_with_position(), as rte_hash.h asks
 * for with RW_CONCURRENCY_LF) are reused.  Every counter one worker writes and
 * others read is a word stored and loaded with __atomic builtins.
 */
#include "dataplane/conn_limits.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_random.h>
#include <rte_rcu_qsbr.h>

#include "core/pa.h"
#include "smtp/smtp_session.h"

/* An entry with no connection and no attempt for this long is stale. */
#define STALE_S 2
/* Entries the owner examines per sweep, and at most one sweep per millisecond. */
#define SWEEP_BATCH 32
/* When the table is full at insert: a longer sweep before giving up. */
#define SWEEP_FULL 1024

struct limits_entry {
	struct limits_key key; /* written before the entry is published in the hash */
	uint32_t conns;        /* open connections on the owner: owner stores, all load */
	uint32_t used;         /* owner only: published in the hash */
	uint64_t rate;         /* second << 32 | attempts in that second: owner stores, all load */
	int32_t next_free;     /* owner only: index + 1 of the next free entry */
} __rte_cache_aligned;

struct limits_limbo {
	int32_t entry;  /* index */
	int32_t pos;    /* the hash's key position, freed with the entry */
	uint64_t token; /* rte_rcu_qsbr_start() at deletion */
};

struct limits_table {
	struct rte_hash *hash;
	struct limits_entry *entries;
	struct limits_limbo *limbo; /* a FIFO of `nentries` slots */
	uint32_t limbo_head, limbo_len;
	int32_t free_head; /* index + 1; 0: none */
	uint32_t used;     /* entries published (read racily by stats) */
	uint32_t sweep;    /* the next entry a sweep looks at */
	uint64_t next_sweep_tsc;
	bool online; /* registered reader on the QSBR variable is online */
} __rte_cache_aligned;

struct pa_limits {
	unsigned nworkers;
	uint32_t nentries;
	uint32_t total; /* open connections on all workers: atomic */
	struct rte_rcu_qsbr *qsbr;
	struct limits_table *tables; /* nworkers */
};

static uint64_t
now_s(void)
{
	return rte_get_timer_cycles() / rte_get_timer_hz();
}

void
limits_key_of(int family, const uint8_t *addr, struct limits_key *key)
{
	memset(key, 0, sizeof(*key));
	if (family == AF_INET) {
		key->b[10] = key->b[11] = 0xff;
		memcpy(key->b + 12, addr, 4);
		return;
	}
	/* An IPv4-mapped address is the IPv4 client it maps, not a /64. */
	if (memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memcpy(key->b, addr, 16);
		return;
	}
	memcpy(key->b, addr, 8);
}

static void
table_free(struct limits_table *t)
{
	rte_hash_free(t->hash);
	rte_free(t->entries);
	rte_free(t->limbo);
}

void
limits_destroy(struct pa_limits *l)
{
	if (l == NULL)
		return;
	for (unsigned i = 0; l->tables != NULL && i < l->nworkers; i++)
		table_free(&l->tables[i]);
	rte_free(l->tables);
	rte_free(l->qsbr);
	rte_free(l);
}

static int
table_init(struct limits_table *t, unsigned worker, uint32_t n, char *err, size_t errlen)
{
	/* rte_hash names are process-wide: one more set of tables needs new names. */
	static unsigned generations;
	unsigned generation = __atomic_fetch_add(&generations, 1, __ATOMIC_RELAXED);
	char name[RTE_HASH_NAMESIZE];
	struct rte_hash_parameters p = {
	    .name = name,
	    .entries = n,
	    .key_len = sizeof(struct limits_key),
	    .hash_func = rte_hash_crc,
	    /* A secret seed: an attacker cannot pick addresses that collide. */
	    .hash_func_init_val = (uint32_t)rte_rand(),
	    .socket_id = SOCKET_ID_ANY,
	    .extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF,
	};

	snprintf(name, sizeof(name), "pa_lim%u_%u", generation, worker);
	t->hash = rte_hash_create(&p);
	t->entries = rte_zmalloc("pa_limits", (size_t)n * sizeof(*t->entries), RTE_CACHE_LINE_SIZE);
	t->limbo = rte_zmalloc("pa_limits", (size_t)n * sizeof(*t->limbo), 0);
	if (t->hash == NULL || t->entries == NULL || t->limbo == NULL) {
		snprintf(err, errlen, "limits: no memory for %u entries on worker %u (%s)", n,
		         worker, rte_strerror(rte_errno));
		return PA_ERROR;
	}
	/* Every entry on the free list, in order. */
	for (uint32_t i = 0; i < n; i++)
		t->entries[i].next_free = i + 1 < n ? (int32_t)(i + 2) : 0;
	t->free_head = n > 0 ? 1 : 0;
	return PA_OK;
}

struct pa_limits *
limits_create(unsigned nworkers, unsigned entries, char *err, size_t errlen)
{
	struct pa_limits *l = rte_zmalloc("pa_limits", sizeof(*l), RTE_CACHE_LINE_SIZE);
	size_t qsize = rte_rcu_qsbr_get_memsize(nworkers);

	if (l == NULL) {
		snprintf(err, errlen, "limits: out of memory");
		return NULL;
	}
	l->nworkers = nworkers;
	l->nentries = entries;
	l->tables = rte_zmalloc("pa_limits", nworkers * sizeof(*l->tables), RTE_CACHE_LINE_SIZE);
	l->qsbr = rte_zmalloc("pa_limits_qsbr", qsize, RTE_CACHE_LINE_SIZE);
	if (l->tables == NULL || l->qsbr == NULL || rte_rcu_qsbr_init(l->qsbr, nworkers) != 0) {
		snprintf(err, errlen, "limits: out of memory");
		limits_destroy(l);
		return NULL;
	}
	for (unsigned w = 0; w < nworkers; w++) {
		if (table_init(&l->tables[w], w, entries, err, errlen) != PA_OK ||
		    rte_rcu_qsbr_thread_register(l->qsbr, w) != 0) {
			if (err[0] == '\0')
				snprintf(err, errlen, "limits: QSBR registration failed");
			limits_destroy(l);
			return NULL;
		}
	}
	return l;
}

/* Readers must be online before their first lookup: the QSBR grace period counts them. */
static void
go_online(struct pa_limits *l, unsigned worker)
{
	struct limits_table *t = &l->tables[worker];

	if (!t->online) {
		rte_rcu_qsbr_thread_online(l->qsbr, worker);
		t->online = true;
	}
}

/* The entry for key in table t, or NULL; checks the key, so a reused slot reads as absent. */
static struct limits_entry *
find(const struct pa_limits *l, const struct limits_table *t, const struct limits_key *key,
     int32_t *index)
{
	void *data;
	uintptr_t i;

	if (rte_hash_lookup_data(t->hash, key, &data) < 0)
		return NULL;
	i = (uintptr_t)data;
	if (i >= l->nentries || memcmp(t->entries[i].key.b, key->b, sizeof(key->b)) != 0)
		return NULL;
	*index = (int32_t)i;
	return &t->entries[i];
}

/* Limbo entries whose grace period is over go back to the free list (owner only). */
static void
reclaim(struct pa_limits *l, struct limits_table *t)
{
	while (t->limbo_len > 0) {
		struct limits_limbo *z = &t->limbo[t->limbo_head];

		if (rte_rcu_qsbr_check(l->qsbr, z->token, false) != 1)
			return; /* tokens only grow: the rest are younger */
		rte_hash_free_key_with_position(t->hash, z->pos);
		t->entries[z->entry].next_free = t->free_head;
		t->free_head = z->entry + 1;
		t->limbo_head = (t->limbo_head + 1) % l->nentries;
		t->limbo_len--;
	}
}

/* Removes up to `budget` stale entries from the hash into limbo (owner only). */
static void
sweep(struct pa_limits *l, struct limits_table *t, unsigned budget)
{
	uint64_t now = now_s();

	for (unsigned k = 0; k < budget && k < l->nentries; k++) {
		uint32_t i = t->sweep++ % l->nentries;
		struct limits_entry *e = &t->entries[i];
		int32_t pos;

		if (!e->used || e->conns != 0 || (e->rate >> 32) + STALE_S > now)
			continue;
		pos = rte_hash_del_key(t->hash, &e->key);
		if (pos < 0)
			continue;
		e->used = 0;
		t->used--;
		t->limbo[(t->limbo_head + t->limbo_len) % l->nentries] =
		    (struct limits_limbo){(int32_t)i, pos, rte_rcu_qsbr_start(l->qsbr)};
		t->limbo_len++;
	}
}

/* A fresh entry for key in the owner's table, or NULL when there is no room. */
static struct limits_entry *
insert(struct pa_limits *l, struct limits_table *t, const struct limits_key *key, int32_t *index)
{
	struct limits_entry *e;
	int32_t i;

	if (t->free_head == 0) {
		reclaim(l, t);
		sweep(l, t, SWEEP_FULL);
		if (t->free_head == 0)
			return NULL;
	}
	i = t->free_head - 1;
	e = &t->entries[i];
	t->free_head = e->next_free;
	e->key = *key;
	e->conns = 0;
	e->rate = 0;
	/* RW_CONCURRENCY_LF publishes with release semantics: the key above is seen first. */
	if (rte_hash_add_key_data(t->hash, key, (void *)(uintptr_t)i) < 0) {
		e->next_free = t->free_head;
		t->free_head = i + 1;
		return NULL;
	}
	e->used = 1;
	t->used++;
	*index = i;
	return e;
}

int
limits_admit_total(struct pa_limits *l, const struct limits_conf *conf, struct limits_hold *hold)
{
	uint32_t n = __atomic_add_fetch(&l->total, 1, __ATOMIC_RELAXED);

	if (conf->conn_total != 0 && n > conf->conn_total) {
		__atomic_sub_fetch(&l->total, 1, __ATOMIC_RELAXED);
		return SMTP_REFUSAL_CONN_TOTAL;
	}
	hold->total = true;
	return SMTP_REFUSAL_NONE;
}

int
limits_admit_addr(struct pa_limits *l, unsigned worker, const struct limits_key *key,
                  const struct limits_conf *conf, struct limits_hold *hold)
{
	struct limits_table *own = &l->tables[worker];
	struct limits_entry *mine = NULL;
	uint64_t now = now_s(), conns = 0, rate = 0, r;
	int32_t mine_index = -1;

	go_online(l, worker);
	for (unsigned w = 0; w < l->nworkers; w++) {
		int32_t index;
		struct limits_entry *e = find(l, &l->tables[w], key, &index);

		if (e == NULL)
			continue;
		conns += __atomic_load_n(&e->conns, __ATOMIC_ACQUIRE);
		r = __atomic_load_n(&e->rate, __ATOMIC_ACQUIRE);
		if (r >> 32 == now)
			rate += (uint32_t)r;
		if (w == worker) {
			mine = e;
			mine_index = index;
		}
	}
	if (mine == NULL)
		mine = insert(l, own, key, &mine_index);
	if (mine == NULL) {
		hold->untracked = true; /* fail open, counted by the caller */
		return SMTP_REFUSAL_NONE;
	}
	/* The attempt counts, admitted or not. */
	r = mine->rate;
	if (r >> 32 == now)
		r += (uint32_t)r < UINT32_MAX;
	else
		r = now << 32 | 1;
	__atomic_store_n(&mine->rate, r, __ATOMIC_RELEASE);
	if (conf->conn_rate_per_ip != 0 && rate >= conf->conn_rate_per_ip)
		return SMTP_REFUSAL_CONN_RATE;
	if (conf->conn_per_ip != 0 && conns >= conf->conn_per_ip)
		return SMTP_REFUSAL_CONN_PER_IP;
	__atomic_store_n(&mine->conns, mine->conns + 1, __ATOMIC_RELEASE);
	hold->entry = mine_index + 1;
	return SMTP_REFUSAL_NONE;
}

void
limits_release_addr(struct pa_limits *l, unsigned worker, struct limits_hold *hold)
{
	if (hold->entry > 0) {
		struct limits_entry *e = &l->tables[worker].entries[hold->entry - 1];

		if (e->conns > 0)
			__atomic_store_n(&e->conns, e->conns - 1, __ATOMIC_RELEASE);
	}
	hold->entry = 0;
	hold->untracked = false;
}

void
limits_release(struct pa_limits *l, unsigned worker, struct limits_hold *hold)
{
	limits_release_addr(l, worker, hold);
	if (hold->total)
		__atomic_sub_fetch(&l->total, 1, __ATOMIC_RELAXED);
	hold->total = false;
}

void
limits_tick(struct pa_limits *l, unsigned worker)
{
	struct limits_table *t = &l->tables[worker];
	uint64_t tsc;

	go_online(l, worker);
	/* Between two loops this worker holds no entry of any table. */
	rte_rcu_qsbr_quiescent(l->qsbr, worker);
	tsc = rte_get_timer_cycles();
	if (tsc < t->next_sweep_tsc)
		return;
	t->next_sweep_tsc = tsc + rte_get_timer_hz() / 1000;
	reclaim(l, t);
	sweep(l, t, SWEEP_BATCH);
}

unsigned
limits_addr_conns(struct pa_limits *l, const struct limits_key *key)
{
	unsigned n = 0;

	for (unsigned w = 0; w < l->nworkers; w++) {
		int32_t index;
		struct limits_entry *e = find(l, &l->tables[w], key, &index);

		if (e != NULL)
			n += __atomic_load_n(&e->conns, __ATOMIC_ACQUIRE);
	}
	return n;
}

unsigned
limits_entries(const struct pa_limits *l, unsigned worker)
{
	return __atomic_load_n(&l->tables[worker].used, __ATOMIC_RELAXED);
}
