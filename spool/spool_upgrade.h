/*
 * spool_upgrade.h: converting a stopped spool from format 1 to format 2
 * (`pigeond -U`; docs/spool-format.md, "Upgrading a version-1 spool").
 */
#ifndef SPOOL_UPGRADE_H
#define SPOOL_UPGRADE_H

#include <stdint.h>
#include <stdio.h>

#include "spool/spool.h"

/*
 * Moves every copy's body of every shard of the spool in dir from RocksDB
 * to the shard's segment log (segment_size bytes per file, 0: 64 MiB) and
 * marks the shard format 2; delivery states, holds and schedules are kept.
 * pigeond must be stopped.  A shard already of format 2 has what is left in
 * RocksDB moved (an interrupted run is finished by running it again).
 * Writes one line per shard to report (may be NULL).  PA_ERROR names the
 * shard and the failed call; what was converted stays converted.
 */
int spool_upgrade(const char *dir, unsigned shards, uint64_t segment_size, FILE *report, char *err,
                  size_t errlen);

#endif
