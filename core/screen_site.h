/*
 * screen_site.h: the DNS lists a connection is screened against
 * (screen.dnsbl_sites, screen.dnswl_sites; docs/security.md, "Screening"),
 * written as Postfix's postscreen_dnsbl_sites writes them:
 *
 *     DOMAIN[=FILTER][*WEIGHT]      e.g.  zen.example=127.0.0.[2..11]*3
 *
 * FILTER is four dot-separated octet patterns, each a number or a bracketed
 * set of numbers and ranges separated by ';' ("[2;4;10..11]"); without a
 * filter any A record lists the client.  A DNSBL's weight is positive (1
 * when not written); a DNSWL's is negative (-1 when not written), as
 * postscreen writes its allow lists.  Pure parsing and matching: used by the
 * configuration, which refuses a bad list naming the entry, and by the
 * screen on the workers (dataplane/ingest_screen.c).  No allocation.
 */
#ifndef PA_SCREEN_SITE_H
#define PA_SCREEN_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCREEN_SITES_MAX 16 /* per list */
/* A reversed IPv6 address takes 64 octets of a name's 253: the list's domain the rest. */
#define SCREEN_SITE_DOMAIN_MAX 188
/* The longest query name: 32 nibbles and their dots, then the domain. */
#define SCREEN_QNAME_MAX (64 + SCREEN_SITE_DOMAIN_MAX)

struct screen_site {
	char domain[SCREEN_SITE_DOMAIN_MAX + 1]; /* lower case, no trailing dot */
	int weight;
	bool has_filter;
	uint8_t filter[4][32]; /* per octet of the A record: a bitmap of the values that match */
};

/*
 * Parses a comma- or blank-separated list into sites[0..*n) (at most
 * SCREEN_SITES_MAX).  allowlist: DNSWL entries, whose weights are negative.
 * PA_ERROR with err naming the entry and what is wrong with it.
 */
int screen_sites_parse(const char *list, bool allowlist, struct screen_site *sites, unsigned *n,
                       char *err, size_t errlen);

/* Whether an A record (4 octets, network order) lists the client for this site. */
bool screen_site_match(const struct screen_site *site, const uint8_t a[4]);

/*
 * The name to look up for a client at the site (RFC 5782 2.1 for IPv4, 2.4
 * for IPv6: octets or nibbles in reverse order, then the list's domain).
 * Returns its length, or PA_ERROR when out is too small.
 */
int screen_query_name(int family, const uint8_t *addr, const char *domain, char *out,
                      size_t outlen);

#endif
