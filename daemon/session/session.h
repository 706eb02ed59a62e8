/*
 * session.h: one client connection, from accept to close, on one worker.
 *
 * This first version greets the client in its protocol and closes: the SMTP
 * and IMAP front ends replace the body of a session, not its life cycle
 * (creation on accept, registration with the worker, shutdown notice, close).
 */
#pragma once

#include <glib.h>
#include <sys/socket.h>
#include "core/server.h"

/* Take over `fd` (connected, non-blocking) accepted on `listener`.  The
 * session registers with the worker and frees itself when it closes. */
void gh_session_start(GhWorker *worker,
		      GhListener *listener,
		      int fd,
		      const struct sockaddr *peer,
		      socklen_t peer_len);

/* The daemon is stopping: a session still in login state tells the client
 * (421 / * BYE) and closes; a proxied one drains.  Worker thread. */
void gh_session_shutdown(GhSession *session);

/* Close at once, without a goodbye (the shutdown timeout ran out).
 * Worker thread. */
void gh_session_abort(GhSession *session);
