/*
 * connector.c: server order and non-blocking connects (see connector.h).
 *
 * The list to try is made once, at creation, as host and port pairs: the
 * backend's servers, or the user's route split by gh_route_parse (its port,
 * or the backend's `port` when it names none).  Each keeps its "host:port"
 * text for the log, with the port actually dialled.
 *
 * A server that is an IP address (the usual case) is connected with a plain
 * non-blocking connect(2) whose socket is handed over at once, from the
 * loop: the backend handshake waits for the greeting anyway, and a refused
 * connect shows up there.  No objects, no resolver, no watch.  A host name
 * goes through GIO's GSocketClient with a GNetworkAddress, under the
 * connector's own timer (connect_timeout): the name is resolved by
 * GResolver's asynchronous lookup (getaddrinfo on GLib's resolver threads,
 * never on the worker), and the addresses are tried with non-blocking
 * connects.  GIO delivers all of that on the thread-default context, which
 * must be the connector's: a worker pushes its own context for its whole
 * life (core/server.c), and a test that dials a name pushes its own.  GIO
 * calls a connect callback even after cancellation, when the connector may
 * be gone; each such attempt therefore carries a ticket that says whether
 * anyone still waits for it, and the callback frees the ticket.
 */
#include "gh-build.h"

#include "net/connector.h"
#include "common/route.h"
#include "common/timer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
	GhConnector *c; /* NULL once the connector gave up on this attempt */
} Ticket;

/* One server to try. */
typedef struct {
	char *host; /* a name or an address, without brackets */
	guint16 port;
	char *text; /* "host:port" or "[v6]:port", for the log */
} Server;

struct _GhConnector {
	GMainContext *context;
	guint timeout;
	GPtrArray *servers; /* of Server*, in the order to try */
	guint next;
	const Server *current; /* being (or last) tried, NULL before the first */
	GSocketClient *client;
	GCancellable *cancellable;
	Ticket *ticket;
	GhTimer timer;                /* a host name's connect: connect_timeout */
	GhTimer handover;             /* a numeric connect's socket, from the loop; a host
				       * name's connection, at the next loop turn */
	int fd;                       /* a numeric connect in progress, or -1 */
	GSocketConnection *connected; /* a host name's, until that turn */
	char *early;                  /* a numeric connect that failed at once: why */
	gboolean timed_out;
	GhConnectorFunc func;
	gpointer user_data;
};

guint
gh_backend_first_server(const char *key, guint n)
{
	guint32 h = 2166136261u;
	if (n == 0)
		return 0;
	for (const char *p = key != NULL ? key : ""; *p != '\0'; p++) {
		h ^= (guint8)*p;
		h *= 16777619u;
	}
	return h % n;
}

static void
server_free(gpointer data)
{
	Server *s = data;
	g_free(s->host);
	g_free(s->text);
	g_free(s);
}

static char *
server_text(const char *host, guint16 port)
{
	return strchr(host, ':') != NULL ? g_strdup_printf("[%s]:%u", host, port)
					 : g_strdup_printf("%s:%u", host, port);
}

char *
gh_backend_server_text(const GhBackendConfig *bc, guint i)
{
	const GhHostPort *hp = &g_array_index(bc->servers, GhHostPort, i);
	return server_text(hp->host, hp->port);
}

/* Append host (transfer full) and port to the list. */
static void
add_server(GhConnector *c, char *host, guint16 port)
{
	Server *s = g_new0(Server, 1);
	s->host = host;
	s->port = port;
	s->text = server_text(host, port);
	g_ptr_array_add(c->servers, s);
}

GhConnector *
gh_connector_new(const GhBackendConfig *bc,
		 const char *route,
		 const char *hash_key,
		 GMainContext *context)
{
	GhConnector *c = g_new0(GhConnector, 1);
	c->context = context;
	c->fd = -1;
	c->timeout = MAX(bc->connect_timeout, 1);
	c->servers = g_ptr_array_new_with_free_func(server_free);
	if (route != NULL && *route != '\0' && bc->follow_route) {
		char *host = NULL;
		guint port = 0;

		/* the modules check routes with the same rule
		 * (GhAuthHost.route_valid); one that did not leaves nothing to
		 * try rather than a guess */
		if (gh_route_parse(route, strlen(route), &host, &port)) {
			if (port == 0)
				port = bc->port;
			if (port != 0)
				add_server(c, g_steal_pointer(&host), (guint16)port);
			g_free(host);
		}
	} else {
		guint n = bc->servers->len;
		guint first = gh_backend_first_server(hash_key, n);
		for (guint i = 0; i < n; i++) {
			const GhHostPort *hp =
			    &g_array_index(bc->servers, GhHostPort, (first + i) % n);
			add_server(c, g_strdup(hp->host), hp->port);
		}
	}
	return c;
}

gboolean
gh_connector_same_order(const GhBackendConfig *bc,
			const char *route,
			const char *hash_key,
			const char *other_key)
{
	guint n = bc->servers->len;

	if (route != NULL && *route != '\0' && bc->follow_route)
		return FALSE;
	return n <= 1 ||
	       gh_backend_first_server(hash_key, n) == gh_backend_first_server(other_key, n);
}

static void
stop_attempt(GhConnector *c)
{
	gh_timer_stop(&c->timer);
	gh_timer_stop(&c->handover);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	g_clear_pointer(&c->early, g_free);
	g_clear_object(&c->connected);
	if (c->ticket != NULL) {
		c->ticket->c = NULL;
		c->ticket = NULL;
	}
	if (c->cancellable != NULL) {
		g_cancellable_cancel(c->cancellable);
		g_clear_object(&c->cancellable);
	}
}

void
gh_connector_free(GhConnector *c)
{
	if (c == NULL)
		return;
	stop_attempt(c);
	g_clear_object(&c->client);
	g_ptr_array_unref(c->servers);
	g_free(c);
}

gboolean
gh_connector_assume(GhConnector *c, const char *server)
{
	const Server *first;

	if (c->next != 0 || c->servers->len == 0)
		return FALSE;
	first = g_ptr_array_index(c->servers, 0);
	if (server == NULL || strcmp(first->text, server) != 0)
		return FALSE;
	c->current = first;
	c->next = 1;
	return TRUE;
}

const char *
gh_connector_server(const GhConnector *c)
{
	return c->current != NULL ? c->current->text : NULL;
}

char *
gh_connector_host(const GhConnector *c)
{
	return g_strdup(c->current != NULL ? c->current->host : "");
}

/* A numeric connect: hand over the socket under way, or say why there is
 * none.  The backend's first step is to wait for its greeting (or to send a
 * TLS hello, which waits for the connect), under the backend's own
 * connect_timeout; a refused connect shows up there as a read error.  No
 * writability watch, no getsockopt. */
static void
on_handover(gpointer data)
{
	GhConnector *c = data;
	int fd = c->fd;
	g_autofree char *why = fd < 0 ? g_strdup_printf("connect: %s", c->early) : NULL;
	c->fd = -1;
	stop_attempt(c);
	c->func(fd, c->current->text, why, c->user_data);
}

/* A host name's connect took too long: the connect callback reports the
 * cancellation as a timeout. */
static void
on_timeout(gpointer data)
{
	GhConnector *c = data;
	c->timed_out = TRUE;
	g_cancellable_cancel(c->cancellable);
}

/* 192.0.2.1 or 2001:db8::1 and the port as a socket address; FALSE for a
 * host name. */
static gboolean
numeric_address(const Server *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, s->host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(s->port);
		*len = sizeof *v4;
		return TRUE;
	}
	if (inet_pton(AF_INET6, s->host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(s->port);
		*len = sizeof *v6;
		return TRUE;
	}
	return FALSE;
}

/* Start a plain non-blocking connect; FALSE when server is a host name. */
static gboolean
connect_numeric(GhConnector *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	if (!numeric_address(c->current, &ss, &len))
		return FALSE;
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->early = g_strdup(g_strerror(errno));
	} else {
		/* the login dialogue is small writes answered one by one */
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(c->fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
			c->early = g_strdup(g_strerror(errno)); /* refused at once */
			close(c->fd);
			c->fd = -1;
		}
	}
	/* the socket, or why there is none, goes to the caller from the loop
	 * (on_handover), never from inside gh_connector_next */
	gh_timer_soon(&c->handover, c->context, on_handover, c);
	return TRUE;
}

/* A host name's connection, one loop turn after GIO made it: the session
 * relays on a plain fd, a copy of GIO's, and GIO's objects are done with. */
static void
on_connected_handover(gpointer data)
{
	GhConnector *c = data;
	g_autoptr(GSocketConnection) sc = g_steal_pointer(&c->connected);
	int fd = dup(g_socket_get_fd(g_socket_connection_get_socket(sc)));
	g_autofree char *why = NULL;

	(void)g_io_stream_close(G_IO_STREAM(sc), NULL, NULL);
	if (fd < 0)
		why = g_strdup_printf("dup: %s", g_strerror(errno));
	else
		(void)g_unix_set_fd_nonblocking(fd, TRUE, NULL);
	c->func(fd, c->current->text, why, c->user_data);
}

static void
on_connected(GObject *source, GAsyncResult *result, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GSocketConnection) sc =
	    g_socket_client_connect_finish(G_SOCKET_CLIENT(source), result, &error);
	Ticket *ticket = data;
	GhConnector *c = ticket->c;
	g_autofree char *why = NULL;

	g_free(ticket);
	if (c == NULL)
		return; /* nobody waits any more */
	c->ticket = NULL;
	stop_attempt(c);
	if (sc == NULL) {
		why = g_strdup_printf("connect: %s", c->timed_out
							 ? "no answer within the connect_timeout"
							 : error->message);
		c->func(-1, c->current->text, why, c->user_data);
		return;
	}
	/* GIO watched this socket for its connect, and on an I/O thread that
	 * watch is a record in the thread's epoll set, which goes at the next
	 * poll (conn.c, foreign descriptors).  Closed before then, with a copy
	 * alive, the socket would keep that record for good: epoll would
	 * report the copy writable on every turn, and the thread would spin
	 * for as long as the session lasts.  So the copy is made at the next
	 * turn, once the record is gone. */
	c->connected = g_steal_pointer(&sc);
	gh_timer_yield(&c->handover, c->context, on_connected_handover, c);
}

/* The context GIO answers on, from this thread. */
static GMainContext *
thread_default(void)
{
	GMainContext *context = g_main_context_get_thread_default();
	return context != NULL ? context : g_main_context_default();
}

gboolean
gh_connector_next(GhConnector *c, GhConnectorFunc func, gpointer user_data)
{
	g_autoptr(GSocketConnectable) address = NULL;

	if (c->next >= c->servers->len)
		return FALSE;
	stop_attempt(c);
	c->current = g_ptr_array_index(c->servers, c->next++);
	c->func = func;
	c->user_data = user_data;
	c->timed_out = FALSE;
	if (connect_numeric(c))
		return TRUE;
	c->cancellable = g_cancellable_new();
	c->ticket = g_new0(Ticket, 1);
	c->ticket->c = c;
	if (c->client == NULL) {
		c->client = g_socket_client_new();
		g_socket_client_set_enable_proxy(c->client, FALSE);
	}
	gh_timer_start(&c->timer, c->context, c->timeout * 1000, on_timeout, c);
	/* the lookup and the connects answer on the thread-default context:
	 * GIO's tasks and sources would land on another loop than ours */
	g_warn_if_fail(thread_default() == c->context);
	address = g_network_address_new(c->current->host, c->current->port);
	g_socket_client_connect_async(c->client, address, c->cancellable, on_connected, c->ticket);
	return TRUE;
}

GhSecret *
gh_backend_master_password(const GhBackendConfig *bc, GError **error)
{
	char *text = NULL;
	gsize len = 0;
	if (!g_file_get_contents(bc->master_password_file, &text, &len, error))
		return NULL;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return gh_secret_new_take(text, len);
}

gboolean
gh_backend_tls_start(
    GhConnector *c, GhConn *conn, GhTls *tls, const GhBackendConfig *bc, char **error)
{
	g_autofree char *host = gh_connector_host(c);
	if (conn->in->len > 0) {
		*error = g_strdup("sent data after its STARTTLS reply");
		return FALSE;
	}
	gh_conn_tls_start(conn, gh_tls_client_session(tls, bc, host, conn->fd));
	return TRUE;
}

int
gh_backend_tls_handshake(GhConnector *c, GhConn *conn, const GhBackendConfig *bc, char **error)
{
	int rc = gh_conn_tls_handshake(conn);
	if (rc < 0) {
		*error = g_strdup(conn->tls_error);
		return -1;
	}
	if (rc == 0) {
		gh_conn_want(conn, conn->tls_want);
		return 0;
	}
	if (bc->verify) {
		g_autofree char *host = gh_connector_host(c);
		g_autofree char *why = NULL;
		if (!gh_tls_verify_peer(conn->tls, host, &why)) {
			*error = g_strdup_printf("TLS: %s", why);
			return -1;
		}
	}
	return 1;
}
