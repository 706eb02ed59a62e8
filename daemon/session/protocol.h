/*
 * protocol.h: the protocol table, and the small API a protocol calls.
 *
 * The session core (session.c, login.c) owns the life cycle of every client
 * connection, whatever its protocol: accept, greeting, the input loop with
 * corking and limits, the idle timer, STARTTLS and implicit TLS, the SASL
 * steps (PLAIN and LOGIN, initial responses, cancel), counting errors and
 * failed logins, the verify call, the backend hand-off, the relay, the
 * session-end line and shutdown.  A protocol (daemon/smtp/, daemon/imap/)
 * fills a GhProtocol: how it words each turning point (`say`), how it reads
 * and answers one command (`command`), what it forgets after STARTTLS, and
 * its backend dialogue.  It holds no life-cycle code.
 *
 * Calls go one way: the core calls a protocol only through its table; a
 * protocol calls the core only through the functions below, and reads (never
 * writes) the GhSession fields marked "read".
 *
 * Invariants: all of it runs on the session's worker thread; the password
 * lives in s->login.password from its decoding until the backend link has
 * its own copy or the login failed, and is wiped then; the reply to every
 * command is queued before the next command is read (RFC 2920 and RFC 9051
 * keep replies in command order); nothing the client sends is logged except
 * through gh_log_escape, and never a credential.
 */
#pragma once

#include <glib.h>
#include <netinet/in.h>
#include "common/timer.h"
#include "gh-auth.h"
#include "net/conn.h"
#include "net/relay.h"
#include "secret.h"
#include "session/backend-link.h"
#include "session/session.h"

/* Client buffers: `in` holds a whole AUTH line (12288) plus what a client
 * pipelines behind it; `out` is what the relay may queue towards a slow
 * client before it stops reading the backend. */
#define GH_SESSION_IN_MAX (32 * 1024)
#define GH_SESSION_OUT_MAX (64 * 1024)
/* Replies queued beyond this wait until the client reads (a client that
 * pipelines thousands of commands and reads nothing stalls, not grows). */
#define GH_SESSION_OUT_SOFT (16 * 1024)
/* a corked reply batch must not reach the soft limit (conn.h) */
G_STATIC_ASSERT(GH_CONN_CORK_MAX < GH_SESSION_OUT_SOFT);
/* A client that does not read our last words is not waited for longer. */
#define GH_SESSION_CLOSE_TIMEOUT 10
/* After the last words: how long to drop what the client still sends. */
#define GH_SESSION_LINGER_MS 2000
/* A balancer sends its PROXY header at once; a connection that does not
 * within this is closed. */
#define GH_SESSION_PROXY_TIMEOUT 5

/* The turning points a protocol words; `arg` is given where noted. */
typedef enum {
	GH_SAY_GREETING,             /* the first words (after implicit TLS) */
	GH_SAY_TOO_MANY_CONNECTIONS, /* refused at accept: max_connections */
	GH_SAY_SHUTDOWN,             /* the daemon is stopping; the core closes */
	GH_SAY_KICKED,               /* gatehousectl kick; the core closes */
	GH_SAY_IDLE_TIMEOUT,         /* idle in login state; the core closes */
	GH_SAY_TOO_MANY_ERRORS,      /* the protocol's max_errors; the core closes */
	GH_SAY_SASL_CHALLENGE,       /* arg: the base64 challenge ("" for PLAIN) */
	GH_SAY_SASL_CANCELLED,       /* the client sent "*"; the core counts an error */
	GH_SAY_SASL_MALFORMED,       /* not base64, or not a PLAIN/LOGIN response; counted */
	/* A SASL response line over sasl_line_max: the core has dropped it and
	 * forgotten the login; the protocol answers and counts an error
	 * (gh_session_count_error) or closes (gh_session_close). */
	GH_SAY_SASL_LINE_TOO_LONG,
	GH_SAY_AUTH_FAILED, /* bad credentials (or refused by the backend) */
	/* The auth source or the backend is unavailable, or the backend put
	 * the login off (GH_BACKEND_DEFERRED): arg is then its answer, one
	 * line without the line end (IMAP: tagged with the client's tag), to
	 * be said as it is, or NULL (SMTP: always) for the protocol's own. */
	GH_SAY_AUTH_TEMPFAIL,
	GH_SAY_TOO_MANY_AUTH_FAILS, /* max_auth_failures reached; the core closes */
	GH_SAY_LOGGED_IN,           /* after the backend's own answer, if any, is queued */
	/* A backend joined without a login (SMTP's MX role) is unavailable: the
	 * command that asked for it is still first in the input buffer. */
	GH_SAY_BACKEND_UNAVAILABLE,
	/* The relay held the client's QUIT to keep the backend connection
	 * (relay_tap): the answer the backend would have given; the core
	 * closes. */
	GH_SAY_GOODBYE,
} GhSay;

typedef enum {
	GH_INPUT_NEED_MORE, /* no whole command in the input buffer yet */
	GH_INPUT_DONE,      /* one command read (consumed) and answered, or handed on */
} GhInput;

/* A protocol's words for what the core checks of STARTTLS (STLS) and AUTH
 * (AUTHENTICATE), in one order for every protocol: whole lines without the
 * tag, which the core puts in front ("TAG ") when the command had one. */
typedef struct {
	const char *starttls_syntax;        /* arguments given: counted as an error */
	const char *starttls_active;        /* TLS is up already: counted */
	const char *starttls_unavailable;   /* not offered here (gh_session_starttls_offered) */
	const char *starttls_go;            /* the go-ahead; the handshake follows */
	const char *auth_unsupported;       /* a mechanism other than PLAIN and LOGIN */
	gboolean auth_unsupported_counts;   /* ... is counted as an error (SMTP's 504) */
	const char *auth_plaintext_refused; /* plaintext_auth says no for this client */
} GhCommandWords;

struct _GhProtocol {
	const char *name; /* "smtp", "imap": log lines, the auth request's service */
	const GhCommandWords *words;
	guint max_errors;    /* protocol errors before GH_SAY_TOO_MANY_ERRORS */
	gsize sasl_line_max; /* longest SASL response line, line end included */
	/* Make and free the protocol's own state (s->proto). */
	gpointer (*new)(GhSession *s);
	void (*free)(gpointer proto);
	/* Queue the words for a turning point (gh_session_say). */
	void (*say)(GhSession *s, GhSay what, const char *arg);
	/* Read at most one command from s->conn->in, consume it, answer it
	 * (or start what it asks for through the API below). */
	GhInput (*command)(GhSession *s);
	/* TLS is up after STARTTLS: forget what the client said before
	 * (RFC 3207 4.2, RFC 9051 6.2.1).  May be NULL. */
	void (*tls_ready)(GhSession *s);
	/* Start the backend dialogue with the shared parameters and the
	 * protocol's own (SMTP's HELO name, IMAP's tag and ID fields). */
	GhBackendLink *(*backend_connect)(GhSession *s,
					  const GhBackendParams *params,
					  GhBackendDone done,
					  gpointer data);
	/* The warm pool (backend-pool.h): start a backend link before there
	 * is a client (params.login_later, no client in the parameters);
	 * and give a parked one to a session, telling the dialogue what it
	 * needs of it (IMAP: the client's tag and ID fields) before
	 * gh_backend_link_adopt.  Both NULL: no warm connections. */
	GhBackendLink *(*backend_warm)(const GhBackendParams *params,
				       GMainContext *context,
				       GhBackendDone done,
				       gpointer data);
	void (*backend_adopt)(GhSession *s, GhBackendLink *link);
	/* `reuse_connections` (backend-pool.h): follow the relay with a tap
	 * (gh_relay_set_tap) that holds the client's QUIT when the backend is
	 * at rest and gh_session_backend_keepable says yes; and make a kept
	 * connection a warm link again.  Both NULL: never kept. */
	void (*relay_tap)(GhSession *s, GhRelay *relay);
	/* Any other relayed session: follow the relay with a tap whose at_rest
	 * says when the client may hear a line of ours (a kick's goodbye).
	 * May be NULL: then a line end is enough. */
	void (*relay_watch)(GhSession *s, GhRelay *relay);
	GhBackendLink *(*backend_resume)(const GhBackendParams *params,
					 GMainContext *context,
					 GhConn *conn,
					 const char *server,
					 GhBackendDone done,
					 gpointer data);
	/* The login is over and the relay takes the connection: drop what only
	 * the login dialogue needed (idle proxied sessions are the bulk of our
	 * memory).  May be NULL. */
	void (*relay_started)(GhSession *s);
};

/* A login in progress. */
typedef struct {
	const char *mech; /* "PLAIN", "LOGIN", "LOGIN-CMD" (IMAP LOGIN) */
	char *tag;        /* IMAP: the tag the login answers to; else NULL */
	char *user;       /* as the client sent it */
	GhSecret *password;
	GhAuthPending *pending;
	/* the backend link started while `pending` runs (early_connect), parked
	 * before the login; it becomes s->backend if the verdict is yes and
	 * the user's servers are the ones it dialled, else it is cancelled */
	GhBackendLink *early;
	/* the early link found the backend down ("host:port: why" and the
	 * server): a yes gets that temporary failure without a second try */
	char *early_error;
	char *early_server;
	GhAuthSet *auth_set;
	char *canonical;
	char *route;
	char *module;
	char *instance;
	gboolean cached;
	gint64 auth_us;
	char *backend_server; /* survives a cleared login: the session-end line names it */
} GhLogin;

typedef enum {
	GH_PHASE_PROXY, /* reading the PROXY header (listener proxy_protocol = yes) */
	GH_PHASE_COMMAND,
	GH_PHASE_SASL_PLAIN,
	GH_PHASE_SASL_LOGIN_USER,
	GH_PHASE_SASL_LOGIN_PASS,
	GH_PHASE_TLS, /* STARTTLS or implicit TLS handshake */
	GH_PHASE_VERIFYING,
	GH_PHASE_BACKEND,
	GH_PHASE_RELAY,
} GhPhase;

struct _GhSession {
	/* read */
	char id[16];
	const GhProtocol *protocol;
	GhConfig *config;
	const GhListenerConfig *lc;
	GhConn *conn; /* the client; NULL once handed to the relay */
	/* remote and local are the client's and the address it connected to;
	 * behind a balancer (proxy_protocol = yes) the ones its PROXY header
	 * names, for everything: log lines, penalty, trusted, the backend */
	char remote[INET6_ADDRSTRLEN];
	guint16 remote_port;
	char local[INET6_ADDRSTRLEN];
	guint16 local_port;
	gboolean trusted; /* the client's address is in trusted_networks */
	gboolean secure;  /* the client connection is encrypted */
	gboolean closing; /* the last words are queued; close once they are out */
	GhPhase phase;
	GhLogin login;
	gpointer proto; /* the protocol's own state */

	/* the core's */
	const GhSessionHost *host;
	GList host_link;       /* gh_session_host_link: the host's list node, data = the session */
	GhTls *tls;            /* the credentials of the session's generation */
	GhAuthSet *auth_set;   /* its auth set, until the login is over */
	char *tls_desc;        /* "TLS1.3/AES-256-GCM" once secure, for the log */
	gboolean tls_implicit; /* the handshake is the listener's tls = implicit */
	gboolean tls_start_pending; /* the STARTTLS reply is still being written */
	gboolean lingering;  /* the last words are out; dropping input until EOF or deadline */
	gboolean discarding; /* dropping the rest of an over-long line */
	gboolean mx_join;    /* joining the backend without a login (SMTP MX role) */
	guint8 *proxy_buf;   /* the PROXY header read so far (PROXY phase only) */
	gsize proxy_have;
	guint errors;
	guint auth_failures;
	gint64 started_us;
	GhTimer timer; /* idle timeout, TLS handshake or closing deadline */
	GhBackendLink *backend;
	GhRelay *relay;
	/* reuse_connections: a logged-in session with no route, whose relay
	 * the protocol taps; `backend_served` is what its backend connection
	 * carried before */
	gboolean keep_backend;
	guint backend_served;
	/* the warm pool's refill after this login waits for the client's next
	 * command on its way to the backend, or the relay's end (login.c) */
	gboolean refill_due;
};

/* ---- the API a protocol calls ---- */

/* Queue a reply line (CRLF added). */
void gh_session_say(GhSession *s, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Send what is queued, then close (at the latest after GH_SESSION_CLOSE_TIMEOUT). */
void gh_session_close(GhSession *s);
/* One protocol error was answered; at max_errors the core says
 * GH_SAY_TOO_MANY_ERRORS and closes.  FALSE then. */
gboolean gh_session_count_error(GhSession *s);
/* Drop the rest of the line in front of the input buffer as it comes (an
 * over-long command line the protocol has answered). */
void gh_session_discard_line(GhSession *s);
/* For a protocol of command lines (SMTP, POP3): the line in front of the
 * input buffer, at most `max` bytes, or `max_auth` when it starts with
 * AUTH (its initial response).  NEED_MORE: none whole yet.  DONE with
 * *used > 0: the line is buf[0..*len) (its end not counted); the caller
 * consumes *used when done with it.  DONE with *used 0: it was too long;
 * it is gone (wiped; what is still to come of it is dropped as it comes),
 * answered with `too_long` and counted as an error. */
GhInput gh_session_command_line(
    GhSession *s, gsize max, gsize max_auth, const char *too_long, gsize *len, gsize *used);
/* plaintext_auth of the listener, for this client now: the one predicate
 * for the mechanisms advertised and the mechanisms accepted. */
gboolean gh_session_plaintext_allowed(GhSession *s);
/* The same, for a command that carries or starts a plaintext login (IMAP
 * LOGIN, POP3 USER; AUTH in gh_session_auth_command): when it says no,
 * the client is told the protocol's auth_plaintext_refused ("TAG " in
 * front when `tag`). */
gboolean gh_session_plaintext_accepted(GhSession *s, const char *tag);
/* STARTTLS can be offered now (tls = starttls, not yet secure, credentials loaded). */
gboolean gh_session_starttls_offered(GhSession *s);
/* STARTTLS (STLS), `has_args` when it came with any, `tag` the IMAP tag or
 * NULL: checked and answered with the protocol's words (GhCommandWords);
 * after the go-ahead, whatever the client pipelined behind it is dropped
 * (RFC 3207 4.2), the handshake runs, then tls_ready, and back to
 * commands.  A failed handshake ends the session. */
void gh_session_starttls_command(GhSession *s, const char *tag, gboolean has_args);
/* AUTH (AUTHENTICATE) with the mechanism `mech` (any case) and the initial
 * response `initial` or NULL, `tag` the IMAP tag or NULL: a mechanism other
 * than PLAIN and LOGIN, or plaintext_auth saying no, is answered with the
 * protocol's words; else the SASL exchange starts, and the core runs its
 * steps and the login. */
void gh_session_auth_command(
    GhSession *s, const char *tag, const char *mech, const char *initial, gsize initial_len);
/* A user name and password given in one command (IMAP LOGIN): verify them. */
void gh_session_login(
    GhSession *s, const char *tag, const char *user, const char *password, gsize password_len);
/* A login attempt refused before it reaches the auth chain (say, a user
 * name that cannot be passed on): logged with `reason`, answered as a
 * failed login, counted. */
void gh_session_login_refused(
    GhSession *s, const char *tag, const char *mech, const char *user, const char *reason);
/* Join the backend without a login (SMTP's MX role): the command in front of
 * the input buffer stays there for the backend. */
void gh_session_join_backend(GhSession *s);
/* Would the backend connection be kept if the relay held the client's
 * last command now (backend-pool.h, gh_backend_pool_can_keep)?  The
 * protocol has checked that the backend is at rest. */
gboolean gh_session_backend_keepable(GhSession *s);
