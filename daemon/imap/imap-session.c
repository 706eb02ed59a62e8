/*
 * imap-session.c: the IMAP front end (see imap-session.h).
 *
 * Phases as in smtp-session.c: COMMAND and the AUTHENTICATE continuation
 * phases read client input; VERIFYING and BACKEND read nothing, so commands
 * the client pipelined behind its LOGIN wait, in order, in the client's
 * input buffer, for the relay (after a good login) or for us (after a failed
 * one).  The parser returns at the end of each command and never holds
 * bytes of the next one when it does.
 *
 * Invariants: the password lives in `password` from decoding until the
 * backend handshake has its own copy or the login failed; the client's tag
 * and every string we echo come from the parser, which bounds them; no line
 * of the client's is logged.
 */
#include "gh-build.h"

#include "imap/imap-session.h"
#include "imap/imap-backend.h"
#include "imap/imap-parser.h"
#include "config/log.h"
#include "net/relay.h"
#include "session/sasl.h"
#include "secret.h"
#include "common/line.h"

#include <string.h>

/* RFC 2971 3.3: 30 pairs; keys up to 30 octets, values up to 1024 */
#define GH_IMAP_ID_PAIRS 30
#define GH_IMAP_ID_KEY_MAX 30
#define GH_IMAP_ID_VALUE_MAX 1024

typedef enum {
	P_COMMAND,
	P_AUTH_PLAIN,
	P_AUTH_LOGIN_USER,
	P_AUTH_LOGIN_PASS,
	P_TLS, /* STARTTLS or implicit TLS handshake */
	P_VERIFYING,
	P_BACKEND,
	P_RELAY,
} Phase;

typedef struct {
	GhSession *s;
	Phase phase;
	GhImapParser *parser;
	guint bad;
	guint auth_failures;
	GPtrArray *client_id; /* of char*: key, value, ..., NULL-terminated */
	GhLogin login;
	GhImapBackend *backend;
	GhRelay *relay;
} Imap;

static void process(Imap *m);

/* ------------------------------------------------------------ helpers */

#define say(m, ...) gh_session_say((m)->s, __VA_ARGS__)

static void
close_after_flush(Imap *m)
{
	gh_session_close_after_flush(m->s);
}

static gboolean
update_watch(Imap *m)
{
	return gh_session_update_watch(m->s);
}

static gboolean
on_idle_timeout(gpointer data)
{
	GhSession *s = data;
	Imap *m = s->proto;
	g_message("session %s: %s idle for %u s in login state; closing", s->id, s->remote,
		  s->lc->idle_timeout);
	say(m, "* BYE Disconnected for inactivity.");
	close_after_flush(m);
	(void)update_watch(m);
	return G_SOURCE_REMOVE;
}

static void
restart_idle_timer(Imap *m)
{
	gh_session_set_timer(m->s, m->s->lc->idle_timeout * 1000, on_idle_timeout);
}

/* One BAD was sent; too many close the session. */
static void
count_bad(Imap *m)
{
	if (++m->bad < GH_IMAP_MAX_BAD)
		return;
	g_message("session %s: %s sent %u bad commands; closing", m->s->id, m->s->remote, m->bad);
	say(m, "* BYE Too many invalid commands.");
	close_after_flush(m);
}

static gboolean
plaintext_allowed(Imap *m)
{
	return gh_session_plaintext_allowed(m->s);
}

static char *
capabilities(Imap *m)
{
	/* the advertised and the accepted mechanisms come from one predicate */
	return g_strdup_printf("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+%s %s",
			       gh_session_starttls_offered(m->s) ? " STARTTLS" : "",
			       plaintext_allowed(m) ? "AUTH=PLAIN AUTH=LOGIN" : "LOGINDISABLED");
}

static void
clear_login(Imap *m)
{
	gh_login_clear(&m->login);
}

static void
log_login(Imap *m, const char *verdict, const char *reason, gint64 elapsed_us)
{
	gh_login_log(m->s, &m->login, "imap", verdict, reason, elapsed_us);
}

/* A failed login: answer, count, maybe close; back to COMMAND. */
static void
login_failed(Imap *m)
{
	say(m, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", m->login.tag);
	clear_login(m);
	m->phase = P_COMMAND;
	if (++m->auth_failures >= m->s->lc->max_auth_failures) {
		g_message("session %s: %s failed to log in %u times; closing", m->s->id,
			  m->s->remote, m->auth_failures);
		say(m, "* BYE Too many authentication failures.");
		close_after_flush(m);
	}
}

static void
back_to_commands(Imap *m)
{
	m->phase = P_COMMAND;
	if (!m->s->closing)
		restart_idle_timer(m);
	process(m);
}

/* ------------------------------------------------------------ backend */

static void
on_relay_done(GhRelay *relay, const char *why, guint64 up, guint64 down, gpointer data)
{
	Imap *m = data;
	(void)relay;
	gh_session_log_end(m->s, "imap", &m->login, why, up, down);
	gh_session_free(m->s);
}

static void
on_backend_done(GhImapBackendResult result,
		GhConn *backend,
		GBytes *reply,
		const char *server,
		const char *error,
		gpointer data)
{
	Imap *m = data;
	GhSession *s = m->s;

	m->backend = NULL;
	g_free(m->login.backend_server);
	m->login.backend_server = g_strdup(server);
	if (result == GH_IMAP_BACKEND_FAILED) {
		g_autofree char *reason = g_strdup_printf("backend unavailable: %s", error);
		log_login(m, "tempfail", reason, m->login.auth_us);
		say(m, "%s NO [UNAVAILABLE] Temporary authentication failure.", m->login.tag);
		clear_login(m);
		back_to_commands(m);
		return;
	}
	if (result == GH_IMAP_BACKEND_REFUSED) {
		/* we said yes, the backend no: its users and ours differ */
		log_login(m, "backend-refused", error, m->login.auth_us);
		login_failed(m);
		back_to_commands(m);
		return;
	}
	gh_session_set_timer(s, 0, NULL);
	log_login(m, "ok", "", m->login.auth_us);
	/* the backend's own answer to the login, under the client's tag */
	{
		gsize len = 0;
		const guint8 *bytes = g_bytes_get_data(reply, &len);
		(void)gh_conn_queue(s->conn, bytes, len);
	}
	g_clear_pointer(&m->login.password, gh_secret_free);
	m->phase = P_RELAY;
	/* the login dialogue is over: keep only what the session-end line
	 * names (idle proxied sessions are the bulk of our memory) */
	g_clear_pointer(&m->parser, gh_imap_parser_free);
	g_clear_pointer(&m->client_id, g_ptr_array_unref);
	/* the login is over: the auth set of its generation is not needed */
	g_clear_pointer(&s->auth_set, gh_auth_set_unref);
	m->relay = gh_relay_start(s->conn, backend, on_relay_done, m);
	s->conn = NULL;
}

/* ------------------------------------------------------------ verification */

static void
on_verified(const GhAuthOutcome *o, gpointer data)
{
	Imap *m = data;
	GhSession *s = m->s;
	gh_login_take_outcome(&m->login, o);

	if (o->verdict == GH_AUTH_OK) {
		GhImapBackendParams p = {
		    .backend = gh_config_backend(s->config, s->lc->backend),
		    .route = m->login.route,
		    .hash_key = m->login.canonical,
		    .tag = m->login.tag,
		    .user = m->login.canonical,
		    .password = m->login.password,
		    .client_addr = s->remote,
		    .client_port = s->remote_port,
		    .local_addr = s->local,
		    .local_port = s->local_port,
		    .session_id = s->id,
		    .tls = s->tls,
		    .client_id = (const char *const *)m->client_id->pdata,
		};
		m->phase = P_BACKEND;
		m->backend = gh_imap_backend_connect(&p, s->worker->context, on_backend_done, m);
		g_clear_pointer(&m->login.password, gh_secret_free);
		return;
	}
	log_login(m, gh_auth_verdict_to_string(o->verdict), o->reason, o->elapsed_us);
	if (o->verdict == GH_AUTH_TEMPFAIL) {
		say(m, "%s NO [UNAVAILABLE] Temporary authentication failure.", m->login.tag);
		clear_login(m);
	} else {
		login_failed(m);
	}
	back_to_commands(m);
}

static void
verify(Imap *m)
{
	m->phase = P_VERIFYING;
	gh_login_verify(m->s, &m->login, "imap", on_verified, m);
}

/* ------------------------------------------------------------ AUTHENTICATE */

static void
auth_decode_failed(Imap *m, GhSaslStatus st)
{
	if (st == GH_SASL_CANCELLED)
		say(m, "%s BAD Authentication cancelled.", m->login.tag);
	else
		say(m, "%s BAD Cannot decode response.", m->login.tag);
	clear_login(m);
	m->phase = P_COMMAND;
	count_bad(m);
}

static void
auth_plain_response(Imap *m, const char *b64, gsize len)
{
	g_autofree char *authzid = NULL;
	g_autofree char *authcid = NULL;
	GhSecret *password = NULL;
	GhSaslStatus st = gh_sasl_plain_decode(b64, len, &authzid, &authcid, &password);
	if (st != GH_SASL_OK) {
		auth_decode_failed(m, st);
		return;
	}
	m->login.user = g_steal_pointer(&authcid);
	m->login.password = password;
	/* RFC 4616 2: acting for someone else is not for clients */
	if (authzid[0] != '\0' && strcmp(authzid, m->login.user) != 0) {
		log_login(m, "refused", "authzid differs from the user", 0);
		login_failed(m);
		return;
	}
	verify(m);
}

static void
auth_login_user(Imap *m, const char *b64, gsize len)
{
	g_autoptr(GhSecret) user = NULL;
	GhSaslStatus st = gh_sasl_login_decode(b64, len, FALSE, &user);
	if (st != GH_SASL_OK) {
		auth_decode_failed(m, st);
		return;
	}
	m->login.user = g_strdup(gh_secret_get(user, NULL));
	m->phase = P_AUTH_LOGIN_PASS;
	say(m, "+ UGFzc3dvcmQ6");
}

static void
auth_login_pass(Imap *m, const char *b64, gsize len)
{
	GhSecret *pw = NULL;
	GhSaslStatus st = gh_sasl_login_decode(b64, len, TRUE, &pw);
	if (st != GH_SASL_OK) {
		auth_decode_failed(m, st);
		return;
	}
	m->login.password = pw;
	verify(m);
}

/* ------------------------------------------------------------ commands */

static gboolean
is_string(const GhImapToken *t)
{
	return t->type == GH_IMAP_TOKEN_ATOM || t->type == GH_IMAP_TOKEN_STRING;
}

static void
cmd_id(Imap *m, const GhImapCommand *cmd)
{
	GPtrArray *a = cmd->args;
	gboolean ok = FALSE;

	if (a->len == 1 && ((GhImapToken *)a->pdata[0])->type == GH_IMAP_TOKEN_NIL) {
		ok = TRUE;
	} else if (a->len >= 2 && ((GhImapToken *)a->pdata[0])->type == GH_IMAP_TOKEN_LIST_START &&
		   ((GhImapToken *)a->pdata[a->len - 1])->type == GH_IMAP_TOKEN_LIST_END &&
		   (a->len - 2) % 2 == 0) {
		ok = TRUE;
		for (guint i = 1; i + 1 < a->len - 1 && ok; i += 2) {
			const GhImapToken *k = a->pdata[i], *v = a->pdata[i + 1];
			if (k->type != GH_IMAP_TOKEN_STRING ||
			    (v->type != GH_IMAP_TOKEN_STRING && v->type != GH_IMAP_TOKEN_NIL))
				ok = FALSE;
		}
		if (ok) {
			/* remember them (bounded) for the backend's ID */
			g_ptr_array_set_size(m->client_id, 0);
			for (guint i = 1; i + 1 < a->len - 1; i += 2) {
				const GhImapToken *k = a->pdata[i], *v = a->pdata[i + 1];
				if (m->client_id->len / 2 >= GH_IMAP_ID_PAIRS)
					break;
				if (k->len > GH_IMAP_ID_KEY_MAX || strlen(k->value) != k->len ||
				    (v->type == GH_IMAP_TOKEN_STRING &&
				     (v->len > GH_IMAP_ID_VALUE_MAX || strlen(v->value) != v->len)))
					continue;
				g_ptr_array_add(m->client_id, g_strdup(k->value));
				g_ptr_array_add(
				    m->client_id,
				    g_strdup(v->type == GH_IMAP_TOKEN_NIL ? "" : v->value));
			}
		}
	}
	if (!ok) {
		say(m, "%s BAD Syntax error.", cmd->tag);
		count_bad(m);
		return;
	}
	say(m, "* ID (\"name\" \"gatehouse\")");
	say(m, "%s OK ID completed.", cmd->tag);
}

static void
cmd_login(Imap *m, GhImapCommand *cmd)
{
	GhImapToken *u, *p;
	if (cmd->args->len != 2 || !is_string(cmd->args->pdata[0]) ||
	    !is_string(cmd->args->pdata[1])) {
		say(m, "%s BAD Syntax error.", cmd->tag);
		count_bad(m);
		return;
	}
	if (!plaintext_allowed(m)) {
		say(m,
		    "%s NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.",
		    cmd->tag);
		return;
	}
	u = cmd->args->pdata[0];
	p = cmd->args->pdata[1];
	clear_login(m);
	m->login.tag = g_strdup(cmd->tag);
	m->login.mech = "LOGIN-CMD";
	/* a user name with NUL, CR or LF could not be passed on intact */
	if (u->len == 0 || strlen(u->value) != u->len || strpbrk(u->value, "\r\n") != NULL) {
		m->login.user = g_strdup("(invalid)");
		log_login(m, "refused", "invalid user name", 0);
		login_failed(m);
		return;
	}
	m->login.user = g_strdup(u->value);
	m->login.password = gh_secret_new(p->value, p->len);
	verify(m);
}

static void
cmd_authenticate(Imap *m, GhImapCommand *cmd)
{
	g_autofree char *mech = NULL;
	const GhImapToken *ir = NULL;
	if (cmd->args->len < 1 || cmd->args->len > 2 ||
	    ((GhImapToken *)cmd->args->pdata[0])->type != GH_IMAP_TOKEN_ATOM ||
	    (cmd->args->len == 2 && !is_string(cmd->args->pdata[1]))) {
		say(m, "%s BAD Syntax error.", cmd->tag);
		count_bad(m);
		return;
	}
	mech = g_ascii_strup(((GhImapToken *)cmd->args->pdata[0])->value, -1);
	if (cmd->args->len == 2)
		ir = cmd->args->pdata[1];
	if (strcmp(mech, "PLAIN") != 0 && strcmp(mech, "LOGIN") != 0) {
		say(m, "%s NO Unsupported authentication mechanism.", cmd->tag);
		return;
	}
	if (!plaintext_allowed(m)) {
		say(m,
		    "%s NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.",
		    cmd->tag);
		return;
	}
	clear_login(m);
	m->login.tag = g_strdup(cmd->tag);
	if (strcmp(mech, "PLAIN") == 0) {
		m->login.mech = "PLAIN";
		if (ir != NULL) {
			auth_plain_response(m, ir->value, ir->len);
		} else {
			m->phase = P_AUTH_PLAIN;
			say(m, "+ ");
		}
	} else {
		m->login.mech = "LOGIN";
		if (ir != NULL) {
			auth_login_user(m, ir->value, ir->len);
		} else {
			m->phase = P_AUTH_LOGIN_USER;
			say(m, "+ VXNlcm5hbWU6");
		}
	}
}

static void
on_tls_ready(gpointer data, gpointer unused)
{
	GhSession *s = data;
	Imap *m = s->proto;
	(void)unused;
	/* RFC 9051 6.2.1: the client asks for the capabilities again; they
	 * now hold inside TLS */
	back_to_commands(m);
}

static void
cmd_starttls(Imap *m, const GhImapCommand *cmd)
{
	if (cmd->args->len > 0) {
		say(m, "%s BAD Syntax error.", cmd->tag);
		count_bad(m);
		return;
	}
	if (m->s->secure) {
		say(m, "%s BAD TLS already active.", cmd->tag);
		count_bad(m);
		return;
	}
	if (!gh_session_starttls_offered(m->s)) {
		say(m, "%s NO TLS not available.", cmd->tag);
		return;
	}
	say(m, "%s OK Begin TLS negotiation now.", cmd->tag);
	m->phase = P_TLS;
	gh_session_start_tls(m->s, on_tls_ready);
}

static void
greet(Imap *m)
{
	g_autofree char *caps = capabilities(m);
	say(m, "* OK [CAPABILITY %s] %s ready.", caps, m->s->config->hostname);
	restart_idle_timer(m);
	(void)update_watch(m);
}

static void
on_implicit_tls_ready(gpointer data, gpointer unused)
{
	GhSession *s = data;
	Imap *m = s->proto;
	(void)unused;
	m->phase = P_COMMAND;
	greet(m);
}

static void
command(Imap *m, GhImapCommand *cmd)
{
	const char *name = cmd->name;
	if (strcmp(name, "CAPABILITY") == 0) {
		g_autofree char *caps = capabilities(m);
		say(m, "* CAPABILITY %s", caps);
		say(m, "%s OK Capability completed.", cmd->tag);
	} else if (strcmp(name, "NOOP") == 0) {
		say(m, "%s OK NOOP completed.", cmd->tag);
	} else if (strcmp(name, "ID") == 0) {
		cmd_id(m, cmd);
	} else if (strcmp(name, "LOGOUT") == 0) {
		say(m, "* BYE Logging out");
		say(m, "%s OK LOGOUT completed.", cmd->tag);
		close_after_flush(m);
	} else if (strcmp(name, "STARTTLS") == 0) {
		cmd_starttls(m, cmd);
	} else if (strcmp(name, "LOGIN") == 0) {
		cmd_login(m, cmd);
	} else if (strcmp(name, "AUTHENTICATE") == 0) {
		cmd_authenticate(m, cmd);
	} else {
		say(m, "%s BAD Command not allowed before login.", cmd->tag);
		count_bad(m);
	}
}

static gboolean
reading(Imap *m)
{
	return !m->s->closing && (m->phase == P_COMMAND || m->phase == P_AUTH_PLAIN ||
				  m->phase == P_AUTH_LOGIN_USER || m->phase == P_AUTH_LOGIN_PASS);
}

/* An AUTHENTICATE continuation line. */
static gboolean
continuation(Imap *m)
{
	GhConn *c = m->s->conn;
	gsize line_len = 0, used = 0;
	GhLineStatus st = gh_line_next((const char *)c->in->data, c->in->len, GH_IMAP_MAX_LINE + 2,
				       &line_len, &used, NULL);
	if (st == GH_LINE_NEED_MORE)
		return FALSE;
	if (st == GH_LINE_TOO_LONG) {
		gh_conn_consume(c, c->in->len);
		clear_login(m);
		say(m, "* BYE Line too long.");
		close_after_flush(m);
		return TRUE;
	}
	restart_idle_timer(m);
	switch (m->phase) {
	case P_AUTH_PLAIN:
		auth_plain_response(m, (const char *)c->in->data, line_len);
		break;
	case P_AUTH_LOGIN_USER:
		auth_login_user(m, (const char *)c->in->data, line_len);
		break;
	case P_AUTH_LOGIN_PASS:
		auth_login_pass(m, (const char *)c->in->data, line_len);
		break;
	default:
		break;
	}
	gh_conn_consume(c, used);
	return TRUE;
}

static void
process(Imap *m)
{
	GhConn *c = m->s->conn;

	/* the replies to what this read brought leave together */
	gh_conn_cork(c);
	while (reading(m) && c->in->len > 0 && gh_conn_pending(c) < GH_SESSION_OUT_SOFT) {
		GhImapCommand cmd = {0};
		gsize used = 0;
		GhImapStatus st;

		if (m->phase != P_COMMAND) {
			if (!continuation(m))
				break;
			continue;
		}
		st = gh_imap_parser_feed(m->parser, (const char *)c->in->data, c->in->len, &used,
					 &cmd);
		gh_conn_consume(c, used);
		if (st == GH_IMAP_NEED_MORE)
			break;
		restart_idle_timer(m);
		switch (st) {
		case GH_IMAP_CONTINUE:
			say(m, "+ OK");
			break;
		case GH_IMAP_ERROR:
			if (cmd.tag != NULL)
				say(m, "%s BAD %s.", cmd.tag, cmd.error);
			else
				say(m, "* BAD %s.", cmd.error);
			count_bad(m);
			break;
		case GH_IMAP_FATAL:
			say(m, "* BYE %s.", cmd.error != NULL ? cmd.error : "Protocol error");
			close_after_flush(m);
			break;
		case GH_IMAP_COMMAND:
			command(m, &cmd);
			break;
		case GH_IMAP_NEED_MORE:
			break;
		}
		gh_imap_command_clear(&cmd);
	}
	gh_conn_uncork(c);
	(void)update_watch(m);
}

static gboolean
ops_reading(GhSession *s)
{
	return reading(s->proto);
}

static void
ops_process(GhSession *s)
{
	process(s->proto);
}

/* ------------------------------------------------------------ life cycle */

static void
imap_shutdown(GhSession *s)
{
	Imap *m = s->proto;
	if (m->phase == P_RELAY || s->closing)
		return; /* proxied: runs until it ends or shutdown_timeout */
	clear_login(m);
	if (m->backend != NULL) {
		gh_imap_backend_cancel(m->backend);
		m->backend = NULL;
	}
	say(m, "* BYE Server shutting down.");
	close_after_flush(m);
	(void)update_watch(m);
}

static void
imap_free(GhSession *s)
{
	Imap *m = s->proto;
	if (m->backend != NULL)
		gh_imap_backend_cancel(m->backend);
	gh_relay_free(m->relay);
	clear_login(m);
	gh_imap_parser_free(m->parser);
	if (m->client_id != NULL)
		g_ptr_array_unref(m->client_id);
	g_free(m->login.backend_server);
	g_free(m);
	s->proto = NULL;
}

static const GhSessionOps imap_ops = {
    .shutdown = imap_shutdown,
    .free = imap_free,
    .reading = ops_reading,
    .process = ops_process,
};

void
gh_imap_session_begin(GhSession *s)
{
	Imap *m = g_new0(Imap, 1);
	m->s = s;
	m->phase = P_COMMAND;
	m->parser = gh_imap_parser_new(GH_IMAP_MAX_LINE, GH_IMAP_MAX_LITERAL);
	m->client_id = g_ptr_array_new_null_terminated(8, g_free, TRUE);
	s->proto = m;
	s->ops = &imap_ops;
	gh_session_watch_client(s);
	if (s->lc->tls == GH_TLS_IMPLICIT) {
		/* RFC 8314 3.3: TLS from the first byte, then the greeting */
		m->phase = P_TLS;
		gh_session_start_tls(s, on_implicit_tls_ready);
		return;
	}
	greet(m);
}
