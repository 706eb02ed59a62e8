/*
 * test-smtp-parser.c: the pure SMTP parsers of daemon/smtp/smtp-parser.c and common/line.c: line
 * framing (CRLF, bare LF, the 512-octet limit, over-long lines and skipping
 * them, a 100 KB line), every input fed whole, one byte at a time and in
 * chunks; command classification; MAIL/RCPT paths; AUTH arguments; server
 * replies (multi-line, partial, malformed, over the limit); EHLO extensions;
 * xtext.
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

/* ---- line framing ---- */

typedef struct {
	GhLineStatus st;
	gsize line_len;
	gsize consumed;
	gboolean terminated;
} LineResult;

static LineResult
next_line(const char *buf, gsize len, gsize max)
{
	g_autofree char *copy = exact(buf, len);
	/* poison: every out parameter must be set, whatever the answer */
	LineResult r = {GH_LINE_OK, 12345, 12345, 7};

	r.st = gh_line_next(copy, len, max, &r.line_len, &r.consumed, &r.terminated);
	return r;
}

static void
assert_line_result(LineResult got, LineResult want)
{
	g_assert_cmpint(got.st, ==, want.st);
	g_assert_cmpuint(got.line_len, ==, want.line_len);
	g_assert_cmpuint(got.consumed, ==, want.consumed);
	g_assert_cmpint(got.terminated, ==, want.terminated);
}

/* Check buf whole, then every prefix of it, as if it came one byte at a
 * time: a line is NEED_MORE until its LF is in, then the same as whole; an
 * over-long line is NEED_MORE until `max` bytes are in, then TOO_LONG,
 * dropping all there is until its LF arrives. */
static void
check_line(const char *buf, gsize len, gsize max, LineResult want)
{
	assert_line_result(next_line(buf, len, max), want);

	for (gsize k = 0; k <= len; k++) {
		LineResult got = next_line(buf, k, max);
		LineResult expect = {GH_LINE_NEED_MORE, 0, 0, FALSE};

		if (want.st == GH_LINE_OK && k >= want.consumed) {
			expect = want;
		} else if (want.st == GH_LINE_TOO_LONG && k >= max && k > 0) {
			expect.st = GH_LINE_TOO_LONG;
			expect.terminated = k >= want.consumed && want.terminated;
			expect.consumed = expect.terminated ? want.consumed : k;
		}
		if (got.st != expect.st || got.consumed != expect.consumed)
			g_test_message("prefix %zu of %zu", k, len);
		assert_line_result(got, expect);
	}

	/* terminated may be NULL */
	{
		g_autofree char *copy = exact(buf, len);
		gsize line_len = 0, consumed = 0;

		g_assert_cmpint(gh_line_next(copy, len, max, &line_len, &consumed, NULL), ==,
				want.st);
		g_assert_cmpuint(consumed, ==, want.consumed);
	}
}

static void
test_next_line(void)
{
	static const struct {
		const char *in;
		gsize len;
		gsize max;
		LineResult want;
	} cases[] = {
	    /* CRLF and bare LF */
	    {BYTES("HELO a\r\n"), 512, {GH_LINE_OK, 6, 8, TRUE}},
	    {BYTES("HELO a\n"), 512, {GH_LINE_OK, 6, 7, TRUE}},
	    {BYTES("\r\n"), 512, {GH_LINE_OK, 0, 2, TRUE}},
	    {BYTES("\n"), 512, {GH_LINE_OK, 0, 1, TRUE}},
	    /* only the first line; the rest stays */
	    {BYTES("HELO a\r\nNOOP\r\n"), 512, {GH_LINE_OK, 6, 8, TRUE}},
	    {BYTES("HELO a\nNOOP"), 512, {GH_LINE_OK, 6, 7, TRUE}},
	    {BYTES("\n\n"), 512, {GH_LINE_OK, 0, 1, TRUE}},
	    /* one CR before the LF is the terminator; any other is line data
	     * (the command parser calls it invalid) */
	    {BYTES("a\r\r\n"), 512, {GH_LINE_OK, 2, 4, TRUE}},
	    {BYTES("a\rb\n"), 512, {GH_LINE_OK, 3, 4, TRUE}},
	    {BYTES("\ra\r\n"), 512, {GH_LINE_OK, 2, 4, TRUE}},
	    /* NUL is line data too */
	    {BYTES("a\0b\r\n"), 512, {GH_LINE_OK, 3, 5, TRUE}},
	    /* partial lines */
	    {BYTES(""), 512, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	    {BYTES("HELO a"), 512, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	    {BYTES("HELO a\r"), 512, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	    {BYTES("\r"), 512, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	    /* small limits: the terminator counts, CRLF 2 and LF 1 */
	    {BYTES("123456\r\n"), 8, {GH_LINE_OK, 6, 8, TRUE}},
	    {BYTES("1234567\n"), 8, {GH_LINE_OK, 7, 8, TRUE}},
	    {BYTES("1234567\r\n"), 8, {GH_LINE_TOO_LONG, 0, 9, TRUE}},
	    {BYTES("12345678\n"), 8, {GH_LINE_TOO_LONG, 0, 9, TRUE}},
	    {BYTES("1234567"), 8, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	    /* 8 bytes without LF: whatever comes, the line is over 8 */
	    {BYTES("1234567\r"), 8, {GH_LINE_TOO_LONG, 0, 8, FALSE}},
	    {BYTES("12345678"), 8, {GH_LINE_TOO_LONG, 0, 8, FALSE}},
	    {BYTES("1234567890"), 8, {GH_LINE_TOO_LONG, 0, 10, FALSE}},
	    /* TOO_LONG with the LF in the buffer: dropped up to it */
	    {BYTES("1234567890\r\nNOOP\r\n"), 8, {GH_LINE_TOO_LONG, 0, 12, TRUE}},
	    {BYTES("1234567890\nNOOP"), 8, {GH_LINE_TOO_LONG, 0, 11, TRUE}},
	    /* degenerate limits */
	    {BYTES("\n"), 1, {GH_LINE_OK, 0, 1, TRUE}},
	    {BYTES("\r\n"), 1, {GH_LINE_TOO_LONG, 0, 2, TRUE}},
	    {BYTES("x"), 0, {GH_LINE_TOO_LONG, 0, 1, FALSE}},
	    {BYTES(""), 0, {GH_LINE_NEED_MORE, 0, 0, FALSE}},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("case %zu", i);
		check_line(cases[i].in, cases[i].len, cases[i].max, cases[i].want);
	}
}

/* RFC 5321 4.5.3.1.4 at GH_SMTP_MAX_LINE: 512 octets with the CRLF fit. */
static void
test_limit(void)
{
	static const struct {
		gsize text; /* bytes before the terminator */
		gboolean crlf;
		GhLineStatus st;
	} cases[] = {
	    {510, TRUE, GH_LINE_OK},        /* 512 with CRLF */
	    {511, TRUE, GH_LINE_TOO_LONG},  /* 513 with CRLF */
	    {511, FALSE, GH_LINE_OK},       /* 512 with LF */
	    {512, FALSE, GH_LINE_TOO_LONG}, /* 513 with LF */
	    {509, TRUE, GH_LINE_OK},        {600, TRUE, GH_LINE_TOO_LONG},
	};

	g_assert_cmpuint(GH_SMTP_MAX_LINE, ==, 512);
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GString) s = g_string_new("MAIL FROM:<");
		LineResult want;

		while (s->len < cases[i].text)
			g_string_append_c(s, 'a');
		g_string_append(s, cases[i].crlf ? "\r\n" : "\n");
		want.st = cases[i].st;
		want.terminated = TRUE;
		want.consumed = s->len;
		want.line_len = cases[i].st == GH_LINE_OK ? cases[i].text : 0;
		g_test_message("case %zu: %zu octets", i, s->len);
		check_line(s->str, s->len, GH_SMTP_MAX_LINE, want);
	}
}

static void
test_too_long_skip(void)
{
	g_autoptr(GString) s = g_string_new(NULL);
	LineResult r;
	gboolean terminated = TRUE;
	gsize off;

	/* Without the LF: all of it goes, and skip_line keeps dropping. */
	g_string_append_len(s, "0123456789", 10);
	r = next_line(s->str, s->len, 8);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, 10, FALSE});
	g_string_assign(s, "abcdef");
	{
		g_autofree char *copy = exact(s->str, s->len);

		g_assert_cmpuint(gh_line_skip(copy, s->len, &terminated), ==, 6);
		g_assert_false(terminated);
	}
	/* ... until the LF comes; then the next line is read as usual. */
	g_string_assign(s, "gh\r\nNOOP\r\n");
	{
		g_autofree char *copy = exact(s->str, s->len);

		g_assert_cmpuint(gh_line_skip(copy, s->len, &terminated), ==, 4);
		g_assert_true(terminated);
	}
	off = 4;
	r = next_line(s->str + off, s->len - off, 8);
	assert_line_result(r, (LineResult){GH_LINE_OK, 4, 6, TRUE});

	/* With the LF: dropped up to and including it, no skipping needed. */
	g_string_assign(s, "0123456789\nQUIT\r\n");
	r = next_line(s->str, s->len, 8);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, 11, TRUE});
	r = next_line(s->str + r.consumed, s->len - r.consumed, 8);
	assert_line_result(r, (LineResult){GH_LINE_OK, 4, 6, TRUE});

	/* skip_line edge cases: nothing, a lone LF, the LF first */
	terminated = TRUE;
	g_assert_cmpuint(gh_line_skip(NULL, 0, &terminated), ==, 0);
	g_assert_false(terminated);
	{
		g_autofree char *copy = exact("\n", 1);

		g_assert_cmpuint(gh_line_skip(copy, 1, &terminated), ==, 1);
		g_assert_true(terminated);
	}
	{
		g_autofree char *copy = exact("\nabc\n", 5);

		g_assert_cmpuint(gh_line_skip(copy, 5, &terminated), ==, 1);
		g_assert_true(terminated);
	}
	{
		g_autofree char *copy = exact("a\0b", 3);

		g_assert_cmpuint(gh_line_skip(copy, 3, &terminated), ==, 3);
		g_assert_false(terminated);
	}
}

/* A caller's loop (like the SMTP session's): append input as it arrives,
 * take whole lines, drop over-long ones with skip_line.  Returns what it
 * saw: each line's text, or "<too long>". */
static GPtrArray *
stream(const char *in, gsize len, gsize chunk, gsize max)
{
	GPtrArray *events = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GByteArray) buf = g_byte_array_new();
	gboolean discarding = FALSE;

	for (gsize off = 0; off < len; off += chunk) {
		g_byte_array_append(buf, (const guint8 *)in + off, (guint)MIN(chunk, len - off));
		while (buf->len > 0) {
			g_autofree char *copy = exact((const char *)buf->data, buf->len);
			gsize line_len = 99, used = 99;
			gboolean terminated = FALSE;
			GhLineStatus st;

			if (discarding) {
				used = gh_line_skip(copy, buf->len, &terminated);
				g_assert_cmpuint(used, >, 0);
				g_byte_array_remove_range(buf, 0, (guint)used);
				discarding = !terminated;
				continue;
			}
			st = gh_line_next(copy, buf->len, max, &line_len, &used, &terminated);
			if (st == GH_LINE_NEED_MORE) {
				g_assert_cmpuint(used, ==, 0);
				g_assert_cmpuint(buf->len, <, max);
				break;
			}
			g_assert_cmpuint(used, >, 0);
			if (st == GH_LINE_OK) {
				g_ptr_array_add(events, g_strndup(copy, line_len));
			} else {
				g_assert_cmpuint(line_len, ==, 0);
				g_ptr_array_add(events, g_strdup("<too long>"));
				discarding = !terminated;
			}
			g_byte_array_remove_range(buf, 0, (guint)used);
		}
	}
	g_assert_false(discarding);
	g_assert_cmpuint(buf->len, ==, 0);
	return events;
}

static void
assert_events(GPtrArray *got, const char *const *want)
{
	g_ptr_array_add(got, NULL);
	g_assert_cmpstrv((const char *const *)got->pdata, want);
}

static void
test_stream(void)
{
	static const gsize chunks[] = {1, 2, 3, 7, 64, 511, 512, 513, 4096};
	g_autoptr(GString) in = g_string_new("HELO a\r\n");
	g_autofree char *exact_line = NULL;
	const char *want[] = {"HELO a", "<too long>", "NOOP", "", NULL, "<too long>", "QUIT", NULL};

	for (int i = 0; i < 600; i++)
		g_string_append_c(in, 'x');
	g_string_append(in, "\r\nNOOP\n\r\n");
	exact_line = g_strnfill(510, 'z'); /* 512 with its CRLF: fits */
	want[4] = exact_line;
	g_string_append_printf(in, "%s\r\n", exact_line);
	for (int i = 0; i < 520; i++)
		g_string_append_c(in, 'y');
	g_string_append(in, "\nQUIT\r\n");

	for (gsize i = 0; i < G_N_ELEMENTS(chunks); i++) {
		g_autoptr(GPtrArray) got = stream(in->str, in->len, chunks[i], GH_SMTP_MAX_LINE);

		g_test_message("chunks of %zu", chunks[i]);
		assert_events(got, want);
	}
	{
		g_autoptr(GPtrArray) got = stream(in->str, in->len, in->len, GH_SMTP_MAX_LINE);

		assert_events(got, want);
	}
}

static void
test_huge_line(void)
{
	static const gsize chunks[] = {1, 4096, 100 * 1024 + 8};
	static const char *const want[] = {"<too long>", "NOOP", NULL};
	const gsize n = 100 * 1024;
	g_autoptr(GString) in = g_string_new(NULL);
	LineResult r;

	g_string_append_len(in, "AUTH PLAIN ", 11);
	while (in->len < n)
		g_string_append_c(in, 'A');
	g_string_append(in, "\r\nNOOP\r\n");

	r = next_line(in->str, in->len, GH_SMTP_MAX_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n + 2, TRUE});
	r = next_line(in->str, in->len, GH_SMTP_MAX_AUTH_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n + 2, TRUE});
	r = next_line(in->str, n, GH_SMTP_MAX_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n, FALSE});
	/* a limit above it takes it whole */
	r = next_line(in->str, in->len, 2 * n);
	assert_line_result(r, (LineResult){GH_LINE_OK, n, n + 2, TRUE});

	for (gsize i = 0; i < G_N_ELEMENTS(chunks); i++) {
		g_autoptr(GPtrArray) got = stream(in->str, in->len, chunks[i], GH_SMTP_MAX_LINE);

		g_test_message("chunks of %zu", chunks[i]);
		assert_events(got, want);
	}
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

/* A line from next_line goes to parse_command: "HELO a\r\r\n" ends in a
 * bare CR, and a 512-octet line is still a command. */
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
	GhSmtpReply reply = {0, NULL};

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
		GhSmtpReply r = {0, NULL};
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
	GhSmtpReply r = {0, NULL};
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
	g_test_add_func("/gatehouse/smtp-parser/next-line", test_next_line);
	g_test_add_func("/gatehouse/smtp-parser/limit", test_limit);
	g_test_add_func("/gatehouse/smtp-parser/too-long-skip", test_too_long_skip);
	g_test_add_func("/gatehouse/smtp-parser/stream", test_stream);
	g_test_add_func("/gatehouse/smtp-parser/huge-line", test_huge_line);
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
