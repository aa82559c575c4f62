/*
 * tcp_isn.h: initial sequence numbers (RFC 6528) and SYN cookies, both from
 * SipHash-2-4 keyed with a 128-bit secret drawn from getrandom() at start-up
 * (the "boot secret"; shared read-only by every worker).
 *
 * ISN = M + F(localip, localport, remoteip, remoteport, secretkey) with M a
 * 4-microsecond clock (RFC 6528 3).  A SYN cookie is the ISN of a SYN-ACK
 * sent without keeping state: 5 bits of a 64-second counter, 3 bits of MSS
 * index and 24 bits of SipHash over the 4-tuple, the peer's ISN, the counter
 * and the MSS index; it is valid for two counter periods.  IPv6 tuples hash
 * their 16-octet addresses whole.  Cookie
 * connections carry no window scaling, SACK or timestamps.
 */
#ifndef PA_TCP_ISN_H
#define PA_TCP_ISN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tcp_secret {
	uint64_t k0, k1;
};

uint64_t siphash24(const struct tcp_secret *key, const void *data, size_t len);

/* Addresses and ports in network order, as they are on the wire. */
uint32_t tcp_isn(const struct tcp_secret *key, uint32_t laddr, uint16_t lport, uint32_t raddr,
                 uint16_t rport, uint64_t now_us);

/*
 * The same over addresses of alen octets each (4: IPv4, 16: IPv6), RFC
 * 6528's F over the whole IPv6 tuple.
 */
uint32_t tcp_isn_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr,
                       size_t alen, uint16_t lport, uint16_t rport, uint64_t now_us);

#define TCP_COOKIE_PERIOD_S 64

/* Cookies over addresses of alen octets (IPv4 or IPv6), as tcp_cookie_make()/check(). */
uint32_t tcp_cookie_make_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr,
                               size_t alen, uint16_t lport, uint16_t rport, uint32_t peer_isn,
                               uint16_t mss, uint64_t now_s);
bool tcp_cookie_check_tuple(const struct tcp_secret *key, const void *laddr, const void *raddr,
                            size_t alen, uint16_t lport, uint16_t rport, uint32_t peer_isn,
                            uint32_t cookie, uint64_t now_s, uint16_t *mss);

/* The cookie for a SYN; mss is clamped down to the nearest encodable value. */
uint32_t tcp_cookie_make(const struct tcp_secret *key, uint32_t laddr, uint16_t lport,
                         uint32_t raddr, uint16_t rport, uint32_t peer_isn, uint16_t mss,
                         uint64_t now_s);

/*
 * Checks the ACK completing a cookie handshake: cookie is SEG.ACK - 1,
 * peer_isn is SEG.SEQ - 1.  True and the MSS in *mss when valid.
 */
bool tcp_cookie_check(const struct tcp_secret *key, uint32_t laddr, uint16_t lport, uint32_t raddr,
                      uint16_t rport, uint32_t peer_isn, uint32_t cookie, uint64_t now_s,
                      uint16_t *mss);

#endif
