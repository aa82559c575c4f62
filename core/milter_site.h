/*
 * milter_site.h: the content filters of milter.servers (docs/milter.md), in
 * the order they are asked:
 *
 *     inet:HOST:PORT[{OPTION=VALUE ...}], inet:[IPv6]:PORT[{...}], unix:PATH[{...}]
 *
 * HOST is an IPv4 address or a host name, resolved here with getaddrinfo(3)
 * (its first address): this runs where the configuration is loaded (start,
 * reload, pigeond -t), never on the filter thread or a worker, and a name
 * that does not resolve refuses the configuration.  PATH is absolute, its
 * directory exists, and what is there, if anything, is a socket (the filter
 * may start after pigeond).  Options: timeout (milliseconds, for the
 * connection and for each reply), default_action (accept or tempfail: what
 * a message gets when the filter cannot be asked or fails), connections
 * (the most kept open to it: the messages it filters at once).  Each
 * defaults to milter.timeout, milter.default_action, milter.connections.
 * No allocation: the configuration refuses a bad list naming the entry.
 */
#ifndef PA_MILTER_SITE_H
#define PA_MILTER_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MILTER_SITES_MAX 8
#define MILTER_SITE_NAME_MAX 128

struct milter_site {
	char name[MILTER_SITE_NAME_MAX]; /* as written, without the options: for logs */
	int family;                      /* AF_INET, AF_INET6 or AF_UNIX */
	struct sockaddr_storage sa;      /* as connect(2) takes it, made once */
	socklen_t salen;
	uint16_t port;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	unsigned timeout_ms;
	bool tempfail; /* default_action=tempfail */
	unsigned connections;
};

/* The defaults an entry's options override. */
struct milter_site_defaults {
	unsigned timeout_ms;
	bool tempfail;
	unsigned connections;
};

/*
 * Parses the comma-separated list into sites[0..*n) (at most
 * MILTER_SITES_MAX).  PA_ERROR with err naming the entry and what is wrong.
 */
int milter_sites_parse(const char *list, const struct milter_site_defaults *defaults,
                       struct milter_site *sites, unsigned *n, char *err, size_t errlen);

#endif
