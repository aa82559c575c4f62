/*
 * spool_record.h: the on-disk encoding of spool keys and values.
 *
 * Every key starts with a type byte and a key-version byte; every value starts
 * with a value-version byte.  Integers are big-endian so that keys sort in
 * numeric order under RocksDB's bytewise comparator.  docs/spool-format.md is
 * the normative description; this module is its only implementation.
 *
 * What it promises: the decoders treat their input as hostile.  They read
 * nothing outside [in, in + len), reject truncated input, trailing bytes,
 * unknown versions, unknown flag bits and strings with an embedded NUL, and
 * never crash on any input.
 */
#ifndef SPOOL_RECORD_H
#define SPOOL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/smtp_session.h"

#define SPOOL_FORMAT_VERSION 1 /* RocksDB holds everything, bodies included (meta record) */
#define SPOOL_FORMAT_LOG 2     /* bodies in the shard's segment log, 'L' keys point there */
#define SPOOL_KEY_VERSION 1
#define SPOOL_VALUE_VERSION 1

enum spool_key_type {
	SPOOL_KEY_META = '!',
	SPOOL_KEY_CHECKPOINT = '#', /* format 2: where recovery of the segment log starts */
	SPOOL_KEY_BODY = 'B',
	SPOOL_KEY_LOCATION = 'L', /* format 2: where a copy's record is in the segment log */
	SPOOL_KEY_DELIVERY = 'D',
	SPOOL_KEY_MESSAGE = 'M',
	SPOOL_KEY_SCHEDULE = 'S',
};

/* Queue ids are 1..31 bytes of printable ASCII without space (0x21..0x7e). */
#define SPOOL_QID_MAX (SMTP_QUEUE_ID_MAX - 1)
#define SPOOL_KEY_PREFIX_LEN 2
#define SPOOL_KEY_MAX (SPOOL_KEY_PREFIX_LEN + 8 + SPOOL_QID_MAX + 1 + 2)

struct spool_key {
	enum spool_key_type type;
	char queue_id[SMTP_QUEUE_ID_MAX]; /* NUL-terminated; empty for the meta key */
	size_t queue_id_len;
	uint16_t rcpt;            /* SPOOL_KEY_DELIVERY: index into the message's rcpts */
	uint64_t next_attempt_us; /* SPOOL_KEY_SCHEDULE */
};

bool spool_queue_id_valid(const char *qid, size_t len);

/* The spool's integers: n (1..8) bytes, big-endian; put returns the end of what it wrote. */
uint8_t *spool_put_be(uint8_t *out, uint64_t v, size_t n);
uint64_t spool_get_be(const uint8_t *in, size_t n);

/* The key builders return the key length, or 0 when the queue id is invalid. */
size_t spool_key_prefix(uint8_t out[SPOOL_KEY_MAX], enum spool_key_type type);
size_t spool_key_meta(uint8_t out[SPOOL_KEY_MAX]);
size_t spool_key_message(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len);
size_t spool_key_body(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len);
size_t spool_key_location(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len);
size_t spool_key_checkpoint(uint8_t out[SPOOL_KEY_MAX]);
size_t spool_key_delivery(uint8_t out[SPOOL_KEY_MAX], const char *qid, size_t len, uint16_t rcpt);
size_t spool_key_schedule(uint8_t out[SPOOL_KEY_MAX], uint64_t next_attempt_us, const char *qid,
                          size_t len);
int spool_key_decode(const uint8_t *in, size_t len, struct spool_key *out);

/* Meta record: one per shard, written when the shard is created. */
#define SPOOL_META_SIZE (1 + 4 + 4 + 4 + 8)
struct spool_meta {
	uint32_t format; /* SPOOL_FORMAT_VERSION */
	uint32_t shards; /* shard count of the whole spool */
	uint32_t shard;  /* index of this shard */
	uint64_t created_us;
};
void spool_record_meta_encode(const struct spool_meta *meta, uint8_t out[SPOOL_META_SIZE]);
int spool_record_meta_decode(const uint8_t *in, size_t len, struct spool_meta *out);

/* Message record: the envelope of one message copy. */
#define SPOOL_MSG_8BITMIME 0x01u
#define SPOOL_MSG_SMTPUTF8 0x02u
#define SPOOL_MSG_CHUNKED 0x04u
#define SPOOL_MSG_FLAGS_KNOWN (SPOOL_MSG_8BITMIME | SPOOL_MSG_SMTPUTF8 | SPOOL_MSG_CHUNKED)
#define SPOOL_STR_MAX UINT16_MAX
#define SPOOL_RCPT_MAX UINT16_MAX

struct spool_msg_record {
	uint8_t flags;
	uint64_t arrival_us;
	uint64_t size; /* length of the body value's payload */
	const char *mail_from;
	const char *client_addr;
	const char *helo;
	size_t nrcpt; /* the recipients of this shard, 1..SPOOL_RCPT_MAX */
	const char *const *rcpts;
};

/* The encoded length, or PA_ERROR when a field does not fit the format. */
long spool_record_msg_size(const struct spool_msg_record *rec);
/* Writes exactly spool_record_msg_size() bytes; rec must have passed it. */
void spool_record_msg_encode(const struct spool_msg_record *rec, uint8_t *out);
/*
 * Decodes into one malloc'ed block holding the record, its recipient array and
 * NUL-terminated strings; the caller frees *out with free().
 */
int spool_record_msg_decode(const uint8_t *in, size_t len, struct spool_msg_record **out);

/* Body value: a version byte, then the stored message bytes unchanged. */
#define SPOOL_BODY_HEADER 1
uint8_t spool_record_body_header(void);
int spool_record_body_decode(const uint8_t *in, size_t len, const uint8_t **data, size_t *size);

/* Location (format 2): the copy's MESSAGE record in the shard's segment log. */
#define SPOOL_LOCATION_SIZE (1 + 8 + 8 + 4 + 8)
struct spool_location {
	uint64_t segment;
	uint64_t offset;
	uint32_t length; /* the whole record */
	uint64_t seq;
};
void spool_record_location_encode(const struct spool_location *loc,
                                  uint8_t out[SPOOL_LOCATION_SIZE]);
int spool_record_location_decode(const uint8_t *in, size_t len, struct spool_location *out);

/* Checkpoint (format 2): recovery re-indexes the log's records from here on. */
#define SPOOL_CHECKPOINT_SIZE (1 + 8 + 8 + 8)
struct spool_checkpoint {
	uint64_t segment;
	uint64_t offset;
	uint64_t seq; /* of the next record */
};
void spool_record_checkpoint_encode(const struct spool_checkpoint *cp,
                                    uint8_t out[SPOOL_CHECKPOINT_SIZE]);
int spool_record_checkpoint_decode(const uint8_t *in, size_t len, struct spool_checkpoint *out);

/* Delivery record: the hand-off state of one recipient of one copy. */
enum spool_delivery_state {
	SPOOL_DELIVERY_PENDING = 0,
	SPOOL_DELIVERY_DONE = 1,
	SPOOL_DELIVERY_FAILED = 2,
};
#define SPOOL_REPLY_MAX 512
#define SPOOL_DELIVERY_MAX (1 + 1 + 4 + 8 + 8 + 2 + SPOOL_REPLY_MAX)
struct spool_delivery {
	enum spool_delivery_state state;
	uint32_t attempts;
	uint64_t next_attempt_us;
	uint64_t last_attempt_us; /* 0: never tried */
	size_t reply_len;
	char reply[SPOOL_REPLY_MAX + 1]; /* last reply of the next hop, NUL-terminated */
};
/* Returns the encoded length, or PA_ERROR when the state or reply is out of range. */
long spool_record_delivery_encode(const struct spool_delivery *d, uint8_t out[SPOOL_DELIVERY_MAX]);
int spool_record_delivery_decode(const uint8_t *in, size_t len, struct spool_delivery *out);

/* Schedule value: only the version byte; the key carries the information. */
#define SPOOL_SCHEDULE_SIZE 1
uint8_t spool_record_schedule_value(void);
int spool_record_schedule_decode(const uint8_t *in, size_t len);

#endif
