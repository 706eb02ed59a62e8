/*
 * pop3-backend.c: the POP3 steps of a backend link (see pop3-backend.h).
 *
 * Invariants: one command is in flight at a time, and `state` says which
 * answers next (never two in one write: Dovecot answers each at once, and
 * its second answer would wait for our delayed ACK, 40 ms);
 * input() handles one status line, or one whole CAPA body, per call; the
 * link's copy of the password is forgotten as soon as the last command that
 * carries it is queued, and every buffer that held it is wiped.
 */
#include "gh-build.h"

#include "pop3/pop3-backend.h"
#include "common/line.h"
#include "config/log.h"
#include "net/connector.h"
#include "pop3/pop3-parser.h"
#include "session/sasl.h"

#include <string.h>

/* a CAPA body is a few hundred bytes; anything near this is not a server */
#define GH_POP3_CAPA_MAX (16 * 1024)

typedef enum {
	ST_GREETING,
	ST_STLS,
	ST_CAPA,
	ST_CAPA_BODY,
	ST_XCLIENT, /* XCLIENT's answer is next */
	ST_LOGIN,   /* the answer to AUTH, USER, or PASS is next */
} State;

typedef struct {
	State state;
	gboolean xclient;      /* the server takes XCLIENT from us */
	gboolean xclient_sent; /* once per server */
	gboolean sasl_plain;
	/* what the login sends after the server's next "+" (AUTH PLAIN's
	 * response) or +OK (USER's PASS line), wiped when sent; or NULL */
	char *next_part;
	gboolean next_after_ok; /* next_part waits for +OK (PASS), else for "+" */
	char *login_text;       /* in ST_XCLIENT: the login that waits for its +OK */
} Pop3;

static void
wipe_free(char *p)
{
	if (p != NULL)
		gh_secret_wipe_free(p, strlen(p));
}

static void
send_text(GhBackendLink *l, Pop3 *d, State next, const char *text)
{
	d->state = next;
	(void)gh_backend_link_send(l, text, strlen(text));
}

/* The line as the log may show it. */
static char *
shown(const char *line, gsize len)
{
	return gh_log_escape(line, MIN(len, 200), 200);
}

static void
xclient_line(GhBackendLink *l, GString *out)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	char port[GH_LINE_U64_MAX];
	gsize n = gh_line_format_u64(port, p->client_port);

	/* Dovecot's XCLIENT takes the address as written, IPv6 too */
	g_string_append(out, "XCLIENT ADDR=");
	g_string_append(out, p->client_addr);
	g_string_append(out, " PORT=");
	g_string_append_len(out, port, (gssize)n);
	g_string_append(out, "\r\n");
}

/* The login as `login =` says, appended to `out`; the rest of it (the
 * response after "+", the PASS line) in d->next_part.  FALSE when it
 * cannot be sent (the link has failed). */
static gboolean
login_text(GhBackendLink *l, Pop3 *d, GString *out)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const GhBackendConfig *bc = p->backend;
	const GhSecret *password = gh_backend_link_password(l);
	gboolean master = bc->login == GH_LOGIN_MASTER;
	g_autoptr(GhSecret) master_pw = NULL;
	char *b64;

	if (master && !d->sasl_plain) {
		gh_backend_link_fail(l, FALSE,
				     "login = master, but the server does not offer SASL PLAIN");
		return FALSE;
	}
	if (!master && password == NULL) {
		gh_backend_link_fail(l, FALSE,
				     "the password went to a server that failed; "
				     "not sending it to another");
		return FALSE;
	}
	if (master) {
		g_autoptr(GError) error = NULL;
		master_pw = gh_backend_master_password(bc, &error);
		if (master_pw == NULL) {
			gh_backend_link_fail(l, FALSE, "master_password_file: %s", error->message);
			return FALSE;
		}
	}
	if (master || d->sasl_plain) {
		b64 = master ? gh_sasl_plain_encode(p->user, bc->master_user, master_pw)
			     : gh_sasl_plain_encode(NULL, p->user, password);
		/* RFC 5034 4: the command with its response within 255 octets,
		 * else the response alone after the server's "+" */
		if (strlen("AUTH PLAIN ") + strlen(b64) + 2 <= GH_POP3_MAX_LINE) {
			/* no growth once the response is in (it would free a
			 * copy of it unwiped) */
			gh_secret_string_reserve(out, strlen("AUTH PLAIN ") + strlen(b64) + 2);
			g_string_append(out, "AUTH PLAIN ");
			g_string_append(out, b64);
			g_string_append(out, "\r\n");
			wipe_free(b64);
		} else {
			g_string_append(out, "AUTH PLAIN\r\n");
			d->next_part = g_strconcat(b64, "\r\n", NULL);
			d->next_after_ok = FALSE;
			wipe_free(b64);
		}
	} else {
		gsize pw_len = 0;
		const char *pw = gh_secret_get(password, &pw_len);
		/* USER and PASS carry them as text: a line end would split them */
		if (strpbrk(p->user, "\r\n") != NULL || memchr(pw, '\r', pw_len) != NULL ||
		    memchr(pw, '\n', pw_len) != NULL || memchr(pw, '\0', pw_len) != NULL) {
			gh_backend_link_fail(l, FALSE,
					     "the server offers no SASL PLAIN, and USER/PASS "
					     "cannot carry this user name or password");
			return FALSE;
		}
		g_string_append(out, "USER ");
		g_string_append(out, p->user);
		g_string_append(out, "\r\n");
		d->next_part = g_malloc(strlen("PASS ") + pw_len + 3);
		memcpy(d->next_part, "PASS ", 5);
		memcpy(d->next_part + 5, pw, pw_len);
		memcpy(d->next_part + 5 + pw_len, "\r\n", 3);
		d->next_after_ok = TRUE;
	}
	if (d->next_part == NULL)
		gh_backend_link_forget_password(l);
	return TRUE;
}

/* XCLIENT is due: forward_client is on, the server takes it, it has not
 * been sent, and the client is known (a warm link learns it at adoption). */
static gboolean
xclient_due(GhBackendLink *l, Pop3 *d)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	return p->backend->forward_client && d->xclient && !d->xclient_sent &&
	       p->client_addr[0] != '\0';
}

static void
send_xclient(GhBackendLink *l, Pop3 *d)
{
	GString *out = g_string_sized_new(96);
	xclient_line(l, out);
	d->xclient_sent = TRUE;
	send_text(l, d, ST_XCLIENT, out->str);
	g_string_free(out, TRUE);
}

/* The credentials are here (or came to a parked link): the login, after
 * XCLIENT when a warm link has only now learnt its client. */
static void
send_login(GhBackendLink *l, Pop3 *d)
{
	GString *login = g_string_sized_new(128);

	if (!login_text(l, d, login))
		goto out;
	if (xclient_due(l, d)) {
		d->login_text = g_string_free(g_steal_pointer(&login), FALSE);
		send_xclient(l, d);
		goto out;
	}
	send_text(l, d, ST_LOGIN, login->str);
out:
	if (login != NULL) {
		explicit_bzero(login->str, login->len);
		g_string_free(login, TRUE);
	}
}

/* Where the login starts: send it, or park until the credentials come. */
static void
to_login(GhBackendLink *l, Pop3 *d)
{
	/* else parked: pop3_login comes back with the credentials */
	if (gh_backend_link_await_login(l))
		send_login(l, d);
}

static void
after_capa(GhBackendLink *l, Pop3 *d, char **capa)
{
	g_auto(GStrv) sasl = NULL;

	if (gh_pop3_capa_find(capa, "XCLIENT", NULL) != NULL)
		d->xclient = TRUE;
	d->sasl_plain = FALSE;
	if (gh_pop3_capa_find(capa, "SASL", &sasl) != NULL)
		for (guint i = 0; sasl[i] != NULL; i++)
			if (g_ascii_strcasecmp(sasl[i], "PLAIN") == 0)
				d->sasl_plain = TRUE;
	/* the client's address goes first, while its password is checked */
	if (xclient_due(l, d)) {
		send_xclient(l, d);
		return;
	}
	to_login(l, d);
}

/* The answer to the login: AUTH's, USER's or PASS's. */
static void
on_login_status(GhBackendLink *l,
		Pop3 *d,
		const GhPop3StatusLine *st,
		const char *line,
		gsize len,
		const char *raw,
		gsize raw_len)
{
	g_autofree char *text = NULL;

	/* with a part still to send, only the answer that asks for it will
	 * do: "+" after AUTH PLAIN alone, +OK after USER */
	if (st->status == GH_POP3_STATUS_MORE ||
	    (st->status == GH_POP3_STATUS_OK && d->next_part != NULL)) {
		char *part = g_steal_pointer(&d->next_part);
		if (part == NULL || (st->status == GH_POP3_STATUS_MORE) == d->next_after_ok) {
			wipe_free(part);
			text = shown(line, len);
			gh_backend_link_fail(l, FALSE, "unexpected answer to the login: \"%s\"",
					     text);
			return;
		}
		gh_backend_link_forget_password(l);
		send_text(l, d, ST_LOGIN, part);
		wipe_free(part);
		return;
	}
	if (st->status == GH_POP3_STATUS_OK) {
		g_autoptr(GBytes) reply = g_bytes_new(raw, raw_len);
		gh_backend_link_finish(l, GH_BACKEND_OK, reply, NULL);
		return;
	}
	text = shown(line, len);
	/* RFC 3206: [AUTH] (or no code) is about the credentials; any other
	 * code ([SYS/TEMP], [IN-USE] for a locked mailbox or, from Dovecot,
	 * too many connections, [LOGIN-DELAY]) puts the login off: the client
	 * hears the server's own answer, code and all */
	if (st->status == GH_POP3_STATUS_ERR &&
	    (st->code_len == 0 || gh_pop3_code_is(st, "AUTH"))) {
		g_autofree char *why = g_strdup_printf("login refused: \"%s\"", text);
		gh_backend_link_finish(l, GH_BACKEND_REFUSED, NULL, why);
		return;
	}
	if (st->status == GH_POP3_STATUS_ERR) {
		g_autoptr(GBytes) reply = g_bytes_new(raw, raw_len);
		g_autofree char *why = g_strdup_printf("answered \"%s\"", text);
		gh_backend_link_finish(l, GH_BACKEND_DEFERRED, reply, why);
		return;
	}
	gh_backend_link_fail(l, FALSE, "login failed: \"%s\"", text);
}

/* One status line (without its line end; `raw` with it). */
static void
on_status(GhBackendLink *l, Pop3 *d, const char *line, gsize len, const char *raw, gsize raw_len)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	GhPop3StatusLine st;
	g_autofree char *text = NULL;

	gh_pop3_parse_status(line, len, &st);
	if (st.status == GH_POP3_STATUS_BAD) {
		text = shown(line, len);
		gh_backend_link_fail(l, FALSE, "sent something that is not a POP3 answer: \"%s\"",
				     text);
		return;
	}
	switch (d->state) {
	case ST_GREETING:
		if (st.status != GH_POP3_STATUS_OK) {
			text = shown(line, len);
			gh_backend_link_fail(l, TRUE, "greeting \"%s\"", text);
			return;
		}
		d->xclient = gh_pop3_code_is(&st, "XCLIENT");
		if (p->backend->tls == GH_TLS_STARTTLS && gh_backend_link_conn(l)->tls == NULL)
			send_text(l, d, ST_STLS, "STLS\r\n");
		else
			send_text(l, d, ST_CAPA, "CAPA\r\n");
		return;
	case ST_STLS:
		if (st.status != GH_POP3_STATUS_OK) {
			text = shown(line, len);
			gh_backend_link_fail(l, FALSE,
					     "tls = starttls, but STLS was refused: \"%s\"", text);
			return;
		}
		gh_backend_link_start_tls(l);
		return;
	case ST_CAPA:
		if (st.status == GH_POP3_STATUS_OK) {
			d->state = ST_CAPA_BODY;
			return;
		}
		if (st.status == GH_POP3_STATUS_MORE) {
			text = shown(line, len);
			gh_backend_link_fail(l, FALSE, "unexpected answer to CAPA: \"%s\"", text);
			return;
		}
		/* RFC 1939 alone: no CAPA, so USER and PASS */
		after_capa(l, d, NULL);
		return;
	case ST_XCLIENT:
		if (st.status != GH_POP3_STATUS_OK) {
			text = shown(line, len);
			gh_backend_link_fail(l, FALSE,
					     "XCLIENT refused: \"%s\" (Dovecot: is our address in "
					     "login_trusted_networks?)",
					     text);
			return;
		}
		if (d->login_text != NULL) {
			char *login = g_steal_pointer(&d->login_text);
			send_text(l, d, ST_LOGIN, login);
			wipe_free(login);
		} else {
			to_login(l, d);
		}
		return;
	case ST_LOGIN:
		on_login_status(l, d, &st, line, len, raw, raw_len);
		return;
	case ST_CAPA_BODY:
		break; /* input() reads the body */
	}
}

/* ---- the dialogue ---- */

static void
pop3_connected(GhBackendLink *l, gpointer data)
{
	Pop3 *d = data;
	d->state = ST_GREETING;
	gh_backend_link_expect(l);
}

static GhBackendStep
pop3_input(GhBackendLink *l, gpointer data)
{
	Pop3 *d = data;
	GhConn *conn = gh_backend_link_conn(l);
	const char *buf = (const char *)conn->in->data;
	gsize line_len = 0, used = 0;
	GhLineStatus st;
	g_autofree char *raw = NULL;

	if (d->state == ST_CAPA_BODY) {
		g_auto(GStrv) capa = NULL;
		GhPop3MultiStatus ms =
		    gh_pop3_parse_multiline(buf, conn->in->len, GH_POP3_CAPA_MAX, &capa, &used);
		if (ms == GH_POP3_MULTI_NEED_MORE)
			return GH_BACKEND_STEP_WAIT;
		if (ms == GH_POP3_MULTI_BAD) {
			gh_backend_link_fail(l, FALSE, "sent a CAPA answer over %d bytes",
					     GH_POP3_CAPA_MAX);
			return GH_BACKEND_STEP_STOP;
		}
		gh_conn_consume(conn, used);
		after_capa(l, d, capa);
		return GH_BACKEND_STEP_MORE;
	}
	st = gh_line_next(buf, conn->in->len, GH_POP3_MAX_REPLY_LINE, &line_len, &used, NULL);
	if (st == GH_LINE_NEED_MORE)
		return GH_BACKEND_STEP_WAIT;
	if (st == GH_LINE_TOO_LONG) {
		gh_backend_link_fail(l, FALSE, "sent a line over %d bytes", GH_POP3_MAX_REPLY_LINE);
		return GH_BACKEND_STEP_STOP;
	}
	/* the bytes as they came, with their line end: the login's +OK goes
	 * to the client as it is */
	raw = g_malloc(used + 1);
	memcpy(raw, buf, used);
	raw[used] = '\0';
	gh_conn_consume(conn, used);
	on_status(l, d, raw, line_len, raw, used);
	return GH_BACKEND_STEP_MORE;
}

/* The credentials came to a parked link. */
static void
pop3_login(GhBackendLink *l, gpointer data)
{
	send_login(l, data);
}

/* Inside TLS after STLS: the capabilities as they are there (RFC 2595 4). */
static void
pop3_tls_ready(GhBackendLink *l, gpointer data)
{
	send_text(l, data, ST_CAPA, "CAPA\r\n");
}

static void
pop3_reset(gpointer data)
{
	Pop3 *d = data;
	d->state = ST_GREETING;
	d->xclient = d->xclient_sent = d->sasl_plain = FALSE;
	wipe_free(g_steal_pointer(&d->next_part));
	wipe_free(g_steal_pointer(&d->login_text));
}

static void
pop3_free(gpointer data)
{
	pop3_reset(data);
	g_free(data);
}

static const GhBackendDialogue pop3_dialogue = {
    .connected = pop3_connected,
    .input = pop3_input,
    .tls_ready = pop3_tls_ready,
    .login = pop3_login,
    .bye = "QUIT\r\n",
    .reset = pop3_reset,
    .free = pop3_free,
};

GhBackendLink *
gh_pop3_backend_connect(const GhBackendParams *p,
			GMainContext *context,
			GhBackendDone done,
			gpointer user_data)
{
	return gh_backend_link_start(p, &pop3_dialogue, g_new0(Pop3, 1), context, done, user_data);
}
