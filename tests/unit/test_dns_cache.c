/*
 * test_dns_cache.c: the resolver's answer cache (dns/dns_cache.h): answers
 * kept for their TTL and never longer, negative answers too, failures and
 * TTL 0 never; bounded, the least recently used evicted and counted.  And
 * the TTL of a negative answer read from the message (dns/dns_packet.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "dns/dns_cache.h"
#include "dns/dns_packet.h"

static struct dns_answer
answer_of(const char *ip)
{
	struct dns_answer a = {.status = DNS_OK, .naddr = 1};

	inet_pton(AF_INET, ip, &a.addrs[0]);
	return a;
}

static void
test_dns_cache_ttl(void **state)
{
	struct dns_cache *c = dns_cache_new(8);
	struct dns_answer a = answer_of("127.0.0.2"), out;
	struct dns_answer nx = {.status = DNS_NOTFOUND};
	struct dns_answer fail = {.status = DNS_FAILED};
	struct dns_cache_stats st;
	uint32_t ttl;

	(void)state;
	assert_non_null(c);
	assert_false(dns_cache_get(c, "2.0.0.127.bl.example", 1000, &out, &ttl));
	dns_cache_put(c, "2.0.0.127.bl.example", &a, 300, 1000);
	assert_true(dns_cache_get(c, "2.0.0.127.bl.example", 1000, &out, &ttl));
	assert_int_equal(out.status, DNS_OK);
	assert_int_equal(out.naddr, 1);
	assert_memory_equal(&out.addrs[0], &a.addrs[0], 4);
	assert_int_equal(ttl, 300);
	/* the TTL left goes down with time, and the answer is gone when it is spent */
	assert_true(dns_cache_get(c, "2.0.0.127.bl.example", 1000 + 200500, &out, &ttl));
	assert_int_equal(ttl, 100);
	assert_false(dns_cache_get(c, "2.0.0.127.bl.example", 1000 + 300000, &out, &ttl));
	/* negative answers are kept too; failures and TTL 0 are not */
	dns_cache_put(c, "1.0.0.127.bl.example", &nx, 60, 1000);
	assert_true(dns_cache_get(c, "1.0.0.127.bl.example", 2000, &out, &ttl));
	assert_int_equal(out.status, DNS_NOTFOUND);
	dns_cache_put(c, "3.0.0.127.bl.example", &fail, 60, 1000);
	assert_false(dns_cache_get(c, "3.0.0.127.bl.example", 1000, &out, &ttl));
	dns_cache_put(c, "4.0.0.127.bl.example", &a, 0, 1000);
	assert_false(dns_cache_get(c, "4.0.0.127.bl.example", 1000, &out, &ttl));
	/* a new answer replaces the old one */
	a = answer_of("127.0.0.4");
	dns_cache_put(c, "1.0.0.127.bl.example", &a, 10, 3000);
	assert_true(dns_cache_get(c, "1.0.0.127.bl.example", 3000, &out, &ttl));
	assert_int_equal(out.status, DNS_OK);
	assert_int_equal(ttl, 10);
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.hits, 4);
	assert_int_equal(st.misses, 4);
	dns_cache_free(c);
}

static void
test_dns_cache_lru(void **state)
{
	struct dns_cache *c = dns_cache_new(4);
	struct dns_answer a = answer_of("127.0.0.2"), out;
	struct dns_cache_stats st;
	char name[64];
	uint32_t ttl;

	(void)state;
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "%d.bl.example", i);
		dns_cache_put(c, name, &a, 100, 0);
	}
	/* 0 is used again, so 1 is the least recently used when a fifth comes */
	assert_true(dns_cache_get(c, "0.bl.example", 10, &out, &ttl));
	dns_cache_put(c, "4.bl.example", &a, 100, 20);
	assert_false(dns_cache_get(c, "1.bl.example", 30, &out, &ttl));
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "%d.bl.example", i);
		if (i != 1)
			assert_true(dns_cache_get(c, name, 30, &out, &ttl));
	}
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.evictions, 1);
	/* many more names than slots: memory stays bounded, every eviction counted */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "%d.many.example", i);
		dns_cache_put(c, name, &a, 100, 40);
	}
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.evictions, 1001);
	assert_true(dns_cache_get(c, "999.many.example", 50, &out, &ttl));
	/* an expired entry pushed out is counted as expired, not evicted */
	dns_cache_put(c, "late.example", &a, 100, 200000);
	dns_cache_stats(c, &st);
	assert_int_equal(st.evictions, 1001);
	assert_int_equal(st.expired, 1);
	dns_cache_free(c);
}

/* An NXDOMAIN for 1.0.0.127.bl.test with the zone's SOA in the authority section. */
static size_t
nxdomain(unsigned char *m, uint32_t soa_ttl, uint32_t minimum, unsigned rdlen_cut)
{
	static const unsigned char head[] = {0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0};
	static const unsigned char qname[] = "\0011\0010\0010\003127\002bl\004test";
	size_t n = 0, rdstart;

	memcpy(m, head, sizeof(head));
	n = sizeof(head);
	memcpy(m + n, qname, sizeof(qname)); /* with its terminating root label */
	n += sizeof(qname);
	m[n++] = 0, m[n++] = 1, m[n++] = 0, m[n++] = 1;
	/* the zone bl.test: a pointer into the question's name (offset 12 + 10) */
	m[n++] = 0xc0, m[n++] = 22;
	m[n++] = 0, m[n++] = 6, m[n++] = 0, m[n++] = 1;
	m[n++] = (unsigned char)(soa_ttl >> 24), m[n++] = (unsigned char)(soa_ttl >> 16);
	m[n++] = (unsigned char)(soa_ttl >> 8), m[n++] = (unsigned char)soa_ttl;
	rdstart = n + 2;
	n = rdstart;
	m[n++] = 2, m[n++] = 'n', m[n++] = 's', m[n++] = 0xc0, m[n++] = 22;
	m[n++] = 1, m[n++] = 'h', m[n++] = 0xc0, m[n++] = 22;
	for (int i = 0; i < 4; i++) /* serial, refresh, retry, expire */
		m[n++] = 0, m[n++] = 0, m[n++] = 1, m[n++] = 0;
	m[n++] = (unsigned char)(minimum >> 24), m[n++] = (unsigned char)(minimum >> 16);
	m[n++] = (unsigned char)(minimum >> 8), m[n++] = (unsigned char)minimum;
	m[rdstart - 2] = (unsigned char)((n - rdstart + rdlen_cut) >> 8);
	m[rdstart - 1] = (unsigned char)(n - rdstart + rdlen_cut);
	return n;
}

static void
test_negative_ttl(void **state)
{
	unsigned char m[512];
	size_t n;

	(void)state;
	n = nxdomain(m, 300, 60, 0);
	assert_int_equal(dns_negative_ttl(m, n), 60); /* MINIMUM is smaller */
	n = nxdomain(m, 30, 60, 0);
	assert_int_equal(dns_negative_ttl(m, n), 30); /* the SOA's own TTL is */
	n = nxdomain(m, 0x80000000u, 60, 0);
	assert_int_equal(dns_negative_ttl(m, n), 0); /* RFC 2181 8: a TTL with its top bit */
	/* every truncation of the message is malformed: 0, never a read past its end */
	n = nxdomain(m, 300, 60, 0);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(dns_negative_ttl(m, cut), 0);
	/* an RDLENGTH past the end */
	n = nxdomain(m, 300, 60, 1);
	assert_int_equal(dns_negative_ttl(m, n), 0);
	/* no authority record: not kept */
	n = nxdomain(m, 300, 60, 0);
	m[9] = 0;
	assert_int_equal(dns_negative_ttl(m, n), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dns_cache_ttl),
	    cmocka_unit_test(test_dns_cache_lru),
	    cmocka_unit_test(test_negative_ttl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
