/*
 * log.c: formats lines and writes each with one write(2) (or hands it to
 * syslog(3) or the journal); poll-mode threads hand theirs to the log thread
 * through single-producer rings.
 *
 * log.format = text is "ident[pid]: level: body"; json is one object a line
 * (core/log_record.h).  log.target = stderr writes those lines; syslog sends
 * the body (or the object) to syslog(3), facility mail; journal sends the
 * journal's native fields (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and one
 * PIGEONAIR_* field per record field) with sd_journal_sendv(3), and a line
 * the journal refuses is written to stderr instead.  Formatting and sending
 * are done by the log thread for attached threads: a poll-mode core only
 * copies its line and the wall clock (vDSO) into its ring.
 *
 * The ident and level are process-wide settings written once at start-up
 * (and on reload by the main lcore); reading a stale level for one line is
 * harmless, so they are plain atomics rather than locked state.
 *
 * Each attached thread owns one ring of fixed slots: it alone advances head,
 * the log thread alone advances tail, so neither takes a lock and a slot is
 * handed over by the release store of head (and given back by that of tail).
 * The rings are static and their slots are allocated once, at attach, so
 * queueing a line costs a bounded copy and two atomics.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/log_record.h"
#include "core/pa.h"

#define LOG_BODY_MAX 2048
#define LOG_LINE_MAX 4096 /* a JSON line: a body of LOG_BODY_MAX with its escapes, cut to fit */
/*
 * 8,192 slots of 512 octets (4 MiB a thread): at 100,000 messages a second a
 * worker's ring holds 80 ms of lines while the log thread waits for the CPU.
 * A queued line holds at most 479 octets; a longer one (rare: never a
 * per-message line) is written at once by its thread, whole, and may then
 * come out ahead of lines queued before it.
 */
#define RING_SLOTS 8192 /* a power of two */
#define SLOT_SIZE 512
#define WRITE_BATCH 64 /* lines per writev(2) */
#define IDLE_SLEEP_NS 1000000L
#define DETACH_WAIT_MS 1000

static const char *const level_names[] = {
    [PA_LOG_ERR] = "error", [PA_LOG_WARNING] = "warning", [PA_LOG_NOTICE] = "notice",
    [PA_LOG_INFO] = "info", [PA_LOG_DEBUG] = "debug",
};

/* syslog(3) and journal priorities of each level (RFC 5424 6.2.1). */
static const int level_priority[] = {
    [PA_LOG_ERR] = LOG_ERR,   [PA_LOG_WARNING] = LOG_WARNING, [PA_LOG_NOTICE] = LOG_NOTICE,
    [PA_LOG_INFO] = LOG_INFO, [PA_LOG_DEBUG] = LOG_DEBUG,
};

/*
 * Process-wide logger settings: written at start-up and on reload only
 * (format; the target is set once, before the log thread starts).
 */
static struct {
	char ident[32];
	int level;
	int format; /* enum pa_log_format */
	int target; /* enum pa_log_target: where lines go */
	int wanted; /* the target configured: journal may have fallen back to stderr */
} logger = {"pigeond", PA_LOG_INFO, PA_LOG_FORMAT_TEXT, PA_LOG_TARGET_STDERR, PA_LOG_TARGET_STDERR};

enum slot_kind { SLOT_TEXT, SLOT_ACCEPTED };

/* One queued line: TEXT holds the formatted body, ACCEPTED three NUL-ended fields. */
struct log_slot {
	uint16_t kind;
	uint16_t level;
	uint32_t len;
	uint64_t time_us;
	uint64_t nrcpt;
	uint64_t size;
	char text[SLOT_SIZE - 32];
};
_Static_assert(sizeof(struct log_slot) == SLOT_SIZE, "a log slot is SLOT_SIZE octets");

struct log_ring {
	uint64_t head __attribute__((aligned(64))); /* written by the owner */
	uint64_t tail __attribute__((aligned(64))); /* written by the log thread */
	int in_use;
	struct log_slot *slots;
};

static struct log_ring rings[PA_LOG_MAX_THREADS];
static __thread struct log_ring *my_ring;
static uint64_t dropped;

static struct {
	pthread_t thread;
	int running; /* the log thread drains the rings */
	int stop;
} writer;

void
pa_log_init(const char *ident)
{
	snprintf(logger.ident, sizeof(logger.ident), "%s", ident);
}

void
pa_log_set_level(enum pa_log_level level)
{
	__atomic_store_n(&logger.level, (int)level, __ATOMIC_RELAXED);
}

/*
 * sd_journal_sendv(3) drops a line silently (and returns 0) when there is no
 * journal: without its socket, lines go to stderr instead, and the first
 * one says why.
 */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

int
pa_log_set_output(enum pa_log_format format, enum pa_log_target target)
{
	int actual = (int)target, journal_errno = 0;

	__atomic_store_n(&logger.format, (int)format, __ATOMIC_RELAXED);
	if ((int)target == logger.wanted)
		return PA_OK;
	if (writer.running)
		return PA_ERROR; /* the target is fixed once the log thread runs */
	if (target == PA_LOG_TARGET_JOURNAL && access(JOURNAL_SOCKET, W_OK) == -1) {
		journal_errno = errno;
		actual = PA_LOG_TARGET_STDERR;
	}
	if (actual == PA_LOG_TARGET_SYSLOG && logger.target != PA_LOG_TARGET_SYSLOG)
		openlog(logger.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	else if (actual != PA_LOG_TARGET_SYSLOG && logger.target == PA_LOG_TARGET_SYSLOG)
		closelog();
	logger.target = actual;
	logger.wanted = (int)target;
	if (journal_errno != 0)
		pa_log_warning("log.target = journal, but no journal here (access(%s): %s): "
		               "logging to stderr",
		               JOURNAL_SOCKET, strerror(journal_errno));
	return PA_OK;
}

static bool
enabled(enum pa_log_level level)
{
	return (int)level <= __atomic_load_n(&logger.level, __ATOMIC_RELAXED);
}

/*
 * "ident[pid]: level: body\n" into line (LOG_LINE_MAX).  Control characters
 * from the network must not forge extra log lines: the body is masked.
 */
static size_t
compose(char *line, enum pa_log_level level, const char *body, size_t body_len)
{
	int head = snprintf(line, LOG_BODY_MAX, "%s[%d]: %s: ", logger.ident, (int)getpid(),
	                    level_names[level]);
	size_t len = (size_t)head;

	if (body_len > LOG_BODY_MAX - 2 - len)
		body_len = LOG_BODY_MAX - 2 - len; /* truncated: still one line */
	for (size_t i = 0; i < body_len; i++) {
		unsigned char c = (unsigned char)body[i];

		line[len++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	line[len++] = '\n';
	return len;
}

/* Copies at most max - 1 octets of s and a NUL to p; returns the end. */
static char *
put_field(char *p, const char *s, size_t max)
{
	size_t n = strnlen(s, max - 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p + n + 1;
}

static size_t
format_accepted(char *out, size_t size, const struct pa_log_accepted *a)
{
	int n = snprintf(out, size, "%s: accepted client=%s from=<%s> nrcpt=%llu size=%llu",
	                 a->queue_id, a->client, a->sender, (unsigned long long)a->nrcpt,
	                 (unsigned long long)a->size);

	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

/* A line to write, whichever way it came: from a slot, or from a thread writing at once. */
struct entry {
	enum pa_log_level level;
	uint64_t time_us;
	const char *text; /* the body of a text line */
	size_t len;
	const struct pa_log_accepted *acc; /* or the fields of an accepted line */
};

/* The body of an entry: its text, or the accepted line formatted into buf (LOG_BODY_MAX). */
static const char *
body_of(const struct entry *e, char *buf, size_t *len)
{
	if (e->acc == NULL) {
		*len = e->len;
		return e->text;
	}
	*len = format_accepted(buf, LOG_BODY_MAX, e->acc);
	return buf;
}

/* The named fields of an entry; nums holds the accepted line's numbers as text. */
static void
record_of(const struct entry *e, const char *body, size_t len, struct log_record *rec,
          char nums[2][24])
{
	if (e->acc == NULL) {
		log_record_parse(rec, body, len);
	} else {
		const struct pa_log_accepted *a = e->acc;

		rec->nfields = 0;
		rec->nnames = 0;
		snprintf(rec->event, sizeof(rec->event), "accepted");
		rec->queue_id = a->queue_id;
		rec->queue_id_len = strlen(a->queue_id);
		rec->msg = body;
		rec->msg_len = len;
		snprintf(nums[0], 24, "%llu", (unsigned long long)a->nrcpt);
		snprintf(nums[1], 24, "%llu", (unsigned long long)a->size);
		log_record_add(rec, "client", a->client, strlen(a->client), false);
		log_record_add(rec, "sender", a->sender, strlen(a->sender), false);
		log_record_add(rec, "rcpt_count", nums[0], strlen(nums[0]), true);
		log_record_add(rec, "size", nums[1], strlen(nums[1]), true);
	}
	rec->level = (int)e->level;
	rec->time_us = e->time_us;
	rec->ident = logger.ident;
	rec->pid = (int)getpid();
}

/* The entry as a line of log.format, newline included, into line (LOG_LINE_MAX). */
static size_t
render_line(const struct entry *e, char *line)
{
	char buf[LOG_BODY_MAX], nums[2][24];
	struct log_record rec;
	size_t len;
	const char *body = body_of(e, buf, &len);

	if (__atomic_load_n(&logger.format, __ATOMIC_RELAXED) == PA_LOG_FORMAT_TEXT)
		return compose(line, e->level, body, len);
	record_of(e, body, len, &rec, nums);
	return log_record_json(&rec, level_names[e->level], line, LOG_LINE_MAX);
}

/* The body with control characters masked (a line from the network forges no other). */
static size_t
mask(char *out, size_t size, const char *body, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)body[i];

		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = '\0';
	return n;
}

static void
send_syslog(const struct entry *e)
{
	char line[LOG_LINE_MAX], buf[LOG_BODY_MAX];
	size_t len;
	const char *body;

	if (__atomic_load_n(&logger.format, __ATOMIC_RELAXED) == PA_LOG_FORMAT_JSON) {
		len = render_line(e, line);
		if (len > 0 && line[len - 1] == '\n')
			len--;
	} else {
		body = body_of(e, buf, &len);
		len = mask(line, sizeof(line), body, len);
	}
	/* The facility in every call: EAL's rte_eal_init() calls openlog() again, with its own. */
	syslog(LOG_MAIL | level_priority[e->level], "%.*s", (int)len, line);
}

/* Appends "NAME=value" to the journal's iovecs, copied into the buffer at *p. */
static void
journal_field(struct iovec *iov, int *n, char **p, char *end, const char *name, const char *value,
              size_t len)
{
	size_t nlen = strlen(name);

	if ((size_t)(end - *p) < nlen + 1 + len)
		return; /* left out: the record's other fields still go */
	iov[*n] = (struct iovec){*p, nlen + 1 + len};
	memcpy(*p, name, nlen);
	(*p)[nlen] = '=';
	memcpy(*p + nlen + 1, value, len);
	*p += nlen + 1 + len;
	(*n)++;
}

/*
 * The journal's native fields (systemd.journal-fields(7)) and one
 * PIGEONAIR_NAME field for each field of the record.  <0 when the journal
 * did not take it.
 */
static int
send_journal(const struct entry *e)
{
	char buf[LOG_BODY_MAX], msg[LOG_BODY_MAX], nums[2][24], num[16];
	static __thread char space[2 * LOG_LINE_MAX];
	struct iovec iov[6 + LOG_RECORD_FIELDS_MAX];
	struct log_record rec;
	char *p = space, *end = space + sizeof(space);
	int n = 0;
	size_t len;
	const char *body = body_of(e, buf, &len);

	record_of(e, body, len, &rec, nums);
	len = mask(msg, sizeof(msg), body, len);
	journal_field(iov, &n, &p, end, "MESSAGE", msg, len);
	snprintf(num, sizeof(num), "%d", level_priority[e->level]);
	journal_field(iov, &n, &p, end, "PRIORITY", num, strlen(num));
	journal_field(iov, &n, &p, end, "SYSLOG_FACILITY", "2", 1); /* mail */
	journal_field(iov, &n, &p, end, "SYSLOG_IDENTIFIER", logger.ident, strlen(logger.ident));
	journal_field(iov, &n, &p, end, "PIGEONAIR_EVENT", rec.event, strlen(rec.event));
	if (rec.queue_id != NULL)
		journal_field(iov, &n, &p, end, "PIGEONAIR_QUEUE_ID", rec.queue_id,
		              rec.queue_id_len);
	for (size_t i = 0; i < rec.nfields; i++) {
		char name[48] = "PIGEONAIR_";
		size_t k = strlen(name);

		for (const char *c = rec.fields[i].name; *c != '\0' && k < sizeof(name) - 1; c++)
			name[k++] = *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
		name[k] = '\0';
		journal_field(iov, &n, &p, end, name, rec.fields[i].value, rec.fields[i].value_len);
	}
	return sd_journal_sendv(iov, n);
}

/* One entry to log.target, by the calling thread. */
static void
emit(const struct entry *e)
{
	char line[LOG_LINE_MAX];
	size_t len;

	switch (logger.target) {
	case PA_LOG_TARGET_SYSLOG:
		send_syslog(e);
		return;
	case PA_LOG_TARGET_JOURNAL:
		if (send_journal(e) >= 0)
			return;
		break; /* no journal (yet): the line goes to stderr rather than nowhere */
	default:
		break;
	}
	len = render_line(e, line);
	if (write(STDERR_FILENO, line, len) == -1)
		return; /* nowhere left to report it */
}

static void
write_now(enum pa_log_level level, const char *body, size_t body_len)
{
	emit(&(struct entry){level, pa_wall_clock_us(), body, body_len, NULL});
}

enum reserve {
	RESERVE_SLOT,   /* fill *slot, then ring_commit() */
	RESERVE_DIRECT, /* not attached, or no log thread: write the line now */
	RESERVE_FULL,   /* the ring is full: the line is dropped (and counted) */
};

static enum reserve
ring_reserve(struct log_slot **slot)
{
	struct log_ring *r = my_ring;
	uint64_t head;

	if (r == NULL || !__atomic_load_n(&writer.running, __ATOMIC_ACQUIRE))
		return RESERVE_DIRECT;
	head = r->head;
	if (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) == RING_SLOTS) {
		__atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
		return RESERVE_FULL;
	}
	*slot = &r->slots[head & (RING_SLOTS - 1)];
	return RESERVE_SLOT;
}

static void
ring_commit(void)
{
	__atomic_store_n(&my_ring->head, my_ring->head + 1, __ATOMIC_RELEASE);
}

void
pa_log(enum pa_log_level level, const char *fmt, ...)
{
	struct log_slot *slot = NULL;
	enum reserve how;
	char body[LOG_BODY_MAX];
	va_list ap;
	int n;

	if (!enabled(level))
		return;
	how = ring_reserve(&slot);
	if (how == RESERVE_FULL)
		return;
	va_start(ap, fmt);
	if (how == RESERVE_SLOT)
		n = vsnprintf(slot->text, sizeof(slot->text), fmt, ap);
	else
		n = vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (how == RESERVE_SLOT && (size_t)n >= sizeof(slot->text)) {
		/*
		 * Too long for a slot (a worker's counters at exit, say): written
		 * whole, by this thread, rather than cut.  Never a per-message line:
		 * the accepted line is a record and refusals fit a slot.
		 */
		va_start(ap, fmt);
		n = vsnprintf(body, sizeof(body), fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		how = RESERVE_DIRECT;
	}
	if (how == RESERVE_DIRECT) {
		write_now(level, body, (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1);
		return;
	}
	slot->kind = SLOT_TEXT;
	slot->level = (uint16_t)level;
	slot->time_us = pa_wall_clock_us();
	slot->len = (size_t)n < sizeof(slot->text) ? (uint32_t)n : sizeof(slot->text) - 1;
	ring_commit();
}

void
pa_log_accepted(const struct pa_log_accepted *a)
{
	struct log_slot *slot = NULL;
	enum reserve how;
	char *p;

	if (!enabled(PA_LOG_INFO))
		return;
	how = ring_reserve(&slot);
	if (how == RESERVE_FULL)
		return;
	if (how == RESERVE_DIRECT) {
		emit(&(struct entry){PA_LOG_INFO, pa_wall_clock_us(), NULL, 0, a});
		return;
	}
	/*
	 * Each field cut to a bound; together they fit the slot's text: a queue
	 * id, an address literal, and a path of up to 256 octets (RFC 5321
	 * 4.5.3.1.3) with room for the engine's own limit.
	 */
	_Static_assert(64 + 96 + 320 <= sizeof(slot->text), "the accepted fields fit a slot");
	p = put_field(slot->text, a->queue_id, 64);
	p = put_field(p, a->client, 96);
	put_field(p, a->sender, 320);
	slot->kind = SLOT_ACCEPTED;
	slot->level = PA_LOG_INFO;
	slot->time_us = pa_wall_clock_us();
	slot->nrcpt = a->nrcpt;
	slot->size = a->size;
	ring_commit();
}

/* The entry of one slot; acc holds an accepted line's fields, pointing into the slot. */
static void
entry_of(const struct log_slot *slot, struct entry *e, struct pa_log_accepted *acc)
{
	*e = (struct entry){(enum pa_log_level)slot->level, slot->time_us, slot->text, slot->len,
	                    NULL};
	if (slot->kind != SLOT_ACCEPTED)
		return;
	acc->queue_id = slot->text;
	acc->client = acc->queue_id + strlen(acc->queue_id) + 1;
	acc->sender = acc->client + strlen(acc->client) + 1;
	acc->nrcpt = slot->nrcpt;
	acc->size = slot->size;
	e->acc = acc;
}

/*
 * Writes what every ring holds; returns the number of lines.  To stderr in
 * batches of whole lines, one writev(2) each; to syslog or the journal one
 * line at a time.
 */
static size_t
drain(void)
{
	static char lines[WRITE_BATCH][LOG_LINE_MAX];
	struct iovec iov[WRITE_BATCH];
	size_t total = 0;

	for (unsigned i = 0; i < PA_LOG_MAX_THREADS; i++) {
		struct log_ring *r = &rings[i];
		struct log_slot *slots = __atomic_load_n(&r->slots, __ATOMIC_ACQUIRE);
		uint64_t tail, head;

		if (slots == NULL)
			continue;
		tail = r->tail;
		head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		while (tail != head) {
			int n = 0;

			while (tail != head && n < WRITE_BATCH) {
				struct pa_log_accepted acc;
				struct entry e;

				entry_of(&slots[tail & (RING_SLOTS - 1)], &e, &acc);
				if (logger.target == PA_LOG_TARGET_STDERR) {
					iov[n].iov_base = lines[n];
					iov[n].iov_len = render_line(&e, lines[n]);
				} else {
					emit(&e);
				}
				n++;
				tail++;
			}
			/* Each line is whole in its iovec: writev keeps them whole on a pipe too.
			 */
			if (logger.target == PA_LOG_TARGET_STDERR &&
			    writev(STDERR_FILENO, iov, n) == -1)
				(void)0; /* nowhere left to report it; the lines are gone either way
				          */
			__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
			total += (size_t)n;
		}
	}
	return total;
}

static void *
writer_main(void *arg)
{
	const struct timespec idle = {0, IDLE_SLEEP_NS};

	(void)arg;
	while (!__atomic_load_n(&writer.stop, __ATOMIC_ACQUIRE))
		if (drain() == 0)
			nanosleep(&idle, NULL);
	drain();
	return NULL;
}

int
pa_log_start(void)
{
	int rc;

	if (writer.running)
		return PA_OK;
	writer.stop = 0;
	rc = pthread_create(&writer.thread, NULL, writer_main, NULL);
	if (rc != 0) {
		pa_log_err("pthread_create(log): %s", strerror(rc));
		return PA_ERROR;
	}
	pthread_setname_np(writer.thread, "log");
	__atomic_store_n(&writer.running, 1, __ATOMIC_RELEASE);
	return PA_OK;
}

/*
 * Called after the attached threads have stopped (main: after the worker
 * lcores returned), so no line is being queued while the last drain runs.
 */
void
pa_log_stop(void)
{
	if (!writer.running)
		return;
	/* Lines logged from now on are written by their threads themselves. */
	__atomic_store_n(&writer.running, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&writer.stop, 1, __ATOMIC_RELEASE);
	pthread_join(writer.thread, NULL);
}

int
pa_log_attach_thread(void)
{
	if (my_ring != NULL)
		return PA_OK;
	for (unsigned i = 0; i < PA_LOG_MAX_THREADS; i++) {
		struct log_ring *r = &rings[i];
		int free_ring = 0;

		if (!__atomic_compare_exchange_n(&r->in_use, &free_ring, 1, false, __ATOMIC_ACQ_REL,
		                                 __ATOMIC_RELAXED))
			continue;
		if (r->slots == NULL) {
			struct log_slot *slots = calloc(RING_SLOTS, sizeof(*slots));

			if (slots == NULL) {
				__atomic_store_n(&r->in_use, 0, __ATOMIC_RELEASE);
				return PA_ERROR;
			}
			/* Published after its slots exist; the log thread reads slots only below
			 * head. */
			__atomic_store_n(&r->slots, slots, __ATOMIC_RELEASE);
		}
		my_ring = r;
		return PA_OK;
	}
	return PA_ERROR;
}

void
pa_log_detach_thread(void)
{
	struct log_ring *r = my_ring;
	const struct timespec step = {0, IDLE_SLEEP_NS};

	if (r == NULL)
		return;
	/* Bounded: a log thread that stopped leaves nothing to wait for. */
	for (int i = 0; i < DETACH_WAIT_MS && __atomic_load_n(&writer.running, __ATOMIC_ACQUIRE) &&
	                __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) != r->head;
	     i++)
		nanosleep(&step, NULL);
	my_ring = NULL;
	__atomic_store_n(&r->in_use, 0, __ATOMIC_RELEASE);
}

uint64_t
pa_log_dropped(void)
{
	return __atomic_load_n(&dropped, __ATOMIC_RELAXED);
}
