/*
 * runtime.h: the configuration in force, shared by the main lcore and the
 * workers, replaced as a whole on reload.
 *
 * A runtime is immutable once published.  Every holder (the main lcore, each
 * worker, each connection) takes a reference; a reload publishes a new one
 * and drops the main lcore's reference to the old, which is freed by
 * whichever holder lets go of it last.  Connections keep the settings they
 * started with; new connections get the new ones.
 */
#ifndef PA_RUNTIME_H
#define PA_RUNTIME_H

#include <stdint.h>

#include "core/config.h"
#include "smtp/smtp_session.h"

struct pa_runtime {
	struct pa_config config;
	struct smtp_config smtp; /* built from config; hostname points into it */
	uint64_t generation;
	uint32_t refs;
};

/* Takes ownership of config (moved in). NULL when out of memory. */
struct pa_runtime *runtime_new(const struct pa_config *config, uint64_t generation);
struct pa_runtime *runtime_ref(struct pa_runtime *rt);
void runtime_unref(struct pa_runtime *rt);

#endif
