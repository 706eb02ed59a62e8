/*
 * backend-link.h: the one backend link every backend dialogue runs on.
 *
 * A link is one attempt to bring a backend server's session to the point
 * where it stands for the client: connect (the connector picks the server,
 * the next one on a failure another server may not have), TLS (implicit
 * from the first byte, or after the dialogue's STARTTLS; the certificate is
 * checked against the server's name unless verify = no), one timer
 * (connect_timeout, re-armed at every step), the error text for the log,
 * and the done callback.  A protocol's backend dialogue (smtp/smtp-backend.c,
 * imap/imap-backend.c) fills a GhBackendDialogue with its own steps only
 * (greeting, capabilities, XCLIENT/ID, the login) and drives them through
 * the functions below.
 *
 * A link may start before the client's credentials are checked
 * (params.login_later): it connects, reads the greeting and capabilities
 * and stops where the login would start (the dialogue calls
 * gh_backend_link_await_login there), "parked", until the session hands it
 * the user and password with gh_backend_link_login, or cancels it: the
 * server then gets the dialogue's goodbye, never a credential.  While
 * parked the timer is off, and a server that speaks or closes ends the
 * link as LOST.
 *
 * Invariants: everything runs on the session's worker context; the done
 * callback runs there exactly once, from the loop, unless the link is
 * cancelled first; the timer is stopped before it runs; the link's copy of
 * the client's password is wiped as soon as the dialogue says it has been
 * sent (gh_backend_link_forget_password), or when the link is freed.
 */
#pragma once

#include <glib.h>
#include "config/config.h"
#include "net/conn.h"
#include "net/tls.h"
#include "secret.h"
#include "session/stats.h"

typedef struct _GhBackendLink GhBackendLink;

/* What every backend dialogue is given about the session (the link keeps
 * its own copies). */
typedef struct {
	const GhBackendConfig *backend;
	const char *route;        /* from the auth result, replaces the servers; or NULL */
	const char *hash_key;     /* picks the first server: the user, or the client's address */
	const char *user;         /* the canonical user; NULL when not logged in (SMTP MX role) */
	const GhSecret *password; /* the client's password (login = passthrough), or NULL */
	const char *client_addr;  /* textual */
	guint16 client_port;
	const char *local_addr; /* the address the client connected to */
	guint16 local_port;
	const char *hostname;   /* our own name */
	const char *session_id; /* for log lines */
	GhTls *tls;             /* client credentials for backends with tls != none */
	GhStats *stats;         /* the worker's counters (a failed server counts), or NULL */
	/* user and password come later (gh_backend_link_login): the dialogue
	 * parks where the login starts; FALSE once they have come */
	gboolean login_later;
} GhBackendParams;

typedef enum {
	GH_BACKEND_OK,      /* the backend session stands for the client */
	GH_BACKEND_REFUSED, /* the backend said no to this user's login */
	/* The server answered the login with "not now" (POP3 -ERR [IN-USE],
	 * [LOGIN-DELAY], [SYS/TEMP]; IMAP NO [LIMIT], [UNAVAILABLE]): it
	 * works, this user's login is for later.  Not a failure of the
	 * server; reply is its answer, for the client, or NULL. */
	GH_BACKEND_DEFERRED,
	GH_BACKEND_FAILED, /* unreachable, timed out, or not usable */
	/* login_later only: the parked server closed or spoke while the
	 * login was checked; the backend as such may be fine */
	GH_BACKEND_LOST,
} GhBackendResult;

/* conn: on OK the backend connection, ready for the relay (transfer full),
 * else NULL.  reply: on OK and DEFERRED what the client must see of the
 * backend's answer to the login (IMAP forwards its tagged line), or NULL.
 * server: the server used or last tried ("host:port"), or NULL when none
 * was.  error: why, for the log, unless OK. */
typedef void (*GhBackendDone)(GhBackendResult result,
			      GhConn *conn,
			      GBytes *reply,
			      const char *server,
			      const char *error,
			      gpointer user_data);

typedef enum {
	GH_BACKEND_STEP_MORE, /* one unit (reply, line) handled: call again if bytes remain */
	GH_BACKEND_STEP_WAIT, /* no whole unit in the input buffer yet */
	GH_BACKEND_STEP_STOP, /* the dialogue failed or finished the attempt: stop reading */
} GhBackendStep;

/* A protocol's backend steps.  `d` is the dialogue's own state, given at
 * start and freed by `free` when the link goes. */
typedef struct {
	/* A server is connected (and TLS is up when tls = implicit): start
	 * (usually: wait for the greeting with gh_backend_link_expect). */
	void (*connected)(GhBackendLink *l, gpointer d);
	/* Handle at most one unit from gh_backend_link_conn(l)->in. */
	GhBackendStep (*input)(GhBackendLink *l, gpointer d);
	/* TLS after the dialogue's STARTTLS is up: go on inside it. */
	void (*tls_ready)(GhBackendLink *l, gpointer d);
	/* The credentials have come to a link the dialogue had parked (see
	 * gh_backend_link_await_login): send the login.  May be NULL for a
	 * dialogue that never parks. */
	void (*login)(GhBackendLink *l, gpointer d);
	/* A connection kept from an earlier session (gh_backend_link_resume)
	 * is the link's: bring it back to where the login starts (SMTP: it is
	 * there already, and parks at once)
	 * and park there.  May be NULL for a dialogue whose connections are
	 * never kept. */
	void (*resumed)(GhBackendLink *l, gpointer d);
	/* What a parked connection is told when the login is called off
	 * ("QUIT\r\n"), or NULL: it is just closed. */
	const char *bye;
	/* This server failed; forget what was learnt of it before the next. */
	void (*reset)(gpointer d);
	void (*free)(gpointer d);
} GhBackendDialogue;

GhBackendLink *gh_backend_link_start(const GhBackendParams *params,
				     const GhBackendDialogue *dialogue,
				     gpointer d,
				     GMainContext *context,
				     GhBackendDone done,
				     gpointer user_data);
/* A link on a connection kept from an earlier session (`[backend]
 * reuse_connections`): `conn` (transfer full, idle, nothing pending either
 * way) is connected to `server`, which must be the first server for
 * p->hash_key (no route); p->login_later must be set.  From the loop, the
 * dialogue's `resumed` step takes the connection to where the login starts
 * and parks it, as a warm link.  There is no fail-over: a kept connection
 * that does not come back (it closed, or answered otherwise) ends the link
 * LOST, is not counted as a backend failure, and is logged at debug level.
 * NULL (and `conn` freed) when `server` is not that first server. */
GhBackendLink *gh_backend_link_resume(const GhBackendParams *p,
				      const GhBackendDialogue *dialogue,
				      gpointer d,
				      GMainContext *context,
				      GhConn *conn,
				      const char *server,
				      GhBackendDone done,
				      gpointer user_data);
/* The done callback will not run; everything is freed and wiped; a parked
 * connection gets the dialogue's goodbye first.  NULL allowed. */
void gh_backend_link_cancel(GhBackendLink *l);
/* A link started with login_later: here are the canonical user and the
 * password (copied; NULL when login = master needs none), and the done
 * callback that takes over.  A parked dialogue goes on from the loop. */
void gh_backend_link_login(GhBackendLink *l,
			   const char *user,
			   const GhSecret *password,
			   GhBackendDone done,
			   gpointer user_data);

/* Is the link parked, waiting for gh_backend_link_login? */
gboolean gh_backend_link_parked(const GhBackendLink *l);
/* A parked link made before there was a client (the warm pool,
 * backend-pool.h) goes to a session: what names the client in `p` (its
 * address and port, the local ones, the session id, the hash key, the
 * counters) replaces the link's, and `done` takes over.  The rest of `p`
 * (backend, route, TLS credentials, our name) must be what the link was
 * started with; the user and password come with gh_backend_link_login.
 * The dialogue's own state is the protocol's to update (see
 * gh_backend_link_dialogue). */
void gh_backend_link_adopt(GhBackendLink *l,
			   const GhBackendParams *p,
			   GhBackendDone done,
			   gpointer user_data);
/* The dialogue state `d` the link was started with. */
gpointer gh_backend_link_dialogue(GhBackendLink *l);

/* ---- for dialogues ---- */

GhConn *gh_backend_link_conn(GhBackendLink *l);
/* The link's copies of the parameters (password: see below). */
const GhBackendParams *gh_backend_link_params(GhBackendLink *l);
/* The server being tried, "host:port". */
const char *gh_backend_link_server(GhBackendLink *l);
/* The dialogue is where the login starts.  TRUE: the credentials are
 * here, send it.  FALSE: the link is parked (login_later); the dialogue's
 * `login` step runs once they come, and this step returns WAIT. */
gboolean gh_backend_link_await_login(GhBackendLink *l);
/* The client's password while the link still has it, else NULL. */
const GhSecret *gh_backend_link_password(GhBackendLink *l);
/* The password has been sent: wipe the link's copy. */
void gh_backend_link_forget_password(GhBackendLink *l);
/* Queue `text` for the server, re-arm the timer, wait for its answer.
 * FALSE when this failed the server (the dialogue returns STEP_STOP). */
gboolean gh_backend_link_send(GhBackendLink *l, const char *text, gsize len);
/* Re-arm the timer and wait for the server to speak (the greeting). */
void gh_backend_link_expect(GhBackendLink *l);
/* The server said yes to STARTTLS: start TLS; tls_ready runs once it is up. */
void gh_backend_link_start_tls(GhBackendLink *l);
/* This server did not work out: log it, and try the next one when `retry`
 * (a failure another server may not have), else finish FAILED. */
void gh_backend_link_fail(GhBackendLink *l, gboolean retry, const char *format, ...)
    G_GNUC_PRINTF(3, 4);
/* The attempt is over: OK or DEFERRED (reply may be NULL), or REFUSED;
 * unless OK, error says why (the link puts "host:port: " in front, as for
 * a failure). */
void
gh_backend_link_finish(GhBackendLink *l, GhBackendResult result, GBytes *reply, const char *error);
