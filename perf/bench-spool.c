/*
 * bench-spool.c: the spool alone, as ingest drives it (perf/bench-spool.sh).
 *
 *   bench-spool -d DIR [-m MESSAGES] [-t THREADS] [-w WINDOW] [-s SIZE]
 *               [-r RCPTS] [-S SHARDS] [-F FORMAT] [-Z SEGMENT_SIZE] [-q]
 *
 * THREADS submitter threads, each a spool worker with its own eventfd (as
 * the kernel backend's workers are), keep WINDOW messages each in flight
 * through spool_submit()/spool_poll() until MESSAGES have completed; every
 * message is SIZE bytes with RCPTS recipients spread over the shards.  It
 * prints messages/s, syncs and messages per sync from the spool's own
 * counters, and fails (exit 1) when any completion is not PA_OK.  Messages,
 * queue ids and recipients are made before the clock starts, so what is
 * timed is the spool: the submit, the committers' encoding, the writes and
 * syncs, the completions.  -F is the new spool's format (1: RocksDB holds
 * everything; 2: the segment log), -Z its segment size.  Only spool.h is
 * used, so the source builds against older spools too (perf/bench-spool.sh
 * runs formats and builds side by side).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>

#include "core/pa.h"
#include "spool/spool.h"

#define MAX_THREADS 16
#define MAX_RCPTS 16
#define RCPT_LEN 48

struct bench {
	struct spool *spool;
	unsigned messages, threads, window, size, rcpts;
	uint8_t *body;
	char (*rcpt_names)[RCPT_LEN]; /* messages * rcpts */
	atomic_uint failed;
};

struct worker {
	struct bench *b;
	unsigned id, first, count;
	int efd;
	pthread_t thread;
	char (*qids)[SMTP_QUEUE_ID_MAX];
	const char **rcpt_ptrs;
	struct smtp_message *msgs;
	struct spool_message *sms;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench-spool: %s\n", what);
	exit(1);
}

static void
init_eal(void)
{
	char prefix[64];
	char *argv[] = {"bench-spool", "--no-huge",   "--no-pci",       "-m",
	                "256",         "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                "-l",          "0",           prefix,           NULL};
	cpu_set_t cpus;

	snprintf(prefix, sizeof(prefix), "--file-prefix=bench-spool%ld", (long)getpid());
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0)
		die("rte_eal_init failed");
	/* EAL pins this thread to lcore 0; the committers and submitters must not inherit it. */
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
}

static void
prepare(struct worker *w)
{
	struct bench *b = w->b;

	w->qids = calloc(w->count, sizeof(*w->qids));
	w->rcpt_ptrs = calloc((size_t)w->count * b->rcpts, sizeof(*w->rcpt_ptrs));
	w->msgs = calloc(w->count, sizeof(*w->msgs));
	w->sms = calloc(w->count, sizeof(*w->sms));
	if (w->qids == NULL || w->rcpt_ptrs == NULL || w->msgs == NULL || w->sms == NULL)
		die("out of memory");
	for (unsigned i = 0; i < w->count; i++) {
		unsigned n = w->first + i;
		const char **r = &w->rcpt_ptrs[(size_t)i * b->rcpts];

		/* The current queue id layout: 'P' and 25 hex digits, sorting by arrival. */
		snprintf(w->qids[i], sizeof(w->qids[i]), "P%014" PRIX64 "%03X%02X%06X",
		         (uint64_t)1700000000000000u + n, 1u, w->id, n & 0xffffffu);
		for (unsigned k = 0; k < b->rcpts; k++)
			r[k] = b->rcpt_names[(size_t)n * b->rcpts + k];
		w->msgs[i] = (struct smtp_message){
		    .queue_id = w->qids[i],
		    .mail_from = "sender@bench.example.org",
		    .rcpts = r,
		    .nrcpt = b->rcpts,
		    .data = b->body,
		    .size = b->size,
		    .helo = "bench.example.org",
		    .client_addr = "198.18.0.1",
		};
		w->sms[i] = (struct spool_message){&w->msgs[i], 1700000000000000u + n, &w->msgs[i]};
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct spool_completion c[64];
	unsigned sent = 0, done = 0;

	while (done < w->count) {
		struct pollfd pfd = {w->efd, POLLIN, 0};
		uint64_t v;
		unsigned n;

		while (sent < w->count && sent - done < b->window) {
			int rc = spool_submit(b->spool, w->id, &w->sms[sent]);

			if (rc == PA_AGAIN)
				break;
			if (rc != PA_OK)
				die("spool_submit failed");
			sent++;
		}
		n = spool_poll(b->spool, w->id, c, pa_array_size(c));
		for (unsigned i = 0; i < n; i++)
			if (c[i].status != PA_OK)
				atomic_fetch_add(&b->failed, 1);
		done += n;
		if (n > 0 || done == w->count)
			continue;
		/* Nothing completed: sleep until a committer rings (bounded, in case it never
		 * does). */
		if (poll(&pfd, 1, 1000) == -1 && errno != EINTR)
			die("poll(eventfd) failed");
		if (read(w->efd, &v, sizeof(v)) == -1 && errno != EAGAIN)
			die("read(eventfd) failed");
	}
	return NULL;
}

static unsigned
arg_uint(const char *s, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "bench-spool: %s is not in %u..%u\n", s, min, max);
		exit(2);
	}
	return (unsigned)v;
}

int
main(int argc, char **argv)
{
	struct bench b = {.messages = 20000, .threads = 2, .window = 32, .size = 4096, .rcpts = 1};
	struct worker w[MAX_THREADS];
	struct spool_config cfg = {0};
	unsigned shards = 4, format = 0;
	uint64_t segment_size = 0;
	const char *dir = NULL;
	bool quiet = false;
	uint64_t commits = 0, copies = 0, t0, t1;
	char err[512];
	int o;

	while ((o = getopt(argc, argv, "d:m:t:w:s:r:S:F:Z:q")) != -1) {
		switch (o) {
		case 'd':
			dir = optarg;
			break;
		case 'm':
			b.messages = arg_uint(optarg, 1, 10000000);
			break;
		case 't':
			b.threads = arg_uint(optarg, 1, MAX_THREADS);
			break;
		case 'w':
			b.window = arg_uint(optarg, 1, 4096);
			break;
		case 's':
			b.size = arg_uint(optarg, 0, 64u << 20);
			break;
		case 'r':
			b.rcpts = arg_uint(optarg, 1, MAX_RCPTS);
			break;
		case 'S':
			shards = arg_uint(optarg, 1, SPOOL_MAX_SHARDS);
			break;
		case 'F':
			format = arg_uint(optarg, 1, 2);
			break;
		case 'Z':
			segment_size = arg_uint(optarg, 65536, 1u << 31);
			break;
		case 'q':
			quiet = true;
			break;
		default:
			fprintf(stderr, "usage: bench-spool -d DIR [-m MESSAGES] [-t THREADS] "
			                "[-w WINDOW] [-s SIZE] [-r RCPTS] [-S SHARDS] [-F FORMAT] "
			                "[-Z SEGMENT_SIZE] [-q]\n");
			return 2;
		}
	}
	if (dir == NULL)
		die("-d DIR is required (a directory that does not exist yet or an empty one)");
	init_eal();

	b.body = malloc(b.size > 0 ? b.size : 1);
	b.rcpt_names = calloc((size_t)b.messages * b.rcpts, RCPT_LEN);
	if (b.body == NULL || b.rcpt_names == NULL)
		die("out of memory");
	/* Text lines with CRLF, as the SMTP engine hands a body over. */
	for (unsigned i = 0; i < b.size; i++)
		b.body[i] = i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : (uint8_t)('a' + i % 26);
	for (size_t i = 0; i < (size_t)b.messages * b.rcpts; i++)
		snprintf(b.rcpt_names[i], RCPT_LEN, "user%zu@example.com", i % 1000);

	cfg = (struct spool_config){.dir = dir,
	                            .shards = shards,
	                            .workers = b.threads,
	                            .ring_size = 4096,
	                            .format = format,
	                            .segment_size = segment_size};
	if (spool_open(&b.spool, &cfg, err, sizeof(err)) != PA_OK)
		die(err);
	for (unsigned i = 0; i < b.threads; i++) {
		w[i] = (struct worker){.b = &b, .id = i};
		w[i].first = (unsigned)((uint64_t)b.messages * i / b.threads);
		w[i].count = (unsigned)((uint64_t)b.messages * (i + 1) / b.threads) - w[i].first;
		w[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w[i].efd == -1)
			die("eventfd failed");
		prepare(&w[i]);
		if (spool_attach_worker(b.spool, i, w[i].efd, true) != PA_OK)
			die("spool_attach_worker failed");
	}

	t0 = mono_ns();
	for (unsigned i = 0; i < b.threads; i++)
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
			die("pthread_create failed");
	for (unsigned i = 0; i < b.threads; i++)
		pthread_join(w[i].thread, NULL);
	t1 = mono_ns();

	for (unsigned i = 0; i < shards; i++) {
		struct spool_shard_stats st;

		spool_shard_stats(b.spool, i, &st);
		commits += st.commits;
		copies += st.messages;
	}
	spool_close(b.spool);
	if (!quiet || atomic_load(&b.failed) > 0)
		printf("messages=%u size=%u rcpts=%u threads=%u window=%u shards=%u: %.0f msg/s, "
		       "%.1f MB/s, %" PRIu64 " syncs, %.1f copies per sync, %u failed\n",
		       b.messages, b.size, b.rcpts, b.threads, b.window, shards,
		       b.messages / ((t1 - t0) / 1e9),
		       (double)b.messages * b.size / ((t1 - t0) / 1e3), commits,
		       commits > 0 ? (double)copies / commits : 0.0, atomic_load(&b.failed));
	for (unsigned i = 0; i < b.threads; i++) {
		close(w[i].efd);
		free(w[i].qids);
		free(w[i].rcpt_ptrs);
		free(w[i].msgs);
		free(w[i].sms);
	}
	free(b.rcpt_names);
	free(b.body);
	return atomic_load(&b.failed) > 0 ? 1 : 0;
}
