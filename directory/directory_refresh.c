/*
 * directory_refresh.c: the directory instance: its refresh thread and the
 * lock-free read side.
 *
 * One plain pthread (never a poll-mode lcore) loads the sources at start and
 * every directory.refresh seconds, builds a new snapshot and publishes it by
 * atomic pointer exchange.  Readers protect the snapshot they use with a
 * hazard slot of their own (one cache line per reader id): publish, re-check,
 * use, clear.  The thread frees an old snapshot only once no slot holds it,
 * so a reader never waits and never sees freed memory; the thread may wait a
 * lookup's length.  A failed load keeps the previous snapshot; the age of the
 * last successful load is a separate atomic, so an unchanged file costs a
 * stat() and no rebuild.  What it promises: lookups take no lock, make no
 * system call (the clock is the vDSO's) and never touch the network.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"
#include "directory/directory.h"

#define HAZARD_POLL_NS 50000
#define CACHE_LINE 64

struct reader_slot {
	struct dir_snapshot *hazard;
	char pad[CACHE_LINE - sizeof(struct dir_snapshot *)];
};

struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct directory {
	/* Read by the workers on every lookup. */
	struct dir_snapshot *current; /* atomic */
	uint64_t fresh_ns;            /* atomic: CLOCK_MONOTONIC of the last good load; 0 none */
	uint64_t max_age_ns;
	struct reader_slot *slots;
	unsigned readers;

	struct directory_config cfg; /* strings point into `strings` */
	char *strings;

	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* guards the fields below; never taken by a lookup */
	pthread_cond_t cond;
	bool stop, wake, first_done;
	uint64_t generation, attempts, failures;
	size_t entries;
	char last_error[512];
	struct file_id file_seen;
	bool file_seen_valid;
};

static uint64_t
monotonic_ns(void)
{
	struct timespec ts;

	/* COARSE: a vDSO read with no system call; ages are counted in seconds. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void __attribute__((format(printf, 3, 4)))
dlog(const struct directory *d, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (d->cfg.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->cfg.log(d->cfg.log_arg, level, msg);
}

void
directory_config_from(struct directory_config *dc, const struct pa_config *c)
{
	memset(dc, 0, sizeof(*dc));
	dc->file = c->directory_file;
	dc->ldap_uri = c->directory_ldap_uri;
	dc->ldap_bind_dn = c->directory_ldap_bind_dn;
	dc->ldap_bind_password_file = c->directory_ldap_bind_password_file;
	dc->ldap_base = c->directory_ldap_base;
	dc->ldap_filter = c->directory_ldap_filter;
	dc->ldap_mail_attr = c->directory_ldap_mail_attr;
	dc->ldap_alias_attr = c->directory_ldap_alias_attr;
	dc->ldap_host_attr = c->directory_ldap_host_attr;
	dc->refresh_s = c->directory_refresh_s;
	dc->max_age_s = c->directory_max_age_s;
	dc->case_sensitive_local = c->directory_case_sensitive_local;
}

static bool
set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

bool
directory_config_enabled(const struct directory_config *dc)
{
	return set(dc->file) || set(dc->ldap_uri);
}

/* Copies every string of src into one allocation, so the caller's config may go away. */
static int
copy_config(struct directory *d, const struct directory_config *src)
{
	const char *const *from[] = {&src->file,           &src->ldap_uri,
	                             &src->ldap_bind_dn,   &src->ldap_bind_password_file,
	                             &src->ldap_base,      &src->ldap_filter,
	                             &src->ldap_mail_attr, &src->ldap_alias_attr,
	                             &src->ldap_host_attr};
	const char **to[] = {&d->cfg.file,           &d->cfg.ldap_uri,
	                     &d->cfg.ldap_bind_dn,   &d->cfg.ldap_bind_password_file,
	                     &d->cfg.ldap_base,      &d->cfg.ldap_filter,
	                     &d->cfg.ldap_mail_attr, &d->cfg.ldap_alias_attr,
	                     &d->cfg.ldap_host_attr};
	size_t total = 0;
	char *p;

	d->cfg = *src;
	for (size_t i = 0; i < pa_array_size(from); i++)
		total += (*from[i] ? strlen(*from[i]) : 0) + 1;
	d->strings = malloc(total);
	if (d->strings == NULL)
		return PA_ERROR;
	p = d->strings;
	for (size_t i = 0; i < pa_array_size(from); i++) {
		size_t n = *from[i] ? strlen(*from[i]) : 0;

		memcpy(p, *from[i] ? *from[i] : "", n + 1);
		*to[i] = p;
		p += n + 1;
	}
	return PA_OK;
}

int
directory_create(struct directory **out, const struct directory_config *config, unsigned readers,
                 char *err, size_t errlen)
{
	struct directory *d;
	pthread_condattr_t attr;

	*out = NULL;
	if (!directory_config_enabled(config)) {
		snprintf(err, errlen,
		         "directory: neither directory.file nor directory.ldap.uri set");
		return PA_ERROR;
	}
	if (readers == 0 || readers > DIR_MAX_READERS) {
		snprintf(err, errlen, "directory: %u readers is outside 1..%d", readers,
		         DIR_MAX_READERS);
		return PA_ERROR;
	}
	if (config->refresh_s == 0 || config->max_age_s <= config->refresh_s) {
		snprintf(err, errlen,
		         "config key 'directory.max_age': %u must be longer than directory.refresh "
		         "(%u), or every snapshot goes stale before the next one",
		         config->max_age_s, config->refresh_s);
		return PA_ERROR;
	}
	if (set(config->ldap_uri) && (!set(config->ldap_base) || !set(config->ldap_filter) ||
	                              !set(config->ldap_mail_attr))) {
		snprintf(err, errlen,
		         "directory.ldap.uri is set: directory.ldap.base, "
		         "directory.ldap.filter and directory.ldap.mail_attr must be too");
		return PA_ERROR;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL || copy_config(d, config) != PA_OK) {
		free(d);
		snprintf(err, errlen, "directory: out of memory");
		return PA_ERROR;
	}
	d->readers = readers;
	d->max_age_ns = (uint64_t)config->max_age_s * 1000000000u;
	d->slots = aligned_alloc(CACHE_LINE, readers * sizeof(struct reader_slot));
	if (d->slots == NULL) {
		free(d->strings);
		free(d);
		snprintf(err, errlen, "directory: out of memory");
		return PA_ERROR;
	}
	memset(d->slots, 0, readers * sizeof(struct reader_slot));
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &attr);
	pthread_condattr_destroy(&attr);
	*out = d;
	return PA_OK;
}

/* ---- the read side --------------------------------------------------------- */

enum dir_status
directory_lookup(struct directory *d, unsigned reader, const char *addr, struct dir_answer *out)
{
	uint64_t fresh = __atomic_load_n(&d->fresh_ns, __ATOMIC_ACQUIRE);
	struct reader_slot *slot;
	struct dir_snapshot *s;
	enum dir_status st;

	if (pa_unlikely(reader >= d->readers))
		return DIR_UNAVAILABLE;
	slot = &d->slots[reader];
	if (fresh == 0 || monotonic_ns() - fresh > d->max_age_ns)
		return DIR_UNAVAILABLE;
	/* Hazard pointer: announce, then make sure it is still the published one. */
	do {
		s = __atomic_load_n(&d->current, __ATOMIC_ACQUIRE);
		if (s == NULL)
			return DIR_UNAVAILABLE;
		__atomic_store_n(&slot->hazard, s, __ATOMIC_SEQ_CST);
	} while (__atomic_load_n(&d->current, __ATOMIC_SEQ_CST) != s);
	st = dir_snapshot_lookup(s, addr, out);
	__atomic_store_n(&slot->hazard, NULL, __ATOMIC_RELEASE);
	return st;
}

/* ---- the refresh thread ---------------------------------------------------- */

/*
 * Publishes s, whose data is at least as new as loaded_ns, and frees the
 * snapshot it replaces once no reader holds it.
 */
static void
publish(struct directory *d, struct dir_snapshot *s, uint64_t loaded_ns)
{
	struct dir_snapshot *old = __atomic_exchange_n(&d->current, s, __ATOMIC_SEQ_CST);
	const struct timespec pause = {0, HAZARD_POLL_NS};

	/* Age counts from the start of the load: the source may have changed while we read it. */
	__atomic_store_n(&d->fresh_ns, loaded_ns, __ATOMIC_RELEASE);
	if (old == NULL)
		return;
	for (unsigned i = 0; i < d->readers; i++)
		while (__atomic_load_n(&d->slots[i].hazard, __ATOMIC_SEQ_CST) == old)
			nanosleep(&pause, NULL);
	dir_snapshot_free(old);
}

static bool
same_file(const struct file_id *a, const struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* One load of every source; PA_OK when a snapshot is (still) current. */
static int
load_once(struct directory *d, char *err, size_t errlen)
{
	struct dir_snapshot_stats stats;
	struct dir_builder *b;
	struct dir_snapshot *s;
	struct file_id fid = {0};
	uint64_t t0 = monotonic_ns();
	size_t skipped = 0;
	char note[512] = "";

	if (set(d->cfg.file)) {
		struct stat st;

		if (stat(d->cfg.file, &st) == -1) {
			snprintf(err, errlen, "stat(%s) failed: %s", d->cfg.file, strerror(errno));
			return PA_ERROR;
		}
		fid = (struct file_id){st.st_dev, st.st_ino, st.st_size, st.st_mtim};
		/* An unchanged file and no LDAP: the snapshot is as fresh as a rebuild would be. */
		if (!set(d->cfg.ldap_uri) && d->file_seen_valid && same_file(&fid, &d->file_seen) &&
		    __atomic_load_n(&d->current, __ATOMIC_ACQUIRE) != NULL) {
			__atomic_store_n(&d->fresh_ns, t0, __ATOMIC_RELEASE);
			return PA_OK;
		}
	}
	b = dir_builder_new(d->cfg.case_sensitive_local, d->entries + d->entries / 8);
	if (b == NULL) {
		snprintf(err, errlen, "dir_builder_new() failed: out of memory");
		return PA_ERROR;
	}
	if (set(d->cfg.file) && directory_file_load(b, d->cfg.file, err, errlen) != PA_OK) {
		dir_builder_free(b);
		return PA_ERROR;
	}
	if (set(d->cfg.ldap_uri)) {
		if (directory_ldap_load(b, &d->cfg, &skipped, err, errlen) != PA_OK) {
			dir_builder_free(b);
			return PA_ERROR;
		}
		if (skipped > 0)
			snprintf(note, sizeof(note), "%s", err);
	}
	s = dir_builder_finish(b, err, errlen);
	if (s == NULL)
		return PA_ERROR;
	dir_snapshot_stats(s, &stats);
	publish(d, s, t0);
	pthread_mutex_lock(&d->lock);
	d->generation++;
	d->entries = stats.mailboxes + stats.aliases;
	d->file_seen = fid;
	d->file_seen_valid = set(d->cfg.file);
	pthread_mutex_unlock(&d->lock);
	if (note[0] != '\0')
		dlog(d, PA_LOG_WARNING, "directory: LDAP values skipped: %s", note);
	dlog(d, PA_LOG_INFO,
	     "directory: loaded mailboxes=%zu aliases=%zu domains=%zu catch_all=%zu stores=%zu "
	     "bytes=%zu in %llu ms",
	     stats.mailboxes, stats.aliases, stats.domains, stats.catch_alls, stats.stores,
	     stats.bytes, (unsigned long long)((monotonic_ns() - t0) / 1000000u));
	return PA_OK;
}

static void
refresh_once(struct directory *d)
{
	char err[512];
	int rc = load_once(d, err, sizeof(err));
	uint64_t fresh = __atomic_load_n(&d->fresh_ns, __ATOMIC_ACQUIRE);

	pthread_mutex_lock(&d->lock);
	d->attempts++;
	if (rc == PA_OK) {
		d->last_error[0] = '\0';
	} else {
		d->failures++;
		snprintf(d->last_error, sizeof(d->last_error), "%s", err);
	}
	pthread_mutex_unlock(&d->lock);
	if (rc == PA_OK)
		return;
	if (fresh == 0)
		dlog(d, PA_LOG_ERR, "directory: load failed, no snapshot yet (RCPT gets 451): %s",
		     err);
	else if (monotonic_ns() - fresh > d->max_age_ns)
		dlog(d, PA_LOG_ERR,
		     "directory: load failed, the snapshot of %llu s ago is older than "
		     "directory.max_age (RCPT gets 451): %s",
		     (unsigned long long)((monotonic_ns() - fresh) / 1000000000u), err);
	else
		dlog(d, PA_LOG_WARNING,
		     "directory: load failed, the snapshot of %llu s ago keeps serving: %s",
		     (unsigned long long)((monotonic_ns() - fresh) / 1000000000u), err);
}

static void *
refresh_main(void *arg)
{
	struct directory *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		struct timespec deadline;

		pthread_mutex_unlock(&d->lock);
		refresh_once(d);
		pthread_mutex_lock(&d->lock);
		d->first_done = true;
		pthread_cond_broadcast(&d->cond);
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += d->cfg.refresh_s;
		while (!d->stop && !d->wake)
			if (pthread_cond_timedwait(&d->cond, &d->lock, &deadline) == ETIMEDOUT)
				break;
		d->wake = false;
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int
directory_start(struct directory *d, unsigned wait_ms, char *err, size_t errlen)
{
	struct timespec deadline;
	int rc;

	rc = pthread_create(&d->thread, NULL, refresh_main, d);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(directory) failed: %s", strerror(rc));
		return PA_ERROR;
	}
	pthread_setname_np(d->thread, "pa-directory");
	d->started = true;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (!d->first_done)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&d->lock);
	return __atomic_load_n(&d->current, __ATOMIC_ACQUIRE) != NULL ? PA_OK : PA_AGAIN;
}

void
directory_refresh_now(struct directory *d)
{
	pthread_mutex_lock(&d->lock);
	d->wake = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void
directory_stop(struct directory *d)
{
	if (d == NULL || !d->started)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	d->started = false;
}

void
directory_destroy(struct directory *d)
{
	if (d == NULL)
		return;
	directory_stop(d);
	dir_snapshot_free(d->current);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d->slots);
	free(d->strings);
	free(d);
}

void
directory_get_status(struct directory *d, struct directory_status *out)
{
	uint64_t fresh = __atomic_load_n(&d->fresh_ns, __ATOMIC_ACQUIRE);
	uint64_t age = fresh ? monotonic_ns() - fresh : 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&d->lock);
	out->loaded = __atomic_load_n(&d->current, __ATOMIC_ACQUIRE) != NULL;
	out->fresh = out->loaded && fresh != 0 && age <= d->max_age_ns;
	out->generation = d->generation;
	out->attempts = d->attempts;
	out->failures = d->failures;
	out->age_s = fresh ? (double)age / 1e9 : -1.0;
	out->entries = d->entries;
	snprintf(out->last_error, sizeof(out->last_error), "%s", d->last_error);
	pthread_mutex_unlock(&d->lock);
}
