/*
 * spool_record.c: encoders and bounds-checked decoders for spool keys and
 * values (docs/spool-format.md).
 *
 * Every read goes through struct cursor, which refuses to move past the end
 * of its input and latches a failure; decoders check the latch once at the
 * end, so a truncated or corrupt value can make them fail but never read out
 * of bounds.
 */
#include "spool/spool_record.h"

#include <stdlib.h>
#include <string.h>

#include "core/pa.h"

struct cursor {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *
take(struct cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->bad || n > c->left) {
		c->bad = true;
		return NULL;
	}
	p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

static uint64_t
take_be(struct cursor *c, size_t n)
{
	const uint8_t *p = take(c, n);

	return p == NULL ? 0 : spool_get_be(p, n);
}

/* A length-prefixed string; NUL bytes are refused because it becomes a C string. */
static const uint8_t *
take_str(struct cursor *c, size_t *len)
{
	size_t n = take_be(c, 2);
	const uint8_t *p = take(c, n);

	*len = 0;
	if (p == NULL)
		return NULL;
	if (memchr(p, '\0', n) != NULL) {
		c->bad = true;
		return NULL;
	}
	*len = n;
	return p;
}

uint64_t
spool_get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

uint8_t *
spool_put_be(uint8_t *out, uint64_t v, size_t n)
{
	for (size_t i = n; i > 0; i--) {
		out[i - 1] = v & 0xff;
		v >>= 8;
	}
	return out + n;
}

static uint8_t *
put_str(uint8_t *out, const char *s, size_t len)
{
	out = spool_put_be(out, len, 2);
	memcpy(out, s, len);
	return out + len;
}

bool
spool_queue_id_valid(const char *qid, size_t len)
{
	if (qid == NULL || len == 0 || len > SPOOL_QID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (qid[i] < 0x21 || qid[i] > 0x7e)
			return false;
	return true;
}

size_t
spool_key_prefix(uint8_t out[SPOOL_KEY_MAX], enum spool_key_type type)
{
	out[0] = (uint8_t)type;
	out[1] = SPOOL_KEY_VERSION;
	return SPOOL_KEY_PREFIX_LEN;
}

size_t
spool_key_meta(uint8_t out[SPOOL_KEY_MAX])
{
	return spool_key_prefix(out, SPOOL_KEY_META);
}

static size_t
key_with_qid(uint8_t out[SPOOL_KEY_MAX], enum spool_key_type type, const char *qid, size_t len)
{
	size_t n = spool_key_prefix(out, type);

	if (!spool_queue_id_valid(qid, len))
		return 0;
	memcpy(out + n, qid, len);
	return n + len;
}

size_t
spool_key_message(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len)
{
	return key_with_qid(out, SPOOL_KEY_MESSAGE, qid, len);
}

size_t
spool_key_body(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len)
{
	return key_with_qid(out, SPOOL_KEY_BODY, qid, len);
}

size_t
spool_key_location(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len)
{
	return key_with_qid(out, SPOOL_KEY_LOCATION, qid, len);
}

size_t
spool_key_checkpoint(uint8_t out[SPOOL_KEY_MAX])
{
	return spool_key_prefix(out, SPOOL_KEY_CHECKPOINT);
}

size_t
spool_key_delivery(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len, uint16_t rcpt)
{
	size_t n = key_with_qid(out, SPOOL_KEY_DELIVERY, qid, len);

	if (n == 0)
		return 0;
	/* The NUL ends the queue id, so "AB" + index never collides with "ABC". */
	out[n++] = '\0';
	spool_put_be(out + n, rcpt, 2);
	return n + 2;
}

size_t
spool_key_schedule(uint8_t out[SPOOL_KEY_MAX], uint64_t next_attempt_us, const char *qid,
                   size_t len)
{
	size_t n = spool_key_prefix(out, SPOOL_KEY_SCHEDULE);

	if (!spool_queue_id_valid(qid, len))
		return 0;
	spool_put_be(out + n, next_attempt_us, 8);
	memcpy(out + n + 8, qid, len);
	return n + 8 + len;
}

static int
decode_qid(const uint8_t *p, size_t len, struct spool_key *out)
{
	if (!spool_queue_id_valid((const char *)p, len))
		return PA_ERROR;
	memcpy(out->queue_id, p, len);
	out->queue_id[len] = '\0';
	out->queue_id_len = len;
	return PA_OK;
}

int
spool_key_decode(const uint8_t *in, size_t len, struct spool_key *out)
{
	const uint8_t *nul;

	memset(out, 0, sizeof(*out));
	if (in == NULL || len < SPOOL_KEY_PREFIX_LEN || in[1] != SPOOL_KEY_VERSION)
		return PA_ERROR;
	out->type = (enum spool_key_type)in[0];
	in += SPOOL_KEY_PREFIX_LEN;
	len -= SPOOL_KEY_PREFIX_LEN;
	switch (out->type) {
	case SPOOL_KEY_META:
	case SPOOL_KEY_CHECKPOINT:
		return len == 0 ? PA_OK : PA_ERROR;
	case SPOOL_KEY_MESSAGE:
	case SPOOL_KEY_BODY:
	case SPOOL_KEY_LOCATION:
		return decode_qid(in, len, out);
	case SPOOL_KEY_DELIVERY:
		nul = memchr(in, '\0', len);
		if (nul == NULL || (size_t)(in + len - nul) != 3)
			return PA_ERROR;
		out->rcpt = (uint16_t)(nul[1] << 8 | nul[2]);
		return decode_qid(in, (size_t)(nul - in), out);
	case SPOOL_KEY_SCHEDULE:
		if (len < 8)
			return PA_ERROR;
		for (size_t i = 0; i < 8; i++)
			out->next_attempt_us = out->next_attempt_us << 8 | in[i];
		return decode_qid(in + 8, len - 8, out);
	}
	return PA_ERROR;
}

void
spool_record_meta_encode(const struct spool_meta *meta, uint8_t out[SPOOL_META_SIZE])
{
	uint8_t *p = out;

	*p++ = SPOOL_VALUE_VERSION;
	p = spool_put_be(p, meta->format, 4);
	p = spool_put_be(p, meta->shards, 4);
	p = spool_put_be(p, meta->shard, 4);
	spool_put_be(p, meta->created_us, 8);
}

int
spool_record_meta_decode(const uint8_t *in, size_t len, struct spool_meta *out)
{
	struct cursor c = {in, in == NULL ? 0 : len, in == NULL};

	if (take_be(&c, 1) != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	out->format = (uint32_t)take_be(&c, 4);
	out->shards = (uint32_t)take_be(&c, 4);
	out->shard = (uint32_t)take_be(&c, 4);
	out->created_us = take_be(&c, 8);
	return c.bad || c.left != 0 ? PA_ERROR : PA_OK;
}

static size_t
str_len(const char *s)
{
	return s == NULL ? 0 : strlen(s);
}

long
spool_record_msg_size(const struct spool_msg_record *rec)
{
	const char *strs[] = {rec->mail_from, rec->client_addr, rec->helo};
	size_t n = 1 + 1 + 8 + 8 + 2;

	if ((rec->flags & ~SPOOL_MSG_FLAGS_KNOWN) != 0 || rec->nrcpt == 0 ||
	    rec->nrcpt > SPOOL_RCPT_MAX)
		return PA_ERROR;
	for (size_t i = 0; i < pa_array_size(strs); i++) {
		size_t len = str_len(strs[i]);

		if (len > SPOOL_STR_MAX)
			return PA_ERROR;
		n += 2 + len;
	}
	for (size_t i = 0; i < rec->nrcpt; i++) {
		size_t len = str_len(rec->rcpts[i]);

		if (len > SPOOL_STR_MAX)
			return PA_ERROR;
		n += 2 + len;
	}
	return (long)n;
}

void
spool_record_msg_encode(const struct spool_msg_record *rec, uint8_t *out)
{
	*out++ = SPOOL_VALUE_VERSION;
	*out++ = rec->flags;
	out = spool_put_be(out, rec->arrival_us, 8);
	out = spool_put_be(out, rec->size, 8);
	out = put_str(out, rec->mail_from, str_len(rec->mail_from));
	out = put_str(out, rec->client_addr, str_len(rec->client_addr));
	out = put_str(out, rec->helo, str_len(rec->helo));
	out = spool_put_be(out, rec->nrcpt, 2);
	for (size_t i = 0; i < rec->nrcpt; i++)
		out = put_str(out, rec->rcpts[i], str_len(rec->rcpts[i]));
}

/* Where msg_walk() puts the strings it decodes; NULL when it only measures. */
struct msg_sink {
	char *strings;
	size_t used;
};

static const char *
walk_str(struct cursor *c, struct msg_sink *sink)
{
	size_t n;
	const uint8_t *s = take_str(c, &n);
	char *copy;

	if (s == NULL)
		return NULL;
	copy = sink->strings == NULL ? NULL : sink->strings + sink->used;
	if (copy != NULL) {
		memcpy(copy, s, n);
		copy[n] = '\0';
	}
	sink->used += n + 1;
	return copy == NULL ? "" : copy;
}

/*
 * Walks an encoded message record.  With rcpts == NULL it only validates and
 * measures the string bytes the record needs; otherwise it copies the strings
 * into sink and points the record's fields at the copies.
 */
static int
msg_walk(const uint8_t *in, size_t len, struct spool_msg_record *rec, const char **rcpts,
         struct msg_sink *sink)
{
	struct cursor c = {in, len, false};

	if (take_be(&c, 1) != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	rec->flags = (uint8_t)take_be(&c, 1);
	rec->arrival_us = take_be(&c, 8);
	rec->size = take_be(&c, 8);
	if ((rec->flags & ~SPOOL_MSG_FLAGS_KNOWN) != 0)
		return PA_ERROR;
	rec->mail_from = walk_str(&c, sink);
	rec->client_addr = walk_str(&c, sink);
	rec->helo = walk_str(&c, sink);
	rec->nrcpt = take_be(&c, 2);
	if (c.bad || rec->nrcpt == 0)
		return PA_ERROR;
	for (size_t i = 0; i < rec->nrcpt && !c.bad; i++) {
		const char *s = walk_str(&c, sink);

		if (rcpts != NULL)
			rcpts[i] = s;
	}
	return c.bad || c.left != 0 ? PA_ERROR : PA_OK;
}

int
spool_record_msg_decode(const uint8_t *in, size_t len, struct spool_msg_record **out)
{
	struct spool_msg_record probe;
	struct msg_sink sink = {NULL, 0};
	struct spool_msg_record *rec;
	const char **rcpts;

	*out = NULL;
	if (in == NULL || msg_walk(in, len, &probe, NULL, &sink) != PA_OK)
		return PA_ERROR;
	/* One block, so that a caller (and a fuzzer) frees it with a single free(). */
	rec = malloc(sizeof(*rec) + probe.nrcpt * sizeof(*rcpts) + sink.used);
	if (rec == NULL)
		return PA_ERROR;
	rcpts = (const char **)(rec + 1);
	sink.strings = (char *)(rcpts + probe.nrcpt);
	sink.used = 0;
	if (msg_walk(in, len, rec, rcpts, &sink) != PA_OK) {
		free(rec);
		return PA_ERROR;
	}
	rec->rcpts = rcpts;
	*out = rec;
	return PA_OK;
}

uint8_t
spool_record_body_header(void)
{
	return SPOOL_VALUE_VERSION;
}

int
spool_record_body_decode(const uint8_t *in, size_t len, const uint8_t **data, size_t *size)
{
	if (in == NULL || len < SPOOL_BODY_HEADER || in[0] != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	*data = in + SPOOL_BODY_HEADER;
	*size = len - SPOOL_BODY_HEADER;
	return PA_OK;
}

void
spool_record_location_encode(const struct spool_location *loc, uint8_t out[SPOOL_LOCATION_SIZE])
{
	uint8_t *p = out;

	*p++ = SPOOL_VALUE_VERSION;
	p = spool_put_be(p, loc->segment, 8);
	p = spool_put_be(p, loc->offset, 8);
	p = spool_put_be(p, loc->length, 4);
	spool_put_be(p, loc->seq, 8);
}

int
spool_record_location_decode(const uint8_t *in, size_t len, struct spool_location *out)
{
	struct cursor c = {in, in == NULL ? 0 : len, in == NULL};

	if (take_be(&c, 1) != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	out->segment = take_be(&c, 8);
	out->offset = take_be(&c, 8);
	out->length = (uint32_t)take_be(&c, 4);
	out->seq = take_be(&c, 8);
	return c.bad || c.left != 0 ? PA_ERROR : PA_OK;
}

void
spool_record_checkpoint_encode(const struct spool_checkpoint *cp,
                               uint8_t out[SPOOL_CHECKPOINT_SIZE])
{
	uint8_t *p = out;

	*p++ = SPOOL_VALUE_VERSION;
	p = spool_put_be(p, cp->segment, 8);
	p = spool_put_be(p, cp->offset, 8);
	spool_put_be(p, cp->seq, 8);
}

int
spool_record_checkpoint_decode(const uint8_t *in, size_t len, struct spool_checkpoint *out)
{
	struct cursor c = {in, in == NULL ? 0 : len, in == NULL};

	if (take_be(&c, 1) != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	out->segment = take_be(&c, 8);
	out->offset = take_be(&c, 8);
	out->seq = take_be(&c, 8);
	return c.bad || c.left != 0 ? PA_ERROR : PA_OK;
}

long
spool_record_delivery_encode(const struct spool_delivery *d, uint8_t out[SPOOL_DELIVERY_MAX])
{
	uint8_t *p = out;

	if (d->state > SPOOL_DELIVERY_FAILED || d->reply_len > SPOOL_REPLY_MAX ||
	    memchr(d->reply, '\0', d->reply_len) != NULL)
		return PA_ERROR;
	*p++ = SPOOL_VALUE_VERSION;
	*p++ = (uint8_t)d->state;
	p = spool_put_be(p, d->attempts, 4);
	p = spool_put_be(p, d->next_attempt_us, 8);
	p = spool_put_be(p, d->last_attempt_us, 8);
	p = put_str(p, d->reply, d->reply_len);
	return (long)(p - out);
}

int
spool_record_delivery_decode(const uint8_t *in, size_t len, struct spool_delivery *out)
{
	struct cursor c = {in, in == NULL ? 0 : len, in == NULL};
	uint64_t state;
	const uint8_t *reply;
	size_t n;

	if (take_be(&c, 1) != SPOOL_VALUE_VERSION)
		return PA_ERROR;
	state = take_be(&c, 1);
	if (state > SPOOL_DELIVERY_FAILED)
		return PA_ERROR;
	out->state = (enum spool_delivery_state)state;
	out->attempts = (uint32_t)take_be(&c, 4);
	out->next_attempt_us = take_be(&c, 8);
	out->last_attempt_us = take_be(&c, 8);
	reply = take_str(&c, &n);
	if (reply == NULL || n > SPOOL_REPLY_MAX || c.left != 0)
		return PA_ERROR;
	memcpy(out->reply, reply, n);
	out->reply[n] = '\0';
	out->reply_len = n;
	return PA_OK;
}

uint8_t
spool_record_schedule_value(void)
{
	return SPOOL_VALUE_VERSION;
}

int
spool_record_schedule_decode(const uint8_t *in, size_t len)
{
	return in != NULL && len == SPOOL_SCHEDULE_SIZE && in[0] == SPOOL_VALUE_VERSION ? PA_OK
	                                                                                : PA_ERROR;
}
