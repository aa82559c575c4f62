/*
 * config.c: the key table, the rte_cfgfile loader, and value validation.
 *
 * All keys live in one table: name, default, parser, whether a reload may
 * change it.  Loading builds one rte_cfgfile from the file (or an empty one),
 * applies -o overrides on top, rejects any entry the table does not know,
 * then parses every key of the table from it, default when absent.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <rte_cfgfile.h>

#include "core/config.h"
#include "core/domain.h"
#include "core/hostport.h"
#include "core/log.h"
#include "core/pa.h"

#define GLOBAL_SECTION "GLOBAL"

struct config_key;
typedef int (*config_parse_fn)(struct pa_config *config, const struct config_key *key,
                               const char *value, char *err, size_t errlen);

struct config_key {
	const char *name;
	const char *default_value;
	config_parse_fn parse;
	size_t offset;     /* of the field in struct pa_config */
	size_t size;       /* of that field (strings) */
	uint64_t min, max; /* for numbers */
	bool reloadable;   /* SIGHUP may change it; otherwise a change needs a restart */
};

static int __attribute__((format(printf, 4, 5)))
key_error(const struct config_key *key, char *err, size_t errlen, const char *fmt, ...)
{
	int n = snprintf(err, errlen, "config key '%s': ", key->name);
	va_list ap;

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return PA_ERROR;
}

static void *
field(struct pa_config *config, const struct config_key *key)
{
	return (char *)config + key->offset;
}

static int
parse_u64(const struct config_key *key, const char *value, uint64_t *out, char *err, size_t errlen)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)value[0]))
		return key_error(key, err, errlen, "'%s' is not a number", value);
	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno == ERANGE || *end != '\0')
		return key_error(key, err, errlen, "'%s' is not a number", value);
	if (v < key->min || v > key->max)
		return key_error(key, err, errlen, "%llu is outside %llu..%llu", v,
		                 (unsigned long long)key->min, (unsigned long long)key->max);
	*out = v;
	return PA_OK;
}

static int
parse_unsigned(struct pa_config *config, const struct config_key *key, const char *value, char *err,
               size_t errlen)
{
	uint64_t v;

	if (parse_u64(key, value, &v, err, errlen) != PA_OK)
		return PA_ERROR;
	*(unsigned *)field(config, key) = (unsigned)v;
	return PA_OK;
}

static int
parse_size(struct pa_config *config, const struct config_key *key, const char *value, char *err,
           size_t errlen)
{
	uint64_t v;

	if (parse_u64(key, value, &v, err, errlen) != PA_OK)
		return PA_ERROR;
	*(size_t *)field(config, key) = (size_t)v;
	return PA_OK;
}

static int
parse_string(struct pa_config *config, const struct config_key *key, const char *value, char *err,
             size_t errlen)
{
	size_t len = strlen(value);

	if (len >= key->size)
		return key_error(key, err, errlen, "value longer than %zu octets", key->size - 1);
	memcpy(field(config, key), value, len + 1);
	return PA_OK;
}

int
config_parse_cpu_list(const char *list, cpu_set_t *set)
{
	const char *p = list;

	CPU_ZERO(set);
	do {
		char *end;
		unsigned long lo, hi;

		errno = 0;
		if (*p < '0' || *p > '9')
			return PA_ERROR;
		lo = hi = strtoul(p, &end, 10);
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return PA_ERROR;
			hi = strtoul(p, &end, 10);
		}
		if (errno == ERANGE || hi < lo || hi >= CPU_SETSIZE)
			return PA_ERROR;
		for (unsigned long cpu = lo; cpu <= hi; cpu++)
			CPU_SET(cpu, set);
		p = end;
	} while (*p++ == ',');
	return p[-1] == '\0' ? PA_OK : PA_ERROR;
}

/* spool.committer_cpus: empty (automatic) or a CPU list. */
static int
parse_cpu_list(struct pa_config *config, const struct config_key *key, const char *value, char *err,
               size_t errlen)
{
	cpu_set_t set;

	if (value[0] != '\0' && config_parse_cpu_list(value, &set) != PA_OK)
		return key_error(key, err, errlen, "'%s' is not a CPU list such as 0 or 0,2-3",
		                 value);
	return parse_string(config, key, value, err, errlen);
}

/* Clears the bits after the first `prefix` of addr (len octets). */
static void
mask_addr(uint8_t *addr, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned keep = prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;

		if (keep < 8)
			addr[i] &= (uint8_t)(0xff00u >> keep);
	}
}

/*
 * smtp.trusted_proxies, limits.exempt: comma-separated ADDR[/PREFIX], IPv4
 * or IPv6; without a prefix, the one address.  Empty: none.
 */
static int
parse_cidr_list(struct pa_config *config, const struct config_key *key, const char *value,
                char *err, size_t errlen)
{
	struct pa_cidr *list = field(config, key);
	unsigned *n = (unsigned *)((char *)list + CONFIG_CIDRS_MAX * sizeof(*list));
	char copy[CONFIG_VALUE_MAX], *save = NULL;

	*n = 0;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		struct pa_cidr c = {0};
		char *slash = strchr(tok, '/'), *end;
		unsigned long prefix;

		if (*n == CONFIG_CIDRS_MAX)
			return key_error(key, err, errlen, "more than %d entries", CONFIG_CIDRS_MAX);
		if (slash != NULL)
			*slash = '\0';
		if (inet_pton(AF_INET, tok, c.addr) == 1)
			c.family = AF_INET;
		else if (inet_pton(AF_INET6, tok, c.addr) == 1)
			c.family = AF_INET6;
		else
			return key_error(key, err, errlen, "'%s' is not an IPv4 or IPv6 address", tok);
		c.prefix = c.family == AF_INET ? 32 : 128;
		if (slash != NULL) {
			errno = 0;
			prefix = strtoul(slash + 1, &end, 10);
			if (!isdigit((unsigned char)slash[1]) || *end != '\0' || errno == ERANGE ||
			    prefix > c.prefix)
				return key_error(key, err, errlen, "'%s' is not a prefix length 0..%u",
				                 slash + 1, c.prefix);
			c.prefix = (unsigned)prefix;
		}
		mask_addr(c.addr, c.family == AF_INET ? 4 : 16, c.prefix);
		list[(*n)++] = c;
	}
	return PA_OK;
}

bool
config_cidr_match(const struct pa_cidr *list, unsigned n, int family, const uint8_t *addr)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	uint8_t a[16];

	if (family == AF_INET6 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
		family = AF_INET;
		addr += sizeof(v4mapped);
	}
	for (unsigned i = 0; i < n; i++) {
		size_t len = family == AF_INET ? 4 : 16;

		if (list[i].family != family)
			continue;
		memcpy(a, addr, len);
		mask_addr(a, len, list[i].prefix);
		if (memcmp(a, list[i].addr, len) == 0)
			return true;
	}
	return false;
}

static int
parse_backend(struct pa_config *config, const struct config_key *key, const char *value, char *err,
              size_t errlen)
{
	if (strcmp(value, "kernel") == 0)
		config->backend = PA_BACKEND_KERNEL;
	else if (strcmp(value, "dpdk") == 0)
		config->backend = PA_BACKEND_DPDK;
	else
		return key_error(key, err, errlen, "'%s' is not kernel or dpdk", value);
	return PA_OK;
}

static int
parse_dpdk_rss(struct pa_config *config, const struct config_key *key, const char *value, char *err,
               size_t errlen)
{
	if (strcmp(value, "auto") == 0)
		config->dpdk_rss = PA_DPDK_RSS_AUTO;
	else if (strcmp(value, "on") == 0)
		config->dpdk_rss = PA_DPDK_RSS_ON;
	else if (strcmp(value, "off") == 0)
		config->dpdk_rss = PA_DPDK_RSS_OFF;
	else
		return key_error(key, err, errlen, "'%s' is not auto, on or off", value);
	return PA_OK;
}

static int
parse_bare_lf(struct pa_config *config, const struct config_key *key, const char *value, char *err,
              size_t errlen)
{
	if (strcmp(value, "reject") == 0)
		config->bare_lf = SMTP_BARE_LF_REJECT;
	else if (strcmp(value, "normalize") == 0)
		config->bare_lf = SMTP_BARE_LF_NORMALIZE;
	else
		return key_error(key, err, errlen, "'%s' is not reject or normalize", value);
	return PA_OK;
}

static int
parse_log_level(struct pa_config *config, const struct config_key *key, const char *value,
                char *err, size_t errlen)
{
	static const char *const names[] = {"error", "warning", "notice", "info", "debug"};

	for (size_t i = 0; i < pa_array_size(names); i++) {
		if (strcmp(value, names[i]) == 0) {
			config->log_level = (int)i;
			return PA_OK;
		}
	}
	return key_error(key, err, errlen, "'%s' is not error, warning, notice, info or debug",
	                 value);
}

static int
parse_log_format(struct pa_config *config, const struct config_key *key, const char *value,
                 char *err, size_t errlen)
{
	if (strcmp(value, "text") == 0)
		config->log_format = PA_LOG_FORMAT_TEXT;
	else if (strcmp(value, "json") == 0)
		config->log_format = PA_LOG_FORMAT_JSON;
	else
		return key_error(key, err, errlen, "'%s' is not text or json", value);
	return PA_OK;
}

static int
parse_log_target(struct pa_config *config, const struct config_key *key, const char *value,
                 char *err, size_t errlen)
{
	if (strcmp(value, "stderr") == 0)
		config->log_target = PA_LOG_TARGET_STDERR;
	else if (strcmp(value, "journal") == 0)
		config->log_target = PA_LOG_TARGET_JOURNAL;
	else if (strcmp(value, "syslog") == 0)
		config->log_target = PA_LOG_TARGET_SYSLOG;
	else
		return key_error(key, err, errlen, "'%s' is not stderr, journal or syslog", value);
	return PA_OK;
}

static int
parse_bool(struct pa_config *config, const struct config_key *key, const char *value, char *err,
           size_t errlen)
{
	bool *out = field(config, key);

	if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
		*out = true;
	else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
		*out = false;
	else
		return key_error(key, err, errlen, "'%s' is not true or false", value);
	return PA_OK;
}

/* A file mode in octal, e.g. 0660. */
static int
parse_mode(struct pa_config *config, const struct config_key *key, const char *value, char *err,
           size_t errlen)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(value, &end, 8);
	if (value[0] < '0' || value[0] > '7' || *end != '\0' || errno == ERANGE || v > 0777)
		return key_error(key, err, errlen, "'%s' is not an octal mode 0..0777", value);
	*(unsigned *)field(config, key) = (unsigned)v;
	return PA_OK;
}

/* The lowest TLS version offered: 0 for TLSv1.2, 1 for TLSv1.3 (enum tls_min_version). */
static int
parse_tls_version(struct pa_config *config, const struct config_key *key, const char *value,
                  char *err, size_t errlen)
{
	if (strcmp(value, "TLSv1.2") == 0)
		config->tls_min_version = 0;
	else if (strcmp(value, "TLSv1.3") == 0)
		config->tls_min_version = 1;
	else
		return key_error(key, err, errlen, "'%s' is not TLSv1.2 or TLSv1.3", value);
	return PA_OK;
}

/* Comma-separated entries; blank ones do not count. */
static unsigned
list_count(const char *list)
{
	unsigned n = 0;
	size_t len;

	for (const char *p = list;; p += len + 1) {
		len = strcspn(p, ",");
		n += strspn(p, " \t") < len;
		if (p[len] == '\0')
			return n;
	}
}

/* tls.cert and tls.key pair by position; tls.required needs a certificate. */
static int
check_tls(const struct pa_config *config, char *err, size_t errlen)
{
	unsigned certs = list_count(config->tls_cert), keys = list_count(config->tls_key);

	if (certs != keys) {
		snprintf(err, errlen, "config key 'tls.key': %u files for %u in 'tls.cert'", keys,
		         certs);
		return PA_ERROR;
	}
	if (config->tls_required && certs == 0) {
		snprintf(err, errlen, "config key 'tls.required': needs 'tls.cert' and 'tls.key'");
		return PA_ERROR;
	}
	return PA_OK;
}

/* spool.min_free: a number of bytes, or a percentage of the file system ("5%"). */
static int
parse_min_free(struct pa_config *config, const struct config_key *key, const char *value,
               char *err, size_t errlen)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(value, &end, 10);
	if (!isdigit((unsigned char)value[0]) || errno == ERANGE ||
	    (*end != '\0' && strcmp(end, "%") != 0) || (*end == '%' && v > 99))
		return key_error(key, err, errlen, "'%s' is not BYTES or PERCENT%% (0-99)", value);
	config->spool_min_free_bytes = *end == '%' ? 0 : v;
	config->spool_min_free_percent = *end == '%' ? (unsigned)v : 0;
	return PA_OK;
}

static int
parse_u64_field(struct pa_config *config, const struct config_key *key, const char *value,
                char *err, size_t errlen)
{
	return parse_u64(key, value, (uint64_t *)field(config, key), err, errlen);
}

/* ADDR:PORT, or [IPv6]:PORT (core/hostport.h): an address, never a name. */
static int
parse_listen(struct pa_config *config, const struct config_key *key, const char *value, char *err,
             size_t errlen)
{
	struct pa_hostport hp;
	char why[CONFIG_ERR_MAX];

	if (pa_parse_hostport(value, strlen(value), &hp, why, sizeof(why)) != PA_OK ||
	    pa_hostport_numeric(&hp, &config->listen_addr, &config->listen_addrlen, why,
	                        sizeof(why)) != PA_OK)
		return key_error(key, err, errlen, "%s", why);
	snprintf(config->listen, sizeof(config->listen), "%s", value);
	return PA_OK;
}

/* ADDR/PREFIX for dpdk.ip; empty means unset (required only with backend=dpdk). */
static int
parse_ipv4_prefix(struct pa_config *config, const struct config_key *key, const char *value,
                  char *err, size_t errlen)
{
	char host[INET_ADDRSTRLEN];
	const char *slash = strchr(value, '/');
	char *end;
	unsigned long prefix;
	struct in_addr a;

	config->dpdk_addr = 0;
	config->dpdk_prefix = 0;
	snprintf(config->dpdk_ip, sizeof(config->dpdk_ip), "%s", value);
	if (value[0] == '\0')
		return PA_OK;
	if (slash == NULL || (size_t)(slash - value) >= sizeof(host))
		return key_error(key, err, errlen, "'%s' is not ADDR/PREFIX", value);
	memcpy(host, value, (size_t)(slash - value));
	host[slash - value] = '\0';
	errno = 0;
	prefix = strtoul(slash + 1, &end, 10);
	if (slash[1] == '\0' || *end != '\0' || errno == ERANGE || prefix < 1 || prefix > 32)
		return key_error(key, err, errlen, "'%s' has no prefix length 1..32", value);
	if (inet_pton(AF_INET, host, &a) != 1 || a.s_addr == 0)
		return key_error(key, err, errlen, "'%s' is not an IPv4 address", host);
	config->dpdk_addr = a.s_addr;
	config->dpdk_prefix = (unsigned)prefix;
	return PA_OK;
}

/* An IPv4 address for dpdk.gateway; empty means none. */
static int
parse_ipv4_gateway(struct pa_config *config, const struct config_key *key, const char *value,
                   char *err, size_t errlen)
{
	struct in_addr a;

	config->dpdk_gateway_addr = 0;
	snprintf(config->dpdk_gateway, sizeof(config->dpdk_gateway), "%s", value);
	if (value[0] == '\0')
		return PA_OK;
	if (inet_pton(AF_INET, value, &a) != 1 || a.s_addr == 0)
		return key_error(key, err, errlen, "'%s' is not an IPv4 address", value);
	config->dpdk_gateway_addr = a.s_addr;
	return PA_OK;
}

/*
 * dpdk.ip6: comma-separated IPv6 ADDR/PREFIX (at most CONFIG_IP6_MAX), each
 * a unicast address the engine owns (not unspecified, loopback, multicast,
 * IPv4-mapped or link-local: the link-local address is made from the MAC).
 */
static int
parse_ip6_list(struct pa_config *config, const struct config_key *key, const char *value,
               char *err, size_t errlen)
{
	char copy[CONFIG_VALUE_MAX], *save = NULL;

	config->ndpdk_ip6 = 0;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		struct pa_cidr *c = &config->dpdk_ip6[config->ndpdk_ip6];
		char *slash = strchr(tok, '/'), *end;
		struct in6_addr a;
		unsigned long prefix;

		if (config->ndpdk_ip6 == CONFIG_IP6_MAX)
			return key_error(key, err, errlen, "more than %d addresses", CONFIG_IP6_MAX);
		if (slash == NULL)
			return key_error(key, err, errlen, "'%s' is not ADDR/PREFIX", tok);
		*slash = '\0';
		errno = 0;
		prefix = strtoul(slash + 1, &end, 10);
		if (!isdigit((unsigned char)slash[1]) || *end != '\0' || errno == ERANGE ||
		    prefix < 1 || prefix > 128)
			return key_error(key, err, errlen, "'%s' has no prefix length 1..128", tok);
		if (inet_pton(AF_INET6, tok, &a) != 1)
			return key_error(key, err, errlen, "'%s' is not an IPv6 address", tok);
		if (IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_LOOPBACK(&a) ||
		    IN6_IS_ADDR_MULTICAST(&a) || IN6_IS_ADDR_V4MAPPED(&a) ||
		    IN6_IS_ADDR_V4COMPAT(&a) || IN6_IS_ADDR_LINKLOCAL(&a))
			return key_error(key, err, errlen,
			                 "'%s' is not a global or unique-local unicast address", tok);
		c->family = AF_INET6;
		c->prefix = (unsigned)prefix;
		memcpy(c->addr, &a, sizeof(c->addr));
		config->ndpdk_ip6++;
	}
	return PA_OK;
}

/* dpdk.gateway6: an IPv6 unicast address (a router's link-local one is usual); empty: none. */
static int
parse_ip6_gateway(struct pa_config *config, const struct config_key *key, const char *value,
                  char *err, size_t errlen)
{
	struct in6_addr a;

	memset(config->dpdk_gateway6, 0, sizeof(config->dpdk_gateway6));
	if (value[0] == '\0')
		return PA_OK;
	if (inet_pton(AF_INET6, value, &a) != 1 || IN6_IS_ADDR_UNSPECIFIED(&a) ||
	    IN6_IS_ADDR_MULTICAST(&a) || IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_V4MAPPED(&a))
		return key_error(key, err, errlen, "'%s' is not an IPv6 unicast address", value);
	memcpy(config->dpdk_gateway6, &a, sizeof(config->dpdk_gateway6));
	return PA_OK;
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
free_domains(struct pa_config *config)
{
	for (size_t i = 0; i < config->ndomains; i++)
		free(config->domains[i]);
	free(config->domains);
	config->domains = NULL;
	config->ndomains = 0;
}

/*
 * Each domain is kept in its canonical form (core/domain.h): lower case,
 * A-labels, so that "müller.example" and "xn--mller-kva.example" name one
 * domain and either may be written.  Sorted for bsearch, duplicates (one
 * domain in both forms) dropped; the first domain as written is kept apart
 * for the postmaster default.
 */
static int
parse_domains(struct pa_config *config, const struct config_key *key, const char *value, char *err,
              size_t errlen)
{
	char *copy = strdup(value), *save = NULL, *tok;
	size_t cap = 8, kept = 0;

	free_domains(config);
	config->domain_first[0] = '\0';
	config->domains = calloc(cap, sizeof(char *));
	if (copy == NULL || config->domains == NULL) {
		free(copy);
		return key_error(key, err, errlen, "out of memory");
	}
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char canonical[PA_DOMAIN_MAX + 1];

		if (pa_domain_canonical(tok, strlen(tok), canonical, PA_DOMAIN_CHECK_ALABELS) < 0) {
			key_error(key, err, errlen, "'%s' is not a domain name (IDNA2008)", tok);
			free(copy);
			return PA_ERROR;
		}
		if (config->ndomains == cap) {
			char **grown = realloc(config->domains, 2 * cap * sizeof(char *));

			if (grown == NULL) {
				free(copy);
				return key_error(key, err, errlen, "out of memory");
			}
			config->domains = grown;
			cap *= 2;
		}
		config->domains[config->ndomains] = strdup(canonical);
		if (config->domains[config->ndomains] == NULL) {
			free(copy);
			return key_error(key, err, errlen, "out of memory");
		}
		if (config->ndomains == 0)
			snprintf(config->domain_first, sizeof(config->domain_first), "%s",
			         canonical);
		config->ndomains++;
	}
	free(copy);
	qsort(config->domains, config->ndomains, sizeof(char *), compare_strings);
	for (size_t i = 0; i < config->ndomains; i++) {
		if (kept > 0 && strcmp(config->domains[kept - 1], config->domains[i]) == 0)
			free(config->domains[i]);
		else
			config->domains[kept++] = config->domains[i];
	}
	config->ndomains = kept;
	return PA_OK;
}

/* RFC 5322 3.2.3 dot-atom-text, ASCII only: the local part of `postmaster`. */
static bool
valid_local_part(const char *p, size_t n)
{
	static const char atext_or_dot[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                                   "0123456789!#$%&'*+-/=?^_`{|}~.";

	/* RFC 5321 4.5.3.1.1: 64 octets; no leading, trailing or doubled dot */
	return n > 0 && n <= 64 && strspn(p, atext_or_dot) >= n && p[0] != '.' && p[n - 1] != '.' &&
	       memmem(p, n, "..", 2) == NULL;
}

/*
 * postmaster: the mailbox that RCPT TO:<Postmaster> (RFC 5321 4.1.1.3) is
 * stored as.  Empty here means "postmaster@" the first of `domains`, filled
 * in by default_postmaster() once every key is parsed.  Its domain is kept
 * canonical like those of `domains`; it need not be one of them.
 */
static int
parse_postmaster(struct pa_config *config, const struct config_key *key, const char *value,
                 char *err, size_t errlen)
{
	const char *at = strrchr(value, '@');
	char domain[PA_DOMAIN_MAX + 1];
	size_t local;
	int n;

	config->postmaster[0] = '\0';
	if (value[0] == '\0')
		return PA_OK;
	if (at == NULL)
		return key_error(key, err, errlen, "'%s' is not an address (local@domain)", value);
	local = (size_t)(at - value);
	if (!valid_local_part(value, local))
		return key_error(key, err, errlen, "'%s': the local part is not a dot-atom", value);
	n = pa_domain_canonical(at + 1, strlen(at + 1), domain, PA_DOMAIN_CHECK_ALABELS);
	if (n < 0)
		return key_error(key, err, errlen, "'%s': not a domain name (IDNA2008)", at + 1);
	if (local + 1 + (size_t)n > SMTP_PATH_MAX)
		return key_error(key, err, errlen, "'%s' is longer than %d octets", value,
		                 SMTP_PATH_MAX);
	snprintf(config->postmaster, sizeof(config->postmaster), "%.*s@%s", (int)local, value,
	         domain);
	return PA_OK;
}

/*
 * dns.servers: comma-separated ADDR, ADDR:PORT, IPv6 or [IPv6]:PORT (53 when
 * no port is given), kept as c-ares's ares_set_servers_ports_csv() reads
 * them.  Empty: no resolver, so no screening.
 */
static int
parse_dns_servers(struct pa_config *config, const struct config_key *key, const char *value,
                  char *err, size_t errlen)
{
	char copy[CONFIG_VALUE_MAX], *save = NULL, *out = config->dns_servers;
	size_t used = 0;

	out[0] = '\0';
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		size_t len = strlen(tok);
		char *colon = strrchr(tok, ':'), why[CONFIG_ERR_MAX];
		struct pa_hostport hp = {.port = 53};
		uint8_t addr[16];
		bool v6;
		int n;

		if (tok[0] == '[' ? tok[len - 1] != ']' : colon != NULL && strchr(tok, ':') == colon) {
			/* [IPv6]:PORT or ADDR:PORT (core/hostport.h) */
			if (pa_parse_hostport(tok, len, &hp, why, sizeof(why)) != PA_OK)
				return key_error(key, err, errlen, "%s", why);
		} else if (tok[0] == '[') {
			snprintf(hp.host, sizeof(hp.host), "%.*s", (int)(len - 2), tok + 1);
		} else {
			snprintf(hp.host, sizeof(hp.host), "%s", tok); /* an address alone: port 53 */
		}
		v6 = inet_pton(AF_INET6, hp.host, addr) == 1;
		if (!v6 && inet_pton(AF_INET, hp.host, addr) != 1)
			return key_error(key, err, errlen, "'%s' is not an IPv4 or IPv6 address",
			                 hp.host);
		n = snprintf(out + used, CONFIG_VALUE_MAX - used, "%s%s%s%s:%u",
		             used > 0 ? "," : "", v6 ? "[" : "", hp.host, v6 ? "]" : "", hp.port);
		if (n < 0 || (size_t)n >= CONFIG_VALUE_MAX - used)
			return key_error(key, err, errlen, "too long");
		used += (size_t)n;
	}
	return PA_OK;
}

/* screen.dnsbl_sites, screen.dnswl_sites (core/screen_site.h). */
static int
parse_screen_sites(struct pa_config *config, const struct config_key *key, const char *value,
                   char *err, size_t errlen)
{
	bool allow = strcmp(key->name, "screen.dnswl_sites") == 0;
	char why[CONFIG_ERR_MAX];

	if (screen_sites_parse(value, allow, allow ? config->screen_dnswl : config->screen_dnsbl,
	                       allow ? &config->nscreen_dnswl : &config->nscreen_dnsbl, why,
	                       sizeof(why)) != PA_OK)
		return key_error(key, err, errlen, "%s", why);
	return PA_OK;
}

/* screen.action (a listed client): reject or tempfail; screen.temporary_action: accept or tempfail.
 */
static int
parse_screen_action(struct pa_config *config, const struct config_key *key, const char *value,
                    char *err, size_t errlen)
{
	bool *tempfail = field(config, key);
	const char *other = strcmp(key->name, "screen.action") == 0 ? "reject" : "accept";

	if (strcmp(value, "tempfail") == 0)
		*tempfail = true;
	else if (strcmp(value, other) == 0)
		*tempfail = false;
	else
		return key_error(key, err, errlen, "'%s' is not %s or tempfail", value, other);
	return PA_OK;
}

/* milter.servers (core/milter_site.h), after the defaults its options override. */
static int
parse_milter_servers(struct pa_config *config, const struct config_key *key, const char *value,
                     char *err, size_t errlen)
{
	char why[CONFIG_ERR_MAX];

	if (milter_sites_parse(value, &config->milter_defaults, config->milters, &config->nmilters,
	                       why, sizeof(why)) != PA_OK)
		return key_error(key, err, errlen, "%s", why);
	return PA_OK;
}

/* milter.default_action: accept or tempfail. */
static int
parse_milter_action(struct pa_config *config, const struct config_key *key, const char *value,
                    char *err, size_t errlen)
{
	if (strcmp(value, "tempfail") != 0 && strcmp(value, "accept") != 0)
		return key_error(key, err, errlen, "'%s' is not accept or tempfail", value);
	config->milter_defaults.tempfail = strcmp(value, "tempfail") == 0;
	return PA_OK;
}

/* Screening asks the resolver, which needs servers. */
static int
check_screen(const struct pa_config *config, char *err, size_t errlen)
{
	if (config->nscreen_dnsbl + config->nscreen_dnswl > 0 && config->dns_servers[0] == '\0') {
		snprintf(err, errlen, "config key 'screen.dnsbl_sites': needs 'dns.servers'");
		return PA_ERROR;
	}
	for (unsigned i = 0; i < config->nscreen_dnswl; i++)
		for (unsigned j = 0; j < config->nscreen_dnsbl; j++)
			if (strcmp(config->screen_dnswl[i].domain,
			           config->screen_dnsbl[j].domain) == 0) {
				snprintf(err, errlen,
				         "config key 'screen.dnswl_sites': %s is in "
				         "screen.dnsbl_sites too",
				         config->screen_dnswl[i].domain);
				return PA_ERROR;
			}
	if (config->nscreen_dnswl > 0 && config->nscreen_dnsbl == 0) {
		snprintf(err, errlen,
		         "config key 'screen.dnswl_sites': needs 'screen.dnsbl_sites' (an allow "
		         "list only lowers a score)");
		return PA_ERROR;
	}
	return PA_OK;
}

#define OFF(f) offsetof(struct pa_config, f)
#define SZ(f) sizeof(((struct pa_config *)0)->f)

/* Keep docs/configuration.md in step with this table (tests/unit/test_config.c checks). */
static const struct config_key keys[] = {
    {"backend", "kernel", parse_backend, 0, 0, 0, 0, false},
    {"listen", "127.0.0.1:2525", parse_listen, 0, 0, 0, 0, false},
    {"hostname", "", parse_string, OFF(hostname), SZ(hostname), 0, 0, true},
    {"workers", "1", parse_unsigned, OFF(workers), 0, 1, 64, false},
    {"node_id", "0", parse_unsigned, OFF(node_id), 0, 0, 4095, false},
    {"domains", "localhost", parse_domains, 0, 0, 0, 0, true},
    {"postmaster", "", parse_postmaster, 0, 0, 0, 0, true},
    {"log.level", "info", parse_log_level, 0, 0, 0, 0, true},
    {"log.format", "text", parse_log_format, 0, 0, 0, 0, true},
    {"log.target", "stderr", parse_log_target, 0, 0, 0, 0, false},
    {"spool.dir", "/var/spool/pigeonair", parse_string, OFF(spool_dir), SZ(spool_dir), 0, 0, false},
    {"spool.shards", "4", parse_unsigned, OFF(spool_shards), 0, 1, 1024, false},
    {"spool.format", "2", parse_unsigned, OFF(spool_format), 0, 1, 2, false},
    {"spool.segment_size", "67108864", parse_u64_field, OFF(spool_segment_size), 0, 65536,
     4294963200ULL, false},
    {"spool.ring_size", "4096", parse_unsigned, OFF(spool_ring_size), 0, 64, 1 << 20, false},
    {"spool.committer_cpus", "", parse_cpu_list, OFF(spool_committer_cpus),
     SZ(spool_committer_cpus), 0, 0, false},
    {"spool.idle_poll_us", "0", parse_unsigned, OFF(spool_idle_poll_us), 0, 0, 1000000, false},
    {"spool.linger_us", "100000", parse_unsigned, OFF(spool_linger_us), 0, 0, 1000000, false},
    {"smtp.max_message_size", "10485760", parse_size, OFF(max_message_size), 0, 1024, 1ULL << 31,
     true},
    {"smtp.max_recipients", "100", parse_unsigned, OFF(max_recipients), 0, 1, 100000, true},
    {"smtp.max_errors", "10", parse_unsigned, OFF(max_errors), 0, 1, 1000, true},
    {"smtp.bare_lf", "reject", parse_bare_lf, 0, 0, 0, 0, true},
    {"smtp.command_timeout", "300", parse_unsigned, OFF(command_timeout_s), 0, 1, 3600, true},
    {"smtp.data_timeout", "180", parse_unsigned, OFF(data_timeout_s), 0, 1, 3600, true},
    {"smtp.banner_delay", "0", parse_unsigned, OFF(banner_delay_ms), 0, 0, 60000, true},
    {"smtp.trusted_proxies", "", parse_cidr_list, OFF(trusted_proxies), 0, 0, 0, true},
    {"smtp.proxy_protocol", "false", parse_bool, OFF(proxy_protocol), 0, 0, 0, true},
    {"limits.conn_total", "10000", parse_unsigned, OFF(limit_conn_total), 0, 0, 1 << 24, true},
    {"limits.conn_per_ip", "50", parse_unsigned, OFF(limit_conn_per_ip), 0, 0, 1 << 24, true},
    {"limits.conn_rate_per_ip", "0", parse_unsigned, OFF(limit_conn_rate_per_ip), 0, 0, 1 << 24,
     true},
    {"limits.commands", "10000", parse_unsigned, OFF(limit_commands), 0, 0, 1 << 30, true},
    {"limits.exempt", "127.0.0.0/8,::1", parse_cidr_list, OFF(limit_exempt), 0, 0, 0, true},
    {"limits.table_size", "16384", parse_unsigned, OFF(limit_table_size), 0, 64, 1 << 22, false},
    {"shutdown_timeout", "30", parse_unsigned, OFF(shutdown_timeout_s), 0, 1, 3600, true},
    {"dpdk.eal", "", parse_string, OFF(dpdk_eal), SZ(dpdk_eal), 0, 0, false},
    {"dpdk.ip", "", parse_ipv4_prefix, 0, 0, 0, 0, false},
    {"dpdk.gateway", "", parse_ipv4_gateway, 0, 0, 0, 0, false},
    {"dpdk.ip6", "", parse_ip6_list, 0, 0, 0, 0, false},
    {"dpdk.gateway6", "", parse_ip6_gateway, 0, 0, 0, 0, false},
    {"dpdk.dad_transmits", "1", parse_unsigned, OFF(dpdk_dad_transmits), 0, 0, 10, false},
    {"dpdk.msl", "30000", parse_unsigned, OFF(dpdk_msl_ms), 0, 1, 600000, false},
    {"dpdk.syn_backlog", "1024", parse_unsigned, OFF(dpdk_syn_backlog), 0, 16, 1 << 20, false},
    {"dpdk.syn_per_source", "64", parse_unsigned, OFF(dpdk_syn_per_source), 0, 0, 1 << 20, false},
    {"dpdk.max_conns", "16384", parse_unsigned, OFF(dpdk_max_conns), 0, 16, 1 << 22, false},
    {"dpdk.conn_mbufs", "64", parse_unsigned, OFF(dpdk_conn_mbufs), 0, 4, 4096, false},
    {"dpdk.mbufs", "16383", parse_unsigned, OFF(dpdk_mbufs), 0, 1023, 1 << 22, false},
    {"dpdk.idle_sleep_us", "0", parse_unsigned, OFF(dpdk_idle_sleep_us), 0, 0, 100000, false},
    {"dpdk.challenge_ack_limit", "1000", parse_unsigned, OFF(dpdk_challenge_ack_limit), 0, 0,
     1000000, false},
    {"dpdk.impair", "", parse_string, OFF(dpdk_impair), SZ(dpdk_impair), 0, 0, false},
    {"dpdk.rss", "auto", parse_dpdk_rss, 0, 0, 0, 0, false},
    {"directory.file", "", parse_string, OFF(directory_file), SZ(directory_file), 0, 0, false},
    {"directory.ldap.uri", "", parse_string, OFF(directory_ldap_uri), SZ(directory_ldap_uri), 0, 0,
     false},
    {"directory.ldap.bind_dn", "", parse_string, OFF(directory_ldap_bind_dn),
     SZ(directory_ldap_bind_dn), 0, 0, false},
    {"directory.ldap.bind_password_file", "", parse_string, OFF(directory_ldap_bind_password_file),
     SZ(directory_ldap_bind_password_file), 0, 0, false},
    {"directory.ldap.base", "", parse_string, OFF(directory_ldap_base), SZ(directory_ldap_base), 0,
     0, false},
    {"directory.ldap.filter", "(objectClass=inetOrgPerson)", parse_string,
     OFF(directory_ldap_filter), SZ(directory_ldap_filter), 0, 0, false},
    {"directory.ldap.mail_attr", "mail", parse_string, OFF(directory_ldap_mail_attr),
     SZ(directory_ldap_mail_attr), 0, 0, false},
    {"directory.ldap.alias_attr", "mailAlternateAddress", parse_string,
     OFF(directory_ldap_alias_attr), SZ(directory_ldap_alias_attr), 0, 0, false},
    {"directory.ldap.host_attr", "mailHost", parse_string, OFF(directory_ldap_host_attr),
     SZ(directory_ldap_host_attr), 0, 0, false},
    {"directory.refresh", "300", parse_unsigned, OFF(directory_refresh_s), 0, 1, 86400, false},
    {"directory.max_age", "86400", parse_unsigned, OFF(directory_max_age_s), 0, 2, 2592000, false},
    {"directory.case_sensitive_local", "false", parse_bool, OFF(directory_case_sensitive_local), 0,
     0, 0, false},
    {"ctl.socket", "", parse_string, OFF(ctl_socket), SZ(ctl_socket), 0, 0, false},
    {"ctl.mode", "0660", parse_mode, OFF(ctl_mode), 0, 0, 0, false},
    {"ctl.owner", "", parse_string, OFF(ctl_owner), SZ(ctl_owner), 0, 0, false},
    {"ctl.group", "", parse_string, OFF(ctl_group), SZ(ctl_group), 0, 0, false},
    {"metrics.listen", "", parse_string, OFF(metrics_listen), SZ(metrics_listen), 0, 0, false},
    {"tls.cert", "", parse_string, OFF(tls_cert), SZ(tls_cert), 0, 0, false},
    {"tls.key", "", parse_string, OFF(tls_key), SZ(tls_key), 0, 0, false},
    {"tls.ciphers", "", parse_string, OFF(tls_ciphers), SZ(tls_ciphers), 0, 0, false},
    {"tls.ciphersuites", "", parse_string, OFF(tls_ciphersuites), SZ(tls_ciphersuites), 0, 0,
     false},
    {"tls.min_version", "TLSv1.2", parse_tls_version, 0, 0, 0, 0, false},
    {"tls.required", "false", parse_bool, OFF(tls_required), 0, 0, 0, true},
    {"tls.handshake_timeout", "30", parse_unsigned, OFF(tls_handshake_timeout_s), 0, 1, 3600, true},
    /* Up to 302400: a ticket resumes for two lifetimes, RFC 8446 4.6.1 allows 7 days. */
    {"tls.ticket_lifetime", "3600", parse_unsigned, OFF(tls_ticket_lifetime_s), 0, 1, 302400, true},
    {"relay.routes", "", parse_string, OFF(relay_routes), SZ(relay_routes), 0, 0, true},
    {"relay.default", "", parse_string, OFF(relay_default), SZ(relay_default), 0, 0, true},
    {"relay.store_route", "", parse_string, OFF(relay_store_route), SZ(relay_store_route), 0, 0,
     true},
    {"relay.max_recipients", "1000", parse_unsigned, OFF(relay_max_recipients), 0, 1, 1024, true},
    {"relay.helo", "", parse_string, OFF(relay_helo), SZ(relay_helo), 0, 0, true},
    {"relay.min_backoff", "60", parse_unsigned, OFF(relay_min_backoff_s), 0, 1, 86400, true},
    {"relay.max_backoff", "3600", parse_unsigned, OFF(relay_max_backoff_s), 0, 1, 604800, true},
    {"relay.max_queue_lifetime", "432000", parse_unsigned, OFF(relay_max_queue_lifetime_s), 0, 1,
     31536000, true},
    {"relay.concurrency", "64", parse_unsigned, OFF(relay_concurrency), 0, 1, 1024, true},
    {"relay.concurrency_min", "2", parse_unsigned, OFF(relay_concurrency_min), 0, 1, 1024, true},
    {"relay.timeout", "300", parse_unsigned, OFF(relay_timeout_s), 0, 1, 3600, true},
    {"relay.breaker_failures", "5", parse_unsigned, OFF(relay_breaker_failures), 0, 0, 1000000,
     true},
    {"relay.breaker_cooldown", "60", parse_unsigned, OFF(relay_breaker_cooldown_s), 0, 1, 86400,
     true},
    {"spool.high_water", "0", parse_u64_field, OFF(spool_high_water), 0, 0, UINT64_MAX, true},
    {"spool.min_free", "1%", parse_min_free, 0, 0, 0, 0, true},
    {"spool.stall_timeout", "1000", parse_unsigned, OFF(spool_stall_timeout_ms), 0, 10, 600000,
     false},
    {"spool.retry_interval", "1000", parse_unsigned, OFF(spool_retry_ms), 0, 10, 600000, false},
    {"spool.impair", "", parse_string, OFF(spool_impair), SZ(spool_impair), 0, 0, false},
    {"dns.servers", "", parse_dns_servers, 0, 0, 0, 0, false},
    {"dns.timeout", "2000", parse_unsigned, OFF(dns_timeout_ms), 0, 10, 60000, false},
    {"dns.cache_size", "16384", parse_unsigned, OFF(dns_cache_size), 0, 16, 1 << 22, false},
    {"screen.dnsbl_sites", "", parse_screen_sites, 0, 0, 0, 0, true},
    {"screen.dnswl_sites", "", parse_screen_sites, 0, 0, 0, 0, true},
    {"screen.threshold", "1", parse_unsigned, OFF(screen_threshold), 0, 1, 1000, true},
    {"screen.allow", "", parse_cidr_list, OFF(screen_allow), 0, 0, 0, true},
    {"screen.action", "reject", parse_screen_action, OFF(screen_tempfail_listed), 0, 0, 0, true},
    {"screen.temporary_action", "accept", parse_screen_action, OFF(screen_tempfail_failure), 0, 0,
     0, true},
    {"screen.cache_size", "4096", parse_unsigned, OFF(screen_cache_size), 0, 16, 1 << 22, false},
    /* A reload gives new messages new filters; those out finish with theirs. */
    {"milter.timeout", "20000", parse_unsigned, OFF(milter_defaults.timeout_ms), 0, 10, 600000,
     true},
    {"milter.default_action", "tempfail", parse_milter_action, 0, 0, 0, 0, true},
    {"milter.connections", "64", parse_unsigned, OFF(milter_defaults.connections), 0, 1, 4096,
     true},
    {"milter.servers", "", parse_milter_servers, 0, 0, 0, 0, true},
    {"user", "", parse_string, OFF(user), SZ(user), 0, 0, false},
    {"group", "", parse_string, OFF(group), SZ(group), 0, 0, false},
};

_Static_assert(pa_array_size(keys) <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");
/* parse_cidr_list() finds each list's count right after its array. */
_Static_assert(OFF(ntrusted_proxies) == OFF(trusted_proxies) + SZ(trusted_proxies),
               "ntrusted_proxies must follow trusted_proxies");
_Static_assert(OFF(nlimit_exempt) == OFF(limit_exempt) + SZ(limit_exempt),
               "nlimit_exempt must follow limit_exempt");
_Static_assert(OFF(nscreen_allow) == OFF(screen_allow) + SZ(screen_allow),
               "nscreen_allow must follow screen_allow");

static const struct config_key *
find_key(const char *name)
{
	for (size_t i = 0; i < pa_array_size(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

const char *const *
config_key_names(void)
{
	static const char *names[pa_array_size(keys) + 1];

	for (size_t i = 0; i < pa_array_size(keys); i++)
		names[i] = keys[i].name;
	return names;
}

/* "spool.dir" -> section "spool", entry "dir"; "listen" -> GLOBAL, "listen". */
static void
split_key(const char *key, char *section, size_t seclen, const char **entry)
{
	const char *dot = strchr(key, '.');

	if (dot == NULL) {
		snprintf(section, seclen, "%s", GLOBAL_SECTION);
		*entry = key;
		return;
	}
	snprintf(section, seclen, "%.*s", (int)(dot - key), key);
	*entry = dot + 1;
}

int
config_parse_override(char *arg, struct config_override *ov)
{
	char *eq = strchr(arg, '=');

	if (eq == NULL || eq == arg)
		return PA_ERROR;
	*eq = '\0';
	ov->key = arg;
	ov->value = eq + 1;
	return PA_OK;
}

static int
apply_override(struct rte_cfgfile *cfg, const struct config_override *ov, char *err, size_t errlen)
{
	char section[CFG_NAME_LEN];
	const char *entry;

	if (find_key(ov->key) == NULL) {
		snprintf(err, errlen, "unknown config key '%s' (in -o)", ov->key);
		return PA_ERROR;
	}
	if (strlen(ov->value) >= CFG_VALUE_LEN) {
		snprintf(err, errlen, "config key '%s': value longer than %d octets", ov->key,
		         CFG_VALUE_LEN - 1);
		return PA_ERROR;
	}
	split_key(ov->key, section, sizeof(section), &entry);
	if (!rte_cfgfile_has_section(cfg, section) && rte_cfgfile_add_section(cfg, section) != 0) {
		snprintf(err, errlen, "rte_cfgfile_add_section(%s) failed", section);
		return PA_ERROR;
	}
	if (rte_cfgfile_has_entry(cfg, section, entry))
		return rte_cfgfile_set_entry(cfg, section, entry, ov->value) == 0 ? PA_OK
		                                                                  : PA_ERROR;
	if (rte_cfgfile_add_entry(cfg, section, entry, ov->value) != 0) {
		snprintf(err, errlen, "rte_cfgfile_add_entry(%s) failed", ov->key);
		return PA_ERROR;
	}
	return PA_OK;
}

/* Every entry in the file must be a key of the table, and fit rte_cfgfile's value size. */
static int
check_known_entries(struct rte_cfgfile *cfg, char *err, size_t errlen)
{
	int nsections = rte_cfgfile_num_sections(cfg, NULL, 0);

	for (int s = 0; s < nsections; s++) {
		char section[CFG_NAME_LEN];
		int n = rte_cfgfile_section_num_entries_by_index(cfg, section, s);
		struct rte_cfgfile_entry entries[64];

		if (n > (int)pa_array_size(entries)) {
			snprintf(err, errlen, "config section [%s] has too many entries", section);
			return PA_ERROR;
		}
		rte_cfgfile_section_entries_by_index(cfg, s, section, entries, n);
		for (int e = 0; e < n; e++) {
			char name[2 * CFG_NAME_LEN + 1];

			if (strcmp(section, GLOBAL_SECTION) == 0)
				snprintf(name, sizeof(name), "%.63s", entries[e].name);
			else
				snprintf(name, sizeof(name), "%.63s.%.63s", section,
				         entries[e].name);
			if (find_key(name) == NULL) {
				snprintf(err, errlen, "unknown config key '%s'", name);
				return PA_ERROR;
			}
			/* rte_cfgfile cuts longer values silently: refuse rather than truncate. */
			if (strlen(entries[e].value) >= CFG_VALUE_LEN - 1) {
				snprintf(err, errlen,
				         "config key '%s': value of %d octets or more is not "
				         "supported",
				         name, CFG_VALUE_LEN - 1);
				return PA_ERROR;
			}
		}
	}
	return PA_OK;
}

static void
default_hostname(struct pa_config *config)
{
	if (config->hostname[0] != '\0')
		return;
	if (gethostname(config->hostname, sizeof(config->hostname)) == -1 ||
	    config->hostname[0] == '\0')
		snprintf(config->hostname, sizeof(config->hostname), "localhost");
	config->hostname[sizeof(config->hostname) - 1] = '\0';
}

/* RFC 5321 4.5.1: postmaster of the first served domain, unless `postmaster` names another. */
static int
default_postmaster(struct pa_config *config, char *err, size_t errlen)
{
	static const char local[] = "postmaster@";
	size_t n = strlen(config->domain_first);

	if (config->postmaster[0] != '\0' || n == 0)
		return PA_OK;
	if (sizeof(local) + n > sizeof(config->postmaster)) {
		snprintf(err, errlen,
		         "config key 'postmaster': postmaster@%s is over %d octets: set postmaster",
		         config->domain_first, SMTP_PATH_MAX);
		return PA_ERROR;
	}
	memcpy(config->postmaster, local, sizeof(local) - 1);
	memcpy(config->postmaster + sizeof(local) - 1, config->domain_first, n + 1);
	return PA_OK;
}

static int
parse_all(struct pa_config *config, struct rte_cfgfile *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < pa_array_size(keys); i++) {
		char section[CFG_NAME_LEN];
		const char *entry, *value;

		split_key(keys[i].name, section, sizeof(section), &entry);
		value = rte_cfgfile_get_entry(cfg, section, entry);
		if (value == NULL)
			value = keys[i].default_value;
		/* Kept as given, so that a reload can tell which keys changed. */
		snprintf(config->raw[i], sizeof(config->raw[i]), "%s", value);
		if (keys[i].parse(config, &keys[i], value, err, errlen) != PA_OK)
			return PA_ERROR;
	}
	default_hostname(config);
	if (default_postmaster(config, err, errlen) != PA_OK)
		return PA_ERROR;
	/* rte_ring sizes are powers of two. */
	if ((config->spool_ring_size & (config->spool_ring_size - 1)) != 0) {
		snprintf(err, errlen, "config key 'spool.ring_size': %u is not a power of 2",
		         config->spool_ring_size);
		return PA_ERROR;
	}
	if (config->backend == PA_BACKEND_DPDK && config->dpdk_addr == 0) {
		snprintf(err, errlen, "config key 'dpdk.ip': required with backend=dpdk");
		return PA_ERROR;
	}
	if (check_tls(config, err, errlen) != PA_OK)
		return PA_ERROR;
	if (check_screen(config, err, errlen) != PA_OK)
		return PA_ERROR;
	if (config->relay_min_backoff_s > config->relay_max_backoff_s) {
		snprintf(err, errlen, "config key 'relay.min_backoff': %u is above relay.max_backoff %u",
		         config->relay_min_backoff_s, config->relay_max_backoff_s);
		return PA_ERROR;
	}
	if (config->ndomains == 0 && config->postmaster[0] == '\0')
		pa_log_warning("config key 'domains' is empty: every recipient will be refused");
	else if (config->ndomains == 0)
		pa_log_warning("config key 'domains' is empty: every recipient but <Postmaster> "
		               "will be refused");
	return PA_OK;
}

int
config_load(struct pa_config *config, const char *path, const struct config_override *ov,
            size_t nov, char *err, size_t errlen)
{
	const struct rte_cfgfile_parameters params = {.comment_character = '#'};
	const int flags = CFG_FLAG_GLOBAL_SECTION | CFG_FLAG_EMPTY_VALUES;
	struct rte_cfgfile *cfg;
	int rc = PA_ERROR;

	memset(config, 0, sizeof(*config));
	if (path != NULL) {
		if (access(path, R_OK) == -1) {
			snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
			return PA_ERROR;
		}
		cfg = rte_cfgfile_load_with_params(path, flags, &params);
		if (cfg == NULL) {
			snprintf(err, errlen, "rte_cfgfile_load(%s) failed: not a valid INI file",
			         path);
			return PA_ERROR;
		}
	} else {
		cfg = rte_cfgfile_create(flags);
		if (cfg == NULL) {
			snprintf(err, errlen, "rte_cfgfile_create() failed");
			return PA_ERROR;
		}
	}
	if (check_known_entries(cfg, err, errlen) != PA_OK)
		goto out;
	for (size_t i = 0; i < nov; i++)
		if (apply_override(cfg, &ov[i], err, errlen) != PA_OK)
			goto out;
	if (parse_all(config, cfg, err, errlen) != PA_OK)
		goto out;
	rc = PA_OK;
out:
	rte_cfgfile_close(cfg);
	if (rc != PA_OK)
		config_free(config);
	return rc;
}

void
config_free(struct pa_config *config)
{
	free_domains(config);
}

bool
config_domain_served(const struct pa_config *config, const char *domain)
{
	char canonical[PA_DOMAIN_MAX + 1];
	const char *key = canonical;

	/* An ASCII domain is only lower-cased here; a U-label one goes through libidn2. */
	if (pa_domain_canonical(domain, strlen(domain), canonical, 0) < 0)
		return false;
	return bsearch(&key, config->domains, config->ndomains, sizeof(char *), compare_strings) !=
	       NULL;
}

const char *
config_restart_needed(const struct pa_config *running, const struct pa_config *next)
{
	for (size_t i = 0; i < pa_array_size(keys); i++)
		if (!keys[i].reloadable && strcmp(running->raw[i], next->raw[i]) != 0)
			return keys[i].name;
	return NULL;
}
