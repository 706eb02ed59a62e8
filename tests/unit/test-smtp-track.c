/*
 * test-smtp-track.c: the SMTP session tracker of daemon/smtp/smtp-track.c:
 * sessions that end in a QUIT the gateway may answer, and everything that
 * makes the tracker LOST (a QUIT not alone or with replies owed, smuggling
 * attempts, commands it does not follow, replies nobody asked for, long
 * lines, NUL, bare CR or LF); the counts a kept connection carries; the
 * same sessions fed a byte at a time.
 *
 * Every call gets a heap copy of exactly the bytes it may read, so valgrind
 * reports any read past `len`.
 */
#include "gh-build.h"

#include "smtp/smtp-track.h"
#include "smtp/smtp-parser.h"

#include <string.h>

#define GOING GH_SMTP_TRACK_GOING
#define QUIT GH_SMTP_TRACK_QUIT
#define LOST GH_SMTP_TRACK_LOST

/* One call with an exact-size heap copy of buf[0..len). */
static GhSmtpTrackState
feed(GhSmtpTrack *t, gboolean server, const char *buf, gsize len)
{
	g_autofree guint8 *copy = g_memdup2(buf, len);
	GhSmtpTrackState st;

	g_assert_cmpuint(len, >, 0);
	st = server ? gh_smtp_track_server(t, copy, len) : gh_smtp_track_client(t, copy, len);
	g_assert_cmpint(gh_smtp_track_state(t), ==, st);
	return st;
}

static GhSmtpTrackState
client(GhSmtpTrack *t, const char *s)
{
	return feed(t, FALSE, s, strlen(s));
}

static GhSmtpTrackState
server(GhSmtpTrack *t, const char *s)
{
	return feed(t, TRUE, s, strlen(s));
}

static void
check_counts(const GhSmtpTrack *t, guint junk, guint errors, gboolean accepted)
{
	guint j = 12345, e = 12345;
	gboolean a = 12345;

	gh_smtp_track_counts(t, &j, &e, &a);
	g_assert_cmpuint(j, ==, junk);
	g_assert_cmpuint(e, ==, errors);
	g_assert_cmpint(a, ==, accepted);
}

/* ---- scripts: a session as calls, each with the state it leaves ---- */

typedef struct {
	gboolean server;
	const char *bytes; /* NUL-free, so strlen is its length */
	GhSmtpTrackState want;
} Step;

#define C(s, w)                                                                                    \
	{                                                                                          \
		FALSE, s, w                                                                        \
	}
#define S(s, w)                                                                                    \
	{                                                                                          \
		TRUE, s, w                                                                         \
	}

static gboolean
is_quit_line(const char *s)
{
	return g_ascii_strcasecmp(s, "QUIT\r\n") == 0;
}

/* Run steps[0..n), each whole or (`bytewise`) a byte per call but for a
 * client "QUIT" CRLF line, which must come whole to be a QUIT.  Where the
 * calls are cut changes nothing else: after each step the state is the
 * same, and every call before a step's last is GOING. */
static GhSmtpTrack *
run(const Step *steps, gsize n, gboolean bytewise)
{
	GhSmtpTrack *t = gh_smtp_track_new();

	g_assert_cmpint(gh_smtp_track_state(t), ==, GOING);
	for (gsize i = 0; i < n; i++) {
		const Step *s = &steps[i];
		gsize len = strlen(s->bytes);
		GhSmtpTrackState st = GOING;

		if (!bytewise || (!s->server && is_quit_line(s->bytes))) {
			st = feed(t, s->server, s->bytes, len);
		} else {
			for (gsize k = 0; k < len; k++) {
				GhSmtpTrackState before = gh_smtp_track_state(t);

				st = feed(t, s->server, s->bytes + k, 1);
				g_assert_cmpint(st, !=, QUIT);
				if (before != GOING)
					g_assert_cmpint(st, ==, LOST);
			}
		}
		if (st != s->want)
			g_test_message("step %zu (%s): %s", i,
				       bytewise ? "a byte at a time" : "whole",
				       g_strescape(s->bytes, NULL));
		g_assert_cmpint(st, ==, s->want);
	}
	return t;
}

/* Run a script whole and a byte at a time: the same states and counts. */
static void
check_script(const Step *steps, gsize n, guint junk, guint errors, gboolean accepted)
{
	GhSmtpTrack *whole = run(steps, n, FALSE);
	GhSmtpTrack *bytes = run(steps, n, TRUE);

	check_counts(whole, junk, errors, accepted);
	check_counts(bytes, junk, errors, accepted);
	gh_smtp_track_free(whole);
	gh_smtp_track_free(bytes);
}

#define SCRIPT(steps, junk, errors, accepted)                                                      \
	check_script(steps, G_N_ELEMENTS(steps), junk, errors, accepted)

/* ---- sessions ---- */

static void
test_new(void)
{
	GhSmtpTrack *t = gh_smtp_track_new();

	g_assert_cmpint(gh_smtp_track_state(t), ==, GOING);
	check_counts(t, 0, 0, FALSE);
	gh_smtp_track_counts(t, NULL, NULL, NULL);
	gh_smtp_track_free(t);
	gh_smtp_track_free(NULL);
}

static void
test_plain_session(void)
{
	static const Step steps[] = {
	    C("MAIL FROM:<a@example.org>\r\n", GOING),
	    S("250 2.1.0 Ok\r\n", GOING),
	    C("RCPT TO:<b@example.org>\r\n", GOING),
	    S("250 2.1.5 Ok\r\n", GOING),
	    C("DATA\r\n", GOING),
	    S("354 End data with <CR><LF>.<CR><LF>\r\n", GOING),
	    C("Subject: hi\r\n", GOING),
	    C("\r\n", GOING),
	    C("QUIT\r\nEHLO x\r\n", GOING), /* a body line, not a command */
	    C(".\r\n", GOING),
	    S("250 2.0.0 Ok: queued as 4Abc\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};

	SCRIPT(steps, 0, 0, TRUE);
}

static void
test_pipelined(void)
{
	static const Step steps[] = {
	    C("MAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<b@example.org>\r\n"
	      "RCPT TO:<c@example.org>\r\nDATA\r\n",
	      GOING),
	    S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n", GOING),
	    C("Subject: hi\r\n\r\nbody\r\n.\r\n", GOING),
	    S("250 2.0.0 queued\r\n", GOING),
	    /* a second message, its body's end pipelined with the next MAIL */
	    C("mail from:<>\r\nrcpt to:<b@example.org>\r\ndata\r\n", GOING),
	    S("250 ok\r\n250 ok\r\n354 go\r\n", GOING),
	    C("x\r\n.\r\nRSET\r\nNOOP\r\n", GOING),
	    S("250 queued\r\n250 reset\r\n", GOING),
	    S("250 noop\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};

	/* the RSET and NOOP came after the accepted message */
	SCRIPT(steps, 2, 0, TRUE);
}

static void
test_commands_only(void)
{
	static const Step steps[] = {
	    C("NOOP\r\n", GOING),
	    S("250 2.0.0 Ok\r\n", GOING),
	    C("rset\r\nNoOp something\r\n", GOING),
	    S("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n", GOING),
	    C("MAIL\r\n", GOING),
	    S("501 5.5.4 Syntax: MAIL FROM:<address>\r\n", GOING),
	    C("Rcpt To:<x@y>\r\n", GOING),
	    S("503-5.5.1 Error:\r\n503 5.5.1 need MAIL command\r\n", GOING),
	    C("QuIt\r\n", QUIT),
	};

	SCRIPT(steps, 3, 2, FALSE);
}

/* ---- QUIT ---- */

static void
test_quit(void)
{
	static const char *const lines[] = {"QUIT\r\n", "quit\r\n", "Quit\r\n", "qUiT\r\n"};

	for (gsize i = 0; i < G_N_ELEMENTS(lines); i++) {
		GhSmtpTrack *t = gh_smtp_track_new();

		g_assert_cmpint(client(t, lines[i]), ==, QUIT);
		/* done: anything later is LOST, and so is the state */
		g_assert_cmpint(client(t, "NOOP\r\n"), ==, LOST);
		g_assert_cmpint(gh_smtp_track_state(t), ==, LOST);
		gh_smtp_track_free(t);

		t = gh_smtp_track_new();
		g_assert_cmpint(client(t, lines[i]), ==, QUIT);
		g_assert_cmpint(server(t, "221 2.0.0 Bye\r\n"), ==, LOST);
		gh_smtp_track_free(t);
	}
}

static void
test_quit_lost(void)
{
	static const Step with_arg[] = {C("QUIT x\r\n", LOST)};
	static const Step with_space[] = {C("QUIT \r\n", LOST)};
	static const Step longer[] = {C("QUITS\r\n", LOST)};
	static const Step pipelined[] = {C("NOOP\r\nQUIT\r\n", LOST)};
	static const Step first[] = {C("QUIT\r\nNOOP\r\n", LOST)};
	static const Step twice[] = {C("QUIT\r\nQUIT\r\n", LOST)};
	static const Step bare_lf[] = {C("QUIT\n", LOST)};
	static const Step pending[] = {
	    C("MAIL FROM:<a@b>\r\n", GOING),
	    C("QUIT\r\n", LOST),
	};
	static const Step reply_begun[] = {
	    C("NOOP\r\n", GOING),
	    S("250-first line\r\n", GOING),
	    C("QUIT\r\n", LOST),
	};
	static const Step partial[] = {
	    /* the line "NOOP QUIT" */
	    C("NOOP ", GOING),
	    C("QUIT\r\n", GOING),
	    S("250 ok\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};
	static const Step in_data_wait[] = {
	    C("DATA\r\n", GOING),
	    C("QUIT\r\n", LOST),
	};
	static const Step after_body[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r\n.\r\nQUIT\r\n", LOST),
	};
	static const Step before_body_reply[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r\n.\r\n", GOING),
	    C("QUIT\r\n", LOST),
	};
	GhSmtpTrack *t;

	SCRIPT(with_arg, 0, 0, FALSE);
	SCRIPT(with_space, 0, 0, FALSE);
	SCRIPT(longer, 0, 0, FALSE);
	SCRIPT(pipelined, 1, 0, FALSE);
	SCRIPT(first, 0, 0, FALSE);
	SCRIPT(twice, 0, 0, FALSE);
	SCRIPT(bare_lf, 0, 0, FALSE);
	SCRIPT(pending, 0, 0, FALSE);
	SCRIPT(reply_begun, 1, 0, FALSE);
	SCRIPT(partial, 1, 0, FALSE);
	SCRIPT(in_data_wait, 0, 0, FALSE);
	SCRIPT(after_body, 0, 0, FALSE);
	SCRIPT(before_body_reply, 0, 0, FALSE);

	/* split across calls: it was not sent as one */
	t = gh_smtp_track_new();
	g_assert_cmpint(client(t, "QU"), ==, GOING);
	g_assert_cmpint(client(t, "IT\r\n"), ==, LOST);
	gh_smtp_track_free(t);
	t = gh_smtp_track_new();
	g_assert_cmpint(client(t, "QUIT\r"), ==, GOING);
	g_assert_cmpint(client(t, "\n"), ==, LOST);
	gh_smtp_track_free(t);
	t = gh_smtp_track_new();
	for (const char *p = "QUIT\r\n"; *p != '\0'; p++)
		g_assert_cmpint(feed(t, FALSE, p, 1), ==, p[1] == '\0' ? LOST : GOING);
	gh_smtp_track_free(t);
}

/* ---- commands the tracker does not follow ---- */

static void
test_commands_lost(void)
{
	static const char *const lines[] = {
	    "EHLO client.example.org\r\n",
	    "HELO client.example.org\r\n",
	    "ehlo x\r\n",
	    "AUTH PLAIN dXNlcgB1c2VyAHB3\r\n",
	    "STARTTLS\r\n",
	    "BDAT 100 LAST\r\n",
	    "XCLIENT ADDR=1.2.3.4\r\n",
	    "XFORWARD NAME=x\r\n",
	    "VRFY postmaster\r\n",
	    "EXPN list\r\n",
	    "HELP\r\n",
	    "ETRN example.org\r\n",
	    "TURN\r\n",
	    "FOO\r\n",
	    "\r\n",
	    " NOOP\r\n",
	    "MAI\r\n",
	    "MAILX FROM:<a@b>\r\n",
	    "MAIL\tFROM:<a@b>\r\n",
	    "DATA x\r\n",
	    "DATA \r\n",
	    "data\tx\r\n",
	    "DATAX\r\n",
	    "NOOP\rX\r\n",
	    "NOOP\r\r\n",
	    "NOOP\n",
	    "NOOP\nX\r\n",
	};

	for (gsize i = 0; i < G_N_ELEMENTS(lines); i++) {
		const Step steps[] = {
		    C("NOOP\r\n", GOING),
		    S("250 ok\r\n", GOING),
		    C(lines[i], LOST),
		};

		g_test_message("line %zu", i);
		check_script(steps, G_N_ELEMENTS(steps), 1, 0, FALSE);
	}
}

static void
test_nul(void)
{
	GhSmtpTrack *t = gh_smtp_track_new();

	g_assert_cmpint(feed(t, FALSE, "NO\0OP\r\n", 7), ==, LOST);
	gh_smtp_track_free(t);

	t = gh_smtp_track_new();
	g_assert_cmpint(client(t, "NOOP\r\n"), ==, GOING);
	g_assert_cmpint(feed(t, TRUE, "250 o\0k\r\n", 9), ==, LOST);
	gh_smtp_track_free(t);

	t = gh_smtp_track_new();
	g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "354 go\r\n"), ==, GOING);
	g_assert_cmpint(feed(t, FALSE, "a\0b\r\n.\r\n", 8), ==, LOST);
	gh_smtp_track_free(t);
}

static void
test_line_length(void)
{
	/* 512 octets with the CRLF */
	g_autofree char *max = g_strdup_printf("MAIL FROM:<%0*d>\r\n", GH_SMTP_MAX_LINE - 14, 0);
	g_autofree char *over = g_strdup_printf("MAIL FROM:<%0*d>\r\n", GH_SMTP_MAX_LINE - 13, 0);
	g_autofree char *cr_over = g_strdup_printf("NOOP %0*d\r\n", GH_SMTP_MAX_LINE - 6, 0);
	g_autofree char *body = g_strnfill(100000, 'x');
	g_autofree char *body_line = g_strconcat(body, "\r\n", NULL);
	const Step ok[] = {C(max, GOING), S("250 ok\r\n", GOING), C("QUIT\r\n", QUIT)};
	const Step lost[] = {C(over, LOST)};
	const Step lost_at_lf[] = {C(cr_over, LOST)};
	const Step long_body[] = {
	    C("DATA\r\n", GOING), S("354 go\r\n", GOING), C(body_line, GOING),
	    C(".\r\n", GOING),    S("250 ok\r\n", GOING), C("QUIT\r\n", QUIT),
	};

	g_assert_cmpuint(strlen(max), ==, GH_SMTP_MAX_LINE);
	g_assert_cmpuint(strlen(over), ==, GH_SMTP_MAX_LINE + 1);
	g_assert_cmpuint(strlen(cr_over), ==, GH_SMTP_MAX_LINE + 1);
	check_script(ok, G_N_ELEMENTS(ok), 0, 0, FALSE);
	check_script(lost, G_N_ELEMENTS(lost), 0, 0, FALSE);
	check_script(lost_at_lf, G_N_ELEMENTS(lost_at_lf), 0, 0, FALSE);
	/* a body line has no limit */
	check_script(long_body, G_N_ELEMENTS(long_body), 0, 0, TRUE);
}

/* ---- DATA and the body ---- */

static void
test_data_refused(void)
{
	static const Step body_as_commands[] = {
	    C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", GOING),
	    S("250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n", GOING),
	    /* the "body" is read as commands, as the server reads it */
	    C("Subject: x\r\n", LOST),
	};
	static const Step commands[] = {
	    C("MAIL FROM:<a@b>\r\nDATA\r\n", GOING),
	    S("250 ok\r\n", GOING),
	    S("503 5.5.1 need RCPT\r\n", GOING),
	    C("RSET\r\n", GOING),
	    S("250 ok\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};
	static const Step refused_then_body_end[] = {
	    C("DATA\r\n", GOING),
	    S("503 5.5.1 need MAIL\r\n", GOING),
	    C(".\r\n", LOST),
	};

	SCRIPT(body_as_commands, 0, 2, FALSE);
	SCRIPT(commands, 1, 1, FALSE);
	SCRIPT(refused_then_body_end, 0, 1, FALSE);
}

static void
test_smuggling(void)
{
	static const Step before_354[] = {
	    C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", GOING),
	    S("250 ok\r\n250 ok\r\n", GOING),
	    C("Subject: x\r\n", LOST),
	};
	static const Step with_data[] = {
	    C("DATA\r\nSubject: x\r\n", LOST),
	};
	static const Step bare_lf_end[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\n.\r\nMAIL FROM:<evil@b>\r\n", LOST),
	};
	static const Step bare_lf_dot[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r\n.\nMAIL FROM:<evil@b>\r\n", LOST),
	};
	static const Step bare_lfs[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\n.\n", LOST),
	};
	static const Step bare_cr[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r.\r\n", LOST),
	};
	static const Step cr_dot_cr[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r\n.\r\r\n", LOST),
	};

	SCRIPT(before_354, 0, 0, FALSE);
	SCRIPT(with_data, 0, 0, FALSE);
	SCRIPT(bare_lf_end, 0, 0, FALSE);
	SCRIPT(bare_lf_dot, 0, 0, FALSE);
	SCRIPT(bare_lfs, 0, 0, FALSE);
	SCRIPT(bare_cr, 0, 0, FALSE);
	SCRIPT(cr_dot_cr, 0, 0, FALSE);
}

static void
test_body_lines(void)
{
	/* none of these ends the body: the server is still reading it, so a
	 * reply now is one nobody asked for */
	static const char *const lines[] = {
	    "..\r\n", "...\r\n", "..x\r\n", ". \r\n", ".x\r\n", "x.\r\n", "\r\n", "QUIT\r\n",
	};

	for (gsize i = 0; i < G_N_ELEMENTS(lines); i++) {
		const Step not_end[] = {
		    C("DATA\r\n", GOING),
		    S("354 go\r\n", GOING),
		    C(lines[i], GOING),
		    S("250 ok\r\n", LOST),
		};
		const Step then_end[] = {
		    C("DATA\r\n", GOING), S("354 go\r\n", GOING), C(lines[i], GOING),
		    C(".\r\n", GOING),    S("250 ok\r\n", GOING), C("QUIT\r\n", QUIT),
		};

		g_test_message("line %zu", i);
		check_script(not_end, G_N_ELEMENTS(not_end), 0, 0, FALSE);
		check_script(then_end, G_N_ELEMENTS(then_end), 0, 0, TRUE);
	}
}

/* Long body lines go by memchr past their first octets: a CR, LF or NUL
 * anywhere in them is still seen, in one call or split anywhere. */
static void
test_body_long_lines(void)
{
	static const struct {
		const char *tail; /* after 300 'a's */
		GhSmtpTrackState want;
	} cases[] = {
	    {"\r\n.\r\n", GOING},   /* a long line, then the end */
	    {"\nb\r\n.\r\n", LOST}, /* a bare LF in the middle */
	    {"\rb\r\n.\r\n", LOST}, /* a bare CR in the middle */
	    {"b\r\n\n.\r\n", LOST}, /* a bare LF at the next line's start */
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GString) body = g_string_new(NULL);

		for (int k = 0; k < 300; k++)
			g_string_append_c(body, 'a');
		g_string_append(body, cases[i].tail);
		for (gsize cut = 0; cut < body->len; cut += 37) {
			GhSmtpTrack *t = gh_smtp_track_new();
			GhSmtpTrackState st;

			g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
			g_assert_cmpint(server(t, "354 go\r\n"), ==, GOING);
			st = cut > 0 ? feed(t, FALSE, body->str, cut) : GOING;
			if (st == GOING)
				st = feed(t, FALSE, body->str + cut, body->len - cut);
			g_assert_cmpint(st, ==, cases[i].want);
			if (st == GOING) {
				g_assert_cmpint(server(t, "250 ok\r\n"), ==, GOING);
				g_assert_cmpint(client(t, "QUIT\r\n"), ==, QUIT);
			}
			gh_smtp_track_free(t);
		}
		{
			/* a NUL in the middle (strlen cannot carry it) */
			GhSmtpTrack *t = gh_smtp_track_new();

			body->str[150] = '\0';
			g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
			g_assert_cmpint(server(t, "354 go\r\n"), ==, GOING);
			g_assert_cmpint(feed(t, FALSE, body->str, body->len), ==, LOST);
			gh_smtp_track_free(t);
		}
	}
}

static void
test_body_end_pipelined(void)
{
	static const Step steps[] = {
	    C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", GOING),
	    S("250 ok\r\n250 ok\r\n354 go\r\n", GOING),
	    C("body\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", GOING),
	    S("250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n", GOING),
	    C("second\r\n.\r\n", GOING),
	    S("250 queued\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};
	static const Step refused[] = {
	    C("DATA\r\n", GOING),      S("354 go\r\n", GOING),
	    C(".\r\nNOOP\r\n", GOING), S("554 5.7.1 rejected\r\n250 ok\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};
	static const Step answered_354[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C(".\r\n", GOING),
	    S("354 again\r\n", LOST),
	};

	SCRIPT(steps, 0, 0, TRUE);
	SCRIPT(refused, 1, 1, FALSE);
	SCRIPT(answered_354, 0, 0, FALSE);
}

static void
test_354(void)
{
	static const Step to_noop[] = {C("NOOP\r\n", GOING), S("354 go\r\n", LOST)};
	static const Step to_mail[] = {
	    /* the 354 answers the MAIL, not the DATA */
	    C("MAIL FROM:<a@b>\r\nDATA\r\n", GOING),
	    S("354 go\r\n", LOST),
	};
	static const Step multi_line[] = {
	    C("MAIL FROM:<a@b>\r\nDATA\r\n", GOING),
	    S("250 ok\r\n354-go\r\n354 on\r\n", GOING),
	    C(".\r\n", GOING),
	    S("250 ok\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};

	SCRIPT(to_noop, 1, 0, FALSE);
	SCRIPT(to_mail, 0, 0, FALSE);
	SCRIPT(multi_line, 0, 0, TRUE);
}

/* ---- replies ---- */

static void
test_reply_multi_line(void)
{
	static const Step once[] = {
	    C("NOOP\r\n", GOING),
	    S("250-a\r\n250-\r\n250 b\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};
	static const Step two_owed[] = {
	    C("NOOP\r\nNOOP\r\n", GOING),
	    S("250-a\r\n250 b\r\n", GOING),
	    C("QUIT\r\n", LOST),
	};
	static const Step codes_differ[] = {
	    C("NOOP\r\n", GOING),
	    S("250-a\r\n251 b\r\n", LOST),
	};
	static const Step bare[] = {
	    /* "NNN" CRLF is a final line */
	    C("NOOP\r\nNOOP\r\n", GOING),
	    S("250\r\n250-x\r\n250\r\n", GOING),
	    C("QUIT\r\n", QUIT),
	};

	SCRIPT(once, 1, 0, FALSE);
	SCRIPT(two_owed, 2, 0, FALSE);
	SCRIPT(codes_differ, 1, 0, FALSE);
	SCRIPT(bare, 2, 0, FALSE);
}

static void
test_reply_bad(void)
{
	g_autofree char *text_max = g_strnfill(GH_SMTP_TRACK_MAX_REPLY_LINE - 6, 'x');
	g_autofree char *max = g_strconcat("250 ", text_max, "\r\n", NULL);
	g_autofree char *over = g_strconcat("250 x", text_max, "\r\n", NULL);
	static const char *const replies[] = {
	    "421 4.4.2 timeout\r\n",
	    "421\r\n",
	    "250-a\r\n421 b\r\n",
	    "421-a\r\n421 b\r\n",
	    "150 x\r\n",
	    "650 x\r\n",
	    "050 x\r\n",
	    "25\r\n",
	    "2\r\n",
	    "\r\n",
	    "250x\r\n",
	    "2a0 ok\r\n",
	    "250\tok\r\n",
	    " 250 ok\r\n",
	    "250 ok\n",
	    "250 o\rk\r\n",
	    "250 ok\r\r\n",
	    "250-a\n250 b\r\n",
	    "250-a\r\n250b\r\n",
	};
	const Step ok[] = {C("NOOP\r\n", GOING), S(max, GOING), C("QUIT\r\n", QUIT)};
	const Step lost[] = {C("NOOP\r\n", GOING), S(over, LOST)};

	g_assert_cmpuint(strlen(max), ==, GH_SMTP_TRACK_MAX_REPLY_LINE);
	check_script(ok, G_N_ELEMENTS(ok), 1, 0, FALSE);
	check_script(lost, G_N_ELEMENTS(lost), 1, 0, FALSE);
	for (gsize i = 0; i < G_N_ELEMENTS(replies); i++) {
		const Step steps[] = {C("NOOP\r\n", GOING), S(replies[i], LOST)};

		g_test_message("reply %zu", i);
		check_script(steps, G_N_ELEMENTS(steps), 1, 0, FALSE);
	}
}

static void
test_reply_unsolicited(void)
{
	static const Step at_start[] = {S("220 hello again\r\n", LOST)};
	static const Step one_byte[] = {S("2", LOST)};
	static const Step too_many[] = {
	    C("NOOP\r\n", GOING),
	    S("250 ok\r\n250 ok\r\n", LOST),
	};
	static const Step in_body[] = {
	    C("DATA\r\n", GOING),
	    S("354 go\r\n", GOING),
	    C("x\r\n", GOING),
	    S("250 ok\r\n", LOST),
	};
	static const Step after_quit_owed[] = {
	    C("NOOP\r\n", GOING),
	    S("250 ok\r\n", GOING),
	    S("221 bye\r\n", LOST),
	};

	SCRIPT(at_start, 0, 0, FALSE);
	SCRIPT(one_byte, 0, 0, FALSE);
	SCRIPT(too_many, 1, 0, FALSE);
	SCRIPT(in_body, 0, 0, FALSE);
	SCRIPT(after_quit_owed, 1, 0, FALSE);
}

/* A reply of three lines for two commands, cut in two calls at every
 * position, then in three. */
static void
test_reply_split(void)
{
	static const char reply[] = "250-a\r\n250 b\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n";
	gsize len = strlen(reply);

	for (gsize i = 1; i < len; i++) {
		for (gsize j = i; j < len; j++) {
			GhSmtpTrack *t = gh_smtp_track_new();

			g_assert_cmpint(client(t, "NOOP\r\nRCPT TO:<x@y>\r\n"), ==, GOING);
			g_assert_cmpint(feed(t, TRUE, reply, i), ==, GOING);
			if (j > i)
				g_assert_cmpint(feed(t, TRUE, reply + i, j - i), ==, GOING);
			g_assert_cmpint(feed(t, TRUE, reply + j, len - j), ==, GOING);
			check_counts(t, 1, 1, FALSE);
			g_assert_cmpint(client(t, "QUIT\r\n"), ==, QUIT);
			gh_smtp_track_free(t);
		}
	}
}

/* ---- counts ---- */

static void
test_counts(void)
{
	GhSmtpTrack *t = gh_smtp_track_new();

	g_assert_cmpint(client(t, "NOOP\r\nRSET\r\nNOOP x\r\n"), ==, GOING);
	check_counts(t, 3, 0, FALSE);
	g_assert_cmpint(server(t, "250 ok\r\n250 ok\r\n502 no\r\n"), ==, GOING);
	check_counts(t, 3, 1, FALSE);
	g_assert_cmpint(client(t, "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\n"), ==,
			GOING);
	g_assert_cmpint(server(t, "250 ok\r\n450-4.2.0 try\r\n450 later\r\n"), ==, GOING);
	check_counts(t, 3, 2, FALSE);
	g_assert_cmpint(server(t, "250 ok\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "354 go\r\n"), ==, GOING);
	check_counts(t, 3, 2, FALSE);
	/* the body's end pipelined with a NOOP, RSET and a RCPT without MAIL:
	 * the server reads them after taking the message */
	g_assert_cmpint(client(t, "x\r\n.\r\nNOOP\r\nRSET\r\nRCPT TO:<x@y>\r\n"), ==, GOING);
	check_counts(t, 5, 2, FALSE);
	g_assert_cmpint(server(t, "250 queued\r\n"), ==, GOING);
	check_counts(t, 2, 0, TRUE);
	g_assert_cmpint(server(t, "250 ok\r\n250 ok\r\n503 need MAIL\r\n"), ==, GOING);
	check_counts(t, 2, 1, TRUE);

	/* a message refused: nothing is reset, and accepted stays */
	g_assert_cmpint(client(t, "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "250 ok\r\n250 ok\r\n354 go\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "x\r\n.\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "554 5.7.1 spam\r\n"), ==, GOING);
	check_counts(t, 2, 2, TRUE);

	/* DATA refused */
	g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "503 need RCPT\r\n"), ==, GOING);
	check_counts(t, 2, 3, TRUE);

	/* accepted again: all forgotten */
	g_assert_cmpint(client(t, "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "250 ok\r\n250 ok\r\n354 go\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "x\r\n.\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "250 queued\r\n"), ==, GOING);
	check_counts(t, 0, 0, TRUE);
	g_assert_cmpint(client(t, "QUIT\r\n"), ==, QUIT);
	check_counts(t, 0, 0, TRUE);
	gh_smtp_track_free(t);
}

/* ---- limits and the end ---- */

static void
test_max_pending(void)
{
	GString *many = g_string_new(NULL);
	GString *replies = g_string_new(NULL);
	GhSmtpTrack *t;

	for (guint i = 0; i < GH_SMTP_TRACK_MAX_PENDING; i++) {
		g_string_append(many, i % 2 ? "RCPT TO:<x@y>\r\n" : "NOOP\r\n");
		if (i > 0) /* the replies to all but the first */
			g_string_append(replies, "250 ok\r\n");
	}
	/* as many as allowed, in one call and a line per call */
	t = gh_smtp_track_new();
	g_assert_cmpint(feed(t, FALSE, many->str, many->len), ==, GOING);
	g_assert_cmpint(client(t, "NOOP\r\n"), ==, LOST);
	gh_smtp_track_free(t);

	t = gh_smtp_track_new();
	for (guint i = 0; i < GH_SMTP_TRACK_MAX_PENDING; i++)
		g_assert_cmpint(client(t, "RSET\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "MAIL FROM:<a@b>\r\n"), ==, LOST);
	gh_smtp_track_free(t);

	/* answered, the room is back */
	t = gh_smtp_track_new();
	g_assert_cmpint(feed(t, FALSE, many->str, many->len), ==, GOING);
	g_assert_cmpint(server(t, "250 ok\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "DATA\r\n"), ==, GOING);
	g_assert_cmpint(feed(t, TRUE, replies->str, replies->len), ==, GOING);
	g_assert_cmpint(server(t, "354 go\r\n"), ==, GOING);
	g_assert_cmpint(client(t, ".\r\n"), ==, GOING);
	g_assert_cmpint(server(t, "250 ok\r\n"), ==, GOING);
	g_assert_cmpint(client(t, "QUIT\r\n"), ==, QUIT);
	gh_smtp_track_free(t);

	/* one too many in one call */
	g_string_append(many, "NOOP\r\n");
	t = gh_smtp_track_new();
	g_assert_cmpint(feed(t, FALSE, many->str, many->len), ==, LOST);
	gh_smtp_track_free(t);

	g_string_free(many, TRUE);
	g_string_free(replies, TRUE);
}

static void
test_lost_stays(void)
{
	static const char *const lines[] = {"NOOP\r\n", "QUIT\r\n", "250 ok\r\n", ".\r\n"};
	GhSmtpTrack *t = gh_smtp_track_new();

	g_assert_cmpint(client(t, "EHLO x\r\n"), ==, LOST);
	for (gsize i = 0; i < G_N_ELEMENTS(lines); i++) {
		g_assert_cmpint(client(t, lines[i]), ==, LOST);
		g_assert_cmpint(server(t, lines[i]), ==, LOST);
		g_assert_cmpint(gh_smtp_track_state(t), ==, LOST);
	}
	gh_smtp_track_free(t);

	t = gh_smtp_track_new();
	g_assert_cmpint(server(t, "250 ok\r\n"), ==, LOST);
	g_assert_cmpint(client(t, "QUIT\r\n"), ==, LOST);
	gh_smtp_track_free(t);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/smtp-track/new", test_new);
	g_test_add_func("/smtp-track/session/plain", test_plain_session);
	g_test_add_func("/smtp-track/session/pipelined", test_pipelined);
	g_test_add_func("/smtp-track/session/commands-only", test_commands_only);
	g_test_add_func("/smtp-track/quit", test_quit);
	g_test_add_func("/smtp-track/quit/lost", test_quit_lost);
	g_test_add_func("/smtp-track/command/lost", test_commands_lost);
	g_test_add_func("/smtp-track/command/nul", test_nul);
	g_test_add_func("/smtp-track/command/line-length", test_line_length);
	g_test_add_func("/smtp-track/data/refused", test_data_refused);
	g_test_add_func("/smtp-track/data/smuggling", test_smuggling);
	g_test_add_func("/smtp-track/data/long-lines", test_body_long_lines);
	g_test_add_func("/smtp-track/data/body-lines", test_body_lines);
	g_test_add_func("/smtp-track/data/end-pipelined", test_body_end_pipelined);
	g_test_add_func("/smtp-track/data/354", test_354);
	g_test_add_func("/smtp-track/reply/multi-line", test_reply_multi_line);
	g_test_add_func("/smtp-track/reply/bad", test_reply_bad);
	g_test_add_func("/smtp-track/reply/unsolicited", test_reply_unsolicited);
	g_test_add_func("/smtp-track/reply/split", test_reply_split);
	g_test_add_func("/smtp-track/counts", test_counts);
	g_test_add_func("/smtp-track/max-pending", test_max_pending);
	g_test_add_func("/smtp-track/lost-stays", test_lost_stays);
	return g_test_run();
}
