/*
 * ctl_handoff.c: hold, release, retry and drain through the hand-off engine
 * (ctl_handoff.h).
 */
#include "ctl/ctl_handoff.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/pa.h"
#include "ctl/ctl_server.h"
#include "dataplane/worker.h"
#include "spool/handoff.h"
#include "spool/spool_iter.h"

static struct handoff *
engine(const struct ctl_env *env, char *err, size_t errlen)
{
	struct handoff *h = env->shared->handoff;

	if (h == NULL)
		snprintf(err, errlen, "the hand-off engine is not running");
	return h;
}

/* "shard": a number, or absent for every shard. */
static int
shard_arg(const struct ctl_env *env, const json_t *req, int *shard, char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, "shard");
	unsigned shards = spool_shard_count(env->shared->spool);

	*shard = -1;
	if (v == NULL || json_is_null(v))
		return PA_OK;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) >= (json_int_t)shards) {
		snprintf(err, errlen, "\"shard\" must be an integer from 0 to %u", shards - 1);
		return PA_ERROR;
	}
	*shard = (int)json_integer_value(v);
	return PA_OK;
}

static int
hold(struct ctl_env *env, const json_t *req, bool on, json_t **result, char *err, size_t errlen)
{
	struct handoff *h = engine(env, err, errlen);
	int shard;

	if (h == NULL || shard_arg(env, req, &shard, err, errlen) != PA_OK)
		return PA_ERROR;
	if (handoff_hold_shard(h, shard, on) != PA_OK) {
		snprintf(err, errlen, "handoff_hold_shard(%d) failed", shard);
		return PA_ERROR;
	}
	if (shard < 0)
		pa_log_notice("control: hand-off %s for every shard", on ? "held" : "released");
	else
		pa_log_notice("control: hand-off %s for shard %d", on ? "held" : "released", shard);
	*result = shard < 0 ? json_pack("{s:b, s:n}", "held", on, "shard")
	                    : json_pack("{s:b, s:i}", "held", on, "shard", shard);
	return *result != NULL ? PA_OK : PA_ERROR;
}

int
ctl_spool_hold(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	return hold(env, req, true, result, err, errlen);
}

int
ctl_spool_release(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	return hold(env, req, false, result, err, errlen);
}

int
ctl_spool_retry(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct handoff *h = engine(env, err, errlen);

	(void)req;
	if (h == NULL)
		return PA_ERROR;
	handoff_retry_now(h);
	pa_log_notice("control: every queued copy is due now");
	*result = json_pack("{s:b}", "retrying", 1);
	return *result != NULL ? PA_OK : PA_ERROR;
}

int
ctl_drain(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct handoff *h = engine(env, err, errlen);

	(void)req;
	if (h == NULL)
		return PA_ERROR;
	__atomic_store_n(&env->shared->paused, 1, __ATOMIC_RELEASE);
	if (handoff_hold_shard(h, -1, false) != PA_OK) {
		snprintf(err, errlen, "handoff_hold_shard(all) failed");
		return PA_ERROR;
	}
	handoff_retry_now(h);
	env->draining = true;
	pa_log_notice("control: draining: paused, every hold released; pigeond exits once the "
	              "spool is empty");
	*result = json_pack("{s:b, s:b}", "draining", 1, "paused", 1);
	return *result != NULL ? PA_OK : PA_ERROR;
}

json_t *
ctl_handoff_json(const struct ctl_env *env)
{
	struct handoff_stats st;

	if (env->shared->handoff == NULL)
		return json_null();
	handoff_stats(env->shared->handoff, &st);
	return json_pack("{s:I, s:I, s:I, s:I, s:I}", "delivered", (json_int_t)st.delivered,
	                 "deferred", (json_int_t)st.deferred, "failed", (json_int_t)st.failed,
	                 "dsns", (json_int_t)st.dsns, "queued_bytes", (json_int_t)st.queued_bytes);
}

static int
any_entry(const struct spool_entry *e, void *arg)
{
	(void)e;
	*(bool *)arg = true;
	return 1; /* one is enough */
}

bool
ctl_drain_done(struct ctl_env *env)
{
	char err[CTL_ERR_MAX];
	bool found = false;

	if (spool_iterate(env->shared->spool, -1, any_entry, &found, err, sizeof(err)) ==
	    PA_ERROR) {
		pa_log_err("drain: spool_iterate() failed: %s", err);
		return false;
	}
	return !found;
}
