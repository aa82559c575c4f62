/*
 * handoff_client.h: the sans-I/O SMTP/LMTP client of the hand-off engine.
 *
 * One struct hc per connection to a delivery-tier host.  The engine feeds it
 * the bytes it received and sends what hc_output() holds; the client never
 * touches a socket or a clock.  It speaks EHLO (LHLO for LMTP, RFC 2033),
 * falls back to HELO for an SMTP peer that refuses EHLO, pipelines MAIL,
 * RCPT and DATA when the peer offers PIPELINING (RFC 2920), sends SIZE,
 * BODY=8BITMIME, SMTPUTF8, ENVID and ORCPT when offered (RFC 3461), and runs
 * many transactions on one connection; with PIPELINING the next one's
 * envelope goes out right behind the current one's body (RFC 2920 3.1).
 *
 * What it promises: each recipient of a transaction ends with exactly one
 * result (the peer's reply code and text), in the order the replies came:
 * SMTP gives every recipient accepted at RCPT the reply to the end of data;
 * LMTP gives each its own reply (RFC 2033 4.2).  A reply the client cannot
 * parse, a 421, or a line longer than HC_LINE_MAX ends the connection
 * (HC_FAILED) and every recipient still without a result gets a temporary
 * failure.
 */
#ifndef HANDOFF_CLIENT_H
#define HANDOFF_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HC_LINE_MAX 2048
#define HC_TEXT_MAX 512 /* reply text kept per recipient, as SPOOL_REPLY_MAX */
#define HC_RCPT_MAX 1024

enum hc_proto {
	HC_SMTP,
	HC_LMTP,
};

enum hc_status {
	HC_NEED_MORE, /* nothing new; wait for input (or send output) */
	HC_READY,     /* greeting and EHLO done, no transaction: hc_start() may be called */
	HC_RESULTS,   /* some recipients got their final result (hc_result()) */
	HC_TXN_DONE,  /* every recipient of the transaction has its result; the client is ready */
	HC_FAILED,    /* protocol error or the peer is going away: close the connection */
	HC_CLOSED,    /* QUIT answered */
};

/* One transaction: the envelope and the stored message, all valid until HC_TXN_DONE. */
struct hc_txn {
	const char *mail_from; /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpt;        /* 1..HC_RCPT_MAX */
	const uint8_t *data; /* the stored message: header lines, blank line, body; CRLF */
	size_t size;
	const char *id_header; /* a full header line without CRLF, put first; may be NULL */
	const char *envid;     /* DSN ENVID (xtext-encoded here); may be NULL */
	bool body_8bit;
	bool smtputf8;
};

struct hc_result {
	unsigned code; /* 3-digit reply code; 0 when the connection failed first */
	bool final;
	char text[HC_TEXT_MAX + 1]; /* the reply, first line, without CRLF */
};

struct hc;

struct hc *hc_new(enum hc_proto proto, const char *helo);
void hc_free(struct hc *c);

/*
 * Consumes received bytes (all of them, unless it returns HC_FAILED) and
 * returns what changed.  Call again with len 0 after handling HC_RESULTS or
 * HC_TXN_DONE to see whether more replies are buffered.
 */
enum hc_status hc_input(struct hc *c, const uint8_t *in, size_t len);

/*
 * Starts a transaction when the client is ready (hc_ready()), or, when
 * hc_can_pipeline(), queues it behind the current one: its MAIL, RCPT and
 * DATA go out now, after the current one's body, and its replies are read
 * once the current one is done (HC_TXN_DONE), which makes it the current
 * one.  PA_ERROR when neither is possible or the txn is invalid.
 */
int hc_start(struct hc *c, const struct hc_txn *txn);
/* The current transaction's body is sent and nothing is queued behind it yet (PIPELINING). */
bool hc_can_pipeline(const struct hc *c);
/* A transaction is queued behind the current one. */
bool hc_pipelined(const struct hc *c);

/*
 * While held, the body of a transaction waits after the peer's 354 until
 * hc_release_body() (which sends it, if it is waiting, and ends the hold).
 * The engine holds it until the previous transaction's outcome is written:
 * the peer can accept nothing before the body's end, so a crash meanwhile
 * sends no more than that one copy again.
 */
void hc_hold_body(struct hc *c, bool hold);
int hc_release_body(struct hc *c);
bool hc_body_held(const struct hc *c);

/*
 * The connection broke: every recipient of the current transaction still
 * without a result gets code 0 and text (after HC_TXN_DONE, the current one
 * is the pipelined one, if any).  A transaction still queued behind the
 * current one gets no result: it was not attempted (its body never left).
 */
void hc_abort(struct hc *c, const char *text);

/*
 * The result of recipient i of the current (or just finished) transaction;
 * after HC_TXN_DONE, valid until the next hc_input() or hc_abort().
 */
const struct hc_result *hc_result(const struct hc *c, size_t i);

/* Queues QUIT when idle; PA_ERROR when a transaction is in progress. */
int hc_quit(struct hc *c);

/* Bytes to send; hc_output_consumed() drops what was sent. */
const uint8_t *hc_output(const struct hc *c, size_t *len);
void hc_output_consumed(struct hc *c, size_t n);

bool hc_ready(const struct hc *c);
bool hc_busy(const struct hc *c); /* a transaction is in progress */
/* The peer advertised these (after EHLO/LHLO). */
bool hc_has_pipelining(const struct hc *c);
bool hc_has_dsn(const struct hc *c);
/* The last reply line the client saw, for logs. */
const char *hc_last_reply(const struct hc *c);

#endif
