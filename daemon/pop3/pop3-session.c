/*
 * pop3-session.c: POP3's entry in the protocol table (see pop3-session.h):
 * the responses at each turning point, the commands of the AUTHORIZATION
 * state (CAPA, USER, PASS, AUTH, STLS, NOOP, QUIT), and the backend
 * dialogue.
 *
 * Invariants: only a line the parser bounds is read (GH_POP3_MAX_LINE, an
 * AUTH line GH_POP3_MAX_AUTH_LINE); every command line gets exactly one
 * response (a multi-line one for CAPA and AUTH alone), so a client that
 * pipelines (RFC 2449 6.6) reads them in order; the user name USER gave is
 * kept until PASS, STLS or the end of the login, and is forgotten then; a
 * password is never kept here, it goes straight to the core.
 */
#include "gh-build.h"

#include "pop3/pop3-session.h"
#include "pop3/pop3-backend.h"
#include "pop3/pop3-parser.h"

#include <string.h>

typedef struct {
	char *user; /* from USER, for the PASS that follows */
} Pop3;

#define say(s, ...) gh_session_say((s), __VA_ARGS__)

static void
pop3_say(GhSession *s, GhSay what, const char *arg)
{
	switch (what) {
	case GH_SAY_GREETING:
		say(s, "+OK %s ready.", s->config->hostname);
		break;
	case GH_SAY_TOO_MANY_CONNECTIONS:
		say(s, "-ERR [SYS/TEMP] Too many connections, try again later.");
		break;
	case GH_SAY_SHUTDOWN:
		say(s, "-ERR [SYS/TEMP] Server shutting down.");
		break;
	case GH_SAY_KICKED:
		say(s, "-ERR Session closed by the administrator.");
		break;
	case GH_SAY_IDLE_TIMEOUT:
		say(s, "-ERR Disconnected for inactivity.");
		break;
	case GH_SAY_TOO_MANY_ERRORS:
		say(s, "-ERR Too many invalid commands.");
		break;
	case GH_SAY_SASL_CHALLENGE:
		say(s, "+ %s", arg); /* RFC 5034 4: "+" SP [base64] */
		break;
	case GH_SAY_SASL_CANCELLED:
		say(s, "-ERR Authentication cancelled.");
		break;
	case GH_SAY_SASL_MALFORMED:
		say(s, "-ERR Cannot decode response.");
		break;
	case GH_SAY_SASL_LINE_TOO_LONG:
		say(s, "-ERR Line too long.");
		(void)gh_session_count_error(s);
		break;
	case GH_SAY_AUTH_FAILED:
		say(s, "-ERR [AUTH] Authentication failed.");
		break;
	case GH_SAY_AUTH_TEMPFAIL:
		if (arg != NULL) /* the backend's -ERR, its code and all */
			say(s, "%s", arg);
		else
			say(s,
			    "-ERR [SYS/TEMP] Temporary authentication failure, try again later.");
		break;
	case GH_SAY_TOO_MANY_AUTH_FAILS:
		say(s, "-ERR [AUTH] Too many authentication failures.");
		break;
	case GH_SAY_LOGGED_IN:           /* the backend's +OK is forwarded */
	case GH_SAY_BACKEND_UNAVAILABLE: /* POP3 never joins without a login */
	case GH_SAY_GOODBYE:             /* nor keeps a backend connection */
		break;
	}
}

/* ------------------------------------------------------------ commands */

static const GhCommandWords pop3_words = {
    .starttls_syntax = "-ERR Syntax: STLS.",
    .starttls_active = "-ERR TLS already active.",
    .starttls_unavailable = "-ERR TLS not available.",
    .starttls_go = "+OK Begin TLS negotiation now.",
    .auth_unsupported = "-ERR Unsupported authentication mechanism.",
    .auth_plaintext_refused = "-ERR [AUTH] Plaintext authentication is not allowed without TLS.",
};

static void
cmd_capa(GhSession *s)
{
	/* RFC 2449 5: one capability a line.  TOP and UIDL are the backend's
	 * after the login; clients decide on them from this list. */
	say(s, "+OK Capability list follows.");
	say(s, "CAPA");
	say(s, "TOP");
	say(s, "UIDL");
	say(s, "RESP-CODES");
	say(s, "AUTH-RESP-CODE");
	say(s, "PIPELINING");
	/* the advertised and the accepted mechanisms come from one predicate */
	if (gh_session_plaintext_allowed(s)) {
		say(s, "USER");
		say(s, "SASL PLAIN LOGIN");
	}
	if (gh_session_starttls_offered(s))
		say(s, "STLS");
	say(s, ".");
}

static void
cmd_user(GhSession *s, Pop3 *m, const GhPop3Command *cmd)
{
	if (cmd->arg_len == 0) {
		say(s, "-ERR Syntax: USER name.");
		(void)gh_session_count_error(s);
		return;
	}
	if (!gh_session_plaintext_accepted(s, NULL))
		return;
	g_free(m->user);
	m->user = g_strndup(cmd->arg, cmd->arg_len);
	say(s, "+OK");
}

static void
cmd_pass(GhSession *s, Pop3 *m, const GhPop3Command *cmd)
{
	g_autofree char *user = g_steal_pointer(&m->user);

	if (user == NULL) {
		say(s, "-ERR No user name given (USER first).");
		(void)gh_session_count_error(s);
		return;
	}
	if (cmd->arg_len == 0) {
		say(s, "-ERR Syntax: PASS password.");
		(void)gh_session_count_error(s);
		return;
	}
	/* plaintext_auth may have changed since USER only through STLS,
	 * which forgets the user */
	gh_session_login(s, NULL, user, cmd->arg, cmd->arg_len);
}

static void
cmd_auth(GhSession *s, const GhPop3Command *cmd)
{
	g_autofree char *mech = NULL;
	g_autofree char *initial = NULL;

	if (!gh_pop3_parse_auth(cmd->arg, cmd->arg_len, &mech, &initial)) {
		say(s, "-ERR Syntax: AUTH mechanism [initial-response].");
		(void)gh_session_count_error(s);
		goto out;
	}
	if (mech == NULL) {
		/* AUTH alone lists the mechanisms (as Outlook asks; the
		 * draft before RFC 5034 had it) */
		say(s, "+OK");
		if (gh_session_plaintext_allowed(s)) {
			say(s, "PLAIN");
			say(s, "LOGIN");
		}
		say(s, ".");
		goto out;
	}
	gh_session_auth_command(s, NULL, mech, initial, initial != NULL ? strlen(initial) : 0);
out:
	if (initial != NULL)
		explicit_bzero(initial, strlen(initial));
}

static void
command(GhSession *s, Pop3 *m, const char *line, gsize len)
{
	GhPop3Command cmd;
	gh_pop3_parse_command(line, len, &cmd);

	switch (cmd.verb) {
	case GH_POP3_CMD_CAPA:
		cmd_capa(s);
		return;
	case GH_POP3_CMD_USER:
		cmd_user(s, m, &cmd);
		return;
	case GH_POP3_CMD_PASS:
		cmd_pass(s, m, &cmd);
		return;
	case GH_POP3_CMD_AUTH:
		cmd_auth(s, &cmd);
		return;
	case GH_POP3_CMD_STLS:
		gh_session_starttls_command(s, NULL, cmd.arg_len > 0);
		return;
	case GH_POP3_CMD_NOOP:
		say(s, "+OK");
		return;
	case GH_POP3_CMD_QUIT:
		say(s, "+OK Logging out.");
		gh_session_close(s);
		return;
	case GH_POP3_CMD_APOP:
		say(s, "-ERR APOP is not supported; use USER/PASS or AUTH.");
		(void)gh_session_count_error(s);
		return;
	case GH_POP3_CMD_TRANSACTION:
		say(s, "-ERR Command not allowed before login.");
		(void)gh_session_count_error(s);
		return;
	case GH_POP3_CMD_INVALID:
		say(s, "-ERR Invalid characters in command.");
		(void)gh_session_count_error(s);
		return;
	case GH_POP3_CMD_UNKNOWN:
		break;
	}
	say(s, "-ERR Unknown command.");
	(void)gh_session_count_error(s);
}

static GhInput
pop3_command(GhSession *s)
{
	GhConn *c = s->conn;
	gsize line_len = 0, used = 0;
	/* only an AUTH command line may be longer (its initial response) */
	GhInput in = gh_session_command_line(s, GH_POP3_MAX_LINE, GH_POP3_MAX_AUTH_LINE,
					     "-ERR Line too long.", &line_len, &used);

	if (used == 0)
		return in;
	command(s, s->proto, (const char *)c->in->data, line_len);
	gh_conn_consume(c, used);
	return GH_INPUT_DONE;
}

/* ------------------------------------------------------------ table */

static gpointer
pop3_new(GhSession *s)
{
	(void)s;
	return g_new0(Pop3, 1);
}

static void
pop3_forget_user(GhSession *s)
{
	Pop3 *m = s->proto;
	g_clear_pointer(&m->user, g_free);
}

static void
pop3_free(gpointer proto)
{
	Pop3 *m = proto;
	g_free(m->user);
	g_free(m);
}

static GhBackendLink *
pop3_backend_connect(GhSession *s, const GhBackendParams *p, GhBackendDone done, gpointer data)
{
	return gh_pop3_backend_connect(p, s->host->context, done, data);
}

static GhBackendLink *
pop3_backend_warm(const GhBackendParams *p,
		  GMainContext *context,
		  GhBackendDone done,
		  gpointer data)
{
	return gh_pop3_backend_connect(p, context, done, data);
}

/* A warm link needs nothing of the client but what the core gives it (the
 * address XCLIENT names goes out with the login). */
static void
pop3_backend_adopt(GhSession *s, GhBackendLink *link)
{
	(void)s;
	(void)link;
}

const GhProtocol gh_pop3_protocol = {
    .name = "pop3",
    .words = &pop3_words,
    .max_errors = GH_POP3_MAX_ERRORS,
    .sasl_line_max = GH_POP3_MAX_AUTH_LINE,
    .new = pop3_new,
    .free = pop3_free,
    .say = pop3_say,
    .command = pop3_command,
    /* RFC 2595 4: what was said before TLS is forgotten */
    .tls_ready = pop3_forget_user,
    .backend_connect = pop3_backend_connect,
    .backend_warm = pop3_backend_warm,
    .backend_adopt = pop3_backend_adopt,
    .relay_started = pop3_forget_user,
};
