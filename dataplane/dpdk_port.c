/*
 * dpdk_port.c: the DPDK port, its queues and the dataplane's shared objects.
 *
 * One port (the first EAL offers: a NIC, or a vdev from dpdk.eal such as
 * net_tap), one RX and one TX queue per worker, one pktmbuf pool with a
 * per-lcore cache, sized from dpdk.mbufs so it fits the memory EAL was given
 * (-m with --no-huge).  Checksum offloads are enabled when the port reports
 * them; the stack computes checksums itself otherwise.  Any failure is
 * logged with its reason and returned, and main() exits through rte_exit().
 */
#include <arpa/inet.h>
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

static int
setup_port(struct dp_shared *sh, unsigned nq)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf = {0};
	uint16_t nrx = RX_DESC, ntx = TX_DESC, mtu = 1500;
	unsigned held;
	char name[RTE_ETH_NAME_MAX_LEN] = "";
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
	rc = rte_eth_dev_configure(sh->port, (uint16_t)nq, (uint16_t)nq, &conf);
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
	rte_eth_dev_set_link_up(sh->port);
	rte_eth_macaddr_get(sh->port, &sh->mac);
	if (rte_eth_dev_get_mtu(sh->port, &mtu) != 0 || mtu < 576)
		mtu = 1500;
	sh->mtu = mtu;
	pa_log_info(
	    "dpdk: port %u (%s) up, %u queue pairs, checksum offload rx=%s tx ip=%s tcp=%s, "
	    "mtu %u",
	    sh->port, name, nq, conf.rxmode.offloads ? "yes" : "no", sh->tx_ip_cksum ? "yes" : "no",
	    sh->tx_tcp_cksum ? "yes" : "no", mtu);
	return PA_OK;
}

struct dp_shared *
dp_port_open(const struct dp_port_conf *pc)
{
	struct dp_shared *sh;
	uint16_t port;
	bool found = false;
	char ip[INET_ADDRSTRLEN];

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
	if (net_arp_create(sh) != PA_OK || setup_port(sh, sh->nworkers) != PA_OK)
		goto fail;
	inet_ntop(AF_INET, &sh->ip, ip, sizeof(ip));
	pa_log_info("dpdk: engine address %s/%u port %u, mac " RTE_ETHER_ADDR_PRT_FMT, ip,
	            pc->prefix, ntohs(sh->listen_port), RTE_ETHER_ADDR_BYTES(&sh->mac));
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
	};

	if (config->listen_addr.ss_family != AF_INET) {
		pa_log_err("config key 'listen': the dpdk backend serves IPv4 only");
		return PA_ERROR;
	}
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
	rte_mempool_free(sh->pool);
	rte_free(sh);
}

void
dpdk_global_fini(void)
{
	dp_port_close(shared);
	shared = NULL;
}
