/*
 * imap-backend.h: the gateway as an IMAP client of a backend server, up to
 * the backend's answer to the login: connect (next server on failure), read
 * the greeting (a PREAUTH or BYE greeting is refused), learn the
 * capabilities (from the greeting, else one CAPABILITY), then send in one
 * write, when forward_client is on, an ID with the client's address, port,
 * the address it connected to and the session id (x-originating-ip, ...;
 * RFC 2971, honoured by Dovecot from login_trusted_networks) plus the
 * client's own ID fields, and the login under the client's tag:
 *   passthrough  AUTHENTICATE PLAIN with an initial response when the server
 *                offers SASL-IR and AUTH=PLAIN, else LOGIN with literals
 *                ({n+} with LITERAL+, else {n} and its continuations);
 *   master       AUTHENTICATE PLAIN, authzid = user, authcid = master_user.
 * Credentials are never spliced into a command as text.
 * TLS: tls = implicit speaks TLS from the first byte; tls = starttls sends
 * STARTTLS once the capabilities are known and asks for them again inside
 * TLS (RFC 9051 6.2.1); the certificate is checked against the server's
 * name unless verify = no.
 *
 * Runs on the session's worker context; the callback runs there once
 * unless the handshake is cancelled first.
 */
#pragma once

#include <glib.h>
#include "config/config.h"
#include "net/conn.h"
#include "secret.h"
#include "net/tls.h"

typedef struct _GhImapBackend GhImapBackend;

typedef struct {
	const GhBackendConfig *backend;
	const char *route;        /* from the auth result, or NULL */
	const char *hash_key;     /* picks the first server: the user */
	const char *tag;          /* the client's tag: the login goes under it */
	const char *user;         /* canonical user */
	const GhSecret *password; /* passthrough: the client's password, copied */
	const char *client_addr;
	guint16 client_port;
	const char *local_addr;
	guint16 local_port;
	const char *session_id;
	GhTls *tls;                   /* client credentials for backends with tls != none */
	const char *const *client_id; /* the client's ID fields: key, value, key, value, ..., NULL;
					 value "" for NIL; may be NULL */
} GhImapBackendParams;

typedef enum {
	GH_IMAP_BACKEND_OK,      /* logged in: `reply` is the backend's answer, to forward */
	GH_IMAP_BACKEND_REFUSED, /* the backend said NO to the login */
	GH_IMAP_BACKEND_FAILED,  /* unreachable, timed out, or not a usable IMAP server */
} GhImapBackendResult;

/* conn: on OK the backend socket, logged in (transfer full); else NULL.
 * reply: on OK the bytes the backend sent in answer to the login (untagged
 * lines and the tagged OK line), to send to the client as they are.
 * error: for the log, on REFUSED and FAILED. */
typedef void (*GhImapBackendDone)(GhImapBackendResult result,
				  GhConn *conn,
				  GBytes *reply,
				  const char *server,
				  const char *error,
				  gpointer user_data);

GhImapBackend *gh_imap_backend_connect(const GhImapBackendParams *params,
				       GMainContext *context,
				       GhImapBackendDone callback,
				       gpointer user_data);
/* The callback will not run; everything is freed and wiped.  Worker thread. */
void gh_imap_backend_cancel(GhImapBackend *backend);
