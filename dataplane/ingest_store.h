/*
 * ingest_store.h: where the ingest host hands finished messages.
 *
 * In pigeond this is always the spool (ingest_store_spool()): RocksDB shards,
 * a completion only after the sync.  The seam exists so that a benchmark can
 * run the real stack and engine against a store of its own (perf/bench-stack.c
 * completes every message at once, as if synced) without a conditional in
 * the hot path: ingest.c calls through these pointers whatever the store is.
 *
 * The contract is spool.h's: submit() never blocks and returns PA_OK (a
 * completion will come, with the message's cookie), PA_AGAIN (full: nothing
 * taken, retry later) or PA_ERROR; poll() never blocks and returns the
 * completions ready for that worker; attach() once per worker before it runs.
 */
#ifndef PA_INGEST_STORE_H
#define PA_INGEST_STORE_H

#include <stdbool.h>

#include "spool/spool.h"

struct ingest_store {
	void *ctx;
	int (*attach)(void *ctx, unsigned worker, int notify_fd, bool may_syscall);
	int (*submit)(void *ctx, unsigned worker, const struct spool_message *message);
	unsigned (*poll)(void *ctx, unsigned worker, struct spool_completion *out, unsigned max);
};

/* The spool as the store: what pigeond uses. */
void ingest_store_spool(struct ingest_store *store, struct spool *spool);

#endif
