/*
 * dp_stack.h: the user-space TCP/IP stack as a library, for any program that
 * runs it on its own lcores (pigeond's DPDK backend, pigeon-loadgen).
 *
 * After rte_eal_init(): dp_port_open() sets up the first port EAL offers, one
 * queue pair per worker, the mbuf pool, the steering rings and the neighbour
 * table; dp_worker_create() makes one worker's cache-aligned struct dp_worker
 * bound to an application (struct tcp_app_ops).  The worker's lcore then
 * loops: dp_worker_clock(), net_eth_poll(), the application's output,
 * dp_worker_timers(), net_eth_tx_flush().  Nothing here blocks or makes a
 * system call in that loop.
 */
#ifndef PA_DP_STACK_H
#define PA_DP_STACK_H

#include <stdint.h>

#include <rte_cycles.h>

#include "dataplane/dp.h"

struct tcp_app_ops;

/* dpdk.rss (docs/dataplane.md, Steering); 0 is auto, so a zeroed conf gets auto. */
enum dp_rss_mode {
	DP_RSS_AUTO, /* hardware RSS when the port can, else software steering */
	DP_RSS_ON,   /* hardware RSS or dp_port_open() fails, saying why */
	DP_RSS_OFF,  /* software steering */
};

struct dp_port_conf {
	unsigned nworkers;
	uint32_t ip; /* network order; 0: no IPv4 (pigeon-loadgen over IPv6 only) */
	/*
	 * ip and the ip_count - 1 addresses after it are all ours (ARP, IPv4
	 * input, active opens spread over them: each adds a local port range
	 * towards one server port); all on the prefix's link.  0 or 1: ip alone
	 * (pigeond).  At most DP_MAX_ADDRS.
	 */
	unsigned ip_count;
	unsigned prefix;      /* on-link prefix length */
	uint32_t gateway;     /* network order; 0: none */
	uint16_t listen_port; /* network order; 0: no listener (active opens only) */
	uint32_t msl_ms;      /* TIME_WAIT lasts 2*MSL; never 0 */
	unsigned syn_backlog, syn_per_source, max_conns, conn_mbufs, mbufs, idle_sleep_us;
	unsigned challenge_ack_limit; /* RFC 5961 7: per worker per second; 0: no limit */
	const char *impair;           /* dpdk.impair syntax, tests only; NULL or "": off */
	/*
	 * IPv6 (dpdk.ip6, dpdk.gateway6): nip6 addresses with their on-link
	 * prefixes; the link-local one (from the MAC) is added; 0: no IPv6.
	 */
	unsigned nip6;
	uint8_t ip6[DP_MAX_ADDRS6 - 1][16];
	uint8_t prefix6[DP_MAX_ADDRS6 - 1];
	uint8_t gateway6[16];   /* all zero: none */
	unsigned dad_transmits; /* DAD solicitations per address; 0: none */
	enum dp_rss_mode rss;
};

/* NULL (the reason logged) on failure. */
struct dp_shared *dp_port_open(const struct dp_port_conf *conf);
void dp_port_close(struct dp_shared *sh);

/*
 * One worker's stack on queue pair id, TCP bound to ops (app_ctx is the
 * application's, reachable as dw->app_ctx).  On the main lcore, before the
 * worker's lcore starts.  NULL (the reason logged) on failure.
 */
struct dp_worker *dp_worker_create(struct dp_shared *sh, unsigned id, const struct tcp_app_ops *ops,
                                   void *app_ctx);
/* After the worker's loop ended: frees its tables (counters stay readable until exit). */
void dp_worker_destroy(struct dp_worker *dw);

/* The worker's clock, from the TSC: call at the top of each loop iteration. */
static inline void
dp_worker_clock(struct dp_worker *dw)
{
	dw->now_ms = rte_get_tsc_cycles() / dw->sh->tsc_per_ms;
}

/* Due timers and ARP retries. */
void dp_worker_timers(struct dp_worker *dw);

#endif
