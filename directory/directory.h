/*
 * directory.h: the recipient directory, checked at RCPT time.
 *
 * Which recipients exist, the canonical address behind each alias, and
 * optionally the store (mailHost) that holds a mailbox.  Two layers:
 *
 *  - a snapshot: an immutable in-memory index built once (by a builder) from
 *    the sources, looked up with no lock, no allocation and no system call;
 *  - the directory instance: a background thread that loads the sources
 *    (directory.file, directory.ldap.*) at start and every directory.refresh
 *    seconds, and publishes each new snapshot by pointer swap.  Workers look
 *    up through per-reader hazard slots, so they never wait for the thread and
 *    a snapshot is freed only when no reader can still see it.
 *
 * A failed refresh keeps the last snapshot serving; once it is older than
 * directory.max_age (or before the first load) lookups answer
 * DIR_UNAVAILABLE, which the host turns into 451 4.3.0.  docs/directory.md
 * has the file format, the LDAP mapping and the failure modes.
 */
#ifndef PA_DIRECTORY_H
#define PA_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pa_config;

#define DIR_ADDR_MAX 254  /* octets of a stored address (RFC 5321 path minus brackets) */
#define DIR_STORE_MAX 254 /* octets of a store (host) name */
#define DIR_MAX_STORES 65535
#define DIR_MAX_READERS 128

enum dir_status {
	DIR_MAILBOX,        /* the address is a mailbox */
	DIR_ALIAS,          /* an alias: the canonical mailbox is in the answer */
	DIR_CATCH_ALL,      /* not listed, but its domain accepts every address */
	DIR_UNKNOWN_USER,   /* the domain is in the directory, the address is not */
	DIR_UNKNOWN_DOMAIN, /* the directory knows nothing of the domain */
	DIR_UNAVAILABLE,    /* never loaded, or older than max_age: answer 451 */
};

/* What a lookup found.  canonical is NUL-terminated; store is "" when none. */
struct dir_answer {
	char canonical[DIR_ADDR_MAX + 2];
	char store[DIR_STORE_MAX + 1];
};

/* ---- snapshots ---------------------------------------------------------- */

struct dir_builder;
struct dir_snapshot;

/*
 * A builder collects entries, then becomes a snapshot.  expected is a size
 * hint (0: unknown).  Addresses are folded as the snapshot will look them
 * up: domains always to lower case, local parts too unless case_sensitive_local.
 */
struct dir_builder *dir_builder_new(bool case_sensitive_local, size_t expected);
void dir_builder_free(struct dir_builder *b);

/*
 * Adders: PA_OK, or PA_ERROR with the reason in err (a malformed address, a
 * conflict such as an address that is both a mailbox and an alias, out of
 * memory).  A builder that failed on one entry stays usable for the others.
 * store may be NULL or "".
 */
int dir_builder_add_mailbox(struct dir_builder *b, const char *addr, size_t len, const char *store,
                            size_t store_len, char *err, size_t errlen);
int dir_builder_add_alias(struct dir_builder *b, const char *alias, size_t alias_len,
                          const char *canonical, size_t canonical_len, char *err, size_t errlen);
/* A domain whose every address exists ("@example.com" in the file). */
int dir_builder_add_catch_all(struct dir_builder *b, const char *domain, size_t len, char *err,
                              size_t errlen);

/*
 * Resolves alias chains and returns the snapshot; the builder is consumed
 * either way.  NULL with err set on an alias loop or out of memory.
 */
struct dir_snapshot *dir_builder_finish(struct dir_builder *b, char *err, size_t errlen);

void dir_snapshot_free(struct dir_snapshot *s);

/* Never blocks, never allocates.  out may be NULL when only the status matters. */
enum dir_status dir_snapshot_lookup(const struct dir_snapshot *s, const char *addr,
                                    struct dir_answer *out);

struct dir_snapshot_stats {
	size_t mailboxes, aliases, catch_alls, domains, stores;
	size_t table_slots; /* hash table capacity */
	size_t bytes;       /* heap held by the snapshot: table + arena + store index */
};
void dir_snapshot_stats(const struct dir_snapshot *s, struct dir_snapshot_stats *out);

/* ---- sources ------------------------------------------------------------- */

/*
 * The file format (docs/directory.md).  name labels errors ("FILE:LINE:
 * reason").  PA_ERROR at the first bad line; nothing is guessed.
 */
int directory_file_parse(struct dir_builder *b, const char *data, size_t len, const char *name,
                         char *err, size_t errlen);
int directory_file_load(struct dir_builder *b, const char *path, char *err, size_t errlen);

struct directory_config {
	const char *file;         /* "" or NULL: no file source */
	const char *ldap_uri;     /* "" or NULL: no LDAP source */
	const char *ldap_bind_dn; /* "": anonymous */
	const char *ldap_bind_password_file;
	const char *ldap_base;
	const char *ldap_filter;
	const char *ldap_mail_attr;
	const char *ldap_alias_attr; /* "": none */
	const char *ldap_host_attr;  /* "": none */
	unsigned refresh_s;
	unsigned max_age_s;
	bool case_sensitive_local;
	/* Optional log sink (level: enum pa_log_level); called from the refresh thread. */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
};

/*
 * One full search of the LDAP source into b (simple bind, paged search).
 * Blocks for up to the network timeouts: call it from the refresh thread only.
 * skipped counts values that are not addresses or conflict (not fatal); when
 * it is not 0 on PA_OK, err describes the first of them, for the log.
 */
int directory_ldap_load(struct dir_builder *b, const struct directory_config *config,
                        size_t *skipped, char *err, size_t errlen);

/* ---- the directory instance --------------------------------------------- */

struct directory;

/* Points dc's strings into config (which must outlive the directory). */
void directory_config_from(struct directory_config *dc, const struct pa_config *config);

/* Whether the configuration names any directory source. */
bool directory_config_enabled(const struct directory_config *dc);

/*
 * Validates and copies config; readers is the number of reader ids
 * (0..readers-1) that may call directory_lookup() concurrently, one id per
 * thread.  Starts nothing.
 */
int directory_create(struct directory **out, const struct directory_config *config,
                     unsigned readers, char *err, size_t errlen);

/*
 * Starts the refresh thread, which loads at once.  Waits up to wait_ms for
 * that first attempt: PA_OK when a snapshot is serving, PA_AGAIN when it is
 * not (yet): the server runs anyway and answers 451 until a load succeeds.
 * PA_ERROR when the thread cannot be started.
 */
int directory_start(struct directory *d, unsigned wait_ms, char *err, size_t errlen);

/* Stops and joins the thread (waits for a load in progress to end). */
void directory_stop(struct directory *d);
void directory_destroy(struct directory *d);

/*
 * The hot path: lock-free, no system call, no allocation.  reader is this
 * thread's id (< readers); two threads must never use the same id at once.
 */
enum dir_status directory_lookup(struct directory *d, unsigned reader, const char *addr,
                                 struct dir_answer *out);

/* Wakes the refresh thread for a load now (tests, operator). */
void directory_refresh_now(struct directory *d);

struct directory_status {
	bool loaded;          /* a snapshot is published */
	bool fresh;           /* and younger than max_age */
	uint64_t generation;  /* snapshots published so far */
	uint64_t attempts;    /* loads tried */
	uint64_t failures;    /* loads failed */
	double age_s;         /* since the last successful load; -1 when none */
	size_t entries;       /* mailboxes + aliases in the snapshot */
	char last_error[512]; /* of the last failed load; "" after a success */
};
void directory_get_status(struct directory *d, struct directory_status *out);

#endif
