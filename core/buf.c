/*
 * buf.c: the growable byte buffer of buf.h.
 */
#include "core/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"

void
pa_buf_init(struct pa_buf *b, size_t initial, size_t max)
{
	b->data = NULL;
	b->off = b->len = b->cap = 0;
	b->initial = initial > 0 ? initial : 1;
	b->max = max >= b->initial ? max : b->initial;
}

int
pa_buf_reserve(struct pa_buf *b, size_t n)
{
	size_t need, cap;
	uint8_t *data;

	/* Consumed octets first: reclaiming them costs no allocation. */
	if (b->off > 0 && b->off == b->len) {
		b->off = b->len = 0;
	} else if (b->off > 0 && n > b->cap - b->len) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (n <= b->cap - b->len)
		return PA_OK;
	/* len <= max always, so this neither overflows nor lets the buffer pass max. */
	if (n > b->max - b->len)
		return PA_ERROR;
	need = b->len + n;
	cap = b->cap > 0 ? b->cap : b->initial;
	while (cap < need)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	if (cap > b->max)
		cap = b->max;
	data = realloc(b->data, cap);
	if (data == NULL)
		return PA_ERROR;
	b->data = data;
	b->cap = cap;
	return PA_OK;
}

int
pa_buf_append(struct pa_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return PA_OK;
	if (pa_buf_reserve(b, n) != PA_OK)
		return PA_ERROR;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return PA_OK;
}

void
pa_buf_consume(struct pa_buf *b, size_t n)
{
	if (n >= b->len - b->off)
		b->off = b->len = 0;
	else
		b->off += n;
}

void
pa_buf_reset(struct pa_buf *b)
{
	b->off = b->len = 0;
}

void
pa_buf_free(struct pa_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
