/*
 * smtp-session.c: SMTP's entry in the protocol table (see smtp-session.h):
 * the replies at each turning point (RFC 5321, RFC 3207, RFC 4954 with
 * RFC 3463 enhanced codes), the commands before login, and the backend
 * dialogue's own parameters (the client's HELO name); with
 * reuse_connections, the tap that follows the relayed session
 * (smtp-track.h) and answers a QUIT at rest itself.
 *
 * Invariants: only a line the parser bounds is read (GH_SMTP_MAX_LINE, an
 * AUTH line GH_SMTP_MAX_AUTH_LINE); MAIL in the MX role leaves its line in
 * the input buffer for the backend; the HELO name kept is one printable
 * word of at most 255 octets.
 */
#include "gh-build.h"

#include "smtp/smtp-session.h"
#include "smtp/smtp-backend.h"
#include "smtp/smtp-parser.h"
#include "smtp/smtp-track.h"

#include <string.h>

/* RFC 5321 4.5.3.1.2: a domain is at most 255 octets */
#define GH_SMTP_MAX_HELO 255

typedef struct {
	char *helo;
	gboolean esmtp;
} Smtp;

#define reply(s, ...) gh_session_say((s), __VA_ARGS__)

static const char *
hostname(GhSession *s)
{
	return s->config->hostname;
}

static void
smtp_say(GhSession *s, GhSay what, const char *arg)
{
	switch (what) {
	case GH_SAY_GREETING:
		reply(s, "220 %s ESMTP", hostname(s));
		break;
	case GH_SAY_TOO_MANY_CONNECTIONS:
		reply(s, "421 4.7.0 %s Too many connections", hostname(s));
		break;
	case GH_SAY_SHUTDOWN:
		reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
		break;
	case GH_SAY_KICKED:
		reply(s, "421 4.7.0 %s Session closed by the administrator", hostname(s));
		break;
	case GH_SAY_IDLE_TIMEOUT:
		reply(s, "421 4.4.2 %s Timeout", hostname(s));
		break;
	case GH_SAY_TOO_MANY_ERRORS:
		reply(s, "421 4.7.0 Too many errors");
		break;
	case GH_SAY_SASL_CHALLENGE:
		reply(s, "334 %s", arg);
		break;
	case GH_SAY_SASL_CANCELLED:
		reply(s, "501 5.0.0 Authentication cancelled");
		break;
	case GH_SAY_SASL_MALFORMED:
		reply(s, "501 5.5.2 Cannot decode response");
		break;
	case GH_SAY_SASL_LINE_TOO_LONG:
		reply(s, "500 5.5.6 Line too long");
		(void)gh_session_count_error(s);
		break;
	case GH_SAY_AUTH_FAILED:
		reply(s, "535 5.7.8 Authentication credentials invalid");
		break;
	case GH_SAY_AUTH_TEMPFAIL:
		reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	case GH_SAY_TOO_MANY_AUTH_FAILS:
		reply(s, "421 4.7.0 Too many authentication failures");
		break;
	case GH_SAY_LOGGED_IN:
		reply(s, "235 2.7.0 Authentication successful");
		break;
	case GH_SAY_GOODBYE:
		reply(s, "221 2.0.0 %s Bye", hostname(s));
		break;
	case GH_SAY_BACKEND_UNAVAILABLE: {
		/* the MAIL line is still in `in`: drop it, answer it */
		GhConn *c = s->conn;
		gsize line_len = 0, used = 0;
		if (gh_line_next((const char *)c->in->data, c->in->len, GH_SMTP_MAX_LINE, &line_len,
				 &used, NULL) == GH_LINE_OK)
			gh_conn_consume(c, used);
		reply(s, "451 4.4.1 Backend server unavailable, try again later");
		break;
	}
	}
}

static const GhCommandWords smtp_words = {
    .starttls_syntax = "501 5.5.4 Syntax: STARTTLS",
    .starttls_active = "503 5.5.1 TLS already active",
    .starttls_unavailable = "454 4.7.0 TLS not available",
    .starttls_go = "220 2.0.0 Ready to start TLS",
    .auth_unsupported = "504 5.5.4 Unrecognized authentication type",
    .auth_unsupported_counts = TRUE,
    .auth_plaintext_refused = "538 5.7.11 Encryption required for requested authentication "
			      "mechanism",
};

/* ------------------------------------------------------------ commands */

static void
cmd_auth(GhSession *s, const GhSmtpCommand *cmd)
{
	g_autofree char *mech = NULL;
	g_autofree char *initial = NULL;

	if (!gh_smtp_parse_auth(cmd->arg, cmd->arg_len, &mech, &initial)) {
		reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		(void)gh_session_count_error(s);
		goto out;
	}
	gh_session_auth_command(s, NULL, mech, initial, initial != NULL ? strlen(initial) : 0);
out:
	if (initial != NULL)
		explicit_bzero(initial, strlen(initial));
}

static void
cmd_helo(GhSession *s, Smtp *m, const GhSmtpCommand *cmd)
{
	gboolean ehlo = cmd->verb == GH_SMTP_CMD_EHLO;
	gsize len = cmd->arg_len;

	/* the name goes to the backend (XCLIENT HELO=, EHLO): one word, printable */
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)cmd->arg[i];
		if (c <= ' ' || c >= 127) {
			len = i;
			break;
		}
	}
	if (len == 0 || len > GH_SMTP_MAX_HELO) {
		reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		(void)gh_session_count_error(s);
		return;
	}
	g_free(m->helo);
	m->helo = g_strndup(cmd->arg, len);
	m->esmtp = ehlo;
	if (!ehlo) {
		reply(s, "250 %s", hostname(s));
		return;
	}
	/* RFC 1869 4.3: one keyword a line.  SIZE without a number: the
	 * backend enforces its own limit after login (RFC 1870 4). */
	reply(s, "250-%s", hostname(s));
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE");
	reply(s, "250-8BITMIME");
	if (gh_session_starttls_offered(s))
		reply(s, "250-STARTTLS");
	if (gh_session_plaintext_allowed(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 ENHANCEDSTATUSCODES");
}

/* MAIL before login: the MX role (require_auth = no) joins the backend,
 * which takes the session from this MAIL on.  FALSE when the line must stay
 * in the input buffer for the backend. */
static gboolean
cmd_mail(GhSession *s, const GhSmtpCommand *cmd)
{
	if (s->lc->require_auth) {
		reply(s, "530 5.7.0 Authentication required");
		return TRUE;
	}
	if (!gh_smtp_parse_path(cmd->arg, cmd->arg_len, "FROM", NULL)) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		(void)gh_session_count_error(s);
		return TRUE;
	}
	gh_session_join_backend(s);
	return FALSE;
}

/* Answer one command line.  FALSE when the line stays in the input buffer. */
static gboolean
command(GhSession *s, Smtp *m, const char *line, gsize len)
{
	GhSmtpCommand cmd;
	gh_smtp_parse_command(line, len, &cmd);

	switch (cmd.verb) {
	case GH_SMTP_CMD_HELO:
	case GH_SMTP_CMD_EHLO:
		cmd_helo(s, m, &cmd);
		return TRUE;
	case GH_SMTP_CMD_AUTH:
		cmd_auth(s, &cmd);
		return TRUE;
	case GH_SMTP_CMD_MAIL:
		return cmd_mail(s, &cmd);
	case GH_SMTP_CMD_RCPT:
	case GH_SMTP_CMD_DATA:
		reply(s, "503 5.5.1 Bad sequence of commands");
		(void)gh_session_count_error(s);
		return TRUE;
	case GH_SMTP_CMD_RSET:
	case GH_SMTP_CMD_NOOP:
		reply(s, "250 2.0.0 OK");
		return TRUE;
	case GH_SMTP_CMD_QUIT:
		reply(s, "221 2.0.0 %s Bye", hostname(s));
		gh_session_close(s);
		return TRUE;
	case GH_SMTP_CMD_HELP:
		reply(
		    s,
		    "214 2.0.0 Commands: HELO EHLO AUTH MAIL RCPT DATA RSET NOOP QUIT HELP VRFY%s",
		    gh_session_starttls_offered(s) ? " STARTTLS" : "");
		return TRUE;
	case GH_SMTP_CMD_VRFY:
		reply(s, "252 2.5.2 Cannot VRFY user");
		return TRUE;
	case GH_SMTP_CMD_EXPN:
	case GH_SMTP_CMD_NOT_IMPLEMENTED:
		reply(s, "502 5.5.1 Command not implemented");
		(void)gh_session_count_error(s);
		return TRUE;
	case GH_SMTP_CMD_STARTTLS:
		gh_session_starttls_command(s, NULL, cmd.arg_len > 0);
		return TRUE;
	case GH_SMTP_CMD_BDAT:
	case GH_SMTP_CMD_UNKNOWN:
	case GH_SMTP_CMD_INVALID:
		break;
	}
	reply(s, "500 5.5.2 Syntax error, command unrecognized");
	(void)gh_session_count_error(s);
	return TRUE;
}

static GhInput
smtp_command(GhSession *s)
{
	GhConn *c = s->conn;
	gsize line_len = 0, used = 0;
	/* only an AUTH command line may be longer (RFC 4954 4) */
	GhInput in = gh_session_command_line(s, GH_SMTP_MAX_LINE, GH_SMTP_MAX_AUTH_LINE,
					     "500 5.5.6 Line too long", &line_len, &used);

	if (used == 0)
		return in;
	if (command(s, s->proto, (const char *)c->in->data, line_len))
		gh_conn_consume(c, used);
	return GH_INPUT_DONE;
}

/* ------------------------------------------------------------ table */

static gpointer
smtp_new(GhSession *s)
{
	(void)s;
	return g_new0(Smtp, 1);
}

static void
smtp_free(gpointer proto)
{
	Smtp *m = proto;
	g_free(m->helo);
	g_free(m);
}

static void
smtp_tls_ready(GhSession *s)
{
	Smtp *m = s->proto;
	/* RFC 3207 4.2: forget what the client said before TLS; it must EHLO
	 * again, and now gets the capabilities that hold inside TLS */
	g_clear_pointer(&m->helo, g_free);
	m->esmtp = FALSE;
}

static GhBackendLink *
smtp_backend_connect(GhSession *s, const GhBackendParams *p, GhBackendDone done, gpointer data)
{
	Smtp *m = s->proto;
	return gh_smtp_backend_connect(p, m->helo, m->esmtp, s->host->context, done, data);
}

static GhBackendLink *
smtp_backend_warm(const GhBackendParams *p,
		  GMainContext *context,
		  GhBackendDone done,
		  gpointer data)
{
	return gh_smtp_backend_connect(p, NULL, TRUE, context, done, data);
}

static void
smtp_backend_adopt(GhSession *s, GhBackendLink *link)
{
	Smtp *m = s->proto;
	gh_smtp_backend_adopt(link, m->helo, m->esmtp);
}

/* ---- reuse_connections: the relay's tap ---- */

typedef struct {
	GhSession *s;
	GhSmtpTrack *track;
} Tap;

static GhRelayTapVerdict
tap_up(gpointer data, const guint8 *buf, gsize len)
{
	Tap *t = data;
	guint junk = 0, errors = 0;
	gboolean accepted = FALSE;

	switch (gh_smtp_track_client(t->track, buf, len)) {
	case GH_SMTP_TRACK_GOING:
		return GH_RELAY_TAP_PASS;
	case GH_SMTP_TRACK_QUIT:
		/* What the connection would carry into the next session, as
		 * Postfix counts: nothing, if the last thing before the QUIT
		 * was a message it accepted (that resets its junk command and
		 * error counts) and no RSET, NOOP or error came after it.  The
		 * connection then carries no junk command at all (gatehoused
		 * says nothing on it between sessions), within even the limit
		 * of 1 Postfix sets under stress (postconf(5)
		 * smtpd_junk_command_limit, smtpd_soft_error_limit). */
		gh_smtp_track_counts(t->track, &junk, &errors, &accepted);
		if (accepted && junk == 0 && errors == 0 && gh_session_backend_keepable(t->s))
			return GH_RELAY_TAP_HOLD;
		return GH_RELAY_TAP_BLIND;
	case GH_SMTP_TRACK_LOST:
		break;
	}
	return GH_RELAY_TAP_BLIND;
}

static GhRelayTapVerdict
tap_down(gpointer data, const guint8 *buf, gsize len)
{
	Tap *t = data;
	return gh_smtp_track_server(t->track, buf, len) == GH_SMTP_TRACK_GOING ? GH_RELAY_TAP_PASS
									       : GH_RELAY_TAP_BLIND;
}

static void
tap_free(gpointer data)
{
	Tap *t = data;
	gh_smtp_track_free(t->track);
	g_free(t);
}

static const GhRelayTap smtp_tap = {
    .up = tap_up,
    .down = tap_down,
    .free = tap_free,
};

static void
smtp_relay_tap(GhSession *s, GhRelay *relay)
{
	Tap *t = g_new0(Tap, 1);
	t->s = s;
	t->track = gh_smtp_track_new();
	gh_relay_set_tap(relay, &smtp_tap, t);
}

static GhBackendLink *
smtp_backend_resume(const GhBackendParams *p,
		    GMainContext *context,
		    GhConn *conn,
		    const char *server,
		    GhBackendDone done,
		    gpointer data)
{
	return gh_smtp_backend_resume(p, context, conn, server, done, data);
}

const GhProtocol gh_smtp_protocol = {
    .name = "smtp",
    .words = &smtp_words,
    .max_errors = GH_SMTP_MAX_ERRORS,
    .sasl_line_max = GH_SMTP_MAX_AUTH_LINE,
    .new = smtp_new,
    .free = smtp_free,
    .say = smtp_say,
    .command = smtp_command,
    .tls_ready = smtp_tls_ready,
    .backend_connect = smtp_backend_connect,
    .backend_warm = smtp_backend_warm,
    .backend_adopt = smtp_backend_adopt,
    .relay_tap = smtp_relay_tap,
    .backend_resume = smtp_backend_resume,
};
