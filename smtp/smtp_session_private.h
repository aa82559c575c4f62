/*
 * smtp_session_private.h: what the files of the SMTP engine share (internal
 * to smtp/; the host sees only smtp_session.h).
 *
 * smtp_session.c  public API, input loop, command-line reader, DATA/BDAT input
 * smtp_command.c  the command table and the command handlers
 * smtp_txn.c      the mail transaction: envelope, body, Received: header
 * smtp_reply.c    the output buffer, replies, refusals and error accounting
 * smtp_address.c  MAIL/RCPT argument parsing
 * smtp_data.c     the DATA/BDAT content scanner
 */
#ifndef SMTP_SESSION_PRIVATE_H
#define SMTP_SESSION_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_session.h"

/*
 * Once the pending output reaches this, smtp_session_input() stops consuming
 * input before the next command line (RFC 2920 3.1 lets a server stop
 * reading): a client that pipelines without ever reading its replies cannot
 * make the session buffer more than this plus one reply.
 */
#define SMTP_OUTPUT_HIGH_WATER (64 * 1024)
/*
 * What the reply buffer may hold: input stops at the high water mark, so
 * only one input chunk's replies come on top of it; past this a session
 * can only close, as when memory runs out.
 */
#define SMTP_OUTPUT_MAX (64 * SMTP_OUTPUT_HIGH_WATER)

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. */
#define SMTP_REPLY_LINE_MAX 512

enum smtp_state {
	SMTP_STATE_CONNECTED, /* banner sent, no EHLO/HELO yet */
	SMTP_STATE_GREETED,   /* EHLO/HELO done, no transaction */
	SMTP_STATE_MAIL,      /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,      /* at least one recipient accepted */
	SMTP_STATE_DATA,      /* reading DATA content */
	SMTP_STATE_BDAT,      /* reading the octets of a BDAT chunk */
	SMTP_STATE_AWAITING_STORE,
	SMTP_STATE_CLOSING,
	SMTP_STATE_STARTTLS, /* 220 to STARTTLS sent: input is discarded until the handshake */
};

#define SMTP_STATE_BIT(state) (1u << (state))

/* A 421 held back until the message waiting for the store has its reply. */
enum smtp_pending_close {
	SMTP_PENDING_NONE,
	SMTP_PENDING_SHUTDOWN,
	SMTP_PENDING_TIMEOUT,
};

/* One mail transaction, from MAIL to its final reply; allocated at MAIL. */
struct smtp_txn {
	char queue_id[SMTP_QUEUE_ID_MAX];
	char *mail_from;
	char **rcpts;
	size_t nrcpt;
	size_t rcpt_cap;
	uint64_t declared_size; /* MAIL's SIZE= (RFC 1870), 0 when not given */
	struct smtp_body body;
	struct smtp_message msg;
	bool body_started;
	bool body_8bitmime;
	bool smtputf8;
	bool chunked;          /* BDAT was used: DATA is now out of sequence */
	bool failure_reported; /* a failed BDAT transaction's error was sent once */
};

/* Kept small: an idle session holds no line, output or transaction memory. */
struct smtp_session {
	const struct smtp_config *config;
	void *host;
	char *client_addr;
	char *helo;
	struct smtp_txn *txn;
	const char *tls_version; /* static strings from the TLS library; NULL: clear text */
	const char *tls_cipher;
	uint8_t *line;     /* a partial command line kept between two input calls */
	struct pa_buf out; /* replies; data[off] is the first the host has not sent */
	uint64_t bdat_size;
	uint64_t bdat_left;
	unsigned errors;
	uint16_t line_len;
	uint8_t state;         /* enum smtp_state */
	uint8_t pending_close; /* enum smtp_pending_close */
	bool esmtp;            /* EHLO rather than HELO */
	bool line_overflow;    /* discarding a command line over the limit */
	bool line_cr;          /* the last octet of the partial command line is a CR */
	bool bdat_last;
	bool bdat_discard;    /* the BDAT was refused: its octets are skipped */
	bool out_failed;      /* no memory for a reply: the session can only close */
	bool greeted;         /* the banner (or a refusal in its place) is queued */
	bool trusted;         /* peer in smtp.trusted_proxies: XCLIENT allowed (once) */
	uint16_t content_kib; /* content octets since progress last moved for content */
	uint32_t commands;    /* command lines received, for limits.commands */
	uint32_t progress;    /* smtp_session_progress() */
};

/* smtp_session.c */
void smtp_set_state(struct smtp_session *session, enum smtp_state state);
enum smtp_state smtp_idle_state(const struct smtp_session *session);
void smtp_close(struct smtp_session *session);
void smtp_bdat_chunk_end(struct smtp_session *session);
void smtp_message_ready(struct smtp_session *session);

/* smtp_command.c */
void smtp_command_line(struct smtp_session *session, char *line, size_t len);

/* smtp_txn.c */
struct smtp_txn *smtp_txn_new(struct smtp_session *session, const char *mail_from);
int smtp_txn_add_rcpt(struct smtp_txn *txn, const char *rcpt);
void smtp_txn_start_body(struct smtp_session *session, bool chunked);
void smtp_txn_end(struct smtp_session *session);
void smtp_txn_free(struct smtp_txn *txn);

/* smtp_reply.c */
void smtp_out_append(struct smtp_session *session, const char *p, size_t n);
/* The reply buffer, empty: it allocates with the first reply of a batch. */
void smtp_out_init(struct smtp_session *session);
size_t smtp_out_pending(const struct smtp_session *session);
void smtp_out_free(struct smtp_session *session);
/* One reply line (without CRLF) appended as it is: the replies of every message need no printf. */
void smtp_reply_line(struct smtp_session *session, const char *line, size_t n);
/* A constant reply: a string literal, so its length is known when compiling. */
#define SMTP_REPLY_LIT(session, lit) smtp_reply_line((session), "" lit "", sizeof(lit) - 1)
void smtp_reply(struct smtp_session *session, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_refusal(struct smtp_session *session, enum smtp_refusal why, const char *detail,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void smtp_body_failure_reply(struct smtp_session *session, bool first);

#endif
