/*
 * line.c: line framing (see line.h).
 *
 * Invariants: every buffer is a (pointer, length) pair, not NUL-terminated:
 * no byte at or after `len` is read; feeding a buffer in pieces gives the same
 * answers as feeding it whole.
 */
#include "gh-build.h"

#include "common/line.h"

#include <string.h>

/* ---- line framing: RFC 5321 2.3.8 and 4.5.3.1.4 ---- */

gsize
gh_line_find_lf(const char *buf, gsize from, gsize to)
{
	const char *p;

	if (from >= to)
		return to;
	p = memchr(buf + from, '\n', to - from);
	return p != NULL ? (gsize)(p - buf) : to;
}

GhLineStatus
gh_line_next(
    const char *buf, gsize len, gsize max, gsize *line_len, gsize *consumed, gboolean *terminated)
{
	gsize window = MIN(len, max);
	gsize lf;

	*line_len = 0;
	*consumed = 0;
	if (terminated != NULL)
		*terminated = FALSE;
	/* Nothing buffered is never a line, even with max 0: answering TOO_LONG
	 * with nothing to drop would spin a caller that loops on it. */
	if (len == 0)
		return GH_LINE_NEED_MORE;

	/* The line with its LF is lf + 1 bytes (a CR before the LF is one of
	 * them), so it fits exactly when its LF lies in the first `max` bytes. */
	lf = gh_line_find_lf(buf, 0, window);
	if (lf < window) {
		*line_len = (lf > 0 && buf[lf - 1] == '\r') ? lf - 1 : lf;
		*consumed = lf + 1;
		if (terminated != NULL)
			*terminated = TRUE;
		return GH_LINE_OK;
	}
	if (len < max)
		return GH_LINE_NEED_MORE;

	/* `max` bytes and no LF among them: the line cannot fit any more.  Drop
	 * it up to its LF if that is here already, else all we have. */
	lf = gh_line_find_lf(buf, window, len);
	if (lf < len) {
		*consumed = lf + 1;
		if (terminated != NULL)
			*terminated = TRUE;
	} else {
		*consumed = len;
	}
	return GH_LINE_TOO_LONG;
}

GhLineStatus
gh_line_next_command(const char *buf,
		     gsize len,
		     gsize max,
		     gsize max_long,
		     const char *long_verb,
		     gsize *line_len,
		     gsize *consumed,
		     gboolean *terminated)
{
	gboolean term = FALSE;
	gsize n = strlen(long_verb);
	GhLineStatus st = gh_line_next(buf, len, max_long, line_len, consumed, &term);

	if (st == GH_LINE_OK && *consumed > max &&
	    !(*line_len >= n && g_ascii_strncasecmp(buf, long_verb, n) == 0 &&
	      (*line_len == n || buf[n] == ' ' || buf[n] == '\t'))) {
		st = GH_LINE_TOO_LONG;
		*line_len = 0;
	}
	if (terminated != NULL)
		*terminated = term;
	return st;
}

gsize
gh_line_skip(const char *buf, gsize len, gboolean *terminated)
{
	gsize lf = gh_line_find_lf(buf, 0, len);
	gboolean found = lf < len;

	if (terminated != NULL)
		*terminated = found;
	return found ? lf + 1 : len;
}

gsize
gh_line_format_u64(char *buf, guint64 v)
{
	char tmp[GH_LINE_U64_MAX];
	gsize n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	for (gsize i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}
