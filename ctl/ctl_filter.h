/*
 * ctl_filter.h: which message copies a control command acts on, and what
 * state each one is in, for spool ls, summary and the bulk forms of hold,
 * release, retry and delete.
 *
 * A request may carry any of these members; every one given must match:
 *   "from"     substring of the sender, any case
 *   "rcpt"     substring of some recipient, any case
 *   "min_age"  seconds since arrival, at least (pigeonctl --older-than)
 *   "max_age"  seconds since arrival, at most (pigeonctl --younger-than)
 *   "shard"    the copy's shard
 *   "dest"     substring, any case, of the destination some pending
 *              recipient is routed to now ("none": not routed)
 * A destination is the route map's canonical text of it, the one the
 * hand-off engine's log names (docs/handoff.md); it is looked up again at
 * every request, so it follows reloads.
 */
#ifndef PA_CTL_FILTER_H
#define PA_CTL_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "handoff/route_map.h"
#include "spool/spool.h"

struct ctl_env;
struct handoff;

/* The destination name of a recipient nothing routes. */
#define CTL_DEST_NONE "none"
#define CTL_DEST_MAX ROUTE_KEY_MAX

struct ctl_filter {
	uint64_t now_us;
	const char *from; /* NULL: any */
	const char *rcpt;
	const char *dest;
	int64_t min_age_s;       /* -1: none */
	int64_t max_age_s;       /* -1: none */
	int shard;               /* -1: every shard */
	struct handoff *handoff; /* routes recipients; NULL: nothing is routed */
};

/* An optional integer member in [min, max]; def when absent or null. */
int ctl_arg_int(const json_t *req, const char *name, json_int_t min, json_int_t max, json_int_t def,
                json_int_t *out, char *err, size_t errlen);
/* An optional string member; NULL when absent or null. */
int ctl_arg_str(const json_t *req, const char *name, const char **out, char *err, size_t errlen);

/* A filter that matches every copy. */
void ctl_filter_init(struct ctl_filter *f, struct ctl_env *env);

/* Reads the filter members of req; PA_ERROR with err naming the bad member. */
int ctl_filter_parse(struct ctl_filter *f, struct ctl_env *env, const json_t *req, char *err,
                     size_t errlen);

/* Whether anything but the shard narrows the filter. */
bool ctl_filter_narrows(const struct ctl_filter *f);

bool ctl_filter_match(const struct ctl_filter *f, const struct spool_entry *e);

uint64_t ctl_age_s(uint64_t now_us, uint64_t arrival_us);

/* Where recipient i of e goes now: its destination text, or CTL_DEST_NONE. */
void ctl_rcpt_destination(const struct ctl_filter *f, const struct spool_entry *e, size_t i,
                          char out[CTL_DEST_MAX]);

/* Recipient i is still to be handed off (not done, not failed). */
bool ctl_rcpt_pending(const struct spool_entry *e, size_t i);

/* Recipient i is pending and held by a per-message hold (not counting its shard's). */
bool ctl_rcpt_held(const struct spool_entry *e, size_t i);

/* Recipient i is pending, failed temporarily at least once, and is not held. */
bool ctl_rcpt_deferred(const struct spool_entry *e, size_t i);

/* A pending recipient of the copy is held by a per-message hold. */
bool ctl_copy_held(const struct spool_entry *e);

/* The copy waits for the operator: its shard is held, or a pending recipient is. */
bool ctl_entry_held(const struct ctl_filter *f, const struct spool_entry *e);

/* Some pending recipient failed temporarily at least once (and is not held). */
bool ctl_entry_deferred(const struct spool_entry *e);

#endif
