/*
 * kernel_backend.h: the SMTP engine over kernel sockets, one epoll loop per
 * worker lcore (kernel_backend.c).
 */
#ifndef PA_KERNEL_BACKEND_H
#define PA_KERNEL_BACKEND_H

#include "core/config.h"

struct pa_worker;

/* On the main lcore, once: refuses an address that something else already serves. */
int kernel_backend_global_init(const struct pa_config *config);

/* On the main lcore, before launch: the worker's listener, epoll set, spool eventfd. */
int kernel_backend_init(struct pa_worker *worker, const struct pa_config *config);

/* The worker lcore's loop (an lcore_function_t); returns when the server stops. */
int kernel_backend_run(void *worker);

#endif
