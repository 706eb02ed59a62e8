/*
 * smtp-session.h: the SMTP front end (gatehoused(8), CLIENT REPLIES): the
 * pre-login dialogue with the client, verification through the auth core,
 * joining the backend (smtp-backend.h), then the relay (relay.h).
 */
#pragma once

#include "session/session-private.h"

/* Greet the client and run the session to its end; the session frees itself.
 * Worker thread. */
void gh_smtp_session_begin(GhSession *s);

/* Errors (replies 500-504) one connection may cause before it is closed. */
#define GH_SMTP_MAX_ERRORS 10
