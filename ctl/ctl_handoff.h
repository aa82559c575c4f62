/*
 * ctl_handoff.h: the control commands that act on the hand-off engine
 * (handoff/handoff.h): hold, release, retry and delete, drain.
 *
 * hold, release, retry and delete take one message ("id", every copy of it
 * or the one in "shard") or the filters of ctl_filter.h (every matching
 * copy, at most "limit").  Without either, hold and release act on whole
 * shards ("shard", else every shard; release also lifts the per-message
 * holds there), retry makes everything due now, and delete refuses unless
 * "all" is true.  drain pauses intake, has the engine release every hold
 * (of shards and of messages, including holds queued but not yet applied:
 * handoff_drain()), makes everything due now, and then pigeond exits once
 * the spool is empty (ctl_drain_done(), polled by the server loop); a hold
 * asked for while draining is refused.
 */
#ifndef PA_CTL_HANDOFF_H
#define PA_CTL_HANDOFF_H

#include <stdbool.h>

#include "ctl/ctl_commands.h"

/* spool.hold, spool.release, spool.retry, spool.delete: the operation is the "cmd". */
int ctl_spool_op(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen);
int ctl_drain(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen);

/* The engine's counters as JSON, or JSON null when it is not running. */
json_t *ctl_handoff_json(const struct ctl_env *env);

/* While draining: whether the spool has nothing left, so that pigeond may exit. */
bool ctl_drain_done(struct ctl_env *env);

#endif
