/*
 * test_spool.c: unit tests of the durable spool (spool/).
 *
 * They check what spool.h promises against the bytes on disk: the shard hash
 * (CRC-32C check value, case-insensitivity, pinned values), the record
 * decoders against truncated, corrupt and random input, group commit under
 * four concurrent submitters (at least 8 copies per sync), multi-shard
 * copies, recovery after close, reopen and SIGKILL, reads of blob-stored
 * bodies after a restart, queue ids of both layouts, the shard-count check
 * and back-pressure.  The SIGKILL test
 * re-executes this binary as the writer (`--kill9-child DIR FD`) so that the
 * writer has its own EAL and can die without taking the test with it.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>
#include <rte_eal.h>

#include "core/pa.h"
#include "core/queue_id.h"
#include "spool/spool.h"
#include "spool/spool_db.h"
#include "spool/spool_iter.h"
#include "spool/spool_upgrade.h"
#include "spool/spool_record.h"

#define ERR_MAX 1024
#define MAX_RCPT 4
#define KILL_SHARDS 4
#define KILL_MIN_COMPLETED 300
#define KILL_RECORD 32 /* bytes per queue id on the child's pipe */

struct env {
	char root[256];
	unsigned seq;
};

/* ------------------------------------------------------------------ helpers */

static void
init_eal(const char *prefix)
{
	char file_prefix[64];
	char *argv[] = {"test", "--no-huge",   "--no-pci",       "-m",
	                "128",  "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                "-l",   "0",           file_prefix,      NULL};

	cpu_set_t cpus;

	/* --in-memory is refused together with --no-huge (it implies legacy memory). */
	snprintf(file_prefix, sizeof(file_prefix), "--file-prefix=%s%ld", prefix, (long)getpid());
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		exit(1);
	}
	/* EAL pins this thread to lcore 0 and the committers would inherit that; undo it. */
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
}

static void
new_dir(struct env *env, char *out, size_t len)
{
	snprintf(out, len, "%s/spool-%u", env->root, env->seq++);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

/* Bitwise CRC-32C, independent of the implementation under test. */
static uint32_t
ref_crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
	}
	return c ^ 0xFFFFFFFFu;
}

/* A message whose every byte follows from its seed, so a reader can check it. */
struct tmsg {
	char qid[SMTP_QUEUE_ID_MAX];
	char rcpt_buf[MAX_RCPT][64];
	const char *rcpts[MAX_RCPT];
	uint8_t *data;
	struct smtp_message msg;
	struct spool_message sm;
};

static void
fill_body(uint8_t *data, size_t size, unsigned seed)
{
	static const char hdr[] = "Received: from test\r\n";
	size_t h = size < sizeof(hdr) - 1 ? size : sizeof(hdr) - 1;

	memcpy(data, hdr, h);
	for (size_t i = h; i < size; i++)
		data[i] = (uint8_t)('a' + (i * 7 + seed) % 26);
}

static void
tmsg_init(struct tmsg *t, const char *qid, size_t nrcpt, const char *const *rcpts, size_t size,
          unsigned seed)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->qid, sizeof(t->qid), "%s", qid);
	for (size_t i = 0; i < nrcpt; i++) {
		snprintf(t->rcpt_buf[i], sizeof(t->rcpt_buf[i]), "%s", rcpts[i]);
		t->rcpts[i] = t->rcpt_buf[i];
	}
	t->data = malloc(size + 1);
	assert_non_null(t->data);
	fill_body(t->data, size, seed);
	t->msg = (struct smtp_message){
	    .queue_id = t->qid,
	    .mail_from = "sender@example.net",
	    .rcpts = t->rcpts,
	    .nrcpt = nrcpt,
	    .data = t->data,
	    .size = size,
	    .helo = "client.example.net",
	    .client_addr = "192.0.2.7",
	    .body_8bitmime = true,
	};
	t->sm = (struct spool_message){&t->msg, 1700000000000000u + seed, t};
}

static void
tmsg_free(struct tmsg *t)
{
	free(t->data);
}

static struct spool *
open_spool(const char *dir, unsigned shards, unsigned workers, unsigned ring)
{
	struct spool_config cfg = {dir, shards, workers, ring, NULL, 0, 0, NULL, 0, 0, 0, 0};
	struct spool *s = NULL;
	char err[ERR_MAX] = "";

	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open(%s): %s", dir, err);
	return s;
}

/* Polls until n completions arrived (or 20 s passed); all must be PA_OK. */
static void
wait_ok(struct spool *s, unsigned worker, unsigned n)
{
	struct spool_completion c[64];
	unsigned got = 0;
	uint64_t deadline = now_us() + 20000000u;

	while (got < n && now_us() < deadline) {
		unsigned k = spool_poll(s, worker, c, pa_array_size(c));

		for (unsigned i = 0; i < k; i++)
			assert_int_equal(c[i].status, PA_OK);
		got += k;
		if (k == 0)
			sleep_us(100);
	}
	assert_int_equal(got, n);
}

/* Everything a scan saw, for the tests to check against what they wrote. */
struct seen {
	size_t n, cap;
	struct seen_entry {
		char qid[SMTP_QUEUE_ID_MAX];
		unsigned shard;
		size_t nrcpt;
		char rcpts[MAX_RCPT][64];
		size_t size;
		uint32_t crc;
		uint64_t arrival_us;
		char from[64], client[64], helo[64];
	} * e;
};

static int
collect(const struct spool_entry *e, void *arg)
{
	struct seen *s = arg;
	struct seen_entry *x;

	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 64 : s->cap * 2;
		s->e = realloc(s->e, s->cap * sizeof(*s->e));
		if (s->e == NULL)
			return PA_ERROR;
	}
	x = &s->e[s->n++];
	memset(x, 0, sizeof(*x));
	snprintf(x->qid, sizeof(x->qid), "%s", e->queue_id);
	x->shard = e->shard;
	x->nrcpt = e->nrcpt;
	for (size_t i = 0; i < e->nrcpt && i < MAX_RCPT; i++)
		snprintf(x->rcpts[i], sizeof(x->rcpts[i]), "%s", e->rcpts[i]);
	x->size = e->size;
	x->crc = ref_crc32c(e->data, e->size);
	x->arrival_us = e->arrival_us;
	snprintf(x->from, sizeof(x->from), "%s", e->mail_from);
	snprintf(x->client, sizeof(x->client), "%s", e->client_addr);
	snprintf(x->helo, sizeof(x->helo), "%s", e->helo);
	return PA_OK;
}

static void
scan_all(const char *dir, struct seen *s)
{
	char err[ERR_MAX] = "";

	memset(s, 0, sizeof(*s));
	if (spool_scan(dir, collect, s, err, sizeof(err)) != PA_OK)
		fail_msg("spool_scan(%s): %s", dir, err);
}

static size_t
count_copies(const struct seen *s, const char *qid, unsigned shard)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->e[i].qid, qid) == 0 && s->e[i].shard == shard)
			n++;
	return n;
}

/*
 * Reads every key of every shard with plain RocksDB and checks that each copy
 * is whole: a body for every message record and the other way round, one
 * delivery record per stored recipient, one schedule entry.  Returns the
 * number of message records per shard in msgs and bodies.
 */
struct raw_qid {
	char qid[SMTP_QUEUE_ID_MAX];
	unsigned n;
};

static int
raw_cmp(const void *a, const void *b)
{
	const struct raw_qid *x = a, *y = b;
	int c = strcmp(x->qid, y->qid);

	return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

static void
raw_push(struct raw_qid **v, size_t *n, const char *qid, unsigned x)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	assert_non_null(*v);
	snprintf((*v)[*n].qid, sizeof((*v)[*n].qid), "%s", qid);
	(*v)[*n].n = x;
	(*n)++;
}

static void
raw_check(const char *dir, unsigned shards, unsigned *msgs, unsigned *bodies)
{
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

	for (unsigned sh = 0; sh < shards; sh++) {
		char path[512], *err = NULL;
		rocksdb_t *db;
		rocksdb_iterator_t *it;
		struct raw_qid *m = NULL, *b = NULL, *d = NULL, *s = NULL;
		size_t nm = 0, nb = 0, nd = 0, ns = 0, di = 0;
		bool meta = false;

		snprintf(path, sizeof(path), "%s/shard-%03u", dir, sh);
		db = rocksdb_open_for_read_only(o, path, 0, &err);
		if (db == NULL)
			fail_msg("rocksdb_open_for_read_only(%s): %s", path, err);
		it = rocksdb_create_iterator(db, ro);
		for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
		     rocksdb_iter_next(it)) {
			size_t klen, vlen;
			const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
			const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
			struct spool_key key;
			struct spool_msg_record *rec;
			struct spool_delivery del;
			struct spool_meta mt;

			assert_int_equal(spool_key_decode(k, klen, &key), PA_OK);
			switch (key.type) {
			case SPOOL_KEY_META:
				assert_int_equal(spool_record_meta_decode(v, vlen, &mt), PA_OK);
				assert_int_equal(mt.shards, shards);
				assert_int_equal(mt.shard, sh);
				meta = true;
				break;
			case SPOOL_KEY_MESSAGE:
				assert_int_equal(spool_record_msg_decode(v, vlen, &rec), PA_OK);
				raw_push(&m, &nm, key.queue_id, (unsigned)rec->nrcpt);
				free(rec);
				break;
			case SPOOL_KEY_BODY:
				assert_true(vlen >= 1 && v[0] == SPOOL_VALUE_VERSION);
				raw_push(&b, &nb, key.queue_id, 0);
				break;
			case SPOOL_KEY_DELIVERY:
				assert_int_equal(spool_record_delivery_decode(v, vlen, &del),
				                 PA_OK);
				assert_int_equal(del.state, SPOOL_DELIVERY_PENDING);
				raw_push(&d, &nd, key.queue_id, key.rcpt);
				break;
			case SPOOL_KEY_SCHEDULE:
				assert_int_equal(spool_record_schedule_decode(v, vlen), PA_OK);
				raw_push(&s, &ns, key.queue_id, 0);
				break;
			default:
				fail_msg("%s: unexpected key type %c", path, key.type);
			}
		}
		rocksdb_iter_destroy(it);
		rocksdb_close(db);
		assert_true(meta);
		/* M, B and D keys come out sorted by queue id; S keys by time. */
		if (ns > 1)
			qsort(s, ns, sizeof(*s), raw_cmp);
		assert_int_equal(nm, nb);
		assert_int_equal(nm, ns);
		for (size_t i = 0; i < nm; i++) {
			assert_string_equal(m[i].qid, b[i].qid);
			assert_string_equal(m[i].qid, s[i].qid);
			for (unsigned r = 0; r < m[i].n; r++, di++) {
				assert_true(di < nd);
				assert_string_equal(d[di].qid, m[i].qid);
				assert_int_equal(d[di].n, r);
			}
		}
		assert_int_equal(di, nd);
		if (msgs != NULL)
			msgs[sh] = (unsigned)nm;
		if (bodies != NULL)
			bodies[sh] = (unsigned)nb;
		free(m);
		free(b);
		free(d);
		free(s);
	}
	rocksdb_readoptions_destroy(ro);
	rocksdb_options_destroy(o);
}

/* ---------------------------------------------------------------- the hash */

static void
test_crc32c(void **state)
{
	uint8_t buf[301];

	(void)state;
	assert_int_equal(spool_crc32c("123456789", 9), 0xE3069283u);
	assert_int_equal(spool_crc32c("", 0), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	/* Odd offsets and lengths: the implementation must not care about alignment. */
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len + off <= sizeof(buf); len += 13)
			assert_int_equal(spool_crc32c(buf + off, len), ref_crc32c(buf + off, len));
}

static void
test_shard_mapping(void **state)
{
	unsigned hits[16] = {0};

	(void)state;
	/* Pinned: stored spools depend on these never changing. */
	assert_int_equal(spool_crc32c("alice@example.com", 17), 0xab249be1u);
	assert_int_equal(spool_shard_of(16, "alice@example.com", 17), 1);
	assert_int_equal(spool_shard_of(16, "bob@example.org", 15), 8);
	assert_int_equal(spool_shard_of(7, "postmaster@pigeonair.test", 25), 3);
	/* Lower-cased before hashing, ASCII only. */
	assert_int_equal(spool_shard_of(16, "Alice@EXAMPLE.com", 17), 1);
	assert_int_equal(spool_shard_of(7, "POSTMASTER@PigeonAir.Test", 25), 3);
	assert_int_equal(spool_shard_of(1, "anyone@example.com", 18), 0);
	for (unsigned i = 0; i < 2000; i++) {
		char a[64], u[64];
		int n = snprintf(a, sizeof(a), "user%u@domain%u.example", i, i % 37);

		for (int k = 0; k <= n; k++)
			u[k] = (char)(a[k] >= 'a' && a[k] <= 'z' ? a[k] - 32 : a[k]);
		assert_int_equal(spool_shard_of(16, a, (size_t)n),
		                 spool_shard_of(16, u, (size_t)n));
		assert_int_equal(spool_shard_of(16, a, (size_t)n),
		                 ref_crc32c((const uint8_t *)a, (size_t)n) % 16);
		hits[spool_shard_of(16, a, (size_t)n)]++;
	}
	for (unsigned i = 0; i < 16; i++)
		assert_true(hits[i] > 60); /* 125 expected each */
}

/* ----------------------------------------------------------------- records */

static const char *const rt_rcpts[] = {"a@example.com", "", "b\xc3\xa9@example.org"};

static size_t
encode_sample(uint8_t *buf, size_t cap)
{
	struct spool_msg_record rec = {SPOOL_MSG_8BITMIME | SPOOL_MSG_SMTPUTF8,
	                               1700000000123456u,
	                               987654321u,
	                               "",
	                               "2001:db8::1",
	                               "mx.example.com",
	                               3,
	                               rt_rcpts};
	long n = spool_record_msg_size(&rec);

	assert_true(n > 0 && (size_t)n <= cap);
	spool_record_msg_encode(&rec, buf);
	return (size_t)n;
}

static void
test_record_roundtrip(void **state)
{
	uint8_t buf[512], key[SPOOL_KEY_MAX], dv[SPOOL_DELIVERY_MAX], mv[SPOOL_META_SIZE];
	size_t n = encode_sample(buf, sizeof(buf));
	struct spool_msg_record *rec;
	struct spool_key k;
	struct spool_delivery d = {SPOOL_DELIVERY_FAILED, 7, 1234, 5678, 9, "550 5.1.1"}, d2;
	struct spool_meta m = {SPOOL_FORMAT_VERSION, 64, 17, 42}, m2;
	const char *const too_many[] = {"x"};
	struct spool_msg_record bad = {0x80, 0, 0, "", "", "", 1, too_many};
	long dl;

	(void)state;
	assert_int_equal(buf[0], SPOOL_VALUE_VERSION);
	assert_int_equal(spool_record_msg_decode(buf, n, &rec), PA_OK);
	assert_int_equal(rec->flags, SPOOL_MSG_8BITMIME | SPOOL_MSG_SMTPUTF8);
	assert_int_equal(rec->arrival_us, 1700000000123456u);
	assert_int_equal(rec->size, 987654321u);
	assert_string_equal(rec->mail_from, "");
	assert_string_equal(rec->client_addr, "2001:db8::1");
	assert_string_equal(rec->helo, "mx.example.com");
	assert_int_equal(rec->nrcpt, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(rec->rcpts[i], rt_rcpts[i]);
	free(rec);
	assert_int_equal(spool_record_msg_size(&bad), PA_ERROR); /* unknown flag */
	bad.flags = 0;
	bad.nrcpt = 0;
	assert_int_equal(spool_record_msg_size(&bad), PA_ERROR);

	dl = spool_record_delivery_encode(&d, dv);
	assert_true(dl > 0);
	assert_int_equal(spool_record_delivery_decode(dv, (size_t)dl, &d2), PA_OK);
	assert_int_equal(d2.state, SPOOL_DELIVERY_FAILED);
	assert_int_equal(d2.attempts, 7);
	assert_int_equal(d2.next_attempt_us, 1234);
	assert_int_equal(d2.last_attempt_us, 5678);
	assert_string_equal(d2.reply, "550 5.1.1");
	for (long i = 0; i < dl; i++)
		assert_int_equal(spool_record_delivery_decode(dv, (size_t)i, &d2), PA_ERROR);
	dv[1] = 3; /* unknown state */
	assert_int_equal(spool_record_delivery_decode(dv, (size_t)dl, &d2), PA_ERROR);

	spool_record_meta_encode(&m, mv);
	assert_int_equal(spool_record_meta_decode(mv, sizeof(mv), &m2), PA_OK);
	assert_int_equal(m2.format, SPOOL_FORMAT_VERSION);
	assert_int_equal(m2.shards, 64);
	assert_int_equal(m2.shard, 17);
	assert_int_equal(m2.created_us, 42);
	assert_int_equal(spool_record_meta_decode(mv, sizeof(mv) - 1, &m2), PA_ERROR);
	mv[0] = 2;
	assert_int_equal(spool_record_meta_decode(mv, sizeof(mv), &m2), PA_ERROR);

	/* Keys: byte layout, ordering and round trip. */
	assert_int_equal(spool_key_message(key, "Q1", 2), 4);
	assert_memory_equal(key, "M\x01Q1", 4);
	assert_int_equal(spool_key_delivery(key, "Q1", 2, 0x0102), 7);
	assert_memory_equal(key, "D\x01Q1\x00\x01\x02", 7);
	assert_int_equal(spool_key_decode(key, 7, &k), PA_OK);
	assert_int_equal(k.type, SPOOL_KEY_DELIVERY);
	assert_string_equal(k.queue_id, "Q1");
	assert_int_equal(k.rcpt, 0x0102);
	assert_int_equal(spool_key_schedule(key, 0x0102030405060708u, "Q1", 2), 12);
	assert_memory_equal(key, "S\x01\x01\x02\x03\x04\x05\x06\x07\x08Q1", 12);
	assert_int_equal(spool_key_decode(key, 12, &k), PA_OK);
	assert_int_equal(k.next_attempt_us, 0x0102030405060708u);
	assert_int_equal(spool_key_message(key, "has space", 9), 0);
	assert_int_equal(spool_key_message(key, "", 0), 0);
	assert_int_equal(spool_key_message(key, "0123456789012345678901234567890123", 34), 0);
}

static void
test_record_hostile(void **state)
{
	uint8_t buf[512], copy[512];
	size_t n = encode_sample(buf, sizeof(buf));
	struct spool_msg_record *rec;
	struct spool_key k;
	struct spool_delivery d;
	struct spool_meta m;
	unsigned seed = 12345;

	(void)state;
	/* Every truncation: the decoder reads only its n bytes, ASan checks that. */
	for (size_t len = 0; len < n; len++) {
		uint8_t *exact = malloc(len == 0 ? 1 : len);

		memcpy(exact, buf, len);
		assert_int_equal(spool_record_msg_decode(exact, len, &rec), PA_ERROR);
		assert_null(rec);
		free(exact);
	}
	assert_int_equal(spool_record_msg_decode(NULL, 0, &rec), PA_ERROR);
	/* Trailing garbage. */
	memcpy(copy, buf, n);
	copy[n] = 0;
	assert_int_equal(spool_record_msg_decode(copy, n + 1, &rec), PA_ERROR);
	/* Unknown version, unknown flag. */
	copy[0] = 2;
	assert_int_equal(spool_record_msg_decode(copy, n, &rec), PA_ERROR);
	copy[0] = SPOOL_VALUE_VERSION;
	copy[1] = 0x08;
	assert_int_equal(spool_record_msg_decode(copy, n, &rec), PA_ERROR);
	/* A NUL inside a string: the client address's bytes start at offset 22. */
	memcpy(copy, buf, n);
	copy[22 + 3] = '\0';
	assert_int_equal(spool_record_msg_decode(copy, n, &rec), PA_ERROR);
	/* Recipient count larger than the data. */
	memcpy(copy, buf, n);
	for (size_t i = 0; i + 1 < n; i++) {
		uint8_t save[2] = {copy[i], copy[i + 1]};

		copy[i] = 0xff;
		copy[i + 1] = 0xff;
		if (spool_record_msg_decode(copy, n, &rec) == PA_OK)
			free(rec);
		copy[i] = save[0];
		copy[i + 1] = save[1];
	}
	/* Every single-byte corruption: either a clean decode or a clean refusal. */
	for (size_t i = 0; i < n; i++) {
		for (unsigned v = 0; v < 256; v += 17) {
			memcpy(copy, buf, n);
			copy[i] ^= (uint8_t)(v | 1);
			if (spool_record_msg_decode(copy, n, &rec) == PA_OK) {
				assert_true(rec->nrcpt >= 1);
				for (size_t r = 0; r < rec->nrcpt; r++)
					assert_non_null(rec->rcpts[r]);
				free(rec);
			}
		}
	}
	/* Random input of random length, into exactly-sized heap buffers. */
	for (unsigned iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % 64);
		uint8_t *p = malloc(len == 0 ? 1 : len);

		for (size_t i = 0; i < len; i++)
			p[i] = (uint8_t)rand_r(&seed);
		if (len > 0 && iter % 2 == 0)
			p[0] = SPOOL_VALUE_VERSION;
		if (len > 1 && iter % 4 == 0)
			p[1] = SPOOL_KEY_VERSION;
		if (spool_record_msg_decode(p, len, &rec) == PA_OK)
			free(rec);
		(void)spool_record_delivery_decode(p, len, &d);
		(void)spool_record_meta_decode(p, len, &m);
		(void)spool_record_schedule_decode(p, len);
		(void)spool_key_decode(p, len, &k);
		free(p);
	}
	/* Hostile keys. */
	assert_int_equal(spool_key_decode((const uint8_t *)"M\x02Q1", 4, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"X\x01Q1", 4, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"M\x01", 2, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"D\x01Q1\x00\x01", 6, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"D\x01\x00\x00\x01", 5, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"S\x01\x00\x00\x00", 5, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"!\x01x", 3, &k), PA_ERROR);
	assert_int_equal(spool_key_decode((const uint8_t *)"M", 1, &k), PA_ERROR);
}

/* ------------------------------------------------------------ group commit */

struct load {
	struct spool *spool;
	unsigned worker;
	int efd; /* -1: poll-mode worker */
	struct tmsg *msgs;
	unsigned n;
	unsigned char *done;
	pthread_barrier_t *start; /* every submitter begins at once */
	unsigned completions, failures, duplicates, submit_errors;
	unsigned max_in_flight; /* most messages submitted and not yet polled */
};

/*
 * One submitter: puts messages on the rings until they are all submitted or
 * a ring is full, and only then polls; with rings as large as its share, all
 * of its messages are in flight before its first completion is looked at.
 */
static void *
load_main(void *arg)
{
	struct load *l = arg;
	unsigned next = 0;

	pthread_barrier_wait(l->start);
	while (l->completions < l->n) {
		struct spool_completion c[64];
		unsigned k;

		while (next < l->n) {
			int rc = spool_submit(l->spool, l->worker, &l->msgs[next].sm);

			if (rc == PA_AGAIN)
				break;
			if (rc != PA_OK) {
				l->submit_errors++;
				return NULL;
			}
			next++;
		}
		if (next - l->completions > l->max_in_flight)
			l->max_in_flight = next - l->completions;
		k = spool_poll(l->spool, l->worker, c, pa_array_size(c));
		for (unsigned i = 0; i < k; i++) {
			size_t idx = (size_t)((struct tmsg *)c[i].cookie - l->msgs);

			if (l->done[idx]++ != 0)
				l->duplicates++;
			if (c[i].status != PA_OK)
				l->failures++;
		}
		l->completions += k;
		if (k == 0 && l->efd >= 0) {
			struct pollfd p = {l->efd, POLLIN, 0};
			uint64_t v;

			if (poll(&p, 1, 1000) == 1 && read(l->efd, &v, sizeof(v)) == -1)
				l->submit_errors++;
		} else if (k == 0) {
			sleep_us(20);
		}
	}
	return NULL;
}

/*
 * Group commit under concurrent load.  Four submitters (two that sleep on an
 * eventfd and wake committers, two in poll mode) start together and each put
 * all 1,000 of their messages in flight before polling.  A committer takes
 * every request on its ring for one synced write (spool_committer.c), so
 * while it syncs the submitters, about a microsecond per message, queue the
 * next batch: a sync of a real disk takes tens of microseconds at least (a
 * 4 KiB O_DSYNC write about 120 µs on the machines this runs on), and the
 * first few syncs of each shard are the only small ones.  One sync per message
 * would be 8 times over the bound asserted, and a committer that took one
 * request per sync (no grouping at all) fails it.
 */
static void
test_group_commit(void **state)
{
	enum { THREADS = 4, PER_THREAD = 1000, SHARDS = 2, RING = 4096, MIN_PER_SYNC = 8 };
	char dir[512];
	struct spool *s;
	struct load l[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t start;
	uint64_t copies = 0, commits = 0, msgs = 0, failures = 0;
	struct seen seen;

	new_dir(*state, dir, sizeof(dir));
	/* Rings hold every copy of every thread: no submitter waits for room. */
	s = open_spool(dir, SHARDS, THREADS, RING);
	assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
	for (unsigned w = 0; w < THREADS; w++) {
		l[w] = (struct load){.spool = s,
		                     .worker = w,
		                     .efd = w % 2 == 0 ? eventfd(0, EFD_NONBLOCK) : -1,
		                     .msgs = calloc(PER_THREAD, sizeof(struct tmsg)),
		                     .n = PER_THREAD,
		                     .done = calloc(PER_THREAD, 1),
		                     .start = &start};
		assert_non_null(l[w].msgs);
		assert_non_null(l[w].done);
		/* Even workers sleep in the kernel and may wake committers; odd ones poll. */
		assert_int_equal(spool_attach_worker(s, w, l[w].efd, w % 2 == 0), PA_OK);
		for (unsigned i = 0; i < PER_THREAD; i++) {
			char qid[32], r0[64], r1[64];
			const char *rc[2] = {r0, r1};
			unsigned nr = 1 + i % 2;

			snprintf(qid, sizeof(qid), "G%u%06u", w, i);
			snprintf(r0, sizeof(r0), "u%u@w%u.example", i, w);
			snprintf(r1, sizeof(r1), "v%u@w%u.example", i, w);
			tmsg_init(&l[w].msgs[i], qid, nr, rc, i % 50 == 0 ? 9000 : 200 + i % 300,
			          i);
			copies += nr == 2 && spool_shard_of(SHARDS, r0, strlen(r0)) !=
			                         spool_shard_of(SHARDS, r1, strlen(r1))
			              ? 2
			              : 1;
		}
	}
	for (unsigned w = 0; w < THREADS; w++)
		assert_int_equal(pthread_create(&th[w], NULL, load_main, &l[w]), 0);
	for (unsigned w = 0; w < THREADS; w++)
		pthread_join(th[w], NULL);
	pthread_barrier_destroy(&start);
	for (unsigned w = 0; w < THREADS; w++) {
		assert_int_equal(l[w].submit_errors, 0);
		assert_int_equal(l[w].failures, 0);
		assert_int_equal(l[w].duplicates, 0);
		assert_int_equal(l[w].completions, PER_THREAD);
		/* The load was concurrent: every message was in flight before the first poll. */
		assert_int_equal(l[w].max_in_flight, PER_THREAD);
	}
	for (unsigned i = 0; i < SHARDS; i++) {
		struct spool_shard_stats st;

		spool_shard_stats(s, i, &st);
		commits += st.commits;
		msgs += st.messages;
		failures += st.failures;
		print_message("    shard %u: %" PRIu64 " copies in %" PRIu64
		              " synced batches (%.1f per commit)\n",
		              i, st.messages, st.commits,
		              st.commits ? (double)st.messages / (double)st.commits : 0.0);
	}
	assert_int_equal(msgs, copies);
	assert_int_equal(failures, 0);
	print_message("    total: %" PRIu64 " copies, %" PRIu64 " synced writes (bound %" PRIu64
	              ")\n",
	              msgs, commits, msgs / MIN_PER_SYNC);
	assert_true(commits >= SHARDS);
	assert_true(commits <= msgs / MIN_PER_SYNC);
	spool_close(s);

	scan_all(dir, &seen);
	assert_int_equal(seen.n, copies);
	raw_check(dir, SHARDS, NULL, NULL);
	free(seen.e);
	for (unsigned w = 0; w < THREADS; w++) {
		for (unsigned i = 0; i < PER_THREAD; i++)
			tmsg_free(&l[w].msgs[i]);
		free(l[w].msgs);
		free(l[w].done);
		if (l[w].efd >= 0)
			close(l[w].efd);
	}
}

/*
 * An idle committer sleeps (100 ms at a time when no poll-mode worker is
 * attached) without burning CPU, and a worker that may make syscalls wakes it
 * at once: a lost wake-up would show as a completion late by most of a sleep.
 */
static void
test_idle_and_wakeup(void **state)
{
	enum { ROUNDS = 20 };
	char dir[512], qid[32];
	const char *rc[1] = {"wake@example.com"};
	struct spool *s;
	struct tmsg t;
	struct rusage r0, r1;
	int efd = eventfd(0, EFD_NONBLOCK);
	unsigned fast = 0;
	long cpu_us;

	assert_true(efd != -1);
	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 2, 1, 16);
	assert_int_equal(spool_attach_worker(s, 0, efd, true), PA_OK);

	getrusage(RUSAGE_SELF, &r0);
	sleep_us(300000);
	getrusage(RUSAGE_SELF, &r1);
	cpu_us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000000L +
	         (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
	         (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000L +
	         (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
	print_message("    idle: %ld us of CPU in 300 ms\n", cpu_us);
	assert_true(cpu_us < 30000);

	for (unsigned i = 0; i < ROUNDS; i++) {
		struct pollfd p = {efd, POLLIN, 0};
		struct spool_completion c;
		uint64_t v, start;

		snprintf(qid, sizeof(qid), "W%u", i);
		tmsg_init(&t, qid, 1, rc, 100, i);
		sleep_us(30000); /* the committers are asleep by now */
		start = now_us();
		assert_int_equal(spool_submit(s, 0, &t.sm), PA_OK);
		/* The completion is announced on the worker's eventfd, not just queued. */
		assert_int_equal(poll(&p, 1, 5000), 1);
		assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
		assert_int_equal(spool_poll(s, 0, &c, 1), 1);
		assert_int_equal(c.status, PA_OK);
		if (now_us() - start < 50000)
			fast++;
		tmsg_free(&t);
	}
	print_message("    %u of %u wake-ups completed within 50 ms\n", fast, ROUNDS);
	assert_true(fast >= ROUNDS - 3); /* slack for a loaded machine, not for lost wake-ups */
	spool_close(s);
	close(efd);
}

/*
 * The doorbell (spool.idle_poll_us = 0): a poll-mode worker never makes a
 * system call in spool_submit(); its next spool_poll() rings the eventfd of
 * a committer that announced it sleeps, once for everything submitted since.
 * Light load: each message alone is synced at once (a group of 1, within
 * 50 ms, where a missed doorbell would wait for the committer's 100 ms
 * timeout).  A burst: one doorbell at most, and the burst is synced in
 * groups of more than one.
 */
static void
test_doorbell(void **state)
{
	enum { ROUNDS = 20, BURST = 64 };
	char dir[512], qid[32];
	const char *rc[1] = {"bell@example.com"};
	struct spool *s;
	struct tmsg t[BURST];
	struct spool_shard_stats st0, st;
	unsigned fast = 0;
	uint64_t grouped = 0, groups = 0;

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 1, 1, 128);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	for (unsigned i = 0; i < ROUNDS; i++) {
		struct spool_completion c;
		uint64_t start, deadline;
		unsigned got = 0;

		snprintf(qid, sizeof(qid), "D%u", i);
		tmsg_init(&t[0], qid, 1, rc, 100, i);
		sleep_us(30000); /* the committer is asleep by now */
		start = now_us();
		deadline = start + 5000000u;
		assert_int_equal(spool_submit(s, 0, &t[0].sm), PA_OK);
		while (got == 0 && now_us() < deadline) {
			got = spool_poll(s, 0, &c, 1);
			if (got == 0)
				sleep_us(100);
		}
		assert_int_equal(got, 1);
		assert_int_equal(c.status, PA_OK);
		if (now_us() - start < 50000)
			fast++;
		tmsg_free(&t[0]);
	}
	spool_shard_stats(s, 0, &st0);
	print_message("    %u of %u rung messages completed within 50 ms, %" PRIu64 " doorbells\n",
	              fast, ROUNDS, st0.doorbells);
	assert_true(fast >= ROUNDS - 3); /* slack for a loaded machine, not for lost doorbells */
	/* Rung at most once per message here (one poll loop each), and not left out. */
	assert_true(st0.doorbells >= ROUNDS - 3 && st0.doorbells <= ROUNDS);
	/* One message in flight at a time: every group held exactly one. */
	assert_int_equal(st0.groups[0], ROUNDS);
	assert_int_equal(st0.commits, ROUNDS);

	for (unsigned i = 0; i < BURST; i++) {
		snprintf(qid, sizeof(qid), "B%u", i);
		tmsg_init(&t[i], qid, 1, rc, 100, i);
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	}
	wait_ok(s, 0, BURST);
	spool_shard_stats(s, 0, &st);
	for (unsigned b = 0; b < SPOOL_GROUP_BUCKETS; b++) {
		groups += st.groups[b] - st0.groups[b];
		grouped += (st.groups[b] - st0.groups[b]) << b; /* the bucket's least size */
	}
	print_message("    a burst of %u: %" PRIu64 " groups, %" PRIu64 " doorbell(s)\n", BURST,
	              groups, st.doorbells - st0.doorbells);
	/* Only the first poll after the burst had something to ring for. */
	assert_true(st.doorbells - st0.doorbells <= 1);
	assert_int_equal(st.commits - st0.commits, groups);
	assert_true(groups < BURST && grouped <= BURST);
	for (unsigned i = 0; i < BURST; i++)
		tmsg_free(&t[i]);
	spool_close(s);

	/* Lingering 10 s (spool.linger_us): messages 30 ms apart find it awake, none is rung. */
	{
		struct spool_config cfg = {dir, 1, 1, 128, NULL, 0, 0, NULL, 0, 0, 0, 10000000};
		char err[ERR_MAX] = "";

		s = NULL;
		if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
			fail_msg("spool_open(%s): %s", dir, err);
	}
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	for (unsigned i = 0; i < 5; i++) {
		snprintf(qid, sizeof(qid), "L%u", i);
		tmsg_init(&t[0], qid, 1, rc, 100, i);
		sleep_us(30000);
		assert_int_equal(spool_submit(s, 0, &t[0].sm), PA_OK);
		wait_ok(s, 0, 1);
		tmsg_free(&t[0]);
	}
	spool_shard_stats(s, 0, &st);
	assert_int_equal(st.doorbells, 0);
	assert_int_equal(st.groups[0], 5);
	spool_close(s); /* and a lingering committer stops at once */
}

/* ------------------------------------------------------- multi-shard copies */

static void
test_three_shards(void **state)
{
	enum { SHARDS = 8 };
	char dir[512], addrs[4][64];
	const char *rcpts[4];
	unsigned shard_of[4], found = 0, msgs[SHARDS], bodies[SHARDS];
	struct spool *s;
	struct tmsg t;
	struct seen seen;

	/* Three recipients in three different shards, a fourth sharing the first one's shard. */
	for (unsigned i = 0; found < 3; i++) {
		char a[64];
		bool dup = false;

		snprintf(a, sizeof(a), "Rcpt%u@Example.COM", i);
		for (unsigned j = 0; j < found; j++)
			dup |= shard_of[j] == spool_shard_of(SHARDS, a, strlen(a));
		if (!dup) {
			snprintf(addrs[found], sizeof(addrs[found]), "%s", a);
			shard_of[found] = spool_shard_of(SHARDS, a, strlen(a));
			found++;
		}
	}
	for (unsigned i = 1000;; i++) {
		snprintf(addrs[3], sizeof(addrs[3]), "other%u@example.com", i);
		if (spool_shard_of(SHARDS, addrs[3], strlen(addrs[3])) == shard_of[0])
			break;
	}
	shard_of[3] = shard_of[0];
	for (unsigned i = 0; i < 4; i++)
		rcpts[i] = addrs[i];

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, SHARDS, 1, 16);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	tmsg_init(&t, "THREE1", 4, rcpts, 20000, 3);
	assert_int_equal(spool_submit(s, 0, &t.sm), PA_OK);
	wait_ok(s, 0, 1);
	spool_close(s);

	scan_all(dir, &seen);
	assert_int_equal(seen.n, 3);
	for (unsigned i = 0; i < 3; i++) {
		struct seen_entry *e = NULL;

		assert_int_equal(count_copies(&seen, "THREE1", shard_of[i]), 1);
		for (size_t j = 0; j < seen.n; j++)
			if (seen.e[j].shard == shard_of[i])
				e = &seen.e[j];
		assert_non_null(e);
		assert_int_equal(e->size, 20000);
		assert_int_equal(e->crc, ref_crc32c(t.data, t.msg.size));
		assert_int_equal(e->arrival_us, t.sm.arrival_us);
		assert_string_equal(e->from, "sender@example.net");
		assert_string_equal(e->client, "192.0.2.7");
		assert_string_equal(e->helo, "client.example.net");
		/* Only that shard's recipients, in the message's order. */
		assert_int_equal(e->nrcpt, i == 0 ? 2 : 1);
		assert_string_equal(e->rcpts[0], addrs[i]);
		if (i == 0)
			assert_string_equal(e->rcpts[1], addrs[3]);
	}
	/* The body once per shard, not once per recipient; nothing in other shards. */
	raw_check(dir, SHARDS, msgs, bodies);
	for (unsigned sh = 0; sh < SHARDS; sh++) {
		unsigned want = sh == shard_of[0] || sh == shard_of[1] || sh == shard_of[2];

		assert_int_equal(msgs[sh], want);
		assert_int_equal(bodies[sh], want);
	}
	free(seen.e);

	/* After a flush the 20 kB body lives in a blob file, and still reads back intact. */
	for (unsigned i = 0; i < 3; i++) {
		char path[600], *err = NULL;
		rocksdb_options_t *o = spool_db_options(false);
		rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
		rocksdb_t *db;
		DIR *d;
		struct dirent *de;
		bool blob = false;

		snprintf(path, sizeof(path), "%s/shard-%03u", dir, shard_of[i]);
		db = rocksdb_open(o, path, &err);
		assert_non_null(db);
		rocksdb_flushoptions_set_wait(fo, 1);
		rocksdb_flush(db, fo, &err);
		assert_null(err);
		rocksdb_close(db);
		rocksdb_flushoptions_destroy(fo);
		rocksdb_options_destroy(o);
		d = opendir(path);
		assert_non_null(d);
		while ((de = readdir(d)) != NULL)
			blob |= strstr(de->d_name, ".blob") != NULL;
		closedir(d);
		assert_true(blob);
	}
	scan_all(dir, &seen);
	assert_int_equal(seen.n, 3);
	for (size_t j = 0; j < seen.n; j++)
		assert_int_equal(seen.e[j].crc, ref_crc32c(t.data, t.msg.size));
	raw_check(dir, SHARDS, NULL, NULL);
	free(seen.e);
	tmsg_free(&t);
}

/* ----------------------------------------------------------------- recovery */

static void
submit_batch(struct spool *s, struct tmsg *t, unsigned from, unsigned n, const char *tag)
{
	for (unsigned i = from; i < from + n; i++) {
		char qid[32], r[64];
		const char *rc[1] = {r};

		snprintf(qid, sizeof(qid), "%s%05u", tag, i);
		snprintf(r, sizeof(r), "user%u@example.com", i);
		tmsg_init(&t[i], qid, 1, rc, 100 + i * 37 % 5000, i);
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	}
}

static void
test_reopen(void **state)
{
	enum { N = 40, SHARDS = 3 };
	char dir[512], err[ERR_MAX];
	struct spool *s;
	struct tmsg t[3 * N];
	struct seen seen;

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	submit_batch(s, t, 0, N, "R");
	wait_ok(s, 0, N);
	spool_close(s); /* memtables are not flushed: recovery comes from the WAL */

	s = open_spool(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_batch(s, t, N, N, "R");
	wait_ok(s, 0, N);
	/* Close right after submitting, without polling: close must commit them all. */
	submit_batch(s, t, 2 * N, N, "R");
	spool_close(s);

	s = open_spool(dir, SHARDS, 1, 64);
	spool_close(s);

	scan_all(dir, &seen);
	assert_int_equal(seen.n, 3 * N);
	for (unsigned i = 0; i < 3 * N; i++) {
		unsigned sh = spool_shard_of(SHARDS, t[i].rcpts[0], strlen(t[i].rcpts[0]));

		assert_int_equal(count_copies(&seen, t[i].qid, sh), 1);
	}
	/* Queue-id order within a shard. */
	for (size_t i = 1; i < seen.n; i++)
		if (seen.e[i].shard == seen.e[i - 1].shard)
			assert_true(strcmp(seen.e[i - 1].qid, seen.e[i].qid) < 0);
	for (size_t i = 0; i < seen.n; i++) {
		unsigned idx = (unsigned)atoi(seen.e[i].qid + 1);

		assert_int_equal(seen.e[i].size, t[idx].msg.size);
		assert_int_equal(seen.e[i].crc, ref_crc32c(t[idx].data, t[idx].msg.size));
	}
	free(seen.e);
	/* spool_scan_id: one id, right shard, wrong shard, unknown id. */
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(spool_scan_id(dir, t[5].qid, -1, collect, &seen, err, sizeof(err)), PA_OK);
	assert_int_equal(seen.n, 1);
	assert_int_equal(
	    spool_scan_id(dir, t[5].qid, (int)seen.e[0].shard, collect, &seen, err, sizeof(err)),
	    PA_OK);
	assert_int_equal(seen.n, 2);
	assert_int_equal(spool_scan_id(dir, t[5].qid, (int)(seen.e[0].shard + 1) % SHARDS, collect,
	                               &seen, err, sizeof(err)),
	                 PA_OK);
	assert_int_equal(seen.n, 2);
	assert_int_equal(spool_scan_id(dir, "NOPE", -1, collect, &seen, err, sizeof(err)), PA_OK);
	assert_int_equal(seen.n, 2);
	assert_int_equal(spool_scan_id(dir, "bad id", -1, collect, &seen, err, sizeof(err)),
	                 PA_ERROR);
	assert_int_equal(spool_scan_id(dir, t[5].qid, SHARDS, collect, &seen, err, sizeof(err)),
	                 PA_ERROR);
	free(seen.e);
	raw_check(dir, SHARDS, NULL, NULL);
	for (unsigned i = 0; i < 3 * N; i++)
		tmsg_free(&t[i]);
}

/* A half-written copy (here forged with plain RocksDB) is reported, not skipped. */
static void
test_scan_detects_half_written(void **state)
{
	char dir[512], path[600], err[ERR_MAX] = "", *rerr = NULL;
	struct spool *s;
	struct seen seen = {0};
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_t *db;
	uint8_t key[SPOOL_KEY_MAX], body[2] = {SPOOL_VALUE_VERSION, 'x'};

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 1, 1, 8);
	spool_close(s);
	snprintf(path, sizeof(path), "%s/shard-000", dir);
	db = rocksdb_open(o, path, &rerr);
	assert_non_null(db);
	rocksdb_put(db, wo, (const char *)key, spool_key_body(key, "ORPHAN", 6), (const char *)body,
	            2, &rerr);
	assert_null(rerr);
	rocksdb_close(db);
	assert_int_equal(spool_scan(dir, collect, &seen, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "ORPHAN"));
	free(seen.e);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_options_destroy(o);
}

/* Files of one shard whose name ends in suffix. */
static unsigned
count_files(const char *dir, unsigned shard, const char *suffix)
{
	char path[600];
	DIR *d;
	struct dirent *e;
	unsigned n = 0;
	size_t sl = strlen(suffix);

	snprintf(path, sizeof(path), "%s/shard-%03u", dir, shard);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l >= sl && strcmp(e->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/*
 * A shard that is one SST and an empty WAL (messages stored, pigeond
 * restarted, stopped again with no new mail) with its bodies in blob files:
 * RocksDB 7.8's read-only open with max_open_files = -1 takes such a shard in
 * its "compacted" mode, whose Get cannot read blob values, and `pigeonctl
 * spool show --dir` reported an intact message as "has no body".
 */
static void
test_scan_blob_after_restart(void **state)
{
	enum { N = 3 };
	char dir[512], qid[32], err[ERR_MAX] = "";
	const char *rc[1] = {"blob@example.com"};
	size_t sizes[N] = {4096, 9000, 200}; /* two blob values, one inline */
	struct spool *s;
	struct tmsg t[N];
	struct seen seen = {0};

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 1, 1, 16);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	for (unsigned i = 0; i < N; i++) {
		snprintf(qid, sizeof(qid), "BLOB%u", i);
		tmsg_init(&t[i], qid, 1, rc, sizes[i], i);
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	}
	wait_ok(s, 0, N);
	spool_close(s);
	/* The restart's WAL replay flushes the memtable: one SST, blob files, an empty WAL. */
	s = open_spool(dir, 1, 1, 16);
	spool_close(s);
	assert_int_equal(count_files(dir, 0, ".sst"), 1);
	assert_true(count_files(dir, 0, ".blob") >= 1);

	for (unsigned i = 0; i < N; i++) {
		seen.n = 0;
		if (spool_scan_id(dir, t[i].qid, -1, collect, &seen, err, sizeof(err)) != PA_OK)
			fail_msg("spool_scan_id(%s): %s", t[i].qid, err);
		assert_int_equal(seen.n, 1);
		assert_string_equal(seen.e[0].qid, t[i].qid);
		assert_int_equal(seen.e[0].size, sizes[i]);
		assert_int_equal(seen.e[0].crc, ref_crc32c(t[i].data, sizes[i]));
	}
	free(seen.e);
	scan_all(dir, &seen);
	assert_int_equal(seen.n, N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(seen.e[i].crc, ref_crc32c(t[i].data, sizes[i]));
	free(seen.e);
	for (unsigned i = 0; i < N; i++)
		tmsg_free(&t[i]);
}

/*
 * Queue ids of the first layout (22 hex digits) stay valid in a spool next to
 * ids of the current one: both are stored, listed and shown, and a listing
 * puts the old one, which arrived first, before the new one.
 */
static void
test_old_and_new_queue_ids(void **state)
{
	char dir[512], err[ERR_MAX] = "", qid[QUEUE_ID_LEN + 1];
	const char *rc[1] = {"ids@example.com"};
	struct queue_id_gen gen;
	struct spool *s;
	struct tmsg t[2];
	struct seen seen = {0};

	new_dir(*state, dir, sizeof(dir));
	queue_id_gen_init(&gen, 1, 0);
	queue_id_next(&gen, now_us(), qid);
	assert_int_equal(strlen(qid), QUEUE_ID_LEN);
	s = open_spool(dir, 1, 1, 16);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	/* The new id first: the listing order must come from the ids, not from arrival. */
	tmsg_init(&t[0], qid, 1, rc, 300, 1);
	tmsg_init(&t[1], "15D0A116ED700000000001", 1, rc, 300, 2);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	wait_ok(s, 0, 2);
	spool_close(s);

	scan_all(dir, &seen);
	assert_int_equal(seen.n, 2);
	assert_string_equal(seen.e[0].qid, "15D0A116ED700000000001");
	assert_string_equal(seen.e[1].qid, qid);
	for (unsigned i = 0; i < 2; i++) {
		seen.n = 0;
		if (spool_scan_id(dir, t[i].qid, -1, collect, &seen, err, sizeof(err)) != PA_OK)
			fail_msg("spool_scan_id(%s): %s", t[i].qid, err);
		assert_int_equal(seen.n, 1);
		assert_int_equal(seen.e[0].crc, ref_crc32c(t[i].data, t[i].msg.size));
	}
	free(seen.e);
	raw_check(dir, 1, NULL, NULL);
	for (unsigned i = 0; i < 2; i++)
		tmsg_free(&t[i]);
}

/* ------------------------------------------------------------- kill -9 test */

static void
kill_rcpt(unsigned i, unsigned j, char *out, size_t len)
{
	snprintf(out, len, "k%u.%u@Kill.Example", i, j);
}

/* EAL leaves its (empty) runtime directory behind when it cannot clean up. */
static void
remove_runtime_dir(const char *prefix, pid_t pid)
{
	char path[512];
	const char *mine = rte_eal_get_runtime_dir();
	const char *slash = strrchr(mine, '/');

	if (slash == NULL)
		return;
	snprintf(path, sizeof(path), "%.*s/%s%ld", (int)(slash - mine), mine, prefix, (long)pid);
	rmdir(path);
}

/* The writer: commits messages until killed, reporting each completed id on fd. */
static int
kill9_child(const char *dir, int fd)
{
	enum { SLOTS = 64 };
	struct spool *s;
	struct tmsg *t = calloc(SLOTS, sizeof(*t));
	bool busy[SLOTS] = {false};
	unsigned next = 0;
	uint64_t deadline = now_us() + 30000000u;

	init_eal("spoolkill");
	s = open_spool(dir, KILL_SHARDS, 1, SLOTS);
	spool_attach_worker(s, 0, -1, false);
	while (now_us() < deadline) {
		struct spool_completion c[SLOTS];
		unsigned k;

		for (unsigned slot = 0; slot < SLOTS; slot++) {
			char qid[32], r[3][64];
			const char *rc[3] = {r[0], r[1], r[2]};

			if (busy[slot])
				continue;
			snprintf(qid, sizeof(qid), "K%08u", next);
			for (unsigned j = 0; j < 3; j++)
				kill_rcpt(next, j, r[j], sizeof(r[j]));
			tmsg_free(&t[slot]);
			tmsg_init(&t[slot], qid, 1 + next % 3, rc, 64 + next * 101 % 9000, next);
			if (spool_submit(s, 0, &t[slot].sm) != PA_OK)
				break;
			busy[slot] = true;
			next++;
		}
		k = spool_poll(s, 0, c, SLOTS);
		for (unsigned i = 0; i < k; i++) {
			struct tmsg *m = c[i].cookie;
			char rec[KILL_RECORD] = {0};

			if (c[i].status != PA_OK)
				return 1;
			snprintf(rec, sizeof(rec), "%s", m->qid);
			if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
				return 1;
			busy[m - t] = false;
		}
		if (k == 0)
			sleep_us(20);
	}
	return 1; /* the parent should have killed us long ago */
}

static void
test_kill9(void **state)
{
	char dir[512], self[512], fdarg[16];
	int p[2], status;
	pid_t pid;
	char(*ids)[KILL_RECORD] = NULL;
	size_t nids = 0, cap = 0;
	bool killed = false;
	struct seen seen;
	ssize_t n;
	ssize_t self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	assert_true(self_len > 0);
	self[self_len] = '\0';
	new_dir(*state, dir, sizeof(dir));
	assert_int_equal(pipe(p), 0);
	snprintf(fdarg, sizeof(fdarg), "%d", p[1]);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		close(p[0]);
		execl(self, self, "--kill9-child", dir, fdarg, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char rec[KILL_RECORD];

		n = read(p[0], rec, sizeof(rec));
		if (n == 0)
			break;
		if (n == -1 && errno == EINTR)
			continue;
		assert_int_equal(n, KILL_RECORD); /* pipe writes of 32 bytes are atomic */
		if (nids == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			ids = realloc(ids, cap * sizeof(*ids));
			assert_non_null(ids);
		}
		memcpy(ids[nids++], rec, KILL_RECORD);
		if (!killed && nids >= KILL_MIN_COMPLETED) {
			/* The child is still submitting: it dies mid-batch. */
			assert_int_equal(kill(pid, SIGKILL), 0);
			killed = true;
		}
	}
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	remove_runtime_dir("spoolkill", pid);
	assert_true(killed);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	/* Every completed message is present exactly once in each of its shards. */
	scan_all(dir, &seen);
	print_message("    %zu completions reported before SIGKILL, %zu copies recovered\n", nids,
	              seen.n);
	for (size_t i = 0; i < nids; i++) {
		unsigned idx = (unsigned)strtoul(ids[i] + 1, NULL, 10);
		unsigned nr = 1 + idx % 3;

		for (unsigned j = 0; j < nr; j++) {
			char r[64];

			kill_rcpt(idx, j, r, sizeof(r));
			assert_int_equal(
			    count_copies(&seen, ids[i], spool_shard_of(KILL_SHARDS, r, strlen(r))),
			    1);
		}
	}
	/* Whatever else survived is whole too: nothing half-written. */
	for (size_t i = 0; i < seen.n; i++) {
		unsigned idx = (unsigned)strtoul(seen.e[i].qid + 1, NULL, 10);
		uint8_t *b = malloc(64 + idx * 101 % 9000);

		assert_int_equal(seen.e[i].size, 64 + idx * 101 % 9000);
		fill_body(b, seen.e[i].size, idx);
		assert_int_equal(seen.e[i].crc, ref_crc32c(b, seen.e[i].size));
		free(b);
	}
	raw_check(dir, KILL_SHARDS, NULL, NULL);
	free(seen.e);
	free(ids);
}

/* ------------------------------------------------------ refusals, back-pressure */

/*
 * Format 2: a shard whose first segment cannot be allocated (here: the file
 * size limit, as a full disk would) fails the open with the failing call,
 * the segment's path and the error, rather than opening an unhealthy shard.
 */
static void
test_log_first_segment_refused(void **state)
{
	char dir[512], err[ERR_MAX] = "";
	struct spool *s = NULL;
	struct spool_config cfg = {NULL, 1, 1, 16, NULL, 0, 0, NULL, 2, 8u << 20, 0, 0};
	struct rlimit old, lim;

	new_dir(*state, dir, sizeof(dir));
	cfg.dir = dir;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = (struct rlimit){4u << 20, old.rlim_max};
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(spool_open(&s, &cfg, err, sizeof(err)), PA_ERROR);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_null(s);
	print_message("    %s\n", err);
	assert_non_null(strstr(err, "fallocate("));
	assert_non_null(strstr(err, "/shard-000/log/00000000000000000001.seg"));
	assert_non_null(strstr(err, strerror(EFBIG)));
	/* Nothing was left half made: with room again it opens. */
	assert_int_equal(spool_open(&s, &cfg, err, sizeof(err)), PA_OK);
	spool_close(s);
}

static void
test_shard_count_mismatch(void **state)
{
	char dir[512], err[ERR_MAX] = "";
	struct spool *s;
	struct spool_config cfg8 = {NULL, 8, 1, 16, NULL, 0, 0, NULL, 0, 0, 0, 0},
	                    cfg2 = {NULL, 2, 1, 16, NULL, 0, 0, NULL, 0, 0, 0, 0};

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 4, 1, 16);
	spool_close(s);
	cfg8.dir = dir;
	cfg2.dir = dir;
	assert_int_equal(spool_open(&s, &cfg8, err, sizeof(err)), PA_ERROR);
	assert_null(s);
	assert_non_null(strstr(err, "created with 4 shards, not 8"));
	assert_int_equal(spool_open(&s, &cfg2, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "created with 4 shards, not 2"));
	/* Refusing did not damage anything: the right count still opens, and scans. */
	s = open_spool(dir, 4, 1, 16);
	spool_close(s);
	assert_int_equal(spool_scan(dir, collect, &(struct seen){0}, err, sizeof(err)), PA_OK);
	/* Configuration errors. */
	cfg8.ring_size = 12;
	assert_int_equal(spool_open(&s, &cfg8, err, sizeof(err)), PA_ERROR);
	cfg8.ring_size = 16;
	cfg8.shards = 0;
	assert_int_equal(spool_open(&s, &cfg8, err, sizeof(err)), PA_ERROR);
	assert_int_equal(spool_scan("/nonexistent/spool", collect, NULL, err, sizeof(err)),
	                 PA_ERROR);
	assert_non_null(strstr(err, "rocksdb_open_for_read_only(/nonexistent/spool/shard-000)"));
}

static void
test_full_ring(void **state)
{
	enum { RING = 8 };
	char dir[512];
	struct spool *s;
	struct tmsg t[RING + 1];
	struct spool_completion c[RING + 4];
	struct seen seen;
	unsigned got = 0;
	uint64_t deadline;

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 2, 2, RING);
	assert_int_equal(spool_submit(s, 1, &(struct spool_message){0}),
	                 PA_ERROR); /* not attached */
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	assert_int_equal(spool_attach_worker(s, 7, -1, false), PA_ERROR);
	for (unsigned i = 0; i <= RING; i++) {
		char qid[32], r[2][64];
		const char *rc[2] = {r[0], r[1]};

		snprintf(qid, sizeof(qid), "F%02u", i);
		snprintf(r[0], sizeof(r[0]), "a%u@example.com", i);
		snprintf(r[1], sizeof(r[1]), "b%u@example.com", i);
		tmsg_init(&t[i], qid, 2, rc, 300, i);
	}
	/* Without polling, the worker's ring fills: the ninth submit queues nothing. */
	for (unsigned i = 0; i < RING; i++)
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	assert_int_equal(spool_submit(s, 0, &t[RING].sm), PA_AGAIN);
	deadline = now_us() + 10000000u;
	while (got < RING && now_us() < deadline) {
		got += spool_poll(s, 0, c + got, RING + 4 - got);
		sleep_us(100);
	}
	assert_int_equal(got, RING);
	sleep_us(20000);
	assert_int_equal(spool_poll(s, 0, c, RING + 4), 0);
	for (unsigned i = 0; i < RING; i++)
		assert_int_equal(c[i].status, PA_OK);
	spool_close(s);

	scan_all(dir, &seen);
	for (unsigned i = 0; i < RING; i++)
		assert_true(count_copies(&seen, t[i].qid, 0) + count_copies(&seen, t[i].qid, 1) >=
		            1);
	assert_int_equal(count_copies(&seen, t[RING].qid, 0) + count_copies(&seen, t[RING].qid, 1),
	                 0);
	free(seen.e);
	for (unsigned i = 0; i <= RING; i++)
		tmsg_free(&t[i]);
}

/* -------------------------------------------------------------------- main */

/* One completion's status, polled for up to 10 s. */
static int
wait_one(struct spool *s)
{
	struct spool_completion c;
	uint64_t deadline = now_us() + 10000000u;

	while (now_us() < deadline) {
		if (spool_poll(s, 0, &c, 1) == 1)
			return c.status;
		sleep_us(100);
	}
	fail_msg("no completion within 10 s");
	return PA_ERROR;
}

/* Polls until the spool is healthy again (5 s at most); returns the microseconds it took. */
static uint64_t
wait_healthy(struct spool *s)
{
	uint64_t t0 = now_us();

	while (!spool_healthy(s) && now_us() - t0 < 5000000u)
		sleep_us(1000);
	assert_true(spool_healthy(s));
	return now_us() - t0;
}

/*
 * A failed write (spool.impair "fail=2": the commit and the first probe)
 * answers PA_ERROR, makes that shard alone unhealthy, and the committer
 * recovers it by itself through a reopen; later messages are stored, the
 * failed one is not.
 */
static void
test_fault_write_error(void **state)
{
	char dir[512], err[ERR_MAX] = "";
	struct spool *s = NULL;
	struct tmsg t[2];
	const char *r[1] = {"user1@example.com"};
	struct spool_config cfg = {NULL, 2, 1, 64, NULL, 50, 20, "fail=2", 0, 0, 0, 0};
	unsigned shard = spool_shard_of(2, r[0], strlen(r[0]));
	struct spool_shard_health h;
	struct spool_shard_stats st;
	struct seen seen = {0};

	new_dir(*state, dir, sizeof(dir));
	cfg.dir = dir;
	assert_int_equal(spool_open(&s, &cfg, err, sizeof(err)), PA_OK);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	assert_true(spool_healthy(s));
	tmsg_init(&t[0], "FAIL00001", 1, r, 500, 1);
	tmsg_init(&t[1], "FAIL00002", 1, r, 700, 2);
	assert_int_equal(spool_submit(s, 0, &t[0].sm), PA_OK);
	assert_int_equal(wait_one(s), PA_ERROR);
	spool_shard_health(s, shard, &h);
	if (h.state != SPOOL_SHARD_OK) { /* the probe may already have run */
		assert_int_equal(h.state, SPOOL_SHARD_FAILED);
		assert_non_null(strstr(h.last_error, "injected"));
	}
	assert_true(spool_shard_healthy(s, 1 - shard));
	wait_healthy(s);
	spool_shard_stats(s, shard, &st);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.reopens, 1);
	assert_int_equal(st.recoveries, 1);
	assert_int_equal(st.failures, 1);
	assert_true(st.healthy);
	assert_int_equal(spool_submit(s, 0, &t[1].sm), PA_OK);
	assert_int_equal(wait_one(s), PA_OK);
	spool_close(s);
	scan_all(dir, &seen);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.e[0].qid, "FAIL00002");
	free(seen.e);
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

/* A write stalled past the stall timeout answers PA_ERROR in bounded time, then resumes. */
static void
test_fault_write_stall(void **state)
{
	char dir[512], err[ERR_MAX] = "";
	struct spool *s = NULL;
	struct tmsg t[2];
	const char *r[1] = {"user2@example.com"};
	struct spool_config cfg = {NULL, 1, 1, 64, NULL, 50, 20, "stall=2000", 0, 0, 0, 0};
	struct spool_shard_health h;
	struct spool_shard_stats st;
	uint64_t t0;

	new_dir(*state, dir, sizeof(dir));
	cfg.dir = dir;
	assert_int_equal(spool_open(&s, &cfg, err, sizeof(err)), PA_OK);
	assert_int_equal(spool_attach_worker(s, 0, -1, false), PA_OK);
	tmsg_init(&t[0], "STALL0001", 1, r, 300, 3);
	tmsg_init(&t[1], "STALL0002", 1, r, 300, 4);
	t0 = now_us();
	assert_int_equal(spool_submit(s, 0, &t[0].sm), PA_OK);
	assert_int_equal(wait_one(s), PA_ERROR);
	assert_true(now_us() - t0 >= 50000u && now_us() - t0 < 1500000u);
	assert_false(spool_healthy(s));
	spool_shard_health(s, 0, &h);
	assert_int_equal(h.state, SPOOL_SHARD_STALLED);
	assert_string_equal(spool_shard_state_name(h.state), "stalled");
	wait_healthy(s);
	spool_shard_stats(s, 0, &st);
	assert_int_equal(st.stalls, 1);
	assert_int_equal(st.reopens, 0);
	assert_int_equal(spool_submit(s, 0, &t[1].sm), PA_OK);
	assert_int_equal(wait_one(s), PA_OK);
	spool_close(s);
	/* A bad impair setting is refused by name. */
	cfg.impair = "explode";
	assert_int_equal(spool_open(&s, &cfg, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "impair"));
	tmsg_free(&t[0]);
	tmsg_free(&t[1]);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
group_setup(void **state)
{
	struct env *env = calloc(1, sizeof(*env));
	const char *tmp = getenv("TMPDIR");

	if (env == NULL)
		return -1;
	snprintf(env->root, sizeof(env->root), "%s/test_spool.XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(env->root) == NULL) {
		free(env);
		return -1;
	}
	*state = env;
	return 0;
}

static int
group_teardown(void **state)
{
	struct env *env = *state;

	if (getenv("TEST_SPOOL_KEEP") == NULL)
		nftw(env->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s\n", env->root);
	free(env);
	return 0;
}

/* ------------------------------------------------------------------ format 2 */

static struct spool *
open_spool_log(const char *dir, unsigned shards, unsigned workers, unsigned ring)
{
	struct spool_config cfg = {dir, shards, workers,          ring,      NULL, 0,
	                           0,   NULL,   SPOOL_FORMAT_LOG, 64u << 10, 0,    0};
	struct spool *s = NULL;
	char err[ERR_MAX] = "";

	if (spool_open(&s, &cfg, err, sizeof(err)) != PA_OK)
		fail_msg("spool_open(%s, format 2): %s", dir, err);
	return s;
}

/* What spool_lookup() found for one queue id: copies, and each copy's bytes checked. */
struct looked {
	unsigned copies;
	unsigned pending;
	const struct tmsg *t;
};

static int
look(const struct spool_entry *e, void *arg)
{
	struct looked *l = arg;

	assert_non_null(e->data);
	assert_int_equal(e->size, l->t->msg.size);
	assert_memory_equal(e->data, l->t->data, e->size);
	assert_string_equal(e->mail_from, "sender@example.net");
	assert_int_equal(e->arrival_us, l->t->sm.arrival_us);
	for (size_t i = 0; i < e->nrcpt; i++)
		l->pending += e->states[i].state == SPOOL_DELIVERY_PENDING;
	l->copies++;
	return PA_OK;
}

static struct looked
lookup_one(struct spool *s, const struct tmsg *t)
{
	struct looked l = {0, 0, t};
	char err[ERR_MAX] = "";

	if (spool_lookup(s, t->qid, -1, look, &l, err, sizeof(err)) != PA_OK)
		fail_msg("spool_lookup(%s): %s", t->qid, err);
	return l;
}

static unsigned
distinct_shards(const struct tmsg *t, unsigned shards)
{
	uint64_t seen = 0;
	unsigned n = 0;

	for (size_t i = 0; i < t->msg.nrcpt; i++) {
		unsigned sh = spool_shard_of(shards, t->rcpts[i], strlen(t->rcpts[i]));

		n += (seen >> sh & 1) == 0;
		seen |= UINT64_C(1) << sh;
	}
	return n;
}

/* Keys of one type in one shard, with plain RocksDB (pigeond stopped). */
static unsigned
raw_count(const char *dir, unsigned shard, enum spool_key_type type)
{
	char path[SPOOL_PATH_MAX], err[ERR_MAX];
	rocksdb_options_t *o = spool_db_options(false);
	rocksdb_t *db;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	unsigned n = 0;

	assert_int_equal(spool_db_path(path, sizeof(path), dir, shard), PA_OK);
	db = spool_db_open(o, path, true, err, sizeof(err));
	if (db == NULL)
		fail_msg("%s", err);
	it = rocksdb_create_iterator(db, ro);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		n += klen > 0 && (uint8_t)k[0] == type;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
	return n;
}

static void
submit_multi(struct spool *s, struct tmsg *t, unsigned from, unsigned n, const char *tag)
{
	for (unsigned i = from; i < from + n; i++) {
		char qid[32], r0[64], r1[64];
		const char *rc[2] = {r0, r1};

		snprintf(qid, sizeof(qid), "%s%05u", tag, i);
		snprintf(r0, sizeof(r0), "user%u@example.com", i);
		snprintf(r1, sizeof(r1), "Other%u@Example.ORG", i * 7);
		/* Sizes from empty to beyond a 64 KiB segment. */
		tmsg_init(&t[i], qid, 2, rc, i % 17 == 5 ? 70000 : i * 397 % 9000, i);
		assert_int_equal(spool_submit(s, 0, &t[i].sm), PA_OK);
	}
}

/*
 * pigeonctl's offline reader on a stopped format-2 spool: every copy of
 * t[0..n) but t[skip] (skip >= n: none) once per shard of its recipients, each
 * byte as written, in queue-id order within a shard; spool_scan_id() finds
 * each one too.
 */
static void
check_offline(const char *dir, const struct tmsg *t, unsigned n, unsigned skip, unsigned shards)
{
	struct seen seen;
	size_t want = 0;
	char err[ERR_MAX] = "";

	scan_all(dir, &seen);
	for (size_t i = 1; i < seen.n; i++)
		if (seen.e[i].shard == seen.e[i - 1].shard)
			assert_true(strcmp(seen.e[i - 1].qid, seen.e[i].qid) < 0);
	for (unsigned i = 0; i < n; i++) {
		struct seen one = {0};

		if (i == skip)
			continue;
		want += distinct_shards(&t[i], shards);
		for (size_t j = 0; j < seen.n; j++)
			if (strcmp(seen.e[j].qid, t[i].qid) == 0) {
				assert_int_equal(seen.e[j].size, t[i].msg.size);
				assert_int_equal(seen.e[j].crc,
				                 ref_crc32c(t[i].data, t[i].msg.size));
				assert_true(seen.e[j].arrival_us == t[i].sm.arrival_us);
				assert_string_equal(seen.e[j].from, "sender@example.net");
			}
		if (spool_scan_id(dir, t[i].qid, -1, collect, &one, err, sizeof(err)) != PA_OK)
			fail_msg("spool_scan_id(%s): %s", t[i].qid, err);
		assert_int_equal(one.n, distinct_shards(&t[i], shards));
		assert_int_equal(one.e[0].crc, ref_crc32c(t[i].data, t[i].msg.size));
		free(one.e);
	}
	assert_int_equal(seen.n, want);
	free(seen.e);
}

/*
 * Format 2: bodies are in the segment log, RocksDB holds no 'B' key and one
 * 'L' per copy; lookups read every byte back, before and after a restart,
 * and a restarted spool goes on writing.
 */
static void
test_log_format(void **state)
{
	enum { N = 60, SHARDS = 3 };
	char dir[512];
	struct spool *s;
	struct tmsg t[2 * N];
	unsigned copies = 0, bodies = 0, locations = 0, deliveries = 0;

	new_dir(*state, dir, sizeof(dir));
	s = open_spool_log(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_multi(s, t, 0, N, "LOG");
	wait_ok(s, 0, N);
	for (unsigned i = 0; i < N; i++) {
		struct looked l = lookup_one(s, &t[i]);

		assert_int_equal(l.copies, distinct_shards(&t[i], SHARDS));
		assert_int_equal(l.pending, 2);
		copies += l.copies;
	}
	spool_close(s);
	for (unsigned sh = 0; sh < SHARDS; sh++) {
		bodies += raw_count(dir, sh, SPOOL_KEY_BODY);
		locations += raw_count(dir, sh, SPOOL_KEY_LOCATION);
		deliveries += raw_count(dir, sh, SPOOL_KEY_DELIVERY);
		assert_int_equal(raw_count(dir, sh, SPOOL_KEY_CHECKPOINT), 1);
	}
	assert_int_equal(bodies, 0);
	assert_int_equal(locations, copies);
	/* A delivery record for every recipient: a missing one would read as pending too. */
	assert_int_equal(deliveries, 2 * N);
	check_offline(dir, t, N, N, SHARDS);

	s = open_spool_log(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_multi(s, t, N, N, "LOG");
	wait_ok(s, 0, N);
	for (unsigned i = 0; i < 2 * N; i++)
		assert_int_equal(lookup_one(s, &t[i]).copies, distinct_shards(&t[i], SHARDS));
	spool_close(s);
	for (unsigned i = 0; i < 2 * N; i++)
		tmsg_free(&t[i]);
}

/* Deletes a copy's index keys from one shard, as a crash before RocksDB's WAL reached the disk
 * would. */
static void
raw_drop_index(rocksdb_t *db, const char *qid, struct spool_location *loc)
{
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	uint8_t key[SPOOL_KEY_MAX];
	size_t qlen = strlen(qid), vlen;
	char *rerr = NULL, *v;
	rocksdb_iterator_t *it;

	v = rocksdb_get(db, ro, (const char *)key, spool_key_location(key, qid, qlen), &vlen,
	                &rerr);
	assert_null(rerr);
	assert_non_null(v);
	assert_int_equal(spool_record_location_decode((const uint8_t *)v, vlen, loc), PA_OK);
	rocksdb_free(v);
	rocksdb_delete(db, wo, (const char *)key, spool_key_location(key, qid, qlen), &rerr);
	rocksdb_delete(db, wo, (const char *)key, spool_key_message(key, qid, qlen), &rerr);
	for (uint16_t i = 0; i < 4; i++)
		rocksdb_delete(db, wo, (const char *)key, spool_key_delivery(key, qid, qlen, i),
		               &rerr);
	/* The schedule key holds a time: found by walking the 'S' range. */
	it = rocksdb_create_iterator(db, ro);
	rocksdb_iter_seek(it, (const char *)key, spool_key_prefix(key, SPOOL_KEY_SCHEDULE));
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		struct spool_key k;
		size_t klen;
		const char *kb = rocksdb_iter_key(it, &klen);

		if (spool_key_decode((const uint8_t *)kb, klen, &k) != PA_OK ||
		    k.type != SPOOL_KEY_SCHEDULE)
			break;
		if (strcmp(k.queue_id, qid) == 0)
			rocksdb_delete(db, wo, kb, klen, &rerr);
	}
	rocksdb_iter_destroy(it);
	assert_null(rerr);
	rocksdb_readoptions_destroy(ro);
	rocksdb_writeoptions_destroy(wo);
}

/*
 * Recovery: the index of the copies after the checkpoint is rebuilt from the
 * log (as after a power cut that took RocksDB's unsynced WAL tail), a copy
 * deleted before the checkpoint (delivered) stays deleted, and a second
 * restart adds nothing twice.
 */
static void
test_log_reindex(void **state)
{
	enum { N = 50, CUT = 30, GONE = 7 };
	char dir[512], path[SPOOL_PATH_MAX], err[ERR_MAX];
	struct spool *s;
	struct tmsg t[N];
	struct spool_location loc, first = {0};
	struct spool_checkpoint cp;
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_CHECKPOINT_SIZE];
	rocksdb_options_t *o;
	rocksdb_writeoptions_t *wo;
	rocksdb_t *db;
	char *rerr = NULL;

	new_dir(*state, dir, sizeof(dir));
	s = open_spool_log(dir, 1, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	/* One at a time: each in a group of its own, so a checkpoint can fall between any two. */
	for (unsigned i = 0; i < N; i++) {
		submit_batch(s, t, i, 1, "RX");
		wait_ok(s, 0, 1);
	}
	spool_close(s);

	assert_int_equal(spool_db_path(path, sizeof(path), dir, 0), PA_OK);
	o = spool_db_options(true);
	db = spool_db_open(o, path, false, err, sizeof(err));
	if (db == NULL)
		fail_msg("%s", err);
	for (unsigned i = CUT; i < N; i++) {
		raw_drop_index(db, t[i].qid, &loc);
		if (i == CUT)
			first = loc;
	}
	raw_drop_index(db, t[GONE].qid, &loc);
	cp = (struct spool_checkpoint){first.segment, first.offset, first.seq};
	spool_record_checkpoint_encode(&cp, val);
	wo = rocksdb_writeoptions_create();
	rocksdb_put(db, wo, (const char *)key, spool_key_checkpoint(key), (const char *)val,
	            sizeof(val), &rerr);
	assert_null(rerr);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
	/* Offline, before any restart: the unindexed copies are read from the log. */
	check_offline(dir, t, N, GONE, 1);
	assert_int_equal(raw_count(dir, 0, SPOOL_KEY_LOCATION), CUT - 1);

	for (unsigned round = 0; round < 2; round++) {
		s = open_spool_log(dir, 1, 1, 64);
		for (unsigned i = 0; i < N; i++) {
			struct looked l = lookup_one(s, &t[i]);

			assert_int_equal(l.copies, i == GONE ? 0 : 1);
			assert_int_equal(l.pending, i == GONE ? 0 : 1);
		}
		spool_close(s);
		assert_int_equal(raw_count(dir, 0, SPOOL_KEY_LOCATION), N - 1);
		assert_int_equal(raw_count(dir, 0, SPOOL_KEY_SCHEDULE), N - 1);
		assert_int_equal(raw_count(dir, 0, SPOOL_KEY_DELIVERY), N - 1);
	}
	for (unsigned i = 0; i < N; i++)
		tmsg_free(&t[i]);
}

/* A shard keeps the format it was made with: a format-1 spool opened for format 2 stays 1. */
static void
test_log_existing_format1(void **state)
{
	enum { N = 10 };
	char dir[512];
	struct spool *s;
	struct tmsg t[2 * N];

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, 2, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_batch(s, t, 0, N, "F1");
	wait_ok(s, 0, N);
	spool_close(s);
	s = open_spool_log(dir, 2, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_batch(s, t, N, N, "F1");
	wait_ok(s, 0, N);
	for (unsigned i = 0; i < 2 * N; i++)
		assert_int_equal(lookup_one(s, &t[i]).copies, 1);
	spool_close(s);
	assert_int_equal(raw_count(dir, 0, SPOOL_KEY_BODY) + raw_count(dir, 1, SPOOL_KEY_BODY),
	                 2 * N);
	assert_int_equal(
	    raw_count(dir, 0, SPOOL_KEY_LOCATION) + raw_count(dir, 1, SPOOL_KEY_LOCATION), 0);
	for (unsigned i = 0; i < 2 * N; i++)
		tmsg_free(&t[i]);
}

/* A delivery record of one recipient of one copy, read or written with plain RocksDB. */
static void
raw_delivery(const char *dir, unsigned shard, const char *qid, struct spool_delivery *d, bool write)
{
	char path[SPOOL_PATH_MAX], err[ERR_MAX];
	rocksdb_options_t *o = spool_db_options(true);
	rocksdb_t *db;
	uint8_t key[SPOOL_KEY_MAX], val[SPOOL_DELIVERY_MAX];
	size_t klen, vlen;
	char *rerr = NULL, *v;

	assert_int_equal(spool_db_path(path, sizeof(path), dir, shard), PA_OK);
	db = spool_db_open(o, path, false, err, sizeof(err));
	if (db == NULL)
		fail_msg("%s", err);
	klen = spool_key_delivery(key, qid, strlen(qid), 0);
	if (write) {
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		long n = spool_record_delivery_encode(d, val);

		assert_true(n > 0);
		rocksdb_put(db, wo, (const char *)key, klen, (const char *)val, (size_t)n, &rerr);
		rocksdb_writeoptions_destroy(wo);
	} else {
		rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

		v = rocksdb_get(db, ro, (const char *)key, klen, &vlen, &rerr);
		assert_non_null(v);
		assert_int_equal(spool_record_delivery_decode((const uint8_t *)v, vlen, d), PA_OK);
		rocksdb_free(v);
		rocksdb_readoptions_destroy(ro);
	}
	assert_null(rerr);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
}

/*
 * A version-1 spool made by this code is upgraded to format 2 with nothing
 * lost: every body moves to the log (no 'B' left, an 'L' per copy), a
 * delivery state set by the hand-off (a failed attempt, deferred) is kept,
 * every byte reads back through pigeond's readers, a second run finds
 * nothing to do, and the upgraded spool takes new mail.
 */
static void
test_upgrade_format1(void **state)
{
	enum { N = 40, SHARDS = 3 };
	char dir[512], err[ERR_MAX] = "", rcpt[64];
	struct spool *s;
	struct tmsg t[N + 5];
	struct spool_delivery d = {SPOOL_DELIVERY_PENDING, 3,  1900000000000000u,
	                           1700000000000000u,      25, "451 4.3.0 try again later"},
	                      d2;
	unsigned copies = 0, locations = 0, bodies = 0, shard3;
	FILE *report = tmpfile();

	new_dir(*state, dir, sizeof(dir));
	s = open_spool(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	submit_multi(s, t, 0, N, "UP");
	wait_ok(s, 0, N);
	spool_close(s);
	for (unsigned i = 0; i < N; i++)
		copies += distinct_shards(&t[i], SHARDS);
	/* The hand-off deferred recipient 0 of message 3's copy in its shard. */
	snprintf(rcpt, sizeof(rcpt), "%s", t[3].rcpts[0]);
	shard3 = spool_shard_of(SHARDS, rcpt, strlen(rcpt));
	raw_delivery(dir, shard3, t[3].qid, &d, true);

	assert_non_null(report);
	if (spool_upgrade(dir, SHARDS, 64u << 10, report, err, sizeof(err)) != PA_OK)
		fail_msg("spool_upgrade: %s", err);
	for (unsigned sh = 0; sh < SHARDS; sh++) {
		bodies += raw_count(dir, sh, SPOOL_KEY_BODY);
		locations += raw_count(dir, sh, SPOOL_KEY_LOCATION);
	}
	assert_int_equal(bodies, 0);
	assert_int_equal(locations, copies);
	raw_delivery(dir, shard3, t[3].qid, &d2, false);
	assert_int_equal(d2.attempts, 3);
	assert_true(d2.next_attempt_us == 1900000000000000u);
	assert_string_equal(d2.reply, "451 4.3.0 try again later");
	/* Once more: nothing left to move. */
	if (spool_upgrade(dir, SHARDS, 64u << 10, report, err, sizeof(err)) != PA_OK)
		fail_msg("spool_upgrade (again): %s", err);
	assert_int_equal(raw_count(dir, 0, SPOOL_KEY_LOCATION) +
	                     raw_count(dir, 1, SPOOL_KEY_LOCATION) +
	                     raw_count(dir, 2, SPOOL_KEY_LOCATION),
	                 copies);
	fclose(report);

	/* pigeond's default format is 1; the shards stay 2, read and written as such. */
	s = open_spool(dir, SHARDS, 1, 64);
	assert_int_equal(spool_attach_worker(s, 0, -1, true), PA_OK);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(lookup_one(s, &t[i]).copies, distinct_shards(&t[i], SHARDS));
	submit_multi(s, t, N, 5, "UP");
	wait_ok(s, 0, 5);
	for (unsigned i = N; i < N + 5; i++)
		assert_int_equal(lookup_one(s, &t[i]).copies, distinct_shards(&t[i], SHARDS));
	spool_close(s);
	assert_int_equal(raw_count(dir, 0, SPOOL_KEY_BODY) + raw_count(dir, 1, SPOOL_KEY_BODY) +
	                     raw_count(dir, 2, SPOOL_KEY_BODY),
	                 0);
	for (unsigned i = 0; i < N + 5; i++)
		tmsg_free(&t[i]);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c),
	    cmocka_unit_test(test_shard_mapping),
	    cmocka_unit_test(test_record_roundtrip),
	    cmocka_unit_test(test_record_hostile),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_idle_and_wakeup),
	    cmocka_unit_test(test_doorbell),
	    cmocka_unit_test(test_three_shards),
	    cmocka_unit_test(test_reopen),
	    cmocka_unit_test(test_scan_detects_half_written),
	    cmocka_unit_test(test_scan_blob_after_restart),
	    cmocka_unit_test(test_old_and_new_queue_ids),
	    cmocka_unit_test(test_kill9),
	    cmocka_unit_test(test_shard_count_mismatch),
	    cmocka_unit_test(test_full_ring),
	    cmocka_unit_test(test_fault_write_error),
	    cmocka_unit_test(test_fault_write_stall),
	    cmocka_unit_test(test_log_format),
	    cmocka_unit_test(test_log_reindex),
	    cmocka_unit_test(test_log_existing_format1),
	    cmocka_unit_test(test_upgrade_format1),
	    cmocka_unit_test(test_log_first_segment_refused),
	};
	int rc;

	if (argc == 4 && strcmp(argv[1], "--kill9-child") == 0)
		return kill9_child(argv[2], atoi(argv[3]));
	init_eal("spooltest");
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	rte_eal_cleanup();
	remove_runtime_dir("spooltest", getpid());
	return rc;
}
