/*
 * ctl_spool.h: the control socket's read-only spool commands (summary, ls,
 * show), run in pigeond on the open spool through spool_iter.h.
 *
 * What they promise: they only read; ls returns at most `limit` entries
 * (CTL_LS_LIMIT_MAX at most) and says when it stopped early; show returns the
 * stored bytes unchanged, base64-encoded, up to CTL_SHOW_MAX.
 */
#ifndef PA_CTL_SPOOL_H
#define PA_CTL_SPOOL_H

#include "ctl/ctl_commands.h"

#define CTL_LS_LIMIT_DEFAULT 1000
#define CTL_LS_LIMIT_MAX 100000
#define CTL_SHOW_MAX (64u << 20)

int ctl_spool_summary(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                      size_t errlen);
int ctl_spool_ls(struct ctl_env *env, const json_t *req, json_t **result, char *err, size_t errlen);
int ctl_spool_show(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                   size_t errlen);

#endif
