/*
 * fuzz_route_map.c: the route-map parser (handoff/route_map.c).
 *
 * The route map is an operator's file, but route_map.h promises to treat it
 * as hostile: bounded lines, no NUL, every number range-checked, refused as a
 * whole with the line named.  The first octet picks the shard count and the
 * relay.default given alongside (both change what the parser accepts); the
 * rest is the file, not NUL-terminated.  A map that parses is looked up: every
 * destination returned must be well formed (1..ROUTE_HOSTS_MAX hosts, a
 * NUL-terminated key); a refusal must come with an error message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pa.h"
#include "handoff/route_map.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static const char *const defaults[] = {NULL, "", "smtp:192.0.2.25:25",
                                       "lmtp:[2001:db8::24]:24/5,192.0.2.24:24/1"};

static const char *const rcpts[] = {
    "ceo@example.com", "someone@vip.example.com", "USER@Example.COM", "postmaster", "@", ""};

static void
check_dest(const struct route_dest *d)
{
	if (d == NULL)
		return;
	CHECK(d->nhosts >= 1 && d->nhosts <= ROUTE_HOSTS_MAX);
	CHECK(d->proto == ROUTE_SMTP || d->proto == ROUTE_LMTP);
	CHECK(memchr(d->key, '\0', sizeof(d->key)) != NULL);
	for (unsigned i = 0; i < d->nhosts; i++)
		CHECK(memchr(d->hosts[i].name, '\0', sizeof(d->hosts[i].name)) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_map *map = NULL;
	struct route_dest dest;
	char err[256] = "";
	unsigned shards;
	char *text;

	if (size < 1)
		return 0;
	shards = 1u + (data[0] & 0x1f);
	/* An exact-size copy: the parser must not read past len (there is no NUL). */
	text = malloc(size - 1 > 0 ? size - 1 : 1);
	CHECK(text != NULL);
	memcpy(text, data + 1, size - 1);
	if (route_map_parse(text, size - 1, shards, defaults[data[0] >> 6], &map, err,
	                    sizeof(err)) == PA_OK) {
		CHECK(map != NULL);
		for (unsigned s = 0; s < shards; s++)
			for (size_t i = 0; i < pa_array_size(rcpts); i++)
				check_dest(route_map_lookup(map, s, rcpts[i]));
		route_map_free(map);
	} else {
		CHECK(map == NULL && err[0] != '\0');
	}
	/* The same bytes as one destination ("smtp:HOST:PORT/PRIO,..."). */
	if (route_dest_parse(text, size - 1, &dest, err, sizeof(err)) == PA_OK)
		check_dest(&dest);
	free(text);
	return 0;
}
