/*
 * ingest_screen.h: connection screening against DNS lists, postscreen's
 * model (docs/security.md, "Screening").  Internal to dataplane/ingest*.c.
 *
 * At connect, once the client is admitted (ingest_limits.c), its address is
 * looked up in every list of screen.dnsbl_sites and screen.dnswl_sites at
 * once, through the resolver thread (dns/resolver.h), while the banner
 * delay and the pregreet test run; the banner waits for the answers at most
 * dns.timeout.  The weights of the lists that list the client add up; at or
 * over screen.threshold the client gets 550 5.7.1 naming the list of
 * highest weight (421 4.7.1 with screen.action=tempfail) in place of the
 * banner.  A list that fails or does not answer in time decides nothing:
 * screen.temporary_action says whether the client is then greeted or told
 * 421.  Verdicts are kept per address (IPv6 per /64) for the answers' TTL
 * (screen_cache.h).  Nothing here blocks or makes a system call.
 */
#ifndef PA_INGEST_SCREEN_H
#define PA_INGEST_SCREEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/ingest.h"

struct pa_config;
struct pa_shared;

enum screen_state {
	SCREEN_NONE,    /* not screened (not configured, allowed, trusted): greet */
	SCREEN_WAITING, /* lookups out, no verdict yet */
	SCREEN_PASS,    /* greet */
	SCREEN_LISTED,  /* refuse: screen.action */
	SCREEN_FAILED,  /* a list could not be asked: screen.temporary_action */
};

/*
 * Starts the resolver thread (pa_shared.resolver) when dns.servers is set;
 * PA_ERROR with err naming what failed.  Destroy after the workers stopped.
 */
int ingest_screen_create(struct pa_shared *shared, const struct pa_config *config, char *err,
                         size_t errlen);
void ingest_screen_destroy(struct pa_shared *shared);

/* Registers the worker with the resolver and makes its verdict cache; PA_OK without one. */
int ingest_screen_attach(struct pa_worker *worker, int notify_fd, bool may_syscall);
void ingest_screen_detach(struct pa_worker *worker);

/* The worker took a new runtime: verdicts made with the old lists are forgotten. */
void ingest_screen_reload(struct pa_worker *worker);

/* The client (family, addr: 4 or 16 octets) is admitted: starts its lookups, or decides now. */
void ingest_screen_start(struct ingest_conn *conn, int family, const uint8_t *addr);

/* Whether the banner still waits for the lists; *ms: how long at most. */
bool ingest_screen_waiting(const struct ingest_conn *conn, unsigned *ms);

/*
 * The banner is due: queues it, or the refusal the verdict calls for (a
 * verdict still missing is decided as the lists stand, the rest failed).
 */
void ingest_screen_greet(struct ingest_conn *conn);

/* Lookups are out for this connection: it is freed only once they are answered. */
static inline bool
ingest_screen_pending(const struct ingest_conn *conn)
{
	return conn->screen_pending > 0;
}

/* Takes the resolver's answers (once per worker loop). */
void ingest_screen_poll(struct pa_worker *worker);

#endif
