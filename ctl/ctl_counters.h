/*
 * ctl_counters.h: the one list of the DPDK stack's and the TLS layer's
 * counters that `stats` (JSON and pigeonctl's text) and the metrics are
 * written from.
 *
 * Why a table: a counter added to struct dp_counters but to no output was
 * invisible to operators.  Every scalar field of struct dp_counters has one
 * row here (ctl_counters.c fails to compile when the number of rows and of
 * fields differ; test_ctl_counters checks that the rows cover every field
 * exactly once), and the writers loop over the rows, so a new counter needs
 * one row and nothing else.
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

/* Every uint64_t of struct dp_counters but drops[] and rss_misqueued[] (written by reason). */
extern const struct ctl_counter ctl_tcp_counters[];
extern const size_t ctl_tcp_counters_n;

/* The TLS counters of struct pa_worker_counters, except the handshakes by version. */
extern const struct ctl_counter ctl_tls_counters[];
extern const size_t ctl_tls_counters_n;

/* Completed handshakes by protocol version: one label value per row. */
struct ctl_tls_version {
	const char *name; /* as OpenSSL names it: "TLSv1.2" */
	size_t off;       /* of a uint64_t in struct pa_worker_counters */
};
extern const struct ctl_tls_version ctl_tls_versions[];
extern const size_t ctl_tls_versions_n;

static inline uint64_t
ctl_counter_value(const void *base, size_t off)
{
	return *(const uint64_t *)((const char *)base + off);
}

#endif
