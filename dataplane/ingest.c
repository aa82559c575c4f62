/*
 * ingest.c: the SMTP engine's host, shared by both backends (ingest.h).
 *
 * It answers the engine's callbacks (recipient policy, queue ids, refusal
 * logging), hands finished messages to the spool and turns spool completions
 * into replies.  It promises rule 1: the 250 for a message is produced only
 * from a spool completion with status PA_OK, i.e. after the message is synced
 * in every shard it touches.  Nothing here blocks.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <rte_cycles.h>

#include "core/log.h"
#include "core/clock.h"
#include "core/domain.h"
#include "core/pa.h"
#include "dataplane/ingest.h"
#include "dataplane/ingest_limits.h"
#include "dataplane/ingest_milter.h"
#include "dataplane/ingest_screen.h"
#include "dataplane/ingest_tls.h"
#include "dataplane/worker.h"
#include "directory/directory.h"
#include "spool/spool.h"

#define COMPLETION_BURST 32

/* Stores the recipient as `as` when that is not how the client wrote it. */
static void
store_as(char canonical[SMTP_PATH_MAX + 1], const char *addr, const char *as)
{
	if (strlen(as) <= SMTP_PATH_MAX && strcmp(as, addr) != 0)
		strcpy(canonical, as);
}

/*
 * RFC 5321 4.5.1: every domain we serve has a postmaster, whatever the
 * directory lists; when it names a mailbox for the address (or an alias),
 * that mailbox is stored, otherwise the address itself.
 */
static void
postmaster_resolve(struct ingest_conn *conn, const char *addr, const char *client_addr,
                   char canonical[SMTP_PATH_MAX + 1])
{
	struct directory *dir = conn->worker->shared->directory;
	struct dir_answer answer;

	if (dir != NULL) {
		switch (directory_lookup(dir, conn->worker->id, addr, &answer)) {
		case DIR_MAILBOX:
		case DIR_ALIAS:
			store_as(canonical, client_addr, answer.canonical);
			return;
		default:
			break;
		}
	}
	store_as(canonical, client_addr, addr);
}

/*
 * Never an open relay.  Without a directory only the domains of the running
 * config are accepted.  With one, its in-memory snapshot decides (no lock, no
 * network): a domain it does not know is served only if `domains` lists it,
 * and then has no such user; while the directory has no trustworthy snapshot
 * every recipient gets 451, so that nothing is refused wrongly.
 *
 * Domains are compared in their canonical form (core/domain.h): a recipient
 * written with U-labels is looked up, sharded and stored with the A-label
 * domain, so both spellings are one recipient; an ASCII domain stays as
 * written (the shard hash and the directory fold its case).
 *
 * Postmaster (RFC 5321 4.1.1.3, 4.5.1) is always accepted: <Postmaster>
 * without a domain as the `postmaster` address, postmaster@ (any case) a
 * served domain as postmaster@ that domain, each through the directory when
 * it names a mailbox for it.  postmaster@ a domain we do not serve is a
 * relay attempt like any other.
 *
 * A recipient the directory knows is stored as its canonical mailbox, written
 * into canonical from the same lookup: an alias as the mailbox it names, so
 * one mailbox always lands in one shard, and a mailbox in the directory's
 * spelling, so that equal recipients compare equal byte for byte.  Catch-all
 * addresses stay as the client wrote them (but for a U-label domain).
 */
static enum smtp_rcpt_verdict
rcpt_policy(struct ingest_conn *conn, const char *addr, char canonical[SMTP_PATH_MAX + 1])
{
	const struct pa_config *config = &conn->runtime->config;
	struct directory *dir = conn->worker->shared->directory;
	const char *at = strrchr(addr, '@');
	char domain[PA_DOMAIN_MAX + 1], key[SMTP_PATH_MAX + 1];
	const char *as = addr; /* the address looked up and stored */
	struct dir_answer answer;
	bool utf8, postmaster, served;
	size_t local, dlen;
	int n;

	if (at == NULL) {
		/* The engine lets an address without a domain through only for <Postmaster>. */
		if (strcasecmp(addr, "postmaster") != 0 || config->postmaster[0] == '\0')
			return SMTP_RCPT_UNKNOWN_USER;
		postmaster_resolve(conn, config->postmaster, addr, canonical);
		return SMTP_RCPT_ACCEPT;
	}
	/* RFC 5321 4.1.3: an address literal; `domains` lists names only. */
	if (at[1] == '[')
		return SMTP_RCPT_RELAY_DENIED;
	local = (size_t)(at - addr);
	dlen = strlen(at + 1);
	utf8 = pa_domain_is_utf8(at + 1, dlen);
	n = pa_domain_canonical(at + 1, dlen, domain, 0);
	if (n < 0) /* ASCII: not a host name, so not ours; U-labels: IDNA2008 refuses them */
		return utf8 ? SMTP_RCPT_BAD_DOMAIN : SMTP_RCPT_RELAY_DENIED;
	if (local + 1 + (size_t)n > SMTP_PATH_MAX)
		return SMTP_RCPT_BAD_DOMAIN; /* RFC 5321 4.5.3.1.3, once in A-labels */
	postmaster = local == 10 && strncasecmp(addr, "postmaster", 10) == 0;
	if (utf8 || postmaster) {
		/* RFC 5321 4.5.1: "postmaster" is case-insensitive, so it is folded too. */
		memcpy(key, postmaster ? "postmaster" : addr, local);
		key[local] = '@';
		memcpy(key + local + 1, domain, (size_t)n + 1);
		as = key;
	}
	served = config_domain_served(config, domain);
	if (dir == NULL) {
		if (!served)
			return SMTP_RCPT_RELAY_DENIED;
		store_as(canonical, addr, as);
		return SMTP_RCPT_ACCEPT;
	}
	switch (directory_lookup(dir, conn->worker->id, as, &answer)) {
	case DIR_MAILBOX:
	case DIR_ALIAS:
		store_as(canonical, addr, answer.canonical);
		return SMTP_RCPT_ACCEPT;
	case DIR_CATCH_ALL:
		store_as(canonical, addr, as);
		return SMTP_RCPT_ACCEPT;
	case DIR_UNKNOWN_USER: /* the directory serves the domain */
		if (!postmaster)
			return SMTP_RCPT_UNKNOWN_USER;
		store_as(canonical, addr, as);
		return SMTP_RCPT_ACCEPT;
	case DIR_UNKNOWN_DOMAIN:
		if (!served)
			return SMTP_RCPT_RELAY_DENIED;
		if (!postmaster)
			return SMTP_RCPT_UNKNOWN_USER;
		store_as(canonical, addr, as);
		return SMTP_RCPT_ACCEPT;
	case DIR_UNAVAILABLE:
	default:
		/* Postmaster of a domain `domains` lists needs no directory to be accepted. */
		if (postmaster && served) {
			store_as(canonical, addr, as);
			return SMTP_RCPT_ACCEPT;
		}
		return SMTP_RCPT_TEMPFAIL;
	}
}

/*
 * Backpressure (docs/handoff.md): an accepted recipient whose shard is above
 * spool.high_water, or any recipient while the disk is below spool.min_free,
 * gets 452 4.3.1, so the client keeps the mail until the shard drains.  The
 * shard is the one the recipient is stored in: its canonical address's.
 */
static enum smtp_rcpt_verdict
host_rcpt_check(void *host, const char *addr, char canonical[SMTP_PATH_MAX + 1])
{
	struct ingest_conn *conn = host;
	enum smtp_rcpt_verdict v = rcpt_policy(conn, addr, canonical);
	const char *stored = canonical[0] != '\0' ? canonical : addr;
	unsigned shard;

	if (v != SMTP_RCPT_ACCEPT)
		return v;
	shard = spool_shard_of(conn->runtime->config.spool_shards, stored, strlen(stored));
	if (spool_shard_full(conn->worker->shared->spool, shard))
		return SMTP_RCPT_SPOOL_FULL;
	/* A shard that failed or stalled its last write would only answer 451 after DATA. */
	if (!spool_shard_healthy(conn->worker->shared->spool, shard))
		return SMTP_RCPT_TEMPFAIL;
	return v;
}

/* While the control socket has paused the server, no new transaction starts. */
static enum smtp_mail_verdict
host_mail_check(void *host, const char *from)
{
	struct ingest_conn *conn = host;

	(void)from;
	return worker_paused(conn->worker) ? SMTP_MAIL_TEMPFAIL : SMTP_MAIL_ACCEPT;
}

static void
host_new_queue_id(void *host, char out[SMTP_QUEUE_ID_MAX])
{
	struct ingest_conn *conn = host;

	queue_id_next(&conn->worker->queue_ids, pa_wall_clock_us(), out);
}

static void
host_refused(void *host, int refusal, const char *detail)
{
	struct ingest_conn *conn = host;

	if (refusal > SMTP_REFUSAL_NONE && refusal < SMTP_REFUSAL_COUNT)
		conn->worker->counters.refusals[refusal]++;
	pa_log_notice("refused client=%s reason=%s%s%s", conn->client,
	              smtp_refusal_name((enum smtp_refusal)refusal), detail ? " detail=" : "",
	              detail ? detail : "");
}

void
ingest_bind_callbacks(struct smtp_config *smtp)
{
	smtp->rcpt_check = host_rcpt_check;
	smtp->new_queue_id = host_new_queue_id;
	smtp->refused = host_refused;
	smtp->mail_check = host_mail_check;
	smtp->client_changed = ingest_limits_client_changed;
	smtp->now = NULL;
}

int
ingest_open(struct ingest_conn *conn, struct pa_worker *worker, const char *client)
{
	memset(conn, 0, sizeof(*conn));
	conn->worker = worker;
	conn->runtime = runtime_ref(worker->runtime);
	snprintf(conn->client, sizeof(conn->client), "%s", client);
	conn->smtp = smtp_session_new(&conn->runtime->smtp, conn, conn->client);
	if (conn->smtp == NULL) {
		runtime_unref(conn->runtime);
		return PA_ERROR;
	}
	worker->counters.conns_total++;
	worker->counters.conns_open++;
	if (worker_stopping(worker)) {
		worker->counters.conns_refused++;
		smtp_session_refuse(conn->smtp, "421 4.3.2 Service shutting down, try again later");
	} else if (spool_full(worker->shared->spool)) {
		/* Every shard is above its high-water mark, or the disk is full. */
		worker->counters.conns_refused++;
		smtp_session_refuse(conn->smtp, "421 4.3.1 Spool full, try again later");
	} else if (!spool_healthy(worker->shared->spool)) {
		/* The health gate: one atomic load; a shard failed or stalled a write. */
		worker->counters.conns_refused++;
		worker->counters.conns_spool_unhealthy++;
		smtp_session_refuse(conn->smtp, "421 4.3.0 Spool unavailable, try again later");
	} else if (worker_paused(worker)) {
		char reply[SMTP_COMMAND_LINE_MAX];

		worker->counters.conns_refused++;
		worker->counters.conns_paused++;
		snprintf(reply, sizeof(reply), "421 4.3.2 %.256s Service paused, try again later",
		         conn->runtime->config.hostname);
		smtp_session_refuse(conn->smtp, reply);
	} else {
		/* limits.*, then the PROXY header, banner delay or banner (ingest_limits.c) */
		ingest_limits_open(conn);
	}
	return PA_OK;
}

/*
 * Hands the message to the spool.  False when a ring was full: backpressure,
 * not failure, and the caller queues the connection to try again next loop.
 */
static bool
try_submit(struct ingest_conn *conn)
{
	struct pa_worker *worker = conn->worker;
	const struct ingest_store *store = &worker->shared->store;
	int rc;

	if (conn->filtering)
		return ingest_milter_submit(conn);
	rc = store->submit(store->ctx, worker->id, &conn->spool_msg);

	if (rc == PA_AGAIN) {
		worker->counters.submit_retries++;
		return false;
	}
	if (rc == PA_OK) {
		worker->awaiting_store++;
		conn->submit_tsc = rte_rdtsc();
		return true;
	}
	conn->storing = false;
	worker->counters.messages_failed++;
	smtp_session_message_done(conn->smtp, PA_ERROR);
	ingest_milter_stored(conn);
	return true;
}

void
ingest_store_filtered(struct ingest_conn *conn)
{
	if (try_submit(conn)) {
		if (!conn->storing)
			conn->worker->resume(conn); /* it failed: the 451 is waiting to go out */
		return;
	}
	conn->submit_pending = true;
	TAILQ_INSERT_TAIL(&conn->worker->submit_backlog, conn, backlog_link);
}

enum ingest_status
ingest_input(struct ingest_conn *conn, const uint8_t *in, size_t len, size_t *consumed)
{
	enum smtp_input_status st;

	*consumed = 0;
	if (conn->phase != INGEST_PHASE_SESSION || !conn->seen_input || conn->dropped) {
		enum ingest_status status;

		if (ingest_limits_input(conn, in, len, consumed, &status))
			return status;
	}
	if (conn->tls != NULL || conn->tls_closing)
		return ingest_tls_input(conn, in, len, consumed);
	if (conn->storing)
		return INGEST_STORING;
	st = smtp_session_input(conn->smtp, in, len, consumed);
	if (st == SMTP_STARTTLS)
		return ingest_tls_start(conn);
	return ingest_engine_status(conn, st);
}

enum ingest_status
ingest_engine_status(struct ingest_conn *conn, enum smtp_input_status st)
{
	if (st == SMTP_CLOSE)
		return INGEST_CLOSE;
	if (st == SMTP_MESSAGE_READY) {
		conn->storing = true;
		conn->spool_msg.msg = smtp_session_message(conn->smtp);
		conn->spool_msg.arrival_us = pa_wall_clock_us();
		conn->spool_msg.cookie = conn;
		/* With milter.servers, the filters first (ingest_milter.c), then the spool. */
		conn->filtering = ingest_milter_wanted(conn->worker);
		if (!try_submit(conn)) {
			conn->submit_pending = true;
			TAILQ_INSERT_TAIL(&conn->worker->submit_backlog, conn, backlog_link);
		}
		return conn->storing ? INGEST_STORING : INGEST_READY;
	}
	return INGEST_READY;
}

static void
free_session(struct ingest_conn *conn)
{
	ingest_limits_close(conn);
	ingest_tls_free(conn);
	smtp_session_free(conn->smtp);
	conn->smtp = NULL;
	runtime_unref(conn->runtime);
	conn->runtime = NULL;
	conn->worker->counters.conns_open--;
}

bool
ingest_close(struct ingest_conn *conn)
{
	ingest_tls_close(conn);
	if (conn->submit_pending) {
		/* Not in the spool's hands yet: withdraw it, the client never saw 250. */
		TAILQ_REMOVE(&conn->worker->submit_backlog, conn, backlog_link);
		conn->submit_pending = false;
		conn->storing = false;
		conn->filtering = false;
		ingest_milter_stored(conn); /* an edited copy waiting for the spool */
	}
	/* The spool, or the resolver (its answers name the conn), frees it later. */
	if (conn->storing || ingest_screen_pending(conn)) {
		conn->transport_gone = true;
		return false;
	}
	free_session(conn);
	return true;
}

void
ingest_release(struct ingest_conn *conn)
{
	free_session(conn);
}

void
ingest_shutdown(struct ingest_conn *conn)
{
	ingest_tls_shutdown(conn);
	smtp_session_shutdown(conn->smtp);
}

static void
log_accepted(const struct ingest_conn *conn)
{
	const struct smtp_message *msg = conn->spool_msg.msg;
	const struct pa_log_accepted line = {
	    .queue_id = msg->queue_id,
	    .client = conn->client,
	    .sender = msg->mail_from,
	    .nrcpt = msg->nrcpt,
	    .size = msg->size,
	};

	pa_log_accepted(&line);
}

static void
complete(struct pa_worker *worker, const struct spool_completion *done)
{
	struct ingest_conn *conn = done->cookie;

	worker->awaiting_store--;
	conn->storing = false;
	latency_record(&worker->counters.commit_latency,
	               (rte_rdtsc() - conn->submit_tsc) * 1000000u / rte_get_tsc_hz());
	if (done->status == PA_OK) {
		worker->counters.messages_accepted++;
		worker->counters.bytes_accepted += conn->spool_msg.msg->size;
		log_accepted(conn);
	} else {
		worker->counters.messages_failed++;
		pa_log_warning("%s: store failed client=%s: answered 451",
		               conn->spool_msg.msg->queue_id, conn->client);
	}
	/* After this the message memory belongs to the engine again. */
	smtp_session_message_done(conn->smtp, done->status);
	conn->spool_msg.msg = NULL;
	ingest_milter_stored(conn);
	if (conn->transport_gone && ingest_screen_pending(conn))
		return; /* its last DNS answer frees it (ingest_screen.c) */
	worker->resume(conn);
}

void
ingest_poll_spool(struct pa_worker *worker)
{
	const struct ingest_store *store = &worker->shared->store;
	struct spool_completion done[COMPLETION_BURST];
	struct ingest_conn *conn;
	unsigned n;

	ingest_tls_poll(worker);
	ingest_limits_tick(worker);
	ingest_screen_poll(worker);
	ingest_milter_poll(worker);
	do {
		n = store->poll(store->ctx, worker->id, done, COMPLETION_BURST);
		for (unsigned i = 0; i < n; i++)
			complete(worker, &done[i]);
	} while (n == COMPLETION_BURST);

	while ((conn = TAILQ_FIRST(&worker->submit_backlog)) != NULL) {
		if (!try_submit(conn))
			break;
		TAILQ_REMOVE(&worker->submit_backlog, conn, backlog_link);
		conn->submit_pending = false;
		if (!conn->storing)
			worker->resume(conn); /* it failed: the 451 is waiting to go out */
	}
}

/* The spool behind struct ingest_store: thin adapters, the spool keeps its own types. */
static int
spool_store_attach(void *ctx, unsigned worker, int notify_fd, bool may_syscall)
{
	return spool_attach_worker(ctx, worker, notify_fd, may_syscall);
}

static int
spool_store_submit(void *ctx, unsigned worker, const struct spool_message *message)
{
	return spool_submit(ctx, worker, message);
}

static unsigned
spool_store_poll(void *ctx, unsigned worker, struct spool_completion *out, unsigned max)
{
	return spool_poll(ctx, worker, out, max);
}

void
ingest_store_spool(struct ingest_store *store, struct spool *spool)
{
	*store = (struct ingest_store){
	    .ctx = spool,
	    .attach = spool_store_attach,
	    .submit = spool_store_submit,
	    .poll = spool_store_poll,
	};
}

int
ingest_attach(struct pa_worker *worker, int notify_fd, bool may_syscall)
{
	const struct ingest_store *store = &worker->shared->store;

	if (ingest_screen_attach(worker, notify_fd, may_syscall) != PA_OK ||
	    ingest_milter_attach(worker, notify_fd, may_syscall) != PA_OK)
		return PA_ERROR;
	return store->attach(store->ctx, worker->id, notify_fd, may_syscall);
}

void
worker_refresh_runtime(struct pa_worker *worker)
{
	struct pa_runtime *current = __atomic_load_n(&worker->shared->runtime, __ATOMIC_ACQUIRE);

	ingest_tls_refresh(worker);
	if (current == worker->runtime)
		return;
	/*
	 * The main lcore keeps its reference to `current` until every worker
	 * has acknowledged it (main.c), so taking ours here cannot race a free.
	 */
	runtime_ref(current);
	runtime_unref(worker->runtime);
	worker->runtime = current;
	ingest_screen_reload(worker);
}
