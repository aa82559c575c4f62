/*
 * test_handoff_store.c: the hand-off engine's spool operations on a real
 * spool: due entries in time order, outcomes recorded, rescheduling keeps
 * the schedule entry at the earliest pending attempt, hold and release,
 * a finished copy deleted as a whole, new copies (DSNs) and usage counts.
 */
#include <dirent.h>
#include <sched.h>
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
#include <rte_eal.h>

#include "core/clock.h"
#include "core/pa.h"
#include "handoff/handoff.h"
#include "handoff/handoff_store.h"
#include "handoff/route_map.h"
#include "spool/spool.h"
#include "spool/spool_iter.h"

struct due {
	unsigned n;
	char qid[SMTP_QUEUE_ID_MAX];
	uint64_t sched;
};

static int
on_due(unsigned shard, const char *qid, uint64_t sched_us, void *arg)
{
	struct due *d = arg;

	(void)shard;
	d->n++;
	snprintf(d->qid, sizeof(d->qid), "%s", qid);
	d->sched = sched_us;
	return 0;
}

static struct due
due(struct spool *s, uint64_t until)
{
	struct due d = {0};
	char err[512];

	assert_int_equal(hs_due(s, 0, until, 100, on_due, &d, err, sizeof(err)), PA_OK);
	return d;
}

static struct spool *
spool_with_one_message(char *dir, const char *qid, unsigned format)
{
	static const char *const rcpts[] = {"a@example.com", "b@example.com"};
	static const uint8_t data[] = "Received: x\r\nSubject: t\r\n\r\nbody\r\n";
	struct spool_config cfg = {dir, 1, 1, 64, NULL, 0, 0, NULL, format, 1u << 20, 0, 0};
	struct spool *s = NULL;
	char err[512];
	struct smtp_message msg = {.queue_id = qid,
	                           .mail_from = "s@example.org",
	                           .rcpts = rcpts,
	                           .nrcpt = 2,
	                           .data = data,
	                           .size = sizeof(data) - 1,
	                           .helo = "h",
	                           .client_addr = "192.0.2.1"};
	struct spool_message sm = {&msg, pa_wall_clock_us(), NULL};
	struct spool_completion c;
	int waited = 0;

	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open: %s", err);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	assert_int_equal(spool_submit(s, 0, &sm), PA_OK);
	while (spool_poll(s, 0, &c, 1) == 0 && waited++ < 20000)
		usleep(1000);
	assert_int_equal(c.status, PA_OK);
	return s;
}

/* Format 1 keeps the body in RocksDB ('B'), format 2 in the segment log ('L'). */
static void
lifecycle(unsigned format)
{
	char dir[] = "/tmp/pa-hs-XXXXXX";
	const char *qid = "QIDSTORE1";
	struct spool *s;
	struct hs_copy *c;
	struct due d;
	char err[512];
	bool deleted;
	uint64_t now = pa_wall_clock_us(), bytes, copies;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	struct spool_body body;
	static const char stored[] = "Received: x\r\nSubject: t\r\n\r\nbody\r\n";

	assert_non_null(mkdtemp(dir));
	s = spool_with_one_message(dir, qid, format);
	d = due(s, pa_wall_clock_us());
	assert_int_equal(d.n, 1);
	assert_string_equal(d.qid, qid);
	assert_int_equal(hs_load(s, 0, qid, d.sched, &c, err, sizeof(err)), PA_OK);
	assert_int_equal(c->rec->nrcpt, 2);
	assert_int_equal(c->d[0].state, SPOOL_DELIVERY_PENDING);
	assert_int_equal(c->size, sizeof(stored) - 1);
	assert_memory_equal(c->data, stored, sizeof(stored) - 1);

	/* a delivered, b deferred by 10 s: the schedule entry follows b */
	c->d[0].state = SPOOL_DELIVERY_DONE;
	c->d[1].attempts = 1;
	c->d[1].next_attempt_us = now + 10000000u;
	assert_int_equal(hs_finish(s, c, &deleted, NULL, err, sizeof(err)), PA_OK);
	assert_false(deleted);
	hs_copy_free(c);
	assert_int_equal(due(s, now + 1000000u).n, 0);
	d = due(s, now + 20000000u);
	assert_int_equal(d.n, 1);
	assert_true(d.sched == now + 10000000u);

	/* hold: never due; the delivery records say so too */
	assert_int_equal(hs_load(s, 0, qid, d.sched, &c, err, sizeof(err)), PA_OK);
	assert_int_equal(hs_reschedule(s, c, HS_HELD_US, err, sizeof(err)), PA_OK);
	hs_copy_free(c);
	assert_int_equal(due(s, HS_HELD_US - 1).n, 0);
	assert_int_equal(hs_load(s, 0, qid, 0, &c, err, sizeof(err)), PA_OK);
	assert_true(c->sched_us == HS_HELD_US);
	assert_int_equal(c->d[0].state, SPOOL_DELIVERY_DONE);
	assert_int_equal(c->d[1].attempts, 1);
	/* release */
	assert_int_equal(hs_reschedule(s, c, now, err, sizeof(err)), PA_OK);
	hs_copy_free(c);
	d = due(s, now);
	assert_int_equal(d.n, 1);

	/* b fails for good: with a batch, nothing is written before hs_write() */
	assert_int_equal(hs_load(s, 0, qid, d.sched, &c, err, sizeof(err)), PA_OK);
	c->d[1].state = SPOOL_DELIVERY_FAILED;
	assert_int_equal(hs_finish(s, c, &deleted, b, err, sizeof(err)), PA_OK);
	assert_true(deleted);
	hs_copy_free(c);
	assert_int_equal(due(s, now).n, 1);
	assert_int_equal(hs_write(s, 0, b, err, sizeof(err)), PA_OK);
	assert_int_equal(due(s, HS_HELD_US - 1).n, 0);
	assert_int_equal(hs_load(s, 0, qid, 0, &c, err, sizeof(err)), PA_AGAIN);
	/* deleted as a whole: neither its 'B' body nor its 'L' location is left */
	assert_int_equal(spool_body_read(s, 0, qid, &body, err, sizeof(err)), PA_OK);
	assert_null(body.data);
	assert_int_equal(hs_shard_usage(s, 0, &bytes, &copies, err, sizeof(err)), PA_OK);
	assert_true(bytes == 0 && copies == 0);

	/* a new copy (a DSN), then an operator's delete */
	{
		const char *to = "s@example.org";
		struct spool_msg_record rec = {.arrival_us = now,
		                               .size = 5,
		                               .mail_from = "",
		                               .client_addr = "hand-off",
		                               .helo = "h",
		                               .nrcpt = 1,
		                               .rcpts = &to};

		assert_int_equal(hs_put(s, 0, "QIDDSN1", &rec, (const uint8_t *)"x\r\n\r\n", 5, now,
		                        err, sizeof(err)),
		                 PA_OK);
	}
	assert_int_equal(hs_shard_usage(s, 0, &bytes, &copies, err, sizeof(err)), PA_OK);
	assert_true(bytes == 5 && copies == 1);
	d = due(s, now);
	assert_string_equal(d.qid, "QIDDSN1");
	assert_int_equal(hs_load(s, 0, "QIDDSN1", 0, &c, err, sizeof(err)), PA_OK);
	assert_string_equal(c->rec->mail_from, "");
	assert_int_equal(hs_delete(s, c, err, sizeof(err)), PA_OK);
	hs_copy_free(c);
	assert_int_equal(due(s, HS_HELD_US - 1).n, 0);

	rocksdb_writebatch_destroy(b);
	spool_close(s);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

static void
test_lifecycle(void **state)
{
	(void)state;
	lifecycle(1);
}

static void
test_lifecycle_log(void **state)
{
	(void)state;
	lifecycle(2);
}

static struct due
due_from(struct spool *s, uint64_t from, uint64_t until)
{
	struct due d = {0};
	char err[512];

	assert_int_equal(hs_due_from(s, 0, from, until, 100, on_due, &d, err, sizeof(err)), PA_OK);
	return d;
}

/*
 * hs_due_from(): only entries in [from, until]; held ones only with until
 * UINT64_MAX; hs_load_meta() reads the records without the body, which
 * hs_load_body() adds.
 */
static void
test_due_from_cursor(void **state)
{
	char dir[] = "/tmp/pa-hs-XXXXXX";
	const char *qid = "QIDCURSOR1";
	struct spool *s;
	struct hs_copy *c;
	struct due d;
	char err[512];

	(void)state;
	assert_non_null(mkdtemp(dir));
	s = spool_with_one_message(dir, qid, 1);
	d = due_from(s, 0, HS_HELD_US - 1);
	assert_int_equal(d.n, 1);
	/* the entry is at d.sched: a cursor at it finds it, one past it does not */
	assert_int_equal(due_from(s, d.sched, d.sched).n, 1);
	assert_int_equal(due_from(s, d.sched + 1, HS_HELD_US - 1).n, 0);
	assert_int_equal(due_from(s, 0, d.sched - 1).n, 0);

	assert_int_equal(hs_load_meta(s, 0, qid, d.sched, &c, err, sizeof(err)), PA_OK);
	assert_int_equal(c->rec->nrcpt, 2);
	assert_null(c->data);
	assert_int_equal(c->size, 0);
	assert_int_equal(hs_load_body(s, c, err, sizeof(err)), PA_OK);
	assert_int_equal(c->size, c->rec->size);
	assert_memory_equal(c->data, "Received: x\r\n", 13);
	/* an unsynced write is read back at once; hs_sync() puts it on disk */
	{
		rocksdb_writebatch_t *b = rocksdb_writebatch_create();
		bool deleted;

		c->d[0].attempts = 3;
		assert_int_equal(hs_finish(s, c, &deleted, b, err, sizeof(err)), PA_OK);
		assert_false(deleted);
		assert_int_equal(hs_write_unsynced(s, 0, b, err, sizeof(err)), PA_OK);
		assert_int_equal(rocksdb_writebatch_count(b), 0);
		assert_int_equal(hs_sync(s, 0, err, sizeof(err)), PA_OK);
		rocksdb_writebatch_destroy(b);
		hs_copy_free(c);
		assert_int_equal(hs_load(s, 0, qid, d.sched, &c, err, sizeof(err)), PA_OK);
		assert_int_equal(c->d[0].attempts, 3);
	}
	/* held: past every due time, seen only by a read up to UINT64_MAX */
	assert_int_equal(hs_reschedule(s, c, HS_HELD_US, err, sizeof(err)), PA_OK);
	hs_copy_free(c);
	assert_int_equal(due_from(s, d.sched, HS_HELD_US - 1).n, 0);
	d = due_from(s, 1, HS_HELD_US);
	assert_int_equal(d.n, 1);
	assert_true(d.sched == HS_HELD_US);

	spool_close(s);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* Waits up to 5 s for the copy's schedule entry to be at `want` (0: the copy gone). */
static void
wait_sched(struct spool *s, const char *qid, uint64_t want)
{
	char err[512];

	for (int i = 0; i < 500; i++) {
		struct hs_copy *c = NULL;
		int rc = hs_load(s, 0, qid, 0, &c, err, sizeof(err));
		bool ok = want == 0 ? rc == PA_AGAIN : rc == PA_OK && c->sched_us == want;

		hs_copy_free(c);
		if (ok)
			return;
		usleep(10000);
	}
	fail_msg("%s: schedule never reached %llu", qid, (unsigned long long)want);
}

/* What the control socket reads of a copy: is some recipient held? */
static int
held_entry(const struct spool_entry *e, void *arg)
{
	bool *held = arg;

	assert_non_null(e->states);
	for (size_t i = 0; i < e->nrcpt; i++)
		*held = *held || e->states[i].next_attempt_us == UINT64_MAX;
	return PA_OK;
}

/* The engine applies per-message operations on its own thread. */
static void
test_engine_message_ops(void **state)
{
	char dir[] = "/tmp/pa-ho-XXXXXX";
	const char *qid = "QIDOPS1";
	struct spool *s;
	struct handoff *h = NULL;
	struct handoff_config cfg = {.shards = 1,
	                             .min_backoff_s = 1,
	                             .max_backoff_s = 2,
	                             .max_queue_lifetime_s = 3600,
	                             .concurrency = 1,
	                             .timeout_s = 5,
	                             .breaker_cooldown_s = 1};
	char err[512], dest[ROUTE_KEY_MAX];
	bool held = false;
	struct due d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cfg.spool_dir, sizeof(cfg.spool_dir), "%s", dir);
	snprintf(cfg.hostname, sizeof(cfg.hostname), "mx.test");
	s = spool_with_one_message(dir, qid, 1);
	/* No route: the engine hands nothing off and only applies operations. */
	if (handoff_start(&h, s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("handoff_start: %s", err);
	assert_false(spool_shard_full(s, 0));
	assert_int_equal(handoff_message_op(h, "bad id", HANDOFF_OP_HOLD), PA_ERROR);
	assert_int_equal(handoff_message_op(h, qid, HANDOFF_OP_HOLD), PA_OK);
	wait_sched(s, qid, HS_HELD_US);
	assert_int_equal(due(s, HS_HELD_US - 1).n, 0);
	/* spool_iterate() gives the delivery records: the hold is visible there */
	assert_int_equal(spool_iterate(s, 0, held_entry, &held, err, sizeof(err)), PA_OK);
	assert_true(held);
	assert_false(handoff_shard_held(h, 0));
	/* the per-copy form: a shard the spool does not have is refused */
	assert_int_equal(handoff_copy_op(h, qid, 1, HANDOFF_OP_RELEASE), PA_ERROR);
	assert_int_equal(handoff_copy_op(h, qid, 0, HANDOFF_OP_RELEASE), PA_OK);
	for (int i = 0; i < 500 && (d = due(s, pa_wall_clock_us())).n == 0; i++)
		usleep(10000);
	assert_int_equal(d.n, 1);
	/* Operations apply in the order asked for: hold then release ends released. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(handoff_message_op(h, qid, HANDOFF_OP_HOLD), PA_OK);
		assert_int_equal(handoff_message_op(h, qid, HANDOFF_OP_RELEASE), PA_OK);
	}
	/* Every one applied (40 synced writes: no fixed sleep covers a loaded machine). */
	for (int i = 0; i < 3000 && handoff_ops_pending(h) != 0; i++)
		usleep(10000);
	assert_int_equal(handoff_ops_pending(h), 0);
	assert_int_equal(due(s, pa_wall_clock_us()).n, 1);
	held = false;
	assert_int_equal(spool_iterate(s, 0, held_entry, &held, err, sizeof(err)), PA_OK);
	assert_false(held);
	assert_int_equal(handoff_message_op(h, qid, HANDOFF_OP_DELETE), PA_OK);
	wait_sched(s, qid, 0);
	/* destinations: none without a route; a reload's map counts as soon as it is parked */
	assert_false(handoff_destination(h, 0, "a@example.com", dest, sizeof(dest)));
	snprintf(cfg.default_dest, sizeof(cfg.default_dest), "lmtp:127.0.0.1:24");
	assert_int_equal(handoff_reload(h, &cfg, err, sizeof(err)), PA_OK);
	assert_true(handoff_destination(h, 0, "a@example.com", dest, sizeof(dest)));
	assert_string_equal(dest, "lmtp:127.0.0.1:24/0");
	assert_int_equal(handoff_hold_shard(h, 0, true), PA_OK);
	assert_true(handoff_shard_held(h, 0));
	/* nothing was handed off: the engine knows no destination yet */
	{
		struct handoff_dest_state *states = (void *)1;
		size_t n = 1;

		assert_int_equal(handoff_dest_states(h, &states, &n), PA_OK);
		assert_null(states);
		assert_int_equal(n, 0);
	}
	/* a bad route map on reload is refused and names the line */
	snprintf(cfg.default_dest, sizeof(cfg.default_dest), "smtp:not-an-ip:25");
	assert_int_equal(handoff_reload(h, &cfg, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "relay.default"));
	handoff_stop(h);
	spool_close(s);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* Segment files in dir/shard-000/log. */
static unsigned
segment_files(const char *dir)
{
	char path[600];
	DIR *d;
	struct dirent *de;
	unsigned n = 0;

	snprintf(path, sizeof(path), "%s/shard-000/log", dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strlen(de->d_name) == 24 && strcmp(de->d_name + 20, ".seg") == 0;
	closedir(d);
	return n;
}

/* Waits up to 10 s (a pass runs about once a second) for the usage to satisfy ok(). */
static struct spool_log_usage
wait_usage(struct spool *s, bool (*ok)(const struct spool_log_usage *, uint64_t), uint64_t arg)
{
	struct spool_log_usage u;

	for (int i = 0; i < 1000; i++) {
		spool_shard_log_usage(s, 0, &u);
		if (ok(&u, arg))
			return u;
		usleep(10000);
	}
	fail_msg("segment log usage never as expected: %llu segments, %llu live bytes, %llu "
	         "reclaimed",
	         (unsigned long long)u.segments, (unsigned long long)u.live_bytes,
	         (unsigned long long)u.reclaimed_segments);
	return u;
}

static bool
live_at_least(const struct spool_log_usage *u, uint64_t bytes)
{
	return u->live_bytes >= bytes;
}

static bool
segments_at_most(const struct spool_log_usage *u, uint64_t n)
{
	return u->segments <= n;
}

static bool
reclaimed_at_least(const struct spool_log_usage *u, uint64_t n)
{
	return u->reclaimed_segments >= n;
}

/* Nothing queued and one segment file, the spare (0 before the first pass: not yet). */
static bool
only_spare(const struct spool_log_usage *u, uint64_t unused)
{
	(void)unused;
	return u->segments == 1 && u->live_bytes == 0;
}

/* Deletes copy `qid` as the hand-off does when every recipient is done. */
static void
deliver(struct spool *s, const char *qid)
{
	struct hs_copy *c;
	char err[512];
	bool deleted;

	assert_int_equal(hs_load(s, 0, qid, 0, &c, err, sizeof(err)), PA_OK);
	for (size_t i = 0; i < c->rec->nrcpt; i++)
		c->d[i].state = SPOOL_DELIVERY_DONE;
	assert_int_equal(hs_finish(s, c, &deleted, NULL, err, sizeof(err)), PA_OK);
	assert_true(deleted);
	hs_copy_free(c);
}

enum { SEG_N = 40, SEG_SIZE = 6000 };

/* SEG_N copies in dir's one shard, over several 64 KiB segments; every completion checked. */
static struct spool *
fill_segments(char *dir, char qids[SEG_N][16], uint8_t data[SEG_N][SEG_SIZE])
{
	static const char *rcpts[] = {"a@example.com"};
	struct spool_config cfg = {dir, 1, 1, 64, NULL, 0, 0, NULL, 2, 64u << 10, 0, 0};
	static struct smtp_message msg[SEG_N];
	static struct spool_message sm[SEG_N];
	struct spool_completion done[SEG_N];
	struct spool *s = NULL;
	char err[512];
	unsigned got = 0;

	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open: %s", err);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	for (unsigned i = 0; i < SEG_N; i++) {
		snprintf(qids[i], 16, "QIDSEG%04u", i);
		memset(data[i], 'a' + (int)(i % 26), SEG_SIZE);
		memcpy(data[i], "Received: x\r\n", 13);
		msg[i] = (struct smtp_message){.queue_id = qids[i],
		                               .mail_from = "s@example.org",
		                               .rcpts = rcpts,
		                               .nrcpt = 1,
		                               .data = data[i],
		                               .size = SEG_SIZE,
		                               .helo = "h",
		                               .client_addr = "192.0.2.1"};
		sm[i] = (struct spool_message){&msg[i], pa_wall_clock_us(), NULL};
		assert_int_equal(spool_submit(s, 0, &sm[i]), PA_OK);
	}
	for (int waited = 0; got < SEG_N && waited < 20000; waited++) {
		unsigned k = spool_poll(s, 0, done + got, SEG_N - got);

		for (unsigned i = got; i < got + k; i++)
			assert_int_equal(done[i].status, PA_OK);
		got += k;
		if (k == 0)
			usleep(1000);
	}
	assert_int_equal(got, SEG_N);
	return s;
}

static void
remove_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * Format 2, reclamation: copies spread over several 64 KiB segments; once
 * the hand-off deleted every copy of a closed segment, the committer removes
 * it (and spool_shard_log_usage() says so), while a segment with one copy
 * left stays and that copy reads back whole, also after a restart.  The
 * deletes here are synced writes, which publish no synced WAL sequence: the
 * committer syncs the WAL itself (wal_syncs) before it removes anything.
 */
static void
test_segments_reclaimed(void **state)
{
	char dir[] = "/tmp/pa-hs-XXXXXX", qids[SEG_N][16];
	struct spool_config cfg = {dir, 1, 1, 64, NULL, 0, 0, NULL, 2, 64u << 10, 0, 0};
	static uint8_t data[SEG_N][SEG_SIZE];
	struct spool_log_usage u;
	struct spool *s;
	struct hs_copy *c;
	char err[512];

	(void)state;
	assert_non_null(mkdtemp(dir));
	s = fill_segments(dir, qids, data);
	u = wait_usage(s, live_at_least, (uint64_t)SEG_N * SEG_SIZE);
	assert_true(u.log);
	assert_true(u.segments >= 4); /* 240 KB in 64 KiB segments (and a spare) */
	assert_int_equal(u.reclaimed_segments, 0);

	/*
	 * Every copy delivered but the first: the closed segments go but the
	 * first (that copy's), the one being written and the spare.
	 */
	for (unsigned i = 1; i < SEG_N; i++)
		deliver(s, qids[i]);
	u = wait_usage(s, segments_at_most, 3);
	assert_int_equal(segment_files(dir), 3);
	assert_true(u.reclaimed_segments >= 2);
	assert_true(u.wal_syncs >= 1);
	assert_true(u.live_bytes >= SEG_SIZE && u.live_bytes < 2 * SEG_SIZE);
	assert_int_equal(hs_load(s, 0, qids[0], 0, &c, err, sizeof(err)), PA_OK);
	assert_memory_equal(c->data, data[0], SEG_SIZE);
	hs_copy_free(c);
	spool_close(s);

	/* A restart recovers from the checkpoint, past the removed segments. */
	s = NULL;
	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open again: %s", err);
	assert_int_equal(hs_load(s, 0, qids[0], 0, &c, err, sizeof(err)), PA_OK);
	assert_memory_equal(c->data, data[0], SEG_SIZE);
	hs_copy_free(c);
	assert_int_equal(hs_load(s, 0, qids[1], 0, &c, err, sizeof(err)), PA_AGAIN);
	/* Left: nothing but the spare (the restart writes into a new segment). */
	deliver(s, qids[0]);
	u = wait_usage(s, only_spare, 0);
	assert_int_equal(segment_files(dir), 1);
	assert_true(u.reclaimed_segments >= 2);
	spool_close(s);
	remove_dir(dir);
}

/*
 * The same deletes as the hand-off writes them (unsynced, in one batch),
 * then its syncer's hs_sync(): that sync, published by the spool's WAL-sync
 * service, is what the committer's reclamation waits for, so it removes the
 * emptied segments without a WAL sync of its own (wal_syncs stays 0; its
 * own sync would come only after a second of idle time without one).
 */
static void
test_segments_reclaimed_after_handoff_sync(void **state)
{
	char dir[] = "/tmp/pa-hs-XXXXXX", qids[SEG_N][16];
	static uint8_t data[SEG_N][SEG_SIZE];
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	struct spool_log_usage u;
	struct spool *s;
	char err[512];

	(void)state;
	assert_non_null(mkdtemp(dir));
	s = fill_segments(dir, qids, data);
	for (unsigned i = 0; i < SEG_N; i++) {
		struct hs_copy *c;
		bool deleted;

		assert_int_equal(hs_load(s, 0, qids[i], 0, &c, err, sizeof(err)), PA_OK);
		c->d[0].state = SPOOL_DELIVERY_DONE;
		assert_int_equal(hs_finish(s, c, &deleted, b, err, sizeof(err)), PA_OK);
		assert_true(deleted);
		hs_copy_free(c);
	}
	assert_int_equal(hs_write_unsynced(s, 0, b, err, sizeof(err)), PA_OK);
	assert_int_equal(hs_sync(s, 0, err, sizeof(err)), PA_OK);
	/* 40 records of 6 KB fill three 64 KiB segments and start a fourth. */
	u = wait_usage(s, reclaimed_at_least, 3);
	assert_int_equal(u.wal_syncs, 0);
	assert_int_equal(u.live_bytes, 0);
	/* Left: the segment being written and the spare. */
	assert_int_equal(u.segments, 2);
	assert_int_equal(segment_files(dir), 2);
	rocksdb_writebatch_destroy(b);
	spool_close(s);
	remove_dir(dir);
}

int
main(void)
{
	char prefix[64];
	char *argv[] = {"test", "--no-huge",   "--no-pci",       "-m",
	                "128",  "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                "-l",   "0",           prefix,           NULL};
	cpu_set_t cpus;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_lifecycle_log),
	    cmocka_unit_test(test_segments_reclaimed),
	    cmocka_unit_test(test_segments_reclaimed_after_handoff_sync),
	    cmocka_unit_test(test_due_from_cursor),
	    cmocka_unit_test(test_engine_message_ops),
	};

	snprintf(prefix, sizeof(prefix), "--file-prefix=pahs%ld", (long)getpid());
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init(11, argv) < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		return 1;
	}
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
