/*
 * config.h: gatehouse.conf (gatehouse.conf(5)) read into typed, validated
 * structs.
 *
 * gh_config_load() reads the whole file, checks every group and key it knows,
 * and either returns a complete GhConfig or NULL with every problem it found
 * ("FILE:LINE: [group] key: message"), never a half-read config.  The keys of
 * [auth NAME] groups other than `module` belong to the auth modules and are
 * checked by the auth core (auth/gh-auth.h), not here.
 *
 * A GhConfig is immutable once loaded and reference counted: a reload builds a
 * new one, and sessions keep the one they started with.
 */
#pragma once

#include <glib.h>
#include <gio/gio.h>

typedef enum { GH_PROTO_SMTP, GH_PROTO_IMAP, GH_PROTO_POP3 } GhProtocolKind;
typedef enum { GH_TLS_NONE, GH_TLS_STARTTLS, GH_TLS_IMPLICIT } GhTlsMode;
typedef enum { GH_PLAINTEXT_ALWAYS, GH_PLAINTEXT_TLS, GH_PLAINTEXT_TRUSTED } GhPlaintextAuth;
typedef enum {
	GH_LOGIN_PASSTHROUGH,
	GH_LOGIN_MASTER,
	GH_LOGIN_XCLIENT,
	GH_LOGIN_NONE,
} GhBackendLogin;
/* The PROXY protocol header a backend is sent first (HAProxy's spec). */
typedef enum { GH_PROXY_NONE, GH_PROXY_V1, GH_PROXY_V2 } GhProxyVersion;

const char *gh_protocol_to_string(GhProtocolKind p);
const char *gh_tls_mode_to_string(GhTlsMode m);
const char *gh_plaintext_auth_to_string(GhPlaintextAuth p);
const char *gh_backend_login_to_string(GhBackendLogin l);
const char *gh_proxy_version_to_string(GhProxyVersion v);

/* A network in CIDR notation: "127.0.0.0/8", "::1/128", or a bare address
 * (a host route). */
typedef struct {
	GSocketFamily family; /* G_SOCKET_FAMILY_IPV4 or _IPV6 */
	guint8 addr[16];      /* network byte order; first 4 bytes for IPv4 */
	guint prefix;         /* 0..32 or 0..128 */
} GhCidr;

gboolean gh_cidr_parse(const char *text, GhCidr *out);
/* TRUE when `addr` lies in `net`; an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 networks. */
gboolean gh_cidr_match(const GhCidr *net, GInetAddress *addr);
/* TRUE when addr matches any network of the array (of GhCidr). */
gboolean gh_cidr_list_match(const GArray *nets, GInetAddress *addr);
/* The same for an address in text ("192.0.2.1", "2001:db8::1"), without a
 * GInetAddress; FALSE for text that is no address. */
gboolean gh_cidr_list_match_text(const GArray *nets, const char *text);

/* "host:port": an IPv4 address, "[IPv6]", or a DNS name (backends only), and a
 * port 1..65535.  A listener address "*" or "0.0.0.0" or "[::]" is a wildcard. */
typedef struct {
	char *host; /* without brackets */
	guint16 port;
} GhHostPort;

/* Parse "host:port" (port required).  On failure returns FALSE and sets
 * *error_out to a short reason ("missing port", "bad port", ...), static. */
gboolean gh_host_port_parse(const char *text, GhHostPort *out, const char **error_out);
void gh_host_port_clear(GhHostPort *hp);

typedef struct {
	char *name; /* the NAME of [listener NAME]; also the systemd FileDescriptorName */
	GhProtocolKind protocol;
	GArray *listen; /* of GhHostPort; may be empty (sockets from systemd) */
	GhTlsMode tls;
	GhPlaintextAuth plaintext_auth;
	gboolean require_auth; /* SMTP only */
	char **auth;           /* NULL-terminated [auth NAME] names, in order, at least one */
	char *backend;         /* [backend NAME] name */
	guint idle_timeout; /* seconds before an idle client in login state is dropped; default 300
			       (SMTP) / 1800 (IMAP), RFC 5321 4.5.3.2.7, RFC 9051 5.4 */
	guint max_connections; /* 0 = no limit */
	guint
	    max_auth_failures; /* failed logins on one connection before it is closed; default 3 */
	gboolean proxy_protocol; /* every connection starts with a PROXY header (from
				    proxy_trusted_networks); default no */
} GhListenerConfig;

typedef struct {
	char *name;
	char *module; /* value of `module =` */
} GhAuthGroupConfig;

typedef struct {
	char *name;
	GhProtocolKind protocol;
	GArray *servers;       /* of GhHostPort, at least one */
	guint16 port;          /* for a route without a port; default: the first server's */
	gboolean follow_route; /* dial the user's route (default yes); no: always servers */
	/* connect while the credentials are checked (default yes); see login.c */
	gboolean early_connect;
	GhTlsMode tls;
	GhBackendLogin login;
	char *master_user;          /* login = master */
	char *master_password_file; /* login = master */
	gboolean forward_client;
	char *ca_file;                 /* may be NULL: system trust store */
	gboolean verify;               /* check the backend's certificate; default yes */
	guint connect_timeout;         /* seconds, default 10 */
	GhProxyVersion proxy_protocol; /* a PROXY header first; default none */
	/* parked connections each I/O thread keeps per server (session/backend-pool.h);
	 * default 0: none */
	guint warm_connections;
	guint warm_lifetime; /* seconds a parked connection is kept; default 60 */
	/* smtp, login = none: a session that ends with a QUIT at rest gives its
	 * connection back to the pool (smtp/smtp-track.h); default no */
	gboolean reuse_connections;
} GhBackendConfig;

typedef struct {
	char **certificates; /* NULL-terminated paths, paired with keys; NULL when no [tls] */
	char **keys;
	char *priorities; /* default "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1" */
} GhTlsConfig;

typedef struct {
	gint ref_count;
	char *path;
	GKeyFile *kf; /* the file as read; the auth core reads [auth NAME] groups from it */

	char *hostname;
	char *user;  /* NULL: stay as started */
	char *group; /* NULL: the user's primary group */
	char *module_dir;
	char *control_socket;
	GArray *trusted_networks;       /* of GhCidr */
	GArray *proxy_trusted_networks; /* of GhCidr: may send PROXY headers; default none */
	guint shutdown_timeout;         /* seconds, default 30 */
	guint workers;                  /* I/O threads, already resolved: 0 in the file = CPUs */
	guint failure_delay;            /* seconds, default 2 */
	guint auth_workers;             /* threads for blocking verification, default 8 */
	guint auth_queue_max;  /* requests waiting for a worker before TEMPFAIL, default 1024 */
	guint auth_cache_size; /* entries, default 10000; 0 = no cache */
	guint auth_cache_ttl;  /* seconds for OK verdicts, default 300 */
	guint auth_cache_negative_ttl; /* seconds for failed verdicts, default 60 */

	GhTlsConfig tls;
	GPtrArray *listeners; /* of GhListenerConfig*, in file order */
	GPtrArray *auths;     /* of GhAuthGroupConfig*, in file order */
	GPtrArray *backends;  /* of GhBackendConfig*, in file order */

	/* [metrics] listen: where the Prometheus endpoint listens (an IP
	 * address or "*", and a port); NULL: no endpoint */
	GhHostPort *metrics_listen;
} GhConfig;

/* Read and validate `path`.  Returns a new config (transfer full), or NULL
 * after appending every problem found to `problems` (a GPtrArray of
 * g_free'd strings, "FILE:LINE: [group] key: message"). */
GhConfig *gh_config_load(const char *path, GPtrArray *problems);
GhConfig *gh_config_ref(GhConfig *cfg);
void gh_config_unref(GhConfig *cfg);

const GhListenerConfig *gh_config_listener(const GhConfig *cfg, const char *name);
const GhBackendConfig *gh_config_backend(const GhConfig *cfg, const char *name);
const GhAuthGroupConfig *gh_config_auth(const GhConfig *cfg, const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhConfig, gh_config_unref)
