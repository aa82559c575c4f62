/*
 * spool_shard.c: which shard a recipient belongs to.
 *
 * What it promises: the mapping is the standard CRC-32C (Castagnoli,
 * reflected, init 0xFFFFFFFF, final xor 0xFFFFFFFF; check value 0xE3069283
 * for "123456789") of the ASCII-lower-cased address, modulo the shard count.
 * It must never change for a given shard count: stored messages are found by
 * it (docs/spool-format.md).
 */
#include "spool/spool.h"

#include <rte_hash_crc.h>

#define CRC_CHUNK 64

/*
 * rte_hash_crc() reads its input in 8-byte words through a uint64_t pointer,
 * so the bytes go through an aligned stack buffer first; the same copy does
 * the lower-casing.
 */
static uint32_t
crc32c_chunks(const void *data, size_t len, bool lower)
{
	_Alignas(8) uint8_t buf[CRC_CHUNK];
	const uint8_t *p = data;
	uint32_t crc = 0xFFFFFFFFu;

	while (len > 0) {
		size_t n = len < CRC_CHUNK ? len : CRC_CHUNK;

		for (size_t i = 0; i < n; i++)
			buf[i] = lower && p[i] >= 'A' && p[i] <= 'Z' ? p[i] + ('a' - 'A') : p[i];
		crc = rte_hash_crc(buf, (uint32_t)n, crc);
		p += n;
		len -= n;
	}
	return crc ^ 0xFFFFFFFFu;
}

uint32_t
spool_crc32c(const void *data, size_t len)
{
	return spool_crc32c_extend(0, data, len);
}

/*
 * No lower-casing, so no copy: single bytes up to an 8-byte boundary, then
 * rte_hash_crc() from there, whose word reads are then all aligned.
 */
uint32_t
spool_crc32c_extend(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc ^= 0xFFFFFFFFu;
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = rte_hash_crc_1byte(*p++, crc);
		len--;
	}
	while (len > 0) {
		uint32_t n = len > UINT32_MAX - 7 ? UINT32_MAX - 7 : (uint32_t)len;

		n &= ~7u;
		if (n == 0)
			n = (uint32_t)len;
		crc = rte_hash_crc(p, n, crc);
		p += n;
		len -= n;
	}
	return crc ^ 0xFFFFFFFFu;
}

unsigned
spool_shard_of(unsigned shards, const char *addr, size_t len)
{
	if (shards <= 1)
		return 0;
	return crc32c_chunks(addr, len, true) % shards;
}
