/*
 * fuzz_seglog.c: the segment log's record decoders and its recovery scan
 * (spool/seglog_record.c).
 *
 * A segment on disk may be torn by a power cut, damaged, or not ours;
 * recovery must accept exactly the records written whole before the damage
 * and never read outside the image.  The first octet picks the mode:
 *   0: decoders: whatever seglog_header_decode() or seglog_message_decode()
 *      accepts must encode back to the same bytes (one encoding per value);
 *   1: the rest is a segment image, scanned as recovery scans it: every
 *      record handed out lies inside the image, follows the previous one
 *      and has the next seq;
 *   2: the rest describes records (sizes and bytes) and a damage (a cut or a
 *      flipped byte at a position): the records are encoded into a valid
 *      image, damaged, scanned; what is accepted must be exactly the records
 *      that end before the damage, byte for byte;
 *   3: the rest is up to three segment files and a checkpoint: they are
 *      written into a log directory, read by seglog_scan() (pigeonctl's
 *      offline scan) and recovered by seglog_open() (the writer's): both
 *      must hand out the same records, in (segment, offset) order with
 *      growing seqs, each inside its file and from the checkpoint on, and
 *      each must read back with seglog_read(); then a record added and
 *      committed after recovery must be the only one a scan from the
 *      recovered tail finds (nothing is written behind a torn tail).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pa.h"
#include "spool/seglog.h"
#include "spool/seglog_record.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define MAX_RECORDS 64

static void
decoders(const uint8_t *in, size_t len)
{
	struct seglog_header h;
	struct seglog_message m;
	uint8_t out[SEGLOG_HEADER];

	if (len >= SEGLOG_HEADER && seglog_header_decode(in, &h) == PA_OK) {
		seglog_header_encode(&h, out);
		CHECK(memcmp(out, in, SEGLOG_HEADER) == 0);
		(void)seglog_record_check(in, len, &h);
	}
	if (seglog_message_decode(in, len, &m) == PA_OK) {
		long n = seglog_message_prefix_size(m.qid, m.rec);
		uint8_t *p;

		CHECK(n > 0 && (size_t)n + m.size == len && m.data == in + n);
		p = malloc((size_t)n);
		CHECK(p != NULL);
		seglog_message_prefix_encode(m.qid, m.rec, p);
		CHECK(memcmp(p, in, (size_t)n) == 0);
		free(p);
		free(m.rec);
	}
}

struct walk {
	const uint8_t *image;
	size_t len;
	uint64_t next_off;
	uint64_t next_seq;
	unsigned count;
	/* mode 2: the records as written */
	const uint64_t *ends;
	const uint8_t *orig;
};

static int
walk_fn(uint64_t off, const struct seglog_header *h, const uint8_t *payload, size_t len, void *arg)
{
	struct walk *w = arg;
	struct seglog_message m;

	CHECK(off == w->next_off && off + h->length <= w->len);
	CHECK(payload == w->image + off + SEGLOG_HEADER && len == h->length - SEGLOG_HEADER);
	CHECK(w->count == 0 ? h->kind == SEGLOG_KIND_SEGMENT : h->seq == w->next_seq);
	if (h->kind == SEGLOG_KIND_MESSAGE && seglog_message_decode(payload, len, &m) == PA_OK)
		free(m.rec);
	if (w->orig != NULL) {
		CHECK(off + h->length == w->ends[w->count]);
		CHECK(memcmp(w->image + off, w->orig + off, h->length) == 0);
	}
	w->next_off = off + h->length;
	w->next_seq = h->seq + 1;
	w->count++;
	return 0;
}

static void
scan_raw(const uint8_t *in, size_t len)
{
	struct walk w = {in, len, 0, 0, 0, NULL, NULL};
	uint64_t next, end = seglog_scan_image(in, len, 0, 0, &next, walk_fn, &w);

	CHECK(end == w.next_off && end <= len);
}

static void
put_record(uint8_t *img, uint64_t off, uint8_t kind, uint64_t seq, const uint8_t *payload,
           size_t plen)
{
	struct seglog_header h = {(uint32_t)(SEGLOG_HEADER + plen), 0, kind, seq};

	seglog_header_encode(&h, img + off);
	h.crc = seglog_record_crc_extend(seglog_record_crc_start(img + off), payload, plen);
	seglog_header_encode(&h, img + off);
	memcpy(img + off + SEGLOG_HEADER, payload, plen);
}

/* in: u8 nrecords, u16 damage position, u8 damage kind, then payload bytes. */
static void
torn(const uint8_t *in, size_t len)
{
	uint8_t seg[SEGLOG_SEGMENT_PAYLOAD];
	struct seglog_segment_info info = {SEGLOG_FORMAT, 4, 1, 7, 1};
	uint64_t ends[MAX_RECORDS + 1], off = 0, pos, next, end, want = 0;
	uint8_t *img, *orig;
	size_t total, n, used = 0, src;
	struct walk w;

	if (len < 4)
		return;
	n = in[0] % MAX_RECORDS;
	pos = (uint64_t)in[1] << 8 | in[2];
	src = 4;
	/* Record i's payload: the next in[src] % 200 input bytes (repeated when short). */
	total = SEGLOG_HEADER + sizeof(seg) + n * (SEGLOG_HEADER + 200) + 64;
	img = calloc(1, total);
	orig = calloc(1, total);
	CHECK(img != NULL && orig != NULL);
	seglog_segment_encode(&info, seg);
	put_record(img, 0, SEGLOG_KIND_SEGMENT, 100, seg, sizeof(seg));
	off = ends[0] = SEGLOG_HEADER + sizeof(seg);
	for (size_t i = 0; i < n; i++) {
		uint8_t payload[200];
		size_t plen = len > src ? in[src] % 200 : i;

		for (size_t k = 0; k < plen; k++)
			payload[k] = len > 4 ? in[4 + (src + k) % (len - 4)] : (uint8_t)k;
		src += 1 + plen;
		put_record(img, off, SEGLOG_KIND_MESSAGE, 101 + i, payload, plen);
		off += SEGLOG_HEADER + plen;
		ends[i + 1] = off;
	}
	used = off;
	memcpy(orig, img, total);
	pos %= total;
	/* The damage: bit 0 of in[3]: cut the image at pos; else flip a byte there. */
	if (in[3] & 1)
		total = pos;
	else
		img[pos] ^= (uint8_t)(in[3] | 1);
	w = (struct walk){img, total, 0, 0, 0, ends, orig};
	end = seglog_scan_image(img, total, 0, 0, &next, walk_fn, &w);
	/* Exactly the records wholly before the damage (a flip past the last record harms none). */
	for (size_t i = 0; i <= n; i++)
		if (ends[i] <= pos || ((in[3] & 1) == 0 && pos >= used))
			want = i + 1;
	CHECK(w.count == want);
	CHECK(end == (want > 0 ? ends[want - 1] : 0));
	free(img);
	free(orig);
}

#define LOG_FILES 3
#define LOG_RECORDS 256

struct found {
	struct seglog_loc loc[LOG_RECORDS];
	unsigned n;
	const struct seglog_pos *from;
	const uint64_t *sizes; /* of files 1..LOG_FILES, by segment number */
};

static int
found_fn(const struct seglog_loc *loc, const uint8_t *payload, size_t len, void *arg)
{
	struct found *f = arg;
	const struct seglog_loc *prev = f->n > 0 ? &f->loc[f->n - 1] : NULL;

	CHECK(loc->segment >= 1 && loc->segment <= LOG_FILES);
	CHECK(loc->offset + loc->length <= f->sizes[loc->segment]);
	CHECK(len == loc->length - SEGLOG_HEADER && payload != NULL);
	if (f->from != NULL) {
		CHECK(loc->segment >= f->from->segment);
		CHECK(loc->segment > f->from->segment || loc->offset >= f->from->offset);
		CHECK(loc->seq >= f->from->seq);
	}
	if (prev != NULL) {
		CHECK(loc->seq > prev->seq);
		CHECK(loc->segment > prev->segment || (loc->segment == prev->segment &&
		                                       loc->offset >= prev->offset + prev->length));
	}
	if (f->n == LOG_RECORDS)
		return 1;
	f->loc[f->n++] = *loc;
	return 0;
}

static bool
same_loc(const struct seglog_loc *a, const struct seglog_loc *b)
{
	return a->segment == b->segment && a->offset == b->offset && a->length == b->length &&
	       a->seq == b->seq;
}

static int
found_after(const struct seglog_loc *loc, const uint8_t *payload, size_t len, void *arg)
{
	struct found *f = arg;

	CHECK(len == 10 && memcmp(payload, "prefixdata", 10) == 0);
	if (f->n == LOG_RECORDS)
		return 1;
	f->loc[f->n++] = *loc;
	return 0;
}

static char log_path[PATH_MAX];

static void
empty_log_dir(void)
{
	DIR *d = opendir(log_path);
	struct dirent *de;

	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX + 300];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", log_path, de->d_name);
		CHECK(unlink(path) == 0);
	}
	closedir(d);
}

/* At exit: the directory goes with the process. */
static void
remove_log_dir(void)
{
	empty_log_dir();
	rmdir(log_path);
}

/* A fresh, empty log directory of this process, made once. */
static const char *
log_dir(void)
{
	if (log_path[0] == '\0') {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

		snprintf(log_path, sizeof(log_path), "%s/fuzz-seglog-XXXXXX", base);
		CHECK(mkdtemp(log_path) != NULL);
		atexit(remove_log_dir);
	}
	empty_log_dir();
	return log_path;
}

/*
 * in: u8 files (1..3) and flags (bit 2: a checkpoint), u8 checkpoint segment,
 * u16 checkpoint offset, u8 checkpoint seq, then per file u16 length and its
 * bytes (shorter when the input ends).
 */
static void
log_files(const uint8_t *in, size_t len)
{
	const char *dir;
	struct seglog_config cfg = {NULL, SEGLOG_SEGMENT_MIN, 4, 1};
	struct seglog_pos from, tail;
	struct found scanned = {0}, recovered = {0}, after = {0};
	uint64_t sizes[LOG_FILES + 1] = {0};
	struct seglog *log;
	struct seglog_loc added;
	char err[512];
	size_t at = 5, nfiles;
	int rc_scan, rc_open;

	if (len < 5)
		return;
	dir = log_dir();
	cfg.dir = dir;
	nfiles = 1 + (in[0] & 3) % LOG_FILES;
	from = (struct seglog_pos){1 + in[1] % LOG_FILES, (uint64_t)in[2] << 8 | in[3], in[4]};
	for (size_t i = 0; i < nfiles && at + 2 <= len; i++) {
		size_t flen = (size_t)in[at] << 8 | in[at + 1];
		char path[PATH_MAX];
		int fd;

		at += 2;
		if (flen > len - at)
			flen = len - at;
		CHECK(seglog_path(path, sizeof(path), dir, i + 1) == PA_OK);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd != -1);
		CHECK(flen == 0 || write(fd, in + at, flen) == (ssize_t)flen);
		close(fd);
		sizes[i + 1] = flen;
		at += flen;
	}
	scanned.from = recovered.from = (in[0] & 4) ? &from : NULL;
	scanned.sizes = recovered.sizes = sizes;
	rc_scan = seglog_scan(&cfg, scanned.from, found_fn, &scanned, err, sizeof(err));
	rc_open = seglog_open(&log, &cfg, recovered.from, found_fn, &recovered, err, sizeof(err));
	/* The offline scan and recovery read the same files the same way. */
	CHECK(rc_scan == rc_open);
	if (rc_open != PA_OK)
		return;
	CHECK(scanned.n == recovered.n);
	for (unsigned i = 0; i < scanned.n; i++)
		CHECK(same_loc(&scanned.loc[i], &recovered.loc[i]));
	for (unsigned i = 0; i < recovered.n; i++) {
		uint8_t *rec;

		CHECK(seglog_read(dir, &recovered.loc[i], &rec, err, sizeof(err)) == PA_OK);
		free(rec);
	}
	/* A record written after recovery is all a scan from the recovered tail finds. */
	tail = seglog_tail(log);
	CHECK(seglog_add(log, "prefix", 6, "data", 4, &added, err, sizeof(err)) == PA_OK);
	CHECK(seglog_commit(log, err, sizeof(err)) == PA_OK);
	seglog_close(log);
	/* Recovery put the writer on a new segment past every file it found. */
	CHECK(added.segment == tail.segment && added.seq >= tail.seq);
	CHECK(recovered.n == 0 || added.segment > recovered.loc[recovered.n - 1].segment);
	CHECK(recovered.from == NULL || added.segment > from.segment);
	after.from = &tail;
	CHECK(seglog_scan(&cfg, &tail, found_after, &after, err, sizeof(err)) == PA_OK);
	CHECK(after.n == 1 && same_loc(&after.loc[0], &added));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *in;
	size_t len;

	if (size < 1)
		return 0;
	/* An exact-size heap copy, so ASan sees any read past the end. */
	len = size - 1;
	in = malloc(len > 0 ? len : 1);
	CHECK(in != NULL);
	memcpy(in, data + 1, len);
	switch (data[0] % 4) {
	case 0:
		decoders(in, len);
		break;
	case 1:
		scan_raw(in, len);
		break;
	case 2:
		torn(in, len);
		break;
	case 3:
		log_files(in, len);
		break;
	}
	free(in);
	return 0;
}
