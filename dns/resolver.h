/*
 * resolver.h: asynchronous DNS for the poll-mode workers.
 *
 * One plain thread (`dns`) owns a c-ares channel (the servers of
 * dns.servers only, never the machine's resolv.conf servers), the answer
 * cache (dns_cache.h) and every socket.  A worker puts a struct dns_query
 * on its own request ring and later takes struct dns_answer from its own
 * answer ring (both DPDK rings, single producer and single consumer, by
 * value): no lock, no allocation and no system call on the worker.  The
 * thread polls the request rings; a kernel-backend worker's eventfd is
 * written when answers are queued for it, as the spool's committers do.
 *
 * Promises: every query accepted by dns_resolver_submit() is answered once,
 * within dns.timeout per server (c-ares's per-query timeout), from the
 * cache when an unexpired answer is there (TTL honoured, no packet sent),
 * and queries for one name in flight at once share one packet.
 */
#ifndef PA_DNS_RESOLVER_H
#define PA_DNS_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns_types.h"

struct dns_resolver;

struct dns_resolver_config {
	const char *servers; /* c-ares CSV: ADDR:PORT,[ADDR6]:PORT (config's dns.servers) */
	unsigned timeout_ms; /* per query and server */
	unsigned cache_size; /* answers kept */
	unsigned nworkers;
	unsigned ring_size; /* queries in flight per worker; a power of two */
};

/* The thread's counters, read at any time (each word atomically). */
struct dns_resolver_stats {
	uint64_t queries;    /* taken from the workers */
	uint64_t cache_hits; /* answered from the cache */
	uint64_t joined;     /* answered by a query for the same name already in flight */
	uint64_t sent;       /* queries c-ares sent to the servers */
	uint64_t answers;    /* of those, answered with A records */
	uint64_t notfound;   /* of those, NXDOMAIN or no A record */
	uint64_t failures;   /* of those, failed (SERVFAIL, REFUSED, unreachable, malformed) */
	uint64_t timeouts;   /* of those, unanswered within dns.timeout */
	uint64_t cache_entries;
	uint64_t cache_evictions; /* live answers dropped because the cache was full */
	uint64_t cache_expired;
};

/* Starts the thread.  PA_ERROR with err naming the call that failed. */
int dns_resolver_start(struct dns_resolver **out, const struct dns_resolver_config *config,
                       char *err, size_t errlen);

/* Stops the thread (queries in flight are answered DNS_FAILED) and frees everything. */
void dns_resolver_stop(struct dns_resolver *r);

/*
 * Before the worker's loop: notify_fd (an eventfd, or -1) is written when
 * answers are queued for it; may_syscall false (a poll-mode lcore) makes
 * the thread poll the rings every millisecond and never wait to be woken.
 */
int dns_resolver_attach(struct dns_resolver *r, unsigned worker, int notify_fd, bool may_syscall);

/* How many queries a worker may have in flight: its rings' capacity. */
unsigned dns_resolver_capacity(const struct dns_resolver *r);

/* Worker side.  PA_AGAIN when the request ring is full. */
int dns_resolver_submit(struct dns_resolver *r, unsigned worker, const struct dns_query *q);

/* Worker side: up to max answers. */
unsigned dns_resolver_poll(struct dns_resolver *r, unsigned worker, struct dns_answer *out,
                           unsigned max);

void dns_resolver_stats(const struct dns_resolver *r, struct dns_resolver_stats *out);

#endif
