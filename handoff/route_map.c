/*
 * route_map.c: the route-map parser and lookup (route_map.h).
 *
 * What it promises: input is hostile.  Lines are bounded (ROUTE_LINE_MAX),
 * a NUL byte anywhere refuses the map, numbers are parsed digit by digit with
 * range checks, hosts must be numeric addresses (the hand-off thread never
 * waits for DNS), and the first error stops parsing with the line number in
 * the message.  Nothing is half-applied: a map is built privately and handed
 * out only when every line parsed.
 */
#include "handoff/route_map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/domain.h"
#include "core/hostport.h"
#include "core/pa.h"
#include "core/read_file.h"

/* One override: a lower-cased domain or address and its destination. */
struct route_entry {
	char *name;
	unsigned line;
	struct route_dest dest;
};

struct route_map {
	unsigned shards;
	struct route_dest **by_shard;   /* shards entries, NULL: not named */
	unsigned *shard_line;           /* where each shard was assigned, for duplicate errors */
	struct route_dest *shard_dests; /* owned storage the by_shard pointers point into */
	size_t nshard_dests;
	struct route_entry *domains; /* sorted by name */
	size_t ndomains;
	struct route_entry *addresses; /* sorted by name */
	size_t naddresses;
	bool has_default;
	struct route_dest default_dest;
	char store_route[ROUTE_STORE_TEMPLATE_MAX + 1]; /* "": none */
};

static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Decimal digits only, no sign, no overflow; the whole [s, s+len) must be digits. */
static bool
parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* HOST:PORT[/PRIO] with HOST an IPv4 address or [IPv6] (core/hostport.h). */
static int
parse_host(const char *s, size_t len, struct route_host *h, char *err, size_t errlen)
{
	const char *slash = memchr(s, '/', len);
	size_t hlen = slash != NULL ? (size_t)(slash - s) : len;
	unsigned long prio = 0;
	struct pa_hostport hp;

	if (slash != NULL && !parse_uint(slash + 1, len - hlen - 1, 65535, &prio)) {
		snprintf(err, errlen, "priority of '%.*s' is not 0..65535",
		         (int)(len > 80 ? 80 : len), s);
		return PA_ERROR;
	}
	if (pa_parse_hostport(s, hlen, &hp, err, errlen) != PA_OK ||
	    pa_hostport_numeric(&hp, &h->addr, &h->addrlen, err, errlen) != PA_OK)
		return PA_ERROR;
	h->priority = (unsigned)prio;
	snprintf(h->name, sizeof(h->name), "%.*s", (int)(hlen > 63 ? 63 : hlen), s);
	return PA_OK;
}

int
route_dest_parse(const char *text, size_t len, struct route_dest *out, char *err, size_t errlen)
{
	struct route_dest d;
	const char *p, *end = text + len;
	size_t klen;

	memset(&d, 0, sizeof(d));
	if (len >= 5 && memcmp(text, "smtp:", 5) == 0) {
		d.proto = ROUTE_SMTP;
	} else if (len >= 5 && memcmp(text, "lmtp:", 5) == 0) {
		d.proto = ROUTE_LMTP;
	} else {
		snprintf(err, errlen, "destination '%.*s' does not start with smtp: or lmtp:",
		         (int)(len > 80 ? 80 : len), text);
		return PA_ERROR;
	}
	p = text + 5;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma != NULL ? comma : end;

		if (d.nhosts == ROUTE_HOSTS_MAX) {
			snprintf(err, errlen, "more than %d hosts in one destination",
			         ROUTE_HOSTS_MAX);
			return PA_ERROR;
		}
		if (parse_host(p, (size_t)(stop - p), &d.hosts[d.nhosts], err, errlen) != PA_OK)
			return PA_ERROR;
		d.nhosts++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	/* Insertion sort: stable, so equal priorities keep the order written. */
	for (unsigned i = 1; i < d.nhosts; i++) {
		struct route_host h = d.hosts[i];
		unsigned j = i;

		while (j > 0 && d.hosts[j - 1].priority > h.priority) {
			d.hosts[j] = d.hosts[j - 1];
			j--;
		}
		d.hosts[j] = h;
	}
	klen =
	    (size_t)snprintf(d.key, sizeof(d.key), "%s:", d.proto == ROUTE_SMTP ? "smtp" : "lmtp");
	for (unsigned i = 0; i < d.nhosts && klen < sizeof(d.key); i++)
		klen += (size_t)snprintf(d.key + klen, sizeof(d.key) - klen, "%s%s/%u",
		                         i > 0 ? "," : "", d.hosts[i].name, d.hosts[i].priority);
	*out = d;
	return PA_OK;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct route_entry *)a)->name, ((const struct route_entry *)b)->name);
}

void
route_map_free(struct route_map *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->ndomains; i++)
		free(m->domains[i].name);
	for (size_t i = 0; i < m->naddresses; i++)
		free(m->addresses[i].name);
	free(m->domains);
	free(m->addresses);
	free(m->by_shard);
	free(m->shard_line);
	free(m->shard_dests);
	free(m);
}

/* Splits a line into at most 3 words separated by blanks; returns the count, 4 for more. */
static unsigned
split_words(char *line, char *words[3])
{
	unsigned n = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			return n;
		if (n == 3)
			return 4;
		words[n++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		if (*p == '\0')
			return n;
		*p++ = '\0';
	}
}

/*
 * Recipients are stored with their domain in its canonical form, A-labels
 * (core/domain.h; docs/spool-format.md): a domain written with U-labels,
 * the part of text from `from` on, is matched in that form.  Writes text,
 * so converted, to out; ASCII is copied as it is (add_entry lower-cases).
 */
static int
utf8_domain_canonical(const char *text, size_t from, char *out, size_t outlen)
{
	char domain[PA_DOMAIN_MAX + 1];
	size_t len = strlen(text);

	if (!pa_domain_is_utf8(text + from, len - from)) {
		if (len >= outlen)
			return PA_ERROR;
		memcpy(out, text, len + 1);
		return PA_OK;
	}
	if (pa_domain_canonical(text + from, len - from, domain, 0) < 0 ||
	    from + strlen(domain) >= outlen)
		return PA_ERROR;
	memcpy(out, text, from);
	memcpy(out + from, domain, strlen(domain) + 1);
	return PA_OK;
}

static int
add_entry(struct route_entry **arr, size_t *n, const char *name, unsigned line,
          const struct route_dest *d)
{
	struct route_entry *grown;

	if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow at powers of two */
		grown = realloc(*arr, (*n == 0 ? 1 : 2 * *n) * sizeof(**arr));
		if (grown == NULL)
			return PA_ERROR;
		*arr = grown;
	}
	(*arr)[*n].name = strdup(name);
	if ((*arr)[*n].name == NULL)
		return PA_ERROR;
	lower((*arr)[*n].name);
	(*arr)[*n].line = line;
	(*arr)[*n].dest = *d;
	(*n)++;
	return PA_OK;
}

/* "N" or "A-B" within 0..shards-1. */
static bool
parse_range(const char *s, unsigned shards, unsigned long *a, unsigned long *b)
{
	const char *dash = strchr(s, '-');

	if (dash == NULL) {
		if (!parse_uint(s, strlen(s), shards - 1, a))
			return false;
		*b = *a;
		return true;
	}
	return parse_uint(s, (size_t)(dash - s), shards - 1, a) &&
	       parse_uint(dash + 1, strlen(dash + 1), shards - 1, b) && *a <= *b;
}

static int
parse_line(struct route_map *m, char *line, unsigned lineno, char *err, size_t errlen)
{
	char *w[3];
	char derr[256], name[400]; /* a domain or address, U-labels converted */
	unsigned n = split_words(line, w);
	struct route_dest d;
	unsigned long a, b;

	if (n == 0)
		return PA_OK;
	if (n != 3) {
		snprintf(err, errlen, "line %u: expected 'shards|domain|address WHAT DESTINATION'",
		         lineno);
		return PA_ERROR;
	}
	if (route_dest_parse(w[2], strlen(w[2]), &d, derr, sizeof(derr)) != PA_OK) {
		snprintf(err, errlen, "line %u: %s", lineno, derr);
		return PA_ERROR;
	}
	if (strcmp(w[0], "shards") == 0 || strcmp(w[0], "shard") == 0) {
		if (!parse_range(w[1], m->shards, &a, &b)) {
			snprintf(err, errlen,
			         "line %u: '%.40s' is not a shard or range within 0-%u", lineno,
			         w[1], m->shards - 1);
			return PA_ERROR;
		}
		for (unsigned long s = a; s <= b; s++)
			if (m->shard_line[s] != 0) {
				snprintf(err, errlen,
				         "line %u: shard %lu is already routed on line %u", lineno,
				         s, m->shard_line[s]);
				return PA_ERROR;
			}
		m->shard_dests[m->nshard_dests] = d;
		for (unsigned long s = a; s <= b; s++) {
			m->by_shard[s] = &m->shard_dests[m->nshard_dests];
			m->shard_line[s] = lineno;
		}
		m->nshard_dests++;
		return PA_OK;
	}
	if (strcmp(w[0], "domain") == 0) {
		if (strchr(w[1], '@') != NULL || w[1][0] == '.' || strlen(w[1]) > 253 ||
		    utf8_domain_canonical(w[1], 0, name, sizeof(name)) != PA_OK) {
			snprintf(err, errlen, "line %u: '%.40s' is not a domain", lineno, w[1]);
			return PA_ERROR;
		}
		if (add_entry(&m->domains, &m->ndomains, name, lineno, &d) != PA_OK) {
			snprintf(err, errlen, "line %u: out of memory", lineno);
			return PA_ERROR;
		}
		return PA_OK;
	}
	if (strcmp(w[0], "address") == 0) {
		const char *at = strrchr(w[1], '@');

		if (at == NULL || at == w[1] || at[1] == '\0' || strlen(w[1]) > 320 ||
		    utf8_domain_canonical(w[1], (size_t)(at + 1 - w[1]), name, sizeof(name)) !=
		        PA_OK) {
			snprintf(err, errlen, "line %u: '%.40s' is not an address", lineno, w[1]);
			return PA_ERROR;
		}
		if (add_entry(&m->addresses, &m->naddresses, name, lineno, &d) != PA_OK) {
			snprintf(err, errlen, "line %u: out of memory", lineno);
			return PA_ERROR;
		}
		return PA_OK;
	}
	snprintf(err, errlen, "line %u: unknown keyword '%.20s' (shards, domain or address)",
	         lineno, w[0]);
	return PA_ERROR;
}

/* Sorted, then a duplicate name is an error naming both lines. */
static int
sort_entries(struct route_entry *arr, size_t n, const char *what, char *err, size_t errlen)
{
	if (n == 0)
		return PA_OK; /* arr may be NULL, which qsort must not get */
	qsort(arr, n, sizeof(*arr), entry_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(arr[i - 1].name, arr[i].name) == 0) {
			unsigned l1 = arr[i - 1].line, l2 = arr[i].line;

			snprintf(err, errlen, "line %u: %s %.60s is already routed on line %u",
			         l1 > l2 ? l1 : l2, what, arr[i].name, l1 > l2 ? l2 : l1);
			return PA_ERROR;
		}
	return PA_OK;
}

static int
parse_all(struct route_map *m, const char *text, size_t len, char *err, size_t errlen)
{
	char line[ROUTE_LINE_MAX + 1];
	size_t pos = 0;
	unsigned lineno = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t llen = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;

		lineno++;
		if (llen > ROUTE_LINE_MAX) {
			snprintf(err, errlen, "line %u: longer than %d octets", lineno,
			         ROUTE_LINE_MAX);
			return PA_ERROR;
		}
		memcpy(line, text + pos, llen);
		line[llen] = '\0';
		if (memchr(line, '\0', llen) != NULL) {
			snprintf(err, errlen, "line %u: contains a NUL byte", lineno);
			return PA_ERROR;
		}
		if (llen > 0 && line[llen - 1] == '\r')
			line[llen - 1] = '\0';
		if (parse_line(m, line, lineno, err, errlen) != PA_OK)
			return PA_ERROR;
		pos += llen + (nl != NULL ? 1 : 0);
	}
	if (sort_entries(m->domains, m->ndomains, "domain", err, errlen) != PA_OK ||
	    sort_entries(m->addresses, m->naddresses, "address", err, errlen) != PA_OK)
		return PA_ERROR;
	return PA_OK;
}

int
route_map_parse(const char *text, size_t len, unsigned shards, const char *default_dest,
                struct route_map **out, char *err, size_t errlen)
{
	struct route_map *m;
	char derr[256];

	if (shards == 0) {
		snprintf(err, errlen, "route map: no shards");
		return PA_ERROR;
	}
	m = calloc(1, sizeof(*m));
	if (m != NULL) {
		m->shards = shards;
		m->by_shard = calloc(shards, sizeof(*m->by_shard));
		m->shard_line = calloc(shards, sizeof(*m->shard_line));
		/* At most one destination per shard line, and a line names at least one shard. */
		m->shard_dests = calloc(shards, sizeof(*m->shard_dests));
	}
	if (m == NULL || m->by_shard == NULL || m->shard_line == NULL || m->shard_dests == NULL) {
		snprintf(err, errlen, "route map: out of memory");
		route_map_free(m);
		return PA_ERROR;
	}
	if (default_dest != NULL && default_dest[0] != '\0') {
		if (route_dest_parse(default_dest, strlen(default_dest), &m->default_dest, derr,
		                     sizeof(derr)) != PA_OK) {
			snprintf(err, errlen, "relay.default: %s", derr);
			route_map_free(m);
			return PA_ERROR;
		}
		m->has_default = true;
	}
	if (parse_all(m, text, len, err, errlen) != PA_OK) {
		route_map_free(m);
		return PA_ERROR;
	}
	*out = m;
	return PA_OK;
}

int
route_map_load(const char *path, unsigned shards, const char *default_dest, struct route_map **out,
               char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int rc;
	char perr[400];

	if (path == NULL || path[0] == '\0')
		return route_map_parse("", 0, shards, default_dest, out, err, errlen);
	if (pa_read_file(path, ROUTE_FILE_MAX, &buf, &len, err, errlen) != PA_OK)
		return PA_ERROR;
	rc = route_map_parse(buf, len, shards, default_dest, out, perr, sizeof(perr));
	if (rc != PA_OK)
		snprintf(err, errlen, "%s: %s", path, perr);
	free(buf);
	return rc;
}

/* tmpl with its one "%s" replaced by store, into out; false when it does not fit. */
static bool
store_substitute(const char *tmpl, const char *store, char *out, size_t outlen)
{
	const char *pct = strstr(tmpl, "%s");
	size_t pre, slen = strlen(store), post;

	if (pct == NULL)
		return false;
	pre = (size_t)(pct - tmpl);
	post = strlen(pct + 2);
	if (pre + slen + post >= outlen)
		return false;
	memcpy(out, tmpl, pre);
	memcpy(out + pre, store, slen);
	memcpy(out + pre + slen, pct + 2, post + 1);
	return true;
}

int
route_store_template_check(const char *tmpl, char *err, size_t errlen)
{
	/* Every store form the engine may route: both must make a valid destination. */
	static const char *const samples[] = {"192.0.2.1", "[2001:db8::1]"};
	char text[ROUTE_STORE_TEMPLATE_MAX + ROUTE_STORE_MAX + 1], derr[256];
	const char *pct;
	struct route_dest d;

	if (tmpl == NULL || tmpl[0] == '\0')
		return PA_OK;
	if (strlen(tmpl) > ROUTE_STORE_TEMPLATE_MAX) {
		snprintf(err, errlen, "relay.store_route: longer than %d octets",
		         ROUTE_STORE_TEMPLATE_MAX);
		return PA_ERROR;
	}
	pct = strchr(tmpl, '%');
	if (pct == NULL || pct[1] != 's' || strchr(pct + 1, '%') != NULL) {
		snprintf(
		    err, errlen,
		    "relay.store_route: '%.80s' must hold exactly one %%s (the store's host) and "
		    "no other %%",
		    tmpl);
		return PA_ERROR;
	}
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		if (!store_substitute(tmpl, samples[i], text, sizeof(text)) ||
		    route_dest_parse(text, strlen(text), &d, derr, sizeof(derr)) != PA_OK) {
			snprintf(err, errlen,
			         "relay.store_route: '%.80s' with store %s is no destination: %s",
			         tmpl, samples[i], derr);
			return PA_ERROR;
		}
	}
	return PA_OK;
}

int
route_map_set_store_route(struct route_map *m, const char *tmpl, char *err, size_t errlen)
{
	if (route_store_template_check(tmpl, err, errlen) != PA_OK)
		return PA_ERROR;
	snprintf(m->store_route, sizeof(m->store_route), "%s", tmpl != NULL ? tmpl : "");
	return PA_OK;
}

bool
route_map_has_store_route(const struct route_map *m)
{
	return m->store_route[0] != '\0';
}

/*
 * What the directory says is untrusted: only an address literal is routed,
 * a host name is told apart (it would need DNS), anything else is refused
 * before it comes near the destination parser.
 */
static enum route_store_result
store_form(const char *store)
{
	size_t len = strnlen(store, ROUTE_STORE_MAX + 1);
	bool name = false;

	if (len == 0 || len > ROUTE_STORE_MAX)
		return ROUTE_STORE_BAD;
	if (store[0] == '[') {
		if (len < 3 || store[len - 1] != ']')
			return ROUTE_STORE_BAD;
		for (size_t i = 1; i + 1 < len; i++) {
			char ch = store[i];

			if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
			      (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.'))
				return ROUTE_STORE_BAD;
		}
		return ROUTE_STORE_OK;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = store[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-')
			name = true;
		else if (!((ch >= '0' && ch <= '9') || ch == '.'))
			return ROUTE_STORE_BAD;
	}
	if (store[0] == '.' || store[0] == '-' || store[len - 1] == '-')
		return ROUTE_STORE_BAD;
	return name ? ROUTE_STORE_NAME : ROUTE_STORE_OK;
}

enum route_store_result
route_map_store_dest(const struct route_map *m, const char *store, struct route_dest *out)
{
	char text[ROUTE_STORE_TEMPLATE_MAX + ROUTE_STORE_MAX + 1], derr[256];
	enum route_store_result r;

	if (m->store_route[0] == '\0')
		return ROUTE_STORE_NONE;
	r = store_form(store);
	if (r != ROUTE_STORE_OK)
		return r;
	/* Digits and dots that are no IPv4 address (999.1, 1..2) end here. */
	if (!store_substitute(m->store_route, store, text, sizeof(text)) ||
	    route_dest_parse(text, strlen(text), out, derr, sizeof(derr)) != PA_OK)
		return ROUTE_STORE_BAD;
	return ROUTE_STORE_OK;
}

static const struct route_entry *
find(const struct route_entry *arr, size_t n, const char *name)
{
	struct route_entry key = {.name = (char *)name};

	return n == 0 ? NULL : bsearch(&key, arr, n, sizeof(*arr), entry_cmp);
}

const struct route_dest *
route_map_lookup_override(const struct route_map *m, const char *rcpt)
{
	char addr[400];
	const struct route_entry *e;
	const char *at;
	size_t len = strlen(rcpt);

	if (len < sizeof(addr) && (m->naddresses > 0 || m->ndomains > 0)) {
		memcpy(addr, rcpt, len + 1);
		lower(addr);
		e = find(m->addresses, m->naddresses, addr);
		if (e != NULL)
			return &e->dest;
		at = strrchr(addr, '@');
		if (at != NULL) {
			e = find(m->domains, m->ndomains, at + 1);
			if (e != NULL)
				return &e->dest;
		}
	}
	return NULL;
}

const struct route_dest *
route_map_lookup(const struct route_map *m, unsigned shard, const char *rcpt)
{
	const struct route_dest *d = route_map_lookup_override(m, rcpt);

	if (d != NULL)
		return d;
	if (shard < m->shards && m->by_shard[shard] != NULL)
		return m->by_shard[shard];
	return m->has_default ? &m->default_dest : NULL;
}

bool
route_map_routes_anything(const struct route_map *m)
{
	return m->has_default || m->nshard_dests > 0 || m->ndomains > 0 || m->naddresses > 0 ||
	       m->store_route[0] != '\0';
}
