/*
 * metrics.c: the Prometheus / OpenMetrics exposition of gatehoused (see
 * metrics.h): the renderer, gathering its input from the server, and the
 * HTTP endpoint on libsoup's SoupServer.
 *
 * Invariants:
 *  - The renderer is pure: the text depends on its input only, numbers are
 *    written without the locale (integers as integers, floats in the
 *    shortest form that reads back as the same double), and the series of a
 *    family come in a stable order (configured listeners in file order, then
 *    what the counters hold, sorted by label values).
 *  - Every family has its # HELP and # TYPE even with no series, and every
 *    configured listener has its connections counter and its gauge of each
 *    session state, 0 when there is nothing to count: a listener never
 *    "disappears" from a dashboard because it is idle.
 *  - Label values are UTF-8 and escaped as both formats require (backslash,
 *    double quote, line feed); a value that is not UTF-8 is repaired, never
 *    written raw.
 *  - The endpoint never blocks the main loop: a scrape pauses its message,
 *    asks the workers for a snapshot and answers when it comes.  The message
 *    is referenced while paused, and a client that goes away meanwhile (or
 *    the endpoint being freed) only drops that reference: the snapshot's
 *    callback then answers nobody and never touches the connection.
 *  - Only GET and HEAD of /metrics are served; every other path is 404 and
 *    every other method 405.  HTTP itself (parsing, keep-alive, HEAD bodies)
 *    is libsoup's; accepting connections is GIO's GSocketService, so that
 *    the endpoint holds at most GH_METRICS_MAX_CONNECTIONS of them and
 *    closes one idle for GH_METRICS_IDLE_TIMEOUT seconds.
 */
#include "gh-build.h"

#include "core/metrics.h"

#include <libsoup/soup.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ writing */

typedef struct {
	GString *out;
	gboolean om; /* OpenMetrics 1.0, else text 0.0.4 */
} Writer;

static const char *const relay_directions[] = {"to_backend", "to_client"};

static void
format_g(char *buf, gsize size, int prec, double d)
{
	char format[8];

	g_snprintf(format, sizeof format, "%%.%dg", prec);
	g_ascii_formatd(buf, size, format, d);
}

/* A double in the shortest "%g" form that reads back as the same value,
 * without an exponent from 1e-4 to 1e17 ("10", not "1e+01"); OpenMetrics
 * writes a whole number with ".0" (its canonical float). */
static void
append_double(GString *s, double d, gboolean om)
{
	char buf[G_ASCII_DTOSTR_BUF_SIZE];
	const char *e;
	int prec;

	if (isnan(d)) {
		g_string_append(s, "NaN");
		return;
	}
	if (isinf(d)) {
		g_string_append(s, d > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (prec = 1; prec < 17; prec++) {
		format_g(buf, sizeof buf, prec, d);
		if (g_ascii_strtod(buf, NULL) == d)
			break;
	}
	format_g(buf, sizeof buf, prec, d);
	/* %g goes to an exponent once it is at least the precision: give
	 * such a number the digits of its integer part instead */
	e = strchr(buf, 'e');
	if (e != NULL && e[1] == '+') {
		int exp = atoi(e + 2);
		if (exp < 17)
			format_g(buf, sizeof buf, exp + 1, d);
	}
	g_string_append(s, buf);
	if (om && strpbrk(buf, ".e") == NULL)
		g_string_append(s, ".0");
}

/* HELP text: backslash and line feed escaped, and in OpenMetrics the double
 * quote too. */
static void
append_help(Writer *w, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\\')
			g_string_append(w->out, "\\\\");
		else if (*p == '\n')
			g_string_append(w->out, "\\n");
		else if (*p == '"' && w->om)
			g_string_append(w->out, "\\\"");
		else
			g_string_append_c(w->out, *p);
	}
}

static void
append_label_value(GString *s, const char *value)
{
	g_autofree char *valid = NULL;

	if (value == NULL)
		value = "";
	if (!g_utf8_validate(value, -1, NULL))
		value = valid = g_utf8_make_valid(value, -1);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\\')
			g_string_append(s, "\\\\");
		else if (*p == '"')
			g_string_append(s, "\\\"");
		else if (*p == '\n')
			g_string_append(s, "\\n");
		else
			g_string_append_c(s, *p);
	}
}

typedef enum { COUNTER, GAUGE, HISTOGRAM } Kind;

/* The metadata of a family.  `name` is the family's name: for a counter
 * without "_total", which the text format's metadata adds and OpenMetrics'
 * does not.  `unit` (or NULL) is written in OpenMetrics only; the name ends
 * with it, as both formats' conventions want. */
static void
family(Writer *w, const char *name, Kind kind, const char *unit, const char *help)
{
	static const char *const kinds[] = {"counter", "gauge", "histogram"};
	const char *suffix = kind == COUNTER && !w->om ? "_total" : "";

	g_string_append_printf(w->out, "# HELP %s%s ", name, suffix);
	append_help(w, help);
	g_string_append_printf(w->out, "\n# TYPE %s%s %s\n", name, suffix, kinds[kind]);
	if (w->om && unit != NULL)
		g_string_append_printf(w->out, "# UNIT %s %s\n", name, unit);
}

/* "name{a="x",b="y"} " (or "name ") */
static void
sample_start(Writer *w, const char *name, const char *const *names, const char *const *values)
{
	g_string_append(w->out, name);
	if (names != NULL && names[0] != NULL) {
		g_string_append_c(w->out, '{');
		for (guint i = 0; names[i] != NULL; i++) {
			if (i > 0)
				g_string_append_c(w->out, ',');
			g_string_append_printf(w->out, "%s=\"", names[i]);
			append_label_value(w->out, values[i]);
			g_string_append_c(w->out, '"');
		}
		g_string_append_c(w->out, '}');
	}
	g_string_append_c(w->out, ' ');
}

static void
sample_u64(
    Writer *w, const char *name, const char *const *names, const char *const *values, guint64 v)
{
	sample_start(w, name, names, values);
	g_string_append_printf(w->out, "%" G_GUINT64_FORMAT "\n", v);
}

static void
gauge_u64(Writer *w, const char *name, const char *help, guint64 v)
{
	family(w, name, GAUGE, NULL, help);
	sample_u64(w, name, NULL, NULL, v);
}

/* ------------------------------------------------------------ series */

/* One series of a GhStats family, copied out of gh_stats_foreach. */
typedef struct {
	char **labels; /* as many as the family has */
	guint64 value;
	gboolean written;
} Series;

static void
series_free(gpointer data)
{
	Series *s = data;
	g_strfreev(s->labels);
	g_free(s);
}

typedef struct {
	GPtrArray *series;
	guint n_labels;
} Collect;

static void
collect_one(const char *const *labels, guint64 value, gpointer data)
{
	Collect *c = data;
	Series *s = g_new0(Series, 1);

	s->labels = g_new0(char *, c->n_labels + 1);
	for (guint i = 0; i < c->n_labels; i++)
		s->labels[i] = g_strdup(labels[i] != NULL ? labels[i] : "");
	s->value = value;
	g_ptr_array_add(c->series, s);
}

/* The series of `family` in gh_stats_foreach's order (transfer full). */
static GPtrArray *
collect(const GhStats *st, GhStatFamily fam)
{
	Collect c = {g_ptr_array_new_with_free_func(series_free), gh_stats_family_labels(fam)};

	if (st != NULL)
		gh_stats_foreach(st, fam, collect_one, &c);
	return c.series;
}

/* The series whose labels are `want` (all of them), or NULL. */
static Series *
find_series(GPtrArray *series, const char *const *want)
{
	for (guint i = 0; i < series->len; i++) {
		Series *s = g_ptr_array_index(series, i);
		gboolean same = TRUE;
		for (guint j = 0; want[j] != NULL && same; j++)
			same = g_strcmp0(s->labels[j], want[j]) == 0;
		if (same)
			return s;
	}
	return NULL;
}

/* The series with labels `values`: its value, or 0 when the counters do not
 * have it (yet); it is marked written either way. */
static void
write_expected(Writer *w,
	       const char *name,
	       const char *const *names,
	       const char *const *values,
	       GPtrArray *series)
{
	Series *s = find_series(series, values);

	if (s != NULL && s->written)
		return; /* a listener named twice cannot be; stay safe */
	sample_u64(w, name, names, values, s != NULL ? s->value : 0);
	if (s != NULL)
		s->written = TRUE;
}

/* Every series not written yet, in order. */
static void
write_rest(Writer *w, const char *name, const char *const *names, GPtrArray *series)
{
	for (guint i = 0; i < series->len; i++) {
		Series *s = g_ptr_array_index(series, i);
		if (!s->written)
			sample_u64(w, name, names, (const char *const *)s->labels, s->value);
		s->written = TRUE;
	}
}

/* The protocols of the configured listeners, each once, in file order
 * (transfer container). */
static GPtrArray *
configured_protocols(const GhConfig *cfg)
{
	GPtrArray *protocols = g_ptr_array_new();

	for (guint i = 0; cfg != NULL && i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		const char *p = gh_protocol_to_string(lc->protocol);
		if (!g_ptr_array_find_with_equal_func(protocols, p, g_str_equal, NULL))
			g_ptr_array_add(protocols, (gpointer)p);
	}
	return protocols;
}

/* ------------------------------------------------------------ families */

static void
write_process(Writer *w, const GhMetricsInput *in)
{
	static const char *const version_label[] = {"version", NULL};
	static const char *const result_label[] = {"result", NULL};
	const char *version[] = {in->version != NULL ? in->version : "", NULL};
	const char *ok[] = {"ok", NULL}, *failed[] = {"failed", NULL};
	const char *name;

	family(w, "gatehouse_build_info", GAUGE, NULL,
	       "Which gatehoused this is: its version as a label; always 1.");
	sample_u64(w, "gatehouse_build_info", version_label, version, 1);

	family(w, "gatehouse_start_time_seconds", GAUGE, "seconds",
	       "When gatehoused started, in seconds since the Unix epoch.");
	sample_start(w, "gatehouse_start_time_seconds", NULL, NULL);
	g_string_append_printf(w->out, "%" G_GINT64_FORMAT "\n", in->started);

	gauge_u64(w, "gatehouse_config_generation",
		  "The configuration generation in force: 1 at start, one more for each reload "
		  "that took.",
		  in->generation);

	family(w, "gatehouse_config_reloads", COUNTER, NULL,
	       "Configuration reloads (SIGHUP or gatehousectl reload), by result: ok (in force) "
	       "or failed (refused, the previous generation stays).");
	name = "gatehouse_config_reloads_total";
	sample_u64(w, name, result_label, ok, in->reloads_ok);
	sample_u64(w, name, result_label, failed, in->reloads_failed);
}

static void
write_sessions(Writer *w, const GhMetricsInput *in, const GhStats *st)
{
	static const char *const conn_labels[] = {"protocol", "listener", NULL};
	static const char *const sess_labels[] = {"protocol", "listener", "state", NULL};
	static const char *const kick_labels[] = {"protocol", NULL};
	const GhConfig *cfg = in->config;
	g_autoptr(GPtrArray) conns = collect(st, GH_STAT_CONNECTIONS);
	g_autoptr(GPtrArray) sessions = collect(st, GH_STAT_SESSIONS);
	g_autoptr(GPtrArray) kicked = collect(st, GH_STAT_KICKED);
	g_autoptr(GPtrArray) protocols = configured_protocols(cfg);

	family(w, "gatehouse_connections", COUNTER, NULL,
	       "Client connections accepted, by listener.");
	for (guint i = 0; cfg != NULL && i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		const char *v[] = {gh_protocol_to_string(lc->protocol), lc->name, NULL};
		write_expected(w, "gatehouse_connections_total", conn_labels, v, conns);
	}
	write_rest(w, "gatehouse_connections_total", conn_labels, conns);

	family(w, "gatehouse_sessions", GAUGE, NULL,
	       "Client sessions open now, by listener and state: pre-login (connected, no "
	       "login under way), logging-in (credentials or the backend login under way), "
	       "proxied (relaying to the backend).");
	for (guint i = 0; cfg != NULL && i < cfg->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(cfg->listeners, i);
		/* the words the workers write (session.h) */
		for (GhSessionState state = GH_SESSION_PRE_LOGIN; state <= GH_SESSION_PROXIED;
		     state++) {
			const char *v[] = {gh_protocol_to_string(lc->protocol), lc->name,
					   gh_session_state_to_string(state), NULL};
			write_expected(w, "gatehouse_sessions", sess_labels, v, sessions);
		}
	}
	/* sessions of a listener a reload took away live on */
	write_rest(w, "gatehouse_sessions", sess_labels, sessions);

	family(w, "gatehouse_sessions_kicked", COUNTER, NULL,
	       "Sessions closed by gatehousectl kick, by protocol.");
	for (guint i = 0; i < protocols->len; i++) {
		const char *v[] = {g_ptr_array_index(protocols, i), NULL};
		write_expected(w, "gatehouse_sessions_kicked_total", kick_labels, v, kicked);
	}
	write_rest(w, "gatehouse_sessions_kicked_total", kick_labels, kicked);
}

static void
write_logins(Writer *w, const GhMetricsInput *in, const GhStats *st)
{
	static const char *const labels[] = {"protocol", "listener", "module", "verdict", NULL};
	g_autoptr(GPtrArray) logins = collect(st, GH_STAT_LOGINS);
	guint64 counts[GH_STATS_AUTH_BUCKETS + 1] = {0};
	double sum = 0;
	const char *name = "gatehouse_auth_duration_seconds_bucket";

	family(w, "gatehouse_logins", COUNTER, NULL,
	       "Login attempts, by listener, the auth module that gave the verdict and the "
	       "verdict (as in the login log line).");
	write_rest(w, "gatehouse_logins_total", labels, logins);

	family(w, "gatehouse_auth_duration_seconds", HISTOGRAM, "seconds",
	       "Time to verify a client's credentials (auth chain, cache hits included; the "
	       "failure delay excluded).");
	if (st != NULL)
		gh_stats_auth_histogram(st, counts, &sum);
	for (guint i = 0; i <= GH_STATS_AUTH_BUCKETS; i++) {
		g_string_append(w->out, name);
		g_string_append(w->out, "{le=\"");
		append_double(
		    w->out, i < GH_STATS_AUTH_BUCKETS ? gh_stats_auth_bounds[i] : INFINITY, w->om);
		g_string_append_printf(w->out, "\"} %" G_GUINT64_FORMAT "\n", counts[i]);
	}
	g_string_append(w->out, "gatehouse_auth_duration_seconds_sum ");
	append_double(w->out, sum, w->om);
	g_string_append_printf(w->out,
			       "\ngatehouse_auth_duration_seconds_count %" G_GUINT64_FORMAT "\n",
			       counts[GH_STATS_AUTH_BUCKETS]);
}

static void
write_auth_core(Writer *w, const GhAuthCoreStats *a)
{
	static const char *const result_label[] = {"result", NULL};
	const char *hit[] = {"hit", NULL}, *miss[] = {"miss", NULL};

	gauge_u64(w, "gatehouse_auth_workers",
		  "Threads the auth pool may run for blocking verifications (auth_workers).",
		  a->workers);
	gauge_u64(w, "gatehouse_auth_workers_busy", "Verifications running on an auth thread now.",
		  a->running);
	gauge_u64(w, "gatehouse_auth_queue_length",
		  "Verifications waiting for a free auth thread now.", a->queued);
	gauge_u64(w, "gatehouse_auth_cache_entries", "Verdicts in the auth cache now.",
		  a->cache_entries);
	family(w, "gatehouse_auth_cache_lookups", COUNTER, NULL,
	       "Auth cache lookups, by result: hit (answered from the cache) or miss.");
	sample_u64(w, "gatehouse_auth_cache_lookups_total", result_label, hit, a->cache_hits);
	sample_u64(w, "gatehouse_auth_cache_lookups_total", result_label, miss, a->cache_misses);
	gauge_u64(w, "gatehouse_auth_penalty_addresses",
		  "Client addresses with a failed-login penalty now.", a->penalty_entries);
}

static void
write_backends(Writer *w, const GhMetricsInput *in, const GhStats *st)
{
	static const char *const relay_labels[] = {"protocol", "direction", NULL};
	static const char *const fail_labels[] = {"backend", "server", NULL};
	static const char *const warm_labels[] = {"backend", "result", NULL};
	static const char *const kept_labels[] = {"backend", NULL};
	g_autoptr(GPtrArray) relay = collect(st, GH_STAT_RELAY_BYTES);
	g_autoptr(GPtrArray) failures = collect(st, GH_STAT_BACKEND_FAILURES);
	g_autoptr(GPtrArray) warm = collect(st, GH_STAT_WARM_TAKES);
	g_autoptr(GPtrArray) kept = collect(st, GH_STAT_WARM_KEPT);
	g_autoptr(GPtrArray) protocols = configured_protocols(in->config);

	family(w, "gatehouse_relay_bytes", COUNTER, "bytes",
	       "Bytes relayed after login, by protocol and direction: to_backend (from the "
	       "clients) or to_client.");
	for (guint i = 0; i < protocols->len; i++) {
		for (guint j = 0; j < G_N_ELEMENTS(relay_directions); j++) {
			const char *v[] = {g_ptr_array_index(protocols, i), relay_directions[j],
					   NULL};
			write_expected(w, "gatehouse_relay_bytes_total", relay_labels, v, relay);
		}
	}
	write_rest(w, "gatehouse_relay_bytes_total", relay_labels, relay);

	family(w, "gatehouse_backend_failures", COUNTER, NULL,
	       "Attempts at a backend server that failed (connect, TLS or its login "
	       "dialogue), by backend and server.");
	write_rest(w, "gatehouse_backend_failures_total", fail_labels, failures);

	family(w, "gatehouse_backend_warm_takes", COUNTER, NULL,
	       "Logins that asked for a warm backend connection (warm_connections), by backend "
	       "and result: hit (one was ready) or miss.");
	write_rest(w, "gatehouse_backend_warm_takes_total", warm_labels, warm);

	family(w, "gatehouse_backend_kept", COUNTER, NULL,
	       "Backend connections kept for the next login after the client's QUIT "
	       "(reuse_connections), by backend.");
	write_rest(w, "gatehouse_backend_kept_total", kept_labels, kept);
}

char *
gh_metrics_render(const GhMetricsInput *in, gboolean openmetrics)
{
	Writer w = {g_string_sized_new(8192), openmetrics};
	const GhStats *st;

	g_return_val_if_fail(in != NULL && in->snap != NULL, NULL);
	st = in->snap->stats;

	write_process(&w, in);
	write_sessions(&w, in, st);
	write_logins(&w, in, st);
	if (in->auth != NULL)
		write_auth_core(&w, in->auth);
	write_backends(&w, in, st);
	if (openmetrics)
		g_string_append(w.out, "# EOF\n");
	return g_string_free(w.out, FALSE);
}

/* ------------------------------------------------------------ negotiation */

gboolean
gh_metrics_accept_openmetrics(const char *accept)
{
	g_auto(GStrv) items = NULL;
	double om = 0, text = 0;

	if (accept == NULL)
		return FALSE;
	items = g_strsplit(accept, ",", -1);
	for (guint i = 0; items[i] != NULL; i++) {
		g_auto(GStrv) parts = g_strsplit(items[i], ";", -1);
		const char *type = g_strstrip(parts[0]);
		double q = 1;

		for (guint j = 1; parts[j] != NULL; j++) {
			const char *param = g_strstrip(parts[j]);
			if (g_ascii_strncasecmp(param, "q=", 2) == 0) {
				char *end = NULL;
				q = g_ascii_strtod(param + 2, &end);
				if (end == param + 2 || *end != '\0' || isnan(q))
					q = 0; /* unreadable: not an acceptance */
				q = CLAMP(q, 0, 1);
			}
		}
		if (g_ascii_strcasecmp(type, "application/openmetrics-text") == 0)
			om = MAX(om, q);
		else if (g_ascii_strcasecmp(type, "text/plain") == 0 ||
			 g_ascii_strcasecmp(type, "text/*") == 0 || strcmp(type, "*/*") == 0)
			text = MAX(text, q);
	}
	return om > 0 && om >= text;
}

/* ------------------------------------------------------------ from a server */

char *
gh_metrics_text(GhServer *server, const GhSnapshot *snap, gboolean openmetrics)
{
	g_autoptr(GhConfig) cfg = gh_server_get_config(server);
	GhAuthCoreStats auth = {0};
	GhMetricsInput in = {0};

	gh_auth_core_stats(gh_server_get_auth_core(server), &auth);
	in.config = cfg;
	in.snap = snap;
	in.auth = &auth;
	in.started = gh_server_started(server);
	in.generation = gh_server_generation(server);
	gh_server_reloads(server, &in.reloads_ok, &in.reloads_failed);
	in.version = PACKAGE_VERSION;
	return gh_metrics_render(&in, openmetrics);
}

/* ------------------------------------------------------------ the endpoint */

/* Connections the endpoint holds at once; one more is closed at once.  The
 * process's descriptors are the mail clients' first: a scraper that opens
 * connections and never closes them must not take them. */
#define GH_METRICS_MAX_CONNECTIONS 64
/* A connection that sends nothing for this long is closed (longer than any
 * usual scrape interval, so that a scraper's keep-alive connection stays). */
#define GH_METRICS_IDLE_TIMEOUT 120

struct _GhMetricsServer {
	GhServer *server;
	SoupServer *soup;
	GSocketService *service;
	GList *pending;   /* of Scrape: waiting for their snapshot */
	GPtrArray *conns; /* GSocketConnection (weak references): open now */
	gboolean full;    /* refusing connections (logged once per spell) */
	guint16 port;
};

/* One GET or HEAD of /metrics waiting for its snapshot.  Freed by the
 * snapshot's callback, whatever happened to the client meanwhile. */
typedef struct {
	GhMetricsServer *ms;    /* NULL once the endpoint is freed */
	GhServer *server;       /* outlives the endpoint */
	SoupServerMessage *msg; /* (owned) paused; NULL once the client is gone */
	gulong disconnected_id;
	gboolean openmetrics;
} Scrape;

static void
scrape_drop_message(Scrape *sc)
{
	if (sc->msg == NULL)
		return;
	g_signal_handler_disconnect(sc->msg, sc->disconnected_id);
	g_clear_object(&sc->msg);
}

static void
on_scrape_disconnected(SoupServerMessage *msg, gpointer data)
{
	Scrape *sc = data;

	/* libsoup has let go of the connection: unpausing now would be a
	 * critical on a message without I/O */
	g_debug("metrics: a client went away before its answer");
	scrape_drop_message(sc);
}

static void
on_snapshot(const GhSnapshot *snap, gpointer data)
{
	Scrape *sc = data;

	if (sc->msg != NULL) {
		char *text = gh_metrics_text(sc->server, snap, sc->openmetrics);
		soup_server_message_set_status(sc->msg, SOUP_STATUS_OK, NULL);
		soup_server_message_set_response(sc->msg,
						 sc->openmetrics
						     ? GH_METRICS_CONTENT_TYPE_OPENMETRICS
						     : GH_METRICS_CONTENT_TYPE_TEXT,
						 SOUP_MEMORY_TAKE, text, strlen(text));
		soup_server_message_unpause(sc->msg);
	}
	scrape_drop_message(sc);
	if (sc->ms != NULL)
		sc->ms->pending = g_list_remove(sc->ms->pending, sc);
	g_free(sc);
}

static void
answer_plain(SoupServerMessage *msg, guint status, const char *text)
{
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, "text/plain; charset=utf-8", SOUP_MEMORY_COPY, text,
					 strlen(text));
}

static void
on_request(
    SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data)
{
	GhMetricsServer *ms = data;
	const char *method = soup_server_message_get_method(msg);
	const char *accept;
	Scrape *sc;

	if (strcmp(path, "/metrics") != 0) {
		answer_plain(msg, SOUP_STATUS_NOT_FOUND,
			     "not found: the metrics are at /metrics\n");
		return;
	}
	if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
		soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow",
					     "GET, HEAD");
		answer_plain(msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
			     "method not allowed: GET or HEAD /metrics\n");
		return;
	}
	accept =
	    soup_message_headers_get_list(soup_server_message_get_request_headers(msg), "Accept");
	sc = g_new0(Scrape, 1);
	sc->ms = ms;
	sc->server = ms->server;
	sc->openmetrics = gh_metrics_accept_openmetrics(accept);
	sc->msg = g_object_ref(msg);
	sc->disconnected_id =
	    g_signal_connect(msg, "disconnected", G_CALLBACK(on_scrape_disconnected), sc);
	ms->pending = g_list_prepend(ms->pending, sc);
	/* pause before asking: the answer may come before this returns */
	soup_server_message_pause(msg);
	gh_server_snapshot(ms->server, FALSE, on_snapshot, sc);
}

static void
on_connection_gone(gpointer data, GObject *gone)
{
	GhMetricsServer *ms = data;

	g_ptr_array_remove_fast(ms->conns, gone);
}

/* The endpoint accepts connections itself and hands each to the SoupServer
 * (soup_server_accept_iostream), which does all of HTTP on it: libsoup 3.2's
 * own listener leaks the GSocket of every connection it accepts (fixed in
 * libsoup 3.4, "soup-listener: Plug a leak"), and this way the number of
 * connections has a bound and an idle one a timeout. */
static gboolean
on_incoming(GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
	GhMetricsServer *ms = data;
	g_autoptr(GSocketAddress) local = NULL;
	g_autoptr(GSocketAddress) remote = NULL;
	g_autoptr(GError) error = NULL;

	if (ms->conns->len >= GH_METRICS_MAX_CONNECTIONS) {
		if (!ms->full)
			g_warning("metrics: %u connections open, refusing more until one closes",
				  ms->conns->len);
		ms->full = TRUE;
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
		return TRUE;
	}
	ms->full = FALSE;
	local = g_socket_connection_get_local_address(conn, NULL);
	remote = g_socket_connection_get_remote_address(conn, NULL);
	if (local == NULL || remote == NULL) {
		/* gone already (the remote address of a reset connection) */
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
		return TRUE;
	}
	g_socket_set_timeout(g_socket_connection_get_socket(conn), GH_METRICS_IDLE_TIMEOUT);
	if (!soup_server_accept_iostream(ms->soup, G_IO_STREAM(conn), local, remote, &error)) {
		g_debug("metrics: cannot serve a connection: %s", error->message);
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
		return TRUE;
	}
	/* libsoup holds it now; it is gone when libsoup lets go of it */
	g_object_weak_ref(G_OBJECT(conn), on_connection_gone, ms);
	g_ptr_array_add(ms->conns, conn);
	return TRUE;
}

static char *
host_port_text(const char *host, guint port)
{
	if (strchr(host, ':') != NULL)
		return g_strdup_printf("[%s]:%u", host, port);
	return g_strdup_printf("%s:%u", host, port);
}

/* Listen on `listen`; the port in *port_out (the kernel's choice for 0).
 * "*" is 0.0.0.0, IPv4 only, as for the listeners; "[::]" is GLib's
 * dual-stack socket, IPv6 and IPv4. */
static gboolean
service_listen(GSocketListener *listener,
	       const GhHostPort *listen,
	       guint16 *port_out,
	       GError **error)
{
	const char *host = strcmp(listen->host, "*") == 0 ? "0.0.0.0" : listen->host;
	g_autoptr(GSocketAddress) addr = g_inet_socket_address_new_from_string(host, listen->port);
	g_autoptr(GSocketAddress) effective = NULL;

	if (addr == NULL) {
		g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
				    "not an IP address");
		return FALSE;
	}
	if (!g_socket_listener_add_address(listener, addr, G_SOCKET_TYPE_STREAM,
					   G_SOCKET_PROTOCOL_TCP, NULL, &effective, error))
		return FALSE;
	*port_out = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(effective));
	return TRUE;
}

GhMetricsServer *
gh_metrics_server_new(GhServer *server, const GhHostPort *listen, GError **error)
{
	g_autoptr(GhMetricsServer) ms = NULL;
	g_autoptr(GError) local = NULL;
	g_autofree char *where = NULL;

	g_return_val_if_fail(server != NULL && listen != NULL && listen->host != NULL, NULL);

	ms = g_new0(GhMetricsServer, 1);
	ms->server = server;
	ms->conns = g_ptr_array_new();
	ms->soup = soup_server_new("server-header", "gatehoused", NULL);
	soup_server_add_handler(ms->soup, NULL, on_request, ms, NULL);
	ms->service = g_socket_service_new();
	g_socket_listener_set_backlog(G_SOCKET_LISTENER(ms->service), GH_METRICS_MAX_CONNECTIONS);
	if (!service_listen(G_SOCKET_LISTENER(ms->service), listen, &ms->port, &local)) {
		g_autofree char *asked = host_port_text(listen->host, listen->port);
		g_set_error(error, local->domain, local->code,
			    "metrics endpoint: cannot listen on %s: %s", asked, local->message);
		return NULL;
	}
	g_signal_connect(ms->service, "incoming", G_CALLBACK(on_incoming), ms);
	g_socket_service_start(ms->service);
	where = host_port_text(listen->host, ms->port);
	g_message("metrics: serving /metrics on %s", where);
	return g_steal_pointer(&ms);
}

guint16
gh_metrics_server_port(GhMetricsServer *ms)
{
	g_return_val_if_fail(ms != NULL, 0);
	return ms->port;
}

void
gh_metrics_server_free(GhMetricsServer *ms)
{
	if (ms == NULL)
		return;
	/* the scrapes stay until their snapshot comes; they only forget
	 * their client and this endpoint */
	for (GList *l = ms->pending; l != NULL; l = l->next) {
		Scrape *sc = l->data;
		scrape_drop_message(sc);
		sc->ms = NULL;
	}
	g_clear_pointer(&ms->pending, g_list_free);
	if (ms->service != NULL) {
		g_signal_handlers_disconnect_by_data(ms->service, ms);
		g_socket_service_stop(ms->service);
		g_socket_listener_close(G_SOCKET_LISTENER(ms->service));
		g_clear_object(&ms->service);
	}
	/* what libsoup still holds is closed and let go of below: nothing
	 * may tell this endpoint any more */
	for (guint i = 0; i < ms->conns->len; i++)
		g_object_weak_unref(g_ptr_array_index(ms->conns, i), on_connection_gone, ms);
	g_ptr_array_unref(ms->conns);
	if (ms->soup != NULL) {
		soup_server_disconnect(ms->soup);
		g_object_unref(ms->soup);
	}
	g_free(ms);
}
