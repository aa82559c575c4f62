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

/*
 * The CPUs the spool's committer threads go on (spool.committer_cpus), after
 * eal_start(): PA_OK with set filled to pin them, PA_AGAIN to leave them with
 * the main lcore's affinity.  Automatic (the key empty) with backend=dpdk:
 * the CPUs pigeond was allowed that no worker lcore may run on, so that a
 * committer never takes time from a busy-polling worker; PA_AGAIN when the
 * workers may run everywhere, and always with the kernel backend.
 */
int eal_committer_cpus(const struct pa_config *config, cpu_set_t *set);

/*
 * Called on the main lcore when the committers keep its affinity (PA_AGAIN
 * above): whether those CPUs outnumber the worker lcores, so that a
 * committer's looks at its ring (spool.linger_us) need not take a CPU from a
 * busy-polling worker.  False on the bench's one-core layout.
 */
bool eal_spare_cpu_for_committers(void);

/* rte_eal_cleanup(), then removes the runtime directory EAL made. */
void eal_stop(void);

#endif
