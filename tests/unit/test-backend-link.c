/*
 * test-backend-link.c: the backend link as a dialogue and a server see it:
 * a tiny line-based dialogue (below) runs on a link against listening
 * sockets on 127.0.0.1 that the test answers itself, while the link runs on
 * the test's own GMainContext.  Shown here: a finished attempt hands over
 * the connection with what the server sent early; a refused server and a
 * server that said no are left for the next one; a silent server times out
 * with the error the log shows; a fail() inside input() ends everything at
 * once; cancel (also from inside a step and the done callback) never calls
 * done; the link keeps its own copies and forgets the password; a link
 * started before the login is checked parks where the login starts, sends
 * nothing until it is given the credentials (and then from the loop, not
 * inside the call), says goodbye when cancelled there, and ends LOST when
 * the parked server closes or speaks.  And the
 * IMAP dialogue on a link: the backend's answer to the login reaches the
 * client byte for byte.
 */
#include "gh-build.h"

#include "session/backend-link.h"
#include "common/line.h"
#include "imap/imap-backend.h"
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
	GhBackendLink *link;
	gboolean cancel_in_done;

	/* what the dialogue saw */
	guint connected;
	guint inputs;
	guint resets;
	guint freed;
	guint parked;
	guint logins;
	gboolean password_seen;
	gboolean password_left; /* after forget */

	/* what the done callback got */
	guint done;
	GhBackendResult result;
	GhConn *conn;
	char *reply;
	GBytes *reply_bytes; /* the same, as bytes (it may hold NULs) */
	char *server;
	char *error;
} Fixture;

/* ---- the scripted dialogue: one line from the server, one action ---- */

static void
d_connected(GhBackendLink *l, gpointer d)
{
	Fixture *f = d;
	f->connected++;
	gh_backend_link_expect(l);
}

/* "LOGIN user password" */
static void
d_send_login(GhBackendLink *l, Fixture *f)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const GhSecret *pw = gh_backend_link_password(l);
	g_autofree char *cmd =
	    g_strdup_printf("LOGIN %s %s\r\n", p->user, pw != NULL ? gh_secret_get(pw, NULL) : "-");
	f->logins++;
	gh_backend_link_forget_password(l);
	(void)gh_backend_link_send(l, cmd, strlen(cmd));
}

static void
d_login(GhBackendLink *l, gpointer d)
{
	d_send_login(l, d);
}

static GhBackendStep
d_input(GhBackendLink *l, gpointer d)
{
	Fixture *f = d;
	GhConn *conn = gh_backend_link_conn(l);
	gsize len = 0, used = 0;
	g_autofree char *line = NULL;

	if (gh_line_next((const char *)conn->in->data, conn->in->len, 1024, &len, &used, NULL) !=
	    GH_LINE_OK)
		return GH_BACKEND_STEP_WAIT;
	line = g_strndup((const char *)conn->in->data, len);
	gh_conn_consume(conn, used);
	f->inputs++;
	if (strcmp(line, "hello") == 0) {
		(void)gh_backend_link_send(l, "HI\r\n", 4);
	} else if (strcmp(line, "pass") == 0) {
		const GhSecret *pw = gh_backend_link_password(l);
		g_autofree char *cmd = NULL;
		f->password_seen = pw != NULL;
		cmd = g_strdup_printf("PASS %s\r\n", pw != NULL ? gh_secret_get(pw, NULL) : "");
		gh_backend_link_forget_password(l);
		f->password_left = gh_backend_link_password(l) != NULL ||
				   gh_backend_link_params(l)->password != NULL;
		(void)gh_backend_link_send(l, cmd, strlen(cmd));
	} else if (strcmp(line, "ok") == 0) {
		g_autoptr(GBytes) reply = g_bytes_new_static("welcome", 7);
		gh_backend_link_finish(l, GH_BACKEND_OK, reply, NULL);
		return GH_BACKEND_STEP_STOP;
	} else if (strcmp(line, "refuse") == 0) {
		gh_backend_link_finish(l, GH_BACKEND_REFUSED, NULL, "refused here");
		return GH_BACKEND_STEP_STOP;
	} else if (strcmp(line, "no") == 0) {
		gh_backend_link_fail(l, TRUE, "said no");
		/* carries on as if nothing happened: the link must not */
	} else if (strcmp(line, "bad") == 0) {
		gh_backend_link_fail(l, FALSE, "bad greeting");
	} else if (strcmp(line, "cancel") == 0) {
		gh_backend_link_cancel(l);
	} else if (strcmp(line, "park") == 0) {
		if (!gh_backend_link_await_login(l)) {
			f->parked++;
			return GH_BACKEND_STEP_WAIT;
		}
		d_send_login(l, f);
	}
	return GH_BACKEND_STEP_MORE;
}

static void
d_tls_ready(GhBackendLink *l, gpointer d)
{
	(void)l;
	(void)d;
	g_assert_not_reached(); /* no TLS here */
}

static void
d_reset(gpointer d)
{
	((Fixture *)d)->resets++;
}

static void
d_free(gpointer d)
{
	((Fixture *)d)->freed++;
}

static const GhBackendDialogue dialogue = {
    .connected = d_connected,
    .input = d_input,
    .tls_ready = d_tls_ready,
    .login = d_login,
    .bye = "BYE\r\n",
    .reset = d_reset,
    .free = d_free,
};

static void
on_done(GhBackendResult result,
	GhConn *conn,
	GBytes *reply,
	const char *server,
	const char *error,
	gpointer data)
{
	Fixture *f = data;
	f->done++;
	f->result = result;
	f->conn = conn;
	f->reply = reply != NULL ? g_strndup(g_bytes_get_data(reply, NULL), g_bytes_get_size(reply))
				 : NULL;
	f->reply_bytes = reply != NULL ? g_bytes_ref(reply) : NULL;
	f->server = g_strdup(server);
	f->error = g_strdup(error);
	if (f->cancel_in_done)
		gh_backend_link_cancel(f->link);
}

/* ---- sockets ---- */

/* A socket bound to 127.0.0.1 and a free port; listening, or not (then a
 * connect to it is refused). */
static int
local_socket(gboolean listening, guint16 *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	if (listening)
		g_assert_cmpint(listen(fd, 8), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void
wait_readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc;
	do {
		rc = poll(&p, 1, WAIT_MS);
	} while (rc < 0 && errno == EINTR);
	g_assert_cmpint(rc, ==, 1);
}

static int
accept_one(int listener)
{
	int fd;
	wait_readable(listener);
	fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	g_assert_cmpint(fd, >=, 0);
	return fd;
}

static void
say(int fd, const char *text)
{
	g_assert_cmpint(send(fd, text, strlen(text), MSG_NOSIGNAL), ==, (gssize)strlen(text));
}

/* One line the link sent (with its CRLF), or "" when it closed. */
static char *
hear(int fd)
{
	GString *s = g_string_new(NULL);
	while (s->len == 0 || s->str[s->len - 1] != '\n') {
		char c;
		ssize_t n;
		wait_readable(fd);
		n = recv(fd, &c, 1, 0);
		g_assert_cmpint(n, >=, 0);
		if (n == 0)
			break;
		g_string_append_c(s, c);
	}
	return g_string_free(s, FALSE);
}

/* ---- the loop ---- */

static gboolean
on_guard(gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_CONTINUE;
}

/* Run the test's context until *counter reaches want. */
static void
run_until(Fixture *f, const guint *counter, guint want)
{
	gboolean hung = FALSE;
	GSource *guard = g_timeout_source_new(WAIT_MS);
	g_source_set_callback(guard, on_guard, &hung, NULL);
	g_source_attach(guard, f->context);
	while (*counter < want && !hung)
		g_main_context_iteration(f->context, TRUE);
	g_source_destroy(guard);
	g_source_unref(guard);
	g_assert_false(hung);
}

/* Whatever is due now, and nothing more. */
static void
run_pending(Fixture *f)
{
	for (guint i = 0; i < 100 && g_main_context_iteration(f->context, FALSE); i++)
		;
}

/* ---- fixture ---- */

static void
fixture_set_up(Fixture *f, gconstpointer data)
{
	(void)data;
	memset(f, 0, sizeof *f);
	f->context = g_main_context_new();
	f->bc.name = (char *)"test";
	f->bc.protocol = GH_PROTO_SMTP;
	f->bc.servers = g_array_new(FALSE, TRUE, sizeof(GhHostPort));
	f->bc.tls = GH_TLS_NONE;
	f->bc.login = GH_LOGIN_NONE;
	f->bc.connect_timeout = 600; /* a test that wants the timer sets it */
}

static void
fixture_tear_down(Fixture *f, gconstpointer data)
{
	(void)data;
	if (f->done == 0)
		gh_backend_link_cancel(f->link);
	gh_conn_free(f->conn);
	run_pending(f);
	g_main_context_unref(f->context);
	for (guint i = 0; i < f->bc.servers->len; i++)
		g_free(g_array_index(f->bc.servers, GhHostPort, i).host);
	g_array_unref(f->bc.servers);
	g_free(f->reply);
	if (f->reply_bytes != NULL)
		g_bytes_unref(f->reply_bytes);
	g_free(f->server);
	g_free(f->error);
}

static void
add_server(Fixture *f, guint16 port)
{
	GhHostPort hp = {.host = g_strdup("127.0.0.1"), .port = port};
	g_array_append_val(f->bc.servers, hp);
}

/* A key that makes the connector start at the first server listed. */
static const char *
key_for_first(guint n)
{
	static char key[16];
	for (guint i = 0;; i++) {
		g_snprintf(key, sizeof key, "u%u", i);
		if (gh_backend_first_server(key, n) == 0)
			return key;
	}
}

static void
start(Fixture *f, const GhSecret *password)
{
	GhBackendParams p = {
	    .backend = &f->bc,
	    .hash_key = key_for_first(f->bc.servers->len),
	    .user = "alice",
	    .password = password,
	    .client_addr = "192.0.2.7",
	    .client_port = 40000,
	    .local_addr = "127.0.0.1",
	    .local_port = 25,
	    .hostname = "gw.example",
	    .session_id = "s1",
	};
	f->link = gh_backend_link_start(&p, &dialogue, f, f->context, on_done, f);
}

/* Started before the login is checked: no user, no password yet. */
static void
start_early(Fixture *f)
{
	GhBackendParams p = {
	    .backend = &f->bc,
	    .hash_key = key_for_first(f->bc.servers->len),
	    .client_addr = "192.0.2.7",
	    .client_port = 40000,
	    .local_addr = "127.0.0.1",
	    .local_port = 25,
	    .hostname = "gw.example",
	    .session_id = "s1",
	    .login_later = TRUE,
	};
	f->link = gh_backend_link_start(&p, &dialogue, f, f->context, on_done, f);
}

/* Nothing from the link on `fd` now (after what is due has run). */
static void
hear_nothing(Fixture *f, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	run_pending(f);
	g_assert_cmpint(poll(&p, 1, 0), ==, 0);
}

/* An early link connected to a fresh server that says "park": parked. */
static int
parked_link(Fixture *f, int *listener)
{
	guint16 port;
	int peer;

	*listener = local_socket(TRUE, &port);
	add_server(f, port);
	start_early(f);
	peer = accept_one(*listener);
	say(peer, "park\r\n");
	run_until(f, &f->parked, 1);
	return peer;
}

static char *
server_name(guint16 port)
{
	return g_strdup_printf("127.0.0.1:%u", port);
}

/* ---- tests ---- */

static void
test_ok_hands_over(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *heard = NULL;
	g_autofree char *after = NULL;
	g_autofree char *name = server_name(port);
	(void)data;

	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	say(peer, "hello\r\n");
	run_until(f, &f->inputs, 1);
	heard = hear(peer);
	g_assert_cmpstr(heard, ==, "HI\r\n");

	/* the server runs ahead: what comes after the last step is the owner's */
	say(peer, "ok\r\nearly\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_nonnull(f->conn);
	g_assert_cmpstr(f->reply, ==, "welcome");
	g_assert_cmpstr(f->server, ==, name);
	g_assert_null(f->error);
	g_assert_cmpuint(f->inputs, ==, 2);
	g_assert_cmpuint(f->freed, ==, 1);
	g_assert_cmpmem(f->conn->in->data, f->conn->in->len, "early\r\n", 7);

	/* the connection is the owner's now, and works */
	g_assert_true(gh_conn_queue(f->conn, "bye\r\n", 5));
	after = hear(peer);
	g_assert_cmpstr(after, ==, "bye\r\n");

	/* and the link is gone: nothing more comes from it */
	say(peer, "hello\r\n");
	run_pending(f);
	g_assert_cmpuint(f->inputs, ==, 2);
	g_assert_cmpuint(f->done, ==, 1);
	close(peer);
	close(listener);
}

static void
test_refused_fails_over(Fixture *f, gconstpointer data)
{
	guint16 dead_port, port;
	int dead = local_socket(FALSE, &dead_port);
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *name = server_name(port);
	g_autofree char *pattern =
	    g_strdup_printf("session s1: backend 127.0.0.1:%u: *", dead_port);
	(void)data;

	add_server(f, dead_port);
	add_server(f, port);
	g_test_expect_message("gh-daemon", G_LOG_LEVEL_MESSAGE, pattern);
	start(f, NULL);
	run_until(f, &f->resets, 1);
	peer = accept_one(listener);
	say(peer, "ok\r\n");
	run_until(f, &f->done, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_cmpstr(f->server, ==, name);
	g_assert_cmpuint(f->resets, ==, 1);
	close(peer);
	close(listener);
	close(dead);
}

static void
test_no_from_input_fails_over(Fixture *f, gconstpointer data)
{
	guint16 port1, port2;
	int l1 = local_socket(TRUE, &port1);
	int l2 = local_socket(TRUE, &port2);
	int p1, p2;
	g_autofree char *name = server_name(port2);
	g_autofree char *msg = g_strdup_printf("session s1: backend 127.0.0.1:%u: said no", port1);
	g_autofree char *closed = NULL;
	(void)data;

	add_server(f, port1);
	add_server(f, port2);
	start(f, NULL);
	p1 = accept_one(l1);
	g_test_expect_message("gh-daemon", G_LOG_LEVEL_MESSAGE, msg);
	/* "hello" after the "no" is for a connection that is no more */
	say(p1, "no\r\nhello\r\n");
	run_until(f, &f->resets, 1);
	p2 = accept_one(l2);
	g_test_assert_expected_messages();
	g_assert_cmpuint(f->inputs, ==, 1);
	closed = hear(p1);
	g_assert_cmpstr(closed, ==, "");

	say(p2, "ok\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_cmpstr(f->server, ==, name);
	g_assert_cmpuint(f->inputs, ==, 2);
	g_assert_cmpuint(f->resets, ==, 1);
	close(p1);
	close(p2);
	close(l1);
	close(l2);
}

static void
test_silence_times_out(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *want = g_strdup_printf("127.0.0.1:%u: no reply within 1 s", port);
	g_autofree char *msg = g_strdup_printf("session s1: backend %s", want);
	(void)data;

	f->bc.connect_timeout = 1;
	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	g_test_expect_message("gh-daemon", G_LOG_LEVEL_MESSAGE, msg);
	run_until(f, &f->done, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(f->result, ==, GH_BACKEND_FAILED);
	g_assert_null(f->conn);
	g_assert_cmpstr(f->error, ==, want);
	g_assert_cmpuint(f->connected, ==, 1);
	g_assert_cmpuint(f->freed, ==, 1);
	close(peer);
	close(listener);
}

static void
test_fail_inside_input_ends_once(Fixture *f, gconstpointer data)
{
	guint16 port1, port2;
	int l1 = local_socket(TRUE, &port1);
	int l2 = local_socket(TRUE, &port2);
	int peer;
	g_autofree char *want = g_strdup_printf("127.0.0.1:%u: bad greeting", port1);
	g_autofree char *msg = g_strdup_printf("session s1: backend %s", want);
	g_autofree char *closed = NULL;
	struct pollfd p = {.fd = l2, .events = POLLIN};
	(void)data;

	/* a second server that must not be tried: the failure said no retry */
	add_server(f, port1);
	add_server(f, port2);
	start(f, NULL);
	peer = accept_one(l1);
	g_test_expect_message("gh-daemon", G_LOG_LEVEL_MESSAGE, msg);
	say(peer, "bad\r\nhello\r\n");
	run_until(f, &f->done, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(f->result, ==, GH_BACKEND_FAILED);
	g_assert_cmpstr(f->error, ==, want);
	g_assert_null(f->conn);
	g_assert_cmpuint(f->inputs, ==, 1);
	closed = hear(peer);
	g_assert_cmpstr(closed, ==, "");

	say(peer, "hello\r\n");
	close(peer);
	run_pending(f);
	g_assert_cmpuint(f->done, ==, 1);
	g_assert_cmpuint(f->inputs, ==, 1);
	g_assert_cmpuint(f->freed, ==, 1);
	g_assert_cmpint(poll(&p, 1, 0), ==, 0);
	close(l1);
	close(l2);
}

static void
test_refused_login(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *want = g_strdup_printf("127.0.0.1:%u: refused here", port);
	(void)data;

	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	say(peer, "refuse\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_REFUSED);
	g_assert_null(f->conn);
	g_assert_cmpstr(f->error, ==, want);
	close(peer);
	close(listener);
}

static void
test_cancel(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *closed = NULL;
	(void)data;

	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	run_until(f, &f->connected, 1);
	gh_backend_link_cancel(f->link);
	f->link = NULL;
	g_assert_cmpuint(f->freed, ==, 1);
	closed = hear(peer);
	g_assert_cmpstr(closed, ==, "");
	say(peer, "ok\r\n");
	run_pending(f);
	g_assert_cmpuint(f->done, ==, 0);
	g_assert_cmpuint(f->inputs, ==, 0);
	close(peer);
	close(listener);
}

static void
test_cancel_inside_input(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autofree char *closed = NULL;
	(void)data;

	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	say(peer, "cancel\r\nok\r\n");
	run_until(f, &f->freed, 1);
	f->link = NULL;
	closed = hear(peer);
	g_assert_cmpstr(closed, ==, "");
	run_pending(f);
	g_assert_cmpuint(f->done, ==, 0);
	g_assert_cmpuint(f->inputs, ==, 1);
	close(peer);
	close(listener);
}

static void
test_cancel_inside_done(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	(void)data;

	f->cancel_in_done = TRUE;
	add_server(f, port);
	start(f, NULL);
	peer = accept_one(listener);
	say(peer, "ok\r\n");
	run_until(f, &f->done, 1);
	run_pending(f);
	g_assert_cmpuint(f->done, ==, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_cmpuint(f->freed, ==, 1);
	close(peer);
	close(listener);
}

static void
test_copies_and_forgets_password(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	GhSecret *pw = gh_secret_new("s3cret", 6);
	g_autofree char *heard = NULL;
	(void)data;

	add_server(f, port);
	start(f, pw);
	/* the caller's secret may go at once: the link has its own */
	gh_secret_free(pw);
	g_assert_cmpstr(gh_backend_link_params(f->link)->session_id, ==, "s1");
	g_assert_cmpstr(gh_backend_link_params(f->link)->client_addr, ==, "192.0.2.7");
	peer = accept_one(listener);
	say(peer, "pass\r\n");
	run_until(f, &f->inputs, 1);
	heard = hear(peer);
	g_assert_cmpstr(heard, ==, "PASS s3cret\r\n");
	g_assert_true(f->password_seen);
	g_assert_false(f->password_left);
	g_assert_null(gh_backend_link_password(f->link));

	say(peer, "ok\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	close(peer);
	close(listener);
}

/* ---- the IMAP dialogue on a link ---- */

/* Run the loop until the server's end has something to read. */
static void
run_until_readable(Fixture *f, int fd)
{
	for (guint i = 0; i < WAIT_MS / 10; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 10) == 1)
			return;
		run_pending(f);
	}
	g_assert_not_reached();
}

/* What the backend answers to the login goes to the client byte for byte,
 * a NUL in its tagged OK included (found by tests/fuzz/fuzz-imap-backend:
 * the line was copied with g_strndup, which stopped at the NUL and zeroed
 * the rest, its CRLF too). */
static void
test_imap_reply_verbatim(Fixture *f, gconstpointer data)
{
	static const char ok[] = "a1 OK [CAPABILITY IMAP4rev1 X\0Y] Logged in\r\n";
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	GhSecret *pw = gh_secret_new("pw", 2);
	g_autofree char *login = NULL;
	GhBackendParams p = {
	    .backend = &f->bc,
	    .hash_key = "alice",
	    .user = "alice",
	    .password = pw,
	    .client_addr = "192.0.2.7",
	    .client_port = 40000,
	    .local_addr = "127.0.0.1",
	    .local_port = 143,
	    .hostname = "gw.example",
	    .session_id = "s1",
	};
	(void)data;

	f->bc.protocol = GH_PROTO_IMAP;
	f->bc.login = GH_LOGIN_PASSTHROUGH;
	add_server(f, port);
	f->link = gh_imap_backend_connect(&p, "a1", NULL, f->context, on_done, f);
	gh_secret_free(pw);
	peer = accept_one(listener);
	say(peer, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
	run_until_readable(f, peer);
	login = hear(peer);
	g_assert_cmpstr(login, ==, "a1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n");
	g_assert_cmpint(send(peer, ok, sizeof ok - 1, MSG_NOSIGNAL), ==, (gssize)sizeof ok - 1);
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_nonnull(f->reply_bytes);
	g_assert_cmpmem(g_bytes_get_data(f->reply_bytes, NULL), g_bytes_get_size(f->reply_bytes),
			ok, sizeof ok - 1);
	close(peer);
	close(listener);
}

static void
test_park_then_login(Fixture *f, gconstpointer data)
{
	int listener;
	int peer = parked_link(f, &listener);
	g_autoptr(GhSecret) pw = gh_secret_new("s3cret", 6);
	g_autofree char *heard = NULL;
	(void)data;

	/* parked: not a byte, not a credential, no end */
	hear_nothing(f, peer);
	g_assert_cmpuint(f->logins, ==, 0);
	g_assert_cmpuint(f->done, ==, 0);
	gh_backend_link_login(f->link, "alice", pw, on_done, f);
	/* the login goes from the loop, never inside the call */
	g_assert_cmpuint(f->logins, ==, 0);
	run_until(f, &f->logins, 1);
	heard = hear(peer);
	g_assert_cmpstr(heard, ==, "LOGIN alice s3cret\r\n");
	say(peer, "ok\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_OK);
	g_assert_nonnull(f->conn);
	close(peer);
	close(listener);
}

static void
test_login_before_park(Fixture *f, gconstpointer data)
{
	guint16 port;
	int listener = local_socket(TRUE, &port);
	int peer;
	g_autoptr(GhSecret) pw = gh_secret_new("pw", 2);
	g_autofree char *heard = NULL;
	(void)data;

	/* the verdict comes while the server has not even greeted: the
	 * dialogue goes straight on when it gets there */
	add_server(f, port);
	start_early(f);
	peer = accept_one(listener);
	gh_backend_link_login(f->link, "bob", pw, on_done, f);
	say(peer, "park\r\n");
	run_until(f, &f->logins, 1);
	g_assert_cmpuint(f->parked, ==, 0);
	heard = hear(peer);
	g_assert_cmpstr(heard, ==, "LOGIN bob pw\r\n");
	close(peer);
	close(listener);
}

static void
test_park_cancel_says_bye(Fixture *f, gconstpointer data)
{
	int listener;
	int peer = parked_link(f, &listener);
	g_autofree char *bye = NULL;
	g_autofree char *end = NULL;
	(void)data;

	gh_backend_link_cancel(f->link);
	bye = hear(peer);
	g_assert_cmpstr(bye, ==, "BYE\r\n");
	end = hear(peer);
	g_assert_cmpstr(end, ==, "");
	run_pending(f);
	g_assert_cmpuint(f->done, ==, 0);
	g_assert_cmpuint(f->freed, ==, 1);
	f->done = 1; /* cancelled: nothing for the tear-down to cancel */
	close(peer);
	close(listener);
}

static void
test_park_lost(Fixture *f, gconstpointer data)
{
	const char *how = data;
	int listener;
	int peer = parked_link(f, &listener);
	g_autofree char *server = NULL;
	g_autofree char *want = NULL;

	if (strcmp(how, "closes") == 0)
		close(peer);
	else
		say(peer, "hello\r\n");
	run_until(f, &f->done, 1);
	g_assert_cmpint(f->result, ==, GH_BACKEND_LOST);
	g_assert_null(f->conn);
	server = server_name((guint16)g_array_index(f->bc.servers, GhHostPort, 0).port);
	want = g_strdup_printf("%s: %s while the login was being checked", server,
			       strcmp(how, "closes") == 0 ? "closed the connection" : "spoke");
	g_assert_cmpstr(f->error, ==, want);
	/* the dialogue was not asked to read what a parked server said */
	g_assert_cmpuint(f->inputs, ==, 1);
	if (strcmp(how, "closes") != 0)
		close(peer);
	close(listener);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
#define ADD(path, func) g_test_add(path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
	ADD("/backend-link/ok-hands-over", test_ok_hands_over);
	ADD("/backend-link/refused-fails-over", test_refused_fails_over);
	ADD("/backend-link/no-from-input-fails-over", test_no_from_input_fails_over);
	ADD("/backend-link/silence-times-out", test_silence_times_out);
	ADD("/backend-link/fail-inside-input-ends-once", test_fail_inside_input_ends_once);
	ADD("/backend-link/refused-login", test_refused_login);
	ADD("/backend-link/cancel", test_cancel);
	ADD("/backend-link/cancel-inside-input", test_cancel_inside_input);
	ADD("/backend-link/cancel-inside-done", test_cancel_inside_done);
	ADD("/backend-link/copies-and-forgets-password", test_copies_and_forgets_password);
	ADD("/backend-link/imap-reply-verbatim", test_imap_reply_verbatim);
	ADD("/backend-link/park-then-login", test_park_then_login);
	ADD("/backend-link/login-before-park", test_login_before_park);
	ADD("/backend-link/park-cancel-says-bye", test_park_cancel_says_bye);
	g_test_add("/backend-link/park-lost/closes", Fixture, "closes", fixture_set_up,
		   test_park_lost, fixture_tear_down);
	g_test_add("/backend-link/park-lost/speaks", Fixture, "speaks", fixture_set_up,
		   test_park_lost, fixture_tear_down);
#undef ADD
	return g_test_run();
}
