/*
 * metrics.h: gatehoused's counters, gauges and auth latency histogram as
 * Prometheus text (format 0.0.4) or OpenMetrics 1.0, and the optional HTTP
 * endpoint that serves them ([metrics] listen, gatehouse.conf(5)).
 *
 * Three layers, each usable alone:
 *  - gh_metrics_render(): pure; from a GhMetricsInput to the text.  No I/O,
 *    no clock, no locale: the same input gives the same bytes.
 *  - gh_metrics_text(): gathers the input from a running GhServer (its
 *    configuration, auth core, start time, generation, reloads) around a
 *    snapshot the caller already has; `gatehousectl metrics` goes this way.
 *  - GhMetricsServer: libsoup's SoupServer on the main thread's default
 *    GMainContext, answering GET (and HEAD) /metrics from a fresh snapshot.
 *
 * Every function here runs on the main thread.
 */
#pragma once

#include <glib.h>

#include "config/config.h"
#include "core/server.h"
#include "gh-auth.h"

typedef struct {
	/* every listener of it is listed, so that its gauges read 0 rather
	 * than being absent (transfer none) */
	const GhConfig *config;
	const GhSnapshot *snap;      /* the workers' counters and gauges (transfer none) */
	const GhAuthCoreStats *auth; /* NULL: the gatehouse_auth_* families are left out */
	gint64 started;              /* start of gatehoused, seconds since the epoch */
	guint generation;            /* configuration generation in force */
	guint reloads_ok, reloads_failed;
	const char *version; /* gatehoused's version (build_info's label) */
} GhMetricsInput;

/* The exposition text of `in` (transfer full, NUL-terminated): Prometheus
 * text format 0.0.4, or OpenMetrics 1.0 (with # UNIT, counter families named
 * without _total, and the final "# EOF") when `openmetrics`. */
char *gh_metrics_render(const GhMetricsInput *in, gboolean openmetrics);

/* The Content-Type of each format. */
#define GH_METRICS_CONTENT_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define GH_METRICS_CONTENT_TYPE_OPENMETRICS                                                        \
	"application/openmetrics-text; version=1.0.0; charset=utf-8"

/* TRUE when an HTTP Accept header value (may be NULL) prefers OpenMetrics:
 * it names application/openmetrics-text with a quality above 0 and at least
 * that of text/plain (or of a wildcard that covers it). */
gboolean gh_metrics_accept_openmetrics(const char *accept);

/* The text of `snap` (from gh_server_snapshot) with what `server` holds
 * now (transfer full); the same text the endpoint serves. */
char *gh_metrics_text(GhServer *server, const GhSnapshot *snap, gboolean openmetrics);

typedef struct _GhMetricsServer GhMetricsServer;

/* Listen on `listen` (an IP address or "*" for 0.0.0.0, and a port)
 * and serve /metrics from `server` (transfer none: it must outlive the
 * metrics server) on the default GMainContext, which the main thread runs.
 * NULL with `error` set ("metrics endpoint: cannot listen on ADDR:PORT:
 * why") when the address cannot be bound. */
GhMetricsServer *gh_metrics_server_new(GhServer *server, const GhHostPort *listen, GError **error);
/* The port it listens on (the one the kernel chose when `listen` asked for
 * port 0, as tests do). */
guint16 gh_metrics_server_port(GhMetricsServer *ms);
/* Stop listening and close every connection.  A scrape still waiting for
 * its snapshot is dropped; its callback, when it comes, answers nobody. */
void gh_metrics_server_free(GhMetricsServer *ms);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhMetricsServer, gh_metrics_server_free)
