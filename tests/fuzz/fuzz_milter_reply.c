/*
 * fuzz_milter_reply.c: the milter reply decoder (filter/milter_codec.c),
 * which reads what a content filter sends.  On an exact-size heap copy:
 *  - never a read past len (ASan);
 *  - a decoded reply took at most len octets, and every prefix of it is
 *    PA_AGAIN or PA_ERROR, never another reply;
 *  - its strings lie inside the packet, hold no NUL; a header value has no
 *    CR or LF but folding, a reply text is 4xx/5xx printable lines;
 *  - decoding goes on packet after packet until the input is spent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "filter/milter_codec.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_inside(const uint8_t *pkt, int n, const char *s, size_t len)
{
	CHECK((const uint8_t *)s >= pkt && (const uint8_t *)s + len <= pkt + n);
	CHECK(memchr(s, '\0', len) == NULL);
}

static void
check_reply(const uint8_t *pkt, int n, const struct milter_reply *r)
{
	struct milter_reply again;

	CHECK(n >= 5);
	if (r->name != NULL) {
		check_inside(pkt, n, r->name, r->name_len);
		check_inside(pkt, n, r->value, r->value_len);
		CHECK(r->name_len > 0 && memchr(r->name, ':', r->name_len) == NULL);
		for (size_t i = 0; i < r->value_len; i++)
			if (r->value[i] == '\n')
				CHECK(i + 1 < r->value_len &&
				      (r->value[i + 1] == ' ' || r->value[i + 1] == '\t'));
	}
	if (r->code == MILTER_R_REPLYCODE) {
		check_inside(pkt, n, r->text, r->text_len);
		CHECK(r->reply_code >= 400 && r->reply_code <= 599);
		CHECK(r->text_len <= MILTER_REPLY_TEXT_MAX);
	}
	if (r->code == MILTER_R_QUARANTINE)
		check_inside(pkt, n, r->text, r->text_len);
	/* a prefix of a reply is never a reply */
	for (int cut = 0; cut < n && cut < 16; cut++)
		CHECK(milter_decode(pkt, (size_t)cut, &again) < 0);
	CHECK(milter_decode(pkt, (size_t)n - 1, &again) < 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size > 0 ? size : 1);
	size_t off = 0;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	while (off < size) {
		struct milter_reply r;
		int n = milter_decode(copy + off, size - off, &r);

		if (n < 0)
			break;
		CHECK((size_t)n <= size - off);
		check_reply(copy + off, n, &r);
		off += (size_t)n;
	}
	free(copy);
	return 0;
}
