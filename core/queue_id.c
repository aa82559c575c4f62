/*
 * queue_id.c: see queue_id.h for the format and what it promises.
 *
 * Called once per message on a worker: no allocation, no syscall, no stdio;
 * the digits are written by hand.
 */
#include "core/queue_id.h"

static const char hex_digits[16] = "0123456789ABCDEF";

void
queue_id_gen_init(struct queue_id_gen *gen, unsigned node, unsigned worker)
{
	gen->last_us = 0;
	gen->seq = 0;
	gen->node = (uint16_t)(node & QUEUE_ID_NODE_MAX);
	gen->worker = (uint8_t)(worker & QUEUE_ID_WORKER_MAX);
}

/* n upper-case hex digits of v, most significant first (fixed width: sorts as numbers). */
static char *
put_hex(char *p, uint64_t v, unsigned n)
{
	for (unsigned i = n; i > 0; i--) {
		p[i - 1] = hex_digits[v & 0xf];
		v >>= 4;
	}
	return p + n;
}

void
queue_id_next(struct queue_id_gen *gen, uint64_t now_us, char *out)
{
	char *p = out;

	/*
	 * A wall clock stepped back must not reissue a (time, seq) pair already
	 * used: time never goes below the last one issued, and a sequence wrap
	 * moves it on by one microsecond.  The time is never truncated (the
	 * first layout kept 44 bits and wrapped every 203.6 days); a clock past
	 * the year 4253 is held at the last representable microsecond, where the
	 * sequence alone keeps ids unique until it wraps.
	 */
	if (now_us > QUEUE_ID_TIME_MAX)
		now_us = QUEUE_ID_TIME_MAX;
	if (now_us > gen->last_us)
		gen->last_us = now_us;
	gen->seq = (gen->seq + 1) & 0xffffff;
	if (gen->seq == 0 && gen->last_us < QUEUE_ID_TIME_MAX)
		gen->last_us++;
	*p++ = QUEUE_ID_PREFIX;
	p = put_hex(p, gen->last_us, 14);
	p = put_hex(p, gen->node, 3);
	p = put_hex(p, gen->worker, 2);
	p = put_hex(p, gen->seq, 6);
	*p = '\0';
}
