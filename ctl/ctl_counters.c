/*
 * ctl_counters.c: the tables of ctl_counters.h (the DPDK stack's own table
 * is beside its counters, in dataplane/dp_counters.c).
 */
#include "ctl/ctl_counters.h"

#include "core/pa.h"
#include "dataplane/worker.h"
#include "dns/resolver.h"
#include "filter/milter_client.h"

#define TLS(key, field, help)                                                                      \
	{                                                                                          \
		key, "pigeonair_tls_" key "_total", "counter", help,                               \
		    offsetof(struct pa_worker_counters, field)                                     \
	}

const struct ctl_counter ctl_tls_counters[] = {
    TLS("handshakes", tls_handshakes, "TLS handshakes completed, full or resumed."),
    TLS("resumed", tls_resumed, "TLS handshakes completed by resuming a session (ticket)."),
    TLS("handshake_failures", tls_handshake_failures,
        "TLS handshakes failed: protocol errors, garbage, client gone."),
    TLS("handshake_timeouts", tls_handshake_timeouts,
        "TLS handshakes that did not finish within tls.handshake_timeout."),
    TLS("handshakes_deferred", tls_handshakes_deferred,
        "TLS handshake steps put off to the next loop by the per-loop budget."),
};
const size_t ctl_tls_counters_n = pa_array_size(ctl_tls_counters);

const struct ctl_tls_version ctl_tls_versions[] = {
    {"TLSv1.2", offsetof(struct pa_worker_counters, tls_v1_2)},
    {"TLSv1.3", offsetof(struct pa_worker_counters, tls_v1_3)},
};
const size_t ctl_tls_versions_n = pa_array_size(ctl_tls_versions);

#define SCREEN(key, field, help)                                                                   \
	{                                                                                          \
		key, "pigeonair_screen_" key "_total", "counter", help,                            \
		    offsetof(struct pa_worker_counters, field)                                     \
	}

const struct ctl_counter ctl_screen_counters[] = {
    SCREEN("passed", screen_passed, "Clients screened and greeted: under screen.threshold."),
    SCREEN("listed", screen_listed, "Clients at or over screen.threshold: refused."),
    SCREEN("allowlisted", screen_allowlisted,
           "Clients over screen.threshold by the DNSBLs, brought under it by a DNSWL."),
    SCREEN("allowed", screen_allowed, "Clients in screen.allow, not looked up."),
    SCREEN("fallback", screen_fallback,
           "Clients decided by screen.temporary_action: a lookup failed or timed out."),
    SCREEN("cached", screen_cached, "Verdicts taken from the worker's verdict cache."),
    SCREEN("busy", screen_busy,
           "Clients not looked up: the worker's lookups in flight were at "
           "the limit."),
};
const size_t ctl_screen_counters_n = pa_array_size(ctl_screen_counters);

const struct ctl_screen_result ctl_screen_results[] = {
    {"listed", offsetof(struct pa_worker_counters, screen_site_listed)},
    {"clear", offsetof(struct pa_worker_counters, screen_site_clear)},
    {"failed", offsetof(struct pa_worker_counters, screen_site_failed)},
};
const size_t ctl_screen_results_n = pa_array_size(ctl_screen_results);

#define DNS(key, field, help)                                                                      \
	{                                                                                          \
		key, "pigeonair_dns_" key "_total", "counter", help,                               \
		    offsetof(struct dns_resolver_stats, field)                                     \
	}

const struct ctl_counter ctl_dns_counters[] = {
    DNS("queries", queries, "Lookups the workers asked the resolver for."),
    DNS("cache_hits", cache_hits, "Lookups answered from the answer cache."),
    DNS("joined", joined, "Lookups answered by a query for the same name already in flight."),
    DNS("sent", sent, "Queries sent to dns.servers."),
    DNS("answers", answers, "Queries answered with A records."),
    DNS("notfound", notfound, "Queries answered NXDOMAIN or without an A record."),
    DNS("failures", failures, "Queries failed: SERVFAIL, REFUSED, server unreachable, malformed."),
    DNS("timeouts", timeouts, "Queries unanswered within dns.timeout."),
    {"cache_entries", "pigeonair_dns_cache_entries", "gauge", "Answers in the cache now.",
     offsetof(struct dns_resolver_stats, cache_entries)},
    DNS("cache_evictions", cache_evictions,
        "Live answers dropped from the full cache (dns.cache_size)."),
    DNS("cache_expired", cache_expired, "Answers dropped past their TTL."),
};
const size_t ctl_dns_counters_n = pa_array_size(ctl_dns_counters);

#define MILTER(key, field, help)                                                                   \
	{                                                                                          \
		key, "pigeonair_milter_" key "_total", "counter", help,                            \
		    offsetof(struct milter_client_stats, field)                                    \
	}

const struct ctl_counter ctl_milter_counters[] = {
    MILTER("messages", messages, "Messages the workers handed to the content filters."),
    MILTER("accepted", accepted, "Messages every filter accepted: stored."),
    MILTER("rejected", rejected, "Messages a filter rejected (5xx): not stored."),
    MILTER("tempfailed", tempfailed,
           "Messages answered 4xx: a filter's tempfail, or default_action tempfail."),
    MILTER("discarded", discarded, "Messages a filter discarded: answered 250, not stored."),
    MILTER("quarantined", quarantined, "Messages a filter quarantined: stored, marked."),
    MILTER("edited", edited, "Messages stored with the filters' header edits."),
    MILTER("defaulted", defaulted,
           "A filter's default_action applied (down, too slow, broke the protocol)."),
    MILTER("connects", connects, "Connections opened to the filters."),
    MILTER("connect_failures", connect_failures, "Connections to the filters that failed."),
    MILTER("timeouts", timeouts, "Filters that did not answer within their timeout."),
    MILTER("protocol_errors", protocol_errors, "Replies the milter protocol does not allow."),
    MILTER("queue_waits", queue_waits,
           "Messages that waited for a free connection (milter.connections)."),
};
const size_t ctl_milter_counters_n = pa_array_size(ctl_milter_counters);
