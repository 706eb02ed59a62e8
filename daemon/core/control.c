/*
 * control.c: the control socket (see control.h): accepting, reading one
 * request, the commands, and writing one answer.
 *
 * A client is reference counted: the control holds one reference while the
 * client is open, and every asynchronous step in flight (a snapshot or a
 * kick it waits for) holds another, so that a step finishing after the
 * client was closed (timeout, daemon stopping) finds it whole and only
 * drops its reference.  Reading and writing are non-blocking calls on the
 * socket from one source at a time (c->io), which closing destroys.
 *
 * The deadlines measure the client, not the daemon: at the read deadline
 * what the client sent is read before it is judged, however long a busy
 * main loop left it unread; the daemon's own work on a request has no
 * deadline; and the write deadline drops a client only when it took no
 * byte of its answer in GH_CONTROL_WRITE_TIMEOUT.
 */
#include "gh-build.h"

#include "core/control.h"
#include "config/log.h"
#include "core/control-format.h"
#include "core/metrics.h"

#include <errno.h>
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define GH_CONTROL_SNDBUF (64 * 1024)

struct _GhControl {
	GhServer *server;
	char *path;
	GSocketService *service;
	GList *clients; /* of Client*, open ones */
	guint n_clients;
};

typedef struct {
	gint ref;
	GhControl *control; /* NULL once closed */
	GSocketConnection *conn;
	GSocket *sock; /* conn's, non-blocking */
	GSource *io;   /* waiting to read the request, or to write the answer */
	guint8 buf[GH_CONTROL_REQUEST_MAX];
	gsize have;
	guint deadline;    /* read, then write; none while the daemon works */
	gboolean progress; /* the client took part of the answer since the deadline was set */
	char *who;         /* "uid 0 pid 1234", for the log */
	GBytes *answer;
	gsize sent;
	/* the request */
	char *command;
	gboolean json;
	gboolean openmetrics;
	GhSessionFilter filter;
} Client;

static Client *
client_ref(Client *c)
{
	g_atomic_int_inc(&c->ref);
	return c;
}

static void
client_unref(Client *c)
{
	if (!g_atomic_int_dec_and_test(&c->ref))
		return;
	g_object_unref(c->conn);
	if (c->answer != NULL)
		g_bytes_unref(c->answer);
	g_free(c->who);
	g_free(c->command);
	gh_session_filter_clear(&c->filter);
	g_free(c);
}

static void
stop_waiting(Client *c)
{
	if (c->io == NULL)
		return;
	g_source_destroy(c->io);
	g_source_unref(c->io);
	c->io = NULL;
}

static void
clear_deadline(Client *c)
{
	if (c->deadline != 0)
		g_source_remove(c->deadline);
	c->deadline = 0;
}

/* Close (once): stop what is in flight, drop the control's reference. */
static void
client_close(Client *c)
{
	GhControl *control = c->control;
	if (control == NULL)
		return;
	c->control = NULL;
	control->clients = g_list_remove(control->clients, c);
	control->n_clients--;
	clear_deadline(c);
	stop_waiting(c);
	(void)g_io_stream_close(G_IO_STREAM(c->conn), NULL, NULL);
	client_unref(c);
}

static gboolean on_deadline(gpointer data);

static void
set_deadline(Client *c, guint seconds)
{
	clear_deadline(c);
	c->deadline = g_timeout_add_seconds(seconds, on_deadline, c);
}

/* Wait until the socket is ready for `cond`, then call `func` (once; it
 * says whether to go on waiting). */
static void
wait_for(Client *c, GIOCondition cond, GSocketSourceFunc func)
{
	stop_waiting(c);
	c->io = g_socket_create_source(c->sock, cond, NULL);
	g_source_set_callback(c->io, G_SOURCE_FUNC(func), c, NULL);
	g_source_attach(c->io, NULL);
}

/* ------------------------------------------------------------ answering */

static gboolean on_writable(GSocket *sock, GIOCondition cond, gpointer data);

/* Send what the socket takes of the rest of the answer; close once it is
 * all sent, or the client is gone.  Returns whether the client is still
 * open (then waiting for room to write). */
static gboolean
write_some(Client *c)
{
	gsize size;
	const char *data = g_bytes_get_data(c->answer, &size);
	while (c->sent < size) {
		g_autoptr(GError) error = NULL;
		gssize n = g_socket_send(c->sock, data + c->sent, size - c->sent, NULL, &error);
		if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
			if (c->io == NULL)
				wait_for(c, G_IO_OUT, on_writable);
			return TRUE;
		}
		if (n <= 0) {
			gh_debug("control: %s: %s", c->who,
				 error != NULL ? error->message : "closed");
			break;
		}
		c->sent += (gsize)n;
		c->progress = TRUE;
	}
	client_close(c);
	return FALSE;
}

static gboolean
on_writable(GSocket *sock, GIOCondition cond, gpointer data)
{
	Client *c = data;
	(void)sock;
	(void)cond;
	if (write_some(c))
		return G_SOURCE_CONTINUE;
	return G_SOURCE_REMOVE; /* client_close dropped c->io already */
}

/* Send `ok` (or `error`) and the body, then close. */
static void
answer(Client *c, gboolean ok, GString *body)
{
	GString *out = g_string_sized_new(body->len + 8);
	g_string_append(out, ok ? "ok\n" : "error\n");
	g_string_append_len(out, body->str, (gssize)body->len);
	if (body->len > 0 && body->str[body->len - 1] != '\n')
		g_string_append_c(out, '\n');
	if (c->control == NULL) {
		g_string_free(out, TRUE);
		return;
	}
	c->answer = g_string_free_to_bytes(out);
	stop_waiting(c);
	if (write_some(c)) {
		c->progress = FALSE;
		set_deadline(c, GH_CONTROL_WRITE_TIMEOUT);
	}
}

static void answer_text(Client *c, gboolean ok, const char *format, ...) G_GNUC_PRINTF(3, 4);

static void
answer_text(Client *c, gboolean ok, const char *format, ...)
{
	va_list ap;
	g_autoptr(GString) body = g_string_new(NULL);
	va_start(ap, format);
	g_string_append_vprintf(body, format, ap);
	va_end(ap);
	answer(c, ok, body);
}

/* ------------------------------------------------------------ commands */

static void
stats_view(GhServer *server, const GhSnapshot *snap, const GhAuthCoreStats *auth, GhStatsView *out)
{
	memset(out, 0, sizeof *out);
	out->version = PACKAGE_VERSION;
	out->started = gh_server_started(server);
	out->now = g_get_real_time() / G_USEC_PER_SEC;
	out->generation = gh_server_generation(server);
	gh_server_reloads(server, &out->reloads_ok, &out->reloads_failed);
	out->config = gh_server_get_config(server);
	out->stats = snap->stats;
	out->n_sessions = snap->n_sessions;
	out->auth = *auth;
}

static void
on_snapshot(const GhSnapshot *snap, gpointer data)
{
	Client *c = data;
	g_autoptr(GString) body = g_string_new(NULL);
	GhControl *control = c->control;

	if (control == NULL) {
		client_unref(c);
		return;
	}
	if (strcmp(c->command, "stats") == 0) {
		GhAuthCoreStats auth;
		GhStatsView view;
		gh_auth_core_stats(gh_server_get_auth_core(control->server), &auth);
		stats_view(control->server, snap, &auth, &view);
		gh_control_format_stats(body, &view, c->json);
		gh_control_stats_view_clear(&view);
	} else if (strcmp(c->command, "sessions") == 0) {
		gh_control_format_sessions(body, snap, &c->filter, GH_CONTROL_MAX_ROWS, c->json);
	} else {
		g_autofree char *text = gh_metrics_text(control->server, snap, c->openmetrics);
		g_string_append(body, text);
	}
	answer(c, TRUE, body);
	client_unref(c);
}

static void
on_kicked(guint kicked, gpointer data)
{
	Client *c = data;
	if (c->control != NULL) {
		g_message("control: kick %s by %s: %u session%s", c->filter.text, c->who, kicked,
			  kicked == 1 ? "" : "s");
		if (c->json)
			answer_text(c, TRUE, "{\"kicked\":%u}\n", kicked);
		else
			answer_text(c, TRUE, "kicked %u session%s\n", kicked,
				    kicked == 1 ? "" : "s");
	}
	client_unref(c);
}

static void
run_flush(Client *c)
{
	GhAuthCore *core = gh_server_get_auth_core(c->control->server);
	const char *user = c->filter.user;
	guint n =
	    user != NULL ? gh_auth_core_flush_user(core, user) : gh_auth_core_flush_cache(core);
	g_message("control: flush-cache%s%s by %s: %u cached verdict%s dropped",
		  user != NULL ? " " : "", user != NULL ? c->filter.text : "", c->who, n,
		  n == 1 ? "" : "s");
	if (c->json)
		answer_text(c, TRUE, "{\"flushed\":%u}\n", n);
	else
		answer_text(c, TRUE, "flushed %u cached verdict%s\n", n, n == 1 ? "" : "s");
}

static void
run_reload(Client *c)
{
	GhServer *server = c->control->server;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GString) body = g_string_new(NULL);
	gboolean ok;

	g_message("control: reload by %s", c->who);
	ok = gh_server_reload(server, problems);
	gh_control_format_reload(body, ok, gh_server_generation(server), problems, c->json);
	answer(c, ok, body);
}

/* One whole request line (without its LF). */
static void
serve(Client *c, char *line)
{
	g_autofree char *why = NULL;
	GhControlRequest req;

	if (!gh_control_parse_request(line, &req, &why)) {
		g_message("control: %s: bad request: %s", c->who, why);
		answer_text(c, FALSE, "%s\n", why);
		return;
	}
	c->command = g_steal_pointer(&req.command);
	c->json = req.json;
	c->openmetrics = req.openmetrics;
	c->filter = req.filter;
	gh_debug("control: %s by %s", c->command, c->who);
	if (strcmp(c->command, "stats") == 0 || strcmp(c->command, "metrics") == 0)
		gh_server_snapshot(c->control->server, FALSE, on_snapshot, client_ref(c));
	else if (strcmp(c->command, "sessions") == 0)
		gh_server_snapshot(c->control->server, TRUE, on_snapshot, client_ref(c));
	else if (strcmp(c->command, "kick") == 0)
		gh_server_kick(c->control->server, gh_session_filter_match, &c->filter, on_kicked,
			       client_ref(c));
	else if (strcmp(c->command, "flush-cache") == 0)
		run_flush(c);
	else
		run_reload(c);
}

/* ------------------------------------------------------------ reading */

typedef enum { READ_WAIT, READ_DONE, READ_OVER } ReadResult;

/* Read what the socket holds, non-blocking.  A whole request line is served
 * (READ_DONE); an end or an error closes the client, and a request too long
 * is answered (READ_OVER); else READ_WAIT. */
static ReadResult
read_some(Client *c)
{
	for (;;) {
		g_autoptr(GError) error = NULL;
		gssize n = g_socket_receive(c->sock, (char *)c->buf + c->have,
					    sizeof c->buf - c->have, NULL, &error);
		guint8 *lf;
		if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
			return READ_WAIT;
		if (n <= 0) {
			gh_debug("control: %s: %s before a whole request", c->who,
				 n == 0 ? "closed" : error->message);
			client_close(c);
			return READ_OVER;
		}
		lf = memchr(c->buf + c->have, '\n', (gsize)n);
		c->have += (gsize)n;
		if (lf != NULL) {
			/* the daemon's own work has no deadline; the answer's has */
			clear_deadline(c);
			stop_waiting(c);
			*lf = '\0';
			serve(c, (char *)c->buf);
			return READ_DONE;
		}
		if (c->have == sizeof c->buf) {
			g_message("control: %s: request longer than %d bytes; dropped", c->who,
				  GH_CONTROL_REQUEST_MAX);
			clear_deadline(c);
			stop_waiting(c);
			answer_text(c, FALSE, "request longer than %d bytes\n",
				    GH_CONTROL_REQUEST_MAX);
			return READ_OVER;
		}
	}
}

static gboolean
on_readable(GSocket *sock, GIOCondition cond, gpointer data)
{
	Client *c = client_ref(data);
	ReadResult r;
	(void)sock;
	(void)cond;
	r = read_some(c);
	client_unref(c);
	return r == READ_WAIT ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* The deadline is the client's time, not the daemon's: what it sent before
 * the deadline counts even when a busy main loop has not read it yet, and
 * an answer it is taking bit by bit is not cut off. */
static gboolean
on_deadline(gpointer data)
{
	Client *c = client_ref(data);
	c->deadline = 0;
	if (c->answer == NULL) {
		if (read_some(c) == READ_WAIT) {
			g_message("control: %s sent no whole request within %d s; dropped", c->who,
				  GH_CONTROL_READ_TIMEOUT);
			client_close(c);
		}
	} else if (write_some(c)) {
		if (c->progress) {
			c->progress = FALSE;
			set_deadline(c, GH_CONTROL_WRITE_TIMEOUT);
		} else {
			g_message("control: %s read nothing of its answer for %d s; dropped",
				  c->who, GH_CONTROL_WRITE_TIMEOUT);
			client_close(c);
		}
	}
	client_unref(c);
	return G_SOURCE_REMOVE;
}

static char *
describe_peer(GSocketConnection *conn)
{
	g_autoptr(GCredentials) cred =
	    g_socket_get_credentials(g_socket_connection_get_socket(conn), NULL);
	if (cred == NULL)
		return g_strdup("a client");
	return g_strdup_printf("uid %ld pid %ld", (long)g_credentials_get_unix_user(cred, NULL),
			       (long)g_credentials_get_unix_pid(cred, NULL));
}

static gboolean
on_incoming(GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
	GhControl *control = data;
	Client *c;
	(void)service;
	(void)source;

	if (control->n_clients >= GH_CONTROL_MAX_CLIENTS) {
		/* a best-effort word, without waiting for the client */
		GSocket *sock = g_socket_connection_get_socket(conn);
		g_socket_set_blocking(sock, FALSE);
		(void)g_socket_send(sock, "error\nbusy\n", 11, NULL, NULL);
		g_message("control: %d clients already; one more refused", GH_CONTROL_MAX_CLIENTS);
		return TRUE; /* the service closes it with its last reference */
	}
	/* what the kernel holds for a client that does not read stays small;
	 * the rest waits in our answer, and the write deadline drops it */
	(void)g_socket_set_option(g_socket_connection_get_socket(conn), SOL_SOCKET, SO_SNDBUF,
				  GH_CONTROL_SNDBUF, NULL);
	c = g_new0(Client, 1);
	c->ref = 1;
	c->control = control;
	c->conn = g_object_ref(conn);
	c->sock = g_socket_connection_get_socket(conn);
	g_socket_set_blocking(c->sock, FALSE);
	c->who = describe_peer(conn);
	control->clients = g_list_prepend(control->clients, c);
	control->n_clients++;
	set_deadline(c, GH_CONTROL_READ_TIMEOUT);
	wait_for(c, G_IO_IN, on_readable);
	return TRUE;
}

/* ------------------------------------------------------------ the socket */

/* Is something answering on `path`?  (A daemon that died leaves its file.) */
static gboolean
socket_in_use(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	gboolean used;
	if (fd < 0)
		return FALSE;
	g_strlcpy(sun.sun_path, path, sizeof sun.sun_path);
	used = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	close(fd);
	return used;
}

int
gh_control_bind(const char *path, uid_t uid, gid_t gid, GError **error)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	g_autofree char *dir = g_path_get_dirname(path);
	gboolean root = geteuid() == 0;
	struct stat st;
	mode_t old_mask;
	int fd, rc;

	if (strlen(path) >= sizeof sun.sun_path) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
			    "control socket %s: path too long", path);
		return -1;
	}
	if (stat(dir, &st) != 0) {
		if (g_mkdir_with_parents(dir, 0750) != 0 || (root && chown(dir, uid, gid) != 0)) {
			g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
				    "control socket %s: cannot create %s: %s", path, dir,
				    g_strerror(errno));
			return -1;
		}
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
				    "control socket %s: exists and is not a socket", path);
			return -1;
		}
		if (socket_in_use(path)) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
				    "control socket %s: another gatehoused answers on it", path);
			return -1;
		}
		(void)unlink(path); /* left by a daemon that died */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
			    "control socket %s: %s", path, g_strerror(errno));
		return -1;
	}
	g_strlcpy(sun.sun_path, path, sizeof sun.sun_path);
	/* no moment with a wider mode than 0660 */
	old_mask = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
	umask(old_mask);
	if (rc != 0 || (root && chown(path, uid, gid) != 0) || chmod(path, 0660) != 0 ||
	    listen(fd, 128) != 0) {
		int e = errno;
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "control socket %s: %s",
			    path, g_strerror(e));
		if (rc == 0)
			(void)unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

GhControl *
gh_control_new(GhServer *server, int fd, const char *path)
{
	GhControl *control = g_new0(GhControl, 1);
	g_autoptr(GError) error = NULL;
	g_autoptr(GSocket) sock = g_socket_new_from_fd(fd, &error);

	control->server = server;
	control->path = g_strdup(path);
	control->service = g_socket_service_new();
	if (sock == NULL ||
	    !g_socket_listener_add_socket(G_SOCKET_LISTENER(control->service), sock, NULL, &error))
		g_error("control socket %s: %s", path, error->message);
	g_signal_connect(control->service, "incoming", G_CALLBACK(on_incoming), control);
	g_socket_service_start(control->service);
	g_message("control socket: %s", path);
	return control;
}

void
gh_control_free(GhControl *control)
{
	if (control == NULL)
		return;
	g_socket_service_stop(control->service);
	g_socket_listener_close(G_SOCKET_LISTENER(control->service));
	while (control->clients != NULL)
		client_close(control->clients->data);
	g_object_unref(control->service);
	/* the directory is ours (RuntimeDirectory=) or root's: try, and say */
	if (unlink(control->path) != 0 && errno != ENOENT)
		g_message("control socket %s: not removed: %s", control->path, g_strerror(errno));
	g_free(control->path);
	g_free(control);
}
