/*
 * log_record.h: one log line as named fields, and its JSON form
 * (log.format = json, docs/operations.md "Logs").
 *
 * A record is built either from the fields of the one per-message line
 * (pa_log_accepted) or from a line of text, which is read the way an
 * operator reads it: an optional queue id ("QUEUEID: "), the leading plain
 * words that name the event ("refused", "tls handshake failed"), then
 * key=value pairs.  The first occurrence of a key wins, so text that comes
 * from the network after a field (a reply, a detail) cannot replace it; a
 * <bracketed> value runs to its closing '>', a (parenthesized) group is
 * never read for keys.  The whole text is always kept as msg.
 *
 * Everything here is pure: no allocation, no system call, no global state,
 * so the log thread calls it and the unit tests test it.
 */
#ifndef PA_LOG_RECORD_H
#define PA_LOG_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_RECORD_FIELDS_MAX 16
#define LOG_EVENT_MAX 48

struct log_field {
	const char *name; /* a stable name (from= is "sender"), NUL-ended */
	const char *value;
	size_t value_len;
	bool number; /* digits only, written as a JSON number */
};

struct log_record {
	int level;        /* enum pa_log_level */
	uint64_t time_us; /* wall clock, when the line was logged */
	const char *ident;
	int pid;
	char event[LOG_EVENT_MAX]; /* "accepted", "refused", "tls_handshake_failed", ... */
	const char *queue_id;
	size_t queue_id_len;
	struct log_field fields[LOG_RECORD_FIELDS_MAX];
	size_t nfields;
	const char *msg; /* the text line's body, unmasked */
	size_t msg_len;
	char names[LOG_RECORD_FIELDS_MAX][32]; /* the names of text keys the fields point to */
	size_t nnames;
};

/* Fills event, queue_id, fields, msg of rec from a text body (kept by reference). */
void log_record_parse(struct log_record *rec, const char *body, size_t len);

/* Appends a field; false when the record is full or the name is taken. */
bool log_record_add(struct log_record *rec, const char *name, const char *value, size_t len,
                    bool number);

/*
 * The record as one JSON object and a newline into out (at most size
 * octets, size >= 256): time, level, ident, pid, event, queue_id, the fields,
 * then msg.  Always a whole object: what does not fit is cut from the end of
 * a string, never through an escape or a UTF-8 sequence, and "truncated":true
 * is added.  Invalid UTF-8 octets are written as \u00XX.  Returns the length.
 */
size_t log_record_json(const struct log_record *rec, const char *level_name, char *out,
                       size_t size);

/* "2026-12-07T16:02:32.123456Z" (28 octets and a NUL) into out. */
void log_record_time(uint64_t time_us, char out[32]);

#endif
