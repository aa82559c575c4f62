/*
 * queue_id.h: queue ids unique across restarts and across nodes.
 *
 * A queue id is 26 characters: the letter 'P', then 25 upper-case hex
 * digits: 14 of the arrival time in microseconds since the epoch (56 bits,
 * enough until the year 4253), 3 of the node id (config node_id, 0-4095), 2
 * of the worker, 6 of a per-worker sequence number.  What it promises: ids
 * sort bytewise by arrival time, two workers or two nodes never produce the
 * same id, and a restart cannot repeat an id unless the clock goes back by
 * more than the restart took.
 *
 * Ids of the first layout (22 hex digits, only 44 bits of microseconds,
 * so the time wrapped every 203.6 days) are still valid queue ids
 * everywhere (docs/spool-format.md, "Queue ids"); every one of
 * them begins with a hex digit, so it sorts before every id of this layout,
 * as it arrived before it.
 */
#ifndef PA_QUEUE_ID_H
#define PA_QUEUE_ID_H

#include <stdint.h>

#define QUEUE_ID_LEN 26
#define QUEUE_ID_PREFIX 'P' /* above 'F': after every id of the 22-digit layout */
#define QUEUE_ID_NODE_MAX 4095
#define QUEUE_ID_WORKER_MAX 255
#define QUEUE_ID_TIME_MAX 0xffffffffffffffULL /* 14 hex digits of microseconds */

struct queue_id_gen {
	uint64_t last_us; /* never issue an id older than the last one: guards a clock step back */
	uint32_t seq;
	uint16_t node;
	uint8_t worker;
};

void queue_id_gen_init(struct queue_id_gen *gen, unsigned node, unsigned worker);
/* out must hold QUEUE_ID_LEN + 1 bytes. now_us is the wall clock in microseconds. */
void queue_id_next(struct queue_id_gen *gen, uint64_t now_us, char *out);

#endif
