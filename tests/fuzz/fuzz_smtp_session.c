/*
 * fuzz_smtp_session.c: the SMTP engine (smtp/) over whole sessions.
 *
 * Input: one octet of settings, one octet that picks how the rest is cut
 * into client chunks, then the bytes a client sends.  The harness is the
 * host: it feeds the chunks, drains the replies after every call, stores
 * every message (or fails it, by setting), answers RCPT like a small MX
 * (example.org is ours; the local part picks unknown/tempfail/full), may
 * trust the peer as a proxy (XCLIENT), and after STARTTLS drops the rest of
 * the chunk and goes on as if the handshake had completed, the next chunks
 * being the decrypted stream.
 *
 * What must hold besides "no crash, no leak":
 *  - smtp_session.h's promise: cutting the input differently gives the same
 *    replies and the same messages, byte for byte (checked without STARTTLS,
 *    where the host throws input away by design): the input is fed in
 *    chunks, whole, and one octet at a time;
 *  - no command runs that a CRLF-only line splitter (a strict proxy in front
 *    of us) would not have produced: fed one octet at a time, in a command
 *    state the engine replies only at the LF of a CR LF of the current line,
 *    at most one reply (and a 421) per line, and a line holding a bare CR or
 *    LF, a NUL or over 510 octets gets its refusal and nothing else;
 *  - a stored message has CRLF line ends only (a bare LF or CR is refused or
 *    normalised, never stored: the smuggling defence) and no NUL (refused
 *    under either policy), at least one and at most max_recipients
 *    recipients, and no more content than SIZE allows;
 *  - input is consumed, or held back only for pending output;
 *  - the body scanners agree (smtp_data.h): the run in chunks uses the best
 *    one the CPU has (AVX2 or SSE2), the run fed whole SSE2, the run octet
 *    by octet the scalar one, and one more run with the byte-at-a-time
 *    reference, cut as the first, must give the first's transcript (with
 *    STARTTLS too, since both are cut alike).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pa.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_session.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define MAX_SIZE 4096             /* small, so that the fuzzer reaches the SIZE limit */
#define COMMAND_TIMEOUT_MS 300000 /* also tells a command state from DATA/BDAT */
#define LINE_TEXT_MAX 510         /* RFC 5321 4.5.3.1.4: 512 octets with the CR LF */
#define MAX_RCPTS 4               /* likewise for too many recipients */
#define RECEIVED_MAX 2048         /* the Received: header, HELO and one recipient in it */

enum {
	S_NORMALIZE = 1 << 0, /* bare_lf = normalise rather than refuse */
	S_TLS = 1 << 1,       /* offer STARTTLS */
	S_TLS_REQUIRED = 1 << 2,
	S_STORE_FAILS = 1 << 3, /* every message gets 451 */
	S_SHUTDOWN = 1 << 4,    /* SIGTERM after the input */
	S_TIMEOUT = 1 << 5,     /* a timeout after the input */
	S_REWRITE = 1 << 6,     /* aliases: rcpts rewritten to a canonical address */
	S_TRUSTED = 1 << 7,     /* the peer is a trusted proxy: XCLIENT allowed */
};

struct host {
	uint8_t settings;
	unsigned next_qid;
	char *log; /* the replies, then every stored message: what two runs must agree on */
	size_t log_len;
	char *out; /* the replies alone */
	size_t out_len;
	bool closed;
};

static void
append_to(char **buf, size_t *len, const void *p, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	CHECK(*buf != NULL);
	memcpy(*buf + *len, p, n);
	*len += n;
}

static void
append(struct host *h, const void *p, size_t n)
{
	append_to(&h->log, &h->log_len, p, n);
}

/* "alias-X@example.org" (with S_REWRITE) is stored as "X@example.org". */
static enum smtp_rcpt_verdict
rcpt_check(void *host, const char *addr, char canonical[SMTP_PATH_MAX + 1])
{
	const struct host *h = host;
	const char *at = strrchr(addr, '@');

	if (at == NULL)
		return strcasecmp(addr, "postmaster") == 0 ? SMTP_RCPT_ACCEPT
		                                           : SMTP_RCPT_RELAY_DENIED;
	if (strcasecmp(at + 1, "example.org") != 0)
		return SMTP_RCPT_RELAY_DENIED;
	if (strncmp(addr, "unknown", 7) == 0)
		return SMTP_RCPT_UNKNOWN_USER;
	if (strncmp(addr, "tempfail", 8) == 0)
		return SMTP_RCPT_TEMPFAIL;
	if (strncmp(addr, "full", 4) == 0)
		return SMTP_RCPT_SPOOL_FULL;
	CHECK(canonical[0] == '\0' && strlen(addr) <= SMTP_PATH_MAX);
	if ((h->settings & S_REWRITE) && strncmp(addr, "alias-", 6) == 0)
		memcpy(canonical, addr + 6, strlen(addr + 6) + 1);
	return SMTP_RCPT_ACCEPT;
}

static enum smtp_mail_verdict
mail_check(void *host, const char *from)
{
	(void)host;
	return strncmp(from, "paused", 6) == 0 ? SMTP_MAIL_TEMPFAIL : SMTP_MAIL_ACCEPT;
}

/* XCLIENT named another client: 192.0.2.66 stands for an address over its limit. */
static int
client_changed(void *host, const char *addr, unsigned port)
{
	(void)host;
	(void)port;
	return strcmp(addr, "192.0.2.66") == 0 ? SMTP_REFUSAL_CONN_PER_IP : SMTP_REFUSAL_NONE;
}

static void
new_queue_id(void *host, char out[SMTP_QUEUE_ID_MAX])
{
	struct host *h = host;

	snprintf(out, SMTP_QUEUE_ID_MAX, "Q%05u", ++h->next_qid);
}

static time_t
now(void *host)
{
	(void)host;
	return 1700000000;
}

static void
refused(void *host, int refusal, const char *detail)
{
	(void)host;
	(void)detail;
	CHECK(refusal > SMTP_REFUSAL_NONE && refusal < SMTP_REFUSAL_COUNT);
}

static void
drain(struct host *h, struct smtp_session *s)
{
	size_t len;
	const uint8_t *p = smtp_session_output(s, &len);

	append(h, p, len);
	append_to(&h->out, &h->out_len, p, len);
	smtp_session_output_consumed(s, len);
}

static void
store(struct host *h, struct smtp_session *s)
{
	const struct smtp_message *m = smtp_session_message(s);

	CHECK(m != NULL && smtp_session_awaiting_store(s));
	CHECK(m->nrcpt >= 1 && m->nrcpt <= MAX_RCPTS);
	CHECK(m->size <= MAX_SIZE + RECEIVED_MAX);
	for (size_t i = 0; i < m->size; i++) {
		CHECK(m->data[i] != '\0');
		if (m->data[i] == '\n')
			CHECK(i > 0 && m->data[i - 1] == '\r');
		if (m->data[i] == '\r')
			CHECK(i + 1 < m->size && m->data[i + 1] == '\n');
	}
	append(h, "\n--- message ", 13);
	append(h, m->queue_id, strlen(m->queue_id));
	append(h, m->mail_from, strlen(m->mail_from) + 1);
	for (size_t i = 0; i < m->nrcpt; i++)
		append(h, m->rcpts[i], strlen(m->rcpts[i]) + 1);
	append(h, m->data, m->size);
	smtp_session_message_done(s, (h->settings & S_STORE_FAILS) ? PA_ERROR : PA_OK);
}

/* The reply lines in out[0..len): how many are final ("ddd "), and the codes of the first two. */
static size_t
final_replies(const char *out, size_t len, char first[4], char second[4])
{
	size_t n = 0, off = 0;

	while (off < len) {
		const char *eol = memchr(out + off, '\n', len - off);
		size_t line = eol != NULL ? (size_t)(eol - out - off) + 1 : len - off;

		CHECK(line >= 6 && out[off + line - 2] == '\r'); /* "ddd?" ... CR LF */
		if (out[off + 3] == ' ') {
			if (n < 2)
				memcpy(n == 0 ? first : second, out + off, 3);
			n++;
		}
		off += line;
	}
	return n;
}

static bool
starts(const char *out, size_t len, const char *prefix)
{
	return len >= strlen(prefix) && memcmp(out, prefix, strlen(prefix)) == 0;
}

/*
 * The CRLF-only line splitter, checked one octet at a time: octet i of the
 * client's input was fed in a command state, and the engine answered `out`
 * for it, after which it still reads commands (or is closed) when
 * still_command.  *line_start is where the current command line began.
 */
static void
check_command_octet(const uint8_t *in, size_t i, size_t *line_start, const char *out,
                    size_t out_len, bool still_command)
{
	char first[4] = "", second[4] = "";
	size_t line_len, replies;
	bool bad;

	if (in[i] != '\n' || i == *line_start || in[i - 1] != '\r') {
		/* Inside a line: no command has ended, so none may have run. */
		CHECK(out_len == 0 && still_command);
		return;
	}
	line_len = i - 1 - *line_start;
	bad = line_len > LINE_TEXT_MAX || memchr(in + *line_start, '\r', line_len) != NULL ||
	      memchr(in + *line_start, '\n', line_len) != NULL ||
	      memchr(in + *line_start, '\0', line_len) != NULL;
	*line_start = i + 1;
	replies = final_replies(out, out_len, first, second);
	/* One reply per line, and a 421 when it ends the session. */
	CHECK(replies <= 1 || (replies == 2 && strcmp(second, "421") == 0));
	if (!bad)
		return;
	CHECK(still_command); /* neither DATA nor BDAT started */
	if (line_len > LINE_TEXT_MAX)
		CHECK(starts(out, out_len, "500 5.5.2 Line too long\r\n"));
	else
		CHECK(
		    starts(out, out_len, "500 5.5.2 Error: bare LF or CR in command refused\r\n") ||
		    starts(out, out_len, "500 5.5.2 Error: NUL in command refused\r\n") ||
		    starts(out, out_len, "421 4.7.0 ")); /* limits.commands */
}

/* Chunk lengths: 1..max from a small PRNG; seed 0 means everything at once. */
static size_t
next_chunk(uint32_t *rng, uint8_t seed, size_t left)
{
	size_t n;

	if (seed == 0)
		return left;
	*rng = *rng * 1103515245u + 12345u;
	n = 1 + (*rng >> 16) % (1u + (seed & 0x3f) * 4u);
	return n < left ? n : left;
}

/* seed: how to cut the input (see next_chunk()); bytewise: one octet at a time, checked. */
static void
run(struct host *h, uint8_t seed, bool bytewise, const uint8_t *in, size_t len)
{
	struct smtp_config cfg = {
	    .hostname = "mx.example.org",
	    .max_message_size = MAX_SIZE,
	    .max_recipients = MAX_RCPTS,
	    .max_errors = 10,
	    .bare_lf = (h->settings & S_NORMALIZE) ? SMTP_BARE_LF_NORMALIZE : SMTP_BARE_LF_REJECT,
	    .command_timeout_ms = COMMAND_TIMEOUT_MS,
	    .data_timeout_ms = 180000,
	    .rcpt_check = rcpt_check,
	    .new_queue_id = new_queue_id,
	    .now = now,
	    .refused = refused,
	    .tls_available = (h->settings & S_TLS) != 0,
	    .tls_required = (h->settings & S_TLS_REQUIRED) != 0,
	    .mail_check = mail_check,
	    .max_commands = 200,
	    .client_changed = client_changed,
	};
	struct smtp_session *s = smtp_session_new(&cfg, h, "192.0.2.1");
	uint32_t rng = seed;
	size_t off = 0, line_start = 0;

	CHECK(s != NULL);
	smtp_session_set_trusted(s, (h->settings & S_TRUSTED) != 0);
	smtp_session_greet(s);
	drain(h, s);
	while (off < len && !h->closed) {
		size_t n = bytewise ? 1 : next_chunk(&rng, seed, len - off), pos = 0;
		bool command = smtp_session_timeout_ms(s) == COMMAND_TIMEOUT_MS;
		size_t out_before = h->out_len;

		while (pos < n && !h->closed) {
			size_t used = 0, pending;
			enum smtp_input_status st =
			    smtp_session_input(s, in + off + pos, n - pos, &used);

			CHECK(used <= n - pos);
			pos += used;
			smtp_session_output(s, &pending);
			if (st == SMTP_MESSAGE_READY) {
				drain(h,
				      s); /* the replies before the message, however it was cut */
				store(h, s);
			} else if (st == SMTP_CLOSE) {
				CHECK(smtp_session_closing(s));
				h->closed = true;
			} else if (st == SMTP_STARTTLS) {
				/* What follows STARTTLS in the same read is injection: dropped. */
				CHECK(cfg.tls_available && pos == n);
				drain(h, s);
				smtp_session_tls_started(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
				CHECK(smtp_session_tls_active(s));
			} else if (used == 0) {
				CHECK(pending > 0); /* only output backpressure holds input back */
			}
			drain(h, s);
		}
		if (bytewise && command)
			check_command_octet(
			    in, off, &line_start, h->out + out_before, h->out_len - out_before,
			    h->closed || smtp_session_timeout_ms(s) == COMMAND_TIMEOUT_MS);
		else if (bytewise)
			line_start = off + 1; /* content: a command line can only start after it */
		off += n;
	}
	if (!h->closed && (h->settings & S_SHUTDOWN))
		smtp_session_shutdown(s);
	if (!h->closed && (h->settings & S_TIMEOUT) && !smtp_session_awaiting_store(s))
		smtp_session_timeout(s);
	drain(h, s);
	smtp_session_free(s);
}

static void
same_transcript(const struct host *x, const struct host *whole, const char *how)
{
	if (x->log_len == whole->log_len && memcmp(x->log, whole->log, x->log_len) == 0)
		return;
	/* For whoever triages the crash: the two transcripts. */
	fprintf(stderr, "--- %s:\n%.*s\n--- at once:\n%.*s\n", how, (int)x->log_len, x->log,
	        (int)whole->log_len, whole->log);
	abort();
}

/* Runs with the given body scanner, or with the best one when this CPU lacks it. */
static void
run_with(enum smtp_body_scanner which, struct host *h, uint8_t seed, bool bytewise,
         const uint8_t *in, size_t len)
{
	static enum smtp_body_scanner best = SMTP_SCANNER_COUNT;

	if (best == SMTP_SCANNER_COUNT)
		best = smtp_body_scanner(); /* what the constructor chose */
	if (!smtp_body_use_scanner(which))
		CHECK(smtp_body_use_scanner(best));
	run(h, seed, bytewise, in, len);
	CHECK(smtp_body_use_scanner(best));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct host a = {0}, b = {0}, c = {0}, d = {0};

	if (size < 2)
		return 0;
	a.settings = b.settings = c.settings = d.settings = data[0];
	run_with(SMTP_SCANNER_AVX2, &a, data[1], false, data + 2, size - 2);
	run_with(SMTP_SCANNER_SCALAR, &c, 0, true, data + 2, size - 2);
	run_with(SMTP_SCANNER_REFERENCE, &d, data[1], false, data + 2, size - 2);
	same_transcript(&a, &d, "with the reference scanner");
	/* With STARTTLS the host drops the rest of a read: cuts differ by design. */
	if (!(a.settings & S_TLS)) {
		const struct host *whole = &a;

		if (data[1] != 0) {
			run_with(SMTP_SCANNER_SSE2, &b, 0, false, data + 2, size - 2);
			same_transcript(&a, &b, "in chunks");
			whole = &b;
		}
		same_transcript(&c, whole, "octet by octet");
	}
	free(d.log);
	free(d.out);
	free(a.log);
	free(a.out);
	free(b.log);
	free(b.out);
	free(c.log);
	free(c.out);
	return 0;
}
