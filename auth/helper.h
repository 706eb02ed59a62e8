/*
 * helper.h: helper processes of auth modules.  A module NAME whose
 * directory also holds an executable NAME-helper (the pam module's
 * pam-helper) runs its blocking work there instead of in gatehoused; the
 * module asks for a connected stream socket to a fresh helper through
 * GhAuthHost.helper_connect and speaks its own protocol on it.
 *
 * Two ways to start a helper:
 *  - a spawner: started by gh_auth_helpers_start() while gatehoused is
 *    still root, as the configured user with that user's groups (shadow,
 *    for pam_unix), running `NAME-helper --spawner`; it forks a helper for
 *    every request on its channel and sends back the socket.  gatehoused
 *    itself then drops those groups, so only the helpers keep them.
 *  - directly (no spawner for that module: gatehoused not started as root,
 *    or gatehousectl): fork and exec NAME-helper with the socket on fd 3,
 *    as the calling process is.
 * Neither happens per login: the module keeps its helpers for as long as
 * they answer.
 *
 * Threads: any.  One mutex guards the table of spawners; a request on a
 * spawner's channel holds that spawner's lock until its answer arrives.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

/* Before the privilege drop: start a spawner for every module named by an
 * [auth NAME] group of `kf` that has a NAME-helper in module_dir, running
 * as uid/gid with the groups /etc/group gives `user`.  FALSE with *error
 * when one cannot be started. */
gboolean gh_auth_helpers_start(
    GKeyFile *kf, const char *module_dir, const char *user, uid_t uid, gid_t gid, GError **error);

/* A connected stream socket (close-on-exec) to a new helper of `module`:
 * from its spawner if there is one, else started here.  -1 with *error. */
int gh_auth_helper_connect(const char *module_dir, const char *module, GError **error);

/* Stop asking the spawners (close their channels: they exit).  For tests
 * and the end of gatehoused. */
void gh_auth_helpers_stop(void);
