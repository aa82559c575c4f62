/*
 * log_dpdk.c: DPDK's own log messages (EAL, TELEMETRY, the PMDs) become
 * pigeond's log lines, so that they too follow log.format and log.target
 * (a JSON log holds nothing but JSON objects) and a worker lcore's message
 * goes through its ring like any other.
 *
 * DPDK writes each message with vfprintf(3) and fflush(3) to the stream
 * rte_openlog_stream() names; this one is a fopencookie(3) stream whose
 * write function logs each line at the level of the message being written
 * (rte_log_cur_msg_loglevel(), per thread).
 */
#include <stdio.h>
#include <string.h>

#include <rte_log.h>

#include "core/log.h"
#include "core/pa.h"

static enum pa_log_level
level_of(unsigned rte_level)
{
	if (rte_level <= RTE_LOG_ERR)
		return PA_LOG_ERR; /* EMERG, ALERT, CRIT, ERR */
	switch (rte_level) {
	case RTE_LOG_WARNING:
		return PA_LOG_WARNING;
	case RTE_LOG_NOTICE:
		return PA_LOG_NOTICE;
	case RTE_LOG_INFO:
		return PA_LOG_INFO;
	default:
		return PA_LOG_DEBUG;
	}
}

/* One message, perhaps of several lines: one log line each, empty ones left out. */
static ssize_t
dpdk_write(void *cookie, const char *buf, size_t size)
{
	enum pa_log_level level = level_of((unsigned)rte_log_cur_msg_loglevel());
	const char *p = buf, *end = buf + size;

	(void)cookie;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);

		if (n > 0)
			pa_log(level, "%.*s", (int)n, p);
		p += n + 1;
	}
	return (ssize_t)size;
}

int
pa_log_capture_dpdk(void)
{
	static const cookie_io_functions_t io = {.write = dpdk_write};
	FILE *f = fopencookie(NULL, "w", io);

	if (f == NULL) {
		pa_log_warning("fopencookie(dpdk log) failed: DPDK writes its own messages");
		return PA_ERROR;
	}
	/* Whole messages: DPDK flushes after each, and a full buffer is written as it comes. */
	setvbuf(f, NULL, _IOFBF, 4096);
	return rte_openlog_stream(f) == 0 ? PA_OK : PA_ERROR;
}
