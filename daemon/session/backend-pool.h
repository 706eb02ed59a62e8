/*
 * backend-pool.h: warm backend connections, `[backend] warm_connections`.
 *
 * Each I/O thread keeps, for each backend server its logins have lately
 * gone to, up to warm_connections backend links that have connected, read
 * the greeting and the capabilities (IMAP) or said EHLO (SMTP), and parked
 * where the login would start (backend-link.h, login_later).  A login that
 * finds one takes it: its backend login is one round trip, with no connect
 * and no greeting to wait for.
 *
 * Which server: the one the user's hash picks first among the backend's
 * servers (connector.h).  Warm links are started with a key that hashes to
 * that server, so they fail over as the session's own link would.  Only a
 * login with no route from the auth module uses the pool.
 *
 * Life cycle: a (backend, server) pair is filled the first time a login
 * asks for it.  A take that leaves the pair without a link refills it at
 * the next loop turn (so that the refill's connect does not delay the
 * login that took one); a take that leaves one waits for
 * gh_backend_pool_refill, once the backend has answered the taker's login
 * (so that the backend is not asked for a connection while it logs a user
 * in: at one client at a time that costs a wake-up and 5 to 10% of the
 * login's CPU, doc/performance.md), and for a login that goes on to
 * relay, once the client's next command has gone to the backend (login.c).
 * A parked link older than
 * warm_lifetime is told goodbye (the dialogue's LOGOUT or QUIT) and closed,
 * and replaced only while the pair has been asked for within that time: an
 * idle gateway lets its warm connections go.  A warm link that fails to
 * connect (the server is down) is not retried before the next ask, and
 * not sooner than a back-off of 1 s, doubling to 60 s.  A parked server
 * that closes (its own idle timeout, a restart) just leaves the pool.
 *
 * Invariants: everything runs on the I/O thread's context; a warm link
 * carries nothing that names a client before a session adopts it, so the
 * pool is only used where nothing would (config.c refuses warm_connections
 * with a PROXY header, or with XCLIENT on SMTP); a link is in at most one
 * place, the pool or one session; the pool holds a reference to the
 * configuration each pair's backend belongs to, so a reload never pulls a
 * backend from under a warm link, and pairs of an old configuration are
 * no longer asked for and go within warm_lifetime.
 *
 * Kept connections (`reuse_connections`, SMTP with login = none or
 * xclient): a
 * session whose client said QUIT with its backend at rest (smtp-track.h)
 * gives the connection back instead of closing it, if its pair is still
 * there with room and the connection has carried fewer than
 * GH_BACKEND_KEEP_SESSIONS sessions.  It becomes a warm link again after
 * the protocol's `resumed` step (SMTP: parked at once), with a new warm_lifetime
 * (the protocol decides what "at rest" is: SMTP keeps a connection only
 * right after a message Postfix accepted, smtp-session.c).
 * Such a pair is not refilled after a take (the taker brings one back, or
 * a login that found none connects and brings its own), only by the
 * sweep: so as many connections stay open as logins run at once, up to
 * warm_connections, and a storm of short sessions reuses them instead of
 * connecting for each.
 * The bound on sessions lets a busy connection go now and then, so that
 * the backend's process behind it is replaced as the backend wants (Postfix
 * reads main.cf anew only in new smtpd processes).
 */
#pragma once

#include <glib.h>
#include "session/backend-link.h"

typedef struct _GhBackendPool GhBackendPool;
typedef struct _GhSession GhSession;

#define GH_BACKEND_KEEP_SESSIONS 20

GhBackendPool *gh_backend_pool_new(GMainContext *context, GhStats *stats);
/* Every warm link is told goodbye and closed.  NULL allowed. */
void gh_backend_pool_free(GhBackendPool *pool);

/* A parked link to the server `key` picks first among the session's
 * backend's servers, adopted by the session with `p` and `done` (the
 * protocol's backend_adopt has run), or NULL when there is none ready or
 * the backend has no warm_connections.  Either way the pool then starts
 * what the pair is short of. */
GhBackendLink *gh_backend_pool_take(GhBackendPool *pool,
				    GhSession *s,
				    const char *key,
				    const GhBackendParams *p,
				    GhBackendDone done,
				    gpointer user_data);

/* A session's backend has failed its login, or the logged-in client's
 * next command is on its way: refill the pairs that are short, soon (after
 * what this loop turn sends). */
void gh_backend_pool_refill(GhBackendPool *pool);

/* Would a connection to `server` (the server the session's link used) that
 * has carried `served` sessions before this one be kept, were the session
 * to end now at rest?  Only for a backend with reuse_connections, the
 * session's key (`key`, as given to gh_backend_pool_take) picking `server`
 * first, its pair still asked for and short of warm_connections. */
gboolean gh_backend_pool_can_keep(
    GhBackendPool *pool, GhSession *s, const char *key, const char *server, guint served);
/* Keep it (transfer full), on the loop turn where can_keep said yes. */
void gh_backend_pool_keep(
    GhBackendPool *pool, GhSession *s, const char *key, GhConn *conn, const char *server);
