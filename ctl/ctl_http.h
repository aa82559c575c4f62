/*
 * ctl_http.h: the read-only HTTP listener for Prometheus (metrics.listen).
 *
 * A kernel TCP socket on the management network, never the SMTP port: it
 * answers GET /metrics with ctl_metrics_text() and anything else with 404
 * or 405, one request per connection, with a bounded request size.
 */
#ifndef PA_CTL_HTTP_H
#define PA_CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct ctl_env;

#define CTL_HTTP_REQUEST_MAX 8192

/* A listening socket on ADDR:PORT or [ADDR6]:PORT; -1 with err set on failure. */
int ctl_http_listen(const char *listen, char *err, size_t errlen);

/*
 * Whether req (len octets read so far) holds a whole request head; if so
 * *resp is the malloc'ed response to send (NULL when out of memory).
 */
bool ctl_http_respond(const struct ctl_env *env, const char *req, size_t len, char **resp,
                      size_t *resp_len);

#endif
