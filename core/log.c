/*
 * log.c: formats lines and writes each with one write(2); poll-mode threads
 * hand theirs to the log thread through single-producer rings.
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
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

#define LOG_LINE_MAX 2048
/*
 * 8,192 slots of 512 octets (4 MiB a thread): at 100,000 messages a second a
 * worker's ring holds 80 ms of lines while the log thread waits for the CPU.
 * A queued line holds at most 487 octets; a longer one (rare: never a
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

/* Process-wide logger settings: written at start-up and on reload only. */
static struct {
	char ident[32];
	int level;
} logger = {"pigeond", PA_LOG_INFO};

enum slot_kind { SLOT_TEXT, SLOT_ACCEPTED };

/* One queued line: TEXT holds the formatted body, ACCEPTED three NUL-ended fields. */
struct log_slot {
	uint16_t kind;
	uint16_t level;
	uint32_t len;
	uint64_t nrcpt;
	uint64_t size;
	char text[SLOT_SIZE - 24];
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
	int head = snprintf(line, LOG_LINE_MAX, "%s[%d]: %s: ", logger.ident, (int)getpid(),
	                    level_names[level]);
	size_t len = (size_t)head;

	if (body_len > LOG_LINE_MAX - 2 - len)
		body_len = LOG_LINE_MAX - 2 - len; /* truncated: still one line */
	for (size_t i = 0; i < body_len; i++) {
		unsigned char c = (unsigned char)body[i];

		line[len++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	line[len++] = '\n';
	return len;
}

static void
write_now(enum pa_log_level level, const char *body, size_t body_len)
{
	char line[LOG_LINE_MAX];
	size_t len = compose(line, level, body, body_len);

	if (write(STDERR_FILENO, line, len) == -1)
		return; /* nowhere left to report it */
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
	char body[LOG_LINE_MAX];
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
	slot->len = (size_t)n < sizeof(slot->text) ? (uint32_t)n : sizeof(slot->text) - 1;
	ring_commit();
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
format_accepted(char *out, size_t size, const char *qid, const char *client, const char *sender,
                uint64_t nrcpt, uint64_t msg_size)
{
	int n = snprintf(out, size, "%s: accepted client=%s from=<%s> nrcpt=%llu size=%llu", qid,
	                 client, sender, (unsigned long long)nrcpt, (unsigned long long)msg_size);

	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
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
		char body[LOG_LINE_MAX];

		write_now(PA_LOG_INFO, body,
		          format_accepted(body, sizeof(body), a->queue_id, a->client, a->sender,
		                          a->nrcpt, a->size));
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
	slot->nrcpt = a->nrcpt;
	slot->size = a->size;
	ring_commit();
}

/* The line of one slot into line; returns its length. */
static size_t
render(const struct log_slot *slot, char *line)
{
	char body[LOG_LINE_MAX];
	size_t len;

	if (slot->kind == SLOT_TEXT)
		return compose(line, slot->level, slot->text, slot->len);
	const char *qid = slot->text;
	const char *client = qid + strlen(qid) + 1;
	const char *sender = client + strlen(client) + 1;

	len = format_accepted(body, sizeof(body), qid, client, sender, slot->nrcpt, slot->size);
	return compose(line, slot->level, body, len);
}

/* Writes what every ring holds, in batches; returns the number of lines. */
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
				iov[n].iov_base = lines[n];
				iov[n].iov_len = render(&slots[tail & (RING_SLOTS - 1)], lines[n]);
				n++;
				tail++;
			}
			/* Each line is whole in its iovec: writev keeps them whole on a pipe too.
			 */
			if (writev(STDERR_FILENO, iov, n) == -1)
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
