/*
 * imap-track.h: following what a relayed IMAP server sends its client
 * closely enough to tell when a line of our own (a kick's "* BYE") may go
 * between two of its lines: at a line's end, and not inside a literal.
 *
 * A line that ends in "{N}" (or "{N+}", or literal8's "~{N}"), with or
 * without a CR before its LF, is followed by N octets of literal that may
 * hold anything, line ends included; the line goes on after them (RFC
 * 9051 4.3, 2.2.1).  Nothing else in a server's lines matters here.  A
 * count of more than 19 digits makes the tracker LOST for good: it no
 * longer knows where the lines are, and never says "at rest" again.
 *
 * Pure: no sockets, no clocks, no globals; tested byte by byte in
 * tests/unit/test-imap-track.c and fuzzed (tests/fuzz/fuzz-imap-track.c).
 */
#pragma once

#include <glib.h>

/* The longest line end that can announce a literal: "~{" 19 digits "+}" CR. */
#define GH_IMAP_TRACK_TAIL 24

typedef struct {
	guint64 literal; /* octets of a literal still to come */
	gboolean mid_line;
	gboolean lost;
	guint8 tail_len;
	char tail[GH_IMAP_TRACK_TAIL]; /* the current line's last octets */
} GhImapTrack;

void gh_imap_track_init(GhImapTrack *t);
/* The next len octets the server sent. */
void gh_imap_track_down(GhImapTrack *t, const guint8 *buf, gsize len);
/* At the end of a line, outside any literal, and not lost. */
gboolean gh_imap_track_at_rest(const GhImapTrack *t);
gboolean gh_imap_track_lost(const GhImapTrack *t);
