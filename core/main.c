/*
 * main.c: pigeond, the PigeonAir SMTP ingest daemon.
 *
 * Start-up order: configuration (an error names the key and exits 2), EAL,
 * the spool (which recovers what its WAL holds), one listener per worker,
 * then the workers.  The main lcore then only waits for signals: SIGHUP
 * reloads what may change at run time, SIGTERM/SIGINT stop the server (no
 * new connections, in-flight commits still answered 250, 421 to the rest)
 * and exit 0 once the spool has closed cleanly.
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

#include "core/config.h"
#include "core/log.h"
#include "core/pa.h"
#include "core/runtime.h"
#include "dataplane/eal.h"
#include "dataplane/ingest.h"
#include "dataplane/backend.h"
#include "dataplane/worker.h"
#include "directory/directory.h"
#include "spool/spool.h"

#define RELOAD_ACK_WAIT_MS 5000
#define DIRECTORY_FIRST_LOAD_WAIT_MS 10000

struct options {
	const char *config_path;
	struct config_override overrides[CONFIG_OVERRIDES_MAX];
	size_t noverrides;
	bool check_only;
};

static void
usage(FILE *out)
{
	fprintf(out, "usage: pigeond [-c FILE] [-o key=value]... [-t] [-V]\n"
	             "  -c FILE        configuration file (INI; docs/configuration.md)\n"
	             "  -o key=value   override one key, e.g. -o listen=127.0.0.1:2525\n"
	             "  -t             check the configuration and exit\n"
	             "  -V             print the version and exit\n");
}

static void
parse_options(int argc, char **argv, struct options *opt)
{
	char *arg;
	int ch;

	while ((ch = getopt(argc, argv, "c:o:thV")) != -1) {
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

/* NULL when neither directory.file nor directory.ldap.uri is set. */
static int
create_directory(struct pa_shared *shared, const struct pa_config *config, char *err, size_t errlen)
{
	struct directory_config dc;

	directory_config_from(&dc, config);
	dc.log = directory_log;
	if (!directory_config_enabled(&dc))
		return PA_OK;
	return directory_create(&shared->directory, &dc, config->workers, err, errlen);
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
		queue_id_gen_init(&w->queue_ids, config->node_id, i);
		if (backend->worker_init(w, config) != PA_OK)
			rte_exit(EXIT_FAILURE, "worker %u: %s backend start failed (see above)\n",
			         i, backend->name);
		workers[i++] = w;
	}
	for (i = 0; i < config->workers; i++)
		if (rte_eal_remote_launch(backend->run, workers[i], workers[i]->lcore) != 0)
			rte_exit(EXIT_FAILURE, "rte_eal_remote_launch(worker %u) failed\n", i);
	return workers;
}

/* Publishes a new runtime; the old one is released once every worker has moved on. */
static void
reload(struct pa_shared *shared, struct pa_worker **workers, const struct options *opt)
{
	struct pa_runtime *old = shared->runtime, *next;
	struct pa_config config;
	char err[CONFIG_ERR_MAX];
	const char *fixed;

	if (config_load(&config, opt->config_path, opt->overrides, opt->noverrides, err,
	                sizeof(err)) != PA_OK) {
		pa_log_err("reload refused, the running configuration stays: %s", err);
		return;
	}
	fixed = config_restart_needed(&old->config, &config);
	if (fixed != NULL) {
		pa_log_err("reload refused: '%s' changed and needs a restart", fixed);
		config_free(&config);
		return;
	}
	next = runtime_new(&config, old->generation + 1);
	if (next == NULL) {
		pa_log_err("reload refused: out of memory");
		config_free(&config);
		return;
	}
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
	runtime_unref(old);
	/* An operator who sends SIGHUP after editing the directory expects it read now. */
	if (shared->directory != NULL)
		directory_refresh_now(shared->directory);
	pa_log_notice("reloaded configuration (generation %llu)",
	              (unsigned long long)next->generation);
}

static void
wait_for_signals(int sigfd, struct pa_shared *shared, struct pa_worker **workers,
                 const struct options *opt)
{
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sigfd, &si, sizeof(si));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			pa_log_err("read(signalfd) failed: %s", strerror(errno));
			return;
		}
		if (si.ssi_signo == SIGHUP) {
			reload(shared, workers, opt);
			continue;
		}
		pa_log_notice("signal %u: stopping", si.ssi_signo);
		return;
	}
}

int
main(int argc, char **argv)
{
	struct options opt = {0};
	struct pa_config config;
	struct pa_shared shared = {0};
	struct spool_config spool_config;
	struct pa_worker **workers;
	const struct pa_backend_ops *backend;
	char err[CONFIG_ERR_MAX];
	int sigfd;

	pa_log_init("pigeond");
	parse_options(argc, argv, &opt);
	if (config_load(&config, opt.config_path, opt.overrides, opt.noverrides, err,
	                sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		return 2;
	}
	/* Created (validated, strings copied) now so that -t and exit 2 cover it. */
	if (create_directory(&shared, &config, err, sizeof(err)) != PA_OK) {
		pa_log_err("%s", err);
		config_free(&config);
		return 2;
	}
	if (opt.check_only) {
		printf("pigeond: configuration ok\n");
		directory_destroy(shared.directory);
		config_free(&config);
		return 0;
	}
	backend = backend_ops(config.backend);
	if (backend == NULL) {
		pa_log_err("config key 'backend': dpdk is not available in this build yet");
		return 2;
	}
	pa_log_set_level(config.log_level);
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
	};
	if (backend->global_init != NULL && backend->global_init(&shared.runtime->config) != PA_OK)
		rte_exit(EXIT_FAILURE, "%s backend start failed (see above)\n", backend->name);
	if (spool_open(&shared.spool, &spool_config, err, sizeof(err)) != PA_OK)
		rte_exit(EXIT_FAILURE, "spool: %s\n", err);
	if (shared.directory != NULL) {
		int rc = directory_start(shared.directory, DIRECTORY_FIRST_LOAD_WAIT_MS, err,
		                         sizeof(err));

		if (rc == PA_ERROR)
			rte_exit(EXIT_FAILURE, "directory: %s\n", err);
		if (rc == PA_AGAIN)
			pa_log_warning("directory: no snapshot yet: RCPT answers 451 until a load "
			               "succeeds");
	}

	workers = start_workers(&shared, &shared.runtime->config, backend);
	pa_log_info("ready listen=%s backend=%s workers=%u spool=%s shards=%u",
	            shared.runtime->config.listen, backend->name, config.workers,
	            shared.runtime->config.spool_dir, config.spool_shards);

	wait_for_signals(sigfd, &shared, workers, &opt);
	__atomic_store_n(&shared.stopping, 1, __ATOMIC_RELEASE);
	rte_eal_mp_wait_lcore();
	/* No worker looks anything up any more. */
	directory_destroy(shared.directory);
	shared.directory = NULL;
	if (backend->global_fini != NULL)
		backend->global_fini();
	spool_close(shared.spool);
	for (unsigned i = 0; i < shared.runtime->config.workers; i++) {
		runtime_unref(workers[i]->runtime);
		rte_free(workers[i]);
	}
	free(workers);
	pa_log_info("stopped");
	runtime_unref(shared.runtime);
	eal_stop();
	close(sigfd);
	return 0;
}
