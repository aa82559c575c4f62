/*
 * ctl_counters.h: the one list of the TLS layer's, the screen's and the
 * resolver's counters that `stats`
 * (JSON and pigeonctl's text) and the metrics are written from; the DPDK
 * stack's are in the table beside struct dp_counters
 * (dataplane/dp_counters.h).
 *
 * Why a table: a counter added to a structure but to no output was
 * invisible to operators.  The writers loop over the rows, so a new counter
 * needs one row and nothing else.
 */
#ifndef PA_CTL_COUNTERS_H
#define PA_CTL_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

struct ctl_counter {
	const char *key;    /* the JSON key in stats (and pigeonctl's text) */
	const char *metric; /* the Prometheus family */
	const char *type;   /* "counter" or "gauge" */
	const char *help;
	size_t off; /* of a uint64_t in the structure the table describes */
};

/* The TLS counters of struct pa_worker_counters, except the handshakes by version. */
extern const struct ctl_counter ctl_tls_counters[];
extern const size_t ctl_tls_counters_n;
/* The milter thread's counters (filter/milter_client.h), from its stats struct. */
extern const struct ctl_counter ctl_milter_counters[];
extern const size_t ctl_milter_counters_n;

/* Completed handshakes by protocol version: one label value per row. */
struct ctl_tls_version {
	const char *name; /* as OpenSSL names it: "TLSv1.2" */
	size_t off;       /* of a uint64_t in struct pa_worker_counters */
};
extern const struct ctl_tls_version ctl_tls_versions[];
extern const size_t ctl_tls_versions_n;

/* The connection screen's verdicts (struct pa_worker_counters). */
extern const struct ctl_counter ctl_screen_counters[];
extern const size_t ctl_screen_counters_n;

/* Each DNS list's answers by result: one label value per row, an array indexed by list. */
struct ctl_screen_result {
	const char *name; /* "listed", "clear", "failed" */
	size_t off;       /* of a uint64_t[SCREEN_COUNTED_SITES] in struct pa_worker_counters */
};
extern const struct ctl_screen_result ctl_screen_results[];
extern const size_t ctl_screen_results_n;

/* The resolver thread's counters (struct dns_resolver_stats, dns/resolver.h). */
extern const struct ctl_counter ctl_dns_counters[];
extern const size_t ctl_dns_counters_n;

static inline uint64_t
ctl_counter_value(const void *base, size_t off)
{
	return *(const uint64_t *)((const char *)base + off);
}

#endif
