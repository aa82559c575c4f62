/*
 * resolver.c: the `dns` thread (resolver.h).
 *
 * Why c-ares (libc-ares2 1.18) and not libunbound: the screen needs a stub
 * resolver that asks the operator's servers (a local recursive resolver or a
 * DNS list's mirror), with a timeout per query that we choose, answers whose
 * TTLs we can read, and no thread or cache of its own that we could neither
 * bound nor count.  c-ares is exactly that: an event-driven stub that runs on
 * our thread and our poll(2) loop, takes its servers with their ports from
 * us (ares_set_servers_ports_csv), times queries out itself (ARES_OPT_TIMEOUTMS,
 * ARES_OPT_TRIES) and hands back the raw answer.  libunbound is a full
 * recursive and validating resolver with worker threads and caches sized in
 * bytes; forwarding it to one server works, but its cache cannot count what
 * it evicts, and a DNS list is queried at its own servers' TTLs anyway.
 *
 * The loop: take the workers' queries (answer from the cache, join one in
 * flight for the same name, or ares_query()), poll c-ares's sockets for at
 * most 1 ms while anything is happening or a poll-mode worker is attached,
 * let c-ares read answers and expire queries, queue each answer on its
 * worker's ring and write that worker's eventfd (kernel backend).  Idle with
 * only kernel-backend workers, the thread sleeps on an eventfd that a
 * worker writes only when it sees the thread asleep (core/svc_thread.h).
 */
#include "dns/resolver.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "core/svc_thread.h"
#include "dns/dns_cache.h"
#include "dns/dns_packet.h"

#define TAKE_BURST 32
#define INFLIGHT_BUCKETS 1024
#define IDLE_LOOPS_BEFORE_SLEEP 1000 /* about a second of 1 ms polls */
#define SLEEP_MS 1000
#define TTL_MAX 86400u /* no answer is kept longer than a day, whatever it says */

struct waiter {
	struct waiter *next;
	uint64_t cookie;
	uint32_t tag;
	unsigned worker;
};

/* One name being asked of the servers, and everyone waiting for it. */
struct inflight {
	struct inflight *hnext;
	struct dns_resolver *r;
	struct waiter *waiters;
	char name[DNS_NAME_MAX + 1];
};

/* An answer its worker's ring had no room for: queued again next loop. */
struct overflow {
	struct overflow *next;
	struct dns_answer answer;
};

struct rworker {
	struct rte_ring *req, *ans;
	struct overflow *over_head, **over_tail;
};

struct dns_resolver {
	ares_channel channel;
	struct pa_svc svc; /* the thread, its wake-ups and the workers' (core/svc_thread.h) */
	struct dns_cache *cache;
	unsigned nworkers, ring_size;
	struct rworker *w;
	struct inflight *table[INFLIGHT_BUCKETS];
	unsigned ninflight;
	struct dns_resolver_stats stats;
};

#define count pa_svc_count

static uint32_t
bucket_of(const char *name)
{
	return dns_name_hash(name) % INFLIGHT_BUCKETS;
}

static void
deliver(struct dns_resolver *r, unsigned worker, const struct dns_answer *a)
{
	struct rworker *w = &r->w[worker];
	struct overflow *o;

	pa_svc_notify_due(&r->svc, worker);
	if (w->over_head == NULL &&
	    rte_ring_enqueue_elem(w->ans, (void *)(uintptr_t)a, sizeof(*a)) == 0)
		return;
	o = malloc(sizeof(*o));
	if (o == NULL) {
		/*
		 * Never dropped: the worker keeps the connection until its last
		 * answer.  The worker drains its ring every loop (also while it
		 * stops), so this thread, which no client waits on directly,
		 * waits for room instead.
		 */
		pa_log_err("dns: out of memory for an answer: waiting for room in worker %u's ring",
		           worker);
		pa_svc_notify_workers(&r->svc);
		while (rte_ring_enqueue_elem(w->ans, (void *)(uintptr_t)a, sizeof(*a)) != 0)
			usleep(100);
		return;
	}
	o->next = NULL;
	o->answer = *a;
	*w->over_tail = o;
	w->over_tail = &o->next;
}

static void
flush_overflow(struct dns_resolver *r)
{
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct rworker *w = &r->w[i];

		while (w->over_head != NULL &&
		       rte_ring_enqueue_elem(w->ans, &w->over_head->answer,
		                             sizeof(w->over_head->answer)) == 0) {
			struct overflow *o = w->over_head;

			w->over_head = o->next;
			if (w->over_head == NULL)
				w->over_tail = &w->over_head;
			free(o);
			pa_svc_notify_due(&r->svc, i);
		}
	}
}

/* The answer of a completed query, its TTL in ans->ttl; counted. */
static void
make_answer(struct dns_resolver *r, int status, const unsigned char *abuf, int alen,
            struct dns_answer *ans)
{
	struct ares_addrttl addrs[DNS_ADDRS_MAX];
	int n = DNS_ADDRS_MAX;

	memset(ans, 0, sizeof(*ans));
	if (status == ARES_SUCCESS) {
		int rc = ares_parse_a_reply(abuf, alen, NULL, addrs, &n);

		if (rc == ARES_SUCCESS && n > 0) {
			uint32_t ttl = TTL_MAX;

			ans->status = DNS_OK;
			ans->naddr = (uint8_t)n;
			for (int i = 0; i < n; i++) {
				memcpy(&ans->addrs[i], &addrs[i].ipaddr, 4);
				if (addrs[i].ttl >= 0 && (uint32_t)addrs[i].ttl < ttl)
					ttl = (uint32_t)addrs[i].ttl;
			}
			ans->ttl = ttl;
			count(&r->stats.answers, 1);
			return;
		}
		status = rc == ARES_ENODATA || (rc == ARES_SUCCESS && n == 0) ? ARES_ENODATA : rc;
	}
	switch (status) {
	case ARES_ENOTFOUND:
	case ARES_ENODATA:
		ans->status = DNS_NOTFOUND;
		ans->ttl = abuf != NULL && alen > 0 ? dns_negative_ttl(abuf, (size_t)alen) : 0;
		if (ans->ttl > TTL_MAX)
			ans->ttl = TTL_MAX;
		count(&r->stats.notfound, 1);
		break;
	case ARES_ETIMEOUT:
		ans->status = DNS_TIMEOUT;
		count(&r->stats.timeouts, 1);
		break;
	default: /* ESERVFAIL, EREFUSED, ECONNREFUSED, EBADRESP, EDESTRUCTION, ... */
		ans->status = DNS_FAILED;
		count(&r->stats.failures, 1);
		break;
	}
}

static void
query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct inflight *f = arg, **link;
	struct dns_resolver *r = f->r;
	struct dns_answer ans;

	(void)timeouts;
	make_answer(r, status, abuf, alen, &ans);
	dns_cache_put(r->cache, f->name, &ans, ans.ttl, pa_monotonic_ms());
	for (link = &r->table[bucket_of(f->name)]; *link != f; link = &(*link)->hnext)
		;
	*link = f->hnext;
	r->ninflight--;
	while (f->waiters != NULL) {
		struct waiter *w = f->waiters;

		f->waiters = w->next;
		ans.cookie = w->cookie;
		ans.tag = w->tag;
		deliver(r, w->worker, &ans);
		free(w);
	}
	free(f);
}

static void
answer_now(struct dns_resolver *r, unsigned worker, const struct dns_query *q, uint8_t status)
{
	struct dns_answer ans = {.cookie = q->cookie, .tag = q->tag, .status = status};

	deliver(r, worker, &ans);
}

static void
take_query(struct dns_resolver *r, unsigned worker, struct dns_query *q)
{
	struct dns_answer ans;
	struct inflight *f;
	struct waiter *w;
	uint32_t ttl;
	unsigned b;

	count(&r->stats.queries, 1);
	q->name[DNS_NAME_MAX] = '\0';
	if (dns_cache_get(r->cache, q->name, pa_monotonic_ms(), &ans, &ttl)) {
		count(&r->stats.cache_hits, 1);
		ans.cookie = q->cookie;
		ans.tag = q->tag;
		ans.ttl = ttl;
		ans.cached = 1;
		deliver(r, worker, &ans);
		return;
	}
	w = malloc(sizeof(*w));
	if (w == NULL) {
		answer_now(r, worker, q, DNS_FAILED);
		return;
	}
	*w = (struct waiter){NULL, q->cookie, q->tag, worker};
	b = bucket_of(q->name);
	for (f = r->table[b]; f != NULL; f = f->hnext) {
		if (strcmp(f->name, q->name) == 0) {
			w->next = f->waiters;
			f->waiters = w;
			count(&r->stats.joined, 1);
			return;
		}
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		free(w);
		answer_now(r, worker, q, DNS_FAILED);
		return;
	}
	f->r = r;
	f->waiters = w;
	memcpy(f->name, q->name, sizeof(f->name)); /* terminated at DNS_NAME_MAX above */
	f->hnext = r->table[b];
	r->table[b] = f;
	r->ninflight++;
	count(&r->stats.sent, 1);
	/* May call query_done() at once (a bad name, no server): f is in the table by then. */
	ares_query(r->channel, f->name, 1 /* C_IN */, 1 /* T_A */, query_done, f);
}

/* Takes what the workers queued; returns how many queries there were. */
static unsigned
take_queries(struct dns_resolver *r)
{
	unsigned total = 0;

	for (unsigned i = 0; i < r->nworkers; i++) {
		struct dns_query qs[TAKE_BURST];
		unsigned n;

		if (r->w[i].req == NULL)
			continue;
		do {
			n = rte_ring_dequeue_burst_elem(r->w[i].req, qs, sizeof(qs[0]), TAKE_BURST,
			                                NULL);
			for (unsigned k = 0; k < n; k++)
				take_query(r, i, &qs[k]);
			total += n;
		} while (n == TAKE_BURST);
	}
	return total;
}

static bool
rings_empty(struct dns_resolver *r)
{
	for (unsigned i = 0; i < r->nworkers; i++)
		if (!rte_ring_empty(r->w[i].req))
			return false;
	return true;
}

static void *
resolver_main(void *arg)
{
	struct dns_resolver *r = arg;
	unsigned idle = 0;

	while (pa_svc_running(&r->svc)) {
		struct pollfd pfd[ARES_GETSOCK_MAXNUM + 1];
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		int npfd = 0, timeout = 1, rc;
		unsigned bits;
		unsigned took = take_queries(r);

		idle = took > 0 || r->ninflight > 0 ? 0 : idle + 1;
		bits = (unsigned)ares_getsock(r->channel, socks, ARES_GETSOCK_MAXNUM);
		for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			/* ARES_GETSOCK_WRITABLE() shifts an int into its sign bit: the same,
			 * unsigned. */
			short ev = (short)((bits & 1u << i ? POLLIN : 0) |
			                   (bits & 1u << (i + ARES_GETSOCK_MAXNUM) ? POLLOUT : 0));

			if (ev != 0)
				pfd[npfd++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		if (took > 0) {
			timeout = 0;
		} else if (idle > IDLE_LOOPS_BEFORE_SLEEP && !pa_svc_poll_workers(&r->svc)) {
			pa_svc_sleeping(&r->svc);
			timeout = rings_empty(r) ? SLEEP_MS : 0;
		}
		pfd[npfd++] = (struct pollfd){.fd = r->svc.wake_fd, .events = POLLIN};
		rc = poll(pfd, (nfds_t)npfd, timeout);
		pa_svc_awake(&r->svc);
		if (rc == -1 && errno != EINTR)
			pa_log_err("dns: poll() failed: %s", strerror(errno));
		for (int i = 0; rc > 0 && i < npfd; i++) {
			if (pfd[i].fd == r->svc.wake_fd) {
				if (pfd[i].revents & POLLIN)
					pa_svc_drain(&r->svc);
				continue;
			}
			if (pfd[i].revents == 0)
				continue;
			ares_process_fd(r->channel,
			                pfd[i].revents & (POLLIN | POLLERR | POLLHUP)
			                    ? pfd[i].fd
			                    : ARES_SOCKET_BAD,
			                pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
		}
		/* Expires queries past their timeout. */
		ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
		flush_overflow(r);
		pa_svc_notify_workers(&r->svc);
		if (r->cache != NULL) {
			struct dns_cache_stats cs;

			dns_cache_stats(r->cache, &cs);
			__atomic_store_n(&r->stats.cache_entries, cs.entries, __ATOMIC_RELAXED);
			__atomic_store_n(&r->stats.cache_evictions, cs.evictions, __ATOMIC_RELAXED);
			__atomic_store_n(&r->stats.cache_expired, cs.expired, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static void
destroy(struct dns_resolver *r)
{
	pa_svc_stop(&r->svc);
	if (r->channel != NULL)
		ares_destroy(r->channel); /* query_done(ARES_EDESTRUCTION) for each in flight */
	for (unsigned i = 0; r->w != NULL && i < r->nworkers; i++) {
		struct rworker *w = &r->w[i];

		while (w->over_head != NULL) {
			struct overflow *o = w->over_head;

			w->over_head = o->next;
			free(o);
		}
		rte_ring_free(w->req);
		rte_ring_free(w->ans);
	}
	free(r->w);
	dns_cache_free(r->cache);
	pa_svc_fini(&r->svc);
	free(r);
}

int
dns_resolver_start(struct dns_resolver **out, const struct dns_resolver_config *config, char *err,
                   size_t errlen)
{
	static atomic_uint instances;
	unsigned id = atomic_fetch_add(&instances, 1);
	struct ares_options opts;
	struct dns_resolver *r;
	int rc;

	*out = NULL;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_library_init() failed: %s", ares_strerror(rc));
		return PA_ERROR;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "dns: out of memory");
		return PA_ERROR;
	}
	if (pa_svc_init(&r->svc, "dns", config->nworkers, err, errlen) != PA_OK) {
		free(r);
		return PA_ERROR;
	}
	r->nworkers = config->nworkers;
	r->ring_size = config->ring_size;
	r->w = calloc(config->nworkers, sizeof(*r->w));
	r->cache = dns_cache_new(config->cache_size);
	if (r->w == NULL || r->cache == NULL) {
		snprintf(err, errlen, "dns: out of memory");
		destroy(r);
		return PA_ERROR;
	}
	for (unsigned i = 0; i < config->nworkers; i++) {
		char qname[RTE_RING_NAMESIZE], aname[RTE_RING_NAMESIZE];
		struct rworker *w = &r->w[i];

		snprintf(qname, sizeof(qname), "dnsq%u_%u", id, i);
		snprintf(aname, sizeof(aname), "dnsa%u_%u", id, i);
		w->over_tail = &w->over_head;
		w->req = rte_ring_create_elem(qname, sizeof(struct dns_query), config->ring_size,
		                              SOCKET_ID_ANY,
		                              RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
		w->ans = rte_ring_create_elem(aname, sizeof(struct dns_answer), config->ring_size,
		                              SOCKET_ID_ANY,
		                              RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
		if (w->req == NULL || w->ans == NULL) {
			snprintf(err, errlen, "rte_ring_create_elem(%s, %u) failed: %s",
			         w->req == NULL ? qname : aname, config->ring_size,
			         rte_strerror(rte_errno));
			destroy(r);
			return PA_ERROR;
		}
	}
	memset(&opts, 0, sizeof(opts));
	opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_STAYOPEN;
	opts.timeout = (int)config->timeout_ms;
	opts.tries = 1;
	opts.ndots = 0;
	rc = ares_init_options(&r->channel, &opts,
	                       ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	                           ARES_OPT_NDOTS);
	if (rc != ARES_SUCCESS) {
		r->channel = NULL;
		snprintf(err, errlen, "ares_init_options() failed: %s", ares_strerror(rc));
		destroy(r);
		return PA_ERROR;
	}
	rc = ares_set_servers_ports_csv(r->channel, config->servers);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_set_servers_ports_csv(%s) failed: %s", config->servers,
		         ares_strerror(rc));
		destroy(r);
		return PA_ERROR;
	}
	if (pa_svc_start(&r->svc, resolver_main, r, err, errlen) != PA_OK) {
		destroy(r);
		return PA_ERROR;
	}
	pa_log_info("dns: resolver started servers=%s timeout=%ums cache=%u", config->servers,
	            config->timeout_ms, config->cache_size);
	*out = r;
	return PA_OK;
}

void
dns_resolver_stop(struct dns_resolver *r)
{
	if (r != NULL)
		destroy(r);
}

int
dns_resolver_attach(struct dns_resolver *r, unsigned worker, int notify_fd, bool may_syscall)
{
	return pa_svc_attach(&r->svc, worker, notify_fd, may_syscall);
}

unsigned
dns_resolver_capacity(const struct dns_resolver *r)
{
	return r->ring_size;
}

int
dns_resolver_submit(struct dns_resolver *r, unsigned worker, const struct dns_query *q)
{
	if (rte_ring_enqueue_elem(r->w[worker].req, (void *)(uintptr_t)q, sizeof(*q)) != 0)
		return PA_AGAIN;
	pa_svc_wake(&r->svc, worker);
	return PA_OK;
}

unsigned
dns_resolver_poll(struct dns_resolver *r, unsigned worker, struct dns_answer *out, unsigned max)
{
	return rte_ring_dequeue_burst_elem(r->w[worker].ans, out, sizeof(*out), max, NULL);
}

void
dns_resolver_stats(const struct dns_resolver *r, struct dns_resolver_stats *out)
{
	pa_svc_stats_copy(out, &r->stats, sizeof(*out));
}
