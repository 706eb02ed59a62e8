/*
 * pop3-backend.h: the gateway as a POP3 client of a backend server, up to
 * the backend's answer to the login.  The POP3 steps only; connecting, TLS,
 * the timer and fail-over are the backend link's (session/backend-link.h).
 *
 * Read the greeting (-ERR: try the next server), send STLS first when
 * tls = starttls (RFC 2595 4: no new greeting inside TLS), learn the
 * capabilities with CAPA (RFC 2449; a server without CAPA offers USER/PASS
 * only), then, one command at a time:
 *   - when forward_client is on and the server offers it (Dovecot's
 *     pop3-login to its login_trusted_networks says [XCLIENT] in its
 *     greeting), XCLIENT ADDR= PORT= with the client's address: at once,
 *     while the password is checked; on a warm link (backend-pool.h) once
 *     it is given a client, before the login;
 *   - the login:
 *       passthrough  AUTH PLAIN with an initial response when the server
 *                    offers SASL PLAIN (the response alone, after the
 *                    server's "+", when the line would pass 255 octets),
 *                    else USER and, after its +OK, PASS;
 *       master       AUTH PLAIN, authzid = user, authcid = master_user.
 * Credentials never go into a command as text except with PASS, which is
 * refused for a user name or password holding a CR or LF.
 *
 * The done callback gets OK with `reply`, the backend's +OK line to the
 * login, to send to the client as it is; REFUSED when the backend said
 * -ERR to the login with no response code or [AUTH]; FAILED otherwise
 * (any other code, [SYS/TEMP], [IN-USE] and [LOGIN-DELAY] among them: the
 * client is told to try again later).
 */
#pragma once

#include <glib.h>
#include "session/backend-link.h"

/* Start a link (parked before the login when p->login_later).  Cancel
 * with gh_backend_link_cancel. */
GhBackendLink *gh_pop3_backend_connect(const GhBackendParams *p,
				       GMainContext *context,
				       GhBackendDone done,
				       gpointer user_data);
