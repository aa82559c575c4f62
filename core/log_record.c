/*
 * log_record.c: a log line's text read into named fields, and the JSON
 * writer of log.format = json (log_record.h says what each promises).
 *
 * The JSON is RFC 8259: every string escaped, every octet below 0x20 as
 * \u00XX, valid UTF-8 copied and any other octet written as the code point
 * of its value, so a line from the network never breaks the object nor
 * starts another line.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log_record.h"

#define CLOSE_RESERVE 24 /* room kept for "\"truncated\":true}\n" and a closing quote */
#define EVENT_WORDS_MAX 3

/* Keys of the text renamed to the stable field names (docs/operations.md). */
static const struct {
	const char *key, *name;
} renames[] = {
    {"from", "sender"},
    {"nrcpt", "rcpt_count"},
    {"to", "rcpt"},
};

/* Names of the record itself: a key=value of the text never takes one. */
static const char *const reserved[] = {"time",  "level",    "ident", "pid",
                                       "event", "queue_id", "msg",   "truncated"};

static bool
is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_upper_hex(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* A queue id of either layout (core/queue_id.h): 'P' and 25 hex digits, or 22 hex digits. */
static bool
is_queue_id(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 26 && s[0] == 'P')
		i = 1;
	else if (n != 22)
		return false;
	for (; i < n; i++)
		if (!is_upper_hex(s[i]))
			return false;
	return true;
}

static const char *
stable_name(const char *key, size_t n, char *buf, size_t buflen)
{
	for (size_t i = 0; i < sizeof(renames) / sizeof(renames[0]); i++)
		if (strlen(renames[i].key) == n && memcmp(renames[i].key, key, n) == 0)
			return renames[i].name;
	if (n >= buflen)
		return NULL;
	memcpy(buf, key, n);
	buf[n] = '\0';
	return buf;
}

static bool
is_number(const char *v, size_t n)
{
	if (n == 0 || n > 15 || (n > 1 && v[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(v[i]))
			return false;
	return true;
}

bool
log_record_add(struct log_record *rec, const char *name, const char *value, size_t len, bool number)
{
	if (rec->nfields == LOG_RECORD_FIELDS_MAX)
		return false;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(name, reserved[i]) == 0)
			return false;
	for (size_t i = 0; i < rec->nfields; i++)
		if (strcmp(rec->fields[i].name, name) == 0)
			return false;
	rec->fields[rec->nfields++] = (struct log_field){name, value, len, number};
	return true;
}

/* A leading word of the event: lower-case letters, digits, '-'; ':' may end it. */
static size_t
event_word(const char *p, const char *end, bool *last)
{
	size_t n = 0;

	*last = false;
	if (p >= end || !is_lower(*p))
		return 0;
	while (p + n < end && (is_lower(p[n]) || is_digit(p[n]) || p[n] == '-'))
		n++;
	if (p + n < end && p[n] == ':') {
		*last = true;
		if (p + n + 1 < end && p[n + 1] != ' ')
			return 0;
		return n;
	}
	if (p + n < end && p[n] != ' ')
		return 0; /* "client=..." or "0:" is not a word of the event */
	return n;
}

void
log_record_parse(struct log_record *rec, const char *body, size_t len)
{
	const char *p = body, *end = body + len;
	size_t evlen = 0;
	unsigned words = 0;

	rec->nnames = 0;
	rec->msg = body;
	rec->msg_len = len;
	rec->queue_id = NULL;
	rec->queue_id_len = 0;
	rec->nfields = 0;
	rec->event[0] = '\0';

	/* "QUEUEID: ..." */
	const char *colon = memchr(p, ':', len);

	if (colon != NULL && is_queue_id(p, (size_t)(colon - p)) &&
	    (colon + 1 == end || colon[1] == ' ')) {
		rec->queue_id = p;
		rec->queue_id_len = (size_t)(colon - p);
		p = colon + 1;
	}

	/* The event: up to three plain leading words, "tls handshake failed". */
	while (words < EVENT_WORDS_MAX) {
		bool last;
		size_t n;

		while (p < end && *p == ' ')
			p++;
		n = event_word(p, end, &last);
		if (n == 0 || evlen + 1 + n >= sizeof(rec->event))
			break;
		if (evlen > 0)
			rec->event[evlen++] = '_';
		for (size_t i = 0; i < n; i++)
			rec->event[evlen++] = p[i] == '-' ? '_' : p[i];
		rec->event[evlen] = '\0';
		p += n + (last ? 1 : 0);
		words++;
		if (last)
			break;
	}

	/* key=value pairs, anywhere after the event, outside (parentheses). */
	while (p < end) {
		const char *k, *v, *ve;
		size_t klen;
		char *namebuf;
		const char *name;

		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		if (*p == '(') {
			int depth = 0;

			for (; p < end; p++) {
				if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0) {
					p++;
					break;
				}
			}
			continue;
		}
		k = p;
		while (p < end && (is_lower(*p) || is_digit(*p) || *p == '_'))
			p++;
		if (p == k || !is_lower(*k) || p == end || *p != '=' || (size_t)(p - k) >= 32) {
			while (p < end && *p != ' ')
				p++;
			continue;
		}
		klen = (size_t)(p - k);
		v = ++p;
		if (p < end && *p == '<') {
			/* <path>: to the first '>' that ends the token. */
			v = ++p;
			while (p < end && !(*p == '>' && (p + 1 == end || p[1] == ' ' ||
			                                  p[1] == ',' || p[1] == ':')))
				p++;
			ve = p;
			while (p < end && *p != ' ')
				p++;
		} else {
			while (p < end && *p != ' ')
				p++;
			ve = p;
			if (ve > v && (ve[-1] == ':' || ve[-1] == ','))
				ve--;
		}
		if (rec->nnames == LOG_RECORD_FIELDS_MAX)
			break;
		namebuf = rec->names[rec->nnames];
		name = stable_name(k, klen, namebuf, sizeof(rec->names[0]));
		if (name == NULL)
			continue;
		if (log_record_add(rec, name, v, (size_t)(ve - v),
		                   is_number(v, (size_t)(ve - v))) &&
		    name == namebuf)
			rec->nnames++;
	}

	if (evlen == 0) {
		bool has_status = false;

		for (size_t i = 0; i < rec->nfields; i++)
			has_status |= strcmp(rec->fields[i].name, "status") == 0;
		snprintf(rec->event, sizeof(rec->event), "%s", has_status ? "delivery" : "message");
	}
}

void
log_record_time(uint64_t time_us, char out[32])
{
	time_t sec = (time_t)(time_us / 1000000u);
	struct tm tm;

	if (gmtime_r(&sec, &tm) == NULL) {
		snprintf(out, 32, "1970-01-01T00:00:00.000000Z");
		return;
	}
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);

	snprintf(out + n, 32 - n, ".%06uZ", (unsigned)(time_us % 1000000u));
}

/* A bounded JSON writer: what does not fit sets cut and is left out whole. */
struct jw {
	char *p;
	size_t left; /* for content, CLOSE_RESERVE already set aside */
	bool cut;
};

static bool
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->cut || n > w->left) {
		w->cut = true;
		return false;
	}
	memcpy(w->p, s, n);
	w->p += n;
	w->left -= n;
	return true;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4;
	else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* No overlong form, no surrogate, nothing above U+10FFFF. */
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
		return 0;
	return need;
}

/*
 * A quoted, escaped string; cut short (still closed) when it does not fit.
 * The caller made sure of room for both quotes (jw_key).
 */
static void
jw_string(struct jw *w, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[8];

	*w->p++ = '"';
	w->left -= 2; /* both quotes */
	for (size_t i = 0; i < n;) {
		size_t step = utf8_len(u + i, n - i);
		const char *out = esc;
		size_t outlen;

		if (step == 1 && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\') {
			out = s + i;
			outlen = 1;
		} else if (step == 1 && (u[i] == '"' || u[i] == '\\')) {
			esc[0] = '\\';
			esc[1] = (char)u[i];
			outlen = 2;
		} else if (step > 1) {
			out = s + i;
			outlen = step;
		} else {
			/* A control character, or an octet that is not UTF-8. */
			snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
			outlen = 6;
			step = 1;
		}
		if (outlen > w->left) {
			w->cut = true;
			break;
		}
		memcpy(w->p, out, outlen);
		w->p += outlen;
		w->left -= outlen;
		i += step;
	}
	*w->p++ = '"';
}

/* ,"name": when it and at least need octets of its value fit; false (cut) otherwise. */
static bool
jw_key(struct jw *w, const char *name, size_t need)
{
	char buf[48];
	int n = snprintf(buf, sizeof(buf), ",\"%s\":", name);

	if (w->cut || n < 0 || (size_t)n >= sizeof(buf) || (size_t)n + need > w->left) {
		w->cut = true;
		return false;
	}
	return jw_raw(w, buf, (size_t)n);
}

size_t
log_record_json(const struct log_record *rec, const char *level_name, char *out, size_t size)
{
	struct jw w = {out, size - CLOSE_RESERVE, false};
	char head[160], time[32];
	int n;

	log_record_time(rec->time_us, time);
	n = snprintf(head, sizeof(head), "{\"time\":\"%s\",\"level\":\"%s\",\"ident\":", time,
	             level_name);
	if (n > 0 && (size_t)n < sizeof(head))
		jw_raw(&w, head, (size_t)n);
	if (!w.cut && w.left >= 2)
		jw_string(&w, rec->ident, strlen(rec->ident));
	n = snprintf(head, sizeof(head), ",\"pid\":%d", rec->pid);
	jw_raw(&w, head, (size_t)n);
	if (jw_key(&w, "event", 2))
		jw_string(&w, rec->event, strlen(rec->event));
	if (rec->queue_id != NULL && jw_key(&w, "queue_id", 2))
		jw_string(&w, rec->queue_id, rec->queue_id_len);
	for (size_t i = 0; i < rec->nfields && !w.cut; i++) {
		const struct log_field *f = &rec->fields[i];

		if (!jw_key(&w, f->name, f->number ? f->value_len : 2))
			break;
		if (f->number)
			jw_raw(&w, f->value, f->value_len);
		else
			jw_string(&w, f->value, f->value_len);
	}
	if (jw_key(&w, "msg", 2))
		jw_string(&w, rec->msg, rec->msg_len);
	/* CLOSE_RESERVE holds what follows. */
	w.left += CLOSE_RESERVE;
	if (w.cut) {
		w.cut = false;
		jw_raw(&w, ",\"truncated\":true", 17);
	}
	jw_raw(&w, "}\n", 2);
	return (size_t)(w.p - out);
}
