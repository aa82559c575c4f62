/*
 * lg_options.c: pigeon-loadgen's command line (lg_options.h).  Every value
 * is checked here, so the transports can trust struct lg_options.
 */
#include "loadgen/lg_options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage[] =
    "usage: pigeon-loadgen --target ADDR:PORT [options]\n"
    "An SMTP load generator: N connections send messages and check every reply.\n"
    "\n"
    "Workload:\n"
    "  --target ADDR:PORT    the SMTP server: IPv4ADDR:PORT or [IPv6ADDR]:PORT\n"
    "  --connections N       concurrent connections over all threads (default 1)\n"
    "  --messages N          messages to send in total (default 1000 without --duration)\n"
    "  --duration S          send for S seconds (fractions allowed), then QUIT\n"
    "  --per-conn N          messages per connection, then QUIT and reconnect (0: no limit)\n"
    "  --rate N              open loop: N messages/s over all connections (default: closed loop)\n"
    "  --size BYTES          message size (default 4096; 4k, 100KiB, 1M accepted)\n"
    "  --size-dist SPEC      sizes with weights: SIZE:WEIGHT,... e.g. 1k:50,4k:30,100k:15,1M:5\n"
    "  --rcpts N             recipients per message (default 1)\n"
    "  --domains A,B         recipient domains, spread evenly (default example.com)\n"
    "  --from ADDR           the envelope sender (default loadgen@example.org)\n"
    "  --helo NAME           the EHLO name (default loadgen.example.org)\n"
    "  --no-pipelining       one command per round trip even when PIPELINING is offered\n"
    "  --tls-share F         fraction 0..1 of sessions that use STARTTLS (default 0)\n"
    "  --idle                open the connections, read the banner, EHLO, hold them for\n"
    "                        --duration (per-connection memory on the server)\n"
    "Bounds:\n"
    "  --timeout S           hard bound on the run (default: duration + 30, or 600)\n"
    "  --reply-timeout S     a connect or reply slower than this fails (default 30)\n"
    "Transport:\n"
    "  --kernel              kernel sockets (any server); otherwise the DPDK stack:\n"
    "  --eal \"ARGS\"          EAL arguments for the DPDK stack\n"
    "  --ip ADDR/PREFIX      our address on the DPDK port (for an IPv4 --target)\n"
    "  --ip6 ADDR/PREFIX     our IPv6 address on the DPDK port (for an IPv6 --target)\n"
    "  --ip-count N          N consecutive addresses from --ip's (default 1; more\n"
    "                        local ports: ~28k per address towards one server port)\n"
    "  --ip6-count N         the same from --ip6's (1..4, default 1)\n"
    "  --gateway ADDR        next hop for a target off the DPDK port's subnet (IPv4\n"
    "                        or IPv6: give it once per family)\n"
    "  --source A[,B..]      local source addresses, used in turn (more ports)\n"
    "  --threads N           load threads (default 1)\n"
    "  --cpu LIST            pin threads to CPUs, e.g. 1 or 0,2 or 2-3\n"
    "Output:\n"
    "  --json                one JSON object on stdout at the end\n"
    "  --quiet               no per-second report on stderr\n";

enum {
	O_TARGET = 256,
	O_CONNECTIONS,
	O_MESSAGES,
	O_DURATION,
	O_PER_CONN,
	O_RATE,
	O_SIZE,
	O_SIZE_DIST,
	O_RCPTS,
	O_DOMAINS,
	O_FROM,
	O_HELO,
	O_NO_PIPELINING,
	O_TLS_SHARE,
	O_IDLE,
	O_TIMEOUT,
	O_REPLY_TIMEOUT,
	O_KERNEL,
	O_EAL,
	O_IP,
	O_IP6,
	O_GATEWAY,
	O_IP_COUNT,
	O_IP6_COUNT,
	O_SOURCE,
	O_THREADS,
	O_CPU,
	O_JSON,
	O_QUIET,
	O_HELP,
};

static const struct option longopts[] = {
    {"target", required_argument, NULL, O_TARGET},
    {"connections", required_argument, NULL, O_CONNECTIONS},
    {"messages", required_argument, NULL, O_MESSAGES},
    {"duration", required_argument, NULL, O_DURATION},
    {"per-conn", required_argument, NULL, O_PER_CONN},
    {"rate", required_argument, NULL, O_RATE},
    {"size", required_argument, NULL, O_SIZE},
    {"size-dist", required_argument, NULL, O_SIZE_DIST},
    {"rcpts", required_argument, NULL, O_RCPTS},
    {"domains", required_argument, NULL, O_DOMAINS},
    {"from", required_argument, NULL, O_FROM},
    {"helo", required_argument, NULL, O_HELO},
    {"no-pipelining", no_argument, NULL, O_NO_PIPELINING},
    {"tls-share", required_argument, NULL, O_TLS_SHARE},
    {"idle", no_argument, NULL, O_IDLE},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"reply-timeout", required_argument, NULL, O_REPLY_TIMEOUT},
    {"kernel", no_argument, NULL, O_KERNEL},
    {"eal", required_argument, NULL, O_EAL},
    {"ip", required_argument, NULL, O_IP},
    {"ip6", required_argument, NULL, O_IP6},
    {"gateway", required_argument, NULL, O_GATEWAY},
    {"ip-count", required_argument, NULL, O_IP_COUNT},
    {"ip6-count", required_argument, NULL, O_IP6_COUNT},
    {"source", required_argument, NULL, O_SOURCE},
    {"threads", required_argument, NULL, O_THREADS},
    {"cpu", required_argument, NULL, O_CPU},
    {"json", no_argument, NULL, O_JSON},
    {"quiet", no_argument, NULL, O_QUIET},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static int
bad(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "pigeon-loadgen: --%s %s: %s\n", opt, val, why);
	return -1;
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s == '\0' || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	uint64_t v;

	if (parse_u64(s, &v) == -1 || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int
parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || errno != 0 || *end != '\0' || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

int
lg_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0 || strcasecmp(end, "kb") == 0)
		mult = 1024;
	else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0 ||
	         strcasecmp(end, "mb") == 0)
		mult = 1024 * 1024;
	else if (*end != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int
lg_parse_size_dist(const char *spec, struct lg_size_class *out, unsigned max)
{
	char *copy = strdup(spec), *save = NULL, *tok;
	int n = 0;

	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		double w = 1;

		if ((unsigned)n >= max)
			goto fail;
		if (colon != NULL) {
			*colon = '\0';
			if (parse_double(colon + 1, 0, 1e12, &w) == -1 || w <= 0)
				goto fail;
		}
		if (lg_parse_size(tok, &out[n].size) == -1)
			goto fail;
		out[n].weight = w;
		n++;
	}
	free(copy);
	return n > 0 ? n : -1;
fail:
	free(copy);
	return -1;
}

/* An IPv4 or IPv6 address (no brackets) into a, port 0. */
static int
parse_addr(const char *host, union lg_sockaddr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, &a->sin.sin_addr) == 1) {
		a->sin.sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a->sin6.sin6_addr) == 1) {
		a->sin6.sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

/* IPv4ADDR:PORT or [IPv6ADDR]:PORT (RFC 3986 3.2.2's brackets). */
static int
parse_target(const char *s, union lg_sockaddr *a)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon = strrchr(s, ':'), *h = s, *end = colon;
	unsigned port;

	if (colon == NULL)
		return -1;
	if (*s == '[') {
		h = s + 1;
		end = colon - 1;
		if (end < h || *end != ']')
			return -1;
	}
	if ((size_t)(end - h) >= sizeof(host))
		return -1;
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = '\0';
	/* An IPv6 address has colons of its own: only in brackets. */
	if (parse_addr(host, a) == -1 || (a->sa.sa_family == AF_INET6) != (*s == '['))
		return -1;
	if (parse_uint(colon + 1, 1, 65535, &port) == -1)
		return -1;
	if (a->sa.sa_family == AF_INET6)
		a->sin6.sin6_port = htons((uint16_t)port);
	else
		a->sin.sin_port = htons((uint16_t)port);
	return 0;
}

static int
parse_sources(const char *s, struct lg_options *o)
{
	char *copy = strdup(s), *save = NULL, *tok;

	if (copy == NULL)
		return -1;
	o->nsources = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (o->nsources >= LG_MAX_SOURCES ||
		    parse_addr(tok, &o->sources[o->nsources]) == -1) {
			free(copy);
			return -1;
		}
		o->nsources++;
	}
	free(copy);
	return o->nsources > 0 ? 0 : -1;
}

/* "1", "0,2", "2-3", "0-1,4": a list of CPU numbers. */
static int
parse_cpus(const char *s, struct lg_options *o)
{
	char *copy = strdup(s), *save = NULL, *tok;

	if (copy == NULL)
		return -1;
	o->ncpus = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		unsigned lo, hi;

		if (dash != NULL)
			*dash = '\0';
		if (parse_uint(tok, 0, 4095, &lo) == -1 ||
		    (dash != NULL ? parse_uint(dash + 1, lo, 4095, &hi) : (hi = lo, 0)) == -1)
			goto fail;
		for (unsigned c = lo; c <= hi; c++) {
			if (o->ncpus >= LG_MAX_THREADS)
				goto fail;
			o->cpus[o->ncpus++] = (int)c;
		}
	}
	free(copy);
	return o->ncpus > 0 ? 0 : -1;
fail:
	free(copy);
	return -1;
}

static int
parse_domains(const char *s, struct lg_options *o)
{
	char *save = NULL, *tok;

	free(o->domains_buf);
	o->domains_buf = strdup(s);
	if (o->domains_buf == NULL)
		return -1;
	o->ndomains = 0;
	for (tok = strtok_r(o->domains_buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (o->ndomains >= LG_MAX_DOMAINS || strlen(tok) > 200 ||
		    strpbrk(tok, "<>@ \t\r\n") != NULL)
			return -1;
		o->domains[o->ndomains++] = tok;
	}
	return o->ndomains > 0 ? 0 : -1;
}

static bool
safe_word(const char *s, size_t max)
{
	return strlen(s) <= max && strpbrk(s, "<> \t\r\n") == NULL;
}

int
lg_options_parse(struct lg_options *o, int argc, char **argv)
{
	bool have_target = false, have_timeout = false;
	const char *size_arg = NULL, *dist_arg = NULL;
	int c;

	memset(o, 0, sizeof(*o));
	o->connections = 1;
	o->reply_timeout_s = 30;
	o->rcpts = 1;
	o->mail_from = "loadgen@example.org";
	o->helo = "loadgen.example.org";
	o->pipelining = true;
	o->threads = 1;
	o->ip_count = 1;
	o->ip6_count = 1;
	o->domains[0] = "example.com";
	o->ndomains = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_TARGET:
			if (parse_target(optarg, &o->target) == -1)
				return bad("target", optarg,
				           "want IPv4ADDR:PORT or [IPv6ADDR]:PORT");
			have_target = true;
			break;
		case O_CONNECTIONS:
			if (parse_uint(optarg, 1, 10000000, &o->connections) == -1)
				return bad("connections", optarg, "want 1..10000000");
			break;
		case O_MESSAGES:
			if (parse_u64(optarg, &o->messages) == -1 || o->messages == 0)
				return bad("messages", optarg, "want a positive count");
			break;
		case O_DURATION:
			if (parse_double(optarg, 0.001, 1e7, &o->duration_s) == -1)
				return bad("duration", optarg, "want seconds > 0");
			break;
		case O_PER_CONN:
			if (parse_uint(optarg, 0, 1u << 30, &o->per_conn) == -1)
				return bad("per-conn", optarg, "want a count (0: no limit)");
			break;
		case O_RATE:
			if (parse_double(optarg, 0.001, 1e9, &o->rate) == -1)
				return bad("rate", optarg, "want messages/s > 0");
			break;
		case O_SIZE:
			size_arg = optarg;
			break;
		case O_SIZE_DIST:
			dist_arg = optarg;
			break;
		case O_RCPTS:
			if (parse_uint(optarg, 1, LG_MAX_RCPTS, &o->rcpts) == -1)
				return bad("rcpts", optarg, "want 1..1000");
			break;
		case O_DOMAINS:
			if (parse_domains(optarg, o) == -1)
				return bad("domains", optarg,
				           "want DOMAIN[,DOMAIN..] (at most 64)");
			break;
		case O_FROM:
			if (!safe_word(optarg, 254))
				return bad("from", optarg, "want an address without <>, spaces");
			o->mail_from = optarg;
			break;
		case O_HELO:
			if (*optarg == '\0' || !safe_word(optarg, 255))
				return bad("helo", optarg, "want a host name");
			o->helo = optarg;
			break;
		case O_NO_PIPELINING:
			o->pipelining = false;
			break;
		case O_TLS_SHARE:
			if (parse_double(optarg, 0, 1, &o->tls_share) == -1)
				return bad("tls-share", optarg, "want a fraction 0..1");
			break;
		case O_IDLE:
			o->idle = true;
			break;
		case O_TIMEOUT:
			if (parse_double(optarg, 0.001, 1e7, &o->timeout_s) == -1)
				return bad("timeout", optarg, "want seconds > 0");
			have_timeout = true;
			break;
		case O_REPLY_TIMEOUT:
			if (parse_double(optarg, 0.001, 1e6, &o->reply_timeout_s) == -1)
				return bad("reply-timeout", optarg, "want seconds > 0");
			break;
		case O_KERNEL:
			o->kernel = true;
			break;
		case O_EAL:
			o->eal = optarg;
			break;
		case O_IP:
			o->ip = optarg;
			break;
		case O_IP6:
			o->ip6 = optarg;
			break;
		case O_GATEWAY:
			/* Once per family: an IPv6 address is the one with colons. */
			if (strchr(optarg, ':') != NULL)
				o->gateway6 = optarg;
			else
				o->gateway = optarg;
			break;
		case O_IP_COUNT:
			if (parse_uint(optarg, 1, LG_MAX_IP_COUNT, &o->ip_count) == -1)
				return bad("ip-count", optarg, "want 1..64");
			break;
		case O_IP6_COUNT:
			if (parse_uint(optarg, 1, LG_MAX_IP6_COUNT, &o->ip6_count) == -1)
				return bad("ip6-count", optarg, "want 1..4");
			break;
		case O_SOURCE:
			if (parse_sources(optarg, o) == -1)
				return bad("source", optarg, "want ADDR[,ADDR..] (at most 64)");
			break;
		case O_THREADS:
			if (parse_uint(optarg, 1, LG_MAX_THREADS, &o->threads) == -1)
				return bad("threads", optarg, "want 1..64");
			break;
		case O_CPU:
			if (parse_cpus(optarg, o) == -1)
				return bad("cpu", optarg,
				           "want a CPU list such as 1 or 0,2 or 2-3");
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_HELP:
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pigeon-loadgen: unexpected argument %s\n", argv[optind]);
		return -1;
	}
	if (!have_target) {
		fputs("pigeon-loadgen: --target ADDR:PORT is required\n", stderr);
		fputs(usage, stderr);
		return -1;
	}
	if (size_arg != NULL && dist_arg != NULL) {
		fputs("pigeon-loadgen: --size and --size-dist exclude each other\n", stderr);
		return -1;
	}
	if (dist_arg != NULL) {
		int n = lg_parse_size_dist(dist_arg, o->sizes, LG_MAX_SIZE_CLASSES);

		if (n == -1)
			return bad("size-dist", dist_arg, "want SIZE[:WEIGHT][,SIZE[:WEIGHT]..]");
		o->nsizes = (unsigned)n;
	} else {
		uint64_t size = 4096;

		if (size_arg != NULL && lg_parse_size(size_arg, &size) == -1)
			return bad("size", size_arg, "want BYTES (or 4k, 100KiB, 1M)");
		o->sizes[0].size = size;
		o->sizes[0].weight = 1;
		o->nsizes = 1;
	}
	for (unsigned i = 0; i < o->nsizes; i++)
		if (o->sizes[i].size > 256u * 1024 * 1024) {
			fputs("pigeon-loadgen: a message size above 256 MiB\n", stderr);
			return -1;
		}
	if (o->idle && o->duration_s == 0) {
		fputs("pigeon-loadgen: --idle needs --duration (how long to hold)\n", stderr);
		return -1;
	}
	if (o->messages == 0 && o->duration_s == 0)
		o->messages = 1000; /* always bounded, even when told nothing */
	if (o->threads > o->connections)
		o->threads = o->connections;
	if (!have_timeout)
		o->timeout_s = o->duration_s > 0 ? o->duration_s + 30 : 600;
	for (unsigned i = 0; i < o->nsources; i++)
		if (o->sources[i].sa.sa_family != o->target.sa.sa_family) {
			fputs("pigeon-loadgen: --source addresses must be of --target's family\n",
			      stderr);
			return -1;
		}
	if (!o->kernel && o->target.sa.sa_family == AF_INET6 && o->ip6 == NULL) {
		fputs(
		    "pigeon-loadgen: an IPv6 --target needs --ip6 ADDR/PREFIX on the DPDK stack\n",
		    stderr);
		return -1;
	}
	/* IPv6 only needs no IPv4 address: the stack then has none. */
	if (!o->kernel && (o->eal == NULL || (o->ip == NULL && o->ip6 == NULL))) {
		fputs("pigeon-loadgen: the DPDK stack needs --eal \"ARGS\" and --ip ADDR/PREFIX "
		      "or --ip6 ADDR6/PREFIX (or use --kernel)\n",
		      stderr);
		return -1;
	}
	if (!o->kernel && o->target.sa.sa_family == AF_INET && o->ip == NULL) {
		fputs("pigeon-loadgen: an IPv4 --target needs --ip ADDR/PREFIX on the DPDK stack\n",
		      stderr);
		return -1;
	}
	return 0;
}

void
lg_options_free(struct lg_options *o)
{
	free(o->domains_buf);
	o->domains_buf = NULL;
}
