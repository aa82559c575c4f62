/*
 * bench-stack.c: what one message costs in pigeond's DPDK stack, SMTP engine
 * and ingest host, in one process, with no network and no disk.
 *
 *   bench-stack [-6] [-m MESSAGES] [-c CONNECTIONS] [-s SIZE] [-r PER_CONNECTION] [-q]
 *
 * The server side is pigeond's own code, unchanged: dpdk_global_init() and
 * dpdk_backend_init() on a port made of two rte_rings (the net_ring PMD,
 * rte_eth_from_rings()), the worker's loop iteration dpdk_backend_poll(), the
 * SMTP engine through dataplane/ingest.c.  Only the store differs: a null
 * store (struct ingest_store) completes every message at once, as if synced,
 * so the figures are the packet path and the engine without RocksDB.
 *
 * The client is scripted in this file and runs in the same thread, one step
 * between two server loop iterations (so the run is deterministic and
 * callgrind counts the same instructions each time): it builds
 * Ethernet/IPv4/TCP frames itself (MSS 1460, no window scaling, timestamps
 * or SACK), ACKs everything the server sends and speaks SMTP with
 * PIPELINING: EHLO once per connection, then per message MAIL, RCPT and DATA
 * in one segment, the message (SIZE octets, CRLF.CRLF included) after the
 * 354, the next transaction after the 250; QUIT after PER_CONNECTION
 * messages (default 1000: under limits.commands), then a new connection from
 * a new port.  Connection i comes from 198.18.0.(10 + i), at most 240 of
 * them, so that per-address limits (limits.conn_per_ip) never refuse it.
 *
 * -6: the same over IPv6 (the server is 2001:db8::2/48, connection i comes
 * from 2001:db8:0:(i + 1)::10, a /64 of its own since the limits count an
 * IPv6 client per /64).  The client announces itself with a neighbour
 * solicitation instead of an ARP request and answers the server's with an
 * advertisement; dpdk.dad_transmits is 0, so the server's addresses are
 * usable at once.  Same script, same counts: the two runs compare the
 * families' costs per message.
 *
 * It prints messages/s, ns per message for the whole loop (client included)
 * and for the server's loop alone, and the stack's counters.  Exit status 0
 * only when every message was answered 250 and no other reply came; 1
 * otherwise (the smoke test in `meson test` relies on that; no timing is
 * asserted).  perf/bench-stack.sh adds instructions per message
 * (valgrind --tool=callgrind, counting inside dpdk_backend_poll() only).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"
#include "core/queue_id.h"
#include "core/runtime.h"
#include "dataplane/dp.h"
#include "dataplane/dpdk_backend.h"
#include "dataplane/eal.h"
#include "dataplane/ingest.h"
#include "dataplane/ingest_store.h"
#include "dataplane/worker.h"

#define RING_SIZE 4096
#define CLIENT_BURST 64
/*
 * Each connection has a client address of its own, 198.18.0.10 and up, so
 * that limits.conn_per_ip (50 by default) never refuses the benchmark.
 */
#define MAX_CONNS 240
#define CLIENT_MSS 1460
#define CLIENT_WINDOW 65535
#define PORT_BASE 20000
#define PORT_SPAN 40000 /* source ports PORT_BASE .. PORT_BASE + PORT_SPAN - 1 */
#define REPLY_MAX 4096
#define CLIENT_RING_SPARE (2 * MAX_CONNS) /* room kept for ARP replies */
#define CLIENT_MBUF_RESERVE 2048          /* mbufs the client leaves to the server */
#define NULL_STORE_SLOTS 1024             /* a power of 2, > MAX_CONNS: never full */
/* Loop iterations without progress before the run is declared stuck. */
#define STALL_LIMIT 2000000u

/* Host order; not RTE_IPV4(), whose int shift of 198 UBSan rightly refuses. */
#define SERVER_IP 0xc6120002u  /* 198.18.0.2 */
#define CLIENT_IP0 0xc612000au /* 198.18.0.10, connection 0's address */
/* -6: 2001:db8::2 and 2001:db8:0:(i + 1)::10; octet 7 of the address carries i + 1. */
static const uint8_t server_ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
#define CLIENT_IP6_CONN_OCTET 7
#define ND_NS 135
#define ND_NA 136
/*
 * Messages per connection before QUIT and a new connection: 1000 keeps a
 * session (4 commands a message) under limits.commands, 10000 by default.
 */
#define PER_CONN_DEFAULT 1000

/* ---- the null store: every message completes on the next poll, PA_OK ---- */

struct null_store {
	void *cookies[NULL_STORE_SLOTS];
	unsigned head, tail;
	uint64_t stored;
};

static int
null_attach(void *ctx, unsigned worker, int notify_fd, bool may_syscall)
{
	(void)ctx, (void)worker, (void)notify_fd, (void)may_syscall;
	return PA_OK;
}

static int
null_submit(void *ctx, unsigned worker, const struct spool_message *message)
{
	struct null_store *s = ctx;

	(void)worker;
	if (s->tail - s->head == NULL_STORE_SLOTS)
		return PA_AGAIN; /* the spool's backpressure contract, though never hit here */
	s->cookies[s->tail++ % NULL_STORE_SLOTS] = message->cookie;
	return PA_OK;
}

static unsigned
null_poll(void *ctx, unsigned worker, struct spool_completion *out, unsigned max)
{
	struct null_store *s = ctx;
	unsigned n = 0;

	(void)worker;
	while (s->head != s->tail && n < max) {
		out[n].cookie = s->cookies[s->head++ % NULL_STORE_SLOTS];
		out[n].status = PA_OK;
		n++;
	}
	s->stored += n;
	return n;
}

/* ---- the scripted client ---- */

enum cstate {
	C_IDLE,    /* no connection: open one when messages remain */
	C_SYN,     /* SYN sent */
	C_BANNER,  /* waiting for 220 */
	C_EHLO,    /* waiting for the last line of the EHLO reply */
	C_MAIL,    /* MAIL, RCPT, DATA sent: waiting for 250 */
	C_RCPT,    /* waiting for 250 */
	C_DATA,    /* waiting for 354 */
	C_DOT,     /* message sent: waiting for 250 queued */
	C_QUIT,    /* waiting for 221 */
	C_CLOSING, /* 221 received: waiting for the server's FIN, then ours is ACKed */
};

struct cconn {
	enum cstate state;
	uint16_t port; /* host order */
	uint32_t snd_una, snd_nxt, snd_wnd, rcv_nxt;
	uint16_t mss;
	bool need_ack, fin_rcvd, fin_sent;
	unsigned sent_here; /* messages sent on this connection */
	const uint8_t *out; /* what is still to be sent: a command or the message */
	size_t out_len;
	char reply[REPLY_MAX]; /* received bytes not yet a complete line */
	size_t reply_len;
};

struct bench {
	bool ip6; /* -6: every frame IPv6 */
	struct rte_mempool *pool;
	struct rte_ring *to_server, *from_server;
	struct rte_ether_addr server_mac, client_mac;
	struct pa_worker *worker;
	struct null_store store;
	struct cconn conns[MAX_CONNS];
	unsigned nconns;
	unsigned messages, per_conn;
	unsigned started;             /* messages whose MAIL was sent */
	unsigned ok;                  /* 250 to end of data */
	unsigned bad_replies;         /* any reply the script did not expect */
	unsigned resets;              /* RSTs from the server */
	unsigned generation;          /* connections opened: picks the next source port */
	unsigned first;               /* the connection that transmits first in this step */
	uint32_t next_iss[MAX_CONNS]; /* grows like a clock: TIME_WAIT takes the next SYN */
	uint8_t *message;             /* the DATA payload, CRLF.CRLF included */
	size_t message_len;
	struct rte_mbuf *tx[CLIENT_BURST * 4];
	unsigned ntx;
	uint64_t progress; /* replies and ACKed octets: the run moves */
	char first_bad[160];
};

static const char ehlo_cmd[] = "EHLO client.example.org\r\n";
static const char txn_cmds[] = "MAIL FROM:<bench@example.org>\r\n"
                               "RCPT TO:<user@example.com>\r\n"
                               "DATA\r\n";
static const char quit_cmd[] = "QUIT\r\n";

static void
flush_to_server(struct bench *b)
{
	unsigned done = 0;

	while (done < b->ntx)
		done += rte_ring_enqueue_burst(b->to_server, (void **)b->tx + done, b->ntx - done,
		                               NULL);
	b->ntx = 0;
}

static void
queue_frame(struct bench *b, struct rte_mbuf *m)
{
	if (b->ntx == pa_array_size(b->tx))
		flush_to_server(b);
	b->tx[b->ntx++] = m;
}

/* Connection i's IPv6 address: 2001:db8:0:(i + 1)::10. */
static void
client_ip6(unsigned i, uint8_t *a)
{
	memset(a, 0, 16);
	a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8;
	a[6] = (uint8_t)((i + 1) >> 8);
	a[CLIENT_IP6_CONN_OCTET] = (uint8_t)(i + 1);
	a[15] = 0x10;
}

/* The connection whose IPv6 address a is, or -1. */
static int
client_ip6_index(const struct bench *b, const uint8_t *a)
{
	uint8_t want[16];
	unsigned i = ((unsigned)a[6] << 8 | a[CLIENT_IP6_CONN_OCTET]) - 1;

	if (i >= b->nconns)
		return -1;
	client_ip6(i, want);
	return memcmp(a, want, 16) == 0 ? (int)i : -1;
}

static struct rte_mbuf *
client_alloc(struct bench *b)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->pool);

	if (m == NULL) {
		fprintf(stderr, "bench-stack: client: mbuf pool empty\n");
		exit(1);
	}
	return m;
}

/* One client segment: flags, the MSS option on a SYN, len octets of data. */
static void
send_segment(struct bench *b, struct cconn *c, uint8_t flags, const uint8_t *data, uint16_t len)
{
	struct rte_mbuf *m = client_alloc(b);
	uint16_t optlen = (flags & RTE_TCP_SYN_FLAG) ? 4 : 0;
	uint16_t tcplen = (uint16_t)(sizeof(struct rte_tcp_hdr) + optlen);
	uint16_t iplen = b->ip6 ? sizeof(struct rte_ipv6_hdr) : sizeof(struct rte_ipv4_hdr);
	uint16_t total = (uint16_t)(sizeof(struct rte_ether_hdr) + iplen + tcplen + len);
	struct rte_ether_hdr *eh;
	struct rte_tcp_hdr *th;

	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m, total);
	th = (struct rte_tcp_hdr *)((uint8_t *)(eh + 1) + iplen);
	rte_ether_addr_copy(&b->server_mac, &eh->dst_addr);
	rte_ether_addr_copy(&b->client_mac, &eh->src_addr);
	th->src_port = rte_cpu_to_be_16(c->port);
	th->dst_port = rte_cpu_to_be_16(25);
	th->sent_seq = rte_cpu_to_be_32(c->snd_nxt);
	th->recv_ack = rte_cpu_to_be_32((flags & RTE_TCP_ACK_FLAG) ? c->rcv_nxt : 0);
	th->data_off = (uint8_t)((tcplen / 4) << 4);
	th->tcp_flags = flags;
	th->rx_win = rte_cpu_to_be_16(CLIENT_WINDOW);
	th->cksum = 0;
	th->tcp_urp = 0;
	if (optlen != 0) {
		uint8_t *o = (uint8_t *)(th + 1);

		o[0] = 2; /* MSS (RFC 9293 3.2) */
		o[1] = 4;
		o[2] = CLIENT_MSS >> 8;
		o[3] = CLIENT_MSS & 0xff;
	}
	if (len != 0)
		memcpy((uint8_t *)th + tcplen, data, len);
	if (b->ip6) {
		struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(eh + 1);

		eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
		ip6->vtc_flow = rte_cpu_to_be_32(6u << 28);
		ip6->payload_len = rte_cpu_to_be_16((uint16_t)(tcplen + len));
		ip6->proto = IPPROTO_TCP;
		ip6->hop_limits = 64;
		client_ip6((unsigned)(c - b->conns), ip6->src_addr);
		memcpy(ip6->dst_addr, server_ip6, 16);
		th->cksum = rte_ipv6_udptcp_cksum(ip6, th);
	} else {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eh + 1);

		eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
		memset(ip, 0, sizeof(*ip));
		ip->version_ihl = RTE_IPV4_VHL_DEF;
		ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + tcplen + len));
		ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_TCP;
		ip->src_addr = rte_cpu_to_be_32(CLIENT_IP0 + (unsigned)(c - b->conns));
		ip->dst_addr = rte_cpu_to_be_32(SERVER_IP);
		ip->hdr_checksum = rte_ipv4_cksum(ip);
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	}
	c->snd_nxt += len + ((flags & (RTE_TCP_SYN_FLAG | RTE_TCP_FIN_FLAG)) ? 1 : 0);
	if (flags & RTE_TCP_ACK_FLAG)
		c->need_ack = false;
	queue_frame(b, m);
}

static void
client_send(struct cconn *c, const void *data, size_t len)
{
	c->out = data;
	c->out_len = len;
}

static void
bad_reply(struct bench *b, struct cconn *c, const char *line)
{
	if (b->bad_replies++ == 0)
		snprintf(b->first_bad, sizeof(b->first_bad), "port %u state %d: %.100s", c->port,
		         (int)c->state, line);
}

/* Starts the next transaction, or ends the connection. */
static void
next_transaction(struct bench *b, struct cconn *c)
{
	if (b->started < b->messages && c->sent_here < b->per_conn) {
		b->started++;
		c->sent_here++;
		client_send(c, txn_cmds, sizeof(txn_cmds) - 1);
		c->state = C_MAIL;
	} else {
		client_send(c, quit_cmd, sizeof(quit_cmd) - 1);
		c->state = C_QUIT;
	}
}

/* One complete reply line from the server. */
static void
client_line(struct bench *b, struct cconn *c, const char *line)
{
	bool last = line[3] == ' ';

	b->progress++;
	switch (c->state) {
	case C_BANNER:
		if (strncmp(line, "220", 3) != 0)
			break;
		if (last) {
			client_send(c, ehlo_cmd, sizeof(ehlo_cmd) - 1);
			c->state = C_EHLO;
		}
		return;
	case C_EHLO:
		if (strncmp(line, "250", 3) != 0)
			break;
		if (last)
			next_transaction(b, c);
		return;
	case C_MAIL:
		if (strncmp(line, "250 ", 4) != 0)
			break;
		c->state = C_RCPT;
		return;
	case C_RCPT:
		if (strncmp(line, "250 ", 4) != 0)
			break;
		c->state = C_DATA;
		return;
	case C_DATA:
		if (strncmp(line, "354 ", 4) != 0)
			break;
		client_send(c, b->message, b->message_len);
		c->state = C_DOT;
		return;
	case C_DOT:
		if (strncmp(line, "250 2.0.0 Ok: queued as ", 24) != 0)
			break;
		b->ok++;
		next_transaction(b, c);
		return;
	case C_QUIT:
		if (strncmp(line, "221 ", 4) != 0)
			break;
		c->state = C_CLOSING;
		return;
	default:
		break;
	}
	bad_reply(b, c, line);
}

static void
client_data(struct bench *b, struct cconn *c, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (c->reply_len == sizeof(c->reply) - 1) {
			bad_reply(b, c, "(reply line too long)");
			c->reply_len = 0;
		}
		c->reply[c->reply_len++] = (char)p[i];
		if (p[i] == '\n') {
			c->reply[c->reply_len] = '\0';
			if (c->reply_len >= 5)
				client_line(b, c, c->reply);
			else
				bad_reply(b, c, c->reply);
			c->reply_len = 0;
		}
	}
}

/* ARP requests for the client's address get a reply (the stack resolves before it sends). */
static void
client_arp(struct bench *b, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *ah = (struct rte_arp_hdr *)(eh + 1);
	uint32_t ours, theirs;

	if (rte_pktmbuf_data_len(m) < sizeof(*eh) + sizeof(*ah) ||
	    ah->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
	    rte_be_to_cpu_32(ah->arp_data.arp_tip) - CLIENT_IP0 >= b->nconns) {
		rte_pktmbuf_free(m);
		return;
	}
	/* Turned around in place: the request becomes our reply. */
	ours = ah->arp_data.arp_tip;
	theirs = ah->arp_data.arp_sip;
	rte_ether_addr_copy(&eh->src_addr, &eh->dst_addr);
	rte_ether_addr_copy(&b->client_mac, &eh->src_addr);
	ah->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	ah->arp_data.arp_tha = ah->arp_data.arp_sha;
	rte_ether_addr_copy(&b->client_mac, &ah->arp_data.arp_sha);
	ah->arp_data.arp_sip = ours;
	ah->arp_data.arp_tip = theirs;
	queue_frame(b, m);
}

/*
 * An ARP request for the server from one client address: the server learns
 * that address's MAC (RFC 826 merges the sender) before its first SYN.
 */
static void
client_announce(struct bench *b, uint32_t ip)
{
	struct rte_mbuf *m = client_alloc(b);
	struct rte_ether_hdr *eh;
	struct rte_arp_hdr *ah;

	eh = (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eh) + sizeof(*ah));
	ah = (struct rte_arp_hdr *)(eh + 1);
	memset(&eh->dst_addr, 0xff, sizeof(eh->dst_addr));
	rte_ether_addr_copy(&b->client_mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	ah->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	ah->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ah->arp_hlen = RTE_ETHER_ADDR_LEN;
	ah->arp_plen = 4;
	ah->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
	rte_ether_addr_copy(&b->client_mac, &ah->arp_data.arp_sha);
	ah->arp_data.arp_sip = rte_cpu_to_be_32(ip);
	memset(&ah->arp_data.arp_tha, 0, sizeof(ah->arp_data.arp_tha));
	ah->arp_data.arp_tip = rte_cpu_to_be_32(SERVER_IP);
	queue_frame(b, m);
}

/*
 * A neighbour solicitation (type ND_NS) or advertisement (ND_NA) for target,
 * from src to dst (Ethernet edst), with our link-layer address as its option
 * (source for a solicitation, target for an advertisement: RFC 4861 4.3, 4.4).
 */
static void
client_nd(struct bench *b, uint8_t type, const uint8_t *src, const uint8_t *dst,
          const struct rte_ether_addr *edst, const uint8_t *target)
{
	struct rte_mbuf *m = client_alloc(b);
	const uint16_t icmplen = 8 + 16 + 8; /* header, target, one link-layer option */
	struct rte_ether_hdr *eh =
	    (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eh) + 40 + icmplen);
	struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(eh + 1);
	uint8_t *icmp = (uint8_t *)(ip6 + 1);

	rte_ether_addr_copy(edst, &eh->dst_addr);
	rte_ether_addr_copy(&b->client_mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip6->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip6->payload_len = rte_cpu_to_be_16(icmplen);
	ip6->proto = IPPROTO_ICMPV6;
	ip6->hop_limits = 255; /* RFC 4861 7.1.1: from the link */
	memcpy(ip6->src_addr, src, 16);
	memcpy(ip6->dst_addr, dst, 16);
	memset(icmp, 0, icmplen);
	icmp[0] = type;
	if (type == ND_NA)
		icmp[4] = 0x60; /* solicited, override */
	memcpy(icmp + 8, target, 16);
	icmp[24] = type == ND_NS ? 1 : 2; /* source / target link-layer address */
	icmp[25] = 1;
	memcpy(icmp + 26, &b->client_mac, RTE_ETHER_ADDR_LEN);
	*(uint16_t *)(icmp + 2) = rte_ipv6_udptcp_cksum(ip6, icmp);
	queue_frame(b, m);
}

/* A solicitation for the server from connection i's address: the server learns our MAC. */
static void
client_announce6(struct bench *b, unsigned i)
{
	uint8_t src[16], snm[16] = {0xff, 0x02, [11] = 1, [12] = 0xff};
	struct rte_ether_addr edst = {{0x33, 0x33, 0xff}};

	client_ip6(i, src);
	memcpy(snm + 13, server_ip6 + 13, 3); /* solicited-node multicast (RFC 4291 2.7.1) */
	memcpy(edst.addr_bytes + 3, server_ip6 + 13, 3);
	client_nd(b, ND_NS, src, snm, &edst, server_ip6);
}

/* The server's solicitations for a client address are answered; other ICMPv6 is dropped. */
static void
client_icmp6(struct bench *b, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(eh + 1);
	const uint8_t *icmp = (const uint8_t *)(ip6 + 1);

	if (rte_pktmbuf_data_len(m) >= sizeof(*eh) + sizeof(*ip6) + 24 && icmp[0] == ND_NS &&
	    client_ip6_index(b, icmp + 8) >= 0) {
		struct rte_ether_addr to;

		rte_ether_addr_copy(&eh->src_addr, &to);
		client_nd(b, ND_NA, icmp + 8, ip6->src_addr, &to, icmp + 8);
	}
	rte_pktmbuf_free(m);
}

static void
client_segment(struct bench *b, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_tcp_hdr *th;
	struct cconn *c;
	unsigned idx;
	uint32_t seq, ack;
	uint16_t hlen, dlen, iplen;
	const uint8_t *payload;

	if (b->ip6) {
		struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(eh + 1);

		if (ip6->proto == IPPROTO_ICMPV6) {
			client_icmp6(b, m);
			return;
		}
		if (ip6->proto != IPPROTO_TCP)
			goto out;
		th = (struct rte_tcp_hdr *)(ip6 + 1);
		iplen = rte_be_to_cpu_16(ip6->payload_len);
	} else {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eh + 1);

		if (ip->next_proto_id != IPPROTO_TCP)
			goto out;
		th = (struct rte_tcp_hdr *)((uint8_t *)ip + rte_ipv4_hdr_len(ip));
		iplen = (uint16_t)(rte_be_to_cpu_16(ip->total_length) - rte_ipv4_hdr_len(ip));
	}
	idx = (unsigned)(rte_be_to_cpu_16(th->dst_port) - PORT_BASE) % b->nconns;
	c = &b->conns[idx];
	if (c->state == C_IDLE || rte_be_to_cpu_16(th->dst_port) != c->port)
		goto out; /* a segment for a connection already gone */
	hlen = (uint16_t)((th->data_off >> 4) * 4);
	dlen = (uint16_t)(iplen - hlen);
	payload = (const uint8_t *)th + hlen;
	seq = rte_be_to_cpu_32(th->sent_seq);
	ack = rte_be_to_cpu_32(th->recv_ack);
	if (th->tcp_flags & RTE_TCP_RST_FLAG) {
		b->resets++;
		bad_reply(b, c, "(RST)");
		c->state = C_IDLE;
		goto out;
	}
	if (c->state == C_SYN) {
		if ((th->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) !=
		        (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG) ||
		    ack != c->snd_nxt)
			goto out;
		c->rcv_nxt = seq + 1;
		c->snd_una = ack;
		c->snd_wnd = rte_be_to_cpu_16(th->rx_win);
		c->need_ack = true;
		c->state = C_BANNER;
		b->progress++;
		goto out;
	}
	if (th->tcp_flags & RTE_TCP_ACK_FLAG) {
		if ((int32_t)(ack - c->snd_una) > 0 && (int32_t)(ack - c->snd_nxt) <= 0) {
			b->progress += ack - c->snd_una;
			c->snd_una = ack;
		}
		c->snd_wnd = rte_be_to_cpu_16(th->rx_win);
	}
	if (seq != c->rcv_nxt) {
		c->need_ack = dlen > 0; /* a duplicate: ACK what we have */
		goto out;
	}
	if (dlen > 0) {
		c->rcv_nxt += dlen;
		c->need_ack = true;
		client_data(b, c, payload, dlen);
	}
	if (th->tcp_flags & RTE_TCP_FIN_FLAG) {
		c->rcv_nxt++;
		c->fin_rcvd = true;
		c->need_ack = true;
	}
out:
	rte_pktmbuf_free(m);
}

/* Everything the server sent since the last step. */
static void
client_receive(struct bench *b)
{
	struct rte_mbuf *pkts[CLIENT_BURST];
	unsigned n;

	while ((n = rte_ring_dequeue_burst(b->from_server, (void **)pkts, CLIENT_BURST, NULL)) >
	       0) {
		for (unsigned i = 0; i < n; i++) {
			struct rte_ether_hdr *eh =
			    rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *);

			if (eh->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP))
				client_arp(b, pkts[i]);
			else if (eh->ether_type == rte_cpu_to_be_16(b->ip6 ? RTE_ETHER_TYPE_IPV6
			                                                   : RTE_ETHER_TYPE_IPV4))
				client_segment(b, pkts[i]);
			else
				rte_pktmbuf_free(pkts[i]);
		}
	}
}

/*
 * Frames the client may make in one step: no more than the server's RX ring
 * takes, and never the mbufs the server needs for its own output.  The
 * client does not retransmit, so it must never lose a frame of its own.
 */
static unsigned
client_budget(const struct bench *b)
{
	unsigned ring = rte_ring_free_count(b->to_server);
	unsigned pool = rte_mempool_avail_count(b->pool);

	ring = ring > b->ntx + CLIENT_RING_SPARE ? ring - b->ntx - CLIENT_RING_SPARE : 0;
	pool = pool > CLIENT_MBUF_RESERVE ? pool - CLIENT_MBUF_RESERVE : 0;
	return ring < pool ? ring : pool;
}

/*
 * What each connection sends now, within the budget: a SYN, data within the
 * server's window, ACKs, FIN.  Connections take turns at going first, so a
 * short budget delays every connection alike.
 */
static void
client_transmit(struct bench *b)
{
	unsigned budget = client_budget(b);

	for (unsigned k = 0; k < b->nconns && budget > 0; k++) {
		unsigned i = (b->first + k) % b->nconns;
		struct cconn *c = &b->conns[i];

		if (c->state == C_IDLE) {
			if (b->started >= b->messages)
				continue;
			memset(c, 0, sizeof(*c));
			/* A fresh port each time: the old 4-tuple is in the server's TIME_WAIT. */
			c->port =
			    (uint16_t)(PORT_BASE + i +
			               b->nconns * (b->generation++ % (PORT_SPAN / b->nconns)));
			c->snd_nxt = c->snd_una = b->next_iss[i];
			c->mss = CLIENT_MSS;
			c->state = C_SYN;
			send_segment(b, c, RTE_TCP_SYN_FLAG, NULL, 0);
			budget--;
			continue;
		}
		while (c->out_len > 0 && budget > 0) {
			uint32_t in_flight = c->snd_nxt - c->snd_una;
			size_t n = c->out_len < c->mss ? c->out_len : c->mss;

			if (in_flight + n > c->snd_wnd)
				break; /* the server's window: wait for its ACK */
			send_segment(b, c, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, c->out,
			             (uint16_t)n);
			budget--;
			c->out += n;
			c->out_len -= n;
		}
		if (budget == 0)
			break;
		if (c->state == C_CLOSING && c->fin_rcvd && !c->fin_sent) {
			send_segment(b, c, RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, NULL, 0);
			budget--;
			c->fin_sent = true;
		} else if (c->need_ack) {
			send_segment(b, c, RTE_TCP_ACK_FLAG, NULL, 0);
			budget--;
		}
		if (c->fin_sent && c->snd_una == c->snd_nxt) {
			b->next_iss[i] = c->snd_nxt + (1u << 20);
			c->state = C_IDLE; /* closed: the next one opens on the next step */
			b->progress++;
		}
	}
	b->first = (b->first + 1) % b->nconns;
	flush_to_server(b);
}

static bool
all_closed(const struct bench *b)
{
	for (unsigned i = 0; i < b->nconns; i++)
		if (b->conns[i].state != C_IDLE)
			return false;
	return true;
}

/* ---- set-up ---- */

/* Header, body lines of 78 letters, the last one shorter, then the end of data. */
static void
build_message(struct bench *b, size_t size)
{
	static const char head[] = "From: <bench@example.org>\r\n"
	                           "To: <user@example.com>\r\n"
	                           "Subject: bench-stack\r\n"
	                           "\r\n";
	size_t n = sizeof(head) - 1, body_end;

	if (size < n + 8)
		size = n + 8;
	body_end = size - 3; /* ".\r\n" follows the last line's CRLF */
	b->message = malloc(size + 80);
	if (b->message == NULL) {
		fprintf(stderr, "bench-stack: out of memory for a %zu-octet message\n", size);
		exit(1);
	}
	memcpy(b->message, head, n);
	while (n < body_end) {
		size_t line = body_end - n >= 80 ? 78 : body_end - n;

		line = line > 2 ? line - 2 : 1;
		for (size_t i = 0; i < line; i++)
			b->message[n + i] = (uint8_t)('a' + (n + i) % 26);
		n += line;
		b->message[n++] = '\r';
		b->message[n++] = '\n';
	}
	memcpy(b->message + n, ".\r\n", 3);
	b->message_len = n + 3;
}

static void
start_eal(const char *argv0)
{
	static char lcores[64], prefix[64];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char *argv[] = {
	    (char *)argv0, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
	    "-m",          "256",       lcores,     prefix,        "--log-level=lib.eal:error",
	    NULL};

	/* One lcore, floating: the client and the server loop share this thread. */
	snprintf(lcores, sizeof(lcores), "--lcores=(0)@(0-%ld)", ncpu < 1 ? 0 : ncpu - 1);
	snprintf(prefix, sizeof(prefix), "--file-prefix=bench-stack-%d", (int)getpid());
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0)
		rte_exit(EXIT_FAILURE, "rte_eal_init() failed: %s\n", rte_strerror(rte_errno));
}

/* The port: the server receives what the client enqueues on to_server and vice versa. */
static void
make_port(struct bench *b)
{
	int port;

	b->to_server = rte_ring_create("bench_to_server", RING_SIZE, (int)rte_socket_id(),
	                               RING_F_SP_ENQ | RING_F_SC_DEQ);
	b->from_server = rte_ring_create("bench_from_server", RING_SIZE, (int)rte_socket_id(),
	                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (b->to_server == NULL || b->from_server == NULL)
		rte_exit(EXIT_FAILURE, "rte_ring_create() failed: %s\n", rte_strerror(rte_errno));
	port = rte_eth_from_rings("net_ring_bench", &b->to_server, 1, &b->from_server, 1,
	                          rte_socket_id());
	if (port < 0)
		rte_exit(EXIT_FAILURE, "rte_eth_from_rings() failed: %s\n",
		         rte_strerror(rte_errno));
}

static void
load_config(struct pa_config *config)
{
	/* The same configuration for both families: only which one the client uses differs. */
	static const struct config_override ov[] = {
	    {"backend", "dpdk"},
	    {"dpdk.ip", "198.18.0.2/24"},
	    {"dpdk.ip6", "2001:db8::2/48"},
	    {"dpdk.dad_transmits", "0"},
	    {"listen", "198.18.0.2:25"},
	    {"domains", "example.com"},
	    {"hostname", "bench.pigeonair.test"},
	    {"dpdk.mbufs", "8191"},
	};
	char err[CONFIG_ERR_MAX];

	if (config_load(config, NULL, ov, pa_array_size(ov), err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s\n", err);
}

static struct pa_worker *
make_worker(struct pa_shared *shared, const struct pa_config *config)
{
	struct pa_worker *w = rte_zmalloc("pa_worker", sizeof(*w), RTE_CACHE_LINE_SIZE);

	if (w == NULL)
		rte_exit(EXIT_FAILURE, "rte_zmalloc(worker) failed\n");
	w->id = 0;
	w->lcore = rte_lcore_id();
	w->shared = shared;
	w->runtime = runtime_ref(shared->runtime);
	TAILQ_INIT(&w->submit_backlog);
	TAILQ_INIT(&w->tls_backlog);
	queue_id_gen_init(&w->queue_ids, config->node_id, 0);
	if (dpdk_backend_init(w, config) != PA_OK)
		rte_exit(EXIT_FAILURE, "dpdk_backend_init() failed (see above)\n");
	return w;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench-stack [-6] [-m MESSAGES] [-c CONNECTIONS] [-s SIZE] "
	                "[-r PER_CONNECTION] [-l off|direct|ring] [-q]\n");
	exit(2);
}

static unsigned
arg_unsigned(const char *s, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi)
		usage();
	return (unsigned)v;
}

int
main(int argc, char **argv)
{
	static struct bench b;
	struct pa_config config;
	struct pa_shared shared = {0};
	struct dp_counters dc;
	size_t size = 4096;
	uint64_t server_tsc = 0, t0, t1, loops = 0, idle = 0, last_progress = 0;
	bool quiet = false, ok;
	const char *log_mode = "off";
	double secs, hz;
	int opt;

	b.messages = 100000;
	b.nconns = 16;
	b.per_conn = PER_CONN_DEFAULT;
	while ((opt = getopt(argc, argv, "6m:c:s:r:l:qh")) != -1) {
		switch (opt) {
		case '6':
			b.ip6 = true;
			break;
		case 'm':
			b.messages = arg_unsigned(optarg, 1, 1u << 30);
			break;
		case 'c':
			b.nconns = arg_unsigned(optarg, 1, MAX_CONNS);
			break;
		case 's':
			size = arg_unsigned(optarg, 64, 1u << 20);
			break;
		case 'r':
			b.per_conn = arg_unsigned(optarg, 1, 1u << 30);
			break;
		case 'q':
			quiet = true;
			break;
		case 'l':
			log_mode = optarg;
			if (strcmp(log_mode, "off") != 0 && strcmp(log_mode, "direct") != 0 &&
			    strcmp(log_mode, "ring") != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	pa_log_init("bench-stack");
	start_eal(argv[0]);
	make_port(&b);
	load_config(&config);
	/*
	 * -l off (default): no "accepted" line, the cost of the stack and engine
	 * alone.  -l direct: one line per message written by this thread, as every
	 * worker did before core/log.c's rings.  -l ring: queued to the log thread,
	 * as pigeond's workers do.  Send stderr to /dev/null for the last two.
	 */
	if (strcmp(log_mode, "off") == 0) {
		pa_log_set_level(PA_LOG_WARNING);
	} else if (strcmp(log_mode, "ring") == 0) {
		if (pa_log_start() != PA_OK || pa_log_attach_thread() != PA_OK)
			rte_exit(EXIT_FAILURE, "no log thread\n");
	}

	shared.runtime = runtime_new(&config, 1);
	if (shared.runtime == NULL)
		rte_exit(EXIT_FAILURE, "out of memory\n");
	ingest_bind_callbacks(&shared.runtime->smtp);
	shared.store = (struct ingest_store){
	    .ctx = &b.store,
	    .attach = null_attach,
	    .submit = null_submit,
	    .poll = null_poll,
	};
	if (dpdk_global_init(&config) != PA_OK)
		rte_exit(EXIT_FAILURE, "dpdk_global_init() failed (see above)\n");
	b.pool = dpdk_shared()->pool;
	b.server_mac = dpdk_shared()->mac;
	b.client_mac = (struct rte_ether_addr){{0x02, 0, 0, 0, 0, 0x01}};
	b.worker = make_worker(&shared, &config);
	build_message(&b, size);
	for (unsigned i = 0; i < b.nconns; i++)
		b.next_iss[i] = 0x10000000u * (i + 1);

	for (unsigned i = 0; i < b.nconns; i++) {
		if (b.ip6)
			client_announce6(&b, i);
		else
			client_announce(&b, CLIENT_IP0 + i);
	}
	hz = (double)rte_get_tsc_hz();
	t0 = rte_rdtsc();
	while (b.ok + b.bad_replies < b.messages || !all_closed(&b)) {
		uint64_t s;

		client_receive(&b);
		client_transmit(&b);
		s = rte_rdtsc();
		dpdk_backend_poll(b.worker);
		server_tsc += rte_rdtsc() - s;
		loops++;
		if (b.progress != last_progress) {
			last_progress = b.progress;
			idle = 0;
		} else if (++idle > STALL_LIMIT) {
			fprintf(stderr, "bench-stack: no progress for %u loop iterations\n",
			        STALL_LIMIT);
			break;
		}
		if (b.resets > 0)
			break;
	}
	t1 = rte_rdtsc();
	secs = (double)(t1 - t0) / hz;

	if (dpdk_backend_counters(0, &dc) != PA_OK)
		rte_exit(EXIT_FAILURE, "dpdk_backend_counters() failed\n");
	printf(
	    "bench-stack: IPv%d, %u messages of %zu octets, %u connections at a time, %u messages "
	    "per connection, null store\n",
	    b.ip6 ? 6 : 4, b.messages, b.message_len, b.nconns, b.per_conn);
	printf("  250 replies          %u of %u, other replies %u, resets %u\n", b.ok, b.messages,
	       b.bad_replies, b.resets);
	if (!quiet) {
		uint64_t drops = 0;

		for (unsigned i = 0; i < DP_DROP_COUNT; i++)
			drops += dc.drops[i];
		printf("  messages/s           %.0f\n", b.ok / secs);
		printf("  ns/message, all      %.0f (client and server in one thread)\n",
		       secs * 1e9 / b.ok);
		printf("  ns/message, server   %.0f (dpdk_backend_poll(): stack, engine, ingest)\n",
		       (double)server_tsc / hz * 1e9 / b.ok);
		printf("  server loop turns    %llu; frames in %llu out %llu; drops %llu; "
		       "retransmits %llu\n",
		       (unsigned long long)loops, (unsigned long long)dc.rx_pkts,
		       (unsigned long long)dc.tx_pkts, (unsigned long long)drops,
		       (unsigned long long)dc.retransmits);
	}
	if (b.bad_replies > 0)
		fprintf(stderr, "bench-stack: first unexpected reply: %s\n", b.first_bad);
	ok = b.ok == b.messages && b.bad_replies == 0 && b.store.stored == b.messages;
	if (!ok)
		fprintf(stderr, "bench-stack: FAILED: %u of %u messages got 250 (%llu stored)\n",
		        b.ok, b.messages, (unsigned long long)b.store.stored);

	/* The worker's own stop path frees its connections (pigeond's order from here on). */
	__atomic_store_n(&shared.stopping, 1, __ATOMIC_RELEASE);
	dpdk_backend_run(b.worker);
	dpdk_global_fini();
	runtime_unref(b.worker->runtime);
	rte_free(b.worker);
	runtime_unref(shared.runtime); /* the runtime took the config's allocations: freed here */
	free(b.message);
	eal_stop(); /* rte_eal_cleanup(), and no runtime directory left behind */
	if (strcmp(log_mode, "ring") == 0) {
		pa_log_detach_thread();
		pa_log_stop();
		printf("  log lines dropped    %llu\n", (unsigned long long)pa_log_dropped());
	}
	if (ok)
		printf("bench-stack: ok\n");
	return ok ? 0 : 1;
}
