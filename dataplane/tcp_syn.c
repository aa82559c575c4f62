/*
 * tcp_syn.c: the listener: a stateful SYN queue, and SYN cookies on overflow.
 *
 * SMTP is server-speaks-first: a client whose final ACK is lost believes the
 * connection is up and waits for a banner that a cookie-only server never
 * sends.  So every SYN gets a small SYN-queue entry (struct tcp_syn, no TCB)
 * whose SYN-ACK is retransmitted on the RFC 6298 schedule (1 s, doubling, up
 * to TCP_SYNACK_RETRIES); the peer's retransmitted ACK then completes the
 * handshake.  Only when the queue holds dpdk.syn_backlog entries does a SYN
 * get a cookie instead (tcp_isn.h).  dpdk.syn_per_source bounds the entries
 * one source address may hold; beyond it its SYNs get cookies too.
 */
#include <rte_byteorder.h>
#include <rte_hash.h>
#include <rte_tcp.h>

#include "core/pa.h"
#include "dataplane/tcp.h"

uint16_t
tcp_syn_window(const struct dp_worker *dw)
{
	/* RFC 7323 2.2: the window in a SYN is never scaled. */
	uint32_t win = dw->sh->conn_mbufs * (uint32_t)(dw->sh->mtu - 40);

	return (uint16_t)RTE_MIN(win, 65535u);
}

static void
send_synack(struct dp_worker *dw, const struct tcp_syn *syn)
{
	tcp_send_raw(dw, &syn->key, syn->iss, syn->irs + 1, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG,
	             tcp_syn_window(dw), syn, syn->ts_ok, syn->tsval);
}

/*
 * The source whose SYN-queue share is counted: the address, or an IPv6
 * peer's /64 (one subscriber's whole prefix is one source, as limits.* count).
 */
static union tcp_addr
source_of(const struct tcp_key *key)
{
	union tcp_addr a = key->raddr;

	if (tcp_key_v6(key))
		a.w[2] = a.w[3] = 0;
	return a;
}

static uintptr_t
source_count(struct dp_worker *dw, const struct tcp_key *key)
{
	union tcp_addr addr = source_of(key);
	void *data;

	if (rte_hash_lookup_data(dw->syn_src, &addr, &data) < 0)
		return 0;
	return (uintptr_t)data;
}

static void
source_adjust(struct dp_worker *dw, const struct tcp_key *key, int delta)
{
	union tcp_addr addr = source_of(key);
	uintptr_t n = source_count(dw, key) + (uintptr_t)(intptr_t)delta;

	if (n == 0)
		rte_hash_del_key(dw->syn_src, &addr);
	else
		rte_hash_add_key_data(dw->syn_src, &addr, (void *)n);
}

/* Takes an entry off the queue; keep_hash when a connection replaces it in the TCB hash. */
static void
syn_free(struct dp_worker *dw, struct tcp_syn *syn, bool keep_hash)
{
	tcp_timer_cancel(dw->wheel, &syn->timer);
	if (!keep_hash)
		tcp_hash_del(dw, &syn->key);
	source_adjust(dw, &syn->key, -1);
	SLIST_INSERT_HEAD(&dw->syn_free, syn, free_link);
	dw->nsyns--;
}

static void
synack_timeout(struct tcp_timer *t, void *arg)
{
	struct dp_worker *dw = arg;
	struct tcp_syn *syn = pa_container_of(t, struct tcp_syn, timer);

	if (++syn->tries > TCP_SYNACK_RETRIES) {
		syn_free(dw, syn, false);
		return;
	}
	dw->c.synack_retransmits++;
	send_synack(dw, syn);
	tcp_timer_arm(dw->wheel, &syn->timer, (uint64_t)TCP_RTO_INIT_MS << syn->tries,
	              synack_timeout);
}

static uint64_t
now_s(const struct dp_worker *dw)
{
	return dw->now_ms / 1000;
}

/* The key's addresses for the ISN and cookie hashes: 4 octets each for IPv4, 16 for IPv6. */
static size_t
key_addrs(const struct tcp_key *key, const void **laddr, const void **raddr)
{
	bool v6 = tcp_key_v6(key);

	*laddr = v6 ? (const void *)key->laddr.a6 : (const void *)&key->laddr.v4;
	*raddr = v6 ? (const void *)key->raddr.a6 : (const void *)&key->raddr.v4;
	return v6 ? 16 : 4;
}

uint16_t
tcp_our_mss(const struct dp_worker *dw, const struct tcp_key *key)
{
	/* IPv6's header is 20 octets longer; its minimum MTU 1280 gives 1220 (RFC 8200 5). */
	return (uint16_t)(dw->sh->mtu - (tcp_key_v6(key) ? 60 : 40));
}

uint16_t
tcp_peer_mss(struct dp_worker *dw, const struct tcp_key *key, const struct tcp_opts *o)
{
	uint16_t ours = tcp_our_mss(dw, key);
	uint32_t pmtu;

	/* RFC 8201 5.2: a path MTU learned for the destination bounds what we send from the start.
	 */
	if (tcp_key_v6(key) && (pmtu = net_pmtu6_get(dw, key->raddr.a6)) != 0 && pmtu - 60 < ours) {
		ours = (uint16_t)(pmtu - 60);
		dw->c.pmtu_cached++;
	}

	if (!o->has_mss || o->mss < 64)
		return RTE_MIN((uint16_t)TCP_MSS_DEFAULT, ours);
	return RTE_MIN(o->mss, ours);
}

uint32_t
tcp_key_isn(const struct dp_worker *dw, const struct tcp_key *key)
{
	const void *la, *ra;
	size_t alen = key_addrs(key, &la, &ra);

	return tcp_isn_tuple(&dw->sh->secret, la, ra, alen, key->lport, key->rport, tcp_now_us(dw));
}

void
tcp_syn_listen_input(struct dp_worker *dw, struct tcp_seg *seg)
{
	struct tcp_syn *syn;

	bool source_full =
	    dw->sh->syn_per_source > 0 && source_count(dw, &seg->key) >= dw->sh->syn_per_source;

	dw->c.syns_in++;
	if (source_full || dw->nsyns >= dw->sh->syn_backlog) {
		/*
		 * Overflow, of the queue or of this source's share of it: answer
		 * statelessly with a cookie.  One source cannot fill the queue, and
		 * is still served.
		 */
		if (source_full)
			dw->c.syn_per_source_cookies++;
		const void *la, *ra;
		size_t alen = key_addrs(&seg->key, &la, &ra);
		uint32_t cookie = tcp_cookie_make_tuple(
		    &dw->sh->secret, la, ra, alen, seg->key.lport, seg->key.rport, seg->seq,
		    tcp_peer_mss(dw, &seg->key, &seg->opts), now_s(dw));
		struct tcp_syn plain = {.key = seg->key};

		dw->c.syn_queue_overflows++;
		dw->c.cookies_sent++;
		dw->last_cookie_s = now_s(dw);
		plain.iss = cookie;
		plain.irs = seg->seq;
		send_synack(dw, &plain);
		return;
	}
	syn = SLIST_FIRST(&dw->syn_free);
	if (syn != NULL)
		SLIST_REMOVE_HEAD(&dw->syn_free, free_link);
	else
		syn = &dw->syns[dw->syns_used++]; /* nsyns < syn_backlog: there is one */
	*syn = (struct tcp_syn){
	    .key = seg->key,
	    .iss = tcp_key_isn(dw, &seg->key),
	    .irs = seg->seq,
	    .mss = tcp_peer_mss(dw, &seg->key, &seg->opts),
	    .ws_ok = seg->opts.has_wscale,
	    .snd_wscale = seg->opts.wscale,
	    .sack_ok = seg->opts.sack_ok,
	    .ts_ok = seg->opts.has_ts,
	    .tsval = seg->opts.tsval,
	};
	if (tcp_hash_add(dw, &syn->key, syn, TCP_TAG_SYN) != PA_OK) {
		SLIST_INSERT_HEAD(&dw->syn_free, syn, free_link);
		dw->c.drops[DP_DROP_SYN_CONN_LIMIT]++;
		return;
	}
	dw->nsyns++;
	source_adjust(dw, &seg->key, +1);
	send_synack(dw, syn);
	tcp_timer_arm(dw->wheel, &syn->timer, TCP_RTO_INIT_MS, synack_timeout);
}

/* The handshake is complete: a TCB, and the application told. */
static struct tcb *
establish(struct dp_worker *dw, const struct tcp_syn *syn, struct tcp_seg *seg)
{
	struct tcb *tcb = tcp_conn_create(dw, syn, seg);

	if (tcb == NULL) {
		dw->c.drops[DP_DROP_SYN_CONN_LIMIT]++;
		tcp_send_rst_for(dw, seg);
		return NULL;
	}
	if (tcp_app_established(dw, tcb) != PA_OK) {
		tcp_send_rst_for(dw, seg);
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, true);
		return NULL;
	}
	return tcb;
}

void
tcp_syn_entry_input(struct dp_worker *dw, struct tcp_syn *syn, struct tcp_seg *seg)
{
	struct tcb *tcb;
	struct tcp_syn copy;

	if (seg->flags & RTE_TCP_RST_FLAG) {
		/* RFC 5961 3.2 in SYN-RECEIVED: only the exact sequence number resets. */
		if (seg->seq == syn->irs + 1)
			syn_free(dw, syn, false);
		else
			dw->c.drops[DP_DROP_TCP_RST_OUT_OF_WINDOW]++;
		return;
	}
	if (seg->flags & RTE_TCP_SYN_FLAG) {
		/* A retransmitted SYN: our SYN-ACK was lost. */
		if (seg->seq == syn->irs && !(seg->flags & RTE_TCP_ACK_FLAG))
			send_synack(dw, syn);
		else
			dw->c.drops[DP_DROP_TCP_STATE]++;
		return;
	}
	if (!(seg->flags & RTE_TCP_ACK_FLAG)) {
		dw->c.drops[DP_DROP_TCP_NO_ACK]++;
		return;
	}
	if (seg->ack != syn->iss + 1 || seg->seq != syn->irs + 1) {
		/* RFC 9293 3.10.7.4 SYN-RECEIVED: an unacceptable ACK gets a RST. */
		dw->c.drops[DP_DROP_TCP_BAD_ACK]++;
		if (seg->ack != syn->iss + 1)
			tcp_send_rst_for(dw, seg);
		return;
	}
	copy = *syn;
	if (seg->opts.has_ts)
		copy.tsval = seg->opts.tsval;
	syn_free(dw, syn, true); /* its hash entry is replaced by the TCB's */
	tcb = establish(dw, &copy, seg);
	if (tcb == NULL) {
		tcp_hash_del(dw, &copy.key);
		return;
	}
	tcp_conn_input(dw, tcb, seg);
}

struct tcb *
tcp_syn_cookie_ack(struct dp_worker *dw, struct tcp_seg *seg)
{
	struct tcp_syn syn = {.key = seg->key};
	uint16_t mss;

	if (dw->last_cookie_s == 0 || now_s(dw) - dw->last_cookie_s > 2 * TCP_COOKIE_PERIOD_S)
		return NULL;
	const void *la, *ra;
	size_t alen = key_addrs(&seg->key, &la, &ra);

	if (!tcp_cookie_check_tuple(&dw->sh->secret, la, ra, alen, seg->key.lport, seg->key.rport,
	                            seg->seq - 1, seg->ack - 1, now_s(dw), &mss)) {
		dw->c.drops[DP_DROP_COOKIE_BAD]++;
		return NULL;
	}
	dw->c.cookies_accepted++;
	syn.iss = seg->ack - 1;
	syn.irs = seg->seq - 1;
	syn.mss = mss;
	return establish(dw, &syn, seg);
}
