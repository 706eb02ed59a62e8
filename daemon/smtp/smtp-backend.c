/*
 * smtp-backend.c: the SMTP steps of a backend link: bringing the backend
 * MTA's session to the state the client expects (see smtp-backend.h).
 *
 * Invariants: one command is in flight at a time and `state` says which;
 * each reply is handled once (input() takes one whole reply per call;
 * what the server sent early stays in the link's buffer for the next
 * step); the link's copy of the password is forgotten as soon as AUTH has
 * been queued.
 */
#include "gh-build.h"

#include "smtp/smtp-backend.h"
#include "net/connector.h"
#include "common/line.h"
#include "config/log.h"
#include "session/sasl.h"
#include "smtp/smtp-parser.h"

#include <string.h>

/* an EHLO reply is a few hundred bytes; anything near this is not an MTA */
#define GH_BACKEND_REPLY_MAX (16 * 1024)

typedef enum {
	ST_GREETING,
	ST_STARTTLS,
	ST_EHLO,
	ST_XCLIENT,
	ST_EHLO_AGAIN,
	ST_AUTH,
} State;

typedef struct {
	State state;
	char *client_helo;
	gboolean client_esmtp;
	/* parked (login_later): what comes once the user is checked */
	enum { PARKED_NOT, PARKED_XCLIENT, PARKED_AUTH, PARKED_DONE } parked;
	/* the XCLIENT attributes the server offers that gatehoused names
	 * (XA_*), from its EHLO reply or, on a kept connection, from the
	 * connection (GhConn.learned) */
	guint xclient_attrs;
} Smtp;

/* The XCLIENT attributes gatehoused knows a value for, as bits; the order
 * of xclient_names is the order they are sent in. */
enum { XA_ADDR, XA_PORT, XA_NAME, XA_HELO, XA_PROTO, XA_LOGIN, XA_COUNT };
static const char *const xclient_names[XA_COUNT] = {"ADDR", "PORT",  "NAME",
						    "HELO", "PROTO", "LOGIN"};

/* The attributes of an EHLO reply's XCLIENT line that gatehoused names. */
static guint
xclient_attrs(char **offered)
{
	guint attrs = 0;

	for (guint i = 0; offered != NULL && offered[i] != NULL; i++)
		for (guint a = 0; a < XA_COUNT; a++)
			if (g_ascii_strcasecmp(offered[i], xclient_names[a]) == 0)
				attrs |= 1u << a;
	return attrs;
}

static void
send_line(GhBackendLink *l, Smtp *d, State next, const char *line)
{
	d->state = next;
	(void)gh_backend_link_send(l, line, strlen(line));
}

static void
send_ehlo(GhBackendLink *l, Smtp *d, State next, const char *name)
{
	g_autofree char *line = g_strconcat("EHLO ", name, "\r\n", NULL);
	send_line(l, d, next, line);
}

/* The reply's first line, escaped, for a log line: made only where one is
 * written, not for every reply. */
static char *
reply_text(const GhSmtpReply *r)
{
	const char *first = r->lines->len > 0 ? g_ptr_array_index(r->lines, 0) : "";
	g_autofree char *esc = gh_log_escape(first, strlen(first), 200);
	return g_strdup_printf("%u %s", r->code, esc);
}

/* XCLIENT with each attribute in `attrs` that has a value, built in one
 * string (a login's hot path: no formatting, no copies per attribute). */
static char *
xclient_line(GhBackendLink *l, Smtp *d, guint attrs)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const char *user =
	    p->user != NULL && p->backend->login == GH_LOGIN_XCLIENT ? p->user : NULL;
	/* on a connection that may carry another client next
	 * (reuse_connections), the attributes that name a client are named
	 * each time, so that nothing of the last one is left.  (Postfix
	 * refuses PROTO=[UNAVAILABLE]; a session that logs in has said EHLO,
	 * so PROTO is ESMTP for all that keep one.) */
	const char *unknown = p->backend->reuse_connections ? "[UNAVAILABLE]" : NULL;
	char port[GH_LINE_U64_MAX + 1];
	GString *s = g_string_sized_new(160);

	g_string_append(s, "XCLIENT");
	for (guint a = 0; a < XA_COUNT; a++) {
		const char *value = NULL;
		const char *prefix = "";

		if ((attrs & (1u << a)) == 0)
			continue;
		switch (a) {
		case XA_ADDR:
			value = p->client_addr;
			if (strchr(value, ':') != NULL)
				prefix = "IPV6:";
			break;
		case XA_PORT:
			port[gh_line_format_u64(port, p->client_port)] = '\0';
			value = port;
			break;
		case XA_NAME:
			/* no reverse lookup here: say so, as Postfix's docs ask */
			value = "[UNAVAILABLE]";
			break;
		case XA_HELO:
			value = d->client_helo != NULL ? d->client_helo : unknown;
			break;
		case XA_PROTO:
			value = d->client_helo == NULL ? NULL : d->client_esmtp ? "ESMTP" : "SMTP";
			break;
		case XA_LOGIN:
			value = user != NULL ? user : unknown;
			break;
		}
		if (value == NULL)
			continue;
		g_string_append_c(s, ' ');
		g_string_append(s, xclient_names[a]);
		g_string_append_c(s, '=');
		g_string_append(s, prefix);
		gh_smtp_xtext_append(s, value);
	}
	g_string_append(s, "\r\n");
	return g_string_free(s, FALSE);
}

/* AUTH PLAIN as `login =` says; the password is forgotten once queued. */
static void
send_auth(GhBackendLink *l, Smtp *d)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const GhBackendConfig *bc = p->backend;
	g_autofree char *b64 = NULL;
	g_autofree char *line = NULL;

	if (bc->login == GH_LOGIN_PASSTHROUGH) {
		const GhSecret *pw = gh_backend_link_password(l);
		if (pw == NULL) {
			gh_backend_link_fail(l, FALSE,
					     "the password went to a server that failed; "
					     "not sending it to another");
			return;
		}
		b64 = gh_sasl_plain_encode(NULL, p->user, pw);
	} else {
		g_autoptr(GError) error = NULL;
		g_autoptr(GhSecret) master = gh_backend_master_password(bc, &error);
		if (master == NULL) {
			gh_backend_link_fail(l, FALSE, "master_password_file: %s", error->message);
			return;
		}
		b64 = gh_sasl_plain_encode(p->user, bc->master_user, master);
	}
	/* one allocation of the exact size: printf's growing buffer would
	 * free copies of the response unwiped */
	line = g_strconcat("AUTH PLAIN ", b64, "\r\n", NULL);
	gh_secret_wipe_free(b64, strlen(b64));
	b64 = NULL;
	gh_backend_link_forget_password(l);
	send_line(l, d, ST_AUTH, line);
	explicit_bzero(line, strlen(line));
}

static void
send_xclient(GhBackendLink *l, Smtp *d)
{
	g_autofree char *line = xclient_line(l, d, d->xclient_attrs);
	GhConn *conn = gh_backend_link_conn(l);

	/* kept with the connection, for the next session's XCLIENT on it */
	if (conn != NULL)
		conn->learned = d->xclient_attrs;
	send_line(l, d, ST_XCLIENT, line);
}

/* The credentials came to a parked link: the step it parked before. */
static void
smtp_login(GhBackendLink *l, gpointer data)
{
	Smtp *d = data;
	int parked = d->parked;

	d->parked = PARKED_NOT;
	if (parked == PARKED_XCLIENT)
		send_xclient(l, d);
	else if (parked == PARKED_AUTH)
		send_auth(l, d);
	else
		gh_backend_link_finish(l, GH_BACKEND_OK, NULL, NULL);
}

/* The next step needs the checked user: TRUE to take it now, FALSE when
 * parked until smtp_login. */
static gboolean
user_known(GhBackendLink *l, Smtp *d, int parked)
{
	if (gh_backend_link_await_login(l))
		return TRUE;
	d->parked = parked;
	return FALSE;
}

static void
after_ehlo(GhBackendLink *l, Smtp *d, const GhSmtpReply *ehlo)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	const GhBackendConfig *bc = p->backend;
	g_auto(GStrv) offered = NULL;
	/* (the attributes are asked for only where XCLIENT may follow) */
	gboolean has_xclient =
	    d->state == ST_EHLO && gh_smtp_reply_has_extension(ehlo, "XCLIENT", &offered);
	/* a session that logs in (not the MX role), now or once it is checked */
	gboolean logs_in = p->user != NULL || p->login_later;

	if (d->state == ST_EHLO && bc->tls == GH_TLS_STARTTLS &&
	    gh_backend_link_conn(l)->tls == NULL) {
		if (!gh_smtp_reply_has_extension(ehlo, "STARTTLS", NULL)) {
			gh_backend_link_fail(
			    l, FALSE, "tls = starttls, but the server does not offer STARTTLS");
			return;
		}
		send_line(l, d, ST_STARTTLS, "STARTTLS\r\n");
		return;
	}
	if (d->state == ST_EHLO) {
		gboolean want_xclient =
		    bc->login == GH_LOGIN_XCLIENT || (bc->forward_client && has_xclient);
		if (bc->login == GH_LOGIN_XCLIENT && !has_xclient) {
			gh_backend_link_fail(
			    l, FALSE,
			    "login = xclient, but the server does not offer "
			    "XCLIENT to us (Postfix: smtpd_authorized_xclient_hosts)");
			return;
		}
		d->xclient_attrs = xclient_attrs(offered);
		/* login = xclient without forward_client: the user and the
		 * HELO, not the address (the backend keeps seeing ours) */
		if (!bc->forward_client)
			d->xclient_attrs &= ~((1u << XA_ADDR) | (1u << XA_PORT) | (1u << XA_NAME));
		if (want_xclient && bc->login == GH_LOGIN_XCLIENT && logs_in &&
		    !user_known(l, d, PARKED_XCLIENT))
			return; /* XCLIENT LOGIN= names the user */
		if (want_xclient) {
			send_xclient(l, d);
			return;
		}
	}
	if (logs_in && (bc->login == GH_LOGIN_PASSTHROUGH || bc->login == GH_LOGIN_MASTER)) {
		if (user_known(l, d, PARKED_AUTH))
			send_auth(l, d);
		return;
	}
	/* login = none, or xclient done: ready, but not before the check */
	if (logs_in && !user_known(l, d, PARKED_DONE))
		return;
	gh_backend_link_finish(l, GH_BACKEND_OK, NULL, NULL);
}

static void
on_reply(GhBackendLink *l, Smtp *d, const GhSmtpReply *r)
{
	const GhBackendParams *p = gh_backend_link_params(l);
	switch (d->state) {
	case ST_GREETING:
		if (r->code != 220) {
			g_autofree char *text = reply_text(r);
			gh_backend_link_fail(l, r->code / 100 == 4, "greeting %s", text);
			return;
		}
		send_ehlo(l, d, ST_EHLO, p->hostname);
		return;
	case ST_EHLO:
	case ST_EHLO_AGAIN:
		if (r->code != 250) {
			g_autofree char *text = reply_text(r);
			gh_backend_link_fail(l, FALSE, "EHLO refused: %s", text);
			return;
		}
		after_ehlo(l, d, r);
		return;
	case ST_XCLIENT:
		/* Postfix answers a successful XCLIENT with a new 220 greeting */
		if (r->code != 220) {
			g_autofree char *text = reply_text(r);
			gh_backend_link_fail(l, FALSE, "XCLIENT refused: %s", text);
			return;
		}
		send_ehlo(l, d, ST_EHLO_AGAIN,
			  d->client_helo != NULL ? d->client_helo : p->hostname);
		return;
	case ST_AUTH:
		/* RFC 4954: 535 is about the credentials; a 4xx other than 421
		 * (454: the server's own check is down) puts the login off */
		if (r->code == 535) {
			g_autofree char *text = reply_text(r);
			g_autofree char *why = g_strdup_printf("AUTH refused: %s", text);
			gh_backend_link_finish(l, GH_BACKEND_REFUSED, NULL, why);
			return;
		}
		if (r->code / 100 == 4 && r->code != 421) {
			g_autofree char *text = reply_text(r);
			g_autofree char *why = g_strdup_printf("answered AUTH with \"%s\"", text);
			gh_backend_link_finish(l, GH_BACKEND_DEFERRED, NULL, why);
			return;
		}
		if (r->code != 235) {
			g_autofree char *text = reply_text(r);
			gh_backend_link_fail(l, FALSE, "AUTH refused: %s", text);
			return;
		}
		gh_backend_link_finish(l, GH_BACKEND_OK, NULL, NULL);
		return;
	case ST_STARTTLS:
		if (r->code != 220) {
			g_autofree char *text = reply_text(r);
			gh_backend_link_fail(l, FALSE, "STARTTLS refused: %s", text);
			return;
		}
		gh_backend_link_start_tls(l);
		return;
	}
}

/* ---- the dialogue ---- */

static void
smtp_connected(GhBackendLink *l, gpointer data)
{
	Smtp *d = data;
	d->state = ST_GREETING;
	gh_backend_link_expect(l);
}

static GhBackendStep
smtp_input(GhBackendLink *l, gpointer data)
{
	Smtp *d = data;
	GhConn *conn = gh_backend_link_conn(l);
	GhSmtpReply r = {0};
	gsize used = 0;
	GhSmtpReplyStatus st = gh_smtp_parse_reply((const char *)conn->in->data, conn->in->len,
						   GH_BACKEND_REPLY_MAX, &r, &used);
	if (st == GH_SMTP_REPLY_BAD) {
		gh_backend_link_fail(l, FALSE, "sent something that is not an SMTP reply");
		return GH_BACKEND_STEP_STOP;
	}
	if (st != GH_SMTP_REPLY_OK)
		return GH_BACKEND_STEP_WAIT;
	gh_conn_consume(conn, used);
	on_reply(l, d, &r);
	gh_smtp_reply_clear(&r);
	return GH_BACKEND_STEP_MORE;
}

/* A connection kept after a client's QUIT parks again at once, where a
 * warm one parks after its EHLO, with nothing said to the server: it was
 * kept only right after a message the server accepted, which ends the
 * transaction (RFC 5321 4.1.1.4), so the server already waits for the next
 * MAIL (login = none) or XCLIENT (login = xclient, allowed outside a
 * transaction).  That XCLIENT names the attributes the connection's first
 * EHLO offered (GhConn.learned); a server that closed the connection
 * meanwhile is seen while parked. */
static void
smtp_resumed(GhBackendLink *l, gpointer data)
{
	Smtp *d = data;
	gboolean xclient = gh_backend_link_params(l)->backend->login == GH_LOGIN_XCLIENT;

	d->xclient_attrs = gh_backend_link_conn(l)->learned;
	/* a kept link always waits for its next session (login_later) */
	(void)user_known(l, d, xclient ? PARKED_XCLIENT : PARKED_DONE);
}

/* Inside TLS after STARTTLS: start over with EHLO (RFC 3207 4.2). */
static void
smtp_tls_ready(GhBackendLink *l, gpointer data)
{
	send_ehlo(l, data, ST_EHLO, gh_backend_link_params(l)->hostname);
}

static void
smtp_reset(gpointer data)
{
	Smtp *d = data;
	d->state = ST_GREETING;
	d->parked = PARKED_NOT;
	d->xclient_attrs = 0;
}

static void
smtp_free(gpointer data)
{
	Smtp *d = data;
	g_free(d->client_helo);
	g_free(d);
}

static const GhBackendDialogue smtp_dialogue = {
    .connected = smtp_connected,
    .input = smtp_input,
    .tls_ready = smtp_tls_ready,
    .login = smtp_login,
    .resumed = smtp_resumed,
    .bye = "QUIT\r\n",
    .reset = smtp_reset,
    .free = smtp_free,
};

GhBackendLink *
gh_smtp_backend_connect(const GhBackendParams *p,
			const char *client_helo,
			gboolean client_esmtp,
			GMainContext *context,
			GhBackendDone done,
			gpointer user_data)
{
	Smtp *d = g_new0(Smtp, 1);
	d->client_helo = g_strdup(client_helo);
	d->client_esmtp = client_esmtp;
	return gh_backend_link_start(p, &smtp_dialogue, d, context, done, user_data);
}

void
gh_smtp_backend_adopt(GhBackendLink *l, const char *client_helo, gboolean client_esmtp)
{
	Smtp *d = gh_backend_link_dialogue(l);
	g_free(d->client_helo);
	d->client_helo = g_strdup(client_helo);
	d->client_esmtp = client_esmtp;
}

GhBackendLink *
gh_smtp_backend_resume(const GhBackendParams *p,
		       GMainContext *context,
		       GhConn *conn,
		       const char *server,
		       GhBackendDone done,
		       gpointer user_data)
{
	Smtp *d = g_new0(Smtp, 1);
	return gh_backend_link_resume(p, &smtp_dialogue, d, context, conn, server, done, user_data);
}
