/*
 * line.h: finding one line in an input buffer, with a bound on its length:
 * the framing SMTP commands and replies, IMAP backend lines and SASL
 * continuation lines share.  A bare LF ends a line like CRLF (telnet users
 * and sloppy servers send one).  And the one way numbers are written into
 * lines on the login path without printf (log lines, IMAP ID, cache keys).
 *
 * Pure: no I/O, no state, no clock; includes only <glib.h>.  Tested byte by
 * byte in tests/unit/test-line.c.
 */
#pragma once

#include <glib.h>

typedef enum {
	GH_LINE_NEED_MORE, /* no line end yet and fewer than `max` bytes: wait for more */
	GH_LINE_OK,        /* a whole line of at most `max` bytes (terminator included) */
	GH_LINE_TOO_LONG,  /* the line is (or will be) longer than `max` */
} GhLineStatus;

/* Find the first line of buf[0..len).
 *
 * OK: *line_len = length without the terminator (LF or CRLF; a CR before the
 * LF is not part of the line), *consumed = bytes up to and including the LF.
 *
 * TOO_LONG: the line holds more than `max` bytes counting its terminator
 * (a CRLF counts 2, a bare LF 1).  *consumed = the bytes to drop: up to and
 * including the LF when it is in the buffer (*line_len = 0, *terminated =
 * TRUE), else all of len (*terminated = FALSE: the caller keeps dropping
 * input, calling gh_line_skip, until the LF comes).
 *
 * NEED_MORE: *consumed = 0.  `terminated` may be NULL for OK/NEED_MORE-only
 * callers but is always set when non-NULL. */
GhLineStatus gh_line_next(
    const char *buf, gsize len, gsize max, gsize *line_len, gsize *consumed, gboolean *terminated);

/* A command line: as gh_line_next with `max_long`, but a line of more than
 * `max` octets (its end counted) is TOO_LONG unless its first word is
 * `long_verb`, matched case-insensitively and ended by a space, a tab or
 * the line end (SMTP's and POP3's AUTH with an initial response).  Such a
 * line is whole in the buffer: *consumed covers it, *terminated is TRUE,
 * *line_len 0. */
GhLineStatus gh_line_next_command(const char *buf,
				  gsize len,
				  gsize max,
				  gsize max_long,
				  const char *long_verb,
				  gsize *line_len,
				  gsize *consumed,
				  gboolean *terminated);

/* While dropping the rest of an over-long line: returns the number of bytes
 * of buf[0..len) to drop, and sets *terminated when those include the LF. */
gsize gh_line_skip(const char *buf, gsize len, gboolean *terminated);

/* The index of the first LF in buf[from..to), or `to` when there is none. */
gsize gh_line_find_lf(const char *buf, gsize from, gsize to);

#define GH_LINE_U64_MAX 20 /* digits of G_MAXUINT64 */
/* v in decimal into buf (at least GH_LINE_U64_MAX bytes), no terminator;
 * returns the number of digits. */
gsize gh_line_format_u64(char *buf, guint64 v);
