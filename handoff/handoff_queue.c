/*
 * handoff_queue.c: the hand-off engine's queue logic: which copies are due,
 * which destination each recipient goes to, and what each outcome does to
 * the spool.  Copies come from the spool's commit stream (in memory) or
 * from a scan of the schedule (disk), never from both (ho_fresh_from()).
 *
 * What it promises: an outcome is written (by the writer thread,
 * handoff_writer.c) before the engine acts on its copy further: a finished
 * copy stays in flight (settling) until then; a DSN is queued (synced) before the recipient it
 * reports is marked failed, so a crash can duplicate a DSN but never lose one; a copy is loaded at
 * most once at a time (the in-memory set of copies), so two connections never carry the same
 * recipient at once.
 */
#include "handoff/handoff_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mail_date.h"
#include "core/pa.h"
#include "handoff/dsn.h"
#include "spool/spool_internal.h"

static unsigned
bucket(unsigned shard, const char *qid)
{
	uint32_t x = 2166136261u ^ shard;

	for (; *qid; qid++)
		x = (x ^ (uint8_t)*qid) * 16777619u;
	return x % HO_COPY_BUCKETS;
}

static struct ho_copy *
copy_find(struct handoff *h, unsigned shard, const char *qid)
{
	for (struct ho_copy *c = h->copies[bucket(shard, qid)]; c != NULL; c = c->hnext)
		if (c->hc->shard == shard && strcmp(c->hc->qid, qid) == 0)
			return c;
	return NULL;
}

bool
ho_in_flight(struct handoff *h, unsigned shard, const char *qid)
{
	return copy_find(h, shard, qid) != NULL;
}

static void
copy_forget(struct handoff *h, struct ho_copy *c)
{
	struct ho_copy **pp = &h->copies[bucket(c->hc->shard, c->hc->qid)];

	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	if (c->settling)
		TAILQ_REMOVE(&h->settling, c, slink);
	/* Still queued (due, or rescheduled by its outcome): the cursor must not be past it. */
	if (!c->deleted)
		ho_cursor_back(h, c->hc->shard, c->hc->sched_us);
	h->ncopies--;
	h->bytes_in_memory -= c->hc->rec->size;
	hs_copy_free(c->hc);
	free(c);
}

static struct ho_dest *
dest_get(struct handoff *h, const struct route_dest *rd)
{
	struct ho_dest *d;

	for (d = h->dests; d != NULL; d = d->next)
		if (strcmp(d->rd.key, rd->key) == 0)
			return d;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->rd = *rd;
	TAILQ_INIT(&d->queue);
	LIST_INIT(&d->conns);
	d->next = h->dests;
	h->dests = d;
	return d;
}

void
ho_dest_free_all(struct handoff *h)
{
	while (h->dests != NULL) {
		struct ho_dest *d = h->dests;

		h->dests = d->next;
		free(d);
	}
}

static uint64_t
backoff_us(const struct handoff_config *cfg, uint32_t attempts)
{
	uint64_t d = (uint64_t)cfg->min_backoff_s * 1000000u;
	uint64_t max = (uint64_t)cfg->max_backoff_s * 1000000u;

	for (uint32_t i = 1; i < attempts && d < max; i++)
		d *= 2;
	return d < max ? d : max;
}

/*
 * Whether a copy outlived relay.max_queue_lifetime.  Its arrival may be
 * later than `now` (a streamed copy that arrived during the engine's turn,
 * or a clock stepped back): that is no age at all, never a wrapped one.
 */
static bool
too_old(const struct handoff *h, const struct hs_copy *hc, uint64_t now)
{
	uint64_t lifetime = (uint64_t)h->cfg.max_queue_lifetime_s * 1000000u;

	return now > hc->rec->arrival_us && now - hc->rec->arrival_us >= lifetime;
}

static void
set_reply(struct spool_delivery *d, const char *text)
{
	size_t n = strlen(text);

	if (n > SPOOL_REPLY_MAX)
		n = SPOOL_REPLY_MAX;
	memcpy(d->reply, text, n);
	d->reply[n] = '\0';
	/* The record's strings may not hold NUL; replies never do, but cut defensively. */
	d->reply_len = strlen(d->reply);
}

/*
 * Queues one DSN for the failed recipients of a copy, in the sender's shard.
 * PA_OK also when there is nobody to tell (the null sender).
 */
static int
queue_dsn(struct handoff *h, const struct hs_copy *hc, const struct dsn_rcpt *rcpts, size_t n,
          uint64_t now)
{
	const char *from = hc->rec->mail_from;
	char qid[QUEUE_ID_LEN + 1], date[PA_MAIL_DATE_MAX], recv[512], err[512];
	uint8_t *report, *data;
	size_t rlen, dlen;
	struct spool_msg_record rec;
	unsigned shard;
	int rc, hl;
	bool eight = false;

	if (from[0] == '\0' || n == 0)
		return PA_OK;
	queue_id_next(&h->qids, now, qid);
	if (dsn_build(&(struct dsn_report){.reporting_mta = h->cfg.hostname,
	                                   .queue_id = hc->qid,
	                                   .mail_from = from,
	                                   .arrival_us = hc->rec->arrival_us,
	                                   .now_us = now,
	                                   .rcpts = rcpts,
	                                   .nrcpt = n,
	                                   .original = hc->data,
	                                   .original_size = hc->size},
	              &report, &rlen) != PA_OK) {
		pa_log_err("%s: dsn_build: out of memory", hc->qid);
		return PA_ERROR;
	}
	pa_mail_date((int64_t)(now / 1000000u), date);
	hl = snprintf(recv, sizeof(recv), "Received: by %s (PigeonAir hand-off) id %s;\r\n\t%s\r\n",
	              h->cfg.hostname, qid, date);
	data = malloc((size_t)hl + rlen);
	if (data == NULL) {
		free(report);
		pa_log_err("%s: DSN: out of memory", hc->qid);
		return PA_ERROR;
	}
	memcpy(data, recv, (size_t)hl);
	memcpy(data + hl, report, rlen);
	dlen = (size_t)hl + rlen;
	free(report);
	for (size_t i = 0; i < dlen && !eight; i++)
		eight = data[i] >= 0x80;
	rec = (struct spool_msg_record){
	    .flags = eight ? SPOOL_MSG_8BITMIME : 0,
	    .arrival_us = now,
	    .size = dlen,
	    .mail_from = "",
	    .client_addr = "hand-off",
	    .helo = h->cfg.hostname,
	    .nrcpt = 1,
	    .rcpts = &from,
	};
	shard = spool_shard_of(h->nshards, from, strlen(from));
	rc = hs_put(h->spool, shard, qid, &rec, data, dlen, now, err, sizeof(err));
	free(data);
	if (rc != PA_OK) {
		pa_log_err("%s: DSN not queued: %s", hc->qid, err);
		return PA_ERROR;
	}
	h->added_bytes[shard] += dlen;
	ho_cursor_back(h, shard, now);
	atomic_fetch_add(&h->dsns, 1);
	pa_log_info("%s: DSN %s queued to <%s> for %zu recipient(s)", hc->qid, qid, from, n);
	return PA_OK;
}

/* Writes the copy's state after its last job: deleted when nothing is pending. */
static void
copy_finish(struct handoff *h, struct ho_copy *c)
{
	char err[512];
	bool deleted;
	unsigned shard = c->hc->shard;
	uint64_t size = c->hc->rec->size;

	if (hs_finish(h->spool, c->hc, &deleted, h->batch[shard], err, sizeof(err)) != PA_OK) {
		/* Nothing recorded: the copy stays due and goes out again (at least once). */
		pa_log_err("%s: %s", c->hc->qid, err);
		copy_forget(h, c);
		return;
	}
	c->deleted = deleted;
	if (deleted) {
		h->removed_bytes[shard] += size;
		pa_log_info("%s: shard %u copy handed off completely, deleted", c->hc->qid, shard);
	}
	/* In flight until the writer has written it: the spool still shows it due. */
	c->settling = true;
	c->settle_gen = ho_outcome_gen(h, shard);
	TAILQ_INSERT_TAIL(&h->settling, c, slink);
}

void
ho_job_free(struct ho_job *job)
{
	free(job->idx);
	free(job->rcpts);
	free(job->done);
	free(job);
}

/* One job is over: record what it changed; the copy's last job finishes the copy. */
static void
job_end(struct handoff *h, struct ho_job *job, const size_t *changed, size_t nchanged)
{
	struct ho_copy *c = job->copy;
	char err[512];

	if (job->ndone < job->n && nchanged > 0) {
		/* LMTP: some recipients answered, others still to come; record these now. */
		if (hs_record(h->spool, c->hc, changed, nchanged, h->batch[c->hc->shard], err,
		              sizeof(err)) != PA_OK)
			pa_log_err("%s: %s", c->hc->qid, err);
		return;
	}
	if (job->ndone < job->n)
		return;
	c->jobs--;
	if (c->jobs == 0) {
		copy_finish(h, c);
	} else if (nchanged > 0 && hs_record(h->spool, c->hc, changed, nchanged,
	                                     h->batch[c->hc->shard], err, sizeof(err)) != PA_OK) {
		pa_log_err("%s: %s", c->hc->qid, err);
	}
	ho_job_free(job);
}

/*
 * Applies one outcome to recipient k of the job.  Fills dsn when the
 * recipient failed for good and the sender must hear of it.
 */
static void
apply(struct handoff *h, struct ho_job *job, size_t k, unsigned code, const char *text,
      bool count_attempt, uint64_t when, uint64_t now, struct dsn_rcpt *dsn, size_t *ndsn,
      char (*why)[SPOOL_REPLY_MAX + 64])
{
	struct hs_copy *hc = job->copy->hc;
	struct spool_delivery *d = &hc->d[job->idx[k]];
	const struct handoff_config *cfg = &h->cfg;

	job->done[k] = true;
	job->ndone++;
	if (count_attempt) {
		d->attempts++;
		d->last_attempt_us = now;
	}
	set_reply(d, text);
	if (code / 100 == 2) {
		d->state = SPOOL_DELIVERY_DONE;
		job->dest->delivered++;
		atomic_fetch_add(&h->delivered, 1);
		pa_log_info("%s: to=<%s> relay=%s status=sent (%s)", hc->qid, job->rcpts[k],
		            job->dest->rd.key, text);
		return;
	}
	if (code / 100 == 5 || too_old(h, hc, now)) {
		d->state = SPOOL_DELIVERY_FAILED;
		job->dest->failed++;
		atomic_fetch_add(&h->failed, 1);
		if (code / 100 == 5) {
			snprintf(why[*ndsn], sizeof(why[0]), "%s", text);
		} else {
			snprintf(why[*ndsn], sizeof(why[0]),
			         "delivery time expired (relay.max_queue_lifetime); last reply: %s",
			         text);
			code = 0;
		}
		dsn[*ndsn] = (struct dsn_rcpt){job->rcpts[k], why[*ndsn], code};
		(*ndsn)++;
		pa_log_notice("%s: to=<%s> relay=%s status=bounced (%s)", hc->qid, job->rcpts[k],
		              job->dest->rd.key, why[*ndsn - 1]);
		return;
	}
	d->next_attempt_us = when != 0 ? when : now + backoff_us(cfg, d->attempts);
	/* The retry should try another host of the destination first. */
	if (count_attempt && job->dest->rd.nhosts > 1)
		job->dest->host_next = (job->dest->host_next + 1) % job->dest->rd.nhosts;
	job->dest->deferred++;
	atomic_fetch_add(&h->deferred, 1);
	pa_log_info("%s: to=<%s> relay=%s status=deferred attempts=%u (%s)", hc->qid, job->rcpts[k],
	            job->dest->rd.key, (unsigned)d->attempts, text);
}

/* Applies outcomes of recipients ks[0..n), queues their DSN, then records. */
static void
apply_many(struct handoff *h, struct ho_job *job, const size_t *ks, const unsigned *codes,
           const char *const *texts, size_t n, bool count_attempt, uint64_t when, uint64_t now)
{
	struct dsn_rcpt *dsn = calloc(n + 1, sizeof(*dsn));
	char(*why)[SPOOL_REPLY_MAX + 64] = calloc(n + 1, sizeof(*why));
	size_t *changed = calloc(n + 1, sizeof(*changed));
	size_t ndsn = 0;

	if (dsn == NULL || why == NULL || changed == NULL) {
		/* Nothing applied: the copy stays due and is retried (at least once). */
		pa_log_err("%s: out of memory applying outcomes", job->copy->hc->qid);
		free(dsn);
		free(why);
		free(changed);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		apply(h, job, ks[i], codes[i], texts[i], count_attempt, when, now, dsn, &ndsn, why);
		changed[i] = job->idx[ks[i]];
	}
	if (ndsn > 0 && queue_dsn(h, job->copy->hc, dsn, ndsn, now) != PA_OK) {
		/* Keep them pending rather than fail them silently: retried later. */
		for (size_t i = 0; i < n; i++) {
			struct spool_delivery *d = &job->copy->hc->d[job->idx[ks[i]]];

			if (d->state == SPOOL_DELIVERY_FAILED) {
				d->state = SPOOL_DELIVERY_PENDING;
				d->next_attempt_us = now + backoff_us(&h->cfg, d->attempts);
			}
		}
	}
	job_end(h, job, changed, n);
	free(dsn);
	free(why);
	free(changed);
}

unsigned
ho_job_outcomes(struct handoff *h, struct ho_job *job, struct hc *hc, uint64_t now)
{
	size_t *ks = calloc(job->n, sizeof(*ks));
	unsigned *codes = calloc(job->n, sizeof(*codes));
	const char **texts = calloc(job->n, sizeof(*texts));
	size_t n = 0;
	unsigned temp = 0;

	if (ks == NULL || codes == NULL || texts == NULL) {
		free(ks);
		free(codes);
		free(texts);
		return 0;
	}
	for (size_t k = 0; k < job->n; k++) {
		const struct hc_result *r = hc_result(hc, k);

		if (job->done[k] || r == NULL || !r->final)
			continue;
		ks[n] = k;
		codes[n] = r->code;
		texts[n] = r->text;
		temp += r->code / 100 != 2 && r->code / 100 != 5;
		n++;
	}
	if (n > 0)
		apply_many(h, job, ks, codes, texts, n, true, 0, now);
	free(ks);
	free(codes);
	free(texts);
	return temp;
}

void
ho_job_fail(struct handoff *h, struct ho_job *job, const char *why, bool count_attempt,
            uint64_t when, uint64_t now)
{
	size_t *ks = calloc(job->n, sizeof(*ks));
	unsigned *codes = calloc(job->n, sizeof(*codes));
	const char **texts = calloc(job->n, sizeof(*texts));
	size_t n = 0;

	if (ks == NULL || codes == NULL || texts == NULL) {
		free(ks);
		free(codes);
		free(texts);
		return;
	}
	for (size_t k = 0; k < job->n; k++) {
		if (job->done[k])
			continue;
		ks[n] = k;
		codes[n] = 0;
		texts[n] = why;
		n++;
	}
	if (n > 0)
		apply_many(h, job, ks, codes, texts, n, count_attempt, when, now);
	else
		job_end(h, job, NULL, 0);
	free(ks);
	free(codes);
	free(texts);
}

static struct ho_job *
job_new(struct ho_copy *c, struct ho_dest *dest, size_t cap)
{
	struct ho_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->copy = c;
	job->dest = dest;
	job->idx = calloc(cap, sizeof(*job->idx));
	job->rcpts = calloc(cap, sizeof(*job->rcpts));
	job->done = calloc(cap, sizeof(*job->done));
	if (job->idx == NULL || job->rcpts == NULL || job->done == NULL) {
		ho_job_free(job);
		return NULL;
	}
	/* Stable across attempts: a store that saw it before can drop the duplicate. */
	snprintf(job->id_header, sizeof(job->id_header), "X-PigeonAir-Id: %s.%u", c->hc->qid,
	         c->hc->shard);
	snprintf(job->envid, sizeof(job->envid), "%s.%u", c->hc->qid, c->hc->shard);
	return job;
}

const struct route_dest *
ho_route(struct handoff *h, const struct route_map *map, const struct handoff_config *cfg,
         unsigned reader, unsigned shard, const char *rcpt, struct route_dest *scratch, bool *wait)
{
	const struct route_dest *d = route_map_lookup_override(map, rcpt);
	char store[256];

	if (d != NULL)
		return d;
	if (cfg->store_of == NULL || !route_map_has_store_route(map))
		return route_map_lookup(map, shard, rcpt);
	/* Looked up at every attempt, so that a moved mailbox's queued mail follows it. */
	switch (cfg->store_of(cfg->store_arg, reader, rcpt, store, sizeof(store))) {
	case HANDOFF_STORE_FOUND:
		if (reader == 0)
			h->warned_no_directory = false;
		switch (route_map_store_dest(map, store, scratch)) {
		case ROUTE_STORE_OK:
			return scratch;
		case ROUTE_STORE_NONE:
			break;
		case ROUTE_STORE_BAD:
		case ROUTE_STORE_NAME:
			/* Directory data is untrusted: counted, and the fallback rules apply. */
			if (reader == 0) {
				atomic_fetch_add(&h->store_refused, 1);
				pa_log_warning("hand-off: to=<%s>: directory store '%.64s' is no "
				               "address literal: routed by the shard rules",
				               rcpt, store);
			}
			break;
		}
		break;
	case HANDOFF_STORE_NONE:
		break;
	case HANDOFF_STORE_UNAVAILABLE:
		if (wait != NULL) {
			*wait = true;
			return NULL;
		}
		break;
	}
	return route_map_lookup(map, shard, rcpt);
}

/* The body of a copy read from disk (a streamed copy has its own); counted. */
static int
load_body(struct handoff *h, struct hs_copy *hc, char *err, size_t errlen)
{
	if (hc->body.owner != NULL)
		return PA_OK;
	atomic_fetch_add_explicit(&h->disk_loads, 1, memory_order_relaxed);
	return hs_load_body(h->spool, hc, err, errlen);
}

/*
 * Splits the due recipients of a loaded copy into jobs: one per destination
 * and relay.max_recipients recipients.  Returns the number of jobs queued;
 * recipients without a route wait.
 */
static unsigned
plan(struct handoff *h, struct ho_copy *c, uint64_t now, bool all, bool *busy)
{
	struct hs_copy *hc = c->hc;
	size_t n = hc->rec->nrcpt;
	struct ho_job **jobs = calloc(n, sizeof(*jobs));
	unsigned njobs = 0;
	bool unrouted = false;
	bool held = atomic_load(&h->held[hc->shard]) != 0;
	size_t limit = h->cfg.max_rcpts != 0 ? h->cfg.max_rcpts : 1000;
	char err[512];

	if (jobs == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct spool_delivery *d = &hc->d[i];
		const struct route_dest *rd;
		struct route_dest scratch;
		struct ho_dest *dest;
		struct ho_job *job;
		bool wait = false;

		if (d->state != SPOOL_DELIVERY_PENDING || d->next_attempt_us == HS_HELD_US)
			continue;
		if (!all && d->next_attempt_us > now)
			continue;
		rd = held ? NULL
		          : ho_route(h, h->map, &h->cfg, 0, hc->shard, hc->rec->rcpts[i], &scratch,
		                     &wait);
		if (wait) {
			/* No fresh directory: its store is not known, look again soon. */
			d->next_attempt_us = now + (uint64_t)h->cfg.min_backoff_s * 1000000u;
			c->changed = true;
			if (!h->warned_no_directory)
				pa_log_warning(
				    "hand-off: the directory has no fresh snapshot: "
				    "recipients routed by store (relay.store_route) wait");
			h->warned_no_directory = true;
			continue;
		}
		if (rd == NULL) {
			/* No route (or the shard is held): look again after max_backoff or a
			 * reload. */
			d->next_attempt_us = now + (uint64_t)h->cfg.max_backoff_s * 1000000u;
			unrouted = true;
			c->changed = true;
			continue;
		}
		dest = dest_get(h, rd);
		if (dest == NULL)
			continue;
		/*
		 * A destination with enough work queued takes no more now: the copy's
		 * memory goes to other destinations, this recipient stays due on disk.
		 */
		if (dest->nqueued >= ho_dest_queue_max(h)) {
			*busy = true;
			dest->wants_more = true;
			continue;
		}
		/* A full job starts the next one: no peer is asked for more than the limit. */
		job = dest->filling;
		if (job == NULL || job->n == limit) {
			job = job_new(c, dest, n < limit ? n : limit);
			if (job == NULL)
				continue;
			jobs[njobs++] = job;
			dest->filling = job;
		}
		job->idx[job->n] = i;
		job->rcpts[job->n] = hc->rec->rcpts[i];
		job->n++;
	}
	if (unrouted && !h->warned_unrouted && !held) {
		pa_log_warning("%s: recipient(s) in shard %u have no route (relay.routes, "
		               "relay.default): held",
		               hc->qid, hc->shard);
		h->warned_unrouted = true;
	}
	for (unsigned j = 0; j < njobs; j++)
		jobs[j]->dest->filling = NULL;
	/* Only now, with somewhere to go, does the body take memory. */
	if (njobs > 0 && load_body(h, hc, err, sizeof(err)) != PA_OK) {
		pa_log_err("hand-off: %s", err);
		for (unsigned j = 0; j < njobs; j++)
			ho_job_free(jobs[j]);
		njobs = 0;
	}
	c->jobs = njobs;
	for (unsigned j = 0; j < njobs; j++) {
		TAILQ_INSERT_TAIL(&jobs[j]->dest->queue, jobs[j], link);
		jobs[j]->dest->nqueued++;
	}
	free(jobs);
	return njobs;
}

/* Whether plan() changed a delivery record (a recipient without a route waits longer). */
static bool
copy_changed(const struct ho_copy *c)
{
	return c->changed;
}

/* Lifetime exceeded before any attempt this time: every pending recipient fails now. */
static bool
expire(struct handoff *h, struct ho_copy *c, uint64_t now)
{
	struct hs_copy *hc = c->hc;
	struct dsn_rcpt *dsn;
	size_t n = 0;
	char err[512];

	if (!too_old(h, hc, now))
		return false;
	/* The DSN quotes the original header. */
	if (load_body(h, hc, err, sizeof(err)) != PA_OK) {
		pa_log_err("hand-off: %s", err);
		return false;
	}
	dsn = calloc(hc->rec->nrcpt, sizeof(*dsn));
	if (dsn == NULL)
		return false;
	for (size_t i = 0; i < hc->rec->nrcpt; i++) {
		if (hc->d[i].state != SPOOL_DELIVERY_PENDING)
			continue;
		dsn[n++] = (struct dsn_rcpt){
		    hc->rec->rcpts[i],
		    hc->d[i].reply_len > 0 ? hc->d[i].reply
		                           : "delivery time expired (relay.max_queue_lifetime)",
		    0};
	}
	if (queue_dsn(h, hc, dsn, n, now) == PA_OK) {
		for (size_t i = 0; i < hc->rec->nrcpt; i++)
			if (hc->d[i].state == SPOOL_DELIVERY_PENDING)
				hc->d[i].state = SPOOL_DELIVERY_FAILED;
		atomic_fetch_add(&h->failed, n);
		pa_log_notice("%s: shard %u: %zu recipient(s) expired, status=bounced", hc->qid,
		              hc->shard, n);
	}
	free(dsn);
	copy_finish(h, c);
	return true;
}

struct scan_ctx {
	struct handoff *h;
	uint64_t now;
	bool all;
	unsigned seen;       /* entries looked at in this shard */
	unsigned busy_run;   /* copies in a row that found their destination full */
	uint64_t last_us;    /* the time of the last entry looked at */
	uint64_t blocked_us; /* the first entry left due (UINT64_MAX: none) */
	uint64_t fresh_us;   /* ho_fresh_from() when the scan began */
	bool stopped;        /* cut short: the limits, or a run of full destinations */
};

/* An entry stays due (its destination full, or the limits): the cursor stops there. */
static int
leave_due(struct scan_ctx *s, uint64_t sched_us, bool stop)
{
	if (sched_us < s->blocked_us)
		s->blocked_us = sched_us;
	if (stop || ++s->busy_run >= HO_SCAN_BUSY_RUN) {
		s->stopped = true;
		return 1;
	}
	return 0;
}

/*
 * A copy just read from disk or taken from the commit stream: in memory
 * from now on, and planned.  *busy: some recipient stays due for lack of
 * room.  Returns the number of jobs queued.
 */
static unsigned
admit(struct handoff *h, struct ho_copy *c, uint64_t now, bool all, bool *busy)
{
	unsigned b = bucket(c->hc->shard, c->hc->qid), njobs;

	c->hnext = h->copies[b];
	h->copies[b] = c;
	h->ncopies++;
	h->bytes_in_memory += c->hc->rec->size;
	*busy = false;
	if (expire(h, c, now))
		return 0;
	njobs = plan(h, c, now, all, busy);
	if (njobs > 0)
		return njobs;
	if (*busy && !copy_changed(c))
		copy_forget(h, c); /* nothing to write: it stays due as it is */
	else
		copy_finish(h, c); /* moves the schedule entry to the next due time */
	return 0;
}

static int
scan_one(unsigned shard, const char *qid, uint64_t sched_us, void *arg)
{
	struct scan_ctx *s = arg;
	struct handoff *h = s->h;
	struct ho_copy *c;
	char err[512];
	bool busy;
	int rc;

	s->seen++;
	s->last_us = sched_us;
	if (ho_maybe_streaming(s->fresh_us, sched_us)) {
		/* Perhaps still on the commit stream: taken from there, or by the next scan. */
		if (sched_us < s->blocked_us)
			s->blocked_us = sched_us;
		if (s->all)
			return 0; /* later entries may be due in the future: look at them */
		s->stopped = true;
		return 1;
	}
	if (h->ncopies >= HO_MAX_COPIES || h->bytes_in_memory >= HO_MAX_BYTES)
		return leave_due(s, sched_us, true); /* the rest waits for the next scan */
	if (copy_find(h, shard, qid) != NULL)
		return 0; /* in flight */
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return leave_due(s, sched_us, true);
	/* Records only: the body is read once a destination has room for it (plan()). */
	rc = hs_load_meta(h->spool, shard, qid, sched_us, &c->hc, err, sizeof(err));
	if (rc != PA_OK) {
		if (rc == PA_ERROR)
			pa_log_err("hand-off: %s", err);
		free(c);
		return 0;
	}
	admit(h, c, s->now, s->all, &busy);
	if (busy)
		/*
		 * Some recipients stay due at this time; the copy's entry keeps it
		 * (a copy in flight gets it back when its jobs end).
		 */
		return leave_due(s, sched_us, false);
	s->busy_run = 0;
	return 0;
}

void
ho_cursor_back(struct handoff *h, unsigned shard, uint64_t us)
{
	if (us < h->cursor_us[shard])
		h->cursor_us[shard] = us;
	if (us < h->back_us[shard])
		h->back_us[shard] = us; /* a scan of the shard under way keeps it too */
}

bool
ho_maybe_streaming(uint64_t fresh_us, uint64_t sched_us)
{
	return sched_us >= fresh_us && sched_us <= pa_wall_clock_us();
}

/* Takes one shard's streamed copies; false when the limits stopped it first. */
static bool
stream_take(struct handoff *h, unsigned shard, uint64_t now)
{
	struct spool_stream_copy *sc[32];
	char err[512];

	for (;;) {
		unsigned n, room;

		if (h->ncopies >= HO_MAX_COPIES || h->bytes_in_memory >= HO_MAX_BYTES)
			return false;
		room = HO_MAX_COPIES - h->ncopies;
		n = spool_stream_take(h->spool, shard, sc,
		                      room < pa_array_size(sc) ? room : pa_array_size(sc));
		if (n == 0)
			return true;
		atomic_fetch_add_explicit(&h->streamed, n, memory_order_relaxed);
		for (unsigned i = 0; i < n; i++) {
			struct ho_copy *c;
			struct hs_copy *hc;
			uint64_t sched = sc[i]->sched_us;
			bool busy;

			if (copy_find(h, shard, sc[i]->queue_id) != NULL) {
				/* Cannot be (a new queue id): the copy in memory goes on. */
				spool_stream_free(sc[i]);
				continue;
			}
			if (hs_from_stream(sc[i], &hc, err, sizeof(err)) != PA_OK) {
				pa_log_err("hand-off: %s", err);
				ho_cursor_back(h, shard, sched); /* on disk: the scan reads it */
				continue;
			}
			c = calloc(1, sizeof(*c));
			if (c == NULL) {
				hs_copy_free(hc);
				ho_cursor_back(h, shard, sched);
				continue;
			}
			c->hc = hc;
			admit(h, c, now, false, &busy);
		}
	}
}

void
ho_stream(struct handoff *h, uint64_t now)
{
	for (unsigned shard = 0; shard < h->nshards; shard++)
		if (!stream_take(h, shard, now))
			return;
}

void
ho_stream_drop(struct handoff *h)
{
	struct spool_stream_copy *sc[32];

	for (unsigned shard = 0; shard < h->nshards; shard++) {
		unsigned n;

		while ((n = spool_stream_take(h->spool, shard, sc, pa_array_size(sc))) > 0)
			for (unsigned i = 0; i < n; i++) {
				/* On disk, due: a scan finds it once something routes it. */
				ho_cursor_back(h, shard, sc[i]->sched_us);
				spool_stream_free(sc[i]);
			}
	}
}

uint64_t
ho_fresh_from(struct handoff *h, unsigned shard, uint64_t now)
{
	/* Read before the stream is taken (spool.h): the order is what makes it true. */
	uint64_t fresh = spool_stream_fresh_from(h->spool, shard);

	if (!stream_take(h, shard, now))
		return 0;
	return fresh < now ? fresh : now;
}

/*
 * Where the next scan of a shard starts.  Everything before it is in
 * flight or gone: a copy in flight gets a later entry or none when its jobs
 * end (ho_cursor_back() when it is forgotten with one), and one left due
 * stops the cursor.  It never passes the scan's fresh_us: a committer's
 * entry at or after it may become visible only after the scan (its group
 * was being written), and goes to the stream or to the next scan; a full
 * scan every HO_FULL_SCAN_US is the net under anything else.
 */
static uint64_t
next_cursor(const struct scan_ctx *s, uint64_t until, uint64_t old)
{
	uint64_t resume = s->blocked_us;
	uint64_t floor = s->fresh_us;

	if (resume == UINT64_MAX)
		resume = s->stopped || s->seen >= HO_SCAN_MAX_ENTRIES ? s->last_us
		         : until == UINT64_MAX                        ? UINT64_MAX
		                                                      : until + 1;
	if (resume > floor)
		resume = floor;
	return s->all || resume > old ? resume : old;
}

bool
ho_scan(struct handoff *h, uint64_t now, bool all)
{
	char err[512];
	uint64_t until = all ? HS_HELD_US - 1 : now;

	if (!all && now >= h->next_full_scan_us) {
		for (unsigned shard = 0; shard < h->nshards; shard++)
			h->cursor_us[shard] = 0;
		h->next_full_scan_us = now + HO_FULL_SCAN_US;
	}
	/* Every shard gets its turn to be first while the destinations have room. */
	h->first_shard = (h->first_shard + 1) % (h->nshards != 0 ? h->nshards : 1);
	for (unsigned i = 0; i < h->nshards; i++) {
		unsigned shard = (h->first_shard + i) % h->nshards;
		struct scan_ctx s = {h, now, all, 0, 0, 0, UINT64_MAX, 0, false};

		if (h->ncopies >= HO_MAX_COPIES || h->bytes_in_memory >= HO_MAX_BYTES)
			return false;
		/* A failed or stalled shard refuses writes until its committer recovers it. */
		if (!spool_shard_healthy(h->spool, shard))
			continue;
		/* Outcomes to the writer early; their copies stay in flight until written. */
		ho_flush(h);
		h->back_us[shard] = UINT64_MAX;
		/* What the commit stream holds is taken first, and never read from disk. */
		s.fresh_us = ho_fresh_from(h, shard, now);
		if (s.fresh_us == 0)
			return false; /* the limits: the stream still holds copies */
		if (hs_due_from(h->spool, shard, all ? 0 : h->cursor_us[shard], until,
		                HO_SCAN_MAX_ENTRIES, scan_one, &s, err, sizeof(err)) == PA_ERROR) {
			pa_log_err("hand-off: %s", err);
			continue; /* the cursor stays */
		}
		h->cursor_us[shard] = next_cursor(&s, until, h->cursor_us[shard]);
		if (h->back_us[shard] < h->cursor_us[shard])
			h->cursor_us[shard] = h->back_us[shard];
	}
	ho_flush(h);
	return h->ncopies < HO_MAX_COPIES && h->bytes_in_memory < HO_MAX_BYTES;
}

void
ho_settle(struct handoff *h)
{
	struct ho_copy *c, *next;

	for (c = TAILQ_FIRST(&h->settling); c != NULL; c = next) {
		next = TAILQ_NEXT(c, slink);
		if (ho_written(h, c->hc->shard, c->settle_gen))
			copy_forget(h, c);
	}
}

/* Forgets every job and copy in memory (at stop): the spool still has them all. */
void
ho_drop_all(struct handoff *h)
{
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next) {
		struct ho_job *job;

		while ((job = TAILQ_FIRST(&d->queue)) != NULL) {
			TAILQ_REMOVE(&d->queue, job, link);
			ho_job_free(job);
		}
		d->nqueued = 0;
	}
	for (unsigned b = 0; b < HO_COPY_BUCKETS; b++)
		while (h->copies[b] != NULL)
			copy_forget(h, h->copies[b]);
}
