/*
 * milter_internal.h: what the `milter` thread's two halves share: the
 * thread, its rings, the filters' connection pools and the messages' way
 * through them (filter/milter_client.c), and one connection's exchange with
 * its filter (filter/milter_conn.c).  For those two files only.
 */
#ifndef PA_MILTER_INTERNAL_H
#define PA_MILTER_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <rte_ring.h>

#include "core/buf.h"
#include "core/milter_site.h"
#include "core/svc_thread.h"
#include "filter/milter_client.h"
#include "filter/milter_codec.h"

#define TAKE_BURST 32
#define SLEEP_MS 1000
#define OUT_LOW_WATER (4 * MILTER_CHUNK_MAX) /* body chunks queued ahead of the socket */
#define OUT_MAX (64u << 20)                  /* the rest is headers and envelope */
#define IN_MAX (MILTER_REPLY_MAX + 5)
#define EDITS_MAX (1u << 20) /* header edits one message may collect */

/* What we allow a filter (SMFIF_*): header and body edits and quarantine, never the envelope. */
#define OFFERED_ACTIONS                                                                            \
	(MILTER_ACT_ADDHDRS | MILTER_ACT_CHGHDRS | MILTER_ACT_CHGBODY | MILTER_ACT_QUARANTINE)
#define BODY_MAX OUT_MAX /* a filter's new body */
/* Every step a filter may ask us to skip or leave unanswered (SMFIP_*). */
#define OFFERED_PROTOCOL                                                                           \
	(MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL | MILTER_P_NORCPT |                \
	 MILTER_P_NOBODY | MILTER_P_NOHDRS | MILTER_P_NOEOH | MILTER_P_NR_HDR |                    \
	 MILTER_P_NOUNKNOWN | MILTER_P_NODATA | MILTER_P_SKIP | MILTER_P_NR_CONN |                 \
	 MILTER_P_NR_HELO | MILTER_P_NR_MAIL | MILTER_P_NR_RCPT | MILTER_P_NR_DATA |               \
	 MILTER_P_NR_UNKN | MILTER_P_NR_EOH | MILTER_P_NR_BODY | MILTER_P_HDR_LEADSPC)

enum conn_state {
	MC_CONNECTING,
	MC_NEGOTIATING,
	MC_IDLE,
	MC_BUSY,
};

/* A message's steps on one connection. */
enum step {
	ST_CONNECT,
	ST_HELO,
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_HEADERS,
	ST_EOH,
	ST_BODY,
	ST_EOB,
	ST_WAIT_EOB, /* SMFIC_BODYEOB sent: edits, then the final word */
};

struct held {
	struct milter_result r;
	LIST_ENTRY(held) link;
};

struct job {
	TAILQ_ENTRY(job) link; /* a filter's wait queue, or the undelivered verdicts */
	void *cookie;
	unsigned worker;
	const struct smtp_message *msg;
	struct milter_filters *filters; /* those current when it came: a reload does not move it */
	unsigned site;
	uint64_t wait_deadline;
	struct pa_buf edits;
	size_t edits_at_site;    /* edits.len when the current filter began: dropped if it fails */
	struct pa_buf body;      /* the new body of the last filter that replaced it (body_set) */
	struct pa_buf body_next; /* the current filter's SMFIR_REPLBODY chunks, until it accepts */
	bool body_set, body_next_set;
	struct milter_verdict verdict;
};

struct msite;

struct mconn {
	LIST_ENTRY(mconn) link;
	struct msite *site;
	int fd;
	uint8_t state;     /* enum conn_state */
	uint8_t step;      /* enum step */
	char awaiting;     /* the command whose reply is due; 0: none */
	bool body_skipped; /* SMFIR_SKIP */
	bool dead;         /* closed: on the dead list until the iteration ends */
	uint32_t actions;  /* negotiated, within OFFERED_ACTIONS */
	uint32_t protocol; /* negotiated, within OFFERED_PROTOCOL */
	uint64_t deadline; /* connect, reply or write progress; 0: none */
	struct pa_buf out, in;
	struct job *job;
	size_t rcpt, pos; /* the next recipient; the next header field, then body octet */
};

struct msite {
	struct milter_site cfg;
	struct milter_filters *filters;
	LIST_HEAD(, mconn) conns;
	unsigned nopen;
	TAILQ_HEAD(, job) waiting;
};

/*
 * One generation of milter.servers (milter_client_filters_new()): the
 * filters with their pools.  The thread asks the newest for the messages it
 * takes; an older one stays until the messages that began with it are done
 * and its connections are closed.
 */
struct milter_filters {
	TAILQ_ENTRY(milter_filters) link;
	unsigned nsites;
	unsigned nconns; /* the filters' connections summed: their share of the poll set */
	char hostname[256];
	struct msite sites[MILTER_SITES_MAX];
};
TAILQ_HEAD(milter_filters_list, milter_filters);

struct cworker {
	struct rte_ring *req, *ans, *rel;
};

struct milter_client {
	struct pa_svc svc; /* the thread, its wake-ups and the workers' (core/svc_thread.h) */
	struct milter_filters_list sets;     /* the current one last */
	struct milter_filters *_Atomic next; /* published by milter_client_reconfigure() */
	atomic_bool active;                  /* the newest filters are not none: workers submit */
	unsigned nworkers, ring_size;
	struct cworker *w;
	TAILQ_HEAD(, job) undelivered;
	LIST_HEAD(, held) held;
	LIST_HEAD(, mconn) dead; /* closed, freed at the end of the loop iteration */
	struct pollfd *pfd;
	struct mconn **pconn;
	unsigned npfd_max;
	uint64_t now;
	struct milter_client_stats stats;
};

static inline void
count(uint64_t *counter)
{
	pa_svc_count(counter, 1);
}

/* milter_client.c */
/* The message asks its next filter, or is done. */
void milter_dispatch(struct milter_client *c, struct job *job);
/* The end of a message's filtering: its verdict, built and delivered. */
void milter_finish(struct milter_client *c, struct job *job, enum milter_action action,
                   const char *reply, size_t reply_len);
/*
 * Closes a connection; its message gets the filter's default_action, and
 * so do the messages waiting for one when it was the filter's last.
 */
void milter_conn_fail(struct milter_client *c, struct mconn *mc, const char *why);
/* Closes a connection the filter ended early, without blaming the filter. */
void milter_conn_retire(struct milter_client *c, struct mconn *mc);
/* The connection is free: it takes the first message waiting for its filter. */
void milter_conn_idle(struct milter_client *c, struct mconn *mc);

/* milter_conn.c */
/* Sends the message's steps up to the next one the filter answers. */
void milter_conn_advance(struct milter_client *c, struct mconn *mc);
/* poll(2) found input (or an error) on the socket. */
void milter_conn_readable(struct milter_client *c, struct mconn *mc);
/* poll(2) found room on the socket, or the connect finished. */
void milter_conn_writable(struct milter_client *c, struct mconn *mc);

#endif
