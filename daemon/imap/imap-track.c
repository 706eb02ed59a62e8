/*
 * imap-track.c: where the lines of a relayed IMAP server's output are (see
 * imap-track.h).
 */
#include "gh-build.h"

#include "imap/imap-track.h"

#include <string.h>

#define MAX_DIGITS 19 /* below 2^63 */

void
gh_imap_track_init(GhImapTrack *t)
{
	memset(t, 0, sizeof *t);
}

/* Keep the last GH_IMAP_TRACK_TAIL octets of the line. */
static void
tail_add(GhImapTrack *t, const guint8 *p, gsize n)
{
	if (n >= GH_IMAP_TRACK_TAIL) {
		memcpy(t->tail, p + n - GH_IMAP_TRACK_TAIL, GH_IMAP_TRACK_TAIL);
		t->tail_len = GH_IMAP_TRACK_TAIL;
		return;
	}
	if (t->tail_len + n > GH_IMAP_TRACK_TAIL) {
		gsize drop = t->tail_len + n - GH_IMAP_TRACK_TAIL;
		memmove(t->tail, t->tail + drop, t->tail_len - drop);
		t->tail_len = (guint8)(t->tail_len - drop);
	}
	memcpy(t->tail + t->tail_len, p, n);
	t->tail_len = (guint8)(t->tail_len + n);
}

/* The line just ended (its LF not in the tail): does it announce a
 * literal?  Sets t->literal and t->mid_line, or t->lost. */
static void
line_end(GhImapTrack *t)
{
	gsize end = t->tail_len, digits = 0;
	guint64 n = 0, scale = 1;

	if (end > 0 && t->tail[end - 1] == '\r')
		end--;
	if (end == 0 || t->tail[end - 1] != '}')
		return;
	end--;
	if (end > 0 && t->tail[end - 1] == '+')
		end--;
	while (end > 0 && g_ascii_isdigit(t->tail[end - 1])) {
		if (++digits > MAX_DIGITS) {
			t->lost = TRUE; /* a count we cannot hold: lines unknown */
			return;
		}
		n += (guint64)(t->tail[end - 1] - '0') * scale;
		scale *= 10;
		end--;
	}
	if (digits == 0 || end == 0 || t->tail[end - 1] != '{')
		return;
	t->literal = n;
	t->mid_line = TRUE; /* the line goes on after the literal */
}

void
gh_imap_track_down(GhImapTrack *t, const guint8 *buf, gsize len)
{
	gsize i = 0;

	while (i < len && !t->lost) {
		const guint8 *lf;
		gsize end;

		if (t->literal > 0) {
			gsize k = (gsize)MIN(t->literal, (guint64)(len - i));
			t->literal -= k;
			i += k;
			continue;
		}
		lf = memchr(buf + i, '\n', len - i);
		end = lf != NULL ? (gsize)(lf - buf) : len;
		if (end > i) {
			tail_add(t, buf + i, end - i);
			t->mid_line = TRUE;
		}
		if (lf == NULL)
			return;
		t->mid_line = FALSE;
		line_end(t);
		t->tail_len = 0;
		i = end + 1;
	}
}

gboolean
gh_imap_track_at_rest(const GhImapTrack *t)
{
	return !t->lost && t->literal == 0 && !t->mid_line;
}

gboolean
gh_imap_track_lost(const GhImapTrack *t)
{
	return t->lost;
}
