/*
 * ingest_tls.h: what ingest.c and ingest_tls.c share (internal to ingest).
 */
#ifndef PA_INGEST_TLS_H
#define PA_INGEST_TLS_H

#include "dataplane/ingest.h"

/* ingest.c: what the engine's status means for the host (a message goes to the spool). */
enum ingest_status ingest_engine_status(struct ingest_conn *conn, enum smtp_input_status st);

/* ingest_tls.c */
enum ingest_status ingest_tls_start(struct ingest_conn *conn);
enum ingest_status ingest_tls_input(struct ingest_conn *conn, const uint8_t *in, size_t len,
                                    size_t *consumed);
void ingest_tls_poll(struct pa_worker *worker);
void ingest_tls_shutdown(struct ingest_conn *conn);
void ingest_tls_close(struct ingest_conn *conn);
void ingest_tls_free(struct ingest_conn *conn);
void ingest_tls_refresh(struct pa_worker *worker);

#endif
