/*
 * powerfs.c: a FUSE file system that can lose power.
 *
 * The power-loss test of PigeonAir (tests/integration/test_power_loss.py)
 * runs pigeond's spool on it.  It holds everything an application has not
 * yet made durable in its own memory, and a "power cut" (SIGUSR1) throws that
 * memory away, the way LazyFS (the FUSE file system Jepsen uses) exposes
 * missing fsyncs.  kill -9 cannot: the kernel's page cache survives it.
 *
 * What it promises (tests/powerfs/README.md has the whole model):
 * - Reads see every write at once (the volatile state is complete).
 * - fsync/fdatasync of a file makes its data and size durable, not its name.
 * - A name (create, mkdir, mknod, symlink, link, unlink, rmdir, rename) is
 *   durable only once its directory is fsynced: fsyncdir makes the durable
 *   entries of that one directory equal to its present entries.  That is
 *   what POSIX promises; ext4 is stricter, so real disks hide such bugs.
 * - After a cut every operation fails with EIO until unmount, and a new
 *   mount of the same backing directory shows exactly the durable image.
 *
 * The backing directory holds only the durable image: data/<ino> (the
 * durable bytes of each file) and `manifest` (the durable inodes and the
 * durable entries of every directory, replaced through rename).  One global
 * lock serialises every operation: a test tool, correct before fast.  The
 * backing files themselves are never fsynced: the machine does not really
 * lose power, only this file system pretends to.
 */
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define ROOT_INO 1
#define MANIFEST "manifest"
#define MANIFEST_TMP "manifest.tmp"
#define MANIFEST_MAGIC "powerfs 1"
#define NAME_MAX_LEN 255

struct pnode;

struct dent {
	char *name;
	struct pnode *node;
};

struct dents {
	struct dent *v;
	size_t n, cap;
};

struct pnode {
	uint64_t ino;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	nlink_t nlink;  /* present (volatile) links; directories: 2 + subdirectories */
	unsigned opens; /* open handles: an unlinked file lives while one is open */
	struct timespec atime, mtime, ctime;

	/* regular file: the present bytes, and what changed since the last fsync */
	char *data;
	size_t size, cap;
	bool dirty;
	size_t dirty_lo, dirty_hi;
	bool has_backing; /* data/<ino> exists */

	char *target;       /* symbolic link */
	struct dents ents;  /* directory: present entries */
	struct dents dents; /* directory: durable entries, as of its last fsync */

	/* in the manifest: the inode's attributes as of its last fsync */
	bool durable;
	mode_t d_mode;
	uid_t d_uid;
	gid_t d_gid;
	char *d_target;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_cut;
static int g_backing_fd = -1; /* the backing directory */
static int g_data_fd = -1;    /* its data/ */
static struct pnode **g_nodes;
static size_t g_nodes_cap;
static uint64_t g_next_ino = ROOT_INO + 1;

/* ------------------------------------------------------------------------ */
/* Power cut */

/* Async-signal-safe: one flag, one write(2). */
static void
on_cut(int sig)
{
	static const char msg[] = "powerfs: power cut\n";
	ssize_t rc;

	(void)sig;
	atomic_store(&g_cut, 1);
	rc = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)rc;
}

/*
 * Every operation takes the lock and then checks the flag: an operation that
 * began before the cut completes (the cut fell just after it), none begins
 * after it, so the durable image is a state between two operations.
 */
#define ENTER()                                                                                    \
	do {                                                                                       \
		pthread_mutex_lock(&g_lock);                                                       \
		if (atomic_load(&g_cut)) {                                                         \
			pthread_mutex_unlock(&g_lock);                                             \
			return -EIO;                                                               \
		}                                                                                  \
	} while (0)

#define LEAVE(rc)                                                                                  \
	do {                                                                                       \
		pthread_mutex_unlock(&g_lock);                                                     \
		return (rc);                                                                       \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Inodes and directories in memory */

static void
now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static int
table_put(struct pnode *n)
{
	if (n->ino >= g_nodes_cap) {
		size_t cap = g_nodes_cap ? g_nodes_cap : 64;
		struct pnode **v;

		while (cap <= n->ino)
			cap *= 2;
		v = realloc(g_nodes, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		memset(v + g_nodes_cap, 0, (cap - g_nodes_cap) * sizeof(*v));
		g_nodes = v;
		g_nodes_cap = cap;
	}
	g_nodes[n->ino] = n;
	return 0;
}

static struct pnode *
node_new(uint64_t ino, mode_t mode, uid_t uid, gid_t gid)
{
	struct pnode *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->ino = ino;
	n->mode = mode;
	n->uid = uid;
	n->gid = gid;
	n->nlink = S_ISDIR(mode) ? 2 : 0;
	now(&n->mtime);
	n->atime = n->ctime = n->mtime;
	if (table_put(n) != 0) {
		free(n);
		return NULL;
	}
	return n;
}

/* A new inode for the application: its number is never reused while mounted. */
static struct pnode *
node_create(mode_t mode)
{
	struct fuse_context *ctx = fuse_get_context();
	struct pnode *n = node_new(g_next_ino, mode, ctx->uid, ctx->gid);

	if (n != NULL)
		g_next_ino++;
	return n;
}

/* The present bytes go once nothing can reach them; the durable ones stay. */
static void
node_maybe_drop_data(struct pnode *n)
{
	if (n->nlink == 0 && n->opens == 0) {
		free(n->data);
		n->data = NULL;
		n->size = n->cap = 0;
		n->dirty = false;
	}
}

static void
dents_free(struct dents *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

static struct dent *
dents_find(struct dents *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->v[i].name, name) == 0)
			return &d->v[i];
	return NULL;
}

static int
dents_add(struct dents *d, const char *name, struct pnode *node)
{
	char *copy;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct dent *v = realloc(d->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	copy = strdup(name);
	if (copy == NULL)
		return -ENOMEM;
	d->v[d->n].name = copy;
	d->v[d->n].node = node;
	d->n++;
	return 0;
}

static void
dents_remove(struct dents *d, struct dent *e)
{
	free(e->name);
	*e = d->v[d->n - 1];
	d->n--;
}

static int
dents_copy(struct dents *to, const struct dents *from)
{
	struct dents fresh = {0};

	for (size_t i = 0; i < from->n; i++) {
		int rc = dents_add(&fresh, from->v[i].name, from->v[i].node);

		if (rc != 0) {
			dents_free(&fresh);
			return rc;
		}
	}
	dents_free(to);
	*to = fresh;
	return 0;
}

/* The node at an absolute path, or NULL with errno-style *err. */
static struct pnode *
resolve(const char *path, int *err)
{
	struct pnode *n = g_nodes[ROOT_INO];
	const char *p = path;

	if (path == NULL || path[0] != '/') {
		*err = -EINVAL;
		return NULL;
	}
	while (*p != '\0') {
		char name[NAME_MAX_LEN + 1];
		size_t len;
		struct dent *e;

		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, "/");
		if (len > NAME_MAX_LEN) {
			*err = -ENAMETOOLONG;
			return NULL;
		}
		if (!S_ISDIR(n->mode)) {
			*err = -ENOTDIR;
			return NULL;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		e = dents_find(&n->ents, name);
		if (e == NULL) {
			*err = -ENOENT;
			return NULL;
		}
		n = e->node;
		p += len;
	}
	return n;
}

/* The directory holding the last component of `path`, and that component. */
static struct pnode *
resolve_parent(const char *path, char name[NAME_MAX_LEN + 1], int *err)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len;
	struct pnode *d;

	if (slash == NULL || slash[1] == '\0') {
		*err = -EINVAL;
		return NULL;
	}
	if (strlen(slash + 1) > NAME_MAX_LEN) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	len = (size_t)(slash - path);
	if (len >= sizeof(dir)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	memcpy(dir, path, len);
	dir[len] = '\0';
	strcpy(name, slash + 1);
	d = resolve(len ? dir : "/", err);
	if (d != NULL && !S_ISDIR(d->mode)) {
		*err = -ENOTDIR;
		return NULL;
	}
	return d;
}

/* The entry `path` names, and the directory holding it. */
static int
lookup_entry(const char *path, struct pnode **dir, struct dent **ent)
{
	char name[NAME_MAX_LEN + 1];
	int err = 0;

	*dir = resolve_parent(path, name, &err);
	if (*dir == NULL)
		return err;
	*ent = dents_find(&(*dir)->ents, name);
	return *ent == NULL ? -ENOENT : 0;
}

/* The node of an operation: its open handle when it has one (the path may be gone). */
static struct pnode *
node_of(const char *path, struct fuse_file_info *fi, int *err)
{
	if (fi != NULL && fi->fh != 0)
		return (struct pnode *)(uintptr_t)fi->fh;
	return resolve(path, err);
}

/* ------------------------------------------------------------------------ */
/* The durable image */

static void
hex_put(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fprintf(f, "%02x", (unsigned char)*s);
}

/* Replaces the manifest: every durable inode, every durable entry. */
static int
manifest_write(void)
{
	int fd = openat(g_backing_fd, MANIFEST_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f;

	if (fd == -1) {
		fprintf(stderr, "powerfs: openat(%s) failed: %s\n", MANIFEST_TMP, strerror(errno));
		return -EIO;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		fprintf(stderr, "powerfs: fdopen(%s) failed: %s\n", MANIFEST_TMP, strerror(errno));
		close(fd);
		return -EIO;
	}
	fprintf(f, "%s\nnext %" PRIu64 "\n", MANIFEST_MAGIC, g_next_ino);
	for (size_t i = 0; i < g_nodes_cap; i++) {
		struct pnode *n = g_nodes[i];

		if (n == NULL || !n->durable)
			continue;
		fprintf(f, "i %" PRIu64 " %o %u %u ", n->ino, (unsigned)n->d_mode,
		        (unsigned)n->d_uid, (unsigned)n->d_gid);
		if (S_ISLNK(n->d_mode) && n->d_target != NULL)
			hex_put(f, n->d_target);
		else
			fputc('-', f);
		fputc('\n', f);
	}
	for (size_t i = 0; i < g_nodes_cap; i++) {
		struct pnode *n = g_nodes[i];

		if (n == NULL || !n->durable || !S_ISDIR(n->d_mode))
			continue;
		for (size_t j = 0; j < n->dents.n; j++) {
			fprintf(f, "e %" PRIu64 " %" PRIu64 " ", n->ino, n->dents.v[j].node->ino);
			hex_put(f, n->dents.v[j].name);
			fputc('\n', f);
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "powerfs: fprintf(%s) failed\n", MANIFEST_TMP);
		fclose(f);
		return -EIO;
	}
	if (fclose(f) == EOF) {
		fprintf(stderr, "powerfs: fclose(%s) failed: %s\n", MANIFEST_TMP, strerror(errno));
		return -EIO;
	}
	if (renameat(g_backing_fd, MANIFEST_TMP, g_backing_fd, MANIFEST) == -1) {
		fprintf(stderr, "powerfs: renameat(%s) failed: %s\n", MANIFEST, strerror(errno));
		return -EIO;
	}
	return 0;
}

/* An inode's present attributes become durable (its own fsync, or its first link's). */
static int
node_make_durable_attrs(struct pnode *n)
{
	char *t = NULL;

	if (n->durable && n->d_mode == n->mode && n->d_uid == n->uid && n->d_gid == n->gid)
		return 0;
	if (S_ISLNK(n->mode)) {
		t = strdup(n->target);
		if (t == NULL)
			return -ENOMEM;
	}
	free(n->d_target);
	n->d_target = t;
	n->durable = true;
	n->d_mode = n->mode;
	n->d_uid = n->uid;
	n->d_gid = n->gid;
	return 1; /* the manifest must be written */
}

static void
ino_name(char out[24], uint64_t ino)
{
	snprintf(out, 24, "%" PRIu64, ino);
}

/* fsync/fdatasync of a file: its bytes and size to data/<ino>. */
static int
persist_data(struct pnode *n)
{
	char name[24];
	int fd;
	size_t off, end;

	if (!n->dirty && n->has_backing)
		return 0;
	ino_name(name, n->ino);
	fd = openat(g_data_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		fprintf(stderr, "powerfs: openat(data/%s) failed: %s\n", name, strerror(errno));
		return -EIO;
	}
	if (ftruncate(fd, (off_t)n->size) == -1) {
		fprintf(stderr, "powerfs: ftruncate(data/%s) failed: %s\n", name, strerror(errno));
		close(fd);
		return -EIO;
	}
	/* Outside the dirty range the backing file already holds these bytes. */
	off = n->has_backing ? n->dirty_lo : 0;
	end = n->dirty_hi < n->size ? n->dirty_hi : n->size;
	if (!n->has_backing)
		end = n->size;
	while (off < end) {
		ssize_t w = pwrite(fd, n->data + off, end - off, (off_t)off);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "powerfs: pwrite(data/%s) failed: %s\n", name,
			        strerror(errno));
			close(fd);
			return -EIO;
		}
		off += (size_t)w;
	}
	if (close(fd) == -1) {
		fprintf(stderr, "powerfs: close(data/%s) failed: %s\n", name, strerror(errno));
		return -EIO;
	}
	n->has_backing = true;
	n->dirty = false;
	return 0;
}

static void
mark_dirty(struct pnode *n, size_t lo, size_t hi)
{
	if (lo >= hi)
		return;
	if (!n->dirty) {
		n->dirty = true;
		n->dirty_lo = lo;
		n->dirty_hi = hi;
		return;
	}
	if (lo < n->dirty_lo)
		n->dirty_lo = lo;
	if (hi > n->dirty_hi)
		n->dirty_hi = hi;
}

/* Present size `size`; new bytes are zeros. */
static int
resize(struct pnode *n, size_t size)
{
	if (size > n->cap) {
		size_t cap = n->cap ? n->cap : 4096;
		char *d;

		while (cap < size)
			cap *= 2;
		d = realloc(n->data, cap);
		if (d == NULL)
			return -ENOMEM;
		n->data = d;
		n->cap = cap;
	}
	if (size > n->size)
		memset(n->data + n->size, 0, size - n->size);
	mark_dirty(n, size < n->size ? size : n->size, size > n->size ? size : n->size);
	if (size != n->size)
		n->dirty = true;
	n->size = size;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Loading the durable image at mount */

static int
hex_get(const char *hex, char *out, size_t outlen)
{
	size_t len = strlen(hex);

	if (len % 2 != 0 || len / 2 >= outlen)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1 || v == 0)
			return -1;
		out[i] = (char)v;
	}
	out[len / 2] = '\0';
	return 0;
}

static int
load_data(struct pnode *n)
{
	char name[24];
	int fd;
	struct stat st;
	size_t off = 0;

	ino_name(name, n->ino);
	fd = openat(g_data_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0; /* linked durably, never fsynced: empty */
		fprintf(stderr, "powerfs: openat(data/%s) failed: %s\n", name, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		fprintf(stderr, "powerfs: fstat(data/%s) failed: %s\n", name, strerror(errno));
		close(fd);
		return -1;
	}
	if (resize(n, (size_t)st.st_size) != 0) {
		fprintf(stderr, "powerfs: out of memory loading data/%s\n", name);
		close(fd);
		return -1;
	}
	while (off < n->size) {
		ssize_t r = pread(fd, n->data + off, n->size - off, (off_t)off);

		if (r == -1 || r == 0) {
			fprintf(stderr, "powerfs: pread(data/%s) failed: %s\n", name,
			        r == 0 ? "short file" : strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)r;
	}
	close(fd);
	n->has_backing = true;
	n->dirty = false;
	return 0;
}

static int
parse_manifest(FILE *f)
{
	char line[2 * NAME_MAX_LEN + 128 + 2 * PATH_MAX];
	char hex[2 * PATH_MAX + 2];
	unsigned lineno = 0;

	if (fgets(line, sizeof(line), f) == NULL || strcmp(line, MANIFEST_MAGIC "\n") != 0) {
		fprintf(stderr, "powerfs: manifest: not a powerfs manifest\n");
		return -1;
	}
	lineno++;
	while (fgets(line, sizeof(line), f) != NULL) {
		uint64_t ino, child;
		unsigned mode, uid, gid;

		lineno++;
		if (sscanf(line, "next %" SCNu64, &ino) == 1) {
			if (ino > g_next_ino)
				g_next_ino = ino;
		} else if (sscanf(line, "i %" SCNu64 " %o %u %u %8190s", &ino, &mode, &uid, &gid,
		                  hex) == 5) {
			struct pnode *n;

			if (ino == 0 || ino > (1ULL << 40) ||
			    (ino < g_nodes_cap && g_nodes[ino] != NULL) ||
			    (ino == ROOT_INO && !S_ISDIR(mode)))
				goto bad;
			n = node_new(ino, mode, uid, gid);
			if (n == NULL)
				goto bad;
			if (S_ISLNK(mode)) {
				char target[PATH_MAX];

				if (hex_get(hex, target, sizeof(target)) != 0)
					goto bad;
				n->target = strdup(target);
				n->d_target = strdup(target);
				if (n->target == NULL || n->d_target == NULL)
					goto bad;
			}
			n->durable = true;
			n->d_mode = n->mode;
			n->d_uid = n->uid;
			n->d_gid = n->gid;
			if (ino >= g_next_ino)
				g_next_ino = ino + 1;
		} else if (sscanf(line, "e %" SCNu64 " %" SCNu64 " %600s", &ino, &child, hex) ==
		           3) {
			char name[NAME_MAX_LEN + 1];

			if (ino >= g_nodes_cap || g_nodes[ino] == NULL ||
			    !S_ISDIR(g_nodes[ino]->mode) || child >= g_nodes_cap ||
			    g_nodes[child] == NULL || hex_get(hex, name, sizeof(name)) != 0 ||
			    strchr(name, '/') != NULL ||
			    dents_find(&g_nodes[ino]->dents, name) != NULL ||
			    dents_add(&g_nodes[ino]->dents, name, g_nodes[child]) != 0)
				goto bad;
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	fprintf(stderr, "powerfs: manifest line %u does not parse: %s", lineno, line);
	return -1;
}

/*
 * What the application sees after mount: the durable entries, from the root.
 * A directory reached a second time (possible after a rename whose source
 * directory was never fsynced) keeps only its first entry; unreachable inodes
 * and their data files are dropped.
 */
static int
load_image(void)
{
	int fd = openat(g_backing_fd, MANIFEST, O_RDONLY | O_CLOEXEC);
	struct pnode **queue;
	size_t head = 0, tail = 0;
	bool *reached;
	DIR *dir;
	struct dirent *de;
	int dfd;

	if (fd == -1 && errno != ENOENT) {
		fprintf(stderr, "powerfs: openat(%s) failed: %s\n", MANIFEST, strerror(errno));
		return -1;
	}
	if (fd == -1) {
		struct pnode *root = node_new(ROOT_INO, S_IFDIR | 0755, getuid(), getgid());

		if (root == NULL)
			return -1;
		root->durable = true;
		root->d_mode = root->mode;
		root->d_uid = root->uid;
		root->d_gid = root->gid;
	} else {
		FILE *f = fdopen(fd, "r");
		int rc;

		if (f == NULL) {
			fprintf(stderr, "powerfs: fdopen(%s) failed: %s\n", MANIFEST,
			        strerror(errno));
			close(fd);
			return -1;
		}
		rc = parse_manifest(f);
		fclose(f);
		if (rc != 0)
			return -1;
		if (ROOT_INO >= g_nodes_cap || g_nodes[ROOT_INO] == NULL) {
			fprintf(stderr, "powerfs: manifest: no root directory\n");
			return -1;
		}
	}
	queue = calloc(g_nodes_cap, sizeof(*queue));
	reached = calloc(g_nodes_cap, sizeof(*reached));
	if (queue == NULL || reached == NULL) {
		fprintf(stderr, "powerfs: out of memory\n");
		return -1;
	}
	queue[tail++] = g_nodes[ROOT_INO];
	reached[ROOT_INO] = true;
	while (head < tail) {
		struct pnode *d = queue[head++];

		for (size_t i = 0; i < d->dents.n; i++) {
			struct pnode *c = d->dents.v[i].node;

			if (S_ISDIR(c->mode) && reached[c->ino])
				continue;
			if (dents_add(&d->ents, d->dents.v[i].name, c) != 0) {
				fprintf(stderr, "powerfs: out of memory\n");
				return -1;
			}
			if (S_ISDIR(c->mode)) {
				d->nlink++;
				queue[tail++] = c;
			} else {
				c->nlink++;
			}
			reached[c->ino] = true;
		}
		if (dents_copy(&d->dents, &d->ents) != 0) {
			fprintf(stderr, "powerfs: out of memory\n");
			return -1;
		}
	}
	for (size_t i = 0; i < g_nodes_cap; i++) {
		struct pnode *n = g_nodes[i];

		if (n == NULL)
			continue;
		if (!reached[i]) {
			dents_free(&n->dents);
			free(n->target);
			free(n->d_target);
			free(n);
			g_nodes[i] = NULL;
		} else if (S_ISREG(n->mode) && load_data(n) != 0) {
			return -1;
		}
	}
	/* Data of inodes the durable namespace does not reach: never visible again. */
	dfd = dup(g_data_fd);
	if (dfd == -1 || (dir = fdopendir(dfd)) == NULL) {
		fprintf(stderr, "powerfs: fdopendir(data) failed: %s\n", strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		char *end;
		unsigned long long ino = strtoull(de->d_name, &end, 10);

		if (de->d_name[0] == '.' || *end != '\0')
			continue;
		if (ino < g_nodes_cap && reached[ino] && S_ISREG(g_nodes[ino]->mode))
			continue;
		if (unlinkat(g_data_fd, de->d_name, 0) == -1) {
			fprintf(stderr, "powerfs: unlinkat(data/%s) failed: %s\n", de->d_name,
			        strerror(errno));
			closedir(dir);
			return -1;
		}
	}
	closedir(dir);
	free(queue);
	free(reached);
	return manifest_write() == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* FUSE operations */

static void
fill_stat(const struct pnode *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_size = S_ISREG(n->mode)   ? (off_t)n->size
	              : S_ISLNK(n->mode) ? (off_t)strlen(n->target)
	                                 : 4096;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
}

static void *
pf_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Every lookup, attribute and byte reaches this process: no kernel caching. */
	cfg->use_ino = 1;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 1;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->direct_io = 1;
	cfg->kernel_cache = 0;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	fprintf(stderr, "powerfs: mounted\n");
	return NULL;
}

static int
pf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = node_of(path, fi, &err);
	if (n == NULL)
		LEAVE(err);
	fill_stat(n, st);
	LEAVE(0);
}

static int
pf_readlink(const char *path, char *buf, size_t size)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = resolve(path, &err);
	if (n == NULL)
		LEAVE(err);
	if (!S_ISLNK(n->mode))
		LEAVE(-EINVAL);
	if (size == 0)
		LEAVE(-EINVAL);
	snprintf(buf, size, "%s", n->target);
	LEAVE(0);
}

/* A new name in a directory: present at once, durable at the directory's fsync. */
static int
link_new(const char *path, struct pnode *n)
{
	char name[NAME_MAX_LEN + 1];
	int err = 0;
	struct pnode *d = resolve_parent(path, name, &err);

	if (d == NULL)
		return err;
	if (dents_find(&d->ents, name) != NULL)
		return -EEXIST;
	err = dents_add(&d->ents, name, n);
	if (err != 0)
		return err;
	if (S_ISDIR(n->mode))
		d->nlink++;
	else
		n->nlink++;
	now(&d->mtime);
	d->ctime = d->mtime;
	n->ctime = d->mtime;
	return 0;
}

static int
make_node(const char *path, mode_t mode, const char *target, struct pnode **out)
{
	char name[NAME_MAX_LEN + 1];
	int err = 0;
	struct pnode *d = resolve_parent(path, name, &err);
	struct pnode *n;

	if (d == NULL)
		return err;
	if (dents_find(&d->ents, name) != NULL)
		return -EEXIST;
	n = node_create(mode);
	if (n == NULL)
		return -ENOMEM;
	if (target != NULL) {
		n->target = strdup(target);
		if (n->target == NULL)
			return -ENOMEM;
	}
	err = link_new(path, n);
	if (err == 0 && out != NULL)
		*out = n;
	return err;
}

static int
pf_mknod(const char *path, mode_t mode, dev_t rdev)
{
	int rc;

	(void)rdev;
	ENTER();
	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode))
		LEAVE(-EPERM);
	rc = make_node(path, mode, NULL, NULL);
	LEAVE(rc);
}

static int
pf_mkdir(const char *path, mode_t mode)
{
	int rc;

	ENTER();
	rc = make_node(path, S_IFDIR | (mode & 07777), NULL, NULL);
	LEAVE(rc);
}

static int
pf_symlink(const char *target, const char *path)
{
	int rc;

	ENTER();
	rc = make_node(path, S_IFLNK | 0777, target, NULL);
	LEAVE(rc);
}

static int
pf_unlink(const char *path)
{
	struct pnode *d, *n;
	struct dent *e;
	int err;

	ENTER();
	err = lookup_entry(path, &d, &e);
	if (err != 0)
		LEAVE(err);
	n = e->node;
	if (S_ISDIR(n->mode))
		LEAVE(-EISDIR);
	dents_remove(&d->ents, e);
	n->nlink--;
	now(&d->mtime);
	d->ctime = n->ctime = d->mtime;
	node_maybe_drop_data(n);
	LEAVE(0);
}

static int
pf_rmdir(const char *path)
{
	struct pnode *d, *n;
	struct dent *e;
	int err;

	ENTER();
	err = lookup_entry(path, &d, &e);
	if (err != 0)
		LEAVE(err);
	n = e->node;
	if (!S_ISDIR(n->mode))
		LEAVE(-ENOTDIR);
	if (n->ents.n != 0)
		LEAVE(-ENOTEMPTY);
	dents_remove(&d->ents, e);
	d->nlink--;
	n->nlink = 0;
	now(&d->mtime);
	d->ctime = d->mtime;
	LEAVE(0);
}

static int
pf_rename(const char *from, const char *to, unsigned int flags)
{
	char fname[NAME_MAX_LEN + 1], tname[NAME_MAX_LEN + 1];
	int err = 0;
	struct pnode *fd, *td, *n, *old = NULL;
	struct dent *fe, *te;

	ENTER();
	if (flags & ~RENAME_NOREPLACE)
		LEAVE(-EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT: not modelled */
	fd = resolve_parent(from, fname, &err);
	if (fd == NULL)
		LEAVE(err);
	td = resolve_parent(to, tname, &err);
	if (td == NULL)
		LEAVE(err);
	fe = dents_find(&fd->ents, fname);
	if (fe == NULL)
		LEAVE(-ENOENT);
	n = fe->node;
	te = dents_find(&td->ents, tname);
	if (te != NULL) {
		old = te->node;
		if (flags & RENAME_NOREPLACE)
			LEAVE(-EEXIST);
		if (old == n)
			LEAVE(0);
		if (S_ISDIR(n->mode) && !S_ISDIR(old->mode))
			LEAVE(-ENOTDIR);
		if (!S_ISDIR(n->mode) && S_ISDIR(old->mode))
			LEAVE(-EISDIR);
		if (S_ISDIR(old->mode) && old->ents.n != 0)
			LEAVE(-ENOTEMPTY);
	}
	/* The kernel refused moving a directory into itself before asking us. */
	if (old != NULL) {
		te->node = n;
		if (S_ISDIR(old->mode)) {
			td->nlink--;
			old->nlink = 0;
		} else {
			old->nlink--;
			node_maybe_drop_data(old);
		}
	} else {
		err = dents_add(&td->ents, tname, n);
		if (err != 0)
			LEAVE(err);
	}
	/* dents_add may have moved fd->ents when fd == td: find the old name again. */
	fe = dents_find(&fd->ents, fname);
	dents_remove(&fd->ents, fe);
	if (S_ISDIR(n->mode)) {
		td->nlink++;
		fd->nlink--;
	}
	now(&td->mtime);
	td->ctime = fd->mtime = fd->ctime = n->ctime = td->mtime;
	if (old != NULL)
		old->ctime = td->mtime;
	LEAVE(0);
}

static int
pf_link(const char *from, const char *to)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = resolve(from, &err);
	if (n == NULL)
		LEAVE(err);
	if (S_ISDIR(n->mode))
		LEAVE(-EPERM);
	err = link_new(to, n);
	LEAVE(err);
}

static int
pf_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = node_of(path, fi, &err);
	if (n == NULL)
		LEAVE(err);
	n->mode = (n->mode & S_IFMT) | (mode & 07777);
	now(&n->ctime);
	LEAVE(0);
}

static int
pf_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = node_of(path, fi, &err);
	if (n == NULL)
		LEAVE(err);
	if (uid != (uid_t)-1)
		n->uid = uid;
	if (gid != (gid_t)-1)
		n->gid = gid;
	now(&n->ctime);
	LEAVE(0);
}

static int
pf_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = node_of(path, fi, &err);
	if (n == NULL)
		LEAVE(err);
	if (S_ISDIR(n->mode))
		LEAVE(-EISDIR);
	if (!S_ISREG(n->mode))
		LEAVE(-EINVAL);
	if (size < 0)
		LEAVE(-EINVAL);
	err = resize(n, (size_t)size);
	now(&n->mtime);
	n->ctime = n->mtime;
	LEAVE(err);
}

static int
open_node(struct pnode *n, struct fuse_file_info *fi)
{
	if (S_ISDIR(n->mode))
		return -EISDIR;
	if (!S_ISREG(n->mode))
		return -ENXIO;
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
		int rc = resize(n, 0);

		if (rc != 0)
			return rc;
	}
	n->opens++;
	fi->fh = (uint64_t)(uintptr_t)n;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

static int
pf_open(const char *path, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = resolve(path, &err);
	if (n == NULL)
		LEAVE(err);
	err = open_node(n, fi);
	LEAVE(err);
}

static int
pf_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = resolve(path, &err);
	if (n != NULL) {
		if (fi->flags & O_EXCL)
			LEAVE(-EEXIST);
	} else {
		err = make_node(path, S_IFREG | (mode & 07777), NULL, &n);
		if (err != 0)
			LEAVE(err);
	}
	err = open_node(n, fi);
	LEAVE(err);
}

static int
pf_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct pnode *n;
	size_t len;

	(void)path;
	ENTER();
	n = (struct pnode *)(uintptr_t)fi->fh;
	if (off < 0)
		LEAVE(-EINVAL);
	if ((size_t)off >= n->size)
		LEAVE(0);
	len = n->size - (size_t)off < size ? n->size - (size_t)off : size;
	memcpy(buf, n->data + off, len);
	LEAVE((int)len);
}

static int
pf_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct pnode *n;
	int err;

	(void)path;
	ENTER();
	n = (struct pnode *)(uintptr_t)fi->fh;
	if (off < 0 || size > INT_MAX)
		LEAVE(-EINVAL);
	if (size == 0)
		LEAVE(0);
	if ((size_t)off + size > n->size) {
		err = resize(n, (size_t)off + size);
		if (err != 0)
			LEAVE(err);
	}
	memcpy(n->data + off, buf, size);
	mark_dirty(n, (size_t)off, (size_t)off + size);
	now(&n->mtime);
	n->ctime = n->mtime;
	LEAVE((int)size);
}

static int
pf_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	ENTER();
	if (fstatvfs(g_backing_fd, sv) == -1) {
		int e = errno;

		fprintf(stderr, "powerfs: fstatvfs(backing) failed: %s\n", strerror(e));
		LEAVE(-e);
	}
	LEAVE(0);
}

static int
pf_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	ENTER();
	LEAVE(0);
}

/* Also after a cut: the kernel's handle goes away whatever we answer. */
static int
pf_release(const char *path, struct fuse_file_info *fi)
{
	struct pnode *n = (struct pnode *)(uintptr_t)fi->fh;

	(void)path;
	pthread_mutex_lock(&g_lock);
	n->opens--;
	node_maybe_drop_data(n);
	pthread_mutex_unlock(&g_lock);
	return 0;
}

static int
pf_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct pnode *n;
	int rc;

	(void)path;
	(void)datasync; /* the size is part of the data here: the same for both */
	ENTER();
	n = (struct pnode *)(uintptr_t)fi->fh;
	rc = persist_data(n);
	if (rc == 0) {
		rc = node_make_durable_attrs(n);
		if (rc == 1)
			rc = manifest_write();
	}
	LEAVE(rc);
}

static int
pf_opendir(const char *path, struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;

	ENTER();
	n = resolve(path, &err);
	if (n == NULL)
		LEAVE(err);
	if (!S_ISDIR(n->mode))
		LEAVE(-ENOTDIR);
	n->opens++;
	fi->fh = (uint64_t)(uintptr_t)n;
	LEAVE(0);
}

static int
pf_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
           struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct pnode *d;
	struct stat st;

	(void)path;
	(void)off;
	(void)flags;
	ENTER();
	d = (struct pnode *)(uintptr_t)fi->fh;
	fill_stat(d, &st);
	filler(buf, ".", &st, 0, (enum fuse_fill_dir_flags)0);
	filler(buf, "..", NULL, 0, (enum fuse_fill_dir_flags)0);
	for (size_t i = 0; i < d->ents.n; i++) {
		fill_stat(d->ents.v[i].node, &st);
		if (filler(buf, d->ents.v[i].name, &st, 0, (enum fuse_fill_dir_flags)0) != 0)
			break;
	}
	LEAVE(0);
}

static int
pf_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct pnode *n = (struct pnode *)(uintptr_t)fi->fh;

	(void)path;
	pthread_mutex_lock(&g_lock);
	n->opens--;
	pthread_mutex_unlock(&g_lock);
	return 0;
}

/*
 * fsync of a directory: its present entries become its durable entries.  An
 * inode newly named durably enters the manifest with its present attributes;
 * its bytes are durable only as far as its own fsyncs made them.
 */
static int
pf_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct pnode *d;
	int rc;

	(void)path;
	(void)datasync;
	ENTER();
	d = (struct pnode *)(uintptr_t)fi->fh;
	rc = dents_copy(&d->dents, &d->ents);
	for (size_t i = 0; rc == 0 && i < d->ents.n; i++) {
		struct pnode *c = d->ents.v[i].node;

		if (!c->durable && node_make_durable_attrs(c) < 0)
			rc = -ENOMEM;
	}
	if (rc == 0 && node_make_durable_attrs(d) < 0)
		rc = -ENOMEM;
	if (rc == 0)
		rc = manifest_write();
	LEAVE(rc);
}

static int
pf_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	int err = 0;
	struct pnode *n;
	struct timespec t;

	ENTER();
	n = node_of(path, fi, &err);
	if (n == NULL)
		LEAVE(err);
	now(&t);
	n->atime = tv[0].tv_nsec == UTIME_NOW ? t : tv[0].tv_nsec == UTIME_OMIT ? n->atime : tv[0];
	n->mtime = tv[1].tv_nsec == UTIME_NOW ? t : tv[1].tv_nsec == UTIME_OMIT ? n->mtime : tv[1];
	n->ctime = t;
	LEAVE(0);
}

/*
 * RocksDB preallocates with FALLOC_FL_KEEP_SIZE (nothing visible changes:
 * memory is allocated as written) and may punch the unused tail.  Mode 0
 * extends the file with zeros like a write.
 */
static int
pf_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct pnode *n;
	size_t end;
	int rc = 0;

	(void)path;
	ENTER();
	n = (struct pnode *)(uintptr_t)fi->fh;
	if (off < 0 || len <= 0)
		LEAVE(-EINVAL);
	end = (size_t)off + (size_t)len;
	if (mode == FALLOC_FL_KEEP_SIZE)
		LEAVE(0);
	if (mode == 0) {
		if (end > n->size)
			rc = resize(n, end);
		LEAVE(rc);
	}
	if (mode == (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
		if ((size_t)off < n->size) {
			if (end > n->size)
				end = n->size;
			memset(n->data + off, 0, end - (size_t)off);
			mark_dirty(n, (size_t)off, end);
		}
		LEAVE(0);
	}
	LEAVE(-EOPNOTSUPP);
}

static const struct fuse_operations ops = {
    .init = pf_init,
    .getattr = pf_getattr,
    .readlink = pf_readlink,
    .mknod = pf_mknod,
    .mkdir = pf_mkdir,
    .symlink = pf_symlink,
    .unlink = pf_unlink,
    .rmdir = pf_rmdir,
    .rename = pf_rename,
    .link = pf_link,
    .chmod = pf_chmod,
    .chown = pf_chown,
    .truncate = pf_truncate,
    .open = pf_open,
    .create = pf_create,
    .read = pf_read,
    .write = pf_write,
    .statfs = pf_statfs,
    .flush = pf_flush,
    .release = pf_release,
    .fsync = pf_fsync,
    .opendir = pf_opendir,
    .readdir = pf_readdir,
    .releasedir = pf_releasedir,
    .fsyncdir = pf_fsyncdir,
    .utimens = pf_utimens,
    .fallocate = pf_fallocate,
};

/* ------------------------------------------------------------------------ */

struct options {
	const char *backing;
	int help;
};

static const struct fuse_opt option_spec[] = {
    {"--backing=%s", offsetof(struct options, backing), 1},
    {"-h", offsetof(struct options, help), 1},
    {"--help", offsetof(struct options, help), 1},
    FUSE_OPT_END,
};

static void
usage(FILE *f, const char *prog)
{
	fprintf(f,
	        "usage: %s --backing=DIR [-f] [-o OPTIONS] MOUNTPOINT\n"
	        "  A file system that keeps unsynced data and directory changes in memory.\n"
	        "  DIR holds the durable image; SIGUSR1 cuts the power: every unsynced\n"
	        "  change is lost and every operation fails with EIO until unmount.\n",
	        prog);
}

int
main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options opt = {0};
	struct sigaction sa;
	int rc;

	if (fuse_opt_parse(&args, &opt, option_spec, NULL) == -1)
		return 2;
	if (opt.help || opt.backing == NULL) {
		usage(opt.help ? stdout : stderr, argv[0]);
		return opt.help ? 0 : 2;
	}
	g_backing_fd = open(opt.backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_backing_fd == -1) {
		fprintf(stderr, "powerfs: open(%s) failed: %s\n", opt.backing, strerror(errno));
		return 1;
	}
	if (mkdirat(g_backing_fd, "data", 0700) == -1 && errno != EEXIST) {
		fprintf(stderr, "powerfs: mkdirat(%s/data) failed: %s\n", opt.backing,
		        strerror(errno));
		return 1;
	}
	g_data_fd = openat(g_backing_fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_data_fd == -1) {
		fprintf(stderr, "powerfs: openat(%s/data) failed: %s\n", opt.backing,
		        strerror(errno));
		return 1;
	}
	if (load_image() != 0)
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_cut;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL) == -1) {
		fprintf(stderr, "powerfs: sigaction(SIGUSR1) failed: %s\n", strerror(errno));
		return 1;
	}
	if (fuse_opt_add_arg(&args, "-ofsname=powerfs,subtype=powerfs") == -1) {
		fprintf(stderr, "powerfs: fuse_opt_add_arg failed\n");
		return 1;
	}
	rc = fuse_main(args.argc, args.argv, &ops, NULL);
	fuse_opt_free_args(&args);
	return rc;
}
