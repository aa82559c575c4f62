/*
 * ingest_milter.c: end of data through the content filters (ingest_milter.h).
 *
 * The worker's side of filter/milter_client.h.  A connection whose message
 * is with the filters is `storing` all along (the engine reads nothing and
 * ingest_close() keeps it), and counts in awaiting_store, so that a
 * stopping worker waits for its verdict as it waits for the spool.  The
 * worker keeps at most milter_client_capacity() messages out, counting the
 * edited copies it has not handed back: the thread's rings then never fill.
 */
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"
#include "dataplane/ingest.h"
#include "dataplane/ingest_milter.h"
#include "dataplane/worker.h"
#include "filter/milter_client.h"

#define RING_SIZE 1024 /* messages out per worker */
#define VERDICT_BURST 32

int
ingest_milter_create(struct pa_shared *shared, const struct pa_config *config, char *err,
                     size_t errlen)
{
	const struct milter_client_config mc = {
	    .sites = config->milters,
	    .nsites = config->nmilters,
	    .hostname = config->hostname,
	    .nworkers = config->workers,
	    .ring_size = RING_SIZE,
	};

	shared->milter = NULL;
	return milter_client_start(&shared->milter, &mc, err, errlen);
}

int
ingest_milter_prepare(const struct pa_config *config, struct milter_filters **out, char *err,
                      size_t errlen)
{
	return milter_client_filters_new(out, config->milters, config->nmilters, config->hostname,
	                                 err, errlen);
}

void
ingest_milter_publish(struct pa_shared *shared, struct milter_filters *filters)
{
	milter_client_reconfigure(shared->milter, filters);
}

bool
ingest_milter_wanted(const struct pa_worker *worker)
{
	return worker->shared->milter != NULL && milter_client_active(worker->shared->milter);
}

void
ingest_milter_destroy(struct pa_shared *shared)
{
	milter_client_stop(shared->milter);
	shared->milter = NULL;
}

int
ingest_milter_attach(struct pa_worker *worker, int notify_fd, bool may_syscall)
{
	if (worker->shared->milter == NULL)
		return PA_OK;
	return milter_client_attach(worker->shared->milter, worker->id, notify_fd, may_syscall);
}

bool
ingest_milter_submit(struct ingest_conn *conn)
{
	struct pa_worker *worker = conn->worker;
	struct milter_client *mc = worker->shared->milter;
	const struct milter_request req = {.cookie = conn, .msg = conn->spool_msg.msg};

	if (worker->milter_outstanding >= milter_client_capacity(mc) ||
	    milter_client_submit(mc, worker->id, &req) != PA_OK) {
		worker->counters.submit_retries++;
		return false;
	}
	worker->milter_outstanding++;
	worker->awaiting_store++;
	return true;
}

static void
hand_back(struct ingest_conn *conn)
{
	struct pa_worker *worker = conn->worker;

	if (conn->milter_result == NULL)
		return;
	milter_client_release(worker->shared->milter, worker->id, conn->milter_result);
	conn->milter_result = NULL;
	worker->milter_outstanding--;
}

void
ingest_milter_stored(struct ingest_conn *conn)
{
	hand_back(conn);
}

/* Not stored: the filter's reply (or ours), and the connection goes on. */
static void
refuse(struct ingest_conn *conn, enum smtp_refusal why, const char *reply)
{
	conn->storing = false;
	conn->spool_msg.msg = NULL;
	smtp_session_message_refused(conn->smtp, why, reply);
	hand_back(conn); /* after the reply: it may be the result's text */
	conn->worker->resume(conn);
}

static void
verdict(struct pa_worker *worker, const struct milter_verdict *v)
{
	struct ingest_conn *conn = v->cookie;
	const struct milter_result *r = v->result;

	worker->awaiting_store--;
	conn->filtering = false;
	conn->milter_result = v->result;
	if (v->result == NULL)
		worker->milter_outstanding--;
	if (conn->transport_gone) {
		/* The client is gone and never saw a 250: nothing to store. */
		refuse(conn, SMTP_REFUSAL_MILTER_TEMPFAIL, MILTER_REPLY_TEMPFAIL);
		return;
	}
	switch (v->action) {
	case MILTER_ACCEPT:
		if (r != NULL && r->data != NULL) {
			conn->filtered = *conn->spool_msg.msg;
			conn->filtered.data = r->data;
			conn->filtered.size = r->size;
			conn->spool_msg.msg = &conn->filtered;
		}
		ingest_store_filtered(conn);
		return;
	case MILTER_REJECT:
		refuse(conn, SMTP_REFUSAL_MILTER_REJECT,
		       r != NULL ? r->reply : MILTER_REPLY_REJECT);
		return;
	case MILTER_DISCARD:
		/* docs/milter.md: the filter took responsibility; the client is told 250
		 * (the milter thread logs it). */
		conn->storing = false;
		conn->spool_msg.msg = NULL;
		smtp_session_message_done(conn->smtp, PA_OK);
		hand_back(conn);
		worker->resume(conn);
		return;
	case MILTER_TEMPFAIL:
	default:
		refuse(conn, SMTP_REFUSAL_MILTER_TEMPFAIL,
		       r != NULL ? r->reply : MILTER_REPLY_TEMPFAIL);
		return;
	}
}

void
ingest_milter_poll(struct pa_worker *worker)
{
	struct milter_client *mc = worker->shared->milter;
	struct milter_verdict v[VERDICT_BURST];
	unsigned n;

	if (mc == NULL)
		return;
	do {
		n = milter_client_poll(mc, worker->id, v, VERDICT_BURST);
		for (unsigned i = 0; i < n; i++)
			verdict(worker, &v[i]);
	} while (n == VERDICT_BURST);
}
