/*
 * spool.h: the durable message spool, RocksDB shards with group commit.
 *
 * `shards` RocksDB instances live under one directory.  A recipient belongs
 * to the shard given by spool_shard_of() (CRC-32C of the lower-cased address,
 * modulo the shard count; docs/spool-format.md).  A message is stored once
 * in every shard that holds one of its recipients, with its body once per
 * shard, never once per recipient.
 *
 * What it promises: a completion with status PA_OK is delivered only after
 * the write holding the message has been synced (WAL fsync) in every shard
 * the message touches.  Each shard has one committer thread that takes every
 * request that arrived while its previous sync ran and commits them as one
 * synced WriteBatch (group commit).  Workers hand requests over and get
 * completions back through DPDK rings; they never call RocksDB themselves and
 * never block in this module.
 *
 * The spool is one of the explicitly shared objects: the worker-side calls
 * are safe from any number of workers at once, each using its own worker id.
 */
#ifndef SPOOL_H
#define SPOOL_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/smtp_session.h"

#define SPOOL_MAX_SHARDS 1024
#define SPOOL_MAX_WORKERS 128
#define SPOOL_GROUP_BUCKETS 10 /* struct spool_shard_stats.groups: 1, 2-3, ..., 512 and more */

struct spool;

struct spool_config {
	const char *dir;
	unsigned shards;
	unsigned workers;   /* worker ids 0 .. workers-1 may submit */
	unsigned ring_size; /* per-shard request ring and per-worker completion ring; power of 2 */
	/* CPUs the committer threads run on; NULL: the affinity of the thread that opens */
	const cpu_set_t *committer_cpus;
	/*
	 * Faults (docs/security.md): a write RocksDB would stall is retried for
	 * stall_timeout_ms, then its messages fail (451) and the shard is
	 * unhealthy; an unhealthy shard is probed every retry_ms and reopened
	 * when a probe fails with space on the disk again.  0: the defaults.
	 */
	unsigned stall_timeout_ms;
	unsigned retry_ms;
	const char *impair; /* tests only: "fail=N" or "stall=MS"; NULL or "": none */
	/*
	 * The format of shards created now (docs/spool-format.md): 1 (0: the
	 * default) keeps bodies in RocksDB; 2 (SPOOL_FORMAT_LOG) in a segment
	 * log per shard of segment_size bytes per file (0: 64 MiB).  A shard
	 * that exists keeps its format.
	 */
	unsigned format;
	uint64_t segment_size;
	/*
	 * How an idle committer learns of a poll-mode worker's request
	 * (docs/design-spool-log.md, "The commit path without sleeping
	 * threads").  0: it sleeps on its eventfd and the worker rings it from
	 * spool_poll(), once per loop iteration and only when the committer
	 * said it sleeps (the doorbell).  Otherwise: the earlier timed polling,
	 * sleeps of 50 us growing to idle_poll_us, never rung; kept to measure
	 * the doorbell against.
	 */
	unsigned idle_poll_us;
	/*
	 * Doorbell only: before it sleeps, an idle committer keeps looking at
	 * its ring this long (spinning, then yielding the CPU between looks),
	 * so a steady light load never has to ring it.  0: it sleeps at once;
	 * what a committer sharing a poll-mode worker's CPU must do, since its
	 * looks would take the CPU from the worker.
	 */
	unsigned linger_us;
};

/*
 * A message handed to the spool.  Everything it points to must stay valid
 * and unchanged until its completion has been received by the worker.
 */
struct spool_message {
	const struct smtp_message *msg;
	uint64_t arrival_us; /* wall clock, microseconds since the epoch */
	void *cookie;        /* returned unchanged in the completion */
};

struct spool_completion {
	void *cookie;
	int status; /* PA_OK: synced in every shard; PA_ERROR: not (451) */
};

/*
 * Opens (creating when absent) every shard, recovers what RocksDB's WAL holds,
 * starts one committer thread per shard.  On failure returns PA_ERROR and
 * writes a message naming the failed call into err.
 */
int spool_open(struct spool **spool, const struct spool_config *config, char *err, size_t errlen);

/* Lets the committers finish every request already submitted, then stops them and closes. */
void spool_close(struct spool *spool);

/* The shard of a recipient: CRC-32C of its lower-cased address, modulo shards. */
unsigned spool_shard_of(unsigned shards, const char *addr, size_t len);

/* The standard CRC-32C (Castagnoli) spool_shard_of() uses; 0xE3069283 for "123456789". */
uint32_t spool_crc32c(const void *data, size_t len);
/* Continues a CRC-32C: spool_crc32c_extend(spool_crc32c(a), b) is the CRC-32C of a then b. */
uint32_t spool_crc32c_extend(uint32_t crc, const void *data, size_t len);

/*
 * A worker that sleeps in the kernel (epoll) gives an eventfd that the
 * committers write to after they queue completions for it; a poll-mode worker
 * gives -1 and polls.  may_syscall: this worker wakes an idle committer with a
 * write to its eventfd at each submit; a poll-mode worker (false) rings it
 * from spool_poll() instead, at most once per call, never in spool_submit().
 */
int spool_attach_worker(struct spool *spool, unsigned worker, int notify_fd, bool may_syscall);

/*
 * Queues one request per shard the message touches.  PA_OK: a completion will
 * come; PA_AGAIN: a ring is full, nothing was queued, retry later; PA_ERROR:
 * the spool is unusable.
 */
int spool_submit(struct spool *spool, unsigned worker, const struct spool_message *message);

/*
 * Takes up to max completions for this worker; returns how many.  Never
 * blocks.  A poll-mode worker calls it once per loop iteration, and it first
 * rings the doorbell of each committer this worker submitted to since the
 * last call that announced it sleeps: one write(2) per such shard, none while
 * the committers are busy, so none per message under load (rule 3).
 */
unsigned spool_poll(struct spool *spool, unsigned worker, struct spool_completion *out,
                    unsigned max);

/* Commit latency and batch statistics of one shard, for stats and benchmarks. */
struct spool_shard_stats {
	uint64_t commits;  /* synced WriteBatches */
	uint64_t messages; /* message copies committed */
	uint64_t failures; /* message copies whose commit failed */
	uint64_t bytes;
	uint64_t stalls;          /* writes that stalled past stall_timeout_ms */
	uint64_t write_errors;    /* writes RocksDB failed */
	uint64_t reopens;         /* times the shard was closed and opened again */
	uint64_t recoveries;      /* times it became healthy again */
	uint64_t streamed;        /* copies pushed on the commit stream (spool_stream_take()) */
	uint64_t stream_overflow; /* committed copies not streamed: stream full */
	uint64_t doorbells;       /* eventfd writes by poll-mode workers to wake this committer */
	/*
	 * Group commits by the number of copies in them: bucket 0 counts groups
	 * of 1, bucket i (0 < i < last) groups of 2^i to 2^(i+1)-1, the last
	 * bucket groups of 2^(SPOOL_GROUP_BUCKETS-1) or more.
	 */
	uint64_t groups[SPOOL_GROUP_BUCKETS];
	bool healthy;
};
void spool_shard_stats(const struct spool *spool, unsigned shard, struct spool_shard_stats *out);

/*
 * A format-2 shard's segment log (all zero for format 1), as the committer's
 * last reclamation pass found it (about once a second): segment files and
 * their allocated bytes (the spare included), the record bytes of the copies
 * still queued, and reclaimable bytes: what the closed segments hold beyond
 * their queued copies.  A closed segment without a queued copy is removed
 * by that pass; reclaimed counts those since the start.
 */
struct spool_log_usage {
	bool log; /* the shard is of format 2 */
	uint64_t segments;
	uint64_t bytes;
	uint64_t live_bytes;
	uint64_t reclaimable_bytes;
	uint64_t reclaimed_segments;
	uint64_t reclaimed_bytes;
	/* the closed segments' files: disk a queued copy keeps until its segment goes */
	uint64_t closed_bytes;
	/* WAL syncs the committer made itself for reclamation (no hand-off sync came in time) */
	uint64_t wal_syncs;
};
void spool_shard_log_usage(const struct spool *spool, unsigned shard, struct spool_log_usage *out);

/*
 * The shard's WAL-sync service: syncs its RocksDB WAL (rocksdb_flush_wal),
 * so what was written to it unsynced (the hand-off's outcomes and deletes,
 * a format-2 committer's index) is durable when it returns PA_OK, and
 * publishes how far that sync reached.  The hand-off's syncer calls it;
 * a format-2 shard's segment reclamation waits for such a sync to cover
 * the deletes it saw instead of syncing on its committer's commit path.
 * Any thread but a poll-mode worker's (it blocks for the fsync).
 */
int spool_shard_sync_wal(struct spool *spool, unsigned shard, char *err, size_t errlen);

/*
 * Health: a shard is unhealthy from a failed or stalled write until a probe
 * write succeeds again.  Both calls are one atomic load: safe on poll-mode
 * cores, which never block or make system calls.  The gate: new connections
 * get 421 while the spool is unhealthy, recipients of an unhealthy shard 451.
 */
bool spool_healthy(const struct spool *spool);
bool spool_shard_healthy(const struct spool *spool, unsigned shard);

/*
 * Backpressure (docs/handoff.md): the hand-off, which knows what is queued,
 * sets a shard's flag while its queue is above spool.high_water or the disk
 * is below spool.min_free, and returns the flag's previous value.  The
 * workers read the flags here, so they never depend on the hand-off: one
 * atomic load each, safe on poll-mode cores.  spool_full(): every shard is
 * full, so new connections are refused.
 */
bool spool_set_backpressure(struct spool *spool, unsigned shard, bool full);
bool spool_shard_full(const struct spool *spool, unsigned shard);
bool spool_full(const struct spool *spool);

/*
 * The commit stream (spool_stream.c): while a consumer (the hand-off) is
 * attached, each committer pushes every copy it committed, after the write
 * that makes it durable and indexed, onto a bounded single-producer,
 * single-consumer ring per shard: the message record as stored and the
 * stored bytes, in memory, so the consumer need not read them back.  The
 * ring holds at most SPOOL_STREAM_RING copies per shard and
 * SPOOL_STREAM_BYTES bytes over all shards; a copy that does not fit is
 * not streamed (counted, spool_shard_stats().stream_overflow): it is on
 * disk like every copy, and the consumer's scan of the schedule finds it.
 *
 * What it promises the consumer, so that its scan never loads a copy the
 * stream hands over as well (docs/handoff.md):
 *  - a copy is pushed only after its index entries are in the shard, and
 *    its schedule entry is due at its sched_us;
 *  - spool_stream_fresh_from(): read it, then take what the ring holds,
 *    then look at the schedule: every entry found with a time before the
 *    value read was either taken from the ring just now (or earlier), or
 *    was never streamed.  Entries at or after it (and not after the
 *    wall clock when looked at) may belong to copies still on their way.
 *  - entries pushed for an earlier attachment are never returned by a
 *    later one: a consumer that stopped leaves them to its successor's scan.
 * Committers never wait for the consumer.
 */
#define SPOOL_STREAM_RING 4096u
#define SPOOL_STREAM_BYTES (64u << 20)

struct spool_stream_copy {
	unsigned shard;
	char queue_id[SMTP_QUEUE_ID_MAX];
	uint64_t sched_us;     /* its schedule entry: every recipient pending, due then */
	const uint8_t *record; /* the message record as stored (spool_record_msg_decode()) */
	size_t record_len;
	const uint8_t *data; /* the stored bytes: Received: header + content */
	size_t size;
	/* The spool's own: */
	uint64_t gen;   /* the attachment it was pushed for */
	uint64_t bytes; /* what it counted against SPOOL_STREAM_BYTES */
};

/*
 * Starts streaming; notify_fd (an eventfd, or -1) is written to after each
 * group that pushed something.  One consumer at a time: PA_ERROR when one
 * is attached.  Detach stops it and frees what the rings still hold; only
 * the consumer's thread may call take, detach and, between them, attach.
 */
int spool_stream_attach(struct spool *spool, int notify_fd);
void spool_stream_detach(struct spool *spool);
/*
 * Takes up to max copies of one shard, oldest first; the caller owns each
 * and frees it with spool_stream_free() (one allocation: free() frees it
 * too, so its address may serve as a struct spool_body's owner).
 */
unsigned spool_stream_take(struct spool *spool, unsigned shard, struct spool_stream_copy **out,
                           unsigned max);
void spool_stream_free(struct spool_stream_copy *copy);
/* UINT64_MAX when no group is being committed now; see above. One atomic load. */
uint64_t spool_stream_fresh_from(const struct spool *spool, unsigned shard);

enum spool_shard_state {
	SPOOL_SHARD_OK,
	SPOOL_SHARD_STALLED, /* RocksDB stalled writes past stall_timeout_ms */
	SPOOL_SHARD_FAILED,  /* a write failed (disk full, I/O error): probed, then reopened */
};
const char *spool_shard_state_name(enum spool_shard_state state);

/* One shard's health for the control socket: state, since when, RocksDB's last error. */
struct spool_shard_health {
	enum spool_shard_state state;
	uint64_t since_us; /* wall clock of the last change */
	char last_error[256];
};
void spool_shard_health(struct spool *spool, unsigned shard, struct spool_shard_health *out);

/* The hand-off state of one recipient of a copy (its delivery record), for listings. */
struct spool_rcpt_state {
	uint8_t state; /* enum spool_delivery_state (spool_record.h): pending, done, failed */
	uint32_t attempts;
	uint64_t next_attempt_us; /* UINT64_MAX: held by the operator */
};

/*
 * Read-only access for pigeonctl while pigeond is stopped: calls fn once per
 * message copy found in each shard, in queue-id order within a shard.
 */
struct spool_entry {
	unsigned shard;
	const char *queue_id;
	const char *mail_from;
	const char *const *rcpts; /* the recipients stored in this shard */
	size_t nrcpt;
	const uint8_t *data; /* the stored message: Received: header + content */
	size_t size;
	uint64_t arrival_us;
	const char *client_addr;
	const char *helo;
	/* nrcpt states, one per recipient; NULL where not read (spool_scan(), spool_scan_id()) */
	const struct spool_rcpt_state *states;
};
typedef int (*spool_scan_fn)(const struct spool_entry *entry, void *arg);
int spool_scan(const char *dir, spool_scan_fn fn, void *arg, char *err, size_t errlen);

/*
 * Like spool_scan() for the copies of one queue id only: in shard `shard`, or
 * in every shard when shard < 0.  Both return PA_OK after visiting everything,
 * fn's return value as soon as fn returns non-zero, or PA_ERROR with a message
 * in err (a shard that cannot be opened or read, a record that does not decode,
 * a message record without its body or a body without its message record).
 * The entry and everything it points to are valid only during the call to fn.
 */
int spool_scan_id(const char *dir, const char *queue_id, int shard, spool_scan_fn fn, void *arg,
                  char *err, size_t errlen);

#endif
