/*
 * net_icmp6.h: what ICMPv6 shares with the steering code: the connection a
 * packet too big message is about.  A pure function of the message's octets.
 */
#ifndef PA_NET_ICMP6_H
#define PA_NET_ICMP6_H

#include <stdbool.h>
#include <stdint.h>

struct tcp_key;

/*
 * The ICMPv6 message of len octets at msg, when it is a packet too big
 * quoting a TCP segment: the segment's connection as our key (laddr its
 * source), the MTU and the quoted sequence number.  False for anything else.
 */
bool net_icmp6_ptb_key(const uint8_t *msg, unsigned len, struct tcp_key *key, uint32_t *mtu,
                       uint32_t *seq);

#endif
