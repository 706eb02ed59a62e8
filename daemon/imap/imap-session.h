/*
 * imap-session.h: the IMAP front end (gatehoused(8), CLIENT REPLIES): the
 * pre-login dialogue with the client, verification through the auth core,
 * the login on the backend (imap-backend.h), then the relay (relay.h).
 */
#pragma once

#include "session/session-private.h"

/* Greet the client and run the session to its end; the session frees itself.
 * Worker thread. */
void gh_imap_session_begin(GhSession *s);

/* Limits before login (RFC 9051 leaves them to the server): a command line
 * (without literal contents) and one literal. */
#define GH_IMAP_MAX_LINE 8192
#define GH_IMAP_MAX_LITERAL 8192
/* BAD replies one connection may cause before it is closed. */
#define GH_IMAP_MAX_BAD 10
