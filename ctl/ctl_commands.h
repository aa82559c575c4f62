/*
 * ctl_commands.h: the control socket's commands, one handler per name.
 *
 * A request is one JSON object with a "cmd" member and the command's
 * arguments beside it, e.g. {"cmd":"spool.show","id":"..."}; the reply is
 * {"ok":true,"result":{...}} or {"ok":false,"error":"..."}.  Both are built
 * and parsed with jansson.  Handlers run on the main lcore; they read the
 * workers' counters racily (word-sized) and never block a worker.
 */
#ifndef PA_CTL_COMMANDS_H
#define PA_CTL_COMMANDS_H

#include <jansson.h>

struct ctl_env;

#define CTL_ERR_MAX 512

/*
 * One command: PA_OK with *result set (a new reference), or PA_ERROR with the
 * reason in err.  req is the whole request object.
 */
typedef int (*ctl_handler)(struct ctl_env *env, const json_t *req, json_t **result, char *err,
                           size_t errlen);

/* The reply to one request (a new reference; never NULL but when out of memory). */
json_t *ctl_dispatch(struct ctl_env *env, const json_t *request);

/* A reply {"ok":false,"error":msg}. */
json_t *ctl_error_reply(const char *msg);

#endif
