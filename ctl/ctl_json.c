/*
 * ctl_json.c: JSON, time and base64 helpers for the control protocol (ctl_json.h).
 *
 * Message bytes travel in JSON as base64 because a JSON string must be
 * UTF-8 and a stored message need not be: `spool show` must give the
 * stored bytes back unchanged.
 */
#include "ctl/ctl_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool
utf8_valid(const char *p, size_t n)
{
	json_t *t = json_stringn(p, n);

	json_decref(t);
	return t != NULL;
}

json_t *
ctl_json_lossy(const char *s)
{
	json_t *j = json_string(s);
	size_t len = strlen(s), o = 0;
	char *copy;

	if (j != NULL)
		return j;
	copy = malloc(len * 3 + 1);
	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80                 ? 1
		           : c >= 0xc2 && c <= 0xdf ? 2
		           : (c & 0xf0) == 0xe0     ? 3
		           : c >= 0xf0 && c <= 0xf4 ? 4
		                                    : 0;

		if (n != 0 && i + n <= len && utf8_valid(s + i, n)) {
			memcpy(copy + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(copy + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(copy, o);
	free(copy);
	return j;
}

void
ctl_format_time(uint64_t us, char out[32])
{
	time_t secs = (time_t)(us / 1000000u);
	struct tm tm;
	char base[24];

	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 32, "?");
		return;
	}
	snprintf(out, 32, "%s.%06uZ", base, (unsigned)(us % 1000000u));
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
ctl_base64_encode(const uint8_t *in, size_t len, size_t *outlen)
{
	size_t n = (len + 2) / 3 * 4, o = 0;
	char *out = malloc(n + 1);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static int
b64_value(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;

	return p != NULL ? (int)(p - b64) : -1;
}

uint8_t *
ctl_base64_decode(const char *in, size_t len, size_t *outlen)
{
	uint8_t *out;
	size_t o = 0;

	if (len % 4 != 0)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		bool last = i + 4 == len;

		for (int k = 0; k < 4; k++)
			v[k] = b64_value(in[i + k]);
		if (v[0] < 0 || v[1] < 0 || (v[2] < 0 && !(last && in[i + 2] == '=')) ||
		    (v[3] < 0 && !(last && in[i + 3] == '=')) || (v[2] < 0 && v[3] >= 0)) {
			free(out);
			return NULL;
		}
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			out[o++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
		if (v[3] >= 0)
			out[o++] = (uint8_t)(v[2] << 6 | v[3]);
	}
	*outlen = o;
	return out;
}
