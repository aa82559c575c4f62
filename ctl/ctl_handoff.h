/*
 * ctl_handoff.h: the control commands that act on the hand-off engine
 * (spool/handoff.h): hold and release a shard's hand-off, retry now, drain.
 *
 * The engine exposes shard-wide operations only, so hold and release take a
 * shard (or every shard), not a message.  drain pauses intake, releases every
 * hold, makes everything due now, and then pigeond exits once the spool is
 * empty (ctl_drain_done(), polled by the server loop).
 */
#ifndef PA_CTL_HANDOFF_H
#define PA_CTL_HANDOFF_H

#include <stdbool.h>

#include "ctl/ctl_commands.h"

int ctl_spool_hold(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                   size_t errlen);
int ctl_spool_release(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                      size_t errlen);
int ctl_spool_retry(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                    size_t errlen);
int ctl_drain(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen);

/* The engine's counters as JSON, or JSON null when it is not running. */
json_t *ctl_handoff_json(const struct ctl_env *env);

/* While draining: whether the spool has nothing left, so that pigeond may exit. */
bool ctl_drain_done(struct ctl_env *env);

#endif
