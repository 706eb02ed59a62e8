/*
 * log.c: the GLib log writer of gatehoused and gatehousectl.
 *
 * Invariant: nothing here ever receives a password; callers pass user names
 * and reasons only, and client text goes through gh_log_escape() first.
 */
#include "gh-build.h"

#include "log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static gboolean log_debug;
static gboolean log_journal;
static char *log_program;
static GMutex log_lock;

gboolean
gh_log_debug_enabled(void)
{
	return log_debug;
}

static const char *
level_name(GLogLevelFlags level)
{
	if (level & G_LOG_LEVEL_ERROR)
		return "error";
	if (level & G_LOG_LEVEL_CRITICAL)
		return "critical";
	if (level & G_LOG_LEVEL_WARNING)
		return "warning";
	if (level & G_LOG_LEVEL_MESSAGE)
		return "notice";
	if (level & G_LOG_LEVEL_INFO)
		return "info";
	return "debug";
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	const char *message = NULL;
	const char *domain = NULL;
	g_autoptr(GDateTime) now = NULL;
	g_autofree char *stamp = NULL;

	if ((level & G_LOG_LEVEL_DEBUG) && !log_debug)
		return G_LOG_WRITER_HANDLED;
	if (log_journal &&
	    g_log_writer_journald(level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
		return G_LOG_WRITER_HANDLED;

	for (gsize i = 0; i < n_fields; i++) {
		if (g_strcmp0(fields[i].key, "MESSAGE") == 0)
			message = fields[i].value;
		else if (g_strcmp0(fields[i].key, "GLIB_DOMAIN") == 0)
			domain = fields[i].value;
	}
	now = g_date_time_new_now_local();
	stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%f");
	if (stamp != NULL && strlen(stamp) > 23)
		stamp[23] = '\0'; /* milliseconds */
	g_mutex_lock(&log_lock);
	fprintf(stderr, "%s %s[%d]: %s: %s%s%s\n", stamp != NULL ? stamp : "-",
		log_program != NULL ? log_program : "gatehouse", (int)getpid(), level_name(level),
		domain != NULL ? domain : "", domain != NULL ? ": " : "",
		message != NULL ? message : "");
	fflush(stderr);
	g_mutex_unlock(&log_lock);
	return G_LOG_WRITER_HANDLED;
}

void
gh_log_init(const char *program, gboolean debug)
{
	g_free(log_program);
	log_program = g_strdup(program);
	log_debug = debug;
	log_journal = g_log_writer_is_journald(fileno(stderr));
	g_log_set_writer_func(writer, NULL, NULL);
}

char *
gh_log_escape(const char *text, gsize len, gsize max)
{
	GString *out;
	gsize n;

	if (text == NULL)
		return g_strdup("-");
	n = MIN(len, max);
	out = g_string_sized_new(n + 8);
	for (gsize i = 0; i < n; i++) {
		guchar c = (guchar)text[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			g_string_append_printf(out, "\\x%02x", c);
		else
			g_string_append_c(out, (char)c);
	}
	if (len > max)
		g_string_append(out, "...");
	return g_string_free(out, FALSE);
}

static const char *
dash(const char *s)
{
	return s != NULL && *s != '\0' ? s : "-";
}

void
gh_log_login(const GhLoginLog *l)
{
	g_autofree char *user =
	    l->user != NULL ? gh_log_escape(l->user, strlen(l->user), 256) : g_strdup("-");
	g_autofree char *reason =
	    l->reason != NULL ? gh_log_escape(l->reason, strlen(l->reason), 512) : g_strdup("-");
	g_autofree char *elapsed = g_strdup_printf("%.1f", l->elapsed_us / 1000.0);
	g_autofree char *msg = NULL;

	msg = g_strdup_printf(
	    "login: session=%s proto=%s listener=%s remote=%s user=\"%s\" "
	    "mech=%s tls=%s module=%s%s%s%s verdict=%s reason=\"%s\" "
	    "backend=%s cached=%s ms=%s",
	    dash(l->session_id), dash(l->protocol), dash(l->listener), dash(l->remote), user,
	    dash(l->mechanism), dash(l->tls), dash(l->instance), l->module != NULL ? "(" : "",
	    l->module != NULL ? l->module : "", l->module != NULL ? ")" : "", dash(l->verdict),
	    reason, dash(l->backend), l->cached ? "yes" : "no", elapsed);
	g_log_structured("gh-login", G_LOG_LEVEL_INFO, "MESSAGE", "%s", msg, "GH_SESSION", "%s",
			 dash(l->session_id), "GH_PROTOCOL", "%s", dash(l->protocol), "GH_LISTENER",
			 "%s", dash(l->listener), "GH_REMOTE", "%s", dash(l->remote), "GH_USER",
			 "%s", user, "GH_VERDICT", "%s", dash(l->verdict), "GH_MODULE", "%s",
			 dash(l->instance));
}
