/*
 * server.h: the running gatehoused: configuration generations, I/O worker
 * threads, listeners, signals and sd_notify.
 *
 * Threads: the main thread runs the default GMainContext (signals, reload,
 * sd_notify, the users-file refresh timer).  Each of `workers` I/O threads
 * runs its own GMainContext; every worker watches every listening socket and
 * a session lives on the worker that accepted it for its whole life.
 * Verification runs on the auth core's pool and comes back to the session's
 * worker context.
 */
#pragma once

#include <glib.h>
#include "config/config.h"
#include "gh-auth.h"
#include "core/listener.h"
#include "net/tls.h"

typedef struct _GhServer GhServer;
typedef struct _GhWorker GhWorker;

/* Create a server from a checked config and auth set (both referenced). */
GhServer *
gh_server_new(GhConfig *cfg, GhAuthCore *core, GhAuthSet *set, GhTls *tls, GPtrArray *listeners);
/* Start the workers, tell systemd READY=1, run until SIGTERM/SIGINT, stop
 * cleanly.  Returns the exit status. */
int gh_server_run(GhServer *server);
void gh_server_free(GhServer *server);

/* The configuration and auth set in force now (transfer full: unref them).
 * Any thread. */
GhConfig *gh_server_get_config(GhServer *server);
GhAuthSet *gh_server_get_auth_set(GhServer *server);
GhAuthCore *gh_server_get_auth_core(GhServer *server);
/* One generation: the configuration in force now, its TLS credentials and
 * its auth set, taken together under the lock a reload swaps them under
 * (transfer full, each).  A session takes these once, when it is accepted,
 * and keeps them: a reload never changes a session's chain or certificates
 * halfway. */
void
gh_server_get_generation(GhServer *server, GhConfig **config, GhTls **tls, GhAuthSet **auth_set);

/* The auth core's settings as a config asks for them. */
void gh_server_settings_from_config(const GhConfig *cfg, GhAuthSettings *out);
