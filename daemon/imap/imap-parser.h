/*
 * imap-parser.h: an incremental, resumable parser of IMAP commands as a
 * client sends them before login (RFC 9051 section 2.2 and the grammar of
 * section 9; RFC 7888 LITERAL+).  Bytes in, commands out: no sockets, no
 * clock, no logging.  Tested byte by byte in tests/unit/test-imap-parser.c.
 *
 * A command is: tag SP name [SP arguments] CRLF, where the arguments are
 * atoms, quoted strings ("..." with \" and \\ escapes), literals ({n} CRLF
 * then n bytes; {n+} CRLF then n bytes, without waiting), NIL, and
 * parenthesised lists of these (nested).  The parser returns the arguments as
 * a flat token sequence with LIST_START/LIST_END markers.
 *
 * Leniency: a bare LF ends a line like CRLF; command names are matched
 * case-insensitively (returned upper-case); atoms may hold any byte but SP,
 * CTL, '(', ')', '{', '"' (so flags, wildcards and sequence sets of
 * commands we do not serve still tokenise, and the command's end is found).
 *
 * Limits (set at creation): the tag is at most 64 octets; a line, counting
 * everything but literal contents, at most max_line; the literals of one
 * command together at most max_literal.  A violation that leaves the input in a known place gives
 * ERROR (the rest of the line has been skipped; the session may go on); one
 * that does not (an over-long line, an over-long literal, an error in a line
 * that ends with a non-synchronising literal whose bytes are already on
 * their way) gives FATAL: the caller says BYE and closes.
 */
#pragma once

#include <glib.h>

#define GH_IMAP_MAX_TAG 64

typedef enum {
	GH_IMAP_TOKEN_ATOM,   /* value: the atom (not NUL-safe: atoms hold no NUL) */
	GH_IMAP_TOKEN_STRING, /* value: the quoted string unescaped, or the literal's bytes */
	GH_IMAP_TOKEN_NIL,
	GH_IMAP_TOKEN_LIST_START,
	GH_IMAP_TOKEN_LIST_END,
} GhImapTokenType;

typedef struct {
	GhImapTokenType type;
	char *value; /* ATOM and STRING: NUL-terminated copy (a literal may hold NULs: use len) */
	gsize len;
	gboolean literal; /* STRING came as a literal */
} GhImapToken;

typedef struct {
	char *tag;         /* NULL when the line had no valid tag */
	char *name;        /* upper-case; NULL when missing */
	GPtrArray *args;   /* of GhImapToken*, may be empty, never NULL after COMMAND */
	const char *error; /* ERROR/FATAL: a short reason for the client ("Invalid tag",
			      "Line too long", ...), static */
} GhImapCommand;

typedef enum {
	GH_IMAP_NEED_MORE, /* all input consumed, no command complete yet */
	GH_IMAP_COMMAND,   /* *out holds a whole command */
	/* The line so far ends with a synchronising literal {n} (n within the
	 * limit): the caller sends a continuation ("+ OK") and feeds on. */
	GH_IMAP_CONTINUE,
	GH_IMAP_ERROR, /* the line was bad; skipped; *out has tag (maybe NULL) and error */
	GH_IMAP_FATAL, /* cannot go on safely: *out has error; close the session */
} GhImapStatus;

typedef struct _GhImapParser GhImapParser;

GhImapParser *gh_imap_parser_new(gsize max_line, gsize max_literal);
/* Wipes any partial state (it may hold a password) and frees. NULL allowed. */
void gh_imap_parser_free(GhImapParser *parser);

/* Feed buf[0..len).  Consumes bytes up to the end of the first complete
 * command, CONTINUE point, ERROR line or FATAL point and returns; or
 * consumes everything and returns NEED_MORE (partial state is kept inside
 * the parser).  *consumed says how many bytes were used; call again with
 * the rest.  On COMMAND, ERROR and FATAL *out is filled (free with
 * gh_imap_command_clear); otherwise *out is untouched.
 * After FATAL every further call returns FATAL. */
GhImapStatus gh_imap_parser_feed(
    GhImapParser *parser, const char *buf, gsize len, gsize *consumed, GhImapCommand *out);

/* TRUE when the parser holds part of a command (bytes of a line were fed
 * but no command, error or continuation has been returned for them yet). */
gboolean gh_imap_parser_in_command(const GhImapParser *parser);

/* Free the command's strings, wiping them first (LOGIN carries a password),
 * and zero *cmd. */
void gh_imap_command_clear(GhImapCommand *cmd);

/* Does `text`, the response text of a server's answer (what follows
 * "tag NO "), open with the response code `code` (RFC 9051 resp-text-code:
 * "[LIMIT] ...", "[BADCHARSET (UTF-8)] ...")?  Compared without case; a
 * code that only starts with `code` ("[LIMITS]") is not it. */
gboolean gh_imap_resp_code_is(const char *text, gsize len, const char *code);

/* Quote `s` as an IMAP quoted string ("..." with \ before " and \), for
 * strings without CR, LF or NUL; returns NULL when s holds one of those.
 * (transfer full) */
char *gh_imap_quote(const char *s);
