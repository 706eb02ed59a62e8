/*
 * session.c: the life cycle of a client connection (see session.h and
 * protocol.h): creation, greeting, the input loop, the one timer, TLS,
 * closing with a lingering read, shutdown and free.  The login itself (SASL
 * steps, verification, backend hand-off, relay) is login.c.
 *
 * Invariants: a session is created, used and freed on the worker thread
 * that accepted it; it keeps the configuration generation it was accepted
 * under (config, TLS credentials and auth set together) until it is freed
 * (the auth set only until the login is over); the client's input is read
 * only in a reading phase (COMMAND or a SASL step), so what the client
 * pipelines behind a login waits, in order, in the input buffer; a session
 * is freed from the loop or from a callback of its own, never under a
 * caller that still uses it.
 */
#include "gh-build.h"

#include "session/session-internal.h"
#include "common/line.h"
#include "config/log.h"
#include "net/proxy-header.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

static void
make_session_id(char *out, gsize size)
{
	/* base32 without look-alikes: short, unique enough per process and day,
	 * easy to grep in the log */
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
	gsize n = MIN(size - 1, 12);
	/* 60 random bits, 5 per character: two calls into GLib's generator
	 * (a global lock each) rather than twelve */
	guint64 bits = ((guint64)g_random_int() << 32) | g_random_int();
	for (gsize i = 0; i < n; i++, bits >>= 5)
		out[i] = alphabet[bits & 31];
	out[n] = '\0';
}

static void
sockaddr_to_text(const struct sockaddr *sa, char *out, gsize size, guint16 *port_out)
{
	*port_out = 0;
	g_strlcpy(out, "-", size);
	if (sa->sa_family == AF_INET && size >= INET_ADDRSTRLEN) {
		/* by hand: inet_ntop formats each octet with printf, on every
		 * connection */
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		const guint8 *b = (const guint8 *)&sin->sin_addr;
		gsize n = 0;
		for (int i = 0; i < 4; i++) {
			guint v = b[i];
			if (v >= 100)
				out[n++] = (char)('0' + v / 100);
			if (v >= 10)
				out[n++] = (char)('0' + v / 10 % 10);
			out[n++] = (char)('0' + v % 10);
			out[n++] = i < 3 ? '.' : '\0';
		}
		*port_out = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)size);
		*port_out = ntohs(sin6->sin6_port);
	}
}

GhSession *
gh_session_new(const GhSessionHost *host,
	       const GhProtocol *protocol,
	       GhGeneration *gen,
	       const char *listener,
	       int fd,
	       const GhSessionAddrs *addrs)
{
	GhSession *s = g_new0(GhSession, 1);
	struct sockaddr_storage local;
	socklen_t local_len = sizeof local;
	gint one = 1;

	/* replies and relayed commands are small writes: send each at once */
	if (!addrs->nodelay)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	make_session_id(s->id, sizeof s->id);
	s->host = host;
	s->host_link.data = s;
	s->protocol = protocol;
	s->config = g_steal_pointer(&gen->config);
	s->tls = g_steal_pointer(&gen->tls);
	s->auth_set = g_steal_pointer(&gen->auth_set);
	s->lc = gh_config_listener(s->config, listener);
	g_assert(s->lc != NULL);
	s->conn = gh_conn_new(fd, host->context, GH_SESSION_IN_MAX, GH_SESSION_OUT_MAX);
	s->started_us = g_get_monotonic_time();
	s->phase = GH_PHASE_COMMAND;
	sockaddr_to_text(addrs->peer, s->remote, sizeof s->remote, &s->remote_port);
	if (addrs->local != NULL)
		sockaddr_to_text(addrs->local, s->local, sizeof s->local, &s->local_port);
	else if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
		sockaddr_to_text((struct sockaddr *)&local, s->local, sizeof s->local,
				 &s->local_port);
	s->trusted = gh_cidr_list_match_text(s->config->trusted_networks, s->remote);
	s->proto = protocol->new (s);
	return s;
}

GList *
gh_session_host_link(GhSession *s)
{
	return &s->host_link;
}

void
gh_session_free(GhSession *s)
{
	gh_backend_link_cancel(s->backend);
	gh_relay_free(s->relay);
	gh_login_free(&s->login);
	s->protocol->free(s->proto);
	gh_session_stop_timer(s);
	s->host->ended(s, s->host->data);
	gh_conn_free(s->conn);
	gh_debug("session %s: closed", s->id);
	gh_tls_unref(s->tls);
	gh_auth_set_unref(s->auth_set);
	g_free(s->proxy_buf);
	g_free(s->tls_desc);
	gh_config_unref(s->config);
	g_free(s);
}

void
gh_session_abort(GhSession *s)
{
	gh_session_free(s);
}

/* ------------------------------------------------------------ the timer */

void
gh_session_stop_timer(GhSession *s)
{
	gh_timer_stop(&s->timer);
}

static void
set_timer(GhSession *s, guint ms, GhTimerFunc func)
{
	gh_timer_start(&s->timer, s->host->context, ms, func, s);
}

static void
on_close_deadline(gpointer data)
{
	gh_session_free(data);
}

void
gh_session_say_last(GhSession *s, GhSay what)
{
	/* corked, the words wait for the close to send them with the FIN */
	gh_conn_cork(s->conn);
	s->protocol->say(s, what, NULL);
	gh_session_close(s);
	(void)gh_session_update_watch(s);
}

static void
on_idle_timeout(gpointer data)
{
	GhSession *s = data;
	g_message("session %s: %s idle for %u s in login state; closing", s->id, s->remote,
		  s->lc->idle_timeout);
	gh_session_say_last(s, GH_SAY_IDLE_TIMEOUT);
}

void
gh_session_restart_idle(GhSession *s)
{
	set_timer(s, s->lc->idle_timeout * 1000, on_idle_timeout);
}

/* ------------------------------------------------------------ replies */

void
gh_session_say(GhSession *s, const char *format, ...)
{
	/* Most replies are a line of a few dozen bytes, several per login:
	 * formatted on the stack, no allocation; a longer one (a backend's
	 * own answer passed on) is formatted again on the heap. */
	char small[512];
	g_autofree char *big = NULL;
	char *text = small;
	va_list ap;
	int n;

	va_start(ap, format);
	n = g_vsnprintf(small, sizeof small - 2, format, ap);
	va_end(ap);
	if (n < 0)
		return; /* a format of ours that glibc refuses: a bug, and no reply */
	if ((gsize)n >= sizeof small - 2) {
		va_start(ap, format);
		big = g_malloc((gsize)n + 3);
		(void)g_vsnprintf(big, (gulong)n + 1, format, ap);
		va_end(ap);
		text = big;
	}
	text[n] = '\r';
	text[n + 1] = '\n';
	/* one write per reply; out_max is far above GH_SESSION_OUT_SOFT, so a
	 * reply always fits */
	(void)gh_conn_queue(s->conn, text, (gsize)n + 2);
}

void
gh_session_close(GhSession *s)
{
	s->closing = TRUE;
	set_timer(s, GH_SESSION_CLOSE_TIMEOUT * 1000, on_close_deadline);
}

gboolean
gh_session_count_error(GhSession *s)
{
	if (++s->errors < s->protocol->max_errors)
		return TRUE;
	g_message("session %s: %s made %u protocol errors; closing", s->id, s->remote, s->errors);
	s->protocol->say(s, GH_SAY_TOO_MANY_ERRORS, NULL);
	gh_session_close(s);
	return FALSE;
}

void
gh_session_discard_line(GhSession *s)
{
	s->discarding = TRUE;
}

gboolean
gh_session_plaintext_allowed(GhSession *s)
{
	switch (s->lc->plaintext_auth) {
	case GH_PLAINTEXT_ALWAYS:
		return TRUE;
	case GH_PLAINTEXT_TLS:
		return s->secure;
	case GH_PLAINTEXT_TRUSTED:
		return s->secure || s->trusted;
	}
	return FALSE;
}

gboolean
gh_session_starttls_offered(GhSession *s)
{
	return s->lc->tls == GH_TLS_STARTTLS && !s->secure && gh_tls_has_server(s->tls);
}

/* ------------------------------------------------------------ greeting */

static void
greet(GhSession *s)
{
	s->phase = GH_PHASE_COMMAND;
	s->protocol->say(s, GH_SAY_GREETING, NULL);
	gh_session_restart_idle(s);
	(void)gh_session_update_watch(s);
}

static void start_tls(GhSession *s);
static void on_client(GhConn *c, GIOCondition cond, gpointer data);

/* The connection is the client's now (after a PROXY header, if any):
 * implicit TLS, then the greeting. */
static void
serve(GhSession *s)
{
	if (s->lc->tls == GH_TLS_IMPLICIT) {
		/* RFC 8314 3.3: TLS from the first byte, then the greeting */
		s->tls_implicit = TRUE;
		start_tls(s);
		return;
	}
	greet(s);
}

/* ------------------------------------------------------------ PROXY header */

static void
on_proxy_timeout(gpointer data)
{
	GhSession *s = data;
	g_message("session %s: %s sent no PROXY header within %u s; closing", s->id, s->remote,
		  GH_SESSION_PROXY_TIMEOUT);
	gh_session_free(s);
}

/* The header is read: its addresses are the session's from now on. */
static void
proxy_done(GhSession *s, const GhProxyHeader *h)
{
	g_clear_pointer(&s->proxy_buf, g_free);
	gh_session_stop_timer(s);
	if (h->local) {
		/* a health check, or a connection of the balancer's own */
		gh_debug("session %s: PROXY header from %s: LOCAL", s->id, s->remote);
	} else {
		gh_debug("session %s: PROXY header from %s: client %s port %u to %s port %u", s->id,
			 s->remote, h->src_addr, h->src_port, h->dst_addr, h->dst_port);
		g_strlcpy(s->remote, h->src_addr, sizeof s->remote);
		s->remote_port = h->src_port;
		g_strlcpy(s->local, h->dst_addr, sizeof s->local);
		s->local_port = h->dst_port;
		s->trusted = gh_cidr_list_match_text(s->config->trusted_networks, s->remote);
	}
	serve(s);
}

/* Read the PROXY header straight from the socket and never a byte past it:
 * what follows is the client's (a command, or a TLS ClientHello).  Peek,
 * then take only what the header holds. */
static void
proxy_input(GhSession *s)
{
	int fd = s->conn->fd;
	GhProxyHeader h;
	gsize consumed = 0, take;
	const char *why = NULL;
	GhProxyStatus st;
	ssize_t n;

	do
		n = recv(fd, s->proxy_buf + s->proxy_have, GH_PROXY_V2_MAX - s->proxy_have,
			 MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		g_message("session %s: %s: %s before its PROXY header; closing", s->id, s->remote,
			  n == 0 ? "connection closed" : g_strerror(errno));
		gh_session_free(s);
		return;
	}
	st = gh_proxy_header_parse(s->proxy_buf, s->proxy_have + (gsize)n, &h, &consumed, &why);
	if (st == GH_PROXY_INVALID ||
	    (st == GH_PROXY_NEED_MORE && s->proxy_have + (gsize)n >= GH_PROXY_V2_MAX)) {
		g_message("session %s: %s: bad PROXY header (%s); closing", s->id, s->remote,
			  why != NULL ? why : "too long");
		gh_session_free(s);
		return;
	}
	/* a valid beginning is all header: take it; a whole one, only it */
	take = st == GH_PROXY_OK ? consumed - s->proxy_have : (gsize)n;
	do
		n = recv(fd, s->proxy_buf + s->proxy_have, take, 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)take) {
		g_message("session %s: %s: PROXY header lost while read; closing", s->id,
			  s->remote);
		gh_session_free(s);
		return;
	}
	s->proxy_have += take;
	if (st == GH_PROXY_OK)
		proxy_done(s, &h);
}

void
gh_session_begin(GhSession *s, guint n_open)
{
	gh_debug("session %s: connect from %s port %u on listener %s", s->id, s->remote,
		 s->remote_port, s->lc->name);
	if (s->lc->max_connections > 0 && n_open > s->lc->max_connections) {
		g_message(
		    "session %s: refusing %s on listener %s: %u connections open (max_connections)",
		    s->id, s->remote, s->lc->name, n_open - 1);
		/* best effort: the first reply of a fresh connection fits any
		 * socket buffer */
		s->protocol->say(s, GH_SAY_TOO_MANY_CONNECTIONS, NULL);
		(void)gh_conn_flush(s->conn);
		gh_session_free(s);
		return;
	}
	gh_conn_set_callback(s->conn, on_client, s);
	if (s->lc->proxy_protocol) {
		if (!gh_cidr_list_match_text(s->config->proxy_trusted_networks, s->remote)) {
			g_message("session %s: %s is not in proxy_trusted_networks: no PROXY "
				  "header taken from it; closing",
				  s->id, s->remote);
			gh_session_free(s);
			return;
		}
		/* the balancer speaks first: wait for its header, from the loop */
		s->phase = GH_PHASE_PROXY;
		s->proxy_buf = g_malloc(GH_PROXY_V2_MAX);
		set_timer(s, GH_SESSION_PROXY_TIMEOUT * 1000, on_proxy_timeout);
		gh_conn_want(s->conn, G_IO_IN);
		return;
	}
	serve(s);
}

/* The last words of a session in login state: whatever login is under way
 * is dropped, the protocol says `what`, the core closes. */
static void
goodbye(GhSession *s, GhSay what)
{
	gh_login_clear(&s->login);
	g_clear_pointer(&s->backend, gh_backend_link_cancel);
	gh_session_say_last(s, what);
}

void
gh_session_shutdown(GhSession *s)
{
	if (s->phase == GH_PHASE_RELAY || s->closing)
		return; /* proxied: runs until it ends or shutdown_timeout */
	if (s->phase == GH_PHASE_PROXY) {
		/* not yet the client's connection: nothing to say to it */
		gh_session_free(s);
		return;
	}
	goodbye(s, GH_SAY_SHUTDOWN);
}

void
gh_session_take_client(GhSession *s, GhConn *client)
{
	s->conn = client;
	gh_conn_set_callback(s->conn, on_client, s);
}

gboolean
gh_session_kick(GhSession *s)
{
	if (s->closing)
		return FALSE; /* its last words are on their way already */
	gh_stats_add(s->host->stats, GH_STAT_KICKED, 1, s->protocol->name);
	g_message("session %s: %s: closed by the administrator", s->id, s->remote);
	if (s->phase == GH_PHASE_PROXY) {
		gh_session_free(s);
		return TRUE;
	}
	if (s->relay != NULL) {
		gboolean at_rest = FALSE;
		guint64 up, down;
		gh_relay_counts(s->relay, &up, &down);
		gh_login_relay_ended(s, "kicked by the administrator", up, down);
		/* the backend goes now; the client hears the goodbye, unless it
		 * would land in the middle of a line the backend was sending, or
		 * inside an IMAP literal */
		gh_session_take_client(s, gh_relay_release_client(s->relay, &at_rest));
		s->relay = NULL;
		if (at_rest)
			s->protocol->say(s, GH_SAY_KICKED, NULL);
		gh_session_close(s);
		(void)gh_session_update_watch(s);
		return TRUE;
	}
	goodbye(s, GH_SAY_KICKED);
	return TRUE;
}

/* ------------------------------------------------------------ description */

const char *
gh_session_state_to_string(GhSessionState state)
{
	switch (state) {
	case GH_SESSION_PRE_LOGIN:
		return "pre-login";
	case GH_SESSION_LOGGING_IN:
		return "logging-in";
	case GH_SESSION_PROXIED:
		return "proxied";
	}
	return "?";
}

static GhSessionState
session_state(const GhSession *s)
{
	switch (s->phase) {
	case GH_PHASE_SASL_PLAIN:
	case GH_PHASE_SASL_LOGIN_USER:
	case GH_PHASE_SASL_LOGIN_PASS:
	case GH_PHASE_VERIFYING:
	case GH_PHASE_BACKEND:
		return GH_SESSION_LOGGING_IN;
	case GH_PHASE_RELAY:
		return GH_SESSION_PROXIED;
	default:
		return GH_SESSION_PRE_LOGIN;
	}
}

void
gh_session_describe(GhSession *s, GhSessionInfo *info)
{
	const GhLogin *l = &s->login;
	const char *user = l->canonical != NULL ? l->canonical : l->user;

	memset(info, 0, sizeof *info);
	g_strlcpy(info->id, s->id, sizeof info->id);
	info->protocol = s->protocol->name;
	info->listener = g_strdup(s->lc->name);
	info->remote = g_strdup(s->remote);
	/* a name the client typed: made safe to print, as in the log */
	info->user = user != NULL ? gh_log_escape(user, strlen(user), 256) : NULL;
	/* the server it is proxied to, or the one being tried; not the one an
	 * earlier attempt failed on */
	if (s->phase == GH_PHASE_RELAY && l->backend_server != NULL)
		info->backend = g_strdup(l->backend_server);
	else if (s->backend != NULL && gh_backend_link_server(s->backend) != NULL)
		info->backend = g_strdup(gh_backend_link_server(s->backend));
	info->tls = g_strdup(s->tls_desc);
	info->state = session_state(s);
	info->started_us = s->started_us;
	if (s->relay != NULL)
		gh_relay_counts(s->relay, &info->bytes_up, &info->bytes_down);
}

void
gh_session_info_clear(GhSessionInfo *info)
{
	g_free(info->listener);
	g_free(info->remote);
	g_free(info->user);
	g_free(info->backend);
	g_free(info->tls);
	memset(info, 0, sizeof *info);
}

void
gh_session_count(GhSession *s, GhStats *copy)
{
	gh_stats_add(copy, GH_STAT_SESSIONS, 1, s->protocol->name, s->lc->name,
		     gh_session_state_to_string(session_state(s)));
	if (s->relay != NULL) {
		guint64 up, down;
		gh_relay_counts(s->relay, &up, &down);
		gh_stats_add(copy, GH_STAT_RELAY_BYTES, up, s->protocol->name, "to_backend");
		gh_stats_add(copy, GH_STAT_RELAY_BYTES, down, s->protocol->name, "to_client");
	}
}

/* ------------------------------------------------------------ TLS */

static guint
handshake_timeout_s(GhSession *s)
{
	return MAX(MIN(s->lc->idle_timeout, 60), 1);
}

static void
on_handshake_timeout(gpointer data)
{
	GhSession *s = data;
	g_message("session %s: %s: TLS handshake not finished within %u s; closing", s->id,
		  s->remote, handshake_timeout_s(s));
	gh_session_free(s);
}

static void
tls_done(GhSession *s)
{
	s->secure = TRUE;
	s->tls_desc = gh_tls_describe(s->conn->tls);
	gh_debug("session %s: %s: %s", s->id, s->remote, s->tls_desc);
	gh_session_stop_timer(s);
	if (s->tls_implicit) {
		greet(s);
		return;
	}
	if (s->protocol->tls_ready != NULL)
		s->protocol->tls_ready(s);
	gh_session_back_to_commands(s);
}

/* Drive the handshake from the loop. */
static void
handshake(GhSession *s)
{
	GhConn *c = s->conn;
	int rc = gh_conn_tls_handshake(c);
	if (rc < 0) {
		g_message("session %s: %s: %s", s->id, s->remote, c->tls_error);
		gh_session_free(s);
		return;
	}
	if (rc == 0) {
		gh_conn_want(c, c->tls_want);
		return;
	}
	tls_done(s);
}

static void
begin_handshake(GhSession *s)
{
	GhConn *c = s->conn;
	s->tls_start_pending = FALSE;
	/* whatever the client sent after STARTTLS was sent in plaintext: it
	 * must not be taken as coming through TLS */
	gh_conn_consume(c, c->in->len);
	gh_conn_tls_start(c, gh_tls_server_session(s->tls, c->fd));
	set_timer(s, handshake_timeout_s(s) * 1000, on_handshake_timeout);
	/* the client speaks first (ClientHello): wait for it, from the loop,
	 * so that a failing handshake never frees the session under a caller */
	gh_conn_want(c, G_IO_IN);
}

static void
start_tls(GhSession *s)
{
	s->phase = GH_PHASE_TLS;
	gh_conn_consume(s->conn, s->conn->in->len);
	if (!gh_conn_flush(s->conn)) {
		/* the "go ahead" is not out yet: handshake once it is */
		s->tls_start_pending = TRUE;
		gh_conn_want(s->conn, G_IO_OUT);
		return;
	}
	begin_handshake(s);
}

GhInput
gh_session_command_line(
    GhSession *s, gsize max, gsize max_auth, const char *too_long, gsize *len, gsize *used)
{
	GhConn *c = s->conn;
	gboolean terminated = FALSE;
	GhLineStatus st = gh_line_next_command((const char *)c->in->data, c->in->len, max, max_auth,
					       "AUTH", len, used, &terminated);

	if (st == GH_LINE_NEED_MORE) {
		*used = 0;
		return GH_INPUT_NEED_MORE;
	}
	if (st == GH_LINE_TOO_LONG) {
		/* it may hold a password: consuming wipes it */
		gh_conn_consume(c, *used);
		*used = 0;
		if (!terminated)
			gh_session_discard_line(s);
		gh_session_say(s, "%s", too_long);
		(void)gh_session_count_error(s);
	}
	return GH_INPUT_DONE;
}

void
gh_session_say_words(GhSession *s, const char *tag, const char *words)
{
	if (tag != NULL)
		gh_session_say(s, "%s %s", tag, words);
	else
		gh_session_say(s, "%s", words);
}

gboolean
gh_session_plaintext_accepted(GhSession *s, const char *tag)
{
	if (gh_session_plaintext_allowed(s))
		return TRUE;
	gh_session_say_words(s, tag, s->protocol->words->auth_plaintext_refused);
	return FALSE;
}

void
gh_session_starttls_command(GhSession *s, const char *tag, gboolean has_args)
{
	const GhCommandWords *w = s->protocol->words;

	if (has_args) {
		gh_session_say_words(s, tag, w->starttls_syntax);
		(void)gh_session_count_error(s);
		return;
	}
	if (s->secure) {
		gh_session_say_words(s, tag, w->starttls_active);
		(void)gh_session_count_error(s);
		return;
	}
	if (!gh_session_starttls_offered(s)) {
		gh_session_say_words(s, tag, w->starttls_unavailable);
		return;
	}
	gh_session_say_words(s, tag, w->starttls_go);
	start_tls(s);
}

/* ------------------------------------------------------------ input */

static gboolean
reading(GhSession *s)
{
	return !s->closing &&
	       (s->phase == GH_PHASE_COMMAND || s->phase == GH_PHASE_SASL_PLAIN ||
		s->phase == GH_PHASE_SASL_LOGIN_USER || s->phase == GH_PHASE_SASL_LOGIN_PASS);
}

/* A line in a SASL phase.  FALSE: wait for more input. */
static gboolean
sasl_input(GhSession *s)
{
	GhConn *c = s->conn;
	gsize line_len = 0, used = 0;
	gboolean terminated = FALSE;
	GhLineStatus st = gh_line_next((const char *)c->in->data, c->in->len,
				       s->protocol->sasl_line_max, &line_len, &used, &terminated);
	if (st == GH_LINE_NEED_MORE)
		return FALSE;
	gh_session_restart_idle(s);
	if (st == GH_LINE_TOO_LONG) {
		gh_conn_consume(c, used);
		s->discarding = !terminated;
		gh_login_clear(&s->login);
		s->phase = GH_PHASE_COMMAND;
		s->protocol->say(s, GH_SAY_SASL_LINE_TOO_LONG, NULL);
		return TRUE;
	}
	gh_login_sasl_line(s, (const char *)c->in->data, line_len);
	gh_conn_consume(c, used);
	return TRUE;
}

void
gh_session_process(GhSession *s)
{
	GhConn *c = s->conn;

	/* the replies to what this read brought leave together */
	gh_conn_cork(c);
	while (reading(s) && c->in->len > 0 && gh_conn_pending(c) < GH_SESSION_OUT_SOFT) {
		if (s->discarding) {
			gboolean terminated = FALSE;
			gh_conn_consume(
			    c, gh_line_skip((const char *)c->in->data, c->in->len, &terminated));
			if (terminated)
				s->discarding = FALSE;
			continue;
		}
		if (s->phase != GH_PHASE_COMMAND) {
			if (!sasl_input(s))
				break;
			continue;
		}
		if (s->protocol->command(s) == GH_INPUT_NEED_MORE)
			break;
		/* a whole command came: the client is not idle.  (A command
		 * that closes, starts TLS or a verification has set the timer
		 * it needs, and is no longer reading.) */
		if (reading(s))
			gh_session_restart_idle(s);
	}
	/* closing: the replies stay corked for the FIN to take them */
	if (!s->closing)
		gh_conn_uncork(c);
	(void)gh_session_update_watch(s);
}

void
gh_session_back_to_commands(GhSession *s)
{
	s->phase = GH_PHASE_COMMAND;
	if (!s->closing)
		gh_session_restart_idle(s);
	gh_session_process(s);
}

gboolean
gh_session_update_watch(GhSession *s)
{
	GhConn *c = s->conn;
	gboolean is_reading;
	GIOCondition want = 0;

	if (c == NULL)
		return TRUE; /* the relay has it */
	if (c->tls_handshaking || s->tls_start_pending)
		return TRUE; /* the handshake decides what to wait for */
	if (c->error != 0) {
		gh_debug("session %s: %s: %s", s->id, s->remote, g_strerror(c->error));
		gh_session_free(s);
		return FALSE;
	}
	is_reading = reading(s);
	if (c->eof && is_reading && gh_conn_pending(c) < GH_SESSION_OUT_SOFT) {
		/* (below the soft limit, process() has served every whole line)
		 * the client closed, or half-closed after its last command:
		 * answer what it sent, then close; an unfinished login is dropped */
		gh_debug("session %s: %s closed the connection", s->id, s->remote);
		gh_session_close(s);
	}
	if (s->closing) {
		if (c->error != 0 || (s->lingering && c->eof)) {
			gh_session_free(s);
			return FALSE;
		}
		if (!s->lingering) {
			/* Lingering close: closing a socket with unread input makes
			 * the kernel send a reset, which can destroy our last reply
			 * on its way (a client still sending a huge line would never
			 * see its "Line too long").  So: end our side (the last
			 * reply, still corked, leaves with the FIN), read and drop
			 * what still comes for a moment, then close. */
			if (!gh_conn_shut(c)) {
				gh_conn_want(c, G_IO_OUT);
				return TRUE;
			}
			s->lingering = TRUE;
			set_timer(s, GH_SESSION_LINGER_MS, on_close_deadline);
		}
		gh_conn_consume(c, c->in->len);
		gh_conn_want(c, G_IO_IN);
		return TRUE;
	}
	if (is_reading && !c->eof && c->in->len < c->in_max &&
	    gh_conn_pending(c) < GH_SESSION_OUT_SOFT)
		want |= G_IO_IN;
	if (gh_conn_pending(c) > 0)
		want |= G_IO_OUT;
	gh_conn_want(c, want);
	return TRUE;
}

static void
on_client(GhConn *c, GIOCondition cond, gpointer data)
{
	GhSession *s = data;
	gboolean is_reading;
	(void)cond;
	if (s->phase == GH_PHASE_PROXY) {
		proxy_input(s);
		return;
	}
	if (s->tls_start_pending) {
		if (!gh_conn_flush(c) && c->error == 0)
			return;
		if (c->error != 0) {
			gh_session_free(s);
			return;
		}
		begin_handshake(s);
		return;
	}
	if (c->tls_handshaking) {
		handshake(s);
		return;
	}
	is_reading = reading(s);
	if (gh_conn_pending(c) > 0)
		(void)gh_conn_flush(c);
	if (is_reading || s->lingering)
		(void)gh_conn_fill(c);
	if (is_reading)
		gh_session_process(s);
	else
		(void)gh_session_update_watch(s);
}
