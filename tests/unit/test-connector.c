/*
 * test-connector.c: which server the connector dials, and how, against
 * listening sockets on 127.0.0.1 that the test accepts on itself, with the
 * connector on the test's own GMainContext (pushed as the thread default,
 * as a worker pushes its own).  Shown here: without a route the backend's
 * servers; a route with a port dials that port; a route without one dials
 * the backend's `port`; follow_route = no keeps the servers whatever the
 * route; the server text names the port dialled ("[v6]:port" for IPv6);
 * a host name is resolved and connected from the loop, never inside
 * gh_connector_next; an invalid route, or one without a port when the
 * backend has none, leaves nothing to try.
 */
#include "gh-build.h"

#include "net/connector.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 60000 /* hang guard only */

typedef struct {
	GMainContext *context;
	GhBackendConfig bc;
	GhConnector *c;
	/* what the callback got */
	guint called;
	int fd;
	char *server;
	char *error;
} Fixture;

/* A socket listening on 127.0.0.1 and a free port. */
static int
listener(guint16 *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(listen(fd, 8), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static gboolean
pending(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc;

	do {
		rc = poll(&p, 1, timeout_ms);
	} while (rc < 0 && errno == EINTR);
	g_assert_cmpint(rc, >=, 0);
	return rc == 1;
}

/* The connection `fd` (the connector's) arrived at `lfd`: accept it and
 * compare the two ends. */
static void
assert_arrived(int lfd, int fd)
{
	struct sockaddr_storage mine, theirs;
	socklen_t mine_len = sizeof mine, theirs_len = sizeof theirs;
	int peer;

	g_assert_cmpint(fd, >=, 0);
	g_assert_true(pending(lfd, WAIT_MS));
	peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	g_assert_cmpint(peer, >=, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&mine, &mine_len), ==, 0);
	g_assert_cmpint(getpeername(peer, (struct sockaddr *)&theirs, &theirs_len), ==, 0);
	g_assert_cmpuint(mine_len, ==, theirs_len);
	g_assert_cmpmem(&mine, mine_len, &theirs, theirs_len);
	close(peer);
}

static void
on_connected(int fd, const char *server, const char *error, gpointer data)
{
	Fixture *f = data;

	f->called++;
	f->fd = fd;
	f->server = g_strdup(server);
	f->error = g_strdup(error);
}

static gboolean
on_guard(gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_CONTINUE;
}

/* Start the first attempt and run the loop until its callback. */
static void
dial(Fixture *f, const char *route)
{
	gboolean hung = FALSE;
	GSource *guard = g_timeout_source_new(WAIT_MS);

	f->c = gh_connector_new(&f->bc, route, "alice", f->context);
	g_assert_true(gh_connector_next(f->c, on_connected, f));
	/* never from inside the call */
	g_assert_cmpuint(f->called, ==, 0);
	g_source_set_callback(guard, on_guard, &hung, NULL);
	g_source_attach(guard, f->context);
	while (f->called == 0 && !hung)
		g_main_context_iteration(f->context, TRUE);
	g_source_destroy(guard);
	g_source_unref(guard);
	g_assert_false(hung);
	g_assert_cmpuint(f->called, ==, 1);
	if (f->error != NULL)
		g_test_message("connect to %s: %s", f->server, f->error);
	g_assert_null(f->error);
	g_assert_cmpstr(f->server, ==, gh_connector_server(f->c));
}

static void
add_server(Fixture *f, const char *host, guint16 port)
{
	GhHostPort hp = {.host = g_strdup(host), .port = port};

	g_array_append_val(f->bc.servers, hp);
}

static void
fixture_set_up(Fixture *f, gconstpointer data)
{
	(void)data;
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->context = g_main_context_new();
	g_main_context_push_thread_default(f->context);
	f->bc.name = (char *)"test";
	f->bc.protocol = GH_PROTO_IMAP;
	f->bc.servers = g_array_new(FALSE, TRUE, sizeof(GhHostPort));
	f->bc.follow_route = TRUE;
	f->bc.connect_timeout = 600; /* the hang guard comes first */
}

static void
fixture_tear_down(Fixture *f, gconstpointer data)
{
	(void)data;
	gh_connector_free(f->c);
	if (f->fd >= 0)
		close(f->fd);
	/* what the connector left behind (GIO's cancelled work) */
	for (guint i = 0; i < 100 && g_main_context_iteration(f->context, FALSE); i++)
		;
	g_main_context_pop_thread_default(f->context);
	g_main_context_unref(f->context);
	for (guint i = 0; i < f->bc.servers->len; i++)
		g_free(g_array_index(f->bc.servers, GhHostPort, i).host);
	g_array_unref(f->bc.servers);
	g_free(f->server);
	g_free(f->error);
}

/* ---- tests ---- */

static void
test_servers(Fixture *f, gconstpointer data)
{
	guint16 port;
	int lfd = listener(&port);
	g_autofree char *want = g_strdup_printf("127.0.0.1:%u", port);
	g_autofree char *host = NULL;

	(void)data;
	add_server(f, "127.0.0.1", port);
	f->bc.port = port;
	dial(f, NULL);
	g_assert_cmpstr(f->server, ==, want);
	host = gh_connector_host(f->c);
	g_assert_cmpstr(host, ==, "127.0.0.1");
	assert_arrived(lfd, f->fd);
	g_assert_false(gh_connector_next(f->c, on_connected, f));
	close(lfd);
}

/* route=127.0.0.1:P2: that port, not the servers', not `port`. */
static void
test_route_with_port(Fixture *f, gconstpointer data)
{
	guint16 port, routed_port;
	int lfd = listener(&port);
	int routed = listener(&routed_port);
	g_autofree char *route = g_strdup_printf("127.0.0.1:%u", routed_port);

	(void)data;
	add_server(f, "127.0.0.1", port);
	f->bc.port = port;
	dial(f, route);
	g_assert_cmpstr(f->server, ==, route);
	assert_arrived(routed, f->fd);
	g_assert_false(pending(lfd, 0));
	/* a route replaces the list: nothing after it */
	g_assert_false(gh_connector_next(f->c, on_connected, f));
	close(lfd);
	close(routed);
}

/* route=127.0.0.1 (as a directory keeps a mail host): the backend's port,
 * which here is not the first server's. */
static void
test_route_without_port(Fixture *f, gconstpointer data)
{
	guint16 port, routed_port;
	int lfd = listener(&port);
	int routed = listener(&routed_port);
	g_autofree char *want = NULL;

	(void)data;
	add_server(f, "127.0.0.1", port);
	f->bc.port = routed_port;
	dial(f, "127.0.0.1");
	want = g_strdup_printf("127.0.0.1:%u", routed_port);
	g_assert_cmpstr(f->server, ==, want);
	assert_arrived(routed, f->fd);
	g_assert_false(pending(lfd, 0));
	close(lfd);
	close(routed);
}

/* follow_route = no: the servers, whatever the route says. */
static void
test_follow_route_no(Fixture *f, gconstpointer data)
{
	guint16 port, routed_port;
	int lfd = listener(&port);
	int routed = listener(&routed_port);
	g_autofree char *route = g_strdup_printf("127.0.0.1:%u", routed_port);
	g_autofree char *want = g_strdup_printf("127.0.0.1:%u", port);

	(void)data;
	add_server(f, "127.0.0.1", port);
	f->bc.port = routed_port;
	f->bc.follow_route = FALSE;
	dial(f, route);
	g_assert_cmpstr(f->server, ==, want);
	assert_arrived(lfd, f->fd);
	g_assert_false(pending(routed, 0));
	close(lfd);
	close(routed);
}

/* A host name without a port: resolved and connected from the loop (the
 * callback never runs inside gh_connector_next, see dial()); the log text
 * and the certificate name keep the name. */
static void
test_route_host_name(Fixture *f, gconstpointer data)
{
	guint16 port;
	int lfd = listener(&port);
	g_autofree char *want = NULL;
	g_autofree char *host = NULL;

	(void)data;
	add_server(f, "192.0.2.1", 1); /* never dialled */
	f->bc.port = port;
	dial(f, "localhost");
	want = g_strdup_printf("localhost:%u", port);
	g_assert_cmpstr(f->server, ==, want);
	host = gh_connector_host(f->c);
	g_assert_cmpstr(host, ==, "localhost");
	assert_arrived(lfd, f->fd);
	close(lfd);
}

/* [::1] without a port: the host without brackets, the text with them. */
static void
test_route_ipv6_text(Fixture *f, gconstpointer data)
{
	g_autofree char *host = NULL;

	(void)data;
	add_server(f, "127.0.0.1", 1);
	f->bc.port = 10143;
	f->c = gh_connector_new(&f->bc, "[::1]", "alice", f->context);
	g_assert_null(gh_connector_server(f->c));
	g_assert_true(gh_connector_next(f->c, on_connected, f));
	g_assert_cmpstr(gh_connector_server(f->c), ==, "[::1]:10143");
	host = gh_connector_host(f->c);
	g_assert_cmpstr(host, ==, "::1");
}

/* Nothing to try: a route the rule refuses, or one without a port when the
 * backend has none to give (a configuration never lacks it). */
static void
test_nothing_to_try(Fixture *f, gconstpointer data)
{
	static const char *const routes[] = {"not a route", "::1", "host:", "[::1]x"};

	(void)data;
	add_server(f, "127.0.0.1", 1);
	f->bc.port = 143;
	for (guint i = 0; i < G_N_ELEMENTS(routes); i++) {
		GhConnector *c = gh_connector_new(&f->bc, routes[i], "alice", f->context);

		g_assert_false(gh_connector_next(c, on_connected, f));
		g_assert_null(gh_connector_server(c));
		gh_connector_free(c);
	}
	f->bc.port = 0;
	f->c = gh_connector_new(&f->bc, "127.0.0.1", "alice", f->context);
	g_assert_false(gh_connector_next(f->c, on_connected, f));
	g_assert_cmpuint(f->called, ==, 0);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

#define ADD(path, func) g_test_add(path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
	ADD("/connector/servers", test_servers);
	ADD("/connector/route-with-port", test_route_with_port);
	ADD("/connector/route-without-port", test_route_without_port);
	ADD("/connector/follow-route-no", test_follow_route_no);
	ADD("/connector/route-host-name", test_route_host_name);
	ADD("/connector/route-ipv6-text", test_route_ipv6_text);
	ADD("/connector/nothing-to-try", test_nothing_to_try);
#undef ADD
	return g_test_run();
}
