/*
 * bench-reclaim.c: a format-2 shard's commit latency while its segments are
 * reclaimed (docs/benchmarks.md, "Segment reclamation and the commit path").
 *
 *   bench-reclaim -d DIR [-m MESSAGES] [-w WINDOW] [-s SIZE] [-Z SEGMENT_SIZE] [-D]
 *
 * One submitter keeps WINDOW messages of SIZE bytes in flight through
 * spool_submit()/spool_poll() on a one-shard format-2 spool until MESSAGES
 * have completed, timing each from its submit to its completion; the shard
 * is never idle for long.  With -D a "hand-off" thread delivers every
 * completed copy as the hand-off engine does (hs_load_meta(), every
 * recipient done, hs_finish() into a batch written unsynced by
 * hs_write_unsynced(), hs_sync() every 100 ms), so closed segments empty
 * and the committer reclaims them while it commits.  It prints msg/s, the
 * latency percentiles, the commits slower than 10 ms, and the segments
 * reclaimed; it fails (exit 1) when a completion is not PA_OK.  The source
 * builds against any spool with hs_* and spool_shard_log_usage(), so two
 * builds run it side by side.
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
#include "handoff/handoff_store.h"
#include "spool/spool.h"
#include "spool/spool_record.h"

#define SYNC_NS 100000000u /* the hand-off syncs written shards every 100 ms */

struct bench {
	struct spool *spool;
	unsigned messages, window, size;
	char (*qids)[SMTP_QUEUE_ID_MAX];
	uint64_t *lat_ns;
	/* Completed copies for the hand-off thread, in completion order. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned *done_idx;
	unsigned ndone;
	atomic_uint failed;
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
	fprintf(stderr, "bench-reclaim: %s\n", what);
	exit(1);
}

static unsigned
arg_uint(const char *s, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "bench-reclaim: %s is not in %u..%u\n", s, min, max);
		exit(2);
	}
	return (unsigned)v;
}

/* Delivers every completed copy, as the hand-off engine writes and syncs outcomes. */
static void *
handoff_main(void *arg)
{
	struct bench *b = arg;
	rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
	uint64_t last_sync = mono_ns();
	unsigned next = 0;
	char err[512];

	while (next < b->messages) {
		unsigned upto;

		pthread_mutex_lock(&b->lock);
		while (b->ndone == next)
			pthread_cond_wait(&b->cond, &b->lock);
		upto = b->ndone;
		pthread_mutex_unlock(&b->lock);
		for (; next < upto; next++) {
			struct hs_copy *c;
			bool deleted;

			if (hs_load_meta(b->spool, 0, b->qids[b->done_idx[next]], 0, &c, err,
			                 sizeof(err)) != PA_OK)
				die(err);
			for (size_t i = 0; i < c->rec->nrcpt; i++)
				c->d[i].state = SPOOL_DELIVERY_DONE;
			if (hs_finish(b->spool, c, &deleted, batch, err, sizeof(err)) != PA_OK)
				die(err);
			hs_copy_free(c);
		}
		if (hs_write_unsynced(b->spool, 0, batch, err, sizeof(err)) != PA_OK)
			die(err);
		if (mono_ns() - last_sync >= SYNC_NS) {
			if (hs_sync(b->spool, 0, err, sizeof(err)) != PA_OK)
				die(err);
			last_sync = mono_ns();
		}
	}
	if (hs_sync(b->spool, 0, err, sizeof(err)) != PA_OK)
		die(err);
	rocksdb_writebatch_destroy(batch);
	return NULL;
}

static void
submit_all(struct bench *b, int efd, struct spool_message *sms, uint64_t *t_submit)
{
	struct spool_completion c[64];
	unsigned sent = 0, done = 0;

	while (done < b->messages) {
		struct pollfd pfd = {efd, POLLIN, 0};
		uint64_t v, now;
		unsigned n;

		while (sent < b->messages && sent - done < b->window) {
			int rc;

			t_submit[sent] = mono_ns();
			rc = spool_submit(b->spool, 0, &sms[sent]);
			if (rc == PA_AGAIN)
				break;
			if (rc != PA_OK)
				die("spool_submit failed");
			sent++;
		}
		n = spool_poll(b->spool, 0, c, pa_array_size(c));
		now = mono_ns();
		pthread_mutex_lock(&b->lock);
		for (unsigned i = 0; i < n; i++) {
			unsigned k = (unsigned)(uintptr_t)c[i].cookie;

			if (c[i].status != PA_OK)
				atomic_fetch_add(&b->failed, 1);
			b->lat_ns[done + i] = now - t_submit[k];
			b->done_idx[b->ndone++] = k;
		}
		if (n > 0)
			pthread_cond_signal(&b->cond);
		pthread_mutex_unlock(&b->lock);
		done += n;
		if (n > 0 || done == b->messages)
			continue;
		if (poll(&pfd, 1, 1000) == -1 && errno != EINTR)
			die("poll(eventfd) failed");
		if (read(efd, &v, sizeof(v)) == -1 && errno != EAGAIN)
			die("read(eventfd) failed");
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	struct bench b = {.messages = 20000, .window = 8, .size = 4096};
	uint64_t segment_size = 1u << 20;
	const char *dir = NULL;
	bool deliver = false;
	char prefix[64], err[512];
	char *eal[] = {"bench-reclaim",
	               "--no-huge",
	               "--no-pci",
	               "-m",
	               "256",
	               "--no-shconf",
	               "--no-telemetry",
	               "--log-level=lib.eal:error",
	               "-l",
	               "0",
	               prefix,
	               NULL};
	struct spool_config cfg;
	struct smtp_message *msgs;
	struct spool_message *sms;
	struct spool_log_usage u;
	const char *rcpt[] = {"user@example.com"};
	uint64_t *t_submit, t0, t1, slow = 0;
	uint8_t *body;
	pthread_t ho;
	cpu_set_t cpus;
	int efd, o;

	while ((o = getopt(argc, argv, "d:m:w:s:Z:D")) != -1) {
		switch (o) {
		case 'd':
			dir = optarg;
			break;
		case 'm':
			b.messages = arg_uint(optarg, 100, 10000000);
			break;
		case 'w':
			b.window = arg_uint(optarg, 1, 1024);
			break;
		case 's':
			b.size = arg_uint(optarg, 1, 16u << 20);
			break;
		case 'Z':
			segment_size = arg_uint(optarg, 65536, 1u << 31);
			break;
		case 'D':
			deliver = true;
			break;
		default:
			fprintf(stderr, "usage: bench-reclaim -d DIR [-m MESSAGES] [-w WINDOW] "
			                "[-s SIZE] [-Z SEGMENT_SIZE] [-D]\n");
			return 2;
		}
	}
	if (dir == NULL)
		die("-d DIR is required (a directory that does not exist yet or an empty one)");
	snprintf(prefix, sizeof(prefix), "--file-prefix=bench-reclaim%ld", (long)getpid());
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init((int)pa_array_size(eal) - 1, eal) < 0)
		die("rte_eal_init failed");
	/* EAL pins this thread to lcore 0; the committer and the hand-off must not inherit it. */
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);

	body = malloc(b.size);
	b.qids = calloc(b.messages, sizeof(*b.qids));
	b.lat_ns = calloc(b.messages, sizeof(*b.lat_ns));
	b.done_idx = calloc(b.messages, sizeof(*b.done_idx));
	msgs = calloc(b.messages, sizeof(*msgs));
	sms = calloc(b.messages, sizeof(*sms));
	t_submit = calloc(b.messages, sizeof(*t_submit));
	if (body == NULL || b.qids == NULL || b.lat_ns == NULL || b.done_idx == NULL ||
	    msgs == NULL || sms == NULL || t_submit == NULL)
		die("out of memory");
	for (unsigned i = 0; i < b.size; i++)
		body[i] = i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : (uint8_t)('a' + i % 26);
	for (unsigned i = 0; i < b.messages; i++) {
		snprintf(b.qids[i], sizeof(b.qids[i]), "P%014" PRIX64 "%03X%02X%06X",
		         (uint64_t)1700000000000000u + i, 1u, 0u, i & 0xffffffu);
		msgs[i] = (struct smtp_message){.queue_id = b.qids[i],
		                                .mail_from = "sender@bench.example.org",
		                                .rcpts = rcpt,
		                                .nrcpt = 1,
		                                .data = body,
		                                .size = b.size,
		                                .helo = "bench.example.org",
		                                .client_addr = "198.18.0.1"};
		sms[i] =
		    (struct spool_message){&msgs[i], 1700000000000000u + i, (void *)(uintptr_t)i};
	}
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	cfg = (struct spool_config){.dir = dir,
	                            .shards = 1,
	                            .workers = 1,
	                            .ring_size = 4096,
	                            .format = 2,
	                            .segment_size = segment_size};
	if (spool_open(&b.spool, &cfg, err, sizeof(err)) != PA_OK)
		die(err);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd == -1)
		die("eventfd failed");
	if (spool_attach_worker(b.spool, 0, efd, true) != PA_OK)
		die("spool_attach_worker failed");
	if (deliver && pthread_create(&ho, NULL, handoff_main, &b) != 0)
		die("pthread_create failed");

	t0 = mono_ns();
	submit_all(&b, efd, sms, t_submit);
	t1 = mono_ns();
	if (deliver)
		pthread_join(ho, NULL);
	spool_shard_log_usage(b.spool, 0, &u);
	spool_close(b.spool);

	qsort(b.lat_ns, b.messages, sizeof(*b.lat_ns), cmp_u64);
	for (unsigned i = 0; i < b.messages; i++)
		slow += b.lat_ns[i] >= 10000000u;
	printf("messages=%u size=%u window=%u segment=%" PRIu64 " deliver=%s: %.0f msg/s; "
	       "latency us p50 %.0f p99 %.0f p99.9 %.0f max %.0f; %" PRIu64 " over 10 ms; "
	       "%" PRIu64 " segments reclaimed; %u failed\n",
	       b.messages, b.size, b.window, segment_size, deliver ? "yes" : "no",
	       b.messages / ((t1 - t0) / 1e9), b.lat_ns[b.messages / 2] / 1e3,
	       b.lat_ns[(size_t)b.messages * 99 / 100] / 1e3,
	       b.lat_ns[(size_t)b.messages * 999 / 1000] / 1e3, b.lat_ns[b.messages - 1] / 1e3,
	       slow, u.reclaimed_segments, atomic_load(&b.failed));
	close(efd);
	free(body);
	free(b.qids);
	free(b.lat_ns);
	free(b.done_idx);
	free(msgs);
	free(sms);
	free(t_submit);
	return atomic_load(&b.failed) > 0 ? 1 : 0;
}
