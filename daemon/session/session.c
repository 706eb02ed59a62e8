/*
 * session.c: the life cycle of a client connection (see session.h).
 *
 * Invariants: a session is created, used and freed on the worker thread that
 * accepted it; it holds a reference on the configuration that was in force
 * when it was accepted, so a reload never changes a session under its feet;
 * it counts against its listener's max_connections until it is freed.
 */
#include "gh-build.h"

#include "session/session.h"
#include "config/log.h"
#include "session/session-private.h"
#include "smtp/smtp-session.h"
#include "imap/imap-session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
make_session_id(char *out, gsize size)
{
	/* base32 without look-alikes: short, unique enough per process and day,
	 * easy to grep in the log */
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
	gsize n = MIN(size - 1, 12);
	for (gsize i = 0; i < n; i++)
		out[i] = alphabet[g_random_int_range(0, 32)];
	out[n] = '\0';
}

static void
peer_to_text(const struct sockaddr *sa, char *out, gsize size, guint16 *port_out)
{
	*port_out = 0;
	g_strlcpy(out, "-", size);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)size);
		*port_out = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)size);
		*port_out = ntohs(sin6->sin6_port);
	}
}

/* Best effort: the first reply of a fresh connection fits any socket buffer. */
static void
send_line(GhSession *s, const char *line)
{
	gsize len = strlen(line);
	gsize off = 0;
	while (off < len) {
		ssize_t n = send(s->conn->fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (gsize)n;
	}
}

static void session_timer_stop(GhSession *s);

void
gh_session_free(GhSession *s)
{
	if (s->ops != NULL && s->ops->free != NULL)
		s->ops->free(s);
	session_timer_stop(s);
	gh_worker_session_removed(s->worker, s);
	gh_conn_free(s->conn);
	g_atomic_int_add(&s->listener->n_sessions, -1);
	gh_debug("session %s: closed", s->id);
	gh_tls_unref(s->tls);
	gh_auth_set_unref(s->auth_set);
	g_free(s->tls_desc);
	gh_config_unref(s->config);
	g_free(s);
}

void
gh_session_start(
    GhWorker *worker, GhListener *listener, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
	GhSession *s = g_new0(GhSession, 1);
	g_autofree char *line = NULL;
	gint n, one = 1;

	/* replies and relayed commands are small writes: send each at once */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	make_session_id(s->id, sizeof s->id);
	s->worker = worker;
	s->listener = listener;
	s->conn = gh_conn_new(fd, worker->context, GH_SESSION_IN_MAX, GH_SESSION_OUT_MAX);
	s->started_us = g_get_monotonic_time();
	gh_server_get_generation(worker->server, &s->config, &s->tls, &s->auth_set);
	s->lc = gh_config_listener(s->config, listener->name);
	(void)peer_len;
	peer_to_text(peer, s->remote, sizeof s->remote, &s->remote_port);
	{
		struct sockaddr_storage local;
		socklen_t local_len = sizeof local;
		g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(s->remote);
		if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
			peer_to_text((struct sockaddr *)&local, s->local, sizeof s->local,
				     &s->local_port);
		s->trusted = addr != NULL && gh_cidr_list_match(s->config->trusted_networks, addr);
	}
	n = g_atomic_int_add(&listener->n_sessions, 1) + 1;
	gh_worker_session_added(worker, s);

	if (s->lc == NULL) {
		/* the listener was removed by a reload; its socket stays until restart */
		gh_debug("session %s: listener %s is no longer configured", s->id, listener->name);
		gh_session_free(s);
		return;
	}
	gh_debug("session %s: connect from %s port %u on listener %s", s->id, s->remote,
		 s->remote_port, listener->name);
	if (s->lc->max_connections > 0 && (guint)n > s->lc->max_connections) {
		g_message(
		    "session %s: refusing %s on listener %s: %u connections open (max_connections)",
		    s->id, s->remote, listener->name, (guint)n - 1);
		if (s->lc->protocol == GH_PROTO_SMTP)
			line = g_strdup_printf("421 4.7.0 %s Too many connections\r\n",
					       s->config->hostname);
		else
			line = g_strdup("* BYE [UNAVAILABLE] Too many connections\r\n");
		send_line(s, line);
		gh_session_free(s);
		return;
	}
	if (s->lc->protocol == GH_PROTO_SMTP)
		gh_smtp_session_begin(s);
	else
		gh_imap_session_begin(s);
}

void
gh_session_shutdown(GhSession *session)
{
	g_autofree char *line = NULL;
	if (session->ops != NULL && session->ops->shutdown != NULL) {
		session->ops->shutdown(session);
		return;
	}
	if (session->lc != NULL && session->lc->protocol == GH_PROTO_SMTP)
		line = g_strdup_printf("421 4.3.2 %s Service shutting down\r\n",
				       session->config->hostname);
	else
		line = g_strdup("* BYE Server shutting down\r\n");
	send_line(session, line);
	gh_session_free(session);
}

void
gh_session_abort(GhSession *session)
{
	gh_session_free(session);
}

/* ------------------------------------------- what every front end does alike */

static void
session_timer_stop(GhSession *s)
{
	if (s->timer != NULL) {
		g_source_destroy(s->timer);
		g_source_unref(s->timer);
		s->timer = NULL;
	}
}

static gboolean
on_session_timer(gpointer data)
{
	GhSession *s = data;
	GSourceFunc func = s->timer_func;
	g_source_unref(s->timer);
	s->timer = NULL;
	func(s);
	return G_SOURCE_REMOVE;
}

void
gh_session_set_timer(GhSession *s, guint ms, GSourceFunc func)
{
	session_timer_stop(s);
	if (ms == 0)
		return;
	/* milliseconds: a seconds timer may fire up to a second early */
	s->timer = g_timeout_source_new(ms);
	s->timer_func = func;
	g_source_set_callback(s->timer, on_session_timer, s, NULL);
	g_source_attach(s->timer, s->worker->context);
}

static gboolean
on_close_deadline(gpointer data)
{
	gh_session_free(data);
	return G_SOURCE_REMOVE;
}

void
gh_session_close_after_flush(GhSession *s)
{
	s->closing = TRUE;
	gh_session_set_timer(s, GH_SESSION_CLOSE_TIMEOUT * 1000, on_close_deadline);
}

void
gh_session_say(GhSession *s, const char *format, ...)
{
	va_list ap;
	g_autofree char *text = NULL;
	va_start(ap, format);
	text = g_strdup_vprintf(format, ap);
	va_end(ap);
	/* one write per reply; out_max is far above GH_SESSION_OUT_SOFT, so a
	 * reply always fits */
	text = g_realloc(text, strlen(text) + 3);
	strcat(text, "\r\n");
	(void)gh_conn_queue(s->conn, text, strlen(text));
}

gboolean
gh_session_plaintext_allowed(GhSession *s)
{
	switch (s->lc->plaintext_auth) {
	case GH_PLAINTEXT_ALWAYS:
		return TRUE;
	case GH_PLAINTEXT_TLS:
		return s->secure;
	case GH_PLAINTEXT_TRUSTED:
		return s->secure || s->trusted;
	}
	return FALSE;
}

gboolean
gh_session_starttls_offered(GhSession *s)
{
	return s->lc->tls == GH_TLS_STARTTLS && !s->secure && gh_tls_has_server(s->tls);
}

static gboolean
on_handshake_timeout(gpointer data)
{
	GhSession *s = data;
	g_message("session %s: %s: TLS handshake not finished within %u s; closing", s->id,
		  s->remote, MAX(MIN(s->lc->idle_timeout, 60), 1));
	gh_session_free(s);
	return G_SOURCE_REMOVE;
}

/* Drive the handshake; FALSE when the session ended. */
static gboolean
handshake(GhSession *s)
{
	GhConn *c = s->conn;
	int rc = gh_conn_tls_handshake(c);
	if (rc < 0) {
		g_message("session %s: %s: %s", s->id, s->remote, c->tls_error);
		gh_session_free(s);
		return FALSE;
	}
	if (rc == 0) {
		gh_conn_want(c, c->tls_want);
		return TRUE;
	}
	s->secure = TRUE;
	s->tls_desc = gh_tls_describe(c->tls);
	gh_debug("session %s: %s: %s", s->id, s->remote, s->tls_desc);
	gh_session_set_timer(s, 0, NULL);
	s->tls_done(s, NULL);
	return TRUE;
}

static void
begin_handshake(GhSession *s)
{
	GhConn *c = s->conn;
	s->tls_start_pending = FALSE;
	/* whatever the client sent after STARTTLS was sent in plaintext: it
	 * must not be taken as coming through TLS */
	gh_conn_consume(c, c->in->len);
	gh_conn_tls_start(c, gh_tls_server_session(s->tls, c->fd));
	gh_session_set_timer(s, MAX(MIN(s->lc->idle_timeout, 60), 1) * 1000, on_handshake_timeout);
	/* the client speaks first (ClientHello): wait for it, from the loop,
	 * so that a failing handshake never frees the session under a caller */
	gh_conn_want(c, G_IO_IN);
}

void
gh_session_start_tls(GhSession *s, GFunc done)
{
	s->tls_done = done;
	gh_conn_consume(s->conn, s->conn->in->len);
	if (!gh_conn_flush(s->conn)) {
		/* the "go ahead" is not out yet: handshake once it is */
		s->tls_start_pending = TRUE;
		gh_conn_want(s->conn, G_IO_OUT);
		return;
	}
	begin_handshake(s);
}

gboolean
gh_session_update_watch(GhSession *s)
{
	GhConn *c = s->conn;
	gboolean reading;
	GIOCondition want = 0;

	if (c == NULL)
		return TRUE; /* the relay has it */
	if (c->tls_handshaking || s->tls_start_pending)
		return TRUE; /* the handshake decides what to wait for */
	if (c->error != 0) {
		gh_debug("session %s: %s: %s", s->id, s->remote, g_strerror(c->error));
		gh_session_free(s);
		return FALSE;
	}
	reading = !s->closing && s->ops->reading(s);
	if (c->eof && reading && gh_conn_pending(c) < GH_SESSION_OUT_SOFT) {
		/* (below the soft limit, process() has served every whole line)
		 * the client closed, or half-closed after its last command:
		 * answer what it sent, then close; an unfinished login is dropped */
		gh_debug("session %s: %s closed the connection", s->id, s->remote);
		gh_session_close_after_flush(s);
	}
	if (s->closing) {
		if (c->error != 0 || (s->lingering && c->eof)) {
			gh_session_free(s);
			return FALSE;
		}
		if (!gh_conn_flush(c)) {
			gh_conn_want(c, G_IO_OUT);
			return TRUE;
		}
		if (!s->lingering) {
			/* Lingering close: closing a socket with unread input makes
			 * the kernel send a reset, which can destroy our last reply
			 * on its way (a client still sending a huge line would never
			 * see its "Line too long").  So: end our side, read and drop
			 * what still comes for a moment, then close. */
			s->lingering = TRUE;
			(void)shutdown(c->fd, SHUT_WR);
			gh_session_set_timer(s, GH_SESSION_LINGER_MS, on_close_deadline);
		}
		gh_conn_consume(c, c->in->len);
		gh_conn_want(c, G_IO_IN);
		return TRUE;
	}
	if (reading && !c->eof && c->in->len < c->in_max &&
	    gh_conn_pending(c) < GH_SESSION_OUT_SOFT)
		want |= G_IO_IN;
	if (gh_conn_pending(c) > 0)
		want |= G_IO_OUT;
	gh_conn_want(c, want);
	return TRUE;
}

static void
on_client(GhConn *c, GIOCondition cond, gpointer data)
{
	GhSession *s = data;
	gboolean reading;
	(void)cond;
	if (s->tls_start_pending) {
		if (!gh_conn_flush(c) && c->error == 0)
			return;
		if (c->error != 0) {
			gh_session_free(s);
			return;
		}
		begin_handshake(s);
		return;
	}
	if (c->tls_handshaking) {
		(void)handshake(s);
		return;
	}
	reading = !s->closing && s->ops->reading(s);
	if (gh_conn_pending(c) > 0)
		(void)gh_conn_flush(c);
	if (reading || s->lingering)
		(void)gh_conn_fill(c);
	if (reading)
		s->ops->process(s);
	else
		(void)gh_session_update_watch(s);
}

void
gh_session_watch_client(GhSession *s)
{
	gh_conn_set_callback(s->conn, on_client, s);
}

void
gh_login_clear(GhLogin *l)
{
	if (l->pending != NULL) {
		gh_auth_pending_cancel(l->pending);
		l->pending = NULL;
	}
	g_clear_pointer(&l->tag, g_free);
	g_clear_pointer(&l->user, g_free);
	g_clear_pointer(&l->password, gh_secret_free);
	g_clear_pointer(&l->canonical, g_free);
	g_clear_pointer(&l->route, g_free);
	g_clear_pointer(&l->module, g_free);
	g_clear_pointer(&l->instance, g_free);
	if (l->auth_set != NULL) {
		gh_auth_set_unref(l->auth_set);
		l->auth_set = NULL;
	}
	l->mech = NULL;
	l->cached = FALSE;
}

void
gh_login_verify(GhSession *s, GhLogin *l, const char *service, GhAuthDone done, gpointer data)
{
	gsize pw_len = 0;
	const char *pw = gh_secret_get(l->password, &pw_len);
	GhAuthRequest req = {
	    .user = l->user,
	    .password = pw,
	    .password_len = pw_len,
	    .service = service,
	    .listener = s->lc->name,
	    .remote_addr = s->remote,
	    .remote_port = s->remote_port,
	    .local_addr = s->local,
	    .local_port = s->local_port,
	    .tls = s->secure,
	    .session_id = s->id,
	};
	gh_session_set_timer(s, 0, NULL);
	/* a new attempt: the server an earlier one tried is not this one's */
	g_clear_pointer(&l->backend_server, g_free);
	l->auth_set = gh_auth_set_ref(s->auth_set);
	l->pending = gh_auth_verify_async(l->auth_set, (const char *const *)s->lc->auth, &req, 0,
					  s->worker->context, done, data);
}

void
gh_login_take_outcome(GhLogin *l, const GhAuthOutcome *o)
{
	l->pending = NULL;
	l->instance = g_strdup(o->instance);
	l->module = g_strdup(o->module);
	l->cached = o->cached;
	l->auth_us = o->elapsed_us;
	if (o->verdict == GH_AUTH_OK) {
		l->canonical = g_strdup(o->canonical_user);
		l->route = g_strdup(o->route);
	}
}

void
gh_login_log(GhSession *s,
	     const GhLogin *l,
	     const char *protocol,
	     const char *verdict,
	     const char *reason,
	     gint64 elapsed_us)
{
	GhLoginLog line = {
	    .session_id = s->id,
	    .protocol = protocol,
	    .listener = s->lc->name,
	    .remote = s->remote,
	    .user = l->user,
	    .mechanism = l->mech,
	    .tls = s->tls_desc != NULL ? s->tls_desc : "no",
	    .instance = l->instance,
	    .module = l->module,
	    .verdict = verdict,
	    .reason = reason,
	    .backend = l->backend_server,
	    .cached = l->cached,
	    .elapsed_us = elapsed_us,
	};
	gh_log_login(&line);
}

void
gh_session_log_end(GhSession *s,
		   const char *protocol,
		   const GhLogin *l,
		   const char *why,
		   guint64 client_bytes,
		   guint64 backend_bytes)
{
	g_autofree char *user = l->canonical != NULL
				    ? gh_log_escape(l->canonical, strlen(l->canonical), 256)
				    : g_strdup("-");
	g_message("session end: session=%s proto=%s listener=%s remote=%s user=\"%s\" "
		  "backend=%s client_bytes=%" G_GUINT64_FORMAT " backend_bytes=%" G_GUINT64_FORMAT
		  " duration=%.1fs reason=\"%s\"",
		  s->id, protocol, s->lc->name, s->remote, user,
		  l->backend_server != NULL ? l->backend_server : "-", client_bytes, backend_bytes,
		  (double)(g_get_monotonic_time() - s->started_us) / G_USEC_PER_SEC, why);
}
