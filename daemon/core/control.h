/*
 * control.h: the control socket, what `gatehousectl stats|sessions|kick|
 * flush-cache|reload|metrics` talk to.
 *
 * A Unix stream socket at [gatehouse] control_socket, created at start
 * (before privileges are dropped) with mode 0660 and owned by the daemon's
 * user and group: the file's mode is the access rule, so root and members
 * of the daemon's group may use it, nobody else.  It is removed on stop.
 *
 * The protocol (one request per connection, doc/design.md):
 *
 *   request:  COMMAND [TAB ARG]... LF        at most 4 KiB, UTF-8, no controls
 *             ARG is "json", "openmetrics", or KEY=VALUE (user=, remote=, session=)
 *   answer:   "ok" LF, or "error" LF, then the body, then the daemon closes
 *
 * Commands: stats, sessions [user= remote=], kick (user= | session= |
 * remote=), flush-cache [user=], reload, metrics [openmetrics].
 *
 * Invariants: everything runs on the main thread's context and never
 * blocks it; the I/O workers are only asked through gh_server_snapshot and
 * gh_server_kick, which bound what they do however many clients ask.  A
 * client that sends no whole request within GH_CONTROL_READ_TIMEOUT, or
 * takes no byte of its answer for GH_CONTROL_WRITE_TIMEOUT, is dropped; at
 * most GH_CONTROL_MAX_CLIENTS are served at once (the next ones are told
 * "busy"); an answer is at most GH_CONTROL_MAX_ROWS sessions long.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>
#include "config/config.h"
#include "core/server.h"

#define GH_CONTROL_REQUEST_MAX 4096
#define GH_CONTROL_READ_TIMEOUT 5
#define GH_CONTROL_WRITE_TIMEOUT 10
#define GH_CONTROL_MAX_CLIENTS 512
#define GH_CONTROL_MAX_ROWS 100000

typedef struct _GhControl GhControl;

/* Create the listening socket at `path` (its directory too, when missing,
 * mode 0750), owned by uid:gid when we are root, mode 0660.  A stale socket
 * left by a daemon that died is replaced; one a running daemon answers on is
 * an error.  Returns the listening fd, or -1 with *error set. */
int gh_control_bind(const char *path, uid_t uid, gid_t gid, GError **error);

/* Serve the bound socket `fd` (transfer full) for `server`. */
GhControl *gh_control_new(GhServer *server, int fd, const char *path);
/* Stop: close every client, remove the socket file.  NULL allowed. */
void gh_control_free(GhControl *control);
