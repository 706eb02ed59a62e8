/*
 * test-session.c: the session core (daemon/session/) on its own, through a
 * protocol table written here: a line protocol whose words name the turning
 * points ("GREET", "CHAL <b64>", "FAILED", ...).  A client on a socketpair
 * drives it; the auth chain is the test module fake.so; the backend is a
 * thread here that greets "HELLO" and echoes.  What is asserted is what a
 * client sees: the bytes, in order, and the end of the connection.
 *
 * Nothing here measures time: the waits are for events, in order; a
 * watchdog of the test's own ends a test that hangs, so that it fails
 * instead of hanging the suite.
 */
#include "gh-build.h"

#include "common/line.h"
#include "config/config.h"
#include "net/tls.h"
#include "session/protocol.h"

#include <arpa/inet.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANG_GUARD_S 120

/* ------------------------------------------------------------ the protocol */

static gint n_backend_connects;

static void
line_say(GhSession *s, GhSay what, const char *arg)
{
	static const char *const words[] = {
	    [GH_SAY_GREETING] = "GREET",
	    [GH_SAY_TOO_MANY_CONNECTIONS] = "TOOMANYCONN",
	    [GH_SAY_SHUTDOWN] = "SHUTDOWN",
	    [GH_SAY_IDLE_TIMEOUT] = "IDLE",
	    [GH_SAY_TOO_MANY_ERRORS] = "TOOMANYERRORS",
	    [GH_SAY_SASL_CHALLENGE] = "CHAL",
	    [GH_SAY_SASL_CANCELLED] = "CANCELLED",
	    [GH_SAY_SASL_MALFORMED] = "MALFORMED",
	    [GH_SAY_SASL_LINE_TOO_LONG] = "TOOLONG",
	    [GH_SAY_AUTH_FAILED] = "FAILED",
	    [GH_SAY_AUTH_TEMPFAIL] = "TEMPFAIL",
	    [GH_SAY_TOO_MANY_AUTH_FAILS] = "TOOMANYFAILS",
	    [GH_SAY_LOGGED_IN] = "LOGGEDIN",
	    [GH_SAY_BACKEND_UNAVAILABLE] = "UNAVAILABLE",
	};
	if (arg != NULL)
		gh_session_say(s, "%s %s%s%s", words[what], s->login.tag ? s->login.tag : "-",
			       *arg ? " " : "", arg);
	else
		gh_session_say(s, "%s", words[what]);
	if (what == GH_SAY_SASL_LINE_TOO_LONG)
		(void)gh_session_count_error(s);
	if (what == GH_SAY_BACKEND_UNAVAILABLE) {
		/* the JOIN line is still in front: it is answered, not retried */
		gsize len = 0, used = 0;
		if (gh_line_next((const char *)s->conn->in->data, s->conn->in->len, 256, &len,
				 &used, NULL) == GH_LINE_OK)
			gh_conn_consume(s->conn, used);
	}
}

/* AUTH TAG MECH [IR] | STARTTLS TAG [ARGS] | NOOP | QUIT | JOIN | anything else: ERR */
static GhInput
line_command(GhSession *s)
{
	GhConn *c = s->conn;
	gsize len = 0, used = 0;
	g_auto(GStrv) w = NULL;
	g_autofree char *line = NULL;

	if (gh_line_next((const char *)c->in->data, c->in->len, 256, &len, &used, NULL) !=
	    GH_LINE_OK)
		return GH_INPUT_NEED_MORE;
	line = g_strndup((const char *)c->in->data, len);
	w = g_strsplit(line, " ", 4);
	if (g_strcmp0(w[0], "JOIN") == 0) {
		/* the line stays for the backend */
		gh_session_join_backend(s);
		return GH_INPUT_DONE;
	}
	gh_conn_consume(c, used);
	if (g_strcmp0(w[0], "AUTH") == 0 && w[1] != NULL && w[2] != NULL)
		gh_session_auth_command(s, w[1], w[2], w[3], w[3] != NULL ? strlen(w[3]) : 0);
	else if (g_strcmp0(w[0], "STARTTLS") == 0 && w[1] != NULL)
		gh_session_starttls_command(s, w[1], w[2] != NULL);
	else if (g_strcmp0(w[0], "NOOP") == 0)
		gh_session_say(s, "OK");
	else if (g_strcmp0(w[0], "QUIT") == 0) {
		gh_session_say(s, "BYE");
		gh_session_close(s);
	} else {
		gh_session_say(s, "ERR");
		(void)gh_session_count_error(s);
	}
	return GH_INPUT_DONE;
}

static gpointer
line_new(GhSession *s)
{
	(void)s;
	return g_strdup("state");
}

/* the backend says HELLO; then the link is done */
static void
dlg_connected(GhBackendLink *l, gpointer d)
{
	(void)d;
	gh_backend_link_expect(l);
}

static GhBackendStep
dlg_input(GhBackendLink *l, gpointer d)
{
	GhConn *c = gh_backend_link_conn(l);
	gsize len = 0, used = 0;
	(void)d;
	if (gh_line_next((const char *)c->in->data, c->in->len, 256, &len, &used, NULL) !=
	    GH_LINE_OK)
		return GH_BACKEND_STEP_WAIT;
	if (len == 5 && memcmp(c->in->data, "HELLO", 5) == 0) {
		gh_conn_consume(c, used);
		gh_backend_link_finish(l, GH_BACKEND_OK, NULL, NULL);
	} else {
		gh_backend_link_fail(l, FALSE, "no HELLO");
	}
	return GH_BACKEND_STEP_STOP;
}

static void
dlg_nothing(gpointer d)
{
	(void)d;
}

static const GhBackendDialogue hello_dialogue = {
    .connected = dlg_connected,
    .input = dlg_input,
    .reset = dlg_nothing,
    .free = dlg_nothing,
};

static GhBackendLink *
line_backend_connect(GhSession *s, const GhBackendParams *p, GhBackendDone done, gpointer data)
{
	g_atomic_int_inc(&n_backend_connects);
	return gh_backend_link_start(p, &hello_dialogue, NULL, s->host->context, done, data);
}

static const GhCommandWords line_words = {
    .starttls_syntax = "TLS-SYNTAX",
    .starttls_active = "TLS-ACTIVE",
    .starttls_unavailable = "NO-TLS",
    .starttls_go = "TLS-GO",
    .auth_unsupported = "NO-MECH",
    .auth_plaintext_refused = "NO-PLAINTEXT",
};

static const GhProtocol line_protocol = {
    .name = "line",
    .words = &line_words,
    .max_errors = 3,
    .sasl_line_max = 64,
    .new = line_new,
    .free = g_free,
    .say = line_say,
    .command = line_command,
    .backend_connect = line_backend_connect,
};

/* ------------------------------------------------------------ the backend */

static int backend_fd = -1;
static guint16 backend_port;

static gpointer
backend_serve(gpointer data)
{
	int fd = GPOINTER_TO_INT(data);
	char buf[4096];
	ssize_t n;
	(void)!write(fd, "HELLO\r\n", 7);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		(void)!write(fd, buf, (size_t)n);
	close(fd);
	return NULL;
}

static gpointer
backend_accept(gpointer data)
{
	(void)data;
	for (;;) {
		int fd = accept(backend_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		g_thread_unref(g_thread_new("backend", backend_serve, GINT_TO_POINTER(fd)));
	}
}

static void
backend_start(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof sin;
	backend_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(backend_fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(listen(backend_fd, 16), ==, 0);
	g_assert_cmpint(getsockname(backend_fd, (struct sockaddr *)&sin, &len), ==, 0);
	backend_port = ntohs(sin.sin_port);
	g_thread_unref(g_thread_new("accept", backend_accept, NULL));
}

/* ------------------------------------------------------------ fixture */

typedef struct {
	char *dir;
	GhConfig *config;
	GhAuthCore *core;
	GhAuthSet *set;
	GhTls *tls;
	GhSessionHost host;
	guint ended;
	GhSession *session; /* until it ends */
	int client;         /* our end of the socketpair */
	GString *got;
	gboolean eof;
	guint watchdog;
} Fixture;

static gboolean
on_hang(gpointer data)
{
	(void)data;
	g_error("the test hangs: nothing it waits for came in %u s", HANG_GUARD_S);
	return G_SOURCE_REMOVE;
}

static void
on_ended(GhSession *s, gpointer data)
{
	Fixture *f = data;
	g_assert_true(s == f->session);
	f->ended++;
	f->session = NULL;
}

static const char config_text[] = "[gatehouse]\n"
				  "hostname = gw.test\n"
				  "module_dir = %s\n"
				  "failure_delay = 0\n"
				  "proxy_trusted_networks = 192.0.2.0/24\n"
				  "[listener t]\n"
				  "protocol = smtp\n"
				  "listen = 127.0.0.1:1\n"
				  "plaintext_auth = always\n"
				  "auth = fake\n"
				  "backend = b\n"
				  "max_auth_failures = 2\n"
				  "[listener down]\n"
				  "protocol = smtp\n"
				  "listen = 127.0.0.1:2\n"
				  "plaintext_auth = always\n"
				  "auth = down\n"
				  "backend = b\n"
				  "[listener nobackend]\n"
				  "protocol = smtp\n"
				  "listen = 127.0.0.1:3\n"
				  "plaintext_auth = always\n"
				  "auth = fake\n"
				  "backend = dead\n"
				  "[listener behind]\n"
				  "protocol = smtp\n"
				  "listen = 127.0.0.1:5\n"
				  "plaintext_auth = always\n"
				  "auth = fake\n"
				  "backend = b\n"
				  "proxy_protocol = yes\n"
				  "[listener small]\n"
				  "protocol = smtp\n"
				  "listen = 127.0.0.1:4\n"
				  "auth = fake\n"
				  "backend = b\n"
				  "max_connections = 2\n"
				  "[backend b]\n"
				  "protocol = smtp\n"
				  "servers = 127.0.0.1:%u\n"
				  "[backend dead]\n"
				  "protocol = smtp\n"
				  "servers = 127.0.0.1:1\n"
				  "[auth fake]\n"
				  "module = fake\n"
				  "users = alice:secret\n"
				  "[auth down]\n"
				  "module = fake\n"
				  "tempfail = yes\n";

static void
setup(Fixture *f, gconstpointer data)
{
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	const char *modules = g_getenv("GH_TEST_MODULE_DIR");
	g_autofree char *path = NULL;
	g_autofree char *text = NULL;
	GhAuthSettings settings = {.workers = 2, .queue_max = 100};
	(void)data;

	g_assert_nonnull(modules);
	f->dir = g_dir_make_tmp("gh-session-XXXXXX", NULL);
	path = g_build_filename(f->dir, "gatehouse.conf", NULL);
	text = g_strdup_printf(config_text, modules, backend_port);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	f->config = gh_config_load(path, problems);
	for (guint i = 0; i < problems->len; i++)
		g_printerr("%s\n", (char *)problems->pdata[i]);
	g_assert_nonnull(f->config);
	f->core = gh_auth_core_new(&settings);
	f->set = gh_auth_set_new(f->core, f->config->kf, f->config->path, f->config->module_dir,
				 problems);
	g_assert_nonnull(f->set);
	f->tls = gh_tls_new(f->config, problems);
	g_assert_nonnull(f->tls);
	f->host.context = g_main_context_default();
	f->host.ended = on_ended;
	f->host.data = f;
	f->host.stats = gh_stats_new();
	f->got = g_string_new(NULL);
	f->watchdog = g_timeout_add_seconds(HANG_GUARD_S, on_hang, NULL);
	n_backend_connects = 0;
}

static void
teardown(Fixture *f, gconstpointer data)
{
	(void)data;
	g_source_remove(f->watchdog);
	if (f->session != NULL)
		gh_session_abort(f->session);
	g_assert_null(f->session);
	if (f->client >= 0)
		close(f->client);
	/* let what the auth pool hands back be freed */
	while (g_main_context_iteration(NULL, FALSE))
		;
	gh_stats_free(f->host.stats);
	gh_tls_unref(f->tls);
	gh_auth_set_unref(f->set);
	gh_auth_core_free(f->core);
	while (g_main_context_iteration(NULL, FALSE))
		;
	gh_config_unref(f->config);
	g_string_free(f->got, TRUE);
	{
		g_autofree char *conf = g_build_filename(f->dir, "gatehouse.conf", NULL);
		(void)g_remove(conf);
		(void)g_rmdir(f->dir);
	}
	g_free(f->dir);
}

/* A session of listener `listener` from `peer_ip` (IPv4, host order). */
static void
start_from(Fixture *f, const char *listener, guint n_open, guint32 peer_ip)
{
	int sv[2];
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
	GhGeneration gen = {
	    .config = gh_config_ref(f->config),
	    .tls = gh_tls_ref(f->tls),
	    .auth_set = gh_auth_set_ref(f->set),
	};
	peer.sin_addr.s_addr = htonl(peer_ip);
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), ==,
			0);
	f->client = sv[0];
	GhSessionAddrs addrs = {.peer = (struct sockaddr *)&peer};
	f->session = gh_session_new(&f->host, &line_protocol, &gen, listener, sv[1], &addrs);
	g_assert_null(gen.config); /* the references went to the session */
	gh_session_begin(f->session, n_open);
}

/* A session of listener `listener` from 192.0.2.1, greeted (or refused: n_open). */
static void
start_on(Fixture *f, const char *listener, guint n_open)
{
	start_from(f, listener, n_open, 0xc0000201);
	if (f->session != NULL)
		g_assert_cmpstr(f->session->remote, ==, "192.0.2.1");
}

static void
start(Fixture *f)
{
	start_on(f, "t", 1);
}

static void
client_send(Fixture *f, const char *text)
{
	gsize len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = send(f->client, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			g_main_context_iteration(NULL, FALSE);
			continue;
		}
		g_assert_cmpint(n, >, 0);
		off += (gsize)n;
	}
}

/* Run the loop and read what the session sends, until `done` says so. */
static void
pump(Fixture *f, gboolean (*done)(Fixture *f, gconstpointer arg), gconstpointer arg)
{
	while (!done(f, arg)) {
		char buf[4096];
		ssize_t n;
		struct pollfd p = {.fd = f->client, .events = POLLIN};
		while (g_main_context_iteration(NULL, FALSE))
			;
		if (f->eof) {
			g_usleep(1000);
			continue;
		}
		(void)poll(&p, 1, 1);
		n = recv(f->client, buf, sizeof buf, 0);
		if (n > 0)
			g_string_append_len(f->got, buf, n);
		else if (n == 0)
			f->eof = TRUE;
	}
}

static gboolean
has_text(Fixture *f, gconstpointer arg)
{
	return strstr(f->got->str, arg) != NULL || f->eof;
}

/* The session sends exactly `text` next (text: whole lines, CRLF-joined). */
static void
expect(Fixture *f, const char *text)
{
	g_autofree char *want = g_strdup(text);
	pump(f, has_text, text);
	g_assert_cmpstr(f->got->str, ==, want);
	g_string_truncate(f->got, 0);
}

static gboolean
is_over(Fixture *f, gconstpointer arg)
{
	(void)arg;
	return f->eof && f->ended > 0;
}

/* The connection is closed and the session gone. */
static void
expect_end(Fixture *f)
{
	pump(f, is_over, NULL);
	g_assert_cmpstr(f->got->str, ==, "");
	g_assert_cmpuint(f->ended, ==, 1);
}

static char *
b64(const char *s, gsize len)
{
	return g_base64_encode((const guchar *)s, len);
}

/* ------------------------------------------------------------ tests */

static void
test_greet_commands_quit(Fixture *f, gconstpointer data)
{
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	/* pipelined: answered in order */
	client_send(f, "NOOP\r\nbogus\r\nNOOP\r\nQUIT\r\nNOOP\r\n");
	expect(f, "OK\r\nERR\r\nOK\r\nBYE\r\n");
	expect_end(f);
}

static void
test_max_connections(Fixture *f, gconstpointer data)
{
	(void)data;
	/* max_connections = 2: the third open connection is refused */
	start_on(f, "small", 3);
	expect(f, "TOOMANYCONN\r\n");
	expect_end(f);
}

static void
test_within_max_connections(Fixture *f, gconstpointer data)
{
	(void)data;
	start_on(f, "small", 2);
	expect(f, "GREET\r\n");
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_errors_close(Fixture *f, gconstpointer data)
{
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "a\r\nb\r\nc\r\nNOOP\r\n");
	/* the third error closes; the NOOP behind it is not served */
	expect(f, "ERR\r\nERR\r\nERR\r\nTOOMANYERRORS\r\n");
	expect_end(f);
}

static void
test_plain_login_relays(Fixture *f, gconstpointer data)
{
	g_autofree char *ir = b64("\0alice\0secret", 13);
	g_autofree char *cmd = g_strdup_printf("AUTH t1 PLAIN %s\r\nafter login\r\n", ir);
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	/* "after login" is pipelined: it waits and goes to the backend */
	client_send(f, cmd);
	expect(f, "LOGGEDIN\r\nafter login\r\n");
	g_assert_cmpint(n_backend_connects, ==, 1);
	g_assert_cmpint(f->session->phase, ==, GH_PHASE_RELAY);
	g_assert_null(f->session->login.password);
	g_assert_cmpstr(f->session->login.canonical, ==, "alice");
	client_send(f, "echo me\r\n");
	expect(f, "echo me\r\n");
	shutdown(f->client, SHUT_WR);
	expect_end(f);
}

static void
test_login_steps_and_failures(Fixture *f, gconstpointer data)
{
	g_autofree char *user = b64("alice", 5);
	g_autofree char *bad = b64("wrong", 5);
	g_autofree char *u = g_strdup_printf("%s\r\n", user);
	g_autofree char *p = g_strdup_printf("%s\r\n", bad);
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 LOGIN\r\n");
	expect(f, "CHAL t1 VXNlcm5hbWU6\r\n");
	client_send(f, u);
	expect(f, "CHAL t1 UGFzc3dvcmQ6\r\n");
	client_send(f, p);
	expect(f, "FAILED\r\n");
	g_assert_null(f->session->login.password);
	/* the second failure is the last (max_auth_failures = 2) */
	client_send(f, "AUTH t2 PLAIN\r\n");
	expect(f, "CHAL t2\r\n");
	{
		g_autofree char *resp = b64("\0alice\0nope", 11);
		g_autofree char *line = g_strdup_printf("%s\r\nNOOP\r\n", resp);
		client_send(f, line);
	}
	expect(f, "FAILED\r\nTOOMANYFAILS\r\n");
	expect_end(f);
	g_assert_cmpint(n_backend_connects, ==, 0);
}

/* The checks the core makes for every protocol's AUTH and STARTTLS, with
 * the protocol's words: an unknown mechanism (not counted: the third
 * error would close), plaintext refused where the listener says so,
 * STARTTLS with arguments (counted) or where TLS is not offered; a
 * mechanism in any case is the mechanism. */
static void
test_command_checks_and_words(Fixture *f, gconstpointer data)
{
	g_autofree char *ir = b64("\0alice\0secret", 13);
	g_autofree char *cmd = g_strdup_printf("AUTH t5 pLaIn %s\r\n", ir);
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 CRAM-MD5\r\nAUTH t2 FOO\r\nAUTH t3 BAR\r\n");
	expect(f, "t1 NO-MECH\r\nt2 NO-MECH\r\nt3 NO-MECH\r\n");
	client_send(f, "STARTTLS t4\r\nSTARTTLS t4 now\r\n");
	expect(f, "t4 NO-TLS\r\nt4 TLS-SYNTAX\r\n");
	client_send(f, cmd);
	expect(f, "LOGGEDIN\r\n");
	g_assert_cmpint(n_backend_connects, ==, 1);
}

static void
test_plaintext_refused_in_the_protocols_words(Fixture *f, gconstpointer data)
{
	(void)data;
	start_on(f, "small", 1);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 PLAIN\r\nAUTH t2 login\r\nNOOP\r\n");
	expect(f, "t1 NO-PLAINTEXT\r\nt2 NO-PLAINTEXT\r\nOK\r\n");
}

static void
test_authzid_is_a_failed_login(Fixture *f, gconstpointer data)
{
	g_autofree char *ir = b64("bob\0alice\0secret", 16);
	g_autofree char *cmd = g_strdup_printf("AUTH t1 PLAIN %s\r\nNOOP\r\n", ir);
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, cmd);
	expect(f, "FAILED\r\nOK\r\n");
	g_assert_cmpint(n_backend_connects, ==, 0);
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_cancel_malformed_too_long(Fixture *f, gconstpointer data)
{
	char longline[200];
	(void)data;
	memset(longline, 'A', sizeof longline - 3);
	memcpy(longline + sizeof longline - 3, "\r\n", 3);
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 PLAIN\r\n*\r\n");
	expect(f, "CHAL t1\r\nCANCELLED\r\n");
	client_send(f, "AUTH t2 LOGIN\r\n!!notbase64\r\n");
	expect(f, "CHAL t2 VXNlcm5hbWU6\r\nMALFORMED\r\n");
	/* a response over sasl_line_max (64): dropped whole, then commands again */
	client_send(f, "AUTH t3 PLAIN\r\n");
	expect(f, "CHAL t3\r\n");
	client_send(f, longline);
	/* three errors: cancelled, malformed, too long */
	expect(f, "TOOLONG\r\nTOOMANYERRORS\r\n");
	expect_end(f);
}

static void
test_tempfail_then_login(Fixture *f, gconstpointer data)
{
	g_autofree char *ir = b64("\0alice\0secret", 13);
	g_autofree char *cmd = g_strdup_printf("AUTH t1 PLAIN %s\r\nNOOP\r\n", ir);
	(void)data;
	start_on(f, "down", 1);
	expect(f, "GREET\r\n");
	client_send(f, cmd);
	/* a temporary failure is not a failed login: no count, the session goes on */
	expect(f, "TEMPFAIL\r\nOK\r\n");
	client_send(f, cmd);
	expect(f, "TEMPFAIL\r\nOK\r\n");
	client_send(f, cmd);
	expect(f, "TEMPFAIL\r\nOK\r\n");
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_backend_down_is_tempfail(Fixture *f, gconstpointer data)
{
	g_autofree char *ir = b64("\0alice\0secret", 13);
	g_autofree char *cmd = g_strdup_printf("AUTH t1 PLAIN %s\r\nNOOP\r\n", ir);
	(void)data;
	start_on(f, "nobackend", 1);
	expect(f, "GREET\r\n");
	client_send(f, cmd);
	expect(f, "TEMPFAIL\r\nOK\r\n");
	g_assert_cmpint(n_backend_connects, ==, 1);
	g_assert_cmpstr(f->session->login.backend_server, ==, "127.0.0.1:1");
	client_send(f, "JOIN\r\n");
	/* joining without a login: the JOIN line is still there to answer */
	pump(f, has_text, "UNAVAILABLE\r\n");
	g_assert_cmpstr(f->got->str, ==, "UNAVAILABLE\r\n");
	g_string_truncate(f->got, 0);
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_join_without_login_relays_the_line(Fixture *f, gconstpointer data)
{
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "JOIN\r\n");
	/* the JOIN line itself went to the backend, which echoes it */
	expect(f, "JOIN\r\n");
	g_assert_cmpint(f->session->phase, ==, GH_PHASE_RELAY);
	g_assert_null(f->session->login.canonical);
	shutdown(f->client, SHUT_WR);
	expect_end(f);
}

static void
test_shutdown_in_login_state(Fixture *f, gconstpointer data)
{
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 LOGIN\r\n");
	expect(f, "CHAL t1 VXNlcm5hbWU6\r\n");
	gh_session_shutdown(f->session);
	expect(f, "SHUTDOWN\r\n");
	expect_end(f);
}

static void
test_client_gone_mid_login(Fixture *f, gconstpointer data)
{
	(void)data;
	start(f);
	expect(f, "GREET\r\n");
	client_send(f, "AUTH t1 PLAIN\r\n");
	expect(f, "CHAL t1\r\n");
	/* half-close: what was sent is answered, the unfinished login dropped */
	shutdown(f->client, SHUT_WR);
	expect_end(f);
	g_assert_cmpint(n_backend_connects, ==, 0);
}

/* ---- behind a balancer: proxy_protocol = yes, 192.0.2.0/24 may send headers */

static void
test_proxy_v1_names_the_client(Fixture *f, gconstpointer data)
{
	(void)data;
	start_on(f, "behind", 1);
	/* nothing is said before the header */
	client_send(f, "PROXY TCP4 198.51.100.7 192.0.2.9 40001 25\r\nNOOP\r\n");
	expect(f, "GREET\r\nOK\r\n");
	g_assert_cmpstr(f->session->remote, ==, "198.51.100.7");
	g_assert_cmpuint(f->session->remote_port, ==, 40001);
	g_assert_cmpstr(f->session->local, ==, "192.0.2.9");
	g_assert_cmpuint(f->session->local_port, ==, 25);
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_proxy_v2_split_and_local(Fixture *f, gconstpointer data)
{
	/* v2 LOCAL (a health check): the balancer's own connection */
	static const guint8 local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
				       0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
	(void)data;
	start_on(f, "behind", 1);
	/* a byte at a time: nothing is said until the header is whole */
	for (gsize i = 0; i < sizeof local; i++) {
		g_assert_cmpint(send(f->client, local + i, 1, MSG_NOSIGNAL), ==, 1);
		while (g_main_context_iteration(NULL, FALSE))
			;
		if (i + 1 < sizeof local) {
			char buf[16];
			g_assert_cmpint(recv(f->client, buf, sizeof buf, 0), <, 0);
			g_assert_cmpint(f->ended, ==, 0);
		}
	}
	expect(f, "GREET\r\n");
	g_assert_cmpstr(f->session->remote, ==, "192.0.2.1");
	client_send(f, "QUIT\r\n");
	expect(f, "BYE\r\n");
	expect_end(f);
}

static void
test_proxy_refused(Fixture *f, gconstpointer data)
{
	(void)data;
	/* from outside proxy_trusted_networks: closed at once, without a word */
	start_from(f, "behind", 1, 0xcb007105); /* 203.0.113.5 */
	expect_end(f);
}

static void
test_proxy_bad_header(Fixture *f, gconstpointer data)
{
	(void)data;
	start_on(f, "behind", 1);
	/* a client that speaks first, as if there were no balancer */
	client_send(f, "EHLO client.test\r\n");
	expect_end(f);
}

static void
test_proxy_bad_address(Fixture *f, gconstpointer data)
{
	(void)data;
	start_on(f, "behind", 1);
	client_send(f, "PROXY TCP4 198.51.100.777 192.0.2.9 40001 25\r\n");
	expect_end(f);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	backend_start();
#define T(path, fn) g_test_add("/session/" path, Fixture, NULL, setup, fn, teardown)
	T("greet-commands-quit", test_greet_commands_quit);
	T("max-connections", test_max_connections);
	T("within-max-connections", test_within_max_connections);
	T("errors-close", test_errors_close);
	T("plain-login-relays", test_plain_login_relays);
	T("login-steps-and-failures", test_login_steps_and_failures);
	T("authzid-is-a-failed-login", test_authzid_is_a_failed_login);
	T("command-checks-and-words", test_command_checks_and_words);
	T("plaintext-refused-in-the-protocols-words",
	  test_plaintext_refused_in_the_protocols_words);
	T("cancel-malformed-too-long", test_cancel_malformed_too_long);
	T("tempfail-then-login", test_tempfail_then_login);
	T("backend-down-is-tempfail", test_backend_down_is_tempfail);
	T("join-without-login-relays-the-line", test_join_without_login_relays_the_line);
	T("shutdown-in-login-state", test_shutdown_in_login_state);
	T("client-gone-mid-login", test_client_gone_mid_login);
	T("proxy-v1-names-the-client", test_proxy_v1_names_the_client);
	T("proxy-v2-split-and-local", test_proxy_v2_split_and_local);
	T("proxy-refused", test_proxy_refused);
	T("proxy-bad-header", test_proxy_bad_header);
	T("proxy-bad-address", test_proxy_bad_address);
#undef T
	return g_test_run();
}
