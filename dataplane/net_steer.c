/*
 * net_steer.c: software RSS, the owner of a TCP flow among the workers.
 *
 * The hash is symmetric in the two ends (addresses and ports are XORed
 * before hashing), so a segment and its answer have the same owner, and an
 * active open can pick a source port whose flow lands on the opening worker
 * (net_pick_local_port), which the load generator and a relay on this stack
 * need.  Pure functions of their arguments.
 */
#include <rte_byteorder.h>
#include <rte_hash_crc.h>

#include "dataplane/dp.h"

unsigned
net_flow_owner(const struct dp_shared *sh, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp)
{
	uint32_t h;

	if (sh->nworkers <= 1)
		return 0;
	h = rte_hash_crc_4byte(a ^ b, (uint32_t)(ap ^ bp) * 0x9e3779b1u);
	return h % sh->nworkers;
}

int
net_pick_local_port(const struct dp_shared *sh, unsigned worker, uint32_t laddr, uint32_t raddr,
                    uint16_t rport, uint16_t lo, uint16_t hi, uint16_t start)
{
	uint32_t span = (uint32_t)hi - lo + 1;

	for (uint32_t i = 0; i < span; i++) {
		uint16_t p = (uint16_t)(lo + (start - lo + i) % span);

		if (net_flow_owner(sh, laddr, rte_cpu_to_be_16(p), raddr, rport) == worker)
			return p;
	}
	return -1;
}
