/*
 * seglog_record.h: the records of a shard's segment log (spool format 2,
 * docs/spool-format.md, "Segment log").
 *
 * A record is a 24-byte header and a payload:
 *
 *   u32 magic 'PAR2'  u32 length (header + payload)  u32 crc32c(bytes 12..length)
 *   u8 kind  u8[3] zero  u64 seq
 *
 * Integers are big-endian, as everywhere in the spool.  The CRC covers the
 * kind, the seq and the payload, so no field a reader acts on escapes it but
 * the magic and the length, which are checked against the bytes at hand.
 * Kinds: SEGMENT (the first record of every segment file: format, shard
 * count, shard, segment number) and MESSAGE (one message copy: queue id,
 * the envelope as format 1's message record, the stored bytes).
 *
 * What it promises: the decoders treat their input as hostile (a torn or
 * corrupt segment, another version): they read nothing outside the bytes
 * given, accept a record only when magic, length, kind, the zero bytes and
 * the CRC all hold, and accept a payload only when it has exactly the
 * layout an encoder writes (the fuzz harness checks the round trip).
 */
#ifndef SEGLOG_RECORD_H
#define SEGLOG_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/spool_record.h"

#define SEGLOG_MAGIC 0x50415232u /* "PAR2" */
#define SEGLOG_FORMAT 2          /* the spool format that keeps messages in segment logs */
#define SEGLOG_HEADER 24
/* A record is at most this long: a u32 length, with room left for the header. */
#define SEGLOG_RECORD_MAX (UINT32_MAX - 4095u)

enum seglog_kind {
	SEGLOG_KIND_SEGMENT = 1,
	SEGLOG_KIND_MESSAGE = 2,
};

struct seglog_header {
	uint32_t length; /* header + payload */
	uint32_t crc;
	uint8_t kind;
	uint64_t seq;
};

/* Writes the 24 header bytes; crc must already cover bytes 12..length (seglog_record_crc()). */
void seglog_header_encode(const struct seglog_header *h, uint8_t out[SEGLOG_HEADER]);

/*
 * Checks magic, kind, the zero bytes and SEGLOG_HEADER <= length; fills h.
 * The CRC is checked by seglog_record_check() once the payload is read.
 */
int seglog_header_decode(const uint8_t in[SEGLOG_HEADER], struct seglog_header *h);

/* The CRC of a record: over header bytes 12..23 (kind, zeroes, seq), then the payload parts. */
uint32_t seglog_record_crc_start(const uint8_t header[SEGLOG_HEADER]);
uint32_t seglog_record_crc_extend(uint32_t crc, const void *part, size_t len);

/* A whole record in memory (header decoded into h): PA_OK when its CRC holds. */
int seglog_record_check(const uint8_t *rec, size_t len, const struct seglog_header *h);

/* SEGMENT payload: which shard and segment this file is, so a stray or renamed file is refused. */
#define SEGLOG_SEGMENT_PAYLOAD (4 + 4 + 4 + 8 + 8)
struct seglog_segment_info {
	uint32_t format;  /* SEGLOG_FORMAT */
	uint32_t shards;  /* shard count of the spool */
	uint32_t shard;   /* index of this shard */
	uint64_t segment; /* the number in the file's name */
	uint64_t created_us;
};
void seglog_segment_encode(const struct seglog_segment_info *s,
                           uint8_t out[SEGLOG_SEGMENT_PAYLOAD]);
int seglog_segment_decode(const uint8_t *in, size_t len, struct seglog_segment_info *out);

/*
 * MESSAGE payload:
 *   u8 qid length (1..31), the queue id
 *   u32 E, then E bytes: the envelope, format 1's message record
 *       (spool_record_msg_encode(): version, flags, arrival, size, sender,
 *        client, helo, this shard's recipients)
 *   size bytes: the stored message (Received: header + content)
 * The prefix (everything before the stored bytes) is encoded here; the
 * stored bytes are written from the caller's buffer without a copy.
 */
#define SEGLOG_MESSAGE_FIXED (1 + 4)
/* Length of the prefix, or PA_ERROR when the queue id or envelope does not fit the format. */
long seglog_message_prefix_size(const char *qid, const struct spool_msg_record *rec);
/* Writes exactly seglog_message_prefix_size() bytes. */
void seglog_message_prefix_encode(const char *qid, const struct spool_msg_record *rec,
                                  uint8_t *out);

/* A decoded MESSAGE payload; qid, rec and its strings live in one malloc'ed block (rec). */
struct seglog_message {
	char qid[SMTP_QUEUE_ID_MAX];
	struct spool_msg_record *rec; /* free() it */
	const uint8_t *data;          /* inside the payload given to the decoder */
	size_t size;
};
int seglog_message_decode(const uint8_t *in, size_t len, struct seglog_message *out);

/*
 * The records in a segment image: calls fn for each record accepted, from
 * offset `from` with the first seq `seq` (0: whatever the first record says,
 * which must then be the SEGMENT record at offset 0), stopping at the first
 * record that fails a check, whose seq is not the previous one + 1, or that
 * runs past len: the torn tail.  Returns the offset where it stopped; *next_seq
 * is the seq the next record there would need.  fn returning non-zero stops
 * the scan there too (the offset of that record is returned).
 */
typedef int (*seglog_scan_fn)(uint64_t offset, const struct seglog_header *h,
                              const uint8_t *payload, size_t len, void *arg);
uint64_t seglog_scan_image(const uint8_t *image, size_t len, uint64_t from, uint64_t seq,
                           uint64_t *next_seq, seglog_scan_fn fn, void *arg);

#endif
