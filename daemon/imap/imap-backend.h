/*
 * imap-backend.h: the gateway as an IMAP client of a backend server, up to
 * the backend's answer to the login.  The IMAP steps only; connecting, TLS,
 * the timer and fail-over are the backend link's (session/backend-link.h).
 * Read the greeting (a PREAUTH or BYE greeting is refused), learn the
 * capabilities (from the greeting, else one CAPABILITY), then send in one
 * write, when forward_client is on, an ID with the client's address, port,
 * the address it connected to and the session id (x-originating-ip, ...;
 * RFC 2971, honoured by Dovecot from login_trusted_networks) plus the
 * client's own ID fields, and the login under the client's tag:
 *   passthrough  AUTHENTICATE PLAIN with an initial response when the server
 *                offers SASL-IR and AUTH=PLAIN, else LOGIN with literals
 *                ({n+} with LITERAL+, else {n} and its continuations);
 *   master       AUTHENTICATE PLAIN, authzid = user, authcid = master_user.
 * Credentials are never spliced into a command as text.  tls = starttls
 * sends STARTTLS once the capabilities are known and asks for them again
 * inside TLS (RFC 9051 6.2.1).
 *
 * The done callback gets OK with `reply`, the bytes the backend sent in
 * answer to the login (untagged lines and the tagged OK line), to send to
 * the client as they are; REFUSED when the backend said NO to the login;
 * FAILED otherwise.
 */
#pragma once

#include <glib.h>
#include "session/backend-link.h"

/* tag: the client's tag (the login goes under it); client_id: the client's
 * ID fields, key, value, key, value, ..., NULL, value "" for NIL; may be
 * NULL.  Cancel with gh_backend_link_cancel. */
GhBackendLink *gh_imap_backend_connect(const GhBackendParams *p,
				       const char *tag,
				       const char *const *client_id,
				       GMainContext *context,
				       GhBackendDone done,
				       gpointer user_data);
/* A parked link started with no tag (a warm one, session/backend-pool.h)
 * goes to a session: its tag and ID fields, as for gh_imap_backend_connect. */
void gh_imap_backend_adopt(GhBackendLink *l, const char *tag, const char *const *client_id);
