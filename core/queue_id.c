/*
 * queue_id.c: see queue_id.h for the format and what it promises.
 */
#include <stdio.h>
#include <string.h>

#include "core/queue_id.h"

void
queue_id_gen_init(struct queue_id_gen *gen, unsigned node, unsigned worker)
{
	gen->last_us = 0;
	gen->seq = 0;
	gen->node = (uint16_t)(node & QUEUE_ID_NODE_MAX);
	gen->worker = (uint8_t)(worker & QUEUE_ID_WORKER_MAX);
}

void
queue_id_next(struct queue_id_gen *gen, uint64_t now_us, char *out)
{
	char id[32];

	/*
	 * A wall clock stepped back must not reissue a (time, seq) pair already
	 * used: time never goes below the last one issued, and a sequence wrap
	 * moves it on by one microsecond.
	 */
	if (now_us > gen->last_us)
		gen->last_us = now_us;
	gen->seq = (gen->seq + 1) & 0xffffff;
	if (gen->seq == 0)
		gen->last_us++;
	snprintf(id, sizeof(id), "%011llX%03X%02X%06X",
	         (unsigned long long)(gen->last_us & 0xfffffffffffULL), gen->node & 0xfffu,
	         (unsigned)gen->worker, (unsigned)gen->seq);
	memcpy(out, id, QUEUE_ID_LEN + 1);
}
