/*
 * ingest_limits.c: the abuse limits and the load balancers, on the host side
 * of the engine (ingest_limits.h; docs/security.md says what each does).
 *
 * The order at connect: limits.conn_total for everyone; then, for a peer in
 * smtp.trusted_proxies with smtp.proxy_protocol on, the PROXY header first
 * (haproxy's doc/proxy-protocol.txt; parsed by smtp/proxy_header.c) and the
 * client it names takes the peer's place; then the per-address limits for
 * that client (limits.conn_per_ip, limits.conn_rate_per_ip) unless it is in
 * limits.exempt or is itself a trusted proxy; then the banner, at once or
 * after smtp.banner_delay.  XCLIENT later moves the per-address share to the
 * address it gives.  The DNS lists' screening starts with the banner's wait
 * (ingest_screen.h) and the banner waits for it.  Nothing here blocks or sleeps: waits are the
 * backend's timers (rte_timer, the DPDK stack's wheel) through ingest_timeout_ms().
 */
#include "dataplane/ingest_limits.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/conn_limits.h"
#include "dataplane/ingest_screen.h"
#include "dataplane/worker.h"
#include "smtp/proxy_header.h"

/* The client address in binary; false when conn->client is not an address. */
static bool
client_addr(const char *text, int *family, uint8_t addr[16])
{
	if (inet_pton(AF_INET, text, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, addr) == 1) {
		*family = AF_INET6;
		return true;
	}
	return false;
}

static void
limits_conf_of(const struct pa_config *config, struct limits_conf *conf)
{
	conf->conn_total = config->limit_conn_total;
	conf->conn_per_ip = config->limit_conn_per_ip;
	conf->conn_rate_per_ip = config->limit_conn_rate_per_ip;
}

void
ingest_limits_count_refusal(struct ingest_conn *conn, int why, const char *detail)
{
	conn->worker->counters.conns_refused++;
	conn->worker->counters.refusals[why]++;
	pa_log_notice("refused client=%s reason=%s%s%s", conn->client,
	              smtp_refusal_name((enum smtp_refusal)why), detail ? " detail=" : "",
	              detail ? detail : "");
}

/* Over a limit at connect: 421 4.7.0 in place of the banner, then close. */
static void
refuse(struct ingest_conn *conn, int why)
{
	const char *host = conn->runtime->config.hostname;
	char reply[SMTP_COMMAND_LINE_MAX];

	ingest_limits_count_refusal(conn, why, NULL);
	conn->phase = INGEST_PHASE_SESSION;
	if (why == SMTP_REFUSAL_CONN_TOTAL)
		snprintf(reply, sizeof(reply),
		         "421 4.7.0 %.255s Too many connections, try again later", host);
	else if (why == SMTP_REFUSAL_CONN_RATE)
		snprintf(reply, sizeof(reply),
		         "421 4.7.0 %.255s Error: too many connections per second from %s", host,
		         conn->client);
	else
		snprintf(reply, sizeof(reply),
		         "421 4.7.0 %.255s Error: too many connections from %s", host,
		         conn->client);
	smtp_session_refuse(conn->smtp, reply);
}

/*
 * A connection dropped without a word: a PROXY header we cannot trust or
 * read.  Answering in SMTP would talk to a balancer that does not speak it,
 * or tell an attacker what we expected.
 */
static void
drop(struct ingest_conn *conn, const char *why)
{
	ingest_limits_count_refusal(conn, SMTP_REFUSAL_PROXY, why);
	free(conn->proxy_buf);
	conn->proxy_buf = NULL;
	conn->proxy_len = 0;
	conn->phase = INGEST_PHASE_SESSION;
	conn->dropped = true;
}

/*
 * The per-address limits for addr (conn->client).  Trusted proxies and
 * limits.exempt are not counted: a balancer concentrates many clients, and
 * an operator's own hosts must never lock themselves out.
 */
static int
admit_addr(struct ingest_conn *conn, int family, const uint8_t *addr)
{
	const struct pa_config *cfg = &conn->runtime->config;
	struct pa_limits *limits = conn->worker->shared->limits;
	struct limits_conf conf;
	struct limits_key key;
	int why;

	if (limits == NULL ||
	    config_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies, family, addr) ||
	    config_cidr_match(cfg->limit_exempt, cfg->nlimit_exempt, family, addr))
		return SMTP_REFUSAL_NONE;
	limits_conf_of(cfg, &conf);
	/* Nothing to enforce, no table work (those connections stay uncounted after a reload). */
	if (conf.conn_per_ip == 0 && conf.conn_rate_per_ip == 0)
		return SMTP_REFUSAL_NONE;
	limits_key_of(family, addr, &key);
	why = limits_admit_addr(limits, conn->worker->id, &key, &conf, &conn->hold);
	if (conn->hold.untracked)
		conn->worker->counters.limits_untracked++;
	return why;
}

/*
 * The banner (or the screen's refusal), now or after smtp.banner_delay and
 * the DNS lists' answers (the backend's timer calls back).
 */
static void
start_banner(struct ingest_conn *conn)
{
	unsigned ms;

	if (conn->runtime->config.banner_delay_ms > 0)
		conn->phase = INGEST_PHASE_BANNER;
	else if (ingest_screen_waiting(conn, &ms))
		conn->phase = INGEST_PHASE_SCREEN;
	else {
		conn->phase = INGEST_PHASE_SESSION;
		ingest_screen_greet(conn);
	}
}

void
ingest_limits_open(struct ingest_conn *conn)
{
	const struct pa_config *cfg = &conn->runtime->config;
	struct pa_limits *limits = conn->worker->shared->limits;
	struct limits_conf conf;
	uint8_t addr[16];
	int family, why;

	if (!client_addr(conn->client, &family, addr)) {
		/* Not an address (a test transport): no per-address limits apply. */
		start_banner(conn);
		return;
	}
	conn->trusted =
	    config_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies, family, addr);
	smtp_session_set_trusted(conn->smtp, conn->trusted);
	limits_conf_of(cfg, &conf);
	if (limits != NULL) {
		why = limits_admit_total(limits, &conf, &conn->hold);
		if (why != SMTP_REFUSAL_NONE) {
			refuse(conn, why);
			return;
		}
	}
	if (conn->trusted && cfg->proxy_protocol) {
		conn->phase = INGEST_PHASE_PROXY;
		return;
	}
	why = admit_addr(conn, family, addr);
	if (why != SMTP_REFUSAL_NONE) {
		refuse(conn, why);
		return;
	}
	/* A trusted peer speaking for itself (XCLIENT) is a balancer, not a client to screen. */
	if (!conn->trusted)
		ingest_screen_start(conn, family, addr);
	start_banner(conn);
}

/* A complete header from a trusted balancer: its client becomes ours. */
static void
proxy_done(struct ingest_conn *conn, const struct proxy_header *h)
{
	char text[PROXY_ADDR_STR_MAX], proxy[INGEST_CLIENT_MAX];
	uint8_t addr[16];
	int family, why;

	free(conn->proxy_buf);
	conn->proxy_buf = NULL;
	conn->proxy_len = 0;
	conn->worker->counters.proxy_headers++;
	if (!h->has_addr) {
		/* v1 UNKNOWN, v2 LOCAL: the balancer's own connection (a health check). */
		start_banner(conn);
		return;
	}
	proxy_header_src_str(h, text);
	snprintf(proxy, sizeof(proxy), "%s", conn->client);
	if (smtp_session_set_client(conn->smtp, text) != PA_OK) {
		drop(conn, "out_of_memory");
		return;
	}
	snprintf(conn->client, sizeof(conn->client), "%s", text);
	/* The session speaks for the client now, which must not vouch for anyone. */
	smtp_session_set_trusted(conn->smtp, false);
	pa_log_info("proxy v%u client=%s port=%u proxy=%s", h->version, text, h->src_port, proxy);
	family = h->family;
	memcpy(addr, h->src_addr, sizeof(addr));
	why = admit_addr(conn, family, addr);
	if (why != SMTP_REFUSAL_NONE) {
		refuse(conn, why);
		return;
	}
	ingest_screen_start(conn, family, addr);
	start_banner(conn);
}

/*
 * The header may come in pieces (one TCP segment each, on the DPDK stack):
 * they are kept in a buffer of PROXY_HEADER_MAX, the most a header may take,
 * and the octets after the header are left for the engine.
 */
static enum ingest_status
proxy_input(struct ingest_conn *conn, const uint8_t *in, size_t len, size_t *consumed)
{
	size_t n = len < (size_t)(PROXY_HEADER_MAX - conn->proxy_len)
	               ? len
	               : (size_t)(PROXY_HEADER_MAX - conn->proxy_len);
	struct proxy_header h;
	int rc;

	if (conn->proxy_buf == NULL) {
		conn->proxy_buf = malloc(PROXY_HEADER_MAX);
		if (conn->proxy_buf == NULL) {
			drop(conn, "out_of_memory");
			*consumed = len;
			return INGEST_CLOSE;
		}
	}
	memcpy(conn->proxy_buf + conn->proxy_len, in, n);
	rc = proxy_header_parse(conn->proxy_buf, conn->proxy_len + n, &h);
	if (rc == PROXY_HEADER_NEED_MORE) {
		conn->proxy_len = (uint16_t)(conn->proxy_len + n);
		*consumed = n;
		return INGEST_READY;
	}
	if (rc == PROXY_HEADER_BAD) {
		drop(conn, "bad_header");
		*consumed = len;
		return INGEST_CLOSE;
	}
	/* Everything kept before was header (it did not parse without these octets). */
	*consumed = (size_t)rc - conn->proxy_len;
	proxy_done(conn, &h);
	if (conn->dropped)
		return INGEST_CLOSE;
	return smtp_session_closing(conn->smtp) ? INGEST_CLOSE : INGEST_READY;
}

bool
ingest_limits_input(struct ingest_conn *conn, const uint8_t *in, size_t len, size_t *consumed,
                    enum ingest_status *status)
{
	bool first = !conn->seen_input;

	if (conn->dropped) {
		*consumed = len;
		*status = INGEST_CLOSE;
		return true;
	}
	if (len == 0)
		return false;
	conn->seen_input = true;
	if (conn->phase == INGEST_PHASE_PROXY) {
		*status = proxy_input(conn, in, len, consumed);
		return true;
	}
	/*
	 * A header from a peer we did not ask one of: not honoured, and a sign
	 * of a balancer configured for a server that does not expect it, or of
	 * someone hoping we trust anyone.  "PROXY" and the v2 signature are no
	 * SMTP command, so nothing legitimate is lost.
	 */
	if (first && len >= 5 && proxy_header_signature(in, len)) {
		drop(conn, conn->trusted ? "not_expected" : "untrusted_peer");
		*consumed = len;
		*status = INGEST_CLOSE;
		return true;
	}
	return false;
}

bool
ingest_limits_timeout_ms(const struct ingest_conn *conn, unsigned *ms)
{
	if (conn->phase == INGEST_PHASE_BANNER) {
		*ms = conn->runtime->config.banner_delay_ms;
		return true;
	}
	if (conn->phase == INGEST_PHASE_SCREEN) {
		if (!ingest_screen_waiting(conn, ms))
			*ms = 1; /* decided since: the next expiry greets */
		return true;
	}
	if (conn->phase == INGEST_PHASE_PROXY) {
		/* A balancer sends its header with the connection: a command's time is ample. */
		*ms = conn->runtime->config.command_timeout_s * 1000u;
		return true;
	}
	return false;
}

bool
ingest_limits_timeout(struct ingest_conn *conn)
{
	unsigned ms;

	if (conn->phase == INGEST_PHASE_BANNER && ingest_screen_waiting(conn, &ms)) {
		conn->phase = INGEST_PHASE_SCREEN; /* the delay is over, the lists are not */
		return true;
	}
	if (conn->phase == INGEST_PHASE_BANNER || conn->phase == INGEST_PHASE_SCREEN) {
		conn->phase = INGEST_PHASE_SESSION;
		ingest_screen_greet(conn);
		return true;
	}
	if (conn->phase == INGEST_PHASE_PROXY) {
		drop(conn, "timeout");
		return true;
	}
	return false;
}

void
ingest_limits_close(struct ingest_conn *conn)
{
	struct pa_limits *limits = conn->worker->shared->limits;

	if (limits != NULL)
		limits_release(limits, conn->worker->id, &conn->hold);
	free(conn->proxy_buf);
	conn->proxy_buf = NULL;
}

void
ingest_limits_tick(struct pa_worker *worker)
{
	if (worker->shared->limits != NULL)
		limits_tick(worker->shared->limits, worker->id);
}

int
ingest_limits_client_changed(void *host, const char *text, unsigned port)
{
	struct ingest_conn *conn = host;
	struct pa_limits *limits = conn->worker->shared->limits;
	uint8_t addr[16];
	int family, why;

	if (!client_addr(text, &family, addr))
		return SMTP_REFUSAL_NONE; /* the engine gives canonical addresses only */
	if (limits != NULL)
		limits_release_addr(limits, conn->worker->id, &conn->hold);
	pa_log_info("xclient client=%s port=%u proxy=%s", text, port, conn->client);
	snprintf(conn->client, sizeof(conn->client), "%s", text);
	conn->worker->counters.xclients++;
	/* The engine counts and logs a refusal through its refused callback. */
	why = admit_addr(conn, family, addr);
	return why;
}
