/*
 * route_map.h: which delivery-tier destination each recipient is handed to.
 *
 * A route map assigns shard ranges, domains and single addresses to
 * destinations; a destination is a protocol (SMTP or LMTP) and a list of
 * hosts with priorities.  Lookup order: address, domain, shard, then the
 * default destination (relay.default); NULL means "no route: keep it held".
 * The hand-off engine puts the recipient's store (relay.store_route,
 * route_map_store_dest()) between domain and shard.
 * docs/handoff.md describes the file format.
 *
 * What it promises: the parser treats its input as hostile (bounded line
 * length, no NUL, every number range-checked), refuses a map as a whole and
 * names the offending line; a map is immutable once parsed, so lookups need
 * no lock.
 */
#ifndef SPOOL_ROUTE_MAP_H
#define SPOOL_ROUTE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ROUTE_HOSTS_MAX 8
#define ROUTE_LINE_MAX 4096
#define ROUTE_FILE_MAX (16u << 20)
#define ROUTE_KEY_MAX 512
#define ROUTE_STORE_TEMPLATE_MAX 255 /* relay.store_route */
#define ROUTE_STORE_MAX 47           /* a store: "[IPv6]" at most (INET6_ADDRSTRLEN + 1) */

enum route_proto {
	ROUTE_SMTP,
	ROUTE_LMTP,
};

struct route_host {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned priority; /* lower first; equal priorities keep their written order */
	char name[64];     /* HOST:PORT as written, for logs */
};

struct route_dest {
	enum route_proto proto;
	unsigned nhosts;
	struct route_host hosts[ROUTE_HOSTS_MAX];
	char key[ROUTE_KEY_MAX]; /* canonical text: equal keys mean the same destination */
};

struct route_map;

/* Parses one destination, "smtp:HOST:PORT[/PRIO][,HOST:PORT[/PRIO]]...", HOST numeric. */
int route_dest_parse(const char *text, size_t len, struct route_dest *out, char *err,
                     size_t errlen);

/*
 * Parses a whole map (text need not be NUL-terminated).  default_dest may be
 * NULL or "" (no default).  PA_OK with *out set, or PA_ERROR with err naming
 * the line ("line 3: ...") and *out untouched.
 */
int route_map_parse(const char *text, size_t len, unsigned shards, const char *default_dest,
                    struct route_map **out, char *err, size_t errlen);

/* Reads path (empty or NULL: no file, only the default) and parses it. */
int route_map_load(const char *path, unsigned shards, const char *default_dest,
                   struct route_map **out, char *err, size_t errlen);

void route_map_free(struct route_map *map);

/* The destination of one recipient of a copy in `shard`; NULL when nothing routes it. */
const struct route_dest *route_map_lookup(const struct route_map *map, unsigned shard,
                                          const char *rcpt);

/* Whether the map routes anything at all (some entry, a store route or a default). */
bool route_map_routes_anything(const struct route_map *map);

/*
 * The per-store route (relay.store_route): a destination with exactly one
 * "%s" where the store's host goes, e.g. "lmtp:%s:24".  Checks it (one %s,
 * no other '%', a valid destination for an IPv4 and an [IPv6] store) and
 * attaches it to a map that is not published yet.  tmpl "" or NULL: none.
 */
int route_store_template_check(const char *tmpl, char *err, size_t errlen);
int route_map_set_store_route(struct route_map *map, const char *tmpl, char *err, size_t errlen);
bool route_map_has_store_route(const struct route_map *map);

/* The destination of an `address` or `domain` rule for rcpt; NULL when none names it. */
const struct route_dest *route_map_lookup_override(const struct route_map *map, const char *rcpt);

enum route_store_result {
	ROUTE_STORE_OK,   /* *out is the store's destination */
	ROUTE_STORE_NONE, /* the map has no store route */
	ROUTE_STORE_BAD,  /* not a host name or address literal (untrusted data) */
	ROUTE_STORE_NAME, /* a host name: the engine never waits for DNS, so not routed */
};
/*
 * The destination of a store (a directory value, untrusted: at most
 * ROUTE_STORE_MAX octets, an IPv4 address or [IPv6] literal; letters, digits,
 * '-' and '.' make a host name) under the map's store route, into *out.
 */
enum route_store_result route_map_store_dest(const struct route_map *map, const char *store,
                                             struct route_dest *out);

#endif
