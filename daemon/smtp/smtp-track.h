/*
 * smtp-track.h: following a relayed SMTP session closely enough to tell
 * when its backend connection is at rest, so that the client's QUIT can be
 * answered here and the connection kept for the next session
 * (`[backend] reuse_connections`, gatehouse.conf(5)).
 *
 * The relay shows the tracker every byte before passing it on: the
 * client's (commands and message bodies) and the server's (replies).  The
 * tracker counts commands sent and replies received, knows whether the
 * client is sending commands or a message body, and says QUIT when the
 * bytes just shown are exactly one QUIT line, sent with every earlier
 * command answered: then nothing the server has read is waiting for an
 * answer, and nothing is left half-said.
 *
 * It follows only what it is sure to read as the server does.  Anything
 * else makes it LOST for good and the relay goes on blind, as it does when
 * nothing is reused: the QUIT goes to the server like any other bytes.
 * So an SMTP smuggling attempt (a body ended by a bare LF before the dot,
 * bytes sent before the server's 354), a command that changes what the
 * server knows about the client (EHLO, AUTH, STARTTLS, XCLIENT), BDAT, a
 * reply nobody asked for (421 on a timeout), or a line too long or with a
 * NUL, never leaves a connection for someone else.
 *
 * What the tracker follows, client side (RFC 5321, RFC 2920):
 *  - commands: CRLF-terminated lines of at most GH_SMTP_MAX_LINE octets
 *    with their CRLF, no NUL, no bare CR or LF; the verb is the first word,
 *    up to a space (not a tab) or the line end; verbs (case-insensitive)
 *    MAIL, RCPT, RSET, NOOP (each expects one reply), DATA (exactly "DATA":
 *    one reply; the client must then wait for it), QUIT (exactly "QUIT");
 *  - pipelined commands: at most GH_SMTP_TRACK_MAX_PENDING unanswered;
 *  - a message body after a 354: lines ending in CRLF, no NUL, no bare CR
 *    or LF, ended by "." CRLF at a line start (dot-stuffed lines go by),
 *    after which one reply is expected.
 * Server side: replies "NNN-text" ... "NNN text" (or "NNN") lines ending in
 * CRLF, of at most GH_SMTP_TRACK_MAX_REPLY_LINE octets each, with the same
 * code on every line, each final line answering the oldest unanswered
 * command; 421 anywhere, or a 354 that does not answer DATA, is LOST, and
 * so is a server's first byte when no reply is owed.
 *
 * Pure: no sockets, no clocks, no globals; tested byte by byte in
 * tests/unit/test-smtp-track.c, fuzzed by tests/fuzz/fuzz-smtp-track.c.
 */
#pragma once

#include <glib.h>

/* unanswered pipelined commands a session may have (Postfix answers them
 * in order; a client with more is not one we keep a connection after) */
#define GH_SMTP_TRACK_MAX_PENDING 100
/* one reply line with its CRLF; Postfix's are well under 512 */
#define GH_SMTP_TRACK_MAX_REPLY_LINE 2048

typedef enum {
	GH_SMTP_TRACK_GOING, /* following: pass the bytes on */
	/* (client bytes only) the bytes shown are exactly one QUIT line,
	 * starting a line, with every earlier command answered and no reply
	 * begun: do not pass them on.  The tracker is done: any later bytes
	 * make it LOST. */
	GH_SMTP_TRACK_QUIT,
	GH_SMTP_TRACK_LOST, /* for good: pass everything on, stop showing bytes */
} GhSmtpTrackState;

typedef struct _GhSmtpTrack GhSmtpTrack;

/* A tracker for a session whose backend has answered everything it was
 * sent (the relay starts after the login's reply): no command pending,
 * the client at the start of a command line. */
GhSmtpTrack *gh_smtp_track_new(void);
void gh_smtp_track_free(GhSmtpTrack *t);

/* The client's bytes, in order, before they go to the server (len > 0).
 * QUIT only when buf[0..len) is the whole QUIT line. */
GhSmtpTrackState gh_smtp_track_client(GhSmtpTrack *t, const guint8 *buf, gsize len);
/* The server's bytes, in order, before they go to the client (len > 0).
 * Never QUIT. */
GhSmtpTrackState gh_smtp_track_server(GhSmtpTrack *t, const guint8 *buf, gsize len);
/* The state the last call left (GOING for a new tracker). */
GhSmtpTrackState gh_smtp_track_state(const GhSmtpTrack *t);

/* What a kept connection carries into the next session, as Postfix counts
 * it (postconf(5): smtpd_junk_command_limit, smtpd_soft_error_limit):
 * since the last message the server accepted (a 2xx to a body's end) or
 * since the start, the RSET and NOOP commands sent, and the final replies
 * with a 4xx or 5xx code.  `accepted` says whether any message was.  As the
 * server reads in order, RSET and NOOP pipelined after a body's end count
 * after that message even when they came before its 2xx. */
void gh_smtp_track_counts(const GhSmtpTrack *t, guint *junk, guint *errors, gboolean *accepted);
