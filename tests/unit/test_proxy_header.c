/*
 * test_proxy_header.c: the PROXY protocol parser (smtp/proxy_header.h)
 * against haproxy's doc/proxy-protocol.txt: v1 and v2 headers parse to the
 * right addresses and length, every proper prefix asks for more, and every
 * malformed header is refused, as early as possible and never past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "smtp/proxy_header.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: signature, ver/cmd, fam/proto, then body (its length is written). */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen > 0)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

/* Every proper prefix of a valid header needs more; the whole parses to its length. */
static void
assert_prefixes_need_more(const uint8_t *buf, size_t len)
{
	struct proxy_header h;

	for (size_t i = 0; i < len; i++) {
		/* A copy of exactly i octets, so that ASan sees any read past it. */
		uint8_t *p = malloc(i + 1);

		assert_non_null(p);
		memcpy(p, buf, i);
		assert_int_equal(proxy_header_parse(i ? p : NULL, i, &h), PROXY_HEADER_NEED_MORE);
		assert_true(proxy_header_signature(p, i));
		free(p);
	}
	assert_int_equal(proxy_header_parse(buf, len, &h), (int)len);
}

static void
test_v1_tcp4(void **state)
{
	static const char hdr[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n";
	struct proxy_header h;
	char addr[PROXY_ADDR_STR_MAX];
	uint8_t buf[128];

	(void)state;
	/* Followed by SMTP: only the header is consumed. */
	memcpy(buf, hdr, sizeof(hdr) - 1);
	memcpy(buf + sizeof(hdr) - 1, "EHLO x\r\n", 8);
	assert_int_equal(proxy_header_parse(buf, sizeof(hdr) - 1 + 8, &h), (int)sizeof(hdr) - 1);
	assert_int_equal(h.version, 1);
	assert_true(h.has_addr);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.src_port, 56324);
	assert_int_equal(h.dst_port, 25);
	proxy_header_src_str(&h, addr);
	assert_string_equal(addr, "192.0.2.7");
	assert_prefixes_need_more(LIT(hdr));
}

static void
test_v1_tcp6_and_unknown(void **state)
{
	static const char six[] = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
	static const char unknown[] = "PROXY UNKNOWN\r\n";
	static const char unknown_long[] = "PROXY UNKNOWN ffff:f::f ffff:f::f 1 2\r\n";
	struct proxy_header h;
	char addr[PROXY_ADDR_STR_MAX];

	(void)state;
	assert_int_equal(proxy_header_parse(LIT(six), &h), (int)sizeof(six) - 1);
	assert_int_equal(h.family, AF_INET6);
	assert_int_equal(h.src_port, 65535);
	assert_int_equal(h.dst_port, 0);
	proxy_header_src_str(&h, addr);
	assert_string_equal(addr, "2001:db8::1");

	/* 2.1: UNKNOWN: the rest of the line is ignored, the real endpoints stand. */
	assert_int_equal(proxy_header_parse(LIT(unknown), &h), (int)sizeof(unknown) - 1);
	assert_false(h.has_addr);
	proxy_header_src_str(&h, addr);
	assert_string_equal(addr, "");
	assert_int_equal(proxy_header_parse(LIT(unknown_long), &h), (int)sizeof(unknown_long) - 1);
	assert_false(h.has_addr);
	assert_prefixes_need_more(LIT(unknown_long));
}

static void
test_v1_malformed(void **state)
{
	static const char *const bad[] = {
	    "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",      /* a field missing */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25 1\r\n", /* one too many */
	    "PROXY TCP4  192.0.2.7 198.51.100.1 56324 25\r\n",  /* two spaces */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25 \r\n",  /* trailing space */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 056324 25\r\n",  /* leading zero */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",   /* port range */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n",      /* sign */
	    "PROXY TCP4 256.0.2.7 198.51.100.1 1 25\r\n",       /* octet range */
	    "PROXY TCP4 192.0.2.07 198.51.100.1 1 25\r\n",      /* not canonical */
	    "PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",     /* wrong family */
	    "PROXY TCP6 192.0.2.7 2001:db8::2 1 25\r\n",        /* wrong family */
	    "PROXY TCP5 192.0.2.7 198.51.100.1 1 25\r\n",       /* no such protocol */
	    "PROXY tcp4 192.0.2.7 198.51.100.1 1 25\r\n",       /* case matters */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n",         /* bare LF */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\rX",        /* bare CR */
	    "PROXY UNKNOWNX\r\n",                               /* not the word */
	    "PROXY \r\n",                                       /* empty */
	    "PROXY TCP4 192.0.2.7\x80 198.51.100.1 1 25\r\n",   /* 8-bit */
	    "PROXYTCP4 192.0.2.7 198.51.100.1 1 25\r\n",        /* signature */
	    "proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n",       /* signature */
	    "EHLO client.example.org\r\n",                      /* SMTP */
	    "GET / HTTP/1.1\r\n",                               /* HTTP */
	};
	struct proxy_header h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(proxy_header_parse((const uint8_t *)bad[i], strlen(bad[i]), &h),
		                 PROXY_HEADER_BAD);
	}
	assert_int_equal(
	    proxy_header_parse(LIT("PROXY TCP4 192.0.2.7\0 198.51.100.1 1 25\r\n"), &h),
	    PROXY_HEADER_BAD);
	/* Refused from the first octet that cannot be a header. */
	assert_int_equal(proxy_header_parse(LIT("E"), &h), PROXY_HEADER_BAD);
	assert_int_equal(proxy_header_parse(LIT("PROXX"), &h), PROXY_HEADER_BAD);
	assert_false(proxy_header_signature(LIT("EHLO")));
	assert_false(proxy_header_signature(LIT("PROXX")));
}

/* 2.1: no CRLF within 107 octets is not a header, however it goes on. */
static void
test_v1_length_bound(void **state)
{
	uint8_t buf[300];
	struct proxy_header h;

	(void)state;
	memcpy(buf, "PROXY UNKNOWN ", 14);
	memset(buf + 14, 'a', sizeof(buf) - 14);
	assert_int_equal(proxy_header_parse(buf, 106, &h), PROXY_HEADER_NEED_MORE);
	assert_int_equal(proxy_header_parse(buf, 107, &h), PROXY_HEADER_BAD);
	assert_int_equal(proxy_header_parse(buf, sizeof(buf), &h), PROXY_HEADER_BAD);
	/* Exactly 107 with the CRLF is the longest accepted. */
	buf[105] = '\r';
	buf[106] = '\n';
	assert_int_equal(proxy_header_parse(buf, 107, &h), 107);
	buf[105] = 'a';
	buf[106] = '\r';
	buf[107] = '\n';
	assert_int_equal(proxy_header_parse(buf, 108, &h), PROXY_HEADER_BAD);
}

static void
test_v2_inet(void **state)
{
	/* 192.0.2.7:56324 -> 198.51.100.1:25, then a NOOP TLV (type 0x04) of 2 octets */
	static const uint8_t body[] = {192,  0,    2,    7,    198, 51, 100, 1,  0xdc,
	                               0x04, 0x00, 0x19, 0x04, 0,   2,  'x', 'y'};
	uint8_t buf[64];
	size_t len = v2(buf, 0x21, 0x11, body, sizeof(body));
	struct proxy_header h;
	char addr[PROXY_ADDR_STR_MAX];

	(void)state;
	assert_int_equal(proxy_header_parse(buf, len, &h), (int)len);
	assert_int_equal(h.version, 2);
	assert_true(h.has_addr);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.src_port, 56324);
	assert_int_equal(h.dst_port, 25);
	proxy_header_src_str(&h, addr);
	assert_string_equal(addr, "192.0.2.7");
	assert_prefixes_need_more(buf, len);
}

static void
test_v2_inet6_local_unspec(void **state)
{
	uint8_t body[36] = {0x20, 0x01, 0x0d, 0xb8};
	uint8_t buf[128];
	size_t len;
	struct proxy_header h;
	char addr[PROXY_ADDR_STR_MAX];

	(void)state;
	body[15] = 1;
	body[16] = 0x20;
	body[17] = 0x01;
	body[32] = 0x01; /* src port 256 */
	body[35] = 25;
	len = v2(buf, 0x21, 0x21, body, sizeof(body));
	assert_int_equal(proxy_header_parse(buf, len, &h), (int)len);
	assert_int_equal(h.family, AF_INET6);
	assert_int_equal(h.src_port, 256);
	proxy_header_src_str(&h, addr);
	assert_string_equal(addr, "2001:db8::1");

	/* 2.2 LOCAL (a health check): valid, no address, its block skipped unread. */
	len = v2(buf, 0x20, 0x00, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, len, &h), 16);
	assert_false(h.has_addr);
	len = v2(buf, 0x20, 0x11, (const uint8_t *)"\xff\xff\xff", 3);
	assert_int_equal(proxy_header_parse(buf, len, &h), 19);
	assert_false(h.has_addr);

	/* PROXY with AF_UNSPEC, or AF_UNIX: the real endpoints stand. */
	len = v2(buf, 0x21, 0x00, NULL, 0);
	assert_int_equal(proxy_header_parse(buf, len, &h), 16);
	assert_false(h.has_addr);
}

static void
test_v2_malformed(void **state)
{
	static const uint8_t inet[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 25};
	uint8_t buf[PROXY_HEADER_MAX + 64], body[16];
	struct proxy_header h;
	size_t len;

	(void)state;
	/* version 1 in the binary form; command 2..15 */
	len = v2(buf, 0x11, 0x11, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, 13, &h), PROXY_HEADER_BAD);
	len = v2(buf, 0x22, 0x11, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	/* family 4, protocol 3; datagrams are not SMTP */
	len = v2(buf, 0x21, 0x41, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, 14, &h), PROXY_HEADER_BAD);
	len = v2(buf, 0x21, 0x13, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	len = v2(buf, 0x21, 0x12, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	/* a length too short for the family's addresses: refused before they arrive */
	len = v2(buf, 0x21, 0x11, inet, 11);
	assert_int_equal(proxy_header_parse(buf, 16, &h), PROXY_HEADER_BAD);
	len = v2(buf, 0x21, 0x21, inet, sizeof(inet));
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	/* over PROXY_HEADER_MAX: refused from the length field, nothing buffered */
	memset(buf + 16, 0, sizeof(buf) - 16);
	v2(buf, 0x21, 0x11, NULL, 0);
	buf[14] = (uint8_t)((PROXY_HEADER_MAX - 15) >> 8);
	buf[15] = (uint8_t)(PROXY_HEADER_MAX - 15);
	assert_int_equal(proxy_header_parse(buf, 16, &h), PROXY_HEADER_BAD);
	buf[14] = (uint8_t)((PROXY_HEADER_MAX - 16) >> 8);
	buf[15] = (uint8_t)(PROXY_HEADER_MAX - 16);
	assert_int_equal(proxy_header_parse(buf, 16, &h), PROXY_HEADER_NEED_MORE);
	buf[14] = buf[15] = 0xff;
	assert_int_equal(proxy_header_parse(buf, 16, &h), PROXY_HEADER_BAD);
	/* TLVs that do not tile the rest: a length past the end, a lone octet */
	memcpy(body, inet, sizeof(inet));
	memcpy(body + 12, "\x04\x00\x05\x00", 4);
	len = v2(buf, 0x21, 0x11, body, 16);
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	len = v2(buf, 0x21, 0x11, body, 13);
	assert_int_equal(proxy_header_parse(buf, len, &h), PROXY_HEADER_BAD);
	/* a broken signature */
	len = v2(buf, 0x21, 0x11, inet, sizeof(inet));
	buf[7] = 'q';
	assert_int_equal(proxy_header_parse(buf, 8, &h), PROXY_HEADER_BAD);
	assert_false(proxy_header_signature(buf, 8));
}

/* Random octets behind each signature: never a crash, never a length past len. */
static void
test_random_input(void **state)
{
	uint8_t buf[PROXY_HEADER_MAX + 32];
	struct proxy_header h;
	uint32_t x = 12345;

	(void)state;
	for (unsigned round = 0; round < 20000; round++) {
		size_t len = 0;
		int rc;

		for (size_t i = 0; i < sizeof(buf); i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (uint8_t)(x >> 16);
		}
		x = x * 1103515245u + 12345u;
		len = (x >> 8) % sizeof(buf);
		if (round % 2 == 0) {
			memcpy(buf, v2_sig, sizeof(v2_sig));
			buf[12] = (uint8_t)(0x20 | (buf[12] & 1));
			buf[13] = (uint8_t)((buf[13] % 3) << 4 | 1);
			buf[14] = 0;
			buf[15] = (uint8_t)(12 + buf[15] % 40);
		} else {
			memcpy(buf, "PROXY TCP4 ", 11);
		}
		if (len < 16)
			len = 16;
		rc = proxy_header_parse(buf, len, &h);
		assert_true(rc == PROXY_HEADER_BAD || rc == PROXY_HEADER_NEED_MORE ||
		            (rc > 0 && (size_t)rc <= len && rc <= PROXY_HEADER_MAX));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_tcp4),      cmocka_unit_test(test_v1_tcp6_and_unknown),
	    cmocka_unit_test(test_v1_malformed), cmocka_unit_test(test_v1_length_bound),
	    cmocka_unit_test(test_v2_inet),      cmocka_unit_test(test_v2_inet6_local_unspec),
	    cmocka_unit_test(test_v2_malformed), cmocka_unit_test(test_random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
