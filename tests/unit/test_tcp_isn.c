/*
 * test_tcp_isn.c: SipHash-2-4 against the reference vectors, RFC 6528 ISNs
 * (keyed, per tuple, advancing with the clock), and SYN cookies: they decode
 * to the MSS they encode, only for their own tuple and peer ISN, and expire
 * after two periods.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dataplane/tcp_isn.h"

static const struct tcp_secret ref_key = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

static void
test_siphash_vectors(void **state)
{
	uint8_t msg[64];

	(void)state;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	/* From the SipHash paper's reference implementation (vectors.h). */
	assert_true(siphash24(&ref_key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(siphash24(&ref_key, msg, 1) == 0x74f839c593dc67fdULL);
	assert_true(siphash24(&ref_key, msg, 8) == 0x93f5f5799a932462ULL);
	assert_true(siphash24(&ref_key, msg, 15) == 0xa129ca6149be45e5ULL);
}

static void
test_isn(void **state)
{
	struct tcp_secret other = {1, 2};
	uint32_t a = tcp_isn(&ref_key, 0x0200a8c0, 25, 0x0100a8c0, 40000, 1000000);

	(void)state;
	/* Same tuple, same time: same value; the 4 us clock moves it. */
	assert_int_equal(a, tcp_isn(&ref_key, 0x0200a8c0, 25, 0x0100a8c0, 40000, 1000000));
	assert_int_equal(a + 250, tcp_isn(&ref_key, 0x0200a8c0, 25, 0x0100a8c0, 40000, 1001000));
	assert_int_not_equal(a, tcp_isn(&ref_key, 0x0200a8c0, 25, 0x0100a8c0, 40001, 1000000));
	assert_int_not_equal(a, tcp_isn(&other, 0x0200a8c0, 25, 0x0100a8c0, 40000, 1000000));
}

static void
test_cookie_roundtrip(void **state)
{
	uint16_t mss = 0;
	static const uint16_t in[] = {1460, 1400, 536, 9000, 1000};
	static const uint16_t out[] = {1460, 1360, 536, 1460, 536};

	(void)state;
	for (unsigned i = 0; i < 5; i++) {
		uint32_t c = tcp_cookie_make(&ref_key, 1, 25, 2, 4000, 777, in[i], 6400);

		assert_true(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c, 6400, &mss));
		assert_int_equal(mss, out[i]);
	}
}

static void
test_cookie_rejects(void **state)
{
	uint16_t mss;
	uint32_t c = tcp_cookie_make(&ref_key, 1, 25, 2, 4000, 777, 1460, 6400);

	(void)state;
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4001, 777, c, 6400, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 3, 4000, 777, c, 6400, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 778, c, 6400, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c ^ 1, 6400, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c ^ (1u << 24), 6400, &mss));
	/* Valid in its period and the next; not after. */
	assert_true(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c, 6400 + 64, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c, 6400 + 128, &mss));
	assert_false(tcp_cookie_check(&ref_key, 1, 25, 2, 4000, 777, c, 6400 + 32 * 64, &mss));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_siphash_vectors),
	    cmocka_unit_test(test_isn),
	    cmocka_unit_test(test_cookie_roundtrip),
	    cmocka_unit_test(test_cookie_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
