/*
 * ctl_filter.c: the filters and per-copy state shared by the spool commands
 * (ctl_filter.h).
 *
 * Destinations come from the hand-off engine's route map through
 * handoff_destination(), which takes the engine's lock for one lookup: a
 * request never holds the engine up for longer than that.
 */
#include "ctl/ctl_filter.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/pa.h"
#include "ctl/ctl_server.h"
#include "dataplane/worker.h"
#include "handoff/handoff.h"
#include "spool/spool_iter.h"
#include "spool/spool_record.h"

int
ctl_arg_int(const json_t *req, const char *name, json_int_t min, json_int_t max, json_int_t def,
            json_int_t *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, name);

	if (v == NULL || json_is_null(v)) {
		*out = def;
		return PA_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(err, errlen, "\"%s\" must be an integer from %lld to %lld", name,
		         (long long)min, (long long)max);
		return PA_ERROR;
	}
	*out = json_integer_value(v);
	return PA_OK;
}

int
ctl_arg_str(const json_t *req, const char *name, const char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return PA_OK;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\" must be a string", name);
		return PA_ERROR;
	}
	*out = json_string_value(v);
	return PA_OK;
}

void
ctl_filter_init(struct ctl_filter *f, struct ctl_env *env)
{
	*f = (struct ctl_filter){.now_us = pa_wall_clock_us(),
	                         .min_age_s = -1,
	                         .max_age_s = -1,
	                         .shard = -1,
	                         .handoff = env->shared->handoff};
}

int
ctl_filter_parse(struct ctl_filter *f, struct ctl_env *env, const json_t *req, char *err,
                 size_t errlen)
{
	unsigned shards = spool_shard_count(env->shared->spool);
	json_int_t shard, min_age, max_age;

	ctl_filter_init(f, env);
	if (ctl_arg_int(req, "shard", 0, (json_int_t)shards - 1, -1, &shard, err, errlen) !=
	        PA_OK ||
	    ctl_arg_int(req, "min_age", 0, INT64_MAX / 2, -1, &min_age, err, errlen) != PA_OK ||
	    ctl_arg_int(req, "max_age", 0, INT64_MAX / 2, -1, &max_age, err, errlen) != PA_OK ||
	    ctl_arg_str(req, "from", &f->from, err, errlen) != PA_OK ||
	    ctl_arg_str(req, "rcpt", &f->rcpt, err, errlen) != PA_OK ||
	    ctl_arg_str(req, "dest", &f->dest, err, errlen) != PA_OK)
		return PA_ERROR;
	f->shard = (int)shard;
	f->min_age_s = min_age;
	f->max_age_s = max_age;
	return PA_OK;
}

bool
ctl_filter_narrows(const struct ctl_filter *f)
{
	return f->from != NULL || f->rcpt != NULL || f->dest != NULL || f->min_age_s >= 0 ||
	       f->max_age_s >= 0;
}

uint64_t
ctl_age_s(uint64_t now_us, uint64_t arrival_us)
{
	return now_us > arrival_us ? (now_us - arrival_us) / 1000000u : 0;
}

bool
ctl_rcpt_pending(const struct spool_entry *e, size_t i)
{
	return e->states == NULL || e->states[i].state == SPOOL_DELIVERY_PENDING;
}

void
ctl_rcpt_destination(const struct ctl_filter *f, const struct spool_entry *e, size_t i,
                     char out[CTL_DEST_MAX])
{
	if (f->handoff == NULL ||
	    !handoff_destination(f->handoff, e->shard, e->rcpts[i], out, CTL_DEST_MAX))
		snprintf(out, CTL_DEST_MAX, "%s", CTL_DEST_NONE);
}

bool
ctl_rcpt_held(const struct spool_entry *e, size_t i)
{
	return e->states != NULL && ctl_rcpt_pending(e, i) &&
	       e->states[i].next_attempt_us == UINT64_MAX;
}

bool
ctl_rcpt_deferred(const struct spool_entry *e, size_t i)
{
	return e->states != NULL && ctl_rcpt_pending(e, i) && e->states[i].attempts > 0 &&
	       e->states[i].next_attempt_us != UINT64_MAX;
}

bool
ctl_copy_held(const struct spool_entry *e)
{
	for (size_t i = 0; i < e->nrcpt; i++)
		if (ctl_rcpt_held(e, i))
			return true;
	return false;
}

bool
ctl_entry_held(const struct ctl_filter *f, const struct spool_entry *e)
{
	return handoff_shard_held(f->handoff, e->shard) || ctl_copy_held(e);
}

bool
ctl_entry_deferred(const struct spool_entry *e)
{
	for (size_t i = 0; i < e->nrcpt; i++)
		if (ctl_rcpt_deferred(e, i))
			return true;
	return false;
}

static bool
dest_match(const struct ctl_filter *f, const struct spool_entry *e)
{
	char dest[CTL_DEST_MAX];

	for (size_t i = 0; i < e->nrcpt; i++) {
		if (!ctl_rcpt_pending(e, i))
			continue;
		ctl_rcpt_destination(f, e, i, dest);
		if (strcasestr(dest, f->dest) != NULL)
			return true;
	}
	return false;
}

bool
ctl_filter_match(const struct ctl_filter *f, const struct spool_entry *e)
{
	uint64_t age = ctl_age_s(f->now_us, e->arrival_us);
	bool rcpt_ok = f->rcpt == NULL;

	if (f->shard >= 0 && e->shard != (unsigned)f->shard)
		return false;
	if (f->from != NULL && strcasestr(e->mail_from, f->from) == NULL)
		return false;
	if (f->min_age_s >= 0 && age < (uint64_t)f->min_age_s)
		return false;
	if (f->max_age_s >= 0 && age > (uint64_t)f->max_age_s)
		return false;
	for (size_t i = 0; !rcpt_ok && i < e->nrcpt; i++)
		rcpt_ok = strcasestr(e->rcpts[i], f->rcpt) != NULL;
	/* Last: the only test that takes the engine's lock. */
	return rcpt_ok && (f->dest == NULL || dest_match(f, e));
}
