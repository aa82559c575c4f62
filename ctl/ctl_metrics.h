/*
 * ctl_metrics.h: pigeond's counters in the Prometheus text exposition format
 * (version 0.0.4), for `pigeonctl metrics` and the HTTP listener.
 *
 * What it promises: every family has HELP and TYPE lines; labels are only
 * worker, shard, reason, quantile, version (TLS), destination (of the route
 * map) and result, so the number of series is bounded by the configuration
 * (never by clients, senders or recipients).
 */
#ifndef PA_CTL_METRICS_H
#define PA_CTL_METRICS_H

#include <stddef.h>

struct ctl_env;

/* A malloc'ed NUL-terminated text; NULL when out of memory. */
char *ctl_metrics_text(const struct ctl_env *env, size_t *len);

#endif
