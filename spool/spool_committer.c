/*
 * spool_committer.c: the per-shard group-commit thread.
 *
 * Each shard has one committer.  It takes every request waiting on the
 * shard's ring, writes them all as one RocksDB WriteBatch with sync = 1, and
 * only then reports them done; requests that arrive during the fsync wait on
 * the ring and form the next batch, so under load one fsync covers many
 * messages.  What it promises: a request is reported successful only after
 * the synced write holding it returned OK; a failed write fails exactly the
 * requests of that batch; on stop, everything already on the ring is
 * committed and reported before the thread exits.
 *
 * Idle: the committer sleeps on its eventfd.  It announces the sleep
 * (shard->sleeping) before its last look at the ring, and a worker that may
 * make syscalls looks at the flag after its enqueue, with a full fence on
 * both sides, so either the committer sees the request or the worker sees
 * the flag and rings the eventfd: no lost wakeup.  A poll-mode worker makes
 * the same check once per loop iteration (spool_poll()), for every shard it
 * submitted to: the doorbell, one write(2) per burst that finds the
 * committer asleep, none while it is busy.  With spool.idle_poll_us set,
 * poll-mode workers never ring and the sleep is short instead, growing with
 * idleness up to that bound (the earlier design, kept for measurement).
 *
 * Group sizes adapt by themselves: an idle committer rung for one message
 * syncs it alone at once; under load the requests that arrive during a sync
 * wait on the ring and are the next group.  groups[] counts them by size.
 */

#include "spool/spool_internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/pa.h"
#include "spool/spool_record.h"

/* Bounds the memory of one WriteBatch; the rest of a burst goes into the next one. */
#define BATCH_BYTES_MAX (64u << 20)
#define IDLE_POLL_MIN_US 50u
#define IDLE_SLEEP_MS 100u
#define LINGER_POLL_US 100      /* a lingering committer's first look at its ring */
#define LINGER_POLL_MAX_US 1000 /* and the longest wait between looks */

struct spool_committer {
	struct spool_shard *shard;
	rocksdb_writebatch_t *batch;
	void **reqs;                       /* one burst from the ring, shard->capacity entries */
	bool *added;                       /* reqs[i] made it into the current batch */
	struct spool_stream_copy **stream; /* reqs[i]'s copy for the commit stream, or NULL */
	uint8_t *scratch;                  /* the encoded message record */
	size_t scratch_cap;
	const char **rcpts; /* the recipients of this shard of one message */
	size_t rcpts_cap;
	uint64_t notify[SPOOL_MAX_WORKERS / 64]; /* workers to wake after this batch */
	unsigned idle_us;
	uint64_t next_prepare_us;      /* format 2: no spare segment made before (monotonic) */
	struct spool_reclaim *reclaim; /* format 2 */
};

static bool
grow(void **buf, size_t *cap, size_t want, size_t elem)
{
	void *p;

	if (want <= *cap)
		return true;
	p = realloc(*buf, want * elem);
	if (p == NULL)
		return false;
	*buf = p;
	*cap = want;
	return true;
}

/* The envelope of the message's copy in this shard: only this shard's recipients, in order. */
static bool
shard_envelope(struct spool_committer *c, const struct spool_tracker *t,
               struct spool_msg_record *rec)
{
	const struct smtp_message *msg = t->message->msg;
	size_t n = 0;

	if (!grow((void **)&c->rcpts, &c->rcpts_cap, msg->nrcpt, sizeof(*c->rcpts)))
		return false;
	for (size_t i = 0; i < msg->nrcpt; i++)
		if (t->rcpt_shard[i] == c->shard->index)
			c->rcpts[n++] = msg->rcpts[i];
	*rec = (struct spool_msg_record){
	    .flags = (msg->body_8bitmime ? SPOOL_MSG_8BITMIME : 0) |
	             (msg->smtputf8 ? SPOOL_MSG_SMTPUTF8 : 0) |
	             (msg->chunked ? SPOOL_MSG_CHUNKED : 0),
	    .arrival_us = t->message->arrival_us,
	    .size = msg->size,
	    .mail_from = msg->mail_from,
	    .client_addr = msg->client_addr,
	    .helo = msg->helo,
	    .nrcpt = n,
	    .rcpts = c->rcpts,
	};
	return true;
}

void
spool_put_pending(rocksdb_writebatch_t *b, const char *qid, size_t qlen, size_t nrcpt,
                  uint64_t now_us)
{
	struct spool_delivery d = {.state = SPOOL_DELIVERY_PENDING, .next_attempt_us = now_us};
	uint8_t key[SPOOL_KEY_MAX], dval[SPOOL_DELIVERY_MAX], sched = spool_record_schedule_value();
	/* Cannot fail: a pending record with no reply is always in range. */
	long dlen = spool_record_delivery_encode(&d, dval);

	for (size_t i = 0; i < nrcpt; i++)
		rocksdb_writebatch_put(b, (const char *)key,
		                       spool_key_delivery(key, qid, qlen, (uint16_t)i),
		                       (const char *)dval, (size_t)dlen);
	rocksdb_writebatch_put(b, (const char *)key, spool_key_schedule(key, now_us, qid, qlen),
	                       (const char *)&sched, SPOOL_SCHEDULE_SIZE);
}

/*
 * Puts one message copy into the batch: message record, body, one delivery
 * record per recipient, schedule entry.  Fails only before its first put, so a
 * refused request leaves nothing behind in the batch.
 */
static bool
add_request(struct spool_committer *c, const struct spool_request *req, uint64_t now_us,
            struct spool_stream_copy **streamed)
{
	const struct spool_tracker *t = req->tracker;
	const struct smtp_message *msg = t->message->msg;
	size_t qlen = strlen(msg->queue_id);
	struct spool_msg_record rec;
	uint8_t key[SPOOL_KEY_MAX];
	uint8_t body_header = spool_record_body_header();
	const char *bkey[1] = {(const char *)key}, *bval[2];
	size_t bklen[1], bvlen[2];
	long len;

	if (!shard_envelope(c, t, &rec))
		return false;
	len = spool_record_msg_size(&rec);
	if (len < 0 || !grow((void **)&c->scratch, &c->scratch_cap, (size_t)len, 1))
		return false;
	spool_record_msg_encode(&rec, c->scratch);

	rocksdb_writebatch_put(c->batch, (const char *)key,
	                       spool_key_message(key, msg->queue_id, qlen),
	                       (const char *)c->scratch, (size_t)len);
	/* putv joins the version byte and the worker's bytes without another copy of the body. */
	bklen[0] = spool_key_body(key, msg->queue_id, qlen);
	bval[0] = (const char *)&body_header;
	bvlen[0] = SPOOL_BODY_HEADER;
	bval[1] = msg->data != NULL ? (const char *)msg->data : "";
	bvlen[1] = msg->size;
	rocksdb_writebatch_putv(c->batch, 1, bkey, bklen, 2, bval, bvlen);
	spool_put_pending(c->batch, msg->queue_id, qlen, rec.nrcpt, now_us);
	*streamed = spool_stream_prepare(c->shard, msg->queue_id, c->scratch, (size_t)len,
	                                 msg->data, msg->size, now_us);
	return true;
}

/*
 * Format 2: the copy's record goes to the segment log (staged; the body is
 * written from the worker's buffer), and its index to the batch: message
 * record, location, delivery records, schedule entry, none of them synced
 * (docs/spool-format.md, "What is synced").  Fails only before its first
 * put, so a refused request leaves nothing behind in the batch.
 */
static bool
add_request_log(struct spool_committer *c, const struct spool_request *req, uint64_t now_us,
                struct spool_stream_copy **streamed)
{
	struct spool_shard *sh = c->shard;
	const struct spool_tracker *t = req->tracker;
	const struct smtp_message *msg = t->message->msg;
	size_t qlen = strlen(msg->queue_id);
	struct spool_msg_record rec;
	struct seglog_loc where;
	struct spool_location loc;
	uint8_t key[SPOOL_KEY_MAX], lval[SPOOL_LOCATION_SIZE];
	char err[256];
	long plen;
	size_t env_off;

	if (sh->log == NULL || !shard_envelope(c, t, &rec))
		return false;
	plen = seglog_message_prefix_size(msg->queue_id, &rec);
	if (plen < 0 || !grow((void **)&c->scratch, &c->scratch_cap, (size_t)plen, 1))
		return false;
	seglog_message_prefix_encode(msg->queue_id, &rec, c->scratch);
	/* The log copies the prefix; the body stays the worker's until the completion. */
	if (seglog_add(sh->log, c->scratch, (size_t)plen,
	               msg->data != NULL ? (const void *)msg->data : "", msg->size, &where, err,
	               sizeof(err)) != PA_OK) {
		spool_shard_log_failed(sh, err);
		return false;
	}
	/* The envelope in the prefix is the message record, byte for byte. */
	env_off = SEGLOG_MESSAGE_FIXED + qlen;
	rocksdb_writebatch_put(c->batch, (const char *)key,
	                       spool_key_message(key, msg->queue_id, qlen),
	                       (const char *)c->scratch + env_off, (size_t)plen - env_off);
	loc = (struct spool_location){where.segment, where.offset, where.length, where.seq};
	spool_record_location_encode(&loc, lval);
	rocksdb_writebatch_put(c->batch, (const char *)key,
	                       spool_key_location(key, msg->queue_id, qlen), (const char *)lval,
	                       sizeof(lval));
	spool_put_pending(c->batch, msg->queue_id, qlen, rec.nrcpt, now_us);
	*streamed = spool_stream_prepare(sh, msg->queue_id, c->scratch + env_off,
	                                 (size_t)plen - env_off, msg->data, msg->size, now_us);
	return true;
}

/* The last shard of a message hands the tracker back; the worker frees it. */
static void
finish(struct spool_committer *c, struct spool_request *req, bool ok)
{
	struct spool_tracker *t = req->tracker;
	struct spool_worker *w;

	if (!ok)
		atomic_store_explicit(&t->failed, true, memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&t->remaining, 1, memory_order_acq_rel) != 1)
		return; /* another shard still holds t; it may be freed any time now */
	t->status = atomic_load_explicit(&t->failed, memory_order_relaxed) ? PA_ERROR : PA_OK;
	w = &c->shard->spool->workers[t->worker];
	if (w->notify_fd >= 0)
		c->notify[t->worker / 64] |= UINT64_C(1) << (t->worker % 64);
	/* Cannot fail: a worker never has more messages in flight than this ring holds. */
	if (rte_ring_enqueue(w->done, t) != 0) {
		fprintf(stderr, "spool: completion ring of worker %u overflowed; aborting\n",
		        t->worker);
		abort();
	}
}

static void
notify_workers(struct spool_committer *c)
{
	const struct spool *spool = c->shard->spool;
	uint64_t one = 1;

	for (unsigned i = 0; i < pa_array_size(c->notify); i++) {
		while (c->notify[i] != 0) {
			unsigned bit = (unsigned)__builtin_ctzll(c->notify[i]);

			c->notify[i] &= c->notify[i] - 1;
			/* EAGAIN means the counter is already non-zero: the worker wakes anyway. */
			if (write(spool->workers[i * 64 + bit].notify_fd, &one, sizeof(one)) ==
			        -1 &&
			    errno != EAGAIN)
				fprintf(stderr, "spool: write(worker %u eventfd): %s\n",
				        i * 64 + bit, strerror(errno));
		}
	}
}

/*
 * Format 2: the log's records are synced first (what a 250 waits for), then
 * their index goes to RocksDB unsynced with the checkpoint after them, in
 * one batch: after a crash, RocksDB holds a prefix of these batches and
 * recovery re-indexes the log from the last checkpoint it holds.
 */
static bool
commit_log(struct spool_committer *c)
{
	struct spool_shard *sh = c->shard;
	struct seglog_pos tail;
	struct spool_checkpoint cp;
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_CHECKPOINT_SIZE];
	char err[256];

	if (atomic_load_explicit(&sh->health, memory_order_acquire) != SPOOL_SHARD_OK) {
		/* Nothing is written while unhealthy: the staged records are dropped unsynced. */
		seglog_discard(sh->log);
		return false;
	}
	if (seglog_commit(sh->log, err, sizeof(err)) != PA_OK) {
		spool_shard_log_failed(sh, err);
		return false;
	}
	tail = seglog_tail(sh->log);
	cp = (struct spool_checkpoint){tail.segment, tail.offset, tail.seq};
	spool_record_checkpoint_encode(&cp, val);
	rocksdb_writebatch_put(c->batch, (const char *)key, spool_key_checkpoint(key),
	                       (const char *)val, sizeof(val));
	/*
	 * Unsynced, so it returns once RocksDB took it; should it fail, the
	 * copies are durable in the log but unindexed: reported failed (451),
	 * like any failed commit, and re-indexed only by a recovery that starts
	 * before them (a copy delivered twice at worst).
	 */
	return spool_shard_write_index(sh, c->batch);
}

static bool
commit(struct spool_committer *c)
{
	struct spool_shard *sh = c->shard;

	if (sh->format == SPOOL_FORMAT_LOG) {
		if (!commit_log(c))
			return false;
	} else if (!spool_shard_write(sh, c->batch)) {
		/* Synced; bounded while RocksDB stalls; logs and marks the shard unhealthy. */
		return false;
	}
	atomic_fetch_add_explicit(&sh->commits, 1, memory_order_relaxed);
	return true;
}

/* groups[]: bucket 0 for 1 copy, bucket i for 2^i to 2^(i+1)-1, the last one for the rest. */
static void
count_group(struct spool_shard *sh, unsigned copies)
{
	unsigned b = 31u - (unsigned)__builtin_clz(copies);

	if (b >= SPOOL_GROUP_BUCKETS)
		b = SPOOL_GROUP_BUCKETS - 1;
	atomic_fetch_add_explicit(&sh->groups[b], 1, memory_order_relaxed);
}

static void
process(struct spool_committer *c, unsigned n)
{
	struct spool_shard *sh = c->shard;
	unsigned i = 0;

	while (i < n) {
		unsigned first = i, added = 0;
		uint64_t ok_msgs = 0, ok_bytes = 0, failed = 0;
		size_t bytes = 0;
		/* The group's schedule time; the commit stream's frame (spool_stream.c). */
		uint64_t now = spool_stream_begin(sh);
		bool written = true;

		rocksdb_writebatch_clear(c->batch);
		for (; i < n && (i == first || bytes < BATCH_BYTES_MAX); i++) {
			struct spool_request *req = c->reqs[i];

			c->stream[i] = NULL;
			c->added[i] = sh->format == SPOOL_FORMAT_LOG
			                  ? add_request_log(c, req, now, &c->stream[i])
			                  : add_request(c, req, now, &c->stream[i]);
			if (c->added[i]) {
				added++;
				bytes += req->tracker->message->msg->size;
			}
		}
		if (added > 0) {
			written = commit(c);
			count_group(sh, added);
		}
		for (unsigned j = first; j < i; j++) {
			struct spool_request *req = c->reqs[j];
			bool ok = c->added[j] && written;

			if (ok) {
				ok_msgs++;
				ok_bytes += req->tracker->message->msg->size;
			} else {
				failed++;
			}
			finish(c, req, ok);
		}
		atomic_fetch_add_explicit(&sh->messages, ok_msgs, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->failures, failed, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->bytes, ok_bytes, memory_order_relaxed);
		notify_workers(c);
		/* After the 250s: durable and indexed, the copies go to the hand-off. */
		spool_stream_publish(sh, c->stream + first, i - first, added > 0 && written);
		spool_stream_end(sh);
	}
}

static unsigned
idle_poll_min(const struct spool_shard *sh)
{
	unsigned max = sh->spool->idle_poll_us;

	return max != 0 && max < IDLE_POLL_MIN_US ? max : IDLE_POLL_MIN_US;
}

static void
idle(struct spool_committer *c)
{
	struct spool_shard *sh = c->shard;
	bool poll_mode;
	struct timespec ts;
	struct pollfd pfd = {sh->wake_fd, POLLIN, 0};
	uint64_t v;

	atomic_store_explicit(&sh->sleeping, true, memory_order_relaxed);
	/* Pairs with the fence in spool_submit() between its enqueue and its look at sleeping. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!rte_ring_empty(sh->ring) || atomic_load_explicit(&sh->stop, memory_order_acquire)) {
		atomic_store_explicit(&sh->sleeping, false, memory_order_relaxed);
		return;
	}
	/* Timed polling only when asked for (spool.idle_poll_us): otherwise the doorbell wakes it.
	 */
	poll_mode = atomic_load_explicit(&sh->spool->poll_workers, memory_order_acquire);
	if (poll_mode)
		ts = (struct timespec){(long)(c->idle_us / 1000000u),
		                       (long)(c->idle_us % 1000000u) * 1000};
	else
		ts = (struct timespec){0, (long)IDLE_SLEEP_MS * 1000000};
	if (ppoll(&pfd, 1, &ts, NULL) == -1 && errno != EINTR) {
		fprintf(stderr, "spool: ppoll(%s eventfd): %s\n", sh->path, strerror(errno));
		nanosleep(&ts, NULL); /* never spin on a broken fd */
	}
	/* Nonblocking: clears the counter whether or not a wake-up came. */
	if (read(sh->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		fprintf(stderr, "spool: read(%s eventfd): %s\n", sh->path, strerror(errno));
	atomic_store_explicit(&sh->sleeping, false, memory_order_relaxed);
	if (poll_mode && c->idle_us < sh->spool->idle_poll_us)
		c->idle_us = c->idle_us * 2 > sh->spool->idle_poll_us ? sh->spool->idle_poll_us
		                                                      : c->idle_us * 2;
}

/*
 * Format 2: the next segment is made while idle, not under a message.  After
 * a failure (a full disk) it waits retry_us before trying again, rather than
 * allocating at every idle turn; the next message that needs it tries at once.
 */
static uint64_t
monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
prepare_segment(struct spool_committer *c)
{
	struct spool_shard *sh = c->shard;
	uint64_t now = monotonic_us();
	char err[256];

	if (now < c->next_prepare_us)
		return;
	if (seglog_prepare(sh->log, err, sizeof(err)) != PA_OK)
		c->next_prepare_us = now + sh->spool->retry_us;
}

/*
 * spool.linger_us: before it announces sleep, a committer with a CPU the
 * workers do not need keeps looking at its ring for this long after its last
 * group, so that a worker at a steady light load finds it awake and makes no
 * system call to ring it.  The looks are short sleeps, not spinning: a
 * spinning thread takes its share of a CPU from whatever runs there, and
 * lingering committers that spun (sched_yield between looks) starved a
 * busy-polling neighbour to 4 msg/s (docs/benchmarks.md).  The wait between
 * looks starts at LINGER_POLL_US and doubles up to LINGER_POLL_MAX_US: looks
 * every 100 us for the whole linger were 10,000 wake-ups a second per shard,
 * and on two CPUs those took enough time from a busy-polling worker that its
 * TAP queue overflowed under a SYN flood (test_dpdk_tcp's
 * test_syn_flood_legitimate_clients_still_served: 79-81 % of 50,000 SYNs
 * seen, against 100 % with at most 1,000 looks a second).  A message that
 * comes while it lingers waits at most one look; one that comes later rings
 * it.  True when a request came.
 */
static bool
linger(struct spool_committer *c)
{
	struct spool_shard *sh = c->shard;
	long wait_us = LINGER_POLL_US;
	uint64_t start;

	if (sh->spool->linger_us == 0)
		return false;
	start = monotonic_us();
	while (rte_ring_empty(sh->ring)) {
		if (monotonic_us() - start >= sh->spool->linger_us ||
		    atomic_load_explicit(&sh->stop, memory_order_acquire))
			return false;
		nanosleep(&(struct timespec){0, wait_us * 1000}, NULL);
		if (wait_us < LINGER_POLL_MAX_US)
			wait_us =
			    wait_us * 2 > LINGER_POLL_MAX_US ? LINGER_POLL_MAX_US : wait_us * 2;
	}
	return true;
}

static void *
committer_main(void *arg)
{
	struct spool_committer *c = arg;
	struct spool_shard *sh = c->shard;

	/* Its lingering looks (linger()) come at LINGER_POLL_US, not 50 us later. */
	if (sh->spool->linger_us != 0 && prctl(PR_SET_TIMERSLACK, 1000ul) == -1)
		fprintf(stderr, "spool: prctl(PR_SET_TIMERSLACK) in committer %s: %s\n", sh->path,
		        strerror(errno));
	for (;;) {
		unsigned n;

		/* An unhealthy shard is probed (and reopened) here, never on a worker. */
		if (c->reclaim != NULL &&
		    atomic_load_explicit(&sh->health, memory_order_acquire) != SPOOL_SHARD_OK)
			spool_reclaim_abort(
			    sh, c->reclaim); /* its iterator is on the db a reopen closes */
		spool_shard_recover(sh);
		n = rte_ring_dequeue_burst(sh->ring, c->reqs, sh->capacity, NULL);

		if (n > 0) {
			/* Free the slots now: the next batch gathers while this one syncs. */
			atomic_fetch_sub_explicit(&sh->reserved, n, memory_order_release);
			process(c, n);
			c->idle_us = idle_poll_min(sh);
			/* Between groups too, a bounded step: a busy shard still reclaims. */
			if (c->reclaim != NULL &&
			    atomic_load_explicit(&sh->health, memory_order_acquire) ==
			        SPOOL_SHARD_OK)
				spool_reclaim_step(sh, c->reclaim, monotonic_us(), false);
			continue;
		}
		if (sh->log != NULL &&
		    atomic_load_explicit(&sh->health, memory_order_acquire) == SPOOL_SHARD_OK) {
			prepare_segment(c);
			spool_reclaim_step(sh, c->reclaim, monotonic_us(), true);
		}
		/* stop is read before the ring, so whatever was queued before close is seen. */
		if (atomic_load_explicit(&sh->stop, memory_order_acquire)) {
			if (rte_ring_empty(sh->ring))
				break;
			continue;
		}
		if (linger(c))
			continue;
		idle(c);
	}
	return NULL;
}

static void
committer_free(struct spool_committer *c)
{
	if (c == NULL)
		return;
	if (c->batch != NULL)
		rocksdb_writebatch_destroy(c->batch);
	free(c->reqs);
	free(c->added);
	free(c->stream);
	free(c->scratch);
	free(c->rcpts);
	spool_reclaim_free(c->reclaim);
	free(c);
}

int
spool_committer_start(struct spool_shard *sh, char *err, size_t errlen)
{
	struct spool_committer *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	char name[16];
	int rc;

	if (c != NULL) {
		c->shard = sh;
		c->idle_us = idle_poll_min(sh);
		c->batch = rocksdb_writebatch_create();
		c->reqs = calloc(sh->capacity, sizeof(*c->reqs));
		c->added = calloc(sh->capacity, sizeof(*c->added));
		c->stream = calloc(sh->capacity, sizeof(*c->stream));
		if (sh->log != NULL)
			c->reclaim = spool_reclaim_new();
	}
	if (c == NULL || c->reqs == NULL || c->added == NULL || c->stream == NULL ||
	    (sh->log != NULL && c->reclaim == NULL)) {
		snprintf(err, errlen, "spool committer %s: out of memory", sh->path);
		committer_free(c);
		return PA_ERROR;
	}
	/*
	 * Pinned from its first instruction (spool.committer_cpus): with the
	 * DPDK backend its syncs must not take time from a busy-polling worker.
	 */
	rc = pthread_attr_init(&attr);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_attr_init(committer %s): %s", sh->path,
		         strerror(rc));
		committer_free(c);
		return PA_ERROR;
	}
	if (sh->spool->pin_committers) {
		rc = pthread_attr_setaffinity_np(&attr, sizeof(sh->spool->committer_cpus),
		                                 &sh->spool->committer_cpus);
		if (rc != 0) {
			snprintf(err, errlen, "pthread_attr_setaffinity_np(committer %s): %s",
			         sh->path, strerror(rc));
			pthread_attr_destroy(&attr);
			committer_free(c);
			return PA_ERROR;
		}
	}
	rc = pthread_create(&sh->thread, &attr, committer_main, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(committer %s): %s", sh->path, strerror(rc));
		committer_free(c);
		return PA_ERROR;
	}
	sh->committer = c;
	sh->thread_started = true;
	snprintf(name, sizeof(name), "spool-c%03u", sh->index);
	/* Only a name for top and gdb; failing to set it is harmless. */
	pthread_setname_np(sh->thread, name);
	return PA_OK;
}

void
spool_committer_join(struct spool_shard *sh)
{
	pthread_join(sh->thread, NULL);
	sh->thread_started = false;
	committer_free(sh->committer);
	sh->committer = NULL;
}

void
spool_committer_wake(struct spool_shard *sh)
{
	uint64_t one = 1;

	/* EAGAIN: the counter is already non-zero, the committer wakes anyway. */
	if (write(sh->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		fprintf(stderr, "spool: write(%s eventfd): %s\n", sh->path, strerror(errno));
}
