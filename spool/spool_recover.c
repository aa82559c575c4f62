/*
 * spool_recover.c: opening a format-2 shard's segment log, and recovery of
 * the RocksDB index from it (docs/spool-format.md, "What is synced").
 *
 * The committer syncs a group's records in the log before anything is
 * acknowledged, then writes their index (message record, location,
 * delivery records, schedule entry) and the checkpoint after them to
 * RocksDB in one unsynced batch.  After a crash RocksDB's WAL gives back a
 * prefix of those batches, so the last checkpoint it holds is exactly where
 * the unindexed records begin.  What it promises: every MESSAGE record the
 * log holds from that checkpoint on gets its index again, as the committer
 * would have written it (pending, due now), unless its message record is
 * there already; then the checkpoint moves to the log's new tail, all in synced
 * batches, before the shard takes mail.
 */
#include "spool/spool_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "spool/spool_db.h"
#include "spool/spool_record.h"

/* Re-indexed copies per synced batch: bounds the memory a long recovery takes. */
#define RECOVER_BATCH 1024

struct recover {
	struct spool_shard *sh;
	rocksdb_writebatch_t *batch;
	rocksdb_readoptions_t *ro;
	unsigned in_batch;
	uint64_t now_us;
	uint64_t copies;
	char *err;
	size_t errlen;
};

static int
write_synced(struct spool_shard *sh, rocksdb_writebatch_t *b, char *err, size_t errlen)
{
	char *rerr = NULL;

	rocksdb_write(sh->db, sh->spool->write_options, b, &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_write(%s, recovery): %s", sh->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	rocksdb_writebatch_clear(b);
	return PA_OK;
}

static int
indexed(struct recover *r, const uint8_t *key, size_t klen, bool *found)
{
	char *rerr = NULL;
	size_t vlen;
	char *v = rocksdb_get(r->sh->db, r->ro, (const char *)key, klen, &vlen, &rerr);

	if (rerr != NULL) {
		snprintf(r->err, r->errlen, "rocksdb_get(%s, recovery): %s", r->sh->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	*found = v != NULL;
	rocksdb_free(v);
	return PA_OK;
}

static int
reindex(const struct seglog_loc *where, const uint8_t *payload, size_t len, void *arg)
{
	struct recover *r = arg;
	struct seglog_message m;
	struct spool_location loc = {where->segment, where->offset, where->length, where->seq};
	uint8_t key[SPOOL_KEY_MAX], lval[SPOOL_LOCATION_SIZE], *mval;
	size_t qlen;
	long mlen;
	bool found;
	int rc = PA_OK;

	/* The CRC held, so a payload that does not decode was written by another version. */
	if (seglog_message_decode(payload, len, &m) != PA_OK) {
		snprintf(r->err, r->errlen,
		         "%s: the log record at segment %llu offset %llu does not decode",
		         r->sh->log_dir, (unsigned long long)where->segment,
		         (unsigned long long)where->offset);
		return PA_ERROR;
	}
	qlen = strlen(m.qid);
	/*
	 * Its 'M' tells that the copy is indexed: the committer puts 'M' and 'L'
	 * in one batch, and a copy spool_upgrade() moved into the log keeps its
	 * 'M' (and its 'B' when the batch with its 'L' was lost).
	 */
	if (indexed(r, key, spool_key_message(key, m.qid, qlen), &found) != PA_OK) {
		free(m.rec);
		return PA_ERROR;
	}
	mlen = spool_record_msg_size(m.rec);
	mval = mlen > 0 ? malloc((size_t)mlen) : NULL;
	if (!found && mval == NULL) {
		snprintf(r->err, r->errlen, "%s: recovery: out of memory", r->sh->path);
		rc = PA_ERROR;
	} else if (!found) {
		spool_record_msg_encode(m.rec, mval);
		rocksdb_writebatch_put(r->batch, (const char *)key,
		                       spool_key_message(key, m.qid, qlen), (const char *)mval,
		                       (size_t)mlen);
		spool_record_location_encode(&loc, lval);
		rocksdb_writebatch_put(r->batch, (const char *)key,
		                       spool_key_location(key, m.qid, qlen), (const char *)lval,
		                       sizeof(lval));
		spool_put_pending(r->batch, m.qid, qlen, m.rec->nrcpt, r->now_us);
		r->copies++;
		if (++r->in_batch >= RECOVER_BATCH) {
			rc = write_synced(r->sh, r->batch, r->err, r->errlen);
			r->in_batch = 0;
		}
	}
	free(mval);
	free(m.rec);
	return rc;
}

int
spool_shard_open_log(struct spool_shard *sh, char *err, size_t errlen)
{
	char dir[SPOOL_PATH_MAX];
	struct seglog_config cfg;
	struct seglog_pos from, tail;
	struct spool_checkpoint cp;
	struct recover r = {.sh = sh, .err = err, .errlen = errlen};
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_CHECKPOINT_SIZE];
	bool found;
	int rc;

	if (spool_db_log_path(dir, sizeof(dir), sh->path) != PA_OK ||
	    (sh->log_dir = strdup(dir)) == NULL) {
		snprintf(err, errlen, "%s: log directory name too long or out of memory", sh->path);
		return PA_ERROR;
	}
	r.ro = rocksdb_readoptions_create();
	r.batch = rocksdb_writebatch_create();
	r.now_us = pa_wall_clock_us();
	rc = spool_db_read_checkpoint(sh->db, sh->path, &from, &found, err, errlen);
	cfg = (struct seglog_config){sh->log_dir, sh->spool->segment_size, sh->spool->nshards,
	                             sh->index};
	if (rc == PA_OK)
		rc = seglog_open(&sh->log, &cfg, found ? &from : NULL, reindex, &r, err, errlen);
	if (rc == PA_OK) {
		tail = seglog_tail(sh->log);
		cp = (struct spool_checkpoint){tail.segment, tail.offset, tail.seq};
		spool_record_checkpoint_encode(&cp, val);
		rocksdb_writebatch_put(r.batch, (const char *)key, spool_key_checkpoint(key),
		                       (const char *)val, sizeof(val));
		rc = write_synced(sh, r.batch, err, errlen);
	}
	/* The first segment, made now rather than under the first message. */
	if (rc == PA_OK)
		rc = seglog_prepare(sh->log, err, errlen);
	if (rc == PA_OK && r.copies > 0)
		pa_log_notice("spool: shard %u: %llu copies re-indexed from the segment log",
		              sh->index, (unsigned long long)r.copies);
	rocksdb_writebatch_destroy(r.batch);
	rocksdb_readoptions_destroy(r.ro);
	return rc;
}
