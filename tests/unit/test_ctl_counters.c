/*
 * test_ctl_counters.c: the export tables of ctl_counters.h and
 * dataplane/dp_counters.h cover every counter exactly once, with names
 * Prometheus and scripts can rely on.
 *
 * The build already fails when the number of rows and of fields of struct
 * dp_counters differ; this catches what a count cannot: two rows on one
 * field (and so another field left out), a row outside the structure, a
 * name used twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/ctl_counters.h"
#include "dataplane/dp_counters.h"
#include "dataplane/worker.h"
#include "core/pa.h"
#include "filter/milter_client.h"

#define DP_WORDS (sizeof(struct dp_counters) / sizeof(uint64_t))

static void
mark(unsigned *seen, size_t nwords, size_t off, size_t n)
{
	assert_int_equal(off % sizeof(uint64_t), 0);
	for (size_t w = off / sizeof(uint64_t); w < off / sizeof(uint64_t) + n; w++) {
		assert_true(w < nwords);
		seen[w]++;
	}
}

static void
test_tcp_rows_cover_every_field_once(void **state)
{
	unsigned seen[DP_WORDS] = {0};

	(void)state;
	for (size_t i = 0; i < dp_counter_table_n; i++)
		mark(seen, DP_WORDS, dp_counter_table[i].off, 1);
	/* The two arrays are written by reason, not by rows. */
	mark(seen, DP_WORDS, offsetof(struct dp_counters, drops), DP_DROP_COUNT);
	mark(seen, DP_WORDS, offsetof(struct dp_counters, rss_misqueued), DP_MISQ_COUNT);
	for (size_t w = 0; w < DP_WORDS; w++)
		if (seen[w] != 1)
			fail_msg("word %zu of struct dp_counters is exported %u times", w, seen[w]);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]*: the text format's metric names. */
static bool
metric_name_ok(const char *s)
{
	if (*s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == ':'))
			return false;
	return true;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void
check_rows(const struct ctl_counter *rows, size_t n, size_t struct_size)
{
	for (size_t i = 0; i < n; i++) {
		const struct ctl_counter *c = &rows[i];

		assert_true(c->off + sizeof(uint64_t) <= struct_size);
		assert_true(metric_name_ok(c->metric));
		assert_true(strncmp(c->metric, "pigeonair_", 10) == 0);
		assert_true(strcmp(c->type, "counter") == 0 || strcmp(c->type, "gauge") == 0);
		/* Prometheus' convention, and what promtool checks. */
		if (strcmp(c->type, "counter") == 0)
			assert_true(ends_with(c->metric, "_total"));
		assert_true(c->key[0] != '\0' && c->help[0] != '\0');
		for (size_t j = 0; j < i; j++) {
			if (strcmp(rows[j].key, c->key) == 0 ||
			    strcmp(rows[j].metric, c->metric) == 0)
				fail_msg("row %zu repeats the name of row %zu (%s)", i, j, c->key);
			if (rows[j].off == c->off)
				fail_msg("rows %zu and %zu export the same field", j, i);
		}
	}
}

static void
test_tcp_names(void **state)
{
	struct ctl_counter rows[64];

	(void)state;
	assert_true(dp_counter_table_n <= sizeof(rows) / sizeof(rows[0]));
	for (size_t i = 0; i < dp_counter_table_n; i++) {
		const struct dp_counter *d = &dp_counter_table[i];

		rows[i] = (struct ctl_counter){d->key, d->metric, d->type, d->help, d->off};
	}
	check_rows(rows, dp_counter_table_n, sizeof(struct dp_counters));
}

/*
 * The worker's line at exit keeps the short names it always had (the DPDK
 * integration tests read them), each once.
 */
static void
test_tcp_log_names(void **state)
{
	static const char *const expect[] = {
	    "rx",
	    "tx",
	    "conns",
	    "closed",
	    "reset",
	    "time_wait",
	    "tw_overflows",
	    "retransmits",
	    "rto",
	    "fast_rtx",
	    "sack_skipped",
	    "syns",
	    "synack_rtx",
	    "cookies_sent",
	    "cookies_ok",
	    "challenge_acks",
	    "challenge_acks_limited",
	    "rst_sent",
	    "ooo",
	    "icmp_echo",
	    "arp_replies",
	    "steered_out",
	    "steered_in",
	    "ip6_rx",
	    "nd_na",
	    "icmp6_echo",
	    "pmtu_lowered",
	    "pmtu_learned",
	    "pmtu_cached",
	    "dad_conflicts",
	    "mld_reports",
	};
	size_t logged = 0;

	(void)state;
	for (size_t i = 0; i < dp_counter_table_n; i++) {
		const char *log = dp_counter_table[i].log;

		if (log == NULL)
			continue;
		logged++;
		for (size_t j = 0; j < i; j++)
			if (dp_counter_table[j].log != NULL &&
			    strcmp(dp_counter_table[j].log, log) == 0)
				fail_msg("rows %zu and %zu log the same name %s", j, i, log);
	}
	assert_int_equal(logged, sizeof(expect) / sizeof(expect[0]));
	for (size_t e = 0; e < sizeof(expect) / sizeof(expect[0]); e++) {
		bool found = false;

		for (size_t i = 0; i < dp_counter_table_n; i++)
			found = found || (dp_counter_table[i].log != NULL &&
			                  strcmp(dp_counter_table[i].log, expect[e]) == 0);
		if (!found)
			fail_msg("no row logs %s", expect[e]);
	}
}

static void
test_tls_rows(void **state)
{
	static const size_t fields[] = {
	    offsetof(struct pa_worker_counters, tls_handshakes),
	    offsetof(struct pa_worker_counters, tls_resumed),
	    offsetof(struct pa_worker_counters, tls_handshake_failures),
	    offsetof(struct pa_worker_counters, tls_handshake_timeouts),
	    offsetof(struct pa_worker_counters, tls_handshakes_deferred),
	};

	(void)state;
	check_rows(ctl_tls_counters, ctl_tls_counters_n, sizeof(struct pa_worker_counters));
	/* Every TLS field of the worker's counters is a row or a version. */
	assert_int_equal(ctl_tls_counters_n, sizeof(fields) / sizeof(fields[0]));
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		bool found = false;

		for (size_t i = 0; i < ctl_tls_counters_n; i++)
			found = found || ctl_tls_counters[i].off == fields[f];
		assert_true(found);
	}
	assert_int_equal(ctl_tls_versions_n, 2);
	assert_string_equal(ctl_tls_versions[0].name, "TLSv1.2");
	assert_int_equal(ctl_tls_versions[0].off, offsetof(struct pa_worker_counters, tls_v1_2));
	assert_string_equal(ctl_tls_versions[1].name, "TLSv1.3");
	assert_int_equal(ctl_tls_versions[1].off, offsetof(struct pa_worker_counters, tls_v1_3));
}

/* Every word of the milter thread's counters is exported exactly once. */
static void
test_milter_rows(void **state)
{
	unsigned seen[sizeof(struct milter_client_stats) / sizeof(uint64_t)] = {0};

	(void)state;
	check_rows(ctl_milter_counters, ctl_milter_counters_n, sizeof(struct milter_client_stats));
	for (size_t i = 0; i < ctl_milter_counters_n; i++)
		mark(seen, pa_array_size(seen), ctl_milter_counters[i].off, 1);
	for (size_t w = 0; w < pa_array_size(seen); w++)
		if (seen[w] != 1)
			fail_msg("word %zu of struct milter_client_stats is exported %u times", w,
			         seen[w]);
}

/* The values are read at the row's offset: a known field gives its value back. */
static void
test_value_reads_the_field(void **state)
{
	struct dp_counters c;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.challenge_acks_limited = 7;
	c.active_opens = 11;
	for (size_t i = 0; i < dp_counter_table_n; i++) {
		uint64_t v = dp_counter_value(&c, &dp_counter_table[i]);

		if (strcmp(dp_counter_table[i].key, "challenge_acks_limited") == 0)
			assert_int_equal(v, 7);
		else if (strcmp(dp_counter_table[i].key, "active_opens") == 0)
			assert_int_equal(v, 11);
		else
			assert_int_equal(v, 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tcp_rows_cover_every_field_once),
	    cmocka_unit_test(test_tcp_names),
	    cmocka_unit_test(test_tcp_log_names),
	    cmocka_unit_test(test_tls_rows),
	    cmocka_unit_test(test_milter_rows),
	    cmocka_unit_test(test_value_reads_the_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
