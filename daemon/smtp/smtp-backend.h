/*
 * smtp-backend.h: the gateway as an SMTP client of a backend MTA, up to the
 * point where the backend session stands for the client.  The SMTP steps
 * only; connecting, TLS, the timer and fail-over are the backend link's
 * (session/backend-link.h).  Greeting, EHLO, then by `login =`:
 *   xclient      XCLIENT LOGIN= ADDR= PORT= NAME= HELO= (what the backend
 *                advertises; ADDR, PORT and NAME only with forward_client),
 *                the new greeting, EHLO again with the client's HELO name
 *                (Postfix takes the HELO of that EHLO);
 *   passthrough  AUTH PLAIN with the client's own credentials;
 *   master       AUTH PLAIN, authzid = the user, authcid/password = master;
 *   none         nothing (the backend trusts the gateway's address).
 * With forward_client = yes and a backend that offers XCLIENT, passthrough,
 * master and none send XCLIENT ADDR/PORT/HELO (without LOGIN) first.
 * For an unauthenticated session (MX role, params->user NULL) only the
 * XCLIENT part is done.  tls = starttls sends STARTTLS after the first EHLO
 * (RFC 3207) and starts over with EHLO inside TLS.
 *
 * The done callback gets OK (reply NULL: the backend's 235 is not the
 * client's to see) or FAILED; never REFUSED.
 */
#pragma once

#include <glib.h>
#include "session/backend-link.h"

/* client_helo: the client's HELO/EHLO argument, or NULL; client_esmtp: it
 * said EHLO.  Cancel with gh_backend_link_cancel. */
GhBackendLink *gh_smtp_backend_connect(const GhBackendParams *p,
				       const char *client_helo,
				       gboolean client_esmtp,
				       GMainContext *context,
				       GhBackendDone done,
				       gpointer user_data);
/* A parked link started with no client (a warm one, session/backend-pool.h)
 * goes to a session: the client's HELO argument and EHLO, as above. */
void gh_smtp_backend_adopt(GhBackendLink *l, const char *client_helo, gboolean client_esmtp);
/* A connection kept after a client's QUIT (`reuse_connections`, login =
 * none or xclient) becomes a warm link again: parked at once, with nothing
 * sent, as gh_smtp_backend_connect's are with login_later (login = xclient:
 * before the XCLIENT that names the next client, with the attributes of
 * the connection's first EHLO, GhConn.learned; on such a backend XCLIENT
 * names HELO and LOGIN every time, [UNAVAILABLE] when unknown).
 * See gh_backend_link_resume. */
GhBackendLink *gh_smtp_backend_resume(const GhBackendParams *p,
				      GMainContext *context,
				      GhConn *conn,
				      const char *server,
				      GhBackendDone done,
				      gpointer user_data);
