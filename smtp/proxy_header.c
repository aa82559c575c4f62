/*
 * proxy_header.c: the PROXY protocol header parser (proxy_header.h).
 *
 * Section numbers below are those of haproxy's doc/proxy-protocol.txt
 * ("The PROXY protocol, Versions 1 & 2").  Everything here is strict: a
 * header that is not exactly what the spec describes is refused, because the
 * only peers allowed to send one are our own balancers, and anything odd from
 * them is more likely an attack through them than a dialect worth accepting.
 */
#include "smtp/proxy_header.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

/* 2.1: the v1 header starts with these six octets. */
static const uint8_t v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

/* 2.2: the v2 header starts with this 12-octet signature. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* 2.2: the version nibble, the commands, families and protocols. */
#define V2_VERSION 0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_PROTO_UNSPEC 0x0
#define V2_PROTO_STREAM 0x1
#define V2_PROTO_DGRAM 0x2

/* 2.2: sizes of the address blocks (struct proxy_hdr_v2's union). */
#define V2_ADDR_INET 12
#define V2_ADDR_INET6 36
#define V2_ADDR_UNIX 216

/* 2.2.x: a TLV is a type octet and a 16-bit big-endian length before its value. */
#define V2_TLV_HEAD 3

/* Whether the first min(len, n) octets of buf match sig. */
static bool
prefix_matches(const uint8_t *buf, size_t len, const uint8_t *sig, size_t n)
{
	size_t k = len < n ? len : n;

	return k == 0 || memcmp(buf, sig, k) == 0;
}

bool
proxy_header_signature(const uint8_t *buf, size_t len)
{
	return prefix_matches(buf, len, v1_sig, sizeof(v1_sig)) ||
	       prefix_matches(buf, len, v2_sig, sizeof(v2_sig));
}

/*
 * 2.1: ports are decimal 0..65535.  No sign, no leading zero (a second
 * spelling of one port is a second way to confuse a log parser).
 */
static bool
parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* One address field of a v1 line, in the family the protocol word named. */
static bool
parse_addr(int family, const char *s, size_t n, uint8_t out[16])
{
	char buf[PROXY_ADDR_STR_MAX];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	/* glibc's inet_pton() takes no leading zeros, no short forms for IPv4: canonical only. */
	return inet_pton(family, buf, out) == 1;
}

/*
 * 2.1: "PROXY" SP proto SP src SP dst SP sport SP dport CRLF, the fields
 * separated by exactly one space; line holds what follows "PROXY " up to
 * (not including) the CR.
 */
static int
parse_v1_line(const char *line, size_t n, struct proxy_header *out)
{
	const char *field[5];
	size_t flen[5], nf = 0, start = 0;
	struct proxy_header h = {.version = 1, .family = AF_UNSPEC};

	/* 2.1: after UNKNOWN the receiver ignores the rest of the line. */
	if (n >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (n == 7 || line[7] == ' ')) {
		*out = h;
		return 0;
	}
	if (n < 4 || memcmp(line, "TCP", 3) != 0 || (line[3] != '4' && line[3] != '6') || n < 5 ||
	    line[4] != ' ')
		return PROXY_HEADER_BAD;
	h.family = line[3] == '4' ? AF_INET : AF_INET6;
	start = 5;
	for (size_t i = start; i <= n; i++) {
		if (i < n && line[i] != ' ')
			continue;
		if (nf == 5)
			return PROXY_HEADER_BAD; /* a sixth field */
		field[nf] = line + start;
		flen[nf] = i - start;
		nf++;
		start = i + 1;
	}
	if (nf != 4)
		return PROXY_HEADER_BAD;
	if (!parse_addr(h.family, field[0], flen[0], h.src_addr) ||
	    !parse_addr(h.family, field[1], flen[1], h.dst_addr) ||
	    !parse_port(field[2], flen[2], &h.src_port) ||
	    !parse_port(field[3], flen[3], &h.dst_port))
		return PROXY_HEADER_BAD;
	h.has_addr = true;
	*out = h;
	return 0;
}

static int
parse_v1(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	size_t scan = len < PROXY_HEADER_V1_MAX ? len : PROXY_HEADER_V1_MAX;
	char line[PROXY_HEADER_V1_MAX];

	if (len < sizeof(v1_sig))
		return PROXY_HEADER_NEED_MORE;
	for (size_t i = sizeof(v1_sig); i < scan; i++) {
		uint8_t c = buf[i];

		if (c == '\r') {
			if (i + 1 == len)
				return PROXY_HEADER_NEED_MORE;
			if (buf[i + 1] != '\n' || i + 1 >= PROXY_HEADER_V1_MAX)
				return PROXY_HEADER_BAD;
			memcpy(line, buf + sizeof(v1_sig), i - sizeof(v1_sig));
			if (parse_v1_line(line, i - sizeof(v1_sig), out) != 0)
				return PROXY_HEADER_BAD;
			return (int)(i + 2);
		}
		/* Printable US-ASCII only: no bare LF, NUL or 8-bit octet. */
		if (c < 0x20 || c > 0x7e)
			return PROXY_HEADER_BAD;
	}
	/* 2.1: no CRLF within 107 octets is not a header. */
	return len >= PROXY_HEADER_V1_MAX ? PROXY_HEADER_BAD : PROXY_HEADER_NEED_MORE;
}

/* 2.2.x: the TLVs after the address block must tile what is left exactly. */
static bool
tlvs_well_formed(const uint8_t *p, size_t n)
{
	while (n > 0) {
		size_t vlen;

		if (n < V2_TLV_HEAD)
			return false;
		vlen = (size_t)p[1] << 8 | p[2];
		if (vlen > n - V2_TLV_HEAD)
			return false;
		p += V2_TLV_HEAD + vlen;
		n -= V2_TLV_HEAD + vlen;
	}
	return true;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	struct proxy_header h = {.version = 2, .family = AF_UNSPEC};
	unsigned ver, cmd, fam, proto;
	size_t body, total, need = 0;
	const uint8_t *a;

	if (len < sizeof(v2_sig) + 1)
		return PROXY_HEADER_NEED_MORE;
	/* 13th octet: version in the high nibble (must be 2), command in the low one. */
	ver = buf[12] >> 4;
	cmd = buf[12] & 0x0f;
	if (ver != V2_VERSION || (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY))
		return PROXY_HEADER_BAD;
	if (len < sizeof(v2_sig) + 2)
		return PROXY_HEADER_NEED_MORE;
	/* 14th octet: address family high, transport protocol low. */
	fam = buf[13] >> 4;
	proto = buf[13] & 0x0f;
	if (fam > V2_AF_UNIX || proto > V2_PROTO_DGRAM)
		return PROXY_HEADER_BAD;
	if (len < PROXY_HEADER_V2_FIXED)
		return PROXY_HEADER_NEED_MORE;
	body = (size_t)buf[14] << 8 | buf[15];
	total = PROXY_HEADER_V2_FIXED + body;
	if (total > PROXY_HEADER_MAX)
		return PROXY_HEADER_BAD;
	if (cmd == V2_CMD_PROXY) {
		/* SMTP runs over TCP only: a datagram flow cannot be ours. */
		if (proto == V2_PROTO_DGRAM)
			return PROXY_HEADER_BAD;
		if (fam == V2_AF_INET)
			need = V2_ADDR_INET;
		else if (fam == V2_AF_INET6)
			need = V2_ADDR_INET6;
		else if (fam == V2_AF_UNIX)
			need = V2_ADDR_UNIX;
		/* The length must cover the family's address block (2.2). */
		if (body < need)
			return PROXY_HEADER_BAD;
	}
	if (len < total)
		return PROXY_HEADER_NEED_MORE;
	/*
	 * 2.2: LOCAL (health checks, the proxy's own connections) means "use
	 * the real endpoints" and its block is skipped unread.
	 */
	if (cmd == V2_CMD_LOCAL) {
		*out = h;
		return (int)total;
	}
	if (!tlvs_well_formed(buf + PROXY_HEADER_V2_FIXED + need, body - need))
		return PROXY_HEADER_BAD;
	a = buf + PROXY_HEADER_V2_FIXED;
	if ((fam == V2_AF_INET || fam == V2_AF_INET6) && proto == V2_PROTO_STREAM) {
		size_t alen = fam == V2_AF_INET ? 4 : 16;

		h.has_addr = true;
		h.family = fam == V2_AF_INET ? AF_INET : AF_INET6;
		memcpy(h.src_addr, a, alen);
		memcpy(h.dst_addr, a + alen, alen);
		h.src_port = (uint16_t)(a[2 * alen] << 8 | a[2 * alen + 1]);
		h.dst_port = (uint16_t)(a[2 * alen + 2] << 8 | a[2 * alen + 3]);
	}
	/* AF_UNSPEC, AF_UNIX or an unspecified protocol: no address, the real endpoints stand. */
	*out = h;
	return (int)total;
}

int
proxy_header_parse(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	if (len == 0)
		return PROXY_HEADER_NEED_MORE;
	if (buf[0] == v1_sig[0]) {
		if (!prefix_matches(buf, len, v1_sig, sizeof(v1_sig)))
			return PROXY_HEADER_BAD;
		return parse_v1(buf, len, out);
	}
	if (!prefix_matches(buf, len, v2_sig, sizeof(v2_sig)))
		return PROXY_HEADER_BAD;
	return parse_v2(buf, len, out);
}

void
proxy_header_src_str(const struct proxy_header *h, char out[PROXY_ADDR_STR_MAX])
{
	out[0] = '\0';
	if (!h->has_addr || inet_ntop(h->family, h->src_addr, out, PROXY_ADDR_STR_MAX) == NULL)
		out[0] = '\0';
}
