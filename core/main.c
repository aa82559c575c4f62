/*
 * main.c: pigeond, the PigeonAir SMTP ingest daemon.
 *
 * Start-up order: configuration (an error names the key and exits 2), EAL,
 * the spool (which recovers what its WAL holds), one listener per worker,
 * then the workers.  The main lcore then serves the control socket
 * (ctl/ctl_server.h) and takes signals as before: SIGHUP
 * reloads what may change at run time, SIGTERM/SIGINT stop the server (no
 * new connections, in-flight commits still answered 250, 421 to the rest)
 * and exit 0 once the spool has closed cleanly.
 *
 * Under systemd (Type=notify, core/service.h) it says READY=1 once the
 * listeners and the spool are up, RELOADING=1 and READY=1 around a reload,
 * STOPPING=1 on SIGTERM, and pings the watchdog from the control loop while
 * every worker and committer is alive.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_debug.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_timer.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"
#include "core/privileges.h"
#include "core/runtime.h"
#include "core/service.h"
#include "ctl/ctl_server.h"
#include "dataplane/eal.h"
#include "dataplane/ingest.h"
#include "dataplane/backend.h"
#include "dataplane/conn_limits.h"
#include "dataplane/ingest_screen.h"
#include "dataplane/ingest_milter.h"
#include "dataplane/worker.h"
#include "directory/directory.h"
#include "filter/milter_client.h"
#include "smtp/tls.h"
#include "handoff/handoff.h"
#include "handoff/route_map.h"
#include "spool/spool.h"
#include "spool/spool_upgrade.h"

#define RELOAD_ACK_WAIT_MS 5000
#define DIRECTORY_FIRST_LOAD_WAIT_MS 10000

struct options {
	const char *config_path;
	struct config_override overrides[CONFIG_OVERRIDES_MAX];
	size_t noverrides;
	bool check_only;
	bool upgrade_spool;
};

static void
usage(FILE *out)
{
	fprintf(out, "usage: pigeond [-c FILE] [-o key=value]... [-t] [-U] [-V]\n"
	             "  -c FILE        configuration file (INI; docs/configuration.md)\n"
	             "  -o key=value   override one key, e.g. -o listen=127.0.0.1:2525\n"
	             "  -t             check the configuration and exit\n"
	             "  -U             upgrade the (stopped) spool to format 2 and exit\n"
	             "  -V             print the version and exit\n");
}

static void
parse_options(int argc, char **argv, struct options *opt)
{
	char *arg;
	int ch;

	while ((ch = getopt(argc, argv, "c:o:thUV")) != -1) {
		switch (ch) {
		case 'c':
			opt->config_path = optarg;
			break;
		case 'o':
			if (opt->noverrides == CONFIG_OVERRIDES_MAX) {
				fprintf(stderr, "pigeond: too many -o options\n");
				exit(2);
			}
			/* A copy: splitting optarg in place would garble /proc/PID/cmdline. */
			arg = strdup(optarg);
			if (arg == NULL ||
			    config_parse_override(arg, &opt->overrides[opt->noverrides]) != PA_OK) {
				fprintf(stderr, "pigeond: -o '%s' is not key=value\n", optarg);
				exit(2);
			}
			opt->noverrides++;
			break;
		case 't':
			opt->check_only = true;
			break;
		case 'U':
			opt->upgrade_spool = true;
			break;
		case 'V':
			printf("pigeond %s\n", PA_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
}

/* The directory's refresh thread logs through pigeond's log. */
static void
directory_log(void *arg, int level, const char *msg)
{
	(void)arg;
	pa_log((enum pa_log_level)level, "%s", msg);
}

/* The directory as the hand-off engine sees it (relay.store_route): fixed from start to exit. */
static struct {
	struct directory *dir;
	unsigned reader0; /* its reader ids: reader0 .. reader0 + HANDOFF_STORE_READERS - 1 */
} handoff_directory;

/* The store of a recipient from the directory's snapshot: lock-free, never blocks. */
static enum handoff_store
handoff_store_of(void *arg, unsigned reader, const char *rcpt, char *store, size_t storelen)
{
	struct dir_answer answer;

	(void)arg;
	switch (directory_lookup(handoff_directory.dir, handoff_directory.reader0 + reader, rcpt,
	                         &answer)) {
	case DIR_MAILBOX:
	case DIR_ALIAS:
		if (answer.store[0] == '\0')
			return HANDOFF_STORE_NONE;
		snprintf(store, storelen, "%s", answer.store);
		return HANDOFF_STORE_FOUND;
	case DIR_UNAVAILABLE:
		return HANDOFF_STORE_UNAVAILABLE;
	default:
		return HANDOFF_STORE_NONE;
	}
}

/* NULL when neither directory.file nor directory.ldap.uri is set. */
static int
create_directory(struct pa_shared *shared, const struct pa_config *config, char *err, size_t errlen)
{
	struct directory_config dc;

	directory_config_from(&dc, config);
	dc.log = directory_log;
	if (!directory_config_enabled(&dc))
		return PA_OK;
	/* The hand-off engine reads it too, with reader ids of its own after the workers'. */
	if (directory_create(&shared->directory, &dc, config->workers + HANDOFF_STORE_READERS, err,
	                     errlen) != PA_OK)
		return PA_ERROR;
	handoff_directory.dir = shared->directory;
	handoff_directory.reader0 = config->workers;
	return PA_OK;
}

static struct tls_settings
tls_settings_of(const struct pa_config *config)
{
	return (struct tls_settings){
	    .certs = config->tls_cert,
	    .keys = config->tls_key,
	    .ciphers = config->tls_ciphers,
	    .ciphersuites = config->tls_ciphersuites,
	    .min_version = config->tls_min_version == 1 ? TLS_MIN_1_3 : TLS_MIN_1_2,
	    .ticket_lifetime_s = config->tls_ticket_lifetime_s,
	};
}

/*
 * With tls.cert: the shared ticket keys and BIO method, and one trial
 * context so that a bad certificate or key fails here (exit 2, also for -t)
 * rather than in a worker.  Certificates are read at start only.
 */
static int
create_tls(struct pa_shared *shared, const struct pa_config *config, char *err, size_t errlen)
{
	struct tls_settings settings = tls_settings_of(config);
	struct tls_ctx *trial;

	if (config->tls_cert[0] == '\0')
		return PA_OK;
	if (tls_shared_new(&shared->tls, err, errlen) != PA_OK)
		return PA_ERROR;
	if (tls_ctx_new(&trial, shared->tls, &settings, err, errlen) != PA_OK) {
		tls_shared_free(shared->tls);
		shared->tls = NULL;
		return PA_ERROR;
	}
	tls_ctx_free(trial);
	return PA_OK;
}

/*
 * Reload: the certificate files are read again (renewed under the same
 * names; the names themselves need a restart).  One new context per worker,
 * all built before anything is published, so a bad file refuses the reload.
 */
static int
tls_contexts_new(const struct pa_shared *shared, const struct pa_config *config, unsigned n,
                 struct tls_ctx ***out, char *err, size_t errlen)
{
	struct tls_settings settings = tls_settings_of(config);
	struct tls_ctx **ctxs;

	*out = NULL;
	if (shared->tls == NULL)
		return PA_OK;
	ctxs = calloc(n, sizeof(*ctxs));
	if (ctxs == NULL) {
		snprintf(err, errlen, "out of memory for TLS contexts");
		return PA_ERROR;
	}
	for (unsigned i = 0; i < n; i++) {
		if (tls_ctx_new(&ctxs[i], shared->tls, &settings, err, errlen) != PA_OK) {
			for (unsigned j = 0; j < i; j++)
				tls_ctx_free(ctxs[j]);
			free(ctxs);
			return PA_ERROR;
		}
	}
	*out = ctxs;
	return PA_OK;
}

static void
tls_contexts_free(struct tls_ctx **ctxs, unsigned n)
{
	for (unsigned i = 0; ctxs != NULL && i < n; i++)
		tls_ctx_free(ctxs[i]);
	free(ctxs);
}

/* Each worker takes its new context on its next loop (ingest_tls_refresh()). */
static void
tls_contexts_publish(struct pa_worker **workers, struct tls_ctx **ctxs, unsigned n)
{
	for (unsigned i = 0; ctxs != NULL && i < n; i++)
		/* One the worker has not taken yet was never used: free it here. */
		tls_ctx_free(__atomic_exchange_n(&workers[i]->tls_next, ctxs[i], __ATOMIC_ACQ_REL));
	free(ctxs);
}

/* Signals are taken synchronously through a signalfd on the main lcore only. */
static int
block_signals(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Before EAL creates its threads, so that they inherit the mask. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		rte_exit(EXIT_FAILURE, "pthread_sigmask() failed\n");
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (fd == -1)
		rte_exit(EXIT_FAILURE, "signalfd() failed: %s\n", strerror(errno));
	return fd;
}

/* The backend the worker lcores run; set before they are launched. */
static const struct pa_backend_ops *worker_backend;

/* A worker lcore: its log lines go through its own ring to the log thread (core/log.h). */
static int
worker_main(void *arg)
{
	struct pa_worker *w = arg;
	int rc;

	if (pa_log_attach_thread() != PA_OK)
		pa_log_warning("worker %u: no log ring left, it writes its own log lines", w->id);
	rc = worker_backend->run(w);
	pa_log_detach_thread();
	return rc;
}

static struct pa_worker **
start_workers(struct pa_shared *shared, const struct pa_config *config,
              const struct pa_backend_ops *backend)
{
	struct pa_worker **workers = calloc(config->workers, sizeof(*workers));
	unsigned lcore, i = 0;

	if (workers == NULL)
		rte_exit(EXIT_FAILURE, "out of memory for workers\n");
	RTE_LCORE_FOREACH_WORKER(lcore)
	{
		struct pa_worker *w = rte_zmalloc("pa_worker", sizeof(*w), RTE_CACHE_LINE_SIZE);

		if (w == NULL)
			rte_exit(EXIT_FAILURE, "rte_zmalloc(worker %u) failed\n", i);
		w->id = i;
		w->lcore = lcore;
		w->shared = shared;
		w->runtime = runtime_ref(shared->runtime);
		TAILQ_INIT(&w->submit_backlog);
		TAILQ_INIT(&w->tls_backlog);
		if (shared->tls != NULL) {
			struct tls_settings settings = tls_settings_of(config);
			char err[CONFIG_ERR_MAX];

			/* One SSL_CTX per worker: no two cores write OpenSSL's counters. */
			if (tls_ctx_new(&w->tls, shared->tls, &settings, err, sizeof(err)) != PA_OK)
				rte_exit(EXIT_FAILURE, "worker %u: %s\n", i, err);
		}
		queue_id_gen_init(&w->queue_ids, config->node_id, i);
		if (backend->worker_init(w, config) != PA_OK)
			rte_exit(EXIT_FAILURE, "worker %u: %s backend start failed (see above)\n",
			         i, backend->name);
		workers[i++] = w;
	}
	worker_backend = backend;
	if (pa_log_start() != PA_OK)
		pa_log_warning("no log thread: worker lcores write their log lines themselves");
	for (i = 0; i < config->workers; i++)
		if (rte_eal_remote_launch(worker_main, workers[i], workers[i]->lcore) != 0)
			rte_exit(EXIT_FAILURE, "rte_eal_remote_launch(worker %u) failed\n", i);
	return workers;
}

/* Loads the route map as the hand-off engine would (relay.routes, relay.default), then frees it. */
static int
check_routes(const struct pa_config *c, char *err, size_t errlen)
{
	struct route_map *map;
	char merr[CONFIG_ERR_MAX - 32]; /* room for the prefix */

	if (route_store_template_check(c->relay_store_route, err, errlen) != PA_OK)
		return PA_ERROR;
	if (route_map_load(c->relay_routes, c->spool_shards, c->relay_default, &map, merr,
	                   sizeof(merr)) != PA_OK) {
		snprintf(err, errlen, "relay.routes: %s", merr);
		return PA_ERROR;
	}
	route_map_free(map);
	return PA_OK;
}

/* The hand-off engine's settings (docs/handoff.md) from the configuration. */
static void
handoff_config_of(const struct pa_config *c, struct handoff_config *out)
{
	*out = (struct handoff_config){
	    .shards = c->spool_shards,
	    .node_id = c->node_id,
	    .min_backoff_s = c->relay_min_backoff_s,
	    .max_backoff_s = c->relay_max_backoff_s,
	    .max_queue_lifetime_s = c->relay_max_queue_lifetime_s,
	    .concurrency = c->relay_concurrency,
	    .concurrency_min = c->relay_concurrency_min,
	    .high_water = c->spool_high_water,
	    .min_free_bytes = c->spool_min_free_bytes,
	    .min_free_percent = c->spool_min_free_percent,
	    .breaker_failures = c->relay_breaker_failures,
	    .breaker_cooldown_s = c->relay_breaker_cooldown_s,
	    .timeout_s = c->relay_timeout_s,
	    .max_rcpts = c->relay_max_recipients,
	    .store_of = handoff_directory.dir != NULL ? handoff_store_of : NULL,
	};
	snprintf(out->routes, sizeof(out->routes), "%s", c->relay_routes);
	snprintf(out->default_dest, sizeof(out->default_dest), "%s", c->relay_default);
	snprintf(out->store_route, sizeof(out->store_route), "%s", c->relay_store_route);
	if (c->relay_store_route[0] != '\0' && handoff_directory.dir == NULL)
		pa_log_warning("relay.store_route is set but no directory is: nothing routes by "
		               "store");
	snprintf(out->helo, sizeof(out->helo), "%s",
	         c->relay_helo[0] ? c->relay_helo : c->hostname);
	snprintf(out->hostname, sizeof(out->hostname), "%s", c->hostname);
	snprintf(out->spool_dir, sizeof(out->spool_dir), "%s", c->spool_dir);
}

/*
 * Session-ticket key rotation, on the main lcore (the only writer of the
 * keys): on a fixed schedule, one tls.ticket_lifetime (of the configuration
 * in force at each rotation) after the other from the moment pigeond is
 * ready, each checked on every turn of the control loop, so within a second
 * of its time.  A ticket's key is retired two rotations after the ticket was
 * sealed, and OpenSSL's session timeout (two lifetimes from the sealing) must
 * not come first while the key is still the previous one: so no key seals
 * for much longer than a lifetime, and a late rotation does not lengthen the
 * periods after it (docs/tls.md).
 */
struct ticket_rotation {
	struct pa_shared *shared;
	uint64_t due_ms; /* monotonic: when the current key is to be replaced */
};

static int
rotate_ticket_key_now(struct ticket_rotation *r, char *err, size_t errlen)
{
	struct pa_shared *shared = r->shared;

	if (tls_shared_rotate(shared->tls, err, errlen) != PA_OK) {
		pa_log_err("tls: session-ticket key rotation failed, the current key stays: %s",
		           err);
		return PA_ERROR;
	}
	pa_log_info("tls: new session-ticket key (generation %llu)",
	            (unsigned long long)tls_shared_generation(shared->tls));
	return PA_OK;
}

static void
rotate_ticket_key(void *arg, uint64_t now_ms)
{
	struct ticket_rotation *r = arg;
	uint64_t lifetime_ms;
	char err[TLS_ERR_MAX];

	if (r->shared->tls == NULL || now_ms < r->due_ms)
		return;
	lifetime_ms = 1000ull * r->shared->runtime->config.tls_ticket_lifetime_s;
	r->due_ms += lifetime_ms;
	/*
	 * A loop stalled for a whole lifetime or more: one rotation, and a full
	 * period for the new key, since a second one at once would retire the
	 * tickets the previous key sealed a moment ago.
	 */
	if (r->due_ms <= now_ms)
		r->due_ms = now_ms + lifetime_ms;
	(void)rotate_ticket_key_now(r, err, sizeof(err));
}

/*
 * The tls rotate command (an operator who fears a key has leaked, or a test
 * that wants rotations at its own moments): a rotation now, and a full
 * period for the new key, as after a stalled loop.
 */
static int
rotate_ticket_key_command(void *arg, uint64_t *generation, char *err, size_t errlen)
{
	struct ticket_rotation *r = arg;

	if (r->shared->tls == NULL) {
		snprintf(err, errlen, "TLS is not configured (tls.cert)");
		return PA_ERROR;
	}
	if (rotate_ticket_key_now(r, err, errlen) != PA_OK)
		return PA_ERROR;
	r->due_ms = pa_monotonic_ms() + 1000ull * r->shared->runtime->config.tls_ticket_lifetime_s;
	*generation = tls_shared_generation(r->shared->tls);
	return PA_OK;
}

/* What reload() works on: SIGHUP and the control socket's reload command share it. */
struct reload_ctx {
	struct pa_shared *shared;
	struct pa_worker **workers;
	const struct options *opt;
};

/* systemd's view of pigeond: notifications and the watchdog (core/service.h). */
static struct service service;
static char service_status[256];

/* What the control loop does on every turn: the watchdog, then the ticket key. */
struct main_tick {
	struct ticket_rotation *rotation;
	struct pa_worker **workers;
	unsigned nworkers;
};

/* Every worker lcore still in its loop (a worker that returned early is not). */
static bool
workers_running(const struct main_tick *t)
{
	for (unsigned i = 0; i < t->nworkers; i++)
		if (rte_eal_get_lcore_state(t->workers[i]->lcore) != RUNNING)
			return false;
	return true;
}

static void
main_tick(void *arg, uint64_t now_ms)
{
	struct main_tick *t = arg;

	service_tick(&service, now_ms, workers_running(t));
	rotate_ticket_key(t->rotation, now_ms);
}

/*
 * Publishes a new runtime; the old one is released once every worker has moved
 * on.  PA_ERROR, with the reason in err, leaves the running configuration.
 */
static int
reload_config(void *arg, char *err, size_t errlen)
{
	struct reload_ctx *ctx = arg;
	struct pa_shared *shared = ctx->shared;
	struct pa_worker **workers = ctx->workers;
	const struct options *opt = ctx->opt;
	struct pa_runtime *old = shared->runtime, *next;
	struct pa_config config;
	struct tls_ctx **tls_ctxs;
	struct milter_filters *filters;
	const char *fixed;

	if (config_load(&config, opt->config_path, opt->overrides, opt->noverrides, err, errlen) !=
	    PA_OK) {
		pa_log_err("reload refused, the running configuration stays: %s", err);
		return PA_ERROR;
	}
	fixed = config_restart_needed(&old->config, &config);
	if (fixed != NULL) {
		snprintf(err, errlen, "'%s' changed and needs a restart", fixed);
		pa_log_err("reload refused: %s", err);
		config_free(&config);
		return PA_ERROR;
	}
	if (tls_contexts_new(shared, &config, config.workers, &tls_ctxs, err, errlen) != PA_OK) {
		pa_log_err("reload refused, the running certificates stay: %s", err);
		config_free(&config);
		return PA_ERROR;
	}
	if (ingest_milter_prepare(&config, &filters, err, errlen) != PA_OK) {
		pa_log_err("reload refused, the running filters stay: %s", err);
		tls_contexts_free(tls_ctxs, config.workers);
		config_free(&config);
		return PA_ERROR;
	}
	/* The route map is all or nothing too: a bad one refuses the whole reload. */
	if (shared->handoff != NULL) {
		struct handoff_config hc;

		handoff_config_of(&config, &hc);
		if (handoff_reload(shared->handoff, &hc, err, errlen) != PA_OK) {
			pa_log_err("reload refused, the running route map stays: %s", err);
			milter_client_filters_free(filters);
			tls_contexts_free(tls_ctxs, config.workers);
			config_free(&config);
			return PA_ERROR;
		}
	}
	next = runtime_new(&config, old->generation + 1);
	if (next == NULL) {
		snprintf(err, errlen, "out of memory");
		pa_log_err("reload refused: out of memory");
		milter_client_filters_free(filters);
		tls_contexts_free(tls_ctxs, config.workers);
		config_free(&config);
		return PA_ERROR;
	}
	tls_contexts_publish(workers, tls_ctxs, next->config.workers);
	/* New messages ask the new filters; those out finish with theirs (docs/milter.md). */
	ingest_milter_publish(shared, filters);
	ingest_bind_callbacks(&next->smtp);
	__atomic_store_n(&shared->runtime, next, __ATOMIC_RELEASE);
	for (unsigned waited = 0; waited < RELOAD_ACK_WAIT_MS; waited += 10) {
		unsigned moved = 0;

		for (unsigned i = 0; i < old->config.workers; i++)
			moved += __atomic_load_n(&workers[i]->runtime, __ATOMIC_ACQUIRE) == next;
		if (moved == old->config.workers)
			break;
		usleep(10000);
	}
	pa_log_set_level(next->config.log_level);
	pa_log_set_output(next->config.log_format, next->config.log_target);
	runtime_unref(old);
	/* An operator who sends SIGHUP after editing the directory expects it read now. */
	if (shared->directory != NULL)
		directory_refresh_now(shared->directory);
	pa_log_notice("reloaded configuration (generation %llu)",
	              (unsigned long long)next->generation);
	return PA_OK;
}

/* A reload as systemd sees it: RELOADING=1, then READY=1 whether or not it took. */
static int
reload(void *arg, char *err, size_t errlen)
{
	int rc;

	service_reloading();
	rc = reload_config(arg, err, errlen);
	service_ready(service_status);
	return rc;
}

/* The -o copies parse_options() made. */
static void
free_options(struct options *opt)
{
	for (size_t i = 0; i < opt->noverrides; i++)
		free((char *)opt->overrides[i].key);
	opt->noverrides = 0;
}

int
main(int argc, char **argv)
{
	struct options opt = {0};
	struct pa_config config;
	struct pa_shared shared = {0};
	struct spool_config spool_config;
	struct pa_privileges priv;
	cpu_set_t committer_cpus;
	struct pa_worker **workers;
	struct ctl_server *ctl;
	struct ctl_env ctl_env = {0};
	struct reload_ctx reload_ctx = {0};
	struct ticket_rotation ticket_rotation = {0};
	struct main_tick tick = {0};
	const struct pa_backend_ops *backend;
	char err[CONFIG_ERR_MAX];
	int sigfd;

	pa_log_init("pigeond");
	parse_options(argc, argv, &opt);
	if (config_load(&config, opt.config_path, opt.overrides, opt.noverrides, err,
	                sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		free_options(&opt);
		return 2;
	}
	/* Created (validated, strings copied) now so that -t and exit 2 cover it. */
	if (create_directory(&shared, &config, err, sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		config_free(&config);
		free_options(&opt);
		return 2;
	}
	if (create_tls(&shared, &config, err, sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		directory_destroy(shared.directory);
		config_free(&config);
		free_options(&opt);
		return 2;
	}
	if (opt.check_only) {
		/* The route map too: a bad line found now is not found at a start or a reload. */
		int rc = check_routes(&config, err, sizeof(err));

		if (rc == PA_OK)
			printf("pigeond: configuration ok\n");
		else
			pa_log_err("%s", err);
		tls_shared_free(shared.tls);
		directory_destroy(shared.directory);
		config_free(&config);
		free_options(&opt);
		return rc == PA_OK ? 0 : 2;
	}
	if (opt.upgrade_spool) {
		/* docs/spool-format.md, "Upgrading a version-1 spool": pigeond must be stopped. */
		int rc = spool_upgrade(config.spool_dir, config.spool_shards,
		                       config.spool_segment_size, stdout, err, sizeof(err));

		if (rc != PA_OK)
			pa_log_err("spool upgrade: %s", err);
		tls_shared_free(shared.tls);
		directory_destroy(shared.directory);
		config_free(&config);
		free_options(&opt);
		return rc == PA_OK ? 0 : 2;
	}
	backend = backend_ops(config.backend);
	if (backend == NULL) {
		pa_log_err("config key 'backend': dpdk is not available in this build yet");
		free_options(&opt);
		return 2;
	}
	/* Before EAL: its threads inherit the umask and PR_SET_NO_NEW_PRIVS. */
	if (privileges_resolve(&config, &priv, err, sizeof(err)) != PA_OK ||
	    privileges_harden(err, sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		config_free(&config);
		free_options(&opt);
		return 2;
	}
	pa_log_set_level(config.log_level);
	pa_log_set_output(config.log_format, config.log_target);
	pa_log_capture_dpdk();
	sigfd = block_signals();
	eal_start(&config, argv[0]);
	rte_timer_subsystem_init();

	shared.runtime = runtime_new(&config, 1);
	if (shared.runtime == NULL)
		rte_exit(EXIT_FAILURE, "out of memory\n");
	ingest_bind_callbacks(&shared.runtime->smtp);
	spool_config = (struct spool_config){
	    .dir = shared.runtime->config.spool_dir,
	    .shards = config.spool_shards,
	    .workers = config.workers,
	    .ring_size = config.spool_ring_size,
	    .committer_cpus = NULL,
	    .stall_timeout_ms = config.spool_stall_timeout_ms,
	    .retry_ms = config.spool_retry_ms,
	    .impair = shared.runtime->config.spool_impair,
	    .format = config.spool_format,
	    .segment_size = config.spool_segment_size,
	    .idle_poll_us = config.spool_idle_poll_us,
	};
	switch (eal_committer_cpus(&config, &committer_cpus)) {
	case PA_OK:
		spool_config.committer_cpus = &committer_cpus;
		/* Away from the worker lcores: their looks take no CPU from a worker. */
		if (config.backend == PA_BACKEND_DPDK)
			spool_config.linger_us = config.spool_linger_us;
		break;
	case PA_AGAIN:
		if (config.backend == PA_BACKEND_DPDK && eal_spare_cpu_for_committers())
			spool_config.linger_us = config.spool_linger_us;
		break;
	default:
		rte_exit(EXIT_FAILURE,
		         "config key 'spool.committer_cpus': '%s' is not a CPU list\n",
		         config.spool_committer_cpus);
	}
	if (config.backend == PA_BACKEND_DPDK && config.spool_idle_poll_us == 0)
		pa_log_info("spool: idle committers %s",
		            spool_config.linger_us != 0
		                ? "look at their rings for spool.linger_us, then wait for a doorbell"
		                : "wait for a doorbell at once: they share the workers' CPUs");
	if (backend->global_init != NULL && backend->global_init(&shared.runtime->config) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s backend start failed (see above)\n", backend->name);
	/*
	 * What needs root is done (the port, the listeners); the socket is made
	 * now so that it can be given its owner.  Then every thread gives up root
	 * (docs/security.md) and the spool is opened as `user`, so that every
	 * file RocksDB creates, now or in a reopen, is the user's.
	 */
	if (privileges_prepare_spool(&priv, &config, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "spool: %s\n", err);
	if (privileges_prepare_runtime_dir(&priv, rte_eal_get_runtime_dir(), err, sizeof(err)) !=
	    PA_OK)
		rte_exit(EXIT_FAILURE, "privileges: %s\n", err);
	/* Before the workers, so that a second pigeond on the same socket stops here. */
	if (ctl_server_open(&ctl, &shared.runtime->config, &ctl_env, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s\n", err);
	if (privileges_drop(&priv, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "privileges: %s\n", err);
	if (priv.drop)
		pa_log_info("running as user %s (uid %u gid %u), no capabilities", config.user,
		            (unsigned)priv.uid, (unsigned)priv.gid);
	if (spool_open(&shared.spool, &spool_config, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "spool: %s\n", err);
	ingest_store_spool(&shared.store, shared.spool);
	if (shared.directory != NULL) {
		int rc = directory_start(shared.directory, DIRECTORY_FIRST_LOAD_WAIT_MS, err,
		                         sizeof(err));

		if (rc == PA_ERROR)
			rte_exit(EXIT_FAILURE, "directory: %s\n", err);
		if (rc == PA_AGAIN)
			pa_log_warning("directory: no snapshot yet: RCPT answers 451 until a load "
			               "succeeds");
	}
	/*
	 * After the directory's first load: a copy routed by store (relay.store_route)
	 * at the engine's first scan finds a snapshot rather than waiting relay.min_backoff.
	 */
	{
		struct handoff_config hc;

		handoff_config_of(&shared.runtime->config, &hc);
		if (handoff_start(&shared.handoff, shared.spool, &hc, err, sizeof(err)) != PA_OK)
			rte_exit(EXIT_FAILURE, "hand-off: %s\n", err);
	}

	/* Per-address connection accounting, shared by the workers (dataplane/conn_limits.h). */
	shared.limits = limits_create(config.workers, config.limit_table_size, err, sizeof(err));
	if (shared.limits == NULL)
		rte_exit(EXIT_FAILURE, "%s\n", err);
	/* The `dns` thread, with dns.servers: the screen's lookups (dataplane/ingest_screen.h). */
	if (ingest_screen_create(&shared, &config, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s\n", err);
	/* The `milter` thread, with milter.servers: end of data's filters (docs/milter.md). */
	if (ingest_milter_create(&shared, &config, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s\n", err);
	workers = start_workers(&shared, &shared.runtime->config, backend);
	reload_ctx = (struct reload_ctx){&shared, workers, &opt};
	ctl_env.shared = &shared;
	ctl_env.workers = workers;
	ctl_env.nworkers = config.workers;
	ctl_env.backend = backend->name;
	ctl_env.started_us = pa_wall_clock_us();
	ctl_env.reload = reload;
	ctl_env.reload_arg = &reload_ctx;
	ticket_rotation.shared = &shared;
	/* The first key seals tickets from now on: its period starts here, not at start-up. */
	ticket_rotation.due_ms =
	    pa_monotonic_ms() + 1000ull * shared.runtime->config.tls_ticket_lifetime_s;
	tick = (struct main_tick){&ticket_rotation, workers, config.workers};
	ctl_env.tick = main_tick;
	ctl_env.tick_arg = &tick;
	ctl_env.rotate_tickets = rotate_ticket_key_command;
	ctl_env.rotate_arg = &ticket_rotation;
	pa_log_info("ready listen=%s backend=%s workers=%u spool=%s shards=%u",
	            shared.runtime->config.listen, backend->name, config.workers,
	            shared.runtime->config.spool_dir, config.spool_shards);
	{
		/* EAL names its worker lcores rte-worker-N, spool_committer.c its threads
		 * spool-cNNN. */
		static const char *const watched[] = {"rte-worker-", "spool-c", NULL};

		service_init(&service);
		if (service.watchdog_ms > 0)
			pa_log_info("watchdog: every %llu ms, over %u workers and committers",
			            (unsigned long long)service.watchdog_ms,
			            service_watch_threads(&service, watched));
		snprintf(service_status, sizeof(service_status),
		         "accepting on %s (%s backend, %u workers, %u shards)",
		         shared.runtime->config.listen, backend->name, config.workers,
		         config.spool_shards);
		service_ready(service_status);
	}

	ctl_server_run(ctl, sigfd);
	service_stopping();
	/* The socket goes first: nothing may ask about workers that are stopping. */
	ctl_server_close(ctl);
	__atomic_store_n(&shared.stopping, 1, __ATOMIC_RELEASE);
	rte_eal_mp_wait_lcore();
	pa_log_stop(); /* every worker's lines written; from here on, lines go out at once */
	/* No worker looks anything up any more. */
	directory_destroy(shared.directory);
	shared.directory = NULL;
	limits_destroy(shared.limits);
	shared.limits = NULL;
	ingest_screen_destroy(&shared);
	ingest_milter_destroy(&shared);
	if (backend->global_fini != NULL)
		backend->global_fini();
	/* Copies in flight stay queued; the engine writes nothing after this. */
	handoff_stop(shared.handoff);
	shared.handoff = NULL;
	spool_close(shared.spool);
	for (unsigned i = 0; i < shared.runtime->config.workers; i++) {
		runtime_unref(workers[i]->runtime);
		tls_ctx_free(workers[i]->tls);
		tls_ctx_free(workers[i]->tls_next);
		ingest_screen_detach(workers[i]);
		rte_free(workers[i]);
	}
	free(workers);
	tls_shared_free(shared.tls); /* after the last worker's SSL_CTX */
	pa_log_info("stopped");
	runtime_unref(shared.runtime);
	eal_stop();
	close(sigfd);
	free_options(&opt);
	return 0;
}
