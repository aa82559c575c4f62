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
 */
#include "spool/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool_db.h"
#include "spool/spool_record.h"

struct scan {
	const char *dir;
	const char *queue_id; /* NULL: every message */
	spool_scan_fn fn;
	void *arg;
	char *err;
	size_t errlen;
	rocksdb_options_t *options;
	rocksdb_readoptions_t *read_options;
};

/* Calls fn for one message copy, given its two values. */
static int
emit(struct scan *s, unsigned shard, const char *path, const struct spool_key *key,
     const char *mval, size_t mlen, const char *bval, size_t blen)
{
	struct spool_msg_record *rec;
	struct spool_entry e;
	const uint8_t *data;
	size_t size;
	int rc;

	if (spool_record_msg_decode((const uint8_t *)mval, mlen, &rec) != PA_OK) {
		snprintf(s->err, s->errlen, "%s: message record of %s does not decode", path,
		         key->queue_id);
		return PA_ERROR;
	}
	if (spool_record_body_decode((const uint8_t *)bval, blen, &data, &size) != PA_OK ||
	    size != rec->size) {
		snprintf(s->err, s->errlen, "%s: body of %s does not decode or has the wrong size",
		         path, key->queue_id);
		free(rec);
		return PA_ERROR;
	}
	e = (struct spool_entry){
	    .shard = shard,
	    .queue_id = key->queue_id,
	    .mail_from = rec->mail_from,
	    .rcpts = rec->rcpts,
	    .nrcpt = rec->nrcpt,
	    .data = data,
	    .size = size,
	    .arrival_us = rec->arrival_us,
	    .client_addr = rec->client_addr,
	    .helo = rec->helo,
	};
	rc = s->fn(&e, s->arg);
	free(rec);
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

/*
 * Message and body keys sort by queue id in the same way, so one iterator over
 * each, advanced in step, pairs them up and finds any one without the other.
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
		bool mbad, bbad;
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
		if (m == NULL && b == NULL)
			break;
		cmp = m == NULL ? 1 : b == NULL ? -1 : qid_cmp(m, b);
		if (cmp != 0) {
			snprintf(s->err, s->errlen, "%s: %s %s has no %s", path,
			         cmp < 0 ? "message" : "body", cmp < 0 ? mk.queue_id : bk.queue_id,
			         cmp < 0 ? "body" : "message record");
			rc = PA_ERROR;
			break;
		}
		mval = rocksdb_iter_value(mit, &mlen);
		bval = rocksdb_iter_value(bit, &blen);
		rc = emit(s, shard, path, m, mval, mlen, bval, blen);
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

static int
scan_one(struct scan *s, rocksdb_t *db, unsigned shard, const char *path)
{
	size_t qlen = strlen(s->queue_id);
	uint8_t key[SPOOL_KEY_MAX];
	struct spool_key k;
	rocksdb_pinnableslice_t *mv, *bv = NULL;
	bool failed;
	const char *mval, *bval;
	size_t mlen, blen;
	int rc;

	size_t klen = spool_key_message(key, s->queue_id, qlen);

	/* scan_run() checked the queue id, so the key decodes. */
	if (spool_key_decode(key, klen, &k) != PA_OK)
		return PA_ERROR;
	mv = get_pinned(s, db, path, key, klen, &failed);
	if (!failed)
		bv = get_pinned(s, db, path, key, spool_key_body(key, s->queue_id, qlen), &failed);
	if (failed) {
		rc = PA_ERROR;
	} else if (mv == NULL && bv == NULL) {
		rc = PA_OK;
	} else if (mv == NULL || bv == NULL) {
		snprintf(s->err, s->errlen, "%s: %s %s has no %s", path,
		         mv != NULL ? "message" : "body", s->queue_id,
		         mv != NULL ? "body" : "message record");
		rc = PA_ERROR;
	} else {
		mval = rocksdb_pinnableslice_value(mv, &mlen);
		bval = rocksdb_pinnableslice_value(bv, &blen);
		rc = emit(s, shard, path, &k, mval, mlen, bval, blen);
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
	return rc;
}

int
spool_scan(const char *dir, spool_scan_fn fn, void *arg, char *err, size_t errlen)
{
	struct scan s = {dir, NULL, fn, arg, err, errlen, NULL, NULL};

	return scan_run(&s, -1);
}

int
spool_scan_id(const char *dir, const char *queue_id, int shard, spool_scan_fn fn, void *arg,
              char *err, size_t errlen)
{
	struct scan s = {dir, queue_id, fn, arg, err, errlen, NULL, NULL};

	return scan_run(&s, shard);
}
