/*
 * dns_packet.h: what the resolver reads from a DNS message itself, beyond
 * what c-ares parses: the TTL of a negative answer (RFC 2308 5).  The bytes
 * come from the network: every read is bounded by len, a malformed message
 * gives 0 (not cached), never a read past its end.
 */
#ifndef PA_DNS_PACKET_H
#define PA_DNS_PACKET_H

#include <stddef.h>
#include <stdint.h>

/*
 * The smaller of the TTL and the MINIMUM field of the first SOA record in
 * the authority section of msg[0..len) (RFC 2308 5); 0 when there is none,
 * when the message is malformed, or when the TTL has its top bit set (RFC
 * 2181 8).  At most INT32_MAX.
 */
uint32_t dns_negative_ttl(const unsigned char *msg, size_t len);

#endif
