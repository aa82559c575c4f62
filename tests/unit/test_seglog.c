/*
 * test_seglog.c: unit tests of the segment log (spool/seglog.c,
 * spool/seglog_record.c).
 *
 * They check the record codec against its pinned layout and against
 * truncated and corrupt bytes; that every committed record comes back from
 * recovery byte for byte, across segments, an oversized record and a
 * checkpoint; that a torn or corrupt tail ends its segment without hiding
 * later segments, and the writer then starts a new segment so old bytes are
 * never chained to new ones; that a failed write (RLIMIT_FSIZE) fails its
 * group only, after which the log goes on in a new segment; that a foreign
 * segment file is refused and a half-made one removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/pa.h"
#include "spool/seglog.h"
#include "spool/seglog_record.h"
#include "spool/spool.h"

#define SEG_SIZE (64u << 10)
#define ERR_MAX 512
#define MAX_RECS 512

struct env {
	char root[256];
	char dir[300];
};

/* One test record: every byte follows from its number. */
struct trec {
	char qid[SMTP_QUEUE_ID_MAX];
	char rcpt[64];
	const char *rcpts[1];
	struct spool_msg_record rec;
	uint8_t *prefix;
	size_t prefix_len;
	uint8_t *data;
	size_t size;
	struct seglog_loc loc;
};

static void
trec_make(struct trec *t, unsigned n, size_t size)
{
	long plen;

	snprintf(t->qid, sizeof(t->qid), "P%025X", n);
	snprintf(t->rcpt, sizeof(t->rcpt), "user%u@example.com", n);
	t->rcpts[0] = t->rcpt;
	t->size = size;
	t->data = malloc(size > 0 ? size : 1);
	assert_non_null(t->data);
	for (size_t i = 0; i < size; i++)
		t->data[i] = (uint8_t)(n * 31 + i * 7);
	t->rec = (struct spool_msg_record){
	    SPOOL_MSG_8BITMIME, 1700000000000000u + n, size, "sender@example.org",
	    "198.18.0.1",       "client.example",      1,    t->rcpts};
	plen = seglog_message_prefix_size(t->qid, &t->rec);
	assert_true(plen > 0);
	t->prefix_len = (size_t)plen;
	t->prefix = malloc(t->prefix_len);
	assert_non_null(t->prefix);
	seglog_message_prefix_encode(t->qid, &t->rec, t->prefix);
}

static void
trec_free(struct trec *t)
{
	free(t->prefix);
	free(t->data);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	struct env *env = calloc(1, sizeof(*env));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(env);
	snprintf(env->root, sizeof(env->root), "%s/test_seglog.XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(env->root));
	snprintf(env->dir, sizeof(env->dir), "%s/log", env->root);
	*state = env;
	return 0;
}

static int
teardown(void **state)
{
	struct env *env = *state;

	nftw(env->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(env);
	return 0;
}

static struct seglog_config
cfg(const struct env *env)
{
	return (struct seglog_config){env->dir, SEG_SIZE, 4, 2};
}

/* What recovery hands back, checked against the records by number. */
struct found {
	struct trec *recs;
	unsigned nrecs;
	unsigned seen[MAX_RECS];
	unsigned count;
	unsigned order_errors;
};

static int
check_record(const struct seglog_loc *loc, const uint8_t *payload, size_t len, void *arg)
{
	struct found *f = arg;
	struct seglog_message m;
	unsigned n;

	assert_int_equal(seglog_message_decode(payload, len, &m), PA_OK);
	assert_int_equal(sscanf(m.qid, "P%25X", &n), 1);
	assert_true(n < f->nrecs);
	/* The very bytes and place that were written. */
	assert_int_equal(m.size, f->recs[n].size);
	assert_memory_equal(m.data, f->recs[n].data, m.size);
	assert_string_equal(m.rec->rcpts[0], f->recs[n].rcpt);
	assert_int_equal(loc->segment, f->recs[n].loc.segment);
	assert_int_equal(loc->offset, f->recs[n].loc.offset);
	assert_int_equal(loc->length, f->recs[n].loc.length);
	assert_int_equal(loc->seq, f->recs[n].loc.seq);
	free(m.rec);
	if (f->count > 0 && n <= f->seen[f->count - 1])
		f->order_errors++;
	if (f->count < MAX_RECS)
		f->seen[f->count] = n;
	f->count++;
	return 0;
}

static struct seglog *
open_log(const struct env *env, const struct seglog_pos *from, struct found *f)
{
	struct seglog_config c = cfg(env);
	struct seglog *log;
	char err[ERR_MAX];

	if (seglog_open(&log, &c, from, f != NULL ? check_record : NULL, f, err, sizeof(err)) !=
	    PA_OK)
		fail_msg("seglog_open: %s", err);
	return log;
}

static void
add(struct seglog *log, struct trec *t)
{
	char err[ERR_MAX];

	if (seglog_add(log, t->prefix, t->prefix_len, t->data, t->size, &t->loc, err,
	               sizeof(err)) != PA_OK)
		fail_msg("seglog_add: %s", err);
}

static void
commit(struct seglog *log)
{
	char err[ERR_MAX];

	if (seglog_commit(log, err, sizeof(err)) != PA_OK)
		fail_msg("seglog_commit: %s", err);
}

/* Writes n records in groups of `group`, sizes cycling through a few that straddle segments. */
static struct trec *
write_records(struct seglog *log, unsigned first, unsigned n, unsigned group, struct trec *recs)
{
	static const size_t sizes[] = {0, 1, 4096, 777, 20000, 3, 9000};

	for (unsigned i = first; i < first + n; i++) {
		trec_make(&recs[i], i, sizes[i % pa_array_size(sizes)]);
		add(log, &recs[i]);
		if ((i - first + 1) % group == 0)
			commit(log);
	}
	commit(log);
	return recs;
}

static void
path_of(const struct env *env, uint64_t segment, char *out, size_t len)
{
	assert_int_equal(seglog_path(out, len, env->dir, segment), PA_OK);
}

static void
patch(const struct env *env, uint64_t segment, uint64_t off, const void *bytes, size_t len)
{
	char path[512];
	int fd;

	path_of(env, segment, path, sizeof(path));
	fd = open(path, O_WRONLY);
	assert_true(fd != -1);
	assert_int_equal(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ------------------------------------------------------------------ codec */

static void
test_header_layout(void **state)
{
	struct seglog_header h = {0x30, 0xdeadbeef, SEGLOG_KIND_MESSAGE, 0x0102030405060708u}, d;
	uint8_t b[SEGLOG_HEADER];
	static const uint8_t want[SEGLOG_HEADER] = {'P',  'A',  'R',  '2',  0, 0, 0, 0x30,
	                                            0xde, 0xad, 0xbe, 0xef, 2, 0, 0, 0,
	                                            1,    2,    3,    4,    5, 6, 7, 8};

	(void)state;
	seglog_header_encode(&h, b);
	assert_memory_equal(b, want, sizeof(want));
	assert_int_equal(seglog_header_decode(b, &d), PA_OK);
	assert_int_equal(d.length, 0x30);
	assert_int_equal(d.crc, 0xdeadbeefu);
	assert_int_equal(d.kind, SEGLOG_KIND_MESSAGE);
	assert_true(d.seq == 0x0102030405060708u);
	b[0] = 'p'; /* magic */
	assert_int_equal(seglog_header_decode(b, &d), PA_ERROR);
	b[0] = 'P';
	b[12] = 3; /* unknown kind */
	assert_int_equal(seglog_header_decode(b, &d), PA_ERROR);
	b[12] = 0;
	assert_int_equal(seglog_header_decode(b, &d), PA_ERROR);
	b[12] = 2;
	b[14] = 1; /* reserved */
	assert_int_equal(seglog_header_decode(b, &d), PA_ERROR);
	b[14] = 0;
	b[7] = SEGLOG_HEADER - 1; /* shorter than a header */
	assert_int_equal(seglog_header_decode(b, &d), PA_ERROR);
	b[7] = SEGLOG_HEADER;
	assert_int_equal(seglog_header_decode(b, &d), PA_OK);
}

static void
test_crc_extend(void **state)
{
	static const char s[] = "123456789";
	uint8_t buf[300];

	(void)state;
	assert_int_equal(spool_crc32c_extend(0, s, 9), 0xE3069283u);
	assert_int_equal(spool_crc32c_extend(spool_crc32c(s, 4), s + 4, 5), 0xE3069283u);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 5);
	/* Every split, from every alignment, gives the one-shot value. */
	for (size_t off = 0; off < 9; off++)
		for (size_t cut = 0; cut <= 200; cut += 7)
			assert_int_equal(spool_crc32c_extend(spool_crc32c(buf + off, cut),
			                                     buf + off + cut, 200 - cut),
			                 spool_crc32c(buf + off, 200));
}

static void
test_message_codec(void **state)
{
	struct trec t;
	struct seglog_message m;
	uint8_t *p;
	size_t len;

	(void)state;
	trec_make(&t, 7, 100);
	len = t.prefix_len + t.size;
	p = malloc(len + 1);
	assert_non_null(p);
	memcpy(p, t.prefix, t.prefix_len);
	memcpy(p + t.prefix_len, t.data, t.size);
	assert_int_equal(seglog_message_decode(p, len, &m), PA_OK);
	assert_string_equal(m.qid, t.qid);
	assert_int_equal(m.size, 100);
	assert_ptr_equal(m.data, p + t.prefix_len);
	assert_string_equal(m.rec->mail_from, "sender@example.org");
	assert_int_equal(m.rec->nrcpt, 1);
	free(m.rec);
	/* The layout: qid length, qid, envelope length. */
	assert_int_equal(p[0], 26);
	assert_memory_equal(p + 1, t.qid, 26);
	/* Every truncation, and a trailing byte, is refused. */
	for (size_t i = 0; i < len; i++)
		assert_int_equal(seglog_message_decode(p, i, &m), PA_ERROR);
	p[len] = 0;
	assert_int_equal(seglog_message_decode(p, len + 1, &m), PA_ERROR);
	p[0] = 0; /* empty queue id */
	assert_int_equal(seglog_message_decode(p, len, &m), PA_ERROR);
	p[0] = 26;
	p[5] = ' '; /* not a queue id byte */
	assert_int_equal(seglog_message_decode(p, len, &m), PA_ERROR);
	free(p);
	trec_free(&t);
}

/* Format 2's RocksDB values: pinned bytes, every truncation refused, keys round trip. */
static void
test_location_checkpoint_codec(void **state)
{
	struct spool_location loc = {7, 0x1000, 4242, 99}, l2;
	struct spool_checkpoint cp = {7, 8338, 100}, c2;
	uint8_t lb[SPOOL_LOCATION_SIZE + 1] = {0}, cb[SPOOL_CHECKPOINT_SIZE + 1] = {0};
	uint8_t key[SPOOL_KEY_MAX];
	/* version; segment 7; offset 0x1000; length 4242 = 0x1092; seq 99 */
	static const uint8_t want[SPOOL_LOCATION_SIZE] = {1,    0, 0, 0, 0, 0,    0, 0, 7, 0,
	                                                  0,    0, 0, 0, 0, 0x10, 0, 0, 0, 0x10,
	                                                  0x92, 0, 0, 0, 0, 0,    0, 0, 99};
	struct spool_key k;
	size_t n;

	(void)state;
	spool_record_location_encode(&loc, lb);
	assert_memory_equal(lb, want, sizeof(want));
	assert_int_equal(spool_record_location_decode(lb, SPOOL_LOCATION_SIZE, &l2), PA_OK);
	assert_true(l2.segment == 7 && l2.offset == 0x1000 && l2.length == 4242 && l2.seq == 99);
	spool_record_checkpoint_encode(&cp, cb);
	assert_int_equal(spool_record_checkpoint_decode(cb, SPOOL_CHECKPOINT_SIZE, &c2), PA_OK);
	assert_true(c2.segment == 7 && c2.offset == 8338 && c2.seq == 100);
	for (size_t i = 0; i < SPOOL_LOCATION_SIZE; i++)
		assert_int_equal(spool_record_location_decode(lb, i, &l2), PA_ERROR);
	for (size_t i = 0; i < SPOOL_CHECKPOINT_SIZE; i++)
		assert_int_equal(spool_record_checkpoint_decode(cb, i, &c2), PA_ERROR);
	assert_int_equal(spool_record_location_decode(lb, SPOOL_LOCATION_SIZE + 1, &l2), PA_ERROR);
	assert_int_equal(spool_record_checkpoint_decode(cb, SPOOL_CHECKPOINT_SIZE + 1, &c2),
	                 PA_ERROR);
	lb[0] = 2; /* an unknown value version */
	assert_int_equal(spool_record_location_decode(lb, SPOOL_LOCATION_SIZE, &l2), PA_ERROR);
	n = spool_key_location(key, "ABC", 3);
	assert_int_equal(n, 5);
	assert_memory_equal(key,
	                    "L\x01"
	                    "ABC",
	                    5);
	assert_int_equal(spool_key_decode(key, n, &k), PA_OK);
	assert_int_equal(k.type, SPOOL_KEY_LOCATION);
	assert_string_equal(k.queue_id, "ABC");
	n = spool_key_checkpoint(key);
	assert_int_equal(spool_key_decode(key, n, &k), PA_OK);
	assert_int_equal(k.type, SPOOL_KEY_CHECKPOINT);
	key[n] = 'x';
	assert_int_equal(spool_key_decode(key, n + 1, &k), PA_ERROR);
}

static int
count_fn(uint64_t off, const struct seglog_header *h, const uint8_t *payload, size_t len, void *arg)
{
	(void)off;
	(void)h;
	(void)payload;
	(void)len;
	(*(unsigned *)arg)++;
	return 0;
}

/* A hand-made image: a bit flip anywhere in a record ends the segment there. */
static void
test_scan_image(void **state)
{
	uint8_t img[4096] = {0};
	uint8_t payload[SEGLOG_SEGMENT_PAYLOAD], body[40];
	struct seglog_segment_info info = {SEGLOG_FORMAT, 4, 2, 1, 5};
	uint64_t off = 0, ends[4], next;
	unsigned n;

	(void)state;
	seglog_segment_encode(&info, payload);
	memset(body, 'x', sizeof(body));
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *p = i == 0 ? payload : body;
		size_t plen = i == 0 ? sizeof(payload) : sizeof(body) - i;
		struct seglog_header h = {(uint32_t)(SEGLOG_HEADER + plen), 0,
		                          i == 0 ? SEGLOG_KIND_SEGMENT : SEGLOG_KIND_MESSAGE,
		                          10 + i};

		seglog_header_encode(&h, img + off);
		h.crc = seglog_record_crc_extend(seglog_record_crc_start(img + off), p, plen);
		seglog_header_encode(&h, img + off);
		memcpy(img + off + SEGLOG_HEADER, p, plen);
		off += h.length;
		ends[i] = off;
	}
	n = 0;
	assert_int_equal(seglog_scan_image(img, sizeof(img), 0, 0, &next, count_fn, &n), ends[3]);
	assert_int_equal(n, 4);
	assert_int_equal(next, 14);
	/* From the middle, with the checkpoint's seq; a wrong seq accepts nothing. */
	assert_int_equal(seglog_scan_image(img, sizeof(img), ends[1], 12, &next, NULL, NULL),
	                 ends[3]);
	assert_int_equal(seglog_scan_image(img, sizeof(img), ends[1], 13, &next, NULL, NULL),
	                 ends[1]);
	/* The image cut inside the last record: it is not accepted. */
	assert_int_equal(seglog_scan_image(img, ends[3] - 1, 0, 0, &next, NULL, NULL), ends[2]);
	/* A flip in every byte of record 2 in turn. */
	for (uint64_t i = ends[1]; i < ends[2]; i++) {
		img[i] ^= 0x10;
		assert_int_equal(seglog_scan_image(img, sizeof(img), 0, 0, &next, NULL, NULL),
		                 ends[1]);
		img[i] ^= 0x10;
	}
	/* Without the SEGMENT record at offset 0, nothing. */
	img[20] ^= 1;
	assert_int_equal(seglog_scan_image(img, sizeof(img), 0, 0, &next, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ files */

static void
test_roundtrip_across_segments(void **state)
{
	struct env *env = *state;
	struct trec recs[120];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog *log = open_log(env, NULL, NULL);
	struct trec big;
	struct seglog_stats st;
	char err[ERR_MAX];

	write_records(log, 0, 100, 7, recs);
	/* Larger than a segment: it gets a segment of its own size. */
	trec_make(&big, 100, SEG_SIZE * 2);
	add(log, &big);
	commit(log);
	recs[100] = big;
	write_records(log, 101, 19, 5, recs);
	seglog_stats(log, &st);
	assert_true(st.segments > 5);
	assert_int_equal(st.records, 120);
	assert_true(st.syncs >= 20);
	seglog_close(log);

	f.nrecs = 120;
	log = open_log(env, NULL, &f);
	assert_int_equal(f.count, 120);
	assert_int_equal(f.order_errors, 0);
	/* Each by its location, from another "thread" that only knows the directory. */
	for (unsigned i = 0; i < 120; i++) {
		uint8_t *rec;
		struct seglog_loc bad = recs[i].loc;

		if (seglog_read(env->dir, &recs[i].loc, &rec, err, sizeof(err)) != PA_OK)
			fail_msg("seglog_read %u: %s", i, err);
		assert_memory_equal(rec + SEGLOG_HEADER + recs[i].prefix_len, recs[i].data,
		                    recs[i].size);
		free(rec);
		bad.seq++;
		assert_int_equal(seglog_read(env->dir, &bad, &rec, err, sizeof(err)), PA_ERROR);
	}
	seglog_close(log);
	for (unsigned i = 0; i < 120; i++)
		trec_free(&recs[i]);
}

/* The tail of the last group torn: earlier records stay, later writes go to a new segment. */
static void
test_torn_tail(void **state)
{
	struct env *env = *state;
	struct trec recs[40];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog *log = open_log(env, NULL, NULL);
	uint8_t junk[16];
	uint64_t torn_seg;

	write_records(log, 0, 30, 4, recs);
	seglog_close(log);
	/* Record 29 (the last) loses bytes in the middle of its body. */
	torn_seg = recs[29].loc.segment;
	memset(junk, 0xa5, sizeof(junk));
	patch(env, torn_seg, recs[29].loc.offset + recs[29].loc.length / 2, junk, sizeof(junk));

	f.nrecs = 29;
	log = open_log(env, NULL, &f);
	assert_int_equal(f.count, 29);
	/* The next record is not chained behind the torn one. */
	trec_make(&recs[30], 30, 100);
	add(log, &recs[30]);
	commit(log);
	assert_true(recs[30].loc.segment > torn_seg);
	assert_int_equal(recs[30].loc.offset, SEGLOG_HEADER + SEGLOG_SEGMENT_PAYLOAD);
	assert_true(recs[30].loc.seq > recs[29].loc.seq);
	seglog_close(log);

	/* Torn record 29 never comes back; 30 does. */
	memset(&f, 0, sizeof(f));
	f.recs = recs;
	f.nrecs = 31;
	recs[29].size = (size_t)-1; /* would fail check_record if it were handed back */
	log = open_log(env, NULL, &f);
	assert_int_equal(f.count, 30);
	assert_int_equal(f.seen[29], 30);
	seglog_close(log);
	recs[29].size = 0;
	for (unsigned i = 0; i < 31; i++)
		trec_free(&recs[i]);
}

/* A damaged record in an older segment ends that segment only, not the log. */
static void
test_damage_in_middle(void **state)
{
	struct env *env = *state;
	struct trec recs[60];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog *log = open_log(env, NULL, NULL);
	uint8_t zero[SEGLOG_HEADER] = {0};
	unsigned victim = 3, lost = 0;

	write_records(log, 0, 60, 10, recs);
	seglog_close(log);
	assert_true(recs[59].loc.segment > recs[victim].loc.segment);
	patch(env, recs[victim].loc.segment, recs[victim].loc.offset, zero, sizeof(zero));
	for (unsigned i = victim; i < 60; i++)
		if (recs[i].loc.segment == recs[victim].loc.segment)
			lost++;

	f.nrecs = 60;
	log = open_log(env, NULL, &f);
	assert_int_equal(f.count, 60 - lost);
	assert_int_equal(f.order_errors, 0);
	seglog_close(log);
	for (unsigned i = 0; i < 60; i++)
		trec_free(&recs[i]);
}

/* Recovery from a checkpoint sees only what came after it. */
static void
test_checkpoint(void **state)
{
	struct env *env = *state;
	struct trec recs[50];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog *log = open_log(env, NULL, NULL);
	struct seglog_pos cp;

	write_records(log, 0, 20, 3, recs);
	cp = seglog_tail(log);
	assert_int_equal(cp.segment, recs[19].loc.segment);
	assert_int_equal(cp.offset, recs[19].loc.offset + recs[19].loc.length);
	assert_int_equal(cp.seq, recs[19].loc.seq + 1);
	write_records(log, 20, 30, 6, recs);
	seglog_close(log);

	f.nrecs = 50;
	log = open_log(env, &cp, &f);
	assert_int_equal(f.count, 30);
	assert_int_equal(f.seen[0], 20);
	cp = seglog_tail(log);
	seglog_close(log);
	/* The tail right after an open: a checkpoint that finds nothing. */
	memset(&f, 0, sizeof(f));
	f.recs = recs;
	f.nrecs = 50;
	log = open_log(env, &cp, &f);
	assert_int_equal(f.count, 0);
	seglog_close(log);
	for (unsigned i = 0; i < 50; i++)
		trec_free(&recs[i]);
}

/* A write past RLIMIT_FSIZE fails its group; the log goes on in a new segment. */
static void
test_failed_write(void **state)
{
	struct env *env = *state;
	struct trec recs[16];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog *log = open_log(env, NULL, NULL);
	struct rlimit old, lim;
	char err[ERR_MAX];
	bool failed[16] = {false};
	unsigned ok = 0;

	assert_int_equal(seglog_prepare(log, err, sizeof(err)), PA_OK);
	write_records(log, 0, 2, 2, recs);
	/* Writes beyond 16 KiB now fail with EFBIG (SIGXFSZ ignored). */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 16u << 10;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (unsigned i = 2; i < 8; i++) {
		trec_make(&recs[i], i, 4096);
		add(log, &recs[i]);
	}
	assert_int_equal(seglog_commit(log, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "pwritev"));
	for (unsigned i = 2; i < 8; i++)
		failed[i] = true;
	/* A new segment cannot be made either while the limit holds. */
	trec_make(&recs[8], 8, 10);
	assert_int_equal(seglog_add(log, recs[8].prefix, recs[8].prefix_len, recs[8].data,
	                            recs[8].size, &recs[8].loc, err, sizeof(err)),
	                 PA_ERROR);
	assert_int_equal(seglog_staged(log), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	add(log, &recs[8]);
	commit(log);
	assert_true(recs[8].loc.segment > recs[2].loc.segment);
	seglog_close(log);

	/* Every committed record is there; of the failed group, at most what reached the file. */
	f.nrecs = 9;
	log = open_log(env, NULL, &f);
	for (unsigned i = 0; i < f.count && i < MAX_RECS; i++)
		if (!failed[f.seen[i]])
			ok++;
	assert_int_equal(ok, 3);
	assert_int_equal(f.order_errors, 0);
	seglog_close(log);
	for (unsigned i = 0; i < 9; i++)
		trec_free(&recs[i]);
}

static void
test_foreign_and_half_made(void **state)
{
	struct env *env = *state;
	struct trec recs[4];
	struct found f = {recs, 0, {0}, 0, 0};
	struct seglog_config other;
	struct seglog *log = open_log(env, NULL, NULL);
	char err[ERR_MAX], path[512];
	struct stat st;
	uint64_t spare;
	int fd;

	write_records(log, 0, 3, 3, recs);
	/* A spare made ahead: all zeroes, it holds nothing and is removed at the next open. */
	assert_int_equal(seglog_prepare(log, err, sizeof(err)), PA_OK);
	spare = recs[2].loc.segment + 1;
	path_of(env, spare, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, SEG_SIZE);
	seglog_close(log);
	/* And a half-made file of the next number, shorter than a header. */
	path_of(env, spare + 1, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, "PAR", 3), 3);
	close(fd);
	f.nrecs = 3;
	log = open_log(env, NULL, &f);
	assert_int_equal(f.count, 3);
	path_of(env, spare, path, sizeof(path));
	assert_int_equal(stat(path, &st), -1);
	path_of(env, spare + 1, path, sizeof(path));
	assert_int_equal(stat(path, &st), -1);
	seglog_close(log);
	/* The same log opened as another shard: refused, nothing removed. */
	other = cfg(env);
	other.shard = 3;
	assert_int_equal(seglog_open(&log, &other, NULL, NULL, NULL, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "not a segment of this log"));
	path_of(env, recs[0].loc.segment, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	for (unsigned i = 0; i < 3; i++)
		trec_free(&recs[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_layout),
	    cmocka_unit_test(test_crc_extend),
	    cmocka_unit_test(test_message_codec),
	    cmocka_unit_test(test_scan_image),
	    cmocka_unit_test(test_location_checkpoint_codec),
	    cmocka_unit_test_setup_teardown(test_roundtrip_across_segments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damage_in_middle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_and_half_made, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
