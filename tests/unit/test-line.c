/*
 * test-line.c: the line framing of common/line.c (gh_line_next,
 * gh_line_next_command, gh_line_skip) that SMTP, POP3, IMAP backend and
 * SASL lines share: CRLF and bare
 * LF, a CR that is line data, the limit counting the terminator, over-long
 * lines and skipping them, a 100 KB line; every input fed whole, one byte at
 * a time and in chunks.
 *
 * Every call gets a heap copy of exactly the bytes it may read, so valgrind
 * reports any read past `len`.  Links libghcommon only: the limits below are
 * SMTP's (RFC 5321 section 4.5.3.1.4, RFC 4954 section 4) written out, and
 * test-smtp-parser.c checks that the SMTP parser's are the same.
 */
#include "gh-build.h"

#include "common/line.h"

#include <string.h>

#define MAX_LINE 512
#define MAX_AUTH_LINE 12288

/* A table string that may hold NUL bytes: its bytes and its length. */
#define BYTES(s) s, sizeof(s) - 1

/* An exact-size heap copy of buf[0..len) (NULL for 0 bytes). */
static char *
exact(const char *buf, gsize len)
{
	return g_memdup2(buf, len);
}

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

/* At the boundary of a real limit (SMTP's, RFC 5321 section 4.5.3.1.4):
 * 512 octets with the terminator fit, 513 do not. */
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
		check_line(s->str, s->len, MAX_LINE, want);
	}
}

/* gh_line_next_command: past MAX_LINE only a line whose first word is AUTH
 * (any case, ended by a space, a tab or the line end) is a line; the rest
 * is TOO_LONG over the same bytes, whole in the buffer. */
static void
test_next_command(void)
{
	static const struct {
		const char *head; /* the line starts so; 'a's fill it to `text` */
		gsize text;       /* bytes before the CRLF */
		GhLineStatus st;
	} cases[] = {
	    {"AUTH PLAIN ", 600, GH_LINE_OK},
	    {"auth plain ", 600, GH_LINE_OK},
	    {"AuTh\t", 600, GH_LINE_OK},
	    {"AUTH PLAIN ", MAX_AUTH_LINE - 2, GH_LINE_OK},
	    {"AUTH PLAIN ", MAX_AUTH_LINE - 1, GH_LINE_TOO_LONG},
	    {"AUTHX ", 600, GH_LINE_TOO_LONG},
	    {"AUT", 600, GH_LINE_TOO_LONG},
	    {" AUTH ", 600, GH_LINE_TOO_LONG},
	    {"MAIL FROM:<", 600, GH_LINE_TOO_LONG},
	    {"MAIL FROM:<", MAX_LINE - 2, GH_LINE_OK},
	    {"MAIL FROM:<", MAX_LINE - 1, GH_LINE_TOO_LONG},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GString) s = g_string_new(cases[i].head);
		g_autofree char *buf = NULL;
		gsize line_len = 99, used = 0;
		gboolean term = FALSE;
		GhLineStatus st;

		while (s->len < cases[i].text)
			g_string_append_c(s, 'a');
		g_string_append(s, "\r\nNOOP\r\n");
		buf = exact(s->str, s->len);
		g_test_message("case %zu: %s... %zu octets", i, cases[i].head, cases[i].text);
		st = gh_line_next_command(buf, s->len, MAX_LINE, MAX_AUTH_LINE, "AUTH", &line_len,
					  &used, &term);
		g_assert_cmpint(st, ==, cases[i].st);
		g_assert_true(term);
		g_assert_cmpuint(used, ==, cases[i].text + 2);
		g_assert_cmpuint(line_len, ==, st == GH_LINE_OK ? cases[i].text : 0);
	}
	/* "AUTH" alone, and a line that does not end yet */
	{
		g_autofree char *buf = exact(BYTES("AUTH\n"));
		gsize line_len = 0, used = 0;
		g_assert_cmpint(
		    gh_line_next_command(buf, 5, 3, MAX_AUTH_LINE, "AUTH", &line_len, &used, NULL),
		    ==, GH_LINE_OK);
		g_assert_cmpuint(line_len, ==, 4);
		g_assert_cmpuint(used, ==, 5);
	}
	{
		g_autofree char *buf = exact(BYTES("AUTH PLAIN abc"));
		gsize line_len = 0, used = 7;
		gboolean term = TRUE;
		g_assert_cmpint(gh_line_next_command(buf, 14, 5, MAX_AUTH_LINE, "AUTH", &line_len,
						     &used, &term),
				==, GH_LINE_NEED_MORE);
		g_assert_cmpuint(used, ==, 0);
		g_assert_false(term);
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
		g_autoptr(GPtrArray) got = stream(in->str, in->len, chunks[i], MAX_LINE);

		g_test_message("chunks of %zu", chunks[i]);
		assert_events(got, want);
	}
	{
		g_autoptr(GPtrArray) got = stream(in->str, in->len, in->len, MAX_LINE);

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

	r = next_line(in->str, in->len, MAX_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n + 2, TRUE});
	r = next_line(in->str, in->len, MAX_AUTH_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n + 2, TRUE});
	r = next_line(in->str, n, MAX_LINE);
	assert_line_result(r, (LineResult){GH_LINE_TOO_LONG, 0, n, FALSE});
	/* a limit above it takes it whole */
	r = next_line(in->str, in->len, 2 * n);
	assert_line_result(r, (LineResult){GH_LINE_OK, n, n + 2, TRUE});

	for (gsize i = 0; i < G_N_ELEMENTS(chunks); i++) {
		g_autoptr(GPtrArray) got = stream(in->str, in->len, chunks[i], MAX_LINE);

		g_test_message("chunks of %zu", chunks[i]);
		assert_events(got, want);
	}
}

static void
test_format_u64(void)
{
	static const struct {
		guint64 v;
		const char *want;
	} cases[] = {{0, "0"},
		     {9, "9"},
		     {10, "10"},
		     {65535, "65535"},
		     {G_MAXUINT64, "18446744073709551615"}};
	char buf[GH_LINE_U64_MAX + 1];

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		gsize n;
		memset(buf, 'x', sizeof buf);
		n = gh_line_format_u64(buf, cases[i].v);
		g_assert_cmpuint(n, ==, strlen(cases[i].want));
		g_assert_cmpmem(buf, n, cases[i].want, n);
		g_assert_cmpint(buf[n], ==, 'x'); /* no terminator written */
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/line/next", test_next_line);
	g_test_add_func("/gatehouse/line/limit", test_limit);
	g_test_add_func("/gatehouse/line/next-command", test_next_command);
	g_test_add_func("/gatehouse/line/too-long-skip", test_too_long_skip);
	g_test_add_func("/gatehouse/line/stream", test_stream);
	g_test_add_func("/gatehouse/line/huge-line", test_huge_line);
	g_test_add_func("/gatehouse/line/format-u64", test_format_u64);
	return g_test_run();
}
