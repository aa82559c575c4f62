/*
 * spool_scan.c: read-only listing of a spool for pigeonctl.
 *
 * Each shard is opened with rocksdb_open_for_read_only(), which replays the
 * WAL the way a restarted writer would, so the scan sees exactly the messages
 * a restart would recover, also after the writer was killed.  What it
 * promises: it writes nothing the writer reads back (RocksDB may add an info
 * LOG file), checks every shard's meta record, and reports, rather than skips,
 * a message record without its body, a body without its message record, and
 * any record that does not decode.
 *
 * A format-2 shard keeps the bodies in its segment log: a copy's body is its
 * 'B' value when it has one, else the log record its 'L' names.  Its index
 * is written unsynced, so after a crash the log may hold records past the
 * index's checkpoint that RocksDB lost: the scan reads the log from that
 * checkpoint (without writing anything, seglog_scan()) and lists each such
 * record whose message record is missing, as the next start would re-index
 * it; listings stay in queue-id order within a shard.
 */
#include "spool/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool_db.h"
#include "spool/spool_record.h"

/* A record the log holds past the checkpoint that the shard's index lacks. */
struct unindexed {
	char qid[SMTP_QUEUE_ID_MAX];
	struct seglog_loc loc;
};

struct scan {
	const char *dir;
	const char *queue_id; /* NULL: every message */
	spool_scan_fn fn;
	void *arg;
	char *err;
	size_t errlen;
	rocksdb_options_t *options;
	rocksdb_readoptions_t *read_options;
	/* The shard being read. */
	rocksdb_t *db;
	const char *path;
	unsigned format;
	char log_dir[SPOOL_PATH_MAX];
	struct unindexed *un; /* format 2: sorted by queue id */
	size_t nun, uncap, unext;
	int rc; /* of the log scan's callback */
};

/* Calls fn for one message copy. */
static int
emit_copy(struct scan *s, unsigned shard, const char *qid, const struct spool_msg_record *rec,
          const uint8_t *data, size_t size)
{
	struct spool_entry e = {
	    .shard = shard,
	    .queue_id = qid,
	    .mail_from = rec->mail_from,
	    .rcpts = rec->rcpts,
	    .nrcpt = rec->nrcpt,
	    .data = data,
	    .size = size,
	    .arrival_us = rec->arrival_us,
	    .client_addr = rec->client_addr,
	    .helo = rec->helo,
	};

	return s->fn(&e, s->arg);
}

/*
 * One copy given its message record and either its 'B' value (bval) or,
 * format 2, its 'L' value (lval): the body then comes from the log.
 */
static int
emit(struct scan *s, unsigned shard, const char *path, const struct spool_key *key,
     const char *mval, size_t mlen, const char *bval, size_t blen, const char *lval, size_t llen)
{
	struct spool_msg_record *rec;
	struct seglog_message m = {.rec = NULL};
	struct seglog_loc loc;
	uint8_t *logrec = NULL;
	const uint8_t *data = NULL;
	size_t size = 0;
	int rc = PA_OK;

	if (spool_record_msg_decode((const uint8_t *)mval, mlen, &rec) != PA_OK) {
		snprintf(s->err, s->errlen, "%s: message record of %s does not decode", path,
		         key->queue_id);
		return PA_ERROR;
	}
	if (bval != NULL) {
		if (spool_record_body_decode((const uint8_t *)bval, blen, &data, &size) != PA_OK)
			size = SIZE_MAX;
	} else if (spool_db_location(path, key->queue_id, (const uint8_t *)lval, llen, &loc, s->err,
	                             s->errlen) != PA_OK ||
	           spool_db_log_read(s->log_dir, key->queue_id, &loc, &logrec, &m, s->err,
	                             s->errlen) != PA_OK) {
		rc = PA_ERROR;
	} else {
		data = m.data;
		size = m.size;
	}
	if (rc == PA_OK && size != rec->size) {
		snprintf(s->err, s->errlen, "%s: body of %s does not decode or has the wrong size",
		         path, key->queue_id);
		rc = PA_ERROR;
	}
	if (rc == PA_OK)
		rc = emit_copy(s, shard, key->queue_id, rec, data, size);
	free(m.rec);
	free(logrec);
	free(rec);
	return rc;
}

/* A copy only the log knows about (format 2, past the checkpoint): all of it from its record. */
static int
emit_unindexed(struct scan *s, unsigned shard, const struct unindexed *u)
{
	struct seglog_message m;
	uint8_t *logrec;
	int rc;

	if (spool_db_log_read(s->log_dir, u->qid, &u->loc, &logrec, &m, s->err, s->errlen) != PA_OK)
		return PA_ERROR;
	rc = emit_copy(s, shard, u->qid, m.rec, m.data, m.size);
	free(m.rec);
	free(logrec);
	return rc;
}

/* The queue id of an iterator's key if it still has the given type, else NULL. */
static const struct spool_key *
iter_key(rocksdb_iterator_t *it, enum spool_key_type type, struct spool_key *key, bool *bad)
{
	const char *k;
	size_t klen;

	*bad = false;
	if (!rocksdb_iter_valid(it))
		return NULL;
	k = rocksdb_iter_key(it, &klen);
	if (klen < SPOOL_KEY_PREFIX_LEN || (uint8_t)k[0] != type ||
	    (uint8_t)k[1] != SPOOL_KEY_VERSION)
		return NULL;
	if (spool_key_decode((const uint8_t *)k, klen, key) != PA_OK) {
		*bad = true;
		return NULL;
	}
	return key;
}

static int
qid_cmp(const struct spool_key *a, const struct spool_key *b)
{
	size_t n = a->queue_id_len < b->queue_id_len ? a->queue_id_len : b->queue_id_len;
	int c = memcmp(a->queue_id, b->queue_id, n);

	if (c != 0)
		return c;
	return (a->queue_id_len > b->queue_id_len) - (a->queue_id_len < b->queue_id_len);
}

static int
iter_error(rocksdb_iterator_t *it, struct scan *s, const char *path)
{
	char *rerr = NULL;

	rocksdb_iter_get_error(it, &rerr);
	if (rerr == NULL)
		return PA_OK;
	snprintf(s->err, s->errlen, "rocksdb_iter(%s): %s", path, rerr);
	rocksdb_free(rerr);
	return PA_ERROR;
}

static rocksdb_pinnableslice_t *
get_pinned(struct scan *s, rocksdb_t *db, const char *path, const uint8_t *key, size_t klen,
           bool *failed)
{
	char *rerr = NULL;
	rocksdb_pinnableslice_t *v =
	    rocksdb_get_pinned(db, s->read_options, (const char *)key, klen, &rerr);

	*failed = rerr != NULL;
	if (rerr != NULL) {
		snprintf(s->err, s->errlen, "rocksdb_get(%s): %s", path, rerr);
		rocksdb_free(rerr);
	}
	return v;
}

/* seglog_scan()'s callback: notes a record whose copy has no message record in RocksDB. */
static int
note_unindexed(const struct seglog_loc *loc, const uint8_t *payload, size_t len, void *arg)
{
	struct scan *s = arg;
	struct seglog_message m;
	uint8_t key[SPOOL_KEY_MAX];
	rocksdb_pinnableslice_t *mv;
	bool failed;

	if (seglog_message_decode(payload, len, &m) != PA_OK) {
		snprintf(s->err, s->errlen,
		         "%s: the log record at segment %llu offset %llu does not decode",
		         s->log_dir, (unsigned long long)loc->segment,
		         (unsigned long long)loc->offset);
		s->rc = PA_ERROR;
		return 1;
	}
	free(m.rec);
	if (s->queue_id != NULL && strcmp(m.qid, s->queue_id) != 0)
		return 0;
	mv = get_pinned(s, s->db, s->path, key, spool_key_message(key, m.qid, strlen(m.qid)),
	                &failed);
	rocksdb_pinnableslice_destroy(mv);
	if (failed) {
		s->rc = PA_ERROR;
		return 1;
	}
	if (mv != NULL)
		return 0; /* indexed */
	if (s->nun == s->uncap) {
		size_t cap = s->uncap > 0 ? 2 * s->uncap : 64;
		struct unindexed *un = realloc(s->un, cap * sizeof(*un));

		if (un == NULL) {
			snprintf(s->err, s->errlen, "%s: out of memory", s->log_dir);
			s->rc = PA_ERROR;
			return 1;
		}
		s->un = un;
		s->uncap = cap;
	}
	memcpy(s->un[s->nun].qid, m.qid, sizeof(m.qid));
	s->un[s->nun++].loc = *loc;
	return 0;
}

/* Queue id order (as their keys sort), then log order. */
static int
unindexed_cmp(const void *a, const void *b)
{
	const struct unindexed *x = a, *y = b;
	int c = strcmp(x->qid, y->qid);

	return c != 0 ? c : (x->loc.seq > y->loc.seq) - (x->loc.seq < y->loc.seq);
}

/*
 * Format 2: the records past the checkpoint that the index lacks, sorted.
 * Of two records of one queue id (never written so) the later is kept, as
 * recovery's later write would win.
 */
static int
collect_unindexed(struct scan *s, unsigned shard, unsigned shards)
{
	struct seglog_config cfg = {s->log_dir, 0, shards, shard};
	struct seglog_pos from;
	bool found;
	size_t n = 0;

	s->nun = s->unext = 0;
	s->rc = PA_OK;
	if (spool_db_log_path(s->log_dir, sizeof(s->log_dir), s->path) != PA_OK) {
		snprintf(s->err, s->errlen, "%s: log directory name too long", s->path);
		return PA_ERROR;
	}
	if (spool_db_read_checkpoint(s->db, s->path, &from, &found, s->err, s->errlen) != PA_OK)
		return PA_ERROR;
	if (seglog_scan(&cfg, found ? &from : NULL, note_unindexed, s, s->err, s->errlen) !=
	        PA_OK ||
	    s->rc != PA_OK)
		return PA_ERROR;
	if (s->nun > 1)
		qsort(s->un, s->nun, sizeof(*s->un), unindexed_cmp);
	for (size_t i = 0; i < s->nun; i++) {
		if (n > 0 && strcmp(s->un[n - 1].qid, s->un[i].qid) == 0)
			n--;
		s->un[n++] = s->un[i];
	}
	s->nun = n;
	return PA_OK;
}

/* Emits the unindexed copies that sort before queue id `before` (NULL: all that are left). */
static int
flush_unindexed(struct scan *s, unsigned shard, const char *before)
{
	int rc = PA_OK;

	while (rc == PA_OK && s->unext < s->nun &&
	       (before == NULL || strcmp(s->un[s->unext].qid, before) < 0))
		rc = emit_unindexed(s, shard, &s->un[s->unext++]);
	return rc;
}

/*
 * Format 2: a copy without 'B' reads its body from the log record its 'L'
 * names; PA_OK with *missing when it has neither.
 */
static int
emit_located(struct scan *s, unsigned shard, const char *path, const struct spool_key *key,
             const char *mval, size_t mlen, bool *missing)
{
	uint8_t lkey[SPOOL_KEY_MAX];
	rocksdb_pinnableslice_t *lv;
	const char *lval;
	size_t llen;
	bool failed;
	int rc;

	*missing = false;
	lv = get_pinned(s, s->db, path, lkey,
	                spool_key_location(lkey, key->queue_id, key->queue_id_len), &failed);
	if (failed)
		return PA_ERROR;
	if (lv == NULL) {
		*missing = true;
		return PA_OK;
	}
	lval = rocksdb_pinnableslice_value(lv, &llen);
	rc = emit(s, shard, path, key, mval, mlen, NULL, 0, lval, llen);
	rocksdb_pinnableslice_destroy(lv);
	return rc;
}

/*
 * Message and body keys sort by queue id in the same way, so one iterator over
 * each, advanced in step, pairs them up and finds any one without the other
 * (format 2: a message without a body takes it from the log instead).
 */
static int
scan_all(struct scan *s, rocksdb_t *db, unsigned shard, const char *path)
{
	rocksdb_iterator_t *mit = rocksdb_create_iterator(db, s->read_options);
	rocksdb_iterator_t *bit = rocksdb_create_iterator(db, s->read_options);
	uint8_t prefix[SPOOL_KEY_MAX];
	int rc = PA_OK;

	rocksdb_iter_seek(mit, (const char *)prefix, spool_key_prefix(prefix, SPOOL_KEY_MESSAGE));
	rocksdb_iter_seek(bit, (const char *)prefix, spool_key_prefix(prefix, SPOOL_KEY_BODY));
	while (rc == PA_OK) {
		struct spool_key mk, bk;
		bool mbad, bbad, missing = false;
		const struct spool_key *m = iter_key(mit, SPOOL_KEY_MESSAGE, &mk, &mbad);
		const struct spool_key *b = iter_key(bit, SPOOL_KEY_BODY, &bk, &bbad);
		const char *mval, *bval;
		size_t mlen, blen;
		int cmp;

		if (mbad || bbad) {
			snprintf(s->err, s->errlen, "%s: a %s key does not decode", path,
			         mbad ? "message" : "body");
			rc = PA_ERROR;
			break;
		}
		rc = flush_unindexed(s, shard, m != NULL ? m->queue_id : NULL);
		if (rc != PA_OK || (m == NULL && b == NULL))
			break;
		cmp = m == NULL ? 1 : b == NULL ? -1 : qid_cmp(m, b);
		mval = m != NULL ? rocksdb_iter_value(mit, &mlen) : NULL;
		if (cmp < 0 && s->format == SPOOL_FORMAT_LOG) {
			rc = emit_located(s, shard, path, m, mval, mlen, &missing);
			rocksdb_iter_next(mit);
			if (rc == PA_OK && !missing)
				continue;
		}
		if (rc == PA_OK && cmp != 0) {
			snprintf(s->err, s->errlen, "%s: %s %s has no %s", path,
			         cmp < 0 ? "message" : "body", cmp < 0 ? mk.queue_id : bk.queue_id,
			         cmp < 0 ? "body" : "message record");
			rc = PA_ERROR;
		}
		if (rc != PA_OK)
			break;
		bval = rocksdb_iter_value(bit, &blen);
		rc = emit(s, shard, path, m, mval, mlen, bval, blen, NULL, 0);
		rocksdb_iter_next(mit);
		rocksdb_iter_next(bit);
	}
	if (rc == PA_OK)
		rc = iter_error(mit, s, path);
	if (rc == PA_OK)
		rc = iter_error(bit, s, path);
	rocksdb_iter_destroy(mit);
	rocksdb_iter_destroy(bit);
	return rc;
}

static int
scan_one(struct scan *s, rocksdb_t *db, unsigned shard, const char *path)
{
	size_t qlen = strlen(s->queue_id);
	uint8_t key[SPOOL_KEY_MAX];
	struct spool_key k;
	rocksdb_pinnableslice_t *mv, *bv = NULL;
	bool failed, missing = false;
	const char *mval = NULL, *bval;
	size_t mlen = 0, blen;
	int rc = PA_OK;

	size_t klen = spool_key_message(key, s->queue_id, qlen);

	/* scan_run() checked the queue id, so the key decodes. */
	if (spool_key_decode(key, klen, &k) != PA_OK)
		return PA_ERROR;
	mv = get_pinned(s, db, path, key, klen, &failed);
	if (!failed)
		bv = get_pinned(s, db, path, key, spool_key_body(key, s->queue_id, qlen), &failed);
	if (mv != NULL)
		mval = rocksdb_pinnableslice_value(mv, &mlen);
	if (failed)
		rc = PA_ERROR;
	else if (mv == NULL && bv == NULL)
		rc = flush_unindexed(s, shard, NULL); /* format 2: a copy only the log has */
	else if (mv != NULL && bv == NULL && s->format == SPOOL_FORMAT_LOG)
		rc = emit_located(s, shard, path, &k, mval, mlen, &missing);
	else
		missing = mv == NULL || bv == NULL;
	if (rc == PA_OK && missing) {
		snprintf(s->err, s->errlen, "%s: %s %s has no %s", path,
		         mv != NULL ? "message" : "body", s->queue_id,
		         mv != NULL ? "body" : "message record");
		rc = PA_ERROR;
	} else if (rc == PA_OK && mv != NULL && bv != NULL) {
		bval = rocksdb_pinnableslice_value(bv, &blen);
		rc = emit(s, shard, path, &k, mval, mlen, bval, blen, NULL, 0);
	}
	rocksdb_pinnableslice_destroy(mv);
	rocksdb_pinnableslice_destroy(bv);
	return rc;
}

/* Opens one shard and checks its meta record; visits its messages only when visit is set. */
static int
scan_shard(struct scan *s, unsigned shard, unsigned *shards, bool visit)
{
	char path[SPOOL_PATH_MAX];
	rocksdb_t *db;
	struct spool_meta meta;
	bool found;
	int rc;

	if (spool_db_path(path, sizeof(path), s->dir, shard) != PA_OK) {
		snprintf(s->err, s->errlen, "spool_scan: directory name too long: %s", s->dir);
		return PA_ERROR;
	}
	db = spool_db_open(s->options, path, true, s->err, s->errlen);
	if (db == NULL)
		return PA_ERROR;
	rc = spool_db_read_meta(db, path, &meta, &found, s->err, s->errlen);
	if (rc == PA_OK && !found) {
		snprintf(s->err, s->errlen, "%s: no spool meta record; not a spool shard", path);
		rc = PA_ERROR;
	}
	/* Shard 0 tells how many shards there are; the others must agree. */
	if (rc == PA_OK && shard == 0)
		*shards = meta.shards;
	if (rc == PA_OK)
		rc = spool_db_check_meta(&meta, path, *shards, shard, s->err, s->errlen);
	s->db = db;
	s->path = path;
	s->format = rc == PA_OK ? meta.format : 0;
	s->nun = s->unext = 0;
	if (rc == PA_OK && visit && s->format == SPOOL_FORMAT_LOG)
		rc = collect_unindexed(s, shard, *shards);
	if (rc == PA_OK && visit)
		rc = s->queue_id == NULL ? scan_all(s, db, shard, path)
		                         : scan_one(s, db, shard, path);
	rocksdb_close(db);
	return rc;
}

static int
scan_run(struct scan *s, int only)
{
	unsigned shards = 0;
	int rc;

	if (s->queue_id != NULL && !spool_queue_id_valid(s->queue_id, strlen(s->queue_id))) {
		snprintf(s->err, s->errlen, "not a valid queue id: %s", s->queue_id);
		return PA_ERROR;
	}
	s->options = spool_db_options(false);
	s->read_options = rocksdb_readoptions_create();
	/* A listing reads everything once; it should not evict anything from a cache. */
	rocksdb_readoptions_set_fill_cache(s->read_options, 0);
	rc = scan_shard(s, 0, &shards, only <= 0);
	if (only >= 0 && rc == PA_OK && (unsigned)only >= shards) {
		snprintf(s->err, s->errlen, "%s: spool has %u shards, no shard %d", s->dir, shards,
		         only);
		rc = PA_ERROR;
	}
	for (unsigned i = 1; i < shards && rc == PA_OK; i++)
		if (only < 0 || (unsigned)only == i)
			rc = scan_shard(s, i, &shards, true);
	rocksdb_readoptions_destroy(s->read_options);
	rocksdb_options_destroy(s->options);
	free(s->un);
	return rc;
}

int
spool_scan(const char *dir, spool_scan_fn fn, void *arg, char *err, size_t errlen)
{
	struct scan s = {.dir = dir, .fn = fn, .arg = arg, .err = err, .errlen = errlen};

	return scan_run(&s, -1);
}

int
spool_scan_id(const char *dir, const char *queue_id, int shard, spool_scan_fn fn, void *arg,
              char *err, size_t errlen)
{
	struct scan s = {
	    .dir = dir, .queue_id = queue_id, .fn = fn, .arg = arg, .err = err, .errlen = errlen};

	return scan_run(&s, shard);
}
