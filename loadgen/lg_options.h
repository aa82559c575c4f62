/*
 * lg_options.h: pigeon-loadgen's command line, parsed once in main() and
 * read-only afterwards (every thread reads it, nobody writes it).
 */
#ifndef LG_OPTIONS_H
#define LG_OPTIONS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define LG_MAX_SOURCES 64
#define LG_MAX_DOMAINS 64
#define LG_MAX_THREADS 64
#define LG_MAX_IP_COUNT 64 /* the stack's DP_MAX_ADDRS (dataplane/dp.h) */
#define LG_MAX_IP6_COUNT 4 /* the stack's DP_MAX_ADDRS6 - 1 (the link-local one) */
#define LG_MAX_SIZE_CLASSES 32
#define LG_MAX_RCPTS 1000

/* One entry of --size-dist: messages of `size` bytes with relative weight. */
struct lg_size_class {
	uint64_t size;
	double weight;
};

/* An IPv4 or IPv6 socket address (sa.sa_family tells). */
union lg_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

/* The length of a's family's sockaddr, as bind() and connect() want it. */
static inline socklen_t
lg_sockaddr_len(const union lg_sockaddr *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->sin6) : sizeof(a->sin);
}

struct lg_options {
	union lg_sockaddr target; /* --target ADDR:PORT or [ADDR6]:PORT */
	unsigned connections;     /* --connections N: concurrent connections, all threads */
	uint64_t messages;        /* --messages N: total message budget; 0: only --duration */
	double duration_s;        /* --duration S; 0: only --messages */
	double timeout_s;         /* --timeout S: hard bound on the whole run */
	double reply_timeout_s;   /* --reply-timeout S: per reply (and per connect) */
	unsigned per_conn;        /* --per-conn N: messages per connection; 0: no limit */
	double rate;              /* --rate N: open loop, messages/s over all threads; 0: closed */

	struct lg_size_class sizes[LG_MAX_SIZE_CLASSES]; /* --size or --size-dist */
	unsigned nsizes;
	unsigned rcpts;                      /* --rcpts N per message */
	const char *domains[LG_MAX_DOMAINS]; /* --domains a,b (points into domains_buf) */
	unsigned ndomains;
	char *domains_buf;
	const char *mail_from; /* --from ADDR */
	const char *helo;      /* --helo NAME */

	bool pipelining;  /* --no-pipelining clears it */
	double tls_share; /* --tls-share F: fraction of sessions doing STARTTLS */
	bool idle;        /* --idle: connect, banner, EHLO, hold until --duration ends */

	bool kernel;          /* --kernel: kernel sockets; otherwise the DPDK stack */
	const char *eal;      /* --eal "EAL ARGS" (DPDK) */
	const char *ip;       /* --ip ADDR/PREFIX (DPDK): our address on the port */
	const char *ip6;      /* --ip6 ADDR6/PREFIX (DPDK): our IPv6 address on the port */
	const char *gateway;  /* --gateway ADDR (DPDK): next hop for IPv4 targets off-link */
	const char *gateway6; /* --gateway ADDR6 (DPDK): the same for IPv6 targets */
	unsigned ip_count;    /* --ip-count N (DPDK): --ip and the N-1 addresses after it */
	unsigned ip6_count;   /* --ip6-count N (DPDK): --ip6 and the N-1 addresses after it */

	union lg_sockaddr sources[LG_MAX_SOURCES]; /* --source ADDR[,ADDR..]: the target's family */
	unsigned nsources;

	unsigned threads;         /* --threads N */
	int cpus[LG_MAX_THREADS]; /* --cpu LIST: thread i pinned to cpus[i % ncpus] */
	unsigned ncpus;

	bool json;  /* --json: one object on stdout at the end */
	bool quiet; /* --quiet: no per-second report */
};

/*
 * Parses argv into *o (defaults first).  Returns 0, 1 after printing --help
 * (exit 0), or -1 after printing the reason to stderr (exit 2).
 */
int lg_options_parse(struct lg_options *o, int argc, char **argv);
void lg_options_free(struct lg_options *o);

/*
 * Parses a size like "4096", "4k", "100KiB", "1M" (k/K/KiB = 1024).
 * Returns 0 or -1.  Exposed for the unit tests.
 */
int lg_parse_size(const char *s, uint64_t *out);

/*
 * Parses --size-dist: comma-separated SIZE:WEIGHT (weight defaults to 1),
 * e.g. "1k:50,4k:30,100k:15,1M:5".  Returns the number of classes or -1.
 */
int lg_parse_size_dist(const char *s, struct lg_size_class *out, unsigned max);

#endif
