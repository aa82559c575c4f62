/*
 * test_spool_stream.c: unit tests of the spool's commit stream (spool.h,
 * "The commit stream"; spool/spool_stream.c).
 *
 * They check, in both spool formats, that every committed copy comes out of
 * its shard's ring once, in commit order, with the message record and the
 * bytes that were stored, and its schedule time (strictly increasing from
 * group to group); that the consumer's eventfd is rung; that nothing is
 * streamed without a consumer; that a full ring drops copies (counted), not
 * committed mail; that a detach frees what the rings hold and a later
 * attachment never sees copies pushed for an earlier one; and (under ASan)
 * that copies left on the rings at close are freed.
 */

#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rte_eal.h>

#include "core/pa.h"
#include "spool/spool.h"
#include "spool/spool_record.h"

#define ERR_MAX 1024
#define RING 64

struct env {
	char root[256];
	unsigned seq;
};

static void
init_eal(void)
{
	char file_prefix[64];
	char *argv[] = {"test", "--no-huge",   "--no-pci",       "-m",
	                "128",  "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                "-l",   "0",           file_prefix,      NULL};
	cpu_set_t cpus;

	snprintf(file_prefix, sizeof(file_prefix), "--file-prefix=streamtest%ld", (long)getpid());
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		exit(1);
	}
	/* EAL pins this thread to lcore 0 and the committers would inherit that; undo it. */
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

/* One-recipient messages, all in shard 0 of a one-shard spool, bodies from their index. */
struct tmsg {
	char qid[SMTP_QUEUE_ID_MAX];
	const char *rcpt;
	uint8_t data[200];
	struct smtp_message msg;
	struct spool_message sm;
};

static void
tmsg_init(struct tmsg *t, const char *prefix, unsigned i)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->qid, sizeof(t->qid), "%s%05u", prefix, i);
	t->rcpt = "user@example.org";
	for (size_t k = 0; k < sizeof(t->data); k++)
		t->data[k] = (uint8_t)('a' + (k * 7 + i) % 26);
	t->msg = (struct smtp_message){
	    .queue_id = t->qid,
	    .mail_from = "sender@example.net",
	    .rcpts = &t->rcpt,
	    .nrcpt = 1,
	    .data = t->data,
	    .size = 40 + i % 100, /* sizes vary */
	    .helo = "client.example.net",
	    .client_addr = "192.0.2.7",
	};
	t->sm = (struct spool_message){&t->msg, 1700000000000000u + i, t};
}

static struct spool *
open_spool(struct env *env, unsigned format)
{
	char dir[512];
	struct spool_config cfg = {
	    dir, 1, 1, RING, NULL, 0, 0, NULL, format, format == 2 ? 64u << 10 : 0, 0, 0};
	struct spool *s = NULL;
	char err[ERR_MAX] = "";

	snprintf(dir, sizeof(dir), "%s/spool-%u", env->root, env->seq++);
	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open(%s): %s", dir, err);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	return s;
}

/* Submits t[0..n) in bursts the ring takes, waiting for every completion (all PA_OK). */
static void
commit_all(struct spool *s, struct tmsg *t, unsigned n)
{
	unsigned sent = 0, done = 0;
	uint64_t deadline = now_us() + 60000000u;

	while (done < n && now_us() < deadline) {
		struct spool_completion c[RING];
		unsigned k;

		while (sent < n && sent - done < RING / 2 &&
		       spool_submit(s, 0, &t[sent].sm) == PA_OK)
			sent++;
		k = spool_poll(s, 0, c, RING);
		for (unsigned i = 0; i < k; i++)
			assert_int_equal(c[i].status, PA_OK);
		done += k;
		if (k == 0)
			sleep_us(100);
	}
	assert_int_equal(done, n);
}

static struct spool_shard_stats
stats(struct spool *s)
{
	struct spool_shard_stats st;

	spool_shard_stats(s, 0, &st);
	return st;
}

/* Takes everything streamed, checking each copy against t[first..]; returns how many. */
static unsigned
take_check(struct spool *s, const struct tmsg *t, unsigned first, unsigned max)
{
	struct spool_stream_copy *out[32];
	unsigned n = 0, k;
	uint64_t last = 0;

	while ((k = spool_stream_take(s, 0, out, pa_array_size(out))) > 0) {
		for (unsigned i = 0; i < k; i++, n++) {
			const struct tmsg *m = &t[first + n];
			struct spool_stream_copy *c = out[i];
			struct spool_msg_record *rec;

			assert_true(n < max);
			assert_int_equal(c->shard, 0);
			assert_string_equal(c->queue_id, m->qid);
			assert_int_equal(c->size, m->msg.size);
			assert_memory_equal(c->data, m->data, m->msg.size);
			assert_int_equal(spool_record_msg_decode(c->record, c->record_len, &rec),
			                 PA_OK);
			assert_int_equal(rec->nrcpt, 1);
			assert_string_equal(rec->rcpts[0], m->rcpt);
			assert_string_equal(rec->mail_from, m->msg.mail_from);
			assert_int_equal(rec->size, m->msg.size);
			assert_int_equal(rec->arrival_us, m->sm.arrival_us);
			free(rec);
			/* Commit order; a later group's time is strictly later. */
			assert_true(c->sched_us >= last);
			assert_true(c->sched_us <= now_us());
			last = c->sched_us;
			spool_stream_free(c);
		}
	}
	return n;
}

static void
order_and_content(struct env *env, unsigned format)
{
	enum { N = 300 };
	struct tmsg *t = calloc(N, sizeof(*t));
	struct spool *s = open_spool(env, format);
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v = 0;

	assert_non_null(t);
	assert_true(efd != -1);
	for (unsigned i = 0; i < N; i++)
		tmsg_init(&t[i], "STRM", i);

	/* No consumer: nothing is streamed, nothing counted as lost. */
	commit_all(s, t, 10);
	assert_int_equal(stats(s).streamed, 0);
	assert_int_equal(stats(s).stream_overflow, 0);
	assert_int_equal(take_check(s, t, 0, 0), 0);

	assert_int_equal(spool_stream_attach(s, efd), PA_OK);
	assert_int_equal(spool_stream_attach(s, efd), PA_ERROR); /* one consumer */
	commit_all(s, t + 10, N - 10);
	assert_int_equal(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	assert_true(v >= 1);
	assert_int_equal(stats(s).streamed, N - 10);
	assert_int_equal(stats(s).stream_overflow, 0);
	/* Idle: no group is on its way. */
	assert_true(spool_stream_fresh_from(s, 0) == UINT64_MAX);
	assert_int_equal(take_check(s, t, 10, N - 10), N - 10);
	spool_stream_detach(s);
	spool_close(s);
	close(efd);
	free(t);
}

static void
test_order_format1(void **state)
{
	order_and_content(*state, 1);
}

static void
test_order_format2(void **state)
{
	order_and_content(*state, 2);
}

/* A full ring loses copies to the stream, not to the spool: counted, and still on disk. */
static void
test_overflow(void **state)
{
	enum { N = SPOOL_STREAM_RING + 100 };
	struct tmsg *t = calloc(N, sizeof(*t));
	struct spool *s = open_spool(*state, 2);
	struct spool_shard_stats st;

	assert_non_null(t);
	for (unsigned i = 0; i < N; i++)
		tmsg_init(&t[i], "OVF", i);
	assert_int_equal(spool_stream_attach(s, -1), PA_OK);
	commit_all(s, t, N);
	st = stats(s);
	assert_int_equal(st.messages, N);
	assert_int_equal(st.streamed, SPOOL_STREAM_RING);
	assert_int_equal(st.stream_overflow, 100);
	/* The first ones, in order; what overflowed is the rest. */
	assert_int_equal(take_check(s, t, 0, SPOOL_STREAM_RING), SPOOL_STREAM_RING);
	spool_stream_detach(s);
	spool_close(s);
	free(t);
}

/*
 * Detach frees what the rings hold; a new attachment sees only what was
 * committed for it; what is left on the rings at close is freed (ASan).
 */
static void
test_detach_and_close(void **state)
{
	enum { N = 40 };
	struct tmsg t[N];
	struct spool *s = open_spool(*state, 2);

	for (unsigned i = 0; i < N; i++)
		tmsg_init(&t[i], "DET", i);
	assert_int_equal(spool_stream_attach(s, -1), PA_OK);
	commit_all(s, t, 10);
	spool_stream_detach(s);
	assert_int_equal(take_check(s, t, 0, 0), 0);
	commit_all(s, t + 10, 10); /* between consumers: not streamed */
	assert_int_equal(spool_stream_attach(s, -1), PA_OK);
	commit_all(s, t + 20, 10);
	assert_int_equal(take_check(s, t, 20, 10), 10);
	commit_all(s, t + 30, 10); /* left on the ring for close */
	assert_int_equal(stats(s).streamed, 30);
	spool_close(s);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
group_setup(void **state)
{
	struct env *env = calloc(1, sizeof(*env));
	const char *tmp = getenv("TMPDIR");

	if (env == NULL)
		return -1;
	snprintf(env->root, sizeof(env->root), "%s/test_stream.XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(env->root) == NULL) {
		free(env);
		return -1;
	}
	*state = env;
	return 0;
}

static int
group_teardown(void **state)
{
	struct env *env = *state;

	nftw(env->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(env);
	return 0;
}

static void
remove_runtime_dir(void)
{
	char path[512];
	const char *mine = rte_eal_get_runtime_dir();
	const char *slash = strrchr(mine, '/');

	if (slash == NULL)
		return;
	snprintf(path, sizeof(path), "%.*s/streamtest%ld", (int)(slash - mine), mine,
	         (long)getpid());
	rmdir(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_format1),
	    cmocka_unit_test(test_order_format2),
	    cmocka_unit_test(test_overflow),
	    cmocka_unit_test(test_detach_and_close),
	};
	int rc;

	init_eal();
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	rte_eal_cleanup();
	remove_runtime_dir();
	return rc;
}
