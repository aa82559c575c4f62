/*
 * lg_session.h: pigeon-loadgen's sans-I/O SMTP client session.
 *
 * One struct lg_session per connection.  It never touches a socket, a clock
 * or a thread: the transport (lg_kernel.c on kernel sockets, lg_dpdk.c on
 * PigeonAir's user-space TCP stack) moves bytes and passes the time in, so
 * both transports drive exactly the same SMTP dialogue and count exactly the
 * same things.  STARTTLS is inside the session too (OpenSSL over memory
 * BIOs): a transport only ever sees wire bytes, encrypted or not, and gets
 * TLS for free.
 *
 * The dialogue: greeting; EHLO; STARTTLS and EHLO again when this session
 * wants TLS; then transactions until the message source runs dry, the
 * per-connection limit is reached or lg_session_quit() is called; then QUIT.
 * With PIPELINING offered and enabled, MAIL, every RCPT and DATA leave in one
 * group (RFC 2920: DATA is the last command of a group) and their replies are
 * matched in order; otherwise each command waits for its reply.  The message
 * is dot-stuffed on the fly and ends with CRLF.CRLF (a CRLF is added first
 * when the message does not end with one).  A transaction that fails (MAIL,
 * every RCPT or DATA refused) is reset with RSET before the next one.
 * Every reply is checked: multi-line replies ("250-...") are joined, a reply
 * whose code is not the one the stage expects counts by its class (4xx, 5xx)
 * and never as a success; a 421 anywhere ends the session.
 *
 * Using it, in a transport (pseudo code):
 *
 *	s = lg_session_new(&workload, lg_stats_event, stats, now);  // connect() started
 *	... connect completes:   lg_session_connected(s, now);
 *	... bytes arrive:        lg_session_input(s, buf, n, now);
 *	... peer sent FIN:       lg_session_eof(s, now);
 *	... socket error:        lg_session_abort(s, LG_ERR_RESET, now);
 *	... every loop / timer:  lg_session_tick(s, now);   // reply timeouts
 *	... open loop tokens:    lg_session_kick(s, now);   // retry a source that said WAIT
 *	... can send:            n = lg_session_output(s, &p);
 *	                         sent = send(p, n);
 *	                         lg_session_consume(s, sent, now);
 *	... when lg_session_closed(s): close the socket, lg_session_free(s).
 *
 * Every call that can change state may emit events (struct lg_event) through
 * the callback given at creation, synchronously, before it returns.  Exactly
 * one LG_EV_CLOSED is emitted per session, and it is the last event.  The
 * callback must not call back into the same session (it may record stats).
 *
 * Output is produced lazily and bounded (LG_OUT_HIGH bytes): a 100 KiB
 * message is not copied whole, it is stuffed into the output buffer as the
 * transport drains it.  Call lg_session_output() again after every consume
 * and after every input: it may have more.
 */
#ifndef LG_SESSION_H
#define LG_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* The output buffer is refilled up to this many bytes of pending output. */
#define LG_OUT_HIGH (64u * 1024u)
/* A reply line longer than this is a protocol error (RFC 5321 allows 512). */
#define LG_LINE_MAX 4096u

/* One message to send, as the message source hands it to the session. */
struct lg_message {
	const char *mail_from;    /* the reverse path without <>; "" for the null sender */
	const char *const *rcpts; /* nrcpt forward paths, without <> */
	unsigned nrcpt;           /* at least 1 */
	const uint8_t *data;      /* header, blank line, body; CRLF lines, NOT dot-stuffed */
	size_t size;
	/* Everything above must stay valid until this message's LG_EV_MSG_DONE or
	 * LG_EV_MSG_FAILED (lg_source.c hands out pointers into immutable pools). */
};

/* What a message source answers when the session is ready for a transaction. */
enum lg_next {
	LG_NEXT_MSG,  /* *msg is filled in: send it now */
	LG_NEXT_WAIT, /* none just now (open loop, no token yet): ask again at lg_session_kick() */
	LG_NEXT_DONE, /* none ever again: the session sends QUIT */
};

typedef enum lg_next (*lg_source_fn)(void *arg, struct lg_message *msg, uint64_t now_us);

/* What one session does.  Copied by lg_session_new(); the pointers must outlive it. */
struct lg_workload {
	const char *helo;    /* the EHLO argument */
	lg_source_fn source; /* asked for each message; never called in idle mode */
	void *source_arg;
	unsigned msgs_per_conn;    /* QUIT after this many transactions; 0: no limit */
	bool pipelining;           /* pipeline MAIL/RCPT/DATA when the server offers PIPELINING */
	bool starttls;             /* STARTTLS before the first transaction */
	SSL_CTX *tls_ctx;          /* a client context; required when starttls */
	bool idle;                 /* after EHLO (and TLS), hold the connection, send nothing */
	uint64_t reply_timeout_us; /* lg_session_tick() aborts a wait this long; 0: never */
};

/* Why a session ended.  LG_ERR_NONE: QUIT was sent and answered (or the peer closed after it). */
enum lg_err {
	LG_ERR_NONE,
	LG_ERR_REFUSED,  /* connect: ECONNREFUSED (or RST to the SYN) */
	LG_ERR_CONNECT,  /* connect: any other failure (no route, no source port, ...) */
	LG_ERR_TIMEOUT,  /* connect or a reply took longer than allowed */
	LG_ERR_RESET,    /* the connection was reset or closed by the peer mid-dialogue */
	LG_ERR_PROTOCOL, /* an unparsable reply, a reply nobody asked for, a too long line */
	LG_ERR_TLS,      /* STARTTLS not offered or refused, or the handshake/record layer failed */
	LG_ERR_REJECTED, /* a negative greeting/EHLO reply, or a 421: the server sent us away */
	LG_ERR_COUNT,
};

/* The command a reply answers. */
enum lg_stage {
	LG_STAGE_GREETING,
	LG_STAGE_EHLO,
	LG_STAGE_STARTTLS,
	LG_STAGE_MAIL,
	LG_STAGE_RCPT,
	LG_STAGE_DATA, /* the 354 */
	LG_STAGE_EOD,  /* the reply to CRLF.CRLF: the one that says whether the message is taken */
	LG_STAGE_RSET,
	LG_STAGE_QUIT,
	LG_STAGE_NONE, /* an event not tied to a reply */
	LG_STAGE_COUNT,
};

enum lg_event_type {
	LG_EV_CONNECTED,  /* latency_us: lg_session_new() → lg_session_connected() */
	LG_EV_TLS_DONE,   /* the handshake finished; latency_us: STARTTLS's 220 → done */
	LG_EV_READY,      /* greeting and EHLO (and TLS) done; in idle mode the session now holds */
	LG_EV_REPLY,      /* every complete reply: stage, code (multi-line replies once) */
	LG_EV_MSG_START,  /* a transaction began (MAIL queued); bytes: the message's size */
	LG_EV_EOD_SENT,   /* the last byte of CRLF.CRLF was consumed by the transport (now_us) */
	LG_EV_MSG_DONE,   /* the reply to end of data: code; latency_us: EOD sent → reply;
	                     bytes: the message's size */
	LG_EV_MSG_FAILED, /* the transaction ended without an end-of-data reply: refused at
	                     stage with code, or code 0 when the connection ended first */
	LG_EV_CLOSED,     /* the last event: err says why */
};

struct lg_event {
	enum lg_event_type type;
	enum lg_stage stage; /* LG_EV_REPLY, LG_EV_MSG_FAILED; LG_STAGE_NONE otherwise */
	unsigned code;       /* the 3-digit reply code, or 0 */
	enum lg_err err;     /* LG_EV_CLOSED */
	uint64_t now_us;     /* the time the transport passed to the call that emitted it */
	uint64_t latency_us; /* LG_EV_CONNECTED, LG_EV_TLS_DONE, LG_EV_MSG_DONE */
	uint64_t bytes;      /* LG_EV_MSG_START, LG_EV_MSG_DONE */
	bool connected;      /* LG_EV_CLOSED: the session had got LG_EV_CONNECTED */
};

typedef void (*lg_event_fn)(void *arg, const struct lg_event *ev);

struct lg_session;

/*
 * A session for a connection whose connect() starts at now_us (connect
 * latency is measured from here).  NULL when out of memory, or when the
 * workload asks for STARTTLS without a context.
 */
struct lg_session *lg_session_new(const struct lg_workload *w, lg_event_fn ev, void *ev_arg,
                                  uint64_t now_us);
/* Frees everything.  A session not yet closed emits nothing: abort it first to count it. */
void lg_session_free(struct lg_session *s);

/* The TCP connection is established: emits LG_EV_CONNECTED; the greeting is now awaited. */
void lg_session_connected(struct lg_session *s, uint64_t now_us);

/*
 * Bytes received from the server (wire bytes: ciphertext once TLS is on).
 * Always consumes all of them; returns 0, or -1 when the session closed
 * (protocol error, 421, QUIT answered), after emitting LG_EV_CLOSED.
 */
int lg_session_input(struct lg_session *s, const uint8_t *in, size_t len, uint64_t now_us);

/* The bytes to send now (*out valid until the next call on s); 0 when none. */
size_t lg_session_output(struct lg_session *s, const uint8_t **out);

/*
 * n bytes of what lg_session_output() returned were sent.  The end-of-data
 * latency clock starts when the consumed bytes include CRLF.CRLF: consume as
 * soon as the transport has handed them to the network.
 */
void lg_session_consume(struct lg_session *s, size_t n, uint64_t now_us);

/* The peer closed its side (FIN): clean after our QUIT, LG_ERR_RESET otherwise. */
void lg_session_eof(struct lg_session *s, uint64_t now_us);

/*
 * The transport failed (connect refused or timed out, reset, ...): fails the
 * transaction in flight and closes the session with err.  No-op once closed.
 */
void lg_session_abort(struct lg_session *s, enum lg_err err, uint64_t now_us);

/* Asks the message source again if it last said LG_NEXT_WAIT. */
void lg_session_kick(struct lg_session *s, uint64_t now_us);

/*
 * Stop gracefully: send QUIT as soon as no transaction is in flight (at once
 * when idle or waiting for the source).  Before the greeting, QUIT follows it.
 */
void lg_session_quit(struct lg_session *s, uint64_t now_us);

/* Enforces reply_timeout_us (LG_ERR_TIMEOUT); call it at least every few hundred ms. */
void lg_session_tick(struct lg_session *s, uint64_t now_us);

/* True once LG_EV_CLOSED was emitted: close the socket and free the session. */
bool lg_session_closed(const struct lg_session *s);

/* True while the session waits for the source (LG_NEXT_WAIT): a candidate for kick. */
bool lg_session_starved(const struct lg_session *s);

/* True when connected and waiting for nothing from the server (idle mode, or starved). */
bool lg_session_idle(const struct lg_session *s);

/* Names for reports and JSON keys. */
const char *lg_err_name(enum lg_err err);
const char *lg_stage_name(enum lg_stage stage);

#endif
