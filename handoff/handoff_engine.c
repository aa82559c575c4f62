/*
 * handoff_engine.c: the hand-off engine's thread, start/stop, reload and
 * backpressure (handoff.h).
 *
 * One thread: an epoll loop over the connections (handoff_conn.c) and an
 * eventfd for reloads, stop and the spool's commit stream; each turn it
 * takes the copies the committers streamed (in memory), and every
 * HO_SCAN_INTERVAL_US, and when a full destination has room again, it
 * looks for due copies on disk (handoff_queue.c).
 * It hands outcomes to a thread of their own (handoff_writer.c), which
 * writes them and syncs them within HO_WAL_SYNC_US.  What it promises: the
 * route map changes only between two steps of the loop, as a whole; stop
 * leaves every copy that was not acknowledged queued on disk, and every
 * outcome synced; the backpressure flags never lag the spool by more than
 * HO_BACKPRESSURE_US plus one scan.
 */
#include "handoff/handoff_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "spool/spool_internal.h"

#define EVENTS_MAX 64

void
ho_wake(struct handoff *h)
{
	uint64_t one = 1;

	if (write(h->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		pa_log_err("hand-off: write(eventfd): %s", strerror(errno));
}

/*
 * Queued bytes per shard from what the committers wrote and the engine
 * removed.  Every flag is in force before the figures are published and the
 * lines logged: once either says a shard (or the spool) is full, its new
 * recipients already get 452 (new connections 421), and a test or an
 * operator acting on them sees what they say.
 */
static void
update_pressure(struct handoff *h)
{
	/* spool_open() refuses more shards than SPOOL_MAX_SHARDS */
	uint64_t queued[SPOOL_MAX_SHARDS], pinned[SPOOL_MAX_SHARDS];
	bool was[SPOOL_MAX_SHARDS];
	struct statvfs vfs;
	bool disk_full = false;

	if (statvfs(h->cfg.spool_dir, &vfs) != -1) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
		uint64_t floor = h->cfg.min_free_bytes;

		if (floor == 0 && h->cfg.min_free_percent > 0)
			floor = total / 100 * h->cfg.min_free_percent;
		disk_full = avail < floor;
	}
	for (unsigned s = 0; s < h->nshards; s++) {
		uint64_t committed =
		    atomic_load_explicit(&h->spool->shards[s].bytes, memory_order_relaxed);
		uint64_t in =
		    h->base_bytes[s] + (committed - h->base_committed[s]) + h->added_bytes[s];
		uint64_t q = in > h->removed_bytes[s] ? in - h->removed_bytes[s] : 0;
		struct spool_log_usage u;
		bool full;

		/* Format 2: a closed segment's disk stays while one copy in it is queued. */
		spool_shard_log_usage(h->spool, s, &u);
		pinned[s] = u.log ? u.closed_bytes : 0;
		full = disk_full || (h->cfg.high_water > 0 &&
		                     (q >= h->cfg.high_water || pinned[s] >= h->cfg.high_water));

		was[s] = spool_set_backpressure(h->spool, s, full);
		queued[s] = q;
	}
	for (unsigned s = 0; s < h->nshards; s++) {
		/* The engine is the flags' only writer: this reads back what it stored above. */
		bool full = spool_shard_full(h->spool, s);

		atomic_store_explicit(&h->queued_bytes[s], queued[s], memory_order_release);
		if (full != was[s])
			pa_log_notice("hand-off: shard %u %s (queued %llu bytes, %llu in closed "
			              "segments%s)",
			              s, full ? "full: new mail gets 452 4.3.1" : "accepting again",
			              (unsigned long long)queued[s], (unsigned long long)pinned[s],
			              disk_full ? ", disk below spool.min_free" : "");
	}
}

_Static_assert(HANDOFF_DEST_MAX == ROUTE_KEY_MAX, "a destination's text fits");

/*
 * Publishes the destinations' state for handoff_dest_states(): the list of
 * destinations is the engine thread's alone, so other threads get a copy
 * made here, never a pointer into it.
 */
static void
publish_dests(struct handoff *h, uint64_t now)
{
	struct handoff_dest_state *view, *old;
	size_t n = 0, i = 0;

	for (struct ho_dest *d = h->dests; d != NULL; d = d->next)
		n++;
	view = n != 0 ? calloc(n, sizeof(*view)) : NULL;
	if (n != 0 && view == NULL)
		return; /* out of memory: the previous view stays */
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next, i++) {
		snprintf(view[i].dest, sizeof(view[i].dest), "%s", d->rd.key);
		view[i].connections = d->nconns;
		view[i].concurrency = ho_window(h, d);
		view[i].jobs = d->nqueued;
		view[i].failures = d->failures;
		view[i].breaker_open_s =
		    d->open_until_us > now ? (d->open_until_us - now + 999999u) / 1000000u : 0;
		view[i].delivered = d->delivered;
		view[i].deferred = d->deferred;
		view[i].failed = d->failed;
	}
	pthread_mutex_lock(&h->lock);
	old = h->dest_view;
	h->dest_view = view;
	h->ndest_view = n;
	pthread_mutex_unlock(&h->lock);
	free(old);
}

int
handoff_dest_states(struct handoff *h, struct handoff_dest_state **out, size_t *n)
{
	int rc = PA_OK;

	*out = NULL;
	pthread_mutex_lock(&h->lock);
	*n = h->ndest_view;
	if (*n != 0) {
		*out = malloc(*n * sizeof(**out));
		if (*out != NULL)
			memcpy(*out, h->dest_view, *n * sizeof(**out));
		else
			rc = PA_ERROR;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* Takes a parked reload: new map and settings, then everything is looked at again. */
static bool
take_reload(struct handoff *h)
{
	bool took = false;

	pthread_mutex_lock(&h->lock);
	if (h->pending) {
		route_map_free(h->map);
		h->map = h->pending_map;
		h->cfg = h->pending_cfg;
		h->pending_map = NULL;
		h->pending = false;
		h->warned_unrouted = false;
		took = true;
	}
	pthread_mutex_unlock(&h->lock);
	return took;
}

static void *
engine_main(void *arg)
{
	struct handoff *h = arg;
	struct epoll_event ev[EVENTS_MAX];
	/* Its lines (two a message) go to the log thread, not one write(2) each. */
	bool attached = pa_log_attach_thread() == PA_OK;

	while (!atomic_load(&h->stop)) {
		int n = epoll_wait(h->epfd, ev, EVENTS_MAX, (int)(HO_SCAN_INTERVAL_US / 1000));
		uint64_t now = pa_wall_clock_us();
		bool all;

		if (n == -1 && errno != EINTR) {
			pa_log_err("hand-off: epoll_wait: %s", strerror(errno));
			usleep(HO_SCAN_INTERVAL_US);
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == NULL) {
				uint64_t v;

				if (read(h->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
					pa_log_err("hand-off: read(eventfd): %s", strerror(errno));
				continue;
			}
			ho_conn_event(h, ev[i].data.ptr, ev[i].events, now);
		}
		ho_flush(h);
		ho_settle(h);
		ho_release_bodies(h, now);
		if (take_reload(h))
			atomic_store(&h->rescan_all, true);
		all = atomic_exchange(&h->rescan_all, false);
		/* Copies committed since the last turn, in memory: planned at once. */
		if (route_map_routes_anything(h->map))
			ho_stream(h, now);
		else
			ho_stream_drop(h);
		if ((all || h->refill || now >= h->next_scan_us) &&
		    route_map_routes_anything(h->map)) {
			h->refill = false;
			/* An "everything" scan cut short by the limits goes on next turn. */
			if (!ho_scan(h, now, all) && all)
				atomic_store(&h->rescan_all, true);
			h->next_scan_us = now + HO_SCAN_INTERVAL_US;
		}
		ho_flush(h);
		ho_apply_ops(h, now);
		/*
		 * After the operations queued before the drain: a hold that was
		 * applied just before the flag was seen is released here.
		 */
		if (!h->drain_swept && atomic_load(&h->draining)) {
			ho_release_held(h, now);
			h->drain_swept = true;
			atomic_store(&h->rescan_all, true);
		}
		/* Outcomes written at once by the flush above: their connections' next bodies go.
		 */
		ho_release_bodies(h, now);
		ho_dispatch(h, now);
		ho_timeouts(h, now);
		if (now >= h->next_pressure_us) {
			update_pressure(h);
			publish_dests(h, now);
			h->next_pressure_us = now + HO_BACKPRESSURE_US;
		}
	}
	ho_conn_close_all(h);
	ho_flush(h);
	ho_drop_all(h);
	if (attached)
		pa_log_detach_thread();
	return NULL;
}

static void
handoff_free(struct handoff *h)
{
	if (h == NULL)
		return;
	if (h->epfd != -1)
		close(h->epfd);
	if (h->wake_fd != -1)
		close(h->wake_fd);
	ho_dest_free_all(h);
	route_map_free(h->map);
	route_map_free(h->pending_map);
	ho_ops_free(h->ops);
	free(h->dest_view);
	pthread_mutex_destroy(&h->lock);
	free(h->queued_bytes);
	free(h->held);
	free(h->base_bytes);
	free(h->base_committed);
	free(h->removed_bytes);
	free(h->added_bytes);
	free(h->cursor_us);
	free(h->back_us);
	free(h->unsynced);
	free(h->dirty);
	free(h->wbusy);
	free(h->handed_gen);
	free(h->written_gen);
	for (unsigned s = 0; h->batch != NULL && s < h->nshards; s++)
		if (h->batch[s] != NULL)
			rocksdb_writebatch_destroy(h->batch[s]);
	for (unsigned s = 0; h->wbatch != NULL && s < h->nshards; s++)
		if (h->wbatch[s] != NULL)
			rocksdb_writebatch_destroy(h->wbatch[s]);
	free(h->batch);
	free(h->wbatch);
	pthread_mutex_destroy(&h->wlock);
	pthread_cond_destroy(&h->wcond);
	pthread_cond_destroy(&h->scond);
	free(h);
}

static int
alloc_shards(struct handoff *h, unsigned n)
{
	h->nshards = n;
	h->queued_bytes = calloc(n, sizeof(*h->queued_bytes));
	h->held = calloc(n, sizeof(*h->held));
	h->base_bytes = calloc(n, sizeof(*h->base_bytes));
	h->base_committed = calloc(n, sizeof(*h->base_committed));
	h->removed_bytes = calloc(n, sizeof(*h->removed_bytes));
	h->added_bytes = calloc(n, sizeof(*h->added_bytes));
	h->batch = calloc(n, sizeof(*h->batch));
	h->cursor_us = calloc(n, sizeof(*h->cursor_us));
	h->back_us = calloc(n, sizeof(*h->back_us));
	h->unsynced = calloc(n, sizeof(*h->unsynced));
	h->dirty = calloc(n, sizeof(*h->dirty));
	h->wbusy = calloc(n, sizeof(*h->wbusy));
	h->handed_gen = calloc(n, sizeof(*h->handed_gen));
	h->written_gen = calloc(n, sizeof(*h->written_gen));
	h->wbatch = calloc(n, sizeof(*h->wbatch));
	for (unsigned s = 0; h->wbatch != NULL && s < n; s++)
		h->wbatch[s] = rocksdb_writebatch_create();
	for (unsigned s = 0; h->batch != NULL && s < n; s++)
		h->batch[s] = rocksdb_writebatch_create();
	return h->batch != NULL && h->queued_bytes && h->held && h->base_bytes &&
	               h->base_committed && h->removed_bytes && h->added_bytes && h->cursor_us &&
	               h->back_us
	           ? PA_OK
	           : PA_ERROR;
}

/* The route map of cfg, with its store route (relay.store_route) attached. */
static int
load_map(const struct handoff_config *cfg, unsigned shards, struct route_map **out, char *err,
         size_t errlen)
{
	struct route_map *map;

	if (cfg->max_rcpts > HANDOFF_MAX_RCPTS) {
		snprintf(err, errlen, "relay.max_recipients: %u is above %d", cfg->max_rcpts,
		         HANDOFF_MAX_RCPTS);
		return PA_ERROR;
	}
	if (route_map_load(cfg->routes, shards, cfg->default_dest, &map, err, errlen) != PA_OK)
		return PA_ERROR;
	if (route_map_set_store_route(map, cfg->store_route, err, errlen) != PA_OK) {
		route_map_free(map);
		return PA_ERROR;
	}
	*out = map;
	return PA_OK;
}

int
handoff_start(struct handoff **out, struct spool *sp, const struct handoff_config *cfg, char *err,
              size_t errlen)
{
	struct handoff *h = calloc(1, sizeof(*h));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int rc;

	if (h == NULL) {
		snprintf(err, errlen, "hand-off: out of memory");
		return PA_ERROR;
	}
	h->epfd = h->wake_fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->wlock, NULL);
	pthread_cond_init(&h->wcond, NULL);
	pthread_cond_init(&h->scond, NULL);
	TAILQ_INIT(&h->settling);
	h->spool = sp;
	h->cfg = *cfg;
	if (alloc_shards(h, sp->nshards) != PA_OK) {
		snprintf(err, errlen, "hand-off: out of memory");
		handoff_free(h);
		return PA_ERROR;
	}
	if (load_map(cfg, sp->nshards, &h->map, err, errlen) != PA_OK) {
		handoff_free(h);
		return PA_ERROR;
	}
	queue_id_gen_init(&h->qids, cfg->node_id, HANDOFF_WORKER_ID);
	for (unsigned s = 0; s < sp->nshards; s++) {
		uint64_t copies;

		h->base_committed[s] = atomic_load(&sp->shards[s].bytes);
		if (hs_shard_usage(sp, s, &h->base_bytes[s], &copies, err, errlen) != PA_OK) {
			handoff_free(h);
			return PA_ERROR;
		}
	}
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->epfd == -1 || h->wake_fd == -1 ||
	    epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wake_fd, &ev) == -1) {
		snprintf(err, errlen, "hand-off: epoll/eventfd: %s", strerror(errno));
		handoff_free(h);
		return PA_ERROR;
	}
	update_pressure(h);
	if (!route_map_routes_anything(h->map))
		pa_log_warning(
		    "hand-off: neither relay.routes nor relay.default is set: mail stays "
		    "queued (held) until a route map is loaded");
	if (ho_writer_start(h, err, errlen) != PA_OK) {
		handoff_free(h);
		return PA_ERROR;
	}
	/* Copies committed from now on come in memory (spool.h); the scan reads the rest. */
	h->stream_attached = spool_stream_attach(sp, h->wake_fd) == PA_OK;
	if (!h->stream_attached)
		pa_log_warning("hand-off: the commit stream has another consumer: every copy is "
		               "read from disk");
	rc = pthread_create(&h->thread, NULL, engine_main, h);
	if (rc != 0) {
		if (h->stream_attached)
			spool_stream_detach(sp);
		ho_writer_stop(h);
		snprintf(err, errlen, "pthread_create(hand-off): %s", strerror(rc));
		handoff_free(h);
		return PA_ERROR;
	}
	h->started = true;
	/* Only a name for top and gdb. */
	pthread_setname_np(h->thread, "handoff");

	*out = h;
	return PA_OK;
}

void
handoff_stop(struct handoff *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->stop, true);
	ho_wake(h);
	if (h->started)
		pthread_join(h->thread, NULL);
	/* What the stream still holds is on disk: the next start reads it. */
	if (h->stream_attached)
		spool_stream_detach(h->spool);
	/* Every outcome written and synced before the spool closes. */
	ho_writer_stop(h);
	/* Nothing computes the flags any more: what is queued no longer refuses mail. */
	for (unsigned s = 0; s < h->nshards; s++)
		spool_set_backpressure(h->spool, s, false);
	handoff_free(h);
}

int
handoff_reload(struct handoff *h, const struct handoff_config *cfg, char *err, size_t errlen)
{
	struct route_map *map;

	if (load_map(cfg, h->nshards, &map, err, errlen) != PA_OK)
		return PA_ERROR;
	pthread_mutex_lock(&h->lock);
	route_map_free(h->pending_map);
	h->pending_map = map;
	h->pending_cfg = *cfg;
	h->pending = true;
	pthread_mutex_unlock(&h->lock);
	ho_wake(h);
	return PA_OK;
}

int
handoff_hold_shard(struct handoff *h, int shard, bool hold)
{
	if (shard >= (int)h->nshards || (hold && atomic_load(&h->draining)))
		return PA_ERROR;
	for (unsigned s = 0; s < h->nshards; s++)
		if (shard < 0 || (unsigned)shard == s)
			atomic_store(&h->held[s], hold);
	if (!hold)
		handoff_retry_now(h);
	return PA_OK;
}

void
handoff_drain(struct handoff *h)
{
	atomic_store(&h->draining, true);
	for (unsigned s = 0; s < h->nshards; s++)
		atomic_store(&h->held[s], 0);
	handoff_retry_now(h);
}

bool
handoff_draining(const struct handoff *h)
{
	return h != NULL && atomic_load(&((struct handoff *)h)->draining);
}

bool
handoff_shard_held(const struct handoff *h, unsigned shard)
{
	return h != NULL && shard < h->nshards &&
	       atomic_load_explicit(&h->held[shard], memory_order_relaxed) != 0;
}

bool
handoff_destination(struct handoff *h, unsigned shard, const char *rcpt, char *out, size_t outlen)
{
	const struct route_dest *d;
	struct route_dest scratch;
	bool found;

	/* take_reload() swaps and frees maps under this lock: the map read here stays alive. */
	pthread_mutex_lock(&h->lock);
	d = ho_route(h, h->pending ? h->pending_map : h->map,
	             h->pending ? &h->pending_cfg : &h->cfg, 1, shard, rcpt, &scratch, NULL);
	found = d != NULL;
	if (found)
		snprintf(out, outlen, "%s", d->key);
	pthread_mutex_unlock(&h->lock);
	return found;
}

void
handoff_retry_now(struct handoff *h)
{
	atomic_store(&h->rescan_all, true);
	ho_wake(h);
}

void
handoff_stats(const struct handoff *h, struct handoff_stats *out)
{
	struct handoff *m = (struct handoff *)h; /* atomics are read-only here */

	out->delivered = atomic_load(&m->delivered);
	out->deferred = atomic_load(&m->deferred);
	out->failed = atomic_load(&m->failed);
	out->dsns = atomic_load(&m->dsns);
	out->store_refused = atomic_load(&m->store_refused);
	out->streamed = atomic_load(&m->streamed);
	out->disk_loads = atomic_load(&m->disk_loads);
	out->queued_bytes = 0;
	out->stream_overflow = 0;
	for (unsigned s = 0; s < h->nshards; s++) {
		struct spool_shard_stats st;

		out->queued_bytes += atomic_load(&m->queued_bytes[s]);
		spool_shard_stats(h->spool, s, &st);
		out->stream_overflow += st.stream_overflow;
	}
}

uint64_t
handoff_shard_queued_bytes(const struct handoff *h, unsigned shard)
{
	struct handoff *m = (struct handoff *)h;

	return shard < h->nshards ? atomic_load(&m->queued_bytes[shard]) : 0;
}
