/*
 * listener.h: the listening sockets of gatehoused.
 *
 * Sockets come from systemd (LISTEN_FDS + LISTEN_FDNAMES: a socket named
 * "imap" serves [listener imap]) or are bound from the listener's `listen =`
 * addresses.  A listener that got at least one socket from systemd ignores
 * its `listen =`.  Listening sockets are bound once, before privileges are
 * dropped, and live as long as the process; a reload changes what a listener
 * does, not where it listens.
 */
#pragma once

#include <glib.h>
#include <sys/socket.h>
#include "config/config.h"

/* What the connections accepted on one listening socket share, learnt once
 * when it is bound or adopted, so that an accept costs no system call for
 * it: the local address (unless the socket is bound to a wildcard or is
 * transparent, where each connection has its own), and whether
 * TCP_NODELAY is set on the listening socket (Linux copies it to every
 * accepted one). */
typedef struct {
	struct sockaddr_storage local;
	socklen_t local_len; /* 0: ask each connection (getsockname) */
	gboolean nodelay;
} GhListenerSocket;

typedef struct {
	char *name;        /* matches [listener NAME] */
	GArray *fds;       /* of int, non-blocking listening sockets */
	GArray *sockets;   /* of GhListenerSocket, parallel to fds */
	GPtrArray *labels; /* of char*, "127.0.0.1:25" or "systemd fd 3", parallel to fds */
	gboolean from_systemd;
	gint n_sessions; /* atomic: open sessions, for max_connections */
} GhListener;

/* Take the sockets systemd passed (clearing LISTEN_* from the environment),
 * then bind every listener of `cfg` that got none.  Returns the listeners in
 * config order (transfer full), or NULL with *error set naming the problem
 * (a passed socket with no matching listener, an address in use, ...). */
GPtrArray *gh_listeners_open(const GhConfig *cfg, GError **error);
/* The listener of that name, or NULL. */
GhListener *gh_listeners_find(GPtrArray *listeners, const char *name);
void gh_listener_free(GhListener *l);
