/*
 * milter_codec.c: the milter protocol's packets (milter_codec.h).
 *
 * The protocol is documented only by its implementations: libmilter's
 * mfdef.h and engine.c (Sendmail 8.14+, version 6) and Postfix's milter8.c;
 * the packet layout and the SMFIC_/SMFIR_/SMFIF_/SMFIP_ values here are
 * theirs.  The reply decoder is where a filter's bytes enter PigeonAir: it
 * checks every length against what was read and every string against what
 * may be copied into a stored message or an SMTP reply.
 */
#include "filter/milter_codec.h"

#include <string.h>

#include "core/buf.h"
#include "core/pa.h"

#define HEAD_LEN 5 /* the 32-bit length and the command octet */

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Packet writer: reserve once for the whole packet, so that a failure
 * leaves b as it was.
 */
struct packet {
	uint8_t *p;
};

static int
packet_begin(struct pa_buf *b, char cmd, size_t datalen, struct packet *pk)
{
	if (datalen > UINT32_MAX - 1 || pa_buf_reserve(b, HEAD_LEN + datalen) != PA_OK)
		return PA_ERROR;
	pk->p = b->data + b->len;
	put32(pk->p, (uint32_t)(datalen + 1));
	pk->p[4] = (uint8_t)cmd;
	pk->p += HEAD_LEN;
	b->len += HEAD_LEN + datalen;
	return PA_OK;
}

static void
packet_put(struct packet *pk, const void *data, size_t len)
{
	memcpy(pk->p, data, len);
	pk->p += len;
}

/* A C string with its NUL. */
static void
packet_str(struct packet *pk, const char *s, size_t len)
{
	packet_put(pk, s, len);
	*pk->p++ = '\0';
}

int
milter_put_optneg(struct pa_buf *b, uint32_t version, uint32_t actions, uint32_t protocol)
{
	struct packet pk;

	if (packet_begin(b, MILTER_CMD_OPTNEG, 12, &pk) != PA_OK)
		return PA_ERROR;
	put32(pk.p, version);
	put32(pk.p + 4, actions);
	put32(pk.p + 8, protocol);
	return PA_OK;
}

int
milter_put_macros(struct pa_buf *b, char stage, const char *const *pairs, size_t n)
{
	struct packet pk;
	size_t len = 1;

	for (size_t i = 0; i < 2 * n; i++)
		len += strlen(pairs[i]) + 1;
	if (packet_begin(b, MILTER_CMD_MACRO, len, &pk) != PA_OK)
		return PA_ERROR;
	*pk.p++ = (uint8_t)stage;
	for (size_t i = 0; i < 2 * n; i++)
		packet_str(&pk, pairs[i], strlen(pairs[i]));
	return PA_OK;
}

int
milter_put_connect(struct pa_buf *b, const char *hostname, char family, uint16_t port,
                   const char *addr)
{
	size_t hlen = strlen(hostname), alen = family == 'U' ? 0 : strlen(addr);
	size_t len = hlen + 1 + 1 + (family == 'U' ? 0 : 2 + alen + 1);
	struct packet pk;

	if (packet_begin(b, MILTER_CMD_CONNECT, len, &pk) != PA_OK)
		return PA_ERROR;
	packet_str(&pk, hostname, hlen);
	*pk.p++ = (uint8_t)family;
	if (family != 'U') {
		*pk.p++ = (uint8_t)(port >> 8);
		*pk.p++ = (uint8_t)port;
		packet_str(&pk, addr, alen);
	}
	return PA_OK;
}

static int
put_one_string(struct pa_buf *b, char cmd, const char *s)
{
	size_t len = strlen(s);
	struct packet pk;

	if (packet_begin(b, cmd, len + 1, &pk) != PA_OK)
		return PA_ERROR;
	packet_str(&pk, s, len);
	return PA_OK;
}

int
milter_put_helo(struct pa_buf *b, const char *helo)
{
	return put_one_string(b, MILTER_CMD_HELO, helo);
}

/* "<addr>" and its NUL: Postfix and Sendmail send the path with its brackets. */
static int
put_path(struct pa_buf *b, char cmd, const char *addr)
{
	size_t len = strlen(addr);
	struct packet pk;

	if (packet_begin(b, cmd, len + 3, &pk) != PA_OK)
		return PA_ERROR;
	*pk.p++ = '<';
	packet_put(&pk, addr, len);
	*pk.p++ = '>';
	*pk.p++ = '\0';
	return PA_OK;
}

int
milter_put_mail(struct pa_buf *b, const char *from)
{
	return put_path(b, MILTER_CMD_MAIL, from);
}

int
milter_put_rcpt(struct pa_buf *b, const char *rcpt)
{
	return put_path(b, MILTER_CMD_RCPT, rcpt);
}

int
milter_put_header(struct pa_buf *b, const char *name, size_t name_len, const char *value,
                  size_t value_len)
{
	struct packet pk;

	if (packet_begin(b, MILTER_CMD_HEADER, name_len + 1 + value_len + 1, &pk) != PA_OK)
		return PA_ERROR;
	packet_str(&pk, name, name_len);
	packet_str(&pk, value, value_len);
	return PA_OK;
}

int
milter_put_body(struct pa_buf *b, const uint8_t *data, size_t len)
{
	struct packet pk;

	if (len > MILTER_CHUNK_MAX || packet_begin(b, MILTER_CMD_BODY, len, &pk) != PA_OK)
		return PA_ERROR;
	packet_put(&pk, data, len);
	return PA_OK;
}

int
milter_put_bare(struct pa_buf *b, char cmd)
{
	struct packet pk;

	return packet_begin(b, cmd, 0, &pk);
}

bool
milter_no_reply(char cmd, uint32_t protocol)
{
	switch (cmd) {
	case MILTER_CMD_CONNECT:
		return protocol & MILTER_P_NR_CONN;
	case MILTER_CMD_HELO:
		return protocol & MILTER_P_NR_HELO;
	case MILTER_CMD_MAIL:
		return protocol & MILTER_P_NR_MAIL;
	case MILTER_CMD_RCPT:
		return protocol & MILTER_P_NR_RCPT;
	case MILTER_CMD_DATA:
		return protocol & MILTER_P_NR_DATA;
	case MILTER_CMD_HEADER:
		return protocol & MILTER_P_NR_HDR;
	case MILTER_CMD_EOH:
		return protocol & MILTER_P_NR_EOH;
	case MILTER_CMD_BODY:
		return protocol & MILTER_P_NR_BODY;
	case MILTER_CMD_OPTNEG:
	case MILTER_CMD_BODYEOB:
		return false;
	default: /* MACRO, ABORT, QUIT, QUIT_NC: never answered */
		return true;
	}
}

/* RFC 5322 2.2: a field name is printable US-ASCII but ':'. */
static bool
valid_name(const uint8_t *p, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 33 || p[i] > 126 || p[i] == ':')
			return false;
	return true;
}

/*
 * RFC 5322 2.2.3: a header value may break lines only to fold, i.e. before
 * a space or tab.  libmilter filters write LF or CRLF there; either is
 * accepted (the writer stores CRLF).  Anything else would let the filter
 * end the header and start another one, or the body.
 */
static bool
valid_value(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\r') {
			if (i + 1 >= len || p[i + 1] != '\n')
				return false;
		} else if (p[i] == '\n') {
			if (i + 1 >= len || (p[i + 1] != ' ' && p[i + 1] != '\t'))
				return false;
		}
	}
	return true;
}

/* name NUL value NUL, exactly filling data[0..len). */
static int
decode_header(const uint8_t *data, size_t len, struct milter_reply *out)
{
	const uint8_t *nul = memchr(data, '\0', len), *vnul;

	if (nul == NULL)
		return PA_ERROR;
	out->name = (const char *)data;
	out->name_len = (size_t)(nul - data);
	out->value = (const char *)nul + 1;
	vnul = memchr(nul + 1, '\0', len - out->name_len - 1);
	if (vnul == NULL || vnul != data + len - 1)
		return PA_ERROR;
	out->value_len = (size_t)(vnul - (nul + 1));
	if (!valid_name(data, out->name_len) || !valid_value(nul + 1, out->value_len))
		return PA_ERROR;
	return PA_OK;
}

static bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/*
 * RFC 5321 4.2: "NNN text", or several lines "NNN-text" CRLF ... "NNN text"
 * of one code; 4xx or 5xx only (a filter cannot make us say 250), printable
 * US-ASCII (RFC 5321 4.2.1 allows nothing else in the text).
 */
static int
decode_replycode(const uint8_t *data, size_t len, struct milter_reply *out)
{
	size_t tlen = len - 1, i = 0;

	if (len == 0 || data[len - 1] != '\0' || tlen < 3 || tlen > MILTER_REPLY_TEXT_MAX)
		return PA_ERROR;
	if ((data[0] != '4' && data[0] != '5') || !is_digit(data[1]) || !is_digit(data[2]))
		return PA_ERROR;
	while (i < tlen) {
		bool last;
		size_t end = i;

		if (tlen - i < 3 || memcmp(data + i, data, 3) != 0)
			return PA_ERROR;
		while (end < tlen && data[end] != '\r')
			end++;
		last = end == tlen;
		if (!last && (end + 1 >= tlen || data[end + 1] != '\n' || end + 2 == tlen))
			return PA_ERROR; /* CR only as CRLF, and a line must follow it */
		if (end > i + 3 && data[i + 3] != (last ? ' ' : '-'))
			return PA_ERROR;
		if (!last && end == i + 3)
			return PA_ERROR;
		for (size_t k = i + 3; k < end; k++)
			if (data[k] < 32 || data[k] > 126)
				return PA_ERROR;
		i = last ? end : end + 2;
	}
	out->text = (const char *)data;
	out->text_len = tlen;
	out->reply_code = (unsigned)(data[0] - '0') * 100 + (unsigned)(data[1] - '0') * 10 +
	                  (unsigned)(data[2] - '0');
	return PA_OK;
}

int
milter_decode(const uint8_t *in, size_t len, struct milter_reply *out)
{
	const uint8_t *data;
	uint32_t plen;
	size_t dlen;

	if (len < 4)
		return PA_AGAIN;
	plen = get32(in);
	if (plen == 0 || plen - 1 > MILTER_REPLY_MAX)
		return PA_ERROR;
	if (len - 4 < plen)
		return PA_AGAIN;
	memset(out, 0, sizeof(*out));
	out->code = in[4];
	data = in + HEAD_LEN;
	dlen = plen - 1;
	switch (out->code) {
	case MILTER_R_ACCEPT:
	case MILTER_R_CONTINUE:
	case MILTER_R_DISCARD:
	case MILTER_R_REJECT:
	case MILTER_R_TEMPFAIL:
	case MILTER_R_PROGRESS:
	case MILTER_R_SKIP:
		if (dlen != 0)
			return PA_ERROR;
		break;
	case MILTER_R_OPTNEG:
		/* Version 6 may append the macros it wants (SMFIR_SETSYMLIST's data): ignored. */
		if (dlen < 12)
			return PA_ERROR;
		out->version = get32(data);
		out->actions = get32(data + 4);
		out->protocol = get32(data + 8);
		break;
	case MILTER_R_ADDHEADER:
		if (decode_header(data, dlen, out) != PA_OK)
			return PA_ERROR;
		break;
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		if (dlen < 4)
			return PA_ERROR;
		out->index = get32(data);
		if (decode_header(data + 4, dlen - 4, out) != PA_OK)
			return PA_ERROR;
		break;
	case MILTER_R_REPLYCODE:
		if (decode_replycode(data, dlen, out) != PA_OK)
			return PA_ERROR;
		break;
	case MILTER_R_QUARANTINE: {
		const uint8_t *nul = dlen > 0 ? memchr(data, '\0', dlen) : NULL;

		if (nul == NULL || nul != data + dlen - 1)
			return PA_ERROR;
		for (size_t i = 0; i + 1 < dlen; i++)
			if (data[i] < 32 || data[i] > 126)
				return PA_ERROR;
		out->text = (const char *)data;
		out->text_len = dlen - 1;
		break;
	}
	case MILTER_R_REPLBODY:
		out->body = data;
		out->body_len = dlen;
		break;
	case MILTER_R_ADDRCPT:
	case MILTER_R_DELRCPT:
	case MILTER_R_ADDRCPT_PAR:
	case MILTER_R_SHUTDOWN:
	case MILTER_R_CHGFROM:
	case MILTER_R_CONN_FAIL:
	case MILTER_R_SETSYMLIST:
		break; /* known, never offered: the caller refuses them */
	default:
		return PA_ERROR;
	}
	return (int)(HEAD_LEN + dlen);
}
