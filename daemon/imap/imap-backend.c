/*
 * imap-backend.c: the IMAP steps of a backend link: logging the session in
 * at the backend server (see imap-backend.h).
 *
 * Invariants: one reply line is handled at a time (input() takes one whole
 * line per call); our own commands use tags that differ from the client's;
 * the link's copy of the password is forgotten once the last piece of the
 * login has been queued; what the backend says in answer to the login is
 * collected verbatim in `reply`, except the answers to our own ID; what was
 * learnt of a server that failed (capabilities, login parts, reply) goes
 * with it.
 */
#include "gh-build.h"

#include "imap/imap-backend.h"
#include "net/connector.h"
#include "imap/imap-parser.h"
#include "config/log.h"
#include "session/sasl.h"
#include "common/line.h"

#include <string.h>

#define GH_IMAP_BACKEND_LINE_MAX (16 * 1024)
/* RFC 2971 3.3: at most 30 field-value pairs */
#define GH_IMAP_ID_MAX_PAIRS 30

typedef enum {
	ST_GREETING,
	ST_CAPABILITY,
	ST_STARTTLS,
	ST_LOGIN,
} State;

typedef struct {
	State state;
	char *tag;
	GPtrArray *client_id; /* of char*: key, value, ... */

	char *cap_tag;
	char *id_tag;
	char *tls_tag;
	char *caps; /* the capability atoms, separated by single spaces */
	/* the parts of the login still to send, one per continuation ("+")
	 * the server asks for; secrets, wiped */
	GPtrArray *pending_parts;
	GByteArray *reply;
} Imap;

static void
wipe_free(gpointer p)
{
	if (p != NULL)
		gh_secret_wipe_free(p, strlen(p));
}

static void
send_text(GhBackendLink *l, const char *text, gsize len)
{
	(void)gh_backend_link_send(l, text, len);
}

static gboolean
has_cap(Imap *d, const char *cap)
{
	/* scanned in place: a login asks for two or three atoms, and a split
	 * list of Dovecot's thirty would cost an allocation each */
	gsize n = strlen(cap);
	const char *p = d->caps;
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
set_caps(Imap *d, const char *text, gsize len)
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
	g_free(d->caps);
	d->caps = g_string_free(caps, FALSE);
}

/* "[CAPABILITY ...]" inside a status line, if any */
static gboolean
caps_from_code(Imap *d, const char *line, gsize len)
{
	static const char code[] = "[CAPABILITY ";
	const gsize n = sizeof(code) - 1;
	for (gsize i = 0; i + n <= len; i++) {
		if (line[i] == '[' && memcmp(line + i, code, n) == 0) {
			set_caps(d, line + i + n, len - i - n);
			return TRUE;
		}
	}
	return FALSE;
}

static char *
id_command(GhBackendLink *l, Imap *d)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	GString *s = g_string_sized_new(256);
	g_autofree char *addr = gh_imap_quote(p->client_addr);
	g_autofree char *local = gh_imap_quote(p->local_addr);
	g_autofree char *sid = gh_imap_quote(p->session_id);
	char port[GH_LINE_U64_MAX];
	guint pairs = 4;

	/* appended piece by piece: this runs on every login */
	g_string_append(s, d->id_tag);
	g_string_append(s, " ID (\"x-originating-ip\" ");
	g_string_append(s, addr);
	g_string_append(s, " \"x-originating-port\" \"");
	g_string_append_len(s, port, (gssize)gh_line_format_u64(port, p->client_port));
	g_string_append(s, "\" \"x-connected-ip\" ");
	g_string_append(s, local);
	g_string_append(s, " \"x-connected-port\" \"");
	g_string_append_len(s, port, (gssize)gh_line_format_u64(port, p->local_port));
	g_string_append(s, "\" \"x-session-id\" ");
	g_string_append(s, sid);
	pairs++;
	for (guint i = 0; i + 1 < d->client_id->len && pairs < GH_IMAP_ID_MAX_PAIRS; i += 2) {
		const char *k = g_ptr_array_index(d->client_id, i);
		const char *v = g_ptr_array_index(d->client_id, i + 1);
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
		g_string_append_c(s, ' ');
		g_string_append(s, qk);
		g_string_append_c(s, ' ');
		g_string_append(s, qv);
		pairs++;
	}
	g_string_append(s, ")\r\n");
	return g_string_free(s, FALSE);
}

/* Queue the ID (when forwarding) and the login, pipelined in one write. */
static void
send_login(GhBackendLink *l, Imap *d)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const GhBackendConfig *bc = p->backend;
	const GhSecret *password = NULL;
	GString *out = g_string_new(NULL);
	gboolean master = bc->login == GH_LOGIN_MASTER;
	gboolean plain = has_cap(d, "AUTH=PLAIN");
	gboolean sasl_ir = has_cap(d, "SASL-IR");

	if (!gh_backend_link_await_login(l)) {
		g_string_free(out, TRUE);
		return; /* parked: imap_login comes back here */
	}
	password = gh_backend_link_password(l);
	if (bc->forward_client) {
		g_autofree char *id = id_command(l, d);
		g_string_append(out, id);
	}
	if (master && !plain) {
		g_string_free(out, TRUE);
		gh_backend_link_fail(l, FALSE,
				     "login = master, but the server does not offer AUTH=PLAIN");
		return;
	}
	if (!master && password == NULL) {
		g_string_free(out, TRUE);
		gh_backend_link_fail(l, FALSE,
				     "the password went to a server that failed; "
				     "not sending it to another");
		return;
	}
	/* Each branch makes room for its whole line before a secret goes in:
	 * a GString that grows frees its old block, and a copy, unwiped. */
	if (master || (plain && sasl_ir)) {
		g_autoptr(GhSecret) master_pw = NULL;
		g_autofree char *b64 = NULL;
		if (master) {
			g_autoptr(GError) error = NULL;
			master_pw = gh_backend_master_password(bc, &error);
			if (master_pw == NULL) {
				g_string_free(out, TRUE);
				gh_backend_link_fail(l, FALSE, "master_password_file: %s",
						     error->message);
				return;
			}
			b64 = gh_sasl_plain_encode(p->user, bc->master_user, master_pw);
		} else {
			b64 = gh_sasl_plain_encode(NULL, p->user, password);
		}
		if (sasl_ir) {
			gh_secret_string_reserve(
			    out, strlen(d->tag) + strlen(" AUTHENTICATE PLAIN ") + strlen(b64) + 2);
			g_string_append(out, d->tag);
			g_string_append(out, " AUTHENTICATE PLAIN ");
			g_string_append(out, b64);
			g_string_append(out, "\r\n");
		} else {
			g_string_append_printf(out, "%s AUTHENTICATE PLAIN\r\n", d->tag);
			/* exact size: printf's growing buffer would free copies */
			g_ptr_array_add(d->pending_parts, g_strconcat(b64, "\r\n", NULL));
		}
		wipe_free(g_steal_pointer(&b64));
	} else if (has_cap(d, "LOGINDISABLED")) {
		g_string_free(out, TRUE);
		gh_backend_link_fail(l, FALSE,
				     "the server refuses LOGIN in plaintext (LOGINDISABLED)");
		return;
	} else {
		gsize pw_len = 0;
		const char *pw = gh_secret_get(password, &pw_len);
		gsize user_len = strlen(p->user);
		if (has_cap(d, "LITERAL+")) {
			/* RFC 7888: one write, no round trip per literal (two
			 * literal prefixes of under 32 octets each) */
			gh_secret_string_reserve(out, strlen(d->tag) + strlen(" LOGIN ") + 64 +
							  user_len + pw_len + 2);
			g_string_append_printf(out, "%s LOGIN {%zu+}\r\n", d->tag, user_len);
			g_string_append_len(out, p->user, (gssize)user_len);
			g_string_append_printf(out, " {%zu+}\r\n", pw_len);
			g_string_append_len(out, pw, (gssize)pw_len);
			g_string_append(out, "\r\n");
		} else {
			/* RFC 9051 4.3: each literal waits for the server's "+" */
			GString *part = g_string_new(NULL);
			g_string_append_printf(out, "%s LOGIN {%zu}\r\n", d->tag, user_len);
			g_string_append_len(part, p->user, (gssize)user_len);
			g_string_append_printf(part, " {%zu}\r\n", pw_len);
			g_ptr_array_add(d->pending_parts, g_string_free(part, FALSE));
			part = g_string_sized_new(pw_len + 3); /* never grows with it */
			g_string_append_len(part, pw, (gssize)pw_len);
			g_string_append(part, "\r\n");
			g_ptr_array_add(d->pending_parts, g_string_free(part, FALSE));
		}
	}
	if (d->pending_parts->len == 0)
		gh_backend_link_forget_password(l);
	d->state = ST_LOGIN;
	send_text(l, out->str, out->len);
	explicit_bzero(out->str, out->len);
	g_string_free(out, TRUE);
}

static void
ask_capabilities(GhBackendLink *l, Imap *d)
{
	g_autofree char *cmd = g_strdup_printf("%s CAPABILITY\r\n", d->cap_tag);
	d->state = ST_CAPABILITY;
	send_text(l, cmd, strlen(cmd));
}

/* The capabilities are known: STARTTLS first where asked for, else log in. */
static void
after_caps(GhBackendLink *l, Imap *d)
{
	if (gh_backend_link_params(l)->backend->tls == GH_TLS_STARTTLS &&
	    gh_backend_link_conn(l)->tls == NULL) {
		g_autofree char *cmd = NULL;
		if (!has_cap(d, "STARTTLS")) {
			gh_backend_link_fail(
			    l, FALSE, "tls = starttls, but the server does not offer STARTTLS");
			return;
		}
		cmd = g_strdup_printf("%s STARTTLS\r\n", d->tls_tag);
		d->state = ST_STARTTLS;
		send_text(l, cmd, strlen(cmd));
		return;
	}
	send_login(l, d);
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

/* RFC 5530 codes with which a server puts a login off instead of refusing
 * the credentials: a per-user limit (Dovecot's mail_max_userip_connections
 * says [LIMIT]), a mailbox in use, a part of the server that is down
 * (Dovecot's auth: [UNAVAILABLE]), its own bug. */
static const char *const deferring_codes[] = {"LIMIT", "INUSE", "UNAVAILABLE", "SERVERBUG"};

/* The tagged NO to our login (`at`: where the status word ends).  With one
 * of the codes above it is "not now", and the client hears it as the
 * server said it (the tag is the client's); with any other code, or none
 * ([AUTHENTICATIONFAILED], [EXPIRED], ...), the login is refused. */
static void
login_no(GhBackendLink *l, const char *line, gsize len, gsize at, const char *raw, gsize raw_len)
{
	g_autofree char *text = NULL;
	g_autofree char *why = NULL;

	if (at < len && line[at] == ' ')
		at++;
	for (gsize i = 0; i < G_N_ELEMENTS(deferring_codes); i++) {
		if (gh_imap_resp_code_is(line + at, len - at, deferring_codes[i])) {
			g_autoptr(GBytes) reply = g_bytes_new(raw, raw_len);
			why = g_strdup_printf("answered \"%s\"", shown(&text, line, len));
			gh_backend_link_finish(l, GH_BACKEND_DEFERRED, reply, why);
			return;
		}
	}
	why = g_strdup_printf("login refused: \"%s\"", shown(&text, line, len));
	gh_backend_link_finish(l, GH_BACKEND_REFUSED, NULL, why);
}

/* During the login: a continuation, our ID's answer, the tagged answer
 * that ends the attempt, or untagged data that is part of the answer. */
static void
on_login_line(
    GhBackendLink *l, Imap *d, const char *line, gsize len, const char *raw, gsize raw_len)
{
	g_autofree char *shown_text = NULL; /* see shown() */

	if (line[0] == '+') {
		char *part;
		if (d->pending_parts->len == 0) {
			gh_backend_link_fail(l, FALSE, "unexpected continuation \"%s\"",
					     shown(&shown_text, line, len));
			return;
		}
		part = g_ptr_array_steal_index(d->pending_parts, 0);
		if (d->pending_parts->len == 0)
			gh_backend_link_forget_password(l);
		send_text(l, part, strlen(part));
		wipe_free(part);
		return;
	}
	if (d->id_tag != NULL && starts_with_tag(line, len, d->id_tag))
		return; /* our ID's end; its outcome does not matter */
	if (starts_with_word(line, len, "* ID"))
		return; /* the server's ID answer is for us, not the client */
	if (starts_with_tag(line, len, d->tag)) {
		gsize skip = strlen(d->tag) + 1;
		if (status_is(line, len, skip, "OK")) {
			g_autoptr(GBytes) reply = NULL;
			g_byte_array_append(d->reply, (const guint8 *)raw, (guint)raw_len);
			reply = g_bytes_new(d->reply->data, d->reply->len);
			gh_backend_link_finish(l, GH_BACKEND_OK, reply, NULL);
		} else if (status_is(line, len, skip, "NO")) {
			login_no(l, line, len, skip + 2, raw, raw_len);
		} else {
			gh_backend_link_fail(l, FALSE, "login failed: \"%s\"",
					     shown(&shown_text, line, len));
		}
		return;
	}
	/* untagged data during the login is part of the answer */
	g_byte_array_append(d->reply, (const guint8 *)raw, (guint)raw_len);
}

/* One line from the server (without its line end); `raw` with it. */
static void
on_line(GhBackendLink *l, Imap *d, const char *line, gsize len, const char *raw, gsize raw_len)
{
	g_autofree char *shown_text = NULL; /* see shown() */

	switch (d->state) {
	case ST_GREETING:
		if (status_is(line, len, 2, "OK") && line[0] == '*') {
			if (caps_from_code(d, line, len))
				after_caps(l, d);
			else
				ask_capabilities(l, d);
			return;
		}
		/* PREAUTH: the server would hand us someone's session unasked */
		gh_backend_link_fail(l, status_is(line, len, 2, "BYE"), "greeting \"%s\"",
				     shown(&shown_text, line, len));
		return;
	case ST_CAPABILITY:
		if (starts_with_word(line, len, "* CAPABILITY")) {
			set_caps(d, line + strlen("* CAPABILITY "), len - strlen("* CAPABILITY "));
			return;
		}
		if (starts_with_tag(line, len, d->cap_tag)) {
			if (!status_is(line, len, strlen(d->cap_tag) + 1, "OK")) {
				gh_backend_link_fail(l, FALSE, "CAPABILITY failed: \"%s\"",
						     shown(&shown_text, line, len));
				return;
			}
			after_caps(l, d);
			return;
		}
		return; /* other untagged data */
	case ST_STARTTLS:
		if (starts_with_tag(line, len, d->tls_tag)) {
			if (!status_is(line, len, strlen(d->tls_tag) + 1, "OK")) {
				gh_backend_link_fail(l, FALSE, "STARTTLS refused: \"%s\"",
						     shown(&shown_text, line, len));
				return;
			}
			gh_backend_link_start_tls(l);
		}
		return; /* untagged data before the tagged reply */
	case ST_LOGIN:
		on_login_line(l, d, line, len, raw, raw_len);
		return;
	}
}

/* ---- the dialogue ---- */

static void
imap_connected(GhBackendLink *l, gpointer data)
{
	Imap *d = data;
	d->state = ST_GREETING;
	gh_backend_link_expect(l);
}

/* The credentials came to a parked link. */
static void
imap_login(GhBackendLink *l, gpointer data)
{
	send_login(l, data);
}

static GhBackendStep
imap_input(GhBackendLink *l, gpointer data)
{
	Imap *d = data;
	GhConn *conn = gh_backend_link_conn(l);
	gsize line_len = 0, used = 0;
	gboolean term = FALSE;
	g_autofree char *raw = NULL;
	GhLineStatus st = gh_line_next((const char *)conn->in->data, conn->in->len,
				       GH_IMAP_BACKEND_LINE_MAX, &line_len, &used, &term);
	if (st == GH_LINE_NEED_MORE)
		return GH_BACKEND_STEP_WAIT;
	if (st == GH_LINE_TOO_LONG) {
		gh_backend_link_fail(l, FALSE, "sent a line over %d bytes",
				     GH_IMAP_BACKEND_LINE_MAX);
		return GH_BACKEND_STEP_STOP;
	}
	/* the bytes as they came, NULs and all (g_strndup would stop at a
	 * NUL and zero the rest, CRLF included), plus a terminator */
	raw = g_malloc(used + 1);
	memcpy(raw, conn->in->data, used);
	raw[used] = '\0';
	gh_conn_consume(conn, used);
	on_line(l, d, raw, line_len, raw, used);
	return GH_BACKEND_STEP_MORE;
}

/* Inside TLS after STARTTLS: the capabilities as they are there. */
static void
imap_tls_ready(GhBackendLink *l, gpointer data)
{
	Imap *d = data;
	g_clear_pointer(&d->caps, g_free);
	ask_capabilities(l, d);
}

static void
imap_reset(gpointer data)
{
	Imap *d = data;
	d->state = ST_GREETING;
	g_clear_pointer(&d->caps, g_free);
	g_ptr_array_set_size(d->pending_parts, 0);
	g_byte_array_set_size(d->reply, 0);
}

static void
imap_free(gpointer data)
{
	Imap *d = data;
	g_free(d->tag);
	g_ptr_array_unref(d->client_id);
	g_free(d->cap_tag);
	g_free(d->id_tag);
	g_free(d->tls_tag);
	g_free(d->caps);
	g_ptr_array_unref(d->pending_parts);
	g_byte_array_unref(d->reply);
	g_free(d);
}

static const GhBackendDialogue imap_dialogue = {
    .connected = imap_connected,
    .input = imap_input,
    .tls_ready = imap_tls_ready,
    .login = imap_login,
    /* our own tag: the client's are not in this connection yet */
    .bye = "ghb LOGOUT\r\n",
    .reset = imap_reset,
    .free = imap_free,
};

/* Our own tags, never the client's `tag` (which may be NULL). */
static void
pick_tags(Imap *d, const char *tag)
{
	g_free(d->cap_tag);
	d->cap_tag = g_strdup(g_strcmp0(tag, "ghc") == 0 ? "ghc2" : "ghc");
	g_free(d->id_tag);
	d->id_tag = g_strdup(g_strcmp0(tag, "ghi") == 0 ? "ghi2" : "ghi");
	g_free(d->tls_tag);
	d->tls_tag = g_strdup(g_strcmp0(tag, "ght") == 0 ? "ght2" : "ght");
}

GhBackendLink *
gh_imap_backend_connect(const GhBackendParams *p,
			const char *tag,
			const char *const *client_id,
			GMainContext *context,
			GhBackendDone done,
			gpointer user_data)
{
	Imap *d = g_new0(Imap, 1);
	d->tag = g_strdup(tag);
	d->client_id = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; client_id != NULL && client_id[i] != NULL; i++)
		g_ptr_array_add(d->client_id, g_strdup(client_id[i]));
	/* our tags must not be the client's */
	pick_tags(d, tag);
	d->pending_parts = g_ptr_array_new_with_free_func(wipe_free);
	d->reply = g_byte_array_new();
	return gh_backend_link_start(p, &imap_dialogue, d, context, done, user_data);
}

void
gh_imap_backend_adopt(GhBackendLink *l, const char *tag, const char *const *client_id)
{
	Imap *d = gh_backend_link_dialogue(l);
	g_free(d->tag);
	d->tag = g_strdup(tag);
	g_ptr_array_set_size(d->client_id, 0);
	for (guint i = 0; client_id != NULL && client_id[i] != NULL; i++)
		g_ptr_array_add(d->client_id, g_strdup(client_id[i]));
	/* our tags must not be the client's from now on (the ID, and a
	 * fail-over's CAPABILITY and STARTTLS); the ones sent before were
	 * answered before the link parked */
	pick_tags(d, tag);
}
