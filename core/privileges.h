/*
 * privileges.h: pigeond gives up root once what needs it is done.
 *
 * Start-up as root (docs/security.md, "Privileges"): EAL and the DPDK port
 * (TAP or NIC), the kernel backend's listeners (port 25) and the control
 * socket are set up first; then the spool directory is handed to `user`,
 * and every thread of the process becomes `user`:`group` with no
 * capabilities; the spool is opened and every other thread started after
 * that.  No thread keeps a capability: the DPDK backend needs none once its
 * port is up (its rings, mempools and the TAP's file descriptor are already
 * open).  PR_SET_NO_NEW_PRIVS is set before EAL starts, so no thread can
 * gain privileges through execve (pigeond runs no other program anyway).
 */
#ifndef PA_PRIVILEGES_H
#define PA_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/config.h"

struct pa_privileges {
	bool drop; /* `user` is set and pigeond runs as root: switch after set-up */
	uid_t uid;
	gid_t gid;
};

/*
 * Looks up `user` and `group` (before anything starts, so that a typo exits
 * 2).  PA_ERROR names the key: an unknown name, `user` root, or a `user`
 * other than the current one while pigeond is not root.
 */
int privileges_resolve(const struct pa_config *config, struct pa_privileges *out, char *err,
                       size_t errlen);

/* umask 077 and PR_SET_NO_NEW_PRIVS, for every thread created after it. */
int privileges_harden(char *err, size_t errlen);

/*
 * Creates the spool directory when absent; mode 0700, or 0710 with group
 * ctl.group when the control socket lives in it and ctl.group is set (its
 * members may reach the socket, not list or read the spool).  When dropping,
 * the directory and everything in it (two levels: shard-NNN/ and their
 * files) are given to uid:gid, without following symbolic links.
 */
int privileges_prepare_spool(const struct pa_privileges *priv, const struct pa_config *config,
                             char *err, size_t errlen);

/*
 * EAL's runtime directory (its telemetry sockets) is given to the user, so
 * that the clean-up at exit can still remove the sockets in it.
 */
int privileges_prepare_runtime_dir(const struct pa_privileges *priv, const char *dir, char *err,
                                   size_t errlen);

/*
 * Every thread becomes uid:gid with only gid as group; then checks in
 * /proc/self/task that no thread kept another id or any capability, and that
 * root cannot be taken back.  Nothing to do without `user`.
 */
int privileges_drop(const struct pa_privileges *priv, char *err, size_t errlen);

#endif
