/*
 * session-internal.h: what session.c (the connection's life cycle) and
 * login.c (SASL steps, verification, backend hand-off, relay) share.
 * Nothing outside daemon/session/ includes this.
 */
#pragma once

#include "session/protocol.h"

/* session.c */
void gh_session_free(GhSession *s);
/* Serve what is in the client's input buffer, then update the watch. */
void gh_session_process(GhSession *s);
/* Decide what to wait for next; end the session when it is over.  FALSE
 * when the session was freed. */
gboolean gh_session_update_watch(GhSession *s);
/* (Re)arm the idle timer (idle_timeout). */
void gh_session_restart_idle(GhSession *s);
void gh_session_stop_timer(GhSession *s);
/* Back to reading commands: idle timer (unless closing), then serve what
 * the client pipelined meanwhile. */
void gh_session_back_to_commands(GhSession *s);
/* The relay gave the client's connection back (what is queued for it
 * still queued): the session owns and watches it again. */
void gh_session_take_client(GhSession *s, GhConn *client);
/* The core's last words (GH_SAY_GOODBYE, ..._IDLE_TIMEOUT, ...), then
 * close: they leave with the FIN, in one segment.  The session may be
 * freed on return (a connection already failed). */
void gh_session_say_last(GhSession *s, GhSay what);
/* Queue one of the protocol's GhCommandWords, "TAG " in front when `tag`. */
void gh_session_say_words(GhSession *s, const char *tag, const char *words);

/* login.c */
/* A SASL response line (without its line end) in a SASL phase. */
void gh_login_sasl_line(GhSession *s, const char *line, gsize len);
/* Forget the login (wiping the password; cancelling a verification). */
void gh_login_clear(GhLogin *l);
/* Forget everything of the login, the server it reached included. */
void gh_login_free(GhLogin *l);
/* The relay is over (`why`): the session-end line, and the bytes counted. */
void gh_login_relay_ended(GhSession *s, const char *why, guint64 up, guint64 down);
