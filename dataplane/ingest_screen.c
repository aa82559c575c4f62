/*
 * ingest_screen.c: connection screening against DNS lists (ingest_screen.h;
 * docs/security.md, "Screening").
 *
 * A lookup is a struct dns_query on the worker's request ring, its cookie
 * the connection and its tag the list's position (DNSBLs first, then
 * DNSWLs, in the connection's own runtime); the answers come back on the
 * worker's answer ring and are taken once per loop.  A connection with
 * lookups out is never freed under them: ingest_close() keeps it
 * (transport_gone) and the last answer frees it through the backend's
 * resume hook, as a spool completion does.  The worker never has more
 * lookups out than its rings hold (dns_resolver_capacity()); past that a
 * connection is decided as if its lists had failed, and counted.
 */
#include "dataplane/ingest_screen.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/pa.h"
#include "dataplane/ingest_limits.h"
#include "dataplane/screen_cache.h"
#include "dataplane/worker.h"
#include "dns/resolver.h"

#define ANSWER_BURST 32
#define NO_SITE 0xff
#define RING_SIZE 4096 /* lookups in flight per worker */

static unsigned
site_count(const struct pa_config *cfg)
{
	return cfg->nscreen_dnsbl + cfg->nscreen_dnswl;
}

/* The i-th list: DNSBLs, then DNSWLs. */
static const struct screen_site *
site_at(const struct pa_config *cfg, unsigned i)
{
	return i < cfg->nscreen_dnsbl ? &cfg->screen_dnsbl[i]
	                              : &cfg->screen_dnswl[i - cfg->nscreen_dnsbl];
}

/* Where the i-th list's counters are (worker.h: DNSWLs from SCREEN_SITES_MAX). */
static unsigned
counted_at(const struct pa_config *cfg, unsigned i)
{
	return i < cfg->nscreen_dnsbl ? i : SCREEN_SITES_MAX + (i - cfg->nscreen_dnsbl);
}

int
ingest_screen_create(struct pa_shared *shared, const struct pa_config *config, char *err,
                     size_t errlen)
{
	const struct dns_resolver_config rc = {
	    .servers = config->dns_servers,
	    .timeout_ms = config->dns_timeout_ms,
	    .cache_size = config->dns_cache_size,
	    .nworkers = config->workers,
	    .ring_size = RING_SIZE,
	};

	shared->resolver = NULL;
	if (config->dns_servers[0] == '\0')
		return PA_OK;
	return dns_resolver_start(&shared->resolver, &rc, err, errlen);
}

void
ingest_screen_destroy(struct pa_shared *shared)
{
	dns_resolver_stop(shared->resolver);
	shared->resolver = NULL;
}

int
ingest_screen_attach(struct pa_worker *worker, int notify_fd, bool may_syscall)
{
	struct dns_resolver *r = worker->shared->resolver;

	if (r == NULL)
		return PA_OK;
	worker->screen_cache = screen_cache_new(worker->runtime->config.screen_cache_size);
	if (worker->screen_cache == NULL)
		return PA_ERROR;
	return dns_resolver_attach(r, worker->id, notify_fd, may_syscall);
}

void
ingest_screen_reload(struct pa_worker *worker)
{
	if (worker->screen_cache != NULL)
		screen_cache_clear(worker->screen_cache);
}

void
ingest_screen_detach(struct pa_worker *worker)
{
	screen_cache_free(worker->screen_cache);
	worker->screen_cache = NULL;
}

/* The verdict from the weights gathered; with lookups still out, as if they had failed. */
static void
decide(struct ingest_conn *conn)
{
	const struct pa_config *cfg = &conn->runtime->config;
	struct pa_worker_counters *c = &conn->worker->counters;

	if (conn->screen_dnsbl + conn->screen_dnswl >= (int)cfg->screen_threshold) {
		conn->screen_state = SCREEN_LISTED;
		c->screen_listed++;
	} else if (conn->screen_failed || conn->screen_pending > 0) {
		conn->screen_state = SCREEN_FAILED;
		c->screen_fallback++;
	} else {
		conn->screen_state = SCREEN_PASS;
		if (conn->screen_dnsbl >= (int)cfg->screen_threshold)
			c->screen_allowlisted++;
		else
			c->screen_passed++;
	}
}

void
ingest_screen_start(struct ingest_conn *conn, int family, const uint8_t *addr)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const struct pa_config *cfg = &conn->runtime->config;
	struct pa_worker *worker = conn->worker;
	struct dns_resolver *r = worker->shared->resolver;
	unsigned nsites = site_count(cfg);
	struct screen_verdict v;
	uint64_t now;

	conn->screen_state = SCREEN_NONE;
	conn->screen_site = NO_SITE;
	conn->screen_dnsbl = conn->screen_dnswl = 0;
	conn->screen_failed = false;
	if (nsites == 0 || r == NULL || worker->screen_cache == NULL)
		return;
	if (family == AF_INET6 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
		family = AF_INET;
		addr += sizeof(v4mapped);
	}
	if (config_cidr_match(cfg->screen_allow, cfg->nscreen_allow, family, addr)) {
		worker->counters.screen_allowed++;
		return;
	}
	conn->screen_family = (uint8_t)family;
	memcpy(conn->screen_addr, addr, family == AF_INET ? 4 : 16);
	now = pa_monotonic_ms();
	if (screen_cache_get(worker->screen_cache, family, addr, now, &v)) {
		worker->counters.screen_cached++;
		conn->screen_dnsbl = v.dnsbl;
		conn->screen_dnswl = v.dnswl;
		conn->screen_site = v.site;
		decide(conn);
		return;
	}
	if (worker->dns_inflight + nsites > dns_resolver_capacity(r)) {
		worker->counters.screen_busy++;
		conn->screen_failed = true;
		decide(conn);
		return;
	}
	conn->screen_ttl = UINT32_MAX;
	for (unsigned i = 0; i < nsites; i++) {
		struct dns_query q = {.cookie = (uintptr_t)conn, .tag = i};

		if (screen_query_name(family, addr, site_at(cfg, i)->domain, q.name,
		                      sizeof(q.name)) < 0 ||
		    dns_resolver_submit(r, worker->id, &q) != PA_OK) {
			worker->counters.screen_site_failed[counted_at(cfg, i)]++;
			conn->screen_failed = true;
			continue;
		}
		conn->screen_pending++;
		worker->dns_inflight++;
	}
	if (conn->screen_pending == 0) {
		worker->counters.screen_busy++;
		decide(conn);
		return;
	}
	conn->screen_state = SCREEN_WAITING;
	conn->screen_deadline_ms = now + cfg->dns_timeout_ms;
}

bool
ingest_screen_waiting(const struct ingest_conn *conn, unsigned *ms)
{
	uint64_t now;

	if (conn->screen_state != SCREEN_WAITING)
		return false;
	now = pa_monotonic_ms();
	*ms = conn->screen_deadline_ms > now ? (unsigned)(conn->screen_deadline_ms - now) : 1;
	return true;
}

static void
refuse(struct ingest_conn *conn, int why, const char *detail, const char *fmt, const char *list)
{
	const char *host = conn->runtime->config.hostname;
	char reply[SMTP_COMMAND_LINE_MAX];

	if (smtp_session_closing(conn->smtp))
		return; /* stopping: its 421 went out already */
	ingest_limits_count_refusal(conn, why, detail);
	/* The formats are ours: "%s" twice, the client then the list or the host name. */
	if (list != NULL)
		snprintf(reply, sizeof(reply), fmt, conn->client, list);
	else
		snprintf(reply, sizeof(reply), fmt, host, conn->client);
	smtp_session_refuse(conn->smtp, reply);
}

void
ingest_screen_greet(struct ingest_conn *conn)
{
	const struct pa_config *cfg = &conn->runtime->config;
	const char *list;

	if (conn->screen_state == SCREEN_WAITING)
		decide(conn); /* dns.timeout: the lists not heard from decide nothing */
	switch (conn->screen_state) {
	case SCREEN_LISTED:
		/* A cached verdict may name a position a reload has since changed. */
		list = conn->screen_site < cfg->nscreen_dnsbl
		           ? cfg->screen_dnsbl[conn->screen_site].domain
		           : "a DNS list";
		if (cfg->screen_tempfail_listed)
			refuse(conn, SMTP_REFUSAL_DNSBL, list,
			       "421 4.7.1 Service unavailable; client [%s] blocked using %s, try "
			       "again later",
			       list);
		else
			refuse(conn, SMTP_REFUSAL_DNSBL, list,
			       "550 5.7.1 Service unavailable; client [%s] blocked using %s", list);
		return;
	case SCREEN_FAILED:
		if (cfg->screen_tempfail_failure) {
			refuse(conn, SMTP_REFUSAL_SCREEN_TEMPFAIL, NULL,
			       "421 4.7.0 %.255s Service unavailable: client [%s] cannot be "
			       "checked now, try again later",
			       NULL);
			return;
		}
		break;
	default:
		break;
	}
	smtp_session_greet(conn->smtp);
}

static void
take_answer(struct pa_worker *worker, const struct dns_answer *a)
{
	struct ingest_conn *conn = (struct ingest_conn *)(uintptr_t)a->cookie;
	const struct pa_config *cfg = &conn->runtime->config;
	unsigned k = counted_at(cfg, a->tag);
	const struct screen_site *site = site_at(cfg, a->tag);
	bool listed = false;

	worker->dns_inflight--;
	conn->screen_pending--;
	if (a->status == DNS_OK || a->status == DNS_NOTFOUND) {
		for (unsigned i = 0; i < a->naddr && a->status == DNS_OK && !listed; i++)
			listed = screen_site_match(site, (const uint8_t *)&a->addrs[i]);
		if (a->ttl < conn->screen_ttl)
			conn->screen_ttl = a->ttl;
	} else {
		conn->screen_failed = true;
		worker->counters.screen_site_failed[k]++;
	}
	if (listed) {
		worker->counters.screen_site_listed[k]++;
		if (a->tag >= cfg->nscreen_dnsbl) {
			conn->screen_dnswl = (int16_t)(conn->screen_dnswl + site->weight);
		} else {
			conn->screen_dnsbl = (int16_t)(conn->screen_dnsbl + site->weight);
			if (conn->screen_site == NO_SITE ||
			    site->weight > cfg->screen_dnsbl[conn->screen_site].weight)
				conn->screen_site = (uint8_t)a->tag;
		}
	} else if (a->status == DNS_OK || a->status == DNS_NOTFOUND) {
		worker->counters.screen_site_clear[k]++;
	}
	if (conn->screen_pending > 0)
		return;
	/* A verdict made with the lists of a runtime since replaced is not kept. */
	if (!conn->screen_failed && conn->runtime == worker->runtime) {
		/* Also when dns.timeout decided first: the next connection is answered at once. */
		struct screen_verdict v = {conn->screen_dnsbl, conn->screen_dnswl,
		                           conn->screen_site};

		screen_cache_put(worker->screen_cache, conn->screen_family, conn->screen_addr, &v,
		                 conn->screen_ttl, pa_monotonic_ms());
	}
	if (conn->screen_state == SCREEN_WAITING)
		decide(conn);
	if (conn->transport_gone) {
		if (!conn->storing)
			worker->resume(conn); /* frees it */
		return;
	}
	if (conn->phase == INGEST_PHASE_SCREEN) {
		conn->phase = INGEST_PHASE_SESSION;
		ingest_screen_greet(conn);
		worker->resume(conn);
	}
}

void
ingest_screen_poll(struct pa_worker *worker)
{
	struct dns_resolver *r = worker->shared->resolver;
	struct dns_answer a[ANSWER_BURST];
	unsigned n;

	if (r == NULL || worker->dns_inflight == 0)
		return;
	do {
		n = dns_resolver_poll(r, worker->id, a, ANSWER_BURST);
		for (unsigned i = 0; i < n; i++)
			take_answer(worker, &a[i]);
	} while (n == ANSWER_BURST);
}
