/*
 * pop3-parser.h: the pure parts of the POP3 front end and of the backend
 * client: command classification and arguments (RFC 1939, RFC 2449 CAPA,
 * RFC 2595 STLS, RFC 5034 AUTH), and the server's status lines, response
 * codes (RFC 2449 8, RFC 3206) and multi-line responses.  Nothing here
 * touches a socket, a clock or global state; every function is tested byte
 * by byte in tests/unit/test-pop3-parser.c.  Line framing is common/line.h's.
 *
 * Leniency (gatehoused(8), CLIENT REPLIES): command names are matched
 * case-insensitively, a bare LF ends a line like CRLF, runs of spaces
 * between words are accepted.  Strictness: a command line is at most
 * GH_POP3_MAX_LINE octets (RFC 2449 4) except an AUTH line, and a NUL byte
 * or a bare CR inside a line makes it invalid.
 */
#pragma once

#include <glib.h>

/* RFC 2449 4: a command line is at most 255 octets with its CRLF. */
#define GH_POP3_MAX_LINE 255
/* An AUTH command with its initial response, and a SASL response line:
 * RFC 5034 4 asks clients to keep the first within 255 octets, but a client
 * that does not is answered, not cut off; a PLAIN response for any real
 * user name and password fits. */
#define GH_POP3_MAX_AUTH_LINE 12288
/* RFC 2449 4: a status line is at most 512 octets with its CRLF; a server
 * that sends a line of more than this is not one we talk to. */
#define GH_POP3_MAX_REPLY_LINE 1024

typedef enum {
	GH_POP3_CMD_UNKNOWN,
	GH_POP3_CMD_USER,
	GH_POP3_CMD_PASS,
	GH_POP3_CMD_AUTH,
	GH_POP3_CMD_CAPA,
	GH_POP3_CMD_STLS,
	GH_POP3_CMD_QUIT,
	GH_POP3_CMD_NOOP,
	GH_POP3_CMD_APOP, /* needs the password in the clear at our side: not offered */
	/* STAT LIST RETR DELE RSET TOP UIDL LAST: the TRANSACTION state's (RFC 1939 5) */
	GH_POP3_CMD_TRANSACTION,
	GH_POP3_CMD_INVALID, /* the line holds a NUL or a bare CR */
} GhPop3Verb;

typedef struct {
	GhPop3Verb verb;
	/* The argument, pointing into the line given (not NUL-terminated: use
	 * arg_len); arg_len 0 when there is none.  For PASS it is everything
	 * after the one space that follows the verb, as sent (a password may
	 * hold spaces, leading and trailing ones too: RFC 1939 7 leaves it to
	 * the server).  For the others, the text after the spaces that follow
	 * the verb, with trailing spaces and tabs removed. */
	const char *arg;
	gsize arg_len;
} GhPop3Command;

/* Classify one line (without its terminator).  The verb is the first word,
 * ended by a space or the line end, matched case-insensitively. */
void gh_pop3_parse_command(const char *line, gsize len, GhPop3Command *out);

/* AUTH argument: "[mechanism [initial-response]]".  FALSE when there are
 * more than two words.  *mech is NULL when there is no word (AUTH alone
 * lists the mechanisms), else upper-cased; *initial is the second word as
 * given (base64, or "=" for an empty response), or NULL.  New strings. */
gboolean gh_pop3_parse_auth(const char *arg, gsize len, char **mech, char **initial);

/* ---- the backend side: what a POP3 server sends ---- */

typedef enum {
	GH_POP3_STATUS_BAD,  /* neither "+OK" nor "-ERR" (nor "+ " where allowed) */
	GH_POP3_STATUS_OK,   /* "+OK" */
	GH_POP3_STATUS_ERR,  /* "-ERR" */
	GH_POP3_STATUS_MORE, /* "+" alone or "+ base64": a SASL challenge (RFC 5034 4) */
} GhPop3Status;

typedef struct {
	GhPop3Status status;
	/* RFC 2449 8: the response code in brackets after the status, without
	 * them ("SYS/TEMP", "AUTH", "XCLIENT"), or "" when there is none;
	 * points into the line (not NUL-terminated: use code_len). */
	const char *code;
	gsize code_len;
	/* the human text after the status and the code, spaces skipped */
	const char *text;
	gsize text_len;
} GhPop3StatusLine;

/* Read one status line (without its terminator). */
void gh_pop3_parse_status(const char *line, gsize len, GhPop3StatusLine *out);

/* Is the response code `code` (RFC 2449 8: hierarchical, '/' separated)
 * `want` or below it?  "SYS/TEMP" is under "SYS"; the match is
 * case-insensitive. */
gboolean gh_pop3_code_is(const GhPop3StatusLine *st, const char *want);

typedef enum {
	GH_POP3_MULTI_NEED_MORE,
	GH_POP3_MULTI_OK,  /* the whole block up to its "." line */
	GH_POP3_MULTI_BAD, /* longer than `max` in all, or a line over GH_POP3_MAX_REPLY_LINE */
} GhPop3MultiStatus;

/* The body of a multi-line response (RFC 1939 3), the status line already
 * read: lines up to the one that is a single ".".  On OK *lines gets each
 * line, dot-unstuffed, without its terminator (new NULL-terminated array
 * of C strings: a NUL inside a line ends that line's string) and *consumed
 * the bytes up to and including the "." line's end. */
GhPop3MultiStatus
gh_pop3_parse_multiline(const char *buf, gsize len, gsize max, char ***lines, gsize *consumed);

/* For a CAPA response's lines: the line whose first word is `keyword`
 * (case-insensitive), or NULL.  With `params`, the words after it (new
 * NULL-terminated array). */
const char *gh_pop3_capa_find(char *const *lines, const char *keyword, char ***params);
