/*
 * ctl_counters.c: the tables of ctl_counters.h (the DPDK stack's own table
 * is beside its counters, in dataplane/dp_counters.c).
 */
#include "ctl/ctl_counters.h"

#include "core/pa.h"
#include "dataplane/worker.h"

#define TLS(key, field, help)                                                                      \
	{                                                                                          \
		key, "pigeonair_tls_" key "_total", "counter", help,                               \
		    offsetof(struct pa_worker_counters, field)                                     \
	}

const struct ctl_counter ctl_tls_counters[] = {
    TLS("handshakes", tls_handshakes, "TLS handshakes completed, full or resumed."),
    TLS("resumed", tls_resumed, "TLS handshakes completed by resuming a session (ticket)."),
    TLS("handshake_failures", tls_handshake_failures,
        "TLS handshakes failed: protocol errors, garbage, client gone."),
    TLS("handshake_timeouts", tls_handshake_timeouts,
        "TLS handshakes that did not finish within tls.handshake_timeout."),
    TLS("handshakes_deferred", tls_handshakes_deferred,
        "TLS handshake steps put off to the next loop by the per-loop budget."),
};
const size_t ctl_tls_counters_n = pa_array_size(ctl_tls_counters);

const struct ctl_tls_version ctl_tls_versions[] = {
    {"TLSv1.2", offsetof(struct pa_worker_counters, tls_v1_2)},
    {"TLSv1.3", offsetof(struct pa_worker_counters, tls_v1_3)},
};
const size_t ctl_tls_versions_n = pa_array_size(ctl_tls_versions);
