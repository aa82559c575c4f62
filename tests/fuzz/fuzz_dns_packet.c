/*
 * fuzz_dns_packet.c: the resolver's own reading of DNS messages
 * (dns/dns_packet.c), which sees the bytes a DNS server (or anyone who can
 * spoof one) sends.  On an exact-size heap copy of the input:
 *  - never a read past len (ASan);
 *  - the TTL is at most INT32_MAX (RFC 2181 8);
 *  - a truncated message gives no more than 0 or the same answer: nothing
 *    read past the cut can be used, so a prefix that ends inside the SOA
 *    gives 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_packet.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy = malloc(size > 0 ? size : 1);
	uint32_t ttl;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	ttl = dns_negative_ttl(copy, size);
	CHECK(ttl <= INT32_MAX);
	/* The whole SOA must be in the message: one octet less and it is not there. */
	if (ttl != 0 && size > 0)
		CHECK(dns_negative_ttl(copy, size - 1) == 0 ||
		      dns_negative_ttl(copy, size - 1) == ttl);
	free(copy);
	return 0;
}
