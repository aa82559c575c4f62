/*
 * fuzz_proxy_header.c: the PROXY protocol v1/v2 parser (smtp/proxy_header.c).
 *
 * The header is the first thing a peer sends, before any check but the
 * trusted-proxy list; its parser is pure, so the harness holds it to every
 * promise of proxy_header.h, on an exact-size heap copy of the input:
 *  - never a read past len (ASan), a length in 1..min(len, PROXY_HEADER_MAX);
 *  - prefixes are consistent: every proper prefix of a header that parses is
 *    NEED_MORE, and once a prefix is BAD every longer one is BAD too (a host
 *    that saw BAD early may drop the peer at once);
 *  - octets after the header change nothing;
 *  - anything that parses or may still parse starts with the signature;
 *  - a header with an address has a family and a printable source.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "smtp/proxy_header.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_header(const struct proxy_header *h)
{
	char src[PROXY_ADDR_STR_MAX];

	CHECK(h->version == 1 || h->version == 2);
	proxy_header_src_str(h, src);
	CHECK(memchr(src, '\0', sizeof(src)) != NULL);
	if (h->has_addr)
		CHECK((h->family == AF_INET || h->family == AF_INET6) && src[0] != '\0');
	else
		CHECK(h->family == AF_UNSPEC && src[0] == '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, again;
	uint8_t *buf = malloc(size > 0 ? size : 1);
	size_t limit;
	int r, first_bad = -1;

	CHECK(buf != NULL);
	memcpy(buf, data, size);
	r = proxy_header_parse(size > 0 ? buf : NULL, size, &h);
	CHECK(r == PROXY_HEADER_NEED_MORE || r == PROXY_HEADER_BAD ||
	      (r > 0 && (size_t)r <= size && r <= PROXY_HEADER_MAX));
	if (r != PROXY_HEADER_BAD)
		CHECK(proxy_header_signature(buf, size));
	if (r > 0) {
		check_header(&h);
		CHECK(proxy_header_parse(buf, (size_t)r, &again) == r);
		CHECK(memcmp(&h, &again, sizeof(h)) == 0);
	}
	/* Prefixes, each in a buffer of its own size so that ASan sees an overread. */
	limit = r > 0 ? (size_t)r : size;
	if (limit > PROXY_HEADER_MAX + 1)
		limit = PROXY_HEADER_MAX + 1;
	for (size_t k = 0; k < limit; k++) {
		uint8_t *pre = malloc(k > 0 ? k : 1);
		int rk;

		CHECK(pre != NULL);
		memcpy(pre, buf, k);
		rk = proxy_header_parse(k > 0 ? pre : NULL, k, &again);
		free(pre);
		if (r > 0)
			CHECK(rk == PROXY_HEADER_NEED_MORE);
		if (first_bad >= 0)
			CHECK(rk == PROXY_HEADER_BAD);
		if (rk == PROXY_HEADER_BAD && first_bad < 0)
			first_bad = (int)k;
		CHECK(rk <= 0 || (size_t)rk <= k);
	}
	if (first_bad >= 0)
		CHECK(r == PROXY_HEADER_BAD);
	free(buf);
	return 0;
}
