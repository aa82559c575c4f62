/*
 * net_ipv6_ext.h: the walk over an IPv6 packet's extension headers (RFC 8200
 * 4), as a pure function of the packet's octets, so that it is tested and
 * fuzzed without a port.
 *
 * Promises: nothing outside [pkt, pkt + len) is read; at most
 * NET_IP6_MAX_EXT extension headers are walked (a longer chain is dropped,
 * whatever it holds); hop-by-hop options only right after the IPv6 header;
 * options of hop-by-hop and destination options headers are walked with their
 * lengths checked and unknown ones acted on by their type's two high bits
 * (RFC 8200 4.2); a routing header of type 0 is refused (RFC 5095), another
 * type with segments left is refused (we route nothing), one with none is
 * skipped; a fragment header is accepted only as an atomic fragment (offset 0,
 * no more fragments: RFC 6946), every real fragment is refused: the stack does
 * not reassemble (its MSS follows the path MTU, so no peer needs to fragment).
 */
#ifndef PA_NET_IPV6_EXT_H
#define PA_NET_IPV6_EXT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_counters.h"

#define NET_IP6_HDR_LEN 40
#define NET_IP6_MAX_EXT 8 /* extension headers walked before the chain is refused */

#define NET_IP6_NH_HOPOPTS 0
#define NET_IP6_NH_TCP 6
#define NET_IP6_NH_ROUTING 43
#define NET_IP6_NH_FRAGMENT 44
#define NET_IP6_NH_ICMP6 58
#define NET_IP6_NH_NONE 59
#define NET_IP6_NH_DSTOPTS 60

/* What the walk found. */
struct net_ip6_chain {
	uint8_t proto;   /* the upper-layer protocol */
	uint16_t off;    /* where its header starts, from the IPv6 header */
	uint16_t nh_ptr; /* the Next Header field that named it (a parameter problem's pointer) */
	uint8_t next;    /* extension headers walked */
	/* On a refusal RFC 8200 answers with a parameter problem (RFC 4443 3.4): */
	bool icmp;
	uint8_t icmp_code;
	uint16_t pointer;
};

/*
 * Walks the chain of the len octets at pkt (the IPv6 header first, len at
 * least NET_IP6_HDR_LEN).  dst_multicast: the packet went to a group (option
 * type 11 then sends no error).  DP_DROP_COUNT when the packet may go on to
 * c->proto at c->off; otherwise the drop reason, with c->icmp set when a
 * parameter problem should be sent about it.
 */
enum dp_drop net_ipv6_chain(const uint8_t *pkt, unsigned len, bool dst_multicast,
                            struct net_ip6_chain *c);

#endif
