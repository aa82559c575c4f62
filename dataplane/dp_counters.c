/*
 * dp_counters.c: the table of dp_counters.h and the names of the drop and
 * misqueue reasons.
 *
 * The JSON keys and metric names of the counters exported before the table
 * existed are kept as they were (scripts and dashboards use them); the
 * others are named after their field.  The names in the worker's line at
 * exit are the short ones that line always had (tests and operators grep
 * them).
 */
#include "dataplane/dp_counters.h"

#include "core/pa.h"

/* A row whose JSON key is its field's name, the metric pigeonair_tcp_<key>_total. */
#define TCP(field, help, log)                                                                      \
	{                                                                                          \
#field, "pigeonair_tcp_" #field "_total", "counter", help,                         \
		    offsetof(struct dp_counters, field), log                                       \
	}
#define ROW(key, metric, field, help, log)                                                         \
	{                                                                                          \
		key, metric, "counter", help, offsetof(struct dp_counters, field), log             \
	}

const struct dp_counter dp_counter_table[] = {
    ROW("rx_packets", "pigeonair_rx_packets_total", rx_pkts,
        "Frames received by the DPDK port queues.", "rx"),
    ROW("rx_bytes", "pigeonair_rx_bytes_total", rx_bytes,
        "Octets received by the DPDK port queues.", NULL),
    ROW("tx_packets", "pigeonair_tx_packets_total", tx_pkts, "Frames sent by the DPDK port queues.",
        "tx"),
    ROW("tx_bytes", "pigeonair_tx_bytes_total", tx_bytes, "Octets sent by the DPDK port queues.",
        NULL),
    ROW("steered_out", "pigeonair_steered_out_total", steered_out,
        "Frames handed to the worker that owns their flow (software steering).", "steered_out"),
    ROW("steered_in", "pigeonair_steered_in_total", steered_in,
        "Frames taken from other workers' steering rings.", "steered_in"),
    ROW("arp_requests_in", "pigeonair_arp_requests_in_total", arp_requests_in,
        "ARP requests received.", NULL),
    ROW("arp_replies_out", "pigeonair_arp_replies_out_total", arp_replies_out, "ARP replies sent.",
        "arp_replies"),
    ROW("arp_requests_out", "pigeonair_arp_requests_out_total", arp_requests_out,
        "ARP requests sent.", NULL),
    ROW("icmp_echo", "pigeonair_icmp_echo_total", icmp_echo, "ICMP echo requests answered.",
        "icmp_echo"),
    TCP(conns_opened, "TCP connections established.", "conns"),
    TCP(conns_closed, "TCP connections closed.", "closed"),
    TCP(conns_reset, "TCP connections ended by a reset.", "reset"),
    ROW("time_wait_total", "pigeonair_tcp_time_wait_entered_total", conns_time_wait,
        "Connections that entered TIME_WAIT.", "time_wait"),
    TCP(time_wait_overflows, "Connections closed without TIME_WAIT because every entry was in use.",
        "tw_overflows"),
    TCP(retransmits, "TCP segments retransmitted.", "retransmits"),
    TCP(rto_expiries, "TCP retransmission timeouts.", "rto"),
    TCP(fast_retransmits, "TCP fast retransmits (duplicate ACKs).", "fast_rtx"),
    TCP(zero_window_probes, "TCP zero-window probes sent.", NULL),
    TCP(syn_per_source_cookies,
        "SYN cookies sent because one source held its share of the SYN queue.", NULL),
    ROW("syns", "pigeonair_tcp_syns_total", syns_in, "SYNs received.", "syns"),
    TCP(synack_retransmits, "SYN-ACKs retransmitted.", "synack_rtx"),
    TCP(syn_queue_overflows, "SYNs that found the SYN queue full.", NULL),
    ROW("syn_cookies_sent", "pigeonair_tcp_syn_cookies_sent_total", cookies_sent,
        "SYN-ACKs sent with a SYN cookie.", "cookies_sent"),
    ROW("syn_cookies_accepted", "pigeonair_tcp_syn_cookies_accepted_total", cookies_accepted,
        "Connections established from a SYN cookie.", "cookies_ok"),
    TCP(challenge_acks, "Challenge ACKs sent (RFC 5961).", "challenge_acks"),
    ROW("resets_sent", "pigeonair_tcp_resets_sent_total", rst_sent, "RST segments sent.",
        "rst_sent"),
    TCP(ooo_segments, "TCP segments received out of order.", "ooo"),
    TCP(challenge_acks_limited,
        "Challenge ACKs suppressed by dpdk.challenge_ack_limit (RFC 5961 section 7).",
        "challenge_acks_limited"),
    TCP(sack_rtx_skipped, "Octets not retransmitted because the peer had SACKed them.",
        "sack_skipped"),
    TCP(active_opens, "TCP connections opened by pigeond (active open).", NULL),
    TCP(syn_retransmits, "SYNs of active opens retransmitted.", NULL),
    TCP(connects_failed, "Active opens that failed (reset or timed out).", NULL),
    ROW("ip6_rx", "pigeonair_ip6_rx_total", ip6_rx,
        "IPv6 packets to the engine that passed the header checks.", "ip6_rx"),
    ROW("nd_ns_in", "pigeonair_nd_solicitations_in_total", nd_ns_in,
        "Neighbor solicitations received for our addresses.", NULL),
    ROW("nd_na_out", "pigeonair_nd_advertisements_out_total", nd_na_out,
        "Neighbor advertisements sent.", "nd_na"),
    ROW("nd_ns_out", "pigeonair_nd_solicitations_out_total", nd_ns_out,
        "Neighbor solicitations sent (resolution, unreachability probes, DAD).", NULL),
    ROW("nd_na_in", "pigeonair_nd_advertisements_in_total", nd_na_in,
        "Neighbor advertisements received.", NULL),
    ROW("icmp6_echo", "pigeonair_icmp6_echo_total", icmp6_echo, "ICMPv6 echo requests answered.",
        "icmp6_echo"),
    ROW("icmp6_errors_out", "pigeonair_icmp6_errors_out_total", icmp6_errors_out,
        "ICMPv6 error messages sent (parameter problem).", NULL),
    ROW("icmp6_errors_limited", "pigeonair_icmp6_errors_limited_total", icmp6_errors_limited,
        "ICMPv6 error messages not sent: over the rate limit (RFC 4443 2.4).", NULL),
    ROW("pmtu_lowered", "pigeonair_pmtu_lowered_total", pmtu_lowered,
        "Packet too big messages that lowered a connection's MSS.", "pmtu_lowered"),
    ROW("pmtu_learned", "pigeonair_pmtu_learned_total", pmtu_learned,
        "Path MTUs kept for an IPv6 destination (10 minutes) after a packet too big.",
        "pmtu_learned"),
    ROW("pmtu_cached", "pigeonair_pmtu_cached_total", pmtu_cached,
        "Handshakes whose send MSS started from their destination's learned path MTU.",
        "pmtu_cached"),
    ROW("dad_conflicts", "pigeonair_dad_conflicts_total", dad_conflicts,
        "Duplicate address detection found one of our IPv6 addresses in use.", "dad_conflicts"),
    ROW("mld_reports_out", "pigeonair_mld_reports_out_total", mld_reports_out,
        "MLDv2 reports sent for our solicited-node groups (start-up, queries).", "mld_reports"),
};

/*
 * The build breaks when struct dp_counters gains or loses a field and this
 * table does not: every word of it is a row, one of drops[] or one of
 * rss_misqueued[] (those two are written by reason).
 */
_Static_assert(sizeof(struct dp_counters) % sizeof(uint64_t) == 0,
               "dp_counters must hold only 64-bit counters");
_Static_assert(pa_array_size(dp_counter_table) + DP_DROP_COUNT + DP_MISQ_COUNT ==
                   sizeof(struct dp_counters) / sizeof(uint64_t),
               "every field of struct dp_counters needs a row in dp_counter_table");

const size_t dp_counter_table_n = pa_array_size(dp_counter_table);

static const char *const drop_names[DP_DROP_COUNT] = {
    [DP_DROP_ETH_SHORT] = "eth_short",
    [DP_DROP_ETH_TYPE] = "eth_type",
    [DP_DROP_ETH_DST] = "eth_dst",
    [DP_DROP_ARP_BAD] = "arp_bad",
    [DP_DROP_ARP_NOT_US] = "arp_not_us",
    [DP_DROP_IP_BAD_HDR] = "ip_bad_header",
    [DP_DROP_IP_BAD_CKSUM] = "ip_bad_checksum",
    [DP_DROP_IP_NOT_US] = "ip_not_us",
    [DP_DROP_IP_FRAGMENT] = "ip_fragment",
    [DP_DROP_IP_PROTO] = "ip_protocol",
    [DP_DROP_ICMP_BAD] = "icmp_bad",
    [DP_DROP_ICMP_TYPE] = "icmp_type",
    [DP_DROP_TCP_BAD_HDR] = "tcp_bad_header",
    [DP_DROP_TCP_BAD_CKSUM] = "tcp_bad_checksum",
    [DP_DROP_TCP_CLOSED_PORT] = "tcp_closed_port",
    [DP_DROP_TCP_OUT_OF_WINDOW] = "tcp_out_of_window",
    [DP_DROP_TCP_RST_OUT_OF_WINDOW] = "tcp_rst_out_of_window",
    [DP_DROP_TCP_PAWS] = "tcp_paws",
    [DP_DROP_TCP_BAD_ACK] = "tcp_bad_ack",
    [DP_DROP_TCP_NO_ACK] = "tcp_no_ack",
    [DP_DROP_TCP_RCV_FULL] = "tcp_receive_full",
    [DP_DROP_TCP_STATE] = "tcp_state",
    [DP_DROP_SYN_CONN_LIMIT] = "syn_conn_limit",
    [DP_DROP_COOKIE_BAD] = "cookie_bad",
    [DP_DROP_NO_ROUTE] = "no_route",
    [DP_DROP_NO_NEIGHBOUR] = "no_neighbour",
    [DP_DROP_TX_FULL] = "tx_full",
    [DP_DROP_NO_MBUF] = "no_mbuf",
    [DP_DROP_STEER_FULL] = "steer_ring_full",
    [DP_DROP_IMPAIR] = "impair",
    [DP_DROP_IP6_BAD_HDR] = "ip6_bad_header",
    [DP_DROP_IP6_BAD_SRC] = "ip6_bad_source",
    [DP_DROP_IP6_NOT_US] = "ip6_not_us",
    [DP_DROP_IP6_TENTATIVE] = "ip6_tentative",
    [DP_DROP_IP6_EXT_CHAIN] = "ip6_ext_chain",
    [DP_DROP_IP6_OPTION] = "ip6_option",
    [DP_DROP_IP6_ROUTING0] = "ip6_routing0",
    [DP_DROP_IP6_ROUTING] = "ip6_routing",
    [DP_DROP_IP6_FRAGMENT] = "ip6_fragment",
    [DP_DROP_IP6_PROTO] = "ip6_protocol",
    [DP_DROP_ICMP6_BAD] = "icmp6_bad",
    [DP_DROP_ICMP6_TYPE] = "icmp6_type",
    [DP_DROP_ND_BAD] = "nd_bad",
    [DP_DROP_ND_NOT_US] = "nd_not_us",
    [DP_DROP_ND_UNTRUSTED] = "nd_untrusted",
    [DP_DROP_ND_CACHE_FULL] = "nd_cache_full",
    [DP_DROP_ARP_CACHE_FULL] = "arp_cache_full",
    [DP_DROP_ARP_UNSOLICITED] = "arp_unsolicited",
};

const char *
dp_drop_name(enum dp_drop reason)
{
	return reason < DP_DROP_COUNT ? drop_names[reason] : "unknown";
}

static const char *const misq_names[DP_MISQ_COUNT] = {
    [DP_MISQ_NO_HASH] = "no_hash",
    [DP_MISQ_HASH] = "hash_mismatch",
    [DP_MISQ_RETA] = "reta_mismatch",
};

const char *
dp_misq_name(enum dp_misq reason)
{
	return reason < DP_MISQ_COUNT ? misq_names[reason] : "unknown";
}
