/*
 * dp_counters.h: the DPDK stack's counters (struct dp_counters, one per
 * worker lcore, written only by it) and the one table that describes them.
 *
 * This header is the public face of the counters: it needs no DPDK header,
 * so the control socket (stats, metrics) reads them through it without
 * seeing the dataplane's private structures.  Every scalar field of struct
 * dp_counters has one row in dp_counter_table (dp_counters.c fails to
 * compile when the number of rows and of fields differ; test_ctl_counters
 * checks that the rows cover every field exactly once), and every writer
 * (stats, metrics, the worker's line at exit) loops over the rows, so a new
 * counter needs one row and nothing else.
 */
#ifndef PA_DP_COUNTERS_H
#define PA_DP_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

/* Every packet the stack drops is counted under one of these. */
enum dp_drop {
	DP_DROP_ETH_SHORT,
	DP_DROP_ETH_TYPE,
	DP_DROP_ETH_DST,
	DP_DROP_ARP_BAD,
	DP_DROP_ARP_NOT_US,
	DP_DROP_IP_BAD_HDR,
	DP_DROP_IP_BAD_CKSUM,
	DP_DROP_IP_NOT_US,
	DP_DROP_IP_FRAGMENT,
	DP_DROP_IP_PROTO,
	DP_DROP_ICMP_BAD,
	DP_DROP_ICMP_TYPE,
	DP_DROP_TCP_BAD_HDR,
	DP_DROP_TCP_BAD_CKSUM,
	DP_DROP_TCP_CLOSED_PORT, /* answered with RST */
	DP_DROP_TCP_OUT_OF_WINDOW,
	DP_DROP_TCP_RST_OUT_OF_WINDOW,
	DP_DROP_TCP_PAWS,
	DP_DROP_TCP_BAD_ACK,
	DP_DROP_TCP_NO_ACK,
	DP_DROP_TCP_RCV_FULL, /* the connection's mbuf cap */
	DP_DROP_TCP_STATE,
	DP_DROP_SYN_CONN_LIMIT,
	DP_DROP_COOKIE_BAD,
	DP_DROP_NO_ROUTE,
	DP_DROP_NO_NEIGHBOUR,
	DP_DROP_TX_FULL,
	DP_DROP_NO_MBUF,
	DP_DROP_STEER_FULL,
	DP_DROP_IMPAIR, /* dpdk.impair, tests only */
	/* IPv6 (RFC 8200), ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861) */
	DP_DROP_IP6_BAD_HDR,     /* version, payload length */
	DP_DROP_IP6_BAD_SRC,     /* multicast, loopback or IPv4-mapped source */
	DP_DROP_IP6_NOT_US,      /* none of our addresses or groups */
	DP_DROP_IP6_TENTATIVE,   /* to an address still in (or failed) DAD */
	DP_DROP_IP6_EXT_CHAIN,   /* too long, truncated, hop-by-hop not first, bad option */
	DP_DROP_IP6_OPTION,      /* an option whose type says discard (RFC 8200 4.2) */
	DP_DROP_IP6_ROUTING0,    /* routing header type 0 (RFC 5095) */
	DP_DROP_IP6_ROUTING,     /* another routing type with segments left */
	DP_DROP_IP6_FRAGMENT,    /* not reassembled: MSS follows the MTU */
	DP_DROP_IP6_PROTO,       /* no upper layer we speak */
	DP_DROP_ICMP6_BAD,       /* short or bad checksum */
	DP_DROP_ICMP6_TYPE,      /* a type we do not handle */
	DP_DROP_ND_BAD,          /* fails RFC 4861 7.1 validation */
	DP_DROP_ND_NOT_US,       /* an NS for an address not ours */
	DP_DROP_ND_UNTRUSTED,    /* RS, RA, redirect: never trusted */
	DP_DROP_ND_CACHE_FULL,   /* no neighbour cache entry left */
	DP_DROP_ARP_CACHE_FULL,  /* no ARP table entry left */
	DP_DROP_ARP_UNSOLICITED, /* a reply nobody asked for, from a stranger */
	DP_DROP_COUNT
};

const char *dp_drop_name(enum dp_drop reason);

/*
 * With hardware RSS, why a TCP segment arrived on a queue whose worker does
 * not own its flow (it is then steered to the owner over the ring, as in
 * software RSS): the safety net's counters.
 */
enum dp_misq {
	DP_MISQ_NO_HASH, /* the port gave no RSS hash: it did not hash it as IPv4 TCP */
	DP_MISQ_HASH,    /* the port's hash is not our Toeplitz hash of the 4-tuple */
	DP_MISQ_RETA,    /* same hash, but the port's redirection table sent it elsewhere */
	DP_MISQ_COUNT
};

const char *dp_misq_name(enum dp_misq reason);

struct dp_counters {
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes;
	uint64_t drops[DP_DROP_COUNT];
	uint64_t steered_out, steered_in;
	uint64_t rss_misqueued[DP_MISQ_COUNT]; /* hardware RSS only; also counted in steered_out */
	uint64_t arp_requests_in, arp_replies_out, arp_requests_out, icmp_echo;
	uint64_t conns_opened, conns_closed, conns_reset, conns_time_wait;
	uint64_t time_wait_overflows; /* closed without TIME_WAIT: every entry in use */
	uint64_t retransmits, rto_expiries, fast_retransmits, zero_window_probes;
	uint64_t syn_per_source_cookies; /* cookies because one source held its share */
	uint64_t syns_in, synack_retransmits, syn_queue_overflows, cookies_sent, cookies_accepted;
	uint64_t challenge_acks, rst_sent, ooo_segments;
	uint64_t challenge_acks_limited; /* suppressed by dpdk.challenge_ack_limit (RFC 5961 7) */
	uint64_t sack_rtx_skipped;       /* octets not resent: the peer SACKed them */
	/* active open (tcp_connect.c) */
	uint64_t active_opens, syn_retransmits, connects_failed;
	/* IPv6 (net_ipv6.c, net_icmp6.c, net_nd.c) */
	uint64_t ip6_rx; /* IPv6 packets to us that passed the header checks */
	uint64_t nd_ns_in, nd_na_out, nd_ns_out, nd_na_in;
	uint64_t icmp6_echo, icmp6_errors_out, icmp6_errors_limited;
	uint64_t pmtu_lowered; /* packet too big: a connection's MSS lowered */
	uint64_t pmtu_learned; /* ...and kept for its destination (net_pmtu.c) */
	uint64_t pmtu_cached;  /* handshakes whose send MSS came from it */
	uint64_t dad_conflicts;
	uint64_t mld_reports_out;
};

/* One row of dp_counter_table: one uint64_t of struct dp_counters. */
struct dp_counter {
	const char *key;    /* the JSON key in stats (and pigeonctl's text) */
	const char *metric; /* the Prometheus family */
	const char *type;   /* "counter" or "gauge" */
	const char *help;
	size_t off;      /* of the field in struct dp_counters */
	const char *log; /* its name in the worker's line at exit; NULL: not in it */
};

/* Every uint64_t of struct dp_counters but drops[] and rss_misqueued[] (written by reason). */
extern const struct dp_counter dp_counter_table[];
extern const size_t dp_counter_table_n;

static inline uint64_t
dp_counter_value(const struct dp_counters *c, const struct dp_counter *row)
{
	return *(const uint64_t *)((const char *)c + row->off);
}

#endif
