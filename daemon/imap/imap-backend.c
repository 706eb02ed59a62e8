/*
 * imap-backend.c: connecting to a backend IMAP server and logging the
 * session in there (see imap-backend.h).
 *
 * Invariants: one reply line is handled at a time; our own commands use
 * tags that differ from the client's; the copy of the password is wiped
 * once the last piece of the login has been queued (or on free); what the
 * backend says in answer to the login is collected verbatim in `reply`,
 * except the answers to our own ID.
 */
#include "gh-build.h"

#include "imap/imap-backend.h"
#include "net/connector.h"
#include "imap/imap-parser.h"
#include "config/log.h"
#include "session/sasl.h"
#include "common/line.h"

#include <string.h>

#define GH_IMAP_BACKEND_IN_MAX (64 * 1024)
#define GH_IMAP_BACKEND_OUT_MAX (64 * 1024)
#define GH_IMAP_BACKEND_LINE_MAX (16 * 1024)
/* RFC 2971 3.3: at most 30 field-value pairs */
#define GH_IMAP_ID_MAX_PAIRS 30

typedef enum {
	ST_CONNECT,
	ST_TLS,
	ST_GREETING,
	ST_CAPABILITY,
	ST_STARTTLS,
	ST_LOGIN,
} State;

struct _GhImapBackend {
	GMainContext *context;
	GhImapBackendDone callback;
	gpointer user_data;
	const GhBackendConfig *bc;
	GhConnector *connector;
	GhTls *tls;
	GhConn *conn;
	GSource *timer;
	State state;

	char *tag;
	char *user;
	GhSecret *password;
	char *client_addr;
	guint16 client_port;
	char *local_addr;
	guint16 local_port;
	char *session_id;
	GPtrArray *client_id; /* of char*: key, value, ... */

	char *cap_tag;
	char *id_tag;
	char *tls_tag;
	char *caps; /* the capability atoms, separated by single spaces */
	/* the parts of the login still to send, one per continuation ("+")
	 * the server asks for; secrets, wiped */
	GPtrArray *pending_parts;
	GByteArray *reply;
	char *error;
	gboolean *alive; /* set by on_conn while it loops; cleared on free */
};

static void on_connected(int fd, const char *server, const char *error, gpointer data);

static void
wipe_free(gpointer p)
{
	if (p != NULL)
		gh_secret_wipe_free(p, strlen(p));
}

static void
stop_timer(GhImapBackend *b)
{
	if (b->timer != NULL) {
		g_source_destroy(b->timer);
		g_source_unref(b->timer);
		b->timer = NULL;
	}
}

static void
backend_free(GhImapBackend *b)
{
	if (b->alive != NULL)
		*b->alive = FALSE;
	stop_timer(b);
	gh_connector_free(b->connector);
	gh_tls_unref(b->tls);
	gh_conn_free(b->conn);
	g_free(b->tag);
	g_free(b->user);
	gh_secret_free(b->password);
	g_free(b->client_addr);
	g_free(b->local_addr);
	g_free(b->session_id);
	g_ptr_array_unref(b->client_id);
	g_free(b->cap_tag);
	g_free(b->id_tag);
	g_free(b->tls_tag);
	g_free(b->caps);
	g_ptr_array_unref(b->pending_parts);
	g_byte_array_unref(b->reply);
	g_free(b->error);
	g_free(b);
}

void
gh_imap_backend_cancel(GhImapBackend *b)
{
	if (b != NULL)
		backend_free(b);
}

static void
finish(GhImapBackend *b, GhImapBackendResult result)
{
	GhConn *conn = NULL;
	g_autoptr(GBytes) reply = NULL;
	g_autofree char *server = g_strdup(gh_connector_server(b->connector));
	g_autofree char *error = g_strdup(b->error);
	GhImapBackendDone cb = b->callback;
	gpointer data = b->user_data;

	stop_timer(b);
	if (result == GH_IMAP_BACKEND_OK) {
		conn = b->conn;
		b->conn = NULL;
		gh_conn_set_callback(conn, NULL, NULL);
		gh_conn_want(conn, 0);
		reply = g_bytes_new(b->reply->data, b->reply->len);
	}
	backend_free(b);
	cb(result, conn, reply, server, error, data);
}

/* This server did not work out; `retry`: another one might. */
static void server_failed(GhImapBackend *b, gboolean retry, const char *format, ...)
    G_GNUC_PRINTF(3, 4);

static void
server_failed(GhImapBackend *b, gboolean retry, const char *format, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;
	va_start(ap, format);
	msg = g_strdup_vprintf(format, ap);
	va_end(ap);
	g_free(b->error);
	b->error = g_strdup_printf("%s: %s", gh_connector_server(b->connector), msg);
	g_message("session %s: backend %s", b->session_id, b->error);
	stop_timer(b);
	gh_conn_free(b->conn);
	b->conn = NULL;
	g_clear_pointer(&b->caps, g_free);
	if (!retry || !gh_connector_next(b->connector, on_connected, b))
		finish(b, GH_IMAP_BACKEND_FAILED);
}

static gboolean
on_timeout(gpointer data)
{
	GhImapBackend *b = data;
	g_source_unref(b->timer);
	b->timer = NULL;
	server_failed(b, TRUE, "no reply within %u s", b->bc->connect_timeout);
	return G_SOURCE_REMOVE;
}

static void
start_timer(GhImapBackend *b)
{
	stop_timer(b);
	b->timer = g_timeout_source_new(MAX(b->bc->connect_timeout, 1) * 1000);
	g_source_set_callback(b->timer, on_timeout, b, NULL);
	g_source_attach(b->timer, b->context);
}

static void
send_text(GhImapBackend *b, const char *text, gsize len)
{
	if (!gh_conn_queue(b->conn, text, len)) {
		server_failed(b, FALSE, "login too long for the output buffer");
		return;
	}
	start_timer(b);
	gh_conn_want(b->conn, gh_conn_pending(b->conn) > 0 ? G_IO_IN | G_IO_OUT : G_IO_IN);
}

static gboolean
has_cap(GhImapBackend *b, const char *cap)
{
	/* scanned in place: a login asks for two or three atoms, and a split
	 * list of Dovecot's thirty would cost an allocation each */
	gsize n = strlen(cap);
	const char *p = b->caps;
	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ' ');
		gsize len = end != NULL ? (gsize)(end - p) : strlen(p);
		if (len == n && g_ascii_strncasecmp(p, cap, n) == 0)
			return TRUE;
		p = end != NULL ? end + 1 : NULL;
	}
	return FALSE;
}

/* "IMAP4rev1 SASL-IR AUTH=PLAIN" (the text after "CAPABILITY", up to "]"
 * or the line end) */
static void
set_caps(GhImapBackend *b, const char *text, gsize len)
{
	const char *end = memchr(text, ']', len);
	GString *caps;
	if (end != NULL)
		len = (gsize)(end - text);
	caps = g_string_sized_new(len + 1);
	/* one space between atoms, none at either end */
	for (gsize i = 0; i < len; i++) {
		if (g_ascii_isspace(text[i])) {
			if (caps->len > 0 && caps->str[caps->len - 1] != ' ')
				g_string_append_c(caps, ' ');
		} else {
			g_string_append_c(caps, text[i]);
		}
	}
	if (caps->len > 0 && caps->str[caps->len - 1] == ' ')
		g_string_truncate(caps, caps->len - 1);
	g_free(b->caps);
	b->caps = g_string_free(caps, FALSE);
}

/* "[CAPABILITY ...]" inside a status line, if any */
static gboolean
caps_from_code(GhImapBackend *b, const char *line, gsize len)
{
	static const char code[] = "[CAPABILITY ";
	const gsize n = sizeof(code) - 1;
	for (gsize i = 0; i + n <= len; i++) {
		if (line[i] == '[' && memcmp(line + i, code, n) == 0) {
			set_caps(b, line + i + n, len - i - n);
			return TRUE;
		}
	}
	return FALSE;
}

static char *
id_command(GhImapBackend *b)
{
	GString *s = g_string_new(NULL);
	g_autofree char *addr = gh_imap_quote(b->client_addr);
	g_autofree char *local = gh_imap_quote(b->local_addr);
	g_autofree char *sid = gh_imap_quote(b->session_id);
	guint pairs = 4;

	g_string_append_printf(s,
			       "%s ID (\"x-originating-ip\" %s \"x-originating-port\" \"%u\" "
			       "\"x-connected-ip\" %s \"x-connected-port\" \"%u\" "
			       "\"x-session-id\" %s",
			       b->id_tag, addr, b->client_port, local, b->local_port, sid);
	pairs++;
	for (guint i = 0; i + 1 < b->client_id->len && pairs < GH_IMAP_ID_MAX_PAIRS; i += 2) {
		const char *k = g_ptr_array_index(b->client_id, i);
		const char *v = g_ptr_array_index(b->client_id, i + 1);
		g_autofree char *qk = NULL;
		g_autofree char *qv = NULL;
		/* the x- fields are ours: a client must not be able to pass for
		 * another address through them */
		if (g_ascii_strncasecmp(k, "x-", 2) == 0)
			continue;
		qk = gh_imap_quote(k);
		qv = *v != '\0' ? gh_imap_quote(v) : g_strdup("NIL");
		if (qk == NULL || qv == NULL)
			continue;
		g_string_append_printf(s, " %s %s", qk, qv);
		pairs++;
	}
	g_string_append(s, ")\r\n");
	return g_string_free(s, FALSE);
}

/* Queue the ID (when forwarding) and the login, pipelined in one write. */
static void
send_login(GhImapBackend *b)
{
	GString *out = g_string_new(NULL);
	gboolean master = b->bc->login == GH_LOGIN_MASTER;
	gboolean plain = has_cap(b, "AUTH=PLAIN");
	gboolean sasl_ir = has_cap(b, "SASL-IR");

	if (b->bc->forward_client) {
		g_autofree char *id = id_command(b);
		g_string_append(out, id);
	}
	if (master && !plain) {
		g_string_free(out, TRUE);
		server_failed(b, FALSE, "login = master, but the server does not offer AUTH=PLAIN");
		return;
	}
	if (master || (plain && sasl_ir)) {
		g_autoptr(GhSecret) master_pw = NULL;
		g_autofree char *b64 = NULL;
		if (master) {
			g_autoptr(GError) error = NULL;
			master_pw = gh_backend_master_password(b->bc, &error);
			if (master_pw == NULL) {
				g_string_free(out, TRUE);
				server_failed(b, FALSE, "master_password_file: %s", error->message);
				return;
			}
			b64 = gh_sasl_plain_encode(b->user, b->bc->master_user, master_pw);
		} else {
			b64 = gh_sasl_plain_encode(NULL, b->user, b->password);
		}
		if (sasl_ir) {
			g_string_append_printf(out, "%s AUTHENTICATE PLAIN %s\r\n", b->tag, b64);
		} else {
			g_string_append_printf(out, "%s AUTHENTICATE PLAIN\r\n", b->tag);
			g_ptr_array_add(b->pending_parts, g_strdup_printf("%s\r\n", b64));
		}
		wipe_free(g_steal_pointer(&b64));
	} else if (has_cap(b, "LOGINDISABLED")) {
		g_string_free(out, TRUE);
		server_failed(b, FALSE, "the server refuses LOGIN in plaintext (LOGINDISABLED)");
		return;
	} else {
		gsize pw_len = 0;
		const char *pw = gh_secret_get(b->password, &pw_len);
		gsize user_len = strlen(b->user);
		if (has_cap(b, "LITERAL+")) {
			/* RFC 7888: one write, no round trip per literal */
			g_string_append_printf(out, "%s LOGIN {%zu+}\r\n", b->tag, user_len);
			g_string_append_len(out, b->user, (gssize)user_len);
			g_string_append_printf(out, " {%zu+}\r\n", pw_len);
			g_string_append_len(out, pw, (gssize)pw_len);
			g_string_append(out, "\r\n");
		} else {
			/* RFC 9051 4.3: each literal waits for the server's "+" */
			GString *part = g_string_new(NULL);
			g_string_append_printf(out, "%s LOGIN {%zu}\r\n", b->tag, user_len);
			g_string_append_len(part, b->user, (gssize)user_len);
			g_string_append_printf(part, " {%zu}\r\n", pw_len);
			g_ptr_array_add(b->pending_parts, g_string_free(part, FALSE));
			part = g_string_new(NULL);
			g_string_append_len(part, pw, (gssize)pw_len);
			g_string_append(part, "\r\n");
			g_ptr_array_add(b->pending_parts, g_string_free(part, FALSE));
		}
	}
	if (b->pending_parts->len == 0)
		g_clear_pointer(&b->password, gh_secret_free);
	b->state = ST_LOGIN;
	send_text(b, out->str, out->len);
	explicit_bzero(out->str, out->len);
	g_string_free(out, TRUE);
}

static void
ask_capabilities(GhImapBackend *b)
{
	g_autofree char *cmd = g_strdup_printf("%s CAPABILITY\r\n", b->cap_tag);
	b->state = ST_CAPABILITY;
	send_text(b, cmd, strlen(cmd));
}

/* Drive the TLS handshake towards the server; then the greeting (implicit)
 * or the capabilities as they are inside TLS (STARTTLS). */
static void
handshake(GhImapBackend *b)
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
		g_clear_pointer(&b->caps, g_free);
		ask_capabilities(b);
	}
}

static void
start_tls(GhImapBackend *b)
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

/* The capabilities are known: STARTTLS first where asked for, else log in. */
static void
after_caps(GhImapBackend *b)
{
	if (b->bc->tls == GH_TLS_STARTTLS && b->conn->tls == NULL) {
		g_autofree char *cmd = NULL;
		if (!has_cap(b, "STARTTLS")) {
			server_failed(b, FALSE,
				      "tls = starttls, but the server does not offer STARTTLS");
			return;
		}
		cmd = g_strdup_printf("%s STARTTLS\r\n", b->tls_tag);
		b->state = ST_STARTTLS;
		send_text(b, cmd, strlen(cmd));
		return;
	}
	send_login(b);
}

static gboolean
starts_with_word(const char *line, gsize len, const char *word)
{
	gsize n = strlen(word);
	return len > n && g_ascii_strncasecmp(line, word, n) == 0 && line[n] == ' ';
}

/* Tags are compared as they are: a server echoes the tag it got. */
static gboolean
starts_with_tag(const char *line, gsize len, const char *tag)
{
	gsize n = strlen(tag);
	return len > n && strncmp(line, tag, n) == 0 && line[n] == ' ';
}

/* The status word after "TAG " (or "* "): OK, NO, BAD, BYE, PREAUTH. */
static gboolean
status_is(const char *line, gsize len, gsize skip, const char *status)
{
	gsize n = strlen(status);
	if (len < skip + n)
		return FALSE;
	return g_ascii_strncasecmp(line + skip, status, n) == 0 &&
	       (len == skip + n || line[skip + n] == ' ');
}

/* The line as the log may show it: made only when a failure names it. */
static const char *
shown(char **text, const char *line, gsize len)
{
	if (*text == NULL)
		*text = gh_log_escape(line, MIN(len, 200), 200);
	return *text;
}

/* One line from the server (without its line end); `raw` with it. */
static void
on_line(GhImapBackend *b, const char *line, gsize len, const char *raw, gsize raw_len)
{
	g_autofree char *shown_text = NULL; /* see shown() */

	switch (b->state) {
	case ST_GREETING:
		if (status_is(line, len, 2, "OK") && line[0] == '*') {
			if (caps_from_code(b, line, len))
				after_caps(b);
			else
				ask_capabilities(b);
			return;
		}
		/* PREAUTH: the server would hand us someone's session unasked */
		server_failed(b, status_is(line, len, 2, "BYE"), "greeting \"%s\"",
			      shown(&shown_text, line, len));
		return;
	case ST_CAPABILITY:
		if (starts_with_word(line, len, "* CAPABILITY")) {
			set_caps(b, line + strlen("* CAPABILITY "), len - strlen("* CAPABILITY "));
			return;
		}
		if (starts_with_tag(line, len, b->cap_tag)) {
			if (!status_is(line, len, strlen(b->cap_tag) + 1, "OK")) {
				server_failed(b, FALSE, "CAPABILITY failed: \"%s\"",
					      shown(&shown_text, line, len));
				return;
			}
			after_caps(b);
			return;
		}
		return; /* other untagged data */
	case ST_STARTTLS:
		if (starts_with_tag(line, len, b->tls_tag)) {
			if (!status_is(line, len, strlen(b->tls_tag) + 1, "OK")) {
				server_failed(b, FALSE, "STARTTLS refused: \"%s\"",
					      shown(&shown_text, line, len));
				return;
			}
			start_tls(b);
		}
		return; /* untagged data before the tagged reply */
	case ST_LOGIN:
		if (line[0] == '+') {
			char *part;
			if (b->pending_parts->len == 0) {
				server_failed(b, FALSE, "unexpected continuation \"%s\"",
					      shown(&shown_text, line, len));
				return;
			}
			part = g_ptr_array_steal_index(b->pending_parts, 0);
			if (b->pending_parts->len == 0)
				g_clear_pointer(&b->password, gh_secret_free);
			send_text(b, part, strlen(part));
			wipe_free(part);
			return;
		}
		if (b->id_tag != NULL && starts_with_tag(line, len, b->id_tag))
			return; /* our ID's end; its outcome does not matter */
		if (starts_with_word(line, len, "* ID"))
			return; /* the server's ID answer is for us, not the client */
		if (starts_with_tag(line, len, b->tag)) {
			gsize skip = strlen(b->tag) + 1;
			if (status_is(line, len, skip, "OK")) {
				g_byte_array_append(b->reply, (const guint8 *)raw, (guint)raw_len);
				finish(b, GH_IMAP_BACKEND_OK);
			} else if (status_is(line, len, skip, "NO")) {
				g_free(b->error);
				b->error = g_strdup_printf("%s: login refused: \"%s\"",
							   gh_connector_server(b->connector),
							   shown(&shown_text, line, len));
				finish(b, GH_IMAP_BACKEND_REFUSED);
			} else {
				server_failed(b, FALSE, "login failed: \"%s\"",
					      shown(&shown_text, line, len));
			}
			return;
		}
		/* untagged data during the login is part of the answer */
		g_byte_array_append(b->reply, (const guint8 *)raw, (guint)raw_len);
		return;
	case ST_CONNECT:
	case ST_TLS:
		break;
	}
}

static void
on_conn(GhConn *conn, GIOCondition cond, gpointer data)
{
	GhImapBackend *b = data;
	gboolean alive = TRUE;
	(void)cond;
	if (conn->tls_handshaking) {
		handshake(b);
		return;
	}
	if (gh_conn_pending(conn) > 0)
		(void)gh_conn_flush(conn);
	(void)gh_conn_fill(conn);
	b->alive = &alive;
	while (conn->in->len > 0) {
		gsize line_len = 0, used = 0;
		gboolean term = FALSE;
		GhLineStatus st = gh_line_next((const char *)conn->in->data, conn->in->len,
					       GH_IMAP_BACKEND_LINE_MAX, &line_len, &used, &term);
		g_autofree char *raw = NULL;
		if (st == GH_LINE_NEED_MORE)
			break;
		if (st == GH_LINE_TOO_LONG) {
			b->alive = NULL;
			server_failed(b, FALSE, "sent a line over %d bytes",
				      GH_IMAP_BACKEND_LINE_MAX);
			return;
		}
		raw = g_strndup((const char *)conn->in->data, used);
		gh_conn_consume(conn, used);
		on_line(b, raw, line_len, raw, used);
		/* on_line may have finished (b freed) or failed over to another
		 * server (conn freed): look no further at this connection */
		if (!alive || b->conn != conn) {
			if (alive)
				b->alive = NULL;
			return;
		}
	}
	b->alive = NULL;
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
	GhImapBackend *b = data;
	(void)server;
	if (fd < 0) {
		server_failed(b, TRUE, "%s", error);
		return;
	}
	b->conn = gh_conn_new(fd, b->context, GH_IMAP_BACKEND_IN_MAX, GH_IMAP_BACKEND_OUT_MAX);
	gh_conn_set_callback(b->conn, on_conn, b);
	if (b->bc->tls == GH_TLS_IMPLICIT) {
		start_tls(b);
		return;
	}
	b->state = ST_GREETING;
	start_timer(b);
	gh_conn_want(b->conn, G_IO_IN);
}

GhImapBackend *
gh_imap_backend_connect(const GhImapBackendParams *p,
			GMainContext *context,
			GhImapBackendDone callback,
			gpointer user_data)
{
	GhImapBackend *b = g_new0(GhImapBackend, 1);
	b->context = context;
	b->callback = callback;
	b->user_data = user_data;
	b->bc = p->backend;
	b->tag = g_strdup(p->tag);
	b->user = g_strdup(p->user);
	if (p->password != NULL) {
		gsize len;
		const char *pw = gh_secret_get(p->password, &len);
		b->password = gh_secret_new(pw, len);
	} else {
		b->password = gh_secret_new("", 0);
	}
	b->client_addr = g_strdup(p->client_addr);
	b->client_port = p->client_port;
	b->local_addr = g_strdup(p->local_addr);
	b->local_port = p->local_port;
	b->session_id = g_strdup(p->session_id);
	b->client_id = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; p->client_id != NULL && p->client_id[i] != NULL; i++)
		g_ptr_array_add(b->client_id, g_strdup(p->client_id[i]));
	/* our tags must not be the client's */
	b->cap_tag = g_strdup(g_strcmp0(p->tag, "ghc") == 0 ? "ghc2" : "ghc");
	b->id_tag = g_strdup(g_strcmp0(p->tag, "ghi") == 0 ? "ghi2" : "ghi");
	b->tls_tag = g_strdup(g_strcmp0(p->tag, "ght") == 0 ? "ght2" : "ght");
	b->tls = gh_tls_ref(p->tls);
	b->pending_parts = g_ptr_array_new_with_free_func(wipe_free);
	b->reply = g_byte_array_new();
	b->connector = gh_connector_new(b->bc, p->route, p->hash_key, context);
	b->state = ST_CONNECT;
	(void)gh_connector_next(b->connector, on_connected, b);
	return b;
}
