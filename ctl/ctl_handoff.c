/*
 * ctl_handoff.c: hold, release, retry, delete and drain through the hand-off
 * engine (ctl_handoff.h).
 *
 * Per-copy operations go to the engine's queue (handoff_copy_op()) and are
 * applied by its thread within one turn of its loop, so the reply means
 * "queued", not "done"; the engine stays the only writer of existing copies.
 */
#include "ctl/ctl_handoff.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/pa.h"
#include "ctl/ctl_filter.h"
#include "ctl/ctl_server.h"
#include "ctl/ctl_spool.h"
#include "dataplane/worker.h"
#include "handoff/handoff.h"
#include "spool/spool_iter.h"

static struct handoff *
engine(const struct ctl_env *env, char *err, size_t errlen)
{
	struct handoff *h = env->shared->handoff;

	if (h == NULL)
		snprintf(err, errlen, "the hand-off engine is not running");
	return h;
}

/* Indexed by enum handoff_op. */
static const char *const op_names[] = {"hold", "release", "retry", "delete"};
_Static_assert(pa_array_size(op_names) == HANDOFF_OP_DELETE + 1, "one name per operation");

/* A per-copy operation on every copy that matches: one queue id, or the filters. */
struct bulk {
	struct ctl_filter filter;
	struct handoff *h;
	enum handoff_op op;
	const char *id; /* NULL: every copy the filter matches */
	size_t limit, matched;
	bool truncated;
};

static int
bulk_entry(const struct spool_entry *e, void *arg)
{
	struct bulk *b = arg;
	bool held = ctl_copy_held(e);

	if (!ctl_filter_match(&b->filter, e))
		return PA_OK;
	/*
	 * A bulk form leaves alone what it would not change, so that its count
	 * means something; and a bulk retry never lifts a hold (release does).
	 * A named message gets the operation whatever its state.
	 */
	if (b->id == NULL &&
	    (b->op == HANDOFF_OP_RELEASE ? !held : b->op != HANDOFF_OP_DELETE && held))
		return PA_OK;
	if (b->matched == b->limit) {
		b->truncated = true;
		return 1; /* the bound on the work of one request: the operator repeats it */
	}
	if (handoff_copy_op(b->h, e->queue_id, (int)e->shard, b->op) != PA_OK)
		return PA_ERROR;
	b->matched++;
	return PA_OK;
}

static int
bulk_run(struct ctl_env *env, struct bulk *b, char *err, size_t errlen)
{
	struct spool *spool = env->shared->spool;
	int rc = b->id != NULL
	             ? spool_lookup(spool, b->id, b->filter.shard, bulk_entry, b, err, errlen)
	             : spool_iterate(spool, b->filter.shard, bulk_entry, b, err, errlen);

	if (rc == PA_ERROR) {
		if (err[0] == '\0')
			snprintf(err, errlen, "spool %s: out of memory", op_names[b->op]);
		return PA_ERROR;
	}
	if (b->id != NULL && b->matched == 0) {
		snprintf(err, errlen, "no message %.40s in the spool%s", b->id,
		         b->filter.shard >= 0 || ctl_filter_narrows(&b->filter) ? " that matches"
		                                                                : "");
		return PA_ERROR;
	}
	if (b->id != NULL)
		pa_log_notice("control: %s %s: %zu cop%s", op_names[b->op], b->id, b->matched,
		              b->matched == 1 ? "y" : "ies");
	else if (b->matched > 0)
		pa_log_notice("control: %s: %zu matching cop%s%s", op_names[b->op], b->matched,
		              b->matched == 1 ? "y" : "ies",
		              b->truncated ? " (more match: the limit stopped it)" : "");
	return PA_OK;
}

static json_t *
bulk_json(const struct bulk *b)
{
	return json_pack("{s:s, s:s?, s:I, s:b}", "op", op_names[b->op], "id", b->id, "messages",
	                 (json_int_t)b->matched, "truncated", b->truncated);
}

/* Without an id or a narrowing filter: hold and release act on whole shards. */
static int
shard_op(struct ctl_env *env, struct bulk *b, json_t **result, char *err, size_t errlen)
{
	int shard = b->filter.shard;
	bool hold = b->op == HANDOFF_OP_HOLD;

	if (handoff_hold_shard(b->h, shard, hold) != PA_OK) {
		snprintf(err, errlen, "handoff_hold_shard(%d) failed", shard);
		return PA_ERROR;
	}
	if (shard < 0)
		pa_log_notice("control: hand-off %s for every shard", hold ? "held" : "released");
	else
		pa_log_notice("control: hand-off %s for shard %d", hold ? "held" : "released",
		              shard);
	*result = shard < 0 ? json_pack("{s:b, s:n}", "held", hold, "shard")
	                    : json_pack("{s:b, s:i}", "held", hold, "shard", shard);
	if (*result == NULL || hold)
		return *result != NULL ? PA_OK : PA_ERROR;
	/* A release lifts the per-message holds of those shards as well. */
	if (bulk_run(env, b, err, errlen) != PA_OK)
		return PA_ERROR;
	json_object_set_new(*result, "messages", json_integer((json_int_t)b->matched));
	json_object_set_new(*result, "truncated", json_boolean(b->truncated));
	return PA_OK;
}

static int
spool_op(struct ctl_env *env, const json_t *req, enum handoff_op op, json_t **result, char *err,
         size_t errlen)
{
	struct bulk b = {.h = engine(env, err, errlen), .op = op};
	json_int_t limit;
	bool everything;

	if (b.h == NULL || ctl_filter_parse(&b.filter, env, req, err, errlen) != PA_OK ||
	    ctl_arg_str(req, "id", &b.id, err, errlen) != PA_OK ||
	    ctl_arg_int(req, "limit", 1, CTL_LS_LIMIT_MAX, CTL_LS_LIMIT_MAX, &limit, err, errlen) !=
	        PA_OK)
		return PA_ERROR;
	b.limit = (size_t)limit;
	if (op == HANDOFF_OP_HOLD && handoff_draining(b.h)) {
		snprintf(err, errlen,
		         "pigeond is draining: a hold would keep the drain from ending");
		return PA_ERROR;
	}
	everything = b.id == NULL && !ctl_filter_narrows(&b.filter);
	if (everything && (op == HANDOFF_OP_HOLD || op == HANDOFF_OP_RELEASE))
		return shard_op(env, &b, result, err, errlen);
	if (everything && op == HANDOFF_OP_RETRY && b.filter.shard < 0) {
		handoff_retry_now(b.h);
		pa_log_notice("control: every queued copy is due now");
		*result = json_pack("{s:b}", "retrying", 1);
		return *result != NULL ? PA_OK : PA_ERROR;
	}
	if (everything && op == HANDOFF_OP_DELETE && !json_is_true(json_object_get(req, "all"))) {
		snprintf(
		    err, errlen,
		    "spool.delete needs \"id\", a filter (from, rcpt, min_age, max_age, dest), or "
		    "\"all\": true (with \"shard\": that shard only)");
		return PA_ERROR;
	}
	if (bulk_run(env, &b, err, errlen) != PA_OK)
		return PA_ERROR;
	*result = bulk_json(&b);
	return *result != NULL ? PA_OK : PA_ERROR;
}

int
ctl_spool_op(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	/* One handler for the four commands: "spool.<op>" names the operation. */
	for (size_t op = 0; cmd != NULL && op < pa_array_size(op_names); op++)
		if (strncmp(cmd, "spool.", 6) == 0 && strcmp(cmd + 6, op_names[op]) == 0)
			return spool_op(env, req, (enum handoff_op)op, result, err, errlen);
	snprintf(err, errlen, "not a spool operation: '%.64s'", cmd != NULL ? cmd : "");
	return PA_ERROR;
}

int
ctl_drain(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct handoff *h = engine(env, err, errlen);

	(void)req;
	if (h == NULL)
		return PA_ERROR;
	__atomic_store_n(&env->shared->paused, 1, __ATOMIC_RELEASE);
	/*
	 * A held message would keep the drain waiting for ever.  The engine
	 * releases them itself, after every operation queued before: releasing
	 * here what the spool shows held would miss a `hold` queued a moment
	 * ago and not yet applied.
	 */
	handoff_drain(h);
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
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "delivered",
	                 (json_int_t)st.delivered, "deferred", (json_int_t)st.deferred, "failed",
	                 (json_int_t)st.failed, "dsns", (json_int_t)st.dsns, "queued_bytes",
	                 (json_int_t)st.queued_bytes, "store_refused", (json_int_t)st.store_refused,
	                 "streamed", (json_int_t)st.streamed, "stream_overflow",
	                 (json_int_t)st.stream_overflow, "disk_loads", (json_int_t)st.disk_loads);
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
