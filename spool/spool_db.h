/*
 * spool_db.h: opening one shard's RocksDB instance and checking its meta
 * record, shared by the writer (spool.c) and the read-only scan.
 */
#ifndef SPOOL_DB_H
#define SPOOL_DB_H

#include <stdbool.h>
#include <stddef.h>

#include <rocksdb/c.h>

#include "spool/seglog.h"
#include "spool/spool_record.h"

#define SPOOL_PATH_MAX 4096

/* dir/shard-NNN; PA_ERROR when it does not fit. */
int spool_db_path(char *out, size_t outlen, const char *dir, unsigned shard);

/*
 * Options for a shard: WAL point-in-time recovery, blob files for large
 * bodies.  writer: create the shard when missing; otherwise options for
 * spool_db_open(read_only = true), which must read blob values in every state.
 */
rocksdb_options_t *spool_db_options(bool writer);

/* Opens read-write (creating when absent) or read-only (replaying the WAL). */
rocksdb_t *spool_db_open(const rocksdb_options_t *options, const char *path, bool read_only,
                         char *err, size_t errlen);

/* Reads the meta record; *found is false when the shard has none. */
int spool_db_read_meta(rocksdb_t *db, const char *path, struct spool_meta *meta, bool *found,
                       char *err, size_t errlen);

/* Refuses a meta record of an unknown format (1 and SPOOL_FORMAT_LOG are read), shard count or
 * shard index. */
int spool_db_check_meta(const struct spool_meta *meta, const char *path, unsigned shards,
                        unsigned shard, char *err, size_t errlen);

/* dir/shard-NNN/log: the shard's segment log (format 2); PA_ERROR when it does not fit. */
int spool_db_log_path(char *out, size_t outlen, const char *shard_path);

/* Format 2: the checkpoint where recovery of the segment log starts; *found false: none. */
int spool_db_read_checkpoint(rocksdb_t *db, const char *path, struct seglog_pos *pos, bool *found,
                             char *err, size_t errlen);

/* A copy's 'L' value (of queue id qid, for the message) as a location in the log. */
int spool_db_location(const char *path, const char *qid, const uint8_t *lval, size_t llen,
                      struct seglog_loc *loc, char *err, size_t errlen);

/*
 * The MESSAGE record at loc in the segment log in log_dir, checked (header,
 * CRC, seq) and decoded, of queue id qid (NULL: any): *rec the whole record
 * (free() it), *m its message, whose data points into *rec (free() m->rec).
 */
int spool_db_log_read(const char *log_dir, const char *qid, const struct seglog_loc *loc,
                      uint8_t **rec, struct seglog_message *m, char *err, size_t errlen);

#endif
