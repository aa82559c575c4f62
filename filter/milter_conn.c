/*
 * milter_conn.c: one connection's exchange with its filter (milter_internal.h).
 *
 * A connection is a state machine: CONNECTING (a non-blocking connect),
 * NEGOTIATING (SMFIC_OPTNEG sent: version 6, the actions we allow and every
 * step a filter may skip or leave unanswered), IDLE, BUSY (carrying one
 * message).  A message on a connection goes through the protocol's steps
 * (macros, CONNECT, HELO, MAIL, RCPT..., DATA, HEADER..., EOH, BODY...,
 * BODYEOB), sending every step the filter will not answer at once and
 * stopping at each it will; the body goes out in chunks as the socket
 * drains, so a large message holds at most a few chunks of memory here.
 * After the filter's final word at end of message the connection is told
 * SMFIC_QUIT_NC (a new SMTP connection follows) and serves the next
 * message; after a verdict before the end, an error or a timeout it is
 * closed.  Every reply is checked against the step it answers and the
 * actions negotiated: anything else is a protocol error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/pa.h"
#include "filter/milter_edit.h"
#include "filter/milter_internal.h"
#include "smtp/smtp_session.h"

/* Puts one command; it awaits a reply unless the filter negotiated none for it. */
static int
sent(struct mconn *mc, char cmd, int rc)
{
	if (rc != PA_OK)
		return PA_ERROR;
	if (!milter_no_reply(cmd, mc->protocol))
		mc->awaiting = cmd;
	return PA_OK;
}

static int
put_macro(struct mconn *mc, char stage, const char *name, const char *value)
{
	const char *pairs[2] = {name, value};

	return milter_put_macros(&mc->out, stage, pairs, 1);
}

/* The client's address family for SMFIC_CONNECT: '4', '6', or 'U' when it is no address. */
static char
family_of(const char *addr)
{
	uint8_t buf[16];

	if (inet_pton(AF_INET, addr, buf) == 1)
		return '4';
	if (inet_pton(AF_INET6, addr, buf) == 1)
		return '6';
	return 'U';
}

/* One step of the message; PA_ERROR when the output buffer is full. */
static int
step(struct mconn *mc)
{
	const struct smtp_message *msg = mc->job->msg;
	uint32_t p = mc->protocol;
	struct milter_field f;
	int rc = PA_OK;

	switch (mc->step) {
	case ST_CONNECT:
		mc->step = ST_HELO;
		if (p & MILTER_P_NOCONNECT)
			break;
		if (put_macro(mc, MILTER_CMD_CONNECT, "j", mc->site->filters->hostname) != PA_OK ||
		    put_macro(mc, MILTER_CMD_CONNECT, "{daemon_name}",
		              mc->site->filters->hostname) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_CONNECT,
		          milter_put_connect(&mc->out, "unknown", family_of(msg->client_addr), 0,
		                             msg->client_addr));
		break;
	case ST_HELO:
		mc->step = ST_MAIL;
		if ((p & MILTER_P_NOHELO) || msg->helo == NULL || msg->helo[0] == '\0')
			break;
		rc = sent(mc, MILTER_CMD_HELO, milter_put_helo(&mc->out, msg->helo));
		break;
	case ST_MAIL:
		mc->step = ST_RCPT;
		if (p & MILTER_P_NOMAIL)
			break;
		if (put_macro(mc, MILTER_CMD_MAIL, "i", msg->queue_id) != PA_OK ||
		    put_macro(mc, MILTER_CMD_MAIL, "{mail_addr}", msg->mail_from) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_MAIL, milter_put_mail(&mc->out, msg->mail_from));
		break;
	case ST_RCPT:
		if ((p & MILTER_P_NORCPT) || mc->rcpt >= msg->nrcpt) {
			mc->step = ST_DATA;
			break;
		}
		if (put_macro(mc, MILTER_CMD_RCPT, "{rcpt_addr}", msg->rcpts[mc->rcpt]) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_RCPT, milter_put_rcpt(&mc->out, msg->rcpts[mc->rcpt]));
		mc->rcpt++;
		break;
	case ST_DATA:
		mc->step = ST_HEADERS;
		mc->pos = 0;
		if (p & MILTER_P_NODATA)
			break;
		rc = sent(mc, MILTER_CMD_DATA, milter_put_bare(&mc->out, MILTER_CMD_DATA));
		break;
	case ST_HEADERS:
		if (!milter_next_field(msg->data, msg->size, &mc->pos, &f)) {
			/* The empty line ends the section; the body is what follows it. */
			if (msg->size - mc->pos >= 2 && memcmp(msg->data + mc->pos, "\r\n", 2) == 0)
				mc->pos += 2;
			mc->step = ST_EOH;
			break;
		}
		if (p & MILTER_P_NOHDRS)
			break;
		{
			const char *v = (const char *)msg->data + f.value_off;
			size_t vlen = f.value_len;

			/* Sendmail's way: the value without its leading blanks, unless asked. */
			while (!(p & MILTER_P_HDR_LEADSPC) && vlen > 0 &&
			       (*v == ' ' || *v == '\t')) {
				v++;
				vlen--;
			}
			rc = sent(mc, MILTER_CMD_HEADER,
			          milter_put_header(&mc->out, (const char *)msg->data + f.off,
			                            f.name_len, v, vlen));
		}
		break;
	case ST_EOH:
		mc->step = ST_BODY;
		if (p & MILTER_P_NOEOH)
			break;
		rc = sent(mc, MILTER_CMD_EOH, milter_put_bare(&mc->out, MILTER_CMD_EOH));
		break;
	case ST_BODY: {
		size_t left = msg->size - mc->pos,
		       n = left < MILTER_CHUNK_MAX ? left : MILTER_CHUNK_MAX;

		if ((p & MILTER_P_NOBODY) || mc->body_skipped || left == 0) {
			mc->step = ST_EOB;
			break;
		}
		rc = sent(mc, MILTER_CMD_BODY, milter_put_body(&mc->out, msg->data + mc->pos, n));
		mc->pos += n;
		break;
	}
	case ST_EOB:
		mc->step = ST_WAIT_EOB;
		if (put_macro(mc, MILTER_CMD_BODYEOB, "i", msg->queue_id) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_BODYEOB, milter_put_bare(&mc->out, MILTER_CMD_BODYEOB));
		break;
	default:
		break;
	}
	return rc;
}

/* Writes what the socket takes; PA_ERROR when the connection is gone. */
static int
milter_conn_flush(struct milter_client *c, struct mconn *mc)
{
	while (pa_buf_pending(&mc->out) > 0) {
		ssize_t n = send(mc->fd, pa_buf_head(&mc->out), pa_buf_pending(&mc->out),
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return PA_OK;
			return PA_ERROR;
		}
		pa_buf_consume(&mc->out, (size_t)n);
		mc->deadline = c->now + mc->site->cfg.timeout_ms; /* progress */
	}
	return PA_OK;
}

/* Sends the message's steps up to the next one the filter answers. */
void
milter_conn_advance(struct milter_client *c, struct mconn *mc)
{
	while (mc->state == MC_BUSY && mc->awaiting == 0 && mc->step != ST_WAIT_EOB &&
	       pa_buf_pending(&mc->out) < OUT_LOW_WATER) {
		if (step(mc) != PA_OK) {
			milter_conn_fail(c, mc, "output buffer full");
			return;
		}
	}
	mc->deadline = c->now + mc->site->cfg.timeout_ms;
	if (milter_conn_flush(c, mc) != PA_OK)
		milter_conn_fail(c, mc, "send() failed");
}

/* The filter gave its final word at end of message: the connection serves the next one. */
static void
conn_reuse(struct milter_client *c, struct mconn *mc)
{
	if (milter_put_bare(&mc->out, MILTER_CMD_QUIT_NC) != PA_OK) {
		mc->job = NULL;
		milter_conn_fail(c, mc, "output buffer full");
		return;
	}
	milter_conn_idle(c, mc);
	if (mc->state == MC_IDLE && milter_conn_flush(c, mc) != PA_OK)
		milter_conn_fail(c, mc, "send() failed");
}

/*
 * The message is done with this connection's filter: it goes on to the
 * next filter (accept), or is finished (the other verdicts).  The
 * connection is reused after the end of message, closed before it.
 */
static void
conn_done(struct milter_client *c, struct mconn *mc, enum milter_action action, const char *reply,
          size_t reply_len)
{
	struct job *job = mc->job;
	bool at_end = mc->awaiting == MILTER_CMD_BODYEOB;

	if (action == MILTER_ACCEPT && job->body_next_set) {
		/* SMFIR_REPLBODY: lines end in CRLF, or it would smuggle (docs/milter.md). */
		if (!milter_crlf_only(pa_buf_head(&job->body_next),
		                      pa_buf_pending(&job->body_next))) {
			count(&c->stats.protocol_errors);
			milter_conn_fail(c, mc, "a new body with a bare CR or LF");
			return;
		}
		pa_buf_free(&job->body);
		job->body = job->body_next;
		job->body_set = true;
		job->body_next_set = false;
		pa_buf_init(&job->body_next, 4096, BODY_MAX);
	}
	mc->job = NULL;
	mc->awaiting = 0;
	if (at_end)
		conn_reuse(c, mc);
	else
		milter_conn_retire(c, mc); /* its session state is the filter's: not reused */
	if (action == MILTER_ACCEPT) {
		job->site++;
		milter_dispatch(c, job);
	} else {
		milter_finish(c, job, action, reply, reply_len);
	}
}

static void
negotiated(struct milter_client *c, struct mconn *mc, const struct milter_reply *r)
{
	if (r->code != MILTER_R_OPTNEG || r->version < 2 || r->version > MILTER_VERSION ||
	    (r->protocol & ~OFFERED_PROTOCOL) != 0) {
		count(&c->stats.protocol_errors);
		milter_conn_fail(c, mc, "negotiation refused (version or steps we do not offer)");
		return;
	}
	mc->protocol = r->protocol;
	mc->actions = r->actions & OFFERED_ACTIONS;
	milter_conn_idle(c, mc);
}

/* One reply.  The connection may be closed, idle or busy with another message after it. */
static void
handle_reply(struct milter_client *c, struct mconn *mc, const struct milter_reply *r)
{
	struct job *job = mc->job;
	bool at_end = mc->awaiting == MILTER_CMD_BODYEOB;
	int rc = PA_OK;

	if (mc->state == MC_NEGOTIATING) {
		negotiated(c, mc, r);
		return;
	}
	if (mc->state != MC_BUSY || mc->awaiting == 0)
		goto protocol_error;
	switch (r->code) {
	case MILTER_R_PROGRESS:
		mc->deadline = c->now + mc->site->cfg.timeout_ms;
		return;
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
		if (!at_end || !(mc->actions & MILTER_ACT_ADDHDRS))
			goto protocol_error;
		rc = milter_edit_push(&job->edits, MILTER_EDIT_ADD, r->index, r->name, r->name_len,
		                      r->value, r->value_len);
		break;
	case MILTER_R_CHGHEADER:
		if (!at_end || !(mc->actions & MILTER_ACT_CHGHDRS))
			goto protocol_error;
		rc = milter_edit_push(&job->edits, MILTER_EDIT_CHANGE, r->index, r->name,
		                      r->name_len, r->value, r->value_len);
		break;
	case MILTER_R_REPLBODY:
		if (!at_end || !(mc->actions & MILTER_ACT_CHGBODY))
			goto protocol_error;
		job->body_next_set = true;
		rc = pa_buf_append(&job->body_next, r->body, r->body_len);
		break;
	case MILTER_R_QUARANTINE: {
		/* No hold queue here: stored, and marked for the delivery tier (docs/milter.md). */
		static const char name[] = "X-PigeonAir-Quarantine";

		if (!at_end || !(mc->actions & MILTER_ACT_QUARANTINE))
			goto protocol_error;
		count(&c->stats.quarantined);
		rc = milter_edit_push(&job->edits, MILTER_EDIT_ADD, 0, name, sizeof(name) - 1,
		                      r->text_len > 0 ? r->text : "quarantined",
		                      r->text_len > 0 ? r->text_len : 11);
		break;
	}
	case MILTER_R_CONTINUE:
		if (at_end) {
			conn_done(c, mc, MILTER_ACCEPT, NULL, 0);
			return;
		}
		mc->awaiting = 0;
		milter_conn_advance(c, mc);
		return;
	case MILTER_R_SKIP:
		if (mc->awaiting != MILTER_CMD_BODY || !(mc->protocol & MILTER_P_SKIP))
			goto protocol_error;
		mc->body_skipped = true;
		mc->awaiting = 0;
		milter_conn_advance(c, mc);
		return;
	case MILTER_R_ACCEPT:
		conn_done(c, mc, MILTER_ACCEPT, NULL, 0);
		return;
	case MILTER_R_REJECT:
		conn_done(c, mc, MILTER_REJECT, MILTER_REPLY_REJECT,
		          sizeof(MILTER_REPLY_REJECT) - 1);
		return;
	case MILTER_R_TEMPFAIL:
		conn_done(c, mc, MILTER_TEMPFAIL, MILTER_REPLY_TEMPFAIL,
		          sizeof(MILTER_REPLY_TEMPFAIL) - 1);
		return;
	case MILTER_R_REPLYCODE:
		conn_done(c, mc, r->reply_code >= 500 ? MILTER_REJECT : MILTER_TEMPFAIL, r->text,
		          r->text_len);
		return;
	case MILTER_R_DISCARD:
		conn_done(c, mc, MILTER_DISCARD, NULL, 0);
		return;
	default:
		goto protocol_error;
	}
	if (rc != PA_OK) {
		milter_conn_fail(c, mc, "too many edits");
		return;
	}
	return;

protocol_error:
	count(&c->stats.protocol_errors);
	milter_conn_fail(c, mc, "a reply the protocol does not allow here");
	return;
}

void
milter_conn_readable(struct milter_client *c, struct mconn *mc)
{
	ssize_t n;

	if (pa_buf_reserve(&mc->in, 16384) != PA_OK) {
		milter_conn_fail(c, mc, "input buffer full");
		return;
	}
	n = recv(mc->fd, mc->in.data + mc->in.len, mc->in.cap - mc->in.len, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		milter_conn_fail(c, mc,
		                 n == 0 ? "connection closed by the filter" : "recv() failed");
		return;
	}
	mc->in.len += (size_t)n;
	while (!mc->dead) {
		struct milter_reply r;
		int used = milter_decode(pa_buf_head(&mc->in), pa_buf_pending(&mc->in), &r);

		if (used == PA_AGAIN)
			return;
		if (used < 0) {
			count(&c->stats.protocol_errors);
			milter_conn_fail(c, mc, "malformed reply");
			return;
		}
		/*
		 * Consuming moves nothing (core/buf.h), and nothing is read into
		 * in while the reply is handled: its strings stay valid.
		 */
		pa_buf_consume(&mc->in, (size_t)used);
		handle_reply(c, mc, &r);
	}
}

void
milter_conn_writable(struct milter_client *c, struct mconn *mc)
{
	if (mc->state == MC_CONNECTING) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(mc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1 || soerr != 0) {
			char why[128];

			count(&c->stats.connect_failures);
			snprintf(why, sizeof(why), "connect() failed: %s",
			         strerror(soerr != 0 ? soerr : errno));
			milter_conn_fail(c, mc, why);
			return;
		}
		mc->state = MC_NEGOTIATING;
		if (milter_put_optneg(&mc->out, MILTER_VERSION, OFFERED_ACTIONS,
		                      OFFERED_PROTOCOL) != PA_OK) {
			milter_conn_fail(c, mc, "output buffer full");
			return;
		}
		mc->awaiting = MILTER_CMD_OPTNEG;
		mc->deadline = c->now + mc->site->cfg.timeout_ms;
	}
	if (milter_conn_flush(c, mc) != PA_OK) {
		milter_conn_fail(c, mc, "send() failed");
		return;
	}
	if (mc->state == MC_BUSY && mc->awaiting == 0 && mc->step != ST_WAIT_EOB)
		milter_conn_advance(c, mc);
}
