/*
 * ingest_milter.h: end of data through the content filters of
 * milter.servers before the spool (docs/milter.md).  Internal to
 * dataplane/ingest*.c.
 *
 * A finished message goes to the `milter` thread (filter/milter_client.h)
 * through the worker's ring, with the same deferral as a spool submit: the
 * engine reads nothing and the client hears nothing until the verdict.
 * Accept: the message (with the filters' header edits after Received:) goes
 * to the spool, and its 250 still comes only from the spool's completion.
 * Reject: the filter's 5xx (or 550 5.7.1); tempfail: its 4xx (or 451
 * 4.7.1); discard: 250 and nothing stored (counted).  A rejected or
 * discarded message is never stored.  Nothing here blocks or makes a
 * system call on a poll-mode worker.
 */
#ifndef PA_INGEST_MILTER_H
#define PA_INGEST_MILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "dataplane/ingest.h"

struct pa_config;
struct pa_shared;

/* Starts the thread (pa_shared.milter) when milter.servers is set.  Stop after the workers. */
int ingest_milter_create(struct pa_shared *shared, const struct pa_config *config, char *err,
                         size_t errlen);
void ingest_milter_destroy(struct pa_shared *shared);

int ingest_milter_attach(struct pa_worker *worker, int notify_fd, bool may_syscall);

/* Hands the message to the filters; false when a ring is full (retry next loop). */
bool ingest_milter_submit(struct ingest_conn *conn);

/* Takes the verdicts (once per worker loop). */
void ingest_milter_poll(struct pa_worker *worker);

/* The spool is done with the message: its edited copy, if any, goes back. */
void ingest_milter_stored(struct ingest_conn *conn);

#endif
