/*
 * log.h: pigeond's log lines, to stderr, syslog(3) or the journal, as text
 * or as JSON (log.format, log.target; docs/operations.md "Logs").
 *
 * Every text line is "pigeond[PID]: LEVEL: text", every JSON line one object
 * (core/log_record.h), and each goes out whole in one write(2), so lines
 * from different threads never interleave and a supervisor (systemd, runit,
 * a syslog pipe, a log shipper) can take them as they are.
 *
 * Poll-mode threads never write a line themselves (DEVELOPERS.md: no syscall
 * on a worker lcore).  A thread that calls pa_log_attach_thread() gets a
 * ring of its own; its lines are queued there and the log thread
 * (pa_log_start()) writes them, in the order each thread queued them.  The
 * per-message line, "accepted", is queued as a record of fields and
 * formatted by the log thread, so the worker does no printf for it either.
 * A full ring drops the line and counts it (pa_log_dropped()): a worker never
 * waits for the log.  Threads that are not attached (main, committers,
 * hand-off, directory) write their lines at once, as before.
 */
#ifndef PA_LOG_H
#define PA_LOG_H

#include <stddef.h>
#include <stdint.h>

enum pa_log_level {
	PA_LOG_ERR,
	PA_LOG_WARNING,
	PA_LOG_NOTICE,
	PA_LOG_INFO,
	PA_LOG_DEBUG,
};

enum pa_log_format {
	PA_LOG_FORMAT_TEXT,
	PA_LOG_FORMAT_JSON,
};

enum pa_log_target {
	PA_LOG_TARGET_STDERR,
	PA_LOG_TARGET_JOURNAL,
	PA_LOG_TARGET_SYSLOG,
};

void pa_log_init(const char *ident);
void pa_log_set_level(enum pa_log_level level);

/*
 * Where lines go and in which form (text and stderr until called).  The
 * format may change at any time (a reload); the target only before
 * pa_log_start(): PA_ERROR then.
 */
int pa_log_set_output(enum pa_log_format format, enum pa_log_target target);

/*
 * DPDK's own messages (EAL, PMDs) from now on go out as pigeond's lines, at
 * the message's level (core/log_dpdk.c).  PA_OK or PA_ERROR.
 */
int pa_log_capture_dpdk(void);
void pa_log(enum pa_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pa_log_err(...) pa_log(PA_LOG_ERR, __VA_ARGS__)
#define pa_log_warning(...) pa_log(PA_LOG_WARNING, __VA_ARGS__)
#define pa_log_notice(...) pa_log(PA_LOG_NOTICE, __VA_ARGS__)
#define pa_log_info(...) pa_log(PA_LOG_INFO, __VA_ARGS__)
#define pa_log_debug(...) pa_log(PA_LOG_DEBUG, __VA_ARGS__)

/*
 * Starts the log thread.  Until it runs (or if it could not start), attached
 * threads' lines are written at once.  PA_OK or PA_ERROR.
 */
int pa_log_start(void);

/* Writes every queued line, then stops the log thread.  Attached threads must have detached. */
void pa_log_stop(void);

/*
 * From now on this thread's lines go through a ring of its own (at most
 * PA_LOG_MAX_THREADS threads at once).  PA_OK, or PA_ERROR when no ring is
 * left (the thread then keeps writing its lines itself).
 */
int pa_log_attach_thread(void);

/* Hands the thread's ring back once the log thread has written what it holds. */
void pa_log_detach_thread(void);

/* Lines dropped because an attached thread's ring was full, since start. */
uint64_t pa_log_dropped(void);

/* The fields of the one line every accepted message writes (info level). */
struct pa_log_accepted {
	const char *queue_id;
	const char *client;
	const char *sender;
	size_t nrcpt;
	size_t size;
};

/* "QUEUEID: accepted client=... from=<...> nrcpt=N size=N", without printf on an attached thread.
 */
void pa_log_accepted(const struct pa_log_accepted *a);

#define PA_LOG_MAX_THREADS 128

#endif
