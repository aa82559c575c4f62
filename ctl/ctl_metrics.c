/*
 * ctl_metrics.c: Prometheus text exposition of pigeond's counters (ctl_metrics.h).
 *
 * Per worker: connections, messages, bytes, refusals by reason, commit
 * latency (a summary with p50/p99/p999), TLS handshakes (by version too);
 * per shard: the spool's commits; per route-map destination: the queue and
 * the hand-off engine's deliveries and circuit breaker; with the DPDK
 * backend, per worker every TCP counter (ctl_counters.h) and drops by
 * reason.  The text is written into a memory stream.
 */
#include "ctl/ctl_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "ctl/ctl_commands.h"
#include "ctl/ctl_counters.h"
#include "ctl/ctl_server.h"
#include "ctl/ctl_spool.h"
#include "ctl/ctl_stats.h"
#include "dataplane/worker.h"
#include "dns/resolver.h"
#include "filter/milter_client.h"
#include "handoff/handoff.h"
#include "spool/spool.h"
#include "spool/spool_iter.h"

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter or gauge family with a value per worker, read at offset off of the stats. */
struct worker_metric {
	const char *name;
	const char *type;
	const char *help;
	size_t off; /* of a uint64_t in struct pa_worker_counters */
};

#define WOFF(f) offsetof(struct pa_worker_counters, f)

static const struct worker_metric worker_metrics[] = {
    {"pigeonair_connections_open", "gauge", "SMTP connections open now.", WOFF(conns_open)},
    {"pigeonair_connections_total", "counter", "SMTP connections accepted by the transport.",
     WOFF(conns_total)},
    {"pigeonair_connections_refused_total", "counter",
     "Connections answered 421 at once (stopping, paused, spool, limits.*) or dropped.",
     WOFF(conns_refused)},
    {"pigeonair_connections_paused_total", "counter",
     "Connections answered 421 because the server was paused.", WOFF(conns_paused)},
    {"pigeonair_connections_spool_unhealthy_total", "counter",
     "Connections answered 421 4.3.0 because a spool shard was failed or stalled.",
     WOFF(conns_spool_unhealthy)},
    {"pigeonair_proxy_headers_total", "counter",
     "PROXY protocol headers taken from trusted balancers (smtp.trusted_proxies).",
     WOFF(proxy_headers)},
    {"pigeonair_xclients_total", "counter", "XCLIENT commands taken from trusted peers.",
     WOFF(xclients)},
    {"pigeonair_limits_untracked_total", "counter",
     "Connections admitted without per-address accounting: limits.table_size was full.",
     WOFF(limits_untracked)},
    {"pigeonair_messages_accepted_total", "counter",
     "Messages synced to the spool and answered 250.", WOFF(messages_accepted)},
    {"pigeonair_messages_failed_total", "counter", "Messages whose store failed, answered 451.",
     WOFF(messages_failed)},
    {"pigeonair_accepted_bytes_total", "counter", "Octets of accepted messages.",
     WOFF(bytes_accepted)},
    {"pigeonair_submit_retries_total", "counter",
     "Times a message waited because a spool ring was full.", WOFF(submit_retries)},
};

static void
write_workers(FILE *f, const struct ctl_stats *st)
{
	for (size_t m = 0; m < pa_array_size(worker_metrics); m++) {
		const struct worker_metric *wm = &worker_metrics[m];

		family(f, wm->name, wm->type, wm->help);
		for (unsigned i = 0; i < st->nworkers; i++)
			fprintf(f, "%s{worker=\"%u\"} %llu\n", wm->name, i,
			        (unsigned long long)*(
			            const uint64_t *)((const char *)&st->workers[i].c + wm->off));
	}
	family(f, "pigeonair_refusals_total", "counter", "SMTP refusals sent, by reason.");
	for (unsigned i = 0; i < st->nworkers; i++)
		for (int r = SMTP_REFUSAL_NONE + 1; r < SMTP_REFUSAL_COUNT; r++)
			fprintf(f, "pigeonair_refusals_total{worker=\"%u\",reason=\"%s\"} %llu\n",
			        i, smtp_refusal_name((enum smtp_refusal)r),
			        (unsigned long long)st->workers[i].c.refusals[r]);
	family(f, "pigeonair_commit_latency_seconds", "summary",
	       "Spool commit latency, submit to completion (synced in every shard).");
	for (unsigned i = 0; i < st->nworkers; i++) {
		const struct latency_hist *h = &st->workers[i].c.commit_latency;
		static const double qs[] = {0.5, 0.99, 0.999};

		for (size_t q = 0; q < pa_array_size(qs); q++)
			fprintf(f,
			        "pigeonair_commit_latency_seconds{worker=\"%u\",quantile=\"%g\"} "
			        "%.6f\n",
			        i, qs[q], (double)latency_quantile(h, qs[q]) / 1e6);
		fprintf(f, "pigeonair_commit_latency_seconds_sum{worker=\"%u\"} %.6f\n", i,
		        (double)h->sum_us / 1e6);
		fprintf(f, "pigeonair_commit_latency_seconds_count{worker=\"%u\"} %llu\n", i,
		        (unsigned long long)h->count);
	}
}

static void
write_spool(FILE *f, const struct ctl_env *env)
{
	struct spool *spool = env->shared->spool;
	unsigned shards = spool_shard_count(spool);
	struct spool_shard_stats *s = calloc(shards, sizeof(*s));
	static const struct {
		const char *name, *help;
		size_t off;
	} m[] = {
	    {"pigeonair_spool_commits_total", "Synced RocksDB write batches (group commits).",
	     offsetof(struct spool_shard_stats, commits)},
	    {"pigeonair_spool_messages_committed_total", "Message copies committed.",
	     offsetof(struct spool_shard_stats, messages)},
	    {"pigeonair_spool_commit_failures_total", "Message copies whose commit failed.",
	     offsetof(struct spool_shard_stats, failures)},
	    {"pigeonair_spool_committed_bytes_total", "Octets committed.",
	     offsetof(struct spool_shard_stats, bytes)},
	    {"pigeonair_spool_stalls_total",
	     "Writes RocksDB stalled past spool.stall_timeout (their messages got 451).",
	     offsetof(struct spool_shard_stats, stalls)},
	    {"pigeonair_spool_write_errors_total", "Writes RocksDB failed (disk full, I/O error).",
	     offsetof(struct spool_shard_stats, write_errors)},
	    {"pigeonair_spool_reopens_total", "Times a failed shard was closed and opened again.",
	     offsetof(struct spool_shard_stats, reopens)},
	    {"pigeonair_spool_recoveries_total", "Times an unhealthy shard became healthy again.",
	     offsetof(struct spool_shard_stats, recoveries)},
	    {"pigeonair_spool_doorbells_total",
	     "Eventfd writes by DPDK workers waking the shard's idle committer.",
	     offsetof(struct spool_shard_stats, doorbells)},
	};

	if (s == NULL)
		return;
	for (unsigned i = 0; i < shards; i++)
		spool_shard_stats(spool, i, &s[i]);
	for (size_t k = 0; k < pa_array_size(m); k++) {
		family(f, m[k].name, "counter", m[k].help);
		for (unsigned i = 0; i < shards; i++)
			fprintf(f, "%s{shard=\"%u\"} %llu\n", m[k].name, i,
			        (unsigned long long)*(const uint64_t *)((const char *)&s[i] +
			                                                m[k].off));
	}
	family(f, "pigeonair_spool_groups_total", "counter",
	       "Group commits by the message copies synced at once: size 1, 2-3, 4-7, ...");
	for (unsigned i = 0; i < shards; i++)
		for (unsigned b = 0; b < SPOOL_GROUP_BUCKETS; b++) {
			char size[32];

			if (b == 0)
				snprintf(size, sizeof(size), "1");
			else if (b + 1 < SPOOL_GROUP_BUCKETS)
				snprintf(size, sizeof(size), "%u-%u", 1u << b, (2u << b) - 1);
			else
				snprintf(size, sizeof(size), "%u+", 1u << b);
			fprintf(f, "pigeonair_spool_groups_total{shard=\"%u\",size=\"%s\"} %llu\n",
			        i, size, (unsigned long long)s[i].groups[b]);
		}
	/* 1 while the shard takes writes; 0 while new connections get 421 because of it. */
	family(f, "pigeonair_spool_shard_healthy", "gauge",
	       "1 while the shard accepts writes, 0 while it is failed or stalled.");
	for (unsigned i = 0; i < shards; i++)
		fprintf(f, "pigeonair_spool_shard_healthy{shard=\"%u\"} %d\n", i,
		        s[i].healthy ? 1 : 0);
	family(f, "pigeonair_spool_healthy", "gauge",
	       "1 while every shard accepts writes; 0: new connections get 421 4.3.0.");
	fprintf(f, "pigeonair_spool_healthy %d\n", spool_healthy(spool) ? 1 : 0);
	free(s);
}

/* Every row of dp_counter_table: nothing in struct dp_counters goes unexported. */
static void
write_tcp(FILE *f, const struct ctl_stats *st)
{
	if (!st->total.has_tcp)
		return;
	for (size_t m = 0; m < dp_counter_table_n; m++) {
		const struct dp_counter *c = &dp_counter_table[m];

		family(f, c->metric, c->type, c->help);
		for (unsigned i = 0; i < st->nworkers; i++)
			if (st->workers[i].has_tcp)
				fprintf(
				    f, "%s{worker=\"%u\"} %llu\n", c->metric, i,
				    (unsigned long long)dp_counter_value(&st->workers[i].tcp, c));
	}
	family(f, "pigeonair_tcp_time_wait", "gauge", "Connections in TIME_WAIT now.");
	for (unsigned i = 0; i < st->nworkers; i++)
		if (st->workers[i].has_tcp)
			fprintf(f, "pigeonair_tcp_time_wait{worker=\"%u\"} %llu\n", i,
			        (unsigned long long)st->workers[i].time_wait_now);
	family(f, "pigeonair_packet_drops_total", "counter",
	       "Frames dropped by the stack, by reason.");
	for (unsigned i = 0; i < st->nworkers; i++)
		for (unsigned r = 0; st->workers[i].has_tcp && r < DP_DROP_COUNT; r++)
			fprintf(f,
			        "pigeonair_packet_drops_total{worker=\"%u\",reason=\"%s\"} %llu\n",
			        i, dp_drop_name((enum dp_drop)r),
			        (unsigned long long)st->workers[i].tcp.drops[r]);
	family(f, "pigeonair_rss_misqueued_total", "counter",
	       "Frames the port's hardware RSS put on a queue other than their flow's, by reason.");
	for (unsigned i = 0; i < st->nworkers; i++)
		for (unsigned r = 0; st->workers[i].has_tcp && r < DP_MISQ_COUNT; r++)
			fprintf(f,
			        "pigeonair_rss_misqueued_total{worker=\"%u\",reason=\"%s\"} %llu\n",
			        i, dp_misq_name((enum dp_misq)r),
			        (unsigned long long)st->workers[i].tcp.rss_misqueued[r]);
}

/* A table of ctl_counters.h over struct pa_worker_counters: one family per row, a value per worker.
 */
static void
write_worker_rows(FILE *f, const struct ctl_stats *st, const struct ctl_counter *rows, size_t n)
{
	for (size_t m = 0; m < n; m++) {
		const struct ctl_counter *c = &rows[m];

		family(f, c->metric, c->type, c->help);
		for (unsigned i = 0; i < st->nworkers; i++)
			fprintf(f, "%s{worker=\"%u\"} %llu\n", c->metric, i,
			        (unsigned long long)ctl_counter_value(&st->workers[i].c, c->off));
	}
}

/* Written on both backends, with or without a certificate: a zero says TLS is idle. */
static void
write_tls(FILE *f, const struct ctl_stats *st)
{
	write_worker_rows(f, st, ctl_tls_counters, ctl_tls_counters_n);
	family(f, "pigeonair_tls_handshakes_by_version_total", "counter",
	       "TLS handshakes completed, by the protocol version negotiated.");
	for (unsigned i = 0; i < st->nworkers; i++)
		for (size_t v = 0; v < ctl_tls_versions_n; v++)
			fprintf(f,
			        "pigeonair_tls_handshakes_by_version_total{worker=\"%u\","
			        "version=\"%s\"} %llu\n",
			        i, ctl_tls_versions[v].name,
			        (unsigned long long)ctl_counter_value(&st->workers[i].c,
			                                              ctl_tls_versions[v].off));
}

/* One thread's counters (no worker label), by their table. */
static void
write_thread_rows(FILE *f, const void *stats, const struct ctl_counter *rows, size_t n)
{
	for (size_t m = 0; m < n; m++) {
		family(f, rows[m].metric, rows[m].type, rows[m].help);
		fprintf(f, "%s %llu\n", rows[m].metric,
		        (unsigned long long)ctl_counter_value(stats, rows[m].off));
	}
}

/* Verdicts per worker; each list's answers by its domain and result; the resolver's counters. */
static void
write_screen(FILE *f, const struct ctl_env *env, const struct ctl_stats *st)
{
	const struct pa_config *cfg = &env->shared->runtime->config;
	struct dns_resolver_stats ds;

	write_worker_rows(f, st, ctl_screen_counters, ctl_screen_counters_n);
	family(f, "pigeonair_screen_list_answers_total", "counter",
	       "Answers of each DNS list (screen.dnsbl_sites, screen.dnswl_sites), by result.");
	for (unsigned i = 0; i < st->nworkers; i++)
		for (unsigned s = 0; s < cfg->nscreen_dnsbl + cfg->nscreen_dnswl; s++) {
			bool bl = s < cfg->nscreen_dnsbl;
			unsigned k = bl ? s : SCREEN_SITES_MAX + (s - cfg->nscreen_dnsbl);

			for (size_t r = 0; r < ctl_screen_results_n; r++)
				fprintf(
				    f,
				    "pigeonair_screen_list_answers_total{worker=\"%u\",list=\"%s\","
				    "kind=\"%s\",result=\"%s\"} %llu\n",
				    i,
				    bl ? cfg->screen_dnsbl[s].domain
				       : cfg->screen_dnswl[s - cfg->nscreen_dnsbl].domain,
				    bl ? "dnsbl" : "dnswl", ctl_screen_results[r].name,
				    (unsigned long long)ctl_counter_value(
				        &st->workers[i].c,
				        ctl_screen_results[r].off + k * sizeof(uint64_t)));
		}
	if (env->shared->resolver == NULL)
		return;
	dns_resolver_stats(env->shared->resolver, &ds);
	write_thread_rows(f, &ds, ctl_dns_counters, ctl_dns_counters_n);
}

/* The milter thread's counters (docs/milter.md), without milter.servers none. */
static void
write_milter(FILE *f, const struct ctl_env *env)
{
	struct milter_client_stats ms;

	if (env->shared->milter == NULL)
		return;
	milter_client_stats(env->shared->milter, &ms);
	write_thread_rows(f, &ms, ctl_milter_counters, ctl_milter_counters_n);
}

static void
write_handoff(FILE *f, const struct ctl_env *env)
{
	const struct handoff *h = env->shared->handoff;
	unsigned shards = spool_shard_count(env->shared->spool);
	struct handoff_stats st;

	if (h == NULL)
		return;
	handoff_stats(h, &st);
	family(f, "pigeonair_handoff_delivered_total", "counter",
	       "Recipients handed off and acknowledged with 2xx.");
	fprintf(f, "pigeonair_handoff_delivered_total %llu\n", (unsigned long long)st.delivered);
	family(f, "pigeonair_handoff_deferred_total", "counter", "Temporary hand-off failures.");
	fprintf(f, "pigeonair_handoff_deferred_total %llu\n", (unsigned long long)st.deferred);
	family(f, "pigeonair_handoff_failed_total", "counter", "Permanent hand-off failures.");
	fprintf(f, "pigeonair_handoff_failed_total %llu\n", (unsigned long long)st.failed);
	family(f, "pigeonair_handoff_dsns_total", "counter",
	       "Delivery status notifications queued.");
	fprintf(f, "pigeonair_handoff_dsns_total %llu\n", (unsigned long long)st.dsns);
	family(f, "pigeonair_handoff_store_refused_total", "counter",
	       "Directory store values not routed by relay.store_route (no address literal).");
	fprintf(f, "pigeonair_handoff_store_refused_total %llu\n",
	        (unsigned long long)st.store_refused);
	family(f, "pigeonair_handoff_streamed_total", "counter",
	       "Copies the hand-off took in memory from the spool's commit stream.");
	fprintf(f, "pigeonair_handoff_streamed_total %llu\n", (unsigned long long)st.streamed);
	family(f, "pigeonair_handoff_stream_overflow_total", "counter",
	       "Committed copies the commit stream had no room for (read from disk instead).");
	fprintf(f, "pigeonair_handoff_stream_overflow_total %llu\n",
	        (unsigned long long)st.stream_overflow);
	family(f, "pigeonair_handoff_disk_loads_total", "counter",
	       "Message bodies the hand-off read back from the spool.");
	fprintf(f, "pigeonair_handoff_disk_loads_total %llu\n", (unsigned long long)st.disk_loads);
	family(f, "pigeonair_spool_queued_bytes", "gauge",
	       "Octets queued for hand-off in a shard (the backpressure figure).");
	for (unsigned i = 0; i < shards; i++)
		fprintf(f, "pigeonair_spool_queued_bytes{shard=\"%u\"} %llu\n", i,
		        (unsigned long long)handoff_shard_queued_bytes(h, i));
}

/* A label value in the text format: backslash, double quote and newline escaped. */
static void
label_value(FILE *f, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void
dest_series(FILE *f, const char *name, const json_t *row, const char *extra, json_int_t value)
{
	fputs(name, f);
	fputs("{destination=\"", f);
	label_value(f, json_string_value(json_object_get(row, "destination")));
	fprintf(f, "\"%s} %lld\n", extra, (long long)value);
}

/* A figure of the hand-off engine's view of a destination; 0 when it has none yet. */
static json_int_t
engine_value(const json_t *row, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(row, "engine"), key));
}

/*
 * Per destination of the route map (relay.routes, relay.default; "none":
 * unrouted): the queue as `spool summary` sees it and the hand-off engine's
 * own view.  The label takes only route-map destinations, whose number the
 * configuration bounds: never a recipient or a client.  The queue figures
 * come from the same walk over every message record as `spool summary`.
 */
static void
write_dests(FILE *f, const struct ctl_env *env)
{
	static const struct {
		const char *name, *type, *key, *help;
	} queue[] = {
	    {"pigeonair_destination_queued_messages", "gauge", "messages",
	     "Message copies queued for the destination."},
	    {"pigeonair_destination_queued_bytes", "gauge", "bytes",
	     "Octets of the message copies queued for the destination."},
	    {"pigeonair_destination_oldest_age_seconds", "gauge", "oldest_age_s",
	     "Age of the oldest message copy queued for the destination (0: none)."},
	    {"pigeonair_destination_deferred_messages", "gauge", "deferred",
	     "Queued copies with a recipient there that failed temporarily."},
	    {"pigeonair_destination_held_messages", "gauge", "held",
	     "Queued copies held by the operator (spool hold)."},
	};
	static const struct {
		const char *result, *key;
	} outcomes[] = {{"ok", "delivered"}, {"tempfail", "deferred"}, {"permfail", "failed"}};
	char err[CTL_ERR_MAX] = "";
	json_t *req = json_pack("{s:s}", "cmd", "spool.summary"), *sum = NULL, *rows, *row;
	size_t i;

	if (env->shared->handoff == NULL || req == NULL) {
		json_decref(req);
		return;
	}
	/* The summary only reads; it takes a non-const env for the filters' sake. */
	if (ctl_spool_summary((struct ctl_env *)env, req, &sum, err, sizeof(err)) != PA_OK) {
		pa_log_warning("metrics: per-destination figures left out: %s", err);
		json_decref(req);
		return;
	}
	json_decref(req);
	rows = json_object_get(sum, "destinations");
	for (size_t m = 0; m < pa_array_size(queue); m++) {
		family(f, queue[m].name, queue[m].type, queue[m].help);
		json_array_foreach(rows, i, row)
		{
			dest_series(f, queue[m].name, row, "",
			            json_integer_value(json_object_get(row, queue[m].key)));
		}
	}
	family(f, "pigeonair_destination_deliveries_total", "counter",
	       "Recipients handed to the destination since start, by result (ok: 2xx, "
	       "tempfail: 4xx or no connection, permfail: 5xx).");
	json_array_foreach(rows, i, row)
	{
		for (size_t o = 0; o < pa_array_size(outcomes); o++) {
			char extra[32];

			snprintf(extra, sizeof(extra), ",result=\"%s\"", outcomes[o].result);
			dest_series(f, "pigeonair_destination_deliveries_total", row, extra,
			            engine_value(row, outcomes[o].key));
		}
	}
	family(f, "pigeonair_destination_connections", "gauge",
	       "Hand-off connections open to the destination now.");
	json_array_foreach(rows, i, row)
	{
		dest_series(f, "pigeonair_destination_connections", row, "",
		            engine_value(row, "connections"));
	}
	family(f, "pigeonair_destination_concurrency", "gauge",
	       "Hand-off connections the destination may have now (adaptive, between "
	       "relay.concurrency_min and relay.concurrency).");
	json_array_foreach(rows, i, row)
	{
		dest_series(f, "pigeonair_destination_concurrency", row, "",
		            engine_value(row, "concurrency"));
	}
	family(f, "pigeonair_destination_breaker_open", "gauge",
	       "1 while the destination's circuit breaker is open (no attempts), else 0.");
	json_array_foreach(rows, i, row)
	{
		dest_series(f, "pigeonair_destination_breaker_open", row, "",
		            engine_value(row, "breaker_open_s") > 0);
	}
	family(f, "pigeonair_destination_breaker_open_seconds", "gauge",
	       "Seconds until the destination's circuit breaker closes (0: closed).");
	json_array_foreach(rows, i, row)
	{
		dest_series(f, "pigeonair_destination_breaker_open_seconds", row, "",
		            engine_value(row, "breaker_open_s"));
	}
	json_decref(sum);
}

char *
ctl_metrics_text(const struct ctl_env *env, size_t *len)
{
	struct ctl_stats st;
	char *text = NULL;
	FILE *f;

	if (ctl_stats_take(env, &st) != PA_OK)
		return NULL;
	f = open_memstream(&text, len);
	if (f == NULL) {
		ctl_stats_free(&st);
		return NULL;
	}
	family(f, "pigeonair_up", "gauge", "1 while pigeond serves.");
	fprintf(f, "pigeonair_up 1\n");
	family(f, "pigeonair_paused", "gauge", "1 while paused by the control socket.");
	fprintf(f, "pigeonair_paused %d\n",
	        __atomic_load_n(&env->shared->paused, __ATOMIC_ACQUIRE) != 0);
	family(f, "pigeonair_start_time_seconds", "gauge", "When pigeond started, Unix time.");
	fprintf(f, "pigeonair_start_time_seconds %llu\n",
	        (unsigned long long)(env->started_us / 1000000u));
	family(f, "pigeonair_workers", "gauge", "Worker lcores.");
	fprintf(f, "pigeonair_workers %u\n", env->nworkers);
	family(f, "pigeonair_log_lines_dropped_total", "counter",
	       "Log lines of worker lcores dropped because their log ring was full.");
	fprintf(f, "pigeonair_log_lines_dropped_total %llu\n",
	        (unsigned long long)pa_log_dropped());
	write_workers(f, &st);
	write_spool(f, env);
	write_handoff(f, env);
	write_dests(f, env);
	write_tls(f, &st);
	write_screen(f, env, &st);
	write_milter(f, env);
	write_tcp(f, &st);
	ctl_stats_free(&st);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
