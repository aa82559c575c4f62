/*
 * net_arp.c: ARP (RFC 826) and the neighbour table every worker sees.
 *
 * The table is one rte_hash keyed by IPv4 address whose data word holds the
 * MAC address itself (48 bits, plus a valid bit), so a lookup is one
 * lock-free read and an update one atomic data replace: readers never wait,
 * entries are never freed.  Requests for any of our addresses (sh->ip and
 * the ip_extra after it) are answered from that address and the
 * sender merged in (RFC 826 "Packet Reception"); replies are merged.  A
 * packet for a neighbour not yet known is dropped (counted) and a request
 * sent, retried once a second up to 3 times: TCP's retransmission carries
 * the data once the reply is in.
 */
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp.h"

#define NEIGH_ENTRIES 4096
#define NEIGH_VALID (1ull << 63)
#define ARP_RETRY_MS 1000
#define ARP_TRIES 3

int
net_arp_create(struct dp_shared *sh)
{
	struct rte_hash_parameters hp = {
	    .name = "pa_neigh",
	    .entries = NEIGH_ENTRIES,
	    .key_len = sizeof(uint32_t),
	    .hash_func = rte_hash_crc,
	    .socket_id = (int)rte_socket_id(),
	    .extra_flag =
	        RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD,
	};

	sh->neigh = rte_hash_create(&hp);
	if (sh->neigh == NULL) {
		pa_log_err("dpdk: rte_hash_create(neighbours) failed");
		return PA_ERROR;
	}
	return PA_OK;
}

static uint64_t
mac_pack(const struct rte_ether_addr *a)
{
	uint64_t v = NEIGH_VALID;

	for (int i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		v |= (uint64_t)a->addr_bytes[i] << (8 * i);
	return v;
}

static void
neigh_update(struct dp_worker *dw, uint32_t ip, const struct rte_ether_addr *mac)
{
	uint64_t v = mac_pack(mac);
	void *old;

	if (rte_hash_lookup_data(dw->sh->neigh, &ip, &old) >= 0 && (uint64_t)(uintptr_t)old == v)
		return;
	rte_hash_add_key_data(dw->sh->neigh, &ip, (void *)(uintptr_t)v);
	for (unsigned i = 0; i < DP_ARP_PENDING; i++)
		if (dw->arp[i].ip == ip)
			dw->arp[i].ip = 0;
}

static bool
neigh_lookup(const struct dp_shared *sh, uint32_t ip, struct rte_ether_addr *mac)
{
	void *data;
	uint64_t v;

	if (rte_hash_lookup_data(sh->neigh, &ip, &data) < 0)
		return false;
	v = (uint64_t)(uintptr_t)data;
	for (int i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		mac->addr_bytes[i] = (uint8_t)(v >> (8 * i));
	return true;
}

/* sip: which of our addresses speaks (a reply is from the address asked for). */
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
	if (op == RTE_ARP_OP_REQUEST)
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
	if (ah->arp_data.arp_sip != 0 && !rte_is_multicast_ether_addr(&ah->arp_data.arp_sha))
		neigh_update(dw, ah->arp_data.arp_sip, &ah->arp_data.arp_sha);
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
	struct dp_arp_pending *free_slot = NULL;

	if (neigh_lookup(dw->sh, ip, mac))
		return true;
	for (unsigned i = 0; i < DP_ARP_PENDING; i++) {
		if (dw->arp[i].ip == ip)
			return false; /* already asking; net_arp_tick() retries */
		if (dw->arp[i].ip == 0 && free_slot == NULL)
			free_slot = &dw->arp[i];
	}
	if (free_slot == NULL)
		return false; /* as many resolutions in flight as we track: don't flood */
	free_slot->ip = ip;
	free_slot->tries = 1;
	free_slot->next_ms = dw->now_ms + ARP_RETRY_MS;
	dw->c.arp_requests_out++;
	send_arp(dw, RTE_ARP_OP_REQUEST, dw->sh->ip, NULL, ip);
	return false;
}

void
net_arp_tick(struct dp_worker *dw)
{
	for (unsigned i = 0; i < DP_ARP_PENDING; i++) {
		struct dp_arp_pending *p = &dw->arp[i];

		if (p->ip == 0 || dw->now_ms < p->next_ms)
			continue;
		if (p->tries >= ARP_TRIES) {
			p->ip = 0; /* give up until the next packet asks again */
			continue;
		}
		p->tries++;
		p->next_ms = dw->now_ms + ARP_RETRY_MS;
		dw->c.arp_requests_out++;
		send_arp(dw, RTE_ARP_OP_REQUEST, dw->sh->ip, NULL, p->ip);
	}
}
