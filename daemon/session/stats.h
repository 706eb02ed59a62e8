/*
 * stats.h: what the sessions of one I/O worker count (connections, logins,
 * auth latency, backend failures, relayed bytes), for `gatehousectl stats`
 * and the metrics endpoint.
 *
 * Each worker owns one GhStats and only its thread writes it (no locks, no
 * atomics on the login path).  The process reads a worker's counters by
 * asking the worker to copy them on its own thread (gh_stats_copy), then
 * adds the copies together (gh_stats_merge) wherever it likes.
 *
 * A counter is one series of a family: the family's label values joined
 * into a key.  Label values are names from the configuration, module and
 * protocol names, verdict words and server addresses: never a user name or
 * a client address, so the number of series stays what the configuration
 * makes it.  Counters only grow; gauges (GH_STAT_SESSIONS) are written
 * into copies only, by the worker that describes its sessions.
 */
#pragma once

#include <glib.h>

typedef enum {
	GH_STAT_CONNECTIONS,      /* counter {protocol, listener}: accepted */
	GH_STAT_LOGINS,           /* counter {protocol, listener, module, verdict}: login lines */
	GH_STAT_BACKEND_FAILURES, /* counter {backend, server}: a server failed an attempt */
	GH_STAT_RELAY_BYTES,      /* counter {protocol, direction}: "to_backend" | "to_client" */
	GH_STAT_KICKED,           /* counter {protocol}: sessions closed by gatehousectl kick */
	GH_STAT_WARM_TAKES,       /* counter {backend, result}: a login asked the warm pool,
				     "hit" (one was ready) or "miss" */
	GH_STAT_WARM_KEPT,        /* counter {backend}: a session's connection kept after its
				     client's QUIT (reuse_connections) */
	GH_STAT_SESSIONS,         /* gauge {protocol, listener, state}: copies only */
	GH_STAT_N_FAMILIES
} GhStatFamily;

/* Number of labels of each family (the table above). */
guint gh_stats_family_labels(GhStatFamily family);

/* Upper bounds of the auth latency histogram, in seconds (+Inf follows). */
#define GH_STATS_AUTH_BUCKETS 12
extern const double gh_stats_auth_bounds[GH_STATS_AUTH_BUCKETS];

typedef struct _GhStats GhStats;

GhStats *gh_stats_new(void);
void gh_stats_free(GhStats *st);
/* A copy (transfer full), made on the owner's thread. */
GhStats *gh_stats_copy(const GhStats *st);
/* Add every series of `from` to `into`. */
void gh_stats_merge(GhStats *into, const GhStats *from);

/* Add n to the series of `family` with these label values (exactly
 * gh_stats_family_labels(family) of them; NULL is taken as ""). */
void gh_stats_add(GhStats *st, GhStatFamily family, guint64 n, ...);
/* One verification took `us` microseconds (a cache hit included). */
void gh_stats_observe_auth(GhStats *st, gint64 us);

/* The series of a family, in a stable order (by label values). */
typedef void (*GhStatsFunc)(const char *const *labels, guint64 value, gpointer data);
void gh_stats_foreach(const GhStats *st, GhStatFamily family, GhStatsFunc func, gpointer data);
/* The sum of every series of a family whose first label is `first` (or of
 * all of them when `first` is NULL). */
guint64 gh_stats_sum(const GhStats *st, GhStatFamily family, const char *first);

/* The histogram: counts[i] is the number of observations <= bound i
 * (cumulative, as Prometheus wants), counts[GH_STATS_AUTH_BUCKETS] all of
 * them; sum in seconds. */
void gh_stats_auth_histogram(const GhStats *st,
			     guint64 counts[GH_STATS_AUTH_BUCKETS + 1],
			     double *sum_seconds);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhStats, gh_stats_free)
