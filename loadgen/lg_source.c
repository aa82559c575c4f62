/*
 * lg_source.c: pigeon-loadgen's message generator and per-thread message
 * sources (lg_source.h).
 */
#include "loadgen/lg_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_LINE 74 /* text per line, without CRLF: a typical mailer's width */

/*
 * The template: a short header, then numbered text lines.  Every 16th line
 * starts with '.', every 64th is a lone '.', so every message exercises the
 * server's dot-unstuffing (and a client that forgot to stuff would end the
 * message early and be caught by the next reply).
 */
static void
fill_body(uint8_t *p, size_t len, size_t *line_no)
{
	size_t off = 0;

	while (off < len) {
		char line[BODY_LINE + 3];
		size_t n;
		int w;

		if (*line_no % 64 == 63)
			w = snprintf(line, sizeof(line), ".\r\n");
		else
			w = snprintf(line, sizeof(line), "%s%06zu %-*.*s\r\n",
			             *line_no % 16 == 15 ? "." : "", *line_no, BODY_LINE - 8,
			             BODY_LINE - 8,
			             "the quick brown fox jumps over the lazy dog, "
			             "pigeon-loadgen filler text");
		n = (size_t)w;
		if (n > len - off)
			n = len - off;
		memcpy(p + off, line, n);
		off += n;
		(*line_no)++;
	}
}

int
lg_gen_init(struct lg_gen *g, const struct lg_options *o)
{
	char header[512];
	int hlen;
	size_t line_no = 0;
	double sum = 0;

	memset(g, 0, sizeof(*g));
	g->mail_from = o->mail_from;
	g->rcpts = o->rcpts;
	hlen = snprintf(header, sizeof(header),
	                "From: <%s>\r\nSubject: pigeon-loadgen\r\nMIME-Version: 1.0\r\n\r\n",
	                o->mail_from);
	if (hlen < 0 || (size_t)hlen >= sizeof(header)) {
		fputs("pigeon-loadgen: --from too long\n", stderr);
		return -1;
	}
	g->min_size = (size_t)hlen;
	g->nsizes = o->nsizes;
	g->max_size = g->min_size;
	for (unsigned i = 0; i < o->nsizes; i++) {
		g->sizes[i] = o->sizes[i];
		/* Shorter than the header would cut it: such messages are the header alone. */
		if (g->sizes[i].size < g->min_size)
			g->sizes[i].size = g->min_size;
		if (g->sizes[i].size > g->max_size)
			g->max_size = g->sizes[i].size;
		sum += g->sizes[i].weight;
		g->cumulative[i] = sum;
	}
	g->text = malloc(g->max_size);
	if (g->text == NULL) {
		fputs("pigeon-loadgen: out of memory for the message template\n", stderr);
		return -1;
	}
	memcpy(g->text, header, g->min_size);
	fill_body(g->text + g->min_size, g->max_size - g->min_size, &line_no);

	/* Enough distinct addresses that windows of --rcpts differ and cover every domain. */
	g->npool = o->rcpts * 4 > 256 ? o->rcpts * 4 : 256;
	g->npool += o->ndomains - g->npool % o->ndomains;
	g->rcpt_pool = calloc(2 * (size_t)g->npool, sizeof(char *));
	if (g->rcpt_pool == NULL)
		goto oom;
	for (unsigned i = 0; i < g->npool; i++) {
		char addr[300];

		snprintf(addr, sizeof(addr), "user%u@%s", i / o->ndomains,
		         o->domains[i % o->ndomains]);
		g->rcpt_pool[i] = strdup(addr);
		if (g->rcpt_pool[i] == NULL)
			goto oom;
		g->rcpt_pool[g->npool + i] = g->rcpt_pool[i];
	}
	return 0;
oom:
	fputs("pigeon-loadgen: out of memory for the recipient pool\n", stderr);
	lg_gen_free(g);
	return -1;
}

void
lg_gen_free(struct lg_gen *g)
{
	if (g->rcpt_pool != NULL)
		for (unsigned i = 0; i < g->npool; i++)
			free(g->rcpt_pool[i]);
	free(g->rcpt_pool);
	free(g->text);
	memset(g, 0, sizeof(*g));
}

/* xorshift64*: fast, good enough to spread sizes and recipients. */
uint64_t
lg_source_random(struct lg_source *src)
{
	uint64_t x = src->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	src->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void
lg_source_init(struct lg_source *src, const struct lg_gen *gen, struct lg_shared *shared,
               unsigned thread, double rate)
{
	memset(src, 0, sizeof(*src));
	src->gen = gen;
	src->shared = shared;
	/* Fixed seeds: two runs with the same options send the same messages. */
	src->rng = 0x9E3779B97F4A7C15ULL * (thread + 1);
	src->interval_us = rate > 0 ? 1e6 / rate : 0;
}

static size_t
pick_size(struct lg_source *src)
{
	const struct lg_gen *g = src->gen;
	double u;

	if (g->nsizes == 1)
		return g->sizes[0].size;
	u = (double)(lg_source_random(src) >> 11) / 9007199254740992.0 *
	    g->cumulative[g->nsizes - 1];
	for (unsigned i = 0; i < g->nsizes; i++)
		if (u < g->cumulative[i])
			return g->sizes[i].size;
	return g->sizes[g->nsizes - 1].size;
}

enum lg_next
lg_source_next(void *arg, struct lg_message *msg, uint64_t now_us)
{
	struct lg_source *src = arg;
	const struct lg_gen *g = src->gen;

	if (__atomic_load_n(&src->shared->stop, __ATOMIC_RELAXED) != LG_RUN)
		return LG_NEXT_DONE;
	if (src->interval_us > 0) {
		if (src->next_due_us == 0)
			src->next_due_us = (double)now_us;
		if ((double)now_us < src->next_due_us)
			return LG_NEXT_WAIT;
	}
	if (src->shared->budget > 0 &&
	    __atomic_fetch_add(&src->shared->started, 1, __ATOMIC_RELAXED) >= src->shared->budget)
		return LG_NEXT_DONE;
	if (src->interval_us > 0) {
		/* Open loop: the schedule does not slip when the server is slow. */
		if ((double)now_us - src->next_due_us > 1000 && src->late != NULL)
			(*src->late)++;
		src->next_due_us += src->interval_us;
	}
	msg->mail_from = g->mail_from;
	msg->rcpts = (const char *const *)&g->rcpt_pool[lg_source_random(src) % g->npool];
	msg->nrcpt = g->rcpts;
	msg->data = g->text;
	msg->size = pick_size(src);
	return LG_NEXT_MSG;
}

bool
lg_source_more(const struct lg_source *src)
{
	if (__atomic_load_n(&src->shared->stop, __ATOMIC_RELAXED) != LG_RUN)
		return false;
	return src->shared->budget == 0 ||
	       __atomic_load_n(&src->shared->started, __ATOMIC_RELAXED) < src->shared->budget;
}

uint64_t
lg_source_due_us(const struct lg_source *src)
{
	return src->interval_us > 0 ? (uint64_t)src->next_due_us : 0;
}
