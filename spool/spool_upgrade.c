/*
 * spool_upgrade.c: converting a stopped spool's format-1 shards to format 2
 * (docs/spool-format.md, "Upgrading a version-1 spool").
 *
 * Per shard: the meta record says format 2 and the checkpoint names the
 * log's start first (one synced write: from then on every reader of the
 * shard reads 'B' bodies and log records alike), then every copy that still
 * has a 'B' body is appended to the shard's segment log, and once a group
 * of them is synced there, one synced RocksDB batch puts their 'L' entries,
 * deletes their 'B' values and moves the checkpoint past them.  'M', 'D'
 * and 'S' are not touched, so delivery state, holds and schedules stay as
 * they were.  What it promises: nothing is lost at any point of a crash;
 * a body is deleted only in the batch that indexes its synced record; a
 * record whose batch was lost sits after the checkpoint and is skipped at
 * the next open (its copy still has its 'M'); running it again finishes
 * what an interrupted run left.
 */
#include "spool/spool_upgrade.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pa.h"
#include "spool/seglog.h"
#include "spool/spool_db.h"
#include "spool/spool_record.h"

/* Copies per synced group: bounds the memory of one group (bodies are held until its sync). */
#define GROUP_COPIES 256
#define GROUP_BYTES (16u << 20)

struct upgrade {
	const char *path;
	rocksdb_t *db;
	struct seglog *log;
	rocksdb_writeoptions_t *wo;
	rocksdb_writebatch_t *batch;
	void *held[GROUP_COPIES]; /* bodies the staged records point into */
	unsigned nheld;
	size_t held_bytes;
	uint64_t copies;
};

static int
write_synced(struct upgrade *u, char *err, size_t errlen)
{
	char *rerr = NULL;

	rocksdb_write(u->db, u->wo, u->batch, &rerr);
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_write(%s, upgrade): %s", u->path, rerr);
		rocksdb_free(rerr);
		return PA_ERROR;
	}
	rocksdb_writebatch_clear(u->batch);
	return PA_OK;
}

static void
put_checkpoint(struct upgrade *u)
{
	struct seglog_pos tail = seglog_tail(u->log);
	struct spool_checkpoint cp = {tail.segment, tail.offset, tail.seq};
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_CHECKPOINT_SIZE];

	spool_record_checkpoint_encode(&cp, val);
	rocksdb_writebatch_put(u->batch, (const char *)key, spool_key_checkpoint(key),
	                       (const char *)val, sizeof(val));
}

/* The group's records synced in the log, then their index and the deletes, synced. */
static int
flush_group(struct upgrade *u, char *err, size_t errlen)
{
	int rc = PA_OK;

	if (u->nheld > 0) {
		rc = seglog_commit(u->log, err, errlen);
		if (rc == PA_OK) {
			put_checkpoint(u);
			rc = write_synced(u, err, errlen);
		}
	}
	for (unsigned i = 0; i < u->nheld; i++)
		rocksdb_free(u->held[i]);
	u->nheld = 0;
	u->held_bytes = 0;
	return rc;
}

/* One copy: its record (queue id, envelope from 'M', the 'B' bytes) staged; 'L' put, 'B' deleted.
 */
static int
convert(struct upgrade *u, rocksdb_readoptions_t *ro, const struct spool_key *k, char *err,
        size_t errlen)
{
	uint8_t key[SPOOL_KEY_MAX], lval[SPOOL_LOCATION_SIZE], *prefix;
	struct spool_msg_record *rec;
	struct seglog_loc where;
	struct spool_location loc;
	const uint8_t *data;
	size_t mlen, blen, size;
	char *rerr = NULL, *mval, *bval;
	long plen;
	int rc;

	mval = rocksdb_get(u->db, ro, (const char *)key,
	                   spool_key_message(key, k->queue_id, k->queue_id_len), &mlen, &rerr);
	if (rerr == NULL && mval != NULL)
		bval = rocksdb_get(u->db, ro, (const char *)key,
		                   spool_key_body(key, k->queue_id, k->queue_id_len), &blen, &rerr);
	else
		bval = NULL;
	if (rerr != NULL) {
		snprintf(err, errlen, "rocksdb_get(%s, upgrade): %s", u->path, rerr);
		rocksdb_free(rerr);
		rocksdb_free(mval);
		return PA_ERROR;
	}
	if (mval == NULL || bval == NULL) {
		/* A body without its message record is no copy: spool_scan() reports it; left as
		 * is. */
		rocksdb_free(mval);
		rocksdb_free(bval);
		return PA_OK;
	}
	if (spool_record_msg_decode((const uint8_t *)mval, mlen, &rec) != PA_OK ||
	    spool_record_body_decode((const uint8_t *)bval, blen, &data, &size) != PA_OK ||
	    size != rec->size) {
		snprintf(err, errlen, "%s: the records of %s do not decode; not upgraded", u->path,
		         k->queue_id);
		rocksdb_free(mval);
		rocksdb_free(bval);
		return PA_ERROR;
	}
	rocksdb_free(mval);
	plen = seglog_message_prefix_size(k->queue_id, rec);
	prefix = plen > 0 ? malloc((size_t)plen) : NULL;
	if (prefix == NULL) {
		snprintf(err, errlen, "%s: upgrade: out of memory", u->path);
		free(rec);
		rocksdb_free(bval);
		return PA_ERROR;
	}
	seglog_message_prefix_encode(k->queue_id, rec, prefix);
	free(rec);
	/* The log copies the prefix; the body is read from bval at the commit. */
	rc = seglog_add(u->log, prefix, (size_t)plen, data, size, &where, err, errlen);
	free(prefix);
	if (rc != PA_OK) {
		rocksdb_free(bval);
		return PA_ERROR;
	}
	u->held[u->nheld++] = bval;
	u->held_bytes += size;
	loc = (struct spool_location){where.segment, where.offset, where.length, where.seq};
	spool_record_location_encode(&loc, lval);
	rocksdb_writebatch_put(u->batch, (const char *)key,
	                       spool_key_location(key, k->queue_id, k->queue_id_len),
	                       (const char *)lval, sizeof(lval));
	rocksdb_writebatch_delete(u->batch, (const char *)key,
	                          spool_key_body(key, k->queue_id, k->queue_id_len));
	u->copies++;
	if (u->nheld == GROUP_COPIES || u->held_bytes >= GROUP_BYTES)
		return flush_group(u, err, errlen);
	return PA_OK;
}

static int
convert_all(struct upgrade *u, char *err, size_t errlen)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator(u->db, ro);
	uint8_t prefix[SPOOL_KEY_MAX];
	char *rerr = NULL;
	int rc = PA_OK;

	/* The iterator reads the state of its creation: the deletes below do not move it. */
	rocksdb_iter_seek(it, (const char *)prefix, spool_key_prefix(prefix, SPOOL_KEY_BODY));
	for (; rc == PA_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		struct spool_key k;
		size_t klen;
		const char *kb = rocksdb_iter_key(it, &klen);

		if (klen < SPOOL_KEY_PREFIX_LEN || (uint8_t)kb[0] != SPOOL_KEY_BODY)
			break;
		if (spool_key_decode((const uint8_t *)kb, klen, &k) != PA_OK) {
			snprintf(err, errlen, "%s: a body key does not decode; not upgraded",
			         u->path);
			rc = PA_ERROR;
			break;
		}
		rc = convert(u, ro, &k, err, errlen);
	}
	if (rc == PA_OK) {
		rocksdb_iter_get_error(it, &rerr);
		if (rerr != NULL) {
			snprintf(err, errlen, "rocksdb_iter(%s, upgrade): %s", u->path, rerr);
			rocksdb_free(rerr);
			rc = PA_ERROR;
		}
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rc == PA_OK)
		return flush_group(u, err, errlen);
	flush_group(u, err, errlen); /* frees the held bodies; nothing more counts */
	return PA_ERROR;
}

/*
 * Run as root for a pigeond that runs as `user`: the log directory and its
 * segments get the owner of the shard's directory, or pigeond could not
 * write them.
 */
static int
own_like_shard(const char *log_dir, const char *shard_path, char *err, size_t errlen)
{
	char file[SPOOL_PATH_MAX];
	struct stat st;
	struct dirent *de;
	DIR *d;
	int rc = PA_OK;

	if (stat(shard_path, &st) == -1) {
		snprintf(err, errlen, "stat(%s) failed: %s", shard_path, strerror(errno));
		return PA_ERROR;
	}
	if (st.st_uid == geteuid() && st.st_gid == getegid())
		return PA_OK;
	if (chown(log_dir, st.st_uid, st.st_gid) == -1 || (d = opendir(log_dir)) == NULL) {
		snprintf(err, errlen, "chown/opendir(%s) failed: %s", log_dir, strerror(errno));
		return PA_ERROR;
	}
	while (rc == PA_OK && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(file, sizeof(file), "%s/%s", log_dir, de->d_name) >=
		        (int)sizeof(file) ||
		    chown(file, st.st_uid, st.st_gid) == -1) {
			snprintf(err, errlen, "chown(%s) failed: %s", file, strerror(errno));
			rc = PA_ERROR;
		}
	}
	closedir(d);
	return rc;
}

static int
upgrade_shard(const char *dir, unsigned shards, unsigned shard, uint64_t segment_size,
              uint64_t *copies, bool *changed, char *err, size_t errlen)
{
	char path[SPOOL_PATH_MAX], log_dir[SPOOL_PATH_MAX];
	rocksdb_options_t *options;
	struct upgrade u = {.path = path};
	struct spool_meta meta;
	struct seglog_pos from;
	struct seglog_config cfg;
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_META_SIZE];
	bool found;
	int rc;

	*changed = false;
	if (spool_db_path(path, sizeof(path), dir, shard) != PA_OK ||
	    spool_db_log_path(log_dir, sizeof(log_dir), path) != PA_OK) {
		snprintf(err, errlen, "spool upgrade: directory name too long: %s", dir);
		return PA_ERROR;
	}
	options = spool_db_options(true);
	rocksdb_options_set_create_if_missing(options, 0);
	u.db = spool_db_open(options, path, false, err, errlen);
	rocksdb_options_destroy(options);
	if (u.db == NULL)
		return PA_ERROR;
	rc = spool_db_read_meta(u.db, path, &meta, &found, err, errlen);
	if (rc == PA_OK && !found) {
		snprintf(err, errlen, "%s: no spool meta record; not a spool shard", path);
		rc = PA_ERROR;
	}
	if (rc == PA_OK)
		rc = spool_db_check_meta(&meta, path, shards, shard, err, errlen);
	if (rc == PA_OK)
		rc = spool_db_read_checkpoint(u.db, path, &from, &found, err, errlen);
	cfg = (struct seglog_config){log_dir, segment_size, shards, shard};
	if (rc == PA_OK)
		rc = seglog_open(&u.log, &cfg, found ? &from : NULL, NULL, NULL, err, errlen);
	u.wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(u.wo, 1);
	u.batch = rocksdb_writebatch_create();
	if (rc == PA_OK && meta.format != SPOOL_FORMAT_LOG) {
		/* Format 2 from here on: its readers read 'B' and the log alike. */
		meta.format = SPOOL_FORMAT_LOG;
		spool_record_meta_encode(&meta, val);
		rocksdb_writebatch_put(u.batch, (const char *)key, spool_key_meta(key),
		                       (const char *)val, sizeof(val));
		put_checkpoint(&u);
		rc = write_synced(&u, err, errlen);
		*changed = true;
	}
	if (rc == PA_OK)
		rc = convert_all(&u, err, errlen);
	*copies = u.copies;
	*changed = *changed || u.copies > 0;
	rocksdb_writebatch_destroy(u.batch);
	rocksdb_writeoptions_destroy(u.wo);
	seglog_close(u.log);
	rocksdb_close(u.db);
	if (rc == PA_OK)
		rc = own_like_shard(log_dir, path, err, errlen);
	return rc;
}

int
spool_upgrade(const char *dir, unsigned shards, uint64_t segment_size, FILE *report, char *err,
              size_t errlen)
{
	if (shards == 0 || shards > SPOOL_MAX_SHARDS) {
		snprintf(err, errlen, "spool upgrade: shards must be 1..%u, not %u",
		         SPOOL_MAX_SHARDS, shards);
		return PA_ERROR;
	}
	for (unsigned i = 0; i < shards; i++) {
		uint64_t copies = 0;
		bool changed;

		if (upgrade_shard(dir, shards, i, segment_size, &copies, &changed, err, errlen) !=
		    PA_OK)
			return PA_ERROR;
		if (report != NULL)
			fprintf(report, "shard %03u: %s, %llu copies moved to the segment log\n", i,
			        changed ? "format 2" : "format 2 already",
			        (unsigned long long)copies);
	}
	return PA_OK;
}
