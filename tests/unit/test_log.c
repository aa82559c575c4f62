/*
 * test_log.c: the log thread and the per-thread rings (core/log.h).
 *
 * stderr is pointed at a file or a pipe for each test; every line any thread
 * logged must come out whole, once, in its thread's order, unless it was
 * counted as dropped: a thread whose ring is full drops rather than waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

#define THREADS 4
#define LINES 3000

static int saved_stderr = -1;

static void
redirect_stderr(int fd)
{
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr != -1);
	assert_true(dup2(fd, STDERR_FILENO) != -1);
}

static void
restore_stderr(void)
{
	assert_true(dup2(saved_stderr, STDERR_FILENO) != -1);
	close(saved_stderr);
}

static void *
producer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	char qid[32], sender[64];

	assert_int_equal(pa_log_attach_thread(), PA_OK);
	for (unsigned i = 0; i < LINES; i++) {
		if (i % 2 == 0) {
			pa_log_info("t%u line %u with\na newline", id, i);
		} else {
			snprintf(qid, sizeof(qid), "Q%u-%u", id, i);
			snprintf(sender, sizeof(sender), "s%u@example.org", i);
			pa_log_accepted(&(struct pa_log_accepted){.queue_id = qid,
			                                          .client = "198.18.0.1",
			                                          .sender = sender,
			                                          .nrcpt = id,
			                                          .size = i});
		}
		if (i % 256 == 0) /* let the log thread keep up: this test is about order */
			nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
	pa_log_detach_thread();
	return NULL;
}

static char *
slurp(FILE *f)
{
	size_t cap = 1 << 20, len = 0, n;
	char *buf = malloc(cap);

	assert_non_null(buf);
	rewind(f);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	buf[len] = '\0';
	return buf;
}

static void
test_every_line_whole_and_in_order(void **state)
{
	FILE *f = tmpfile();
	pthread_t t[THREADS];
	unsigned next[THREADS] = {0};
	uint64_t dropped_before = pa_log_dropped(), dropped;
	char *text, *line, *save = NULL;
	unsigned lines = 0;

	(void)state;
	assert_non_null(f);
	redirect_stderr(fileno(f));
	pa_log_init("logtest");
	pa_log_set_level(PA_LOG_INFO);
	assert_int_equal(pa_log_start(), PA_OK);
	for (unsigned i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, producer, (void *)(uintptr_t)i), 0);
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pa_log_stop();
	restore_stderr();
	/* On a loaded machine the log thread may fall behind: what it dropped, it counted. */
	dropped = pa_log_dropped() - dropped_before;

	text = slurp(f);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		unsigned id, i, nrcpt, size;
		char want[256];

		if (sscanf(line, "logtest[%*d]: info: t%u line %u", &id, &i) == 2) {
			snprintf(want, sizeof(want), "t%u line %u with?a newline", id, i);
		} else {
			assert_int_equal(
			    sscanf(line,
			           "logtest[%*d]: info: Q%u-%u: accepted client=198.18.0.1 "
			           "from=<s%*u@example.org> nrcpt=%u size=%u",
			           &id, &i, &nrcpt, &size),
			    4);
			assert_int_equal(nrcpt, id);
			assert_int_equal(size, i);
			snprintf(
			    want, sizeof(want),
			    "Q%u-%u: accepted client=198.18.0.1 from=<s%u@example.org> nrcpt=%u "
			    "size=%u",
			    id, i, i, id, i);
		}
		assert_non_null(strstr(line, want));
		assert_true(id < THREADS);
		assert_true(i >= next[id]); /* each thread's lines in its order, each once */
		next[id] = i + 1;
		lines++;
	}
	assert_int_equal(lines + dropped, THREADS * LINES);
	free(text);
	fclose(f);
}

/*
 * stderr is a pipe nobody reads: the log thread blocks in writev, the ring
 * fills, and the producer goes on, dropping and counting.  Then the pipe is
 * drained: every line that was not counted as dropped arrives.
 */
struct reader {
	int fd;
	size_t lines;
};

static void *
read_all(void *arg)
{
	struct reader *r = arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			r->lines += buf[i] == '\n';
	return NULL;
}

static void
test_full_ring_drops_never_waits(void **state)
{
	const unsigned total = 20000;
	struct reader r = {0};
	uint64_t dropped_before = pa_log_dropped(), dropped;
	struct timespec t0, t1;
	pthread_t reader;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	redirect_stderr(p[1]);
	pa_log_init("logtest");
	assert_int_equal(pa_log_start(), PA_OK);
	assert_int_equal(pa_log_attach_thread(), PA_OK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < total; i++)
		pa_log_info("line %u of a run that fills the pipe and the ring: %0200u", i, i);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dropped = pa_log_dropped() - dropped_before;
	/* 20,000 lines of 260 octets cannot fit a 64 KiB pipe and an 8,192-slot ring. */
	assert_true(dropped > 0);
	/* Never waited on the blocked writer: well under a second for 20,000 lines. */
	assert_true((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) <
	            1000000000L);

	r.fd = p[0];
	assert_int_equal(pthread_create(&reader, NULL, read_all, &r), 0);
	pa_log_detach_thread();
	pa_log_stop();
	restore_stderr();
	close(p[1]);
	pthread_join(reader, NULL);
	close(p[0]);
	assert_int_equal(r.lines + dropped, total);
}

/* Not attached, or no log thread: the line is written at once, as before. */
static void
test_unattached_writes_at_once(void **state)
{
	FILE *f = tmpfile();
	char *text;

	(void)state;
	redirect_stderr(fileno(f));
	pa_log_init("logtest");
	pa_log_info("direct %d", 1);
	pa_log_accepted(&(struct pa_log_accepted){
	    .queue_id = "QID", .client = "::1", .sender = "", .nrcpt = 2, .size = 10});
	restore_stderr();
	text = slurp(f);
	assert_non_null(strstr(text, ": info: direct 1\n"));
	assert_non_null(strstr(text, ": info: QID: accepted client=::1 from=<> nrcpt=2 size=10\n"));
	free(text);
	fclose(f);
}

/* An attached thread's line too long for a slot comes out whole, not cut. */
static void
test_long_line_whole(void **state)
{
	FILE *f = tmpfile();
	char want[1201], *text;

	(void)state;
	memset(want, 'x', sizeof(want) - 1);
	want[sizeof(want) - 1] = '\0';
	redirect_stderr(fileno(f));
	pa_log_init("logtest");
	assert_int_equal(pa_log_start(), PA_OK);
	assert_int_equal(pa_log_attach_thread(), PA_OK);
	pa_log_info("short before");
	pa_log_info("long %s end", want);
	pa_log_info("short after");
	pa_log_detach_thread();
	pa_log_stop();
	restore_stderr();
	text = slurp(f);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "x end\n"));
	assert_non_null(strstr(text, ": info: short before\n"));
	assert_non_null(strstr(text, ": info: short after\n"));
	free(text);
	fclose(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_line_whole_and_in_order),
	    cmocka_unit_test(test_full_ring_drops_never_waits),
	    cmocka_unit_test(test_unattached_writes_at_once),
	    cmocka_unit_test(test_long_line_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
