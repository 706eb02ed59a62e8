/*
 * session.h: one client connection, from accept to close, as the process
 * (daemon/core/) sees it.  The life cycle itself, and what a protocol fills
 * in, are in protocol.h.
 *
 * The process creates a session for each accepted connection with the
 * configuration generation in force and the protocol table of the
 * listener; the session tells the process when it ends through its host.
 * Everything runs on the worker thread that accepted the connection.
 */
#pragma once

#include <glib.h>
#include <sys/socket.h>
#include "config/config.h"
#include "gh-auth.h"
#include "net/tls.h"

typedef struct _GhSession GhSession;
typedef struct _GhProtocol GhProtocol;

/* What the process lends every session of one worker. */
typedef struct {
	GMainContext *context; /* the worker's: every source of the session is attached here */
	/* The session is being freed (it is still whole): stop counting it. */
	void (*ended)(GhSession *s, gpointer data);
	gpointer data;
} GhSessionHost;

/* One configuration generation, as a session keeps it from accept to close
 * (a reload swaps all three at once; a session never mixes two). */
typedef struct {
	GhConfig *config;
	GhTls *tls;
	GhAuthSet *auth_set;
} GhGeneration;

/* Make a session of `fd` (connected, non-blocking; transfer full) accepted
 * on the listener `listener` (its name in gen->config), speaking `protocol`.
 * The references in `gen` pass to the session.  Nothing is said or watched
 * yet: the process registers the session, then calls gh_session_begin. */
GhSession *gh_session_new(const GhSessionHost *host,
			  const GhProtocol *protocol,
			  GhGeneration *gen,
			  const char *listener,
			  int fd,
			  const struct sockaddr *peer,
			  socklen_t peer_len);

/* Greet (after implicit TLS where the listener asks for it), or refuse when
 * `n_open`, the connections open on the listener counting this one, is over
 * its max_connections.  The session may end (host->ended) before this
 * returns. */
void gh_session_begin(GhSession *s, guint n_open);

/* The daemon is stopping: a session still in login state tells the client
 * (SMTP 421, IMAP * BYE) and closes; a proxied one drains. */
void gh_session_shutdown(GhSession *s);

/* Close at once, without a goodbye (the shutdown timeout ran out). */
void gh_session_abort(GhSession *s);
