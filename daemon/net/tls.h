/*
 * tls.h: GnuTLS credentials for one configuration generation.
 *
 * GhTls holds the server credentials ([tls] certificate/key pairs, chosen
 * by the client's SNI when there are several), the priority cache, a
 * session-ticket key, and the client credentials for each [backend] that
 * speaks TLS (its ca_file or the system trust store).  Built on the main
 * thread at start and at each reload (so SIGHUP picks up new certificates),
 * shared read-only by the workers, reference counted: open sessions keep
 * the generation they started with.
 */
#pragma once

#include <glib.h>
#include <gnutls/gnutls.h>
#include "config/config.h"

typedef struct _GhTls GhTls;

/* Load everything `cfg` names.  Returns NULL after appending problems
 * ("FILE: [tls] certificate: ...") to `problems`.  A config without [tls]
 * and without TLS backends gives an empty GhTls (gh_tls_has_server FALSE). */
GhTls *gh_tls_new(const GhConfig *cfg, GPtrArray *problems);
GhTls *gh_tls_ref(GhTls *tls);
void gh_tls_unref(GhTls *tls);
gboolean gh_tls_has_server(const GhTls *tls);

/* A server session for a client connection on fd (non-blocking). */
gnutls_session_t gh_tls_server_session(GhTls *tls, int fd);
/* A client session towards backend `bc` (SNI set when `host` is a name).
 * Check the certificate with gh_tls_verify_peer once the handshake is done
 * (unless verify = no). */
gnutls_session_t
gh_tls_client_session(GhTls *tls, const GhBackendConfig *bc, const char *host, int fd);

/* After the handshake: is the peer's certificate trusted (chain to the
 * backend's CA) and issued for `host` (a DNS name, or an address matched
 * against IP SANs)?  FALSE with *error (transfer full) saying why. */
gboolean gh_tls_verify_peer(gnutls_session_t session, const char *host, char **error);

/* "TLS1.3/AES-256-GCM" for the log, or "no" for NULL.  (transfer full) */
char *gh_tls_describe(gnutls_session_t session);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhTls, gh_tls_unref)
