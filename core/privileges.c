/*
 * privileges.c: pigeond's switch from root to `user` (privileges.h).
 *
 * The credentials of a Linux process are per thread.  glibc's setresuid(),
 * setresgid() and setgroups() apply the change to every thread it created
 * (EAL's lcores and interrupt thread included), and leaving uid 0 for
 * non-zero real, effective and saved ids clears each thread's permitted,
 * effective and ambient capabilities (capabilities(7)), since nothing here
 * sets SECBIT_KEEP_CAPS.  That is the whole drop; /proc/self/task is then
 * read back so that a thread glibc did not reach is found at start, not by
 * an attacker.
 */
#include "core/privileges.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dir_sync.h"
#include "core/pa.h"

#define SPOOL_MODE 0700
#define SPOOL_MODE_CTL_GROUP 0710

int
privileges_resolve(const struct pa_config *config, struct pa_privileges *out, char *err,
                   size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	*out = (struct pa_privileges){.drop = false, .uid = (uid_t)-1, .gid = (gid_t)-1};
	if (config->user[0] == '\0') {
		if (config->group[0] != '\0') {
			snprintf(err, errlen, "config key 'group': needs 'user'");
			return PA_ERROR;
		}
		return PA_OK;
	}
	pw = getpwnam(config->user);
	if (pw == NULL) {
		snprintf(err, errlen, "config key 'user': no user '%s'", config->user);
		return PA_ERROR;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "config key 'user': '%s' is root, not an unprivileged user",
		         config->user);
		return PA_ERROR;
	}
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	if (config->group[0] != '\0') {
		gr = getgrnam(config->group);
		if (gr == NULL) {
			snprintf(err, errlen, "config key 'group': no group '%s'", config->group);
			return PA_ERROR;
		}
		out->gid = gr->gr_gid;
	}
	if (out->gid == 0) {
		snprintf(err, errlen, "config key 'group': gid 0 is not an unprivileged group");
		return PA_ERROR;
	}
	if (geteuid() == 0) {
		out->drop = true;
		return PA_OK;
	}
	/* Already that user: started by a service manager with User=, nothing to give up. */
	if (geteuid() == out->uid && getegid() == out->gid)
		return PA_OK;
	snprintf(err, errlen,
	         "config key 'user': pigeond runs as uid %u and cannot become '%s'; start it "
	         "as root or leave 'user' empty",
	         (unsigned)geteuid(), config->user);
	return PA_ERROR;
}

int
privileges_harden(char *err, size_t errlen)
{
	/* Spool files, shard directories and the socket (before its chmod) are ours alone. */
	umask(077);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS) failed: %s", strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

/* The control socket in the spool directory (ctl.socket empty: <spool.dir>/pigeond.sock). */
static bool
socket_in_spool(const struct pa_config *config)
{
	size_t n = strlen(config->spool_dir);

	if (config->ctl_socket[0] == '\0')
		return true;
	return strncmp(config->ctl_socket, config->spool_dir, n) == 0 &&
	       config->ctl_socket[n] == '/' && strchr(config->ctl_socket + n + 1, '/') == NULL;
}

/*
 * Gives dir's entries, and those of its subdirectories `depth` levels down,
 * to uid:gid; never follows links.
 */
static int
chown_tree(int dfd, const char *path, uid_t uid, gid_t gid, unsigned depth, char *err,
           size_t errlen)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	int rc = PA_OK;

	if (d == NULL) {
		snprintf(err, errlen, "fdopendir(%s) failed: %s", path, strerror(errno));
		close(dfd);
		return PA_ERROR;
	}
	while (rc == PA_OK && (e = readdir(d)) != NULL) {
		int sub;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fchownat(dirfd(d), e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) == -1) {
			snprintf(err, errlen, "fchownat(%s/%s) failed: %s", path, e->d_name,
			         strerror(errno));
			rc = PA_ERROR;
			break;
		}
		if (depth == 0 || e->d_type != DT_DIR)
			continue;
		sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub == -1) {
			snprintf(err, errlen, "openat(%s/%s) failed: %s", path, e->d_name,
			         strerror(errno));
			rc = PA_ERROR;
			break;
		}
		rc = chown_tree(sub, e->d_name, uid, gid, depth - 1, err, errlen);
	}
	closedir(d);
	return rc;
}

int
privileges_prepare_spool(const struct pa_privileges *priv, const struct pa_config *config,
                         char *err, size_t errlen)
{
	const char *dir = config->spool_dir;
	mode_t mode = SPOOL_MODE;
	gid_t gid = priv->drop ? priv->gid : (gid_t)-1;
	struct stat st;
	int fd;

	/* Synced, with any missing parents: a power cut must not take the spool's name back. */
	if (pa_mkdir_durable(dir, SPOOL_MODE, NULL, err, errlen) != PA_OK)
		return PA_ERROR;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		snprintf(err, errlen, "open(%s) failed: %s", dir, strerror(errno));
		return PA_ERROR;
	}
	if (config->ctl_group[0] != '\0' && socket_in_spool(config)) {
		struct group *gr = getgrnam(config->ctl_group);

		if (gr == NULL) {
			snprintf(err, errlen, "config key 'ctl.group': no group '%s'",
			         config->ctl_group);
			close(fd);
			return PA_ERROR;
		}
		/* Search only: the group reaches pigeond.sock by name, never a spool file. */
		mode = SPOOL_MODE_CTL_GROUP;
		gid = gr->gr_gid;
	}
	if ((priv->drop || gid != (gid_t)-1) &&
	    fchown(fd, priv->drop ? priv->uid : (uid_t)-1, gid) == -1) {
		snprintf(err, errlen, "fchown(%s) failed: %s", dir, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "fstat(%s) failed: %s", dir, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	/* Someone else's directory (pigeond not root, no `user`): leave it, RocksDB decides. */
	if ((st.st_mode & 07777) != mode && (geteuid() == 0 || st.st_uid == geteuid()) &&
	    fchmod(fd, mode) == -1) {
		snprintf(err, errlen, "fchmod(%s, %o) failed: %s", dir, (unsigned)mode,
		         strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	if (!priv->drop) {
		close(fd);
		return PA_OK;
	}
	/*
	 * A spool made by root (or an older pigeond) becomes the user's, three
	 * levels deep: shard-NNN, its files, and a format-2 shard's log/ files.
	 */
	return chown_tree(fd, dir, priv->uid, priv->gid, 2, err, errlen);
}

int
privileges_prepare_runtime_dir(const struct pa_privileges *priv, const char *dir, char *err,
                               size_t errlen)
{
	int fd;

	if (!priv->drop || dir == NULL || dir[0] == '\0')
		return PA_OK;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT)
			return PA_OK;
		snprintf(err, errlen, "open(%s) failed: %s", dir, strerror(errno));
		return PA_ERROR;
	}
	if (fchown(fd, priv->uid, priv->gid) == -1) {
		snprintf(err, errlen, "fchown(%s) failed: %s", dir, strerror(errno));
		close(fd);
		return PA_ERROR;
	}
	return chown_tree(fd, dir, priv->uid, priv->gid, 0, err, errlen);
}

/* One thread's Uid:, Gid:, CapPrm: and CapEff: lines from /proc. */
static int
check_thread(const char *tid, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	char path[64], line[256];
	unsigned u[4], g[4];
	unsigned long long prm = 1, eff = 1;
	unsigned seen = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	f = fopen(path, "re");
	if (f == NULL)
		return errno == ENOENT ? PA_OK : PA_ERROR; /* a thread that just ended */
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "Uid: %u %u %u %u", &u[0], &u[1], &u[2], &u[3]) == 4 ||
		    sscanf(line, "Gid: %u %u %u %u", &g[0], &g[1], &g[2], &g[3]) == 4 ||
		    sscanf(line, "CapPrm: %llx", &prm) == 1 ||
		    sscanf(line, "CapEff: %llx", &eff) == 1)
			seen++;
	}
	fclose(f);
	for (unsigned i = 0; seen == 4 && i < 4; i++)
		if (u[i] != uid || g[i] != gid)
			seen = 0;
	if (seen == 4 && prm == 0 && eff == 0)
		return PA_OK;
	snprintf(err, errlen,
	         "thread %s kept its privileges after the switch to uid %u gid %u "
	         "(CapPrm %llx CapEff %llx)",
	         tid, (unsigned)uid, (unsigned)gid, prm, eff);
	return PA_ERROR;
}

static int
check_all_threads(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int rc = PA_OK;

	if (d == NULL) {
		snprintf(err, errlen, "opendir(/proc/self/task) failed: %s", strerror(errno));
		return PA_ERROR;
	}
	while (rc == PA_OK && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			rc = check_thread(e->d_name, uid, gid, err, errlen);
	closedir(d);
	if (rc != PA_OK && err[0] == '\0')
		snprintf(err, errlen, "reading /proc/self/task failed: %s", strerror(errno));
	return rc;
}

int
privileges_drop(const struct pa_privileges *priv, char *err, size_t errlen)
{
	err[0] = '\0';
	if (!priv->drop)
		return PA_OK;
	/* Groups first: after setresuid() there is no privilege left to change them. */
	if (setgroups(1, &priv->gid) == -1) {
		snprintf(err, errlen, "setgroups(%u) failed: %s", (unsigned)priv->gid,
		         strerror(errno));
		return PA_ERROR;
	}
	if (setresgid(priv->gid, priv->gid, priv->gid) == -1) {
		snprintf(err, errlen, "setresgid(%u) failed: %s", (unsigned)priv->gid,
		         strerror(errno));
		return PA_ERROR;
	}
	if (setresuid(priv->uid, priv->uid, priv->uid) == -1) {
		snprintf(err, errlen, "setresuid(%u) failed: %s", (unsigned)priv->uid,
		         strerror(errno));
		return PA_ERROR;
	}
	if (setresuid(0, 0, 0) != -1) {
		snprintf(err, errlen, "setresuid(0) succeeded after the switch to uid %u",
		         (unsigned)priv->uid);
		return PA_ERROR;
	}
	return check_all_threads(priv->uid, priv->gid, err, errlen);
}
