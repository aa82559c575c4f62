/*
 * handoff_ops.c: per-message operations of the hand-off engine: hold,
 * release, retry now, delete (handoff_message_op()).
 *
 * Callers on any thread queue an operation under the engine's lock; the
 * engine thread applies it, so the engine stays the only writer of existing
 * copies.  What it promises: each operation is one synced write per copy;
 * a copy in flight is left alone and the operation waits for the next loop,
 * so an operation never races a transaction's outcome.
 */
#include "spool/handoff_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

static const char *const op_names[] = {"hold", "release", "retry", "delete"};

int
handoff_message_op(struct handoff *h, const char *qid, enum handoff_op op)
{
	struct ho_op *o;
	uint64_t one = 1;

	if (h == NULL || !spool_queue_id_valid(qid, strlen(qid)) ||
	    (unsigned)op > HANDOFF_OP_DELETE)
		return PA_ERROR;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return PA_ERROR;
	snprintf(o->qid, sizeof(o->qid), "%s", qid);
	o->op = op;
	pthread_mutex_lock(&h->lock);
	o->next = h->ops;
	h->ops = o;
	pthread_mutex_unlock(&h->lock);
	if (write(h->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		pa_log_err("hand-off: write(eventfd): %s", strerror(errno));
	return PA_OK;
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
	int rc;

	if (ho_in_flight(h, shard, o->qid))
		return PA_AGAIN;
	rc = hs_load(h->spool, shard, o->qid, 0, &c, err, sizeof(err));
	if (rc == PA_AGAIN)
		return PA_OK; /* no copy in this shard */
	if (rc != PA_OK) {
		pa_log_err("hand-off: %s %s: %s", op_names[o->op], o->qid, err);
		return PA_ERROR;
	}
	if (o->op == HANDOFF_OP_DELETE) {
		rc = hs_delete(h->spool, c, err, sizeof(err));
		if (rc == PA_OK)
			h->removed_bytes[shard] += c->size;
	} else {
		if (o->op == HANDOFF_OP_RETRY)
			for (size_t i = 0; i < c->rec->nrcpt; i++)
				c->d[i].next_attempt_us = 0; /* a held recipient too */
		rc = hs_reschedule(h->spool, c, o->op == HANDOFF_OP_HOLD ? HS_HELD_US : now, err,
		                   sizeof(err));
	}
	if (rc != PA_OK)
		pa_log_err("hand-off: %s %s: %s", op_names[o->op], o->qid, err);
	else
		pa_log_notice("%s: shard %u: %s", o->qid, shard,
		              o->op == HANDOFF_OP_HOLD     ? "held"
		              : o->op == HANDOFF_OP_DELETE ? "deleted by the operator"
		                                           : "released, due now");
	hs_copy_free(c);
	return rc;
}

void
ho_apply_ops(struct handoff *h, uint64_t now)
{
	struct ho_op *ops, *later = NULL;

	pthread_mutex_lock(&h->lock);
	ops = h->ops;
	h->ops = NULL;
	pthread_mutex_unlock(&h->lock);
	while (ops != NULL) {
		struct ho_op *o = ops;
		bool again = false;

		ops = o->next;
		for (unsigned s = 0; s < h->nshards; s++)
			again |= apply_one(h, o, s, now) == PA_AGAIN;
		if (again) {
			/* In flight in some shard: the shards done already are idempotent. */
			o->next = later;
			later = o;
		} else {
			free(o);
		}
	}
	if (later != NULL) {
		pthread_mutex_lock(&h->lock);
		struct ho_op **tail = &later;

		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = h->ops;
		h->ops = later;
		pthread_mutex_unlock(&h->lock);
	}
}
