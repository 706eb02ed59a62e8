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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct _GhSession {
	char id[16];
	GhWorker *worker;
	GhListener *listener;
	GhConfig *config;
	const GhListenerConfig *lc;
	int fd;
	char remote[INET6_ADDRSTRLEN];
	guint16 remote_port;
};

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
		ssize_t n = send(s->fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (gsize)n;
	}
}

static void
session_free(GhSession *s)
{
	gh_worker_session_removed(s->worker, s);
	if (s->fd >= 0) {
		(void)shutdown(s->fd, SHUT_WR);
		close(s->fd);
	}
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
	s->fd = fd;
	s->config = gh_server_get_config(worker->server);
	s->lc = gh_config_listener(s->config, listener->name);
	peer_to_text(peer, s->remote, sizeof s->remote, &s->remote_port);
	n = g_atomic_int_add(&listener->n_sessions, 1) + 1;
	gh_worker_session_added(worker, s);

	if (s->lc == NULL) {
		/* the listener was removed by a reload; its socket stays until restart */
		g_debug("session %s: listener %s is no longer configured", s->id, listener->name);
		session_free(s);
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
		session_free(s);
		return;
	}
	if (s->lc->protocol == GH_PROTO_SMTP)
		line = g_strdup_printf("220 %s ESMTP\r\n", s->config->hostname);
	else
		line = g_strdup_printf("* OK [CAPABILITY IMAP4rev1] %s ready.\r\n",
				       s->config->hostname);
	send_line(s, line);
	/* The SMTP and IMAP front ends are not part of this version: greet, close. */
	session_free(s);
}

void
gh_session_shutdown(GhSession *session)
{
	g_autofree char *line = NULL;
	if (session->lc != NULL && session->lc->protocol == GH_PROTO_SMTP)
		line = g_strdup_printf("421 4.3.2 %s Service shutting down\r\n",
				       session->config->hostname);
	else
		line = g_strdup("* BYE Server shutting down\r\n");
	send_line(session, line);
	session_free(session);
}

void
gh_session_abort(GhSession *session)
{
	session_free(session);
}
