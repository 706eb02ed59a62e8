/*
 * smtp-parser.h: the pure parts of the SMTP front end and of the backend
 * client: line framing, command and argument parsing, reply parsing and
 * xtext.  Nothing here touches a socket, a clock or global state, so every
 * function is tested byte by byte without a network (tests/unit/test-smtp-parser.c).
 *
 * Leniency (gatehoused(8), CLIENT REPLIES): commands are case-insensitive, a bare LF
 * ends a line like CRLF, `MAIL FROM: user@example.com` (space after the colon,
 * no angle brackets) is accepted.  Strictness: line length is bounded, and a
 * NUL byte or a bare CR inside a line makes it invalid.
 */
#pragma once

#include <glib.h>
#include "common/line.h"

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
 * RFC 4954 4: an AUTH line (command with initial response, or a
 * continuation line) may be longer; 12288 leaves room for any SASL PLAIN
 * response a real client sends. */
#define GH_SMTP_MAX_LINE 512
#define GH_SMTP_MAX_AUTH_LINE 12288

typedef enum {
	GH_SMTP_CMD_UNKNOWN,
	GH_SMTP_CMD_HELO,
	GH_SMTP_CMD_EHLO,
	GH_SMTP_CMD_AUTH,
	GH_SMTP_CMD_MAIL,
	GH_SMTP_CMD_RCPT,
	GH_SMTP_CMD_DATA,
	GH_SMTP_CMD_RSET,
	GH_SMTP_CMD_NOOP,
	GH_SMTP_CMD_QUIT,
	GH_SMTP_CMD_HELP,
	GH_SMTP_CMD_VRFY,
	GH_SMTP_CMD_EXPN,
	GH_SMTP_CMD_STARTTLS,
	GH_SMTP_CMD_NOT_IMPLEMENTED, /* SEND, SOML, SAML, TURN (RFC 5321 has no place for them) */
	GH_SMTP_CMD_BDAT,    /* not offered (no CHUNKING): answered like an unknown command */
	GH_SMTP_CMD_INVALID, /* the line holds a NUL or a bare CR */
} GhSmtpVerb;

typedef struct {
	GhSmtpVerb verb;
	/* The text after the verb and the spaces that follow it, up to the end
	 * of the line with trailing spaces and tabs removed; points into the
	 * line given to gh_smtp_parse_command (not NUL-terminated: use arg_len).
	 * Empty (arg_len 0) when there is none.  For MAIL/RCPT the verb is the
	 * first word only: arg is "FROM:<a@b> SIZE=10" / "TO:<x>". */
	const char *arg;
	gsize arg_len;
} GhSmtpCommand;

/* Classify one line (without its terminator).  The verb is the first word,
 * matched case-insensitively; it ends at a space, a tab, or the line end
 * ("MAIL FROM:" has verb MAIL). "NOOP x" is NOOP (RFC 5321 allows an
 * argument). */
void gh_smtp_parse_command(const char *line, gsize len, GhSmtpCommand *out);

/* Check a MAIL or RCPT argument: `keyword` is "FROM" or "TO".  Accepts,
 * case-insensitively: "FROM:<a@b>", "FROM: <a@b>", "FROM:a@b", "FROM: a@b",
 * "FROM:<>" (null reverse path, MAIL only), each optionally followed by
 * space-separated ESMTP parameters ("SIZE=100 BODY=8BITMIME").  The address
 * must not hold spaces, '<', '>' or control characters.  Returns TRUE when
 * well-formed and (optionally) the address without brackets as a new string
 * in *address (NULL allowed). */
gboolean gh_smtp_parse_path(const char *arg, gsize len, const char *keyword, char **address);

/* AUTH argument: "MECH [initial-response]".  Returns FALSE when the mechanism
 * is missing or there are more than two words.  *mech is upper-cased, new
 * string; *initial is the initial response as given (base64 or "="), new
 * string, or NULL when absent. */
gboolean gh_smtp_parse_auth(const char *arg, gsize len, char **mech, char **initial);

/* ---- the backend side: replies from an SMTP server ---- */

typedef enum {
	GH_SMTP_REPLY_NEED_MORE,
	GH_SMTP_REPLY_OK,  /* a whole (possibly multi-line) reply */
	GH_SMTP_REPLY_BAD, /* not an SMTP reply (no 3-digit code, codes differ between lines, too
			      long) */
} GhSmtpReplyStatus;

typedef struct {
	guint code;       /* 200..599 */
	GPtrArray *lines; /* of char*: the text of each line after "NNN-" / "NNN ", without
			     CRLF; pointers into `text` */
	char *text;       /* the lines' texts, one after the other, each NUL-terminated */
} GhSmtpReply;

/* Parse one reply from buf[0..len) ("250-a\r\n250 b\r\n").  On OK, fills
 * *reply (free with gh_smtp_reply_clear) and *consumed.  A reply longer than
 * `max` bytes in all is BAD. */
GhSmtpReplyStatus
gh_smtp_parse_reply(const char *buf, gsize len, gsize max, GhSmtpReply *reply, gsize *consumed);
void gh_smtp_reply_clear(GhSmtpReply *reply);

/* For an EHLO reply: TRUE when one of the lines after the first names the
 * extension `keyword` (case-insensitive, first word of the line).  When
 * `params` is not NULL it gets the rest of that line, split on spaces (new
 * NULL-terminated array), e.g. for "XCLIENT NAME ADDR PORT" -> NAME ADDR PORT. */
gboolean gh_smtp_reply_has_extension(const GhSmtpReply *ehlo, const char *keyword, char ***params);

/* RFC 3461 4 xtext, as XCLIENT (Postfix XCLIENT_README) wants attribute
 * values: '+', '=', and bytes outside 33..126 become "+XX" (upper-case hex).
 * Returns a new string. */
char *gh_smtp_xtext_encode(const char *value);
/* The same, appended to s (value not NULL). */
void gh_smtp_xtext_append(GString *s, const char *value);
