/*
 * net_ipv6_ext.c: the IPv6 extension header walk (net_ipv6_ext.h).
 */
#include <string.h>

#include "dataplane/net_ipv6_ext.h"

/* RFC 4443 3.4 codes */
#define PP_HEADER 0 /* erroneous header field */
#define PP_NEXT 1   /* unrecognized Next Header type */
#define PP_OPTION 2 /* unrecognized IPv6 option */

static enum dp_drop
refuse(struct net_ip6_chain *c, enum dp_drop why, bool icmp, uint8_t code, unsigned pointer)
{
	c->icmp = icmp;
	c->icmp_code = code;
	c->pointer = (uint16_t)pointer;
	return why;
}

/* The TLV options of a hop-by-hop or destination options header at [p, end) (RFC 8200 4.2). */
static enum dp_drop
walk_options(const uint8_t *pkt, unsigned p, unsigned end, bool dst_multicast,
             struct net_ip6_chain *c)
{
	while (p < end) {
		uint8_t type = pkt[p];
		unsigned olen;

		if (type == 0) { /* Pad1 */
			p++;
			continue;
		}
		if (p + 2 > end || p + 2 + pkt[p + 1] > end)
			return refuse(c, DP_DROP_IP6_EXT_CHAIN, true, PP_HEADER, p);
		olen = 2u + pkt[p + 1];
		if (type != 1) { /* not PadN: unknown to us; the two high bits say what to do */
			switch (type >> 6) {
			case 0:
				break;
			case 1:
				return refuse(c, DP_DROP_IP6_OPTION, false, 0, p);
			case 2:
				return refuse(c, DP_DROP_IP6_OPTION, true, PP_OPTION, p);
			default:
				return refuse(c, DP_DROP_IP6_OPTION, !dst_multicast, PP_OPTION, p);
			}
		}
		p += olen;
	}
	return DP_DROP_COUNT;
}

enum dp_drop
net_ipv6_chain(const uint8_t *pkt, unsigned len, bool dst_multicast, struct net_ip6_chain *c)
{
	unsigned off = NET_IP6_HDR_LEN, nh_ptr = 6;
	uint8_t nh = pkt[6];

	memset(c, 0, sizeof(*c));
	for (;;) {
		unsigned hl;
		enum dp_drop r;

		switch (nh) {
		case NET_IP6_NH_HOPOPTS:
		case NET_IP6_NH_ROUTING:
		case NET_IP6_NH_FRAGMENT:
		case NET_IP6_NH_DSTOPTS:
			break;
		case NET_IP6_NH_NONE:
			return refuse(c, DP_DROP_IP6_PROTO, false, 0, 0);
		default:
			c->proto = nh;
			c->off = (uint16_t)off;
			c->nh_ptr = (uint16_t)nh_ptr;
			return DP_DROP_COUNT;
		}
		/* An extension header: its first two octets are next header and length. */
		if (++c->next > NET_IP6_MAX_EXT || off + 8 > len)
			return refuse(c, DP_DROP_IP6_EXT_CHAIN, false, 0, 0);
		hl = nh == NET_IP6_NH_FRAGMENT ? 8u : (pkt[off + 1] + 1u) * 8u;
		if (off + hl > len)
			return refuse(c, DP_DROP_IP6_EXT_CHAIN, true, PP_HEADER, off + 1);
		switch (nh) {
		case NET_IP6_NH_HOPOPTS:
			/* RFC 8200 4.1: only right after the IPv6 header. */
			if (off != NET_IP6_HDR_LEN)
				return refuse(c, DP_DROP_IP6_EXT_CHAIN, true, PP_NEXT, nh_ptr);
			/* fall through */
		case NET_IP6_NH_DSTOPTS:
			r = walk_options(pkt, off + 2, off + hl, dst_multicast, c);
			if (r != DP_DROP_COUNT)
				return r;
			break;
		case NET_IP6_NH_ROUTING: {
			uint8_t type = pkt[off + 2], left = pkt[off + 3];

			/* RFC 5095 3: type 0 is never processed; we refuse it outright. */
			if (type == 0)
				return refuse(c, DP_DROP_IP6_ROUTING0, left != 0, PP_HEADER,
				              off + 2);
			/* RFC 8200 4.4: an unknown type with segments left; we forward nothing. */
			if (left != 0)
				return refuse(c, DP_DROP_IP6_ROUTING, true, PP_HEADER, off + 2);
			break;
		}
		case NET_IP6_NH_FRAGMENT:
			/* Offset (13 bits) and M: both zero is an atomic fragment (RFC 6946). */
			if (((pkt[off + 2] << 8 | pkt[off + 3]) & 0xfff9) != 0)
				return refuse(c, DP_DROP_IP6_FRAGMENT, false, 0, 0);
			break;
		}
		nh_ptr = off;
		nh = pkt[off];
		off += hl;
	}
}
