/*
 * milter_edit.c: header fields of a stored message, and milters' header
 * edits applied to it (milter_edit.h).
 *
 * An edit record in the list: kind (1 octet), index (4, host order), name
 * length (4), value length (4), then the name and the value.  Lists are
 * written and read only here, on the filter thread.
 */
#include "filter/milter_edit.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/pa.h"

#define RECORD_HEAD 13

struct edit {
	uint8_t kind;
	uint32_t index;
	const char *name, *value;
	uint32_t name_len, value_len;
	bool done;     /* a change that found its field */
	uint32_t seen; /* fields with its name met so far, the first one included */
};

/* The end of the line at p (after its LF), or size. */
static size_t
line_end(const uint8_t *data, size_t size, size_t p)
{
	const uint8_t *lf = memchr(data + p, '\n', size - p);

	return lf != NULL ? (size_t)(lf - data) + 1 : size;
}

bool
milter_next_field(const uint8_t *data, size_t size, size_t *pos, struct milter_field *f)
{
	size_t p = *pos, name = 0, end;

	while (p + name < size && data[p + name] > 32 && data[p + name] < 127 &&
	       data[p + name] != ':')
		name++;
	if (name == 0 || p + name >= size || data[p + name] != ':')
		return false; /* the empty line, the body, or no header section at all */
	end = line_end(data, size, p);
	while (end < size && (data[end] == ' ' || data[end] == '\t'))
		end = line_end(data, size, end);
	f->off = p;
	f->len = end - p;
	f->name_len = name;
	f->value_off = p + name + 1;
	f->value_len = end - f->value_off;
	if (f->value_len >= 2 && data[end - 2] == '\r' && data[end - 1] == '\n')
		f->value_len -= 2;
	else if (f->value_len >= 1 && data[end - 1] == '\n')
		f->value_len -= 1;
	*pos = end;
	return true;
}

int
milter_edit_push(struct pa_buf *edits, enum milter_edit_kind kind, uint32_t index, const char *name,
                 size_t name_len, const char *value, size_t value_len)
{
	uint8_t head[RECORD_HEAD];
	uint32_t nl = (uint32_t)name_len, vl = (uint32_t)value_len;

	if (name_len > UINT32_MAX || value_len > UINT32_MAX ||
	    pa_buf_reserve(edits, RECORD_HEAD + name_len + value_len) != PA_OK)
		return PA_ERROR;
	head[0] = (uint8_t)kind;
	memcpy(head + 1, &index, 4);
	memcpy(head + 5, &nl, 4);
	memcpy(head + 9, &vl, 4);
	pa_buf_append(edits, head, RECORD_HEAD);
	pa_buf_append(edits, name, name_len);
	pa_buf_append(edits, value, value_len);
	return PA_OK;
}

static size_t
read_edit(const uint8_t *p, struct edit *e)
{
	e->kind = p[0];
	memcpy(&e->index, p + 1, 4);
	memcpy(&e->name_len, p + 5, 4);
	memcpy(&e->value_len, p + 9, 4);
	e->name = (const char *)p + RECORD_HEAD;
	e->value = e->name + e->name_len;
	e->done = false;
	e->seen = 0;
	return RECORD_HEAD + e->name_len + e->value_len;
}

/* "name: value" CRLF, bare LFs of the value's folds made CRLF. */
static int
put_field(struct pa_buf *out, const struct edit *e)
{
	size_t start = 0;

	if (pa_buf_append(out, e->name, e->name_len) != PA_OK ||
	    pa_buf_append(
	        out, ": ",
	        e->value_len > 0 && (e->value[0] == ' ' || e->value[0] == '\t') ? 1 : 2) != PA_OK)
		return PA_ERROR;
	for (size_t i = 0; i < e->value_len; i++) {
		if (e->value[i] != '\n' || (i > 0 && e->value[i - 1] == '\r'))
			continue;
		if (pa_buf_append(out, e->value + start, i - start) != PA_OK ||
		    pa_buf_append(out, "\r", 1) != PA_OK)
			return PA_ERROR;
		start = i;
	}
	if (pa_buf_append(out, e->value + start, e->value_len - start) != PA_OK)
		return PA_ERROR;
	return pa_buf_append(out, "\r\n", 2);
}

static bool
same_name(const uint8_t *data, const struct milter_field *f, const struct edit *e)
{
	return f->name_len == e->name_len &&
	       strncasecmp((const char *)data + f->off, e->name, e->name_len) == 0;
}

static int
apply(const uint8_t *data, size_t size, struct edit *ev, size_t nev, const uint8_t *body,
      size_t body_len, struct pa_buf *out)
{
	struct milter_field f;
	size_t pos = 0;
	bool first = true;

	while (milter_next_field(data, size, &pos, &f)) {
		const struct edit *change = NULL;

		if (first) {
			/* Received: is ours and stays first, unchanged; the additions follow it. */
			first = false;
			if (pa_buf_append(out, data + f.off, f.len) != PA_OK)
				return PA_ERROR;
			for (size_t i = 0; i < nev; i++)
				if (ev[i].kind == MILTER_EDIT_ADD &&
				    put_field(out, &ev[i]) != PA_OK)
					return PA_ERROR;
			for (size_t i = 0; i < nev; i++)
				if (ev[i].kind == MILTER_EDIT_CHANGE &&
				    same_name(data, &f, &ev[i]) && ++ev[i].seen == ev[i].index)
					ev[i].done = true; /* never changed, never duplicated */
			continue;
		}
		for (size_t i = 0; i < nev; i++) {
			/* Counted as the fields go by: one pass, however many share a name. */
			if (ev[i].kind != MILTER_EDIT_CHANGE || !same_name(data, &f, &ev[i]))
				continue;
			if (++ev[i].seen == ev[i].index) {
				ev[i].done = true;
				change = &ev[i]; /* the last one for a field wins */
			}
		}
		if (change == NULL) {
			if (pa_buf_append(out, data + f.off, f.len) != PA_OK)
				return PA_ERROR;
		} else if (change->value_len > 0 && put_field(out, change) != PA_OK) {
			return PA_ERROR;
		}
	}
	for (size_t i = 0; i < nev; i++)
		if (ev[i].kind == MILTER_EDIT_CHANGE && !ev[i].done && ev[i].value_len > 0 &&
		    put_field(out, &ev[i]) != PA_OK)
			return PA_ERROR;
	if (body == NULL)
		return pa_buf_append(out, data + pos, size - pos);
	/* The empty line, then the filter's body, ending with CRLF like any other. */
	if (pa_buf_append(out, "\r\n", 2) != PA_OK || pa_buf_append(out, body, body_len) != PA_OK)
		return PA_ERROR;
	if (body_len > 0 && (body_len < 2 || memcmp(body + body_len - 2, "\r\n", 2) != 0))
		return pa_buf_append(out, "\r\n", 2);
	return PA_OK;
}

bool
milter_crlf_only(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\r' && (i + 1 == len || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
	}
	return true;
}

int
milter_edit_apply(const uint8_t *data, size_t size, const uint8_t *edits, size_t edits_len,
                  const uint8_t *body, size_t body_len, struct pa_buf *out)
{
	struct pa_buf ev; /* struct edit[], one per record */
	int rc = PA_OK;

	pa_buf_reset(out);
	/* A record is at least RECORD_HEAD octets: that bounds the array. */
	pa_buf_init(&ev, 32 * sizeof(struct edit),
	            (edits_len / RECORD_HEAD + 1) * sizeof(struct edit));
	for (size_t off = 0; rc == PA_OK && off + RECORD_HEAD <= edits_len;) {
		struct edit e;

		off += read_edit(edits + off, &e);
		rc = pa_buf_append(&ev, &e, sizeof(e));
	}
	if (rc == PA_OK)
		rc = apply(data, size, (struct edit *)pa_buf_head(&ev),
		           pa_buf_pending(&ev) / sizeof(struct edit), body, body_len, out);
	pa_buf_free(&ev);
	return rc;
}
