/*
 * ctl_client.h: pigeonctl's side of the control protocol: one request, one
 * reply, over pigeond's Unix socket.
 */
#ifndef PA_CTL_CLIENT_H
#define PA_CTL_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#define CTL_CLIENT_TIMEOUT_MS 120000
#define CTL_REPLY_MAX (512u << 20) /* a spool show of the largest message, base64 */

/*
 * Sends request (a JSON object) to the socket at path and reads one reply
 * line.  PA_OK with *reply set (the whole {"ok":...} object, a new
 * reference), or PA_ERROR with err naming the failed call and the path.
 */
int ctl_client_call(const char *path, const json_t *request, json_t **reply, char *err,
                    size_t errlen);

#endif
