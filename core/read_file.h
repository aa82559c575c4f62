/*
 * read_file.h: reads a whole configuration-sized file (route map, directory
 * file) into memory.  Header-only so that every library can use it without a
 * link-order dependency on core/.  Promises: only a regular file of at most
 * `max` octets is read; the buffer is NUL-terminated; errors name the call
 * that failed and why.
 */
#ifndef PA_READ_FILE_H
#define PA_READ_FILE_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pa.h"

/* What was there at fstat time is read; a file growing meanwhile is read next time. */
static inline int
pa_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	size_t got = 0;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "fstat(%s) failed: %s", path, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size > max) {
		snprintf(err, errlen, "%s: not a regular file of at most %zu octets", path, max);
		close(fd);
		return PA_ERROR;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: out of memory for %lld octets", path,
			 (long long)st.st_size);
		close(fd);
		return PA_ERROR;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "read(%s) failed: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return PA_ERROR;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return PA_OK;
}

#endif
