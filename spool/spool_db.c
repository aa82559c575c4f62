/*
 * spool_db.c: RocksDB options, paths and the meta-record check of a shard.
 *
 * What it promises: writer and reader open shards with the same options (but
 * for the open-file limit, which the reader needs to read blob values), so a
 * read-only scan replays the WAL exactly as a restarted writer would, and a
 * shard is never used under a shard count other than the one it was created
 * with (the recipient-to-shard mapping depends on it).
 */
#include "spool/spool_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"

/* Values of at least this size go to blob files: in practice, message bodies. */
#define SPOOL_MIN_BLOB_SIZE 4096
/* rocksdb::WALRecoveryMode::kPointInTimeRecovery: stop at a torn tail record. */
#define SPOOL_WAL_POINT_IN_TIME 2
/* rocksdb::InfoLogLevel::HEADER_LEVEL: only the header written while a shard opens. */
#define SPOOL_INFO_LOG_HEADER_ONLY 5
/* Table files a read-only open keeps open at once; positive: see spool_db_options(). */
#define SPOOL_READ_ONLY_MAX_OPEN_FILES 256

int
spool_db_path(char *out, size_t outlen, const char *dir, unsigned shard)
{
	int n = snprintf(out, outlen, "%s/shard-%03u", dir, shard);

	return n < 0 || (size_t)n >= outlen ? PA_ERROR : PA_OK;
}

rocksdb_options_t *
spool_db_options(bool writer)
{
	rocksdb_options_t *o = rocksdb_options_create();

	rocksdb_options_set_create_if_missing(o, writer);
	/*
	 * RocksDB 7.8's DB::OpenForReadOnly() with max_open_files = -1 (the
	 * default) opens a database that is a single SST and an empty WAL (a
	 * shard after a restart with no new mail) as a CompactedDBImpl, whose
	 * Get() does not resolve blob references: every body stored in a blob
	 * file read as missing.  With a limit it takes the ordinary read-only
	 * path, which reads blobs.  Nothing else depends on the limit.
	 */
	if (!writer)
		rocksdb_options_set_max_open_files(o, SPOOL_READ_ONLY_MAX_OPEN_FILES);
	rocksdb_options_set_wal_recovery_mode(o, SPOOL_WAL_POINT_IN_TIME);
	rocksdb_options_set_enable_blob_files(o, 1);
	rocksdb_options_set_min_blob_size(o, SPOOL_MIN_BLOB_SIZE);
	rocksdb_options_set_enable_blob_gc(o, 1);
	/* Shards share RocksDB's default thread pool; keep their footprint small. */
	rocksdb_options_set_max_background_jobs(o, 2);
	rocksdb_options_set_keep_log_file_num(o, 4);
	/*
	 * RocksDB 7.8 (Debian's build keeps its assertions) aborts the process
	 * when it writes its info LOG again after a LOG write failed, which is
	 * what a full disk does the moment a write error is logged.  With only
	 * the header, nothing is logged while a shard runs; pigeond logs every
	 * error RocksDB returns itself (docs/security.md, "Faults").
	 */
	rocksdb_options_set_info_log_level(o, SPOOL_INFO_LOG_HEADER_ONLY);
	return o;
}

rocksdb_t *
spool_db_open(const rocksdb_options_t *options, const char *path, bool read_only, char *err,
              size_t errlen)
{
	char *rerr = NULL;
	rocksdb_t *db;

	if (read_only)
		db = rocksdb_open_for_read_only(options, path, 0, &rerr);
	else
		db = rocksdb_open(options, path, &rerr);
	if (db == NULL) {
		snprintf(err, errlen, "%s(%s): %s",
		         read_only ? "rocksdb_open_for_read_only" : "rocksdb_open", path,
		         rerr != NULL ? rerr : "unknown error");
		rocksdb_free(rerr);
	}
	return db;
}

int
spool_db_read_meta(rocksdb_t *db, const char *path, struct spool_meta *meta, bool *found, char *err,
                   size_t errlen)
{
	uint8_t key[SPOOL_KEY_MAX];
	size_t klen = spool_key_meta(key);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	char *rerr = NULL;
	size_t vlen = 0;
	char *val = rocksdb_get(db, ro, (const char *)key, klen, &vlen, &rerr);
	int rc = PA_OK;

	rocksdb_readoptions_destroy(ro);
	*found = false;
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s, meta): %s", path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	if (val == NULL)
		return PA_OK;
	if (spool_record_meta_decode((const uint8_t *)val, vlen, meta) != PA_OK) {
		snprintf(err, errlen,
		         "%s: meta record does not decode (unknown version or corrupt)", path);
		rc = PA_ERROR;
	} else {
		*found = true;
	}
	rocksdb_free(val);
	return rc;
}

int
spool_db_log_path(char *out, size_t outlen, const char *shard_path)
{
	int n = snprintf(out, outlen, "%s/log", shard_path);

	return n < 0 || (size_t)n >= outlen ? PA_ERROR : PA_OK;
}

int
spool_db_check_meta(const struct spool_meta *meta, const char *path, unsigned shards,
                    unsigned shard, char *err, size_t errlen)
{
	if (meta->format != SPOOL_FORMAT_VERSION && meta->format != SPOOL_FORMAT_LOG) {
		snprintf(err, errlen,
		         "%s: spool format version %u, this build reads versions %u and %u", path,
		         (unsigned)meta->format, SPOOL_FORMAT_VERSION, SPOOL_FORMAT_LOG);
		return PA_ERROR;
	}
	if (meta->shards != shards) {
		snprintf(err, errlen,
		         "%s: spool was created with %u shards, not %u; the shard count of a "
		         "spool cannot change",
		         path, (unsigned)meta->shards, shards);
		return PA_ERROR;
	}
	if (meta->shard != shard) {
		snprintf(err, errlen, "%s: holds shard %u, expected shard %u", path,
		         (unsigned)meta->shard, shard);
		return PA_ERROR;
	}
	return PA_OK;
}

int
spool_db_read_checkpoint(rocksdb_t *db, const char *path, struct seglog_pos *pos, bool *found,
                         char *err, size_t errlen)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	uint8_t key[SPOOL_KEY_MAX];
	struct spool_checkpoint cp;
	char *rerr = NULL;
	size_t vlen;
	char *v = rocksdb_get(db, ro, (const char *)key, spool_key_checkpoint(key), &vlen, &rerr);

	rocksdb_readoptions_destroy(ro);
	*found = false;
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s, checkpoint): %s", path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	if (v == NULL)
		return PA_OK;
	if (spool_record_checkpoint_decode((const uint8_t *)v, vlen, &cp) != PA_OK) {
		snprintf(err, errlen, "%s: the log checkpoint does not decode", path);
		rocksdb_free(v);
		return PA_ERROR;
	}
	rocksdb_free(v);
	*pos = (struct seglog_pos){cp.segment, cp.offset, cp.seq};
	*found = true;
	return PA_OK;
}

int
spool_db_log_read(const char *log_dir, const char *qid, const struct seglog_loc *loc, uint8_t **rec,
                  struct seglog_message *m, char *err, size_t errlen)
{
	*m = (struct seglog_message){.rec = NULL};
	if (seglog_read(log_dir, loc, rec, err, errlen) != PA_OK)
		return PA_ERROR;
	if (seglog_message_decode(*rec + SEGLOG_HEADER, loc->length - SEGLOG_HEADER, m) != PA_OK ||
	    (qid != NULL && strcmp(m->qid, qid) != 0)) {
		snprintf(err, errlen,
		         "%s: the log record at segment %llu offset %llu does not decode or holds "
		         "another copy than %s",
		         log_dir, (unsigned long long)loc->segment, (unsigned long long)loc->offset,
		         qid != NULL ? qid : "indexed");
		free(m->rec);
		m->rec = NULL;
		free(*rec);
		*rec = NULL;
		return PA_ERROR;
	}
	return PA_OK;
}

int
spool_db_location(const char *path, const char *qid, const uint8_t *lval, size_t llen,
                  struct seglog_loc *loc, char *err, size_t errlen)
{
	struct spool_location l;

	if (spool_record_location_decode(lval, llen, &l) != PA_OK) {
		snprintf(err, errlen, "%s: location of %s does not decode", path, qid);
		return PA_ERROR;
	}
	*loc = (struct seglog_loc){l.segment, l.offset, l.length, l.seq};
	return PA_OK;
}
