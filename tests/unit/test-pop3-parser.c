/*
 * test-pop3-parser.c: the pure POP3 parsers of daemon/pop3/pop3-parser.c:
 * the line limits, a framed line handed to the command parser, command
 * classification (every verb, any case, unknown verbs, NUL and bare CR),
 * the arguments (PASS verbatim, the others trimmed); AUTH arguments; the
 * server's status lines and response codes with their hierarchy;
 * multi-line bodies (dot-unstuffing, the "." line, bare LF, every partial
 * body, the line and total limits); CAPA lookups.  The line framing itself
 * (common/line.c) is test-line.c's.
 *
 * Every call gets a heap copy of exactly the bytes it may read, so valgrind
 * reports any read past `len`.
 */
#include "gh-build.h"

#include "common/line.h"
#include "pop3/pop3-parser.h"

#include <string.h>

/* A table string that may hold NUL bytes: its bytes and its length. */
#define BYTES(s) s, sizeof(s) - 1

/* An exact-size heap copy of buf[0..len) (one byte for 0 bytes, never
 * read: the parsers take no NULL with a length). */
static char *
exact(const char *buf, gsize len)
{
	char *copy = g_malloc(MAX(len, 1));

	memcpy(copy, buf, len);
	return copy;
}

/* RFC 2449 4: a command line is at most 255 octets with its CRLF, a status
 * line 512; an AUTH line may be longer (RFC 5034 4), and we take server
 * lines up to 1024.  test-line.c tests the framing at such numbers. */
static void
test_limits(void)
{
	g_assert_cmpuint(GH_POP3_MAX_LINE, ==, 255);
	g_assert_cmpuint(GH_POP3_MAX_AUTH_LINE, ==, 12288);
	g_assert_cmpuint(GH_POP3_MAX_REPLY_LINE, ==, 1024);
}

/* ---- commands ---- */

static void
check_command(const char *line, gsize len, GhPop3Verb verb, const char *arg, gsize arg_len)
{
	g_autofree char *copy = exact(line, len);
	GhPop3Command cmd = {GH_POP3_CMD_INVALID, NULL, 12345};

	gh_pop3_parse_command(copy, len, &cmd);
	g_assert_cmpint(cmd.verb, ==, verb);
	g_assert_cmpuint(cmd.arg_len, ==, arg_len);
	g_assert_nonnull(cmd.arg);
	/* arg points into the line given, even when empty */
	g_assert_true(cmd.arg >= copy && cmd.arg + cmd.arg_len <= copy + len);
	if (arg_len > 0) {
		g_assert_cmpmem(cmd.arg, cmd.arg_len, arg, arg_len);
		/* the verb, or a blank, comes first */
		g_assert_true(cmd.arg > copy);
	}
}

static void
test_command_verbs(void)
{
	static const struct {
		const char *name;
		GhPop3Verb verb;
	} verbs[] = {
	    {"USER", GH_POP3_CMD_USER},        {"PASS", GH_POP3_CMD_PASS},
	    {"AUTH", GH_POP3_CMD_AUTH},        {"CAPA", GH_POP3_CMD_CAPA},
	    {"STLS", GH_POP3_CMD_STLS},        {"QUIT", GH_POP3_CMD_QUIT},
	    {"NOOP", GH_POP3_CMD_NOOP},        {"APOP", GH_POP3_CMD_APOP},
	    {"STAT", GH_POP3_CMD_TRANSACTION}, {"LIST", GH_POP3_CMD_TRANSACTION},
	    {"RETR", GH_POP3_CMD_TRANSACTION}, {"DELE", GH_POP3_CMD_TRANSACTION},
	    {"RSET", GH_POP3_CMD_TRANSACTION}, {"TOP", GH_POP3_CMD_TRANSACTION},
	    {"UIDL", GH_POP3_CMD_TRANSACTION}, {"LAST", GH_POP3_CMD_TRANSACTION},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++) {
		const char *name = verbs[i].name;
		g_autofree char *lower = g_ascii_strdown(name, -1);
		g_autofree char *mixed = g_strdup(name);
		g_autofree char *with_arg = g_strdup_printf("%s x y", lower);
		g_autofree char *longer = g_strdup_printf("%sX", name);
		g_autofree char *shorter = g_strndup(name, strlen(name) - 1);
		g_autofree char *tab = g_strdup_printf("%s\t", name);
		g_autofree char *tab_arg = g_strdup_printf("%s\tx", name);
		g_autofree char *spaced = g_strdup_printf("%s ", name);

		/* "UsEr", "ToP" */
		for (gsize k = 1; k < strlen(mixed); k += 2)
			mixed[k] = g_ascii_tolower(mixed[k]);
		g_test_message("verb %s", name);
		check_command(name, strlen(name), verbs[i].verb, "", 0);
		check_command(lower, strlen(lower), verbs[i].verb, "", 0);
		check_command(mixed, strlen(mixed), verbs[i].verb, "", 0);
		/* PASS keeps "x y" as sent, the others trim it: the same here */
		check_command(with_arg, strlen(with_arg), verbs[i].verb, BYTES("x y"));
		check_command(spaced, strlen(spaced), verbs[i].verb, "", 0);
		/* the whole first word, not a prefix of it */
		check_command(longer, strlen(longer), GH_POP3_CMD_UNKNOWN, "", 0);
		check_command(shorter, strlen(shorter), GH_POP3_CMD_UNKNOWN, "", 0);
		/* the verb ends at a space only: with a tab it is another word */
		check_command(tab, strlen(tab), GH_POP3_CMD_UNKNOWN, "", 0);
		check_command(tab_arg, strlen(tab_arg), GH_POP3_CMD_UNKNOWN, "", 0);
	}
}

static void
test_command(void)
{
	static const struct {
		const char *line;
		gsize len;
		GhPop3Verb verb;
		const char *arg;
		gsize arg_len;
	} cases[] = {
	    {BYTES("user alice"), GH_POP3_CMD_USER, BYTES("alice")},
	    {BYTES("Capa"), GH_POP3_CMD_CAPA, BYTES("")},
	    {BYTES("USER bob@example.com"), GH_POP3_CMD_USER, BYTES("bob@example.com")},
	    {BYTES("USER j\xc3\xb6rg"), GH_POP3_CMD_USER, BYTES("j\xc3\xb6rg")},
	    /* the others: the spaces after the verb and trailing blanks go */
	    {BYTES("USER  alice  "), GH_POP3_CMD_USER, BYTES("alice")},
	    {BYTES("USER \talice\t "), GH_POP3_CMD_USER, BYTES("alice")},
	    {BYTES("USER a  b"), GH_POP3_CMD_USER, BYTES("a  b")},
	    {BYTES("USER"), GH_POP3_CMD_USER, BYTES("")},
	    {BYTES("USER "), GH_POP3_CMD_USER, BYTES("")},
	    {BYTES("USER  \t "), GH_POP3_CMD_USER, BYTES("")},
	    {BYTES("QUIT "), GH_POP3_CMD_QUIT, BYTES("")},
	    {BYTES("STLS x"), GH_POP3_CMD_STLS, BYTES("x")},
	    {BYTES("NOOP"), GH_POP3_CMD_NOOP, BYTES("")},
	    /* PASS: everything after the one space, as sent */
	    {BYTES("PASS secret"), GH_POP3_CMD_PASS, BYTES("secret")},
	    {BYTES("pass secret"), GH_POP3_CMD_PASS, BYTES("secret")},
	    {BYTES("PASS  secret"), GH_POP3_CMD_PASS, BYTES(" secret")},
	    {BYTES("PASS secret "), GH_POP3_CMD_PASS, BYTES("secret ")},
	    {BYTES("PASS  se cr  et\t "), GH_POP3_CMD_PASS, BYTES(" se cr  et\t ")},
	    {BYTES("PASS \t"), GH_POP3_CMD_PASS, BYTES("\t")},
	    {BYTES("PASS  "), GH_POP3_CMD_PASS, BYTES(" ")},
	    {BYTES("PASS "), GH_POP3_CMD_PASS, BYTES("")},
	    {BYTES("PASS"), GH_POP3_CMD_PASS, BYTES("")},
	    {BYTES("PASS \xc3\xa4\x01\x7f"), GH_POP3_CMD_PASS, BYTES("\xc3\xa4\x01\x7f")},
	    {BYTES("PASS\tsecret"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    /* AUTH and APOP */
	    {BYTES("AUTH"), GH_POP3_CMD_AUTH, BYTES("")},
	    {BYTES("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q="), GH_POP3_CMD_AUTH,
	     BYTES("PLAIN dGVzdAB0ZXN0AHRlc3Q=")},
	    {BYTES("auth  plain  = "), GH_POP3_CMD_AUTH, BYTES("plain  =")},
	    {BYTES("APOP mrose c4c9334bac560ecc979e58001b3e22fb"), GH_POP3_CMD_APOP,
	     BYTES("mrose c4c9334bac560ecc979e58001b3e22fb")},
	    /* the TRANSACTION state's */
	    {BYTES("STAT"), GH_POP3_CMD_TRANSACTION, BYTES("")},
	    {BYTES("LIST  1 "), GH_POP3_CMD_TRANSACTION, BYTES("1")},
	    {BYTES("retr 1"), GH_POP3_CMD_TRANSACTION, BYTES("1")},
	    {BYTES("DELE 2"), GH_POP3_CMD_TRANSACTION, BYTES("2")},
	    {BYTES("Rset"), GH_POP3_CMD_TRANSACTION, BYTES("")},
	    {BYTES("TOP 1 10"), GH_POP3_CMD_TRANSACTION, BYTES("1 10")},
	    {BYTES("uidl"), GH_POP3_CMD_TRANSACTION, BYTES("")},
	    {BYTES("LAST"), GH_POP3_CMD_TRANSACTION, BYTES("")},
	    /* unknown verbs still have their argument */
	    {BYTES("FOO"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    {BYTES("FOO bar "), GH_POP3_CMD_UNKNOWN, BYTES("bar")},
	    {BYTES("XTND XMIT"), GH_POP3_CMD_UNKNOWN, BYTES("XMIT")},
	    {BYTES("EHLO client.test"), GH_POP3_CMD_UNKNOWN, BYTES("client.test")},
	    {BYTES("STARTTLS"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    {BYTES("US ER a"), GH_POP3_CMD_UNKNOWN, BYTES("ER a")},
	    {BYTES(""), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    {BYTES("   "), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    /* the verb starts the line */
	    {BYTES(" USER alice"), GH_POP3_CMD_UNKNOWN, BYTES("USER alice")},
	    {BYTES("USER\talice"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    {BYTES("QUIT\t"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	    {BYTES("U\xc3\x9cSER a"), GH_POP3_CMD_UNKNOWN, BYTES("a")},
	    /* NUL and bare CR: invalid wherever they are, PASS included */
	    {BYTES("US\0ER a"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("USER a\0"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("\0"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("PASS se\0cret"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("USER a\r"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("PASS a\rb"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("\rQUIT"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("\r"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("FOO\rUSER a"), GH_POP3_CMD_INVALID, BYTES("")},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_command(cases[i].line, cases[i].len, cases[i].verb, cases[i].arg,
			      cases[i].arg_len);
	}
}

/* Where an argument is: right after the verb's separator, for PASS the one
 * space, for the others the run of blanks. */
static void
test_command_offsets(void)
{
	static const struct {
		const char *line;
		gsize len;
		gsize arg_at;
	} cases[] = {
	    {BYTES("USER alice"), 5}, {BYTES("USER  \talice "), 7}, {BYTES("PASS  x"), 5},
	    {BYTES("PASS x"), 5},     {BYTES("FOO  bar"), 5},       {BYTES(" USER a"), 1},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].line, cases[i].len);
		GhPop3Command cmd;

		gh_pop3_parse_command(copy, cases[i].len, &cmd);
		g_assert_cmpuint((gsize)(cmd.arg - copy), ==, cases[i].arg_at);
	}
}

/* A line from gh_line_next goes to parse_command as pop3-session.c frames
 * it: "USER a\r\r\n" ends in a bare CR, a 255-octet line is still a command,
 * 256 octets are not a line at GH_POP3_MAX_LINE. */
static void
test_line_to_command(void)
{
	static const struct {
		const char *in;
		gsize len;
		GhPop3Verb verb;
		const char *arg;
		gsize arg_len;
	} cases[] = {
	    {BYTES("USER a\r\n"), GH_POP3_CMD_USER, BYTES("a")},
	    {BYTES("USER a\n"), GH_POP3_CMD_USER, BYTES("a")},
	    {BYTES("PASS  x \r\n"), GH_POP3_CMD_PASS, BYTES(" x ")},
	    {BYTES("PASS x\n"), GH_POP3_CMD_PASS, BYTES("x")},
	    {BYTES("USER a\r\r\n"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("PASS a\rb\n"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("QU\0IT\r\n"), GH_POP3_CMD_INVALID, BYTES("")},
	    {BYTES("\r\n"), GH_POP3_CMD_UNKNOWN, BYTES("")},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].in, cases[i].len);
		gsize line_len = 0, used = 0;

		g_test_message("case %zu", i);
		g_assert_cmpint(
		    gh_line_next(copy, cases[i].len, GH_POP3_MAX_LINE, &line_len, &used, NULL), ==,
		    GH_LINE_OK);
		g_assert_cmpuint(used, ==, cases[i].len);
		check_command(copy, line_len, cases[i].verb, cases[i].arg, cases[i].arg_len);
	}
	for (gsize octets = 254; octets <= 256; octets++) {
		g_autoptr(GString) line = g_string_new("PASS ");
		g_autofree char *copy = NULL;
		gsize line_len = 0, used = 0;
		GhPop3Command cmd;

		while (line->len < octets - 2)
			g_string_append_c(line, 'x');
		g_string_append(line, "\r\n");
		copy = exact(line->str, line->len);
		g_test_message("%zu octets", octets);
		if (octets > GH_POP3_MAX_LINE) {
			g_assert_cmpint(
			    gh_line_next(copy, line->len, GH_POP3_MAX_LINE, &line_len, &used, NULL),
			    ==, GH_LINE_TOO_LONG);
			g_assert_cmpuint(used, ==, octets);
			continue;
		}
		g_assert_cmpint(
		    gh_line_next(copy, line->len, GH_POP3_MAX_LINE, &line_len, &used, NULL), ==,
		    GH_LINE_OK);
		g_assert_cmpuint(used, ==, octets);
		gh_pop3_parse_command(copy, line_len, &cmd);
		g_assert_cmpint(cmd.verb, ==, GH_POP3_CMD_PASS);
		g_assert_cmpuint(cmd.arg_len, ==, octets - 7);
		g_assert_true(cmd.arg == copy + 5);
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
	    /* 0 words: AUTH alone lists the mechanisms */
	    {BYTES(""), TRUE, NULL, NULL},
	    {BYTES("   "), TRUE, NULL, NULL},
	    {BYTES(" \t "), TRUE, NULL, NULL},
	    /* 1 word */
	    {BYTES("PLAIN"), TRUE, "PLAIN", NULL},
	    {BYTES("plain"), TRUE, "PLAIN", NULL},
	    {BYTES("Login"), TRUE, "LOGIN", NULL},
	    {BYTES("cram-md5"), TRUE, "CRAM-MD5", NULL},
	    {BYTES("x-oauth2 "), TRUE, "X-OAUTH2", NULL},
	    {BYTES("\tPLAIN"), TRUE, "PLAIN", NULL},
	    {BYTES("pl\xc3\xa4in"), TRUE, "PL\xc3\xa4IN", NULL},
	    /* 2 words: the initial response as given */
	    {BYTES("PLAIN ="), TRUE, "PLAIN", "="},
	    {BYTES("plain dGVzdAB0ZXN0AHRlc3Q="), TRUE, "PLAIN", "dGVzdAB0ZXN0AHRlc3Q="},
	    {BYTES("LOGIN YWxpY2U="), TRUE, "LOGIN", "YWxpY2U="},
	    {BYTES("PLAIN abc"), TRUE, "PLAIN", "abc"},
	    {BYTES(" \tPLAIN\t abc \t"), TRUE, "PLAIN", "abc"},
	    {BYTES("PLAIN\tabc"), TRUE, "PLAIN", "abc"},
	    {BYTES("PLAIN AbC="), TRUE, "PLAIN", "AbC="},
	    /* 3 words and more */
	    {BYTES("PLAIN a b"), FALSE, NULL, NULL},
	    {BYTES("PLAIN = ="), FALSE, NULL, NULL},
	    {BYTES("a b c d"), FALSE, NULL, NULL},
	    {BYTES("PLAIN abc\tx "), FALSE, NULL, NULL},
	};
	static char sentinel[] = "untouched";

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].arg, cases[i].len);
		char *mech = sentinel;
		char *initial = sentinel;
		gboolean ok;

		g_test_message("case %zu", i);
		ok = gh_pop3_parse_auth(copy, cases[i].len, &mech, &initial);
		g_assert_cmpint(ok, ==, cases[i].ok);
		/* both always set: NULL, or a new string */
		g_assert_true(mech != sentinel && initial != sentinel);
		g_assert_cmpstr(mech, ==, cases[i].mech);
		g_assert_cmpstr(initial, ==, cases[i].initial);
		g_free(mech);
		g_free(initial);
	}
}

/* ---- status lines ---- */

static void
test_status(void)
{
	static const struct {
		const char *line;
		gsize len;
		GhPop3Status status;
		const char *code; /* NULL: none */
		gsize code_len;
		gsize code_at; /* where the code starts in the line */
		const char *text;
		gsize text_len;
	} cases[] = {
	    {BYTES("+OK"), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("")},
	    {BYTES("+OK "), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("")},
	    {BYTES("+OK text"), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("text")},
	    {BYTES("+OK  Logged in. "), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("Logged in. ")},
	    {BYTES("+OK [XCLIENT] Dovecot ready."), GH_POP3_STATUS_OK, BYTES("XCLIENT"), 5,
	     BYTES("Dovecot ready.")},
	    {BYTES("-ERR"), GH_POP3_STATUS_ERR, NULL, 0, 0, BYTES("")},
	    {BYTES("-ERR no"), GH_POP3_STATUS_ERR, NULL, 0, 0, BYTES("no")},
	    {BYTES("-ERR [SYS/TEMP] text"), GH_POP3_STATUS_ERR, BYTES("SYS/TEMP"), 6,
	     BYTES("text")},
	    {BYTES("-ERR [AUTH]"), GH_POP3_STATUS_ERR, BYTES("AUTH"), 6, BYTES("")},
	    {BYTES("-ERR [AUTH] Authentication failed."), GH_POP3_STATUS_ERR, BYTES("AUTH"), 6,
	     BYTES("Authentication failed.")},
	    {BYTES("-ERR  [IN-USE]Mailbox locked "), GH_POP3_STATUS_ERR, BYTES("IN-USE"), 7,
	     BYTES("Mailbox locked ")},
	    {BYTES("-ERR [SYS/PERM]   x"), GH_POP3_STATUS_ERR, BYTES("SYS/PERM"), 6, BYTES("x")},
	    {BYTES("-ERR []"), GH_POP3_STATUS_ERR, BYTES(""), 6, BYTES("")},
	    {BYTES("+OK [A] [B] x"), GH_POP3_STATUS_OK, BYTES("A"), 5, BYTES("[B] x")},
	    {BYTES("-ERR [a]b]"), GH_POP3_STATUS_ERR, BYTES("a"), 6, BYTES("b]")},
	    {BYTES("-ERR [SYS\0TEMP] x"), GH_POP3_STATUS_ERR, BYTES("SYS\0TEMP"), 6, BYTES("x")},
	    {BYTES("+OK \0x"), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("\0x")},
	    /* an unterminated code is text */
	    {BYTES("-ERR [SYS/TEMP"), GH_POP3_STATUS_ERR, NULL, 0, 0, BYTES("[SYS/TEMP")},
	    {BYTES("-ERR ["), GH_POP3_STATUS_ERR, NULL, 0, 0, BYTES("[")},
	    {BYTES("+OK x [AUTH]"), GH_POP3_STATUS_OK, NULL, 0, 0, BYTES("x [AUTH]")},
	    /* a SASL challenge: "+" alone or "+ " base64, never a code */
	    {BYTES("+ "), GH_POP3_STATUS_MORE, NULL, 0, 0, BYTES("")},
	    {BYTES("+"), GH_POP3_STATUS_MORE, NULL, 0, 0, BYTES("")},
	    {BYTES("+ dGVzdA=="), GH_POP3_STATUS_MORE, NULL, 0, 0, BYTES("dGVzdA==")},
	    {BYTES("+  x"), GH_POP3_STATUS_MORE, NULL, 0, 0, BYTES("x")},
	    {BYTES("+ [AUTH] x"), GH_POP3_STATUS_MORE, NULL, 0, 0, BYTES("[AUTH] x")},
	    /* neither */
	    {BYTES("+OKX"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("-ERRx"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("-ERR[AUTH]"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("+ok"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("-err x"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("+OK\tx"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("+\tx"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("-"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("-ER"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("OK"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES(" +OK"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("220 mx ESMTP"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("* OK IMAP4rev1"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES(""), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	    {BYTES("\0"), GH_POP3_STATUS_BAD, NULL, 0, 0, BYTES("")},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *copy = exact(cases[i].line, cases[i].len);
		GhPop3StatusLine st;

		g_test_message("case %zu", i);
		memset(&st, 0xa5, sizeof st);
		gh_pop3_parse_status(copy, cases[i].len, &st);
		g_assert_cmpint(st.status, ==, cases[i].status);
		g_assert_cmpuint(st.code_len, ==, cases[i].code_len);
		g_assert_nonnull(st.code);
		g_assert_true(st.code >= copy && st.code + st.code_len <= copy + cases[i].len);
		if (cases[i].code != NULL) {
			g_assert_cmpuint((gsize)(st.code - copy), ==, cases[i].code_at);
			g_assert_cmpmem(st.code, st.code_len, cases[i].code, cases[i].code_len);
		}
		/* the text is the rest of the line */
		g_assert_cmpuint(st.text_len, ==, cases[i].text_len);
		g_assert_true(st.text == copy + cases[i].len - st.text_len);
		g_assert_cmpmem(st.text, st.text_len, cases[i].text, cases[i].text_len);
	}
}

/* RFC 2449 8: codes are hierarchical, "/" between levels; RFC 3206 adds
 * SYS/TEMP, SYS/PERM and AUTH. */
static void
test_code_is(void)
{
	static const struct {
		const char *line;
		const char *want;
		gboolean is;
	} cases[] = {
	    {"-ERR [SYS/TEMP] x", "SYS/TEMP", TRUE},
	    {"-ERR [SYS/TEMP] x", "SYS", TRUE},
	    {"-ERR [SYS/TEMP] x", "sys", TRUE},
	    {"-ERR [SYS/TEMP] x", "Sys/Temp", TRUE},
	    {"-ERR [sys/temp] x", "SYS", TRUE},
	    {"-ERR [SYS/TEMP] x", "SYS/PERM", FALSE},
	    {"-ERR [SYS/TEMP] x", "SYS/TEMP/X", FALSE},
	    {"-ERR [SYS/TEMP] x", "SYS/", FALSE},
	    {"-ERR [SYS/TEMP] x", "SY", FALSE},
	    {"-ERR [SYS/TEMP] x", "TEMP", FALSE},
	    {"-ERR [SYS/TEMP] x", "AUTH", FALSE},
	    {"-ERR [SYSX] x", "SYS", FALSE},
	    {"-ERR [SYSX] x", "SYSX", TRUE},
	    {"-ERR [SYS] x", "SYS", TRUE},
	    {"-ERR [SYS] x", "SYS/TEMP", FALSE},
	    {"-ERR [AUTH]", "AUTH", TRUE},
	    {"-ERR [AUTH]", "auth", TRUE},
	    {"-ERR [AUTH]", "AUTH/X", FALSE},
	    {"-ERR [AUTH]", "SYS", FALSE},
	    {"-ERR [IN-USE/x] locked", "IN-USE", TRUE},
	    {"-ERR [IN-USE] locked", "IN-USE", TRUE},
	    {"+OK [XCLIENT] Dovecot ready.", "XCLIENT", TRUE},
	    {"+OK [XCLIENT] Dovecot ready.", "xclient", TRUE},
	    {"+OK [XCLIENT] Dovecot ready.", "XCLIEN", FALSE},
	    {"+OK [XCLIENT] Dovecot ready.", "XCLIENTS", FALSE},
	    /* no code at all */
	    {"-ERR x", "SYS", FALSE},
	    {"-ERR x", "AUTH", FALSE},
	    {"-ERR [SYS/TEMP", "SYS", FALSE},
	    {"-ERR []", "SYS", FALSE},
	    {"+ [SYS/TEMP]", "SYS", FALSE},
	    {"+OKX [SYS/TEMP]", "SYS", FALSE},
	    /* the code after the status, not in the text */
	    {"-ERR x [SYS/TEMP]", "SYS", FALSE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		gsize len = strlen(cases[i].line);
		g_autofree char *copy = exact(cases[i].line, len);
		GhPop3StatusLine st;

		g_test_message("case %zu: %s is %s", i, cases[i].line, cases[i].want);
		gh_pop3_parse_status(copy, len, &st);
		g_assert_cmpint(gh_pop3_code_is(&st, cases[i].want), ==, cases[i].is);
	}
}

/* ---- multi-line bodies ---- */

/* Parse buf[0..len) with `max`; expect `want`, and on OK these lines
 * (joined with "|"; "" for none) and `consumed`. */
static void
check_multi(const char *buf,
	    gsize len,
	    gsize max,
	    GhPop3MultiStatus want,
	    const char *joined,
	    gsize consumed)
{
	g_autofree char *copy = exact(buf, len);
	static char *poison[] = {NULL};
	char **lines = poison;
	gsize used = 777;
	GhPop3MultiStatus ms = gh_pop3_parse_multiline(copy, len, max, &lines, &used);

	g_assert_cmpint(ms, ==, want);
	g_assert_true(lines != poison);
	if (ms != GH_POP3_MULTI_OK) {
		g_assert_null(lines);
		g_assert_cmpuint(used, ==, 0);
		return;
	}
	{
		g_autofree char *got = NULL;

		g_assert_nonnull(lines);
		got = g_strjoinv("|", lines);
		g_assert_cmpstr(got, ==, joined);
	}
	g_assert_cmpuint(used, ==, consumed);
	g_strfreev(lines);
}

static void
test_multiline(void)
{
	static const struct {
		const char *in;
		gsize len;
		const char *lines; /* joined with "|" */
		gsize consumed;
	} cases[] = {
	    {BYTES(".\r\n"), "", 3},
	    {BYTES(".\n"), "", 2},
	    {BYTES("CAPA\r\nTOP\r\n.\r\n"), "CAPA|TOP", 14},
	    /* bare LF line ends, alone or mixed */
	    {BYTES("CAPA\nUSER\n.\n"), "CAPA|USER", 12},
	    {BYTES("a\r\nb\n.\r\n"), "a|b", 8},
	    /* dot-unstuffing */
	    {BYTES("..\r\n.\r\n"), ".", 7},
	    {BYTES("...x\r\n.\r\n"), "..x", 9},
	    {BYTES(".a\r\n.\r\n"), "a", 7},
	    {BYTES("a.\r\n.\r\n"), "a.", 7},
	    {BYTES(". \r\n.\r\n"), " ", 7},
	    {BYTES(".\r\r\n.\r\n"), "\r", 7},
	    /* empty lines */
	    {BYTES("\r\n.\r\n"), "", 5},
	    {BYTES("\r\n\n.\n"), "|", 5},
	    /* the body ends at its "." line: what follows is not consumed */
	    {BYTES("A\r\n.\r\n+OK next\r\n"), "A", 6},
	    {BYTES("A\r\n.\r\n.\r\n"), "A", 6},
	    {BYTES(".\r\nB\r\n.\r\n"), "", 3},
	};
	/* one more check on the empty list: lines[0] is NULL, not "" */
	g_autofree char *empty = exact(BYTES(".\r\n"));
	char **lines = NULL;
	gsize used = 0;

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_multi(cases[i].in, cases[i].len, 4096, GH_POP3_MULTI_OK, cases[i].lines,
			    cases[i].consumed);
	}
	g_assert_cmpint(gh_pop3_parse_multiline(empty, 3, 4096, &lines, &used), ==,
			GH_POP3_MULTI_OK);
	g_assert_nonnull(lines);
	g_assert_null(lines[0]);
	g_assert_cmpuint(used, ==, 3);
	g_strfreev(lines);
	/* "\r\n\n.\n" has two empty lines */
	{
		g_autofree char *two = exact(BYTES("\r\n\n.\n"));

		g_assert_cmpint(gh_pop3_parse_multiline(two, 5, 4096, &lines, &used), ==,
				GH_POP3_MULTI_OK);
		g_assert_cmpuint(g_strv_length(lines), ==, 2);
		g_assert_cmpstr(lines[0], ==, "");
		g_assert_cmpstr(lines[1], ==, "");
		g_strfreev(lines);
	}
}

/* Every proper prefix of a body is NEED_MORE; the whole, and the whole with
 * more after it, is OK with the same lines and consumed count. */
static void
test_multiline_partial(void)
{
	static const char body[] = "CAPA\r\nTOP\r\n..stuffed\r\n\r\nSASL PLAIN LOGIN\n.x\r\n.\r\n";
	const gsize len = sizeof body - 1;
	g_autofree char *more = g_strconcat(body, "+OK\r\n", NULL);

	for (gsize n = 0; n < len; n++) {
		g_test_message("prefix of %zu", n);
		check_multi(body, n, 4096, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	}
	check_multi(body, len, 4096, GH_POP3_MULTI_OK, "CAPA|TOP|.stuffed||SASL PLAIN LOGIN|x",
		    len);
	check_multi(more, len + 5, 4096, GH_POP3_MULTI_OK, "CAPA|TOP|.stuffed||SASL PLAIN LOGIN|x",
		    len);
	/* exactly `max` bytes is still within it */
	check_multi(body, len, len, GH_POP3_MULTI_OK, "CAPA|TOP|.stuffed||SASL PLAIN LOGIN|x", len);
	/* a "." that is not a line of its own is no end */
	check_multi(BYTES("a\r\n.\r"), 4096, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	check_multi(BYTES("a\r\n. \r\n"), 4096, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	check_multi(BYTES("a\r\n.."), 4096, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	check_multi(BYTES(".x\r\n"), 4096, GH_POP3_MULTI_NEED_MORE, NULL, 0);
}

/* A line over GH_POP3_MAX_REPLY_LINE (its terminator counted), or more than
 * `max` bytes in all, is BAD. */
static void
test_multiline_limits(void)
{
	g_autofree char *x = g_strnfill(GH_POP3_MAX_REPLY_LINE + 1, 'x');
	g_autofree char *after = NULL;

	for (gsize octets = GH_POP3_MAX_REPLY_LINE - 1; octets <= GH_POP3_MAX_REPLY_LINE + 1;
	     octets++) {
		for (int crlf = 0; crlf <= 1; crlf++) {
			gsize text = octets - (crlf ? 2 : 1);
			g_autoptr(GString) in = g_string_new_len(x, (gssize)text);
			g_autofree char *want = g_strnfill(text, 'x');

			g_string_append(in, crlf ? "\r\n" : "\n");
			g_string_append(in, ".\r\n");
			g_test_message("a line of %zu octets, %s", octets, crlf ? "CRLF" : "LF");
			if (octets <= GH_POP3_MAX_REPLY_LINE)
				check_multi(in->str, in->len, 64 * 1024, GH_POP3_MULTI_OK, want,
					    in->len);
			else
				check_multi(in->str, in->len, 64 * 1024, GH_POP3_MULTI_BAD, NULL,
					    0);
		}
	}
	/* no line end yet: BAD once the line cannot fit any more */
	check_multi(x, GH_POP3_MAX_REPLY_LINE - 1, 64 * 1024, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	check_multi(x, GH_POP3_MAX_REPLY_LINE, 64 * 1024, GH_POP3_MULTI_BAD, NULL, 0);
	after = g_strconcat("a\r\n", x, NULL);
	check_multi(after, strlen(after), 64 * 1024, GH_POP3_MULTI_BAD, NULL, 0);

	/* the total: "a\r\nb\r\n.\r\n" is 9 bytes */
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 9, GH_POP3_MULTI_OK, "a|b", 9);
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 8, GH_POP3_MULTI_BAD, NULL, 0);
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 6, GH_POP3_MULTI_BAD, NULL, 0);
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 5, GH_POP3_MULTI_BAD, NULL, 0);
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 2, GH_POP3_MULTI_BAD, NULL, 0);
	check_multi(BYTES("a\r\nb\r\n.\r\n"), 0, GH_POP3_MULTI_BAD, NULL, 0);
	/* what follows the body is not counted */
	check_multi(BYTES("a\r\n.\r\n+OK and more after the body\r\n"), 6, GH_POP3_MULTI_OK, "a",
		    6);
	/* a body not finished yet that is longer than `max` already */
	check_multi(BYTES("a\r\nbcdefgh"), 10, GH_POP3_MULTI_NEED_MORE, NULL, 0);
	check_multi(BYTES("a\r\nbcdefgh"), 9, GH_POP3_MULTI_BAD, NULL, 0);
	check_multi(BYTES("a\r\nbcdefgh"), 3, GH_POP3_MULTI_BAD, NULL, 0);
}

/* ---- CAPA ---- */

static void
test_capa_find(void)
{
	static char *capa[] = {
	    "CAPA",
	    "TOP",
	    "UIDL",
	    "RESP-CODES",
	    "PIPELINING",
	    "sasl PLAIN  LOGIN\t",
	    "USER",
	    "XCLIENT",
	    "IMPLEMENTATION Dovecot ready",
	    "STLS",
	    "EXPIRE 30 USER",
	    "LOGIN-DELAY\t900",
	    "SASL X-SECOND",
	    "",
	    NULL,
	};
	static const struct {
		const char *keyword;
		int index;          /* of the line found, -1: none */
		const char *params; /* joined with "|" */
	} cases[] = {
	    {"SASL", 5, "PLAIN|LOGIN"},
	    {"Sasl", 5, "PLAIN|LOGIN"},
	    {"sasl", 5, "PLAIN|LOGIN"},
	    {"PIPELINING", 4, ""},
	    {"pipelining", 4, ""},
	    {"XCLIENT", 7, ""},
	    {"USER", 6, ""},
	    {"STLS", 9, ""},
	    {"CAPA", 0, ""},
	    {"EXPIRE", 10, "30|USER"},
	    {"LOGIN-DELAY", 11, "900"},
	    {"IMPLEMENTATION", 8, "Dovecot|ready"},
	    /* a whole first word, not a prefix, not a later word */
	    {"PIPELINE", -1, NULL},
	    {"PIPELININGS", -1, NULL},
	    {"XCLIEN", -1, NULL},
	    {"XCLIENTS", -1, NULL},
	    {"LOGIN", -1, NULL},
	    {"PLAIN", -1, NULL},
	    {"Dovecot", -1, NULL},
	    {"AUTH-RESP-CODE", -1, NULL},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		static char *poison[] = {NULL};
		char **params = poison;
		g_autofree char *joined = NULL;
		const char *found;

		g_test_message("case %zu: %s", i, cases[i].keyword);
		found = gh_pop3_capa_find(capa, cases[i].keyword, &params);
		/* params always set: NULL when not found */
		g_assert_true(params != poison);
		if (cases[i].index < 0) {
			g_assert_null(found);
			g_assert_null(params);
		} else {
			g_assert_true(found == capa[cases[i].index]);
			g_assert_nonnull(params);
			joined = g_strjoinv("|", params);
		}
		g_assert_cmpstr(joined, ==, cases[i].params);
		g_strfreev(params);
		/* params may be NULL */
		g_assert_true(gh_pop3_capa_find(capa, cases[i].keyword, NULL) == found);
	}
	/* no CAPA answer, or an empty one */
	{
		static char *none[] = {NULL};
		char **params = none;

		g_assert_null(gh_pop3_capa_find(NULL, "SASL", &params));
		g_assert_null(params);
		params = capa;
		g_assert_null(gh_pop3_capa_find(none, "SASL", &params));
		g_assert_null(params);
		g_assert_null(gh_pop3_capa_find(NULL, "SASL", NULL));
	}
	/* what a Dovecot sends, read by the body parser first */
	{
		static const char body[] = "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
					   "AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";
		g_autofree char *copy = exact(body, sizeof body - 1);
		g_auto(GStrv) lines = NULL;
		g_auto(GStrv) params = NULL;
		gsize used = 0;

		g_assert_cmpint(
		    gh_pop3_parse_multiline(copy, sizeof body - 1, 16 * 1024, &lines, &used), ==,
		    GH_POP3_MULTI_OK);
		g_assert_cmpuint(used, ==, sizeof body - 1);
		g_assert_cmpuint(g_strv_length(lines), ==, 8);
		g_assert_cmpstr(gh_pop3_capa_find(lines, "SASL", &params), ==, "SASL PLAIN LOGIN");
		g_assert_cmpuint(g_strv_length(params), ==, 2);
		g_assert_cmpstr(params[0], ==, "PLAIN");
		g_assert_cmpstr(params[1], ==, "LOGIN");
		g_assert_cmpstr(gh_pop3_capa_find(lines, "PIPELINING", NULL), ==, "PIPELINING");
		g_assert_null(gh_pop3_capa_find(lines, "STLS", NULL));
		g_assert_null(gh_pop3_capa_find(lines, "XCLIENT", NULL));
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/pop3-parser/limits", test_limits);
	g_test_add_func("/gatehouse/pop3-parser/command-verbs", test_command_verbs);
	g_test_add_func("/gatehouse/pop3-parser/command", test_command);
	g_test_add_func("/gatehouse/pop3-parser/command-offsets", test_command_offsets);
	g_test_add_func("/gatehouse/pop3-parser/line-to-command", test_line_to_command);
	g_test_add_func("/gatehouse/pop3-parser/auth", test_auth);
	g_test_add_func("/gatehouse/pop3-parser/status", test_status);
	g_test_add_func("/gatehouse/pop3-parser/code-is", test_code_is);
	g_test_add_func("/gatehouse/pop3-parser/multiline", test_multiline);
	g_test_add_func("/gatehouse/pop3-parser/multiline-partial", test_multiline_partial);
	g_test_add_func("/gatehouse/pop3-parser/multiline-limits", test_multiline_limits);
	g_test_add_func("/gatehouse/pop3-parser/capa-find", test_capa_find);
	return g_test_run();
}
