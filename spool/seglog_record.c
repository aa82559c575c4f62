/*
 * seglog_record.c: encoders and bounds-checked decoders of segment-log
 * records (seglog_record.h, docs/spool-format.md "Segment log").
 *
 * Every decoder compares lengths before it reads, so a torn or corrupt
 * segment can make it fail but never read outside the bytes it was given.
 */
#include "spool/seglog_record.h"

#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool.h"

#define CRC_FROM 12 /* the CRC covers the header from the kind on, then the payload */

void
seglog_header_encode(const struct seglog_header *h, uint8_t out[SEGLOG_HEADER])
{
	uint8_t *p = spool_put_be(out, SEGLOG_MAGIC, 4);

	p = spool_put_be(p, h->length, 4);
	p = spool_put_be(p, h->crc, 4);
	*p++ = h->kind;
	*p++ = 0;
	*p++ = 0;
	*p++ = 0;
	spool_put_be(p, h->seq, 8);
}

int
seglog_header_decode(const uint8_t in[SEGLOG_HEADER], struct seglog_header *h)
{
	if (spool_get_be(in, 4) != SEGLOG_MAGIC)
		return PA_ERROR;
	h->length = (uint32_t)spool_get_be(in + 4, 4);
	h->crc = (uint32_t)spool_get_be(in + 8, 4);
	h->kind = in[12];
	h->seq = spool_get_be(in + 16, 8);
	if (h->length < SEGLOG_HEADER || h->length > SEGLOG_RECORD_MAX ||
	    (h->kind != SEGLOG_KIND_SEGMENT && h->kind != SEGLOG_KIND_MESSAGE) || in[13] != 0 ||
	    in[14] != 0 || in[15] != 0)
		return PA_ERROR;
	return PA_OK;
}

uint32_t
seglog_record_crc_start(const uint8_t header[SEGLOG_HEADER])
{
	return spool_crc32c(header + CRC_FROM, SEGLOG_HEADER - CRC_FROM);
}

uint32_t
seglog_record_crc_extend(uint32_t crc, const void *part, size_t len)
{
	return spool_crc32c_extend(crc, part, len);
}

int
seglog_record_check(const uint8_t *rec, size_t len, const struct seglog_header *h)
{
	uint32_t crc;

	if (len != h->length || len < SEGLOG_HEADER)
		return PA_ERROR;
	crc = seglog_record_crc_start(rec);
	crc = seglog_record_crc_extend(crc, rec + SEGLOG_HEADER, len - SEGLOG_HEADER);
	return crc == h->crc ? PA_OK : PA_ERROR;
}

void
seglog_segment_encode(const struct seglog_segment_info *s, uint8_t out[SEGLOG_SEGMENT_PAYLOAD])
{
	uint8_t *p = spool_put_be(out, s->format, 4);

	p = spool_put_be(p, s->shards, 4);
	p = spool_put_be(p, s->shard, 4);
	p = spool_put_be(p, s->segment, 8);
	spool_put_be(p, s->created_us, 8);
}

int
seglog_segment_decode(const uint8_t *in, size_t len, struct seglog_segment_info *out)
{
	if (len != SEGLOG_SEGMENT_PAYLOAD)
		return PA_ERROR;
	out->format = (uint32_t)spool_get_be(in, 4);
	out->shards = (uint32_t)spool_get_be(in + 4, 4);
	out->shard = (uint32_t)spool_get_be(in + 8, 4);
	out->segment = spool_get_be(in + 12, 8);
	out->created_us = spool_get_be(in + 20, 8);
	return out->format == SEGLOG_FORMAT ? PA_OK : PA_ERROR;
}

long
seglog_message_prefix_size(const char *qid, const struct spool_msg_record *rec)
{
	size_t qlen = qid != NULL ? strlen(qid) : 0;
	long env = spool_record_msg_size(rec);

	if (!spool_queue_id_valid(qid, qlen) || env < 0)
		return PA_ERROR;
	return (long)(SEGLOG_MESSAGE_FIXED + qlen) + env;
}

void
seglog_message_prefix_encode(const char *qid, const struct spool_msg_record *rec, uint8_t *out)
{
	size_t qlen = strlen(qid);
	long env = spool_record_msg_size(rec);

	*out++ = (uint8_t)qlen;
	memcpy(out, qid, qlen);
	out = spool_put_be(out + qlen, (uint64_t)env, 4);
	spool_record_msg_encode(rec, out);
}

int
seglog_message_decode(const uint8_t *in, size_t len, struct seglog_message *out)
{
	size_t qlen, env, left;

	memset(out, 0, sizeof(*out));
	if (len < SEGLOG_MESSAGE_FIXED)
		return PA_ERROR;
	qlen = in[0];
	if (len < SEGLOG_MESSAGE_FIXED + qlen || !spool_queue_id_valid((const char *)in + 1, qlen))
		return PA_ERROR;
	env = (size_t)spool_get_be(in + 1 + qlen, 4);
	left = len - SEGLOG_MESSAGE_FIXED - qlen;
	if (env > left)
		return PA_ERROR;
	if (spool_record_msg_decode(in + SEGLOG_MESSAGE_FIXED + qlen, env, &out->rec) != PA_OK)
		return PA_ERROR;
	/* Exactly the stored bytes after the envelope: nothing missing, nothing trailing. */
	if (out->rec->size != left - env) {
		free(out->rec);
		out->rec = NULL;
		return PA_ERROR;
	}
	memcpy(out->qid, in + 1, qlen);
	out->qid[qlen] = '\0';
	out->data = in + SEGLOG_MESSAGE_FIXED + qlen + env;
	out->size = left - env;
	return PA_OK;
}

uint64_t
seglog_scan_image(const uint8_t *image, size_t len, uint64_t from, uint64_t seq, uint64_t *next_seq,
                  seglog_scan_fn fn, void *arg)
{
	uint64_t off = from;

	*next_seq = seq;
	while (off <= len && len - off >= SEGLOG_HEADER) {
		struct seglog_header h;
		const uint8_t *rec = image + off;

		if (seglog_header_decode(rec, &h) != PA_OK || h.length > len - off ||
		    seglog_record_check(rec, h.length, &h) != PA_OK)
			break;
		/* The SEGMENT record opens the file and the chain; nothing else may. */
		if (off == 0 ? h.kind != SEGLOG_KIND_SEGMENT
		             : h.kind == SEGLOG_KIND_SEGMENT || h.seq != *next_seq)
			break;
		if (off == 0 && seq != 0 && h.seq != seq)
			break;
		if (fn != NULL &&
		    fn(off, &h, rec + SEGLOG_HEADER, h.length - SEGLOG_HEADER, arg) != 0)
			break;
		*next_seq = h.seq + 1;
		off += h.length;
	}
	return off;
}
