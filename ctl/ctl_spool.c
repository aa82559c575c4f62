/*
 * ctl_spool.c: spool summary, ls and show on the running pigeond (ctl_spool.h).
 *
 * They run on the main lcore through spool_iter.h's read-only iterators, so
 * workers and committers never wait for them.  summary and an unfiltered ls
 * read every message record (not the bodies): O(messages in the spool) on
 * the main lcore, which serves nothing else meanwhile but this socket.
 */
#include "ctl/ctl_spool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/pa.h"
#include "ctl/ctl_json.h"
#include "ctl/ctl_server.h"
#include "dataplane/worker.h"
#include "spool/spool_iter.h"

/* qshape's doubling age buckets, in minutes; the last one is open-ended. */
static const unsigned age_limits_min[] = {5, 10, 20, 40, 80, 160};
static const char *const age_names[] = {"0-5m",   "5-10m",   "10-20m", "20-40m",
                                        "40-80m", "80-160m", "160m+"};
#define AGE_BUCKETS pa_array_size(age_names)
_Static_assert(pa_array_size(age_limits_min) + 1 == pa_array_size(age_names), "age buckets");

struct shape {
	uint64_t messages;
	uint64_t bytes;
	uint64_t oldest_us; /* arrival of the oldest; 0: none */
	uint64_t ages[AGE_BUCKETS];
};

struct summary {
	uint64_t now_us;
	unsigned nshards;
	struct shape *shards;
	struct shape total;
};

static uint64_t
age_s(uint64_t now_us, uint64_t arrival_us)
{
	return now_us > arrival_us ? (now_us - arrival_us) / 1000000u : 0;
}

static void
shape_add(struct shape *s, uint64_t now_us, const struct spool_entry *e)
{
	uint64_t minutes = age_s(now_us, e->arrival_us) / 60u;
	size_t b = 0;

	while (b < pa_array_size(age_limits_min) && minutes >= age_limits_min[b])
		b++;
	s->ages[b]++;
	s->messages++;
	s->bytes += e->size;
	if (s->oldest_us == 0 || e->arrival_us < s->oldest_us)
		s->oldest_us = e->arrival_us;
}

static int
summary_entry(const struct spool_entry *e, void *arg)
{
	struct summary *sum = arg;

	if (e->shard < sum->nshards)
		shape_add(&sum->shards[e->shard], sum->now_us, e);
	shape_add(&sum->total, sum->now_us, e);
	return PA_OK;
}

static json_t *
shape_json(const struct shape *s, uint64_t now_us, long shard)
{
	json_t *ages = json_object(), *obj;

	if (ages == NULL)
		return NULL;
	for (size_t b = 0; b < AGE_BUCKETS; b++)
		json_object_set_new(ages, age_names[b], json_integer((json_int_t)s->ages[b]));
	obj = json_pack("{s:I, s:I, s:I, s:o}", "messages", (json_int_t)s->messages, "bytes",
	                (json_int_t)s->bytes, "oldest_age_s",
	                (json_int_t)(s->messages != 0 ? age_s(now_us, s->oldest_us) : 0), "ages",
	                ages);
	if (obj != NULL && shard >= 0)
		json_object_set_new(obj, "shard", json_integer(shard));
	return obj;
}

int
ctl_spool_summary(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct spool *spool = env->shared->spool;
	struct summary sum = {pa_wall_clock_us(), spool_shard_count(spool), NULL, {0}};
	json_t *shards, *buckets;
	int rc;

	(void)req;
	sum.shards = calloc(sum.nshards, sizeof(*sum.shards));
	if (sum.shards == NULL) {
		snprintf(err, errlen, "spool summary: out of memory");
		return PA_ERROR;
	}
	rc = spool_iterate(spool, -1, summary_entry, &sum, err, errlen);
	if (rc != PA_OK) {
		free(sum.shards);
		return PA_ERROR;
	}
	shards = json_array();
	buckets = json_array();
	for (unsigned i = 0; shards != NULL && i < sum.nshards; i++)
		json_array_append_new(shards, shape_json(&sum.shards[i], sum.now_us, (long)i));
	for (size_t b = 0; buckets != NULL && b < AGE_BUCKETS; b++)
		json_array_append_new(buckets, json_string(age_names[b]));
	*result = json_pack("{s:o, s:o, s:o}", "buckets", buckets, "shards", shards, "total",
	                    shape_json(&sum.total, sum.now_us, -1));
	free(sum.shards);
	return *result != NULL ? PA_OK : PA_ERROR;
}

/* The filters of ls: every one given must match. */
struct ls {
	uint64_t now_us;
	const char *from;  /* substring of the sender, any case */
	const char *rcpt;  /* substring of some recipient, any case */
	int64_t min_age_s; /* -1: none */
	int64_t max_age_s; /* -1: none */
	size_t limit;
	size_t matched;
	json_t *entries;
	bool truncated;
};

static bool
ls_match(const struct ls *ls, const struct spool_entry *e)
{
	uint64_t age = age_s(ls->now_us, e->arrival_us);
	bool rcpt_ok = ls->rcpt == NULL;

	if (ls->from != NULL && strcasestr(e->mail_from, ls->from) == NULL)
		return false;
	if (ls->min_age_s >= 0 && age < (uint64_t)ls->min_age_s)
		return false;
	if (ls->max_age_s >= 0 && age > (uint64_t)ls->max_age_s)
		return false;
	for (size_t i = 0; !rcpt_ok && i < e->nrcpt; i++)
		rcpt_ok = strcasestr(e->rcpts[i], ls->rcpt) != NULL;
	return rcpt_ok;
}

static json_t *
entry_json(const struct spool_entry *e, uint64_t now_us)
{
	json_t *rcpt = json_array();
	char arrival[32];

	for (size_t i = 0; rcpt != NULL && i < e->nrcpt; i++)
		json_array_append_new(rcpt, ctl_json_lossy(e->rcpts[i]));
	ctl_format_time(e->arrival_us, arrival);
	return json_pack("{s:s, s:I, s:I, s:o, s:o, s:s, s:I, s:I, s:o, s:o}", "id", e->queue_id,
	                 "shard", (json_int_t)e->shard, "size", (json_int_t)e->size, "from",
	                 ctl_json_lossy(e->mail_from), "rcpt", rcpt, "arrival", arrival,
	                 "arrival_us", (json_int_t)e->arrival_us, "age_s",
	                 (json_int_t)age_s(now_us, e->arrival_us), "client",
	                 ctl_json_lossy(e->client_addr), "helo", ctl_json_lossy(e->helo));
}

static int
ls_entry(const struct spool_entry *e, void *arg)
{
	struct ls *ls = arg;

	if (!ls_match(ls, e))
		return PA_OK;
	if (ls->matched == ls->limit) {
		ls->truncated = true;
		return 1; /* stop: the bound on the work of one request */
	}
	ls->matched++;
	return json_array_append_new(ls->entries, entry_json(e, ls->now_us)) == 0 ? PA_OK
	                                                                          : PA_ERROR;
}

/* An optional integer member in [min, max]; def when absent. */
static int
int_arg(const json_t *req, const char *name, json_int_t min, json_int_t max, json_int_t def,
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

/* An optional string member; NULL when absent. */
static int
str_arg(const json_t *req, const char *name, const char **out, char *err, size_t errlen)
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

int
ctl_spool_ls(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct ls ls = {.now_us = pa_wall_clock_us()};
	json_int_t shard, limit, min_age, max_age;
	int rc;

	if (int_arg(req, "shard", 0, SPOOL_MAX_SHARDS - 1, -1, &shard, err, errlen) != PA_OK ||
	    int_arg(req, "limit", 1, CTL_LS_LIMIT_MAX, CTL_LS_LIMIT_DEFAULT, &limit, err, errlen) !=
	        PA_OK ||
	    int_arg(req, "min_age", 0, INT64_MAX / 2, -1, &min_age, err, errlen) != PA_OK ||
	    int_arg(req, "max_age", 0, INT64_MAX / 2, -1, &max_age, err, errlen) != PA_OK ||
	    str_arg(req, "from", &ls.from, err, errlen) != PA_OK ||
	    str_arg(req, "rcpt", &ls.rcpt, err, errlen) != PA_OK)
		return PA_ERROR;
	ls.limit = (size_t)limit;
	ls.min_age_s = min_age;
	ls.max_age_s = max_age;
	ls.entries = json_array();
	if (ls.entries == NULL) {
		snprintf(err, errlen, "spool ls: out of memory");
		return PA_ERROR;
	}
	rc = spool_iterate(env->shared->spool, (int)shard, ls_entry, &ls, err, errlen);
	if (rc == PA_ERROR) {
		if (err[0] == '\0')
			snprintf(err, errlen, "spool ls: out of memory");
		json_decref(ls.entries);
		return PA_ERROR;
	}
	*result = json_pack("{s:o, s:b}", "entries", ls.entries, "truncated", ls.truncated);
	return *result != NULL ? PA_OK : PA_ERROR;
}

struct show {
	json_t *found; /* the first copy: every copy holds the same bytes */
	uint64_t now_us;
	const char *err;
};

static int
show_entry(const struct spool_entry *e, void *arg)
{
	struct show *s = arg;
	size_t len;
	char *b64;

	if (e->size > CTL_SHOW_MAX) {
		s->err =
		    "the message is too large for the control socket: use pigeonctl spool show "
		    "--dir with pigeond stopped";
		return 1;
	}
	b64 = ctl_base64_encode(e->data, e->size, &len);
	s->found = entry_json(e, s->now_us);
	if (b64 == NULL || s->found == NULL ||
	    json_object_set_new(s->found, "data_base64", json_stringn(b64, len)) != 0) {
		free(b64);
		s->err = "out of memory";
		return 1;
	}
	free(b64);
	return 1;
}

int
ctl_spool_show(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct show s = {NULL, pa_wall_clock_us(), NULL};
	const char *id;
	json_int_t shard;
	int rc;

	if (str_arg(req, "id", &id, err, errlen) != PA_OK ||
	    int_arg(req, "shard", 0, SPOOL_MAX_SHARDS - 1, -1, &shard, err, errlen) != PA_OK)
		return PA_ERROR;
	if (id == NULL) {
		snprintf(err, errlen, "spool.show needs \"id\"");
		return PA_ERROR;
	}
	rc = spool_lookup(env->shared->spool, id, (int)shard, show_entry, &s, err, errlen);
	if (rc == PA_ERROR || s.err != NULL) {
		if (s.err != NULL)
			snprintf(err, errlen, "%s", s.err);
		json_decref(s.found);
		return PA_ERROR;
	}
	if (s.found == NULL) {
		snprintf(err, errlen, "no message %.40s in the spool", id);
		return PA_ERROR;
	}
	*result = s.found;
	return PA_OK;
}
