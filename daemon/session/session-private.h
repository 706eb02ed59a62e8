/*
 * session-private.h: the parts of a session that session.c (life cycle and
 * what every front end does alike) and the protocol front ends
 * (smtp-session.c, imap-session.c) share.  Nothing outside daemon/ includes
 * this.  Everything here runs on the session's worker thread.
 */
#pragma once

#include <glib.h>
#include <netinet/in.h>
#include "net/conn.h"
#include "gh-auth.h"
#include "secret.h"
#include "core/server.h"
#include "net/tls.h"

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

/* What a front end does at the session's turning points. */
typedef struct {
	/* The daemon is stopping: say goodbye if still in login state (and
	 * close), or keep a proxied session running until it ends or the
	 * shutdown timeout aborts it. */
	void (*shutdown)(GhSession *s);
	/* Free the protocol state (the session is going away). */
	void (*free)(GhSession *s);
	/* TRUE while the front end reads client input (login dialogue). */
	gboolean (*reading)(GhSession *s);
	/* Serve what is in the client's input buffer; ends with
	 * gh_session_update_watch. */
	void (*process)(GhSession *s);
} GhSessionOps;

struct _GhSession {
	char id[16];
	GhWorker *worker;
	GhListener *listener;
	GhConfig *config;
	const GhListenerConfig *lc;
	GhConn *conn; /* the client; NULL once handed to a relay */
	char remote[INET6_ADDRSTRLEN];
	guint16 remote_port;
	char local[INET6_ADDRSTRLEN];
	guint16 local_port;
	gboolean trusted;           /* the client's address is in trusted_networks */
	GhTls *tls;                 /* the credentials in force when the client came */
	GhAuthSet *auth_set;        /* the auth set of the same generation, until the
				     * login is over (NULL once the relay runs) */
	gboolean secure;            /* the client connection is encrypted */
	char *tls_desc;             /* "TLS1.3/AES-256-GCM" once secure, for the log */
	GFunc tls_done;             /* what to do once the handshake is done */
	gboolean tls_start_pending; /* the STARTTLS reply is still being written */
	gboolean closing;           /* the last words are queued; close once they are out */
	gboolean lingering;         /* they are out; dropping input until EOF or the deadline */
	gint64 started_us;
	GSource *timer; /* idle timeout or closing deadline */
	GSourceFunc timer_func;
	const GhSessionOps *ops;
	gpointer proto; /* the front end's state */
};

/* Close the client connection and free the session (and its front end's
 * state through ops->free). */
void gh_session_free(GhSession *s);

/* Watch the client connection: on activity, flush, read while the front end
 * reads, and call ops->process (or just update the watch). */
void gh_session_watch_client(GhSession *s);
/* Decide what to wait for next, and end the session when it is over (the
 * client is gone, or `closing` and everything is sent).  Returns FALSE when
 * the session was freed. */
gboolean gh_session_update_watch(GhSession *s);
/* Queue `text` and CRLF for the client. */
void gh_session_say(GhSession *s, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Send what is queued, then close (at the latest after
 * GH_SESSION_CLOSE_TIMEOUT). */
void gh_session_close_after_flush(GhSession *s);
/* The one timer of a session: `func(s)` runs once after `ms` (replacing the
 * previous timer); 0 stops it. */
void gh_session_set_timer(GhSession *s, guint ms, GSourceFunc func);
/* plaintext_auth of the listener, for this client now */
gboolean gh_session_plaintext_allowed(GhSession *s);
/* TLS can be started on this listener now (tls = starttls, not yet secure). */
gboolean gh_session_starttls_offered(GhSession *s);
/* Start the server side of TLS: drop whatever plaintext the client sent
 * after the command that led here (RFC 3207 4.2's command-injection rule),
 * send what is queued in plaintext, then handshake (bounded by
 * min(idle_timeout, 60) s).  When done, done(s, NULL) runs; a failed
 * handshake is logged and ends the session. */
void gh_session_start_tls(GhSession *s, GFunc done);

/* A login in progress, as both front ends keep it. */
typedef struct {
	const char *mech;
	char *tag;  /* IMAP: the tag the login answers to */
	char *user; /* as the client sent it */
	GhSecret *password;
	GhAuthPending *pending;
	GhAuthSet *auth_set;
	char *canonical;
	char *route;
	char *module;
	char *instance;
	gboolean cached;
	gint64 auth_us;
	char *backend_server; /* survives gh_login_clear: the session-end line names it */
} GhLogin;

/* Forget the login (wiping the password; cancelling a verification). */
void gh_login_clear(GhLogin *l);
/* Ask the auth chain of the listener about l->user and l->password; `done`
 * runs on the worker.  Call gh_login_take_outcome first thing in it. */
void gh_login_verify(GhSession *s, GhLogin *l, const char *service, GhAuthDone done, gpointer data);
void gh_login_take_outcome(GhLogin *l, const GhAuthOutcome *o);
/* The one log line per login attempt. */
void gh_login_log(GhSession *s,
		  const GhLogin *l,
		  const char *protocol,
		  const char *verdict,
		  const char *reason,
		  gint64 elapsed_us);
/* The one log line per proxied session, when it ends. */
void gh_session_log_end(GhSession *s,
			const char *protocol,
			const GhLogin *l,
			const char *why,
			guint64 client_bytes,
			guint64 backend_bytes);
