/*
 * ingest.h: one SMTP connection bound to the spool, whatever carries its bytes.
 *
 * Both backends (kernel sockets, the DPDK stack) embed a struct ingest_conn
 * in their connection and call ingest_input() with what they received; the
 * engine's replies are in smtp_session_output().  A finished message goes to
 * the spool; the worker's loop calls ingest_poll_spool(), which answers the
 * client only once the spool reports the message synced, and then calls the
 * backend's resume hook so the connection carries on.
 */
#ifndef PA_INGEST_H
#define PA_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "dataplane/conn_limits.h"
#include "spool/spool.h"
#include "smtp/smtp_session.h"

struct pa_worker;
struct pa_runtime;
struct tls_conn;
struct milter_result;

#define INGEST_CLIENT_MAX 64

enum ingest_status {
	INGEST_READY,   /* input consumed; wait for more */
	INGEST_STORING, /* a message is with the spool; read nothing until resume */
	INGEST_CLOSE,   /* flush the output and close */
};

struct ingest_conn {
	struct smtp_session *smtp;
	struct pa_worker *worker;
	struct pa_runtime *runtime; /* the settings this connection started with */
	struct spool_message spool_msg;
	bool storing;        /* between submit and completion */
	bool submit_pending; /* on the worker's submit backlog */
	bool transport_gone; /* the backend closed while storing: free on completion */
	uint64_t submit_tsc; /* when the spool took the message: commit latency */
	/* content filters (ingest_milter.c): the message is with them, not the spool yet */
	bool filtering;
	struct smtp_message filtered;        /* the message with the filters' edits */
	struct milter_result *milter_result; /* its memory, handed back once stored */
	/* STARTTLS (ingest_tls.c): the filter, once the engine said SMTP_STARTTLS */
	struct tls_conn *tls;
	size_t clear_out;  /* engine output still due in clear (the 220) before ciphertext */
	bool tls_closing;  /* handshake failed or timed out, or the TLS stream ended */
	bool tls_deferred; /* on the worker's tls_backlog (handshake budget spent) */
	TAILQ_ENTRY(ingest_conn) tls_link;
	TAILQ_ENTRY(ingest_conn) backlog_link;
	char client[INGEST_CLIENT_MAX];
	/* abuse limits and balancers (ingest_limits.c) */
	struct limits_hold hold; /* this connection's share of limits.* */
	uint8_t *proxy_buf;      /* the PROXY header so far, while one is due */
	uint16_t proxy_len;
	uint8_t phase;   /* enum ingest_phase */
	bool trusted;    /* the peer is in smtp.trusted_proxies */
	bool seen_input; /* the first input is behind us */
	bool dropped;    /* ends without a reply (a refused PROXY header) */
	/* connection screening (ingest_screen.c) */
	uint64_t screen_deadline_ms; /* the banner waits for the lists until then */
	uint32_t screen_ttl;         /* the shortest TTL of the answers so far */
	int16_t screen_dnsbl;        /* weights of the listing DNSBLs */
	int16_t screen_dnswl;        /* weights of the listing DNSWLs */
	uint8_t screen_pending;      /* lookups not answered yet: the conn stays until they are */
	uint8_t screen_state;        /* enum screen_state (ingest_screen.h) */
	uint8_t screen_site;         /* the listing DNSBL of highest weight; 0xff: none */
	bool screen_failed;          /* a lookup failed or timed out */
	uint8_t screen_family;       /* the address looked up, for the verdict cache */
	uint8_t screen_addr[16];
};

/*
 * Registers a worker with the store (pa_shared.store: the spool in pigeond)
 * before its loop starts; notify_fd and may_syscall as spool_attach_worker().
 */
int ingest_attach(struct pa_worker *worker, int notify_fd, bool may_syscall);

/* Sets the engine's host callbacks in a runtime's smtp_config before it is published. */
void ingest_bind_callbacks(struct smtp_config *smtp);

/*
 * Starts a session for a new connection and queues its banner (or a 421 when
 * the worker is stopping).  PA_ERROR when out of memory.
 */
int ingest_open(struct ingest_conn *conn, struct pa_worker *worker, const char *client);

/*
 * Feeds received bytes; *consumed tells how many were taken.  Once STARTTLS
 * ran they are ciphertext, taken into the TLS filter's bounded queue, and
 * the plaintext goes on to the engine: the backend never needs to know.
 */
enum ingest_status ingest_input(struct ingest_conn *conn, const uint8_t *in, size_t len,
                                size_t *consumed);

/*
 * The bytes to send, in order: the engine's replies, or after STARTTLS the
 * ciphertext (the 220 still goes in clear first).  They stay until
 * ingest_output_consumed(), so a TCP stack may keep them as its send buffer
 * and release them as they are acknowledged.  Use these, never
 * smtp_session_output(), so that TLS stays hidden.
 */
const uint8_t *ingest_output(struct ingest_conn *conn, size_t *len);
void ingest_output_consumed(struct ingest_conn *conn, size_t n);

/*
 * Input already taken that the engine has not processed (TLS records held
 * while a message was stored or output drained): call ingest_input() with
 * no new bytes to go on.
 */
bool ingest_input_pending(const struct ingest_conn *conn);

/* The session is ending: send ingest_output(), then close. */
bool ingest_closing(const struct ingest_conn *conn);

/*
 * Moves when the client achieved something (smtp_session_progress()).  A
 * backend restarts its timeout only when this or ingest_timeout_ms() changed:
 * never on bytes alone, so slowloris meets the timeout.
 */
uint32_t ingest_progress(const struct ingest_conn *conn);

/*
 * How long to wait for the client: the engine's timeout, tls.handshake_timeout,
 * or before the session the banner delay or the PROXY header's wait.
 */
unsigned ingest_timeout_ms(const struct ingest_conn *conn);
/* That wait expired: 421 from the engine, or the handshake is abandoned (counted). */
void ingest_timeout(struct ingest_conn *conn);

/*
 * The backend is done with the connection.  Returns true when the conn may be
 * freed now; false when a message is still with the spool, in which case the
 * completion frees it later through the resume hook (transport_gone set).
 */
bool ingest_close(struct ingest_conn *conn);

/* Final release of a connection that ingest_close() kept. */
void ingest_release(struct ingest_conn *conn);

/*
 * Takes spool completions, retries queued submits, refills the handshake
 * budget and runs the handshakes it deferred (then the resume hook sends
 * their output); called once on every loop iteration.
 */
void ingest_poll_spool(struct pa_worker *worker);

/*
 * The filters accepted the message (ingest_milter.c): it goes to the spool,
 * now or from the submit backlog.
 */
void ingest_store_filtered(struct ingest_conn *conn);

/* Asks the session to end (SIGTERM): 421 now, or after the pending 250. */
void ingest_shutdown(struct ingest_conn *conn);

#endif
