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
#include "session/stats.h"

typedef struct _GhSession GhSession;
typedef struct _GhProtocol GhProtocol;
typedef struct _GhBackendPool GhBackendPool;

/* What the process lends every session of one worker. */
typedef struct {
	GMainContext *context; /* the worker's: every source of the session is attached here */
	/* The session is being freed (it is still whole): stop counting it. */
	void (*ended)(GhSession *s, gpointer data);
	gpointer data;
	GhStats *stats;      /* the worker's counters (stats.h); never NULL */
	GhBackendPool *pool; /* the worker's warm backend connections, or NULL */
} GhSessionHost;

/* One configuration generation, as a session keeps it from accept to close
 * (a reload swaps all three at once; a session never mixes two). */
typedef struct {
	GhConfig *config;
	GhTls *tls;
	GhAuthSet *auth_set;
} GhGeneration;

/* A connection's two ends, as accept(2) and the listening socket tell. */
typedef struct {
	const struct sockaddr *peer;
	const struct sockaddr *local; /* NULL: ask the socket (getsockname) */
	gboolean nodelay;             /* TCP_NODELAY is set already (inherited) */
} GhSessionAddrs;

/* Make a session of `fd` (connected, non-blocking; transfer full) accepted
 * on the listener `listener` (its name in gen->config), speaking `protocol`.
 * The references in `gen` pass to the session.  Nothing is said or watched
 * yet: the process registers the session, then calls gh_session_begin. */
GhSession *gh_session_new(const GhSessionHost *host,
			  const GhProtocol *protocol,
			  GhGeneration *gen,
			  const char *listener,
			  int fd,
			  const GhSessionAddrs *addrs);

/* A list node of the session's own (data: the session), for the host to
 * keep its sessions in a GQueue (g_queue_push_tail_link, g_queue_unlink)
 * with no allocation, and drop one in constant time however many there
 * are.  Linked in at most one list. */
GList *gh_session_host_link(GhSession *s);

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

/* What `gatehousectl sessions` shows of a session: copies, so the process
 * may read them on another thread after the session is gone. */
typedef enum {
	GH_SESSION_PRE_LOGIN,  /* connected, no login under way */
	GH_SESSION_LOGGING_IN, /* a SASL exchange, a verification or the backend login */
	GH_SESSION_PROXIED,    /* relaying to the backend */
} GhSessionState;
const char *gh_session_state_to_string(GhSessionState state); /* "pre-login", ... */

typedef struct {
	char id[16];
	const char *protocol; /* static */
	char *listener;
	char *remote;  /* the client (the PROXY header's behind a balancer) */
	char *user;    /* logged in: the canonical user; logging in: the name
			* given, escaped for display; else NULL */
	char *backend; /* "host:port" of the backend server, or NULL */
	char *tls;     /* "TLS1.3/AES-256-GCM", or NULL */
	GhSessionState state;
	gint64 started_us; /* g_get_monotonic_time() at accept */
	guint64 bytes_up;  /* from the client */
	guint64 bytes_down;
} GhSessionInfo;

/* Fill `info` (clear it with gh_session_info_clear). */
void gh_session_describe(GhSession *s, GhSessionInfo *info);
void gh_session_info_clear(GhSessionInfo *info);
/* Add the session's gauges (GH_STAT_SESSIONS) and the bytes it has relayed
 * so far (GH_STAT_RELAY_BYTES) to `copy`, a copy of the worker's counters:
 * with these, relayed bytes only grow, across the session's end. */
void gh_session_count(GhSession *s, GhStats *copy);

/* The administrator closes the session (gatehousectl kick): the client is
 * told as its protocol expects (SMTP 421, IMAP * BYE; in the middle of a
 * relayed line it is only disconnected), the backend connection and any
 * login in flight are dropped, the session-end line says "kicked".  The
 * session may be freed (host->ended) before this returns.  FALSE (and
 * nothing done) when the session is already closing: a kick counts once. */
gboolean gh_session_kick(GhSession *s);
