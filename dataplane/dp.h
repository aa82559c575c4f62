/*
 * dp.h: the DPDK dataplane's per-lcore structure, its shared objects and its
 * counters.
 *
 * Each worker lcore owns one struct dp_worker (cache aligned, hung off
 * pa_worker->backend): its RX/TX queue pair, its TX burst, its timer wheel,
 * its TCB hash and its connection, SYN-queue and TIME_WAIT pools.  Nothing in
 * it is written by another lcore.  What workers share is struct dp_shared:
 * read-only after start-up except the neighbour table (an rte_hash with
 * lock-free readers and several writers) and the steering rings (MP/SC).
 */
#ifndef PA_DP_H
#define PA_DP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <rte_common.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>

#include "dataplane/dp_counters.h"
#include "dataplane/dp_impair.h"
#include "dataplane/tcp_isn.h"
#include "dataplane/tcp_timer.h"

#define DP_BURST 32
#define DP_MAX_WORKERS 64
#define DP_ARP_ENTRIES 4096 /* the ARP table; its entry array has twice as many slots */
/* Consecutive local addresses (dp_port_conf.ip_count): 64 x 28,232 ports to one server port */
#define DP_MAX_ADDRS 64
/* Hardware RSS: NICs' keys are 40 (ixgbe, mlx5) or 52 (i40e, ice) octets; ice has 2048 buckets. */
#define DP_RSS_KEY_MAX 64
#define DP_RETA_MAX 2048
/* IPv6: the link-local address (from the MAC), then dpdk.ip6's (CONFIG_IP6_MAX) */
#define DP_MAX_ADDRS6 5
/* Neighbours one worker resolves at a time, per protocol (net_neigh.c's pending list) */
#define DP_NEIGH_PENDING 16
#define DP_PMTU_ENTRIES 256 /* path MTUs kept per IPv6 destination (net_pmtu.c) */

/* An IPv6 address of ours through duplicate address detection (RFC 4862 5.4). */
enum dp_addr6_state {
	DP_ADDR6_TENTATIVE, /* DAD running: only NS/NA about it are looked at */
	DP_ADDR6_PREFERRED, /* usable */
	DP_ADDR6_DUPLICATE, /* another node has it: never used (logged, counted) */
};

struct dp_addr6 {
	uint8_t a[16];
	uint8_t prefix;
	uint8_t state;    /* enum dp_addr6_state: written atomically, by any worker on a conflict */
	uint8_t dad_sent; /* worker 0 (DAD) only: NSs sent */
	uint8_t logged;   /* worker 0 only: the outcome was logged */
	uint64_t dad_ms;  /* worker 0 only: when the last DAD NS went */
};

/*
 * A neighbour entry (RFC 4861 7.3.2), ARP's or IPv6's, indexed by its
 * rte_hash key position; its state machine is net_neigh.c's.
 */
enum dp_nd_state {
	DP_ND_NONE, /* unused, or unreachable: resolve again */
	DP_ND_INCOMPLETE,
	DP_ND_REACHABLE,
	DP_ND_STALE,
	DP_ND_DELAY,
	DP_ND_PROBE,
};

struct dp_nd_entry {
	uint64_t word;  /* MAC (48 bits) | state << 48 | probes << 56: one atomic word */
	uint64_t stamp; /* ms: when the state was entered */
};

/* A path MTU learned for an IPv6 destination: net_pmtu.c's, every field atomic. */
struct dp_pmtu {
	uint32_t seq; /* odd while written; 0: never written */
	uint32_t mtu;
	uint32_t a[4]; /* the destination */
	uint64_t expires_ms;
};

struct pa_worker;
struct pa_config;
struct rte_hash;
struct rte_ring;
struct rte_mempool;

struct dp_shared {
	uint16_t port;
	struct rte_ether_addr mac;
	/* Network order; ip 0: no IPv4 (ARP and IPv4 frames dropped), gateway 0: none. */
	uint32_t ip, mask, gateway;
	/* ip+1 .. ip+ip_extra (as integers) are ours too: dp_port_conf.ip_count - 1, often 0. */
	uint32_t ip_extra;
	uint16_t listen_port; /* network order */
	uint16_t mtu;
	unsigned nworkers;
	bool tx_ip_cksum, tx_tcp_cksum; /* the port computes them */
	/*
	 * Hardware RSS (dpdk.rss, dpdk_port.c).  When rss is set the port
	 * spreads IPv4 TCP by the Toeplitz hash of rss_key over reta[] (bucket
	 * -> queue; queue i is worker i), both read back from the port at
	 * start-up, and net_flow_owner() computes the same mapping; otherwise
	 * ownership is software RSS.  steering says which, and why, and
	 * port_desc names the port, for the log and the control socket.
	 */
	bool rss;
	uint8_t rss_key_len;
	uint16_t reta_size;
	uint8_t rss_key[DP_RSS_KEY_MAX] __rte_aligned(4); /* as the port holds it */
	uint32_t rss_key_cpu[DP_RSS_KEY_MAX / 4]; /* rte_convert_rss_key(): rte_softrss_be */
	uint8_t reta[DP_RETA_MAX];
	char steering[160];
	char port_desc[128];
	struct rte_mempool *pool;
	struct rte_ring *steer[DP_MAX_WORKERS]; /* to worker i, from any worker */
	struct rte_hash *neigh;                 /* IPv4 address -> its key position in arp_e */
	struct dp_nd_entry *arp_e;              /* ARP's entries (net_neigh.c's states) */
	/* IPv6 (net_ipv6.c, net_nd.c): ip6[0] is the link-local address; nip6 0: no IPv6 */
	struct dp_addr6 ip6[DP_MAX_ADDRS6];
	unsigned nip6;
	uint8_t gateway6[16]; /* all zero: none */
	bool has_gateway6;
	unsigned dad_transmits;  /* RFC 4862 DupAddrDetectTransmits; 0: no DAD */
	bool rss6;               /* hardware RSS hashes IPv6 TCP too (else software for it) */
	struct rte_hash *neigh6; /* IPv6 address -> position in nd[] */
	struct dp_nd_entry *nd;  /* the neighbour cache entries */
	struct dp_pmtu pmtu[DP_PMTU_ENTRIES]; /* path MTUs per IPv6 destination */
	rte_spinlock_t pmtu_lock;             /* their writers' (taken only if free) */
	struct tcp_secret secret;
	/* settings from dpdk.* keys */
	uint32_t msl_ms;
	unsigned syn_backlog, syn_per_source, max_conns, conn_mbufs, idle_sleep_us;
	unsigned challenge_ack_limit; /* RFC 5961 7: per worker per second; 0: no limit */
	struct dp_impair_conf impair;
	struct dp_worker *workers[DP_MAX_WORKERS];
	uint64_t tsc_per_ms;
};

/* The protocols resolving neighbours, each with its pending list (net_neigh.c). */
enum dp_neigh_proto {
	DP_NEIGH_ARP, /* addresses IPv4-mapped (::ffff:a.b.c.d) */
	DP_NEIGH_ND,
	DP_NEIGH_PROTOS,
};

/* A neighbour being resolved by this worker: INCOMPLETE (RFC 4861 7.3.2). */
struct dp_neigh_pending {
	uint8_t a[16];
	bool used;
	uint8_t tries; /* requests sent */
	uint64_t next_ms;
};

struct dp_conn;
struct tcp_app_ops;
struct tcp_syn;
struct tcp_tw;

struct dp_worker {
	struct pa_worker *worker;
	struct dp_shared *sh;
	const struct tcp_app_ops *app; /* the application TCP serves (tcp.h) */
	void *app_ctx;                 /* the application's own per-worker state */
	unsigned id;
	uint16_t queue;
	unsigned ntx;
	struct rte_mbuf *tx[DP_BURST];
	uint64_t now_ms;
	struct tcp_wheel *wheel;
	struct rte_hash *tcbs;    /* struct tcp_key -> tagged pointer (tcp.h) */
	struct rte_hash *syn_src; /* source address -> SYN-queue entries from it */
	/*
	 * Pools: calloc'ed arrays handed out in order (conns_used...), then
	 * through free lists; an entry never used is never touched, so unused
	 * capacity costs no resident memory.
	 */
	struct dp_conn *conns;
	SLIST_HEAD(, dp_conn) conn_free;
	unsigned nconns, conns_used;
	struct tcp_syn *syns;
	SLIST_HEAD(, tcp_syn) syn_free;
	unsigned nsyns, syns_used;
	struct tcp_tw *tws;
	SLIST_HEAD(, tcp_tw) tw_free;
	unsigned ntws, max_tws, tws_used;
	TAILQ_HEAD(, dp_conn) out_pending; /* to run tcp_output() on before the TX flush */
	TAILQ_HEAD(, dp_conn) live;        /* every connection with an SMTP session */
	struct dp_neigh_pending pending[DP_NEIGH_PROTOS][DP_NEIGH_PENDING];
	uint64_t icmp6_second; /* RFC 4443 2.4(f): the second the error budget is for */
	uint32_t icmp6_budget; /* ICMPv6 errors left in it */
	bool dad_link_up;      /* worker 0: DAD saw the link up */
	bool mld_joined;       /* worker 0: the start-up report went */
	bool dad_delay_set;    /* worker 0: dad_start_ms is chosen */
	bool mld_due;          /* a query's report is due at mld_due_ms */
	uint64_t mld_due_ms;
	uint64_t mld_last_ms;   /* the last report in answer to a query */
	uint64_t dad_start_ms;  /* worker 0: the join and DAD's first NS, after a random delay */
	uint64_t dad_link_ms;   /* worker 0: when to look at the link again */
	uint64_t last_cookie_s; /* when the last cookie was sent: accept cookie ACKs */
	uint64_t cack_second;   /* RFC 5961 7: the second the challenge-ACK budget is for */
	uint32_t cack_budget;   /* challenge ACKs left in it */
	struct dp_impair_queue *imp_rx, *imp_tx; /* dpdk.impair only */
	uint64_t rng;
	/*
	 * Active opens only (tcp_connect.c), so after the fields every packet
	 * touches: per local address, where the next open from it starts
	 * looking for a port; and which address (index from sh->ip) is next.
	 */
	uint16_t next_lport[DP_MAX_ADDRS];
	uint16_t next_lport6[DP_MAX_ADDRS6]; /* the same per IPv6 address (sh->ip6[]) */
	unsigned next_laddr, next_laddr6;    /* the address the next active open tries first */
	struct dp_counters c;
} __rte_cache_aligned;

/*
 * One of our addresses (network order)?  One subtraction and compare, so
 * several addresses cost input nothing more than one: with ip_extra 0 it is
 * the equality it always was.
 */
static inline bool
dp_is_local_addr(const struct dp_shared *sh, uint32_t a)
{
	return rte_be_to_cpu_32(a) - rte_be_to_cpu_32(sh->ip) <= sh->ip_extra;
}

static inline void
dp_drop(struct dp_worker *dw, struct rte_mbuf *m, enum dp_drop reason)
{
	dw->c.drops[reason]++;
	rte_pktmbuf_free(m);
}

/* Private area of every mbuf in the pool: links for the receive queues. */
struct dp_mbuf_priv {
	struct rte_mbuf *next;
	uint32_t seq;
	uint8_t fin;
	uint8_t pad[3];
};
#define DP_MBUF_PRIV_SIZE RTE_ALIGN(sizeof(struct dp_mbuf_priv), RTE_MBUF_PRIV_ALIGN)

static inline struct dp_mbuf_priv *
dp_priv(struct rte_mbuf *m)
{
	return (struct dp_mbuf_priv *)rte_mbuf_to_priv(m);
}

/* net_eth.c */
/* One RX burst from the worker's queue and one from its steering ring; returns frames taken. */
unsigned net_eth_poll(struct dp_worker *dw);
/* The next hop towards dst (network order): dst on link, else dpdk.gateway; 0: no route. */
uint32_t net_next_hop(const struct dp_shared *sh, uint32_t dst);
void net_eth_input(struct dp_worker *dw, struct rte_mbuf *m, bool steered);
/* The next hop towards an IPv6 dst: dst on link, else dpdk.gateway6; NULL: no route. */
const uint8_t *net_next_hop6(const struct dp_shared *sh, const uint8_t *dst);
/* Sends an IPv4 packet whose IP header is filled in: resolves the next hop, queues for TX. */
void net_eth_output_ipv4(struct dp_worker *dw, struct rte_mbuf *m, uint32_t dst);
void net_eth_tx_flush(struct dp_worker *dw);
/* Frames whose dpdk.impair delay is over: received ones processed, sent ones sent. */
void net_eth_impair_release(struct dp_worker *dw);
/*
 * The worker that owns a TCP flow, given as a segment we receive carries it
 * (src is the peer, dst is us; network order).  Hardware RSS: the port's
 * choice, reta[Toeplitz(key, tuple) % reta_size]; software RSS: a symmetric
 * hash.  net_steer.c.
 */
unsigned net_flow_owner(const struct dp_shared *sh, uint32_t src, uint16_t sport, uint32_t dst,
                        uint16_t dport);
/* The same for an IPv6 TCP flow (addresses 16 octets, network order). */
unsigned net_flow_owner6(const struct dp_shared *sh, const uint8_t *src, uint16_t sport,
                         const uint8_t *dst, uint16_t dport);
/* The Toeplitz hash of an IPv6 TCP 4-tuple (network order) under sh->rss_key. */
uint32_t net_rss_hash6(const struct dp_shared *sh, const uint8_t *src, uint16_t sport,
                       const uint8_t *dst, uint16_t dport);
/* The Toeplitz hash of an IPv4 TCP 4-tuple (network order) under sh->rss_key, as the NIC's. */
uint32_t net_rss_hash(const struct dp_shared *sh, uint32_t src, uint16_t sport, uint32_t dst,
                      uint16_t dport);
/*
 * Installs a Toeplitz key (len octets, a multiple of 4, at least 16) and a
 * redirection table of reta_size entries (each < sh->nworkers) in sh and
 * turns hardware ownership on: what dpdk_port.c read back from the port.
 * PA_ERROR when they do not fit.
 */
int net_rss_install(struct dp_shared *sh, const uint8_t *key, unsigned len, const uint8_t *reta,
                    unsigned reta_size);
/* Fills len octets with the symmetric key: 0x6d5a repeated (hash(a,b) == hash(b,a)). */
void net_rss_symmetric_key(uint8_t *key, unsigned len);
/* A local port in [lo, hi] for an active open to (raddr, rport) whose flow this worker owns. */
int net_pick_local_port(const struct dp_shared *sh, unsigned worker, uint32_t laddr, uint32_t raddr,
                        uint16_t rport, uint16_t lo, uint16_t hi, uint16_t start);
/* The same towards an IPv6 peer (addresses 16 octets, network order). */
int net_pick_local_port6(const struct dp_shared *sh, unsigned worker, const uint8_t *laddr,
                         const uint8_t *raddr, uint16_t rport, uint16_t lo, uint16_t hi,
                         uint16_t start);

/* net_neigh.c: a neighbour entry's states, ARP's and ND's (RFC 4861 7.3.2, 7.3.3) */
#define DP_NEIGH_MAC_MASK ((1ull << 48) - 1)

/* What a packet's use of an entry says. */
enum dp_neigh_use {
	DP_NEIGH_OK,      /* the MAC is good */
	DP_NEIGH_PROBE,   /* the MAC is good; send a unicast probe to it (PROBE) */
	DP_NEIGH_RESOLVE, /* none (NONE, or unreachable now): resolve it afresh */
};

static inline enum dp_nd_state
net_neigh_state(uint64_t w)
{
	return (enum dp_nd_state)((w >> 48) & 0xff);
}

/* An entry's word: MAC | state << 48 | probes << 56. */
uint64_t net_neigh_word(const struct rte_ether_addr *mac, enum dp_nd_state st, unsigned probes);
void net_neigh_mac(uint64_t w, struct rte_ether_addr *mac);
/* Writes the word, stamped with the worker's clock. */
void net_neigh_set(struct dp_worker *dw, struct dp_nd_entry *e, uint64_t w);
/* The neighbour told us its MAC: REACHABLE when confirmed (solicited), else STALE if new or
 * changed. */
void net_neigh_heard(struct dp_worker *dw, struct dp_nd_entry *e, const struct rte_ether_addr *mac,
                     bool confirmed);
/* A packet is about to use the entry: its MAC in *mac, the state advanced (7.3.3). */
enum dp_neigh_use net_neigh_use(struct dp_worker *dw, struct dp_nd_entry *e,
                                struct rte_ether_addr *mac);
/*
 * The pending lists: the addresses each worker is resolving (INCOMPLETE),
 * at most DP_NEIGH_PENDING per protocol, so an unresolved flood sends no
 * more requests than that.  add(): true when a is new on the list (the
 * caller sends the first request), false when it is there already or the
 * list is full.  anywhere(): on some worker's list (others' read racily: a
 * torn read costs one ignored answer).  done(): this worker stops asking.
 */
bool net_neigh_pending_add(struct dp_worker *dw, enum dp_neigh_proto p, const uint8_t *a,
                           uint32_t retrans_ms);
bool net_neigh_pending_anywhere(const struct dp_shared *sh, enum dp_neigh_proto p,
                                const uint8_t *a);
void net_neigh_pending_done(struct dp_worker *dw, enum dp_neigh_proto p, const uint8_t *a);
/* How a protocol finds an entry and asks again (a broadcast request, a multicast NS). */
struct dp_neigh_ops {
	const struct dp_nd_entry *(*find)(const struct dp_shared *sh, const uint8_t *a);
	void (*ask)(struct dp_worker *dw, const uint8_t *a);
	unsigned max_tries;
	uint32_t retrans_ms;
};
/* The retries due on this worker's list: resolved or out of tries leave it. */
void net_neigh_pending_tick(struct dp_worker *dw, enum dp_neigh_proto p,
                            const struct dp_neigh_ops *ops);

/* net_arp.c */
int net_arp_create(struct dp_shared *sh);
void net_arp_input(struct dp_worker *dw, struct rte_mbuf *m);
/* Looks the MAC up; false (and an ARP request, rate-limited) when not known yet. */
bool net_arp_resolve(struct dp_worker *dw, uint32_t ip, struct rte_ether_addr *mac);
void net_arp_tick(struct dp_worker *dw);

/* net_ipv6.c: IPv6 (RFC 8200) */
/* Index of one of our IPv6 addresses, usable or not; -1 when not ours. */
int net_ipv6_addr_index(const struct dp_shared *sh, const uint8_t *a);
/* Whether a is ours and usable (DAD done). */
bool net_ipv6_is_local(const struct dp_shared *sh, const uint8_t *a);
/*
 * Whether a can be a peer's address: not multicast, IPv4-mapped, loopback or
 * one of our usable addresses; the unspecified address only if told.
 */
bool net_ipv6_peer_ok(const struct dp_shared *sh, const uint8_t *a, bool unspecified_ok);
/* Whether a is on the link of one of our prefixes (or link-local). */
bool net_ipv6_on_link(const struct dp_shared *sh, const uint8_t *a);
/*
 * Our usable addresses equally good as a source towards dst (RFC 6724 5 in
 * short), as indexes in sh->ip6[] into out (room for DP_MAX_ADDRS6): for a
 * link-local dst the link-local address, else the usable global ones on
 * dst's prefix, else every usable global one.  Their count; 0 while DAD
 * runs, or when no address of the right scope is usable.
 */
unsigned net_ipv6_src_set(const struct dp_shared *sh, const uint8_t *dst, uint8_t *out);
/* The first of net_ipv6_src_set(), or -1. */
int net_ipv6_src_index(const struct dp_shared *sh, const uint8_t *dst);
/* The address net_ipv6_src_index() picks, or the link-local one (for on-link answers). */
const uint8_t *net_ipv6_src_for(const struct dp_shared *sh, const uint8_t *dst);
void net_ipv6_input(struct dp_worker *dw, struct rte_mbuf *m);
/* Fills the IPv6 header in front of l4_len octets of TCP; checksums by the port or here. */
void net_ipv6_output_tcp(struct dp_worker *dw, struct rte_mbuf *m, const uint8_t *src,
                         const uint8_t *dst, uint16_t l4_len);
/* Prepends Ethernet to an IPv6 packet whose header is filled and queues it: multicast or ND. */
void net_eth_output_ipv6(struct dp_worker *dw, struct rte_mbuf *m, const uint8_t *dst);
/*
 * An ICMPv6 error (RFC 4443 2.4) about the packet m (starting at its IPv6
 * header, plen octets), rate-limited; m is not freed.
 */
void net_icmp6_error(struct dp_worker *dw, const struct rte_mbuf *m, uint16_t plen, uint8_t type,
                     uint8_t code, uint32_t param);

/* net_icmp6.c: ICMPv6 (RFC 4443); m starts at the ICMPv6 message, ip its packet's header */
void net_icmp6_input(struct dp_worker *dw, struct rte_mbuf *m, struct rte_ipv6_hdr *ip,
                     uint16_t l4_len);

/* net_nd.c: Neighbor Discovery (RFC 4861) and DAD (RFC 4862) */
int net_nd_create(struct dp_shared *sh);
/* NS, NA (RS, RA and redirects are dropped: never trusted); m is consumed. */
void net_nd_input(struct dp_worker *dw, struct rte_mbuf *m, struct rte_ipv6_hdr *ip,
                  uint16_t l4_len);
/* The neighbour's MAC; false (and an NS, rate-limited) when it is not known yet. */
bool net_nd_resolve(struct dp_worker *dw, const uint8_t *ip, struct rte_ether_addr *mac);
/* Resolution retries, unreachability probes; on worker 0, DAD. */
void net_nd_tick(struct dp_worker *dw);
/* The solicited-node group of address a (RFC 4291 2.7.1) into group. */
void net_nd_solicited_node(const uint8_t *a, uint8_t *group);

/* net_pmtu.c: the path MTU per IPv6 destination (RFC 8201 5.2) */
/* A packet too big that lowered a connection's MSS (validated): its MTU for a (16 octets). */
void net_pmtu6_learn(struct dp_worker *dw, const uint8_t *a, uint32_t mtu);
/* The MTU learned for a, unexpired; 0: none (the link's). */
uint32_t net_pmtu6_get(const struct dp_worker *dw, const uint8_t *a);

/* net_mld.c: MLDv2 reports for our solicited-node groups (RFC 3810) */
/* A report naming every group: a join (start-up), or listening (a query's answer). */
void net_mld_report(struct dp_worker *dw, bool join);
/*
 * A query: a report is due at a random time within its Maximum Response
 * Delay (net_mld_tick() sends it), at most one a second per worker; m is
 * consumed.
 */
void net_mld_input(struct dp_worker *dw, struct rte_mbuf *m, const struct rte_ipv6_hdr *ip,
                   uint16_t l4_len);
/* The report due, if its time has come: every loop iteration, one compare otherwise. */
void net_mld_tick(struct dp_worker *dw);
/* A query's Maximum Response Delay in ms (RFC 2710 3.4; RFC 3810 5.1.3 for MLDv2's code). */
uint32_t net_mld_max_delay_ms(const uint8_t *query, uint16_t len);

/* net_ipv4.c */
void net_ipv4_input(struct dp_worker *dw, struct rte_mbuf *m);
/* Fills the IPv4 header in front of l4_len octets of TCP; checksums by the port or here. */
void net_ipv4_output_tcp(struct dp_worker *dw, struct rte_mbuf *m, uint32_t src, uint32_t dst,
                         uint16_t l4_len);

/*
 * The rte_hash hash of the stack's tables whose keys are 32-bit words at
 * any alignment (TCB keys, IPv6 addresses out of a packet): CRC32-C eight
 * octets at a time and a last word of four, loaded with memcpy
 * (rte_hash_crc() loads through a uint64_t pointer, which needs 8-octet
 * alignment).  len a multiple of 4.  dp_stack.c.
 */
uint32_t dp_hash_words(const void *key, uint32_t len, uint32_t init);
/*
 * The worker's own randomness (xorshift64 over dw->rng, seeded from the TSC
 * by dp_worker_create(); a test seeds dw->rng to make it deterministic):
 * not for secrets (ISNs and SYN cookies have tcp_isn.c's keyed hash).
 * dp_worker_random_ms(): uniform enough in 0..max_ms.  dp_stack.c.
 */
uint64_t dp_worker_random(struct dp_worker *dw);
uint32_t dp_worker_random_ms(struct dp_worker *dw, uint32_t max_ms);

static inline struct rte_mbuf *
dp_alloc(struct dp_worker *dw)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(dw->sh->pool);

	if (m == NULL)
		dw->c.drops[DP_DROP_NO_MBUF]++;
	return m;
}

#endif
