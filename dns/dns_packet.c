/*
 * dns_packet.c: the negative-answer TTL of a DNS message (dns_packet.h),
 * walking the message as RFC 1035 4.1 lays it out.
 */
#include "dns/dns_packet.h"

#include <stdint.h>

#define HEADER_LEN 12
#define TYPE_SOA 6
#define SOA_RDATA_MIN 22 /* two root names and five 32-bit fields */

/* Past a domain name (RFC 1035 4.1.4: labels, or ending in a pointer); NULL if malformed. */
static const unsigned char *
skip_name(const unsigned char *p, const unsigned char *end)
{
	while (p < end) {
		if ((*p & 0xc0) == 0xc0)
			return end - p >= 2 ? p + 2 : NULL;
		if (*p == 0)
			return p + 1;
		if ((*p & 0xc0) != 0)
			return NULL; /* 01 and 10 prefixes are not in use */
		if (end - p < 1 + *p)
			return NULL;
		p += 1 + *p;
	}
	return NULL;
}

static uint32_t
u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint32_t
dns_negative_ttl(const unsigned char *msg, size_t len)
{
	const unsigned char *p = msg + HEADER_LEN, *end = msg + len;
	unsigned qd, an, ns;

	if (msg == NULL || len < HEADER_LEN)
		return 0;
	qd = (unsigned)msg[4] << 8 | msg[5];
	an = (unsigned)msg[6] << 8 | msg[7];
	ns = (unsigned)msg[8] << 8 | msg[9];
	for (unsigned i = 0; i < qd; i++) {
		p = skip_name(p, end);
		if (p == NULL || end - p < 4)
			return 0;
		p += 4; /* QTYPE, QCLASS */
	}
	for (unsigned i = 0; i < an + ns; i++) {
		unsigned type, rdlen;
		uint32_t ttl, minimum;

		p = skip_name(p, end);
		if (p == NULL || end - p < 10)
			return 0;
		type = (unsigned)p[0] << 8 | p[1];
		ttl = u32(p + 4);
		rdlen = (unsigned)p[8] << 8 | p[9];
		p += 10;
		if ((size_t)(end - p) < rdlen)
			return 0;
		if (i >= an && type == TYPE_SOA) {
			if (rdlen < SOA_RDATA_MIN)
				return 0;
			minimum = u32(p + rdlen - 4);
			/* RFC 2181 8: a value with the top bit set means zero. */
			if (ttl > INT32_MAX)
				ttl = 0;
			if (minimum > INT32_MAX)
				minimum = 0;
			return ttl < minimum ? ttl : minimum;
		}
		p += rdlen;
	}
	return 0;
}
