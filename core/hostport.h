/*
 * hostport.h: a network endpoint as configuration writes it, HOST:PORT or
 * [IPv6]:PORT, parsed in one place for every key and map that takes one
 * (listen, milter.servers, the relay route map).
 *
 * pa_parse_hostport() and pa_hostport_numeric() are pure: no allocation, no
 * system call.  pa_hostport_resolve() asks getaddrinfo(3) and may block for
 * the resolver's timeouts: configuration load and reload only, never a
 * worker or a service thread.
 */
#ifndef PA_HOSTPORT_H
#define PA_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PA_HOST_MAX 253 /* a DNS name's longest text form (RFC 1035 2.3.4) */

struct pa_hostport {
	char host[PA_HOST_MAX + 1]; /* without the brackets */
	uint16_t port;              /* 1..65535 */
	bool bracketed;             /* [IPv6]:PORT */
};

/*
 * s[0..len): HOST:PORT or [HOST]:PORT.  PA_ERROR, with err quoting what is
 * wrong, when there is no port 1..65535 or no host.
 */
int pa_parse_hostport(const char *s, size_t len, struct pa_hostport *hp, char *err, size_t errlen);

/*
 * An IPv4 address, or a bracketed IPv6 one, as connect(2) takes it.
 * PA_ERROR (err naming the host) for anything else: a name among them.
 */
int pa_hostport_numeric(const struct pa_hostport *hp, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen);

/*
 * As pa_hostport_numeric(), and a host name is resolved: its first
 * address for a stream socket, IPv4 or IPv6.  Blocks (see above).
 */
int pa_hostport_resolve(const struct pa_hostport *hp, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen);

#endif
