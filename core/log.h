/*
 * log.h: pigeond's log lines, to stderr in a syslog-friendly format.
 *
 * Every line is "pigeond[PID]: LEVEL: text" and goes out in one write(2), so
 * lines from different threads never interleave and a supervisor (systemd,
 * runit, a syslog pipe) can take them as they are.
 */
#ifndef PA_LOG_H
#define PA_LOG_H

enum pa_log_level {
	PA_LOG_ERR,
	PA_LOG_WARNING,
	PA_LOG_NOTICE,
	PA_LOG_INFO,
	PA_LOG_DEBUG,
};

void pa_log_init(const char *ident);
void pa_log_set_level(enum pa_log_level level);
void pa_log(enum pa_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pa_log_err(...) pa_log(PA_LOG_ERR, __VA_ARGS__)
#define pa_log_warning(...) pa_log(PA_LOG_WARNING, __VA_ARGS__)
#define pa_log_notice(...) pa_log(PA_LOG_NOTICE, __VA_ARGS__)
#define pa_log_info(...) pa_log(PA_LOG_INFO, __VA_ARGS__)
#define pa_log_debug(...) pa_log(PA_LOG_DEBUG, __VA_ARGS__)

#endif
