/*
 * ctl_counters.c: the tables of ctl_counters.h.
 *
 * The JSON keys and metric names of the counters exported before the
 * table existed are kept as they were (scripts and dashboards use them);
 * the others are named after their field.
 */
#include "ctl/ctl_counters.h"

#include "core/pa.h"
#include "dataplane/dp.h"
#include "dataplane/worker.h"

#define TCP(key, field, help)                                                                      \
	{                                                                                          \
		key, "pigeonair_tcp_" key "_total", "counter", help,                               \
		    offsetof(struct dp_counters, field)                                            \
	}

const struct ctl_counter ctl_tcp_counters[] = {
    {"rx_packets", "pigeonair_rx_packets_total", "counter",
     "Frames received by the DPDK port queues.", offsetof(struct dp_counters, rx_pkts)},
    {"rx_bytes", "pigeonair_rx_bytes_total", "counter", "Octets received by the DPDK port queues.",
     offsetof(struct dp_counters, rx_bytes)},
    {"tx_packets", "pigeonair_tx_packets_total", "counter", "Frames sent by the DPDK port queues.",
     offsetof(struct dp_counters, tx_pkts)},
    {"tx_bytes", "pigeonair_tx_bytes_total", "counter", "Octets sent by the DPDK port queues.",
     offsetof(struct dp_counters, tx_bytes)},
    {"steered_out", "pigeonair_steered_out_total", "counter",
     "Frames handed to the worker that owns their flow (software steering).",
     offsetof(struct dp_counters, steered_out)},
    {"steered_in", "pigeonair_steered_in_total", "counter",
     "Frames taken from other workers' steering rings.", offsetof(struct dp_counters, steered_in)},
    {"arp_requests_in", "pigeonair_arp_requests_in_total", "counter", "ARP requests received.",
     offsetof(struct dp_counters, arp_requests_in)},
    {"arp_replies_out", "pigeonair_arp_replies_out_total", "counter", "ARP replies sent.",
     offsetof(struct dp_counters, arp_replies_out)},
    {"arp_requests_out", "pigeonair_arp_requests_out_total", "counter", "ARP requests sent.",
     offsetof(struct dp_counters, arp_requests_out)},
    {"icmp_echo", "pigeonair_icmp_echo_total", "counter", "ICMP echo requests answered.",
     offsetof(struct dp_counters, icmp_echo)},
    TCP("conns_opened", conns_opened, "TCP connections established."),
    TCP("conns_closed", conns_closed, "TCP connections closed."),
    TCP("conns_reset", conns_reset, "TCP connections ended by a reset."),
    {"time_wait_total", "pigeonair_tcp_time_wait_entered_total", "counter",
     "Connections that entered TIME_WAIT.", offsetof(struct dp_counters, conns_time_wait)},
    TCP("time_wait_overflows", time_wait_overflows,
        "Connections closed without TIME_WAIT because every entry was in use."),
    TCP("retransmits", retransmits, "TCP segments retransmitted."),
    TCP("rto_expiries", rto_expiries, "TCP retransmission timeouts."),
    TCP("fast_retransmits", fast_retransmits, "TCP fast retransmits (duplicate ACKs)."),
    TCP("zero_window_probes", zero_window_probes, "TCP zero-window probes sent."),
    TCP("syn_per_source_cookies", syn_per_source_cookies,
        "SYN cookies sent because one source held its share of the SYN queue."),
    {"syns", "pigeonair_tcp_syns_total", "counter", "SYNs received.",
     offsetof(struct dp_counters, syns_in)},
    TCP("synack_retransmits", synack_retransmits, "SYN-ACKs retransmitted."),
    TCP("syn_queue_overflows", syn_queue_overflows, "SYNs that found the SYN queue full."),
    {"syn_cookies_sent", "pigeonair_tcp_syn_cookies_sent_total", "counter",
     "SYN-ACKs sent with a SYN cookie.", offsetof(struct dp_counters, cookies_sent)},
    {"syn_cookies_accepted", "pigeonair_tcp_syn_cookies_accepted_total", "counter",
     "Connections established from a SYN cookie.", offsetof(struct dp_counters, cookies_accepted)},
    TCP("challenge_acks", challenge_acks, "Challenge ACKs sent (RFC 5961)."),
    {"resets_sent", "pigeonair_tcp_resets_sent_total", "counter", "RST segments sent.",
     offsetof(struct dp_counters, rst_sent)},
    TCP("ooo_segments", ooo_segments, "TCP segments received out of order."),
    TCP("challenge_acks_limited", challenge_acks_limited,
        "Challenge ACKs suppressed by dpdk.challenge_ack_limit (RFC 5961 section 7)."),
    TCP("sack_rtx_skipped", sack_rtx_skipped,
        "Octets not retransmitted because the peer had SACKed them."),
    TCP("active_opens", active_opens, "TCP connections opened by pigeond (active open)."),
    TCP("syn_retransmits", syn_retransmits, "SYNs of active opens retransmitted."),
    TCP("connects_failed", connects_failed, "Active opens that failed (reset or timed out)."),
};

/*
 * The build breaks when struct dp_counters gains or loses a field and this
 * table does not: every word of it is a row, one of drops[] or one of
 * rss_misqueued[] (those two are written by reason).
 */
_Static_assert(pa_array_size(ctl_tcp_counters) + DP_DROP_COUNT + DP_MISQ_COUNT ==
                   sizeof(struct dp_counters) / sizeof(uint64_t),
               "every field of struct dp_counters needs a row in ctl_tcp_counters");

const size_t ctl_tcp_counters_n = pa_array_size(ctl_tcp_counters);

#define TLS(key, field, help)                                                                      \
	{                                                                                          \
		key, "pigeonair_tls_" key "_total", "counter", help,                               \
		    offsetof(struct pa_worker_counters, field)                                     \
	}

const struct ctl_counter ctl_tls_counters[] = {
    TLS("handshakes", tls_handshakes, "TLS handshakes completed, full or resumed."),
    TLS("resumed", tls_resumed, "TLS handshakes completed by resuming a session (ticket)."),
    TLS("handshake_failures", tls_handshake_failures,
        "TLS handshakes failed: protocol errors, garbage, client gone."),
    TLS("handshake_timeouts", tls_handshake_timeouts,
        "TLS handshakes that did not finish within tls.handshake_timeout."),
    TLS("handshakes_deferred", tls_handshakes_deferred,
        "TLS handshake steps put off to the next loop by the per-loop budget."),
};
const size_t ctl_tls_counters_n = pa_array_size(ctl_tls_counters);

const struct ctl_tls_version ctl_tls_versions[] = {
    {"TLSv1.2", offsetof(struct pa_worker_counters, tls_v1_2)},
    {"TLSv1.3", offsetof(struct pa_worker_counters, tls_v1_3)},
};
const size_t ctl_tls_versions_n = pa_array_size(ctl_tls_versions);
