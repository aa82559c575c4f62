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
#include "dataplane/dpdk_backend.h"

#define RX_DESC 1024
#define TX_DESC 1024
#define POOL_CACHE 256
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

int
dpdk_global_init(const struct pa_config *config)
{
	struct dp_shared *sh;
	uint16_t port;
	bool found = false;
	char ip[INET_ADDRSTRLEN];

	if (config->workers > DP_MAX_WORKERS) {
		pa_log_err("dpdk: at most %u workers", DP_MAX_WORKERS);
		return PA_ERROR;
	}
	sh = rte_zmalloc("pa_dp_shared", sizeof(*sh), RTE_CACHE_LINE_SIZE);
	if (sh == NULL) {
		pa_log_err("dpdk: out of memory");
		return PA_ERROR;
	}
	RTE_ETH_FOREACH_DEV(port)
	{
		if (!found) {
			sh->port = port;
			found = true;
		}
	}
	if (!found) {
		pa_log_err("dpdk: no port: give a NIC or a vdev in dpdk.eal, e.g. "
		           "\"--no-huge -m 512 --vdev=net_tap0,iface=pa0\"");
		return PA_ERROR;
	}
	sh->nworkers = config->workers;
	sh->ip = config->dpdk_addr;
	sh->mask = config->dpdk_prefix == 0 ? 0 : htonl(~0u << (32 - config->dpdk_prefix));
	sh->gateway = config->dpdk_gateway_addr;
	sh->listen_port = ((const struct sockaddr_in *)&config->listen_addr)->sin_port;
	sh->msl_ms = config->dpdk_msl_ms;
	sh->syn_backlog = config->dpdk_syn_backlog;
	sh->syn_per_source = config->dpdk_syn_per_source;
	sh->max_conns = config->dpdk_max_conns;
	sh->conn_mbufs = config->dpdk_conn_mbufs;
	sh->idle_sleep_us = config->dpdk_idle_sleep_us;
	sh->tsc_per_ms = rte_get_tsc_hz() / 1000;
	if (dp_impair_parse(config->dpdk_impair, &sh->impair) != PA_OK) {
		pa_log_err("config key 'dpdk.impair': '%s' is not loss=P,reorder=P,duplicate=P,"
		           "delay=MS",
		           config->dpdk_impair);
		return PA_ERROR;
	}
	if (config->listen_addr.ss_family != AF_INET) {
		pa_log_err("config key 'listen': the dpdk backend serves IPv4 only");
		return PA_ERROR;
	}
	if (getrandom(&sh->secret, sizeof(sh->secret), 0) != (ssize_t)sizeof(sh->secret)) {
		pa_log_err("dpdk: getrandom() failed: no secret for ISNs and cookies");
		return PA_ERROR;
	}
	sh->pool =
	    rte_pktmbuf_pool_create("pa_mbufs", config->dpdk_mbufs, POOL_CACHE, DP_MBUF_PRIV_SIZE,
	                            RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	if (sh->pool == NULL) {
		pa_log_err(
		    "dpdk: rte_pktmbuf_pool_create(%u mbufs) failed: %s; lower dpdk.mbufs or "
		    "give EAL more memory (-m)",
		    config->dpdk_mbufs, rte_strerror(rte_errno));
		return PA_ERROR;
	}
	for (unsigned i = 0; i < sh->nworkers; i++) {
		char name[RTE_RING_NAMESIZE];

		snprintf(name, sizeof(name), "pa_steer_%u", i);
		sh->steer[i] =
		    rte_ring_create(name, STEER_RING_SIZE, (int)rte_socket_id(), RING_F_SC_DEQ);
		if (sh->steer[i] == NULL) {
			pa_log_err("dpdk: rte_ring_create(%s) failed: %s", name,
			           rte_strerror(rte_errno));
			return PA_ERROR;
		}
	}
	if (net_arp_create(sh) != PA_OK || setup_port(sh, sh->nworkers) != PA_OK)
		return PA_ERROR;
	inet_ntop(AF_INET, &sh->ip, ip, sizeof(ip));
	pa_log_info("dpdk: engine address %s/%u port %u, mac " RTE_ETHER_ADDR_PRT_FMT, ip,
	            config->dpdk_prefix, ntohs(sh->listen_port), RTE_ETHER_ADDR_BYTES(&sh->mac));
	shared = sh;
	return PA_OK;
}

void
dpdk_global_fini(void)
{
	if (shared == NULL)
		return;
	rte_eth_dev_stop(shared->port);
	rte_eth_dev_close(shared->port);
	for (unsigned i = 0; i < shared->nworkers; i++)
		rte_ring_free(shared->steer[i]);
	rte_hash_free(shared->neigh);
	rte_mempool_free(shared->pool);
	rte_free(shared);
	shared = NULL;
}
