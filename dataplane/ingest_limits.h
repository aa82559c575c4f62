/*
 * ingest_limits.h: what ingest does before and around the SMTP session for
 * the abuse limits and the load balancers (docs/security.md): connection
 * limits at connect, the PROXY header of a trusted balancer, the banner
 * delay, the per-address accounting that follows XCLIENT.  Internal to
 * dataplane/ingest*.c; backends see only ingest.h.
 */
#ifndef PA_INGEST_LIMITS_H
#define PA_INGEST_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/ingest.h"

/* Where a connection is before its SMTP session proper. */
enum ingest_phase {
	INGEST_PHASE_SESSION, /* the engine has it (banner sent, or a refusal queued) */
	INGEST_PHASE_PROXY,   /* a trusted balancer's PROXY header is due first */
	INGEST_PHASE_BANNER,  /* smtp.banner_delay: the banner waits, input is an early talker */
	INGEST_PHASE_SCREEN,  /* the banner waits for the DNS lists (ingest_screen.h), as long */
};

/*
 * In ingest_open(), in place of the banner: admission (limits.conn_total,
 * then per address unless exempt or trusted), then the PROXY header wait,
 * the banner delay or the banner itself.
 */
void ingest_limits_open(struct ingest_conn *conn);

/*
 * Before the engine sees input: takes a PROXY header when one is due, drops
 * a connection whose first octets are a header nobody asked for.  Returns
 * true when it handled the input (*consumed and *status set).
 */
bool ingest_limits_input(struct ingest_conn *conn, const uint8_t *in, size_t len, size_t *consumed,
                         enum ingest_status *status);

/* While a phase before the session runs: its wait in *ms; false in the session. */
bool ingest_limits_timeout_ms(const struct ingest_conn *conn, unsigned *ms);

/* That wait expired: the banner goes out, or a missing header drops the connection. */
bool ingest_limits_timeout(struct ingest_conn *conn);

/* The connection is freed: it lets go of its share of every limit. */
void ingest_limits_close(struct ingest_conn *conn);

/* Once per worker loop. */
void ingest_limits_tick(struct pa_worker *worker);

/* A refusal at connect, counted and logged like the engine's (ingest.c's host_refused). */
void ingest_limits_count_refusal(struct ingest_conn *conn, int why, const char *detail);

/* The engine's client_changed callback (XCLIENT ADDR=). */
int ingest_limits_client_changed(void *host, const char *addr, unsigned port);

#endif
