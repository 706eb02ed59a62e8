/*
 * imap-parser.c: the incremental IMAP command parser (see imap-parser.h).
 * It owns one GhImapParser per connection: the partial command (tag, name,
 * tokens so far), the token being built, the literal being read, and the
 * counters that bound them; and it owns nothing else.
 *
 * Invariants:
 *  - input is a (pointer, length) pair, never NUL-terminated: no byte at or
 *    after `len` is read;
 *  - the parser looks at the input one byte at a time (literal contents
 *    aside, which are copied in bulk) and keeps every bit of partial state
 *    in the GhImapParser, so any split of the input, down to single bytes,
 *    gives the same results at the same offsets;
 *  - memory is bounded by the limits: the tag, name and tokens of a command
 *    hold at most max_line bytes between them, and a literal's buffer is
 *    allocated at its announced size only once that size is known to be at
 *    most max_literal, at the CRLF that ends the announcement (a command
 *    may carry several literals; together they stay within the limit);
 *  - every buffer that may hold a credential is wiped (explicit_bzero)
 *    before it is freed or outgrown, also on ERROR, on FATAL and in
 *    gh_imap_parser_free;
 *  - after FATAL the parser holds nothing and answers FATAL for good.
 *
 * What counts towards max_line: every byte of a command outside literal
 * contents: tag, name, spaces, arguments, literal announcements ("{5}",
 * "{5+}") and every line terminator (CRLF counts 2, a bare LF 1).  The
 * count restarts with each command.  The byte that takes it past max_line
 * is the FATAL point, so a one-line command of exactly max_line bytes with
 * its CRLF passes and one byte more is FATAL without waiting for the LF.
 */
#include "gh-build.h"

#include "imap/imap-parser.h"

#include <string.h>

typedef enum {
	ST_TAG,        /* the tag so far is in tok */
	ST_NAME_START, /* after the tag and its SP */
	ST_NAME,       /* the command name so far is in tok */
	ST_ARGS,       /* between arguments */
	ST_ATOM,       /* the atom so far is in tok */
	ST_QUOTED,     /* inside "...": the unescaped string so far is in tok */
	ST_QUOTED_ESC, /* just after a backslash inside "..." */
	ST_LIT_COUNT,  /* after "{": the octet count */
	ST_LIT_PLUS,   /* after "{n+" */
	ST_LIT_CRLF,   /* after "{n}" or "{n+}": only the line end may follow */
	ST_LITERAL,    /* reading the literal's octets */
	ST_SKIP,       /* the line is bad (error is set): dropping it up to its LF */
	ST_DEAD,       /* FATAL was returned */
} State;

/* While skipping a bad line: how much of a literal announcement
 * ("{" 1*DIGIT ["+"] "}", right before the line end) its last bytes form. */
typedef enum {
	TAIL_NONE,
	TAIL_OPEN,    /* "{" */
	TAIL_DIGITS,  /* "{" 1*DIGIT */
	TAIL_PLUS,    /* "{" 1*DIGIT "+" */
	TAIL_SYNC,    /* "{" 1*DIGIT "}" */
	TAIL_NONSYNC, /* "{" 1*DIGIT "+}" */
} Tail;

struct _GhImapParser {
	gsize max_line;
	gsize max_literal;

	State state;
	gboolean in_command; /* bytes of the current command have been consumed */
	gboolean cr;         /* the last byte was a CR outside a literal: only LF may follow */
	gboolean need_sep;   /* an argument just ended: SP, ')' or the line end must follow */
	gsize line_len;      /* bytes of this command outside literal contents */
	gsize depth;         /* open parentheses */

	char *tag;       /* the command's tag, once read */
	char *name;      /* its name (upper-case), once read */
	GPtrArray *args; /* of GhImapToken*, created with the first argument */

	/* The tag, name, atom or quoted string being built: tok_len bytes in a
	 * buffer of tok_cap, always with room for a terminating NUL. */
	char *tok;
	gsize tok_len;
	gsize tok_cap;

	/* The literal being announced or read. */
	guint64 lit_count;    /* the octet count so far (valid unless lit_too_big) */
	guint64 lit_total;    /* octets of this command's earlier literals */
	gboolean lit_digits;  /* at least one digit was seen */
	gboolean lit_too_big; /* the count is beyond max_literal (or beyond any gsize) */
	gboolean lit_nonsync; /* "{n+}" (RFC 7888) */
	char *lit;            /* lit_count + 1 bytes, while reading the octets */
	gsize lit_got;

	Tail tail;
	const char *error; /* set when the line went bad (ST_SKIP) or the parser died */
};

/* ---- character classes: RFC 9051 section 9 ---- */

/* The lenient atom of the header: any byte but SP, CTL, "(", ")", "{" and
 * DQUOTE.  RFC 9051 ATOM-CHAR also excludes "%", "*", "\" and "]" and all
 * 8-bit bytes; accepting them lets flags ("\Seen"), mailbox patterns ("%")
 * and section specs ("BODY[TEXT]") of commands we do not serve tokenise, so
 * the command's end is still found (the caller refuses the command). */
static gboolean
is_atom_char(guchar c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* RFC 9051 section 9: tag = 1*<any ASTRING-CHAR except "+">, i.e. 7-bit
 * printable ASCII but atom-specials other than "]".  Strict, unlike atoms,
 * because the tag is echoed back verbatim at the start of the tagged reply:
 * a tag "*" or "+" would read as an untagged reply or a continuation, and
 * 8-bit bytes or a backslash have no place in a reply's first word. */
static gboolean
is_tag_char(guchar c)
{
	return c > 0x20 && c < 0x7f && strchr("(){\"%*\\+", c) == NULL;
}

/* ---- wiping buffers ---- */

static void
wipe_free(char *s, gsize n)
{
	if (s == NULL)
		return;
	explicit_bzero(s, n);
	g_free(s);
}

static void
wipe_str(char *s)
{
	if (s != NULL)
		wipe_free(s, strlen(s));
}

static void
token_free(gpointer data)
{
	GhImapToken *t = data;

	if (t == NULL)
		return;
	/* value[len] is the terminating NUL; a literal may hold NULs, so the
	 * length, not strlen(), says how much to wipe. */
	if (t->value != NULL)
		wipe_free(t->value, t->len + 1);
	g_free(t);
}

/* ---- the token being built ---- */

static void
tok_append(GhImapParser *p, char c)
{
	if (p->tok_len + 1 >= p->tok_cap) {
		/* Grow by hand rather than with g_realloc: realloc may move the
		 * bytes and leave the old copy (a password) in freed memory. */
		gsize cap = MAX(p->tok_cap * 2, 32);
		char *grown = g_malloc(cap);

		if (p->tok_len > 0)
			memcpy(grown, p->tok, p->tok_len);
		wipe_free(p->tok, p->tok_cap);
		p->tok = grown;
		p->tok_cap = cap;
	}
	p->tok[p->tok_len++] = c;
}

/* Hand the token built so far over as a NUL-terminated string of tok_len
 * bytes (never NULL), and start a new one. */
static char *
tok_take(GhImapParser *p, gsize *len)
{
	char *s;

	if (p->tok == NULL) {
		/* "": nothing was appended, still a string */
		p->tok = g_malloc(1);
		p->tok_cap = 1;
	}
	p->tok[p->tok_len] = '\0';
	s = p->tok;
	if (len != NULL)
		*len = p->tok_len;
	p->tok = NULL;
	p->tok_len = 0;
	p->tok_cap = 0;
	return s;
}

static void
tok_drop(GhImapParser *p)
{
	wipe_free(p->tok, p->tok_cap);
	p->tok = NULL;
	p->tok_len = 0;
	p->tok_cap = 0;
}

static void
push_token(GhImapParser *p, GhImapTokenType type, char *value, gsize len, gboolean literal)
{
	GhImapToken *t = g_new0(GhImapToken, 1);

	t->type = type;
	t->value = value;
	t->len = len;
	t->literal = literal;
	if (p->args == NULL)
		p->args = g_ptr_array_new_with_free_func(token_free);
	g_ptr_array_add(p->args, t);
}

/* RFC 9051 section 4.5: NIL is the atom "NIL" in any case; anything else
 * built in ST_ATOM is an atom. */
static void
push_atom(GhImapParser *p)
{
	gsize len;
	char *s = tok_take(p, &len);

	if (len == 3 && g_ascii_strncasecmp(s, "NIL", 3) == 0) {
		wipe_free(s, len + 1);
		push_token(p, GH_IMAP_TOKEN_NIL, NULL, 0, FALSE);
	} else {
		push_token(p, GH_IMAP_TOKEN_ATOM, s, len, FALSE);
	}
}

/* ---- command boundaries ---- */

/* Forget the current command, wiping whatever it held, and wait for the
 * next tag. */
static void
reset(GhImapParser *p)
{
	tok_drop(p);
	wipe_str(p->tag);
	wipe_str(p->name);
	p->tag = NULL;
	p->name = NULL;
	if (p->args != NULL)
		g_ptr_array_unref(p->args);
	p->args = NULL;
	if (p->lit != NULL)
		wipe_free(p->lit, (gsize)p->lit_count + 1);
	p->lit = NULL;
	p->lit_got = 0;
	p->lit_count = 0;
	p->lit_total = 0;
	p->lit_digits = FALSE;
	p->lit_too_big = FALSE;
	p->lit_nonsync = FALSE;
	p->state = ST_TAG;
	p->in_command = FALSE;
	p->cr = FALSE;
	p->need_sep = FALSE;
	p->line_len = 0;
	p->depth = 0;
	p->tail = TAIL_NONE;
	p->error = NULL;
}

static GhImapStatus
finish_command(GhImapParser *p, GhImapCommand *out)
{
	out->tag = p->tag;
	out->name = p->name;
	out->args = p->args != NULL ? p->args : g_ptr_array_new_with_free_func(token_free);
	out->error = NULL;
	p->tag = NULL;
	p->name = NULL;
	p->args = NULL;
	reset(p);
	return GH_IMAP_COMMAND;
}

/* The line ended bad.  The tag (when valid) and the name (when read) go
 * out so the caller can answer "tag BAD ..."; the arguments never do. */
static GhImapStatus
finish_error(GhImapParser *p, const char *error, GhImapCommand *out)
{
	out->tag = p->tag;
	out->name = p->name;
	out->args = NULL;
	out->error = error;
	p->tag = NULL;
	p->name = NULL;
	reset(p);
	return GH_IMAP_ERROR;
}

/* As finish_error, and the parser takes nothing more. */
static GhImapStatus
die(GhImapParser *p, const char *error, GhImapCommand *out)
{
	(void)finish_error(p, error, out);
	p->state = ST_DEAD;
	p->error = error;
	return GH_IMAP_FATAL;
}

/* The line has gone bad: keep the first reason, drop the arguments read so
 * far, and skip to the end of the line.  The caller then hands the current
 * byte to ST_SKIP as well: it may start a literal announcement there
 * ("abc{3+}"), which must not be missed. */
static void
fail(GhImapParser *p, const char *error)
{
	if (p->state == ST_SKIP)
		return;
	tok_drop(p);
	if (p->args != NULL)
		g_ptr_array_unref(p->args);
	p->args = NULL;
	p->error = error;
	p->tail = TAIL_NONE;
	p->state = ST_SKIP;
}

/* RFC 7888 section 3 (as RFC 2088 before it): a server that rejects a line
 * must still check whether the line ends with "{n+}", because then n
 * octets follow at once, and they could be taken for commands. */
static Tail
next_tail(Tail t, guchar c)
{
	if (c == '{')
		return TAIL_OPEN;
	if (g_ascii_isdigit(c))
		return (t == TAIL_OPEN || t == TAIL_DIGITS) ? TAIL_DIGITS : TAIL_NONE;
	if (c == '+')
		return t == TAIL_DIGITS ? TAIL_PLUS : TAIL_NONE;
	if (c == '}') {
		if (t == TAIL_DIGITS)
			return TAIL_SYNC;
		if (t == TAIL_PLUS)
			return TAIL_NONSYNC;
	}
	return TAIL_NONE;
}

/* ---- literals: RFC 9051 section 4.3, RFC 7888 ---- */

static void
count_digit(GhImapParser *p, guchar c)
{
	guint64 d = (guint64)(c - '0');

	p->lit_digits = TRUE;
	if (p->lit_too_big)
		return;
	/* Checked before multiplying, so "{99999999999999999999}" cannot wrap
	 * around to a small count.  The count must also leave room for the NUL
	 * added after the octets. */
	if (p->lit_count > (G_MAXUINT64 - 9) / 10) {
		p->lit_too_big = TRUE;
		return;
	}
	p->lit_count = p->lit_count * 10 + d;
	/* the limit holds for all literals of a command together, so one
	 * command cannot make us hold many max_literal buffers at once */
	if (p->lit_count > p->max_literal - MIN(p->lit_total, p->max_literal) ||
	    p->lit_count >= G_MAXSIZE)
		p->lit_too_big = TRUE;
}

/* "}" of an announcement: FATAL at once when the count is over the limit,
 * before any buffer is sized from it.  For "{n+}" the octets are already on
 * their way and cannot be told from commands; for "{n}" a BAD would do,
 * but the limit is far above anything a command we serve before login
 * carries, so a client announcing more is not one to keep talking to. */
static GhImapStatus
close_count(GhImapParser *p, gboolean nonsync, GhImapCommand *out)
{
	if (p->lit_too_big)
		return die(p, "Literal too long", out);
	p->lit_nonsync = nonsync;
	p->state = ST_LIT_CRLF;
	return GH_IMAP_NEED_MORE;
}

static void
literal_done(GhImapParser *p)
{
	char *value = p->lit;
	gsize len = (gsize)p->lit_count;

	value[len] = '\0';
	p->lit = NULL;
	p->lit_got = 0;
	p->lit_total += p->lit_count;
	p->lit_count = 0;
	push_token(p, GH_IMAP_TOKEN_STRING, value, len, TRUE);
	p->state = ST_ARGS;
	p->need_sep = TRUE;
}

/* The LF after "{n}" / "{n+}": the octets come next.  RFC 9051 section
 * 2.2.1 and 7.5: for a synchronising literal the client waits for our
 * continuation request, so say CONTINUE; RFC 7888: for "{n+}" it does not
 * wait, so just read on. */
static GhImapStatus
start_literal(GhImapParser *p)
{
	gboolean nonsync = p->lit_nonsync;

	p->lit_digits = FALSE;
	p->lit_nonsync = FALSE;
	p->lit = g_malloc((gsize)p->lit_count + 1);
	p->lit_got = 0;
	p->state = ST_LITERAL;
	if (p->lit_count == 0)
		literal_done(p);
	return nonsync ? GH_IMAP_NEED_MORE : GH_IMAP_CONTINUE;
}

/* ---- the line end ---- */

static GhImapStatus
end_line(GhImapParser *p, GhImapCommand *out)
{
	p->cr = FALSE;
	switch (p->state) {
	case ST_TAG:
		/* An empty line, or a tag with nothing after it. */
		if (p->tok_len == 0)
			return finish_error(p, "Invalid tag", out);
		p->tag = tok_take(p, NULL);
		return finish_error(p, "Missing command", out);
	case ST_NAME_START:
		return finish_error(p, "Missing command", out);
	case ST_NAME:
		p->name = g_ascii_strup(p->tok, (gssize)p->tok_len);
		tok_drop(p);
		return finish_command(p, out);
	case ST_ATOM:
		push_atom(p);
		/* fall through */
	case ST_ARGS:
		/* The command ends here (RFC 9051 section 2.2.1: at the CRLF
		 * that does not announce a literal), so a list still open was
		 * never closed (section 4.4). */
		if (p->depth > 0)
			return finish_error(p, "Syntax error", out);
		return finish_command(p, out);
	case ST_QUOTED:
	case ST_QUOTED_ESC:
		/* RFC 9051 section 4.3: a quoted string holds no CR or LF. */
		return finish_error(p, "Invalid quoted string", out);
	case ST_LIT_COUNT:
	case ST_LIT_PLUS:
		return finish_error(p, "Syntax error", out);
	case ST_LIT_CRLF:
		return start_literal(p);
	case ST_SKIP:
		/* RFC 7888 section 3: after "{n+}" the octets are on their way
		 * and we cannot tell where they end without accepting the line,
		 * so nothing after them can be trusted.  After "{n}" the client
		 * waits for a continuation that never comes: our BAD tells it
		 * to give up the command (RFC 9051 section 2.2.1). */
		if (p->tail == TAIL_NONSYNC)
			return die(p, "Invalid command followed by a literal", out);
		return finish_error(p, p->error, out);
	case ST_LITERAL:
	case ST_DEAD:
		break;
	}
	/* feed() handles these states without calling here */
	g_assert_not_reached();
	return die(p, "Internal error", out);
}

/* ---- one byte ---- */

static GhImapStatus
step(GhImapParser *p, guchar c, GhImapCommand *out)
{
	if (p->cr) {
		p->cr = FALSE;
		/* RFC 9051 section 2.2: lines end with CRLF; outside literals a
		 * CR anywhere else is not part of the grammar. */
		if (c != '\n')
			fail(p, "Syntax error");
	}
	if (c == '\n')
		return end_line(p, out);
	/* A NUL is neither text nor a CHAR (RFC 9051 section 9); C strings
	 * would silently cut the line short at it. */
	if (c == '\0')
		fail(p, "NUL byte in command");

	for (;;) {
		switch (p->state) {
		case ST_TAG:
			if (c == ' ' && p->tok_len > 0) {
				p->tag = tok_take(p, NULL);
				p->state = ST_NAME_START;
			} else if (c == '\r') {
				p->cr = TRUE;
			} else if (is_tag_char(c) && p->tok_len < GH_IMAP_MAX_TAG) {
				tok_append(p, (char)c);
			} else {
				fail(p, "Invalid tag");
				continue;
			}
			return GH_IMAP_NEED_MORE;

		case ST_NAME_START:
			if (c == '\r') {
				p->cr = TRUE;
			} else if (is_atom_char(c)) {
				tok_append(p, (char)c);
				p->state = ST_NAME;
			} else if (c != ' ') {
				/* (more than one SP is let through: leniency) */
				fail(p, "Missing command");
				continue;
			}
			return GH_IMAP_NEED_MORE;

		case ST_NAME:
			if (is_atom_char(c)) {
				tok_append(p, (char)c);
				return GH_IMAP_NEED_MORE;
			}
			if (c != ' ' && c != '\r') {
				fail(p, "Syntax error");
				continue;
			}
			/* RFC 9051 section 9: the grammar's alphabetic
			 * characters are case-insensitive, command names
			 * included; hand them out upper-case. */
			p->name = g_ascii_strup(p->tok, (gssize)p->tok_len);
			tok_drop(p);
			p->state = ST_ARGS;
			p->need_sep = FALSE;
			p->cr = c == '\r';
			return GH_IMAP_NEED_MORE;

		case ST_ARGS:
			if (c == ' ') {
				/* Leniency: runs of SP, and SP before the line end. */
				p->need_sep = FALSE;
			} else if (c == '\r') {
				p->cr = TRUE;
			} else if (c == ')') {
				if (p->depth == 0) {
					fail(p, "Syntax error");
					continue;
				}
				p->depth--;
				push_token(p, GH_IMAP_TOKEN_LIST_END, NULL, 0, FALSE);
				/* RFC 9051 section 9: section-spec puts "]" right
				 * after a list ("BODY[HEADER.FIELDS (DATE)]"). */
				p->need_sep = FALSE;
			} else if (p->need_sep) {
				/* RFC 9051 section 9: arguments are separated by
				 * SP; "a"b or {3}\r\nabc"d" would be ambiguous. */
				fail(p, "Syntax error");
				continue;
			} else if (c == '(') {
				p->depth++;
				push_token(p, GH_IMAP_TOKEN_LIST_START, NULL, 0, FALSE);
			} else if (c == '"') {
				p->state = ST_QUOTED;
			} else if (c == '{') {
				p->state = ST_LIT_COUNT;
				p->lit_count = 0;
				p->lit_digits = FALSE;
				p->lit_too_big = FALSE;
			} else if (is_atom_char(c)) {
				tok_append(p, (char)c);
				p->state = ST_ATOM;
			} else {
				fail(p, "Syntax error");
				continue;
			}
			return GH_IMAP_NEED_MORE;

		case ST_ATOM:
			if (is_atom_char(c)) {
				tok_append(p, (char)c);
				return GH_IMAP_NEED_MORE;
			}
			push_atom(p);
			p->state = ST_ARGS;
			p->need_sep = TRUE;
			continue;

		case ST_QUOTED:
			if (c == '"') {
				gsize len;
				char *s = tok_take(p, &len);

				push_token(p, GH_IMAP_TOKEN_STRING, s, len, FALSE);
				p->state = ST_ARGS;
				p->need_sep = TRUE;
			} else if (c == '\\') {
				p->state = ST_QUOTED_ESC;
			} else if (c == '\r') {
				fail(p, "Invalid quoted string");
				continue;
			} else {
				/* 8-bit bytes pass: RFC 9051 section 4.3 allows
				 * UTF-8 in quoted strings. */
				tok_append(p, (char)c);
			}
			return GH_IMAP_NEED_MORE;

		case ST_QUOTED_ESC:
			/* RFC 9051 section 9: quoted-specials are the only
			 * characters that may follow a backslash. */
			if (c != '"' && c != '\\') {
				fail(p, "Invalid quoted string");
				continue;
			}
			tok_append(p, (char)c);
			p->state = ST_QUOTED;
			return GH_IMAP_NEED_MORE;

		case ST_LIT_COUNT:
			if (g_ascii_isdigit(c)) {
				count_digit(p, c);
				return GH_IMAP_NEED_MORE;
			}
			if (c == '+' && p->lit_digits) {
				p->state = ST_LIT_PLUS;
				return GH_IMAP_NEED_MORE;
			}
			if (c == '}' && p->lit_digits)
				return close_count(p, FALSE, out);
			fail(p, "Syntax error");
			continue;

		case ST_LIT_PLUS:
			if (c == '}')
				return close_count(p, TRUE, out);
			fail(p, "Syntax error");
			continue;

		case ST_LIT_CRLF:
			/* RFC 9051 section 9: literal = "{" number64 ["+"] "}"
			 * CRLF *CHAR8: nothing may stand between "}" and CRLF. */
			if (c == '\r') {
				p->cr = TRUE;
				return GH_IMAP_NEED_MORE;
			}
			fail(p, "Syntax error");
			continue;

		case ST_SKIP:
			if (c == '\r')
				p->cr = TRUE;
			else
				p->tail = next_tail(p->tail, c);
			return GH_IMAP_NEED_MORE;

		case ST_LITERAL:
		case ST_DEAD:
			break;
		}
		/* feed() handles these states without calling here */
		g_assert_not_reached();
		return die(p, "Internal error", out);
	}
}

/* ---- the API ---- */

GhImapParser *
gh_imap_parser_new(gsize max_line, gsize max_literal)
{
	GhImapParser *p = g_new0(GhImapParser, 1);

	p->max_line = max_line;
	p->max_literal = max_literal;
	reset(p);
	return p;
}

void
gh_imap_parser_free(GhImapParser *parser)
{
	if (parser == NULL)
		return;
	reset(parser);
	explicit_bzero(parser, sizeof *parser);
	g_free(parser);
}

GhImapStatus
gh_imap_parser_feed(
    GhImapParser *parser, const char *buf, gsize len, gsize *consumed, GhImapCommand *out)
{
	GhImapParser *p = parser;
	gsize i = 0;

	*consumed = 0;
	if (p->state == ST_DEAD) {
		out->tag = NULL;
		out->name = NULL;
		out->args = NULL;
		out->error = p->error;
		return GH_IMAP_FATAL;
	}

	while (i < len) {
		GhImapStatus st;
		guchar c;

		if (p->state == ST_LITERAL) {
			/* Literal octets are data, not syntax: any byte, not
			 * counted towards max_line. */
			gsize n = MIN(len - i, (gsize)p->lit_count - p->lit_got);

			memcpy(p->lit + p->lit_got, buf + i, n);
			p->lit_got += n;
			i += n;
			if (p->lit_got == (gsize)p->lit_count)
				literal_done(p);
			continue;
		}

		c = (guchar)buf[i++];
		p->in_command = TRUE;
		/* Counted before the byte is looked at, so an endless line
		 * (or endless literal count, or bad line being skipped) ends at
		 * max_line + 1 bytes whatever it holds. */
		if (++p->line_len > p->max_line) {
			*consumed = i;
			return die(p, "Line too long", out);
		}
		st = step(p, c, out);
		if (st != GH_IMAP_NEED_MORE) {
			*consumed = i;
			return st;
		}
	}
	*consumed = len;
	return GH_IMAP_NEED_MORE;
}

gboolean
gh_imap_parser_in_command(const GhImapParser *parser)
{
	return parser->in_command;
}

void
gh_imap_command_clear(GhImapCommand *cmd)
{
	if (cmd == NULL)
		return;
	wipe_str(cmd->tag);
	wipe_str(cmd->name);
	if (cmd->args != NULL)
		g_ptr_array_unref(cmd->args);
	memset(cmd, 0, sizeof *cmd);
}

gboolean
gh_imap_resp_code_is(const char *text, gsize len, const char *code)
{
	gsize n = strlen(code);
	return len > n + 1 && text[0] == '[' && g_ascii_strncasecmp(text + 1, code, n) == 0 &&
	       (text[n + 1] == ']' || text[n + 1] == ' ');
}

char *
gh_imap_quote(const char *s)
{
	GString *q;

	/* RFC 9051 section 4.3: a quoted string cannot carry CR or LF (and a
	 * C string cannot carry NUL); those need a literal. */
	if (s == NULL || strpbrk(s, "\r\n") != NULL)
		return NULL;
	q = g_string_sized_new(strlen(s) + 2);
	g_string_append_c(q, '"');
	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\')
			g_string_append_c(q, '\\');
		g_string_append_c(q, *c);
	}
	g_string_append_c(q, '"');
	return g_string_free(q, FALSE);
}
