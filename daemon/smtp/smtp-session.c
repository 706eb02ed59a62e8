/*
 * smtp-session.c: the SMTP front end (see smtp-session.h).
 *
 * Phases: COMMAND (reading commands) and the AUTH continuation phases read
 * client input; VERIFYING and BACKEND wait for the auth core or the backend
 * handshake and read nothing, so whatever the client pipelined stays in the
 * client's input buffer, in order, and is either served after a failed login
 * or handed to the backend by the relay after a good one.  RELAY is the
 * proxied session; CLOSING flushes a last reply and closes.
 *
 * Invariants: the password lives in `password` only from its decoding until
 * the backend handshake has its own copy (or the login failed), and is
 * wiped then; the reply to every command is queued before the next command
 * is read (RFC 2920 keeps replies in command order); nothing the client
 * sends is logged except through gh_log_escape, and never an AUTH line.
 */
#include "gh-build.h"

#include "smtp/smtp-session.h"
#include "config/log.h"
#include "net/relay.h"
#include "session/sasl.h"
#include "secret.h"
#include "smtp/smtp-backend.h"
#include "smtp/smtp-parser.h"

#include <string.h>

/* RFC 5321 4.5.3.1.2: a domain is at most 255 octets */
#define GH_SMTP_MAX_HELO 255

typedef enum {
	P_COMMAND,
	P_AUTH_LOGIN_USER,
	P_AUTH_LOGIN_PASS,
	P_AUTH_PLAIN,
	P_TLS, /* STARTTLS handshake */
	P_VERIFYING,
	P_BACKEND,
	P_RELAY,
} Phase;

typedef struct {
	GhSession *s;
	Phase phase;
	char *helo;
	gboolean esmtp;
	guint errors;
	guint auth_failures;
	gboolean discarding; /* dropping the rest of an over-long line */
	gboolean mx_join;    /* joining the backend at MAIL, unauthenticated */
	GhLogin login;
	GhSmtpBackend *backend;
	GhRelay *relay;
} Smtp;

static void process(Smtp *m);

/* ------------------------------------------------------------ helpers */

static const char *
hostname(Smtp *m)
{
	return m->s->config->hostname;
}

#define reply(m, ...) gh_session_say((m)->s, __VA_ARGS__)

static void
close_after_flush(Smtp *m)
{
	gh_session_close_after_flush(m->s);
}

static gboolean
update_watch(Smtp *m)
{
	return gh_session_update_watch(m->s);
}

static gboolean
on_idle_timeout(gpointer data)
{
	GhSession *s = data;
	Smtp *m = s->proto;
	g_message("session %s: %s idle for %u s in login state; closing", s->id, s->remote,
		  s->lc->idle_timeout);
	reply(m, "421 4.4.2 %s Timeout", hostname(m));
	close_after_flush(m);
	(void)update_watch(m);
	return G_SOURCE_REMOVE;
}

static void
restart_idle_timer(Smtp *m)
{
	gh_session_set_timer(m->s, m->s->lc->idle_timeout * 1000, on_idle_timeout);
}

/* One error reply (500-504) was sent; too many close the session. */
static gboolean
count_error(Smtp *m)
{
	if (++m->errors < GH_SMTP_MAX_ERRORS)
		return TRUE;
	g_message("session %s: %s made %u errors; closing", m->s->id, m->s->remote, m->errors);
	reply(m, "421 4.7.0 Too many errors");
	close_after_flush(m);
	return FALSE;
}

static gboolean
plaintext_allowed(Smtp *m)
{
	return gh_session_plaintext_allowed(m->s);
}

static void
clear_login(Smtp *m)
{
	gh_login_clear(&m->login);
}

static void
log_login(Smtp *m, const char *verdict, const char *reason, gint64 elapsed_us)
{
	gh_login_log(m->s, &m->login, "smtp", verdict, reason, elapsed_us);
}

/* ------------------------------------------------------------ relay */

static void
on_relay_done(GhRelay *relay, const char *why, guint64 up, guint64 down, gpointer data)
{
	Smtp *m = data;
	(void)relay;
	gh_session_log_end(m->s, "smtp", &m->login, why, up, down);
	gh_session_free(m->s);
}

static void
on_backend_ready(GhConn *backend, const char *server, const char *error, gpointer data)
{
	Smtp *m = data;
	GhSession *s = m->s;

	m->backend = NULL;
	g_free(m->login.backend_server);
	m->login.backend_server = g_strdup(server);
	if (backend == NULL) {
		g_autofree char *reason = g_strdup_printf("backend unavailable: %s", error);
		if (!m->mx_join)
			log_login(m, "tempfail", reason, m->login.auth_us);
		else
			g_message("session %s: %s: %s", s->id, s->remote, reason);
		if (m->mx_join) {
			/* the MAIL line is still in `in`: drop it, answer it */
			gsize line_len = 0, used = 0;
			if (gh_line_next((const char *)s->conn->in->data, s->conn->in->len,
					 GH_SMTP_MAX_LINE, &line_len, &used, NULL) == GH_LINE_OK)
				gh_conn_consume(s->conn, used);
			reply(m, "451 4.4.1 Backend server unavailable, try again later");
		} else {
			reply(m, "454 4.7.0 Temporary authentication failure");
		}
		clear_login(m);
		m->mx_join = FALSE;
		m->phase = P_COMMAND;
		restart_idle_timer(m);
		process(m);
		return;
	}
	gh_session_set_timer(s, 0, NULL);
	if (!m->mx_join) {
		log_login(m, "ok", "", m->login.auth_us);
		reply(m, "235 2.7.0 Authentication successful");
	} else {
		g_message("session %s: %s joined to backend %s at MAIL (unauthenticated)", s->id,
			  s->remote, server);
	}
	g_clear_pointer(&m->login.password, gh_secret_free);
	m->phase = P_RELAY;
	/* the relay owns both sockets now; the session keeps only its record */
	/* the login is over: the auth set of its generation is not needed */
	g_clear_pointer(&s->auth_set, gh_auth_set_unref);
	m->relay = gh_relay_start(s->conn, backend, on_relay_done, m);
	s->conn = NULL;
}

static void
join_backend(Smtp *m, gboolean authenticated)
{
	GhSession *s = m->s;
	const GhBackendConfig *bc = gh_config_backend(s->config, s->lc->backend);
	GhSmtpBackendParams p = {
	    .backend = bc,
	    .route = authenticated ? m->login.route : NULL,
	    .user = authenticated ? m->login.canonical : NULL,
	    .login_user = m->login.canonical,
	    .password = m->login.password,
	    .client_addr = s->remote,
	    .client_port = s->remote_port,
	    .client_helo = m->helo,
	    .client_esmtp = m->esmtp,
	    .hostname = hostname(m),
	    .session_id = s->id,
	    .hash_key = authenticated ? m->login.canonical : s->remote,
	    .tls = s->tls,
	};
	m->phase = P_BACKEND;
	m->mx_join = !authenticated;
	gh_session_set_timer(s, 0, NULL);
	m->backend = gh_smtp_backend_connect(&p, s->worker->context, on_backend_ready, m);
	/* the handshake has its own copy where it needs one */
	g_clear_pointer(&m->login.password, gh_secret_free);
	(void)update_watch(m);
}

/* ------------------------------------------------------------ AUTH */

static void
on_verified(const GhAuthOutcome *o, gpointer data)
{
	Smtp *m = data;
	gh_login_take_outcome(&m->login, o);

	if (o->verdict == GH_AUTH_OK) {
		join_backend(m, TRUE);
		return;
	}
	log_login(m, gh_auth_verdict_to_string(o->verdict), o->reason, o->elapsed_us);
	if (o->verdict == GH_AUTH_TEMPFAIL) {
		reply(m, "454 4.7.0 Temporary authentication failure");
	} else {
		reply(m, "535 5.7.8 Authentication credentials invalid");
		if (++m->auth_failures >= m->s->lc->max_auth_failures) {
			g_message("session %s: %s failed to log in %u times; closing", m->s->id,
				  m->s->remote, m->auth_failures);
			reply(m, "421 4.7.0 Too many authentication failures");
			clear_login(m);
			m->phase = P_COMMAND;
			close_after_flush(m);
			(void)update_watch(m);
			return;
		}
	}
	clear_login(m);
	m->phase = P_COMMAND;
	restart_idle_timer(m);
	process(m);
}

/* user and password are decoded: ask the auth core */
static void
verify(Smtp *m)
{
	m->phase = P_VERIFYING;
	gh_login_verify(m->s, &m->login, "smtp", on_verified, m);
}

/* A decoding problem ends the AUTH exchange with a 501. */
static void
auth_decode_failed(Smtp *m, GhSaslStatus st)
{
	if (st == GH_SASL_CANCELLED)
		reply(m, "501 5.0.0 Authentication cancelled");
	else
		reply(m, "501 5.5.2 Cannot decode response");
	clear_login(m);
	m->phase = P_COMMAND;
	(void)count_error(m);
}

static void
auth_plain_response(Smtp *m, const char *b64, gsize len)
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
	/* RFC 4616 2: authorising as someone else is for proxies we do not serve */
	if (authzid[0] != '\0' && strcmp(authzid, m->login.user) != 0) {
		log_login(m, "refused", "authzid differs from the user", 0);
		reply(m, "535 5.7.8 Authentication credentials invalid");
		clear_login(m);
		m->phase = P_COMMAND;
		if (++m->auth_failures >= m->s->lc->max_auth_failures) {
			reply(m, "421 4.7.0 Too many authentication failures");
			close_after_flush(m);
		}
		return;
	}
	verify(m);
}

static void
auth_login_user(Smtp *m, const char *b64, gsize len)
{
	g_autoptr(GhSecret) user = NULL;
	GhSaslStatus st = gh_sasl_login_decode(b64, len, FALSE, &user);
	if (st != GH_SASL_OK) {
		auth_decode_failed(m, st);
		return;
	}
	m->login.user = g_strdup(gh_secret_get(user, NULL));
	m->phase = P_AUTH_LOGIN_PASS;
	reply(m, "334 UGFzc3dvcmQ6"); /* "Password:" */
}

static void
auth_login_pass(Smtp *m, const char *b64, gsize len)
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

static void
cmd_auth(Smtp *m, const GhSmtpCommand *cmd)
{
	g_autofree char *mech = NULL;
	g_autofree char *initial = NULL;

	if (!gh_smtp_parse_auth(cmd->arg, cmd->arg_len, &mech, &initial)) {
		reply(m, "501 5.5.4 Syntax: AUTH mechanism");
		(void)count_error(m);
		goto out;
	}
	if (strcmp(mech, "PLAIN") != 0 && strcmp(mech, "LOGIN") != 0) {
		reply(m, "504 5.5.4 Unrecognized authentication type");
		(void)count_error(m);
		goto out;
	}
	/* the advertised and the accepted mechanisms come from one predicate */
	if (!plaintext_allowed(m)) {
		reply(m, "538 5.7.11 Encryption required for requested authentication mechanism");
		goto out;
	}
	clear_login(m);
	if (strcmp(mech, "PLAIN") == 0) {
		m->login.mech = "PLAIN";
		if (initial != NULL) {
			auth_plain_response(m, initial, strlen(initial));
		} else {
			m->phase = P_AUTH_PLAIN;
			reply(m, "334 ");
		}
	} else {
		m->login.mech = "LOGIN";
		if (initial != NULL) {
			auth_login_user(m, initial, strlen(initial));
		} else {
			m->phase = P_AUTH_LOGIN_USER;
			reply(m, "334 VXNlcm5hbWU6"); /* "Username:" */
		}
	}
out:
	if (initial != NULL)
		explicit_bzero(initial, strlen(initial));
}

/* A line while an AUTH exchange waits for the client's response. */
static void
auth_continuation(Smtp *m, const char *line, gsize len)
{
	switch (m->phase) {
	case P_AUTH_PLAIN:
		auth_plain_response(m, line, len);
		break;
	case P_AUTH_LOGIN_USER:
		auth_login_user(m, line, len);
		break;
	case P_AUTH_LOGIN_PASS:
		auth_login_pass(m, line, len);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------ commands */

static void
cmd_helo(Smtp *m, const GhSmtpCommand *cmd)
{
	gboolean ehlo = cmd->verb == GH_SMTP_CMD_EHLO;
	gsize len = cmd->arg_len;

	if (len == 0) {
		reply(m, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		(void)count_error(m);
		return;
	}
	/* the name goes to the backend (XCLIENT HELO=, EHLO): one word, printable */
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)cmd->arg[i];
		if (c <= ' ' || c >= 127) {
			len = i;
			break;
		}
	}
	if (len == 0 || len > GH_SMTP_MAX_HELO) {
		reply(m, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		(void)count_error(m);
		return;
	}
	g_free(m->helo);
	m->helo = g_strndup(cmd->arg, len);
	m->esmtp = ehlo;
	if (!ehlo) {
		reply(m, "250 %s", hostname(m));
		return;
	}
	/* RFC 1869 4.3: one keyword a line.  SIZE without a number: the
	 * backend enforces its own limit after login (RFC 1870 4). */
	reply(m, "250-%s", hostname(m));
	reply(m, "250-PIPELINING");
	reply(m, "250-SIZE");
	reply(m, "250-8BITMIME");
	if (gh_session_starttls_offered(m->s))
		reply(m, "250-STARTTLS");
	if (plaintext_allowed(m))
		reply(m, "250-AUTH PLAIN LOGIN");
	reply(m, "250 ENHANCEDSTATUSCODES");
}

static void
on_tls_ready(gpointer data, gpointer unused)
{
	GhSession *s = data;
	Smtp *m = s->proto;
	(void)unused;
	/* RFC 3207 4.2: forget what the client said before TLS; it must EHLO
	 * again, and now gets the capabilities that hold inside TLS */
	g_clear_pointer(&m->helo, g_free);
	m->esmtp = FALSE;
	m->phase = P_COMMAND;
	restart_idle_timer(m);
	process(m);
}

static void
cmd_starttls(Smtp *m, const GhSmtpCommand *cmd)
{
	if (cmd->arg_len > 0) {
		reply(m, "501 5.5.4 Syntax: STARTTLS");
		(void)count_error(m);
		return;
	}
	if (m->s->secure) {
		reply(m, "503 5.5.1 TLS already active");
		(void)count_error(m);
		return;
	}
	if (!gh_session_starttls_offered(m->s)) {
		reply(m, "454 4.7.0 TLS not available");
		return;
	}
	reply(m, "220 2.0.0 Ready to start TLS");
	m->phase = P_TLS;
	gh_session_start_tls(m->s, on_tls_ready);
}

static void
on_implicit_tls_ready(gpointer data, gpointer unused)
{
	GhSession *s = data;
	Smtp *m = s->proto;
	(void)unused;
	m->phase = P_COMMAND;
	reply(m, "220 %s ESMTP", hostname(m));
	restart_idle_timer(m);
	(void)update_watch(m);
}

/* Handle one command line.  Returns FALSE when the line must stay in the
 * input buffer (MAIL that joins the backend replays it). */
static gboolean
command(Smtp *m, const char *line, gsize len)
{
	GhSmtpCommand cmd;
	gh_smtp_parse_command(line, len, &cmd);

	switch (cmd.verb) {
	case GH_SMTP_CMD_HELO:
	case GH_SMTP_CMD_EHLO:
		cmd_helo(m, &cmd);
		return TRUE;
	case GH_SMTP_CMD_AUTH:
		cmd_auth(m, &cmd);
		return TRUE;
	case GH_SMTP_CMD_MAIL:
		if (m->s->lc->require_auth) {
			reply(m, "530 5.7.0 Authentication required");
			return TRUE;
		}
		if (!gh_smtp_parse_path(cmd.arg, cmd.arg_len, "FROM", NULL)) {
			reply(m, "501 5.5.4 Syntax: MAIL FROM:<address>");
			(void)count_error(m);
			return TRUE;
		}
		/* MX role: the backend takes the session from this MAIL on */
		join_backend(m, FALSE);
		return FALSE;
	case GH_SMTP_CMD_RCPT:
	case GH_SMTP_CMD_DATA:
		reply(m, "503 5.5.1 Bad sequence of commands");
		(void)count_error(m);
		return TRUE;
	case GH_SMTP_CMD_RSET:
	case GH_SMTP_CMD_NOOP:
		reply(m, "250 2.0.0 OK");
		return TRUE;
	case GH_SMTP_CMD_QUIT:
		reply(m, "221 2.0.0 %s Bye", hostname(m));
		close_after_flush(m);
		return TRUE;
	case GH_SMTP_CMD_HELP:
		reply(
		    m,
		    "214 2.0.0 Commands: HELO EHLO AUTH MAIL RCPT DATA RSET NOOP QUIT HELP VRFY%s",
		    gh_session_starttls_offered(m->s) ? " STARTTLS" : "");
		return TRUE;
	case GH_SMTP_CMD_VRFY:
		reply(m, "252 2.5.2 Cannot VRFY user");
		return TRUE;
	case GH_SMTP_CMD_EXPN:
	case GH_SMTP_CMD_NOT_IMPLEMENTED:
		reply(m, "502 5.5.1 Command not implemented");
		(void)count_error(m);
		return TRUE;
	case GH_SMTP_CMD_STARTTLS:
		cmd_starttls(m, &cmd);
		return TRUE;
	case GH_SMTP_CMD_BDAT:
	case GH_SMTP_CMD_UNKNOWN:
	case GH_SMTP_CMD_INVALID:
		break;
	}
	reply(m, "500 5.5.2 Syntax error, command unrecognized");
	(void)count_error(m);
	return TRUE;
}

static gboolean
reading(Smtp *m)
{
	return !m->s->closing && (m->phase == P_COMMAND || m->phase == P_AUTH_LOGIN_USER ||
				  m->phase == P_AUTH_LOGIN_PASS || m->phase == P_AUTH_PLAIN);
}

/* Serve the complete lines in the input buffer, in order. */
static void
process(Smtp *m)
{
	GhConn *c = m->s->conn;

	/* the replies to what this read brought leave together */
	gh_conn_cork(c);
	while (reading(m) && c->in->len > 0 && gh_conn_pending(c) < GH_SESSION_OUT_SOFT) {
		const char *buf = (const char *)c->in->data;
		gsize line_len = 0, used = 0;
		gboolean terminated = FALSE;
		GhLineStatus st;

		if (m->discarding) {
			used = gh_line_skip(buf, c->in->len, &terminated);
			gh_conn_consume(c, used);
			if (terminated)
				m->discarding = FALSE;
			continue;
		}
		st = gh_line_next(buf, c->in->len, GH_SMTP_MAX_AUTH_LINE, &line_len, &used,
				  &terminated);
		if (st == GH_LINE_NEED_MORE)
			break;
		restart_idle_timer(m);
		if (st == GH_LINE_OK && m->phase == P_COMMAND && used > GH_SMTP_MAX_LINE) {
			/* only an AUTH command line may be longer (RFC 4954 4) */
			GhSmtpCommand cmd;
			gh_smtp_parse_command(buf, line_len, &cmd);
			if (cmd.verb != GH_SMTP_CMD_AUTH)
				st = GH_LINE_TOO_LONG;
		}
		if (st == GH_LINE_TOO_LONG) {
			gh_conn_consume(c, used);
			m->discarding = !terminated;
			if (m->phase != P_COMMAND)
				clear_login(m);
			m->phase = P_COMMAND;
			reply(m, "500 5.5.6 Line too long");
			(void)count_error(m);
			continue;
		}
		if (m->phase == P_COMMAND) {
			if (!command(m, buf, line_len))
				break; /* the line stays for the backend */
		} else {
			auth_continuation(m, buf, line_len);
		}
		gh_conn_consume(c, used);
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
smtp_shutdown(GhSession *s)
{
	Smtp *m = s->proto;
	if (m->phase == P_RELAY || s->closing)
		return; /* proxied: runs until it ends or shutdown_timeout */
	clear_login(m);
	if (m->backend != NULL) {
		gh_smtp_backend_cancel(m->backend);
		m->backend = NULL;
	}
	reply(m, "421 4.3.2 %s Service shutting down", hostname(m));
	close_after_flush(m);
	(void)update_watch(m);
}

static void
smtp_free(GhSession *s)
{
	Smtp *m = s->proto;
	if (m->backend != NULL)
		gh_smtp_backend_cancel(m->backend);
	gh_relay_free(m->relay);
	clear_login(m);
	g_free(m->login.backend_server);
	g_free(m->helo);
	g_free(m);
	s->proto = NULL;
}

static const GhSessionOps smtp_ops = {
    .shutdown = smtp_shutdown,
    .free = smtp_free,
    .reading = ops_reading,
    .process = ops_process,
};

void
gh_smtp_session_begin(GhSession *s)
{
	Smtp *m = g_new0(Smtp, 1);
	m->s = s;
	m->phase = P_COMMAND;
	s->proto = m;
	s->ops = &smtp_ops;
	gh_session_watch_client(s);
	if (s->lc->tls == GH_TLS_IMPLICIT) {
		/* RFC 8314 3.3: TLS from the first byte, then the greeting */
		m->phase = P_TLS;
		gh_session_start_tls(s, on_implicit_tls_ready);
		return;
	}
	reply(m, "220 %s ESMTP", hostname(m));
	restart_idle_timer(m);
	(void)update_watch(m);
}
