/*
 * gh-auth.h: the authentication core as the daemon and gatehousectl see it.
 *
 * Three objects:
 *  - GhAuthCore: lives as long as the process.  Owns the worker pool that runs
 *    blocking verification (crypt, PAM, LDAP), the verdict cache and the
 *    per-address failure penalties.
 *  - GhAuthSet: the [auth NAME] groups of one configuration generation, each
 *    an initialised module instance.  Reference counted: a reload builds a new
 *    set and swaps it in; requests in flight keep the set they started with.
 *  - GhAuthPending: one verification in flight for a session.
 *
 * A chain is the list of instance names of a listener's `auth =` key.  It is
 * run in order: UNKNOWN_USER falls through to the next instance; OK,
 * WRONG_PASSWORD and TEMPFAIL stop the chain.  When every instance says
 * UNKNOWN_USER the verdict is UNKNOWN_USER.
 *
 * Threads: the core's functions may be called from any thread; callbacks run
 * on the GMainContext the caller passed.  The auth core never opens network
 * sockets (only the socket pairs to module helpers, helper.h) and never
 * includes daemon headers.
 */
#pragma once

#include <glib.h>
#include "gh-auth-module.h"

typedef struct _GhAuthCore GhAuthCore;
typedef struct _GhAuthSet GhAuthSet;
typedef struct _GhAuthPending GhAuthPending;

#define GH_MODULE_ERROR (gh_module_error_quark())
GQuark gh_module_error_quark(void);
typedef enum {
	GH_MODULE_ERROR_NOT_FOUND, /* no such module file */
	GH_MODULE_ERROR_LOAD,      /* dlopen failed or no gh_auth_module symbol */
	GH_MODULE_ERROR_ABI,       /* built against another ABI version */
	GH_MODULE_ERROR_CONFIG,    /* the module refused its configuration */
} GhModuleError;

typedef struct {
	guint workers;            /* threads of the verification pool */
	guint queue_max;          /* requests waiting for a thread before TEMPFAIL */
	guint cache_size;         /* entries; 0 = no cache */
	guint cache_ttl;          /* seconds, OK verdicts */
	guint cache_negative_ttl; /* seconds, failed verdicts */
	guint failure_delay;      /* seconds, base of the per-address penalty; 0 = none */
} GhAuthSettings;

const char *gh_auth_verdict_to_string(GhAuthVerdict verdict);

/* ---- the core ---- */
GhAuthCore *gh_auth_core_new(const GhAuthSettings *settings);
/* Apply new settings (reload); the pool grows or shrinks, the cache trims. */
void gh_auth_core_update(GhAuthCore *core, const GhAuthSettings *settings);
/* Wait for running verifications to finish and free.  Callbacks of pending
 * requests that were not cancelled are not called any more. */
void gh_auth_core_free(GhAuthCore *core);
/* Forget every cached verdict; returns how many there were. */
guint gh_auth_core_flush_cache(GhAuthCore *core);
/* Forget the cached verdicts of one user: the entries whose user name as
 * the client gave it, or whose canonical user, equals `user` (ASCII case
 * insensitive: flushing one too many costs a verification, keeping one an
 * old password).  Returns how many were dropped. */
guint gh_auth_core_flush_user(GhAuthCore *core, const char *user);
/* Requests waiting for or running on a worker (for stats and tests). */
guint gh_auth_core_busy(GhAuthCore *core);

/* What the core holds now, for gatehousectl stats and the metrics. */
typedef struct {
	guint workers;         /* threads the pool may run (auth_workers) */
	guint running;         /* verifications and refreshes on a thread now */
	guint queued;          /* waiting for a thread */
	guint queue_max;       /* auth_queue_max */
	guint cache_entries;   /* verdicts cached now */
	guint cache_max;       /* auth_cache_size */
	guint64 cache_hits;    /* lookups answered from the cache, since start */
	guint64 cache_misses;  /* lookups that were not */
	guint penalty_entries; /* client addresses with a failure penalty now */
} GhAuthCoreStats;
/* Fill *out.  Any thread; the figures are read one after another, not at
 * one instant (running + queued may be off by a job pushed or finished
 * meanwhile). */
void gh_auth_core_stats(GhAuthCore *core, GhAuthCoreStats *out);

/* ---- module loading ---- */
/* Load module `name` from `dir` (DIR/NAME.so) once per process and check its
 * ABI.  Returns the module descriptor (transfer none, lives for the process),
 * or NULL with *error set (GH_MODULE_ERROR) saying what was wrong, including
 * the ABI version found and the one expected. */
const GhAuthModule *gh_auth_module_load(const char *dir, const char *name, GError **error);

/* ---- sets of instances ---- */
/* Initialise every [auth NAME] group of `kf` (read from config_path): load
 * its module from module_dir, check that the group has no key the module
 * does not declare, and call the module's init.  On any failure returns NULL
 * after appending each problem ("FILE:LINE: [auth NAME] key: ...") to
 * `problems` (g_free'd strings).  (transfer full) */
GhAuthSet *gh_auth_set_new(GhAuthCore *core,
			   GKeyFile *kf,
			   const char *config_path,
			   const char *module_dir,
			   GPtrArray *problems);
GhAuthSet *gh_auth_set_ref(GhAuthSet *set);
void gh_auth_set_unref(GhAuthSet *set);
gboolean gh_auth_set_has(GhAuthSet *set, const char *name);
/* Can a verdict of `chain` (names of [auth NAME] groups) carry a route?
 * TRUE when any instance in it may give one, or is not in the set. */
gboolean gh_auth_set_may_route(GhAuthSet *set, const char *const *chain);
/* Failed logins from `remote_addr` that its failure delay still counts
 * (0 when failure_delay = 0).  Thread-safe. */
guint gh_auth_set_recent_failures(GhAuthSet *set, const char *remote_addr);
/* Ask every instance to check its backing data (users file changed?) on a
 * worker thread, or to reload unconditionally when `force`; instances whose
 * data changed flush the cache.  Non-blocking. */
void gh_auth_set_refresh(GhAuthSet *set, gboolean force);

/* ---- verification ---- */
typedef struct {
	GhAuthVerdict verdict;
	const char *instance;       /* [auth NAME] that decided, or NULL (queue full, no chain) */
	const char *module;         /* its module name ("file"), or NULL */
	const char *canonical_user; /* never NULL: the module's, else the request's user */
	const char *route;          /* or NULL */
	const char *reason;         /* for the log; never NULL */
	gboolean cached;            /* answered from the cache */
	gint64 elapsed_us;          /* from the request to the verdict, before any delay */
	guint delay_ms;             /* failure delay applied before this callback */
} GhAuthOutcome;

/* Runs on the context given to gh_auth_verify_async.  The outcome and its
 * strings are valid only during the call (transfer none). */
typedef void (*GhAuthDone)(const GhAuthOutcome *outcome, gpointer user_data);

typedef enum {
	GH_AUTH_VERIFY_NO_DELAY = 1 << 0, /* no failure delay (gatehousectl) */
	GH_AUTH_VERIFY_NO_CACHE = 1 << 1, /* neither read nor write the cache */
} GhAuthVerifyFlags;

/* Verify `request` (copied; the password is copied into a wiped buffer)
 * against `chain` (NULL-terminated instance names) of `set`.  The callback
 * runs exactly once on `context` unless the pending is cancelled first; it
 * never runs before this function returns.  Failed verdicts (WRONG_PASSWORD,
 * UNKNOWN_USER) are delivered after the failure delay, on a timer of
 * `context`.  Returns the pending request (transfer none: it frees itself
 * after the callback, or after cancel). */
GhAuthPending *gh_auth_verify_async(GhAuthSet *set,
				    const char *const *chain,
				    const GhAuthRequest *request,
				    guint flags,
				    GMainContext *context,
				    GhAuthDone callback,
				    gpointer user_data);
/* Call on `context`'s thread: the callback will not run, whatever state the
 * request is in.  The pending must not be used after this. */
void gh_auth_pending_cancel(GhAuthPending *pending);
/* The verdict is known already (the cache had it, or the queue was full)
 * and only waits to be handed back; FALSE while a module works on it.
 * Call before the callback has run (the pending may be gone after). */
gboolean gh_auth_pending_decided(const GhAuthPending *pending);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhAuthSet, gh_auth_set_unref)
