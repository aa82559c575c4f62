/*
 * lg_source.h: where pigeon-loadgen's messages come from.
 *
 * struct lg_gen is built once before the load threads start and is
 * immutable afterwards, so every thread reads it without a lock: one message
 * template as long as the largest size (a header, then 76-column text lines,
 * a few of them starting with '.' so the server's dot-unstuffing is
 * exercised), a message of N bytes being the template's first N bytes; and a
 * pool of recipient addresses spread over --domains, a message's recipients
 * being a window of consecutive pool entries.  So a message costs no copy
 * and no allocation, and its pointers stay valid for the whole run, as
 * struct lg_message asks.
 *
 * struct lg_source is one thread's cursor: its random state (sizes from
 * --size-dist, recipient windows), its share of an open-loop rate, and the
 * shared message budget.  lg_source_next() is the lg_source_fn the sessions
 * call.
 */
#ifndef LG_SOURCE_H
#define LG_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loadgen/lg_options.h"
#include "loadgen/lg_session.h"

/* The shared object every load thread and the monitor use. */
struct lg_shared {
	uint64_t budget;       /* --messages; 0: unlimited (then --duration bounds the run) */
	uint64_t started;      /* messages handed out so far (atomic) */
	int stop;              /* LG_RUN, LG_DRAIN or LG_ABORT (atomic) */
	unsigned threads_done; /* load threads that returned (atomic) */
	uint64_t end_us;       /* when the last load thread returned (atomic max) */
};

enum {
	LG_RUN = 0,   /* keep going */
	LG_DRAIN = 1, /* no new message or connection; finish the ones in flight, QUIT */
	LG_ABORT = 2, /* hard timeout or a signal: close everything now */
};

struct lg_gen {
	uint8_t *text; /* the template, max_size bytes */
	size_t max_size;
	size_t min_size; /* the header: no message is shorter */
	struct lg_size_class sizes[LG_MAX_SIZE_CLASSES];
	double cumulative[LG_MAX_SIZE_CLASSES]; /* running sum of weights, for picking */
	unsigned nsizes;
	char **rcpt_pool; /* 2 * npool entries: the pool twice, so any window is contiguous */
	unsigned npool;
	unsigned rcpts; /* per message */
	const char *mail_from;
};

/* Builds the generator from the options; -1 (and a message on stderr) on failure. */
int lg_gen_init(struct lg_gen *g, const struct lg_options *o);
void lg_gen_free(struct lg_gen *g);

struct lg_source {
	const struct lg_gen *gen;
	struct lg_shared *shared;
	uint64_t rng;       /* xorshift64* state, seeded per thread */
	double interval_us; /* open loop: µs between this thread's messages; 0: closed loop */
	double next_due_us; /* open loop: when the next message is due */
	uint64_t *late; /* open loop: counts messages started over 1 ms after due; may be NULL */
};

/* A thread's source: rate is this thread's share (msgs/s), 0 for closed loop. */
void lg_source_init(struct lg_source *src, const struct lg_gen *gen, struct lg_shared *shared,
                    unsigned thread, double rate);

/* The lg_source_fn: arg is a struct lg_source. */
enum lg_next lg_source_next(void *arg, struct lg_message *msg, uint64_t now_us);

/* False once the budget is spent or the run stops: open no more connections. */
bool lg_source_more(const struct lg_source *src);

/* Open loop: when the next message is due (µs, same clock as now_us); 0 in closed loop. */
uint64_t lg_source_due_us(const struct lg_source *src);

/* A uniform pseudo-random number from the thread's state (for --tls-share). */
uint64_t lg_source_random(struct lg_source *src);

#endif
