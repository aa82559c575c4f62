/*
 * bench-directory.c: what a recipient lookup costs in a directory of
 * millions of addresses, and what each address costs in memory.
 *
 *   bench-directory [ADDRESSES] [--file]
 *
 * Builds a snapshot of ADDRESSES mailboxes (default 10 000 000) spread over
 * 1 000 domains, plus one alias per 10 mailboxes, and prints: the build time;
 * the memory per address, both as counted by the snapshot and as the RSS
 * delta; and the nanoseconds per lookup for hits, misses in known domains,
 * misses in unknown domains and aliases, each over 1 000 000 addresses in
 * random order (so the caches see what a live server sees).  --file also
 * writes the directory to a file under $TMPDIR, loads it through a directory
 * instance (the refresh thread's path) and times directory_lookup(), which
 * adds the hazard-slot protocol to the raw lookup.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/pa.h"
#include "directory/directory.h"

#define QUERIES 1000000u
#define DOMAINS 1000u
#define QUERY_LEN 64

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The high-water mark of the resident set (VmHWM). */
static long
peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* How much of the heap the kernel backs with transparent huge pages. */
static long
anon_huge_kib(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Addresses look like real ones: a first.last-ish local part, one of 1000 domains. */
static int
mailbox(char *out, size_t len, uint64_t i)
{
	return snprintf(out, len, "u%07llx.name@dom%u.example.com", (unsigned long long)i,
	                (unsigned)(i % DOMAINS));
}

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

enum query_kind { Q_HIT, Q_MISS_USER, Q_MISS_DOMAIN, Q_ALIAS, Q_KINDS };
static const char *const kind_name[] = {"hit (mailbox)", "miss (unknown user)",
                                        "miss (unknown domain)", "hit (alias)"};
static const enum dir_status kind_status[] = {DIR_MAILBOX, DIR_UNKNOWN_USER, DIR_UNKNOWN_DOMAIN,
                                              DIR_ALIAS};

static char *
make_queries(uint64_t n, enum query_kind kind, uint64_t seed)
{
	char *q = malloc((size_t)QUERIES * QUERY_LEN);

	if (q == NULL) {
		fprintf(stderr, "bench-directory: out of memory for queries\n");
		exit(1);
	}
	for (unsigned i = 0; i < QUERIES; i++) {
		uint64_t r = xorshift(&seed) % n;
		char *out = q + (size_t)i * QUERY_LEN;

		switch (kind) {
		case Q_HIT:
			mailbox(out, QUERY_LEN, r);
			break;
		case Q_MISS_USER:
			mailbox(out, QUERY_LEN, r + n); /* same shape, never added */
			break;
		case Q_MISS_DOMAIN:
			snprintf(out, QUERY_LEN, "u%07llx.name@nowhere%u.example.org",
			         (unsigned long long)r, (unsigned)(r % DOMAINS));
			break;
		default:
			snprintf(out, QUERY_LEN, "alias%llu@alias.example.com",
			         (unsigned long long)(r - r % 10));
			break;
		}
	}
	return q;
}

typedef enum dir_status (*lookup_fn)(void *ctx, const char *addr, struct dir_answer *out);

static enum dir_status
raw_lookup(void *ctx, const char *addr, struct dir_answer *out)
{
	return dir_snapshot_lookup(ctx, addr, out);
}

static enum dir_status
instance_lookup(void *ctx, const char *addr, struct dir_answer *out)
{
	return directory_lookup(ctx, 0, addr, out);
}

static void
time_lookups(const char *label, lookup_fn fn, void *ctx, uint64_t n)
{
	for (int k = 0; k < Q_KINDS; k++) {
		char *q = make_queries(n, (enum query_kind)k, 0x9e3779b97f4a7c15ULL + (uint64_t)k);
		struct dir_answer a;
		unsigned wrong = 0;
		double t0 = now_s(), dt;

		for (unsigned i = 0; i < QUERIES; i++)
			wrong += fn(ctx, q + (size_t)i * QUERY_LEN, &a) != kind_status[k];
		dt = now_s() - t0;
		printf("%-22s %-22s %7.1f ns/lookup%s\n", label, kind_name[k], dt * 1e9 / QUERIES,
		       wrong ? "  WRONG ANSWERS" : "");
		if (wrong) {
			fprintf(stderr, "bench-directory: %u wrong answers\n", wrong);
			exit(1);
		}
		free(q);
	}
}

/*
 * The floor under any index of this size: one dependent random read in a
 * buffer as large as the snapshot, huge pages advised like the snapshot's.
 * A hit costs two such reads (slot, record), a miss one, an alias three.
 */
static void
memory_baseline(size_t bytes)
{
	size_t n = bytes / sizeof(uint64_t), pos = 0;
	uint64_t *chain, seed = 0x2545f4914f6cdd1dULL;
	const unsigned reads = 2000000;
	double t0;

	if (posix_memalign((void **)&chain, 2u << 20, n * sizeof(uint64_t)) != 0) {
		fprintf(stderr, "bench-directory: posix_memalign() failed: out of memory\n");
		exit(1);
	}
	(void)madvise(chain, n * sizeof(uint64_t), MADV_HUGEPAGE);
	/* Sattolo's shuffle: one cycle through every element, so no read is predictable. */
	for (size_t i = 0; i < n; i++)
		chain[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = xorshift(&seed) % i;
		uint64_t t = chain[i];

		chain[i] = chain[j];
		chain[j] = t;
	}
	t0 = now_s();
	for (unsigned i = 0; i < reads; i++)
		pos = chain[pos];
	printf("baseline: one dependent random read in %.0f MiB: %.1f ns (end %zu)\n",
	       (double)bytes / 1048576.0, (now_s() - t0) * 1e9 / reads, pos % 2);
	free(chain);
}

static struct dir_snapshot *
build(uint64_t n, double *avg_len)
{
	struct dir_builder *b = dir_builder_new(false, (size_t)(n + n / 10));
	struct dir_snapshot *s;
	char addr[QUERY_LEN], alias[QUERY_LEN], err[512];
	uint64_t total = 0;

	if (b == NULL) {
		fprintf(stderr, "bench-directory: dir_builder_new() failed: out of memory\n");
		exit(1);
	}
	for (uint64_t i = 0; i < n; i++) {
		int len = mailbox(addr, sizeof(addr), i);

		total += (uint64_t)len;
		if (dir_builder_add_mailbox(b, addr, (size_t)len, NULL, 0, err, sizeof(err)) !=
		    PA_OK) {
			fprintf(stderr, "bench-directory: %s\n", err);
			exit(1);
		}
		if (i % 10 == 0) {
			int alen = snprintf(alias, sizeof(alias), "alias%llu@alias.example.com",
			                    (unsigned long long)i);

			total += (uint64_t)alen;
			if (dir_builder_add_alias(b, alias, (size_t)alen, addr, (size_t)len, err,
			                          sizeof(err)) != PA_OK) {
				fprintf(stderr, "bench-directory: %s\n", err);
				exit(1);
			}
		}
	}
	*avg_len = (double)total / (double)(n + n / 10);
	s = dir_builder_finish(b, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "bench-directory: %s\n", err);
		exit(1);
	}
	return s;
}

static void
bench_instance(uint64_t n)
{
	char dir[] = "/tmp/pa-bench-directory.XXXXXX", path[64], err[512], addr[QUERY_LEN];
	struct directory_config cfg = {.refresh_s = 3600, .max_age_s = 7200};
	struct directory_status st;
	struct directory *d;
	double t0;
	FILE *f;

	if (mkdtemp(dir) == NULL) {
		perror("bench-directory: mkdtemp");
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/dir.txt", dir);
	f = fopen(path, "w");
	if (f == NULL) {
		perror("bench-directory: fopen");
		exit(1);
	}
	for (uint64_t i = 0; i < n; i++) {
		mailbox(addr, sizeof(addr), i);
		fprintf(f, "%s\n", addr);
		if (i % 10 == 0)
			fprintf(f, "alias%llu@alias.example.com: %s\n", (unsigned long long)i,
			        addr);
	}
	fclose(f);
	cfg.file = path;
	if (directory_create(&d, &cfg, 1, err, sizeof(err)) != PA_OK) {
		fprintf(stderr, "bench-directory: %s\n", err);
		exit(1);
	}
	t0 = now_s();
	if (directory_start(d, 600000, err, sizeof(err)) != PA_OK) {
		directory_get_status(d, &st);
		fprintf(stderr, "bench-directory: load failed: %s\n", st.last_error);
		exit(1);
	}
	printf("file load (parse + build, refresh thread): %.2f s; huge pages now %.1f MiB\n",
	       now_s() - t0, (double)anon_huge_kib() / 1024.0);
	time_lookups("directory_lookup()", instance_lookup, d, n);
	directory_destroy(d);
	unlink(path);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	uint64_t n = 10000000;
	bool with_file = false;
	struct dir_snapshot_stats st;
	struct dir_snapshot *s;
	double avg_len, t0;
	long rss0, rss1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0)
			with_file = true;
		else
			n = strtoull(argv[i], NULL, 10);
	}
	if (n < 10) {
		fprintf(stderr, "usage: bench-directory [ADDRESSES >= 10] [--file]\n");
		return 2;
	}
	rss0 = rss_kib();
	t0 = now_s();
	s = build(n, &avg_len);
	rss1 = rss_kib();
	dir_snapshot_stats(s, &st);
	printf("addresses: %llu mailboxes + %llu aliases in %u domains, average %.1f octets\n",
	       (unsigned long long)st.mailboxes, (unsigned long long)st.aliases, DOMAINS + 1,
	       avg_len);
	printf("build: %.2f s\n", now_s() - t0);
	printf("memory: snapshot %.1f MiB = %.1f bytes/address (table %llu slots, load %.2f); "
	       "RSS delta %.1f MiB = %.1f bytes/address\n",
	       (double)st.bytes / 1048576.0, (double)st.bytes / (double)(n + n / 10),
	       (unsigned long long)st.table_slots,
	       (double)(st.mailboxes + st.aliases + st.domains) / (double)st.table_slots,
	       (double)(rss1 - rss0) / 1024.0,
	       (double)(rss1 - rss0) * 1024.0 / (double)(n + n / 10));
	printf("peak RSS while building (with the generator's own): %.1f MiB over the start\n",
	       (double)(peak_rss_kib() - rss0) / 1024.0);
	printf("transparent huge pages backing the process: %.1f MiB\n",
	       (double)anon_huge_kib() / 1024.0);
	time_lookups("dir_snapshot_lookup()", raw_lookup, s, n);
	dir_snapshot_free(s);
	memory_baseline(st.bytes);
	if (with_file)
		bench_instance(n);
	return 0;
}
