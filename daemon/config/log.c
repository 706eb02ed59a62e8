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
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static gboolean log_debug;
static gboolean log_quiet;
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

/* Each GLib level: its name in stderr lines, and the syslog priority the
 * journal wants (GLib's own mapping); the last one also stands for any
 * level below. */
static const struct {
	GLogLevelFlags flag;
	const char *name;
	const char *priority;
} levels[] = {
    {G_LOG_LEVEL_ERROR, "error", "3"},     {G_LOG_LEVEL_CRITICAL, "critical", "4"},
    {G_LOG_LEVEL_WARNING, "warning", "4"}, {G_LOG_LEVEL_MESSAGE, "notice", "5"},
    {G_LOG_LEVEL_INFO, "info", "6"},       {G_LOG_LEVEL_DEBUG, "debug", "7"},
};

static guint
level_index(GLogLevelFlags level)
{
	guint i = 0;

	while (i + 1 < G_N_ELEMENTS(levels) && !(level & levels[i].flag))
		i++;
	return i;
}

static const char *
level_name(GLogLevelFlags level)
{
	return levels[level_index(level)].name;
}

static const char *
level_priority(GLogLevelFlags level)
{
	return levels[level_index(level)].priority;
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

/* ------------------------------------------------------------ the journal
 *
 * Under systemd our stderr is a stream to journald.  Lines go instead, as
 * datagrams of journald's native protocol, to the socket beside that
 * stream (".../socket" in the stream's directory, so a LogNamespace= of
 * the unit is followed too), which keeps the structured fields.
 *
 * One datagram is one entry, and each may wake journald, which then runs
 * on the cores the sessions need.  A thread that asked for it with
 * gh_log_hold_thread() (an I/O thread) keeps its entries and sends them
 * together, in one sendmmsg(2), once the oldest has waited GH_LOG_HOLD_MS
 * or GH_LOG_BATCH are waiting: its loop asks gh_log_flush_due() before it
 * sleeps, and sleeps no longer than the answer.  Such a thread never
 * blocks on the journal: what journald has no room for yet stays held (up
 * to GH_LOG_HOLD_MAX bytes per thread) and is tried again GH_LOG_RETRY_MS
 * later; a line beyond that is dropped and counted, and the count is
 * logged as a warning once lines go out again.  Any other thread sends
 * each entry at once and waits if journald is behind, as GLib's writer
 * does.
 *
 * Invariants: a held entry is sent whole, in the order its thread logged
 * it, or dropped and counted; nothing is held by a thread that did not ask
 * to hold. */

#define GH_LOG_BATCH 64
#define GH_LOG_HOLD_MS 20
#define GH_LOG_RETRY_MS 10
#define GH_LOG_HOLD_MAX (1024 * 1024)

static int journal_fd = -1;
static struct sockaddr_un journal_addr;
static socklen_t journal_addr_len;

typedef struct {
	GString *buf;     /* the entries, one after the other */
	GArray *ends;     /* gsize: where each entry in buf ends */
	gsize sent;       /* entries of `ends` already sent (a partial flush) */
	gint64 due_us;    /* monotonic: when the held entries go out */
	gboolean no_room; /* the last try found journald full: wait for due_us */
	guint64 dropped;  /* lines dropped since the last warning */
} Held;

static __thread Held *held;

/* One field in the native protocol: KEY=value and a newline, or, for a
 * value with a newline in it, KEY, a newline, the value's length as 64 bits
 * little-endian, the value and a newline. */
void
gh_log_journal_field(GString *out, const char *key, const char *value, gssize length)
{
	gsize n = length < 0 ? strlen(value) : (gsize)length;

	g_string_append(out, key);
	if (memchr(value, '\n', n) == NULL) {
		g_string_append_c(out, '=');
		g_string_append_len(out, value, (gssize)n);
	} else {
		guint64 le = GUINT64_TO_LE((guint64)n);
		g_string_append_c(out, '\n');
		g_string_append_len(out, (const char *)&le, sizeof le);
		g_string_append_len(out, value, (gssize)n);
	}
	g_string_append_c(out, '\n');
}

/* An entry: the fields as GLib hands them (GLib's own writer sends those
 * too), SYSLOG_IDENTIFIER (so that `journalctl -t gatehoused` finds it)
 * and PRIORITY when the fields have none. */
static void
journal_entry(GString *out, GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
	gboolean priority = FALSE;

	for (gsize i = 0; i < n_fields; i++) {
		if (fields[i].value == NULL)
			continue;
		if (strcmp(fields[i].key, "PRIORITY") == 0)
			priority = TRUE;
		gh_log_journal_field(out, fields[i].key, fields[i].value, fields[i].length);
	}
	if (!priority)
		gh_log_journal_field(out, "PRIORITY", level_priority(level), -1);
	gh_log_journal_field(out, "SYSLOG_IDENTIFIER",
			     log_program != NULL ? log_program : "gatehouse", -1);
}

/* journald restarted (a connected datagram socket then has no peer):
 * connect the same descriptor to the new socket at the same path.  Any
 * thread may call it; connect(2) on one descriptor is atomic. */
static gboolean
journal_reconnect(void)
{
	return connect(journal_fd, (struct sockaddr *)&journal_addr, journal_addr_len) == 0;
}

static gboolean
journal_send_now(const char *entry, gsize len)
{
	struct iovec iov = {(void *)entry, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	gboolean again = TRUE;

	for (;;) {
		if (sendmsg(journal_fd, &mh, MSG_NOSIGNAL) >= 0)
			return TRUE;
		if (errno == EINTR)
			continue;
		if (again && journal_reconnect()) {
			again = FALSE;
			continue;
		}
		return FALSE;
	}
}

static gsize
held_entry_start(const Held *h, guint i)
{
	return i == 0 ? 0 : g_array_index(h->ends, gsize, i - 1);
}

/* Drop the entries already sent from the front of the thread's buffer. */
static void
held_compact(Held *h)
{
	gsize cut;

	if (h->sent == 0)
		return;
	cut = held_entry_start(h, h->sent);
	g_string_erase(h->buf, 0, (gssize)cut);
	g_array_remove_range(h->ends, 0, h->sent);
	for (guint i = 0; i < h->ends->len; i++)
		g_array_index(h->ends, gsize, i) -= cut;
	h->sent = 0;
}

static void held_add(Held *h, GLogLevelFlags level, const GLogField *fields, gsize n_fields);

/* The warning that says how many lines were dropped, held like any entry;
 * the count starts again. */
static void
held_add_dropped(Held *h)
{
	char text[128];
	const GLogField fields[] = {{"MESSAGE", text, -1}, {"GLIB_DOMAIN", "gh-daemon", -1}};

	g_snprintf(text, sizeof text,
		   "the journal did not keep up: %" G_GUINT64_FORMAT " log lines dropped",
		   h->dropped);
	h->dropped = 0;
	held_add(h, G_LOG_LEVEL_WARNING, fields, G_N_ELEMENTS(fields));
}

/* Send what the thread holds, as far as journald takes it; TRUE if some is
 * still held. */
static gboolean
held_flush(Held *h)
{
	gboolean reconnected = FALSE;
	gboolean went = FALSE; /* journald took some: it is there to be told */

	h->no_room = FALSE;
	while (h->sent < h->ends->len) {
		struct mmsghdr msgs[GH_LOG_BATCH];
		struct iovec iovs[GH_LOG_BATCH];
		guint n = MIN(h->ends->len - h->sent, GH_LOG_BATCH);
		int done;

		for (guint i = 0; i < n; i++) {
			gsize start = held_entry_start(h, h->sent + i);
			iovs[i].iov_base = h->buf->str + start;
			iovs[i].iov_len = g_array_index(h->ends, gsize, h->sent + i) - start;
			msgs[i] =
			    (struct mmsghdr){.msg_hdr = {.msg_iov = &iovs[i], .msg_iovlen = 1}};
		}
		done = sendmmsg(journal_fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (done > 0) {
			h->sent += (guint)done;
			went = TRUE;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
			h->no_room = TRUE; /* journald is behind: the rest waits */
			break;
		}
		if (!reconnected && journal_reconnect()) {
			reconnected = TRUE;
			continue;
		}
		/* this entry cannot go (journald gone, too big): drop it alone */
		h->sent++;
		h->dropped++;
	}
	held_compact(h);
	/* (not while nothing goes: that warning would be dropped in turn, and
	 * this would go round for ever) */
	if (h->ends->len == 0 && h->dropped > 0 && went) {
		held_add_dropped(h);
		return held_flush(h);
	}
	if (h->ends->len > 0)
		h->due_us = g_get_monotonic_time() + GH_LOG_RETRY_MS * 1000;
	return h->ends->len > 0;
}

gint
gh_log_flush_due(void)
{
	Held *h = held;
	gint64 now;

	if (h == NULL || h->ends->len == 0)
		return -1;
	now = g_get_monotonic_time();
	if (now < h->due_us)
		return (gint)((h->due_us - now + 999) / 1000);
	return held_flush(h) ? GH_LOG_RETRY_MS : -1;
}

static void
held_add(Held *h, GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
	gsize before = h->buf->len;

	journal_entry(h->buf, level, fields, n_fields);
	if (h->buf->len > GH_LOG_HOLD_MAX && h->ends->len > 0) {
		g_string_truncate(h->buf, before);
		h->dropped++;
		return;
	}
	if (h->ends->len == 0)
		h->due_us = g_get_monotonic_time() + GH_LOG_HOLD_MS * 1000;
	g_array_append_val(h->ends, h->buf->len);
	if (h->ends->len >= GH_LOG_BATCH && !h->no_room)
		(void)held_flush(h);
}

void
gh_log_hold_thread(void)
{
	if (held != NULL || journal_fd < 0)
		return;
	held = g_new0(Held, 1);
	held->buf = g_string_sized_new(8192);
	held->ends = g_array_new(FALSE, FALSE, sizeof(gsize));
}

void
gh_log_release_thread(void)
{
	Held *h = held;

	if (h == NULL)
		return;
	(void)held_flush(h);
	held = NULL;
	if (h->dropped > 0)
		held_add_dropped(h);
	/* what journald still had no room for goes the waiting way */
	for (guint i = h->sent; i < h->ends->len; i++) {
		gsize start = held_entry_start(h, i);
		(void)journal_send_now(h->buf->str + start,
				       g_array_index(h->ends, gsize, i) - start);
	}
	g_string_free(h->buf, TRUE);
	g_array_free(h->ends, TRUE);
	g_free(h);
}

static void
journal_write(GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
	if (held != NULL) {
		held_add(held, level, fields, n_fields);
	} else {
		GString *entry = g_string_sized_new(1024);
		journal_entry(entry, level, fields, n_fields);
		(void)journal_send_now(entry->str, entry->len);
		g_string_free(entry, TRUE);
	}
}

gboolean
gh_log_use_journal(const char *socket_path)
{
	gsize n = strlen(socket_path);
	int fd;

	if (n >= sizeof journal_addr.sun_path)
		return FALSE;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return FALSE;
	memset(&journal_addr, 0, sizeof journal_addr);
	journal_addr.sun_family = AF_UNIX;
	memcpy(journal_addr.sun_path, socket_path, n);
	journal_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	/* connected: the kernel finds the socket by its path once, not for
	 * every entry */
	if (connect(fd, (struct sockaddr *)&journal_addr, journal_addr_len) < 0) {
		close(fd);
		return FALSE;
	}
	if (journal_fd >= 0)
		close(journal_fd);
	journal_fd = fd;
	return TRUE;
}

/* The native socket beside the journal stream that is our stderr, or NULL
 * when stderr is not one.  (transfer full) */
static char *
journal_socket_of_stderr(void)
{
	struct sockaddr_un peer;
	socklen_t len = sizeof peer;
	const char *slash;

	if (!g_log_writer_is_journald(STDERR_FILENO))
		return NULL;
	memset(&peer, 0, sizeof peer);
	if (getpeername(STDERR_FILENO, (struct sockaddr *)&peer, &len) < 0 ||
	    peer.sun_family != AF_UNIX || peer.sun_path[0] != '/')
		return g_strdup("/run/systemd/journal/socket");
	peer.sun_path[sizeof peer.sun_path - 1] = '\0';
	slash = strrchr(peer.sun_path, '/');
	return g_strdup_printf("%.*s/socket", (int)(slash - peer.sun_path), peer.sun_path);
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

	(void)user_data;
	if ((level & G_LOG_LEVEL_DEBUG) && !log_debug)
		return G_LOG_WRITER_HANDLED;
	if (log_quiet && (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG)))
		return G_LOG_WRITER_HANDLED;
	if (journal_fd >= 0) {
		journal_write(level, fields, n_fields);
		return G_LOG_WRITER_HANDLED;
	}

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
	{
		g_autofree char *socket_path = journal_socket_of_stderr();
		if (socket_path != NULL)
			(void)gh_log_use_journal(socket_path);
	}
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
