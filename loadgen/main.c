/*
 * main.c: pigeon-loadgen, an SMTP load generator (loadgen/README.md).
 *
 * Parses the options, builds the message generator and the TLS client
 * context, hands the run to a transport (kernel sockets or the DPDK stack),
 * then prints the summary: text on stderr, and with --json one object on
 * stdout.  Exit status: 0 when the run happened (the numbers say how the
 * server did: check ok against messages), 1 when it could not run or not a
 * single connection succeeded, 2 for a usage error.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "loadgen/lg_transport.h"

/*
 * One descriptor per connection: raise the soft limit as far as the hard
 * limit allows, so 100,000 idle connections need no ulimit dance.
 */
static void
raise_nofile(unsigned connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)connections + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		perror("pigeon-loadgen: getrlimit(RLIMIT_NOFILE)");
		return;
	}
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		perror("pigeon-loadgen: setrlimit(RLIMIT_NOFILE)");
	if (rl.rlim_cur < want)
		fprintf(stderr,
		        "pigeon-loadgen: warning: RLIMIT_NOFILE hard limit %llu < %u connections: "
		        "some connects will fail (raise it with ulimit -Hn)\n",
		        (unsigned long long)rl.rlim_max, connections);
}

/* A load generator talks to test servers with self-signed certificates: no verification. */
static SSL_CTX *
tls_client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ERR_print_errors_fp(stderr);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Every session is a full handshake: that is the cost being measured. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

int
main(int argc, char **argv)
{
	struct lg_options opt;
	struct lg_gen gen;
	struct lg_run run;
	struct lg_stats total;
	sigset_t block;
	double seconds;
	int rc;

	rc = lg_options_parse(&opt, argc, argv);
	if (rc != 0)
		return rc == 1 ? 0 : 2;

	/* Taken synchronously by lg_monitor(); blocked before any thread exists, so in all. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGPIPE);
	if (sigprocmask(SIG_BLOCK, &block, NULL) == -1) {
		perror("pigeon-loadgen: sigprocmask");
		return 1;
	}

	if (opt.kernel)
		raise_nofile(opt.connections);
	if (lg_gen_init(&gen, &opt) == -1) {
		lg_options_free(&opt);
		return 1;
	}
	memset(&run, 0, sizeof(run));
	run.opt = &opt;
	run.gen = &gen;
	run.shared.budget = opt.messages;
	run.stats = aligned_alloc(64, sizeof(struct lg_stats) * opt.threads);
	if (run.stats == NULL) {
		fputs("pigeon-loadgen: out of memory for stats\n", stderr);
		lg_gen_free(&gen);
		lg_options_free(&opt);
		return 1;
	}
	memset(run.stats, 0, sizeof(struct lg_stats) * opt.threads);
	if (opt.tls_share > 0 && (run.tls_ctx = tls_client_ctx()) == NULL) {
		rc = -1;
		goto out;
	}

	run.start_us = lg_now_us();
	rc = opt.kernel ? lg_kernel_run(&run) : lg_dpdk_run(&run);
	seconds =
	    (double)((run.shared.end_us ? run.shared.end_us : lg_now_us()) - run.start_us) / 1e6;
	if (rc == 0) {
		memset(&total, 0, sizeof(total));
		for (unsigned i = 0; i < opt.threads; i++)
			lg_stats_merge(&total, &run.stats[i]);
		lg_stats_report_final(stderr, &total, seconds);
		if (opt.json &&
		    lg_stats_print_json(stdout, &total, seconds, opt.connections) == -1) {
			fputs("pigeon-loadgen: could not encode the JSON summary\n", stderr);
			rc = -1;
		}
		/* Not one connection: a wrong --target, not a slow server; say so in the status. */
		if (total.connects == 0)
			rc = -1;
	}
out:
	SSL_CTX_free(run.tls_ctx);
	free(run.stats);
	lg_gen_free(&gen);
	lg_options_free(&opt);
	return rc == 0 ? 0 : 1;
}
