/*
 * proxy_header.h: the PROXY protocol header a load balancer puts in front of
 * a connection (haproxy's "The PROXY protocol", versions 1 and 2,
 * doc/proxy-protocol.txt), parsed by one pure function.
 *
 * No I/O, no allocation, no global state: the caller hands in the first
 * octets of a connection, as many as it has, and learns whether they hold a
 * complete header (and how long it is), only the start of one, or something
 * that is not a valid header.  Whether the peer may send a header at all
 * (smtp.trusted_proxies) is the caller's business, not this parser's.
 *
 * The caller never needs more than PROXY_HEADER_MAX octets: anything longer
 * is refused, so a hostile peer cannot make the host buffer more.
 */
#ifndef PA_PROXY_HEADER_H
#define PA_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns of proxy_header_parse() besides a positive header length. */
#define PROXY_HEADER_NEED_MORE 0 /* a valid prefix: give more octets */
#define PROXY_HEADER_BAD (-1)    /* not a PROXY header, or a malformed one: drop */

/* Spec 2.1: a v1 line is at most 107 octets with its CRLF. */
#define PROXY_HEADER_V1_MAX 107
/* Spec 2.2: the 16-octet fixed part before the v2 address block. */
#define PROXY_HEADER_V2_FIXED 16
/*
 * The most this parser accepts for a whole v2 header, TLVs included.  The
 * spec lets the length field say 65535; no balancer sends more than a few
 * hundred octets (addresses plus TLVs such as AWS's VPC endpoint id or the
 * SSL information), so 1 KiB bounds what a host buffers per connection.
 */
#define PROXY_HEADER_MAX 1024

/* Text form of an address: INET6_ADDRSTRLEN without <arpa/inet.h>. */
#define PROXY_ADDR_STR_MAX 46

struct proxy_header {
	uint8_t version; /* 1 or 2 */
	/*
	 * false: the header carries no usable client address (v1 "UNKNOWN",
	 * v2 LOCAL, v2 AF_UNSPEC or AF_UNIX): the spec has the receiver use
	 * the connection's own endpoints, i.e. the proxy's.
	 */
	bool has_addr;
	int family;           /* AF_INET or AF_INET6 when has_addr, else AF_UNSPEC */
	uint8_t src_addr[16]; /* network order; the first 4 octets for AF_INET */
	uint8_t dst_addr[16];
	uint16_t src_port, dst_port; /* host order */
};

/*
 * Parses the header at the start of buf[0..len).  Returns its length in
 * octets (> 0, at most PROXY_HEADER_MAX) and fills *out; or
 * PROXY_HEADER_NEED_MORE when buf is a proper prefix of a header that may
 * still turn out valid (*out untouched); or PROXY_HEADER_BAD, as early as the
 * first octet that cannot belong to a valid header.  buf may be NULL when
 * len is 0.  Never reads past buf[len - 1].
 */
int proxy_header_parse(const uint8_t *buf, size_t len, struct proxy_header *out);

/*
 * Whether buf[0..len) starts like a PROXY header (v1 "PROXY " or the v2
 * signature, or a prefix of either when len is short): how a host tells a
 * header from an SMTP command in the first octets a peer sends.
 */
bool proxy_header_signature(const uint8_t *buf, size_t len);

/* The source address as text ("192.0.2.1", "2001:db8::1"); "" without one. */
void proxy_header_src_str(const struct proxy_header *h, char out[PROXY_ADDR_STR_MAX]);

#endif
