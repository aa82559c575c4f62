/*
 * ctl_spool.c: spool summary, ls and show on the running pigeond (ctl_spool.h).
 * Per shard and per destination (the route map's, through the hand-off
 * engine), with the filters of ctl_filter.h.
 *
 * They run on the main lcore through spool_iter.h's read-only iterators, so
 * workers and committers never wait for them.  summary and ls read every
 * message record and its delivery records (not the bodies): O(messages in
 * the spool) on the main lcore, which serves nothing else meanwhile but this
 * socket.
 */
#include "ctl/ctl_spool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/pa.h"
#include "ctl/ctl_filter.h"
#include "ctl/ctl_json.h"
#include "ctl/ctl_server.h"
#include "dataplane/worker.h"
#include "handoff/handoff.h"
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
	uint64_t deferred;  /* copies with a recipient that failed temporarily */
	uint64_t held;      /* copies waiting for the operator's release */
	uint64_t ages[AGE_BUCKETS];
};

/* One row per destination, found through a jansson object used as the index. */
struct dest_rows {
	json_t *index; /* destination text -> row number */
	struct shape *rows;
	size_t n, cap;
};

struct summary {
	struct ctl_filter filter;
	unsigned nshards;
	struct shape *shards;
	struct dest_rows dests;
	struct shape total;
};

struct copy_state {
	bool held, deferred;
};

static void
shape_add(struct shape *s, uint64_t now_us, const struct spool_entry *e, struct copy_state st)
{
	uint64_t minutes = ctl_age_s(now_us, e->arrival_us) / 60u;
	size_t b = 0;

	while (b < pa_array_size(age_limits_min) && minutes >= age_limits_min[b])
		b++;
	s->ages[b]++;
	s->messages++;
	s->bytes += e->size;
	s->deferred += st.deferred;
	s->held += st.held;
	if (s->oldest_us == 0 || e->arrival_us < s->oldest_us)
		s->oldest_us = e->arrival_us;
}

/* The row of a destination, made on first sight; SIZE_MAX when out of memory. */
static size_t
dest_row(struct dest_rows *d, const char *dest)
{
	json_t *v = json_object_get(d->index, dest);

	if (v != NULL)
		return (size_t)json_integer_value(v);
	if (d->n == d->cap) {
		size_t cap = d->cap != 0 ? d->cap * 2 : 16;
		struct shape *rows = realloc(d->rows, cap * sizeof(*rows));

		if (rows == NULL)
			return SIZE_MAX;
		d->rows = rows;
		d->cap = cap;
	}
	if (json_object_set_new(d->index, dest, json_integer((json_int_t)d->n)) != 0)
		return SIZE_MAX;
	d->rows[d->n] = (struct shape){0};
	return d->n++;
}

/*
 * A copy counts once in every destination one of its pending recipients
 * goes to, deferred or held there by the state of those recipients.
 */
static int
summary_dests(struct summary *sum, const struct spool_entry *e, bool shard_held)
{
	char dest[CTL_DEST_MAX];
	struct {
		size_t row;
		struct copy_state st;
	} *seen = calloc(e->nrcpt, sizeof(*seen));
	size_t nseen = 0;

	if (seen == NULL)
		return PA_ERROR;
	for (size_t i = 0; i < e->nrcpt; i++) {
		size_t row, j = 0;

		if (!ctl_rcpt_pending(e, i))
			continue;
		ctl_rcpt_destination(&sum->filter, e, i, dest);
		row = dest_row(&sum->dests, dest);
		if (row == SIZE_MAX) {
			free(seen);
			return PA_ERROR;
		}
		while (j < nseen && seen[j].row != row)
			j++;
		if (j == nseen)
			seen[nseen++].row = row;
		seen[j].st.held |= shard_held || ctl_rcpt_held(e, i);
		seen[j].st.deferred |= ctl_rcpt_deferred(e, i);
	}
	for (size_t j = 0; j < nseen; j++)
		shape_add(&sum->dests.rows[seen[j].row], sum->filter.now_us, e, seen[j].st);
	free(seen);
	return PA_OK;
}

static int
summary_entry(const struct spool_entry *e, void *arg)
{
	struct summary *sum = arg;
	struct copy_state st;

	if (!ctl_filter_match(&sum->filter, e))
		return PA_OK;
	st.held = ctl_entry_held(&sum->filter, e);
	st.deferred = ctl_entry_deferred(e);
	if (e->shard < sum->nshards)
		shape_add(&sum->shards[e->shard], sum->filter.now_us, e, st);
	shape_add(&sum->total, sum->filter.now_us, e, st);
	return summary_dests(sum, e, handoff_shard_held(sum->filter.handoff, e->shard));
}

/* A row of the summary; key/name label it ("shard": 3, "destination": "smtp:..."). */
static json_t *
shape_json(const struct shape *s, uint64_t now_us, const char *key, json_t *name)
{
	json_t *ages = json_object(), *obj;

	if (ages == NULL) {
		json_decref(name);
		return NULL;
	}
	for (size_t b = 0; b < AGE_BUCKETS; b++)
		json_object_set_new(ages, age_names[b], json_integer((json_int_t)s->ages[b]));
	obj = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "messages", (json_int_t)s->messages,
	                "bytes", (json_int_t)s->bytes, "oldest_age_s",
	                (json_int_t)(s->messages != 0 ? ctl_age_s(now_us, s->oldest_us) : 0),
	                "deferred", (json_int_t)s->deferred, "held", (json_int_t)s->held, "ages",
	                ages);
	if (obj != NULL && key != NULL)
		json_object_set_new(obj, key, name);
	else
		json_decref(name);
	return obj;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What the hand-off engine says of a destination, or JSON null when it has not worked with it. */
static json_t *
engine_json(const struct handoff_dest_state *st)
{
	if (st == NULL)
		return json_null();
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections",
	                 (json_int_t)st->connections, "concurrency", (json_int_t)st->concurrency,
	                 "jobs", (json_int_t)st->jobs, "failures", (json_int_t)st->failures,
	                 "breaker_open_s", (json_int_t)st->breaker_open_s, "delivered",
	                 (json_int_t)st->delivered, "deferred", (json_int_t)st->deferred, "failed",
	                 (json_int_t)st->failed);
}

/*
 * The engine's view of each destination (connections, circuit breaker),
 * beside the spool's: a destination it knows gets a row even when nothing
 * waits for it.  engine[row] is filled, NULL where the engine knows nothing.
 */
static int
summary_engine(struct summary *sum, struct handoff_dest_state **states,
               const struct handoff_dest_state ***engine)
{
	size_t n = 0;

	*states = NULL;
	*engine = NULL;
	if (sum->filter.handoff != NULL &&
	    handoff_dest_states(sum->filter.handoff, states, &n) != PA_OK)
		return PA_ERROR;
	/* Rows with nothing queued only in the unfiltered view: a filter asks about messages. */
	for (size_t i = 0; i < n && !ctl_filter_narrows(&sum->filter) && sum->filter.shard < 0; i++)
		if (dest_row(&sum->dests, (*states)[i].dest) == SIZE_MAX)
			return PA_ERROR;
	*engine = calloc(sum->dests.n + 1, sizeof(**engine));
	if (*engine == NULL)
		return PA_ERROR;
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_object_get(sum->dests.index, (*states)[i].dest);

		if (row != NULL)
			(*engine)[json_integer_value(row)] = &(*states)[i];
	}
	return PA_OK;
}

/* The destination rows, sorted by name so that the output is stable. */
static json_t *
dests_json(const struct summary *sum, const struct handoff_dest_state *const *engine)
{
	const char **names = calloc(sum->dests.n + 1, sizeof(*names));
	json_t *arr = json_array(), *v;
	const char *k;
	size_t n = 0;

	if (names == NULL || arr == NULL) {
		free(names);
		json_decref(arr);
		return NULL;
	}
	json_object_foreach(sum->dests.index, k, v) names[n++] = k;
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		size_t row =
		    (size_t)json_integer_value(json_object_get(sum->dests.index, names[i]));

		json_t *obj = shape_json(&sum->dests.rows[row], sum->filter.now_us, "destination",
		                         json_string(names[i]));

		if (obj != NULL)
			json_object_set_new(obj, "engine", engine_json(engine[row]));
		json_array_append_new(arr, obj);
	}
	free(names);
	return arr;
}

static json_t *
usage_json(const struct spool_log_usage *u)
{
	if (!u->log)
		return json_null();
	return json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "segments", (json_int_t)u->segments,
	    "bytes", (json_int_t)u->bytes, "live_bytes", (json_int_t)u->live_bytes,
	    "reclaimable_bytes", (json_int_t)u->reclaimable_bytes, "reclaimed_segments",
	    (json_int_t)u->reclaimed_segments, "reclaimed_bytes", (json_int_t)u->reclaimed_bytes,
	    "wal_syncs", (json_int_t)u->wal_syncs, "closed_bytes", (json_int_t)u->closed_bytes);
}

/* A shard's segment log (format 2), or JSON null (format 1); adds it to *sum. */
static json_t *
log_json(const struct spool *spool, unsigned shard, struct spool_log_usage *sum)
{
	struct spool_log_usage u;

	spool_shard_log_usage(spool, shard, &u);
	sum->log |= u.log;
	sum->segments += u.segments;
	sum->bytes += u.bytes;
	sum->live_bytes += u.live_bytes;
	sum->reclaimable_bytes += u.reclaimable_bytes;
	sum->reclaimed_segments += u.reclaimed_segments;
	sum->reclaimed_bytes += u.reclaimed_bytes;
	sum->wal_syncs += u.wal_syncs;
	sum->closed_bytes += u.closed_bytes;
	return usage_json(&u);
}

int
ctl_spool_summary(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct spool *spool = env->shared->spool;
	struct summary sum = {.nshards = spool_shard_count(spool)};
	struct handoff_dest_state *states = NULL;
	const struct handoff_dest_state **engine = NULL;
	json_t *shards, *buckets, *total;
	struct spool_log_usage logs = {0};
	int rc;

	*result = NULL;
	if (ctl_filter_parse(&sum.filter, env, req, err, errlen) != PA_OK)
		return PA_ERROR;
	sum.shards = calloc(sum.nshards, sizeof(*sum.shards));
	sum.dests.index = json_object();
	rc = sum.shards != NULL && sum.dests.index != NULL ? PA_OK : PA_ERROR;
	if (rc == PA_OK)
		rc = spool_iterate(spool, sum.filter.shard, summary_entry, &sum, err, errlen);
	if (rc == PA_OK)
		rc = summary_engine(&sum, &states, &engine);
	if (rc == PA_OK) {
		shards = json_array();
		buckets = json_array();
		for (unsigned i = 0; shards != NULL && i < sum.nshards; i++) {
			json_t *row =
			    shape_json(&sum.shards[i], sum.filter.now_us, "shard", json_integer(i));

			/* The log is the shard's whatever the filter: what it holds on disk. */
			if (row != NULL)
				json_object_set_new(row, "log", log_json(spool, i, &logs));
			json_array_append_new(shards, row);
		}
		for (size_t b = 0; buckets != NULL && b < AGE_BUCKETS; b++)
			json_array_append_new(buckets, json_string(age_names[b]));
		total = shape_json(&sum.total, sum.filter.now_us, NULL, NULL);
		if (total != NULL)
			json_object_set_new(total, "log", usage_json(&logs));
		*result = json_pack("{s:o, s:o, s:o, s:o}", "buckets", buckets, "shards", shards,
		                    "destinations", dests_json(&sum, engine), "total", total);
	}
	if (*result == NULL && err[0] == '\0')
		snprintf(err, errlen, "spool summary: out of memory");
	free(engine);
	free(states);
	free(sum.shards);
	free(sum.dests.rows);
	json_decref(sum.dests.index);
	return *result != NULL ? PA_OK : PA_ERROR;
}

struct ls {
	struct ctl_filter filter;
	size_t limit;
	size_t matched;
	json_t *entries;
	bool truncated;
};

/* The distinct destinations of the copy's pending recipients. */
static json_t *
destinations_json(const struct ctl_filter *f, const struct spool_entry *e)
{
	json_t *arr = json_array();
	char dest[CTL_DEST_MAX];

	for (size_t i = 0; arr != NULL && i < e->nrcpt; i++) {
		bool dup = false;
		size_t j;
		json_t *v;

		if (!ctl_rcpt_pending(e, i))
			continue;
		ctl_rcpt_destination(f, e, i, dest);
		json_array_foreach(arr, j, v) dup = dup || strcmp(json_string_value(v), dest) == 0;
		if (!dup)
			json_array_append_new(arr, json_string(dest));
	}
	return arr;
}

static json_t *
entry_json(const struct ctl_filter *f, const struct spool_entry *e)
{
	json_t *rcpt = json_array(), *obj;
	char arrival[32];

	for (size_t i = 0; rcpt != NULL && i < e->nrcpt; i++)
		json_array_append_new(rcpt, ctl_json_lossy(e->rcpts[i]));
	ctl_format_time(e->arrival_us, arrival);
	obj = json_pack("{s:s, s:I, s:I, s:o, s:o, s:s, s:I, s:I, s:o, s:o}", "id", e->queue_id,
	                "shard", (json_int_t)e->shard, "size", (json_int_t)e->size, "from",
	                ctl_json_lossy(e->mail_from), "rcpt", rcpt, "arrival", arrival,
	                "arrival_us", (json_int_t)e->arrival_us, "age_s",
	                (json_int_t)ctl_age_s(f->now_us, e->arrival_us), "client",
	                ctl_json_lossy(e->client_addr), "helo", ctl_json_lossy(e->helo));
	if (obj == NULL)
		return NULL;
	json_object_set_new(obj, "held", json_boolean(ctl_entry_held(f, e)));
	json_object_set_new(obj, "deferred", json_boolean(ctl_entry_deferred(e)));
	json_object_set_new(obj, "destinations", destinations_json(f, e));
	return obj;
}

static int
ls_entry(const struct spool_entry *e, void *arg)
{
	struct ls *ls = arg;

	if (!ctl_filter_match(&ls->filter, e))
		return PA_OK;
	if (ls->matched == ls->limit) {
		ls->truncated = true;
		return 1; /* stop: the bound on the work of one request */
	}
	ls->matched++;
	return json_array_append_new(ls->entries, entry_json(&ls->filter, e)) == 0 ? PA_OK
	                                                                           : PA_ERROR;
}

int
ctl_spool_ls(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen)
{
	struct ls ls = {0};
	json_int_t limit;
	int rc;

	if (ctl_filter_parse(&ls.filter, env, req, err, errlen) != PA_OK ||
	    ctl_arg_int(req, "limit", 1, CTL_LS_LIMIT_MAX, CTL_LS_LIMIT_DEFAULT, &limit, err,
	                errlen) != PA_OK)
		return PA_ERROR;
	ls.limit = (size_t)limit;
	ls.entries = json_array();
	if (ls.entries == NULL) {
		snprintf(err, errlen, "spool ls: out of memory");
		return PA_ERROR;
	}
	rc = spool_iterate(env->shared->spool, ls.filter.shard, ls_entry, &ls, err, errlen);
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
	struct ctl_filter filter;
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
	s->found = entry_json(&s->filter, e);
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
	struct show s = {0};
	const char *id;
	int rc;

	if (ctl_arg_str(req, "id", &id, err, errlen) != PA_OK ||
	    ctl_filter_parse(&s.filter, env, req, err, errlen) != PA_OK)
		return PA_ERROR;
	if (id == NULL) {
		snprintf(err, errlen, "spool.show needs \"id\"");
		return PA_ERROR;
	}
	rc = spool_lookup(env->shared->spool, id, s.filter.shard, show_entry, &s, err, errlen);
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
