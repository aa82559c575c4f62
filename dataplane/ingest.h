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

#include "spool/spool.h"
#include "smtp/smtp_session.h"

struct pa_worker;
struct pa_runtime;

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
	TAILQ_ENTRY(ingest_conn) backlog_link;
	char client[INGEST_CLIENT_MAX];
};

/* Sets the engine's host callbacks in a runtime's smtp_config before it is published. */
void ingest_bind_callbacks(struct smtp_config *smtp);

/*
 * Starts a session for a new connection and queues its banner (or a 421 when
 * the worker is stopping).  PA_ERROR when out of memory.
 */
int ingest_open(struct ingest_conn *conn, struct pa_worker *worker, const char *client);

/* Feeds received bytes; *consumed tells how many the engine took. */
enum ingest_status ingest_input(struct ingest_conn *conn, const uint8_t *in, size_t len,
                                size_t *consumed);

/*
 * The backend is done with the connection.  Returns true when the conn may be
 * freed now; false when a message is still with the spool, in which case the
 * completion frees it later through the resume hook (transport_gone set).
 */
bool ingest_close(struct ingest_conn *conn);

/* Final release of a connection that ingest_close() kept. */
void ingest_release(struct ingest_conn *conn);

/* Takes spool completions and retries queued submits; called on every loop. */
void ingest_poll_spool(struct pa_worker *worker);

/* Asks the session to end (SIGTERM): 421 now, or after the pending 250. */
void ingest_shutdown(struct ingest_conn *conn);

#endif
