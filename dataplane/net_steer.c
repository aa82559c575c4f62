/*
 * net_steer.c: the owner of a TCP flow among the workers, and a local port
 * for an active open whose flow the opening worker owns.
 *
 * Hardware RSS (sh->rss, set up by dpdk_port.c): the port computes the
 * Toeplitz hash of a received segment's 4-tuple (Microsoft's RSS
 * specification, "RSS Hashing Functions": source address, destination
 * address, source port, destination port, in network order) under the key
 * it was given, and queues the segment on reta[hash % reta_size]; queue i
 * is worker i.  The same computation here (DPDK's rte_softrss_be() over the
 * rte_convert_rss_key()ed key read back from the port) tells a worker
 * whether a segment is its own, and an active open which local ports land
 * on its queue.  The owner is always computed from the received direction,
 * so it matches the port whatever the key; with the symmetric key
 * (net_rss_symmetric_key) both directions hash alike besides.
 *
 * IPv6 flows likewise, over the 36-octet IPv6 tuple (the specification's
 * "IPv6 with TCP" input), when the port hashes IPv6 TCP (sh->rss6); when it
 * does not, IPv6 flows are owned by the software hash below even with
 * hardware RSS on, and reach their owner over the ring (not a misqueue).
 *
 * Software RSS where the port has none (tap, memif, af_packet put a flow on
 * any queue): a hash symmetric in the two ends (addresses and ports are
 * XORed before hashing), so a segment and its answer have the same owner.
 *
 * Pure functions of their arguments.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_thash.h>

#include "core/pa.h"
#include "dataplane/dp.h"

uint32_t
net_rss_hash(const struct dp_shared *sh, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport)
{
	union rte_thash_tuple t;

	/* rte_thash.h: the tuple in CPU order, the ports packed as one word (sport, dport). */
	t.v4.src_addr = rte_be_to_cpu_32(src);
	t.v4.dst_addr = rte_be_to_cpu_32(dst);
	t.v4.sport = rte_be_to_cpu_16(sport);
	t.v4.dport = rte_be_to_cpu_16(dport);
	return rte_softrss_be((uint32_t *)&t, RTE_THASH_V4_L4_LEN,
	                      (const uint8_t *)sh->rss_key_cpu);
}

uint32_t
net_rss_hash6(const struct dp_shared *sh, const uint8_t *src, uint16_t sport, const uint8_t *dst,
              uint16_t dport)
{
	union rte_thash_tuple t;

	/* The specification's IPv6 TCP input: source, destination, ports; words in CPU order. */
	for (unsigned i = 0; i < 4; i++) {
		uint32_t a, b;

		memcpy(&a, src + 4 * i, 4);
		memcpy(&b, dst + 4 * i, 4);
		a = rte_be_to_cpu_32(a);
		b = rte_be_to_cpu_32(b);
		memcpy(t.v6.src_addr + 4 * i, &a, 4);
		memcpy(t.v6.dst_addr + 4 * i, &b, 4);
	}
	t.v6.sport = rte_be_to_cpu_16(sport);
	t.v6.dport = rte_be_to_cpu_16(dport);
	return rte_softrss_be((uint32_t *)&t, RTE_THASH_V6_L4_LEN,
	                      (const uint8_t *)sh->rss_key_cpu);
}

unsigned
net_flow_owner6(const struct dp_shared *sh, const uint8_t *src, uint16_t sport, const uint8_t *dst,
                uint16_t dport)
{
	uint32_t x[4], a, b;

	if (sh->nworkers <= 1)
		return 0;
	if (sh->rss && sh->rss6)
		return sh->reta[net_rss_hash6(sh, src, sport, dst, dport) % sh->reta_size];
	/* Symmetric, as the IPv4 one: the two addresses XORed, then the ports. */
	for (unsigned i = 0; i < 4; i++) {
		memcpy(&a, src + 4 * i, 4);
		memcpy(&b, dst + 4 * i, 4);
		x[i] = a ^ b;
	}
	/*
	 * dp_hash_words(), not rte_hash_crc(): that one reads x through a
	 * uint64_t pointer, which the compiler may order before the uint32_t
	 * stores above (strict aliasing): a flow's owner then varied call to call.
	 */
	return dp_hash_words(x, sizeof(x), (uint32_t)(sport ^ dport) * 0x9e3779b1u) % sh->nworkers;
}

unsigned
net_flow_owner(const struct dp_shared *sh, uint32_t src, uint16_t sport, uint32_t dst,
               uint16_t dport)
{
	uint32_t h;

	if (sh->nworkers <= 1)
		return 0;
	if (sh->rss)
		return sh->reta[net_rss_hash(sh, src, sport, dst, dport) % sh->reta_size];
	h = rte_hash_crc_4byte(src ^ dst, (uint32_t)(sport ^ dport) * 0x9e3779b1u);
	return h % sh->nworkers;
}

int
net_rss_install(struct dp_shared *sh, const uint8_t *key, unsigned len, const uint8_t *reta,
                unsigned reta_size)
{
	/*
	 * rte_softrss_be() reads the key one word past the tuple's: 12 octets
	 * of IPv4 TCP tuple need 16 of key (the specification's key is 40).
	 */
	if (len < 16 || len > DP_RSS_KEY_MAX || len % 4 != 0 || reta_size == 0 ||
	    reta_size > DP_RETA_MAX)
		return PA_ERROR;
	for (unsigned i = 0; i < reta_size; i++)
		if (reta[i] >= sh->nworkers)
			return PA_ERROR;
	memcpy(sh->rss_key, key, len);
	sh->rss_key_len = (uint8_t)len;
	rte_convert_rss_key((const uint32_t *)sh->rss_key, sh->rss_key_cpu, (int)len);
	memcpy(sh->reta, reta, reta_size);
	sh->reta_size = (uint16_t)reta_size;
	sh->rss = true;
	/* IPv6 TCP's 36 octets of tuple need 40 of key; the caller says whether the port hashes it.
	 */
	if (len < 40)
		sh->rss6 = false;
	return PA_OK;
}

void
net_rss_symmetric_key(uint8_t *key, unsigned len)
{
	/*
	 * Woo and Park, "Scalable TCP Session Monitoring with Symmetric
	 * Receive-side Scaling" (2012): a key repeating with a 16-bit period
	 * gives the same hash when the addresses (32-bit fields) and the ports
	 * (16-bit fields) of the tuple are swapped, and still spreads flows.
	 */
	for (unsigned i = 0; i < len; i++)
		key[i] = i % 2 == 0 ? 0x6d : 0x5a;
}

/* The owner of a flow an active open would make: IPv6 addresses (16 octets) or IPv4 ones. */
static unsigned
open_owner(const struct dp_shared *sh, const void *laddr, const void *raddr, bool v6,
           uint16_t rport, uint16_t lport)
{
	uint32_t l, r;

	/* As the SYN-ACK will arrive: from the peer, to us. */
	if (v6)
		return net_flow_owner6(sh, raddr, rport, laddr, lport);
	memcpy(&l, laddr, 4);
	memcpy(&r, raddr, 4);
	return net_flow_owner(sh, r, rport, l, lport);
}

static int
pick_port(const struct dp_shared *sh, unsigned worker, const void *laddr, const void *raddr,
          bool v6, uint16_t rport, uint16_t lo, uint16_t hi, uint16_t start)
{
	uint32_t span = (uint32_t)hi - lo + 1;

	for (uint32_t i = 0; i < span; i++) {
		uint16_t p = (uint16_t)(lo + (start - lo + i) % span);

		if (open_owner(sh, laddr, raddr, v6, rport, rte_cpu_to_be_16(p)) == worker)
			return p;
	}
	return -1;
}

int
net_pick_local_port(const struct dp_shared *sh, unsigned worker, uint32_t laddr, uint32_t raddr,
                    uint16_t rport, uint16_t lo, uint16_t hi, uint16_t start)
{
	return pick_port(sh, worker, &laddr, &raddr, false, rport, lo, hi, start);
}

int
net_pick_local_port6(const struct dp_shared *sh, unsigned worker, const uint8_t *laddr,
                     const uint8_t *raddr, uint16_t rport, uint16_t lo, uint16_t hi, uint16_t start)
{
	return pick_port(sh, worker, laddr, raddr, true, rport, lo, hi, start);
}
