/*
 * ctl_server.h: pigeond's control socket and metrics listener, served by the
 * main lcore.
 *
 * After start-up the main lcore has nothing to do but wait; ctl_server_run()
 * is that wait: one poll() loop over the signalfd (SIGHUP reloads,
 * SIGTERM/SIGINT stop, exactly as before the control socket existed), the
 * control socket's listener and clients, and the optional HTTP metrics
 * listener.  Requests and replies are line-delimited JSON (ctl_commands.h).
 *
 * What it promises: the control socket is a Unix stream socket only, never
 * reachable from the network; a peer that is not root, pigeond's own user or
 * a member (primary group) of ctl.group gets an error and is disconnected;
 * at most CTL_CLIENTS_MAX clients at once, each with a bounded request line;
 * no request, however malformed or large, stops pigeond serving; nothing here
 * touches what the workers own except through struct ctl_env.
 */
#ifndef PA_CTL_SERVER_H
#define PA_CTL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define CTL_CLIENTS_MAX 16
#define CTL_REQUEST_MAX (64u * 1024u)

struct pa_shared;
struct pa_worker;

/* What the control commands act on; owned by main.c, read by the server. */
struct ctl_env {
	struct pa_shared *shared;
	struct pa_worker **workers;
	unsigned nworkers;
	const char *backend; /* the backend's name */
	uint64_t started_us; /* wall clock */
	/* SIGHUP and the reload command: PA_OK, or PA_ERROR with the reason in err. */
	int (*reload)(void *arg, char *err, size_t errlen);
	void *reload_arg;
	/*
	 * Timed work of the main lcore (ticket-key rotation): every turn of the
	 * loop, also one a signal interrupted, so at least once a second;
	 * now_ms is pa_monotonic_ms().
	 */
	void (*tick)(void *arg, uint64_t now_ms);
	void *tick_arg;
	/*
	 * The tls rotate command: a new session-ticket key now, its period
	 * starting now; the new generation in *generation.
	 */
	int (*rotate_tickets)(void *arg, uint64_t *generation, char *err, size_t errlen);
	void *rotate_arg;
	/* Set by the shutdown command: the loop returns once the reply is out. */
	bool stop;
	/* Set by the drain command: the loop stops once the spool is empty. */
	bool draining;
	/* Filled in by ctl_server_open(), for status. */
	char socket_path[108];
	char metrics_listen[128];
};

struct ctl_server;

/*
 * Creates the control socket (removing a stale file; PA_ERROR when another
 * process answers on it) and, when metrics.listen is set, the HTTP listener.
 * PA_ERROR with err naming the failed call and the path or address.
 */
int ctl_server_open(struct ctl_server **out, const struct pa_config *config, struct ctl_env *env,
                    char *err, size_t errlen);

/* Serves until SIGTERM or SIGINT arrives on sigfd, or the shutdown command. */
void ctl_server_run(struct ctl_server *srv, int sigfd);

/* Closes every socket and removes the socket file. */
void ctl_server_close(struct ctl_server *srv);

#endif
