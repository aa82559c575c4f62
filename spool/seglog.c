/*
 * seglog.c: one shard's segment log: segment files, the group writer and
 * recovery (seglog.h; the record layout is seglog_record.c's).
 *
 * The writer stages records as parts (its own bytes, headers and copied
 * prefixes, kept in an arena by offset; the caller's data by pointer) in
 * runs, one run per segment a group touches, and turns them into iovecs
 * only at commit: one pwritev per run (more when a run has more than
 * IOV_MAX parts or the kernel writes short), then one fdatasync per run.
 */
#include "spool/seglog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/dir_sync.h"
#include "core/pa.h"

#define SEGMENT_RECORD (SEGLOG_HEADER + SEGLOG_SEGMENT_PAYLOAD)
#define ALLOC_ALIGN 4096u
#define NAME_DIGITS 20
#define NAME_SUFFIX ".seg"

struct part {
	bool own; /* in the arena at off; otherwise at ptr */
	size_t off;
	const void *ptr;
	size_t len;
};

struct run {
	int fd;
	uint64_t segment;
	uint64_t offset; /* where its first part goes */
	size_t first, nparts;
	bool close_after; /* an older segment: its fd is closed once the group is done */
};

struct seglog {
	char *dir;
	uint64_t segment_size;
	uint32_t shards, shard;

	struct seglog_segment *segs; /* every segment file, by number; the spare is the last */
	size_t nsegs, segs_cap;

	/* Writer. */
	int fd; /* the segment being written, -1: the next add starts a new one */
	uint64_t cur, cur_size;
	uint64_t off; /* next offset in cur, staged records included */
	uint64_t seq; /* next seq, staged records included */
	uint64_t next_number;
	int spare_fd; /* a made, synced, empty segment: number next_number - 1 */
	uint64_t spare_size;
	struct seglog_pos tail;

	/* Staging. */
	uint8_t *arena;
	size_t arena_len, arena_cap;
	struct part *parts;
	size_t nparts, parts_cap;
	struct run *runs;
	size_t nruns, runs_cap;
	unsigned staged;
	struct iovec *iov;
	size_t iov_cap;

	uint64_t records, record_bytes, syncs;
};

static bool
grow(void **buf, size_t *cap, size_t want, size_t elem)
{
	size_t n = *cap > 0 ? *cap : 16;
	void *p;

	if (want <= *cap)
		return true;
	while (n < want)
		n *= 2;
	p = realloc(*buf, n * elem);
	if (p == NULL)
		return false;
	*buf = p;
	*cap = n;
	return true;
}

static uint64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int
seglog_path(char *out, size_t outlen, const char *dir, uint64_t segment)
{
	int n = snprintf(out, outlen, "%s/%020" PRIu64 NAME_SUFFIX, dir, segment);

	return n < 0 || (size_t)n >= outlen ? PA_ERROR : PA_OK;
}

/* NNNNNNNNNNNNNNNNNNNN.seg, exactly; anything else in the directory is not a segment. */
static bool
parse_name(const char *name, uint64_t *number)
{
	uint64_t v = 0;

	if (strlen(name) != NAME_DIGITS + strlen(NAME_SUFFIX) ||
	    strcmp(name + NAME_DIGITS, NAME_SUFFIX) != 0)
		return false;
	for (size_t i = 0; i < NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*number = v;
	return true;
}

static int
cmp_seg(const void *a, const void *b)
{
	uint64_t x = ((const struct seglog_segment *)a)->number,
	         y = ((const struct seglog_segment *)b)->number;

	return x < y ? -1 : x > y;
}

static int
list_segments(struct seglog *log, char *err, size_t errlen)
{
	DIR *d = opendir(log->dir);
	struct dirent *de;

	if (d == NULL) {
		snprintf(err, errlen, "opendir(%s) failed: %s", log->dir, strerror(errno));
		return PA_ERROR;
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t n;

		if (!parse_name(de->d_name, &n))
			continue;
		if (!grow((void **)&log->segs, &log->segs_cap, log->nsegs + 1,
		          sizeof(*log->segs))) {
			closedir(d);
			snprintf(err, errlen, "seglog %s: out of memory", log->dir);
			return PA_ERROR;
		}
		log->segs[log->nsegs++] = (struct seglog_segment){n, 0};
	}
	closedir(d);
	if (log->nsegs > 1)
		qsort(log->segs, log->nsegs, sizeof(*log->segs), cmp_seg);
	return PA_OK;
}

/* ------------------------------------------------------------------ recovery */

struct scan_ctx {
	struct seglog *log;
	uint64_t segment;
	uint64_t min_seq; /* a SEGMENT record's seq must be at least this */
	bool header_ok;
	bool foreign; /* a valid SEGMENT record that is not this segment's */
	seglog_recover_fn fn;
	void *arg;
	int rc; /* fn's failure */
};

static int
scan_record(uint64_t offset, const struct seglog_header *h, const uint8_t *payload, size_t len,
            void *arg)
{
	struct scan_ctx *s = arg;
	struct seglog_segment_info info;
	struct seglog_loc loc = {s->segment, offset, h->length, h->seq};

	if (h->kind == SEGLOG_KIND_SEGMENT) {
		/*
		 * A whole SEGMENT record of another format, spool, shard or number,
		 * or one that goes back in seq, is not a torn write: a file put
		 * here by hand or damage.  Refused rather than removed or ignored.
		 */
		if (seglog_segment_decode(payload, len, &info) != PA_OK ||
		    info.shards != s->log->shards || info.shard != s->log->shard ||
		    info.segment != s->segment || h->seq < s->min_seq) {
			s->foreign = true;
			return 1;
		}
		s->header_ok = true;
		return 0;
	}
	if (s->fn != NULL && s->fn(&loc, payload, len, s->arg) != 0) {
		s->rc = PA_ERROR;
		return 1;
	}
	return 0;
}

/*
 * Scans one segment file from `from` (0: from its SEGMENT record).  *valid is
 * false when it has no valid SEGMENT record (nothing in it counts).
 */
static int
scan_segment(struct seglog *log, struct seglog_segment *sf, uint64_t from, uint64_t *seq,
             bool *valid, seglog_recover_fn fn, void *arg, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	struct scan_ctx s = {log, sf->number, *seq, from > 0, false, fn, arg, PA_OK};
	uint64_t next = from > 0 ? *seq : 0;
	void *map;
	int fd;

	*valid = false;
	if (seglog_path(path, sizeof(path), log->dir, sf->number) != PA_OK) {
		snprintf(err, errlen, "seglog: path too long in %s", log->dir);
		return PA_ERROR;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "fstat(%s) failed: %s", path, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	sf->size = (uint64_t)st.st_size;
	if (st.st_size < SEGLOG_HEADER || (uint64_t)st.st_size <= from) {
		close(fd);
		*valid = from > 0;
		return PA_OK;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "mmap(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	seglog_scan_image(map, (size_t)st.st_size, from, next, &next, scan_record, &s);
	munmap(map, (size_t)st.st_size);
	if (s.rc != PA_OK) {
		snprintf(err, errlen, "seglog %s: recovery of segment %" PRIu64 " failed", log->dir,
		         sf->number);
		return PA_ERROR;
	}
	if (s.foreign) {
		snprintf(err, errlen,
		         "%s: its SEGMENT record names another format, spool, shard or segment "
		         "number, or an older seq; not a segment of this log",
		         path);
		return PA_ERROR;
	}
	*valid = s.header_ok;
	if (s.header_ok && next > *seq)
		*seq = next;
	return PA_OK;
}

static int
segment_size(struct seglog *log, struct seglog_segment *sf, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;

	if (seglog_path(path, sizeof(path), log->dir, sf->number) != PA_OK ||
	    stat(path, &st) == -1) {
		snprintf(err, errlen, "stat(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	sf->size = (uint64_t)st.st_size;
	return PA_OK;
}

/* Files without a whole SEGMENT record (a crash while one was made or first written) hold nothing:
 * removed. */
static int
remove_segment(struct seglog *log, size_t i, char *err, size_t errlen)
{
	char path[PATH_MAX];

	if (seglog_path(path, sizeof(path), log->dir, log->segs[i].number) != PA_OK ||
	    unlink(path) == -1) {
		snprintf(err, errlen, "unlink(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	memmove(&log->segs[i], &log->segs[i + 1], (log->nsegs - i - 1) * sizeof(*log->segs));
	log->nsegs--;
	return PA_OK;
}

/* writer false: a read-only scan (seglog_scan()) leaves invalid segments where they are. */
static int
recover(struct seglog *log, const struct seglog_pos *from, bool writer, seglog_recover_fn fn,
        void *arg, char *err, size_t errlen)
{
	uint64_t seq = from != NULL && from->seq > 0 ? from->seq : 1;
	bool removed = false;

	for (size_t i = 0; i < log->nsegs;) {
		struct seglog_segment *sf = &log->segs[i];
		uint64_t start = 0;
		bool valid;

		if (from != NULL && sf->number < from->segment) {
			/* Before the checkpoint: indexed already; only its size is needed. */
			if (segment_size(log, sf, err, errlen) != PA_OK)
				return PA_ERROR;
			i++;
			continue;
		}
		if (from != NULL && sf->number == from->segment)
			start = from->offset;
		if (scan_segment(log, sf, start, &seq, &valid, fn, arg, err, errlen) != PA_OK)
			return PA_ERROR;
		if (valid || !writer) {
			i++;
			continue;
		}
		if (remove_segment(log, i, err, errlen) != PA_OK)
			return PA_ERROR;
		removed = true;
	}
	if (removed && pa_fsync_dir(log->dir, err, errlen) != PA_OK)
		return PA_ERROR;
	log->seq = seq;
	log->next_number = log->nsegs > 0 ? log->segs[log->nsegs - 1].number + 1 : 1;
	if (from != NULL && log->next_number <= from->segment)
		log->next_number = from->segment + 1;
	/* The next record goes into a new segment: that is where recovery would start. */
	log->tail = (struct seglog_pos){log->next_number, 0, log->seq};
	return PA_OK;
}

/* ------------------------------------------------------------------ segment files */

static uint64_t
round_up(uint64_t v)
{
	return (v + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
}

/* Reserves size bytes; a file system without fallocate gets a sparse file of that size. */
static int
allocate(int fd, const char *path, uint64_t size, char *err, size_t errlen)
{
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return PA_OK;
	if (errno != EOPNOTSUPP && errno != ENOSYS) {
		snprintf(err, errlen, "fallocate(%s, %" PRIu64 ") failed: %s", path, size,
		         strerror(errno));
		return PA_ERROR;
	}
	if (ftruncate(fd, (off_t)size) == -1) {
		snprintf(err, errlen, "ftruncate(%s, %" PRIu64 ") failed: %s", path, size,
		         strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

/* Makes the spare: allocated, synced, its name synced in the directory. */
static int
make_spare(struct seglog *log, uint64_t size, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint64_t number = log->next_number;
	int fd;

	if (!grow((void **)&log->segs, &log->segs_cap, log->nsegs + 1, sizeof(*log->segs))) {
		snprintf(err, errlen, "seglog %s: out of memory", log->dir);
		return PA_ERROR;
	}
	if (seglog_path(path, sizeof(path), log->dir, number) != PA_OK) {
		snprintf(err, errlen, "seglog: path too long in %s", log->dir);
		return PA_ERROR;
	}
	/* O_TRUNC: a file of that number can only be one a crash left half-made. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if (allocate(fd, path, size, err, errlen) != PA_OK) {
		close(fd);
		unlink(path);
		return PA_ERROR;
	}
	if (fsync(fd) == -1) {
		snprintf(err, errlen, "fsync(%s) failed: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return PA_ERROR;
	}
	if (pa_fsync_dir(log->dir, err, errlen) != PA_OK) {
		close(fd);
		unlink(path);
		return PA_ERROR;
	}
	log->next_number++;
	log->spare_fd = fd;
	log->spare_size = size;
	log->segs[log->nsegs++] = (struct seglog_segment){number, size};
	return PA_OK;
}

/* A spare too small for a record is grown in place: its number must stay next in line. */
static int
grow_spare(struct seglog *log, uint64_t size, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint64_t number = log->next_number - 1;

	if (seglog_path(path, sizeof(path), log->dir, number) != PA_OK)
		snprintf(path, sizeof(path), "%s", log->dir);
	if (allocate(log->spare_fd, path, size, err, errlen) != PA_OK)
		return PA_ERROR;
	if (fsync(log->spare_fd) == -1) {
		snprintf(err, errlen, "fsync(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	log->spare_size = size;
	log->segs[log->nsegs - 1].size = size;
	return PA_OK;
}

int
seglog_prepare(struct seglog *log, char *err, size_t errlen)
{
	if (log->spare_fd != -1)
		return PA_OK;
	return make_spare(log, log->segment_size, err, errlen);
}

/* ------------------------------------------------------------------ staging */

static bool
arena_put(struct seglog *log, const void *p, size_t len, size_t *off)
{
	if (!grow((void **)&log->arena, &log->arena_cap, log->arena_len + len, 1))
		return false;
	memcpy(log->arena + log->arena_len, p, len);
	*off = log->arena_len;
	log->arena_len += len;
	return true;
}

static bool
add_part(struct seglog *log, bool own, size_t off, const void *ptr, size_t len)
{
	if (len == 0)
		return true;
	if (!grow((void **)&log->parts, &log->parts_cap, log->nparts + 1, sizeof(*log->parts)))
		return false;
	log->parts[log->nparts++] = (struct part){own, off, ptr, len};
	log->runs[log->nruns - 1].nparts++;
	return true;
}

static bool
open_run(struct seglog *log)
{
	if (!grow((void **)&log->runs, &log->runs_cap, log->nruns + 1, sizeof(*log->runs)))
		return false;
	log->runs[log->nruns++] = (struct run){log->fd, log->cur, log->off, log->nparts, 0, false};
	return true;
}

/* Stages header + payload parts at log->off; the caller checked that they fit. */
static bool
stage(struct seglog *log, uint8_t kind, const void *a, size_t alen, const void *b, size_t blen)
{
	struct seglog_header h = {(uint32_t)(SEGLOG_HEADER + alen + blen), 0, kind, log->seq};
	uint8_t hdr[SEGLOG_HEADER];
	size_t hoff, aoff = 0;

	seglog_header_encode(&h, hdr);
	h.crc = seglog_record_crc_start(hdr);
	h.crc = seglog_record_crc_extend(h.crc, a, alen);
	h.crc = seglog_record_crc_extend(h.crc, b, blen);
	seglog_header_encode(&h, hdr);
	if (log->nruns == 0 || log->runs[log->nruns - 1].fd != log->fd)
		if (!open_run(log))
			return false;
	/* The header and the prefix are copied; the data stays where the caller keeps it. */
	if (!arena_put(log, hdr, sizeof(hdr), &hoff) ||
	    (alen > 0 && !arena_put(log, a, alen, &aoff)) ||
	    !add_part(log, true, hoff, NULL, sizeof(hdr)) ||
	    !add_part(log, true, aoff, NULL, alen) || !add_part(log, false, 0, b, blen))
		return false;
	log->off += h.length;
	log->seq++;
	return true;
}

/* Moves the writer to the next segment (the spare, made now if need be) and stages its SEGMENT
 * record. */
static int
switch_segment(struct seglog *log, uint64_t need, char *err, size_t errlen)
{
	uint64_t size = round_up(SEGMENT_RECORD + need);
	struct seglog_segment_info info;
	uint8_t payload[SEGLOG_SEGMENT_PAYLOAD];

	if (size < log->segment_size)
		size = log->segment_size;
	if (log->spare_fd == -1 && make_spare(log, size, err, errlen) != PA_OK)
		return PA_ERROR;
	if (log->spare_size < size && grow_spare(log, size, err, errlen) != PA_OK)
		return PA_ERROR;
	/* The old segment's fd is closed once the group that may still write it is done. */
	if (log->fd != -1) {
		bool staged = false;

		for (size_t i = 0; i < log->nruns; i++)
			if (log->runs[i].fd == log->fd) {
				log->runs[i].close_after = true;
				staged = true;
			}
		if (!staged)
			close(log->fd);
	}
	log->fd = log->spare_fd;
	log->cur = log->next_number - 1;
	log->cur_size = log->spare_size;
	log->off = 0;
	log->spare_fd = -1;
	info = (struct seglog_segment_info){SEGLOG_FORMAT, log->shards, log->shard, log->cur,
	                                    wall_us()};
	seglog_segment_encode(&info, payload);
	if (!stage(log, SEGLOG_KIND_SEGMENT, payload, sizeof(payload), NULL, 0)) {
		snprintf(err, errlen, "seglog %s: out of memory", log->dir);
		return PA_ERROR;
	}
	return PA_OK;
}

int
seglog_add(struct seglog *log, const void *prefix, size_t prefix_len, const void *data,
           size_t data_len, struct seglog_loc *loc, char *err, size_t errlen)
{
	uint64_t len = (uint64_t)SEGLOG_HEADER + prefix_len + data_len;
	size_t nparts, arena_len, nruns;

	if (len > SEGLOG_RECORD_MAX) {
		snprintf(err, errlen, "seglog %s: a record of %" PRIu64 " bytes is too long",
		         log->dir, len);
		return PA_ERROR;
	}
	if ((log->fd == -1 || log->off + len > log->cur_size) &&
	    switch_segment(log, len, err, errlen) != PA_OK)
		return PA_ERROR;
	/* A failure below takes back this record only, never the SEGMENT record staged above. */
	nparts = log->nparts;
	arena_len = log->arena_len;
	nruns = log->nruns;
	*loc = (struct seglog_loc){log->cur, log->off, (uint32_t)len, log->seq};
	if (!stage(log, SEGLOG_KIND_MESSAGE, prefix, prefix_len, data, data_len)) {
		/* Nothing of this record stays staged; its seq is simply not used. */
		log->nparts = nparts;
		log->arena_len = arena_len;
		log->nruns = nruns;
		if (nruns > 0)
			log->runs[nruns - 1].nparts = nparts - log->runs[nruns - 1].first;
		log->off = loc->offset;
		snprintf(err, errlen, "seglog %s: out of memory", log->dir);
		return PA_ERROR;
	}
	log->staged++;
	return PA_OK;
}

unsigned
seglog_staged(const struct seglog *log)
{
	return log->staged;
}

/* ------------------------------------------------------------------ commit */

static int
write_run(struct seglog *log, const struct run *r, char *err, size_t errlen)
{
	uint64_t off = r->offset;
	size_t i = 0;

	if (!grow((void **)&log->iov, &log->iov_cap, r->nparts > 0 ? r->nparts : 1,
	          sizeof(*log->iov))) {
		snprintf(err, errlen, "seglog %s: out of memory", log->dir);
		return PA_ERROR;
	}
	for (size_t k = 0; k < r->nparts; k++) {
		const struct part *p = &log->parts[r->first + k];

		log->iov[k].iov_base = p->own ? log->arena + p->off : (void *)p->ptr;
		log->iov[k].iov_len = p->len;
	}
	while (i < r->nparts) {
		int cnt = r->nparts - i > IOV_MAX ? IOV_MAX : (int)(r->nparts - i);
		ssize_t n = pwritev(r->fd, &log->iov[i], cnt, (off_t)off);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "pwritev(%s segment %" PRIu64 ") failed: %s",
			         log->dir, r->segment, strerror(errno));
			return PA_ERROR;
		}
		off += (uint64_t)n;
		/* A short write: skip what was written, go on from the middle of a part. */
		while (n > 0 && i < r->nparts) {
			if ((size_t)n >= log->iov[i].iov_len) {
				n -= (ssize_t)log->iov[i].iov_len;
				i++;
			} else {
				log->iov[i].iov_base = (uint8_t *)log->iov[i].iov_base + n;
				log->iov[i].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return PA_OK;
}

static void
clear_staging(struct seglog *log)
{
	for (size_t i = 0; i < log->nruns; i++)
		if (log->runs[i].close_after)
			close(log->runs[i].fd);
	log->nruns = 0;
	log->nparts = 0;
	log->arena_len = 0;
	log->staged = 0;
}

/*
 * Drops what is staged and writes nothing more into the current segment;
 * the next record starts a new one, and the seqs staged are not used again.
 */
static void
seal(struct seglog *log)
{
	bool staged = false;

	for (size_t i = 0; i < log->nruns; i++)
		staged |= log->runs[i].fd == log->fd;
	if (log->fd != -1 && !staged)
		close(log->fd);
	for (size_t i = 0; i < log->nruns; i++)
		log->runs[i].close_after = true;
	log->fd = -1;
	clear_staging(log);
}

void
seglog_discard(struct seglog *log)
{
	if (log->staged > 0 || log->nruns > 0)
		seal(log);
}

int
seglog_commit(struct seglog *log, char *err, size_t errlen)
{
	int rc = PA_OK;
	uint64_t bytes = 0;

	for (size_t i = 0; i < log->nruns && rc == PA_OK; i++)
		rc = write_run(log, &log->runs[i], err, errlen);
	for (size_t i = 0; i < log->nruns && rc == PA_OK; i++) {
		if (fdatasync(log->runs[i].fd) == -1) {
			snprintf(err, errlen, "fdatasync(%s segment %" PRIu64 ") failed: %s",
			         log->dir, log->runs[i].segment, strerror(errno));
			rc = PA_ERROR;
		}
		log->syncs++;
	}
	if (rc != PA_OK) {
		/* A failed fdatasync may have dropped the pages: what reached the disk is unknown.
		 */
		seal(log);
		return PA_ERROR;
	}
	for (size_t i = 0; i < log->nparts; i++)
		bytes += log->parts[i].len;
	log->records += log->staged;
	log->record_bytes += bytes;
	if (log->nruns > 0)
		log->tail = (struct seglog_pos){log->cur, log->off, log->seq};
	clear_staging(log);
	return PA_OK;
}

struct seglog_pos
seglog_tail(const struct seglog *log)
{
	return log->tail;
}

uint64_t
seglog_open_from(const struct seglog *log)
{
	if (log->fd != -1)
		return log->cur;
	/* The next record starts the spare (number next_number - 1) or a new one. */
	return log->spare_fd != -1 ? log->next_number - 1 : log->next_number;
}

size_t
seglog_closed(const struct seglog *log, const struct seglog_segment **out)
{
	uint64_t open_from = seglog_open_from(log);
	size_t n = 0;

	while (n < log->nsegs && log->segs[n].number < open_from)
		n++;
	*out = log->segs;
	return n;
}

int
seglog_unlink_segments(const char *dir, const uint64_t *numbers, size_t n, char *err, size_t errlen)
{
	char path[PATH_MAX];

	for (size_t k = 0; k < n; k++) {
		if (seglog_path(path, sizeof(path), dir, numbers[k]) != PA_OK) {
			snprintf(err, errlen, "seglog: path too long in %s", dir);
			return PA_ERROR;
		}
		/* ENOENT: removed by an earlier call whose directory sync failed. */
		if (unlink(path) == -1 && errno != ENOENT) {
			snprintf(err, errlen, "unlink(%s) failed: %s", path, strerror(errno));
			return PA_ERROR;
		}
	}
	/* Without it a crash may bring a name back: an empty segment, found empty again. */
	return n > 0 ? pa_fsync_dir(dir, err, errlen) : PA_OK;
}

void
seglog_forget(struct seglog *log, const uint64_t *numbers, size_t n)
{
	uint64_t open_from = seglog_open_from(log);
	size_t keep = 0;

	for (size_t i = 0; i < log->nsegs; i++) {
		bool gone = false;

		for (size_t k = 0; k < n && !gone && log->segs[i].number < open_from; k++)
			gone = log->segs[i].number == numbers[k];
		if (!gone)
			log->segs[keep++] = log->segs[i];
	}
	log->nsegs = keep;
}

void
seglog_stats(const struct seglog *log, struct seglog_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->segments = log->nsegs;
	for (size_t i = 0; i < log->nsegs; i++)
		out->bytes += log->segs[i].size;
	out->first_segment = log->nsegs > 0 ? log->segs[0].number : 0;
	out->segment = log->fd != -1 ? log->cur : 0;
	out->records = log->records;
	out->record_bytes = log->record_bytes;
	out->syncs = log->syncs;
}

/* ------------------------------------------------------------------ open, close, read */

/* A log of config's directory, shard count and shard, with no file open yet. */
static struct seglog *
log_new(const struct seglog_config *config, char *err, size_t errlen)
{
	struct seglog *log = calloc(1, sizeof(*log));

	if (log == NULL || (log->dir = strdup(config->dir)) == NULL) {
		snprintf(err, errlen, "seglog %s: out of memory", config->dir);
		free(log);
		return NULL;
	}
	log->fd = -1;
	log->spare_fd = -1;
	log->shards = config->shards;
	log->shard = config->shard;
	return log;
}

int
seglog_open(struct seglog **out, const struct seglog_config *config, const struct seglog_pos *from,
            seglog_recover_fn fn, void *arg, char *err, size_t errlen)
{
	struct seglog *log = log_new(config, err, errlen);

	*out = NULL;
	if (log == NULL)
		return PA_ERROR;
	log->segment_size =
	    config->segment_size > 0 ? config->segment_size : SEGLOG_SEGMENT_DEFAULT;
	if (log->segment_size < SEGLOG_SEGMENT_MIN || log->segment_size > SEGLOG_RECORD_MAX) {
		snprintf(err, errlen, "seglog %s: segment size %" PRIu64 " is not in %u..%u",
		         config->dir, log->segment_size, SEGLOG_SEGMENT_MIN, SEGLOG_RECORD_MAX);
		seglog_close(log);
		return PA_ERROR;
	}
	log->segment_size = round_up(log->segment_size);
	if (pa_mkdir_durable(log->dir, 0700, NULL, err, errlen) != PA_OK ||
	    list_segments(log, err, errlen) != PA_OK ||
	    recover(log, from, true, fn, arg, err, errlen) != PA_OK) {
		seglog_close(log);
		return PA_ERROR;
	}
	*out = log;
	return PA_OK;
}

int
seglog_scan(const struct seglog_config *config, const struct seglog_pos *from, seglog_recover_fn fn,
            void *arg, char *err, size_t errlen)
{
	struct seglog *log = log_new(config, err, errlen);
	int rc;

	if (log == NULL)
		return PA_ERROR;
	rc = list_segments(log, err, errlen);
	if (rc == PA_OK)
		rc = recover(log, from, false, fn, arg, err, errlen);
	seglog_close(log);
	return rc;
}

void
seglog_close(struct seglog *log)
{
	if (log == NULL)
		return;
	for (size_t i = 0; i < log->nruns; i++)
		if (log->runs[i].close_after && log->runs[i].fd != log->fd)
			close(log->runs[i].fd);
	if (log->fd != -1)
		close(log->fd);
	if (log->spare_fd != -1)
		close(log->spare_fd);
	free(log->segs);
	free(log->arena);
	free(log->parts);
	free(log->runs);
	free(log->iov);
	free(log->dir);
	free(log);
}

int
seglog_read(const char *dir, const struct seglog_loc *loc, uint8_t **rec, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct seglog_header h;
	uint8_t *buf;
	size_t got = 0;
	int fd;

	*rec = NULL;
	if (loc->length < SEGLOG_HEADER ||
	    seglog_path(path, sizeof(path), dir, loc->segment) != PA_OK) {
		snprintf(err, errlen, "seglog %s: no record at segment %" PRIu64, dir,
		         loc->segment);
		return PA_ERROR;
	}
	buf = malloc(loc->length);
	if (buf == NULL) {
		snprintf(err, errlen, "seglog %s: out of memory", dir);
		return PA_ERROR;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", path, strerror(errno));
		free(buf);
		return PA_ERROR;
	}
	while (got < loc->length) {
		ssize_t n = pread(fd, buf + got, loc->length - got, (off_t)(loc->offset + got));

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "pread(%s, %" PRIu64 ") failed: %s", path,
			         loc->offset, n == 0 ? "end of file" : strerror(errno));
			close(fd);
			free(buf);
			return PA_ERROR;
		}
		got += (size_t)n;
	}
	close(fd);
	if (seglog_header_decode(buf, &h) != PA_OK || h.length != loc->length ||
	    h.kind != SEGLOG_KIND_MESSAGE || h.seq != loc->seq ||
	    seglog_record_check(buf, loc->length, &h) != PA_OK) {
		snprintf(err, errlen,
		         "%s: the record at offset %" PRIu64 " is damaged or not the one indexed "
		         "(seq %" PRIu64 ")",
		         path, loc->offset, loc->seq);
		free(buf);
		return PA_ERROR;
	}
	*rec = buf;
	return PA_OK;
}
