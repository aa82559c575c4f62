/*
 * handoff_store.c: synced reads and writes of copies for the hand-off engine
 * (handoff_store.h).
 */
#include "handoff/handoff_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool_internal.h"

/*
 * The shard's db, held shared until release(): its committer may close and
 * open it again after a failure (spool_health.c); NULL (err set) meanwhile.
 */
static rocksdb_t *
shard_db(struct spool *sp, unsigned shard, char *err, size_t errlen)
{
	return spool_shard_db_acquire(&sp->shards[shard], err, errlen);
}

static void
release(struct spool *sp, unsigned shard)
{
	spool_shard_db_release(&sp->shards[shard]);
}

static int
commit_with(struct spool *sp, unsigned shard, const rocksdb_writeoptions_t *wo,
            rocksdb_writebatch_t *b, const char *what, char *err, size_t errlen)
{
	char *rerr = NULL;
	rocksdb_t *db = shard_db(sp, shard, err, errlen);

	if (db == NULL)
		return PA_ERROR;
	rocksdb_write(db, wo, b, &rerr);
	release(sp, shard);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_write(%s, %s): %s", sp->shards[shard].path, what,
		         rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	return PA_OK;
}

/* Synced: what the caller does next depends on it being on disk. */
static int
commit(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, const char *what, char *err,
       size_t errlen)
{
	return commit_with(sp, shard, sp->write_options, b, what, err, errlen);
}

static int
write_batch(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, const char *what, char *err,
            size_t errlen)
{
	int rc = commit(sp, shard, b, what, err, errlen);

	rocksdb_writebatch_destroy(b);
	return rc;
}

/* The caller's batch (written later by hs_write()), or a batch of our own written now. */
static int
done(struct spool *sp, unsigned shard, rocksdb_writebatch_t *own, const char *what, char *err,
     size_t errlen)
{
	return own == NULL ? PA_OK : write_batch(sp, shard, own, what, err, errlen);
}

int
hs_write(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err, size_t errlen)
{
	int rc =
	    rocksdb_writebatch_count(b) > 0 ? commit(sp, shard, b, "outcomes", err, errlen) : PA_OK;

	rocksdb_writebatch_clear(b);
	return rc;
}

int
hs_write_unsynced(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err,
                  size_t errlen)
{
	rocksdb_writeoptions_t *wo;
	int rc = PA_OK;

	if (rocksdb_writebatch_count(b) == 0)
		return PA_OK;
	/* Written to the WAL file (the kernel's page cache), no fsync: see hs_sync(). */
	wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(wo, 0);
	rc = commit_with(sp, shard, wo, b, "outcomes", err, errlen);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_writebatch_clear(b);
	return rc;
}

int
hs_write_nowait(struct spool *sp, unsigned shard, rocksdb_writebatch_t *b, char *err, size_t errlen)
{
	struct spool_shard *sh = &sp->shards[shard];
	rocksdb_t *db;
	char *rerr = NULL;
	int rc = PA_OK;

	if (rocksdb_writebatch_count(b) == 0)
		return PA_OK;
	if (sh->format != SPOOL_FORMAT_LOG)
		return PA_AGAIN;
	db = shard_db(sp, shard, err, errlen);
	if (db == NULL)
		return PA_ERROR;
	/* sync = 0, no_slowdown = 1: a write RocksDB would delay returns Incomplete at once. */
	rocksdb_write(db, sp->index_options, b, &rerr);
	release(sp, shard);
	if (rerr != NULL) {
		rc = strncmp(rerr, "Result incomplete", 17) == 0 ? PA_AGAIN : PA_ERROR;
		snprintf(err, errlen, "rocksdb_write(%s, outcomes): %s", sh->path, rerr);
		rocksdb_free(rerr);
		return rc;
	}
	rocksdb_writebatch_clear(b);
	return PA_OK;
}

int
hs_sync(struct spool *sp, unsigned shard, char *err, size_t errlen)
{
	/* The spool's service: a format-2 shard's reclamation waits for these syncs. */
	return spool_shard_sync_wal(sp, shard, err, errlen);
}

/* 'S', the version, then the time big-endian: where the entries at or after `us` begin. */
static size_t
sched_prefix(uint8_t out[SPOOL_KEY_MAX], uint64_t us)
{
	size_t n = spool_key_prefix(out, SPOOL_KEY_SCHEDULE);

	for (unsigned i = 0; i < 8; i++)
		out[n + i] = (uint8_t)(us >> (56 - 8 * i));
	return n + 8;
}

int
hs_due(struct spool *sp, unsigned shard, uint64_t until_us, unsigned max, hs_due_fn fn, void *arg,
       char *err, size_t errlen)
{
	return hs_due_from(sp, shard, 0, until_us, max, fn, arg, err, errlen);
}

int
hs_due_from(struct spool *sp, unsigned shard, uint64_t from_us, uint64_t until_us, unsigned max,
            hs_due_fn fn, void *arg, char *err, size_t errlen)
{
	rocksdb_t *db = shard_db(sp, shard, err, errlen);
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	uint8_t from[SPOOL_KEY_MAX], bound[SPOOL_KEY_MAX];
	size_t flen, blen;
	unsigned seen = 0;
	int rc = PA_OK;
	char *rerr = NULL;

	if (db == NULL)
		return PA_ERROR;
	/*
	 * 'S' then the time, big-endian: the entries of [from_us, until_us]
	 * lie between these two prefixes.  The upper bound keeps the iterator
	 * from stepping over the tombstones of later entries after the last
	 * due one; the seek skips those of the entries already passed.
	 */
	flen = sched_prefix(from, from_us);
	if (until_us == UINT64_MAX) {
		blen = spool_key_prefix(bound, SPOOL_KEY_SCHEDULE);
		bound[0]++; /* past every 'S' key */
		blen = 1;
	} else {
		blen = sched_prefix(bound, until_us + 1); /* entries at until_us are due */
	}
	ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)bound, blen);
	it = rocksdb_create_iterator(db, ro);

	rocksdb_iter_seek(it, (const char *)from, flen);
	for (; rocksdb_iter_valid(it) && seen < max; rocksdb_iter_next(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);
		struct spool_key key;

		if (klen < SPOOL_KEY_PREFIX_LEN || (uint8_t)k[0] != SPOOL_KEY_SCHEDULE)
			break;
		if (spool_key_decode((const uint8_t *)k, klen, &key) != PA_OK)
			continue; /* not ours to judge here; pigeonctl reports bad records */
		if (key.next_attempt_us > until_us)
			break;
		seen++;
		rc = fn(shard, key.queue_id, key.next_attempt_us, arg);
		if (rc != 0)
			break;
	}
	rocksdb_iter_get_error(it, &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_iter(%s): %s", sp->shards[shard].path, rerr);
		rocksdb_free(rerr);
		rc = PA_ERROR;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	release(sp, shard);
	return rc;
}

static char *
get(struct spool *sp, unsigned shard, const uint8_t *key, size_t klen, size_t *vlen, int *rc,
    char *err, size_t errlen)
{
	rocksdb_t *db = shard_db(sp, shard, err, errlen);
	rocksdb_readoptions_t *ro;
	char *rerr = NULL;
	char *v;

	if (db == NULL) {
		*rc = PA_ERROR;
		return NULL;
	}
	ro = rocksdb_readoptions_create();
	v = rocksdb_get(db, ro, (const char *)key, klen, vlen, &rerr);
	rocksdb_readoptions_destroy(ro);
	release(sp, shard);
	*rc = PA_OK;
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s): %s", sp->shards[shard].path, rerr);
		rocksdb_free(rerr);
		*rc = PA_ERROR;
	}
	return v;
}

void
hs_copy_free(struct hs_copy *c)
{
	if (c == NULL)
		return;
	free(c->rec);
	spool_body_release(&c->body);
	free(c->d);
	free(c);
}

int
hs_load_meta(struct spool *sp, unsigned shard, const char *qid, uint64_t sched_us,
             struct hs_copy **out, char *err, size_t errlen)
{
	struct hs_copy *c = calloc(1, sizeof(*c));
	uint8_t key[SPOOL_KEY_MAX];
	size_t vlen;
	char *mv;
	int rc;

	if (c == NULL) {
		snprintf(err, errlen, "hs_load: out of memory");
		return PA_ERROR;
	}
	c->shard = shard;
	c->qlen = strlen(qid);
	memcpy(c->qid, qid, c->qlen + 1);
	c->sched_us = sched_us;
	mv = get(sp, shard, key, spool_key_message(key, qid, c->qlen), &vlen, &rc, err, errlen);
	if (mv == NULL) {
		hs_copy_free(c);
		return rc == PA_OK ? PA_AGAIN : PA_ERROR;
	}
	if (spool_record_msg_decode((const uint8_t *)mv, vlen, &c->rec) != PA_OK) {
		snprintf(err, errlen, "%s: message record of %s does not decode",
		         sp->shards[shard].path, qid);
		rocksdb_free(mv);
		hs_copy_free(c);
		return PA_ERROR;
	}
	rocksdb_free(mv);
	c->d = calloc(c->rec->nrcpt, sizeof(*c->d));
	if (c->d == NULL) {
		snprintf(err, errlen, "hs_load: out of memory");
		hs_copy_free(c);
		return PA_ERROR;
	}
	for (size_t i = 0; i < c->rec->nrcpt; i++) {
		char *dv = get(sp, shard, key, spool_key_delivery(key, qid, c->qlen, (uint16_t)i),
		               &vlen, &rc, err, errlen);

		if (dv == NULL ||
		    spool_record_delivery_decode((const uint8_t *)dv, vlen, &c->d[i]) != PA_OK) {
			if (rc == PA_OK)
				snprintf(err, errlen,
				         "%s: delivery record %zu of %s is missing or does not "
				         "decode",
				         sp->shards[shard].path, i, qid);
			rocksdb_free(dv);
			hs_copy_free(c);
			return PA_ERROR;
		}
		rocksdb_free(dv);
	}
	/* Unknown schedule key: by the invariant it is the earliest pending next attempt. */
	if (sched_us == 0) {
		c->sched_us = UINT64_MAX;
		for (size_t i = 0; i < c->rec->nrcpt; i++)
			if (c->d[i].state == SPOOL_DELIVERY_PENDING &&
			    c->d[i].next_attempt_us < c->sched_us)
				c->sched_us = c->d[i].next_attempt_us;
	}
	*out = c;
	return PA_OK;
}

int
hs_from_stream(struct spool_stream_copy *sc, struct hs_copy **out, char *err, size_t errlen)
{
	struct hs_copy *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(err, errlen, "hs_from_stream: out of memory");
		spool_stream_free(sc);
		return PA_ERROR;
	}
	c->shard = sc->shard;
	c->qlen = strlen(sc->queue_id);
	memcpy(c->qid, sc->queue_id, c->qlen + 1);
	c->sched_us = sc->sched_us;
	/* The stream's allocation is the body's: freed with the copy (spool.h). */
	c->body = (struct spool_body){sc->data, sc->size, sc};
	if (spool_record_msg_decode(sc->record, sc->record_len, &c->rec) != PA_OK ||
	    c->rec->size != sc->size) {
		snprintf(err, errlen, "shard %u: streamed message record of %s does not decode",
		         c->shard, c->qid);
		hs_copy_free(c);
		return PA_ERROR;
	}
	c->d = calloc(c->rec->nrcpt, sizeof(*c->d));
	if (c->d == NULL) {
		snprintf(err, errlen, "hs_from_stream: out of memory");
		hs_copy_free(c);
		return PA_ERROR;
	}
	/* What spool_put_pending() wrote for it. */
	for (size_t i = 0; i < c->rec->nrcpt; i++)
		c->d[i] = (struct spool_delivery){.state = SPOOL_DELIVERY_PENDING,
		                                  .next_attempt_us = sc->sched_us};
	c->data = c->body.data;
	c->size = c->body.size;
	*out = c;
	return PA_OK;
}

int
hs_load_body(struct spool *sp, struct hs_copy *c, char *err, size_t errlen)
{
	if (c->body.owner != NULL)
		return PA_OK;
	/* 'B' (format 1, DSN copies) or the log record 'L' names (format 2), checked. */
	if (spool_body_read(sp, c->shard, c->qid, &c->body, err, errlen) != PA_OK)
		return PA_ERROR;
	if (c->body.owner == NULL || c->body.size != c->rec->size) {
		snprintf(err, errlen, "%s: body of %s is missing or not its stored size",
		         sp->shards[c->shard].path, c->qid);
		spool_body_release(&c->body);
		return PA_ERROR;
	}
	c->data = c->body.data;
	c->size = c->body.size;
	return PA_OK;
}

int
hs_load(struct spool *sp, unsigned shard, const char *qid, uint64_t sched_us, struct hs_copy **out,
        char *err, size_t errlen)
{
	int rc = hs_load_meta(sp, shard, qid, sched_us, out, err, errlen);

	if (rc == PA_OK && hs_load_body(sp, *out, err, errlen) != PA_OK) {
		hs_copy_free(*out);
		*out = NULL;
		return PA_ERROR;
	}
	return rc;
}

static void
put_delivery(rocksdb_writebatch_t *b, const struct hs_copy *c, size_t i)
{
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_DELIVERY_MAX];
	struct spool_delivery d = c->d[i];
	long vlen;

	if (d.reply_len > SPOOL_REPLY_MAX) {
		d.reply_len = SPOOL_REPLY_MAX;
		d.reply[SPOOL_REPLY_MAX] = '\0';
	}
	vlen = spool_record_delivery_encode(&d, val);
	if (vlen < 0)
		return; /* cannot happen: state and reply are kept in range by the engine */
	rocksdb_writebatch_put(b, (const char *)key,
	                       spool_key_delivery(key, c->qid, c->qlen, (uint16_t)i),
	                       (const char *)val, (size_t)vlen);
}

int
hs_record(struct spool *sp, const struct hs_copy *c, const size_t *idx, size_t n,
          rocksdb_writebatch_t *into, char *err, size_t errlen)
{
	rocksdb_writebatch_t *own = into == NULL ? rocksdb_writebatch_create() : NULL;

	for (size_t i = 0; i < n; i++)
		put_delivery(into != NULL ? into : own, c, idx[i]);
	return done(sp, c->shard, own, "delivery records", err, errlen);
}

static void
delete_all(rocksdb_writebatch_t *b, const struct hs_copy *c)
{
	uint8_t key[SPOOL_KEY_MAX];

	rocksdb_writebatch_delete(b, (const char *)key, spool_key_message(key, c->qid, c->qlen));
	rocksdb_writebatch_delete(b, (const char *)key, spool_key_body(key, c->qid, c->qlen));
	rocksdb_writebatch_delete(b, (const char *)key, spool_key_location(key, c->qid, c->qlen));
	for (size_t i = 0; i < c->rec->nrcpt; i++)
		rocksdb_writebatch_delete(b, (const char *)key,
		                          spool_key_delivery(key, c->qid, c->qlen, (uint16_t)i));
	rocksdb_writebatch_delete(b, (const char *)key,
	                          spool_key_schedule(key, c->sched_us, c->qid, c->qlen));
}

int
hs_delete(struct spool *sp, const struct hs_copy *c, char *err, size_t errlen)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();

	delete_all(b, c);
	return write_batch(sp, c->shard, b, "delete copy", err, errlen);
}

/* Moves the schedule entry to `when` in batch b. */
static void
move_schedule(rocksdb_writebatch_t *b, struct hs_copy *c, uint64_t when)
{
	uint8_t key[SPOOL_KEY_MAX], one = spool_record_schedule_value();

	if (when == c->sched_us)
		return;
	rocksdb_writebatch_delete(b, (const char *)key,
	                          spool_key_schedule(key, c->sched_us, c->qid, c->qlen));
	rocksdb_writebatch_put(b, (const char *)key, spool_key_schedule(key, when, c->qid, c->qlen),
	                       (const char *)&one, SPOOL_SCHEDULE_SIZE);
}

int
hs_finish(struct spool *sp, struct hs_copy *c, bool *deleted, rocksdb_writebatch_t *into, char *err,
          size_t errlen)
{
	rocksdb_writebatch_t *own = into == NULL ? rocksdb_writebatch_create() : NULL;
	rocksdb_writebatch_t *b = into != NULL ? into : own;
	uint64_t next = UINT64_MAX;
	bool pending = false;
	int rc;

	for (size_t i = 0; i < c->rec->nrcpt; i++)
		if (c->d[i].state == SPOOL_DELIVERY_PENDING) {
			pending = true;
			if (c->d[i].next_attempt_us < next)
				next = c->d[i].next_attempt_us;
		}
	*deleted = !pending;
	if (!pending) {
		delete_all(b, c);
		return done(sp, c->shard, own, "delete copy", err, errlen);
	}
	for (size_t i = 0; i < c->rec->nrcpt; i++)
		put_delivery(b, c, i);
	move_schedule(b, c, next);
	rc = done(sp, c->shard, own, "reschedule", err, errlen);
	if (rc == PA_OK)
		c->sched_us = next;
	return rc;
}

int
hs_reschedule(struct spool *sp, struct hs_copy *c, uint64_t when_us, char *err, size_t errlen)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	int rc;

	for (size_t i = 0; i < c->rec->nrcpt; i++)
		if (c->d[i].state == SPOOL_DELIVERY_PENDING) {
			c->d[i].next_attempt_us = when_us;
			put_delivery(b, c, i);
		}
	move_schedule(b, c, when_us);
	rc = write_batch(sp, c->shard, b, "reschedule", err, errlen);
	if (rc == PA_OK)
		c->sched_us = when_us;
	return rc;
}

int
hs_put(struct spool *sp, unsigned shard, const char *qid, const struct spool_msg_record *rec,
       const uint8_t *data, size_t size, uint64_t now_us, char *err, size_t errlen)
{
	size_t qlen = strlen(qid);
	long mlen = spool_record_msg_size(rec), dlen;
	struct spool_delivery d = {.state = SPOOL_DELIVERY_PENDING, .next_attempt_us = now_us};
	uint8_t key[SPOOL_KEY_MAX], dval[SPOOL_DELIVERY_MAX], *mval,
	    hdr = spool_record_body_header();
	uint8_t one = spool_record_schedule_value();
	const char *bkey[1] = {(const char *)key}, *bval[2];
	size_t bklen[1], bvlen[2];
	rocksdb_writebatch_t *b;

	dlen = spool_record_delivery_encode(&d, dval);
	if (mlen < 0 || dlen < 0 || !spool_queue_id_valid(qid, qlen)) {
		snprintf(err, errlen, "hs_put(%s): record does not fit the spool format", qid);
		return PA_ERROR;
	}
	mval = malloc((size_t)mlen);
	if (mval == NULL) {
		snprintf(err, errlen, "hs_put(%s): out of memory", qid);
		return PA_ERROR;
	}
	spool_record_msg_encode(rec, mval);
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, (const char *)key, spool_key_message(key, qid, qlen),
	                       (const char *)mval, (size_t)mlen);
	bklen[0] = spool_key_body(key, qid, qlen);
	bval[0] = (const char *)&hdr;
	bvlen[0] = SPOOL_BODY_HEADER;
	bval[1] = (const char *)data;
	bvlen[1] = size;
	rocksdb_writebatch_putv(b, 1, bkey, bklen, 2, bval, bvlen);
	for (size_t i = 0; i < rec->nrcpt; i++)
		rocksdb_writebatch_put(b, (const char *)key,
		                       spool_key_delivery(key, qid, qlen, (uint16_t)i),
		                       (const char *)dval, (size_t)dlen);
	rocksdb_writebatch_put(b, (const char *)key, spool_key_schedule(key, now_us, qid, qlen),
	                       (const char *)&one, SPOOL_SCHEDULE_SIZE);
	free(mval);
	return write_batch(sp, shard, b, "queue new copy", err, errlen);
}

int
hs_shard_usage(struct spool *sp, unsigned shard, uint64_t *bytes, uint64_t *copies, char *err,
               size_t errlen)
{
	rocksdb_t *db = shard_db(sp, shard, err, errlen);
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	uint8_t prefix[SPOOL_KEY_MAX];
	char *rerr = NULL;

	if (db == NULL)
		return PA_ERROR;
	ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_fill_cache(ro, 0);
	it = rocksdb_create_iterator(db, ro);
	*bytes = *copies = 0;
	rocksdb_iter_seek(it, (const char *)prefix, spool_key_prefix(prefix, SPOOL_KEY_MESSAGE));
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;
		struct spool_msg_record *rec;

		if (klen < 1 || (uint8_t)k[0] != SPOOL_KEY_MESSAGE)
			break;
		v = rocksdb_iter_value(it, &vlen);
		if (spool_record_msg_decode((const uint8_t *)v, vlen, &rec) != PA_OK)
			continue;
		*bytes += rec->size;
		(*copies)++;
		free(rec);
	}
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	release(sp, shard);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_iter(%s): %s", sp->shards[shard].path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	return PA_OK;
}
