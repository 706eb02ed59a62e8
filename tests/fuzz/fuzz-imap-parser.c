/*
 * fuzz-imap-parser.c: the libFuzzer target of the incremental IMAP command
 * parser (daemon/imap/imap-parser.c), as a client before login drives it.
 *
 * Input: one byte of limits (max_line, max_literal: the session's 8192/8192
 * when 0), one byte N (low 4 bits) and N chunk sizes (1..256 bytes each,
 * used in turn), then the client's bytes.  The bytes are fed three ways:
 * whole, one byte at a time, and in the chunks the input names, each time
 * as a caller does (what was not consumed is fed again).  The parser
 * promises that any split gives the same events at the same offsets, so
 * the three transcripts must be equal byte for byte.
 *
 * Asserted for every event: consumed <= len; COMMAND has a valid tag (at
 * most 64 bytes of tag characters), an upper-case name, and arguments whose
 * values are NUL-terminated at their length (atoms and quoted strings hold
 * no NUL, quoted strings no CR or LF), balanced lists, literals within
 * max_literal together, and at most max_line bytes outside literals; ERROR
 * and FATAL carry a reason and no arguments; CONTINUE comes right after
 * "}" CRLF (or LF); after FATAL the parser answers FATAL for good and
 * consumes nothing.  Round trip: gh_imap_quote of a string argument parses
 * back to the same string.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "imap/imap-parser.h"

#include <string.h>

static const gsize line_limits[8] = {8192, 16, 32, 64, 128, 1024, 3, 1};
static const gsize literal_limits[8] = {8192, 0, 1, 5, 64, 1024, 65536, 8};

typedef struct {
	const guint8 *data;
	gsize len;
	gsize max_line;
	gsize max_literal;
	const guint8 *chunks; /* sizes - 1 */
	gsize n_chunks;
} Input;

static gboolean
tag_char(guchar c)
{
	return c > 0x20 && c < 0x7f && strchr("(){\"%*\\+", c) == NULL;
}

static void
render_bytes(GString *s, const char *v, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)v[i];

		if (c >= 0x21 && c < 0x7f && c != '\\' && c != '"')
			g_string_append_c(s, (char)c);
		else
			g_string_append_printf(s, "\\x%02x", c);
	}
}

/* Check one command's arguments and render them into the transcript;
 * returns the octets its literals carried. */
static gsize
check_args(const Input *in, const GPtrArray *args, GString *out)
{
	gsize depth = 0;
	gsize literal_total = 0;

	for (guint i = 0; i < args->len; i++) {
		const GhImapToken *t = g_ptr_array_index(args, i);

		FUZZ_CHECK(t != NULL);
		switch (t->type) {
		case GH_IMAP_TOKEN_ATOM:
			FUZZ_CHECK(t->value != NULL && t->len > 0 && !t->literal);
			FUZZ_CHECK(strlen(t->value) == t->len);
			for (gsize k = 0; k < t->len; k++) {
				guchar c = (guchar)t->value[k];
				FUZZ_CHECK(c > 0x20 && c != 0x7f && strchr("(){\"", c) == NULL);
			}
			g_string_append(out, " A:");
			render_bytes(out, t->value, t->len);
			break;
		case GH_IMAP_TOKEN_STRING:
			FUZZ_CHECK(t->value != NULL && t->value[t->len] == '\0');
			if (t->literal) {
				literal_total += t->len;
				g_string_append(out, " L:");
			} else {
				FUZZ_CHECK(strlen(t->value) == t->len);
				FUZZ_CHECK(memchr(t->value, '\r', t->len) == NULL);
				FUZZ_CHECK(memchr(t->value, '\n', t->len) == NULL);
				g_string_append(out, " Q:");
			}
			render_bytes(out, t->value, t->len);
			break;
		case GH_IMAP_TOKEN_NIL:
			FUZZ_CHECK(t->value == NULL && t->len == 0);
			g_string_append(out, " NIL");
			break;
		case GH_IMAP_TOKEN_LIST_START:
			depth++;
			g_string_append(out, " (");
			break;
		case GH_IMAP_TOKEN_LIST_END:
			FUZZ_CHECK(depth > 0);
			depth--;
			g_string_append(out, " )");
			break;
		default:
			FUZZ_CHECK(!"unknown token type");
		}
	}
	FUZZ_CHECK(depth == 0);
	FUZZ_CHECK(literal_total <= in->max_literal);
	return literal_total;
}

/* One event: check it and add it to the transcript.  `at` is the absolute
 * offset after the bytes consumed; *cmd_start the offset where the command
 * began (moved on past COMMAND and ERROR). */
static void
event(const Input *in,
      GhImapStatus st,
      gsize at,
      const GhImapCommand *cmd,
      gsize *cmd_start,
      GString *out)
{
	g_string_append_printf(out, "%d@%zu", (int)st, at);
	if (st == GH_IMAP_CONTINUE) {
		/* right after "{n}" and its line end */
		FUZZ_CHECK(at >= 4 && in->data[at - 1] == '\n');
		FUZZ_CHECK(in->data[at - 2] == '}' ||
			   (in->data[at - 2] == '\r' && in->data[at - 3] == '}'));
		g_string_append_c(out, '\n');
		return;
	}
	if (cmd->tag != NULL) {
		gsize n = strlen(cmd->tag);

		FUZZ_CHECK(n > 0 && n <= GH_IMAP_MAX_TAG);
		for (gsize k = 0; k < n; k++)
			FUZZ_CHECK(tag_char((guchar)cmd->tag[k]));
		g_string_append_printf(out, " tag=%s", cmd->tag);
	}
	if (cmd->name != NULL) {
		gsize n = strlen(cmd->name);

		FUZZ_CHECK(st != GH_IMAP_COMMAND || n > 0);
		for (gsize k = 0; k < n; k++) {
			guchar c = (guchar)cmd->name[k];
			FUZZ_CHECK(!g_ascii_islower(c));
			FUZZ_CHECK(c > 0x20 && c != 0x7f && strchr("(){\"", c) == NULL);
		}
		g_string_append(out, " name=");
		render_bytes(out, cmd->name, n);
	}
	if (st == GH_IMAP_COMMAND) {
		gsize lit;

		FUZZ_CHECK(cmd->tag != NULL && cmd->name != NULL && cmd->args != NULL);
		FUZZ_CHECK(cmd->error == NULL);
		lit = check_args(in, cmd->args, out);
		/* every byte but literal contents counts towards max_line */
		FUZZ_CHECK(at - *cmd_start >= lit);
		FUZZ_CHECK(at - *cmd_start - lit <= in->max_line);
		*cmd_start = at;
	} else {
		FUZZ_CHECK(st == GH_IMAP_ERROR || st == GH_IMAP_FATAL);
		FUZZ_CHECK(cmd->error != NULL && *cmd->error != '\0');
		FUZZ_CHECK(cmd->args == NULL);
		g_string_append_printf(out, " error=%s", cmd->error);
		*cmd_start = at;
	}
	g_string_append_c(out, '\n');
}

/* gh_imap_quote, then parse the quoted form: the same string comes back. */
static void
quote_round_trip(const GhImapToken *t)
{
	g_autofree char *q = NULL;
	g_autofree char *line = NULL;
	GhImapParser *p;
	GhImapCommand cmd = {0};
	gsize used = 0;
	GhImapStatus st;
	const GhImapToken *back;

	if (t->type != GH_IMAP_TOKEN_ATOM && t->type != GH_IMAP_TOKEN_STRING)
		return;
	if (memchr(t->value, '\0', t->len) != NULL)
		return; /* a C string cannot carry it; gh_imap_quote takes one */
	q = gh_imap_quote(t->value);
	if (memchr(t->value, '\r', t->len) != NULL || memchr(t->value, '\n', t->len) != NULL) {
		FUZZ_CHECK(q == NULL);
		return;
	}
	FUZZ_CHECK(q != NULL);
	line = g_strdup_printf("q X %s\r\n", q);
	p = gh_imap_parser_new(G_MAXSIZE, 0);
	st = gh_imap_parser_feed(p, line, strlen(line), &used, &cmd);
	FUZZ_CHECK(st == GH_IMAP_COMMAND && used == strlen(line));
	FUZZ_CHECK(cmd.args->len == 1);
	back = g_ptr_array_index(cmd.args, 0);
	FUZZ_CHECK(back->type == GH_IMAP_TOKEN_STRING && !back->literal);
	FUZZ_CHECK(back->len == t->len && memcmp(back->value, t->value, t->len) == 0);
	gh_imap_command_clear(&cmd);
	gh_imap_parser_free(p);
}

static gsize
size_whole(const Input *in, guint piece)
{
	(void)piece;
	return in->len;
}

static gsize
size_one(const Input *in, guint piece)
{
	(void)in;
	(void)piece;
	return 1;
}

static gsize
size_chunks(const Input *in, guint piece)
{
	if (in->n_chunks == 0)
		return 7;
	return (gsize)in->chunks[piece % in->n_chunks] + 1;
}

/* Feed the input in pieces of the sizes `next_size` gives; returns the
 * transcript.  Round trips are done on the first run only.  Each piece is
 * an exact heap copy (ASan sees any read past it), but for the byte-at-a-
 * time run, which reads from one copy of the whole input (a copy per byte
 * would cost more than the parsing). */
static GString *
run(const Input *in, gsize (*next_size)(const Input *, guint), gboolean round_trips)
{
	gboolean bytewise = next_size == size_one;
	guint8 *all = bytewise ? g_memdup2(in->data, in->len) : NULL;
	GString *out = g_string_new(NULL);
	GhImapParser *p = gh_imap_parser_new(in->max_line, in->max_literal);
	gsize pos = 0;
	gsize cmd_start = 0;
	guint piece = 0;
	guint trips = 0;
	gboolean dead = FALSE;

	while (pos < in->len && !dead) {
		gsize want = next_size(in, piece++); /* once: MIN() evaluates twice */
		gsize size = MIN(want, in->len - pos);
		guint8 *buf = bytewise ? all + pos : g_memdup2(in->data + pos, size);
		gsize off = 0;

		while (off < size) {
			GhImapCommand cmd = {0};
			gsize used = 0;
			GhImapStatus st = gh_imap_parser_feed(p, (const char *)buf + off,
							      size - off, &used, &cmd);

			FUZZ_CHECK(used <= size - off);
			off += used;
			if (st == GH_IMAP_NEED_MORE) {
				FUZZ_CHECK(off == size);
				FUZZ_CHECK(cmd.tag == NULL && cmd.args == NULL);
				break;
			}
			FUZZ_CHECK(used > 0);
			event(in, st, pos + off, &cmd, &cmd_start, out);
			if (round_trips && st == GH_IMAP_COMMAND) {
				for (guint i = 0; i < cmd.args->len && trips < 4; i++, trips++)
					quote_round_trip(g_ptr_array_index(cmd.args, i));
			}
			gh_imap_command_clear(&cmd);
			FUZZ_CHECK(cmd.tag == NULL && cmd.name == NULL && cmd.args == NULL);
			if (st == GH_IMAP_FATAL) {
				GhImapCommand again = {0};
				gsize used2 = 1;

				/* dead for good: nothing consumed, FATAL again */
				FUZZ_CHECK(gh_imap_parser_feed(p, "a NOOP\r\n", 8, &used2,
							       &again) == GH_IMAP_FATAL);
				FUZZ_CHECK(used2 == 0 && again.error != NULL && again.tag == NULL);
				FUZZ_CHECK(!gh_imap_parser_in_command(p));
				dead = TRUE;
				break;
			}
		}
		if (!bytewise)
			g_free(buf);
		pos += size;
	}
	g_free(all);
	g_string_append_printf(out, "end in_command=%d\n", gh_imap_parser_in_command(p));
	/* freed with whatever partial state it holds (LeakSanitizer watches) */
	gh_imap_parser_free(p);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzBytes b = {data, size};
	guint8 limits = fuzz_take_u8(&b);
	guint8 n = fuzz_take_u8(&b) & 15;
	Input in;
	GString *whole, *one, *chunked;

	in.max_line = line_limits[limits & 7];
	in.max_literal = literal_limits[(limits >> 3) & 7];
	in.n_chunks = MIN(n, b.n);
	in.chunks = b.p;
	b.p += in.n_chunks;
	b.n -= in.n_chunks;
	in.data = b.p;
	in.len = b.n;

	whole = run(&in, size_whole, TRUE);
	one = run(&in, size_one, FALSE);
	chunked = run(&in, size_chunks, FALSE);
	if (!g_string_equal(whole, one) || !g_string_equal(whole, chunked)) {
		fprintf(stderr, "whole:\n%s\none byte at a time:\n%s\nin chunks:\n%s\n", whole->str,
			one->str, chunked->str);
		FUZZ_CHECK(!"a split changed the parser's events");
	}
	g_string_free(whole, TRUE);
	g_string_free(one, TRUE);
	g_string_free(chunked, TRUE);
	return 0;
}
