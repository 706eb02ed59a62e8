/*
 * log.h: where gatehoused's log lines go, and how untrusted text is made
 * safe to log.
 *
 * Under systemd (JOURNAL_STREAM names our stderr) lines go to the journal
 * with structured fields (GH_SESSION, GH_USER, GH_REMOTE, ...); otherwise to
 * stderr as "TIME gatehoused[PID]: LEVEL: DOMAIN: message".  Debug lines are
 * dropped unless gh_log_init() was told otherwise (-d).
 */
#pragma once

#include <glib.h>

/* Install the writer.  `program` names the process in stderr lines and is
 * the journal's SYSLOG_IDENTIFIER. */
void gh_log_init(const char *program, gboolean debug);

/* The journal (log.c, "the journal"): when stderr is a journal stream,
 * gh_log_init() sends entries to the native socket beside it;
 * gh_log_use_journal() names that socket directly (tests).  FALSE if no
 * socket could be made. */
gboolean gh_log_use_journal(const char *socket_path);
/* The calling thread (an I/O thread) keeps its journal entries and sends
 * them together, a few milliseconds later: one system call and one wake-up
 * of journald for many entries, and never a wait on journald.  Its loop
 * calls gh_log_flush_due() before it sleeps: that sends what is due and
 * says in how many milliseconds to call again (-1: nothing held).
 * gh_log_release_thread() sends what is held, waiting if it must, and
 * stops holding (the thread's end).  Without a journal these do nothing. */
void gh_log_hold_thread(void);
gint gh_log_flush_due(void);
void gh_log_release_thread(void);
/* One field of an entry in journald's native protocol, appended to out
 * (length -1: value is a string). */
void gh_log_journal_field(GString *out, const char *key, const char *value, gssize length);
gboolean gh_log_debug_enabled(void);
/* Drop everything below warnings (gatehousectl without -v: the answer and
 * nothing else). */
void gh_log_set_quiet(gboolean quiet);
/* g_debug() formats its message before the writer can drop it: on the
 * per-session paths, ask first. */
#define gh_debug(...)                                                                              \
	G_STMT_START                                                                               \
	{                                                                                          \
		if (G_UNLIKELY(gh_log_debug_enabled()))                                            \
			g_debug(__VA_ARGS__);                                                      \
	}                                                                                          \
	G_STMT_END

/* Make client-supplied text safe for a log line: bytes outside printable
 * ASCII, and '"' and '\\', become \xHH escapes; the result is cut at
 * `max` input bytes with "..." appended.  (transfer full) */
char *gh_log_escape(const char *text, gsize len, gsize max);

/* One log line per login attempt (gatehoused(8), LOGGING).  Fields may be NULL
 * ("-" is logged).  Logged at INFO with structured fields for the journal. */
typedef struct {
	const char *session_id;
	const char *protocol;
	const char *listener;
	const char *remote;
	const char *user; /* raw, escaped here */
	const char *mechanism;
	const char *tls; /* "no" or e.g. "TLS1.3/AES-256-GCM" */
	const char *instance;
	const char *module;
	const char *verdict;
	const char *reason;
	const char *backend;
	gboolean cached;
	gint64 elapsed_us;
} GhLoginLog;
void gh_log_login(const GhLoginLog *l);

/* The line of a proxied session's end (gatehoused(8), LOGGING), at the
 * level of g_message in `domain`. */
typedef struct {
	const char *domain; /* G_LOG_DOMAIN of the caller */
	const char *session_id;
	const char *protocol;
	const char *listener;
	const char *remote;
	const char *user; /* canonical, raw (escaped here), or NULL */
	const char *backend;
	guint64 client_bytes;
	guint64 backend_bytes;
	gint64 duration_us;
	const char *reason; /* ours: not escaped */
} GhSessionEndLog;
void gh_log_session_end(const GhSessionEndLog *e);
