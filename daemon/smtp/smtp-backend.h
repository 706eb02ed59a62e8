/*
 * smtp-backend.h: the gateway as an SMTP client of a backend MTA, up to the
 * point where the backend session stands for the client: connect (next
 * server on failure), greeting, EHLO, then by `login =`:
 *   xclient      XCLIENT LOGIN= ADDR= PORT= NAME= HELO= (what the backend
 *                advertises), the new greeting, EHLO again with the client's
 *                HELO name (Postfix takes the HELO of that EHLO);
 *   passthrough  AUTH PLAIN with the client's own credentials;
 *   master       AUTH PLAIN, authzid = the user, authcid/password = master;
 *   none         nothing (the backend trusts the gateway's address).
 * With forward_client = yes and a backend that offers XCLIENT, passthrough,
 * master and none send XCLIENT ADDR/PORT/HELO (without LOGIN) first.
 * For an unauthenticated session (MX role) only the XCLIENT part is done.
 * TLS: tls = implicit speaks TLS from the first byte; tls = starttls sends
 * STARTTLS after the first EHLO (RFC 3207) and starts over with EHLO inside
 * TLS; the certificate is checked against the server's name unless
 * verify = no.
 *
 * Everything runs on the session's worker context; the callback runs there
 * exactly once unless the handshake is cancelled first.
 */
#pragma once

#include <glib.h>
#include "config/config.h"
#include "net/conn.h"
#include "secret.h"
#include "net/tls.h"

typedef struct _GhSmtpBackend GhSmtpBackend;

typedef struct {
	const GhBackendConfig *backend;
	const char *route;      /* "host:port" from the auth result, overrides servers; or NULL */
	const char *user;       /* canonical user (LOGIN=, authzid), NULL when not authenticated */
	const char *login_user; /* passthrough: the name to log in with (the canonical user) */
	const GhSecret *password; /* the client's password (passthrough), copied */
	const char *client_addr;  /* textual address */
	guint16 client_port;
	const char *client_helo; /* the client's HELO/EHLO argument, or NULL */
	gboolean client_esmtp;   /* the client said EHLO */
	const char *hostname;    /* our own name, for EHLO when the client gave none */
	const char *session_id;  /* for log lines */
	const char *hash_key;    /* picks the first server (user, or address) */
	GhTls *tls;              /* client credentials for backends with tls != none */
} GhSmtpBackendParams;

/* conn: the backend socket, handshake done, ready for the client's next
 * command (transfer full), or NULL on failure with `error` saying why (for
 * the log).  `server` names the server used or last tried. */
typedef void (*GhSmtpBackendDone)(GhConn *conn,
				  const char *server,
				  const char *error,
				  gpointer user_data);

GhSmtpBackend *gh_smtp_backend_connect(const GhSmtpBackendParams *params,
				       GMainContext *context,
				       GhSmtpBackendDone callback,
				       gpointer user_data);
/* The callback will not run; everything is freed.  Worker thread. */
void gh_smtp_backend_cancel(GhSmtpBackend *backend);
