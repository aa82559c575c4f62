/*
 * handoff_ops.c: per-message operations of the hand-off engine: hold,
 * release, retry now, delete (handoff_message_op(), handoff_copy_op()).
 *
 * Callers on any thread queue an operation under the engine's lock; the
 * engine thread applies it, so the engine stays the only writer of existing
 * copies.  What it promises: each operation is one synced write per copy;
 * operations apply in the order they were queued; a copy in flight is left
 * alone and the operation waits for the next loop, so an operation never
 * races a transaction's outcome.
 */
#include "handoff/handoff_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

static const char *const op_names[] = {"hold", "release", "retry", "delete"};

int
handoff_copy_op(struct handoff *h, const char *qid, int shard, enum handoff_op op)
{
	struct ho_op *o;
	uint64_t one = 1;

	if (h == NULL || !spool_queue_id_valid(qid, strlen(qid)) ||
	    (unsigned)op > HANDOFF_OP_DELETE || shard >= (int)h->nshards)
		return PA_ERROR;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return PA_ERROR;
	snprintf(o->qid, sizeof(o->qid), "%s", qid);
	o->shard = shard < 0 ? -1 : shard;
	o->op = op;
	pthread_mutex_lock(&h->lock);
	o->next = h->ops;
	h->ops = o;
	atomic_fetch_add(&h->ops_queued, 1);
	pthread_mutex_unlock(&h->lock);
	if (write(h->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		pa_log_err("hand-off: write(eventfd): %s", strerror(errno));
	return PA_OK;
}

int
handoff_message_op(struct handoff *h, const char *qid, enum handoff_op op)
{
	return handoff_copy_op(h, qid, -1, op);
}

uint64_t
handoff_ops_pending(struct handoff *h)
{
	/* Settled after queued: read it first, so the difference never wraps. */
	uint64_t settled = atomic_load(&h->ops_settled);

	return atomic_load(&h->ops_queued) - settled;
}

void
ho_ops_free(struct ho_op *ops)
{
	while (ops != NULL) {
		struct ho_op *next = ops->next;

		free(ops);
		ops = next;
	}
}

/* Applies one operation to the copy in one shard; PA_AGAIN while it is in flight. */
static int
apply_one(struct handoff *h, const struct ho_op *o, unsigned shard, uint64_t now)
{
	struct hs_copy *c;
	char err[512];
	bool hold;
	int rc;
	/* Takes the commit stream first: a copy on it is in flight after this. */
	uint64_t fresh = ho_fresh_from(h, shard, now);

	if (ho_in_flight(h, shard, o->qid))
		return PA_AGAIN;
	rc = hs_load(h->spool, shard, o->qid, 0, &c, err, sizeof(err));
	if (rc == PA_AGAIN)
		return PA_OK; /* no copy in this shard */
	if (rc != PA_OK) {
		pa_log_err("hand-off: %s %s: %s", op_names[o->op], o->qid, err);
		return PA_ERROR;
	}
	if (ho_maybe_streaming(fresh, c->sched_us)) {
		hs_copy_free(c); /* committed a moment ago: on the stream, or found next turn */
		return PA_AGAIN;
	}
	/*
	 * A hold queued just before a drain but applied after it would keep the
	 * drain waiting for ever: while draining a hold makes the copy due.
	 */
	hold = o->op == HANDOFF_OP_HOLD && !atomic_load(&h->draining);
	if (o->op == HANDOFF_OP_DELETE) {
		rc = hs_delete(h->spool, c, err, sizeof(err));
		if (rc == PA_OK)
			h->removed_bytes[shard] += c->size;
	} else {
		if (o->op == HANDOFF_OP_RETRY)
			for (size_t i = 0; i < c->rec->nrcpt; i++)
				c->d[i].next_attempt_us = 0; /* a held recipient too */
		rc = hs_reschedule(h->spool, c, hold ? HS_HELD_US : now, err, sizeof(err));
		if (rc == PA_OK && !hold)
			ho_cursor_back(h, shard, now);
	}
	if (rc != PA_OK)
		pa_log_err("hand-off: %s %s: %s", op_names[o->op], o->qid, err);
	else
		pa_log_notice("%s: shard %u: %s", o->qid, shard,
		              hold                         ? "held"
		              : o->op == HANDOFF_OP_HOLD   ? "not held: draining, due now"
		              : o->op == HANDOFF_OP_DELETE ? "deleted by the operator"
		                                           : "released, due now");
	hs_copy_free(c);
	return rc;
}

/* Reverses a list of operations: the queue is kept newest first. */
static struct ho_op *
reversed(struct ho_op *ops)
{
	struct ho_op *out = NULL;

	while (ops != NULL) {
		struct ho_op *o = ops;

		ops = o->next;
		o->next = out;
		out = o;
	}
	return out;
}

void
ho_apply_ops(struct handoff *h, uint64_t now)
{
	struct ho_op *ops, *later = NULL, **later_tail = &later, **tail;

	/* Oldest first, so that `hold X` then `release X` ends released, whatever the timing. */
	pthread_mutex_lock(&h->lock);
	ops = reversed(h->ops);
	h->ops = NULL;
	pthread_mutex_unlock(&h->lock);
	while (ops != NULL) {
		struct ho_op *o = ops;
		bool again = false;

		ops = o->next;
		for (unsigned s = 0; s < h->nshards; s++)
			if (o->shard < 0 || (unsigned)o->shard == s)
				again |= apply_one(h, o, s, now) == PA_AGAIN;
		if (again) {
			/*
			 * In flight in some shard: the shards done already are
			 * idempotent.  A later operation on the same copy is in flight
			 * too, so the waiting ones keep their order.
			 */
			o->next = NULL;
			*later_tail = o;
			later_tail = &o->next;
		} else {
			free(o);
			atomic_fetch_add(&h->ops_settled, 1);
		}
	}
	if (later != NULL) {
		/* Back behind (older than) what was queued meanwhile. */
		pthread_mutex_lock(&h->lock);
		tail = &h->ops;
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = reversed(later);
		pthread_mutex_unlock(&h->lock);
	}
}

struct release_ctx {
	struct handoff *h;
	uint64_t now;
};

static int
release_entry(unsigned shard, const char *qid, uint64_t sched_us, void *arg)
{
	struct release_ctx *r = arg;
	struct ho_op o = {.shard = (int)shard, .op = HANDOFF_OP_RELEASE};

	if (sched_us != HS_HELD_US)
		return 0;
	snprintf(o.qid, sizeof(o.qid), "%s", qid);
	/* The iterator reads a snapshot: moving the schedule entry under it is safe. */
	apply_one(r->h, &o, shard, r->now);
	return 0;
}

void
ho_release_held(struct handoff *h, uint64_t now)
{
	struct release_ctx r = {h, now};
	char err[512];

	for (unsigned s = 0; s < h->nshards; s++)
		if (hs_due(h->spool, s, HS_HELD_US, UINT_MAX, release_entry, &r, err,
		           sizeof(err)) == PA_ERROR)
			pa_log_err("hand-off: drain: %s", err);
}
