/*
 * login.c: a session's login, the same for every protocol (see protocol.h):
 * the SASL steps of PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login),
 * the verify call into the auth core, counting failed logins, the backend
 * hand-off, the relay, and the two log lines: one per login attempt, one per
 * proxied session when it ends.
 *
 * While the credentials are checked, a backend link may already connect
 * and read the greeting and capabilities (login.early, [backend]
 * early_connect): with the verdict in, a yes hands it the user and password
 * (one round trip to the backend left instead of three or four), unless the
 * user's server hash points elsewhere; a no or a temporary failure
 * cancels it, and the server is told goodbye before any credential.  No
 * early link for a verdict the cache already had, for an address under a
 * failure penalty, nor where the auth chain may answer with a route (the
 * server is not known before then).
 *
 * Invariants: at most one of a verification (login.pending) and a backend
 * link (s->backend) is in flight, and neither reads client input; an early
 * link exists only beside a verification, and never carries a credential
 * before the verdict is yes; the password is wiped as soon as the backend
 * link has its copy or the attempt is over; a verification runs against the
 * auth set the session was accepted with, never a newer one.
 */
#include "gh-build.h"

#include "session/session-internal.h"
#include "config/log.h"
#include "session/sasl.h"
#include "session/backend-pool.h"
#include "net/connector.h"

#include <string.h>

void
gh_login_clear(GhLogin *l)
{
	if (l->pending != NULL) {
		gh_auth_pending_cancel(l->pending);
		l->pending = NULL;
	}
	g_clear_pointer(&l->early, gh_backend_link_cancel);
	g_clear_pointer(&l->early_error, g_free);
	g_clear_pointer(&l->early_server, g_free);
	g_clear_pointer(&l->tag, g_free);
	g_clear_pointer(&l->user, g_free);
	g_clear_pointer(&l->password, gh_secret_free);
	g_clear_pointer(&l->canonical, g_free);
	g_clear_pointer(&l->route, g_free);
	g_clear_pointer(&l->module, g_free);
	g_clear_pointer(&l->instance, g_free);
	g_clear_pointer(&l->auth_set, gh_auth_set_unref);
	l->mech = NULL;
	l->cached = FALSE;
}

void
gh_login_free(GhLogin *l)
{
	gh_login_clear(l);
	g_clear_pointer(&l->backend_server, g_free);
}

/* ------------------------------------------------------------ log lines */

static void
log_login(GhSession *s, const char *verdict, const char *reason, gint64 elapsed_us)
{
	const GhLogin *l = &s->login;
	GhLoginLog line = {
	    .session_id = s->id,
	    .protocol = s->protocol->name,
	    .listener = s->lc->name,
	    .remote = s->remote,
	    .user = l->user,
	    .mechanism = l->mech,
	    .tls = s->tls_desc != NULL ? s->tls_desc : "no",
	    .instance = l->instance,
	    .module = l->module,
	    .verdict = verdict,
	    .reason = reason,
	    .backend = l->backend_server,
	    .cached = l->cached,
	    .elapsed_us = elapsed_us,
	};
	gh_log_login(&line);
	/* by module (file, pam, ldap), as gatehouse.conf(5) documents the label */
	gh_stats_add(s->host->stats, GH_STAT_LOGINS, 1, s->protocol->name, s->lc->name,
		     l->module != NULL ? l->module : "none", verdict);
}

static void
log_end(GhSession *s, const char *why, guint64 client_bytes, guint64 backend_bytes)
{
	const GhLogin *l = &s->login;
	GhSessionEndLog line = {
	    .domain = G_LOG_DOMAIN,
	    .session_id = s->id,
	    .protocol = s->protocol->name,
	    .listener = s->lc->name,
	    .remote = s->remote,
	    .user = l->canonical,
	    .backend = l->backend_server,
	    .client_bytes = client_bytes,
	    .backend_bytes = backend_bytes,
	    .duration_us = g_get_monotonic_time() - s->started_us,
	    .reason = why,
	};
	gh_log_session_end(&line);
}

/* ------------------------------------------------------------ outcomes */

/* Bad credentials: answer, count, maybe close; the login is forgotten. */
static void
login_failed(GhSession *s)
{
	s->protocol->say(s, GH_SAY_AUTH_FAILED, NULL);
	gh_login_clear(&s->login);
	s->phase = GH_PHASE_COMMAND;
	if (++s->auth_failures >= s->lc->max_auth_failures) {
		g_message("session %s: %s failed to log in %u times; closing", s->id, s->remote,
			  s->auth_failures);
		s->protocol->say(s, GH_SAY_TOO_MANY_AUTH_FAILS, NULL);
		gh_session_close(s);
	}
}

/* Not now: the auth source or the backend is unavailable, or the backend
 * put the login off; `reply` (or NULL) is then its answer for the client. */
static void
login_tempfail(GhSession *s, GBytes *reply)
{
	g_autofree char *line = NULL;
	if (reply != NULL) {
		gsize len = 0;
		const char *bytes = g_bytes_get_data(reply, &len);
		while (len > 0 && (bytes[len - 1] == '\n' || bytes[len - 1] == '\r'))
			len--;
		line = g_strndup(bytes, len);
	}
	s->protocol->say(s, GH_SAY_AUTH_TEMPFAIL, line);
	gh_login_clear(&s->login);
}

/* ------------------------------------------------------------ relay */

void
gh_login_relay_ended(GhSession *s, const char *why, guint64 up, guint64 down)
{
	if (s->refill_due) { /* the client said nothing after its login */
		s->refill_due = FALSE;
		gh_backend_pool_refill(s->host->pool);
	}
	log_end(s, why, up, down);
	gh_stats_add(s->host->stats, GH_STAT_RELAY_BYTES, up, s->protocol->name, "to_backend");
	gh_stats_add(s->host->stats, GH_STAT_RELAY_BYTES, down, s->protocol->name, "to_client");
}

gboolean
gh_session_backend_keepable(GhSession *s)
{
	return s->keep_backend &&
	       gh_backend_pool_can_keep(s->host->pool, s, s->login.canonical,
					s->login.backend_server, s->backend_served);
}

/* The tap held the client's QUIT with the backend at rest: the connection
 * goes back to the pool, the client hears the goodbye here. */
static void
keep_backend(GhSession *s, GhRelay *relay, guint64 up, guint64 down)
{
	GhConn *client = NULL, *backend = NULL;

	gh_relay_release(relay, &client, &backend);
	s->relay = NULL;
	gh_login_relay_ended(s, "client quit, backend connection kept", up, down);
	gh_backend_pool_keep(s->host->pool, s, s->login.canonical, backend,
			     s->login.backend_server);
	gh_session_take_client(s, client);
	gh_session_say_last(s, GH_SAY_GOODBYE);
}

static void
on_relay_done(GhRelay *relay, const char *why, guint64 up, guint64 down, gpointer data)
{
	GhSession *s = data;
	if (why == NULL) {
		keep_backend(s, relay, up, down);
		return;
	}
	gh_login_relay_ended(s, why, up, down);
	gh_session_free(s);
}

static void connect_backend(GhSession *s, gboolean logged_in);

/* The warm pool's refill after a login dials a new connection, and on
 * loopback its connect runs the whole handshake inside the call.  Right
 * after the backend's answer to the login, that work delays what this
 * thread does next for the client: passing on its next command.  So the
 * refill waits until that command has gone to the backend: the thread
 * waits for the answer then anyway, and the backend's login process,
 * done with this client, accepts the new connection beside the backend's
 * work on the command (bench/pair at one client: p50 latency 2 to 4%
 * lower, doc/performance.md).  A relay that ends first refills then
 * (gh_login_relay_ended); other logins and the pool's sweep refill too. */
static void
refill_after_login(gpointer data)
{
	GhSession *s = data;
	s->refill_due = FALSE;
	gh_backend_pool_refill(s->host->pool);
}

static void
on_backend_done(GhBackendResult result,
		GhConn *backend,
		GBytes *reply,
		const char *server,
		const char *error,
		gpointer data)
{
	GhSession *s = data;
	GhLogin *l = &s->login;
	gboolean mx_join = s->mx_join;

	/* the backend is done with this login: the pool may dial it again
	 * (a login that goes on to relay: once its next command is out) */
	if (result != GH_BACKEND_OK)
		gh_backend_pool_refill(s->host->pool);

	s->backend = NULL;
	s->mx_join = FALSE;
	g_free(l->backend_server);
	l->backend_server = g_strdup(server);
	/* a connection kept or parked before the verdict gave out as the
	 * login went on it: the server may well be fine, and the verdict
	 * stands, so the login goes on a connection of its own (not for
	 * passthrough, whose password went with the first try) */
	if (result == GH_BACKEND_LOST && !mx_join &&
	    gh_config_backend(s->config, s->lc->backend)->login != GH_LOGIN_PASSTHROUGH) {
		g_message("session %s: %s: backend connection lost at the login (%s); "
			  "connecting afresh",
			  s->id, s->remote, error);
		connect_backend(s, TRUE);
		return;
	}
	if (result != GH_BACKEND_OK) {
		if (mx_join) {
			g_message("session %s: %s: backend unavailable: %s", s->id, s->remote,
				  error);
			s->protocol->say(s, GH_SAY_BACKEND_UNAVAILABLE, NULL);
			gh_login_clear(l);
		} else if (result == GH_BACKEND_REFUSED) {
			/* we said yes, the backend no: its users and ours differ */
			log_login(s, "backend-refused", error, l->auth_us);
			login_failed(s);
		} else if (result == GH_BACKEND_DEFERRED) {
			/* the server works; this user's login is for later */
			g_autofree char *reason =
			    g_strdup_printf("backend deferred the login: %s", error);
			log_login(s, "tempfail", reason, l->auth_us);
			login_tempfail(s, reply);
		} else {
			g_autofree char *reason = g_strdup_printf("backend unavailable: %s", error);
			log_login(s, "tempfail", reason, l->auth_us);
			login_tempfail(s, NULL);
		}
		gh_session_back_to_commands(s);
		return;
	}
	gh_session_stop_timer(s);
	if (mx_join) {
		g_message("session %s: %s joined to backend %s without a login", s->id, s->remote,
			  server);
	} else {
		log_login(s, "ok", "", l->auth_us);
		/* the backend's own answer to the login, if the client sees it */
		if (reply != NULL) {
			gsize len = 0;
			const guint8 *bytes = g_bytes_get_data(reply, &len);
			(void)gh_conn_queue(s->conn, bytes, len);
		}
		s->protocol->say(s, GH_SAY_LOGGED_IN, NULL);
	}
	g_clear_pointer(&l->password, gh_secret_free);
	s->phase = GH_PHASE_RELAY;
	if (s->protocol->relay_started != NULL)
		s->protocol->relay_started(s);
	/* the login is over: the auth set of its generation is not needed */
	g_clear_pointer(&s->auth_set, gh_auth_set_unref);
	/* the relay owns both connections now; the session keeps its record */
	s->backend_served = backend->served;
	s->relay = gh_relay_start(s->conn, backend, on_relay_done, s);
	s->conn = NULL;
	s->refill_due = TRUE;
	gh_relay_after_first_up(s->relay, refill_after_login, s);
	if (s->keep_backend && s->protocol->relay_tap != NULL)
		s->protocol->relay_tap(s, s->relay);
	else if (s->protocol->relay_watch != NULL)
		s->protocol->relay_watch(s, s->relay);
}

/* reuse_connections: may a logged-in session's backend connection go back
 * to the pool?  Only with no route, so that its server is the pool's first
 * for the canonical name (gh_backend_pool_can_keep checks it too). */
static gboolean
may_keep_backend(GhSession *s, const GhBackendConfig *bc)
{
	return bc->reuse_connections && (s->login.route == NULL || !bc->follow_route);
}

/* What the backend dialogue is given; a login's when `logged_in`. */
static GhBackendParams
backend_params(GhSession *s, gboolean logged_in)
{
	GhLogin *l = &s->login;
	return (GhBackendParams){
	    .backend = gh_config_backend(s->config, s->lc->backend),
	    .route = logged_in ? l->route : NULL,
	    .hash_key = logged_in ? l->canonical : s->remote,
	    .user = logged_in ? l->canonical : NULL,
	    .password = l->password,
	    .client_addr = s->remote,
	    .client_port = s->remote_port,
	    .local_addr = s->local,
	    .local_port = s->local_port,
	    .hostname = s->config->hostname,
	    .session_id = s->id,
	    .tls = s->tls,
	    .stats = s->host->stats,
	};
}

static void
connect_backend(GhSession *s, gboolean logged_in)
{
	GhLogin *l = &s->login;
	GhBackendParams p = backend_params(s, logged_in);

	s->phase = GH_PHASE_BACKEND;
	s->mx_join = !logged_in;
	gh_session_stop_timer(s);
	s->keep_backend = logged_in && may_keep_backend(s, p.backend);
	/* a warm connection to the user's server, when there is no route */
	if (logged_in && (l->route == NULL || !p.backend->follow_route)) {
		s->backend =
		    gh_backend_pool_take(s->host->pool, s, l->canonical, &p, on_backend_done, s);
		if (s->backend != NULL) {
			gh_backend_link_login(s->backend, l->canonical, l->password,
					      on_backend_done, s);
			g_clear_pointer(&l->password, gh_secret_free);
			(void)gh_session_update_watch(s);
			return;
		}
	}
	s->backend = s->protocol->backend_connect(s, &p, on_backend_done, s);
	/* the link has its own copy where it needs one */
	g_clear_pointer(&l->password, gh_secret_free);
	(void)gh_session_update_watch(s);
}

/* The verdict is yes and the early link dialled this user's servers: it
 * becomes the backend link and logs in. */
static void
login_on_early(GhSession *s)
{
	GhLogin *l = &s->login;

	s->phase = GH_PHASE_BACKEND;
	s->mx_join = FALSE;
	gh_session_stop_timer(s);
	s->backend = g_steal_pointer(&l->early);
	/* (the early link dialled the first server of the canonical name) */
	s->keep_backend = may_keep_backend(s, gh_config_backend(s->config, s->lc->backend));
	gh_backend_link_login(s->backend, l->canonical, l->password, on_backend_done, s);
	g_clear_pointer(&l->password, gh_secret_free);
	(void)gh_session_update_watch(s);
}

/* An early link ends only when it fails (it has nothing to log in with):
 * a backend found down is remembered for the verdict; a parked server that
 * went away is forgotten (a yes connects anew). */
static void
on_early_done(GhBackendResult result,
	      GhConn *backend,
	      GBytes *reply,
	      const char *server,
	      const char *error,
	      gpointer data)
{
	GhLogin *l = &((GhSession *)data)->login;
	(void)reply;

	l->early = NULL;
	gh_conn_free(backend);
	if (result == GH_BACKEND_FAILED) {
		l->early_error = g_strdup(error);
		l->early_server = g_strdup(server);
	}
}

/* The verification is starting: connect meanwhile, unless the backend says
 * not to or the client's address has failed lately (a password guesser
 * gets no backend connections). */
static void
connect_early(GhSession *s)
{
	GhLogin *l = &s->login;
	const GhBackendConfig *bc = gh_config_backend(s->config, s->lc->backend);
	GhBackendParams p;

	if (!bc->early_connect || gh_auth_set_recent_failures(s->auth_set, s->remote) > 0)
		return;
	/* a route from the verdict would replace the servers: not known yet */
	if (bc->follow_route &&
	    gh_auth_set_may_route(s->auth_set, (const char *const *)s->lc->auth))
		return;
	p = backend_params(s, FALSE);
	p.hash_key = l->user; /* the canonical name is not known yet */
	p.password = NULL;    /* nor whether it is the right one */
	p.login_later = TRUE;
	l->early = gh_backend_pool_take(s->host->pool, s, l->user, &p, on_early_done, s);
	if (l->early == NULL)
		l->early = s->protocol->backend_connect(s, &p, on_early_done, s);
}

void
gh_session_join_backend(GhSession *s)
{
	connect_backend(s, FALSE);
}

/* ------------------------------------------------------------ verification */

static void
on_verified(const GhAuthOutcome *o, gpointer data)
{
	GhSession *s = data;
	GhLogin *l = &s->login;

	l->pending = NULL;
	gh_stats_observe_auth(s->host->stats, o->elapsed_us);
	l->instance = g_strdup(o->instance);
	l->module = g_strdup(o->module);
	l->cached = o->cached;
	l->auth_us = o->elapsed_us;
	if (o->verdict == GH_AUTH_OK) {
		l->canonical = g_strdup(o->canonical_user);
		l->route = g_strdup(o->route);
		if ((l->early != NULL || l->early_error != NULL) &&
		    gh_connector_same_order(gh_config_backend(s->config, s->lc->backend), l->route,
					    l->canonical, l->user)) {
			if (l->early != NULL) {
				login_on_early(s);
			} else {
				/* as the link it would have started would end */
				g_autofree char *error = g_steal_pointer(&l->early_error);
				g_autofree char *server = g_steal_pointer(&l->early_server);
				s->phase = GH_PHASE_BACKEND;
				s->mx_join = FALSE;
				on_backend_done(GH_BACKEND_FAILED, NULL, NULL, server, error, s);
			}
			return;
		}
		g_clear_pointer(&l->early, gh_backend_link_cancel);
		connect_backend(s, TRUE);
		return;
	}
	log_login(s, gh_auth_verdict_to_string(o->verdict), o->reason, o->elapsed_us);
	if (o->verdict == GH_AUTH_TEMPFAIL)
		login_tempfail(s, NULL);
	else
		login_failed(s);
	gh_session_back_to_commands(s);
}

/* user and password are known: ask the auth chain of the listener */
static void
verify(GhSession *s)
{
	GhLogin *l = &s->login;
	gsize pw_len = 0;
	const char *pw = gh_secret_get(l->password, &pw_len);
	GhAuthRequest req = {
	    .user = l->user,
	    .password = pw,
	    .password_len = pw_len,
	    .service = s->protocol->name,
	    .listener = s->lc->name,
	    .remote_addr = s->remote,
	    .remote_port = s->remote_port,
	    .local_addr = s->local,
	    .local_port = s->local_port,
	    .tls = s->secure,
	    .session_id = s->id,
	};
	s->phase = GH_PHASE_VERIFYING;
	gh_session_stop_timer(s);
	/* a new attempt: the server an earlier one reached is not this one's */
	g_clear_pointer(&l->backend_server, g_free);
	l->auth_set = gh_auth_set_ref(s->auth_set);
	l->pending = gh_auth_verify_async(l->auth_set, (const char *const *)s->lc->auth, &req, 0,
					  s->host->context, on_verified, s);
	/* a verdict the cache had comes in the next turn of the loop: nothing
	 * to overlap, and a cached no must not cost a backend connection */
	if (!gh_auth_pending_decided(l->pending))
		connect_early(s);
}

/* A new attempt: forget the last one; `mech` is a static string. */
static GhLogin *
login_begin(GhSession *s, const char *tag, const char *mech)
{
	GhLogin *l = &s->login;
	gh_login_clear(l);
	l->tag = g_strdup(tag);
	l->mech = mech;
	return l;
}

void
gh_session_login_refused(
    GhSession *s, const char *tag, const char *mech, const char *user, const char *reason)
{
	GhLogin *l = login_begin(s, tag, mech);
	l->user = g_strdup(user);
	log_login(s, "refused", reason, 0);
	login_failed(s);
}

void
gh_session_login(
    GhSession *s, const char *tag, const char *user, const char *password, gsize password_len)
{
	GhLogin *l = login_begin(s, tag, "LOGIN-CMD");
	l->user = g_strdup(user);
	l->password = gh_secret_new(password, password_len);
	verify(s);
}

/* ------------------------------------------------------------ SASL steps */

/* A response that cannot be decoded ends the exchange: answered, counted. */
static void
sasl_failed(GhSession *s, GhSaslStatus st)
{
	s->protocol->say(s, st == GH_SASL_CANCELLED ? GH_SAY_SASL_CANCELLED : GH_SAY_SASL_MALFORMED,
			 NULL);
	gh_login_clear(&s->login);
	s->phase = GH_PHASE_COMMAND;
	(void)gh_session_count_error(s);
}

static void
plain_response(GhSession *s, const char *b64, gsize len)
{
	GhLogin *l = &s->login;
	g_autofree char *authzid = NULL;
	g_autofree char *authcid = NULL;
	GhSecret *password = NULL;
	GhSaslStatus st = gh_sasl_plain_decode(b64, len, &authzid, &authcid, &password);
	if (st != GH_SASL_OK) {
		sasl_failed(s, st);
		return;
	}
	l->user = g_steal_pointer(&authcid);
	l->password = password;
	/* RFC 4616 2: acting for someone else is for proxies, not clients */
	if (authzid[0] != '\0' && strcmp(authzid, l->user) != 0) {
		log_login(s, "refused", "authzid differs from the user", 0);
		login_failed(s);
		return;
	}
	verify(s);
}

static void
login_user(GhSession *s, const char *b64, gsize len)
{
	g_autoptr(GhSecret) user = NULL;
	GhSaslStatus st = gh_sasl_login_decode(b64, len, FALSE, &user);
	if (st != GH_SASL_OK) {
		sasl_failed(s, st);
		return;
	}
	s->login.user = g_strdup(gh_secret_get(user, NULL));
	s->phase = GH_PHASE_SASL_LOGIN_PASS;
	s->protocol->say(s, GH_SAY_SASL_CHALLENGE, "UGFzc3dvcmQ6"); /* "Password:" */
}

static void
login_pass(GhSession *s, const char *b64, gsize len)
{
	GhSecret *pw = NULL;
	GhSaslStatus st = gh_sasl_login_decode(b64, len, TRUE, &pw);
	if (st != GH_SASL_OK) {
		sasl_failed(s, st);
		return;
	}
	s->login.password = pw;
	verify(s);
}

/* Start a SASL exchange: `mech` is "PLAIN" or "LOGIN", checked. */
static void
sasl_start(GhSession *s, const char *tag, const char *mech, const char *initial, gsize initial_len)
{
	if (strcmp(mech, "PLAIN") == 0) {
		login_begin(s, tag, "PLAIN");
		if (initial != NULL) {
			plain_response(s, initial, initial_len);
		} else {
			s->phase = GH_PHASE_SASL_PLAIN;
			s->protocol->say(s, GH_SAY_SASL_CHALLENGE, "");
		}
	} else {
		login_begin(s, tag, "LOGIN");
		if (initial != NULL) {
			login_user(s, initial, initial_len);
		} else {
			s->phase = GH_PHASE_SASL_LOGIN_USER;
			s->protocol->say(s, GH_SAY_SASL_CHALLENGE,
					 "VXNlcm5hbWU6"); /* "Username:" */
		}
	}
}

void
gh_session_auth_command(
    GhSession *s, const char *tag, const char *mech, const char *initial, gsize initial_len)
{
	const GhCommandWords *w = s->protocol->words;
	gboolean plain = g_ascii_strcasecmp(mech, "PLAIN") == 0;

	if (!plain && g_ascii_strcasecmp(mech, "LOGIN") != 0) {
		gh_session_say_words(s, tag, w->auth_unsupported);
		if (w->auth_unsupported_counts)
			(void)gh_session_count_error(s);
		return;
	}
	/* the advertised and the accepted mechanisms come from one predicate */
	if (!gh_session_plaintext_accepted(s, tag))
		return;
	sasl_start(s, tag, plain ? "PLAIN" : "LOGIN", initial, initial_len);
}

void
gh_login_sasl_line(GhSession *s, const char *line, gsize len)
{
	switch (s->phase) {
	case GH_PHASE_SASL_PLAIN:
		plain_response(s, line, len);
		break;
	case GH_PHASE_SASL_LOGIN_USER:
		login_user(s, line, len);
		break;
	case GH_PHASE_SASL_LOGIN_PASS:
		login_pass(s, line, len);
		break;
	default:
		break;
	}
}
