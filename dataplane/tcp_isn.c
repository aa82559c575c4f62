/*
 * tcp_isn.c: SipHash-2-4 (Aumasson and Bernstein's reference algorithm),
 * RFC 6528 ISNs and SYN cookies (tcp_isn.h).
 */
#include <string.h>

#include "dataplane/tcp_isn.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	} while (0)

static uint64_t
load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
siphash24(const struct tcp_secret *key, const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t v0 = 0x736f6d6570736575ULL ^ key->k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ key->k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ key->k0;
	uint64_t v3 = 0x7465646279746573ULL ^ key->k1;
	uint64_t b = (uint64_t)len << 56;
	size_t i, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t m = load_le64(in + i);

		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < left; j++)
		b |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * The hashed tuple: local address, remote address (4 or 16 octets each),
 * local port, remote port, then the cookie's extra words.  An IPv4 tuple is
 * the 12 octets it always was.
 */
struct tuple {
	uint8_t b[16 + 16 + 4 + 12];
	size_t len;
};

static void
tuple_of(struct tuple *t, const void *laddr, const void *raddr, size_t alen, uint16_t lport,
         uint16_t rport)
{
	memcpy(t->b, laddr, alen);
	memcpy(t->b + alen, raddr, alen);
	memcpy(t->b + 2 * alen, &lport, 2);
	memcpy(t->b + 2 * alen + 2, &rport, 2);
	t->len = 2 * alen + 4;
}

uint32_t
tcp_isn_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr, size_t alen,
              uint16_t lport, uint16_t rport, uint64_t now_us)
{
	struct tuple t;

	tuple_of(&t, laddr, raddr, alen, lport, rport);
	/* RFC 6528 3: M is a timer that ticks every 4 microseconds. */
	return (uint32_t)(now_us >> 2) + (uint32_t)siphash24(key, t.b, t.len);
}

uint32_t
tcp_isn(const struct tcp_secret *key, uint32_t laddr, uint16_t lport, uint32_t raddr,
        uint16_t rport, uint64_t now_us)
{
	return tcp_isn_tuple(key, &laddr, &raddr, 4, lport, rport, now_us);
}

/* MSS values a cookie can carry (3 bits), as Linux's table: common paths. */
static const uint16_t cookie_mss[8] = {536, 1024, 1220, 1300, 1360, 1440, 1452, 1460};

static uint32_t
cookie_hash(const struct tcp_secret *key, const struct tuple *tt, uint32_t peer_isn, uint64_t count,
            unsigned mss_idx)
{
	uint32_t extra[3] = {peer_isn, (uint32_t)count, (uint32_t)(count >> 32) ^ mss_idx};
	struct tuple t = *tt;

	memcpy(t.b + t.len, extra, sizeof(extra));
	return (uint32_t)siphash24(key, t.b, t.len + sizeof(extra)) & 0x00ffffffu;
}

uint32_t
tcp_cookie_make_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr,
                      size_t alen, uint16_t lport, uint16_t rport, uint32_t peer_isn, uint16_t mss,
                      uint64_t now_s)
{
	uint64_t count = now_s / TCP_COOKIE_PERIOD_S;
	unsigned idx = 0;
	struct tuple t;

	tuple_of(&t, laddr, raddr, alen, lport, rport);
	for (unsigned i = 0; i < 8; i++)
		if (cookie_mss[i] <= mss)
			idx = i;
	return ((uint32_t)(count & 31) << 27) | ((uint32_t)idx << 24) |
	       cookie_hash(key, &t, peer_isn, count, idx);
}

uint32_t
tcp_cookie_make(const struct tcp_secret *key, uint32_t laddr, uint16_t lport, uint32_t raddr,
                uint16_t rport, uint32_t peer_isn, uint16_t mss, uint64_t now_s)
{
	return tcp_cookie_make_tuple(key, &laddr, &raddr, 4, lport, rport, peer_isn, mss, now_s);
}

bool
tcp_cookie_check_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr,
                       size_t alen, uint16_t lport, uint16_t rport, uint32_t peer_isn,
                       uint32_t cookie, uint64_t now_s, uint16_t *mss)
{
	uint64_t now_count = now_s / TCP_COOKIE_PERIOD_S;
	unsigned idx = (cookie >> 24) & 7;
	struct tuple t;

	tuple_of(&t, laddr, raddr, alen, lport, rport);
	/* Valid in the period it was made and the next one. */
	for (uint64_t age = 0; age < 2 && age <= now_count; age++) {
		uint64_t count = now_count - age;

		if ((count & 31) != (cookie >> 27))
			continue;
		if (cookie_hash(key, &t, peer_isn, count, idx) == (cookie & 0x00ffffffu)) {
			*mss = cookie_mss[idx];
			return true;
		}
	}
	return false;
}

bool
tcp_cookie_check(const struct tcp_secret *key, uint32_t laddr, uint16_t lport, uint32_t raddr,
                 uint16_t rport, uint32_t peer_isn, uint32_t cookie, uint64_t now_s, uint16_t *mss)
{
	return tcp_cookie_check_tuple(key, &laddr, &raddr, 4, lport, rport, peer_isn, cookie, now_s,
	                              mss);
}
