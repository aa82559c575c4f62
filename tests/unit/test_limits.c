/*
 * test_limits.c: the shared connection accounting (dataplane/conn_limits.h): the
 * total, per-address counts and rates that add up across workers, release,
 * expiry of stale entries through the QSBR grace period, IPv6 /64 keys, and
 * a full table failing open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <rte_cycles.h>
#include <rte_eal.h>

#include "core/pa.h"
#include "dataplane/conn_limits.h"
#include "smtp/smtp_session.h"

static void
key4(const char *dotted, struct limits_key *k)
{
	uint8_t a[4];
	unsigned b[4];

	assert_int_equal(sscanf(dotted, "%u.%u.%u.%u", &b[0], &b[1], &b[2], &b[3]), 4);
	for (int i = 0; i < 4; i++)
		a[i] = (uint8_t)b[i];
	limits_key_of(AF_INET, a, k);
}

static void
test_total(void **state)
{
	struct limits_conf conf = {.conn_total = 2};
	struct pa_limits *l = limits_create(2, 64, (char[128]){0}, 128);
	struct limits_hold h[3] = {0};

	(void)state;
	assert_non_null(l);
	assert_int_equal(limits_admit_total(l, &conf, &h[0]), SMTP_REFUSAL_NONE);
	assert_int_equal(limits_admit_total(l, &conf, &h[1]), SMTP_REFUSAL_NONE);
	assert_int_equal(limits_admit_total(l, &conf, &h[2]), SMTP_REFUSAL_CONN_TOTAL);
	assert_false(h[2].total);
	limits_release(l, 0, &h[0]);
	assert_int_equal(limits_admit_total(l, &conf, &h[2]), SMTP_REFUSAL_NONE);
	limits_release(l, 1, &h[1]);
	limits_release(l, 0, &h[2]);
	limits_destroy(l);
}

/* Connections of one address on two workers add up; another address is not affected. */
static void
test_per_ip_across_workers(void **state)
{
	struct limits_conf conf = {.conn_per_ip = 3};
	struct pa_limits *l = limits_create(2, 64, (char[128]){0}, 128);
	struct limits_hold h[6] = {0};
	struct limits_key a, b;

	(void)state;
	key4("192.0.2.1", &a);
	key4("192.0.2.2", &b);
	assert_int_equal(limits_admit_addr(l, 0, &a, &conf, &h[0]), SMTP_REFUSAL_NONE);
	assert_int_equal(limits_admit_addr(l, 1, &a, &conf, &h[1]), SMTP_REFUSAL_NONE);
	assert_int_equal(limits_admit_addr(l, 1, &a, &conf, &h[2]), SMTP_REFUSAL_NONE);
	assert_int_equal(limits_addr_conns(l, &a), 3);
	assert_int_equal(limits_admit_addr(l, 0, &a, &conf, &h[3]), SMTP_REFUSAL_CONN_PER_IP);
	assert_int_equal(h[3].entry, 0);
	assert_int_equal(limits_admit_addr(l, 0, &b, &conf, &h[4]), SMTP_REFUSAL_NONE);
	/* One closes (on the worker that took it): room again. */
	limits_release(l, 1, &h[1]);
	assert_int_equal(limits_addr_conns(l, &a), 2);
	assert_int_equal(limits_admit_addr(l, 0, &a, &conf, &h[5]), SMTP_REFUSAL_NONE);
	limits_release(l, 0, &h[0]);
	limits_release(l, 1, &h[2]);
	limits_release(l, 0, &h[4]);
	limits_release(l, 0, &h[5]);
	assert_int_equal(limits_addr_conns(l, &a), 0);
	limits_destroy(l);
}

/* Attempts per second, refused ones included; a new second starts afresh. */
static void
test_rate(void **state)
{
	struct limits_conf conf = {.conn_rate_per_ip = 4};
	struct pa_limits *l = limits_create(2, 64, (char[128]){0}, 128);
	struct limits_hold h = {0};
	struct limits_key a;
	unsigned ok = 0, refused = 0;

	(void)state;
	key4("198.51.100.7", &a);
	/* Within one second (retried if the second turns over mid-way). */
	for (int attempt = 0; attempt < 3; attempt++) {
		uint64_t start = rte_get_timer_cycles() / rte_get_timer_hz();

		ok = refused = 0;
		for (unsigned i = 0; i < 10; i++) {
			int why = limits_admit_addr(l, i % 2, &a, &conf, &h);

			if (why == SMTP_REFUSAL_NONE) {
				ok++;
				limits_release(l, i % 2, &h);
			} else {
				assert_int_equal(why, SMTP_REFUSAL_CONN_RATE);
				refused++;
			}
		}
		if (rte_get_timer_cycles() / rte_get_timer_hz() == start)
			break;
		sleep(1);
	}
	assert_int_equal(ok, 4);
	assert_int_equal(refused, 6);
	sleep(1);
	assert_int_equal(limits_admit_addr(l, 0, &a, &conf, &h), SMTP_REFUSAL_NONE);
	limits_release(l, 0, &h);
	limits_destroy(l);
}

/* A host's IPv6 addresses share one /64 budget; IPv4-mapped ones are their IPv4 address. */
static void
test_ipv6_prefix(void **state)
{
	static const uint8_t one[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
	static const uint8_t two[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9};
	static const uint8_t other[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2};
	static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
	struct limits_key a, b, c, m, v4;

	(void)state;
	limits_key_of(AF_INET6, one, &a);
	limits_key_of(AF_INET6, two, &b);
	limits_key_of(AF_INET6, other, &c);
	limits_key_of(AF_INET6, mapped, &m);
	key4("192.0.2.1", &v4);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_not_equal(&a, &c, sizeof(a));
	assert_memory_equal(&m, &v4, sizeof(m));
}

/*
 * A full table admits without per-address accounting (fail open); stale
 * entries expire after their grace period and the room comes back.
 */
static void
test_full_table_and_expiry(void **state)
{
	struct limits_conf conf = {.conn_per_ip = 1};
	struct pa_limits *l = limits_create(1, 64, (char[128]){0}, 128);
	struct limits_hold h = {0};
	unsigned untracked = 0;

	(void)state;
	for (unsigned i = 0; i < 200; i++) {
		struct limits_key k;
		char addr[32];

		snprintf(addr, sizeof(addr), "10.0.%u.%u", i / 250, i % 250);
		key4(addr, &k);
		assert_int_equal(limits_admit_addr(l, 0, &k, &conf, &h), SMTP_REFUSAL_NONE);
		untracked += h.untracked;
		limits_release(l, 0, &h);
	}
	assert_true(untracked >= 200 - 64);
	assert_true(limits_entries(l, 0) <= 64);
	/* Past the stale time, a few loops expire and reclaim every entry. */
	sleep(3);
	for (unsigned i = 0; i < 200; i++) {
		limits_tick(l, 0);
		usleep(1100);
	}
	assert_int_equal(limits_entries(l, 0), 0);
	{
		struct limits_key k;

		key4("10.9.9.9", &k);
		assert_int_equal(limits_admit_addr(l, 0, &k, &conf, &h), SMTP_REFUSAL_NONE);
		assert_false(h.untracked);
		assert_true(h.entry > 0);
		limits_release(l, 0, &h);
	}
	limits_destroy(l);
}

static int
setup(void **state)
{
	char *argv[] = {"test", "--no-huge",   "--no-pci",       "-m",
	                "64",   "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                NULL};

	(void)state;
	return rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0 ? -1 : 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_total),
	    cmocka_unit_test(test_per_ip_across_workers),
	    cmocka_unit_test(test_rate),
	    cmocka_unit_test(test_ipv6_prefix),
	    cmocka_unit_test(test_full_table_and_expiry),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
