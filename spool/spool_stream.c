/*
 * spool_stream.c: the commit stream, committed copies handed to the
 * hand-off in memory (spool.h, "The commit stream").
 *
 * Each shard has a single-producer (its committer), single-consumer (the
 * hand-off engine) DPDK ring of struct spool_stream_copy pointers.  The
 * committer prepares a copy per message of a group while it builds the
 * group's write (one allocation: the struct, the message record, the
 * stored bytes), and pushes the group's copies only once the write
 * succeeded: a copy on the ring is durable and indexed.  What does not fit
 * (SPOOL_STREAM_RING copies a shard, SPOOL_STREAM_BYTES bytes in all) is
 * freed and counted; the consumer's scan finds it on disk.
 *
 * The consumer's scan must not load a copy that is still on its way here:
 * fresh_from says from which schedule time entries may belong to a group
 * whose copies are not pushed yet.  begin() stores 0 ("anything") before it
 * reads the clock for the group's time and then that time; end() stores
 * UINT64_MAX after the pushes.  A group that begins after the consumer read
 * the value has a time at or after the consumer's clock at that read
 * (group times are also strictly increasing per shard, whatever the wall
 * clock does); one that ended before has pushed everything.
 */
#include "spool/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_errno.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"

#define TAKE_BURST 64

static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;

int
spool_stream_init(struct spool_shard *sh, char *err, size_t errlen)
{
	char name[RTE_RING_NAMESIZE];

	/* Ring names are process-wide in DPDK; the spool's address keeps two spools apart. */
	snprintf(name, sizeof(name), "sps%" PRIxPTR "_%u", (uintptr_t)sh->spool & 0xffffffffffu,
	         sh->index);
	sh->stream = rte_ring_create(name, SPOOL_STREAM_RING, SOCKET_ID_ANY,
	                             RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
	if (sh->stream == NULL) {
		snprintf(err, errlen, "rte_ring_create(%s, %u): %s", name, SPOOL_STREAM_RING,
		         rte_strerror(rte_errno));
		return PA_ERROR;
	}
	atomic_store(&sh->fresh_from, UINT64_MAX);
	return PA_OK;
}

static void
drop(struct spool *spool, struct spool_stream_copy *c)
{
	atomic_fetch_sub_explicit(&spool->stream_bytes, c->bytes, memory_order_relaxed);
	free(c);
}

static void
drain(struct spool_shard *sh)
{
	void *p;

	while (sh->stream != NULL && rte_ring_sc_dequeue(sh->stream, &p) == 0)
		drop(sh->spool, p);
}

/* After the committer stopped. */
void
spool_stream_fini(struct spool_shard *sh)
{
	drain(sh);
	rte_ring_free(sh->stream);
	sh->stream = NULL;
}

uint64_t
spool_stream_begin(struct spool_shard *sh)
{
	uint64_t t;

	/* Before the clock is read: a consumer reading this looks at nothing recent. */
	atomic_store_explicit(&sh->fresh_from, 0, memory_order_seq_cst);
	t = pa_wall_clock_us();
	if (t <= sh->last_group_us)
		t = sh->last_group_us + 1;
	sh->last_group_us = t;
	atomic_store_explicit(&sh->fresh_from, t, memory_order_seq_cst);
	return t;
}

void
spool_stream_end(struct spool_shard *sh)
{
	atomic_store_explicit(&sh->fresh_from, UINT64_MAX, memory_order_release);
}

struct spool_stream_copy *
spool_stream_prepare(struct spool_shard *sh, const char *qid, const uint8_t *record,
                     size_t record_len, const void *data, size_t size, uint64_t sched_us)
{
	struct spool *spool = sh->spool;
	struct spool_stream_copy *c;
	size_t qlen = strlen(qid);
	uint64_t bytes = sizeof(*c) + record_len + size;
	uint8_t *p;

	if (!atomic_load_explicit(&spool->streaming, memory_order_acquire))
		return NULL;
	if (qlen >= sizeof(c->queue_id) ||
	    atomic_fetch_add_explicit(&spool->stream_bytes, bytes, memory_order_relaxed) + bytes >
	        SPOOL_STREAM_BYTES) {
		if (qlen < sizeof(c->queue_id))
			atomic_fetch_sub_explicit(&spool->stream_bytes, bytes,
			                          memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->stream_overflow, 1, memory_order_relaxed);
		return NULL;
	}
	c = malloc(bytes);
	if (c == NULL) {
		atomic_fetch_sub_explicit(&spool->stream_bytes, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->stream_overflow, 1, memory_order_relaxed);
		return NULL;
	}
	p = (uint8_t *)(c + 1);
	memcpy(p, record, record_len);
	if (size > 0)
		memcpy(p + record_len, data, size);
	*c = (struct spool_stream_copy){
	    .shard = sh->index,
	    .sched_us = sched_us,
	    .record = p,
	    .record_len = record_len,
	    .data = p + record_len,
	    .size = size,
	    .gen = atomic_load_explicit(&spool->stream_gen, memory_order_acquire),
	    .bytes = bytes,
	};
	memcpy(c->queue_id, qid, qlen + 1);
	return c;
}

void
spool_stream_publish(struct spool_shard *sh, struct spool_stream_copy **copies, unsigned n, bool ok)
{
	struct spool *spool = sh->spool;
	uint64_t pushed = 0, lost = 0, one = 1;
	int fd;

	for (unsigned i = 0; i < n; i++) {
		if (copies[i] == NULL)
			continue;
		if (ok && rte_ring_sp_enqueue(sh->stream, copies[i]) == 0) {
			pushed++;
		} else {
			lost += ok;
			drop(spool, copies[i]);
		}
		copies[i] = NULL;
	}
	if (lost > 0)
		atomic_fetch_add_explicit(&sh->stream_overflow, lost, memory_order_relaxed);
	if (pushed == 0)
		return;
	atomic_fetch_add_explicit(&sh->streamed, pushed, memory_order_relaxed);
	/* Under the lock: detach clears the fd before its owner closes it. */
	pthread_mutex_lock(&notify_lock);
	fd = atomic_load_explicit(&spool->stream_fd, memory_order_relaxed);
	/* EAGAIN: the counter is already non-zero, the consumer wakes anyway. */
	if (fd >= 0 && write(fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		pa_log_err("spool: write(stream eventfd): %s", strerror(errno));
	pthread_mutex_unlock(&notify_lock);
}

int
spool_stream_attach(struct spool *spool, int notify_fd)
{
	if (atomic_load(&spool->streaming))
		return PA_ERROR;
	pthread_mutex_lock(&notify_lock);
	atomic_store(&spool->stream_fd, notify_fd);
	pthread_mutex_unlock(&notify_lock);
	atomic_fetch_add(&spool->stream_gen, 1);
	atomic_store(&spool->streaming, true);
	return PA_OK;
}

void
spool_stream_detach(struct spool *spool)
{
	atomic_store(&spool->streaming, false);
	/* What a committer pushes from now on carries an older generation: never taken. */
	atomic_fetch_add(&spool->stream_gen, 1);
	pthread_mutex_lock(&notify_lock);
	atomic_store(&spool->stream_fd, -1);
	pthread_mutex_unlock(&notify_lock);
	for (unsigned i = 0; i < spool->nshards; i++)
		drain(&spool->shards[i]);
}

unsigned
spool_stream_take(struct spool *spool, unsigned shard, struct spool_stream_copy **out, unsigned max)
{
	uint64_t gen = atomic_load_explicit(&spool->stream_gen, memory_order_acquire);
	struct rte_ring *r;
	unsigned n = 0, got;

	if (shard >= spool->nshards || (r = spool->shards[shard].stream) == NULL)
		return 0;
	if (max > TAKE_BURST)
		max = TAKE_BURST;
	do {
		void *p[TAKE_BURST];

		got = rte_ring_sc_dequeue_burst(r, p, max - n, NULL);
		for (unsigned i = 0; i < got; i++) {
			struct spool_stream_copy *c = p[i];

			atomic_fetch_sub_explicit(&spool->stream_bytes, c->bytes,
			                          memory_order_relaxed);
			if (c->gen != gen) {
				free(c); /* pushed for a consumer gone since: on disk */
				continue;
			}
			c->bytes = 0;
			out[n++] = c;
		}
	} while (got > 0 && n < max);
	return n;
}

void
spool_stream_free(struct spool_stream_copy *c)
{
	free(c);
}

uint64_t
spool_stream_fresh_from(const struct spool *spool, unsigned shard)
{
	struct spool_shard *sh = &((struct spool *)spool)->shards[shard];

	return atomic_load_explicit(&sh->fresh_from, memory_order_seq_cst);
}
