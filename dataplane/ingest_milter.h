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

struct milter_filters;
struct pa_config;
struct pa_shared;

/*
 * Starts the thread (pa_shared.milter), with milter.servers empty too: a
 * reload may bring filters.  Stop after the workers.
 */
int ingest_milter_create(struct pa_shared *shared, const struct pa_config *config, char *err,
                         size_t errlen);
void ingest_milter_destroy(struct pa_shared *shared);

/*
 * A reload (filter/milter_client.h): the new configuration's filters, made
 * while the reload may still be refused (milter_client_filters_free()
 * then), and published once it is not.
 */
int ingest_milter_prepare(const struct pa_config *config, struct milter_filters **out, char *err,
                          size_t errlen);
void ingest_milter_publish(struct pa_shared *shared, struct milter_filters *filters);

/* Whether this message goes to the filters first (milter.servers is not empty). */
bool ingest_milter_wanted(const struct pa_worker *worker);

int ingest_milter_attach(struct pa_worker *worker, int notify_fd, bool may_syscall);

/* Hands the message to the filters; false when a ring is full (retry next loop). */
bool ingest_milter_submit(struct ingest_conn *conn);

/* Takes the verdicts (once per worker loop). */
void ingest_milter_poll(struct pa_worker *worker);

/* The spool is done with the message: its edited copy, if any, goes back. */
void ingest_milter_stored(struct ingest_conn *conn);

#endif
