/*
 * milter_client.h: the content filters of milter.servers, asked by one
 * plain thread (`milter`) for the workers (docs/milter.md).
 *
 * A worker puts a finished message (struct milter_request: the engine's
 * struct smtp_message, which it leaves untouched until the verdict) on its
 * request ring and later takes a struct milter_verdict from its verdict
 * ring: DPDK rings, single producer and single consumer, by value; no lock,
 * no allocation and no system call on a poll-mode worker.  A verdict that
 * changes the message carries a struct milter_result (the message with the
 * filters' header edits and new body, or the filter's reply text) which the
 * worker hands back with milter_client_release() once the spool is done
 * with it.
 *
 * The thread keeps up to `connections` connections per filter, each
 * carrying one message at a time (the protocol's rule), and runs every
 * connection's exchange as a state machine on one poll(2) loop: a slow
 * message holds its own connection and nothing else.  Filters are asked in
 * order; the first reject, tempfail or discard ends it.
 *
 * Promises: every request accepted is answered exactly once, within the
 * sum of the filters' timeouts (each for its connection, each reply, and
 * the wait for a free connection); a filter that cannot be reached, breaks
 * the protocol or times out gets its default_action for that message; a
 * reply text is 4xx/5xx printable lines (milter_codec.h).  Nothing is ever
 * accepted for storage that a filter rejected.
 */
#ifndef PA_MILTER_CLIENT_H
#define PA_MILTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/milter_site.h"

struct milter_client;
struct milter_filters;
struct smtp_message;

/* Our replies when the filter gave no text of its own. */
#define MILTER_REPLY_REJECT "550 5.7.1 Command rejected"
#define MILTER_REPLY_TEMPFAIL "451 4.7.1 Service unavailable - try again later"

enum milter_action {
	MILTER_ACCEPT,   /* store (result, when set, holds the edited message) */
	MILTER_REJECT,   /* result->reply, a 5xx */
	MILTER_TEMPFAIL, /* result->reply, a 4xx */
	MILTER_DISCARD,  /* 250, and nothing stored */
};

struct milter_request {
	void *cookie;
	const struct smtp_message *msg;
};

struct milter_result {
	uint8_t *data; /* the message to store instead (Received: first); NULL: unchanged */
	size_t size;
	char reply[1024 + 1]; /* REJECT, TEMPFAIL: the reply, CRLF between its lines */
};

struct milter_verdict {
	void *cookie;
	struct milter_result *result; /* NULL: nothing changed, nothing to release */
	uint32_t action;              /* enum milter_action */
};

struct milter_client_config {
	const struct milter_site *sites;
	unsigned nsites;
	/* macros j and {daemon_name}: rspamd's authserv-id in Authentication-Results */
	const char *hostname;
	unsigned nworkers;
	unsigned ring_size; /* messages in flight per worker; a power of two */
};

/* The thread's counters, read at any time (each word atomically). */
struct milter_client_stats {
	uint64_t messages;    /* taken from the workers */
	uint64_t accepted;    /* every filter accepted or continued */
	uint64_t rejected;    /* a filter rejected (5xx) */
	uint64_t tempfailed;  /* a filter answered 4xx, or a default_action tempfail */
	uint64_t discarded;   /* a filter discarded: 250, not stored */
	uint64_t quarantined; /* a filter asked for quarantine (stored, marked: docs/milter.md) */
	uint64_t edited;      /* stored with the filters' header edits or new body */
	uint64_t defaulted;   /* a filter's default_action applied (one per filter and message) */
	uint64_t connects;    /* connections opened */
	uint64_t connect_failures;
	uint64_t timeouts;        /* a filter did not answer in time */
	uint64_t protocol_errors; /* a filter sent what the protocol does not allow */
	uint64_t queue_waits;     /* a message waited for a free connection */
};

/* Starts the thread, with no filters too (nsites 0): a reload may bring some. */
int milter_client_start(struct milter_client **out, const struct milter_client_config *config,
                        char *err, size_t errlen);

/*
 * A reload, in two steps so that nothing changes unless every part of it
 * can: the filters made (no thread touched; freed if the reload is
 * refused), then handed to the thread, which asks them for every message it
 * takes from then on.  Messages already out finish with the filters they
 * began with; their connections close as they come free.  nsites 0: none.
 */
int milter_client_filters_new(struct milter_filters **out, const struct milter_site *sites,
                              unsigned nsites, const char *hostname, char *err, size_t errlen);
void milter_client_filters_free(struct milter_filters *f);
void milter_client_reconfigure(struct milter_client *c, struct milter_filters *f);

/* Worker side: whether a finished message goes to the filters (an atomic load). */
bool milter_client_active(const struct milter_client *c);

/* Stops the thread, after the workers: what is still out is dropped, nobody waits for it. */
void milter_client_stop(struct milter_client *c);

/* Before the worker's loop, as dns_resolver_attach(). */
int milter_client_attach(struct milter_client *c, unsigned worker, int notify_fd, bool may_syscall);

/*
 * How many requests a worker may have out at once, counting those whose
 * result it has not released yet: within that, submit and release never
 * find a ring full.
 */
unsigned milter_client_capacity(const struct milter_client *c);

/* Worker side.  PA_AGAIN when the ring is full. */
int milter_client_submit(struct milter_client *c, unsigned worker,
                         const struct milter_request *req);
unsigned milter_client_poll(struct milter_client *c, unsigned worker, struct milter_verdict *out,
                            unsigned max);
/* Worker side: the result of a verdict, no longer used. */
void milter_client_release(struct milter_client *c, unsigned worker, struct milter_result *res);

void milter_client_stats(const struct milter_client *c, struct milter_client_stats *out);

#endif
