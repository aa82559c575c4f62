/*
 * eal.h: starting DPDK's EAL for pigeond, in every backend.
 *
 * The kernel backend runs EAL without hugepages or PCI and with no shared
 * runtime files (--no-huge --no-pci --no-shconf), so pigeond starts as a
 * non-root user and several instances run side by side on one machine.
 * Lcore 0 is the main lcore; lcores 1..workers run the workers.
 */
#ifndef PA_EAL_H
#define PA_EAL_H

#include "core/config.h"

/* Calls rte_exit() with the reason when EAL cannot start. */
void eal_start(const struct pa_config *config, const char *argv0);

/* rte_eal_cleanup(), then removes the runtime directory EAL made. */
void eal_stop(void);

#endif
