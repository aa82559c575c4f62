/*
 * runtime.c: reference counting of published configurations (runtime.h).
 */
#include <stdlib.h>

#include "core/runtime.h"

struct pa_runtime *
runtime_new(const struct pa_config *config, uint64_t generation)
{
	struct pa_runtime *rt = calloc(1, sizeof(*rt));

	if (rt == NULL)
		return NULL;
	rt->config = *config;
	rt->generation = generation;
	rt->refs = 1;
	rt->smtp.hostname = rt->config.hostname;
	rt->smtp.max_message_size = rt->config.max_message_size;
	rt->smtp.max_recipients = rt->config.max_recipients;
	rt->smtp.max_errors = rt->config.max_errors;
	rt->smtp.bare_lf = rt->config.bare_lf;
	rt->smtp.command_timeout_ms = rt->config.command_timeout_s * 1000u;
	rt->smtp.data_timeout_ms = rt->config.data_timeout_s * 1000u;
	rt->smtp.max_commands = rt->config.limit_commands;
	/* config_load() checked that tls.cert and tls.key pair up; main.c loaded them. */
	rt->smtp.tls_available = rt->config.tls_cert[0] != '\0';
	rt->smtp.tls_required = rt->config.tls_required;
	return rt;
}

struct pa_runtime *
runtime_ref(struct pa_runtime *rt)
{
	__atomic_add_fetch(&rt->refs, 1, __ATOMIC_RELAXED);
	return rt;
}

void
runtime_unref(struct pa_runtime *rt)
{
	if (rt == NULL)
		return;
	if (__atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		config_free(&rt->config);
		free(rt);
	}
}
