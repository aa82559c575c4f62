/*
 * fuzz_spool_record.c: the spool's key and value decoders (spool_record.c).
 *
 * A spool on disk may be corrupt, truncated or written by another version;
 * spool_record.h promises that its decoders read nothing outside their input
 * and never crash.  The first octet picks the decoder, the rest is the
 * record.  Beyond "no crash", the format has exactly one encoding per value
 * (no trailing bytes, no unknown flags, fixed-width integers), so whatever a
 * decoder accepts must encode back to the very same bytes: a decoder that
 * accepts something the encoder would never write is a bug too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool_record.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static void
key_roundtrip(const uint8_t *in, size_t len)
{
	struct spool_key k;
	uint8_t out[SPOOL_KEY_MAX];
	size_t n = 0;

	if (spool_key_decode(in, len, &k) != PA_OK)
		return;
	CHECK(k.queue_id_len == strlen(k.queue_id));
	switch (k.type) {
	case SPOOL_KEY_META:
		n = spool_key_meta(out);
		break;
	case SPOOL_KEY_MESSAGE:
		n = spool_key_message(out, k.queue_id, k.queue_id_len);
		break;
	case SPOOL_KEY_BODY:
		n = spool_key_body(out, k.queue_id, k.queue_id_len);
		break;
	case SPOOL_KEY_LOCATION:
		n = spool_key_location(out, k.queue_id, k.queue_id_len);
		break;
	case SPOOL_KEY_CHECKPOINT:
		n = spool_key_checkpoint(out);
		break;
	case SPOOL_KEY_DELIVERY:
		n = spool_key_delivery(out, k.queue_id, k.queue_id_len, k.rcpt);
		break;
	case SPOOL_KEY_SCHEDULE:
		n = spool_key_schedule(out, k.next_attempt_us, k.queue_id, k.queue_id_len);
		break;
	}
	CHECK(n == len && memcmp(out, in, len) == 0);
}

static void
msg_roundtrip(const uint8_t *in, size_t len)
{
	struct spool_msg_record *rec;
	uint8_t *out;
	long n;

	if (spool_record_msg_decode(in, len, &rec) != PA_OK)
		return;
	n = spool_record_msg_size(rec);
	CHECK(n == (long)len);
	out = malloc(len);
	CHECK(out != NULL);
	spool_record_msg_encode(rec, out);
	CHECK(memcmp(out, in, len) == 0);
	free(out);
	free(rec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_meta meta;
	struct spool_delivery d;
	struct spool_location loc;
	struct spool_checkpoint cp;
	uint8_t out[SPOOL_DELIVERY_MAX];
	const uint8_t *body;
	size_t body_len;
	uint8_t *in;
	size_t len;
	long n;

	if (size < 1)
		return 0;
	/* Decoders get an exact-size heap copy, so ASan sees any read past the end. */
	len = size - 1;
	in = malloc(len > 0 ? len : 1);

	CHECK(in != NULL);
	memcpy(in, data + 1, len);
	switch (data[0] % 8) {
	case 0:
		key_roundtrip(in, len);
		break;
	case 1:
		if (spool_record_meta_decode(in, len, &meta) == PA_OK) {
			spool_record_meta_encode(&meta, out);
			CHECK(len == SPOOL_META_SIZE && memcmp(out, in, len) == 0);
		}
		break;
	case 2:
		msg_roundtrip(in, len);
		break;
	case 3:
		if (spool_record_body_decode(in, len, &body, &body_len) == PA_OK)
			CHECK(body + body_len == in + len && in[0] == spool_record_body_header());
		break;
	case 4:
		if (spool_record_delivery_decode(in, len, &d) == PA_OK) {
			CHECK(d.reply_len == strlen(d.reply));
			n = spool_record_delivery_encode(&d, out);
			CHECK(n == (long)len && memcmp(out, in, len) == 0);
		}
		break;
	case 5:
		if (spool_record_schedule_decode(in, len) == PA_OK)
			CHECK(len == SPOOL_SCHEDULE_SIZE && in[0] == spool_record_schedule_value());
		break;
	case 6:
		if (spool_record_location_decode(in, len, &loc) == PA_OK) {
			spool_record_location_encode(&loc, out);
			CHECK(len == SPOOL_LOCATION_SIZE && memcmp(out, in, len) == 0);
		}
		break;
	case 7:
		if (spool_record_checkpoint_decode(in, len, &cp) == PA_OK) {
			spool_record_checkpoint_encode(&cp, out);
			CHECK(len == SPOOL_CHECKPOINT_SIZE && memcmp(out, in, len) == 0);
		}
		break;
	}
	free(in);
	return 0;
}
