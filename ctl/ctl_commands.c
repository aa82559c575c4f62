/*
 * ctl_commands.c: the command table of the control socket (ctl_commands.h).
 *
 * Every command is one row: name and handler.  The handlers here act on the
 * server as a whole (status, stats, pause, resume, reload, shutdown,
 * metrics); the spool's are in ctl_spool.c.  pause and resume only flip a
 * flag the workers read (ingest.c): sessions already past MAIL finish.
 */
#include "ctl/ctl_commands.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "ctl/ctl_counters.h"
#include "ctl/ctl_handoff.h"
#include "ctl/ctl_metrics.h"
#include "ctl/ctl_server.h"
#include "ctl/ctl_spool.h"
#include "ctl/ctl_stats.h"
#include "dataplane/dpdk_backend.h"
#include "dataplane/worker.h"
#include "dns/resolver.h"
#include "filter/milter_client.h"
#include "spool/spool.h"
#include "spool/spool_iter.h"

static json_t *
latency_json(const struct latency_hist *h)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "count", (json_int_t)h->count, "p50",
	                 (json_int_t)latency_quantile(h, 0.50), "p99",
	                 (json_int_t)latency_quantile(h, 0.99), "p999",
	                 (json_int_t)latency_quantile(h, 0.999));
}

/* Every row of dp_counter_table, the gauge of TIME_WAIT now, drops seen, RSS misqueues. */
static json_t *
tcp_json(const struct ctl_worker_stats *w)
{
	const struct dp_counters *t = &w->tcp;
	json_t *drops = json_object(), *misq = json_object(), *obj = json_object();

	if (drops == NULL || misq == NULL || obj == NULL) {
		json_decref(drops);
		json_decref(misq);
		json_decref(obj);
		return NULL;
	}
	for (unsigned i = 0; i < DP_MISQ_COUNT; i++)
		json_object_set_new(misq, dp_misq_name((enum dp_misq)i),
		                    json_integer((json_int_t)t->rss_misqueued[i]));
	for (size_t i = 0; i < dp_counter_table_n; i++)
		json_object_set_new(
		    obj, dp_counter_table[i].key,
		    json_integer((json_int_t)dp_counter_value(t, &dp_counter_table[i])));
	json_object_set_new(obj, "time_wait", json_integer((json_int_t)w->time_wait_now));
	for (unsigned i = 0; i < DP_DROP_COUNT; i++)
		if (t->drops[i] != 0)
			json_object_set_new(drops, dp_drop_name((enum dp_drop)i),
			                    json_integer((json_int_t)t->drops[i]));
	json_object_set_new(obj, "drops", drops);
	json_object_set_new(obj, "rss_misqueued", misq);
	return obj;
}

/* The TLS layer's counters, with completed handshakes by protocol version. */
static json_t *
tls_json(const struct pa_worker_counters *c)
{
	json_t *obj = json_object(), *versions = json_object();

	if (obj == NULL || versions == NULL) {
		json_decref(obj);
		json_decref(versions);
		return NULL;
	}
	for (size_t i = 0; i < ctl_tls_counters_n; i++)
		json_object_set_new(
		    obj, ctl_tls_counters[i].key,
		    json_integer((json_int_t)ctl_counter_value(c, ctl_tls_counters[i].off)));
	for (size_t i = 0; i < ctl_tls_versions_n; i++)
		json_object_set_new(
		    versions, ctl_tls_versions[i].name,
		    json_integer((json_int_t)ctl_counter_value(c, ctl_tls_versions[i].off)));
	json_object_set_new(obj, "versions", versions);
	return obj;
}

static json_t *
worker_json(const struct ctl_worker_stats *w, long id)
{
	const struct pa_worker_counters *c = &w->c;
	json_t *refused = json_object(), *obj;

	if (refused == NULL)
		return NULL;
	for (int r = SMTP_REFUSAL_NONE + 1; r < SMTP_REFUSAL_COUNT; r++)
		json_object_set_new(refused, smtp_refusal_name((enum smtp_refusal)r),
		                    json_integer((json_int_t)c->refusals[r]));
	obj = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "conns_open",
	    (json_int_t)c->conns_open, "conns_total", (json_int_t)c->conns_total, "conns_refused",
	    (json_int_t)c->conns_refused, "conns_paused", (json_int_t)c->conns_paused,
	    "messages_accepted", (json_int_t)c->messages_accepted, "messages_failed",
	    (json_int_t)c->messages_failed, "bytes_accepted", (json_int_t)c->bytes_accepted,
	    "submit_retries", (json_int_t)c->submit_retries, "refused", refused,
	    "commit_latency_us", latency_json(&c->commit_latency));
	if (obj == NULL)
		return NULL;
	json_object_set_new(obj, "conns_spool_unhealthy",
	                    json_integer((json_int_t)c->conns_spool_unhealthy));
	/* The limits' refusals are under "refused"; these say what the balancers did. */
	json_object_set_new(obj, "proxy_headers", json_integer((json_int_t)c->proxy_headers));
	json_object_set_new(obj, "xclients", json_integer((json_int_t)c->xclients));
	json_object_set_new(obj, "limits_untracked", json_integer((json_int_t)c->limits_untracked));
	json_object_set_new(obj, "tls", tls_json(c));
	if (id >= 0)
		json_object_set_new(obj, "worker", json_integer(id));
	if (w->has_tcp)
		json_object_set_new(obj, "tcp", tcp_json(w));
	return obj;
}

/*
 * The screen's verdicts, and each list of the running configuration by its
 * domain: {"passed": N, ..., "zen.example": {"listed": N, "clear": N, "failed": N}}.
 */
static json_t *
screen_json(const struct ctl_env *env, const struct pa_worker_counters *c)
{
	const struct pa_config *cfg = &env->shared->runtime->config;
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	for (size_t i = 0; i < ctl_screen_counters_n; i++)
		json_object_set_new(
		    obj, ctl_screen_counters[i].key,
		    json_integer((json_int_t)ctl_counter_value(c, ctl_screen_counters[i].off)));
	for (unsigned i = 0; i < cfg->nscreen_dnsbl + cfg->nscreen_dnswl; i++) {
		bool bl = i < cfg->nscreen_dnsbl;
		unsigned k = bl ? i : SCREEN_SITES_MAX + (i - cfg->nscreen_dnsbl);
		json_t *site = json_object();

		for (size_t r = 0; site != NULL && r < ctl_screen_results_n; r++)
			json_object_set_new(
			    site, ctl_screen_results[r].name,
			    json_integer((json_int_t)ctl_counter_value(
			        c, ctl_screen_results[r].off + k * sizeof(uint64_t))));
		json_object_set_new(obj,
		                    bl ? cfg->screen_dnsbl[i].domain
		                       : cfg->screen_dnswl[i - cfg->nscreen_dnsbl].domain,
		                    site);
	}
	return obj;
}

/* A thread's counters (the resolver's, the milter thread's) by their table. */
static json_t *
thread_json(const void *stats, const struct ctl_counter *rows, size_t n)
{
	json_t *obj = json_object();

	for (size_t i = 0; obj != NULL && i < n; i++)
		json_object_set_new(
		    obj, rows[i].key,
		    json_integer((json_int_t)ctl_counter_value(stats, rows[i].off)));
	return obj;
}

/* The resolver thread's counters; null without dns.servers. */
static json_t *
dns_json(const struct ctl_env *env)
{
	struct dns_resolver_stats s;

	if (env->shared->resolver == NULL)
		return json_null();
	dns_resolver_stats(env->shared->resolver, &s);
	return thread_json(&s, ctl_dns_counters, ctl_dns_counters_n);
}

/* The milter thread's counters (it runs without milter.servers too: a reload may bring some). */
static json_t *
milter_json(const struct ctl_env *env)
{
	struct milter_client_stats s;

	if (env->shared->milter == NULL)
		return json_null();
	milter_client_stats(env->shared->milter, &s);
	return thread_json(&s, ctl_milter_counters, ctl_milter_counters_n);
}

static int
cmd_stats(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct ctl_stats st;
	json_t *workers, *total;

	(void)req;
	if (ctl_stats_take(env, &st) != PA_OK) {
		snprintf(err, errlen, "stats: out of memory");
		return PA_ERROR;
	}
	workers = json_array();
	for (unsigned i = 0; workers != NULL && i < st.nworkers; i++) {
		json_t *w = worker_json(&st.workers[i], (long)i);

		if (w != NULL)
			json_object_set_new(w, "screen", screen_json(env, &st.workers[i].c));
		json_array_append_new(workers, w);
	}
	total = worker_json(&st.total, -1);
	if (total != NULL)
		json_object_set_new(total, "screen", screen_json(env, &st.total.c));
	*result = json_pack("{s:o, s:o, s:o, s:o}", "workers", workers, "total", total, "dns",
	                    dns_json(env), "milter", milter_json(env));
	ctl_stats_free(&st);
	return *result != NULL ? PA_OK : PA_ERROR;
}

/*
 * "health": "unhealthy" while a shard refuses writes (a failed or stalled
 * write, docs/security.md "Faults": new connections get 421), else
 * "commit_failures" when some commit ever failed, else "ok".
 */
static json_t *
spool_health_json(const struct ctl_env *env)
{
	struct spool *spool = env->shared->spool;
	unsigned shards = spool_shard_count(spool);
	struct spool_shard_stats total = {0};
	json_t *bad = json_array(), *out;

	for (unsigned i = 0; i < shards; i++) {
		struct spool_shard_stats s;
		struct spool_shard_health h;

		spool_shard_stats(spool, i, &s);
		total.commits += s.commits;
		total.messages += s.messages;
		total.failures += s.failures;
		total.bytes += s.bytes;
		total.stalls += s.stalls;
		total.write_errors += s.write_errors;
		total.reopens += s.reopens;
		total.recoveries += s.recoveries;
		spool_shard_health(spool, i, &h);
		if (h.state != SPOOL_SHARD_OK)
			json_array_append_new(
			    bad, json_pack("{s:I, s:s, s:I, s:s}", "shard", (json_int_t)i, "state",
			                   spool_shard_state_name(h.state), "since_us",
			                   (json_int_t)h.since_us, "error", h.last_error));
	}
	out = json_pack("{s:s, s:b, s:s, s:I, s:I, s:I, s:I}", "health",
	                !spool_healthy(spool) ? "unhealthy"
	                : total.failures == 0 ? "ok"
	                                      : "commit_failures",
	                "healthy", spool_healthy(spool), "dir",
	                env->shared->runtime->config.spool_dir, "shards", (json_int_t)shards,
	                "commits", (json_int_t)total.commits, "messages_committed",
	                (json_int_t)total.messages, "commit_failures", (json_int_t)total.failures);
	if (out == NULL) {
		json_decref(bad);
		return NULL;
	}
	json_object_set_new(out, "stalls", json_integer((json_int_t)total.stalls));
	json_object_set_new(out, "write_errors", json_integer((json_int_t)total.write_errors));
	json_object_set_new(out, "reopens", json_integer((json_int_t)total.reopens));
	json_object_set_new(out, "recoveries", json_integer((json_int_t)total.recoveries));
	json_object_set_new(out, "unhealthy_shards", bad);
	return out;
}

static int
cmd_status(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	const struct pa_runtime *rt = __atomic_load_n(&env->shared->runtime, __ATOMIC_ACQUIRE);
	uint64_t now = pa_wall_clock_us();
	char telemetry[PATH_MAX];
	struct dpdk_port_status dp;
	json_t *listeners;

	(void)req;
	listeners =
	    json_pack("{s:s, s:s, s:s?}", "smtp", rt->config.listen, "ctl", env->socket_path,
	              "metrics", env->metrics_listen[0] != '\0' ? env->metrics_listen : NULL);
	/* The file prefix differs per instance and mode: operators read the path here. */
	snprintf(telemetry, sizeof(telemetry), "%s/dpdk_telemetry.v2", rte_eal_get_runtime_dir());
	if (listeners != NULL)
		json_object_set_new(listeners, "telemetry",
		                    access(telemetry, F_OK) == 0 ? json_string(telemetry)
		                                                 : json_null());
	*result =
	    json_pack("{s:s, s:I, s:s, s:I, s:o, s:b, s:b, s:I, s:s, s:o}", "version", PA_VERSION,
	              "uptime_s", (json_int_t)((now - env->started_us) / 1000000u), "backend",
	              env->backend, "workers", (json_int_t)env->nworkers, "listeners", listeners,
	              "paused", __atomic_load_n(&env->shared->paused, __ATOMIC_ACQUIRE) != 0,
	              "stopping", __atomic_load_n(&env->shared->stopping, __ATOMIC_ACQUIRE) != 0,
	              "config_generation", (json_int_t)rt->generation, "hostname",
	              rt->config.hostname, "spool", spool_health_json(env));
	if (*result == NULL) {
		snprintf(err, errlen, "status: out of memory");
		return PA_ERROR;
	}
	json_object_set_new(*result, "draining", json_boolean(env->draining));
	json_object_set_new(*result, "log_lines_dropped",
	                    json_integer((json_int_t)pa_log_dropped()));
	json_object_set_new(*result, "handoff", ctl_handoff_json(env));
	/* The DPDK port and how flows reach their worker (dpdk.rss, docs/dataplane.md). */
	if (strcmp(env->backend, "dpdk") == 0 && dpdk_backend_port_status(&dp) == PA_OK)
		json_object_set_new(*result, "dpdk",
		                    json_pack("{s:s, s:b, s:s}", "port", dp.port, "rss", dp.rss,
		                              "steering", dp.steering));
	return PA_OK;
}

static int
set_paused(struct ctl_env *env, int paused, json_t **result)
{
	int was = __atomic_exchange_n(&env->shared->paused, paused, __ATOMIC_ACQ_REL);

	if (was != paused)
		pa_log_notice("control: %s", paused ? "paused: new connections get 421, MAIL 451"
		                                    : "resumed: taking mail again");
	*result = json_pack("{s:b, s:b}", "paused", paused != 0, "changed", was != paused);
	return *result != NULL ? PA_OK : PA_ERROR;
}

static int
cmd_pause(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	(void)req;
	(void)err;
	(void)errlen;
	return set_paused(env, 1, result);
}

static int
cmd_resume(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	(void)req;
	(void)err;
	(void)errlen;
	return set_paused(env, 0, result);
}

static int
cmd_reload(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	(void)req;
	if (env->reload(env->reload_arg, err, errlen) != PA_OK)
		return PA_ERROR;
	*result = json_pack(
	    "{s:I}", "config_generation",
	    (json_int_t)__atomic_load_n(&env->shared->runtime, __ATOMIC_ACQUIRE)->generation);
	return *result != NULL ? PA_OK : PA_ERROR;
}

static int
cmd_tls_rotate(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	uint64_t generation;

	(void)req;
	if (env->rotate_tickets == NULL) {
		snprintf(err, errlen, "tls rotate: not available");
		return PA_ERROR;
	}
	if (env->rotate_tickets(env->rotate_arg, &generation, err, errlen) != PA_OK)
		return PA_ERROR;
	*result = json_pack("{s:I}", "ticket_generation", (json_int_t)generation);
	return *result != NULL ? PA_OK : PA_ERROR;
}

static int
cmd_shutdown(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	(void)req;
	(void)err;
	(void)errlen;
	pa_log_notice("control: shutdown requested");
	env->stop = true;
	*result = json_pack("{s:b}", "stopping", 1);
	return *result != NULL ? PA_OK : PA_ERROR;
}

static int
cmd_metrics(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	size_t len;
	char *text = ctl_metrics_text(env, &len);

	(void)req;
	if (text == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		return PA_ERROR;
	}
	*result = json_pack("{s:s%}", "text", text, len);
	free(text);
	return *result != NULL ? PA_OK : PA_ERROR;
}

static const struct {
	const char *name;
	ctl_handler run;
} commands[] = {
    // clang-format off
    {"status", cmd_status},
    {"stats", cmd_stats},
    {"pause", cmd_pause},
    {"resume", cmd_resume},
    {"reload", cmd_reload},
    {"tls.rotate", cmd_tls_rotate},
    {"shutdown", cmd_shutdown},
    {"metrics", cmd_metrics},
    {"spool.summary", ctl_spool_summary},
    {"spool.ls", ctl_spool_ls},
    {"spool.show", ctl_spool_show},
    {"spool.hold", ctl_spool_op},
    {"spool.release", ctl_spool_op},
    {"spool.retry", ctl_spool_op},
    {"spool.delete", ctl_spool_op},
    {"drain", ctl_drain},
    // clang-format on
};

json_t *
ctl_error_reply(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

json_t *
ctl_dispatch(struct ctl_env *env, const json_t *request)
{
	const char *name = json_string_value(json_object_get(request, "cmd"));
	char err[CTL_ERR_MAX] = "";
	json_t *result = NULL;

	if (!json_is_object(request))
		return ctl_error_reply("a request is one JSON object per line");
	if (name == NULL)
		return ctl_error_reply("the request has no \"cmd\" string");
	for (size_t i = 0; i < pa_array_size(commands); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (commands[i].run(env, request, &result, err, sizeof(err)) != PA_OK) {
			json_decref(result);
			return ctl_error_reply(err[0] != '\0' ? err : "out of memory");
		}
		return json_pack("{s:b, s:o}", "ok", 1, "result", result);
	}
	snprintf(err, sizeof(err), "unknown command '%.64s'", name);
	return ctl_error_reply(err);
}
