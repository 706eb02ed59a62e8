/*
 * session-private.h: the parts of a session that session.c (life cycle) and
 * the protocol front ends (smtp-session.c, later imap-session.c) share.
 * Nothing outside daemon/ includes this.
 */
#pragma once

#include <glib.h>
#include <netinet/in.h>
#include "conn.h"
#include "server.h"

/* Client buffers: `in` holds a whole AUTH line (12288) plus what a client
 * pipelines behind it; `out` is what the relay may queue towards a slow
 * client before it stops reading the backend. */
#define GH_SESSION_IN_MAX (32 * 1024)
#define GH_SESSION_OUT_MAX (64 * 1024)

/* What a front end does at the session's turning points; worker thread. */
typedef struct {
	/* The daemon is stopping: say goodbye if still in login state (and
	 * close), or keep a proxied session running until it ends or the
	 * shutdown timeout aborts it. */
	void (*shutdown)(GhSession *s);
	/* Free the protocol state (the session is going away). */
	void (*free)(GhSession *s);
} GhSessionOps;

struct _GhSession {
	char id[16];
	GhWorker *worker;
	GhListener *listener;
	GhConfig *config;
	const GhListenerConfig *lc;
	GhConn *conn; /* the client; NULL once handed to a relay */
	char remote[INET6_ADDRSTRLEN];
	guint16 remote_port;
	char local[INET6_ADDRSTRLEN];
	guint16 local_port;
	gboolean trusted; /* the client's address is in trusted_networks */
	gint64 started_us;
	const GhSessionOps *ops;
	gpointer proto; /* the front end's state */
};

/* Close the client connection and free the session (and its front end's
 * state through ops->free).  Worker thread. */
void gh_session_free(GhSession *s);
