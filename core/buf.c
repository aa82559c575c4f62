/*
 * buf.c: the growable byte buffer of buf.h.
 */
#include "core/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/objcache.h"
#include "core/pa.h"

void
pa_buf_init(struct pa_buf *b, size_t initial, size_t max)
{
	b->data = NULL;
	b->off = b->len = b->cap = 0;
	b->initial = initial > 0 ? initial : 1;
	b->max = max >= b->initial ? max : b->initial;
	b->cache = NULL;
	b->cached = false;
}

void
pa_buf_init_cached(struct pa_buf *b, const struct pa_objcache *cache, size_t max)
{
	pa_buf_init(b, cache->size, max);
	b->cache = cache;
}

/* A first allocation from the cache, or the move out of it when growing past it. */
static uint8_t *
grow_cached(struct pa_buf *b, size_t cap)
{
	uint8_t *data;

	if (b->data == NULL && cap == b->cache->size) {
		data = pa_objcache_get(b->cache);
		b->cached = data != NULL;
		return data;
	}
	if (!b->cached)
		return realloc(b->data, cap);
	data = malloc(cap);
	if (data == NULL)
		return NULL;
	memcpy(data, b->data, b->len);
	pa_objcache_put(b->cache, b->data);
	b->cached = false;
	return data;
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
	data = b->cache != NULL ? grow_cached(b, cap) : realloc(b->data, cap);
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
	if (b->cached)
		pa_objcache_put(b->cache, b->data);
	else
		free(b->data);
	b->data = NULL;
	b->cached = false;
	b->off = b->len = b->cap = 0;
}
