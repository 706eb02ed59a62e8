/*
 * session.c: the life cycle of a client connection (see session.h).
 *
 * Invariants: a session is created, used and freed on the worker thread that
 * accepted it; it holds a reference on the configuration that was in force
 * when it was accepted, so a reload never changes a session under its feet;
 * it counts against its listener's max_connections until it is freed.
 */
#include "gh-build.h"

#include "session.h"
#include "log.h"
#include "session-private.h"
#include "smtp-session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

void
gh_session_free(GhSession *s)
{
	if (s->ops != NULL && s->ops->free != NULL)
		s->ops->free(s);
	gh_worker_session_removed(s->worker, s);
	gh_conn_free(s->conn);
	g_atomic_int_add(&s->listener->n_sessions, -1);
	g_debug("session %s: closed", s->id);
	gh_config_unref(s->config);
	g_free(s);
}

void
gh_session_start(
    GhWorker *worker, GhListener *listener, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
	GhSession *s = g_new0(GhSession, 1);
	g_autofree char *line = NULL;
	gint n;

	make_session_id(s->id, sizeof s->id);
	s->worker = worker;
	s->listener = listener;
	s->conn = gh_conn_new(fd, worker->context, GH_SESSION_IN_MAX, GH_SESSION_OUT_MAX);
	s->started_us = g_get_monotonic_time();
	s->config = gh_server_get_config(worker->server);
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
		g_debug("session %s: listener %s is no longer configured", s->id, listener->name);
		gh_session_free(s);
		return;
	}
	g_debug("session %s: connect from %s port %u on listener %s", s->id, s->remote,
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
	if (s->lc->protocol == GH_PROTO_SMTP) {
		gh_smtp_session_begin(s);
		return;
	}
	line = g_strdup_printf("* OK [CAPABILITY IMAP4rev1] %s ready.\r\n", s->config->hostname);
	send_line(s, line);
	/* The IMAP front end is not part of this version: greet, close. */
	gh_session_free(s);
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
