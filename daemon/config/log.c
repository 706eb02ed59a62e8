/*
 * log.c: the GLib log writer of gatehoused and gatehousectl.
 *
 * Invariant: nothing here ever receives a password; callers pass user names
 * and reasons only, and client text goes through gh_log_escape() first.
 */
#include "gh-build.h"

#include "config/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static gboolean log_debug;
static gboolean log_quiet;
static gboolean log_journal;
static char *log_program;
static char log_pid[24]; /* "[PID]: ", made once: gatehoused never forks */

void
gh_log_set_quiet(gboolean quiet)
{
	log_quiet = quiet;
}

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

/* "2026-11-29T08:30:41.952" into buf (24 bytes): the date and time part is
 * formatted once per second per thread; logging runs on every login. */
static void
format_stamp(char *buf, gsize size)
{
	static __thread time_t cached_sec = -1;
	static __thread char cached[24];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		localtime_r(&ts.tv_sec, &tm);
		strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	g_snprintf(buf, size, "%s.%03ld", cached, (long)(ts.tv_nsec / 1000000));
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	const char *message = NULL;
	const char *domain = NULL;
	char stamp[32];
	g_autofree char *line = NULL;
	gsize len, off = 0;

	if ((level & G_LOG_LEVEL_DEBUG) && !log_debug)
		return G_LOG_WRITER_HANDLED;
	if (log_quiet && (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG)))
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
	format_stamp(stamp, sizeof stamp);
	{
		/* "STAMP PROGRAM[PID]: LEVEL: DOMAIN: MESSAGE\n", joined by hand:
		 * this runs twice per login, printf is most of its cost */
		const char *parts[] = {stamp,
				       " ",
				       log_program != NULL ? log_program : "gatehouse",
				       log_pid,
				       level_name(level),
				       ": ",
				       domain != NULL ? domain : "",
				       domain != NULL ? ": " : "",
				       message != NULL ? message : "",
				       "\n"};
		gsize lens[G_N_ELEMENTS(parts)];
		gsize total = 0;
		for (gsize i = 0; i < G_N_ELEMENTS(parts); i++)
			total += lens[i] = strlen(parts[i]);
		line = g_malloc(total + 1);
		len = 0;
		for (gsize i = 0; i < G_N_ELEMENTS(parts); i++) {
			memcpy(line + len, parts[i], lens[i]);
			len += lens[i];
		}
		line[len] = '\0';
	}
	/* one write(2) per line, so lines from several threads never mix */
	while (off < len) {
		ssize_t n = write(STDERR_FILENO, line + off, len - off);
		if (n > 0)
			off += (gsize)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			break; /* nowhere to log to: never block or spin on it */
	}
	return G_LOG_WRITER_HANDLED;
}

void
gh_log_init(const char *program, gboolean debug)
{
	g_free(log_program);
	log_program = g_strdup(program);
	log_debug = debug;
	g_snprintf(log_pid, sizeof log_pid, "[%d]: ", (int)getpid());
	log_journal = g_log_writer_is_journald(fileno(stderr));
	g_log_set_writer_func(writer, NULL, NULL);
}

/* What the log shows as \xNN: controls, non-ASCII, and the quote and
 * backslash that would make a quoted field ambiguous. */
static inline gboolean
must_escape(guchar c)
{
	return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

char *
gh_log_escape(const char *text, gsize len, gsize max)
{
	GString *out;
	gsize n;

	if (text == NULL)
		return g_strdup("-");
	n = MIN(len, max);
	{
		/* nearly always nothing to escape: one copy */
		gsize i = 0;
		while (i < n && !must_escape((guchar)text[i]))
			i++;
		if (i == n && len <= max)
			return g_strndup(text, n);
	}
	out = g_string_sized_new(n + 8);
	for (gsize i = 0; i < n; i++) {
		guchar c = (guchar)text[i];
		if (must_escape(c)) {
			static const char hex[] = "0123456789abcdef";
			char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xf]};
			g_string_append_len(out, e, sizeof(e));
		} else
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
	/* milliseconds with one decimal, rounded, without floating point */
	guint64 tenths = ((guint64)MAX(l->elapsed_us, 0) + 50) / 100;
	g_autofree char *elapsed =
	    g_strdup_printf("%" G_GUINT64_FORMAT ".%u", tenths / 10, (guint)(tenths % 10));
	g_autofree char *msg = NULL;

	msg = g_strdup_printf(
	    "login: session=%s proto=%s listener=%s remote=%s user=\"%s\" "
	    "mech=%s tls=%s module=%s%s%s%s verdict=%s reason=\"%s\" "
	    "backend=%s cached=%s ms=%s",
	    dash(l->session_id), dash(l->protocol), dash(l->listener), dash(l->remote), user,
	    dash(l->mechanism), dash(l->tls), dash(l->instance), l->module != NULL ? "(" : "",
	    l->module != NULL ? l->module : "", l->module != NULL ? ")" : "", dash(l->verdict),
	    reason, dash(l->backend), l->cached ? "yes" : "no", elapsed);
	{
		/* the fields as they are: g_log_structured would format them
		 * all once more */
		const GLogField fields[] = {
		    {"GLIB_DOMAIN", "gh-login", -1},
		    {"PRIORITY", "6", -1}, /* info */
		    {"MESSAGE", msg, -1},
		    {"GH_SESSION", dash(l->session_id), -1},
		    {"GH_PROTOCOL", dash(l->protocol), -1},
		    {"GH_LISTENER", dash(l->listener), -1},
		    {"GH_REMOTE", dash(l->remote), -1},
		    {"GH_USER", user, -1},
		    {"GH_VERDICT", dash(l->verdict), -1},
		    {"GH_MODULE", dash(l->instance), -1},
		};
		g_log_structured_array(G_LOG_LEVEL_INFO, fields, G_N_ELEMENTS(fields));
	}
}
