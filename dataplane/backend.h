/*
 * backend.h: what carries a worker's bytes: kernel sockets or the DPDK stack.
 *
 * pigeond's main lcore knows backends only through this table: a global
 * set-up after EAL (ports, mempools), a per-worker set-up before launch (its
 * listener or queues), and the worker lcore's loop.  Both backends serve the
 * same SMTP engine and spool through dataplane/ingest.h.
 */
#ifndef PA_BACKEND_H
#define PA_BACKEND_H

#include "core/config.h"

struct pa_worker;

struct pa_backend_ops {
	const char *name;
	/* On the main lcore after EAL, before any worker; NULL if nothing to do. */
	int (*global_init)(const struct pa_config *config);
	/* On the main lcore, per worker, before launch. */
	int (*worker_init)(struct pa_worker *worker, const struct pa_config *config);
	/* The worker lcore's loop (an lcore_function_t); returns when the server stops. */
	int (*run)(void *worker);
	/* On the main lcore after every worker returned; NULL if nothing to do. */
	void (*global_fini)(void);
};

/* NULL when this build has no such backend. */
const struct pa_backend_ops *backend_ops(enum pa_backend backend);

#endif
