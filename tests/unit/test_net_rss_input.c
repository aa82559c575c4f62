/*
 * test_net_rss_input.c: receiving under hardware RSS (dataplane/net_eth.c),
 * on two real workers with their steering rings (no port: frames are handed
 * to net_eth_input() as if a queue had delivered them).
 *
 * A segment on the queue of the worker that owns its flow is processed there
 * with no ring hop; one on another worker's queue goes to the owner over its
 * ring and is counted by reason: the port gave no hash, the port's hash is not
 * our Toeplitz hash, or the hash agrees and the redirection table does not.
 * A fragment is dropped where it arrives, neither steered nor counted.
 * Under software steering the same hop is normal and counts no misqueue.
 * Checksums: computed when the port gave no verdict, the port's verdict
 * taken as it is, every wrong one dropped and counted by reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <rte_byteorder.h>
#include <rte_eal.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/dp_stack.h"
#include "dataplane/tcp.h"

/* Not RTE_IPV4(): it shifts a signed int into the sign bit (UBSan). */
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))
#define OUR_IP IP4(198, 18, 0, 2)
#define PEER_IP IP4(198, 18, 0, 1)

static struct dp_shared sh;
static struct dp_worker *w[2];

/* No listener (listen_port 0): every SYN is answered as to a closed port, and counted so. */
static struct tcb *
t_conn_alloc(struct dp_worker *dw)
{
	(void)dw;
	return NULL;
}
static int
t_established(struct dp_worker *dw, struct tcb *tcb)
{
	(void)dw;
	(void)tcb;
	return PA_OK;
}
static void
t_tcb(struct dp_worker *dw, struct tcb *tcb)
{
	(void)dw;
	(void)tcb;
}
static void
t_acked(struct dp_worker *dw, struct tcb *tcb, uint32_t n)
{
	(void)dw;
	(void)tcb;
	(void)n;
}
static const uint8_t *
t_sendbuf(struct dp_worker *dw, struct tcb *tcb, uint32_t *len)
{
	(void)dw;
	(void)tcb;
	*len = 0;
	return NULL;
}
static void
t_closed(struct dp_worker *dw, struct tcb *tcb, bool reset)
{
	(void)dw;
	(void)tcb;
	(void)reset;
}

static const struct tcp_app_ops ops = {
    .conn_alloc = t_conn_alloc,
    .established = t_established,
    .data = t_tcb,
    .acked = t_acked,
    .sendbuf = t_sendbuf,
    .peer_fin = t_tcb,
    .closed = t_closed,
    .want_output = t_tcb,
};

/* A SYN from the peer's sport to our port 25, checksums right, as a queue delivers it. */
static struct rte_mbuf *
syn_frame(uint16_t sport)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(sh.pool);
	struct rte_ether_hdr *eh;
	struct rte_ipv4_hdr *ip;
	struct rte_tcp_hdr *th;

	assert_non_null(m);
	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eh) + sizeof(*ip) + sizeof(*th));
	assert_non_null(eh);
	memset(eh, 0, sizeof(*eh) + sizeof(*ip) + sizeof(*th));
	rte_ether_addr_copy(&sh.mac, &eh->dst_addr);
	eh->src_addr.addr_bytes[0] = 0x02;
	eh->src_addr.addr_bytes[5] = 0x01;
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip = (struct rte_ipv4_hdr *)(eh + 1);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(sizeof(*ip) + sizeof(*th));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = rte_cpu_to_be_32(PEER_IP);
	ip->dst_addr = rte_cpu_to_be_32(OUR_IP);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	th = (struct rte_tcp_hdr *)(ip + 1);
	th->src_port = rte_cpu_to_be_16(sport);
	th->dst_port = rte_cpu_to_be_16(25);
	th->sent_seq = rte_cpu_to_be_32(1000);
	th->data_off = (sizeof(*th) / 4) << 4;
	th->tcp_flags = RTE_TCP_SYN_FLAG;
	th->rx_win = rte_cpu_to_be_16(65535);
	th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	return m;
}

/* The Toeplitz hash the port would give the SYN of sport, and its owner. */
static uint32_t
syn_hash(uint16_t sport, unsigned *owner)
{
	uint32_t h = net_rss_hash(&sh, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(sport),
	                          rte_cpu_to_be_32(OUR_IP), rte_cpu_to_be_16(25));

	*owner = net_flow_owner(&sh, rte_cpu_to_be_32(PEER_IP), rte_cpu_to_be_16(sport),
	                        rte_cpu_to_be_32(OUR_IP), rte_cpu_to_be_16(25));
	return h;
}

/* A peer port whose flow worker `owner` owns. */
static uint16_t
port_owned_by(unsigned owner)
{
	for (uint16_t p = 40000; p < 41000; p++) {
		unsigned o;

		syn_hash(p, &o);
		if (o == owner)
			return p;
	}
	fail_msg("no port in 40000-40999 lands on worker %u", owner);
	return 0;
}

/* Counters to zero; frames queued for TX (ARP requests for the RSTs' next hop) freed. */
static void
reset_counters(void)
{
	for (unsigned i = 0; i < 2; i++) {
		memset(&w[i]->c, 0, sizeof(w[i]->c));
		for (unsigned k = 0; k < w[i]->ntx; k++)
			rte_pktmbuf_free(w[i]->tx[k]);
		w[i]->ntx = 0;
	}
}

/* Frames waiting on worker i's steering ring, handed to it as its poll loop would. */
static unsigned
drain_ring(unsigned i)
{
	struct rte_mbuf *m[DP_BURST];
	unsigned n = rte_ring_dequeue_burst(sh.steer[i], (void **)m, DP_BURST, NULL);

	for (unsigned k = 0; k < n; k++)
		net_eth_input(w[i], m[k], true);
	return n;
}

static void
hardware_rss_on(void)
{
	uint8_t key[40] __rte_aligned(4), reta[128];

	net_rss_symmetric_key(key, sizeof(key));
	for (unsigned i = 0; i < 128; i++)
		reta[i] = (uint8_t)(i % 2);
	sh.rss = false;
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, 128), PA_OK);
}

static void
test_right_queue_no_hop(void **state)
{
	(void)state;
	hardware_rss_on();
	for (unsigned owner = 0; owner < 2; owner++) {
		uint16_t p = port_owned_by(owner);
		struct rte_mbuf *m = syn_frame(p);
		unsigned o;

		reset_counters();
		m->ol_flags |= RTE_MBUF_F_RX_RSS_HASH;
		m->hash.rss = syn_hash(p, &o);
		net_eth_input(w[owner], m, false);
		/* Processed where it arrived (TCP answered a closed port), nothing crossed. */
		assert_int_equal(w[owner]->c.drops[DP_DROP_TCP_CLOSED_PORT], 1);
		assert_int_equal(w[owner]->c.steered_out, 0);
		for (unsigned r = 0; r < DP_MISQ_COUNT; r++)
			assert_int_equal(w[owner]->c.rss_misqueued[r], 0);
		assert_int_equal(rte_ring_count(sh.steer[0]) + rte_ring_count(sh.steer[1]), 0);
	}
}

static void
test_wrong_queue_counted_by_reason(void **state)
{
	uint16_t p;
	uint32_t h;
	unsigned o;
	struct rte_mbuf *m;

	(void)state;
	hardware_rss_on();
	reset_counters();
	p = port_owned_by(1);
	h = syn_hash(p, &o);
	assert_int_equal(o, 1);
	/* Worker 0's queue had it, with no hash from the port. */
	m = syn_frame(p);
	net_eth_input(w[0], m, false);
	assert_int_equal(w[0]->c.rss_misqueued[DP_MISQ_NO_HASH], 1);
	/* With a hash that is not ours: another key or other fields. */
	m = syn_frame(p);
	m->ol_flags |= RTE_MBUF_F_RX_RSS_HASH;
	m->hash.rss = h ^ 0x80000001u;
	net_eth_input(w[0], m, false);
	assert_int_equal(w[0]->c.rss_misqueued[DP_MISQ_HASH], 1);
	/* With our hash: the port's redirection table is not the one read back. */
	m = syn_frame(p);
	m->ol_flags |= RTE_MBUF_F_RX_RSS_HASH;
	m->hash.rss = h;
	net_eth_input(w[0], m, false);
	assert_int_equal(w[0]->c.rss_misqueued[DP_MISQ_RETA], 1);
	/* Each went to the owner over its ring, and nothing of it was processed on worker 0. */
	assert_int_equal(w[0]->c.steered_out, 3);
	assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 0);
	assert_int_equal(rte_ring_count(sh.steer[1]), 3);
	assert_int_equal(drain_ring(1), 3);
	assert_int_equal(w[1]->c.drops[DP_DROP_TCP_CLOSED_PORT], 3);
	for (unsigned r = 0; r < DP_MISQ_COUNT; r++)
		assert_int_equal(w[1]->c.rss_misqueued[r], 0);
}

/* A fragment is dropped where it arrives: no hop, no misqueue (ports hash fragments by address). */
static void
test_fragment_not_steered(void **state)
{
	struct rte_mbuf *m;
	struct rte_ipv4_hdr *ip;

	(void)state;
	hardware_rss_on();
	reset_counters();
	m = syn_frame(port_owned_by(1));
	ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG);
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	net_eth_input(w[0], m, false);
	assert_int_equal(w[0]->c.drops[DP_DROP_IP_FRAGMENT], 1);
	assert_int_equal(w[0]->c.steered_out, 0);
	for (unsigned r = 0; r < DP_MISQ_COUNT; r++)
		assert_int_equal(w[0]->c.rss_misqueued[r], 0);
	assert_int_equal(rte_ring_count(sh.steer[1]), 0);
}

static void
test_software_steering_counts_no_misqueue(void **state)
{
	uint16_t p;
	unsigned o;

	(void)state;
	sh.rss = false;
	reset_counters();
	p = port_owned_by(1);
	syn_hash(p, &o);
	assert_int_equal(o, 1);
	net_eth_input(w[0], syn_frame(p), false);
	assert_int_equal(w[0]->c.steered_out, 1);
	for (unsigned r = 0; r < DP_MISQ_COUNT; r++)
		assert_int_equal(w[0]->c.rss_misqueued[r], 0);
	assert_int_equal(drain_ring(1), 1);
	assert_int_equal(w[1]->c.drops[DP_DROP_TCP_CLOSED_PORT], 1);
}

/*
 * syn_frame(sport) with len octets of data after the SYN, checksums right:
 * long enough to take the wide loops of net_cksum.c, odd or even.
 */
static struct rte_mbuf *
data_frame(uint16_t sport, uint16_t len)
{
	struct rte_mbuf *m = syn_frame(sport);
	struct rte_ipv4_hdr *ip =
	    rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, len);

	assert_non_null(d);
	for (uint16_t i = 0; i < len; i++)
		d[i] = (uint8_t)(0xff - i * 7);
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + sizeof(*th) + len));
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	th->cksum = 0;
	th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	return m;
}

/*
 * Checksums on input (net_ipv4.c): computed here when the port gave no
 * verdict, a wrong one dropped and counted by reason; the port's verdict,
 * when given, taken as it is and never recomputed.
 */
static void
test_checksum_verdicts(void **state)
{
	const uint16_t lens[] = {0, 1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 1000, 1459, 1460};
	uint16_t p;

	(void)state;
	sh.rss = false;
	p = port_owned_by(0);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct rte_mbuf *m;
		struct rte_ipv4_hdr *ip;
		struct rte_tcp_hdr *th;
		size_t off;

		/* No verdict, right: on to TCP (port 25 is closed here). */
		reset_counters();
		net_eth_input(w[0], data_frame(p, lens[i]), false);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 1);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_BAD_CKSUM], 0);

		/* No verdict, one bit wrong in the header or the data: tcp_bad_checksum. */
		reset_counters();
		m = data_frame(p, lens[i]);
		ip =
		    rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
		th = (struct rte_tcp_hdr *)(ip + 1);
		off = sizeof(*th) + lens[i] - 1; /* the last octet */
		((uint8_t *)th)[off] ^= 0x10;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_BAD_CKSUM], 1);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 0);

		/* The same wrong segment with the port's GOOD: believed, not recomputed. */
		reset_counters();
		m = data_frame(p, lens[i]);
		ip =
		    rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
		th = (struct rte_tcp_hdr *)(ip + 1);
		th->cksum ^= 0x0101;
		m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_GOOD | RTE_MBUF_F_RX_IP_CKSUM_GOOD;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 1);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_BAD_CKSUM], 0);

		/*
		 * NONE: the port verified the data and left the field unfilled
		 * (virtio): taken, though the field would not verify.
		 */
		reset_counters();
		m = data_frame(p, lens[i]);
		ip =
		    rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
		th = (struct rte_tcp_hdr *)(ip + 1);
		th->cksum = 0x1234;
		ip->hdr_checksum ^= 0x0404;
		m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_NONE | RTE_MBUF_F_RX_IP_CKSUM_NONE;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 1);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_BAD_CKSUM], 0);
		assert_int_equal(w[0]->c.drops[DP_DROP_IP_BAD_CKSUM], 0);

		/* A right segment the port calls BAD: dropped as the port says. */
		reset_counters();
		m = data_frame(p, lens[i]);
		m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_BAD | RTE_MBUF_F_RX_IP_CKSUM_GOOD;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_BAD_CKSUM], 1);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 0);
	}

	/* The IPv4 header: wrong with no verdict, and right but called BAD by the port. */
	{
		struct rte_mbuf *m = data_frame(p, 10);
		struct rte_ipv4_hdr *ip =
		    rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));

		reset_counters();
		ip->time_to_live ^= 1;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_IP_BAD_CKSUM], 1);
		m = data_frame(p, 10);
		m->ol_flags = RTE_MBUF_F_RX_IP_CKSUM_BAD;
		net_eth_input(w[0], m, false);
		assert_int_equal(w[0]->c.drops[DP_DROP_IP_BAD_CKSUM], 2);
		assert_int_equal(w[0]->c.drops[DP_DROP_TCP_CLOSED_PORT], 0);
	}
}

static int
setup(void **state)
{
	char *argv[] = {"test",
	                "--no-huge",
	                "--no-pci",
	                "-m",
	                "64",
	                "--no-shconf",
	                "--no-telemetry",
	                "--log-level=lib.eal:error",
	                "--file-prefix=test_net_rss_input",
	                NULL};

	(void)state;
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0)
		return -1;
	sh.pool = rte_pktmbuf_pool_create("rssin", 1023, 0, DP_MBUF_PRIV_SIZE,
	                                  RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (sh.pool == NULL)
		return -1;
	sh.nworkers = 2;
	sh.ip = rte_cpu_to_be_32(OUR_IP);
	sh.mask = rte_cpu_to_be_32(0xffffff00u);
	sh.mtu = 1500;
	sh.msl_ms = 1000;
	sh.syn_backlog = 16;
	sh.max_conns = 64;
	sh.conn_mbufs = 64;
	sh.tsc_per_ms = rte_get_tsc_hz() / 1000;
	sh.mac.addr_bytes[0] = 0x02;
	sh.mac.addr_bytes[5] = 0x02;
	for (unsigned i = 0; i < 2; i++) {
		char name[RTE_RING_NAMESIZE];

		snprintf(name, sizeof(name), "rssin_steer_%u", i);
		sh.steer[i] = rte_ring_create(name, 64, 0, RING_F_SC_DEQ);
		if (sh.steer[i] == NULL)
			return -1;
	}
	if (net_arp_create(&sh) != PA_OK)
		return -1;
	for (unsigned i = 0; i < 2; i++)
		if ((w[i] = dp_worker_create(&sh, i, &ops, NULL)) == NULL)
			return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	reset_counters();
	for (unsigned i = 0; i < 2; i++) {
		dp_worker_destroy(w[i]);
		rte_free(w[i]);
		rte_ring_free(sh.steer[i]);
	}
	rte_hash_free(sh.neigh);
	rte_free(sh.arp_e);
	rte_mempool_free(sh.pool);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_right_queue_no_hop),
	    cmocka_unit_test(test_wrong_queue_counted_by_reason),
	    cmocka_unit_test(test_fragment_not_steered),
	    cmocka_unit_test(test_software_steering_counts_no_misqueue),
	    cmocka_unit_test(test_checksum_verdicts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
