/*
 * test-smtp-parser.c: the pure SMTP parsers of daemon/smtp/smtp-parser.c:
 * the line limits, a framed line handed to the command parser, command
 * classification; MAIL/RCPT paths; AUTH arguments; server replies
 * (multi-line, partial, malformed, over the limit); EHLO extensions; xtext.
 * The line framing itself (common/line.c) is test-line.c's.
 *
 * Every call gets a heap copy of exactly the bytes it may read, so valgrind
 * reports any read past `len`.
 */
#include "gh-build.h"

#include "smtp/smtp-parser.h"

#include <string.h>

/* A table string that may hold NUL bytes: its bytes and its length. */
#define BYTES(s) s, sizeof(s) - 1

/* An exact-size heap copy of buf[0..len) (NULL for 0 bytes). */
static char *
exact(const char *buf, gsize len)
{
	return g_memdup2(buf, len);
}

/* ---- commands ---- */

static void
check_command(const char *line, gsize len, GhSmtpVerb verb, const char *arg)
{
	g_autofree char *copy = exact(line, len);
	GhSmtpCommand cmd = {GH_SMTP_CMD_INVALID, NULL, 12345};

	gh_smtp_parse_command(copy, len, &cmd);
	g_assert_cmpint(cmd.verb, ==, verb);
	g_assert_cmpuint(cmd.arg_len, ==, strlen(arg));
	g_assert_nonnull(cmd.arg);
	if (cmd.arg_len > 0) {
		/* arg points into the line given */
		g_assert_true(cmd.arg >= copy && cmd.arg + cmd.arg_len <= copy + len);
		g_assert_cmpmem(cmd.arg, cmd.arg_len, arg, strlen(arg));
	}
}

static void
test_command_verbs(void)
{
	static const struct {
		const char *name;
		GhSmtpVerb verb;
	} verbs[] = {
	    {"HELO", GH_SMTP_CMD_HELO},
	    {"EHLO", GH_SMTP_CMD_EHLO},
	    {"AUTH", GH_SMTP_CMD_AUTH},
	    {"MAIL", GH_SMTP_CMD_MAIL},
	    {"RCPT", GH_SMTP_CMD_RCPT},
	    {"DATA", GH_SMTP_CMD_DATA},
	    {"RSET", GH_SMTP_CMD_RSET},
	    {"NOOP", GH_SMTP_CMD_NOOP},
	    {"QUIT", GH_SMTP_CMD_QUIT},
	    {"HELP", GH_SMTP_CMD_HELP},
	    {"VRFY", GH_SMTP_CMD_VRFY},
	    {"EXPN", GH_SMTP_CMD_EXPN},
	    {"STARTTLS", GH_SMTP_CMD_STARTTLS},
	    {"SEND", GH_SMTP_CMD_NOT_IMPLEMENTED},
	    {"SOML", GH_SMTP_CMD_NOT_IMPLEMENTED},
	    {"SAML", GH_SMTP_CMD_NOT_IMPLEMENTED},
	    {"TURN", GH_SMTP_CMD_NOT_IMPLEMENTED},
	    {"BDAT", GH_SMTP_CMD_BDAT},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++) {
		g_autofree char *lower = g_ascii_strdown(verbs[i].name, -1);
		g_autofree char *mixed = g_strdup(verbs[i].name);
		g_autofree char *with_arg = g_strdup_printf("%s x y", lower);
		g_autofree char *longer = g_strdup_printf("%sX", verbs[i].name);
		g_autofree char *shorter = g_strndup(verbs[i].name, strlen(verbs[i].name) - 1);

		/* "hElO", "sTaRtTlS" */
		for (gsize k = 1; k < strlen(mixed); k += 2)
			mixed[k] = g_ascii_tolower(mixed[k]);
		g_test_message("verb %s", verbs[i].name);
		check_command(verbs[i].name, strlen(verbs[i].name), verbs[i].verb, "");
		check_command(lower, strlen(lower), verbs[i].verb, "");
		check_command(mixed, strlen(mixed), verbs[i].verb, "");
		check_command(with_arg, strlen(with_arg), verbs[i].verb, "x y");
		/* the whole first word, not a prefix of it */
		check_command(longer, strlen(longer), GH_SMTP_CMD_UNKNOWN, "");
		check_command(shorter, strlen(shorter), GH_SMTP_CMD_UNKNOWN, "");
	}
}

static void
test_command(void)
{
	static const struct {
		const char *line;
		gsize len;
		GhSmtpVerb verb;
		const char *arg;
	} cases[] = {
	    {BYTES("helo"), GH_SMTP_CMD_HELO, ""},
	    {BYTES("EhLo client.example.org"), GH_SMTP_CMD_EHLO, "client.example.org"},
	    {BYTES("mail from:<a@b>"), GH_SMTP_CMD_MAIL, "from:<a@b>"},
	    {BYTES("MAIL FROM:<a@b> SIZE=10"), GH_SMTP_CMD_MAIL, "FROM:<a@b> SIZE=10"},
	    {BYTES("RCPT TO:<x>"), GH_SMTP_CMD_RCPT, "TO:<x>"},
	    {BYTES("AUTH PLAIN dXNlcgB1c2VyAHB3"), GH_SMTP_CMD_AUTH, "PLAIN dXNlcgB1c2VyAHB3"},
	    {BYTES("SEND FROM:<a@b>"), GH_SMTP_CMD_NOT_IMPLEMENTED, "FROM:<a@b>"},
	    {BYTES("soml"), GH_SMTP_CMD_NOT_IMPLEMENTED, ""},
	    {BYTES("Saml"), GH_SMTP_CMD_NOT_IMPLEMENTED, ""},
	    {BYTES("TURN"), GH_SMTP_CMD_NOT_IMPLEMENTED, ""},
	    {BYTES("BDAT 100 LAST"), GH_SMTP_CMD_BDAT, "100 LAST"},
	    {BYTES("FOO"), GH_SMTP_CMD_UNKNOWN, ""},
	    {BYTES("FOO bar"), GH_SMTP_CMD_UNKNOWN, "bar"},
	    {BYTES(""), GH_SMTP_CMD_UNKNOWN, ""},
	    /* RFC 5321 4.1.1.9: NOOP may carry a string */
	    {BYTES("NOOP x"), GH_SMTP_CMD_NOOP, "x"},
	    /* separators and trailing white space */
	    {BYTES("HELO a \t "), GH_SMTP_CMD_HELO, "a"},
	    {BYTES("HELO\ta"), GH_SMTP_CMD_HELO, "a"},
	    {BYTES("HELO  \t a  b\t"), GH_SMTP_CMD_HELO, "a  b"},
	    {BYTES("QUIT "), GH_SMTP_CMD_QUIT, ""},
	    {BYTES("QUIT\t\t"), GH_SMTP_CMD_QUIT, ""},
	    {BYTES("   "), GH_SMTP_CMD_UNKNOWN, ""},
	    /* the verb starts the line and ends at a space or tab only */
	    {BYTES(" HELO a"), GH_SMTP_CMD_UNKNOWN, "HELO a"},
	    {BYTES("MAIL:FROM:<a@b>"), GH_SMTP_CMD_UNKNOWN, ""},
	    {BYTES("H\xc3\x89LO a"), GH_SMTP_CMD_UNKNOWN, "a"},
	    /* NUL and bare CR: invalid wherever they are */
	    {BYTES("HEL\0O a"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("HELO a\0"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("\0"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("HELO a\rMAIL FROM:<a@b>"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("HELO a\r"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("\rNOOP"), GH_SMTP_CMD_INVALID, ""},
	    {BYTES("NOOP\n"), GH_SMTP_CMD_INVALID, ""},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_command(cases[i].line, cases[i].len, cases[i].verb, cases[i].arg);
	}
	/* an empty line may come as NULL */
	{
		GhSmtpCommand cmd;

		gh_smtp_parse_command(NULL, 0, &cmd);
		g_assert_cmpint(cmd.verb, ==, GH_SMTP_CMD_UNKNOWN);
		g_assert_cmpuint(cmd.arg_len, ==, 0);
	}
}

/* RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets with its
 * CRLF; RFC 4954 section 4: an AUTH line may be longer.  test-line.c tests
 * the framing at these same numbers. */
static void
test_limits(void)
{
	g_assert_cmpuint(GH_SMTP_MAX_LINE, ==, 512);
	g_assert_cmpuint(GH_SMTP_MAX_AUTH_LINE, ==, 12288);
}

/* A line from gh_line_next goes to parse_command: "HELO a\r\r\n" ends in a
 * bare CR, and a 512-octet line is still a command; 513 octets are not a
 * line at GH_SMTP_MAX_LINE. */
static void
test_line_to_command(void)
{
	static const struct {
		const char *in;
		gsize len;
		GhSmtpVerb verb;
	} cases[] = {
	    {BYTES("HELO a\r\n"), GH_SMTP_CMD_HELO},      {BYTES("HELO a\n"), GH_SMTP_CMD_HELO},
	    {BYTES("HELO a\r\r\n"), GH_SMTP_CMD_INVALID}, {BYTES("HELO\ra\n"), GH_SMTP_CMD_INVALID},
	    {BYTES("HE\0LO\r\n"), GH_SMTP_CMD_INVALID},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].in, cases[i].len);
		gsize line_len = 0, used = 0;
		GhSmtpCommand cmd;

		g_assert_cmpint(
		    gh_line_next(copy, cases[i].len, GH_SMTP_MAX_LINE, &line_len, &used, NULL), ==,
		    GH_LINE_OK);
		g_assert_cmpuint(used, ==, cases[i].len);
		gh_smtp_parse_command(copy, line_len, &cmd);
		g_assert_cmpint(cmd.verb, ==, cases[i].verb);
	}
	for (gsize octets = 511; octets <= 513; octets++) {
		g_autoptr(GString) line = g_string_new("NOOP ");
		g_autofree char *copy = NULL;
		gsize line_len = 0, used = 0;
		GhSmtpCommand cmd;

		while (line->len < octets - 2)
			g_string_append_c(line, 'x');
		g_string_append(line, "\r\n");
		copy = exact(line->str, line->len);
		g_test_message("%zu octets", octets);
		if (octets > GH_SMTP_MAX_LINE) {
			g_assert_cmpint(
			    gh_line_next(copy, line->len, GH_SMTP_MAX_LINE, &line_len, &used, NULL),
			    ==, GH_LINE_TOO_LONG);
			continue;
		}
		g_assert_cmpint(
		    gh_line_next(copy, line->len, GH_SMTP_MAX_LINE, &line_len, &used, NULL), ==,
		    GH_LINE_OK);
		g_assert_cmpuint(used, ==, octets);
		gh_smtp_parse_command(copy, line_len, &cmd);
		g_assert_cmpint(cmd.verb, ==, GH_SMTP_CMD_NOOP);
		g_assert_cmpuint(cmd.arg_len, ==, octets - 7);
	}
}

/* ---- MAIL / RCPT paths ---- */

static void
test_path(void)
{
	static const struct {
		const char *arg;
		gsize len;
		const char *keyword;
		const char *address; /* NULL: rejected */
	} cases[] = {
	    {BYTES("FROM:<a@b>"), "FROM", "a@b"},
	    {BYTES("FROM: <a@b>"), "FROM", "a@b"},
	    {BYTES("from:a@b"), "FROM", "a@b"},
	    {BYTES("FROM: a@b"), "FROM", "a@b"},
	    {BYTES("From:<a@b>"), "FROM", "a@b"},
	    {BYTES("FROM: a@b SIZE=10 BODY=8BITMIME"), "FROM", "a@b"},
	    {BYTES("FROM:<a@b> SIZE=10 BODY=8BITMIME"), "FROM", "a@b"},
	    {BYTES("FROM:<a@b>  SIZE=10\tBODY=8BITMIME "), "FROM", "a@b"},
	    {BYTES("FROM:<a@b> SMTPUTF8"), "FROM", "a@b"},
	    {BYTES("FROM:<a@b> X-FOO=bar"), "FROM", "a@b"},
	    {BYTES("FROM:<a@b> AUTH=<>"), "FROM", "a@b"},
	    {BYTES("FROM:\t<a@b>"), "FROM", "a@b"},
	    {BYTES("FROM:<j\xc3\xb6rg@example.org> SMTPUTF8"), "FROM", "j\xc3\xb6rg@example.org"},
	    /* the null reverse-path: MAIL only */
	    {BYTES("FROM:<>"), "FROM", ""},
	    {BYTES("FROM: <> SIZE=10"), "FROM", ""},
	    {BYTES("TO:<>"), "TO", NULL},
	    {BYTES("TO:<x>"), "TO", "x"},
	    {BYTES("to:<Postmaster>"), "TO", "Postmaster"},
	    {BYTES("TO: x@example.org NOTIFY=NEVER"), "TO", "x@example.org"},
	    /* malformed */
	    {BYTES(""), "FROM", NULL},
	    {BYTES("FROM"), "FROM", NULL},
	    {BYTES("FROM:"), "FROM", NULL},
	    {BYTES("FROM: "), "FROM", NULL},
	    {BYTES("FROM :<a@b>"), "FROM", NULL},
	    {BYTES("FROMX:<a@b>"), "FROM", NULL},
	    {BYTES("FRO:<a@b>"), "FROM", NULL},
	    {BYTES("FROM<a@b>"), "FROM", NULL},
	    {BYTES("FROM:<a@b"), "FROM", NULL},
	    {BYTES("FROM:<"), "FROM", NULL},
	    {BYTES("FROM:<a b@c>"), "FROM", NULL},
	    {BYTES("FROM:<a\tb@c>"), "FROM", NULL},
	    {BYTES("FROM:<a<b>"), "FROM", NULL},
	    {BYTES("FROM:<<a@b>>"), "FROM", NULL},
	    {BYTES("FROM:<a@b>>"), "FROM", NULL},
	    {BYTES("FROM:a@b>"), "FROM", NULL},
	    {BYTES("FROM:>"), "FROM", NULL},
	    {BYTES("FROM:a<b"), "FROM", NULL},
	    {BYTES("TO:<x>"), "FROM", NULL},
	    {BYTES("FROM:<a@b>"), "TO", NULL},
	    /* the path ends at a space, then only parameters follow */
	    {BYTES("FROM:<a@b>SIZE=10"), "FROM", NULL},
	    {BYTES("FROM:<a@b> SIZE="), "FROM", NULL},
	    {BYTES("FROM:<a@b> =10"), "FROM", NULL},
	    {BYTES("FROM:<a@b> SIZE=1=2"), "FROM", NULL},
	    {BYTES("FROM:<a@b> -X"), "FROM", NULL},
	    {BYTES("FROM:<a@b> <c@d>"), "FROM", NULL},
	    /* control characters anywhere */
	    {BYTES("FROM:<a\x01@b>"), "FROM", NULL},
	    {BYTES("FROM:<a\x7f@b>"), "FROM", NULL},
	    {BYTES("FROM:a\x1b@b"), "FROM", NULL},
	    {BYTES("FROM:<a\0@b>"), "FROM", NULL},
	    {BYTES("FROM:<a@b>\0"), "FROM", NULL},
	    {BYTES("FROM:<a@b> SIZE=1\x01"), "FROM", NULL},
	    {BYTES("FROM:<a@b> BODY=8BIT\x7f"), "FROM", NULL},
	    {BYTES("FROM:<a@b\r>"), "FROM", NULL},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].arg, cases[i].len);
		g_autofree char *address = NULL;
		gboolean ok;

		g_test_message("case %zu", i);
		ok = gh_smtp_parse_path(copy, cases[i].len, cases[i].keyword, &address);
		g_assert_cmpint(ok, ==, cases[i].address != NULL);
		g_assert_cmpstr(address, ==, cases[i].address);
		/* address may be NULL */
		g_assert_cmpint(gh_smtp_parse_path(copy, cases[i].len, cases[i].keyword, NULL), ==,
				ok);
	}
}

/* ---- AUTH ---- */

static void
test_auth(void)
{
	static const struct {
		const char *arg;
		gsize len;
		gboolean ok;
		const char *mech;
		const char *initial;
	} cases[] = {
	    {BYTES("PLAIN"), TRUE, "PLAIN", NULL},
	    {BYTES("plain"), TRUE, "PLAIN", NULL},
	    {BYTES("login dXNlcg=="), TRUE, "LOGIN", "dXNlcg=="},
	    {BYTES("PLAIN ="), TRUE, "PLAIN", "="},
	    {BYTES("PLAIN AGFsaWNlAHNlY3JldA=="), TRUE, "PLAIN", "AGFsaWNlAHNlY3JldA=="},
	    {BYTES("  PLAIN \t abc  "), TRUE, "PLAIN", "abc"},
	    {BYTES("cram-md5"), TRUE, "CRAM-MD5", NULL},
	    {BYTES(""), FALSE, NULL, NULL},
	    {BYTES("   "), FALSE, NULL, NULL},
	    {BYTES("PLAIN a b"), FALSE, NULL, NULL},
	    {BYTES("PLAIN = ="), FALSE, NULL, NULL},
	};
	static char sentinel[] = "untouched";

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].arg, cases[i].len);
		char *mech = sentinel;
		char *initial = sentinel;
		gboolean ok;

		g_test_message("case %zu", i);
		ok = gh_smtp_parse_auth(copy, cases[i].len, &mech, &initial);
		g_assert_cmpint(ok, ==, cases[i].ok);
		g_assert_cmpstr(mech, ==, cases[i].mech);
		g_assert_cmpstr(initial, ==, cases[i].initial);
		g_assert_true(mech != sentinel && initial != sentinel);
		g_free(mech);
		g_free(initial);
		/* either output may be NULL */
		g_assert_cmpint(gh_smtp_parse_auth(copy, cases[i].len, NULL, NULL), ==, ok);
	}
}

/* ---- replies ---- */

typedef struct {
	GhSmtpReplyStatus st;
	gsize consumed;
	guint code;
	const char *lines; /* joined with "|" */
} ReplyResult;

static void
parse_reply(const char *buf, gsize len, gsize max, ReplyResult *r, char **joined)
{
	g_autofree char *copy = exact(buf, len);
	GhSmtpReply reply = {0};

	r->consumed = 12345;
	r->st = gh_smtp_parse_reply(copy, len, max, &reply, &r->consumed);
	r->code = reply.code;
	*joined = NULL;
	if (r->st == GH_SMTP_REPLY_OK) {
		g_assert_nonnull(reply.lines);
		g_ptr_array_add(reply.lines, NULL);
		*joined = g_strjoinv("|", (char **)reply.lines->pdata);
		g_ptr_array_remove_index(reply.lines, reply.lines->len - 1);
		gh_smtp_reply_clear(&reply);
	} else {
		/* nothing to free unless it is OK */
		g_assert_null(reply.lines);
		g_assert_cmpuint(r->consumed, ==, 0);
	}
	g_assert_null(reply.lines);
	g_assert_cmpuint(reply.code, ==, 0);
	r->lines = *joined;
}

static void
assert_reply(const ReplyResult *got, const ReplyResult *want)
{
	g_assert_cmpint(got->st, ==, want->st);
	if (want->st == GH_SMTP_REPLY_OK) {
		g_assert_cmpuint(got->consumed, ==, want->consumed);
		g_assert_cmpstr(got->lines, ==, want->lines);
	}
}

static void
test_reply(void)
{
	static const struct {
		const char *in;
		gsize len;
		gsize max;
		ReplyResult want; /* code and lines matter only when OK */
	} cases[] = {
	    {BYTES("220 mx.example.org ESMTP\r\n"),
	     512,
	     {GH_SMTP_REPLY_OK, 26, 220, "mx.example.org ESMTP"}},
	    {BYTES("250 OK\n"), 512, {GH_SMTP_REPLY_OK, 7, 250, "OK"}},
	    {BYTES("250\r\n"), 512, {GH_SMTP_REPLY_OK, 5, 250, ""}},
	    {BYTES("250 \r\n"), 512, {GH_SMTP_REPLY_OK, 6, 250, ""}},
	    {BYTES("354 End data with <CR><LF>.<CR><LF>\r\n"),
	     512,
	     {GH_SMTP_REPLY_OK, 37, 354, "End data with <CR><LF>.<CR><LF>"}},
	    {BYTES("250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
		   "250-XCLIENT NAME ADDR PORT\r\n250 8BITMIME\r\n"),
	     512,
	     {GH_SMTP_REPLY_OK, 97, 250,
	      "mx.example.org|PIPELINING|SIZE 10240000|XCLIENT NAME ADDR PORT|8BITMIME"}},
	    {BYTES("250-a\n250-b\r\n250 c\n"), 512, {GH_SMTP_REPLY_OK, 19, 250, "a|b|c"}},
	    {BYTES("250-\r\n250\r\n"), 512, {GH_SMTP_REPLY_OK, 11, 250, "|"}},
	    /* a reply followed by another: only the first */
	    {BYTES("250-a\r\n250 b\r\n220 next\r\n"), 512, {GH_SMTP_REPLY_OK, 14, 250, "a|b"}},
	    {BYTES("250 a\r\n250 b\r\n"), 512, {GH_SMTP_REPLY_OK, 7, 250, "a"}},
	    {BYTES("535 5.7.8 nope\r\nxxx"), 512, {GH_SMTP_REPLY_OK, 16, 535, "5.7.8 nope"}},
	    /* the code range */
	    {BYTES("200 x\r\n"), 512, {GH_SMTP_REPLY_OK, 7, 200, "x"}},
	    {BYTES("599 x\r\n"), 512, {GH_SMTP_REPLY_OK, 7, 599, "x"}},
	    {BYTES("199 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("100 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("099 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("600 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("999 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    /* partial */
	    {BYTES(""), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    {BYTES("250 a"), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    {BYTES("250 a\r"), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    {BYTES("250-a\r\n"), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    {BYTES("250-a\r\n250-b\r\n"), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    {BYTES("250-a\r\n250 b"), 512, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    /* not a reply */
	    {BYTES("250-a\r\n251 b\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250-a\r\n550-b\r\n250 c\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("25x ok\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("abc\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("HTTP/1.1 400 Bad Request\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES(" 250 a\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("25\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("2500 x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250_x\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250-a\r\nfoo\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250 a\0b\r\n"), 512, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    /* the limit counts the whole reply, terminators included */
	    {BYTES("250 abcdef\r\n"), 12, {GH_SMTP_REPLY_OK, 12, 250, "abcdef"}},
	    {BYTES("250 abcdef\r\n"), 11, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250-abc\r\n250 abc\r\n"), 18, {GH_SMTP_REPLY_OK, 18, 250, "abc|abc"}},
	    {BYTES("250-abc\r\n250 abc\r\n"), 17, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250-abc\r\n250-abc\r\n250 abc\r\n"), 20, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250 abcdefgh"), 8, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250 abc"), 8, {GH_SMTP_REPLY_NEED_MORE, 0, 0, NULL}},
	    /* `max` bytes and no end yet: it cannot fit any more */
	    {BYTES("250 abcd"), 8, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250-abc\r\n250 a"), 14, {GH_SMTP_REPLY_BAD, 0, 0, NULL}},
	    {BYTES("250 a\r\n250 b\r\n"), 7, {GH_SMTP_REPLY_OK, 7, 250, "a"}},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *in = cases[i].in;
		gsize len = cases[i].len;
		gsize max = cases[i].max;
		const ReplyResult *want = &cases[i].want;
		ReplyResult got;
		g_autofree char *joined = NULL;
		gboolean bad = FALSE;

		g_test_message("case %zu", i);
		parse_reply(in, len, max, &got, &joined);
		assert_reply(&got, want);
		if (want->st == GH_SMTP_REPLY_OK)
			g_assert_cmpuint(got.code, ==, want->code);

		/* One byte at a time: NEED_MORE until the reply is whole, then
		 * the same; a bad reply is NEED_MORE, then BAD for good. */
		for (gsize k = 0; k <= len; k++) {
			g_autofree char *j = NULL;

			parse_reply(in, k, max, &got, &j);
			if (want->st == GH_SMTP_REPLY_OK && k >= want->consumed) {
				assert_reply(&got, want);
			} else if (want->st == GH_SMTP_REPLY_BAD) {
				if (bad)
					g_assert_cmpint(got.st, ==, GH_SMTP_REPLY_BAD);
				else
					g_assert_cmpint(got.st, !=, GH_SMTP_REPLY_OK);
				bad = got.st == GH_SMTP_REPLY_BAD;
			} else {
				g_assert_cmpint(got.st, ==, GH_SMTP_REPLY_NEED_MORE);
			}
		}
	}
}

/* Replies one after another, as a pipelining server sends them. */
static void
test_reply_sequence(void)
{
	static const char in[] = "220 mx ESMTP\r\n250-mx\r\n250-SIZE 100\r\n250 AUTH PLAIN\r\n"
				 "235 2.7.0 ok\r\n221 bye\r\n";
	static const struct {
		guint code;
		const char *lines;
	} want[] = {
	    {220, "mx ESMTP"},
	    {250, "mx|SIZE 100|AUTH PLAIN"},
	    {235, "2.7.0 ok"},
	    {221, "bye"},
	};
	gsize off = 0;

	for (gsize i = 0; i < G_N_ELEMENTS(want); i++) {
		ReplyResult got;
		g_autofree char *joined = NULL;

		parse_reply(in + off, sizeof in - 1 - off, 512, &got, &joined);
		g_assert_cmpint(got.st, ==, GH_SMTP_REPLY_OK);
		g_assert_cmpuint(got.code, ==, want[i].code);
		g_assert_cmpstr(got.lines, ==, want[i].lines);
		off += got.consumed;
	}
	g_assert_cmpuint(off, ==, sizeof in - 1);

	/* clearing twice, or an empty reply, is harmless */
	{
		GhSmtpReply r = {0};
		gsize used = 0;
		g_autofree char *copy = exact(in, sizeof in - 1);

		gh_smtp_reply_clear(&r);
		g_assert_cmpint(gh_smtp_parse_reply(copy, sizeof in - 1, 512, &r, &used), ==,
				GH_SMTP_REPLY_OK);
		gh_smtp_reply_clear(&r);
		gh_smtp_reply_clear(&r);
		g_assert_null(r.lines);
		gh_smtp_reply_clear(NULL);
	}
}

/* ---- EHLO extensions ---- */

static void
test_extension(void)
{
	static const char ehlo[] = "250-mx.example.org Hello [192.0.2.1]\r\n"
				   "250-PIPELINING\r\n"
				   "250-SIZE\r\n"
				   "250-XCLIENT NAME ADDR PORT  PROTO\r\n"
				   "250-auth PLAIN LOGIN\r\n"
				   "250-AUTH=PLAIN\r\n"
				   "250 8BITMIME\r\n";
	static const struct {
		const char *keyword;
		gboolean found;
		const char *params; /* joined with "|" */
	} cases[] = {
	    {"XCLIENT", TRUE, "NAME|ADDR|PORT|PROTO"},
	    {"xclient", TRUE, "NAME|ADDR|PORT|PROTO"},
	    {"AUTH", TRUE, "PLAIN|LOGIN"},
	    {"Auth", TRUE, "PLAIN|LOGIN"},
	    {"PIPELINING", TRUE, ""},
	    {"SIZE", TRUE, ""},
	    {"8bitmime", TRUE, ""},
	    {"STARTTLS", FALSE, NULL},
	    {"XCLIEN", FALSE, NULL},
	    {"XCLIENTS", FALSE, NULL},
	    {"NAME", FALSE, NULL},
	    /* the greeting line is the server's name, never an extension */
	    {"mx.example.org", FALSE, NULL},
	    {"250", FALSE, NULL},
	};
	g_autofree char *copy = exact(ehlo, sizeof ehlo - 1);
	GhSmtpReply r = {0};
	gsize used = 0;

	g_assert_cmpint(gh_smtp_parse_reply(copy, sizeof ehlo - 1, 4096, &r, &used), ==,
			GH_SMTP_REPLY_OK);
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		static char *poison[] = {NULL};
		char **raw = poison;
		g_auto(GStrv) params = NULL;
		g_autofree char *joined = NULL;
		gboolean found;

		g_test_message("case %zu: %s", i, cases[i].keyword);
		found = gh_smtp_reply_has_extension(&r, cases[i].keyword, &raw);
		/* always set, to NULL when not found */
		g_assert_true(raw != poison);
		params = raw;
		g_assert_cmpint(found, ==, cases[i].found);
		if (found) {
			g_assert_nonnull(params);
			joined = g_strjoinv("|", params);
		} else {
			g_assert_null(params);
		}
		g_assert_cmpstr(joined, ==, cases[i].params);
		g_assert_cmpint(gh_smtp_reply_has_extension(&r, cases[i].keyword, NULL), ==, found);
	}
	gh_smtp_reply_clear(&r);

	/* a one-line EHLO reply offers nothing, even if it looks like it does */
	{
		static const char one[] = "250 XCLIENT NAME\r\n";
		g_autofree char *c1 = exact(one, sizeof one - 1);

		g_assert_cmpint(gh_smtp_parse_reply(c1, sizeof one - 1, 512, &r, &used), ==,
				GH_SMTP_REPLY_OK);
		g_assert_false(gh_smtp_reply_has_extension(&r, "XCLIENT", NULL));
		gh_smtp_reply_clear(&r);
	}
	/* a cleared reply has no lines at all */
	g_assert_false(gh_smtp_reply_has_extension(&r, "XCLIENT", NULL));
}

/* ---- xtext ---- */

static void
test_xtext(void)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"a+b=c", "a+2Bb+3Dc"},
	    {"a b", "a+20b"},
	    {" ", "+20"},
	    {"\x7f", "+7F"},
	    {"\x01\t", "+01+09"},
	    {"!~", "!~"},
	    {"j\xc3\xb6rg", "j+C3+B6rg"},
	    {"\xff", "+FF"},
	    {"[UNAVAILABLE]", "[UNAVAILABLE]"},
	    {"192.0.2.1", "192.0.2.1"},
	    {"IPV6:2001:db8::1", "IPV6:2001:db8::1"},
	    {"client.example.org", "client.example.org"},
	    {"", ""},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *got = gh_smtp_xtext_encode(cases[i].in);

		g_assert_cmpstr(got, ==, cases[i].out);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/smtp-parser/limits", test_limits);
	g_test_add_func("/gatehouse/smtp-parser/command-verbs", test_command_verbs);
	g_test_add_func("/gatehouse/smtp-parser/command", test_command);
	g_test_add_func("/gatehouse/smtp-parser/line-to-command", test_line_to_command);
	g_test_add_func("/gatehouse/smtp-parser/path", test_path);
	g_test_add_func("/gatehouse/smtp-parser/auth", test_auth);
	g_test_add_func("/gatehouse/smtp-parser/reply", test_reply);
	g_test_add_func("/gatehouse/smtp-parser/reply-sequence", test_reply_sequence);
	g_test_add_func("/gatehouse/smtp-parser/extension", test_extension);
	g_test_add_func("/gatehouse/smtp-parser/xtext", test_xtext);
	return g_test_run();
}
