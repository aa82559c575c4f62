/*
 * net_mld.c: Multicast Listener Discovery version 2 (RFC 3810) reports for
 * the groups the stack listens to, so that a switch snooping MLD forwards
 * neighbor solicitations to us.
 *
 * The groups are the solicited-node groups of our addresses (all-nodes is
 * never reported: RFC 3810 6).  One report names them all: at start-up,
 * before DAD's first solicitation (RFC 4862 5.4.2: join, then probe), and
 * in answer to a query (5.1) from a link-local router: not at once but at a
 * random time within the query's Maximum Response Delay (RFC 3810 6.2,
 * RFC 2710 4: so that the listeners of a link do not all answer together),
 * a pending report kept if it is due sooner than the new choice and
 * replaced otherwise; at most one a second per worker whatever the queries
 * (a query flood costs a report a second).  The due time is a field of the
 * worker looked at by net_mld_tick() in the loop's timers: no blocking.
 * A report goes from our link-local address, or from the unspecified one
 * while it is tentative (RFC 3590 4), to all MLDv2-capable routers
 * (ff02::16), hop limit 1, with a Router Alert (RFC 2711) in a hop-by-hop
 * header.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"
#include "dataplane/net_ipv6.h"

#define MLD_QUERY 130
#define MLD2_REPORT 143
#define MLD2_CHANGE_TO_EXCLUDE 4 /* a join (RFC 3810 5.2.12) */
#define MLD2_MODE_IS_EXCLUDE 2   /* listening, in answer to a query */
#define MLD_REPORT_MIN_MS 1000
#define MLD2_QUERY_MIN 28 /* an MLDv1 query has 24 octets (RFC 3810 8.1) */

static const uint8_t all_mld2_routers[16] = {0xff, 0x02, [15] = 0x16};

void
net_mld_report(struct dp_worker *dw, bool join)
{
	const struct dp_shared *sh = dw->sh;
	const unsigned nrec = sh->nip6, l4 = 8 + 20 * nrec;
	struct rte_mbuf *m = dp_alloc(dw);
	struct rte_ipv6_hdr *ip;
	uint8_t *hbh, *r;
	uint16_t ck;

	if (m == NULL)
		return;
	ip = (struct rte_ipv6_hdr *)rte_pktmbuf_append(m, (uint16_t)(sizeof(*ip) + 8 + l4));
	if (ip == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	memset(ip, 0, sizeof(*ip) + 8 + l4);
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16((uint16_t)(8 + l4));
	ip->proto = 0; /* hop-by-hop */
	ip->hop_limits = 1;
	if (__atomic_load_n(&sh->ip6[0].state, __ATOMIC_ACQUIRE) == DP_ADDR6_PREFERRED)
		memcpy(ip->src_addr, sh->ip6[0].a, 16);
	memcpy(ip->dst_addr, all_mld2_routers, 16);
	/* Next header ICMPv6, 8 octets: Router Alert (MLD, value 0), PadN of 2. */
	hbh = (uint8_t *)(ip + 1);
	hbh[0] = IPPROTO_ICMPV6;
	hbh[2] = 5;
	hbh[3] = 2;
	hbh[6] = 1;
	r = hbh + 8;
	r[0] = MLD2_REPORT;
	r[6] = (uint8_t)(nrec >> 8);
	r[7] = (uint8_t)nrec;
	for (unsigned i = 0; i < nrec; i++) {
		uint8_t *rec = r + 8 + 20 * i;

		rec[0] = join ? MLD2_CHANGE_TO_EXCLUDE : MLD2_MODE_IS_EXCLUDE;
		net_nd_solicited_node(sh->ip6[i].a, rec + 4);
	}
	ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, r, (uint16_t)l4);
	memcpy(r + 2, &ck, sizeof(ck));
	m->ol_flags = 0;
	dw->c.mld_reports_out++;
	net_eth_output_ipv6(dw, m, all_mld2_routers);
}

uint32_t
net_mld_max_delay_ms(const uint8_t *query, uint16_t len)
{
	uint16_t code = (uint16_t)(query[4] << 8 | query[5]);

	/*
	 * RFC 2710 3.4: MLDv1's Maximum Response Delay, in ms.  RFC 3810
	 * 5.1.3: MLDv2's (a query of 28 octets or more) is a code, the delay
	 * itself below 32768, a floating point value from there:
	 * (mant | 0x1000) << (exp + 3).
	 */
	if (len < MLD2_QUERY_MIN || code < 32768)
		return code;
	return (uint32_t)((code & 0x0fff) | 0x1000) << (((code >> 12) & 7) + 3);
}

void
net_mld_input(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ipv6_hdr *ip,
              uint16_t l4_len)
{
	const uint8_t *q = rte_pktmbuf_mtod(m, const uint8_t *);
	uint64_t due;

	/* RFC 3810 5.1.14: from a link-local address, hop limit 1; 24 octets at least. */
	if (ip->hop_limits != 1 || !net_ipv6_is_link_local(ip->src_addr) || l4_len < 24) {
		dp_drop(dw, m, DP_DROP_ICMP6_BAD);
		return;
	}
	due = dw->now_ms + dp_worker_random_ms(dw, net_mld_max_delay_ms(q, l4_len));
	rte_pktmbuf_free(m);
	/* RFC 3810 6.2: a report due sooner stands; a later one gives way to the new time. */
	if (!dw->mld_due || due < dw->mld_due_ms) {
		dw->mld_due = true;
		dw->mld_due_ms = due;
	}
}

void
net_mld_tick(struct dp_worker *dw)
{
	if (!dw->mld_due || dw->now_ms < dw->mld_due_ms)
		return;
	/* A second at least between two answers, whatever the queries asked. */
	if (dw->mld_last_ms != 0 && dw->now_ms - dw->mld_last_ms < MLD_REPORT_MIN_MS) {
		dw->mld_due_ms = dw->mld_last_ms + MLD_REPORT_MIN_MS;
		return;
	}
	dw->mld_due = false;
	dw->mld_last_ms = dw->now_ms;
	net_mld_report(dw, false);
}
