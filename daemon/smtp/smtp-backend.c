/*
 * smtp-backend.c: connecting to a backend MTA and bringing its session to
 * the state the client expects (see smtp-backend.h).
 *
 * Invariants: one GhSmtpBackend is one attempt over the server list; at
 * most one connect or one reply is awaited at a time; the timer and the
 * GCancellable are always stopped before the callback runs; the copy of the
 * client's password is wiped as soon as AUTH has been sent (or on free).
 */
#include "gh-build.h"

#include "smtp/smtp-backend.h"
#include "net/connector.h"
#include "config/log.h"
#include "session/sasl.h"
#include "smtp/smtp-parser.h"

#include <string.h>

#define GH_BACKEND_IN_MAX (64 * 1024)
#define GH_BACKEND_OUT_MAX (64 * 1024)
/* an EHLO reply is a few hundred bytes; anything near this is not an MTA */
#define GH_BACKEND_REPLY_MAX (16 * 1024)

typedef enum {
	ST_CONNECT,
	ST_TLS, /* handshake: implicit, or after STARTTLS */
	ST_GREETING,
	ST_STARTTLS,
	ST_EHLO,
	ST_XCLIENT,
	ST_EHLO_AGAIN,
	ST_AUTH,
} State;

struct _GhSmtpBackend {
	GMainContext *context;
	GhSmtpBackendDone callback;
	gpointer user_data;

	const GhBackendConfig *bc;
	char *route;
	char *user;
	char *login_user;
	GhSecret *password;
	char *client_addr;
	guint16 client_port;
	char *client_helo;
	gboolean client_esmtp;
	char *hostname;
	char *session_id;

	GhConnector *connector;
	GhTls *tls;
	char *last_error;

	State state;
	GhConn *conn;
	GSource *timer;
};

static void
backend_free(GhSmtpBackend *b)
{
	if (b->timer != NULL) {
		g_source_destroy(b->timer);
		g_source_unref(b->timer);
	}
	gh_connector_free(b->connector);
	gh_tls_unref(b->tls);
	gh_conn_free(b->conn);
	gh_secret_free(b->password);
	g_free(b->route);
	g_free(b->user);
	g_free(b->login_user);
	g_free(b->client_addr);
	g_free(b->client_helo);
	g_free(b->hostname);
	g_free(b->session_id);
	g_free(b->last_error);
	g_free(b);
}

void
gh_smtp_backend_cancel(GhSmtpBackend *b)
{
	if (b != NULL)
		backend_free(b);
}

static void on_connected(int fd, const char *server, const char *error, gpointer data);

static void
stop_timer(GhSmtpBackend *b)
{
	if (b->timer != NULL) {
		g_source_destroy(b->timer);
		g_source_unref(b->timer);
		b->timer = NULL;
	}
}

static void
finish(GhSmtpBackend *b, gboolean ok)
{
	GhConn *conn = NULL;
	g_autofree char *server = g_strdup(gh_connector_server(b->connector));
	g_autofree char *error = g_strdup(b->last_error);
	GhSmtpBackendDone cb = b->callback;
	gpointer data = b->user_data;

	stop_timer(b);
	if (ok) {
		conn = b->conn;
		b->conn = NULL;
		gh_conn_set_callback(conn, NULL, NULL);
		gh_conn_want(conn, 0);
	}
	backend_free(b);
	cb(conn, server, ok ? NULL : error, data);
}

/* This server did not work out.  `retry`: the failure is one another server
 * may not have (connect refused, timeout, 4xx greeting). */
static void server_failed(GhSmtpBackend *b, gboolean retry, const char *format, ...)
    G_GNUC_PRINTF(3, 4);

static void
server_failed(GhSmtpBackend *b, gboolean retry, const char *format, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;
	va_start(ap, format);
	msg = g_strdup_vprintf(format, ap);
	va_end(ap);
	g_free(b->last_error);
	b->last_error = g_strdup_printf("%s: %s", gh_connector_server(b->connector), msg);
	g_message("session %s: backend %s", b->session_id, b->last_error);
	stop_timer(b);
	gh_conn_free(b->conn);
	b->conn = NULL;
	if (!retry || !gh_connector_next(b->connector, on_connected, b))
		finish(b, FALSE);
}

static gboolean
on_timeout(gpointer data)
{
	GhSmtpBackend *b = data;
	g_source_unref(b->timer);
	b->timer = NULL;
	server_failed(b, TRUE, "no reply within %u s", b->bc->connect_timeout);
	return G_SOURCE_REMOVE;
}

static void
start_timer(GhSmtpBackend *b)
{
	stop_timer(b);
	b->timer = g_timeout_source_new_seconds(MAX(b->bc->connect_timeout, 1));
	g_source_set_callback(b->timer, on_timeout, b, NULL);
	g_source_attach(b->timer, b->context);
}

static void
send_line(GhSmtpBackend *b, State next, const char *line)
{
	b->state = next;
	if (!gh_conn_queue(b->conn, line, strlen(line)) || b->conn->error != 0) {
		server_failed(b, TRUE, "write failed: %s", g_strerror(b->conn->error));
		return;
	}
	start_timer(b);
	gh_conn_want(b->conn, gh_conn_pending(b->conn) > 0 ? G_IO_IN | G_IO_OUT : G_IO_IN);
}

static char *
reply_text(const GhSmtpReply *r)
{
	const char *first = r->lines->len > 0 ? g_ptr_array_index(r->lines, 0) : "";
	g_autofree char *esc = gh_log_escape(first, strlen(first), 200);
	return g_strdup_printf("%u %s", r->code, esc);
}

static char *
xclient_line(GhSmtpBackend *b, char **offered)
{
	GString *s = g_string_new("XCLIENT");
	gboolean authenticated = b->user != NULL;
	for (guint i = 0; offered[i] != NULL; i++) {
		const char *attr = offered[i];
		g_autofree char *value = NULL;
		if (g_ascii_strcasecmp(attr, "ADDR") == 0) {
			value = strchr(b->client_addr, ':') != NULL
				    ? g_strconcat("IPV6:", b->client_addr, NULL)
				    : g_strdup(b->client_addr);
		} else if (g_ascii_strcasecmp(attr, "PORT") == 0) {
			value = g_strdup_printf("%u", b->client_port);
		} else if (g_ascii_strcasecmp(attr, "NAME") == 0) {
			/* no reverse lookup here: say so, as Postfix's docs ask */
			value = g_strdup("[UNAVAILABLE]");
		} else if (g_ascii_strcasecmp(attr, "HELO") == 0 && b->client_helo != NULL) {
			value = g_strdup(b->client_helo);
		} else if (g_ascii_strcasecmp(attr, "PROTO") == 0 && b->client_helo != NULL) {
			value = g_strdup(b->client_esmtp ? "ESMTP" : "SMTP");
		} else if (g_ascii_strcasecmp(attr, "LOGIN") == 0 && authenticated &&
			   b->bc->login == GH_LOGIN_XCLIENT) {
			value = g_strdup(b->user);
		}
		if (value != NULL) {
			g_autofree char *x = gh_smtp_xtext_encode(value);
			g_autofree char *up = g_ascii_strup(attr, -1);
			g_string_append_printf(s, " %s=%s", up, x);
		}
	}
	g_string_append(s, "\r\n");
	return g_string_free(s, FALSE);
}

static void
after_ehlo(GhSmtpBackend *b, const GhSmtpReply *ehlo)
{
	g_auto(GStrv) offered = NULL;
	gboolean has_xclient = gh_smtp_reply_has_extension(ehlo, "XCLIENT", &offered);

	if (b->state == ST_EHLO && b->bc->tls == GH_TLS_STARTTLS && b->conn->tls == NULL) {
		if (!gh_smtp_reply_has_extension(ehlo, "STARTTLS", NULL)) {
			server_failed(b, FALSE,
				      "tls = starttls, but the server does not offer STARTTLS");
			return;
		}
		send_line(b, ST_STARTTLS, "STARTTLS\r\n");
		return;
	}
	if (b->state == ST_EHLO) {
		gboolean want_xclient =
		    b->bc->login == GH_LOGIN_XCLIENT || (b->bc->forward_client && has_xclient);
		if (b->bc->login == GH_LOGIN_XCLIENT && !has_xclient) {
			server_failed(b, FALSE,
				      "login = xclient, but the server does not offer XCLIENT to "
				      "us (Postfix: smtpd_authorized_xclient_hosts)");
			return;
		}
		if (want_xclient) {
			g_autofree char *line = xclient_line(b, offered);
			send_line(b, ST_XCLIENT, line);
			return;
		}
	}
	if (b->user != NULL &&
	    (b->bc->login == GH_LOGIN_PASSTHROUGH || b->bc->login == GH_LOGIN_MASTER)) {
		g_autofree char *b64 = NULL;
		g_autofree char *line = NULL;
		if (b->bc->login == GH_LOGIN_PASSTHROUGH) {
			b64 = gh_sasl_plain_encode(NULL, b->login_user, b->password);
		} else {
			g_autoptr(GError) error = NULL;
			g_autoptr(GhSecret) master = gh_backend_master_password(b->bc, &error);
			if (master == NULL) {
				server_failed(b, FALSE, "master_password_file: %s", error->message);
				return;
			}
			b64 = gh_sasl_plain_encode(b->user, b->bc->master_user, master);
		}
		line = g_strdup_printf("AUTH PLAIN %s\r\n", b64);
		gh_secret_wipe_free(b64, strlen(b64));
		b64 = NULL;
		gh_secret_free(g_steal_pointer(&b->password));
		send_line(b, ST_AUTH, line);
		explicit_bzero(line, strlen(line));
		return;
	}
	finish(b, TRUE);
}

/* Drive the TLS handshake towards the server; on success go on with the
 * greeting (implicit TLS) or the EHLO inside TLS (STARTTLS). */
static void
handshake(GhSmtpBackend *b)
{
	g_autofree char *why = NULL;
	int rc = gh_backend_tls_handshake(b->connector, b->conn, b->bc, &why);
	if (rc < 0) {
		/* another server may have the right certificate */
		server_failed(b, TRUE, "%s", why);
		return;
	}
	if (rc == 0)
		return;
	if (b->bc->tls == GH_TLS_IMPLICIT) {
		b->state = ST_GREETING;
		start_timer(b);
		gh_conn_want(b->conn, G_IO_IN);
	} else {
		g_autofree char *line = g_strdup_printf("EHLO %s\r\n", b->hostname);
		send_line(b, ST_EHLO, line);
	}
}

static void
start_tls(GhSmtpBackend *b)
{
	g_autofree char *why = NULL;
	if (!gh_backend_tls_start(b->connector, b->conn, b->tls, b->bc, &why)) {
		server_failed(b, FALSE, "%s", why);
		return;
	}
	b->state = ST_TLS;
	start_timer(b);
	handshake(b);
}

static void
on_reply(GhSmtpBackend *b, const GhSmtpReply *r)
{
	g_autofree char *text = reply_text(r);
	switch (b->state) {
	case ST_GREETING:
		if (r->code != 220) {
			server_failed(b, r->code / 100 == 4, "greeting %s", text);
			return;
		}
		{
			g_autofree char *line = g_strdup_printf("EHLO %s\r\n", b->hostname);
			send_line(b, ST_EHLO, line);
		}
		return;
	case ST_EHLO:
	case ST_EHLO_AGAIN:
		if (r->code != 250) {
			server_failed(b, FALSE, "EHLO refused: %s", text);
			return;
		}
		after_ehlo(b, r);
		return;
	case ST_XCLIENT:
		/* Postfix answers a successful XCLIENT with a new 220 greeting */
		if (r->code != 220) {
			server_failed(b, FALSE, "XCLIENT refused: %s", text);
			return;
		}
		{
			g_autofree char *line = g_strdup_printf(
			    "EHLO %s\r\n", b->client_helo != NULL ? b->client_helo : b->hostname);
			send_line(b, ST_EHLO_AGAIN, line);
		}
		return;
	case ST_AUTH:
		if (r->code != 235) {
			server_failed(b, FALSE, "AUTH refused: %s", text);
			return;
		}
		finish(b, TRUE);
		return;
	case ST_STARTTLS:
		if (r->code != 220) {
			server_failed(b, FALSE, "STARTTLS refused: %s", text);
			return;
		}
		start_tls(b);
		return;
	case ST_CONNECT:
	case ST_TLS:
		break;
	}
	server_failed(b, FALSE, "unexpected reply %s", text);
}

static void
on_conn(GhConn *conn, GIOCondition cond, gpointer data)
{
	GhSmtpBackend *b = data;
	(void)cond;
	if (conn->tls_handshaking) {
		handshake(b);
		return;
	}
	if (gh_conn_pending(conn) > 0)
		(void)gh_conn_flush(conn);
	(void)gh_conn_fill(conn);
	{
		GhSmtpReply r = {0};
		gsize used = 0;
		GhSmtpReplyStatus st = gh_smtp_parse_reply(
		    (const char *)conn->in->data, conn->in->len, GH_BACKEND_REPLY_MAX, &r, &used);
		if (st == GH_SMTP_REPLY_BAD) {
			server_failed(b, FALSE, "sent something that is not an SMTP reply");
			return;
		}
		if (st == GH_SMTP_REPLY_OK) {
			/* one reply per step: on_reply sends the next command (or
			 * finishes, freeing b); anything the server sent early stays
			 * in `in` for the next step */
			gh_conn_consume(conn, used);
			on_reply(b, &r);
			gh_smtp_reply_clear(&r);
			return;
		}
	}
	if (conn->error != 0) {
		server_failed(b, TRUE, "%s", g_strerror(conn->error));
		return;
	}
	if (conn->eof) {
		server_failed(b, TRUE, "closed the connection");
		return;
	}
	gh_conn_want(conn, gh_conn_pending(conn) > 0 ? G_IO_IN | G_IO_OUT : G_IO_IN);
}

static void
on_connected(int fd, const char *server, const char *error, gpointer data)
{
	GhSmtpBackend *b = data;
	(void)server;
	if (fd < 0) {
		server_failed(b, TRUE, "%s", error);
		return;
	}
	b->conn = gh_conn_new(fd, b->context, GH_BACKEND_IN_MAX, GH_BACKEND_OUT_MAX);
	gh_conn_set_callback(b->conn, on_conn, b);
	if (b->bc->tls == GH_TLS_IMPLICIT) {
		start_tls(b);
		return;
	}
	b->state = ST_GREETING;
	start_timer(b);
	gh_conn_want(b->conn, G_IO_IN);
}

GhSmtpBackend *
gh_smtp_backend_connect(const GhSmtpBackendParams *p,
			GMainContext *context,
			GhSmtpBackendDone callback,
			gpointer user_data)
{
	GhSmtpBackend *b = g_new0(GhSmtpBackend, 1);
	b->context = context;
	b->callback = callback;
	b->user_data = user_data;
	b->bc = p->backend;
	b->route = g_strdup(p->route);
	b->user = g_strdup(p->user);
	b->login_user = g_strdup(p->login_user != NULL ? p->login_user : p->user);
	if (p->password != NULL) {
		gsize len;
		const char *pw = gh_secret_get(p->password, &len);
		b->password = gh_secret_new(pw, len);
	}
	b->client_addr = g_strdup(p->client_addr);
	b->client_port = p->client_port;
	b->client_helo = g_strdup(p->client_helo);
	b->client_esmtp = p->client_esmtp;
	b->hostname = g_strdup(p->hostname);
	b->session_id = g_strdup(p->session_id);
	b->tls = gh_tls_ref(p->tls);
	b->connector = gh_connector_new(b->bc, p->route, p->hash_key, context);
	b->state = ST_CONNECT;
	(void)gh_connector_next(b->connector, on_connected, b);
	return b;
}
