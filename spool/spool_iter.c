/*
 * spool_iter.c: read-only iteration over the open spool (spool_iter.h).
 *
 * The message records alone carry the envelope and the stored size, so a
 * listing reads only them and never the bodies; a lookup of one queue id
 * reads its record and body with two point gets per shard.
 */
#include "spool/spool_iter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "spool/spool_db.h"
#include "spool/spool_internal.h"
#include "spool/spool_record.h"

unsigned
spool_shard_count(const struct spool *spool)
{
	return spool->nshards;
}

static rocksdb_readoptions_t *
read_options(void)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

	/* An operator's listing must not evict what the committers use. */
	rocksdb_readoptions_set_fill_cache(ro, 0);
	return ro;
}

/*
 * The delivery records of one copy through dit (keys sort by queue id, then
 * recipient index, so they are one seek and a short run).  A recipient
 * without a record reads as pending, never tried: what the committer writes.
 */
static int
read_states(const struct spool_shard *sh, rocksdb_iterator_t *dit, const char *qid, size_t nrcpt,
            struct spool_rcpt_state **out, char *err, size_t errlen)
{
	size_t qlen = strlen(qid);
	uint8_t key[SPOOL_KEY_MAX];
	struct spool_rcpt_state *st = calloc(nrcpt, sizeof(*st));

	if (st == NULL) {
		snprintf(err, errlen, "%s: out of memory", sh->path);
		return PA_ERROR;
	}
	rocksdb_iter_seek(dit, (const char *)key, spool_key_delivery(key, qid, qlen, 0));
	for (; rocksdb_iter_valid(dit); rocksdb_iter_next(dit)) {
		struct spool_delivery d;
		struct spool_key k;
		const char *kb, *v;
		size_t klen, vlen;

		kb = rocksdb_iter_key(dit, &klen);
		if (spool_key_decode((const uint8_t *)kb, klen, &k) != PA_OK ||
		    k.type != SPOOL_KEY_DELIVERY || strcmp(k.queue_id, qid) != 0)
			break;
		v = rocksdb_iter_value(dit, &vlen);
		if (k.rcpt >= nrcpt ||
		    spool_record_delivery_decode((const uint8_t *)v, vlen, &d) != PA_OK) {
			snprintf(err, errlen, "%s: delivery record %u of %s does not decode",
			         sh->path, (unsigned)k.rcpt, qid);
			free(st);
			return PA_ERROR;
		}
		st[k.rcpt] =
		    (struct spool_rcpt_state){(uint8_t)d.state, d.attempts, d.next_attempt_us};
	}
	*out = st;
	return PA_OK;
}

static int
emit(const struct spool_shard *sh, rocksdb_iterator_t *dit, const char *qid, const char *mval,
     size_t mlen, const uint8_t *data, spool_scan_fn fn, void *arg, char *err, size_t errlen)
{
	struct spool_rcpt_state *states = NULL;
	struct spool_msg_record *rec;
	struct spool_entry e;
	int rc;

	if (spool_record_msg_decode((const uint8_t *)mval, mlen, &rec) != PA_OK) {
		snprintf(err, errlen, "%s: message record of %s does not decode", sh->path, qid);
		return PA_ERROR;
	}
	if (read_states(sh, dit, qid, rec->nrcpt, &states, err, errlen) != PA_OK) {
		free(rec);
		return PA_ERROR;
	}
	e = (struct spool_entry){
	    .shard = sh->index,
	    .queue_id = qid,
	    .mail_from = rec->mail_from,
	    .rcpts = rec->rcpts,
	    .nrcpt = rec->nrcpt,
	    .data = data,
	    .size = rec->size,
	    .arrival_us = rec->arrival_us,
	    .client_addr = rec->client_addr,
	    .helo = rec->helo,
	    .states = states,
	};
	rc = fn(&e, arg);
	free(states);
	free(rec);
	return rc;
}

static int
iter_error(const struct spool_shard *sh, rocksdb_iterator_t *it, char *err, size_t errlen)
{
	char *rerr = NULL;

	rocksdb_iter_get_error(it, &rerr);
	if (rerr == NULL)
		return PA_OK;
	snprintf(err, errlen, "rocksdb_iter(%s): %s", sh->path, rerr);
	rocksdb_free(rerr);
	return PA_ERROR;
}

static int
iterate_shard(const struct spool_shard *sh, rocksdb_readoptions_t *ro, spool_scan_fn fn, void *arg,
              char *err, size_t errlen)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(sh->db, ro);
	rocksdb_iterator_t *dit = rocksdb_create_iterator(sh->db, ro);
	uint8_t prefix[SPOOL_KEY_MAX];
	int rc = PA_OK;

	rocksdb_iter_seek(it, (const char *)prefix, spool_key_prefix(prefix, SPOOL_KEY_MESSAGE));
	for (; rc == PA_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		struct spool_key key;
		const char *k, *v;
		size_t klen, vlen;

		k = rocksdb_iter_key(it, &klen);
		if (klen < SPOOL_KEY_PREFIX_LEN || (uint8_t)k[0] != SPOOL_KEY_MESSAGE)
			break;
		if (spool_key_decode((const uint8_t *)k, klen, &key) != PA_OK) {
			snprintf(err, errlen, "%s: a message key does not decode", sh->path);
			rc = PA_ERROR;
			break;
		}
		v = rocksdb_iter_value(it, &vlen);
		rc = emit(sh, dit, key.queue_id, v, vlen, NULL, fn, arg, err, errlen);
	}
	if (rc == PA_OK)
		rc = iter_error(sh, it, err, errlen);
	if (rc == PA_OK)
		rc = iter_error(sh, dit, err, errlen);
	rocksdb_iter_destroy(dit);
	rocksdb_iter_destroy(it);
	return rc;
}

/* The shard's db held shared for the pass: its committer may reopen it after a failure. */
static int
iterate_locked(struct spool_shard *sh, rocksdb_readoptions_t *ro, spool_scan_fn fn, void *arg,
               char *err, size_t errlen)
{
	int rc;

	if (spool_shard_db_acquire(sh, err, errlen) == NULL)
		return PA_ERROR;
	rc = iterate_shard(sh, ro, fn, arg, err, errlen);
	spool_shard_db_release(sh);
	return rc;
}

static int
check_shard(const struct spool *spool, int shard, char *err, size_t errlen)
{
	if (shard >= 0 && (unsigned)shard >= spool->nshards) {
		snprintf(err, errlen, "the spool has %u shards, no shard %d", spool->nshards,
		         shard);
		return PA_ERROR;
	}
	return PA_OK;
}

int
spool_iterate(struct spool *spool, int shard, spool_scan_fn fn, void *arg, char *err, size_t errlen)
{
	rocksdb_readoptions_t *ro;
	int rc = check_shard(spool, shard, err, errlen);

	if (rc != PA_OK)
		return rc;
	ro = read_options();
	for (unsigned i = 0; i < spool->nshards && rc == PA_OK; i++)
		if (shard < 0 || (unsigned)shard == i)
			rc = iterate_locked(&spool->shards[i], ro, fn, arg, err, errlen);
	rocksdb_readoptions_destroy(ro);
	return rc;
}

static rocksdb_pinnableslice_t *
get_pinned(const struct spool_shard *sh, rocksdb_readoptions_t *ro, const uint8_t *key, size_t klen,
           bool *failed, char *err, size_t errlen)
{
	char *rerr = NULL;
	rocksdb_pinnableslice_t *v = rocksdb_get_pinned(sh->db, ro, (const char *)key, klen, &rerr);

	*failed = rerr != NULL;
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s): %s", sh->path, rerr);
		rocksdb_free(rerr);
	}
	return v;
}

/* A copy's body from the segment log: the record its 'L' value names, for this queue id only. */
static int
body_from_log(const struct spool_shard *sh, const char *qid, const char *lval, size_t llen,
              struct spool_body *body, char *err, size_t errlen)
{
	struct seglog_loc where;
	struct seglog_message m;
	uint8_t *rec;

	if (sh->log_dir == NULL) {
		snprintf(err, errlen, "%s: a location for %s but no segment log", sh->path, qid);
		return PA_ERROR;
	}
	if (spool_db_location(sh->path, qid, (const uint8_t *)lval, llen, &where, err, errlen) !=
	        PA_OK ||
	    spool_db_log_read(sh->log_dir, qid, &where, &rec, &m, err, errlen) != PA_OK)
		return PA_ERROR;
	free(m.rec);
	*body = (struct spool_body){m.data, m.size, rec};
	return PA_OK;
}

/* The body of one copy, a private copy: 'B' in RocksDB, else 'L' into the log. */
static int
read_body(const struct spool_shard *sh, rocksdb_readoptions_t *ro, const char *qid,
          struct spool_body *body, char *err, size_t errlen)
{
	size_t qlen = strlen(qid), vlen;
	uint8_t key[SPOOL_KEY_MAX];
	const uint8_t *data;
	size_t size;
	char *rerr = NULL, *v;
	int rc = PA_OK;

	*body = (struct spool_body){NULL, 0, NULL};
	v = rocksdb_get(sh->db, ro, (const char *)key, spool_key_body(key, qid, qlen), &vlen,
	                &rerr);
	if (rerr == NULL && v == NULL && sh->format == SPOOL_FORMAT_LOG) {
		v = rocksdb_get(sh->db, ro, (const char *)key, spool_key_location(key, qid, qlen),
		                &vlen, &rerr);
		if (rerr == NULL && v != NULL)
			rc = body_from_log(sh, qid, v, vlen, body, err, errlen);
		rocksdb_free(v);
		v = NULL;
	}
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s): %s", sh->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	if (v == NULL)
		return rc;
	if (spool_record_body_decode((const uint8_t *)v, vlen, &data, &size) != PA_OK) {
		snprintf(err, errlen, "%s: body of %s does not decode", sh->path, qid);
		rocksdb_free(v);
		return PA_ERROR;
	}
	*body = (struct spool_body){data, size, v};
	return PA_OK;
}

void
spool_body_release(struct spool_body *body)
{
	/* rocksdb_free() is free() for what rocksdb_get() returned, as for seglog_read()'s buffer.
	 */
	free(body->owner);
	*body = (struct spool_body){NULL, 0, NULL};
}

int
spool_body_read(struct spool *spool, unsigned shard, const char *queue_id, struct spool_body *body,
                char *err, size_t errlen)
{
	struct spool_shard *sh;
	rocksdb_readoptions_t *ro;
	int rc;

	*body = (struct spool_body){NULL, 0, NULL};
	if (shard >= spool->nshards || !spool_queue_id_valid(queue_id, strlen(queue_id))) {
		snprintf(err, errlen, "no shard %u or not a valid queue id", shard);
		return PA_ERROR;
	}
	sh = &spool->shards[shard];
	if (spool_shard_db_acquire(sh, err, errlen) == NULL)
		return PA_ERROR;
	ro = read_options();
	rc = read_body(sh, ro, queue_id, body, err, errlen);
	rocksdb_readoptions_destroy(ro);
	spool_shard_db_release(sh);
	return rc;
}

static int
lookup_shard(const struct spool_shard *sh, rocksdb_readoptions_t *ro, const char *qid,
             spool_scan_fn fn, void *arg, char *err, size_t errlen)
{
	size_t qlen = strlen(qid), klen, mlen;
	uint8_t key[SPOOL_KEY_MAX];
	rocksdb_pinnableslice_t *mv;
	struct spool_body body = {NULL, 0, NULL};
	const char *mval;
	bool failed;
	int rc = PA_OK;

	klen = spool_key_message(key, qid, qlen);
	mv = get_pinned(sh, ro, key, klen, &failed, err, errlen);
	if (!failed && mv != NULL)
		rc = read_body(sh, ro, qid, &body, err, errlen);
	if (failed) {
		rc = PA_ERROR;
	} else if (mv == NULL || rc != PA_OK) {
		/* No message record: not a message now. */
	} else if (body.owner == NULL) {
		/* Deleted between the two gets, or damaged: either way not a message now. */
		rc = PA_OK;
	} else {
		rocksdb_iterator_t *dit = rocksdb_create_iterator(sh->db, ro);

		mval = rocksdb_pinnableslice_value(mv, &mlen);
		rc = emit(sh, dit, qid, mval, mlen, body.data, fn, arg, err, errlen);
		if (rc == PA_OK)
			rc = iter_error(sh, dit, err, errlen);
		rocksdb_iter_destroy(dit);
	}
	spool_body_release(&body);
	rocksdb_pinnableslice_destroy(mv);
	return rc;
}

static int
lookup_locked(struct spool_shard *sh, rocksdb_readoptions_t *ro, const char *qid, spool_scan_fn fn,
              void *arg, char *err, size_t errlen)
{
	int rc;

	if (spool_shard_db_acquire(sh, err, errlen) == NULL)
		return PA_ERROR;
	rc = lookup_shard(sh, ro, qid, fn, arg, err, errlen);
	spool_shard_db_release(sh);
	return rc;
}

int
spool_lookup(struct spool *spool, const char *queue_id, int shard, spool_scan_fn fn, void *arg,
             char *err, size_t errlen)
{
	rocksdb_readoptions_t *ro;
	int rc = check_shard(spool, shard, err, errlen);

	if (rc != PA_OK)
		return rc;
	if (!spool_queue_id_valid(queue_id, strlen(queue_id))) {
		snprintf(err, errlen, "not a valid queue id");
		return PA_ERROR;
	}
	ro = read_options();
	for (unsigned i = 0; i < spool->nshards && rc == PA_OK; i++)
		if (shard < 0 || (unsigned)shard == i)
			rc = lookup_locked(&spool->shards[i], ro, queue_id, fn, arg, err, errlen);
	rocksdb_readoptions_destroy(ro);
	return rc;
}
