/*
 * net_arp.c: ARP (RFC 826) and the IPv4 neighbour table every worker sees.
 *
 * The table is one rte_hash keyed by IPv4 address whose key position indexes
 * an array of entries: a lookup is one lock-free read, an update one atomic
 * store, entries are never freed.  Requests for any of our addresses
 * (sh->ip and the ip_extra after it) are answered from that address.  The
 * entries age as IPv6's neighbour cache does (net_neigh.c, RFC 4861 7.3.2
 * applied to ARP as RFC 1122 2.3.2.1 asks: no entry kept forever): a reply
 * confirms the sender (REACHABLE for 30 s), a request for us with a new or
 * changed MAC makes it STALE; a STALE entry in use goes to DELAY and, 5 s
 * on, to PROBE: unicast requests to the MAC it has, 1 s apart, 3 at most,
 * then the entry is dropped (NONE) and the next packet resolves afresh.
 *
 * Bounded and not for strangers: an entry is made for a reply only when a
 * worker asked for that address, and for a request for us (RFC 826's
 * merge) only while the table is less than half full, so unsolicited ARP
 * cannot take the rest (arp_cache_full counts what found no room; an
 * unasked reply is dropped as arp_unsolicited).  A packet for a neighbour
 * not yet known is dropped (counted) and a broadcast request sent, retried
 * once a second up to 3 times: TCP's retransmission carries the data once
 * the reply is in.
 */
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp.h"

#define ARP_RETRY_MS 1000
#define ARP_TRIES 3

int
net_arp_create(struct dp_shared *sh)
{
	struct rte_hash_parameters hp = {
	    .name = "pa_neigh",
	    .entries = DP_ARP_ENTRIES,
	    .key_len = sizeof(uint32_t),
	    .hash_func = rte_hash_crc,
	    .socket_id = (int)rte_socket_id(),
	    .extra_flag =
	        RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD,
	};

	sh->neigh = rte_hash_create(&hp);
	/* Key positions run up to entries + per-lcore caches: room for every one. */
	sh->arp_e =
	    rte_zmalloc("pa_arp", sizeof(*sh->arp_e) * 2 * DP_ARP_ENTRIES, RTE_CACHE_LINE_SIZE);
	if (sh->neigh == NULL || sh->arp_e == NULL) {
		pa_log_err("dpdk: no memory for the ARP table (rte_hash_create)");
		return PA_ERROR;
	}
	return PA_OK;
}

static struct dp_nd_entry *
entry_find(const struct dp_shared *sh, uint32_t ip)
{
	int32_t pos = rte_hash_lookup(sh->neigh, &ip);

	return pos >= 0 && pos < 2 * DP_ARP_ENTRIES ? &sh->arp_e[pos] : NULL;
}

static struct dp_nd_entry *
entry_make(struct dp_worker *dw, uint32_t ip)
{
	int32_t pos = rte_hash_add_key(dw->sh->neigh, &ip);

	if (pos < 0 || pos >= 2 * DP_ARP_ENTRIES) {
		dw->c.drops[DP_DROP_ARP_CACHE_FULL]++;
		return NULL;
	}
	return &dw->sh->arp_e[pos];
}

/* ip as the pending list keeps it: IPv4-mapped (net_neigh.c's lists are for both). */
static void
mapped(uint32_t ip, uint8_t *a)
{
	memset(a, 0, 10);
	a[10] = a[11] = 0xff;
	memcpy(a + 12, &ip, 4);
}

static uint32_t
unmapped(const uint8_t *a)
{
	uint32_t ip;

	memcpy(&ip, a + 12, 4);
	return ip;
}

/*
 * sip: which of our addresses speaks (a reply is from the address asked
 * for); tha: the reply's destination, or a request's when it is a unicast
 * probe (RFC 1122 2.3.2.1), NULL for a broadcast request.
 */
static void
send_arp(struct dp_worker *dw, uint16_t op, uint32_t sip, const struct rte_ether_addr *tha,
         uint32_t tip)
{
	struct rte_mbuf *m = dp_alloc(dw);
	struct rte_ether_hdr *eh;
	struct rte_arp_hdr *ah;

	if (m == NULL)
		return;
	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eh) + sizeof(*ah));
	ah = (struct rte_arp_hdr *)(eh + 1);
	if (tha == NULL)
		memset(&eh->dst_addr, 0xff, sizeof(eh->dst_addr));
	else
		rte_ether_addr_copy(tha, &eh->dst_addr);
	rte_ether_addr_copy(&dw->sh->mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	ah->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	ah->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ah->arp_hlen = RTE_ETHER_ADDR_LEN;
	ah->arp_plen = 4;
	ah->arp_opcode = rte_cpu_to_be_16(op);
	rte_ether_addr_copy(&dw->sh->mac, &ah->arp_data.arp_sha);
	ah->arp_data.arp_sip = sip;
	if (op == RTE_ARP_OP_REQUEST)
		memset(&ah->arp_data.arp_tha, 0, sizeof(ah->arp_data.arp_tha));
	else
		rte_ether_addr_copy(tha, &ah->arp_data.arp_tha);
	ah->arp_data.arp_tip = tip;
	if (dw->ntx == DP_BURST)
		net_eth_tx_flush(dw);
	dw->tx[dw->ntx++] = m;
}

/*
 * The sender's entry: a reply confirms it (it answers a request: ours, or
 * another worker's), a request for us brings it as STALE.  False: a reply
 * nobody asked for, about a neighbour we do not know.
 */
static bool
merge(struct dp_worker *dw, uint32_t ip, const struct rte_ether_addr *mac, bool reply)
{
	struct dp_nd_entry *e = entry_find(dw->sh, ip);
	uint8_t a[16];

	mapped(ip, a);
	if (e == NULL) {
		if (reply ? !net_neigh_pending_anywhere(dw->sh, DP_NEIGH_ARP, a)
		          : rte_hash_count(dw->sh->neigh) >= DP_ARP_ENTRIES / 2)
			return !reply;
		if ((e = entry_make(dw, ip)) == NULL)
			return true; /* counted: arp_cache_full */
	}
	net_neigh_heard(dw, e, mac, reply);
	/* Resolved: this worker stops asking (others notice on their next retry). */
	net_neigh_pending_done(dw, DP_NEIGH_ARP, a);
	return true;
}

void
net_arp_input(struct dp_worker *dw, struct rte_mbuf *m)
{
	struct rte_arp_hdr *ah = rte_pktmbuf_mtod(m, struct rte_arp_hdr *);
	uint16_t op;

	if (rte_pktmbuf_data_len(m) < sizeof(*ah) ||
	    ah->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    ah->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    ah->arp_hlen != RTE_ETHER_ADDR_LEN || ah->arp_plen != 4) {
		dp_drop(dw, m, DP_DROP_ARP_BAD);
		return;
	}
	op = rte_be_to_cpu_16(ah->arp_opcode);
	if (!dp_is_local_addr(dw->sh, ah->arp_data.arp_tip)) {
		dp_drop(dw, m, DP_DROP_ARP_NOT_US);
		return;
	}
	/* RFC 826: merge the sender when the request or reply is for us. */
	if (ah->arp_data.arp_sip != 0 && !rte_is_multicast_ether_addr(&ah->arp_data.arp_sha) &&
	    !merge(dw, ah->arp_data.arp_sip, &ah->arp_data.arp_sha, op == RTE_ARP_OP_REPLY)) {
		dp_drop(dw, m, DP_DROP_ARP_UNSOLICITED);
		return;
	}
	if (op == RTE_ARP_OP_REQUEST) {
		dw->c.arp_requests_in++;
		dw->c.arp_replies_out++;
		send_arp(dw, RTE_ARP_OP_REPLY, ah->arp_data.arp_tip, &ah->arp_data.arp_sha,
		         ah->arp_data.arp_sip);
	}
	rte_pktmbuf_free(m);
}

bool
net_arp_resolve(struct dp_worker *dw, uint32_t ip, struct rte_ether_addr *mac)
{
	struct dp_nd_entry *e = entry_find(dw->sh, ip);
	uint8_t a[16];

	switch (e != NULL ? net_neigh_use(dw, e, mac) : DP_NEIGH_RESOLVE) {
	case DP_NEIGH_OK:
		return true;
	case DP_NEIGH_PROBE:
		/* RFC 1122 2.3.2.1: revalidate by a request unicast to the MAC we have. */
		dw->c.arp_requests_out++;
		send_arp(dw, RTE_ARP_OP_REQUEST, dw->sh->ip, mac, ip);
		return true;
	default:
		break;
	}
	mapped(ip, a);
	if (net_neigh_pending_add(dw, DP_NEIGH_ARP, a, ARP_RETRY_MS)) {
		dw->c.arp_requests_out++;
		send_arp(dw, RTE_ARP_OP_REQUEST, dw->sh->ip, NULL, ip);
	}
	return false; /* net_arp_tick() retries */
}

static const struct dp_nd_entry *
find_mapped(const struct dp_shared *sh, const uint8_t *a)
{
	return entry_find(sh, unmapped(a));
}

/* A retry: the broadcast request again. */
static void
ask(struct dp_worker *dw, const uint8_t *a)
{
	dw->c.arp_requests_out++;
	send_arp(dw, RTE_ARP_OP_REQUEST, dw->sh->ip, NULL, unmapped(a));
}

void
net_arp_tick(struct dp_worker *dw)
{
	static const struct dp_neigh_ops ops = {
	    .find = find_mapped,
	    .ask = ask,
	    .max_tries = ARP_TRIES,
	    .retrans_ms = ARP_RETRY_MS,
	};

	net_neigh_pending_tick(dw, DP_NEIGH_ARP, &ops);
}
