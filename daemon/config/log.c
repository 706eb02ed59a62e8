/*
 * log.c: the GLib log writer of gatehoused and gatehousectl.
 *
 * Invariant: nothing here ever receives a password; callers pass user names
 * and reasons only, and client text goes through gh_log_escape() first.
 */
#include "gh-build.h"

#include "config/log.h"
#include "common/line.h"

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

/* ------------------------------------------------------------ line building
 *
 * The two lines of every login (the login line, the session-end line) are
 * built here in a fixed buffer on the stack: no printf, no allocation.  A
 * line that would not fit is cut (and ends in "..."), never overrun. */

#define GH_LOG_LINE_MAX                                                                            \
	4096 /* a login line at its longest: user 256 and reason 512 bytes, all escaped */

typedef struct {
	char buf[GH_LOG_LINE_MAX];
	gsize len;
} Line;

static void
line_add_len(Line *b, const char *s, gsize n)
{
	gsize room = sizeof b->buf - 1 - b->len;

	if (n > room) {
		n = room;
		if (room >= 3) {
			memcpy(b->buf + b->len, s, room - 3);
			memcpy(b->buf + b->len + room - 3, "...", 3);
			b->len += room;
			b->buf[b->len] = '\0';
			return;
		}
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void
line_add(Line *b, const char *s)
{
	line_add_len(b, s, strlen(s));
}

static void
line_add_u64(Line *b, guint64 v)
{
	char digits[GH_LINE_U64_MAX];

	line_add_len(b, digits, gh_line_format_u64(digits, v));
}

/* What the log shows as \xNN: controls, non-ASCII, and the quote and
 * backslash that would make a quoted field ambiguous. */
static inline gboolean
must_escape(guchar c)
{
	return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

/* The escaping of gh_log_escape, its pieces handed to add(sink, ...). */
static void
escape_to(void (*add)(gpointer sink, const char *s, gsize n),
	  gpointer sink,
	  const char *text,
	  gsize len,
	  gsize max)
{
	static const char hex[] = "0123456789abcdef";
	gsize n = MIN(len, max);
	gsize start = 0;

	for (gsize i = 0; i < n; i++) {
		guchar c = (guchar)text[i];
		if (must_escape(c)) {
			char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xf]};
			add(sink, text + start, i - start);
			add(sink, e, sizeof e);
			start = i + 1;
		}
	}
	add(sink, text + start, n - start);
	if (len > max)
		add(sink, "...", 3);
}

static void
line_sink(gpointer b, const char *s, gsize n)
{
	line_add_len(b, s, n);
}

static void
line_add_escaped(Line *b, const char *text, gsize len, gsize max)
{
	escape_to(line_sink, b, text, len, max);
}

/* "2026-11-29T08:30:41.952" into buf (24 bytes): the date and time part is
 * formatted once per second per thread; logging runs on every login. */
static void
format_stamp(char *buf, gsize size)
{
	static __thread time_t cached_sec = -1;
	static __thread char cached[24];
	struct timespec ts;
	guint ms;
	gsize n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		localtime_r(&ts.tv_sec, &tm);
		strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	n = strlen(cached);
	g_assert(n + 5 <= size);
	memcpy(buf, cached, n);
	ms = (guint)(ts.tv_nsec / 1000000);
	buf[n] = '.';
	buf[n + 1] = (char)('0' + ms / 100);
	buf[n + 2] = (char)('0' + ms / 10 % 10);
	buf[n + 3] = (char)('0' + ms % 10);
	buf[n + 4] = '\0';
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	const char *message = NULL;
	const char *domain = NULL;
	char stamp[32];
	char small[GH_LOG_LINE_MAX + 256];
	g_autofree char *big = NULL;
	char *line;
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
		/* on the stack unless it is a long one */
		line = total < sizeof small ? small : (big = g_malloc(total + 1));
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

static void
string_sink(gpointer out, const char *s, gsize n)
{
	g_string_append_len(out, s, (gssize)n);
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
	escape_to(string_sink, out, text, len, max);
	return g_string_free(out, FALSE);
}

static const char *
dash(const char *s)
{
	return s != NULL && *s != '\0' ? s : "-";
}

/* Hand a line's fields to the writer: straight to it when it is ours
 * (g_log_structured_array would look up the handler and take locks for
 * every line), through GLib otherwise (a unit test, no gh_log_init). */
static void
emit(GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
	if (log_program != NULL)
		(void)writer(level, fields, n_fields, NULL);
	else
		g_log_structured_array(level, fields, n_fields);
}

/* "12.3": tenths, rounded, without floating point */
static void
line_add_tenths(Line *b, guint64 units, guint64 per_unit)
{
	guint64 tenths = (units + per_unit / 20) / (per_unit / 10);

	line_add_u64(b, tenths / 10);
	line_add(b, ".");
	line_add_u64(b, tenths % 10);
}

void
gh_log_login(const GhLoginLog *l)
{
	Line msg, user;

	msg.len = user.len = 0;
	msg.buf[0] = user.buf[0] = '\0';
	if (l->user != NULL)
		line_add_escaped(&user, l->user, strlen(l->user), 256);
	else
		line_add(&user, "-");
	line_add(&msg, "login: session=");
	line_add(&msg, dash(l->session_id));
	line_add(&msg, " proto=");
	line_add(&msg, dash(l->protocol));
	line_add(&msg, " listener=");
	line_add(&msg, dash(l->listener));
	line_add(&msg, " remote=");
	line_add(&msg, dash(l->remote));
	line_add(&msg, " user=\"");
	line_add_len(&msg, user.buf, user.len);
	line_add(&msg, "\" mech=");
	line_add(&msg, dash(l->mechanism));
	line_add(&msg, " tls=");
	line_add(&msg, dash(l->tls));
	line_add(&msg, " module=");
	line_add(&msg, dash(l->instance));
	if (l->module != NULL) {
		line_add(&msg, "(");
		line_add(&msg, l->module);
		line_add(&msg, ")");
	}
	line_add(&msg, " verdict=");
	line_add(&msg, dash(l->verdict));
	line_add(&msg, " reason=\"");
	if (l->reason != NULL)
		line_add_escaped(&msg, l->reason, strlen(l->reason), 512);
	else
		line_add(&msg, "-");
	line_add(&msg, "\" backend=");
	line_add(&msg, dash(l->backend));
	line_add(&msg, l->cached ? " cached=yes ms=" : " cached=no ms=");
	/* milliseconds with one decimal */
	line_add_tenths(&msg, (guint64)MAX(l->elapsed_us, 0), 1000);
	{
		/* the fields as they are: g_log_structured would format them
		 * all once more */
		const GLogField fields[] = {
		    {"GLIB_DOMAIN", "gh-login", -1},
		    {"PRIORITY", "6", -1}, /* info */
		    {"MESSAGE", msg.buf, -1},
		    {"GH_SESSION", dash(l->session_id), -1},
		    {"GH_PROTOCOL", dash(l->protocol), -1},
		    {"GH_LISTENER", dash(l->listener), -1},
		    {"GH_REMOTE", dash(l->remote), -1},
		    {"GH_USER", user.buf, -1},
		    {"GH_VERDICT", dash(l->verdict), -1},
		    {"GH_MODULE", dash(l->instance), -1},
		};
		emit(G_LOG_LEVEL_INFO, fields, G_N_ELEMENTS(fields));
	}
}

void
gh_log_session_end(const GhSessionEndLog *e)
{
	Line msg;

	msg.len = 0;
	msg.buf[0] = '\0';
	line_add(&msg, "session end: session=");
	line_add(&msg, dash(e->session_id));
	line_add(&msg, " proto=");
	line_add(&msg, dash(e->protocol));
	line_add(&msg, " listener=");
	line_add(&msg, dash(e->listener));
	line_add(&msg, " remote=");
	line_add(&msg, dash(e->remote));
	line_add(&msg, " user=\"");
	if (e->user != NULL)
		line_add_escaped(&msg, e->user, strlen(e->user), 256);
	else
		line_add(&msg, "-");
	line_add(&msg, "\" backend=");
	line_add(&msg, dash(e->backend));
	line_add(&msg, " client_bytes=");
	line_add_u64(&msg, e->client_bytes);
	line_add(&msg, " backend_bytes=");
	line_add_u64(&msg, e->backend_bytes);
	line_add(&msg, " duration=");
	line_add_tenths(&msg, (guint64)MAX(e->duration_us, 0), G_USEC_PER_SEC);
	line_add(&msg, "s reason=\"");
	line_add(&msg, e->reason != NULL ? e->reason : "");
	line_add(&msg, "\"");
	{
		const GLogField fields[] = {
		    {"GLIB_DOMAIN", e->domain, -1},
		    {"PRIORITY", "5", -1}, /* notice, as g_message */
		    {"MESSAGE", msg.buf, -1},
		};
		emit(G_LOG_LEVEL_MESSAGE, fields, G_N_ELEMENTS(fields));
	}
}
