/*
 * backend-link.c: the backend link: connect, TLS, timer, fail-over and the
 * done callback for every backend dialogue (see backend-link.h).
 *
 * The link is entered from the loop only: the connector's callback, the
 * connection's callback and the timer.  Each entry counts itself in
 * `depth`; a dialogue may end the attempt (finish, a fail without a next
 * server) or the session may cancel while the link is on the stack, so the
 * end is only recorded there (`over`), and the link lets go of everything,
 * runs the done callback and frees itself when the outermost entry
 * returns.  `attempt` counts the connections: the read loop stops as soon
 * as a fail-over has freed the connection it was reading.
 *
 * Invariants: at most one connection and one timer at a time; the timer
 * runs while the link waits for the server (connect, TLS, a reply) and is
 * stopped before any end; after `over` no dialogue step runs again and no
 * byte is read; the done callback runs at most once and never after
 * cancel; every error handed on reads "host:port: why"; while `parked`
 * no dialogue step runs and the timer is off; `resume` is pending only
 * while parked with the credentials given, or before a kept link's first
 * step (gh_backend_link_resume).
 */
#include "gh-build.h"

#include "session/backend-link.h"
#include "common/timer.h"
#include "config/log.h"
#include "net/connector.h"
#include "net/proxy-header.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define GH_BACKEND_IN_MAX (64 * 1024)
#define GH_BACKEND_OUT_MAX (64 * 1024)

struct _GhBackendLink {
	GMainContext *context;
	GhBackendDone done;
	gpointer user_data;
	GhBackendDialogue dialogue;
	gpointer d;

	GhBackendParams params; /* its strings point at the copies below */
	char *route;
	char *hash_key;
	char *user;
	GhSecret *password;
	char *client_addr;
	char *local_addr;
	char *hostname;
	char *session_id;
	GhTls *tls;

	GhConnector *connector;
	GhConn *conn;
	GhTimer timer;
	guint attempt;   /* one more at each connection given up */
	gboolean parked; /* login_later: the dialogue waits for the credentials */
	gboolean kept;   /* on a connection kept from an earlier session: no fail-over */
	GhTimer resume;  /* set soon: the credentials came to a parked link, or a kept
			    link's first step */

	guint depth;        /* link entries (and the done callback) on the stack */
	gboolean over;      /* the attempt is over: only freeing is left */
	gboolean cancelled; /* by the owner: no done callback */
	GhBackendResult result;
	GhConn *result_conn; /* on OK, handed over */
	GBytes *reply;
	char *error; /* "host:port: why" of the last failure, or the refusal */
};

static void on_connected(int fd, const char *server, const char *error, gpointer data);

/* Everything but the struct itself; the dialogue's state goes first (it
 * may still point into what the link owns). */
static void
release(GhBackendLink *l)
{
	if (l->dialogue.free != NULL && l->d != NULL)
		l->dialogue.free(l->d);
	l->d = NULL;
	gh_timer_stop(&l->timer);
	gh_timer_stop(&l->resume);
	g_clear_pointer(&l->connector, gh_connector_free);
	g_clear_pointer(&l->conn, gh_conn_free);
	g_clear_pointer(&l->result_conn, gh_conn_free);
	g_clear_pointer(&l->reply, g_bytes_unref);
	g_clear_pointer(&l->tls, gh_tls_unref);
	g_clear_pointer(&l->password, gh_secret_free);
	l->params.password = NULL;
	g_clear_pointer(&l->route, g_free);
	g_clear_pointer(&l->hash_key, g_free);
	g_clear_pointer(&l->user, g_free);
	g_clear_pointer(&l->client_addr, g_free);
	g_clear_pointer(&l->local_addr, g_free);
	g_clear_pointer(&l->hostname, g_free);
	g_clear_pointer(&l->session_id, g_free);
	g_clear_pointer(&l->error, g_free);
}

/* The outermost entry is returning: end the link if it is over. */
static void
settle(GhBackendLink *l)
{
	GhBackendResult result = l->result;
	GhConn *conn;
	g_autoptr(GBytes) reply = NULL;
	g_autofree char *server = NULL;
	g_autofree char *error = NULL;

	if (l->cancelled) {
		release(l);
		g_free(l);
		return;
	}
	if (!l->over)
		return;
	conn = g_steal_pointer(&l->result_conn);
	reply = g_steal_pointer(&l->reply);
	if (l->connector != NULL && gh_connector_server(l->connector) != NULL)
		server = g_strdup(gh_connector_server(l->connector));
	if (result != GH_BACKEND_OK)
		error = g_steal_pointer(&l->error);
	release(l);
	/* a cancel from inside the callback finds the link on the stack */
	l->depth++;
	l->done(result, conn, reply, server, error, l->user_data);
	g_free(l);
}

static void
enter(GhBackendLink *l)
{
	l->depth++;
}

static void
leave(GhBackendLink *l)
{
	if (--l->depth == 0)
		settle(l);
}

/* Is the connection of `attempt` still the one to talk to? */
static gboolean
current(GhBackendLink *l, guint attempt)
{
	return !l->over && !l->cancelled && l->attempt == attempt && l->conn != NULL;
}

static void
end(GhBackendLink *l, GhBackendResult result)
{
	l->over = TRUE;
	l->result = result;
	gh_timer_stop(&l->timer);
	if (l->depth == 0)
		settle(l);
}

static void
on_timeout(gpointer data)
{
	GhBackendLink *l = data;
	enter(l);
	gh_backend_link_fail(l, TRUE, "no reply within %u s", l->params.backend->connect_timeout);
	leave(l);
}

static void
arm_timer(GhBackendLink *l)
{
	gh_timer_start(&l->timer, l->context, MAX(l->params.backend->connect_timeout, 1) * 1000,
		       on_timeout, l);
}

static void
want_reply(GhBackendLink *l)
{
	gh_conn_want(l->conn, gh_conn_pending(l->conn) > 0 ? G_IO_IN | G_IO_OUT : G_IO_IN);
}

void
gh_backend_link_fail(GhBackendLink *l, gboolean retry, const char *format, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;

	if (l->over || l->cancelled)
		return;
	va_start(ap, format);
	msg = g_strdup_vprintf(format, ap);
	va_end(ap);
	g_free(l->error);
	l->error = g_strdup_printf("%s: %s", gh_connector_server(l->connector), msg);
	if (l->kept) {
		/* a kept connection that did not come back: the server may be
		 * fine, the next login connects afresh */
		gh_debug("session %s: kept backend connection %s", l->session_id, l->error);
		gh_timer_stop(&l->timer);
		g_clear_pointer(&l->conn, gh_conn_free);
		l->parked = FALSE;
		end(l, GH_BACKEND_LOST);
		return;
	}
	g_message("session %s: backend %s", l->session_id, l->error);
	if (l->params.stats != NULL)
		gh_stats_add(l->params.stats, GH_STAT_BACKEND_FAILURES, 1, l->params.backend->name,
			     gh_connector_server(l->connector));
	gh_timer_stop(&l->timer);
	g_clear_pointer(&l->conn, gh_conn_free);
	l->attempt++;
	l->parked = FALSE;
	if (l->dialogue.reset != NULL)
		l->dialogue.reset(l->d);
	if (!retry || !gh_connector_next(l->connector, on_connected, l))
		end(l, GH_BACKEND_FAILED);
}

/* A parked server went away (an idle timeout of its own, a restart) or said
 * something unasked: the link ends LOST, and the session connects afresh
 * if the verdict is yes. */
static void
lost(GhBackendLink *l)
{
	g_free(l->error);
	l->error = g_strdup_printf("%s: %s while the login was being checked",
				   gh_connector_server(l->connector),
				   l->conn->in->len > 0 ? "spoke" : "closed the connection");
	gh_debug("session %s: backend %s", l->session_id, l->error);
	g_clear_pointer(&l->conn, gh_conn_free);
	l->parked = FALSE;
	end(l, GH_BACKEND_LOST);
}

void
gh_backend_link_finish(GhBackendLink *l, GhBackendResult result, GBytes *reply, const char *error)
{
	if (l->over || l->cancelled)
		return;
	if (result == GH_BACKEND_OK) {
		/* the connection goes to the owner as it is, early bytes and all */
		l->result_conn = g_steal_pointer(&l->conn);
		gh_conn_set_callback(l->result_conn, NULL, NULL);
		gh_conn_want(l->result_conn, 0);
	} else {
		g_free(l->error);
		l->error = g_strdup_printf("%s: %s", gh_connector_server(l->connector),
					   error != NULL ? error : "failed");
		g_clear_pointer(&l->conn, gh_conn_free);
	}
	l->reply = reply != NULL ? g_bytes_ref(reply) : NULL;
	end(l, result);
}

/* Drive the TLS handshake; once it is up, the dialogue goes on: from the
 * start (implicit TLS) or inside TLS (after its STARTTLS). */
static void
handshake(GhBackendLink *l)
{
	g_autofree char *why = NULL;
	int rc = gh_backend_tls_handshake(l->connector, l->conn, l->params.backend, &why);
	if (rc < 0) {
		/* another server may have the right certificate */
		gh_backend_link_fail(l, TRUE, "%s", why);
		return;
	}
	if (rc == 0)
		return;
	if (l->params.backend->tls == GH_TLS_IMPLICIT)
		l->dialogue.connected(l, l->d);
	else
		l->dialogue.tls_ready(l, l->d);
}

void
gh_backend_link_start_tls(GhBackendLink *l)
{
	g_autofree char *why = NULL;
	if (!current(l, l->attempt))
		return;
	if (!gh_backend_tls_start(l->connector, l->conn, l->tls, l->params.backend, &why)) {
		gh_backend_link_fail(l, FALSE, "%s", why);
		return;
	}
	arm_timer(l);
	handshake(l);
}

gboolean
gh_backend_link_send(GhBackendLink *l, const char *text, gsize len)
{
	if (!current(l, l->attempt))
		return FALSE;
	if (!gh_conn_queue(l->conn, text, len)) {
		gh_backend_link_fail(l, FALSE, "login too long for the output buffer");
		return FALSE;
	}
	if (l->conn->error != 0) {
		gh_backend_link_fail(l, TRUE, "write failed: %s", g_strerror(l->conn->error));
		return FALSE;
	}
	arm_timer(l);
	want_reply(l);
	return TRUE;
}

void
gh_backend_link_expect(GhBackendLink *l)
{
	if (!current(l, l->attempt))
		return;
	arm_timer(l);
	want_reply(l);
}

static void
on_conn(GhConn *conn, GIOCondition cond, gpointer data)
{
	GhBackendLink *l = data;
	guint attempt = l->attempt;
	GhBackendStep step = GH_BACKEND_STEP_MORE;
	(void)cond;

	enter(l);
	if (conn->tls_handshaking) {
		handshake(l);
		goto out;
	}
	if (gh_conn_pending(conn) > 0)
		(void)gh_conn_flush(conn);
	(void)gh_conn_fill(conn);
	while (step == GH_BACKEND_STEP_MORE && conn->in->len > 0 && !l->parked) {
		step = l->dialogue.input(l, l->d);
		/* a step may have ended the attempt or failed over to another
		 * server (conn freed): look no further at this connection */
		if (!current(l, attempt))
			goto out;
	}
	if (step == GH_BACKEND_STEP_STOP || conn->tls_handshaking)
		goto out; /* the handshake watches what it waits for */
	if (l->parked && (conn->in->len > 0 || conn->error != 0 || conn->eof))
		lost(l);
	else if (conn->error != 0)
		gh_backend_link_fail(l, TRUE, "%s", g_strerror(conn->error));
	else if (conn->eof)
		gh_backend_link_fail(l, TRUE, "closed the connection");
	else
		want_reply(l);
out:
	leave(l);
}

/* proxy_protocol = v1|v2: the header with the client's address and the one
 * it connected to goes first, before TLS and before the greeting is read.
 * Sent straight to the socket: a fresh connection's send buffer takes a few
 * hundred bytes at once, and nothing may pass through TLS before it. */
static gboolean
send_proxy_header(GhBackendLink *l)
{
	const GhBackendParams *p = &l->params;
	g_autoptr(GByteArray) h = NULL;
	ssize_t n;

	if (p->backend->proxy_protocol == GH_PROXY_NONE)
		return TRUE;
	h = gh_proxy_header_build(p->backend->proxy_protocol == GH_PROXY_V2 ? 2 : 1, p->client_addr,
				  p->client_port, p->local_addr, p->local_port);
	do
		n = send(l->conn->fd, h->data, h->len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)h->len)
		return TRUE;
	if (n >= 0)
		errno = EAGAIN;
	return FALSE;
}

static void
on_connected(int fd, const char *server, const char *error, gpointer data)
{
	GhBackendLink *l = data;
	(void)server;

	enter(l);
	if (fd < 0) {
		gh_backend_link_fail(l, TRUE, "%s", error);
	} else {
		l->conn = gh_conn_new(fd, l->context, GH_BACKEND_IN_MAX, GH_BACKEND_OUT_MAX);
		gh_conn_set_callback(l->conn, on_conn, l);
		if (!send_proxy_header(l))
			gh_backend_link_fail(l, TRUE, "could not send the PROXY header: %s",
					     g_strerror(errno));
		else if (l->params.backend->tls == GH_TLS_IMPLICIT)
			gh_backend_link_start_tls(l);
		else
			l->dialogue.connected(l, l->d);
	}
	leave(l);
}

/* A server list that was empty after all (the configuration allows none):
 * failed, from the loop like any other end. */
static void
on_no_server(gpointer data)
{
	GhBackendLink *l = data;
	enter(l);
	g_message("session %s: backend: no server to try", l->session_id);
	l->error = g_strdup("no server to try");
	end(l, GH_BACKEND_FAILED);
	leave(l);
}

/* A link with its copies of `p` and its connector, not yet connecting. */
static GhBackendLink *
link_new(const GhBackendParams *p,
	 const GhBackendDialogue *dialogue,
	 gpointer d,
	 GMainContext *context,
	 GhBackendDone done,
	 gpointer user_data)
{
	GhBackendLink *l = g_new0(GhBackendLink, 1);
	l->context = context;
	l->done = done;
	l->user_data = user_data;
	l->dialogue = *dialogue;
	l->d = d;

	l->route = g_strdup(p->route);
	l->hash_key = g_strdup(p->hash_key);
	l->user = g_strdup(p->user);
	l->password = gh_secret_copy(p->password);
	l->client_addr = g_strdup(p->client_addr);
	l->local_addr = g_strdup(p->local_addr);
	l->hostname = g_strdup(p->hostname);
	l->session_id = g_strdup(p->session_id);
	l->tls = p->tls != NULL ? gh_tls_ref(p->tls) : NULL;
	l->params = (GhBackendParams){
	    .backend = p->backend,
	    .route = l->route,
	    .hash_key = l->hash_key,
	    .user = l->user,
	    .password = l->password,
	    .client_addr = l->client_addr,
	    .client_port = p->client_port,
	    .local_addr = l->local_addr,
	    .local_port = p->local_port,
	    .hostname = l->hostname,
	    .session_id = l->session_id,
	    .tls = l->tls,
	    .stats = p->stats,
	    .login_later = p->login_later,
	};

	l->connector = gh_connector_new(p->backend, l->route, l->hash_key, context);
	return l;
}

GhBackendLink *
gh_backend_link_start(const GhBackendParams *p,
		      const GhBackendDialogue *dialogue,
		      gpointer d,
		      GMainContext *context,
		      GhBackendDone done,
		      gpointer user_data)
{
	GhBackendLink *l = link_new(p, dialogue, d, context, done, user_data);
	if (!gh_connector_next(l->connector, on_connected, l))
		gh_timer_start(&l->timer, context, 1, on_no_server, l);
	return l;
}

static void
on_kept(gpointer data)
{
	GhBackendLink *l = data;

	enter(l);
	if (current(l, l->attempt))
		l->dialogue.resumed(l, l->d);
	leave(l);
}

GhBackendLink *
gh_backend_link_resume(const GhBackendParams *p,
		       const GhBackendDialogue *dialogue,
		       gpointer d,
		       GMainContext *context,
		       GhConn *conn,
		       const char *server,
		       GhBackendDone done,
		       gpointer user_data)
{
	GhBackendLink *l;

	g_return_val_if_fail(p->login_later && p->route == NULL && dialogue->resumed != NULL, NULL);
	l = link_new(p, dialogue, d, context, done, user_data);
	if (!gh_connector_assume(l->connector, server)) {
		gh_conn_free(conn);
		release(l);
		g_free(l);
		return NULL;
	}
	l->kept = TRUE;
	l->conn = conn;
	gh_conn_set_callback(l->conn, on_conn, l);
	/* from the loop, as every step: the done callback never runs inside
	 * this call */
	gh_timer_soon(&l->resume, l->context, on_kept, l);
	return l;
}

/* A parked server is told goodbye (best effort, plaintext only: it is
 * waiting for a command, and a full send buffer is not waited for). */
static void
say_bye(GhBackendLink *l)
{
	const char *bye = l->dialogue.bye;
	ssize_t n;

	if (!l->parked || l->conn == NULL || l->conn->tls != NULL || bye == NULL)
		return;
	do
		n = send(l->conn->fd, bye, strlen(bye), MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
}

void
gh_backend_link_cancel(GhBackendLink *l)
{
	if (l == NULL)
		return;
	say_bye(l);
	l->parked = FALSE;
	if (l->depth > 0) {
		/* on the stack (a step, the done callback): the outermost
		 * entry frees it on its way out */
		l->cancelled = TRUE;
		gh_timer_stop(&l->timer);
		return;
	}
	release(l);
	g_free(l);
}

static void
on_resume(gpointer data)
{
	GhBackendLink *l = data;

	enter(l);
	l->parked = FALSE;
	if (current(l, l->attempt))
		l->dialogue.login(l, l->d);
	leave(l);
}

void
gh_backend_link_login(GhBackendLink *l,
		      const char *user,
		      const GhSecret *password,
		      GhBackendDone done,
		      gpointer user_data)
{
	g_return_if_fail(l->params.login_later && !l->over);

	l->user = g_strdup(user);
	l->params.user = l->user;
	l->password = gh_secret_copy(password);
	l->params.password = l->password;
	l->params.login_later = FALSE;
	l->done = done;
	l->user_data = user_data;
	if (l->parked) {
		/* from the loop, as every step: the done callback never runs
		 * inside this call */
		gh_timer_soon(&l->resume, l->context, on_resume, l);
	}
}

gboolean
gh_backend_link_parked(const GhBackendLink *l)
{
	return l->parked && !l->over && !l->cancelled && !gh_timer_running(&l->resume);
}

void
gh_backend_link_adopt(GhBackendLink *l,
		      const GhBackendParams *p,
		      GhBackendDone done,
		      gpointer user_data)
{
	g_return_if_fail(gh_backend_link_parked(l) && l->params.login_later);
	g_return_if_fail(p->backend == l->params.backend);

	g_free(l->hash_key);
	l->hash_key = g_strdup(p->hash_key);
	g_free(l->client_addr);
	l->client_addr = g_strdup(p->client_addr);
	g_free(l->local_addr);
	l->local_addr = g_strdup(p->local_addr);
	g_free(l->session_id);
	l->session_id = g_strdup(p->session_id);
	l->params.hash_key = l->hash_key;
	l->params.client_addr = l->client_addr;
	l->params.client_port = p->client_port;
	l->params.local_addr = l->local_addr;
	l->params.local_port = p->local_port;
	l->params.session_id = l->session_id;
	l->params.stats = p->stats;
	l->done = done;
	l->user_data = user_data;
}

gpointer
gh_backend_link_dialogue(GhBackendLink *l)
{
	return l->d;
}

gboolean
gh_backend_link_await_login(GhBackendLink *l)
{
	if (!l->params.login_later)
		return TRUE;
	l->parked = TRUE;
	gh_timer_stop(&l->timer);
	if (l->conn != NULL)
		want_reply(l); /* to see a server that speaks or closes meanwhile */
	return FALSE;
}

GhConn *
gh_backend_link_conn(GhBackendLink *l)
{
	return l->conn;
}

const GhBackendParams *
gh_backend_link_params(GhBackendLink *l)
{
	return &l->params;
}

const char *
gh_backend_link_server(GhBackendLink *l)
{
	return gh_connector_server(l->connector);
}

const GhSecret *
gh_backend_link_password(GhBackendLink *l)
{
	return l->password;
}

void
gh_backend_link_forget_password(GhBackendLink *l)
{
	g_clear_pointer(&l->password, gh_secret_free);
	l->params.password = NULL;
}
