/*
 * net_nd.c: Neighbor Discovery (RFC 4861) for the engine's IPv6 addresses,
 * the IPv6 neighbour cache every worker sees, and duplicate address
 * detection (RFC 4862 5.4).
 *
 * Solicitations for one of our usable addresses are answered (7.2.4) from
 * the Ethernet address they came from or the source link-layer option they
 * carry; solicitations and advertisements are validated first (7.1): hop
 * limit 255 (so they come from the link), code 0, lengths, options of
 * non-zero length.  Router solicitations, advertisements and redirects never
 * reach this file (net_icmp6.c drops them: the configuration decides the
 * gateway, not the link).
 *
 * The cache is one rte_hash keyed by the 16-octet address whose key position
 * indexes an array of entries; an entry is one word (MAC, state, probes) and
 * a time stamp, each written atomically, so lookups are lock-free and a race
 * between two workers' updates costs at most an extra probe.  States follow
 * 7.3.2 (net_neigh.c, ARP's too): REACHABLE for 30 s after a solicited
 * advertisement, then STALE; a STALE entry still in use goes to DELAY, after
 * 5 s to PROBE (unicast solicitations, 1 s apart, 3 at most), and without an
 * answer to NONE: the next packet resolves it afresh.  INCOMPLETE is a per-worker list of
 * addresses being resolved (multicast solicitations, 1 s apart, 3 tries):
 * the packet that needed one is dropped (counted: no_neighbour) and TCP's
 * retransmission carries it once the answer is in.
 *
 * Bounded memory: NEIGH6_ENTRIES entries, never freed (readers take no lock
 * to find them); an entry is made only for a neighbour that answered our
 * solicitation or solicited us itself (the latter up to half the table, so
 * unsolicited traffic cannot take the rest); an unreachable one keeps its
 * slot for its address.  A full cache is counted (nd_cache_full).
 *
 * DAD: once the port's link is up and after a random delay of up to 1 s
 * (RFC 4862 5.4.2), worker 0 joins the groups (MLD) and sends
 * dpdk.dad_transmits solicitations (DupAddrDetectTransmits), RetransTimer
 * (1 s) apart, from the unspecified address for each tentative address and,
 * when no node objects within RetransTimer of the last, makes it preferred;
 * an advertisement for it, or another node's DAD solicitation for it, makes
 * it a duplicate, never used (logged, counted).  The delay is a time stamp
 * the loop's timers compare with the clock: nothing waits.
 */
#include <arpa/inet.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp.h"
#include "dataplane/net_cksum.h"

#define NEIGH6_ENTRIES 4096
#define ND_HOP_LIMIT 255
#define ND_RETRANS_MS 1000 /* RetransTimer */
#define ND_MAX_MULTICAST_SOLICIT 3
#define ND_MAX_RTR_SOL_DELAY_MS 1000 /* MAX_RTR_SOLICITATION_DELAY (RFC 4861 10) */
#define ND_NS 135
#define ND_NA 136
#define ND_OPT_SLLA 1
#define ND_OPT_TLLA 2
#define NA_ROUTER 0x80
#define NA_SOLICITED 0x40
#define NA_OVERRIDE 0x20

#define DAD_LINK_POLL_MS 50

static const uint8_t all_nodes[16] = {0xff, 0x02, [15] = 1};

int
net_nd_create(struct dp_shared *sh)
{
	struct rte_hash_parameters hp = {
	    .name = "pa_neigh6",
	    .entries = NEIGH6_ENTRIES,
	    .key_len = 16,
	    .hash_func = dp_hash_words, /* keys straight out of packets: any alignment */
	    .socket_id = (int)rte_socket_id(),
	    .extra_flag =
	        RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD,
	};

	sh->neigh6 = rte_hash_create(&hp);
	/* Key positions run up to entries + per-lcore caches: room for every one. */
	sh->nd = rte_zmalloc("pa_nd", sizeof(*sh->nd) * 2 * NEIGH6_ENTRIES, RTE_CACHE_LINE_SIZE);
	if (sh->neigh6 == NULL || sh->nd == NULL) {
		pa_log_err("dpdk: no memory for the IPv6 neighbour cache (rte_hash_create)");
		return PA_ERROR;
	}
	return PA_OK;
}

/* ---- entries ---- */

static struct dp_nd_entry *
entry_find(const struct dp_shared *sh, const uint8_t *ip)
{
	int32_t pos = rte_hash_lookup(sh->neigh6, ip);

	return pos >= 0 && pos < 2 * NEIGH6_ENTRIES ? &sh->nd[pos] : NULL;
}

static struct dp_nd_entry *
entry_make(struct dp_worker *dw, const uint8_t *ip)
{
	int32_t pos = rte_hash_add_key(dw->sh->neigh6, ip);

	if (pos < 0 || pos >= 2 * NEIGH6_ENTRIES) {
		dw->c.drops[DP_DROP_ND_CACHE_FULL]++;
		return NULL;
	}
	return &dw->sh->nd[pos];
}

/* ---- sending ---- */

/* 33:33 and the group's last 32 bits (RFC 2464 7). */
static void
group_mac(const uint8_t *group, struct rte_ether_addr *mac)
{
	mac->addr_bytes[0] = mac->addr_bytes[1] = 0x33;
	memcpy(&mac->addr_bytes[2], group + 12, 4);
}

void
net_nd_solicited_node(const uint8_t *a, uint8_t *group)
{
	static const uint8_t prefix[13] = {0xff, 0x02, [11] = 1, [12] = 0xff};

	memcpy(group, prefix, sizeof(prefix));
	memcpy(group + 13, a + 13, 3);
}

/*
 * An NS or NA in one frame to dmac: src (NULL: unspecified), dst, target,
 * our link-layer address as an option unless src is unspecified.
 */
static void
nd_send(struct dp_worker *dw, const struct rte_ether_addr *dmac, const uint8_t *src,
        const uint8_t *dst, uint8_t type, uint8_t flags, const uint8_t *target)
{
	struct rte_mbuf *m = dp_alloc(dw);
	unsigned l4 = 24 + (src != NULL ? 8 : 0);
	struct rte_ether_hdr *eh;
	struct rte_ipv6_hdr *ip;
	uint8_t *ic;
	uint16_t ck;

	if (m == NULL)
		return;
	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m,
	                                                (uint16_t)(sizeof(*eh) + sizeof(*ip) + l4));
	ip = (struct rte_ipv6_hdr *)(eh + 1);
	ic = (uint8_t *)(ip + 1);
	rte_ether_addr_copy(dmac, &eh->dst_addr);
	rte_ether_addr_copy(&dw->sh->mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip->vtc_flow = rte_cpu_to_be_32(0x60000000);
	ip->payload_len = rte_cpu_to_be_16((uint16_t)l4);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = ND_HOP_LIMIT;
	if (src != NULL)
		memcpy(ip->src_addr, src, 16);
	else
		memset(ip->src_addr, 0, 16);
	memcpy(ip->dst_addr, dst, 16);
	memset(ic, 0, l4);
	ic[0] = type;
	ic[4] = flags;
	memcpy(ic + 8, target, 16);
	if (src != NULL) {
		ic[24] = type == ND_NS ? ND_OPT_SLLA : ND_OPT_TLLA;
		ic[25] = 1; /* units of 8 octets */
		memcpy(ic + 26, &dw->sh->mac, RTE_ETHER_ADDR_LEN);
	}
	ck = net_cksum_ipv6_l4(ip, IPPROTO_ICMPV6, ic, (uint16_t)l4);
	memcpy(ic + 2, &ck, sizeof(ck));
	if (type == ND_NS)
		dw->c.nd_ns_out++;
	else
		dw->c.nd_na_out++;
	if (dw->ntx == DP_BURST)
		net_eth_tx_flush(dw);
	dw->tx[dw->ntx++] = m;
}

/* A multicast NS for target (resolution: 7.2.2), or unicast to mac (a probe: 7.3.3). */
static void
send_ns(struct dp_worker *dw, const uint8_t *target, const struct rte_ether_addr *mac)
{
	uint8_t group[16];
	struct rte_ether_addr gmac;
	const uint8_t *src = net_ipv6_src_for(dw->sh, target);

	if (mac != NULL) {
		nd_send(dw, mac, src, target, ND_NS, 0, target);
		return;
	}
	net_nd_solicited_node(target, group);
	group_mac(group, &gmac);
	nd_send(dw, &gmac, src, group, ND_NS, 0, target);
}

/* ---- input ---- */

/*
 * The link-layer address option of the wanted type in the options at
 * [p, end), validated (7.1.1, 7.1.2: no option of length 0).  -1: invalid,
 * 0: none, 1: found.
 */
static int
find_lla(const uint8_t *p, const uint8_t *end, uint8_t want, struct rte_ether_addr *mac)
{
	int found = 0;

	while (p < end) {
		unsigned olen;

		if (end - p < 2 || p[1] == 0)
			return -1;
		olen = 8u * p[1];
		if ((size_t)(end - p) < olen)
			return -1;
		if (p[0] == want && olen >= 8) {
			memcpy(mac, p + 2, RTE_ETHER_ADDR_LEN);
			found = 1;
		}
		p += olen;
	}
	return found;
}

static bool
unspecified(const uint8_t *a)
{
	static const uint8_t zero[16];

	return memcmp(a, zero, 16) == 0;
}

static void
dad_conflict(struct dp_worker *dw, int ai)
{
	uint8_t tentative = DP_ADDR6_TENTATIVE;

	dw->c.dad_conflicts++;
	__atomic_compare_exchange_n(&dw->sh->ip6[ai].state, &tentative, DP_ADDR6_DUPLICATE, false,
	                            __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

static void
ns_input(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ipv6_hdr *ip, const uint8_t *ic,
         uint16_t len)
{
	const struct rte_ether_hdr *eh = (const struct rte_ether_hdr *)ip - 1;
	const uint8_t *target = ic + 8;
	struct rte_ether_addr lla, dmac;
	int has_lla = find_lla(ic + 24, ic + len, ND_OPT_SLLA, &lla);
	bool unspec = unspecified(ip->src_addr);
	int ai;

	/* 7.1.1: from the unspecified address only to a solicited-node group, with no SLLA. */
	if (has_lla < 0 || (unspec && (ip->dst_addr[0] != 0xff || has_lla))) {
		dp_drop(dw, m, DP_DROP_ND_BAD);
		return;
	}
	ai = net_ipv6_addr_index(dw->sh, target);
	if (ai < 0) {
		dp_drop(dw, m, DP_DROP_ND_NOT_US);
		return;
	}
	dw->c.nd_ns_in++;
	if (__atomic_load_n(&dw->sh->ip6[ai].state, __ATOMIC_ACQUIRE) != DP_ADDR6_PREFERRED) {
		/* RFC 4862 5.4.3: another node is doing DAD for our tentative address. */
		if (unspec)
			dad_conflict(dw, ai);
		rte_pktmbuf_free(m);
		return;
	}
	if (unspec) {
		/* 7.2.4: to all-nodes, not solicited. */
		group_mac(all_nodes, &dmac);
		nd_send(dw, &dmac, target, all_nodes, ND_NA, NA_OVERRIDE, target);
		rte_pktmbuf_free(m);
		return;
	}
	if (has_lla) {
		/* 7.2.3: the sender's entry, STALE when new or changed. */
		struct dp_nd_entry *e = entry_find(dw->sh, ip->src_addr);

		if (e == NULL && rte_hash_count(dw->sh->neigh6) < NEIGH6_ENTRIES / 2)
			e = entry_make(dw, ip->src_addr);
		if (e != NULL)
			net_neigh_heard(dw, e, &lla, false);
	}
	dmac = has_lla ? lla : eh->src_addr;
	nd_send(dw, &dmac, target, ip->src_addr, ND_NA, NA_SOLICITED | NA_OVERRIDE, target);
	rte_pktmbuf_free(m);
}

static void
na_input(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ipv6_hdr *ip, const uint8_t *ic,
         uint16_t len)
{
	const uint8_t *target = ic + 8;
	uint8_t flags = ic[4];
	struct rte_ether_addr lla;
	int has_lla = find_lla(ic + 24, ic + len, ND_OPT_TLLA, &lla);
	struct dp_nd_entry *e;
	uint64_t w, nw;
	int ai;

	/* 7.1.2: a solicited advertisement is never to a group. */
	if (has_lla < 0 || (ip->dst_addr[0] == 0xff && (flags & NA_SOLICITED))) {
		dp_drop(dw, m, DP_DROP_ND_BAD);
		return;
	}
	dw->c.nd_na_in++;
	ai = net_ipv6_addr_index(dw->sh, target);
	if (ai >= 0) {
		/* Someone else claims one of our addresses (RFC 4862 5.4.4). */
		dad_conflict(dw, ai);
		rte_pktmbuf_free(m);
		return;
	}
	e = entry_find(dw->sh, target);
	if (e == NULL) {
		/* 7.2.5: no entry, nothing to update; unless we asked. */
		if (!has_lla || !net_neigh_pending_anywhere(dw->sh, DP_NEIGH_ND, target) ||
		    (e = entry_make(dw, target)) == NULL) {
			rte_pktmbuf_free(m);
			return;
		}
	}
	w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	if (net_neigh_state(w) == DP_ND_NONE) {
		/* As INCOMPLETE: the address it brings, REACHABLE if solicited. */
		if (has_lla)
			net_neigh_set(
			    dw, e,
			    net_neigh_word(
			        &lla, flags & NA_SOLICITED ? DP_ND_REACHABLE : DP_ND_STALE, 0));
	} else if (!(flags & NA_OVERRIDE) && has_lla &&
	           (w & DP_NEIGH_MAC_MASK) != (net_neigh_word(&lla, 0, 0) & DP_NEIGH_MAC_MASK)) {
		/* Not overriding a different address: only a REACHABLE entry turns STALE. */
		if (net_neigh_state(w) == DP_ND_REACHABLE)
			net_neigh_set(dw, e, (w & DP_NEIGH_MAC_MASK) | (uint64_t)DP_ND_STALE << 48);
	} else {
		nw = has_lla ? net_neigh_word(&lla, 0, 0) : (w & DP_NEIGH_MAC_MASK);
		if (flags & NA_SOLICITED)
			nw |= (uint64_t)DP_ND_REACHABLE << 48;
		else if (has_lla && (nw & DP_NEIGH_MAC_MASK) != (w & DP_NEIGH_MAC_MASK))
			nw |= (uint64_t)DP_ND_STALE << 48;
		else
			nw = w; /* nothing new */
		if (nw != w)
			net_neigh_set(dw, e, nw);
	}
	/* Resolved: this worker stops asking (others notice on their next retry). */
	net_neigh_pending_done(dw, DP_NEIGH_ND, target);
	rte_pktmbuf_free(m);
}

void
net_nd_input(struct dp_worker *dw, struct rte_mbuf *m, struct rte_ipv6_hdr *ip, uint16_t l4_len)
{
	const uint8_t *ic = rte_pktmbuf_mtod(m, const uint8_t *);

	/* 7.1.1, 7.1.2: from the link (hop limit 255), code 0, 24 octets at least, a unicast
	 * target. */
	if (ip->hop_limits != ND_HOP_LIMIT || ic[1] != 0 || l4_len < 24 || ic[8] == 0xff) {
		dp_drop(dw, m, DP_DROP_ND_BAD);
		return;
	}
	if (ic[0] == ND_NS)
		ns_input(dw, m, ip, ic, l4_len);
	else
		na_input(dw, m, ip, ic, l4_len);
}

/* ---- resolution ---- */

bool
net_nd_resolve(struct dp_worker *dw, const uint8_t *ip, struct rte_ether_addr *mac)
{
	struct dp_nd_entry *e;

	if (ip[0] == 0xff) {
		group_mac(ip, mac);
		return true;
	}
	e = entry_find(dw->sh, ip);
	switch (e != NULL ? net_neigh_use(dw, e, mac) : DP_NEIGH_RESOLVE) {
	case DP_NEIGH_OK:
		return true;
	case DP_NEIGH_PROBE:
		send_ns(dw, ip, mac); /* 7.3.3: unicast, to the MAC we have */
		return true;
	default:
		if (net_neigh_pending_add(dw, DP_NEIGH_ND, ip, ND_RETRANS_MS))
			send_ns(dw, ip, NULL); /* 7.2.2; net_nd_tick() retries */
		return false;
	}
}

/* ---- timers ---- */

/*
 * Whether the link is up, looked at every DAD_LINK_POLL_MS while DAD waits
 * for it (RFC 4862 5.4: DAD starts when the interface is enabled; an NS
 * sent on a link that is down proves nothing).  Start-up only: a PMD may
 * make a system call here (net_tap does).
 */
static bool
link_up(struct dp_worker *dw)
{
	struct rte_eth_link link;

	if (dw->dad_link_up)
		return true;
	if (dw->now_ms < dw->dad_link_ms)
		return false;
	dw->dad_link_ms = dw->now_ms + DAD_LINK_POLL_MS;
	if (rte_eth_link_get_nowait(dw->sh->port, &link) == 0 &&
	    link.link_status == RTE_ETH_LINK_UP)
		dw->dad_link_up = true;
	return dw->dad_link_up;
}

static void
dad_tick(struct dp_worker *dw)
{
	struct dp_shared *sh = dw->sh;
	char text[64];

	/*
	 * RFC 4862 5.4.2: join the solicited-node groups (MLD), then probe;
	 * the first message after the link comes up waits a random 0 to
	 * MAX_RTR_SOLICITATION_DELAY (RFC 4861 10: 1 s), so that nodes that
	 * start together do not all send at once.  No DAD: no wait.
	 */
	if (!dw->mld_joined) {
		if (!link_up(dw))
			return;
		if (!dw->dad_delay_set) {
			dw->dad_delay_set = true;
			dw->dad_start_ms =
			    dw->now_ms + (sh->dad_transmits > 0
			                      ? dp_worker_random_ms(dw, ND_MAX_RTR_SOL_DELAY_MS)
			                      : 0);
		}
		if (dw->now_ms < dw->dad_start_ms)
			return;
		dw->mld_joined = true;
		net_mld_report(dw, true);
	}

	for (unsigned i = 0; i < sh->nip6; i++) {
		struct dp_addr6 *ad = &sh->ip6[i];
		uint8_t st = __atomic_load_n(&ad->state, __ATOMIC_ACQUIRE);
		uint8_t tentative = DP_ADDR6_TENTATIVE;

		if (st == DP_ADDR6_TENTATIVE && ad->dad_sent < sh->dad_transmits &&
		    (ad->dad_sent == 0 || dw->now_ms - ad->dad_ms >= ND_RETRANS_MS)) {
			if (!link_up(dw))
				continue;
			uint8_t group[16];
			struct rte_ether_addr gmac;

			net_nd_solicited_node(ad->a, group);
			group_mac(group, &gmac);
			nd_send(dw, &gmac, NULL, group, ND_NS, 0, ad->a);
			ad->dad_sent++;
			ad->dad_ms = dw->now_ms;
		} else if (st == DP_ADDR6_TENTATIVE && dw->now_ms - ad->dad_ms >= ND_RETRANS_MS) {
			__atomic_compare_exchange_n(&ad->state, &tentative, DP_ADDR6_PREFERRED,
			                            false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
		} else if (st != DP_ADDR6_TENTATIVE && !ad->logged) {
			/* Once per address, at start-up: not in the steady state. */
			ad->logged = 1;
			inet_ntop(AF_INET6, ad->a, text, sizeof(text));
			if (st == DP_ADDR6_PREFERRED)
				pa_log_info("dpdk: IPv6 address %s/%u ready (DAD passed)", text,
				            ad->prefix);
			else
				pa_log_err("dpdk: IPv6 address %s/%u is in use on the link (DAD): "
				           "not used",
				           text, ad->prefix);
		}
	}
}

static const struct dp_nd_entry *
find_const(const struct dp_shared *sh, const uint8_t *a)
{
	return entry_find(sh, a);
}

/* A retry: the multicast solicitation again (7.2.2). */
static void
ask(struct dp_worker *dw, const uint8_t *a)
{
	send_ns(dw, a, NULL);
}

void
net_nd_tick(struct dp_worker *dw)
{
	static const struct dp_neigh_ops ops = {
	    .find = find_const,
	    .ask = ask,
	    .max_tries = ND_MAX_MULTICAST_SOLICIT,
	    .retrans_ms = ND_RETRANS_MS,
	};

	if (dw->sh->nip6 == 0)
		return;
	if (dw->id == 0)
		dad_tick(dw);
	net_neigh_pending_tick(dw, DP_NEIGH_ND, &ops);
}
