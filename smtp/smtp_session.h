/*
 * smtp_session.h: the sans-I/O SMTP server engine.
 *
 * One struct smtp_session per client connection.  The host (the kernel-socket
 * backend, the DPDK stack, later the TLS filter) feeds it the bytes it
 * received and sends the reply bytes it produces; the engine never touches a
 * socket, a thread, a clock of its own or the spool.  What it promises:
 *
 *  - RFC 5321 server behaviour with PIPELINING, SIZE, 8BITMIME,
 *    ENHANCEDSTATUSCODES, SMTPUTF8 and CHUNKING;
 *  - end of data is CRLF "." CRLF on the raw byte stream and nothing else, so
 *    no bare-LF/CR variant can split one message into two; likewise only CR
 *    LF ends a command line, so a bare LF or CR never starts a command that
 *    a CRLF-strict proxy in front of us would see as part of another line;
 *  - feeding a session byte by byte or in one pipelined chunk gives the same
 *    replies, byte for byte;
 *  - memory per session is bounded by the configured limits.
 *
 * Flow: smtp_session_new(), smtp_session_greet(), then for every batch of
 * received bytes call smtp_session_input() until it has consumed them all or
 * returns something other than SMTP_NEED_MORE; after each call send
 * smtp_session_output() and mark it consumed.  SMTP_MESSAGE_READY means a
 * complete message waits in smtp_session_message(): store it, then call
 * smtp_session_message_done() with the result; the engine consumes no input
 * until then.  SMTP_CLOSE means: send the pending output, then close.
 *
 * STARTTLS (RFC 3207), when config->tls_available: the engine answers 220 and
 * returns SMTP_STARTTLS, reporting all of the given input as consumed.  The
 * host must throw away what it has not fed yet (bytes a client pipelined
 * after STARTTLS are the CVE-2011-0411 command injection), send the pending
 * output in clear, run the TLS handshake, then call smtp_session_tls_started()
 * and feed the decrypted stream.  Until then every input is discarded.
 */
#ifndef SMTP_SESSION_H
#define SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SMTP_QUEUE_ID_MAX 32	 /* including the NUL */
#define SMTP_PATH_MAX 256	 /* RFC 5321 4.5.3.1.3, without the angle brackets */
#define SMTP_COMMAND_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, including CRLF */
#define SMTP_TEXT_LINE_MAX 1000	 /* RFC 5321 4.5.3.1.6, including CRLF */

enum smtp_bare_lf_policy {
	SMTP_BARE_LF_REJECT,    /* a bare LF or CR refuses the command line or message */
	SMTP_BARE_LF_NORMALIZE, /* in message data, a bare LF or CR becomes CRLF; a
	                           command line holding one is refused all the same */
};

/* The host's verdict on one recipient, given at RCPT time. */
enum smtp_rcpt_verdict {
	SMTP_RCPT_ACCEPT,	 /* 250 2.1.5 */
	SMTP_RCPT_RELAY_DENIED,	 /* 550 5.7.1: domain not served, never an open relay */
	SMTP_RCPT_UNKNOWN_USER,	 /* 550 5.1.1 */
	SMTP_RCPT_TEMPFAIL,	 /* 451 4.3.0: directory not available */
	SMTP_RCPT_SPOOL_FULL,	 /* 452 4.3.1: backpressure */
	SMTP_RCPT_BAD_DOMAIN,   /* 553 5.1.3: a U-label domain IDNA2008 refuses */
};

/* The host's verdict on a new transaction, given at MAIL time. */
enum smtp_mail_verdict {
	SMTP_MAIL_ACCEPT,   /* 250 2.1.0 */
	SMTP_MAIL_TEMPFAIL, /* 451 4.3.2: not taking mail right now */
};

struct smtp_config {
	const char *hostname;	 /* used in the banner, EHLO and Received: */
	size_t max_message_size; /* octets of message content; advertised in SIZE */
	unsigned max_recipients; /* per transaction; the next RCPT gets 452 4.5.3 */
	unsigned max_errors;	 /* errors per session before 421 and close */
	enum smtp_bare_lf_policy bare_lf;
	unsigned command_timeout_ms; /* RFC 5321 4.5.3.2.7: waiting for a command */
	unsigned data_timeout_ms;    /* RFC 5321 4.5.3.2.6: waiting for a data block */

	/*
	 * Host callbacks.  They are called synchronously from inside
	 * smtp_session_input() and must not block.  `host` is the pointer given
	 * to smtp_session_new().
	 */
	/*
	 * The verdict on one recipient and, with it, what it is stored and
	 * sharded under: one answer, so that the host's checks (backpressure on
	 * the recipient's shard) apply to the address that is stored.  addr is
	 * the recipient without angle brackets, NUL-terminated.  canonical comes
	 * in as "": on SMTP_RCPT_ACCEPT the host may write there
	 * (NUL-terminated) the canonical mailbox of an alias; left "", the
	 * recipient is kept as the client wrote it.
	 */
	enum smtp_rcpt_verdict (*rcpt_check)(void *host, const char *addr,
					     char canonical[SMTP_PATH_MAX + 1]);
	/* writes a NUL-terminated queue id, unique across restarts and nodes */
	void (*new_queue_id)(void *host, char out[SMTP_QUEUE_ID_MAX]);
	/* wall-clock time for the Received: header; NULL means time(NULL) */
	time_t (*now)(void *host);
	/*
	 * Called once for every refusal the engine sends (optional), for the
	 * host's log line and counters; detail is the offending argument
	 * (recipient, sender) or NULL.
	 */
	void (*refused)(void *host, int refusal, const char *detail);
	/* RFC 3207: the host can run TLS (a certificate is configured): offer STARTTLS. */
	bool tls_available;
	/* MAIL before STARTTLS gets 530 5.7.0 (only meaningful with tls_available). */
	bool tls_required;

	/*
	 * Optional (NULL: every syntactically valid MAIL is accepted).  The
	 * host's verdict on a new transaction, after the engine's own checks:
	 * SMTP_MAIL_TEMPFAIL answers 451 4.3.2 (the server is paused).
	 */
	enum smtp_mail_verdict (*mail_check)(void *host, const char *from);

	/* Commands per session (limits.commands); the next gets 421 4.7.0 and closes.  0: none. */
	unsigned max_commands;
	/*
	 * Optional.  XCLIENT from a trusted peer named another client address
	 * (addr, canonical text; port 0 when not given): the host moves its
	 * per-address accounting there and returns SMTP_REFUSAL_NONE, or the
	 * limit that refuses the new address, for which the engine answers
	 * 421 4.7.0 and closes.
	 */
	int (*client_changed)(void *host, const char *addr, unsigned port);
};

/* A complete message, valid from SMTP_MESSAGE_READY until smtp_session_message_done(). */
struct smtp_message {
	const char *queue_id;
	const char *mail_from;	  /* without angle brackets; "" for the null sender */
	const char *const *rcpts; /* without angle brackets, as the client wrote them */
	size_t nrcpt;
	const uint8_t *data; /* the Received: header, then the content, CRLF line ends */
	size_t size;
	const char *helo;	 /* the EHLO/HELO argument */
	const char *client_addr; /* as given to smtp_session_new() */
	bool body_8bitmime;	 /* MAIL BODY=8BITMIME */
	bool smtputf8;		 /* MAIL SMTPUTF8 */
	bool chunked;		 /* received with BDAT rather than DATA */
};

enum smtp_input_status {
	SMTP_NEED_MORE,	    /* all given input consumed; wait for more */
	SMTP_MESSAGE_READY, /* a message waits; input stopped at *consumed */
	SMTP_CLOSE,	    /* flush the output, then close the connection */
	SMTP_STARTTLS,	    /* flush the output (the 220), discard the rest, start TLS */
};

/* Why a session was refused or ended, for the host's log line and counters. */
enum smtp_refusal {
	SMTP_REFUSAL_NONE,
	SMTP_REFUSAL_RELAY_DENIED,
	SMTP_REFUSAL_UNKNOWN_USER,
	SMTP_REFUSAL_TOO_MANY_RCPTS,
	SMTP_REFUSAL_SIZE,
	SMTP_REFUSAL_BARE_LF,
	SMTP_REFUSAL_LINE_TOO_LONG,
	SMTP_REFUSAL_SYNTAX,
	SMTP_REFUSAL_SEQUENCE,
	SMTP_REFUSAL_UNKNOWN_COMMAND,
	SMTP_REFUSAL_TOO_MANY_ERRORS,
	SMTP_REFUSAL_TIMEOUT,
	SMTP_REFUSAL_TEMPFAIL,
	SMTP_REFUSAL_STORE_FAILED,
	SMTP_REFUSAL_TOO_MANY_COMMANDS, /* limits.commands */
	SMTP_REFUSAL_EARLY_TALKER,      /* input before the banner (smtp.banner_delay) */
	SMTP_REFUSAL_HTTP,              /* an HTTP request on the SMTP port */
	SMTP_REFUSAL_XCLIENT_DENIED,    /* XCLIENT from a peer not in smtp.trusted_proxies */
	SMTP_REFUSAL_CONN_TOTAL,        /* host: limits.conn_total */
	SMTP_REFUSAL_CONN_PER_IP,       /* host: limits.conn_per_ip */
	SMTP_REFUSAL_CONN_RATE,         /* host: limits.conn_rate_per_ip */
	SMTP_REFUSAL_PROXY,             /* host: a PROXY header untrusted, malformed or late */
	SMTP_REFUSAL_DNSBL,             /* host: screen.threshold reached (DNS lists) */
	SMTP_REFUSAL_SCREEN_TEMPFAIL, /* host: a list could not be asked, screen.temporary_action */
	SMTP_REFUSAL_MILTER_REJECT,   /* host: a content filter rejected the message (5xx) */
	SMTP_REFUSAL_MILTER_TEMPFAIL, /* host: a filter said 4xx, or failed with default tempfail */
	SMTP_REFUSAL_COUNT
};

struct smtp_session;

/* client_addr is copied; returns NULL when out of memory. */
struct smtp_session *smtp_session_new(const struct smtp_config *config, void *host,
				      const char *client_addr);
void smtp_session_free(struct smtp_session *session);

/*
 * Queues the 220 banner.  Input that arrives before it (the host may delay
 * the banner: smtp.banner_delay) is an early talker, a spambot that does not
 * wait for the server: 554 and close.
 */
void smtp_session_greet(struct smtp_session *session);

/*
 * Queues `reply` (a full reply line without CRLF, e.g. "421 4.3.2 ... ") as the
 * banner and makes the next smtp_session_input() return SMTP_CLOSE: used when
 * the host refuses a connection (pausing, limits).
 */
void smtp_session_refuse(struct smtp_session *session, const char *reply);

/*
 * Backpressure: once 64 KiB of replies are pending (a client pipelining
 * without reading), it stops before the next command line and returns
 * SMTP_NEED_MORE with *consumed < len; call it again with the rest after
 * sending output.
 */
enum smtp_input_status smtp_session_input(struct smtp_session *session, const uint8_t *in,
					  size_t len, size_t *consumed);

const struct smtp_message *smtp_session_message(const struct smtp_session *session);

/*
 * Instead of smtp_session_message_done(): the message was not stored and
 * the host answers end of data with its own reply (a content filter's):
 * one or more lines "NNN text" (RFC 5321 4.2), CRLF between them, 4xx or
 * 5xx, which the host has checked.  Counted and logged as `why`.
 */
void smtp_session_message_refused(struct smtp_session *s, enum smtp_refusal why, const char *reply);
/* status is PA_OK when the message is synced to disk: 250; anything else: 451 4.3.0. */
void smtp_session_message_done(struct smtp_session *session, int status);

/* Pending reply bytes.  Each call to smtp_session_input() appends, never reorders. */
const uint8_t *smtp_session_output(const struct smtp_session *session, size_t *len);
void smtp_session_output_consumed(struct smtp_session *session, size_t n);

/* How long the host may wait for input in the current state before smtp_session_timeout(). */
unsigned smtp_session_timeout_ms(const struct smtp_session *session);

/* Queues 421 4.4.2 (timeout); the session is then closing. */
void smtp_session_timeout(struct smtp_session *session);

/*
 * The server is stopping: queues 421 4.3.2 unless a message is waiting for
 * smtp_session_message_done(), in which case the 421 follows its reply.
 */
void smtp_session_shutdown(struct smtp_session *session);

bool smtp_session_closing(const struct smtp_session *session);
bool smtp_session_awaiting_store(const struct smtp_session *session);

/*
 * The TLS handshake after STARTTLS completed: the session starts afresh
 * (RFC 3207 4.2: no banner, EHLO/HELO required again, STARTTLS no longer
 * offered) and the Received: header names the protocol as ESMTPS with
 * version and cipher.  Both strings must outlive the session (OpenSSL's
 * SSL_get_version() and SSL_CIPHER_get_name() return static strings).
 */
void smtp_session_tls_started(struct smtp_session *session, const char *version,
                              const char *cipher);

/* Whether the session runs inside TLS (after smtp_session_tls_started()). */
bool smtp_session_tls_active(const struct smtp_session *session);

/*
 * The peer is one of smtp.trusted_proxies: XCLIENT (Postfix's extension:
 * ADDR, PORT, HELO, PROTO) is offered in EHLO and allowed, once.  Others get
 * 550 5.7.0 for it.  Call before smtp_session_greet().
 */
void smtp_session_set_trusted(struct smtp_session *session, bool trusted);

/*
 * The client is really at addr (a trusted PROXY header said so): logged and
 * written in Received: from now on.  Copied; PA_ERROR when out of memory.
 */
int smtp_session_set_client(struct smtp_session *session, const char *addr);

/*
 * A counter that moves when the client achieves something: a reply was
 * produced (a whole command line arrived, a message was stored), or another
 * KiB of message content came in.  A host restarts its command or data
 * timeout only when this moved, never on mere bytes, so a client that
 * trickles one octet a second (slowloris) is cut off at the timeout.
 */
uint32_t smtp_session_progress(const struct smtp_session *session);

/* A short stable name ("relay_denied", "bare_lf", ...) for logs and counters. */
const char *smtp_refusal_name(enum smtp_refusal refusal);

#endif
