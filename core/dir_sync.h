/*
 * dir_sync.h: making directories durably, and making a directory's entries
 * durable.
 *
 * A file or directory created on Linux survives a power cut only once the
 * directory holding its name has been fsynced (fsync(2): "Calling fsync()
 * does not necessarily ensure that the entry in the directory containing the
 * file has also reached disk.  For that an explicit fsync() on a file
 * descriptor for the directory is also needed.").  What this module
 * promises: when pa_mkdir_durable() returns PA_OK, every directory it created
 * is on disk, each with its name in its parent; pa_fsync_dir() does the same
 * for whatever entries a caller (or a library such as RocksDB) created in a
 * directory.  Errors name the call that failed.
 *
 * Header-only, like read_file.h, so that core/ and spool/ use it without a
 * link-order dependency between their libraries.
 */
#ifndef PA_DIR_SYNC_H
#define PA_DIR_SYNC_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pa.h"

/* Mode of a missing parent pigeond creates: searchable, so a `user` reaches what is below. */
#define PA_DIR_PARENT_MODE 0755

/* fsync(2) of the directory `path`: the names created in it become durable. */
static inline int
pa_fsync_dir(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if (fsync(fd) == -1) {
		snprintf(err, errlen, "fsync(%s) failed: %s", path, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	close(fd);
	return PA_OK;
}

/* fsync of the directory holding the last component of path[0..len). */
static inline int
pa_fsync_parent(const char *path, size_t len, char *err, size_t errlen)
{
	char parent[PATH_MAX];

	while (len > 0 && path[len - 1] != '/')
		len--;
	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 0)
		return pa_fsync_dir(".", err, errlen);
	memcpy(parent, path, len);
	parent[len] = '\0';
	return pa_fsync_dir(parent, err, errlen);
}

/*
 * mkdir -p: creates every missing level of `path`, the last with `mode` and
 * the others with PA_DIR_PARENT_MODE (both less the umask).  After each
 * mkdir its parent is fsynced, and the last level is fsynced too, so a power
 * cut after the return cannot take back any of them.  *created (may be NULL)
 * tells whether the last level was made here.  An existing `path` is left
 * as it is.
 */
static inline int
pa_mkdir_durable(const char *path, mode_t mode, bool *created, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	bool made = false;

	if (created != NULL)
		*created = false;
	if (len == 0 || len >= sizeof(buf)) {
		snprintf(err, errlen, "mkdir(%s): empty path or longer than %d octets", path,
		         PATH_MAX - 1);
		return PA_ERROR;
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	/* Each level in turn, from the top: i is the end of one component. */
	for (size_t i = 1; i <= len; i++) {
		bool last = i == len;

		if (!last && (buf[i] != '/' || buf[i - 1] == '/'))
			continue;
		buf[i] = '\0';
		made = false;
		if (mkdir(buf, last ? mode : PA_DIR_PARENT_MODE) == 0) {
			made = true;
			if (pa_fsync_parent(buf, i, err, errlen) != PA_OK)
				return PA_ERROR;
		} else if (errno != EEXIST) {
			snprintf(err, errlen, "mkdir(%s) failed: %s", buf, strerror(errno));
			return PA_ERROR;
		}
		if (!last)
			buf[i] = '/';
	}
	if (made && pa_fsync_dir(buf, err, errlen) != PA_OK)
		return PA_ERROR;
	if (created != NULL)
		*created = made;
	return PA_OK;
}

#endif
