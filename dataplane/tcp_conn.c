/*
 * tcp_conn.c: the TCB hash, connection set-up from a completed handshake,
 * teardown, and compact TIME_WAIT.
 *
 * One rte_hash per worker maps the 4-tuple to a tagged pointer (tcp.h): the
 * worker is its only reader and writer, so it needs no locks.  TIME_WAIT
 * (RFC 9293 3.6.1) is kept for 2*MSL in a struct tcp_tw of a few dozen
 * octets instead of the TCB; MSL is dpdk.msl and never zero.  A new SYN for
 * a TIME_WAIT tuple is accepted when it is clearly newer (RFC 6191).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_tcp.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/tcp.h"

uint64_t
tcp_now_us(const struct dp_worker *dw)
{
	(void)dw;
	return rte_get_tsc_cycles() / (rte_get_tsc_hz() / 1000000u);
}

/*
 * The TCB hash's hash: an IPv4 key (mapped addresses) hashes its 12 octets
 * that vary, the IPv4 addresses and the ports, as the 12-octet key did
 * before IPv6; an IPv6 key all 36.  Equal keys hash alike either way.
 */
static uint32_t
tcp_key_hash(const void *data, uint32_t len, uint32_t init)
{
	const struct tcp_key *k = data;
	uint32_t w[3];

	(void)len;
	if (tcp_key_v6(k))
		return dp_hash_words(k, sizeof(*k), init);
	memcpy(&w[0], &k->raddr.v4, 4);
	memcpy(&w[1], &k->laddr.v4, 4);
	memcpy(&w[2], &k->rport, 4); /* rport and lport */
	return rte_hash_crc_4byte(w[2], rte_hash_crc_4byte(w[1], rte_hash_crc_4byte(w[0], init)));
}

int
tcp_worker_init(struct dp_worker *dw)
{
	const struct dp_shared *sh = dw->sh;
	char name[RTE_HASH_NAMESIZE];
	struct rte_hash_parameters hp = {
	    .name = name,
	    .key_len = sizeof(struct tcp_key),
	    .hash_func = tcp_key_hash,
	    .socket_id = (int)rte_socket_id(),
	};

	dw->max_tws = sh->max_conns;
	snprintf(name, sizeof(name), "pa_tcb_%u", dw->id);
	hp.entries = sh->max_conns + sh->syn_backlog + dw->max_tws + 64;
	dw->tcbs = rte_hash_create(&hp);
	snprintf(name, sizeof(name), "pa_synsrc_%u", dw->id);
	hp.key_len = sizeof(union tcp_addr); /* IPv4 mapped, IPv6 per /64 */
	hp.hash_func = dp_hash_words;        /* 4-octet aligned */
	hp.entries = sh->syn_backlog + 64;
	dw->syn_src = rte_hash_create(&hp);
	/* calloc: pages of an unused entry are never touched, so idle capacity costs no RSS. */
	dw->syns = calloc(sh->syn_backlog, sizeof(*dw->syns));
	dw->tws = calloc(dw->max_tws, sizeof(*dw->tws));
	if (dw->tcbs == NULL || dw->syn_src == NULL || dw->syns == NULL || dw->tws == NULL) {
		pa_log_err("dpdk: worker %u: out of memory for TCP tables (dpdk.max_conns=%u)",
		           dw->id, sh->max_conns);
		return PA_ERROR;
	}
	SLIST_INIT(&dw->syn_free);
	SLIST_INIT(&dw->tw_free);
	return PA_OK;
}

void
tcp_worker_fini(struct dp_worker *dw)
{
	rte_hash_free(dw->tcbs);
	rte_hash_free(dw->syn_src);
	free(dw->syns);
	free(dw->tws);
}

void *
tcp_lookup(struct dp_worker *dw, const struct tcp_key *key, enum tcp_tag *tag)
{
	void *data;

	if (rte_hash_lookup_data(dw->tcbs, key, &data) < 0)
		return NULL;
	*tag = (enum tcp_tag)((uintptr_t)data & TCP_TAG_MASK);
	return (void *)((uintptr_t)data & ~TCP_TAG_MASK);
}

int
tcp_hash_add(struct dp_worker *dw, const struct tcp_key *key, void *obj, enum tcp_tag tag)
{
	return rte_hash_add_key_data(dw->tcbs, key, (void *)((uintptr_t)obj | tag)) == 0 ? PA_OK
	                                                                                 : PA_ERROR;
}

void
tcp_hash_del(struct dp_worker *dw, const struct tcp_key *key)
{
	rte_hash_del_key(dw->tcbs, key);
}

struct tcb *
tcp_conn_create(struct dp_worker *dw, const struct tcp_syn *syn, const struct tcp_seg *seg)
{
	struct tcb *tcb = tcp_app_conn_alloc(dw);

	if (tcb == NULL)
		return NULL;
	tcb->key = syn->key;
	tcb->state = TCP_ESTABLISHED;
	tcb->iss = syn->iss;
	tcb->irs = syn->irs;
	tcb->snd_una = tcb->snd_nxt = tcb->snd_max = syn->iss + 1;
	tcb->rcv_nxt = syn->irs + 1;
	tcb->mss = syn->mss;
	tcb->ws_ok = syn->ws_ok;
	tcb->snd_wscale = syn->ws_ok ? syn->snd_wscale : 0;
	tcb->rcv_wscale = syn->ws_ok ? TCP_RCV_WSCALE : 0;
	tcb->ts_ok = syn->ts_ok;
	tcb->ts_recent = syn->tsval;
	tcb->sack_ok = syn->sack_ok;
	tcb->snd_wnd = (uint32_t)seg->win << tcb->snd_wscale;
	tcb->max_snd_wnd = tcb->snd_wnd;
	tcb->snd_wl1 = seg->seq;
	tcb->snd_wl2 = seg->ack;
	/* RFC 6928 2: IW = min(10*MSS, max(2*MSS, 14600)). */
	tcb->cwnd = RTE_MIN(TCP_IW_SEGMENTS * (uint32_t)tcb->mss, RTE_MAX(2u * tcb->mss, 14600u));
	tcb->ssthresh = UINT32_MAX / 2; /* RFC 5681 3.1: arbitrarily high */
	tcb->recover = tcb->iss;        /* RFC 6582 3.2 step 1 initial value */
	tcb->rto_ms = TCP_RTO_INIT_MS;
	tcb->rcv_adv =
	    tcb->rcv_nxt + RTE_MIN(dw->sh->conn_mbufs * (uint32_t)(dw->sh->mtu - 40), 65535u);
	if (tcp_hash_add(dw, &tcb->key, tcb, TCP_TAG_CONN) != PA_OK) {
		tcb->state = TCP_CLOSED;
		tcp_app_closed(dw, tcb, true); /* gives the memory back */
		return NULL;
	}
	dw->c.conns_opened++;
	return tcb;
}

void
tcp_conn_detach(struct dp_worker *dw, struct tcb *tcb)
{
	/* An active open that never got its SYN-ACK was never opened: not "closed" either. */
	bool opened = tcb->state != TCP_SYN_SENT;

	tcp_timer_cancel(dw->wheel, &tcb->rtx_timer);
	tcp_queues_free(tcb);
	if (tcb->state != TCP_TIME_WAIT)
		tcp_hash_del(dw, &tcb->key);
	tcb->state = TCP_CLOSED;
	if (opened)
		dw->c.conns_closed++;
}

static void
tw_timeout(struct tcp_timer *t, void *arg)
{
	tcp_tw_free(arg, pa_container_of(t, struct tcp_tw, timer));
}

void
tcp_tw_free(struct dp_worker *dw, struct tcp_tw *tw)
{
	tcp_timer_cancel(dw->wheel, &tw->timer);
	tcp_hash_del(dw, &tw->key);
	SLIST_INSERT_HEAD(&dw->tw_free, tw, free_link);
	dw->ntws--;
}

void
tcp_enter_time_wait(struct dp_worker *dw, struct tcb *tcb)
{
	struct tcp_tw *tw = SLIST_FIRST(&dw->tw_free);

	if (tw != NULL)
		SLIST_REMOVE_HEAD(&dw->tw_free, free_link);
	else if (dw->tws_used < dw->max_tws)
		tw = &dw->tws[dw->tws_used++];
	if (tw == NULL) {
		/* Out of TIME_WAIT entries: close without one (counted), as Linux does. */
		dw->c.time_wait_overflows++;
		tcp_conn_detach(dw, tcb);
		tcp_app_closed(dw, tcb, false);
		return;
	}
	dw->ntws++;
	dw->c.conns_time_wait++;
	*tw = (struct tcp_tw){
	    .key = tcb->key,
	    .snd_nxt = tcb->snd_nxt,
	    .rcv_nxt = tcb->rcv_nxt,
	    .ts_recent = tcb->ts_recent,
	    .ts_ok = tcb->ts_ok,
	};
	tcp_hash_add(dw, &tw->key, tw, TCP_TAG_TW); /* replaces the TCB's entry */
	tcp_timer_arm(dw->wheel, &tw->timer, 2ull * dw->sh->msl_ms, tw_timeout);
	tcb->state = TCP_TIME_WAIT;
	tcp_conn_detach(dw, tcb);
	tcp_app_closed(dw, tcb, false);
}

static void
tw_ack(struct dp_worker *dw, const struct tcp_tw *tw)
{
	tcp_send_raw(dw, &tw->key, tw->snd_nxt, tw->rcv_nxt, RTE_TCP_ACK_FLAG, 0, NULL, tw->ts_ok,
	             tw->ts_recent);
}

void
tcp_tw_input(struct dp_worker *dw, struct tcp_tw *tw, struct tcp_seg *seg)
{
	if (seg->flags & RTE_TCP_RST_FLAG) {
		/* RFC 1337: a RST must not cut TIME_WAIT short. */
		dw->c.drops[DP_DROP_TCP_STATE]++;
		return;
	}
	if ((seg->flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG) {
		/* RFC 6191 / RFC 9293 3.6.1: a new incarnation if clearly newer. */
		bool newer = (tw->ts_ok && seg->opts.has_ts)
		                 ? seq_gt(seg->opts.tsval, tw->ts_recent)
		                 : seq_gt(seg->seq, tw->rcv_nxt);

		/* Only a listener can take a new incarnation (not an active opener's port). */
		if (newer && seg->key.lport == dw->sh->listen_port && dw->sh->listen_port != 0) {
			tcp_tw_free(dw, tw);
			tcp_syn_listen_input(dw, seg);
			return;
		}
		tw_ack(dw, tw);
		return;
	}
	if (seg->flags & RTE_TCP_FIN_FLAG) {
		/* The peer did not get our ACK of its FIN: again, and restart 2*MSL. */
		tw_ack(dw, tw);
		tcp_timer_arm(dw->wheel, &tw->timer, 2ull * dw->sh->msl_ms, tw_timeout);
		return;
	}
	dw->c.drops[DP_DROP_TCP_STATE]++;
}
