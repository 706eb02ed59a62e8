/*
 * imap-session.c: IMAP's entry in the protocol table (see imap-session.h):
 * the responses at each turning point (RFC 9051, RFC 4959 SASL-IR, RFC 5530
 * response codes), the commands before login, and the backend dialogue's
 * own parameters (the client's tag and ID fields).
 *
 * Invariants: the incremental parser returns at the end of each command and
 * never holds bytes of the next one when it does, so what a client pipelines
 * behind its login waits in the input buffer; the client's tag and every
 * string we echo come from the parser, which bounds them; no line of the
 * client's is logged.
 */
#include "gh-build.h"

#include "imap/imap-session.h"
#include "imap/imap-backend.h"
#include "imap/imap-parser.h"
#include "imap/imap-track.h"
#include "net/relay.h"

#include <string.h>

/* RFC 2971 3.3: 30 pairs; keys up to 30 octets, values up to 1024 */
#define GH_IMAP_ID_PAIRS 30
#define GH_IMAP_ID_KEY_MAX 30
#define GH_IMAP_ID_VALUE_MAX 1024

typedef struct {
	GhImapParser *parser;
	GPtrArray *client_id; /* of char*: key, value, ..., NULL-terminated */
	GhImapTrack track;    /* once relayed: where the server's lines end */
} Imap;

#define say(s, ...) gh_session_say((s), __VA_ARGS__)

static char *
capabilities(GhSession *s)
{
	/* the advertised and the accepted mechanisms come from one predicate */
	return g_strdup_printf("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+%s %s",
			       gh_session_starttls_offered(s) ? " STARTTLS" : "",
			       gh_session_plaintext_allowed(s) ? "AUTH=PLAIN AUTH=LOGIN"
							       : "LOGINDISABLED");
}

static const GhCommandWords imap_words = {
    .starttls_syntax = "BAD Syntax error.",
    .starttls_active = "BAD TLS already active.",
    .starttls_unavailable = "NO TLS not available.",
    .starttls_go = "OK Begin TLS negotiation now.",
    .auth_unsupported = "NO Unsupported authentication mechanism.",
    .auth_plaintext_refused =
	"NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS.",
};

static void
imap_say(GhSession *s, GhSay what, const char *arg)
{
	const char *tag = s->login.tag != NULL ? s->login.tag : "*";
	switch (what) {
	case GH_SAY_GREETING: {
		g_autofree char *caps = capabilities(s);
		say(s, "* OK [CAPABILITY %s] %s ready.", caps, s->config->hostname);
		break;
	}
	case GH_SAY_TOO_MANY_CONNECTIONS:
		say(s, "* BYE [UNAVAILABLE] Too many connections");
		break;
	case GH_SAY_SHUTDOWN:
		say(s, "* BYE Server shutting down.");
		break;
	case GH_SAY_KICKED:
		say(s, "* BYE Session closed by the administrator.");
		break;
	case GH_SAY_IDLE_TIMEOUT:
		say(s, "* BYE Disconnected for inactivity.");
		break;
	case GH_SAY_TOO_MANY_ERRORS:
		say(s, "* BYE Too many invalid commands.");
		break;
	case GH_SAY_SASL_CHALLENGE:
		say(s, "+ %s", arg);
		break;
	case GH_SAY_SASL_CANCELLED:
		say(s, "%s BAD Authentication cancelled.", tag);
		break;
	case GH_SAY_SASL_MALFORMED:
		say(s, "%s BAD Cannot decode response.", tag);
		break;
	case GH_SAY_SASL_LINE_TOO_LONG:
		say(s, "* BYE Line too long.");
		gh_session_close(s);
		break;
	case GH_SAY_AUTH_FAILED:
		say(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", tag);
		break;
	case GH_SAY_AUTH_TEMPFAIL:
		if (arg != NULL) /* the backend's tagged NO: the tag is the client's */
			say(s, "%s", arg);
		else
			say(s, "%s NO [UNAVAILABLE] Temporary authentication failure.", tag);
		break;
	case GH_SAY_TOO_MANY_AUTH_FAILS:
		say(s, "* BYE Too many authentication failures.");
		break;
	case GH_SAY_LOGGED_IN:           /* the backend's tagged OK is forwarded */
	case GH_SAY_BACKEND_UNAVAILABLE: /* IMAP never joins without a login */
	case GH_SAY_GOODBYE:             /* nor keeps a backend connection */
		break;
	}
}

/* ------------------------------------------------------------ commands */

static gboolean
is_string(const GhImapToken *t)
{
	return t->type == GH_IMAP_TOKEN_ATOM || t->type == GH_IMAP_TOKEN_STRING;
}

static void
cmd_id(GhSession *s, Imap *m, const GhImapCommand *cmd)
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
		say(s, "%s BAD Syntax error.", cmd->tag);
		(void)gh_session_count_error(s);
		return;
	}
	say(s, "* ID (\"name\" \"gatehouse\")");
	say(s, "%s OK ID completed.", cmd->tag);
}

static void
cmd_login(GhSession *s, GhImapCommand *cmd)
{
	GhImapToken *u, *p;
	if (cmd->args->len != 2 || !is_string(cmd->args->pdata[0]) ||
	    !is_string(cmd->args->pdata[1])) {
		say(s, "%s BAD Syntax error.", cmd->tag);
		(void)gh_session_count_error(s);
		return;
	}
	if (!gh_session_plaintext_accepted(s, cmd->tag))
		return;
	u = cmd->args->pdata[0];
	p = cmd->args->pdata[1];
	/* a user name with NUL, CR or LF could not be passed on intact */
	if (u->len == 0 || strlen(u->value) != u->len || strpbrk(u->value, "\r\n") != NULL) {
		gh_session_login_refused(s, cmd->tag, "LOGIN-CMD", "(invalid)",
					 "invalid user name");
		return;
	}
	gh_session_login(s, cmd->tag, u->value, p->value, p->len);
}

static void
cmd_authenticate(GhSession *s, GhImapCommand *cmd)
{
	const char *mech;
	const GhImapToken *ir = NULL;
	if (cmd->args->len < 1 || cmd->args->len > 2 ||
	    ((GhImapToken *)cmd->args->pdata[0])->type != GH_IMAP_TOKEN_ATOM ||
	    (cmd->args->len == 2 && !is_string(cmd->args->pdata[1]))) {
		say(s, "%s BAD Syntax error.", cmd->tag);
		(void)gh_session_count_error(s);
		return;
	}
	mech = ((GhImapToken *)cmd->args->pdata[0])->value;
	if (cmd->args->len == 2)
		ir = cmd->args->pdata[1];
	gh_session_auth_command(s, cmd->tag, mech, ir != NULL ? ir->value : NULL,
				ir != NULL ? ir->len : 0);
}

static void
command(GhSession *s, Imap *m, GhImapCommand *cmd)
{
	const char *name = cmd->name;
	if (strcmp(name, "CAPABILITY") == 0) {
		g_autofree char *caps = capabilities(s);
		say(s, "* CAPABILITY %s", caps);
		say(s, "%s OK Capability completed.", cmd->tag);
	} else if (strcmp(name, "NOOP") == 0) {
		say(s, "%s OK NOOP completed.", cmd->tag);
	} else if (strcmp(name, "ID") == 0) {
		cmd_id(s, m, cmd);
	} else if (strcmp(name, "LOGOUT") == 0) {
		say(s, "* BYE Logging out");
		say(s, "%s OK LOGOUT completed.", cmd->tag);
		gh_session_close(s);
	} else if (strcmp(name, "STARTTLS") == 0) {
		/* RFC 9051 6.2.1: the client asks for the capabilities again;
		 * they then hold inside TLS */
		gh_session_starttls_command(s, cmd->tag, cmd->args->len > 0);
	} else if (strcmp(name, "LOGIN") == 0) {
		cmd_login(s, cmd);
	} else if (strcmp(name, "AUTHENTICATE") == 0) {
		cmd_authenticate(s, cmd);
	} else {
		say(s, "%s BAD Command not allowed before login.", cmd->tag);
		(void)gh_session_count_error(s);
	}
}

static GhInput
imap_command(GhSession *s)
{
	Imap *m = s->proto;
	GhConn *c = s->conn;
	GhImapCommand cmd = {0};
	gsize used = 0;
	GhImapStatus st =
	    gh_imap_parser_feed(m->parser, (const char *)c->in->data, c->in->len, &used, &cmd);

	gh_conn_consume(c, used);
	switch (st) {
	case GH_IMAP_NEED_MORE:
		gh_imap_command_clear(&cmd);
		return GH_INPUT_NEED_MORE;
	case GH_IMAP_CONTINUE:
		say(s, "+ OK");
		break;
	case GH_IMAP_ERROR:
		if (cmd.tag != NULL)
			say(s, "%s BAD %s.", cmd.tag, cmd.error);
		else
			say(s, "* BAD %s.", cmd.error);
		(void)gh_session_count_error(s);
		break;
	case GH_IMAP_FATAL:
		say(s, "* BYE %s.", cmd.error != NULL ? cmd.error : "Protocol error");
		gh_session_close(s);
		break;
	case GH_IMAP_COMMAND:
		command(s, m, &cmd);
		break;
	}
	gh_imap_command_clear(&cmd);
	return GH_INPUT_DONE;
}

/* ------------------------------------------------------------ table */

static gpointer
imap_new(GhSession *s)
{
	Imap *m = g_new0(Imap, 1);
	(void)s;
	m->parser = gh_imap_parser_new(GH_IMAP_MAX_LINE, GH_IMAP_MAX_LITERAL);
	m->client_id = g_ptr_array_new_null_terminated(8, g_free, TRUE);
	return m;
}

static void
imap_relay_started(GhSession *s)
{
	Imap *m = s->proto;
	g_clear_pointer(&m->parser, gh_imap_parser_free);
	g_clear_pointer(&m->client_id, g_ptr_array_unref);
}

static void
imap_free(gpointer proto)
{
	Imap *m = proto;
	if (m->parser != NULL)
		gh_imap_parser_free(m->parser);
	if (m->client_id != NULL)
		g_ptr_array_unref(m->client_id);
	g_free(m);
}

static GhBackendLink *
imap_backend_connect(GhSession *s, const GhBackendParams *p, GhBackendDone done, gpointer data)
{
	Imap *m = s->proto;
	return gh_imap_backend_connect(p, s->login.tag, (const char *const *)m->client_id->pdata,
				       s->host->context, done, data);
}

static GhBackendLink *
imap_backend_warm(const GhBackendParams *p,
		  GMainContext *context,
		  GhBackendDone done,
		  gpointer data)
{
	return gh_imap_backend_connect(p, NULL, NULL, context, done, data);
}

static void
imap_backend_adopt(GhSession *s, GhBackendLink *link)
{
	Imap *m = s->proto;
	gh_imap_backend_adopt(link, s->login.tag, (const char *const *)m->client_id->pdata);
}

/* The relay's tap: the server's lines, for a kick's "* BYE" (the tracker
 * lives in the session's Imap, which outlives the relay). */
static GhRelayTapVerdict
watch_up(gpointer tap, const guint8 *buf, gsize len)
{
	(void)tap, (void)buf, (void)len;
	return GH_RELAY_TAP_PASS;
}

static GhRelayTapVerdict
watch_down(gpointer tap, const guint8 *buf, gsize len)
{
	gh_imap_track_down(tap, buf, len);
	return gh_imap_track_lost(tap) ? GH_RELAY_TAP_BLIND : GH_RELAY_TAP_PASS;
}

static void
watch_free(gpointer tap)
{
	(void)tap;
}

static gboolean
watch_at_rest(gpointer tap)
{
	return gh_imap_track_at_rest(tap);
}

static const GhRelayTap imap_watch = {
    .up = watch_up,
    .down = watch_down,
    .free = watch_free,
    .at_rest = watch_at_rest,
};

static void
imap_relay_watch(GhSession *s, GhRelay *relay)
{
	Imap *m = s->proto;
	gh_imap_track_init(&m->track);
	gh_relay_set_tap(relay, &imap_watch, &m->track);
}

const GhProtocol gh_imap_protocol = {
    .name = "imap",
    .words = &imap_words,
    .max_errors = GH_IMAP_MAX_BAD,
    .sasl_line_max = GH_IMAP_MAX_LINE + 2,
    .new = imap_new,
    .free = imap_free,
    .say = imap_say,
    .command = imap_command,
    .backend_connect = imap_backend_connect,
    .backend_warm = imap_backend_warm,
    .backend_adopt = imap_backend_adopt,
    .relay_started = imap_relay_started,
    .relay_watch = imap_relay_watch,
};
