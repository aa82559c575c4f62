/*
 * test_loadgen_session.c: pigeon-loadgen's sans-I/O SMTP client against
 * scripted server replies: the pipelined and one-at-a-time dialogues,
 * multi-line replies, a 4xx at end of data counted as 4xx and not as OK, a
 * 5xx at RCPT, dot-stuffing, byte-by-byte input giving exactly what one-chunk
 * input gives, lazy output of a large body, idle mode, 421, timeouts, EOF in
 * mid-transaction; and the option parsers the load generator relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "loadgen/lg_options.h"
#include "loadgen/lg_session.h"
#include "loadgen/lg_source.h"
#include "loadgen/lg_stats.h"

#define MAX_EVENTS 256

/* The scripted source: `left` messages of `data`, then DONE (or WAIT while `wait`). */
struct src {
	const char *data;
	const char *const *rcpts;
	unsigned nrcpt;
	unsigned left;
	bool wait;
	unsigned asked;
};

static enum lg_next
src_next(void *arg, struct lg_message *m, uint64_t now_us)
{
	struct src *s = arg;

	(void)now_us;
	s->asked++;
	if (s->wait)
		return LG_NEXT_WAIT;
	if (s->left == 0)
		return LG_NEXT_DONE;
	s->left--;
	m->mail_from = "from@example.org";
	m->rcpts = s->rcpts;
	m->nrcpt = s->nrcpt;
	m->data = (const uint8_t *)s->data;
	m->size = strlen(s->data);
	return LG_NEXT_MSG;
}

/* Records every event, and counts them as the load generator does. */
struct rec {
	struct lg_event ev[MAX_EVENTS];
	unsigned n;
	struct lg_stats stats;
};

static void
rec_event(void *arg, const struct lg_event *ev)
{
	struct rec *r = arg;

	assert_true(r->n < MAX_EVENTS);
	r->ev[r->n++] = *ev;
	lg_stats_event(&r->stats, ev);
}

static const struct lg_event *
find(const struct rec *r, enum lg_event_type type, unsigned nth)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->ev[i].type == type && nth-- == 0)
			return &r->ev[i];
	return NULL;
}

static unsigned
count(const struct rec *r, enum lg_event_type type)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->n; i++)
		n += r->ev[i].type == type;
	return n;
}

static const char *const one_rcpt[] = {"a@example.com"};
static const char *const two_rcpts[] = {"a@example.com", "b@example.net"};

static struct lg_workload
workload(struct src *src, bool pipelining)
{
	struct lg_workload w = {
	    .helo = "lg.test",
	    .source = src_next,
	    .source_arg = src,
	    .pipelining = pipelining,
	    .reply_timeout_us = 1000000,
	};

	return w;
}

/* Everything the session wants to send now, consumed at time `now`. */
static char *
take_at(struct lg_session *s, uint64_t now)
{
	char *all = calloc(1, 1);
	size_t len = 0;

	for (;;) {
		const uint8_t *p;
		size_t n = lg_session_output(s, &p);

		if (n == 0)
			return all;
		all = realloc(all, len + n + 1);
		memcpy(all + len, p, n);
		len += n;
		all[len] = '\0';
		lg_session_consume(s, n, now);
	}
}

static char *
take(struct lg_session *s)
{
	return take_at(s, 100);
}

/* Sends (and forgets) what the session has queued. */
static void
discard(struct lg_session *s)
{
	free(take(s));
}

static void
expect_out(struct lg_session *s, const char *want)
{
	char *got = take(s);

	if (strcmp(got, want) != 0)
		fail_msg("sent:\n%s\nexpected:\n%s", got, want);
	free(got);
}

static int
feed_at(struct lg_session *s, const char *in, uint64_t now)
{
	return lg_session_input(s, (const uint8_t *)in, strlen(in), now);
}

static int
feed(struct lg_session *s, const char *in)
{
	return feed_at(s, in, 100);
}

static const char ehlo_pipelining[] = "250-mx.test hello\r\n"
                                      "250-PIPELINING\r\n"
                                      "250-SIZE 10240000\r\n"
                                      "250 8BITMIME\r\n";
static const char ehlo_plain[] = "250-mx.test hello\r\n"
                                 "250-SIZE 10240000\r\n"
                                 "250 8BITMIME\r\n";

/* A session connected at t=50 and past greeting and EHLO. */
static struct lg_session *
ready_session(const struct lg_workload *w, struct rec *r, const char *ehlo)
{
	struct lg_session *s = lg_session_new(w, rec_event, r, 10);

	assert_non_null(s);
	lg_session_connected(s, 50);
	assert_int_equal(feed(s, "220 mx.test ESMTP\r\n"), 0);
	expect_out(s, "EHLO lg.test\r\n");
	assert_int_equal(feed(s, ehlo), 0);
	return s;
}

static void
test_pipelined_dialogue(void **state)
{
	struct src src = {
	    .data = "Subject: x\r\n\r\nhello\r\n", .rcpts = two_rcpts, .nrcpt = 2, .left = 1};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s;
	const struct lg_event *e;

	(void)state;
	s = ready_session(&w, &r, ehlo_pipelining);
	e = find(&r, LG_EV_CONNECTED, 0);
	assert_non_null(e);
	assert_int_equal(e->latency_us, 40);
	assert_non_null(find(&r, LG_EV_READY, 0));
	/* RFC 2920: the whole envelope and DATA in one group. */
	expect_out(s, "MAIL FROM:<from@example.org>\r\n"
	              "RCPT TO:<a@example.com>\r\n"
	              "RCPT TO:<b@example.net>\r\n"
	              "DATA\r\n");
	assert_int_equal(feed(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n"), 0);
	assert_null(find(&r, LG_EV_EOD_SENT, 0));
	{
		char *body = take_at(s, 1000);

		assert_string_equal(body, "Subject: x\r\n\r\nhello\r\n.\r\n");
		free(body);
	}
	e = find(&r, LG_EV_EOD_SENT, 0);
	assert_non_null(e);
	assert_int_equal(e->now_us, 1000);
	assert_int_equal(feed_at(s, "250 2.0.0 Ok: queued as X\r\n", 1750), 0);
	e = find(&r, LG_EV_MSG_DONE, 0);
	assert_non_null(e);
	assert_int_equal(e->code, 250);
	assert_int_equal(e->latency_us, 750);
	/* The source is dry: QUIT. */
	expect_out(s, "QUIT\r\n");
	assert_false(lg_session_closed(s));
	assert_int_equal(feed(s, "221 bye\r\n"), -1);
	assert_true(lg_session_closed(s));
	e = &r.ev[r.n - 1];
	assert_int_equal(e->type, LG_EV_CLOSED);
	assert_int_equal(e->err, LG_ERR_NONE);
	assert_int_equal(r.stats.messages, 1);
	assert_int_equal(r.stats.ok, 1);
	assert_int_equal(r.stats.failed, 0);
	assert_int_equal(r.stats.replies[2], 7); /* 220, EHLO, MAIL, 2 RCPT, EOD, 221 */
	assert_int_equal(r.stats.replies[3], 1);
	assert_int_equal(r.stats.errors[LG_ERR_NONE], 1);
	assert_int_equal(r.stats.open, 0);
	lg_session_free(s);
}

static void
test_no_pipelining_one_command_per_reply(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = two_rcpts, .nrcpt = 2, .left = 1};
	struct rec r = {0};
	struct lg_session *s;

	(void)state;
	/* The server does not offer PIPELINING, though the workload allows it. */
	{
		struct lg_workload w = workload(&src, true);

		s = ready_session(&w, &r, ehlo_plain);
	}
	expect_out(s, "MAIL FROM:<from@example.org>\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "RCPT TO:<a@example.com>\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "RCPT TO:<b@example.net>\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "DATA\r\n");
	feed(s, "354 go\r\n");
	expect_out(s, "x\r\n.\r\n");
	feed(s, "250 queued\r\n");
	expect_out(s, "QUIT\r\n");
	lg_session_free(s);

	/* The server offers it, the workload says --no-pipelining. */
	memset(&r, 0, sizeof(r));
	src.left = 1;
	{
		struct lg_workload w = workload(&src, false);

		s = ready_session(&w, &r, ehlo_pipelining);
	}
	expect_out(s, "MAIL FROM:<from@example.org>\r\n");
	lg_session_free(s);
}

static void
test_multiline_replies(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 1};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s = lg_session_new(&w, rec_event, &r, 0);

	(void)state;
	lg_session_connected(s, 0);
	/* A multi-line greeting is one reply; nothing is sent before its last line. */
	feed(s, "220-mx.test ESMTP\r\n220-more text\r\n");
	expect_out(s, "");
	feed(s, "220 last line\r\n");
	expect_out(s, "EHLO lg.test\r\n");
	assert_int_equal(count(&r, LG_EV_REPLY), 1);
	/* PIPELINING in a middle line, lower case: still seen. */
	feed(s, "250-mx.test\r\n250-pipelining\r\n250 SIZE 1000\r\n");
	assert_int_equal(count(&r, LG_EV_REPLY), 2);
	expect_out(s, "MAIL FROM:<from@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	/* A multi-line reply whose lines disagree on the code is a protocol error. */
	assert_int_equal(feed(s, "250-ok\r\n251 ok\r\n"), -1);
	assert_int_equal(r.ev[r.n - 1].type, LG_EV_CLOSED);
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_PROTOCOL);
	/* The transaction in flight was failed, not lost. */
	assert_int_equal(r.stats.failed, 1);
	assert_int_equal(r.stats.ok, 0);
	lg_session_free(s);
}

static void
test_4xx_at_end_of_data_is_not_ok(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 2};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s;
	const struct lg_event *e;

	(void)state;
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	discard(s);
	feed(s, "451 4.3.0 try again later\r\n");
	e = find(&r, LG_EV_MSG_DONE, 0);
	assert_non_null(e);
	assert_int_equal(e->code, 451);
	assert_int_equal(r.stats.ok, 0);
	assert_int_equal(r.stats.failed, 1);
	assert_int_equal(r.stats.eod_replies[4], 1);
	assert_int_equal(r.stats.replies[4], 1);
	assert_int_equal(r.stats.bytes, 0);
	/* The session goes on with the next message. */
	expect_out(s, "MAIL FROM:<from@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	discard(s);
	feed(s, "250 queued\r\n");
	assert_int_equal(r.stats.messages, 2);
	assert_int_equal(r.stats.ok, 1);
	assert_int_equal(r.stats.failed, 1);
	assert_int_equal(r.stats.bytes, 3);
	lg_session_free(s);
}

static void
test_5xx_at_rcpt(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 2};
	struct rec r = {0};
	struct lg_session *s;
	const struct lg_event *e;

	(void)state;
	/* Pipelined: the DATA already sent gets 554; the transaction fails at RCPT. */
	{
		struct lg_workload w = workload(&src, true);

		s = ready_session(&w, &r, ehlo_pipelining);
	}
	discard(s);
	feed(s, "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n");
	e = find(&r, LG_EV_MSG_FAILED, 0);
	assert_non_null(e);
	assert_int_equal(e->stage, LG_STAGE_RCPT);
	assert_int_equal(e->code, 550);
	assert_null(find(&r, LG_EV_MSG_DONE, 0));
	assert_int_equal(r.stats.replies[5], 2);
	assert_int_equal(r.stats.ok, 0);
	assert_int_equal(r.stats.failed, 1);
	/* RSET before the next transaction: MAIL was accepted. */
	expect_out(s, "RSET\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "MAIL FROM:<from@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	lg_session_free(s);

	/* One at a time: no DATA after every recipient was refused. */
	memset(&r, 0, sizeof(r));
	src.left = 1;
	{
		struct lg_workload w = workload(&src, false);

		s = ready_session(&w, &r, ehlo_pipelining);
	}
	expect_out(s, "MAIL FROM:<from@example.org>\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "RCPT TO:<a@example.com>\r\n");
	feed(s, "550 5.1.1 no such user\r\n");
	e = find(&r, LG_EV_MSG_FAILED, 0);
	assert_non_null(e);
	assert_int_equal(e->stage, LG_STAGE_RCPT);
	assert_int_equal(e->code, 550);
	expect_out(s, "RSET\r\n");
	feed(s, "250 ok\r\n");
	expect_out(s, "QUIT\r\n");
	lg_session_free(s);
}

static void
test_dot_stuffing(void **state)
{
	/* Lines starting with '.', a lone '.', a message starting with '.' and lacking its
	 * final CRLF: each '.' at a line start doubled, CRLF added, then CRLF.CRLF. */
	struct src src = {.data = ".first\r\na\r\n.b\r\n..c\r\n.\r\nmid.dle\r\nend",
	                  .rcpts = one_rcpt,
	                  .nrcpt = 1,
	                  .left = 1};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s = ready_session(&w, &r, ehlo_pipelining);

	(void)state;
	discard(s);
	feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out(s, "..first\r\na\r\n..b\r\n...c\r\n..\r\nmid.dle\r\nend\r\n.\r\n");
	lg_session_free(s);
}

/* The full dialogue, the server's bytes split as `chunk` says (0: all at once). */
static char *
transcript(size_t chunk, struct rec *r)
{
	static const char *const server[] = {
	    "220-mx.test ESMTP\r\n220 hi\r\n",
	    "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
	    "250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n",
	    "250 queued\r\n",
	    "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
	    "452 4.3.1 full\r\n",
	    "221-bye\r\n221 bye\r\n",
	};
	struct src src = {
	    .data = "H: v\r\n\r\n.dot\r\nbody\r\n", .rcpts = two_rcpts, .nrcpt = 2, .left = 2};
	struct lg_workload w = workload(&src, true);
	struct lg_session *s = lg_session_new(&w, rec_event, r, 0);
	char *log = calloc(1, 1);
	size_t len = 0;

	lg_session_connected(s, 0);
	for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++) {
		const char *in = server[i];
		size_t n = strlen(in), step = chunk ? chunk : n;
		char *out;

		for (size_t off = 0; off < n; off += step) {
			size_t k = n - off < step ? n - off : step;

			lg_session_input(s, (const uint8_t *)in + off, k, 100);
		}
		out = take(s);
		log = realloc(log, len + strlen(out) + 1);
		strcpy(log + len, out);
		len += strlen(out);
		free(out);
	}
	assert_true(lg_session_closed(s));
	lg_session_free(s);
	return log;
}

static void
test_byte_by_byte_equals_one_chunk(void **state)
{
	struct rec *whole = calloc(1, sizeof(*whole)), *bytes = calloc(1, sizeof(*bytes));
	char *a, *b;

	(void)state;
	a = transcript(0, whole);
	b = transcript(1, bytes);
	assert_string_equal(a, b);
	assert_true(strstr(a, "..dot\r\n") != NULL);
	assert_int_equal(whole->n, bytes->n);
	for (unsigned i = 0; i < whole->n; i++) {
		assert_int_equal(whole->ev[i].type, bytes->ev[i].type);
		assert_int_equal(whole->ev[i].code, bytes->ev[i].code);
		assert_int_equal(whole->ev[i].stage, bytes->ev[i].stage);
		assert_int_equal(whole->ev[i].err, bytes->ev[i].err);
	}
	assert_int_equal(whole->stats.ok, 1);
	assert_int_equal(whole->stats.eod_replies[4], 1);
	assert_int_equal(whole->stats.errors[LG_ERR_NONE], 1);
	free(a);
	free(b);
	free(whole);
	free(bytes);
}

static void
test_large_body_is_streamed(void **state)
{
	size_t size = 300 * 1024, got = 0, max_chunk = 0;
	char *data = malloc(size + 1);
	struct src src = {.rcpts = one_rcpt, .nrcpt = 1, .left = 1};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s;

	(void)state;
	for (size_t i = 0; i < size; i++)
		data[i] = i % 100 == 98 ? '\r' : i % 100 == 99 ? '\n' : 'a';
	data[size] = '\0';
	src.data = data;
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	for (;;) {
		const uint8_t *p;
		size_t n = lg_session_output(s, &p);

		if (n == 0)
			break;
		if (n > max_chunk)
			max_chunk = n;
		/* Drain in odd-sized pieces, as a socket would. */
		if (n > 7000)
			n = 7000;
		got += n;
		lg_session_consume(s, n, 200);
	}
	/* Never the whole message in memory at once. */
	assert_true(max_chunk <= LG_OUT_HIGH + 16384);
	assert_int_equal(got, size + 3);
	assert_non_null(find(&r, LG_EV_EOD_SENT, 0));
	lg_session_free(s);
	free(data);
}

static void
test_idle_mode_and_quit(void **state)
{
	struct lg_workload w = {.helo = "lg.test", .idle = true, .reply_timeout_us = 10};
	struct rec r = {0};
	struct lg_session *s = ready_session(&w, &r, ehlo_pipelining);

	(void)state;
	assert_true(lg_session_idle(s));
	expect_out(s, "");
	/* Holding is not waiting: no reply timeout. */
	lg_session_tick(s, 1000000);
	assert_false(lg_session_closed(s));
	lg_session_quit(s, 1000001);
	expect_out(s, "QUIT\r\n");
	/* The server closing before its 221 still ends the session cleanly. */
	lg_session_eof(s, 1000002);
	assert_true(lg_session_closed(s));
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_NONE);
	assert_int_equal(r.stats.ready, 1);
	lg_session_free(s);
}

static void
test_starved_source_kick(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 1, .wait = true};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s = ready_session(&w, &r, ehlo_pipelining);

	(void)state;
	assert_true(lg_session_starved(s));
	expect_out(s, "");
	src.wait = false;
	lg_session_kick(s, 200);
	assert_false(lg_session_starved(s));
	expect_out(s, "MAIL FROM:<from@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	lg_session_free(s);
}

static void
test_421_timeout_eof_garbage(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 5};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s;

	(void)state;
	/* 421 in mid-transaction: closed at once, the message failed. */
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	assert_int_equal(feed(s, "421 4.3.2 shutting down\r\n"), -1);
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_REJECTED);
	assert_int_equal(r.stats.failed, 1);
	assert_int_equal(find(&r, LG_EV_MSG_FAILED, 0)->stage, LG_STAGE_MAIL);
	assert_int_equal(find(&r, LG_EV_MSG_FAILED, 0)->code, 421);
	lg_session_free(s);

	/* 421 to end of data: that message's answer, a 4xx, then closed. */
	memset(&r, 0, sizeof(r));
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	discard(s);
	assert_int_equal(feed(s, "421 4.3.2 bye\r\n"), -1);
	assert_int_equal(r.stats.eod_replies[4], 1);
	assert_int_equal(r.stats.failed, 1);
	assert_int_equal(r.stats.ok, 0);
	assert_int_equal(r.stats.errors[LG_ERR_REJECTED], 1);
	lg_session_free(s);

	/* No reply within the reply timeout. */
	memset(&r, 0, sizeof(r));
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	lg_session_tick(s, 500000);
	assert_false(lg_session_closed(s));
	lg_session_tick(s, 1000100);
	assert_true(lg_session_closed(s));
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_TIMEOUT);
	assert_int_equal(r.stats.errors[LG_ERR_TIMEOUT], 1);
	lg_session_free(s);

	/* The peer closes in mid-transaction: reset, the message failed. */
	memset(&r, 0, sizeof(r));
	s = ready_session(&w, &r, ehlo_pipelining);
	discard(s);
	lg_session_eof(s, 200);
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_RESET);
	assert_int_equal(r.stats.failed, 1);
	lg_session_free(s);

	/* Not a reply: protocol error.  A reply nobody asked for: protocol error. */
	memset(&r, 0, sizeof(r));
	s = lg_session_new(&w, rec_event, &r, 0);
	lg_session_connected(s, 0);
	assert_int_equal(feed(s, "hello there\r\n"), -1);
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_PROTOCOL);
	lg_session_free(s);
	memset(&r, 0, sizeof(r));
	src.wait = true;
	s = ready_session(&w, &r, ehlo_pipelining);
	assert_true(lg_session_starved(s));
	assert_int_equal(feed(s, "250 extra\r\n"), -1);
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_PROTOCOL);
	lg_session_free(s);
	src.wait = false;

	/* A refused connection: one CLOSED with its kind, never counted open. */
	memset(&r, 0, sizeof(r));
	s = lg_session_new(&w, rec_event, &r, 0);
	lg_session_abort(s, LG_ERR_REFUSED, 5);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.stats.errors[LG_ERR_REFUSED], 1);
	assert_int_equal(r.stats.open, 0);
	assert_int_equal(r.stats.messages, 0);
	lg_session_free(s);
}

static void
test_negative_greeting_and_missing_starttls(void **state)
{
	struct src src = {.data = "x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 1};
	struct lg_workload w = workload(&src, true);
	struct rec r = {0};
	struct lg_session *s = lg_session_new(&w, rec_event, &r, 0);
	SSL_CTX *ctx;

	(void)state;
	lg_session_connected(s, 0);
	feed(s, "554 5.7.1 go away\r\n");
	expect_out(s, "QUIT\r\n");
	feed(s, "221 bye\r\n");
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_REJECTED);
	assert_int_equal(r.stats.replies[5], 1);
	lg_session_free(s);

	/* STARTTLS wanted, not offered: no mail in clear, a TLS error. */
	ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	w.starttls = true;
	w.tls_ctx = ctx;
	memset(&r, 0, sizeof(r));
	s = ready_session(&w, &r, ehlo_pipelining);
	expect_out(s, "QUIT\r\n");
	feed(s, "221 bye\r\n");
	assert_int_equal(r.ev[r.n - 1].err, LG_ERR_TLS);
	assert_int_equal(r.stats.messages, 0);
	lg_session_free(s);

	/* Offered: STARTTLS, then a ClientHello (a TLS record) on the wire. */
	memset(&r, 0, sizeof(r));
	s = ready_session(&w, &r, "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n");
	expect_out(s, "STARTTLS\r\n");
	feed(s, "220 2.0.0 go ahead\r\n");
	{
		const uint8_t *p;
		size_t n = lg_session_output(s, &p);

		assert_true(n > 5);
		assert_int_equal(p[0], 0x16); /* handshake record */
	}
	lg_session_free(s);
	SSL_CTX_free(ctx);
}

/* An in-memory TLS server: the session's wire bytes in, the server's records out. */
struct tls_srv {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rb, *wb;
	char plain[8192]; /* what the server read in clear, after the handshake */
	size_t plain_len;
};

static void
tls_srv_init(struct tls_srv *v)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	memset(v, 0, sizeof(*v));
	assert_non_null(pkey);
	assert_non_null(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	v->ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(v->ctx);
	assert_int_equal(SSL_CTX_use_certificate(v->ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(v->ctx, pkey), 1);
	X509_free(x);
	EVP_PKEY_free(pkey);
	v->ssl = SSL_new(v->ctx);
	v->rb = BIO_new(BIO_s_mem());
	v->wb = BIO_new(BIO_s_mem());
	SSL_set_bio(v->ssl, v->rb, v->wb);
	SSL_set_accept_state(v->ssl);
}

static void
tls_srv_free(struct tls_srv *v)
{
	SSL_free(v->ssl);
	SSL_CTX_free(v->ctx);
}

/* Moves bytes both ways until neither side has anything; the server's in `step`-byte pieces. */
static void
pump(struct lg_session *s, struct tls_srv *v, size_t step)
{
	for (int round = 0; round < 1000 && !lg_session_closed(s); round++) {
		bool moved = false;
		const uint8_t *p;
		size_t n, pending;
		char buf[4096];
		int r;

		while ((n = lg_session_output(s, &p)) > 0) {
			assert_int_equal(BIO_write(v->rb, p, (int)n), (int)n);
			lg_session_consume(s, n, 100);
			moved = true;
		}
		if (!SSL_is_init_finished(v->ssl))
			SSL_do_handshake(v->ssl);
		while (SSL_is_init_finished(v->ssl) &&
		       (r = SSL_read(v->ssl, buf, sizeof(buf))) > 0) {
			assert_true(v->plain_len + (size_t)r < sizeof(v->plain));
			memcpy(v->plain + v->plain_len, buf, (size_t)r);
			v->plain_len += (size_t)r;
			v->plain[v->plain_len] = '\0';
			moved = true;
		}
		ERR_clear_error();
		while ((pending = BIO_ctrl_pending(v->wb)) > 0) {
			uint8_t rec[16384];

			r = BIO_read(v->wb, rec,
			             pending < sizeof(rec) ? (int)pending : (int)sizeof(rec));
			assert_true(r > 0);
			for (size_t off = 0; off < (size_t)r && !lg_session_closed(s);) {
				size_t k = step && (size_t)r - off > step ? step : (size_t)r - off;

				lg_session_input(s, rec + off, k, 100);
				off += k;
			}
			moved = true;
		}
		if (!moved)
			return;
	}
}

static void
srv_say(struct tls_srv *v, const char *text)
{
	assert_int_equal(SSL_write(v->ssl, text, (int)strlen(text)), (int)strlen(text));
}

/* The whole STARTTLS dialogue over a real handshake; returns what the server read in clear. */
static char *
tls_dialogue(size_t step, struct rec *r)
{
	struct src src = {.data = "S: t\r\n\r\n.x\r\n", .rcpts = one_rcpt, .nrcpt = 1, .left = 1};
	struct lg_workload w = workload(&src, true);
	struct tls_srv v;
	struct lg_session *s;
	char *plain;

	tls_srv_init(&v);
	w.starttls = true;
	w.tls_ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(w.tls_ctx);
	s = ready_session(&w, r, "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n");
	expect_out(s, "STARTTLS\r\n");
	feed(s, "220 2.0.0 ready\r\n");
	pump(s, &v, step);
	assert_non_null(find(r, LG_EV_TLS_DONE, 0));
	/* RFC 3207: EHLO again, inside TLS; nothing was learnt in clear. */
	assert_string_equal(v.plain, "EHLO lg.test\r\n");
	assert_null(find(r, LG_EV_READY, 0));
	srv_say(&v, "250-mx.test\r\n250 PIPELINING\r\n");
	pump(s, &v, step);
	assert_non_null(find(r, LG_EV_READY, 0));
	srv_say(&v, "250 ok\r\n250 ok\r\n354 go\r\n");
	pump(s, &v, step);
	srv_say(&v, "250 queued\r\n");
	pump(s, &v, step);
	srv_say(&v, "221 bye\r\n");
	pump(s, &v, step);
	assert_true(lg_session_closed(s));
	assert_int_equal(r->ev[r->n - 1].err, LG_ERR_NONE);
	assert_int_equal(r->stats.ok, 1);
	assert_int_equal(r->stats.tls_done, 1);
	plain = strdup(v.plain);
	lg_session_free(s);
	SSL_CTX_free(w.tls_ctx);
	tls_srv_free(&v);
	return plain;
}

static void
test_starttls_handshake_and_dialogue(void **state)
{
	struct rec *whole = calloc(1, sizeof(*whole)), *bytes = calloc(1, sizeof(*bytes));
	char *a, *b;

	(void)state;
	a = tls_dialogue(0, whole);
	assert_string_equal(a, "EHLO lg.test\r\n"
	                       "MAIL FROM:<from@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
	                       "S: t\r\n\r\n..x\r\n.\r\n"
	                       "QUIT\r\n");
	/* TLS records fed one byte at a time: the same dialogue. */
	b = tls_dialogue(1, bytes);
	assert_string_equal(a, b);
	assert_int_equal(whole->stats.replies[2], bytes->stats.replies[2]);
	free(a);
	free(b);
	free(whole);
	free(bytes);
}

/* lg_options_parse() over argv (NULL-terminated); its return value, *o filled. */
static int
parse(struct lg_options *o, const char *const *args)
{
	char *argv[16];
	int argc = 0;

	argv[argc++] = "pigeon-loadgen";
	while (*args != NULL && argc < 15)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return lg_options_parse(o, argc, argv);
}

/* --target IPv4:PORT or [IPv6]:PORT, --source of its family, --ip6 for an IPv6 target on DPDK. */
static void
test_target_families(void **state)
{
	struct lg_options o;
	unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};

	(void)state;
	assert_int_equal(
	    parse(&o, (const char *[]){"--kernel", "--target", "198.18.0.2:2525", NULL}), 0);
	assert_int_equal(o.target.sa.sa_family, AF_INET);
	assert_int_equal(ntohs(o.target.sin.sin_port), 2525);
	assert_int_equal(lg_sockaddr_len(&o.target), sizeof(struct sockaddr_in));
	lg_options_free(&o);
	assert_int_equal(parse(&o, (const char *[]){"--kernel", "--target", "[2001:db8::2]:25",
	                                            "--source", "2001:db8::1,2001:db8::3", NULL}),
	                 0);
	assert_int_equal(o.target.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(o.target.sin6.sin6_port), 25);
	assert_memory_equal(o.target.sin6.sin6_addr.s6_addr, v6, 16);
	assert_int_equal(lg_sockaddr_len(&o.target), sizeof(struct sockaddr_in6));
	assert_int_equal(o.nsources, 2);
	assert_int_equal(o.sources[1].sa.sa_family, AF_INET6);
	lg_options_free(&o);
	/* The DPDK stack: an IPv6 target with --ip6; --gateway once per family. */
	assert_int_equal(
	    parse(&o, (const char *[]){"--eal", "x", "--ip", "198.18.0.1/24", "--ip6",
	                               "2001:db8::1/64", "--gateway", "fe80::1", "--gateway",
	                               "198.18.0.254", "--target", "[2001:db8::2]:25", NULL}),
	    0);
	assert_string_equal(o.ip6, "2001:db8::1/64");
	assert_string_equal(o.gateway6, "fe80::1");
	assert_string_equal(o.gateway, "198.18.0.254");
	assert_int_equal(o.ip6_count, 1);
	lg_options_free(&o);
	/* IPv6 only: no --ip needed; --ip6-count 1..4. */
	assert_int_equal(
	    parse(&o, (const char *[]){"--eal", "x", "--ip6", "2001:db8::10/64", "--ip6-count", "4",
	                               "--target", "[2001:db8::2]:25", NULL}),
	    0);
	assert_null(o.ip);
	assert_int_equal(o.ip6_count, 4);
	lg_options_free(&o);
	assert_int_equal(
	    parse(&o, (const char *[]){"--eal", "x", "--ip6", "2001:db8::10/64", "--ip6-count", "5",
	                               "--target", "[2001:db8::2]:25", NULL}),
	    -1);
	assert_int_equal(
	    parse(&o, (const char *[]){"--eal", "x", "--ip6", "2001:db8::10/64", "--ip6-count", "0",
	                               "--target", "[2001:db8::2]:25", NULL}),
	    -1);
	/* ...but an IPv4 target needs --ip, and the stack some address. */
	assert_int_equal(parse(&o, (const char *[]){"--eal", "x", "--ip6", "2001:db8::10/64",
	                                            "--target", "198.18.0.2:25", NULL}),
	                 -1);
	assert_int_equal(
	    parse(&o, (const char *[]){"--eal", "x", "--target", "198.18.0.2:25", NULL}), -1);
	/* Refused: no brackets, a bracketed IPv4 address, no port, port 0, a family mix,
	 * an IPv6 target on DPDK without --ip6. */
	assert_int_equal(
	    parse(&o, (const char *[]){"--kernel", "--target", "2001:db8::2:25", NULL}), -1);
	assert_int_equal(
	    parse(&o, (const char *[]){"--kernel", "--target", "[198.18.0.2]:25", NULL}), -1);
	assert_int_equal(parse(&o, (const char *[]){"--kernel", "--target", "[::1]", NULL}), -1);
	assert_int_equal(parse(&o, (const char *[]){"--kernel", "--target", "[::1]:0", NULL}), -1);
	assert_int_equal(parse(&o, (const char *[]){"--kernel", "--target", "[::1]:25", "--source",
	                                            "127.0.0.1", NULL}),
	                 -1);
	assert_int_equal(parse(&o, (const char *[]){"--eal", "x", "--ip", "198.18.0.1/24",
	                                            "--target", "[2001:db8::2]:25", NULL}),
	                 -1);
}

/* The generator and a thread's source: budget, schedule, sizes, recipients, the template. */
static void
test_message_source(void **state)
{
	struct lg_options o;
	struct lg_gen g;
	struct lg_shared shared = {.budget = 1000};
	struct lg_source src;
	struct lg_message m;
	char *argv[] = {"pigeon-loadgen", "--kernel",      "--target", "127.0.0.1:25",
	                "--size-dist",    "100:1,8k:1",    "--rcpts",  "3",
	                "--domains",      "a.test,b.test", NULL};
	unsigned small = 0, large = 0, dom_a = 0, dom_b = 0;
	uint64_t late = 0;

	(void)state;
	assert_int_equal(lg_options_parse(&o, 10, argv), 0);
	assert_int_equal(lg_gen_init(&g, &o), 0);
	/* The template: a header, and lines starting with '.' for the server to unstuff. */
	assert_true(g.max_size == 8192);
	assert_memory_equal(g.text, "From: <loadgen@example.org>\r\n", 29);
	assert_non_null(memmem(g.text, g.max_size, "\r\n.", 3));

	lg_source_init(&src, &g, &shared, 0, 0);
	for (unsigned i = 0; i < 1000; i++) {
		assert_int_equal(lg_source_next(&src, &m, 0), LG_NEXT_MSG);
		assert_int_equal(m.nrcpt, 3);
		assert_ptr_equal(m.data, g.text);
		assert_true(m.size == 100 || m.size == 8192);
		small += m.size == 100;
		large += m.size == 8192;
		assert_string_not_equal(m.rcpts[0], m.rcpts[1]);
		assert_string_not_equal(m.rcpts[1], m.rcpts[2]);
		for (unsigned k = 0; k < 3; k++) {
			dom_a += strstr(m.rcpts[k], "@a.test") != NULL;
			dom_b += strstr(m.rcpts[k], "@b.test") != NULL;
		}
	}
	/* Equal weights: each size about half the time; both domains used alike. */
	assert_true(small > 400 && large > 400);
	assert_true(dom_a > 1300 && dom_b > 1300 && dom_a + dom_b == 3000);
	/* The budget is spent: DONE, and no more connections. */
	assert_int_equal(lg_source_next(&src, &m, 0), LG_NEXT_DONE);
	assert_false(lg_source_more(&src));

	/* Open loop at 1000/s: one message per ms, on schedule; a late one is counted. */
	shared.budget = 0;
	lg_source_init(&src, &g, &shared, 1, 1000);
	src.late = &late;
	assert_int_equal(lg_source_next(&src, &m, 5000), LG_NEXT_MSG);
	assert_int_equal(lg_source_due_us(&src), 6000);
	assert_int_equal(lg_source_next(&src, &m, 5500), LG_NEXT_WAIT);
	assert_int_equal(lg_source_next(&src, &m, 6000), LG_NEXT_MSG);
	assert_int_equal(late, 0);
	assert_int_equal(lg_source_next(&src, &m, 9000), LG_NEXT_MSG); /* due at 7000 */
	assert_int_equal(late, 1);
	/* The schedule does not slip: the one due at 8000 is due now. */
	assert_int_equal(lg_source_next(&src, &m, 9000), LG_NEXT_MSG);
	assert_int_equal(lg_source_next(&src, &m, 9000), LG_NEXT_MSG);
	assert_int_equal(lg_source_next(&src, &m, 9000), LG_NEXT_WAIT);
	/* Draining: DONE whatever the schedule. */
	shared.stop = LG_DRAIN;
	assert_int_equal(lg_source_next(&src, &m, 20000), LG_NEXT_DONE);
	assert_false(lg_source_more(&src));

	lg_gen_free(&g);
	lg_options_free(&o);
}

static void
test_size_parsers(void **state)
{
	struct lg_size_class c[4];
	uint64_t v;

	(void)state;
	assert_int_equal(lg_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(lg_parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(lg_parse_size("100KiB", &v), 0);
	assert_int_equal(v, 102400);
	assert_int_equal(lg_parse_size("1M", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(lg_parse_size("4q", &v), -1);
	assert_int_equal(lg_parse_size("-1", &v), -1);
	assert_int_equal(lg_parse_size_dist("1k:50,4k:30,100k", c, 4), 3);
	assert_int_equal(c[0].size, 1024);
	assert_true(c[0].weight == 50);
	assert_int_equal(c[2].size, 102400);
	assert_true(c[2].weight == 1);
	assert_int_equal(lg_parse_size_dist("1k:0", c, 4), -1);
	assert_int_equal(lg_parse_size_dist("1k,2k,3k,4k,5k", c, 4), -1);
	assert_int_equal(lg_parse_size_dist("", c, 4), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pipelined_dialogue),
	    cmocka_unit_test(test_no_pipelining_one_command_per_reply),
	    cmocka_unit_test(test_multiline_replies),
	    cmocka_unit_test(test_4xx_at_end_of_data_is_not_ok),
	    cmocka_unit_test(test_5xx_at_rcpt),
	    cmocka_unit_test(test_dot_stuffing),
	    cmocka_unit_test(test_byte_by_byte_equals_one_chunk),
	    cmocka_unit_test(test_large_body_is_streamed),
	    cmocka_unit_test(test_idle_mode_and_quit),
	    cmocka_unit_test(test_starved_source_kick),
	    cmocka_unit_test(test_421_timeout_eof_garbage),
	    cmocka_unit_test(test_negative_greeting_and_missing_starttls),
	    cmocka_unit_test(test_starttls_handshake_and_dialogue),
	    cmocka_unit_test(test_message_source),
	    cmocka_unit_test(test_target_families),
	    cmocka_unit_test(test_size_parsers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
