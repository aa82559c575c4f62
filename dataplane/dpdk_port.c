/*
 * dpdk_port.c: the DPDK port, its queues and the dataplane's shared objects.
 *
 * One port (the first EAL offers: a NIC, or a vdev from dpdk.eal such as
 * net_tap), one RX and one TX queue per worker, one pktmbuf pool with a
 * per-lcore cache, sized from dpdk.mbufs so it fits the memory EAL was given
 * (-m with --no-huge).  Checksum offloads are enabled when the port reports
 * them; the stack computes checksums itself otherwise.  Hardware RSS
 * (dpdk.rss) when the port can: a symmetric Toeplitz key and a redirection
 * table over the workers' queues, both read back into struct dp_shared.
 * Any failure is logged with its reason and returned, and main() exits
 * through rte_exit().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/dpdk_backend.h"

#define RX_DESC 1024
#define TX_DESC 1024
/*
 * Per-lcore mempool cache: 8 bursts of DP_BURST.  A worker takes up to 32
 * mbufs per RX burst and frees up to 32 per TX burst; DPDK refills an empty
 * cache with its size plus the request and flushes it down to its size once
 * it holds 1.5 times that, so a worker's steady churn stays in its own cache
 * and reaches the shared ring once every few bursts, not on each.  DPDK caps
 * a cache at RTE_MEMPOOL_CACHE_MAX_SIZE and at n / 1.5 (dpdk.mbufs >= 1023).
 */
#define POOL_CACHE (8 * DP_BURST)
#define POOL_CACHE_HELD (POOL_CACHE * 3 / 2) /* what one lcore's cache may hold */
_Static_assert(POOL_CACHE % DP_BURST == 0 && POOL_CACHE <= RTE_MEMPOOL_CACHE_MAX_SIZE &&
                   POOL_CACHE_HELD <= 1023,
               "the mempool cache holds whole bursts and fits the smallest pool");
#define STEER_RING_SIZE 2048

/* The dataplane's one explicitly shared object (dp.h). */
static struct dp_shared *shared;

struct dp_shared *
dpdk_shared(void)
{
	return shared;
}

/* Microsoft's RSS specification's key length, for a PMD that names none (net_null). */
#define RSS_KEY_STD 40

/*
 * Why the port cannot do hardware RSS as the stack needs it, NULL when it
 * can: a Toeplitz hash of IPv4 TCP's 4-tuple that net_rss_hash() can
 * reproduce, over a redirection table the stack can write and read back.
 * net_tap, for one, reports hash types and a key size but no table: its
 * queues are chosen by the kernel, not by a key we know.
 */
/* The hash types asked for: IPv4 TCP, and IPv6 TCP when the port can. */
static uint64_t
rss_types(const struct rte_eth_dev_info *info)
{
	return RTE_ETH_RSS_NONFRAG_IPV4_TCP |
	       (info->flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV6_TCP);
}

static const char *
rss_unsupported(const struct rte_eth_dev_info *info)
{
	if ((info->flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_TCP) == 0)
		return "the port does not hash IPv4 TCP";
	if (info->reta_size == 0)
		return "the port has no redirection table";
	if (info->reta_size > DP_RETA_MAX)
		return "the port's redirection table has more than 2048 entries";
	if (info->hash_key_size > DP_RSS_KEY_MAX || info->hash_key_size % 4 != 0 ||
	    (info->hash_key_size != 0 && info->hash_key_size < 16))
		return "the port's hash key is of a length the stack cannot compute with";
	return NULL;
}

/*
 * After rte_eth_dev_start(): writes a redirection table that deals the
 * buckets out to the queues in turn, reads the table and the key back (what
 * the port holds is what decides, not what was asked for) and installs them
 * for net_flow_owner().  The reason on failure, NULL on success.
 */
static const char *
rss_program(struct dp_shared *sh, const struct rte_eth_dev_info *info, unsigned nq,
            uint8_t *want_key, unsigned key_len)
{
	struct rte_eth_rss_conf want = {
	    .rss_key = want_key, .rss_key_len = (uint8_t)key_len, .rss_hf = rss_types(info)};
	struct rte_eth_rss_reta_entry64 rc[DP_RETA_MAX / RTE_ETH_RETA_GROUP_SIZE];
	uint8_t reta[DP_RETA_MAX], key[DP_RSS_KEY_MAX] __rte_aligned(4) = {0};
	struct rte_eth_rss_conf conf = {.rss_key = key, .rss_key_len = (uint8_t)key_len};
	unsigned n = info->reta_size;
	int rc_key;
	const uint64_t partial = RTE_ETH_RSS_L3_SRC_ONLY | RTE_ETH_RSS_L3_DST_ONLY |
	                         RTE_ETH_RSS_L4_SRC_ONLY | RTE_ETH_RSS_L4_DST_ONLY;

	memset(rc, 0, sizeof(rc));
	for (unsigned i = 0; i < n; i++) {
		rc[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
		rc[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] =
		    (uint16_t)(i % nq);
	}
	if (rte_eth_dev_rss_reta_update(sh->port, rc, (uint16_t)n) != 0)
		return "the port refused the redirection table";
	for (unsigned i = 0; i < n; i++)
		rc[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = UINT16_MAX;
	if (rte_eth_dev_rss_reta_query(sh->port, rc, (uint16_t)n) != 0)
		return "the port cannot report its redirection table";
	/*
	 * Some PMDs take the key only here, not from rte_eth_dev_configure();
	 * one that takes it nowhere keeps its own, which the read-back below
	 * then installs: the owner is computed from the received direction, so
	 * any key the port really uses is correct, only not symmetric.
	 */
	if ((rc_key = rte_eth_dev_rss_hash_update(sh->port, &want)) != 0)
		pa_log_notice("dpdk: port %u did not take the symmetric RSS key (%s)", sh->port,
		              rte_strerror(-rc_key));
	for (unsigned i = 0; i < n; i++) {
		uint16_t q = rc[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];

		if (q >= nq)
			return "the port's redirection table names a queue no worker polls";
		reta[i] = (uint8_t)q;
	}
	if (rte_eth_dev_rss_hash_conf_get(sh->port, &conf) != 0)
		return "the port cannot report its hash key";
	if ((conf.rss_hf & RTE_ETH_RSS_NONFRAG_IPV4_TCP) == 0)
		return "the port does not hash IPv4 TCP as configured";
	if ((conf.rss_hf & partial) != 0)
		return "the port hashes only part of the 4-tuple";
	/* IPv6 TCP in hardware too when the port hashes it; else software (net_steer.c). */
	sh->rss6 = (conf.rss_hf & RTE_ETH_RSS_NONFRAG_IPV6_TCP) != 0;
	if (net_rss_install(sh, key, key_len, reta, n) != PA_OK)
		return "the port's key or table cannot be installed";
	return NULL;
}

static int
setup_port(struct dp_shared *sh, unsigned nq, enum dp_rss_mode rss)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf = {0};
	uint16_t nrx = RX_DESC, ntx = TX_DESC, mtu = 1500;
	unsigned held, key_len = 0;
	char name[RTE_ETH_NAME_MAX_LEN] = "";
	uint8_t key[DP_RSS_KEY_MAX];
	const char *no_rss = NULL; /* why software steering */
	int rc;

	rc = rte_eth_dev_info_get(sh->port, &info);
	if (rc != 0) {
		pa_log_err("dpdk: rte_eth_dev_info_get(port %u) failed: %s", sh->port,
		           rte_strerror(-rc));
		return PA_ERROR;
	}
	rte_eth_dev_get_name_by_port(sh->port, name);
	if (info.max_rx_queues < nq || info.max_tx_queues < nq) {
		pa_log_err("dpdk: port %u (%s) has %u RX / %u TX queues, %u workers need %u",
		           sh->port, name, info.max_rx_queues, info.max_tx_queues, nq, nq);
		return PA_ERROR;
	}
	if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) &&
	    (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TCP_CKSUM))
		conf.rxmode.offloads |=
		    RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	sh->tx_ip_cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
	sh->tx_tcp_cksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) != 0;
	if (sh->tx_ip_cksum)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	if (sh->tx_tcp_cksum)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	/* dpdk.rss: what the port offers decides under auto; on insists; off declines. */
	if (rss == DP_RSS_OFF)
		no_rss = "dpdk.rss=off";
	else if ((no_rss = rss_unsupported(&info)) == NULL && nq == 1 && rss == DP_RSS_AUTO)
		no_rss = "one queue: nothing to spread";
	if (no_rss != NULL && rss == DP_RSS_ON) {
		pa_log_err("dpdk: dpdk.rss=on but port %u (%s, %s) cannot do hardware RSS: %s",
		           sh->port, name, info.driver_name, no_rss);
		return PA_ERROR;
	}
	if (no_rss == NULL) {
		key_len = info.hash_key_size != 0 ? info.hash_key_size : RSS_KEY_STD;
		net_rss_symmetric_key(key, key_len);
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_key = key;
		conf.rx_adv_conf.rss_conf.rss_key_len = (uint8_t)key_len;
		conf.rx_adv_conf.rss_conf.rss_hf = rss_types(&info);
		/* The port's hash in each mbuf tells a misqueued segment's reason (net_eth.c). */
		if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH)
			conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
	}
	rc = rte_eth_dev_configure(sh->port, (uint16_t)nq, (uint16_t)nq, &conf);
	if (rc != 0 && no_rss == NULL && rss == DP_RSS_AUTO) {
		pa_log_warning("dpdk: port %u refused RSS (%s): software steering", sh->port,
		               rte_strerror(-rc));
		no_rss = "the port refused the RSS configuration";
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE;
		conf.rxmode.offloads &= ~RTE_ETH_RX_OFFLOAD_RSS_HASH;
		memset(&conf.rx_adv_conf.rss_conf, 0, sizeof(conf.rx_adv_conf.rss_conf));
		rc = rte_eth_dev_configure(sh->port, (uint16_t)nq, (uint16_t)nq, &conf);
	}
	if (rc != 0) {
		pa_log_err("dpdk: rte_eth_dev_configure(port %u) failed: %s", sh->port,
		           rte_strerror(-rc));
		return PA_ERROR;
	}
	rte_eth_dev_adjust_nb_rx_tx_desc(sh->port, &nrx, &ntx);
	/*
	 * What the port and the caches may hold at once must leave mbufs for
	 * received data: a NIC keeps one in every RX descriptor and a sent frame
	 * until its TX descriptor is reclaimed, each lcore's cache holds up to
	 * POOL_CACHE_HELD, each worker a TX burst.  A pool short of that does not
	 * fail, it starves RX (the port drops every frame), so refuse to start,
	 * and require one connection's dpdk.conn_mbufs per worker beyond it.
	 */
	held = nq * ((unsigned)nrx + ntx + DP_BURST) + rte_lcore_count() * POOL_CACHE_HELD;
	if (sh->pool->size < held + nq * sh->conn_mbufs) {
		pa_log_err("dpdk: dpdk.mbufs=%u is too few: %u queue pairs of %u RX and %u TX "
		           "descriptors and %u lcore caches hold up to %u, and each worker needs "
		           "dpdk.conn_mbufs=%u more; give at least %u (and EAL the memory, -m)",
		           sh->pool->size, nq, nrx, ntx, rte_lcore_count(), held, sh->conn_mbufs,
		           held + nq * sh->conn_mbufs);
		return PA_ERROR;
	}
	pa_log_info("dpdk: %u mbufs: up to %u in descriptors and per-lcore caches, %u for "
	            "received data",
	            sh->pool->size, held, sh->pool->size - held);
	for (unsigned q = 0; q < nq; q++) {
		rc = rte_eth_rx_queue_setup(sh->port, (uint16_t)q, nrx, rte_socket_id(), NULL,
		                            sh->pool);
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(sh->port, (uint16_t)q, ntx, rte_socket_id(),
			                            NULL);
		if (rc != 0) {
			pa_log_err("dpdk: queue %u setup on port %u failed: %s", q, sh->port,
			           rte_strerror(-rc));
			return PA_ERROR;
		}
	}
	rc = rte_eth_dev_start(sh->port);
	if (rc != 0) {
		pa_log_err("dpdk: rte_eth_dev_start(port %u) failed: %s", sh->port,
		           rte_strerror(-rc));
		return PA_ERROR;
	}
	/*
	 * Software steering stays correct whatever a port in RSS mode does, so
	 * under auto a table or key that cannot be read back only costs the
	 * ring hops; under on it is refused.
	 */
	if (no_rss == NULL && (no_rss = rss_program(sh, &info, nq, key, key_len)) != NULL &&
	    rss == DP_RSS_ON) {
		pa_log_err("dpdk: dpdk.rss=on but port %u (%s, %s) cannot do hardware RSS: %s",
		           sh->port, name, info.driver_name, no_rss);
		return PA_ERROR;
	}
	if (sh->rss) {
		uint8_t sym[DP_RSS_KEY_MAX];

		net_rss_symmetric_key(sym, sh->rss_key_len);
		snprintf(sh->steering, sizeof(sh->steering),
		         "rss=on (hardware: Toeplitz with a %u-octet %s key, %u-entry redirection "
		         "table over %u queues)",
		         sh->rss_key_len,
		         memcmp(sym, sh->rss_key, sh->rss_key_len) == 0 ? "symmetric"
		                                                        : "port's own",
		         sh->reta_size, nq);
	} else {
		snprintf(sh->steering, sizeof(sh->steering), "rss=off (software steering: %s)",
		         no_rss);
	}
	rte_eth_dev_set_link_up(sh->port);
	rte_eth_macaddr_get(sh->port, &sh->mac);
	if (rte_eth_dev_get_mtu(sh->port, &mtu) != 0 || mtu < 576)
		mtu = 1500;
	sh->mtu = mtu;
	snprintf(sh->port_desc, sizeof(sh->port_desc), "port %u (%s, %s), %u queue pairs, mtu %u",
	         sh->port, name, info.driver_name, nq, mtu);
	pa_log_info(
	    "dpdk: port %u (%s) up, %u queue pairs, checksum offload rx=%s tx ip=%s tcp=%s, "
	    "mtu %u, %s",
	    sh->port, name, nq,
	    (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_TCP_CKSUM) ? "yes" : "no",
	    sh->tx_ip_cksum ? "yes" : "no", sh->tx_tcp_cksum ? "yes" : "no", mtu, sh->steering);
	return PA_OK;
}

/*
 * IPv6: the link-local address from the MAC (modified EUI-64, RFC 4291
 * 2.5.1, appendix A) first, then dpdk.ip6's, all tentative until DAD
 * (net_nd.c); the port told to pass the groups they make us join
 * (all-nodes, each solicited-node group), or all multicast when it cannot
 * take a list.
 */
static int
setup_ipv6(struct dp_shared *sh, const struct dp_port_conf *pc)
{
	struct rte_ether_addr groups[DP_MAX_ADDRS6 + 1];
	struct dp_addr6 *ll = &sh->ip6[0];
	const uint8_t *mac = sh->mac.addr_bytes;
	static const uint8_t zero[16];
	int rc;

	if (sh->mtu < 1280) {
		pa_log_err("dpdk: the port's MTU %u is below IPv6's 1280 (RFC 8200 5)", sh->mtu);
		return PA_ERROR;
	}
	if (net_nd_create(sh) != PA_OK)
		return PA_ERROR;
	memset(ll, 0, sizeof(*ll));
	ll->a[0] = 0xfe;
	ll->a[1] = 0x80;
	ll->a[8] = mac[0] ^ 0x02;
	ll->a[9] = mac[1];
	ll->a[10] = mac[2];
	ll->a[11] = 0xff;
	ll->a[12] = 0xfe;
	ll->a[13] = mac[3];
	ll->a[14] = mac[4];
	ll->a[15] = mac[5];
	ll->prefix = 64;
	sh->nip6 = 1;
	for (unsigned i = 0; i < pc->nip6 && sh->nip6 < DP_MAX_ADDRS6; i++) {
		struct dp_addr6 *ad = &sh->ip6[sh->nip6++];

		memset(ad, 0, sizeof(*ad));
		memcpy(ad->a, pc->ip6[i], 16);
		ad->prefix = pc->prefix6[i];
	}
	sh->dad_transmits = pc->dad_transmits;
	if (sh->dad_transmits == 0)
		for (unsigned i = 0; i < sh->nip6; i++)
			sh->ip6[i].state = DP_ADDR6_PREFERRED;
	sh->has_gateway6 = memcmp(pc->gateway6, zero, 16) != 0;
	memcpy(sh->gateway6, pc->gateway6, 16);
	memset(groups, 0, sizeof(groups));
	groups[0].addr_bytes[0] = groups[0].addr_bytes[1] = 0x33;
	groups[0].addr_bytes[5] = 1;
	for (unsigned i = 0; i < sh->nip6; i++) {
		groups[i + 1].addr_bytes[0] = groups[i + 1].addr_bytes[1] = 0x33;
		groups[i + 1].addr_bytes[2] = 0xff;
		memcpy(&groups[i + 1].addr_bytes[3], sh->ip6[i].a + 13, 3);
	}
	rc = rte_eth_dev_set_mc_addr_list(sh->port, groups, sh->nip6 + 1);
	if (rc != 0 && (rc = rte_eth_allmulticast_enable(sh->port)) != 0 && rc != -ENOTSUP)
		pa_log_warning("dpdk: port %u takes neither a multicast list nor all multicast "
		               "(%s): Neighbor Discovery may not reach it",
		               sh->port, rte_strerror(-rc));
	for (unsigned i = 0; i < sh->nip6; i++) {
		char text[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, sh->ip6[i].a, text, sizeof(text));
		pa_log_info("dpdk: IPv6 address %s/%u tentative (DAD)", text, sh->ip6[i].prefix);
	}
	return PA_OK;
}

struct dp_shared *
dp_port_open(const struct dp_port_conf *pc)
{
	struct dp_shared *sh;
	uint16_t port;
	bool found = false;
	char ip[INET_ADDRSTRLEN], more[32] = "";

	if (pc->nworkers == 0 || pc->nworkers > DP_MAX_WORKERS) {
		pa_log_err("dpdk: 1 to %u workers", DP_MAX_WORKERS);
		return NULL;
	}
	sh = rte_zmalloc("pa_dp_shared", sizeof(*sh), RTE_CACHE_LINE_SIZE);
	if (sh == NULL) {
		pa_log_err("dpdk: out of memory");
		return NULL;
	}
	RTE_ETH_FOREACH_DEV(port)
	{
		if (!found) {
			sh->port = port;
			found = true;
		}
	}
	if (!found) {
		pa_log_err("dpdk: no port: give a NIC or a vdev in the EAL arguments, e.g. "
		           "\"--no-huge -m 512 --vdev=net_tap0,iface=pa0\"");
		goto fail;
	}
	sh->nworkers = pc->nworkers;
	sh->ip = pc->ip;
	sh->mask = pc->prefix == 0 ? 0 : htonl(~0u << (32 - pc->prefix));
	sh->ip_extra = pc->ip_count > 1 ? pc->ip_count - 1 : 0;
	/*
	 * Every address on the link of the first (net_next_hop() and ARP treat
	 * them alike) and no wrap past 255.255.255.255 (dp_is_local_addr()).
	 */
	if (sh->ip_extra >= DP_MAX_ADDRS || ntohl(pc->ip) + sh->ip_extra < ntohl(pc->ip) ||
	    ((htonl(ntohl(pc->ip) + sh->ip_extra) ^ pc->ip) & sh->mask) != 0) {
		inet_ntop(AF_INET, &pc->ip, ip, sizeof(ip));
		pa_log_err("dpdk: %u addresses from %s: at most %u, all in the /%u", pc->ip_count,
		           ip, DP_MAX_ADDRS, pc->prefix);
		goto fail;
	}
	sh->gateway = pc->gateway;
	sh->listen_port = pc->listen_port;
	sh->msl_ms = pc->msl_ms;
	sh->syn_backlog = pc->syn_backlog;
	sh->syn_per_source = pc->syn_per_source;
	sh->max_conns = pc->max_conns;
	sh->conn_mbufs = pc->conn_mbufs;
	sh->idle_sleep_us = pc->idle_sleep_us;
	sh->challenge_ack_limit = pc->challenge_ack_limit;
	sh->tsc_per_ms = rte_get_tsc_hz() / 1000;
	if (dp_impair_parse(pc->impair != NULL ? pc->impair : "", &sh->impair) != PA_OK) {
		pa_log_err("config key 'dpdk.impair': '%s' is not loss=P,reorder=P,duplicate=P,"
		           "delay=MS",
		           pc->impair);
		goto fail;
	}
	if (getrandom(&sh->secret, sizeof(sh->secret), 0) != (ssize_t)sizeof(sh->secret)) {
		pa_log_err("dpdk: getrandom() failed: no secret for ISNs and cookies");
		goto fail;
	}
	sh->pool = rte_pktmbuf_pool_create("pa_mbufs", pc->mbufs, POOL_CACHE, DP_MBUF_PRIV_SIZE,
	                                   RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	if (sh->pool == NULL) {
		pa_log_err(
		    "dpdk: rte_pktmbuf_pool_create(%u mbufs) failed: %s; lower dpdk.mbufs or "
		    "give EAL more memory (-m)",
		    pc->mbufs, rte_strerror(rte_errno));
		goto fail;
	}
	for (unsigned i = 0; i < sh->nworkers; i++) {
		char name[RTE_RING_NAMESIZE];

		snprintf(name, sizeof(name), "pa_steer_%u", i);
		sh->steer[i] =
		    rte_ring_create(name, STEER_RING_SIZE, (int)rte_socket_id(), RING_F_SC_DEQ);
		if (sh->steer[i] == NULL) {
			pa_log_err("dpdk: rte_ring_create(%s) failed: %s", name,
			           rte_strerror(rte_errno));
			goto fail;
		}
	}
	if (net_arp_create(sh) != PA_OK || setup_port(sh, sh->nworkers, pc->rss) != PA_OK)
		goto fail;
	if (pc->nip6 > 0 && setup_ipv6(sh, pc) != PA_OK)
		goto fail;
	inet_ntop(AF_INET, &sh->ip, ip, sizeof(ip));
	/* One address (pigeond): the line it always logged. */
	if (sh->ip_extra > 0)
		snprintf(more, sizeof(more), " and the %u after it", sh->ip_extra);
	if (sh->ip != 0)
		pa_log_info("dpdk: engine address %s/%u%s port %u, mac " RTE_ETHER_ADDR_PRT_FMT, ip,
		            pc->prefix, more, ntohs(sh->listen_port),
		            RTE_ETHER_ADDR_BYTES(&sh->mac));
	else
		pa_log_info("dpdk: no IPv4 address, IPv6 only, mac " RTE_ETHER_ADDR_PRT_FMT,
		            RTE_ETHER_ADDR_BYTES(&sh->mac));
	return sh;
fail:
	/* Start-up only: the process exits on failure; what was made goes with EAL. */
	return NULL;
}

int
dpdk_global_init(const struct pa_config *config)
{
	struct dp_port_conf pc = {
	    .nworkers = config->workers,
	    .ip = config->dpdk_addr,
	    .prefix = config->dpdk_prefix,
	    .gateway = config->dpdk_gateway_addr,
	    .listen_port = ((const struct sockaddr_in *)&config->listen_addr)->sin_port,
	    .msl_ms = config->dpdk_msl_ms,
	    .syn_backlog = config->dpdk_syn_backlog,
	    .syn_per_source = config->dpdk_syn_per_source,
	    .max_conns = config->dpdk_max_conns,
	    .conn_mbufs = config->dpdk_conn_mbufs,
	    .mbufs = config->dpdk_mbufs,
	    .idle_sleep_us = config->dpdk_idle_sleep_us,
	    .challenge_ack_limit = config->dpdk_challenge_ack_limit,
	    .impair = config->dpdk_impair,
	    .rss = config->dpdk_rss == PA_DPDK_RSS_ON    ? DP_RSS_ON
	           : config->dpdk_rss == PA_DPDK_RSS_OFF ? DP_RSS_OFF
	                                                 : DP_RSS_AUTO,
	};

	/* Either family names the port; the engine listens on it over both (with dpdk.ip6). */
	if (config->listen_addr.ss_family == AF_INET6) {
		if (config->ndpdk_ip6 == 0) {
			pa_log_err("config key 'listen': an IPv6 address needs dpdk.ip6");
			return PA_ERROR;
		}
		pc.listen_port = ((const struct sockaddr_in6 *)&config->listen_addr)->sin6_port;
	}
	pc.nip6 = config->ndpdk_ip6;
	for (unsigned i = 0; i < config->ndpdk_ip6 && i < DP_MAX_ADDRS6 - 1; i++) {
		memcpy(pc.ip6[i], config->dpdk_ip6[i].addr, 16);
		pc.prefix6[i] = (uint8_t)config->dpdk_ip6[i].prefix;
	}
	memcpy(pc.gateway6, config->dpdk_gateway6, 16);
	pc.dad_transmits = config->dpdk_dad_transmits;
	shared = dp_port_open(&pc);
	return shared != NULL ? PA_OK : PA_ERROR;
}

void
dp_port_close(struct dp_shared *sh)
{
	if (sh == NULL)
		return;
	rte_eth_dev_stop(sh->port);
	rte_eth_dev_close(sh->port);
	for (unsigned i = 0; i < sh->nworkers; i++)
		rte_ring_free(sh->steer[i]);
	rte_hash_free(sh->neigh);
	rte_free(sh->arp_e);
	rte_hash_free(sh->neigh6);
	rte_free(sh->nd);
	rte_mempool_free(sh->pool);
	rte_free(sh);
}

void
dpdk_global_fini(void)
{
	dp_port_close(shared);
	shared = NULL;
}
