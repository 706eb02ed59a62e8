/*
 * test-log.c: the login and session-end lines byte by byte, as
 * daemon/config/log.c builds them in place: every field, "-" for what is
 * missing, the escaping of client text (quote, backslash, controls,
 * non-ASCII), the cut at 256 (user) and 512 (reason) bytes with "...", the
 * rounding of milliseconds and seconds, the structured fields the journal
 * gets, and gh_log_escape agreeing with the in-place escaping.
 */
#include "gh-build.h"

#include "config/log.h"

#include <string.h>

typedef struct {
	GLogLevelFlags level;
	char *message;
	char *domain;
	char *user; /* GH_USER */
} Got;

static Got got;

static GLogWriterOutput
capture(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
	(void)data;
	got.level = level;
	for (gsize i = 0; i < n_fields; i++) {
		char **slot = NULL;
		if (strcmp(fields[i].key, "MESSAGE") == 0)
			slot = &got.message;
		else if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
			slot = &got.domain;
		else if (strcmp(fields[i].key, "GH_USER") == 0)
			slot = &got.user;
		if (slot != NULL) {
			g_free(*slot);
			*slot = g_strdup(fields[i].value);
		}
	}
	return G_LOG_WRITER_HANDLED;
}

static void
reset(void)
{
	g_clear_pointer(&got.message, g_free);
	g_clear_pointer(&got.domain, g_free);
	g_clear_pointer(&got.user, g_free);
}

static void
test_login_line(void)
{
	GhLoginLog l = {
	    .session_id = "AbC123",
	    .protocol = "imap",
	    .listener = "imap",
	    .remote = "192.0.2.7",
	    .user = "al\"ice\\\x01\xc3\xa4",
	    .mechanism = "PLAIN",
	    .tls = "TLS1.3/AES-256-GCM",
	    .instance = "users",
	    .module = "file",
	    .verdict = "ok",
	    .reason = "",
	    .backend = "127.0.0.1:143",
	    .cached = TRUE,
	    .elapsed_us = 1250,
	};

	reset();
	gh_log_login(&l);
	g_assert_cmpint(got.level, ==, G_LOG_LEVEL_INFO);
	g_assert_cmpstr(got.domain, ==, "gh-login");
	g_assert_cmpstr(got.message, ==,
			"login: session=AbC123 proto=imap listener=imap remote=192.0.2.7 "
			"user=\"al\\x22ice\\x5c\\x01\\xc3\\xa4\" mech=PLAIN "
			"tls=TLS1.3/AES-256-GCM module=users(file) verdict=ok reason=\"\" "
			"backend=127.0.0.1:143 cached=yes ms=1.3");
	g_assert_cmpstr(got.user, ==, "al\\x22ice\\x5c\\x01\\xc3\\xa4");
}

static void
test_login_line_missing(void)
{
	GhLoginLog l = {.verdict = "wrong-password", .reason = "bad \"pw\"", .elapsed_us = 49};

	reset();
	gh_log_login(&l);
	g_assert_cmpstr(got.message, ==,
			"login: session=- proto=- listener=- remote=- user=\"-\" mech=- tls=- "
			"module=- verdict=wrong-password reason=\"bad \\x22pw\\x22\" backend=- "
			"cached=no ms=0.0");
	g_assert_cmpstr(got.user, ==, "-");
}

static void
test_login_line_cut(void)
{
	g_autofree char *user = g_strnfill(300, 'u');
	g_autofree char *reason = g_strnfill(600, '"');
	g_autofree char *want_user = g_strconcat("user=\"", user + 44, "...\"", NULL);
	GhLoginLog l = {.user = user, .verdict = "refused", .reason = reason};
	GString *want_reason = g_string_new("reason=\"");

	for (int i = 0; i < 512; i++)
		g_string_append(want_reason, "\\x22");
	g_string_append(want_reason, "...\" backend=- cached=no ms=0.0");
	reset();
	gh_log_login(&l);
	/* 256 bytes of the user, 512 of the reason, nothing lost at the end */
	g_assert_nonnull(strstr(got.message, want_user));
	g_assert_true(g_str_has_suffix(got.message, want_reason->str));
	g_assert_cmpuint(strlen(got.user), ==, 256 + 3);
	g_string_free(want_reason, TRUE);
}

static void
test_session_end_line(void)
{
	GhSessionEndLog e = {
	    .domain = "gh-daemon",
	    .session_id = "AbC123",
	    .protocol = "smtp",
	    .listener = "submission",
	    .remote = "2001:db8::1",
	    .user = "bob@example.com",
	    .backend = "[::1]:587",
	    .client_bytes = 18446744073709551615ULL,
	    .backend_bytes = 0,
	    .duration_us = 1250000,
	    .reason = "client closed",
	};

	reset();
	gh_log_session_end(&e);
	g_assert_cmpint(got.level, ==, G_LOG_LEVEL_MESSAGE);
	g_assert_cmpstr(got.domain, ==, "gh-daemon");
	g_assert_cmpstr(got.message, ==,
			"session end: session=AbC123 proto=smtp listener=submission "
			"remote=2001:db8::1 user=\"bob@example.com\" backend=[::1]:587 "
			"client_bytes=18446744073709551615 backend_bytes=0 duration=1.3s "
			"reason=\"client closed\"");

	e.user = NULL;
	e.backend = NULL;
	e.duration_us = (gint64)3600 * G_USEC_PER_SEC + 49999;
	reset();
	gh_log_session_end(&e);
	g_assert_nonnull(strstr(got.message, " user=\"-\" backend=- "));
	g_assert_nonnull(strstr(got.message, " duration=3600.0s "));
}

static void
test_escape_agrees(void)
{
	static const char *const texts[] = {"plain", "a\"b", "\\", "\x7f\x80\xff", "", "tab\there"};

	for (guint i = 0; i < G_N_ELEMENTS(texts); i++) {
		g_autofree char *esc = gh_log_escape(texts[i], strlen(texts[i]), 4);
		g_autofree char *want = NULL;
		GhLoginLog l = {.user = texts[i]};

		reset();
		gh_log_login(&l);
		/* the login line cuts users at 256, gh_log_escape here at 4 */
		if (strlen(texts[i]) <= 4)
			g_assert_cmpstr(got.user, ==, esc);
		want = g_strdup_printf("user=\"%s\"", got.user);
		g_assert_nonnull(strstr(got.message, want));
	}
	{
		g_autofree char *e = gh_log_escape("abcdef\"", 7, 4);
		g_assert_cmpstr(e, ==, "abcd...");
		g_clear_pointer(&e, g_free);
		e = gh_log_escape("ab\"", 3, 4);
		g_assert_cmpstr(e, ==, "ab\\x22");
		g_clear_pointer(&e, g_free);
		e = gh_log_escape(NULL, 0, 4);
		g_assert_cmpstr(e, ==, "-");
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	/* not gh_log_init: the lines go through GLib to this writer */
	g_log_set_writer_func(capture, NULL, NULL);
	g_test_add_func("/log/login-line", test_login_line);
	g_test_add_func("/log/login-line-missing", test_login_line_missing);
	g_test_add_func("/log/login-line-cut", test_login_line_cut);
	g_test_add_func("/log/session-end-line", test_session_end_line);
	g_test_add_func("/log/escape-agrees", test_escape_agrees);
	return g_test_run();
}
