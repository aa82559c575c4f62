/*
 * log.c: formats a line into a stack buffer and writes it with one write(2).
 *
 * The ident and level are process-wide settings written once at start-up
 * (and on reload by the main lcore); reading a stale level for one line is
 * harmless, so they are plain atomics rather than locked state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define LOG_LINE_MAX 2048

static const char *const level_names[] = {
    [PA_LOG_ERR] = "error", [PA_LOG_WARNING] = "warning", [PA_LOG_NOTICE] = "notice",
    [PA_LOG_INFO] = "info", [PA_LOG_DEBUG] = "debug",
};

/* Process-wide logger settings: written at start-up and on reload only. */
static struct {
	char ident[32];
	int level;
} logger = {"pigeond", PA_LOG_INFO};

void
pa_log_init(const char *ident)
{
	snprintf(logger.ident, sizeof(logger.ident), "%s", ident);
}

void
pa_log_set_level(enum pa_log_level level)
{
	__atomic_store_n(&logger.level, (int)level, __ATOMIC_RELAXED);
}

void
pa_log(enum pa_log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	int head, body;
	size_t len;

	if ((int)level > __atomic_load_n(&logger.level, __ATOMIC_RELAXED))
		return;
	head = snprintf(line, sizeof(line), "%s[%d]: %s: ", logger.ident, (int)getpid(),
	                level_names[level]);
	va_start(ap, fmt);
	body = vsnprintf(line + head, sizeof(line) - head - 1, fmt, ap);
	va_end(ap);
	len = (size_t)head + (body < 0 ? 0 : (size_t)body);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* truncated: still one line */
	/* Control characters from the network must not forge extra log lines. */
	for (size_t i = (size_t)head; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) == -1)
		return; /* nowhere left to report it */
}
