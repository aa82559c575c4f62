/*
 * test_directory.c: the recipient directory: the file format (known,
 * unknown, alias, catch-all, case rules, comments, bad lines refused with
 * their number), snapshot lookups at scale, and the refresh thread: loads,
 * failed refreshes keeping the last snapshot, staleness, and snapshots
 * swapped under readers that hammer lookups (run under ASan by make test).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/pa.h"
#include "directory/directory.h"

static struct dir_snapshot *
parse(const char *text, bool case_sensitive)
{
	struct dir_builder *b = dir_builder_new(case_sensitive, 0);
	char err[512];

	assert_non_null(b);
	if (directory_file_parse(b, text, strlen(text), "t", err, sizeof(err)) != PA_OK)
		fail_msg("parse failed: %s", err);
	struct dir_snapshot *s = dir_builder_finish(b, err, sizeof(err));
	if (s == NULL)
		fail_msg("finish failed: %s", err);
	return s;
}

/* Returns the error message of a text that must not parse. */
static const char *
parse_error(const char *text, size_t len)
{
	static char err[512];
	struct dir_builder *b = dir_builder_new(false, 0);
	int rc = directory_file_parse(b, text, len, "dir.txt", err, sizeof(err));

	dir_builder_free(b);
	assert_int_equal(rc, PA_ERROR);
	return err;
}

static const char *const sample = "# the sample directory\n"
                                  "\n"
                                  "alice@example.com\n"
                                  "  Bob@Example.COM   store-2.internal   # bob's mailbox\n"
                                  "postmaster@example.com: alice@example.com\n"
                                  "abuse@example.com : postmaster@example.com\n"
                                  "@catchall.example\n"
                                  "carol@catchall.example store-9\n"
                                  "info@example.net: carol@catchall.example\r\n"
                                  "a#b@example.com\n";

static void
test_file_known_unknown_alias_catch_all(void **state)
{
	struct dir_snapshot *s = parse(sample, false);
	struct dir_answer a;
	struct dir_snapshot_stats st;

	(void)state;
	assert_int_equal(dir_snapshot_lookup(s, "alice@example.com", &a), DIR_MAILBOX);
	assert_string_equal(a.canonical, "alice@example.com");
	assert_string_equal(a.store, "");
	assert_int_equal(dir_snapshot_lookup(s, "bob@example.com", &a), DIR_MAILBOX);
	assert_string_equal(a.store, "store-2.internal");
	assert_int_equal(dir_snapshot_lookup(s, "mallory@example.com", &a), DIR_UNKNOWN_USER);
	assert_int_equal(dir_snapshot_lookup(s, "alice@example.org", &a), DIR_UNKNOWN_DOMAIN);
	assert_int_equal(dir_snapshot_lookup(s, "alice@sub.example.com", NULL), DIR_UNKNOWN_DOMAIN);
	/* An alias of an alias resolves to the mailbox in one step. */
	assert_int_equal(dir_snapshot_lookup(s, "postmaster@example.com", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "alice@example.com");
	assert_int_equal(dir_snapshot_lookup(s, "ABUSE@example.com", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "alice@example.com");
	/* Across domains, and to the store of the mailbox. */
	assert_int_equal(dir_snapshot_lookup(s, "info@example.net", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "carol@catchall.example");
	assert_string_equal(a.store, "store-9");
	assert_int_equal(dir_snapshot_lookup(s, "other@example.net", NULL), DIR_UNKNOWN_USER);
	/* Catch-all: unlisted addresses exist and stay as written; listed ones keep their data. */
	assert_int_equal(dir_snapshot_lookup(s, "Anyone@CatchAll.example", &a), DIR_CATCH_ALL);
	assert_string_equal(a.canonical, "Anyone@CatchAll.example");
	assert_int_equal(dir_snapshot_lookup(s, "carol@catchall.example", &a), DIR_MAILBOX);
	assert_string_equal(a.store, "store-9");
	/* '#' inside a token is part of the address, not a comment. */
	assert_int_equal(dir_snapshot_lookup(s, "a#b@example.com", NULL), DIR_MAILBOX);
	/* Not addresses at all. */
	assert_int_equal(dir_snapshot_lookup(s, "alice", NULL), DIR_UNKNOWN_DOMAIN);
	assert_int_equal(dir_snapshot_lookup(s, "alice@", NULL), DIR_UNKNOWN_DOMAIN);
	assert_int_equal(dir_snapshot_lookup(s, "@example.com", NULL), DIR_UNKNOWN_DOMAIN);
	assert_int_equal(dir_snapshot_lookup(s, "", NULL), DIR_UNKNOWN_DOMAIN);

	dir_snapshot_stats(s, &st);
	assert_int_equal(st.mailboxes, 4); /* alice, bob, carol, a#b */
	assert_int_equal(st.aliases, 3);
	assert_int_equal(st.catch_alls, 1);
	assert_int_equal(st.domains, 3);
	assert_int_equal(st.stores, 2);
	dir_snapshot_free(s);
}

static void
test_file_case_rules(void **state)
{
	struct dir_snapshot *ci = parse("John.Smith@Example.com\nAlias@example.com: "
	                                "John.Smith@example.com\n",
	                                false);
	struct dir_snapshot *cs = parse("John.Smith@Example.com\nAlias@example.com: "
	                                "John.Smith@example.com\n",
	                                true);
	struct dir_answer a;

	(void)state;
	/* Insensitive (the default): any case of the local part, folded canonical. */
	assert_int_equal(dir_snapshot_lookup(ci, "john.smith@example.com", NULL), DIR_MAILBOX);
	assert_int_equal(dir_snapshot_lookup(ci, "JOHN.SMITH@EXAMPLE.COM", NULL), DIR_MAILBOX);
	assert_int_equal(dir_snapshot_lookup(ci, "aLiAs@example.com", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "john.smith@example.com");
	/* Sensitive: the local part byte for byte, the domain still in any case. */
	assert_int_equal(dir_snapshot_lookup(cs, "John.Smith@EXAMPLE.COM", &a), DIR_MAILBOX);
	assert_string_equal(a.canonical, "John.Smith@example.com");
	assert_int_equal(dir_snapshot_lookup(cs, "john.smith@example.com", NULL), DIR_UNKNOWN_USER);
	assert_int_equal(dir_snapshot_lookup(cs, "alias@example.com", NULL), DIR_UNKNOWN_USER);
	assert_int_equal(dir_snapshot_lookup(cs, "Alias@Example.Com", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "John.Smith@example.com");
	dir_snapshot_free(ci);
	dir_snapshot_free(cs);
}

/*
 * A source may list a domain with U-labels: it is stored with A-labels, the
 * canonical form the host looks recipients up in (core/domain.h), so either
 * spelling in the file finds the same entries.
 */
static void
test_file_unicode_domains(void **state)
{
	struct dir_snapshot *s = parse("alice@m\xc3\xbcller.example\n"
	                               "sales@M\xc3\x9cLLER.example: alice@xn--mller-kva.example\n"
	                               "@b\xc3\xbc"
	                               "cher.example\n",
	                               false);
	static const char snowman[] = "a@\xe2\x98\x83.example\n";
	static const char underscore[] = "@m\xc3\xbc_ller.example\n";
	struct dir_snapshot_stats st;
	struct dir_answer a;

	(void)state;
	assert_int_equal(dir_snapshot_lookup(s, "alice@xn--mller-kva.example", &a), DIR_MAILBOX);
	assert_string_equal(a.canonical, "alice@xn--mller-kva.example");
	assert_int_equal(dir_snapshot_lookup(s, "Sales@XN--MLLER-KVA.example", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "alice@xn--mller-kva.example");
	assert_int_equal(dir_snapshot_lookup(s, "bob@xn--mller-kva.example", NULL),
	                 DIR_UNKNOWN_USER);
	assert_int_equal(dir_snapshot_lookup(s, "anyone@xn--bcher-kva.example", NULL),
	                 DIR_CATCH_ALL);
	dir_snapshot_stats(s, &st);
	assert_int_equal(st.domains, 2); /* one domain in two spellings, and the catch-all */
	dir_snapshot_free(s);
	/* IDNA2008 refuses a snowman; UTS #46 would drop the '_' */
	assert_non_null(strstr(parse_error(snowman, strlen(snowman)), "is not an address"));
	assert_non_null(strstr(parse_error(underscore, strlen(underscore)), "is not a domain"));
}

static void
test_file_bad_lines(void **state)
{
	static const struct {
		const char *text;
		const char *expect; /* prefix of the message */
	} bad[] = {
	    {"ok@example.com\nnot-an-address\n", "dir.txt:2: 'not-an-address' is not an address"},
	    {"ok@example.com\n\n# c\nx@bad_domain.com\n", "dir.txt:4: "},
	    {"a@example.com b c\n", "dir.txt:1: unexpected 'c'"},
	    {"a@example.com:\n", "dir.txt:1: alias 'a@example.com' has no canonical"},
	    {": a@example.com\n", "dir.txt:1: no address before ':'"},
	    {"@example.com: a@example.com\n", "dir.txt:1: a domain line"},
	    {"@exa mple.com\n", "dir.txt:1: "},
	    {"@\n", "dir.txt:1: '' is not a domain name"},
	    {"a@example.com\na@example.com: b@example.com\n",
	     "dir.txt:2: 'a@example.com' is already a mailbox"},
	    {"b@example.com: a@example.com\nb@example.com\n",
	     "dir.txt:2: 'b@example.com' is already an alias of 'a@example.com'"},
	    {"a@example.com: a@EXAMPLE.com\n", "dir.txt:1: 'a@example.com' is an alias of itself"},
	    {"a@example.com s1\na@example.com s2\n", "dir.txt:2: 'a@example.com' is already"},
	    {"a\"b@example.com\n", "dir.txt:1: "},
	    {"a@b@example.com\n", "dir.txt:1: "},
	    {"a@example..com\n", "dir.txt:1: "},
	    {"a@-\x01.com\n", "dir.txt:1: control octet 0x01"},
	    {"a@example.com bad@store\n", "dir.txt:1: 'bad@store' is not a store name"},
	};
	char longline[2048];
	char big_local[200];
	const char nul[] = "a@example.com\nb@exa\0mple.com\n";

	(void)state;
	for (size_t i = 0; i < pa_array_size(bad); i++) {
		const char *err = parse_error(bad[i].text, strlen(bad[i].text));

		if (strncmp(err, bad[i].expect, strlen(bad[i].expect)) != 0)
			fail_msg("case %zu: got '%s', want '%s...'", i, err, bad[i].expect);
	}
	assert_string_equal(parse_error(nul, sizeof(nul) - 1),
	                    "dir.txt:2: control octet 0x00 at column 6");
	memset(longline, 'a', sizeof(longline));
	longline[sizeof(longline) - 1] = '\n';
	assert_string_equal(parse_error(longline, sizeof(longline)),
	                    "dir.txt:1: line longer than 1024 octets");
	/* A local part over 64 octets is not an address (RFC 5321 4.5.3.1.1). */
	memset(big_local, 'x', sizeof(big_local));
	memcpy(big_local + 65, "@example.com\n", 14);
	assert_true(strstr(parse_error(big_local, strlen(big_local)), "is not an address") != NULL);
}

static uint64_t
next_random(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return *seed >> 33;
}

/*
 * Hostile input: lines of the format (a few addresses, so that aliases
 * chain, conflict and loop), then random octets overwritten in some of the
 * buffers.  Each either parses (and then looks up without trouble) or is
 * refused with a "NAME:LINE: " message; ASan (make test) checks every byte
 * the parser touches.
 */
static void
test_file_random_input(void **state)
{
	uint64_t seed = 0x853c49e6748fea9bULL;
	unsigned parsed = 0, refused = 0;

	(void)state;
	for (int round = 0; round < 3000; round++) {
		char buf[2048], err[512];
		size_t len = 0;
		unsigned lines = (unsigned)next_random(&seed) % 12 + 1;
		struct dir_builder *b = dir_builder_new(round % 2 == 0, 0);
		struct dir_snapshot *s;

		assert_non_null(b);
		for (unsigned l = 0; l < lines; l++) {
			unsigned u = (unsigned)next_random(&seed) % 6,
			         v = (unsigned)next_random(&seed) % 6;
			unsigned d = (unsigned)next_random(&seed) % 2;

			switch (next_random(&seed) % 6) {
			case 0:
				len += (size_t)sprintf(buf + len, "U%u@D%u.example\n", u, d);
				break;
			case 1:
				len += (size_t)sprintf(
				    buf + len, "u%u@d%u.example\tstore-%u # c\r\n", u, d, v);
				break;
			case 2:
				len += (size_t)sprintf(
				    buf + len, "u%u@d%u.example: u%u@d%u.example\n", u, d, v, d);
				break;
			case 3:
				len += (size_t)sprintf(buf + len, "@d%u.example\n", d + 2);
				break;
			case 4:
				len += (size_t)sprintf(buf + len, "  # comment %u\n", u);
				break;
			default:
				len += (size_t)sprintf(buf + len, "\n");
				break;
			}
		}
		/* Half the buffers get one to four random octets anywhere. */
		if (next_random(&seed) % 2) {
			unsigned n = (unsigned)next_random(&seed) % 4 + 1;

			for (unsigned k = 0; k < n && len > 0; k++)
				buf[next_random(&seed) % len] = (char)next_random(&seed);
		}
		lines = 1;
		for (size_t k = 0; k < len; k++)
			lines += buf[k] == '\n';
		if (directory_file_parse(b, buf, len, "fz", err, sizeof(err)) != PA_OK) {
			unsigned long line;
			char c;

			if (sscanf(err, "fz:%lu%c", &line, &c) != 2 || c != ':' || line == 0 ||
			    line > lines)
				fail_msg("round %d: error without a right line number: %s", round,
				         err);
			dir_builder_free(b);
			refused++;
			continue;
		}
		parsed++;
		s = dir_builder_finish(b, err, sizeof(err));
		if (s == NULL)
			continue; /* aliases among six addresses may loop */
		buf[len] = '\0';
		(void)dir_snapshot_lookup(s, "u1@d0.example", NULL);
		(void)dir_snapshot_lookup(s, "x@d2.example", NULL);
		(void)dir_snapshot_lookup(s, buf, NULL);
		dir_snapshot_free(s);
	}
	/* Both paths were exercised, not just the first error check. */
	printf("random input: %u parsed, %u refused\n", parsed, refused);
	assert_true(parsed > 300 && refused > 300);
}

static void
test_alias_loop_refused(void **state)
{
	struct dir_builder *b = dir_builder_new(false, 0);
	const char *text = "a@example.com: b@example.com\n"
	                   "b@example.com: c@example.com\n"
	                   "c@example.com: a@example.com\n";
	char err[512];

	(void)state;
	assert_int_equal(directory_file_parse(b, text, strlen(text), "loop", err, sizeof(err)),
	                 PA_OK);
	assert_null(dir_builder_finish(b, err, sizeof(err)));
	assert_non_null(strstr(err, "loop"));
}

static void
test_file_load_errors(void **state)
{
	struct dir_builder *b = dir_builder_new(false, 0);
	char err[512];

	(void)state;
	assert_int_equal(directory_file_load(b, "/nonexistent/dir.txt", err, sizeof(err)),
	                 PA_ERROR);
	assert_string_equal(err, "open(/nonexistent/dir.txt) failed: No such file or directory");
	assert_int_equal(directory_file_load(b, "/tmp", err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "not a regular file"));
	dir_builder_free(b);
}

static void
addr_of(char *out, size_t len, unsigned i, const char *domain)
{
	snprintf(out, len, "user%u.x@%s", i, domain);
}

static void
test_snapshot_at_scale(void **state)
{
	const unsigned n = 200000;
	struct dir_builder *b = dir_builder_new(false, 0); /* no hint: exercises growth */
	struct dir_snapshot *s;
	struct dir_snapshot_stats st;
	struct dir_answer a;
	char addr[128], canon[128], err[512];

	(void)state;
	for (unsigned i = 0; i < n; i++) {
		char store[32];

		addr_of(addr, sizeof(addr), i, i % 2 ? "odd.example" : "even.example");
		snprintf(store, sizeof(store), "store-%u", i % 7);
		assert_int_equal(dir_builder_add_mailbox(b, addr, strlen(addr), store,
		                                         strlen(store), err, sizeof(err)),
		                 PA_OK);
		if (i % 10 == 0) {
			snprintf(canon, sizeof(canon), "alias%u@alias.example", i);
			assert_int_equal(dir_builder_add_alias(b, canon, strlen(canon), addr,
			                                       strlen(addr), err, sizeof(err)),
			                 PA_OK);
		}
	}
	s = dir_builder_finish(b, err, sizeof(err));
	assert_non_null(s);
	dir_snapshot_stats(s, &st);
	assert_int_equal(st.mailboxes, n);
	assert_int_equal(st.aliases, n / 10);
	assert_int_equal(st.domains, 3);
	assert_int_equal(st.stores, 7);
	assert_true(st.table_slots * 3 >= (n + n / 10) * 4);
	for (unsigned i = 0; i < n; i++) {
		addr_of(addr, sizeof(addr), i, i % 2 ? "ODD.example" : "even.EXAMPLE");
		assert_int_equal(dir_snapshot_lookup(s, addr, &a), DIR_MAILBOX);
		snprintf(canon, sizeof(canon), "store-%u", i % 7);
		assert_string_equal(a.store, canon);
		/* The wrong domain for its parity: a miss in a known domain. */
		addr_of(addr, sizeof(addr), i, i % 2 ? "even.example" : "odd.example");
		assert_int_equal(dir_snapshot_lookup(s, addr, NULL), DIR_UNKNOWN_USER);
		if (i % 10 == 0) {
			snprintf(addr, sizeof(addr), "alias%u@alias.example", i);
			assert_int_equal(dir_snapshot_lookup(s, addr, &a), DIR_ALIAS);
			addr_of(canon, sizeof(canon), i, i % 2 ? "odd.example" : "even.example");
			assert_string_equal(a.canonical, canon);
		}
	}
	dir_snapshot_free(s);
}

/* ---- the directory instance ------------------------------------------------ */

struct tmpdir {
	char path[64];
	char file[96];
};

static void
tmpdir_make(struct tmpdir *t)
{
	snprintf(t->path, sizeof(t->path), "/tmp/pa-dir-test.XXXXXX");
	assert_non_null(mkdtemp(t->path));
	snprintf(t->file, sizeof(t->file), "%s/dir.txt", t->path);
}

static void
tmpdir_remove(struct tmpdir *t)
{
	unlink(t->file);
	rmdir(t->path);
}

static void
write_file(const char *path, const char *text)
{
	char tmp[128];
	FILE *f;

	/* Renamed into place, as an operator's tool would: a reader never sees half a file. */
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* What the refresh thread logged, for the tests that check it says why. */
struct log_capture {
	pthread_mutex_t lock;
	char text[8192];
	size_t len;
};

static void
capture_log(void *arg, int level, const char *msg)
{
	struct log_capture *c = arg;
	int n;

	pthread_mutex_lock(&c->lock);
	n = snprintf(c->text + c->len, sizeof(c->text) - c->len, "%d %s\n", level, msg);
	if (n > 0 && (size_t)n < sizeof(c->text) - c->len)
		c->len += (size_t)n;
	pthread_mutex_unlock(&c->lock);
}

static bool
logged(struct log_capture *c, const char *what)
{
	bool found;

	pthread_mutex_lock(&c->lock);
	found = strstr(c->text, what) != NULL;
	pthread_mutex_unlock(&c->lock);
	return found;
}

static struct directory *
start_file_directory_logged(const char *file, unsigned refresh, unsigned max_age, unsigned readers,
                            int expect_start, struct log_capture *capture)
{
	struct directory_config cfg = {
	    .file = file,
	    .refresh_s = refresh,
	    .max_age_s = max_age,
	    .log = capture ? capture_log : NULL,
	    .log_arg = capture,
	};
	struct directory *d;
	char err[512];

	if (directory_create(&d, &cfg, readers, err, sizeof(err)) != PA_OK)
		fail_msg("directory_create: %s", err);
	assert_int_equal(directory_start(d, 5000, err, sizeof(err)), expect_start);
	return d;
}

static struct directory *
start_file_directory(const char *file, unsigned refresh, unsigned max_age, unsigned readers,
                     int expect_start)
{
	return start_file_directory_logged(file, refresh, max_age, readers, expect_start, NULL);
}

static void
wait_generation(struct directory *d, uint64_t generation)
{
	struct directory_status st;

	for (int i = 0; i < 500; i++) {
		directory_get_status(d, &st);
		if (st.generation >= generation)
			return;
		usleep(10000);
	}
	fail_msg("generation %llu never came", (unsigned long long)generation);
}

static void
wait_attempts(struct directory *d, uint64_t attempts)
{
	struct directory_status st;

	for (int i = 0; i < 500; i++) {
		directory_get_status(d, &st);
		if (st.attempts >= attempts)
			return;
		usleep(10000);
	}
	fail_msg("attempt %llu never came", (unsigned long long)attempts);
}

static void
test_create_refuses_bad_config(void **state)
{
	struct directory_config cfg = {.file = "/x", .refresh_s = 60, .max_age_s = 60};
	struct directory *d;
	char err[512];

	(void)state;
	assert_int_equal(directory_create(&d, &cfg, 1, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "directory.max_age"));
	cfg = (struct directory_config){.refresh_s = 60, .max_age_s = 600};
	assert_int_equal(directory_create(&d, &cfg, 1, err, sizeof(err)), PA_ERROR);
	cfg = (struct directory_config){
	    .ldap_uri = "ldap://127.0.0.1:1/", .refresh_s = 60, .max_age_s = 600};
	assert_int_equal(directory_create(&d, &cfg, 1, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "directory.ldap.base"));
	cfg = (struct directory_config){.file = "/x", .refresh_s = 60, .max_age_s = 600};
	assert_int_equal(directory_create(&d, &cfg, 0, err, sizeof(err)), PA_ERROR);
}

static void
test_refresh_keeps_last_snapshot(void **state)
{
	struct tmpdir t;
	struct directory *d;
	struct directory_status st;
	struct dir_answer a;

	(void)state;
	tmpdir_make(&t);
	write_file(t.file, "alice@example.com\nsales@example.com: alice@example.com\n");
	d = start_file_directory(t.file, 3600, 7200, 2, PA_OK);
	assert_int_equal(directory_lookup(d, 0, "alice@example.com", NULL), DIR_MAILBOX);
	assert_int_equal(directory_lookup(d, 1, "SALES@example.com", &a), DIR_ALIAS);
	assert_string_equal(a.canonical, "alice@example.com");
	assert_int_equal(directory_lookup(d, 0, "bob@example.com", NULL), DIR_UNKNOWN_USER);
	assert_int_equal(directory_lookup(d, 2, "alice@example.com", NULL), DIR_UNAVAILABLE);

	/* A new entry is there after the next load. */
	write_file(t.file, "alice@example.com\nbob@example.com\n");
	directory_refresh_now(d);
	wait_generation(d, 2);
	assert_int_equal(directory_lookup(d, 0, "bob@example.com", NULL), DIR_MAILBOX);
	assert_int_equal(directory_lookup(d, 0, "sales@example.com", NULL), DIR_UNKNOWN_USER);

	/* An unchanged file is not rebuilt, but counts as a fresh load. */
	directory_refresh_now(d);
	wait_attempts(d, 3);
	directory_get_status(d, &st);
	assert_int_equal(st.generation, 2);
	assert_int_equal(st.failures, 0);

	/* A broken file: the load fails, the last snapshot keeps serving. */
	write_file(t.file, "alice@example.com\nthis is not valid\n");
	directory_refresh_now(d);
	wait_attempts(d, 4);
	directory_get_status(d, &st);
	assert_int_equal(st.failures, 1);
	assert_true(st.loaded && st.fresh);
	assert_int_equal(st.entries, 2);
	assert_non_null(strstr(st.last_error, "dir.txt:2: unexpected"));
	assert_int_equal(directory_lookup(d, 1, "bob@example.com", NULL), DIR_MAILBOX);

	/* And a missing one as well. */
	unlink(t.file);
	directory_refresh_now(d);
	wait_attempts(d, 5);
	directory_get_status(d, &st);
	assert_int_equal(st.failures, 2);
	assert_non_null(strstr(st.last_error, "stat("));
	assert_int_equal(directory_lookup(d, 1, "bob@example.com", NULL), DIR_MAILBOX);
	directory_destroy(d);
	tmpdir_remove(&t);
}

static void
test_never_loaded_and_stale(void **state)
{
	struct log_capture capture = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct tmpdir t;
	struct directory *d;
	struct directory_status st;

	(void)state;
	tmpdir_make(&t);
	/* Never loaded: the server runs, every lookup is "unavailable" (451). */
	d = start_file_directory_logged(t.file, 1, 2, 1, PA_AGAIN, &capture);
	assert_true(logged(&capture, "0 directory: load failed, no snapshot yet (RCPT gets 451): "
	                             "stat("));
	directory_get_status(d, &st);
	assert_false(st.loaded);
	assert_true(st.age_s < 0);
	assert_int_equal(directory_lookup(d, 0, "alice@example.com", NULL), DIR_UNAVAILABLE);
	/* The file appears: served from the next periodic refresh on. */
	write_file(t.file, "alice@example.com\n");
	wait_generation(d, 1);
	assert_int_equal(directory_lookup(d, 0, "alice@example.com", NULL), DIR_MAILBOX);
	/* It goes away: served until max_age, then unavailable again. */
	unlink(t.file);
	for (int i = 0; i < 400 && directory_lookup(d, 0, "alice@example.com", NULL) == DIR_MAILBOX;
	     i++)
		usleep(10000);
	assert_int_equal(directory_lookup(d, 0, "alice@example.com", NULL), DIR_UNAVAILABLE);
	directory_get_status(d, &st);
	assert_true(st.loaded);
	assert_false(st.fresh);
	assert_true(st.age_s >= 2.0);
	assert_true(logged(&capture, "3 directory: loaded mailboxes=1 aliases=0 domains=1 "));
	assert_true(logged(&capture, "1 directory: load failed, the snapshot of "));
	/* The next failed attempt says the snapshot is past max_age. */
	for (int i = 0; i < 300 && !logged(&capture, "is older than directory.max_age"); i++)
		usleep(10000);
	assert_true(logged(&capture, "0 directory: load failed, the snapshot of "));
	assert_true(logged(&capture, "is older than directory.max_age (RCPT gets 451)"));
	directory_destroy(d);
	pthread_mutex_destroy(&capture.lock);
	tmpdir_remove(&t);
}

struct hammer {
	struct directory *d;
	unsigned reader;
	int stop;
	uint64_t lookups, alias_seen, mailbox_seen;
	int bad;
	char why[256];
};

static void *
hammer_main(void *arg)
{
	struct hammer *h = arg;
	struct dir_answer a;
	char addr[64];

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		unsigned i = (unsigned)(h->lookups % 500);
		enum dir_status st;

		snprintf(addr, sizeof(addr), "user%u@example.com", i);
		st = directory_lookup(h->d, h->reader, addr, &a);
		/* Every generation has these 500 mailboxes. */
		if (st != DIR_MAILBOX || strcmp(a.canonical, addr) != 0) {
			snprintf(h->why, sizeof(h->why), "%s: status %d", addr, st);
			h->bad++;
		}
		/* "flip" is a mailbox in odd generations, an alias of user0 in even ones. */
		st = directory_lookup(h->d, h->reader, "flip@example.com", &a);
		if (st == DIR_ALIAS && strcmp(a.canonical, "user0@example.com") == 0)
			h->alias_seen++;
		else if (st == DIR_MAILBOX && strcmp(a.canonical, "flip@example.com") == 0)
			h->mailbox_seen++;
		else {
			snprintf(h->why, sizeof(h->why), "flip: status %d canonical %.64s", st,
			         a.canonical);
			h->bad++;
		}
		h->lookups++;
	}
	return NULL;
}

static void
test_swap_under_concurrent_readers(void **state)
{
	enum { READERS = 2, GENERATIONS = 60 };
	struct tmpdir t;
	struct directory *d;
	struct hammer h[READERS];
	pthread_t th[READERS];
	char *text = malloc(64 * 1024);
	size_t len = 0;

	(void)state;
	assert_non_null(text);
	tmpdir_make(&t);
	for (unsigned i = 0; i < 500; i++)
		len += (size_t)sprintf(text + len, "user%u@example.com\n", i);
	strcpy(text + len, "flip@example.com\n");
	write_file(t.file, text);
	d = start_file_directory(t.file, 3600, 7200, READERS, PA_OK);
	for (unsigned r = 0; r < READERS; r++) {
		h[r] = (struct hammer){.d = d, .reader = r};
		assert_int_equal(pthread_create(&th[r], NULL, hammer_main, &h[r]), 0);
	}
	for (uint64_t g = 2; g <= GENERATIONS; g++) {
		/* Sizes differ between the two forms, so the loader always sees a change. */
		strcpy(text + len,
		       g % 2 ? "flip@example.com\n" : "flip@example.com: user0@example.com\n");
		write_file(t.file, text);
		directory_refresh_now(d);
		wait_generation(d, g);
	}
	for (unsigned r = 0; r < READERS; r++) {
		__atomic_store_n(&h[r].stop, 1, __ATOMIC_RELEASE);
		assert_int_equal(pthread_join(th[r], NULL), 0);
		if (h[r].bad != 0)
			fail_msg("reader %u: %d bad answers, last: %s", r, h[r].bad, h[r].why);
		assert_true(h[r].lookups > 0);
	}
	/* The readers did see both forms: swaps happened under them. */
	assert_true(h[0].alias_seen + h[1].alias_seen > 0);
	assert_true(h[0].mailbox_seen + h[1].mailbox_seen > 0);
	directory_destroy(d);
	tmpdir_remove(&t);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_known_unknown_alias_catch_all),
	    cmocka_unit_test(test_file_case_rules),
	    cmocka_unit_test(test_file_unicode_domains),
	    cmocka_unit_test(test_file_bad_lines),
	    cmocka_unit_test(test_file_random_input),
	    cmocka_unit_test(test_alias_loop_refused),
	    cmocka_unit_test(test_file_load_errors),
	    cmocka_unit_test(test_snapshot_at_scale),
	    cmocka_unit_test(test_create_refuses_bad_config),
	    cmocka_unit_test(test_refresh_keeps_last_snapshot),
	    cmocka_unit_test(test_never_loaded_and_stale),
	    cmocka_unit_test(test_swap_under_concurrent_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
