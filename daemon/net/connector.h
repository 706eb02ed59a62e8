/*
 * connector.h: choosing and connecting to a backend server, for the
 * backend link (session/backend-link.h).
 *
 * The servers of a [backend NAME] group are tried starting at one picked by
 * a stable hash of a key (the user), then the following ones in turn.  A
 * route from the auth module (common/route.h) replaces the list, unless the
 * backend says follow_route = no; a route without a port is dialled on the
 * backend's `port`.  Each attempt is a non-blocking connect on the
 * session's worker context with a timeout; a host name is resolved without
 * blocking that context.
 */
#pragma once

#include <glib.h>
#include "config/config.h"
#include "net/conn.h"
#include "secret.h"
#include "net/tls.h"

typedef struct _GhConnector GhConnector;

/* fd: the connected socket (non-blocking, transfer full), or -1 with
 * `error` saying why (for the log).  `server` is "host:port" (or
 * "[v6]:port"), with the port dialled even when the route named none. */
typedef void (*GhConnectorFunc)(int fd, const char *server, const char *error, gpointer user_data);

/* `route` may be NULL; an invalid one (a module that skipped route_valid)
 * leaves no server to try.  `context` must be the thread-default context of
 * the thread that calls gh_connector_next (GIO answers there). */
GhConnector *gh_connector_new(const GhBackendConfig *backend,
			      const char *route,
			      const char *hash_key,
			      GMainContext *context);
/* Does a connector for (route, hash_key) try the servers in the order of
 * one for (no route, other_key)?  (A link started before the login was
 * checked is kept only then.) */
gboolean gh_connector_same_order(const GhBackendConfig *backend,
				 const char *route,
				 const char *hash_key,
				 const char *other_key);
/* Start connecting to the next server; the callback runs once, later, on
 * the context.  Returns FALSE (and never calls back) when every server has
 * been tried. */
gboolean gh_connector_next(GhConnector *c, GhConnectorFunc func, gpointer user_data);
/* A connection to the first server is already there (one kept from an
 * earlier session, `reuse_connections`): make that server the current one
 * without connecting, if `server` is its text ("host:port").  FALSE (and
 * nothing changes) when it is not the first server, or one was tried. */
gboolean gh_connector_assume(GhConnector *c, const char *server);
/* The server being (or last) tried, or NULL before the first. */
const char *gh_connector_server(const GhConnector *c);
/* The host part of the server being tried ("mx1.example.com",
 * "10.0.0.5", "::1"): the name its certificate must carry.  (transfer full) */
char *gh_connector_host(const GhConnector *c);
/* Put client TLS on `conn`, towards the server being tried.  FALSE (with
 * *error) when the server already sent more plaintext: after STARTTLS that
 * must not pass for TLS data. */
gboolean gh_backend_tls_start(
    GhConnector *c, GhConn *conn, GhTls *tls, const GhBackendConfig *bc, char **error);
/* Drive the handshake and, once it is done, check the certificate (unless
 * verify = no).  1: done; 0: call again (the watch is set); -1: failed,
 * *error says why (another server may do better). */
int gh_backend_tls_handshake(GhConnector *c, GhConn *conn, const GhBackendConfig *bc, char **error);
/* Cancel a connect in flight (its callback will not run) and free. NULL allowed. */
void gh_connector_free(GhConnector *c);

/* Read `login = master`'s password from master_password_file (one line;
 * the line end an editor adds is not part of it).  Read at each login, so a
 * changed file takes effect without a reload.  (transfer full) or NULL with
 * *error set. */
GhSecret *gh_backend_master_password(const GhBackendConfig *backend, GError **error);

/* The i-th server of the backend's list as the connector names it
 * ("host:port", "[v6]:port").  (transfer full) */
char *gh_backend_server_text(const GhBackendConfig *bc, guint i);

/* The first server of n to try for `key`: a stable hash (FNV-1a), so one
 * user lands on one server while it is up.  Exposed for tests. */
guint gh_backend_first_server(const char *key, guint n);
