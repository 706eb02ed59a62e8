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
#include "session/session.h"

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

/* ---- for the control socket and the metrics endpoint (main thread) ---- */

/* Wall-clock time of the start (seconds since the epoch), the number of
 * the configuration generation in force (1 at start, one more per reload
 * that took) and how many reloads took and were refused. */
gint64 gh_server_started(GhServer *server);
guint gh_server_generation(GhServer *server);
void gh_server_reloads(GhServer *server, guint *ok, guint *failed);

/* Every worker's view, added together. */
typedef struct {
	GhStats *stats;   /* counters of every worker, with the sessions' gauges */
	GArray *sessions; /* of GhSessionInfo, when asked for; else NULL */
	gint64 now_us;    /* g_get_monotonic_time() when it was put together */
	guint n_sessions; /* sessions open */
} GhSnapshot;
/* `snap` is valid during the call only. */
typedef void (*GhSnapshotFunc)(const GhSnapshot *snap, gpointer data);
/* Ask every worker for its counters (and its sessions' descriptions when
 * `with_sessions`) on its own thread; `func` runs on the main context once
 * all have answered.  Requests made while one is being put together share
 * the next one: however many callers wait, each worker walks its sessions
 * at most once at a time. */
void
gh_server_snapshot(GhServer *server, gboolean with_sessions, GhSnapshotFunc func, gpointer data);

/* Which sessions a kick concerns: called on the workers' threads, so `data`
 * must be read-only while the kick runs. */
typedef gboolean (*GhSessionMatch)(const GhSessionInfo *info, gpointer data);
typedef void (*GhKickDone)(guint kicked, gpointer data);
/* Kick (gh_session_kick) every session `match` accepts; `done` runs on the
 * main context with the count once every worker has. */
void gh_server_kick(
    GhServer *server, GhSessionMatch match, gpointer match_data, GhKickDone done, gpointer data);

/* Reload now, as SIGHUP does.  TRUE when the new configuration is in force;
 * FALSE when it was refused, with each problem ("FILE:LINE: [group] key:
 * message", g_free'd strings) appended to `problems` (may be NULL). */
gboolean gh_server_reload(GhServer *server, GPtrArray *problems);

/* A one-line summary for sd_notify STATUS= and the stats header. */
char *gh_server_summary(GhServer *server, const GhSnapshot *snap);
