/*
 * backend.c: the table of backends this build carries (backend.h).
 */
#include <stddef.h>

#include "dataplane/backend.h"
#include "dataplane/dpdk_backend.h"
#include "dataplane/kernel_backend.h"

static const struct pa_backend_ops dpdk_ops = {
    .name = "dpdk",
    .global_init = dpdk_global_init,
    .worker_init = dpdk_backend_init,
    .run = dpdk_backend_run,
    .global_fini = dpdk_global_fini,
};

static const struct pa_backend_ops kernel_ops = {
    .name = "kernel",
    .global_init = kernel_backend_global_init,
    .worker_init = kernel_backend_init,
    .run = kernel_backend_run,
    .global_fini = NULL,
};

const struct pa_backend_ops *
backend_ops(enum pa_backend backend)
{
	switch (backend) {
	case PA_BACKEND_KERNEL:
		return &kernel_ops;
	case PA_BACKEND_DPDK:
		return &dpdk_ops;
	}
	return NULL;
}
