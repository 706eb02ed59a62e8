/*
 * smtp-track.c: the SMTP session tracker (see smtp-track.h): reads the
 * client's commands and message bodies and the server's replies as they
 * pass through the relay, counts the replies owed, and says QUIT when a
 * lone QUIT line finds the backend connection at rest.
 *
 * It owns no buffer: a line split across calls is carried in a few fields
 * (its length so far, the first octets of a command line, the reply code,
 * whether the last octet was a CR), so every octet is looked at once and
 * nothing is allocated after gh_smtp_track_new.  The bulk of a body line
 * is looked at with memchr (a 100 KiB body byte by byte cost more than the
 * connection its tracking saves).
 *
 * Invariants:
 *  - no byte at or after `len` is read; a call reads its bytes in order and
 *    stops at the first one that makes the tracker LOST, so where a stream
 *    is cut into calls changes nothing but the QUIT rule, which wants the
 *    QUIT line to be a whole call of its own;
 *  - the replies owed (`pending`) answer the commands in the order sent.
 *    Two of them are special and each has a fixed place, so a count and a
 *    flag say everything:
 *      DATA's reply is always the newest, and owed exactly while the mode is
 *      DATA_WAIT: the client may send nothing after DATA until it is
 *      answered;
 *      a body end's reply is always the oldest: a body starts only once
 *      DATA, the newest, is answered, so nothing is owed during a body, and
 *      the next DATA (hence the next body end) cannot be answered before
 *      it.  `body_end_owed` says whether the oldest is one;
 *  - once LOST or QUIT, nothing changes any more and every call is LOST.
 */
#include "gh-build.h"

#include "smtp/smtp-track.h"
#include "smtp/smtp-parser.h"

#include <string.h>

typedef enum {
	MODE_COMMAND,   /* the client sends command lines */
	MODE_DATA_WAIT, /* DATA sent, its reply not yet seen: the client must wait */
	MODE_BODY,      /* a message body, after a 354 */
} Mode;

/* the first octets of a command line kept: a verb of 4 and what follows it */
#define HEAD_LEN 5

struct _GhSmtpTrack {
	GhSmtpTrackState state;
	Mode mode;

	/* client: the line under way (command or body) */
	gsize line_len; /* its octets so far, CR and LF included (a body line's: up to HEAD_LEN) */
	guint8 head[HEAD_LEN]; /* its first octets */
	gboolean client_cr;    /* its last octet was a CR: an LF must follow */

	/* server: the reply line under way */
	gsize reply_len;    /* its octets so far, CR and LF included */
	guint code;         /* its code so far (up to 3 digits) */
	gboolean more;      /* it is a "NNN-" line: the reply goes on */
	gboolean server_cr; /* its last octet was a CR */
	guint reply_code;   /* the code of the reply's earlier lines, 0 on its first line */

	/* the replies owed, oldest first (see the invariants above) */
	guint pending;
	gboolean body_end_owed; /* the oldest answers a body's end */
	guint junk_at_end;      /* `junk` when that body ended */

	/* gh_smtp_track_counts */
	guint junk;
	guint errors;
	gboolean accepted;
};

GhSmtpTrack *
gh_smtp_track_new(void)
{
	GhSmtpTrack *t = g_new0(GhSmtpTrack, 1);

	t->state = GH_SMTP_TRACK_GOING;
	t->mode = MODE_COMMAND;
	return t;
}

void
gh_smtp_track_free(GhSmtpTrack *t)
{
	g_free(t);
}

GhSmtpTrackState
gh_smtp_track_state(const GhSmtpTrack *t)
{
	return t->state;
}

void
gh_smtp_track_counts(const GhSmtpTrack *t, guint *junk, guint *errors, gboolean *accepted)
{
	if (junk != NULL)
		*junk = t->junk;
	if (errors != NULL)
		*errors = t->errors;
	if (accepted != NULL)
		*accepted = t->accepted;
}

static GhSmtpTrackState
lose(GhSmtpTrack *t)
{
	t->state = GH_SMTP_TRACK_LOST;
	return GH_SMTP_TRACK_LOST;
}

/* One more reply owed, for a command just read. */
static gboolean
owe(GhSmtpTrack *t)
{
	if (t->pending >= GH_SMTP_TRACK_MAX_PENDING)
		return FALSE;
	t->pending++;
	return TRUE;
}

/* Is the command line, of `n` octets without its CRLF whose first ones are
 * in t->head, the verb `verb` (4 upper-case letters)?  `alone`: the line
 * must be the verb and nothing else. */
static gboolean
verb_is(const GhSmtpTrack *t, gsize n, const char *verb, gboolean alone)
{
	if (n < 4 || g_ascii_strncasecmp((const char *)t->head, verb, 4) != 0)
		return FALSE;
	if (n == 4)
		return TRUE;
	return !alone && t->head[4] == ' ';
}

/* A command line has ended with its CRLF: t->line_len octets in all.
 * `whole`: the line is exactly the bytes of this call. */
static GhSmtpTrackState
command_line(GhSmtpTrack *t, gboolean whole)
{
	gsize n = t->line_len - 2;

	t->line_len = 0;
	if (verb_is(t, n, "MAIL", FALSE) || verb_is(t, n, "RCPT", FALSE))
		return owe(t) ? GH_SMTP_TRACK_GOING : lose(t);
	if (verb_is(t, n, "RSET", FALSE) || verb_is(t, n, "NOOP", FALSE)) {
		if (!owe(t))
			return lose(t);
		t->junk++;
		return GH_SMTP_TRACK_GOING;
	}
	if (verb_is(t, n, "DATA", TRUE)) {
		if (!owe(t))
			return lose(t);
		t->mode = MODE_DATA_WAIT;
		return GH_SMTP_TRACK_GOING;
	}
	/* QUIT: the backend is at rest only when everything it was sent has
	 * been answered and read to the end, and the QUIT is all there is (a
	 * reply line under way means one is owed: its checks are belt and
	 * braces) */
	if (verb_is(t, n, "QUIT", TRUE) && whole && t->pending == 0 && t->reply_len == 0 &&
	    t->reply_code == 0) {
		t->state = GH_SMTP_TRACK_QUIT;
		return GH_SMTP_TRACK_QUIT;
	}
	/* anything else: a QUIT that is not alone, DATA or QUIT with an
	 * argument, a command that changes the session (EHLO, HELO, AUTH,
	 * STARTTLS, XCLIENT, XFORWARD), BDAT, one we cannot be sure about
	 * (VRFY, EXPN, HELP, ETRN, unknown), an empty line */
	return lose(t);
}

/* A body line has ended with its CRLF: t->line_len octets in all. */
static GhSmtpTrackState
body_line(GhSmtpTrack *t)
{
	gboolean end = t->line_len == 3 && t->head[0] == '.';

	t->line_len = 0;
	if (!end)
		return GH_SMTP_TRACK_GOING; /* "..x" too: a dot-stuffed line */
	/* nothing is owed during a body (DATA was the newest and is answered):
	 * the body end's reply is the oldest owed */
	if (t->pending != 0 || !owe(t))
		return lose(t);
	t->body_end_owed = TRUE;
	t->junk_at_end = t->junk;
	t->mode = MODE_COMMAND;
	return GH_SMTP_TRACK_GOING;
}

GhSmtpTrackState
gh_smtp_track_client(GhSmtpTrack *t, const guint8 *buf, gsize len)
{
	if (t->state != GH_SMTP_TRACK_GOING)
		return lose(t);
	for (gsize i = 0; i < len; i++) {
		guint8 c;
		GhSmtpTrackState st;

		/* The bulk of a body line, past the octets kept: only a CR
		 * matters there, and an LF or NUL before it is LOST.  memchr
		 * goes through it many octets at a time; the loop below then
		 * takes the CR, the LF after it and the next line's start. */
		if (t->mode == MODE_BODY && !t->client_cr && t->line_len >= HEAD_LEN) {
			const guint8 *cr = memchr(buf + i, '\r', len - i);
			gsize span = cr != NULL ? (gsize)(cr - (buf + i)) : len - i;

			if (memchr(buf + i, '\n', span) != NULL ||
			    memchr(buf + i, '\0', span) != NULL)
				return lose(t);
			i += span;
			if (i == len)
				break;
		}
		c = buf[i];

		/* RFC 5321 3.3: the client waits for DATA's reply; bytes sent
		 * before it are how a body is smuggled past a server that would
		 * refuse the DATA */
		if (t->mode == MODE_DATA_WAIT || c == '\0')
			return lose(t);
		if (t->mode == MODE_COMMAND && t->line_len >= GH_SMTP_MAX_LINE)
			return lose(t);
		if (t->line_len < HEAD_LEN)
			t->head[t->line_len] = c;
		/* a body line has no limit: its length matters only up to 3
		 * (".\r\n"), so it stops at HEAD_LEN */
		if (t->mode == MODE_COMMAND || t->line_len < HEAD_LEN)
			t->line_len++;
		if (t->client_cr) {
			if (c != '\n')
				return lose(t); /* a bare CR */
			t->client_cr = FALSE;
			if (t->mode == MODE_COMMAND)
				st = command_line(t, t->line_len == i + 1 && i + 1 == len);
			else
				st = body_line(t);
			if (st != GH_SMTP_TRACK_GOING)
				return st;
		} else if (c == '\n') {
			return lose(t); /* a bare LF */
		} else if (c == '\r') {
			t->client_cr = TRUE;
		}
	}
	return t->state;
}

/* A final reply line of code `code` answers the oldest reply owed. */
static GhSmtpTrackState
answer(GhSmtpTrack *t, guint code)
{
	gboolean body_end = t->body_end_owed;

	t->pending--;
	t->body_end_owed = FALSE;
	if (code >= 400)
		t->errors++;
	if (body_end) {
		if (code / 100 == 2) {
			/* the server takes the message, then reads what was
			 * pipelined after its end: only the junk sent before it
			 * is forgotten, and every error so far was before it */
			t->junk -= t->junk_at_end;
			t->errors = 0;
			t->accepted = TRUE;
		}
	} else if (t->mode == MODE_DATA_WAIT && t->pending == 0) {
		/* DATA's: a 354 opens the body, anything else refuses it */
		t->mode = code == 354 ? MODE_BODY : MODE_COMMAND;
		t->line_len = 0;
		return GH_SMTP_TRACK_GOING;
	}
	if (code == 354)
		return lose(t); /* a 354 to something other than DATA */
	return GH_SMTP_TRACK_GOING;
}

/* A reply line has ended with its CRLF. */
static GhSmtpTrackState
reply_line(GhSmtpTrack *t)
{
	guint code = t->code;

	t->reply_len = 0;
	t->code = 0;
	if (t->more) {
		t->reply_code = code;
		return GH_SMTP_TRACK_GOING;
	}
	t->reply_code = 0;
	return answer(t, code);
}

GhSmtpTrackState
gh_smtp_track_server(GhSmtpTrack *t, const guint8 *buf, gsize len)
{
	if (t->state != GH_SMTP_TRACK_GOING)
		return lose(t);
	for (gsize i = 0; i < len; i++) {
		guint8 c = buf[i];
		gsize pos = t->reply_len;

		/* a reply nobody asked for, a NUL, a line too long */
		if ((pos == 0 && t->pending == 0) || c == '\0' ||
		    pos >= GH_SMTP_TRACK_MAX_REPLY_LINE)
			return lose(t);
		t->reply_len++;
		if (t->server_cr) {
			GhSmtpTrackState st;

			if (c != '\n')
				return lose(t); /* a bare CR */
			t->server_cr = FALSE;
			st = reply_line(t);
			if (st != GH_SMTP_TRACK_GOING)
				return st;
		} else if (c == '\n') {
			return lose(t); /* a bare LF */
		} else if (pos < 3) {
			/* the code: 2..5 then two digits, the same on every line
			 * of a reply; 421 is the server closing the connection */
			if (!g_ascii_isdigit(c) || (pos == 0 && (c < '2' || c > '5')))
				return lose(t);
			t->code = t->code * 10 + (guint)(c - '0');
			if (pos == 2 &&
			    (t->code == 421 || (t->reply_code != 0 && t->code != t->reply_code)))
				return lose(t);
		} else if (pos == 3) {
			if (c == '-')
				t->more = TRUE;
			else if (c == ' ' || c == '\r')
				t->more = FALSE; /* "NNN text" or "NNN" */
			else
				return lose(t);
			t->server_cr = c == '\r';
		} else if (c == '\r') {
			t->server_cr = TRUE;
		}
	}
	return t->state;
}
