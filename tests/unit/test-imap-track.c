/*
 * test-imap-track.c: where a relayed IMAP server's lines end: plain lines,
 * literals (with CRLF inside, of size 0, literal8, non-synchronizing, LF
 * alone), two on one line, a count cut between two reads, things that
 * look like a literal and are not, a count too long to hold; and fed a
 * byte at a time, the same answers as fed whole.
 */
#include "gh-build.h"

#include "imap/imap-track.h"

#include <string.h>

/* Feed `text` whole; the answer. */
static gboolean
rest_after(const char *text)
{
	GhImapTrack t;
	gh_imap_track_init(&t);
	gh_imap_track_down(&t, (const guint8 *)text, strlen(text));
	return gh_imap_track_at_rest(&t);
}

/* Feed `text` a byte at a time: the answer after each byte, as a string
 * of 'r' (at rest) and '.' (not). */
static char *
rest_per_byte(const char *text)
{
	GhImapTrack t;
	gsize n = strlen(text);
	char *out = g_malloc(n + 1);

	gh_imap_track_init(&t);
	for (gsize i = 0; i < n; i++) {
		gh_imap_track_down(&t, (const guint8 *)text + i, 1);
		out[i] = gh_imap_track_at_rest(&t) ? 'r' : '.';
	}
	out[n] = '\0';
	return out;
}

static void
test_lines(void)
{
	GhImapTrack t;
	gh_imap_track_init(&t);
	g_assert_true(gh_imap_track_at_rest(&t));
	g_assert_true(rest_after("* OK ready\r\n"));
	g_assert_false(rest_after("* OK ready"));
	g_assert_false(rest_after("* OK ready\r"));
	g_assert_true(rest_after("* 3 EXISTS\r\n* 0 RECENT\r\na1 OK done\r\n"));
	g_assert_true(rest_after("* OK lf alone\n"));
}

static void
test_literal(void)
{
	const char *fetch = "* 1 FETCH (BODY[] {10}\r\n0123\r\n6789)\r\n";
	g_autofree char *per = rest_per_byte(fetch);

	/* at rest only after the last LF: never after the ones inside */
	for (gsize i = 0; i + 1 < strlen(fetch); i++)
		g_assert_cmpint(per[i], ==, '.');
	g_assert_cmpint(per[strlen(fetch) - 1], ==, 'r');
	g_assert_true(rest_after(fetch));
	g_assert_false(rest_after("* 1 FETCH (BODY[] {10}\r\n0123\r\n"));
	g_assert_false(rest_after("* 1 FETCH (BODY[] {10}\r\n0123\r\n6789"));
}

static void
test_literal_forms(void)
{
	g_assert_true(rest_after("* 1 FETCH (BINARY[] ~{4}\r\n\r\n\r\n)\r\n"));
	g_assert_false(rest_after("* 1 FETCH (BINARY[] ~{4}\r\n\r\n\r\n"));
	g_assert_true(rest_after("* 1 FETCH (BODY[] {4+}\r\na\r\nb)\r\n"));
	g_assert_false(rest_after("* 1 FETCH (BODY[] {4}\na\nb\n"));
	g_assert_true(rest_after("* 1 FETCH (BODY[] {4}\na\nb\n)\n"));
	/* size 0: the line goes on at once */
	g_assert_false(rest_after("* 1 FETCH (BODY[] {0}\r\n"));
	g_assert_true(rest_after("* 1 FETCH (BODY[] {0}\r\n)\r\n"));
	/* two on one line */
	g_assert_false(rest_after("* 1 FETCH (BODY[1] {2}\r\n\r\n BODY[2] {3}\r\n\r\n"));
	g_assert_true(rest_after("* 1 FETCH (BODY[1] {2}\r\n\r\n BODY[2] {3}\r\n\r\n)\r\n"));
	/* a long line still has its count seen */
	{
		g_autofree char *line = g_strdup_printf("* 1 FETCH (%s BODY[] {3}\r\nx\r\n)\r\n",
							"FLAGS (\\Seen) UID 7 RFC822.SIZE 1234");
		g_assert_true(rest_after(line));
	}
}

static void
test_count_cut_between_reads(void)
{
	const char *parts[] = {"* 1 FETCH (BODY[] {1", "2",    "}", "\r", "\n",
			       "0123456789\r\n",       ")\r\n"};
	GhImapTrack t;

	gh_imap_track_init(&t);
	for (gsize i = 0; i < G_N_ELEMENTS(parts); i++) {
		gh_imap_track_down(&t, (const guint8 *)parts[i], strlen(parts[i]));
		g_assert_cmpint(gh_imap_track_at_rest(&t), ==, i == G_N_ELEMENTS(parts) - 1);
	}
}

static void
test_not_literals(void)
{
	g_assert_true(rest_after("* OK {x}\r\n"));
	g_assert_true(rest_after("* OK 5}\r\n"));
	g_assert_true(rest_after("* OK {}\r\n"));
	g_assert_true(rest_after("* OK {5} then text\r\n"));
	g_assert_true(rest_after("* OK }\r\n"));
}

static void
test_count_too_long(void)
{
	GhImapTrack t;
	const char *huge = "* 1 FETCH (BODY[] {12345678901234567890}\r\n";
	const char *most = "* 1 FETCH (BODY[] {1234567890123456789}\r\n";

	gh_imap_track_init(&t);
	gh_imap_track_down(&t, (const guint8 *)huge, strlen(huge));
	g_assert_true(gh_imap_track_lost(&t));
	gh_imap_track_down(&t, (const guint8 *)"x)\r\n* OK\r\n", 10);
	g_assert_false(gh_imap_track_at_rest(&t));

	gh_imap_track_init(&t);
	gh_imap_track_down(&t, (const guint8 *)most, strlen(most));
	g_assert_false(gh_imap_track_lost(&t));
	g_assert_cmpuint(t.literal, ==, G_GUINT64_CONSTANT(1234567890123456789));
}

static void
test_per_byte_same_as_whole(void)
{
	const char *texts[] = {
	    "* OK a\r\n",
	    "* 1 FETCH (BODY[] {5}\r\n\r\n\r\n)\r\n* 2 FETCH (FLAGS ())\r\na OK\r\n",
	    "* 1 FETCH (BODY[] {0}\r\n)\r\n",
	    "* 1 FETCH (BODY[] ~{3}\n{9}\n)\n",
	    "* OK {3}}\r\nabc\r\n",
	};
	for (gsize i = 0; i < G_N_ELEMENTS(texts); i++) {
		g_autofree char *per = rest_per_byte(texts[i]);
		gsize n = strlen(texts[i]);
		for (gsize k = 1; k <= n; k++) {
			g_autofree char *prefix = g_strndup(texts[i], k);
			g_assert_cmpint(per[k - 1] == 'r', ==, rest_after(prefix));
		}
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/imap-track/lines", test_lines);
	g_test_add_func("/gatehouse/imap-track/literal", test_literal);
	g_test_add_func("/gatehouse/imap-track/literal-forms", test_literal_forms);
	g_test_add_func("/gatehouse/imap-track/count-cut-between-reads",
			test_count_cut_between_reads);
	g_test_add_func("/gatehouse/imap-track/not-literals", test_not_literals);
	g_test_add_func("/gatehouse/imap-track/count-too-long", test_count_too_long);
	g_test_add_func("/gatehouse/imap-track/per-byte-same-as-whole",
			test_per_byte_same_as_whole);
	return g_test_run();
}
