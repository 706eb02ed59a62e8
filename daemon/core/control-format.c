/*
 * control-format.c: requests, filters and answers of the control socket
 * (see control-format.h).
 *
 * Invariants: every string that came from a client of the mail protocols
 * (user names) reaches an answer only as gh_session_describe escaped it;
 * requests are UTF-8 without control characters, so what is logged of them
 * is printable; the JSON comes from json-glib, never from string pasting.
 */
#include "gh-build.h"

#include "core/control-format.h"
#include "config/log.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* ------------------------------------------------------------ filters */

void
gh_session_filter_clear(GhSessionFilter *f)
{
	g_free(f->text);
	g_free(f->user);
	g_free(f->user_shown);
	g_free(f->session);
	memset(f, 0, sizeof *f);
}

gboolean
gh_session_filter_match(const GhSessionInfo *info, gpointer data)
{
	const GhSessionFilter *f = data;
	if (f->session != NULL && strcmp(info->id, f->session) != 0)
		return FALSE;
	if (f->user_shown != NULL &&
	    (info->user == NULL || g_ascii_strcasecmp(info->user, f->user_shown) != 0))
		return FALSE;
	if (f->has_remote) {
		/* as trusted_networks: an IPv4 client a dual-stack listener
		 * shows as ::ffff:a.b.c.d is in the IPv4 network */
		g_autoptr(GInetAddress) a = g_inet_address_new_from_string(info->remote);
		if (!gh_cidr_match(&f->remote, a))
			return FALSE;
	}
	return TRUE;
}

/* ------------------------------------------------------------ requests */

static const struct {
	const char *name;
	gboolean json;        /* takes "json" */
	gboolean user;        /* takes user= */
	gboolean remote;      /* takes remote= */
	gboolean session;     /* takes session= */
	gboolean needs_match; /* one of user=, remote=, session= at least */
} commands[] = {
    {"stats", TRUE, FALSE, FALSE, FALSE, FALSE},  {"sessions", TRUE, TRUE, TRUE, TRUE, FALSE},
    {"kick", TRUE, TRUE, TRUE, TRUE, TRUE},       {"flush-cache", TRUE, TRUE, FALSE, FALSE, FALSE},
    {"reload", TRUE, FALSE, FALSE, FALSE, FALSE}, {"metrics", FALSE, FALSE, FALSE, FALSE, FALSE},
};

void
gh_control_request_clear(GhControlRequest *req)
{
	g_free(req->command);
	gh_session_filter_clear(&req->filter);
	memset(req, 0, sizeof *req);
}

static gboolean
fail(GhControlRequest *req, char **why, char *text)
{
	gh_control_request_clear(req);
	*why = text;
	return FALSE;
}

gboolean
gh_control_parse_request(const char *line, GhControlRequest *req, char **why)
{
	g_autofree char *copy = g_strdup(line);
	g_auto(GStrv) words = NULL;
	gsize len = strlen(copy);
	g_autoptr(GString) text = g_string_new(NULL);
	guint cmd = G_N_ELEMENTS(commands);

	memset(req, 0, sizeof *req);
	if (len > 0 && copy[len - 1] == '\r')
		copy[--len] = '\0';
	if (!g_utf8_validate(copy, (gssize)len, NULL))
		return fail(req, why, g_strdup("malformed request: not UTF-8"));
	for (gsize i = 0; i < len; i++)
		if ((guchar)copy[i] < 0x20 && copy[i] != '\t')
			return fail(req, why, g_strdup("malformed request: control character"));
	words = g_strsplit(copy, "\t", -1);
	if (words[0] == NULL || words[0][0] == '\0')
		return fail(req, why, g_strdup("empty request"));
	for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
		if (strcmp(words[0], commands[i].name) == 0)
			cmd = i;
	if (cmd == G_N_ELEMENTS(commands)) {
		g_autofree char *shown = gh_log_escape(words[0], strlen(words[0]), 64);
		return fail(req, why, g_strdup_printf("unknown command '%s'", shown));
	}
	req->command = g_strdup(words[0]);
	for (guint i = 1; words[i] != NULL; i++) {
		const char *w = words[i];
		const char *eq = strchr(w, '=');
		const char *value = eq != NULL ? eq + 1 : NULL;
		g_autofree char *key = eq != NULL ? g_strndup(w, (gsize)(eq - w)) : g_strdup(w);
		g_autofree char *shown = gh_log_escape(w, strlen(w), 64);

		if (value == NULL && strcmp(key, "json") == 0 && commands[cmd].json) {
			req->json = TRUE;
			continue;
		}
		if (value == NULL && strcmp(key, "openmetrics") == 0 && cmd == 5) {
			req->openmetrics = TRUE;
			continue;
		}
		if (value != NULL && *value == '\0')
			return fail(req, why, g_strdup_printf("%s: empty value", key));
		if (value != NULL && strcmp(key, "user") == 0 && commands[cmd].user &&
		    req->filter.user == NULL) {
			req->filter.user = g_strdup(value);
			req->filter.user_shown = gh_log_escape(value, strlen(value), 256);
		} else if (value != NULL && strcmp(key, "session") == 0 && commands[cmd].session &&
			   req->filter.session == NULL) {
			req->filter.session = g_strdup(value);
		} else if (value != NULL && strcmp(key, "remote") == 0 && commands[cmd].remote &&
			   !req->filter.has_remote) {
			req->filter.has_remote = gh_cidr_parse(value, &req->filter.remote);
			if (!req->filter.has_remote)
				return fail(req, why,
					    g_strdup_printf("remote=%s: not an address or a "
							    "network (ADDRESS or ADDRESS/BITS)",
							    shown + strlen("remote=")));
		} else {
			return fail(req, why,
				    g_strdup_printf("%s: not an argument of %s", shown, words[0]));
		}
		if (text->len > 0)
			g_string_append_c(text, ' ');
		g_string_append(text, shown);
	}
	if (commands[cmd].needs_match && req->filter.user == NULL && req->filter.session == NULL &&
	    !req->filter.has_remote)
		return fail(req, why,
			    g_strdup_printf("%s wants user=, session= or remote=", words[0]));
	req->filter.text = g_string_free(g_steal_pointer(&text), FALSE);
	return TRUE;
}

/* ------------------------------------------------------------ text tables */

/* Rows of cells, printed in columns two spaces apart. */
typedef struct {
	GPtrArray *rows; /* of GStrv */
	guint cols;
} Table;

static void
table_init(Table *t, guint cols)
{
	t->rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
	t->cols = cols;
}

static void
table_add(Table *t, ...)
{
	va_list ap;
	char **row = g_new0(char *, t->cols + 1);
	va_start(ap, t);
	for (guint i = 0; i < t->cols; i++) {
		const char *cell = va_arg(ap, const char *);
		row[i] = g_strdup(cell != NULL ? cell : "-");
	}
	va_end(ap);
	g_ptr_array_add(t->rows, row);
}

static void
table_print(Table *t, GString *out, const char *indent)
{
	g_autofree guint *width = g_new0(guint, t->cols);
	for (guint r = 0; r < t->rows->len; r++) {
		char **row = g_ptr_array_index(t->rows, r);
		for (guint i = 0; i < t->cols; i++)
			width[i] = MAX(width[i], (guint)g_utf8_strlen(row[i], -1));
	}
	for (guint r = 0; r < t->rows->len; r++) {
		char **row = g_ptr_array_index(t->rows, r);
		GString *line = g_string_new(indent);
		for (guint i = 0; i < t->cols; i++) {
			g_string_append(line, row[i]);
			if (i + 1 < t->cols)
				for (guint pad = (guint)g_utf8_strlen(row[i], -1);
				     pad < width[i] + 2; pad++)
					g_string_append_c(line, ' ');
		}
		g_string_append(out, line->str);
		g_string_append_c(out, '\n');
		g_string_free(line, TRUE);
	}
	g_ptr_array_unref(t->rows);
}

static char *
u64(guint64 n)
{
	return g_strdup_printf("%" G_GUINT64_FORMAT, n);
}

char *
gh_control_format_age(gint64 s)
{
	s = MAX(s, 0);
	if (s >= 86400)
		return g_strdup_printf("%" G_GINT64_FORMAT "d%02" G_GINT64_FORMAT "h", s / 86400,
				       s % 86400 / 3600);
	if (s >= 3600)
		return g_strdup_printf("%" G_GINT64_FORMAT "h%02" G_GINT64_FORMAT
				       "m%02" G_GINT64_FORMAT "s",
				       s / 3600, s % 3600 / 60, s % 60);
	if (s >= 60)
		return g_strdup_printf("%" G_GINT64_FORMAT "m%02" G_GINT64_FORMAT "s", s / 60,
				       s % 60);
	return g_strdup_printf("%" G_GINT64_FORMAT "s", s);
}

static void
append_json(GString *out, JsonBuilder *b)
{
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonNode) root = json_builder_get_root(b);
	g_autofree char *text = NULL;
	json_generator_set_root(gen, root);
	json_generator_set_pretty(gen, FALSE);
	text = json_generator_to_data(gen, NULL);
	g_string_append(out, text);
	g_string_append_c(out, '\n');
}

static void
json_string_or_null(JsonBuilder *b, const char *member, const char *value)
{
	json_builder_set_member_name(b, member);
	if (value != NULL)
		json_builder_add_string_value(b, value);
	else
		json_builder_add_null_value(b);
}

static void
json_int(JsonBuilder *b, const char *member, gint64 value)
{
	json_builder_set_member_name(b, member);
	json_builder_add_int_value(b, value);
}

/* ------------------------------------------------------------ stats */

void
gh_control_stats_view_clear(GhStatsView *view)
{
	gh_config_unref(view->config);
	memset(view, 0, sizeof *view);
}

/* sessions of one listener in each state, from the GH_STAT_SESSIONS gauges */
typedef struct {
	const char *listener;
	guint64 n[3];
} ListenerCount;

static void
count_listener(const char *const *labels, guint64 value, gpointer data)
{
	ListenerCount *lc = data;
	if (g_strcmp0(labels[1], lc->listener) != 0)
		return;
	for (guint s = GH_SESSION_PRE_LOGIN; s <= GH_SESSION_PROXIED; s++)
		if (g_strcmp0(labels[2], gh_session_state_to_string(s)) == 0)
			lc->n[s] += value;
}

/* every series of a family as rows: its labels, then its value */
typedef struct {
	Table *table;
	JsonBuilder *json;
	const char *const *names; /* label names, for JSON */
	guint n_labels;
	const char *value_name;
} RowsData;

static void
add_row(const char *const *labels, guint64 value, gpointer data)
{
	RowsData *d = data;
	if (d->json != NULL) {
		json_builder_begin_object(d->json);
		for (guint i = 0; i < d->n_labels; i++)
			json_string_or_null(d->json, d->names[i], labels[i]);
		json_int(d->json, d->value_name, (gint64)value);
		json_builder_end_object(d->json);
		return;
	}
	g_autofree char *v = u64(value);
	switch (d->n_labels) {
	case 1:
		table_add(d->table, labels[0], v);
		break;
	case 2:
		table_add(d->table, labels[0], labels[1], v);
		break;
	default:
		table_add(d->table, labels[0], labels[1], labels[2], labels[3], v);
		break;
	}
}

static const char *const login_labels[] = {"protocol", "listener", "module", "verdict"};
static const char *const failure_labels[] = {"backend", "server"};
static const char *const warm_labels[] = {"backend", "result"};
static const char *const relay_labels[] = {"protocol", "direction"};
static const char *const kicked_labels[] = {"protocol"};
static const char *const kept_labels[] = {"backend"};

/* "member": [{label: value, ..., value_name: n}, ...], one per series */
static void
json_family(JsonBuilder *b,
	    const char *member,
	    const GhStats *st,
	    GhStatFamily family,
	    const char *const *names,
	    guint n_labels,
	    const char *value_name)
{
	RowsData d = {.json = b, .names = names, .n_labels = n_labels, .value_name = value_name};
	json_builder_set_member_name(b, member);
	json_builder_begin_array(b);
	gh_stats_foreach(st, family, add_row, &d);
	json_builder_end_array(b);
}

static void
stats_json(GString *out, const GhStatsView *v)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	guint64 lookups = v->auth.cache_hits + v->auth.cache_misses;

	json_builder_begin_object(b);
	json_string_or_null(b, "version", v->version);
	json_int(b, "started", v->started);
	json_int(b, "uptime_seconds", v->now - v->started);
	json_int(b, "config_generation", v->generation);
	json_int(b, "reloads_ok", v->reloads_ok);
	json_int(b, "reloads_failed", v->reloads_failed);
	json_int(b, "sessions_open", v->n_sessions);
	json_builder_set_member_name(b, "sessions");
	json_builder_begin_array(b);
	for (guint i = 0; i < v->config->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(v->config->listeners, i);
		ListenerCount c = {.listener = lc->name};
		gh_stats_foreach(v->stats, GH_STAT_SESSIONS, count_listener, &c);
		json_builder_begin_object(b);
		json_string_or_null(b, "listener", lc->name);
		json_string_or_null(b, "protocol", gh_protocol_to_string(lc->protocol));
		for (guint s = GH_SESSION_PRE_LOGIN; s <= GH_SESSION_PROXIED; s++)
			json_int(b, gh_session_state_to_string(s), (gint64)c.n[s]);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);

	json_family(b, "logins", v->stats, GH_STAT_LOGINS, login_labels, 4, "count");

	json_builder_set_member_name(b, "auth");
	json_builder_begin_object(b);
	json_int(b, "workers", v->auth.workers);
	json_int(b, "running", v->auth.running);
	json_int(b, "queued", v->auth.queued);
	json_int(b, "queue_max", v->auth.queue_max);
	json_int(b, "cache_entries", v->auth.cache_entries);
	json_int(b, "cache_max", v->auth.cache_max);
	json_int(b, "cache_hits", (gint64)v->auth.cache_hits);
	json_int(b, "cache_misses", (gint64)v->auth.cache_misses);
	json_builder_set_member_name(b, "cache_hit_rate");
	if (lookups > 0)
		json_builder_add_double_value(b, (double)v->auth.cache_hits / (double)lookups);
	else
		json_builder_add_null_value(b);
	json_int(b, "penalty_addresses", v->auth.penalty_entries);
	json_builder_end_object(b);

	json_family(b, "relay_bytes", v->stats, GH_STAT_RELAY_BYTES, relay_labels, 2, "bytes");
	json_family(b, "backend_failures", v->stats, GH_STAT_BACKEND_FAILURES, failure_labels, 2,
		    "count");
	json_family(b, "kicked", v->stats, GH_STAT_KICKED, kicked_labels, 1, "count");
	json_family(b, "warm_takes", v->stats, GH_STAT_WARM_TAKES, warm_labels, 2, "count");
	json_family(b, "kept", v->stats, GH_STAT_WARM_KEPT, kept_labels, 1, "count");
	json_builder_end_object(b);
	append_json(out, b);
}

/* a family as an indented table under a title, or "TITLE: none" */
static void
family_text(GString *out,
	    const GhStats *st,
	    GhStatFamily family,
	    const char *title,
	    const char *const *header,
	    guint n_labels)
{
	Table t;
	RowsData d = {.table = &t, .n_labels = n_labels};
	table_init(&t, n_labels + 1);
	if (n_labels == 1)
		table_add(&t, header[0], header[1]);
	else if (n_labels == 2)
		table_add(&t, header[0], header[1], header[2]);
	else
		table_add(&t, header[0], header[1], header[2], header[3], header[4]);
	gh_stats_foreach(st, family, add_row, &d);
	if (t.rows->len == 1) {
		g_string_append_printf(out, "%s: none\n", title);
		g_ptr_array_unref(t.rows);
		return;
	}
	g_string_append_printf(out, "%s:\n", title);
	table_print(&t, out, "  ");
}

void
gh_control_format_stats(GString *out, const GhStatsView *v, gboolean json)
{
	static const char *const login_header[] = {"PROTOCOL", "LISTENER", "MODULE", "VERDICT",
						   "COUNT"};
	static const char *const relay_header[] = {"PROTOCOL", "DIRECTION", "BYTES"};
	static const char *const failure_header[] = {"BACKEND", "SERVER", "FAILURES"};
	static const char *const kicked_header[] = {"PROTOCOL", "KICKED"};
	static const char *const warm_header[] = {"BACKEND", "RESULT", "TAKES"};
	static const char *const kept_header[] = {"BACKEND", "KEPT"};
	g_autofree char *uptime = gh_control_format_age(v->now - v->started);
	g_autoptr(GDateTime) started = g_date_time_new_from_unix_utc(v->started);
	g_autofree char *since = g_date_time_format(started, "%Y-%m-%d %H:%M:%S UTC");
	guint64 lookups = v->auth.cache_hits + v->auth.cache_misses;
	Table t;

	if (json) {
		stats_json(out, v);
		return;
	}
	g_string_append_printf(out, "gatehoused %s, up %s (since %s)\n", v->version, uptime, since);
	g_string_append_printf(out, "config generation %u (%u reload%s, %u refused)\n",
			       v->generation, v->reloads_ok, v->reloads_ok == 1 ? "" : "s",
			       v->reloads_failed);
	g_string_append_printf(out, "sessions: %u open\n", v->n_sessions);
	table_init(&t, 5);
	table_add(&t, "LISTENER", "PROTOCOL", "PRE-LOGIN", "LOGGING-IN", "PROXIED");
	for (guint i = 0; i < v->config->listeners->len; i++) {
		const GhListenerConfig *lc = g_ptr_array_index(v->config->listeners, i);
		ListenerCount c = {.listener = lc->name};
		g_autofree char *a = NULL, *b = NULL, *p = NULL;
		gh_stats_foreach(v->stats, GH_STAT_SESSIONS, count_listener, &c);
		a = u64(c.n[GH_SESSION_PRE_LOGIN]);
		b = u64(c.n[GH_SESSION_LOGGING_IN]);
		p = u64(c.n[GH_SESSION_PROXIED]);
		table_add(&t, lc->name, gh_protocol_to_string(lc->protocol), a, b, p);
	}
	table_print(&t, out, "  ");
	family_text(out, v->stats, GH_STAT_LOGINS, "logins since start", login_header, 4);
	g_string_append_printf(out,
			       "auth: %u worker%s, %u busy, %u queued (at most %u)\n"
			       "auth cache: %u of %u entries, ",
			       v->auth.workers, v->auth.workers == 1 ? "" : "s", v->auth.running,
			       v->auth.queued, v->auth.queue_max, v->auth.cache_entries,
			       v->auth.cache_max);
	if (lookups > 0)
		g_string_append_printf(out,
				       "hit rate %.1f%% (%" G_GUINT64_FORMAT
				       " hits, %" G_GUINT64_FORMAT " misses)\n",
				       100.0 * (double)v->auth.cache_hits / (double)lookups,
				       v->auth.cache_hits, v->auth.cache_misses);
	else
		g_string_append(out, "no lookups yet\n");
	g_string_append_printf(out, "failure penalties: %u client address%s\n",
			       v->auth.penalty_entries, v->auth.penalty_entries == 1 ? "" : "es");
	family_text(out, v->stats, GH_STAT_RELAY_BYTES, "bytes relayed", relay_header, 2);
	family_text(out, v->stats, GH_STAT_BACKEND_FAILURES, "backend connect failures",
		    failure_header, 2);
	family_text(out, v->stats, GH_STAT_KICKED, "sessions kicked", kicked_header, 1);
	/* only where warm_connections are in use */
	if (gh_stats_sum(v->stats, GH_STAT_WARM_TAKES, NULL) > 0)
		family_text(out, v->stats, GH_STAT_WARM_TAKES, "warm connection takes", warm_header,
			    2);
	/* only where reuse_connections keeps some */
	if (gh_stats_sum(v->stats, GH_STAT_WARM_KEPT, NULL) > 0)
		family_text(out, v->stats, GH_STAT_WARM_KEPT, "connections kept after QUIT",
			    kept_header, 1);
}

/* ------------------------------------------------------------ sessions */

/* " " as "\x20", the escape gh_log_escape uses for other bytes */
static char *
replace_blanks(const char *text)
{
	g_auto(GStrv) parts = g_strsplit(text, " ", -1);
	return g_strjoinv("\\x20", parts);
}

void
gh_control_format_sessions(GString *out,
			   const GhSnapshot *snap,
			   const GhSessionFilter *filter,
			   guint max_rows,
			   gboolean json)
{
	g_autoptr(JsonBuilder) b = json ? json_builder_new() : NULL;
	guint shown = 0, more = 0;
	Table t;

	if (json) {
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "sessions");
		json_builder_begin_array(b);
	} else {
		table_init(&t, 11);
		table_add(&t, "ID", "PROTO", "LISTENER", "REMOTE", "USER", "STATE", "BACKEND",
			  "AGE", "UP", "DOWN", "TLS");
	}
	for (guint i = 0; snap->sessions != NULL && i < snap->sessions->len; i++) {
		const GhSessionInfo *s = &g_array_index(snap->sessions, GhSessionInfo, i);
		gint64 age = (snap->now_us - s->started_us) / G_USEC_PER_SEC;
		if (!gh_session_filter_match(s, (gpointer)filter))
			continue;
		if (shown == max_rows) {
			more++;
			continue;
		}
		shown++;
		if (json) {
			json_builder_begin_object(b);
			json_string_or_null(b, "id", s->id);
			json_string_or_null(b, "protocol", s->protocol);
			json_string_or_null(b, "listener", s->listener);
			json_string_or_null(b, "remote", s->remote);
			json_string_or_null(b, "user", s->user);
			json_string_or_null(b, "state", gh_session_state_to_string(s->state));
			json_string_or_null(b, "backend", s->backend);
			json_int(b, "age_seconds", age);
			json_int(b, "bytes_up", (gint64)s->bytes_up);
			json_int(b, "bytes_down", (gint64)s->bytes_down);
			json_string_or_null(b, "tls", s->tls);
			json_builder_end_object(b);
		} else {
			g_autofree char *a = gh_control_format_age(age);
			/* a blank in a name would shift the columns */
			g_autofree char *user = s->user != NULL ? replace_blanks(s->user) : NULL;
			g_autofree char *up = u64(s->bytes_up);
			g_autofree char *down = u64(s->bytes_down);
			table_add(&t, s->id, s->protocol, s->listener, s->remote, user,
				  gh_session_state_to_string(s->state), s->backend, a, up, down,
				  s->tls != NULL ? s->tls : "no");
		}
	}
	if (json) {
		json_builder_end_array(b);
		json_int(b, "not_shown", more);
		json_builder_end_object(b);
		append_json(out, b);
		return;
	}
	table_print(&t, out, "");
	if (more > 0)
		g_string_append_printf(out, "(%u more not shown)\n", more);
}

/* ------------------------------------------------------------ reload */

void
gh_control_format_reload(
    GString *out, gboolean ok, guint generation, GPtrArray *problems, gboolean json)
{
	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "reloaded");
		json_builder_add_boolean_value(b, ok);
		json_int(b, "config_generation", generation);
		json_builder_set_member_name(b, "problems");
		json_builder_begin_array(b);
		for (guint i = 0; problems != NULL && i < problems->len; i++)
			json_builder_add_string_value(b, g_ptr_array_index(problems, i));
		json_builder_end_array(b);
		json_builder_end_object(b);
		append_json(out, b);
		return;
	}
	if (ok) {
		g_string_append_printf(out, "reloaded: configuration generation %u\n", generation);
		return;
	}
	for (guint i = 0; problems != NULL && i < problems->len; i++)
		g_string_append_printf(out, "%s\n", (const char *)g_ptr_array_index(problems, i));
	g_string_append_printf(out,
			       "reload refused (%u problem%s): configuration generation %u "
			       "stays in force\n",
			       problems != NULL ? problems->len : 0,
			       problems != NULL && problems->len == 1 ? "" : "s", generation);
}
