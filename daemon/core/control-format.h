/*
 * control-format.h: the pure half of the control socket: reading a request
 * line, matching sessions against a filter, and writing the answers (text
 * for people, JSON for scripts).  No sockets, no threads: tested byte by
 * byte in tests/unit/test-control.c.
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include "config/config.h"
#include "gh-auth.h"
#include "core/server.h"
#include "session/session.h"
#include "session/stats.h"

/* Which sessions a command concerns: all that match everything set. */
typedef struct {
	char *text;               /* the filter as given, for the log ("user=alice") */
	char *user;               /* as given (flush-cache wants it raw), or NULL */
	char *user_shown;         /* escaped as session descriptions are, or NULL */
	char *session;            /* a session id, or NULL */
	GInetAddressMask *remote; /* an address or a network, or NULL */
} GhSessionFilter;
void gh_session_filter_clear(GhSessionFilter *f);
/* GhSessionMatch for gh_server_kick; read-only, so any thread. */
gboolean gh_session_filter_match(const GhSessionInfo *info, gpointer filter);

typedef struct {
	char *command; /* stats, sessions, kick, flush-cache, reload, metrics */
	gboolean json;
	gboolean openmetrics;
	GhSessionFilter filter;
} GhControlRequest;
/* Parse one request line (its LF removed; a CR before it is allowed).
 * FALSE with *why (transfer full) saying what is wrong. */
gboolean gh_control_parse_request(const char *line, GhControlRequest *req, char **why);
void gh_control_request_clear(GhControlRequest *req);

/* What `stats` reports, gathered in one place (control.c fills it). */
typedef struct {
	const char *version;
	gint64 started; /* seconds since the epoch */
	gint64 now;
	guint generation;
	guint reloads_ok;
	guint reloads_failed;
	GhConfig *config; /* its listeners are listed even when idle */
	const GhStats *stats;
	guint n_sessions;
	GhAuthCoreStats auth;
} GhStatsView;
void gh_control_stats_view_clear(GhStatsView *view);

void gh_control_format_stats(GString *out, const GhStatsView *view, gboolean json);
/* At most max_rows sessions; a text answer says how many more there were. */
void gh_control_format_sessions(GString *out,
				const GhSnapshot *snap,
				const GhSessionFilter *filter,
				guint max_rows,
				gboolean json);
void gh_control_format_reload(
    GString *out, gboolean ok, guint generation, GPtrArray *problems, gboolean json);

/* "1h02m03s", "4m05s", "6s" */
char *gh_control_format_age(gint64 seconds);
