/*
 * ldap.c: the `ldap` auth module: checks logins against an LDAP directory
 * (OpenLDAP libldap 2.5), by search-then-bind or by a direct bind to a DN
 * made from the login name.  The keys are in doc/ldap-module.txt; in short:
 *
 *   [auth ldap]
 *   module = ldap
 *   uri = ldap://ldap1.example.com ldaps://ldap2.example.com
 *   start_tls = yes
 *   base = ou=people,dc=example,dc=com
 *   filter = (&(objectClass=inetOrgPerson)(uid=%u))
 *   bind_dn = cn=gatehouse,dc=example,dc=com
 *   bind_password_file = /etc/gatehouse/ldap.secret
 *   route_attribute = mailHost
 *   user_attribute = uid
 *
 * Owns the parsed keys, the search account's password (wiped on free) and a
 * pool of idle connections.
 *
 * Invariants:
 *  - An LDAP handle is used by one thread at a time: verify() takes the
 *    connections it needs out of the idle lists under `lock` and gives them
 *    back when it is done, so each worker thread has its own while it works
 *    (at most `pool_size` of them) and none is ever shared.  The lists only
 *    hold handles that were connected and did not fail.
 *  - A connection's bind identity is tracked (anonymous, the search account,
 *    anyone else): a search never runs under a user's identity.
 *  - A connection that fails with a transport error (server down, timeout,
 *    connect error) is closed at once, never given back.  A request retries
 *    once on a fresh connection when the failed one was an old one (it may
 *    simply have been idle too long) or when there is another server to try;
 *    otherwise, and after the retry, the answer is TEMPFAIL.  Every
 *    operation is bounded: `network_timeout` per connect (and TLS handshake)
 *    per server, `timeout` per LDAP operation.
 *  - An empty password is refused before LDAP is asked: a simple bind with
 *    an empty password is an anonymous bind (RFC 4513 section 5.1.2), which
 *    many servers accept.
 *  - The login name reaches LDAP only escaped: RFC 4515 for the filter
 *    (ldap_bv2escaped_filter_value), RFC 4514 for a DN template.
 *  - The password is never logged and never copied; login names and entry
 *    DNs appear only in GhAuthResult.reason (which the core escapes), never
 *    in g_warning/g_message lines.  Warnings about the directory (server
 *    down, search account refused) are limited to one a minute per cause.
 */
#include "gh-build.h"

#define G_LOG_DOMAIN "gh-auth-ldap"

#include "gh-auth-module.h"

#include <errno.h>
#include <fcntl.h>
#include <ldap.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_FILTER "(uid=%u)"
#define DEFAULT_TIMEOUT 5
#define DEFAULT_NETWORK_TIMEOUT 3
#define MAX_TIMEOUT 600
#define MAX_POOL_SIZE 2
#define MAX_PASSWORD_FILE 4096
#define MAX_DIAGNOSTIC 200
#define WARNING_INTERVAL_US (60 * G_USEC_PER_SEC)

/* What a connection is bound as. */
typedef enum {
	BOUND_ANONYMOUS, /* fresh, or re-bound anonymously */
	BOUND_SEARCH,    /* the search account (bind_dn) */
	BOUND_OTHER,     /* a user, or a bind that failed: re-bind before searching */
} BindState;

typedef struct {
	LDAP *ld;     /* NULL: not connected */
	guint server; /* index in LdapState.servers */
	BindState bound;
} Conn;

typedef struct {
	char *uri;
	gboolean ldaps;
	gboolean down;       /* the last attempt failed; under LdapState.lock */
	gint64 last_warning; /* monotonic; under LdapState.lock */
} Server;

typedef enum {
	WARN_SEARCH_BIND,
	WARN_SEARCH,
	WARN_ATTRIBUTE,
	WARN_OTHER,
	N_WARN,
} WarnKind;

typedef struct {
	const GhAuthHost *host; /* outlives the state; route_valid checks route_attribute values */
	Server *servers;
	guint n_servers;
	gboolean start_tls;
	char *base;
	int scope;
	char *filter;  /* with %u */
	char *bind_dn; /* NULL: anonymous search */
	char *bind_password;
	gsize bind_password_len;
	char *bind_dn_template; /* non-NULL: direct bind, no search */
	char *route_attribute;
	char *user_attribute;
	char **attrs; /* what searches ask for: the two above, or "1.1" */
	guint timeout;
	guint network_timeout;
	char *ca_file;
	int require_cert;
	guint pool_size;

	gint preferred;         /* atomic: the server to try first (the last that worked) */
	GMutex lock;            /* guards the idle lists, Server.down/last_warning, last_warning */
	GPtrArray *idle_search; /* Conn *: connections for searches (and binds when pool_size 1) */
	GPtrArray *idle_bind;   /* Conn *: connections for users' binds (pool_size 2) */
	gint64 last_warning[N_WARN];
} LdapState;

/* ------------------------------------------------------------ strings */

/* Printable ASCII only, at most MAX_DIAGNOSTIC bytes: for text from the
 * server or the library that goes into a log line.  (transfer full) */
static char *
sanitize(const char *s)
{
	GString *out = g_string_new(NULL);

	for (const char *p = s; *p != '\0' && out->len < MAX_DIAGNOSTIC; p++)
		g_string_append_c(out, (guchar)*p >= 0x20 && (guchar)*p < 0x7f ? *p : '?');
	return g_string_free(out, FALSE);
}

/* "error text (server's diagnostic message)".  (transfer full) */
static char *
error_text(LDAP *ld, int rc)
{
	char *diag = NULL;
	char *text;

	if (ld != NULL)
		(void)ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	if (diag != NULL && *diag != '\0') {
		g_autofree char *clean = sanitize(diag);
		text = g_strdup_printf("%s (%s)", ldap_err2string(rc), clean);
	} else {
		text = g_strdup(ldap_err2string(rc));
	}
	ldap_memfree(diag);
	return text;
}

/* RFC 4514 section 2.4: escape an attribute value for a DN string.  The
 * characters that must be escaped get a backslash, so do '=' (allowed, and
 * safer) and control characters (as hex pairs).  (transfer full) */
static char *
dn_escape_value(const char *s)
{
	gsize len = strlen(s);
	GString *out = g_string_sized_new(len + 8);

	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)s[i];

		if (c < 0x20 || c == 0x7f)
			g_string_append_printf(out, "\\%02x", c);
		else if (strchr(",+\"\\<>;=", c) != NULL || (i == 0 && (c == ' ' || c == '#')) ||
			 (i == len - 1 && c == ' '))
			g_string_append_c(g_string_append_c(out, '\\'), (char)c);
		else
			g_string_append_c(out, (char)c);
	}
	return g_string_free(out, FALSE);
}

/* RFC 4515 section 3 through libldap.  (transfer full, g_free) */
static char *
filter_escape_value(const char *s)
{
	struct berval in = {.bv_len = strlen(s), .bv_val = (char *)s};
	struct berval out = {0};
	char *copy;

	if (ldap_bv2escaped_filter_value(&in, &out) != 0)
		return NULL;
	copy = g_strndup(out.bv_val, out.bv_len);
	ber_memfree(out.bv_val);
	return copy;
}

/* Replace every %u of `tmpl` with `value` and every %% with %.  Returns
 * NULL when `tmpl` holds another % sequence; *n_out counts the %u.
 * (transfer full) */
static char *
expand(const char *tmpl, const char *value, guint *n_out)
{
	GString *out = g_string_new(NULL);
	guint n = 0;

	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p != '%') {
			g_string_append_c(out, *p);
			continue;
		}
		if (p[1] == 'u') {
			g_string_append(out, value);
			n++;
		} else if (p[1] == '%') {
			g_string_append_c(out, '%');
		} else {
			g_string_free(out, TRUE);
			return NULL;
		}
		p++;
	}
	if (n_out != NULL)
		*n_out = n;
	return g_string_free(out, FALSE);
}

/* A search filter's outline: "(...)", parentheses balanced and closed only
 * at the end, every backslash followed by two hex digits (RFC 4515).  The
 * server checks the rest. */
static gboolean
filter_outline_valid(const char *f)
{
	gsize len = strlen(f);
	int depth = 0;

	if (len < 3 || f[0] != '(' || f[len - 1] != ')')
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (f[i] == '\\') {
			if (!g_ascii_isxdigit(f[i + 1]) || !g_ascii_isxdigit(f[i + 2]))
				return FALSE;
			i += 2;
		} else if (f[i] == '(') {
			depth++;
		} else if (f[i] == ')') {
			if (--depth < 0 || (depth == 0 && i != len - 1))
				return FALSE;
		}
	}
	return depth == 0;
}

static gboolean
dn_valid(const char *dn)
{
	LDAPDN parsed = NULL;

	if (ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS)
		return FALSE;
	ldap_dnfree(parsed);
	return TRUE;
}

/* An attribute description (RFC 4512 section 2.5): a name or an OID, with
 * options after ';'. */
static gboolean
attribute_valid(const char *a)
{
	if (!g_ascii_isalnum(a[0]))
		return FALSE;
	for (const char *p = a; *p != '\0'; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != ';')
			return FALSE;
	return TRUE;
}

/* A name to log in to the backend with: UTF-8, no control characters. */
static gboolean
user_value_valid(const char *v)
{
	if (*v == '\0' || strlen(v) > 255 || !g_utf8_validate(v, -1, NULL))
		return FALSE;
	for (const char *p = v; *p != '\0'; p++)
		if ((guchar)*p < 0x20 || *p == 0x7f)
			return FALSE;
	return TRUE;
}

/* ------------------------------------------------------------ warnings */

/* TRUE when a warning of this kind may be logged now (one a minute). */
static gboolean
may_warn(LdapState *st, gint64 *last)
{
	gint64 now = g_get_monotonic_time();
	gboolean ok;

	g_mutex_lock(&st->lock);
	ok = *last == 0 || now - *last >= WARNING_INTERVAL_US;
	if (ok)
		*last = now;
	g_mutex_unlock(&st->lock);
	return ok;
}

static void
warn_kind(LdapState *st, WarnKind kind, const char *what, const char *detail)
{
	if (may_warn(st, &st->last_warning[kind]))
		g_warning("%s: %s", what, detail);
}

static void
server_failed(LdapState *st, guint idx, const char *what, const char *detail)
{
	Server *srv = &st->servers[idx];
	gint64 now = g_get_monotonic_time();
	gboolean log;

	g_mutex_lock(&st->lock);
	log = !srv->down || now - srv->last_warning >= WARNING_INTERVAL_US;
	srv->down = TRUE;
	if (log)
		srv->last_warning = now;
	g_mutex_unlock(&st->lock);
	if (log)
		g_warning("LDAP server %s: %s: %s", srv->uri, what, detail);
	/* the next connection starts with the next server */
	if (st->n_servers > 1)
		(void)g_atomic_int_compare_and_exchange(&st->preferred, (gint)idx,
							(gint)((idx + 1) % st->n_servers));
}

static void
server_worked(LdapState *st, guint idx)
{
	Server *srv = &st->servers[idx];
	gboolean was_down;

	g_mutex_lock(&st->lock);
	was_down = srv->down;
	srv->down = FALSE;
	g_mutex_unlock(&st->lock);
	if (was_down)
		g_message("LDAP server %s: connected again", srv->uri);
	g_atomic_int_set(&st->preferred, (gint)idx);
}

/* ------------------------------------------------------------ connections */

static void
conn_close(Conn *c)
{
	if (c->ld != NULL)
		(void)ldap_unbind_ext_s(c->ld, NULL, NULL);
	c->ld = NULL;
}

static void
conn_free(gpointer data)
{
	Conn *c = data;

	conn_close(c);
	g_free(c);
}

/* An idle connection from `list`, or a new unconnected one. */
static Conn *
pool_take(LdapState *st, GPtrArray *list)
{
	Conn *c = NULL;

	g_mutex_lock(&st->lock);
	if (list->len > 0)
		c = g_ptr_array_steal_index_fast(list, list->len - 1);
	g_mutex_unlock(&st->lock);
	return c != NULL ? c : g_new0(Conn, 1);
}

/* Give a connection back for the next request, if it is still connected. */
static void
pool_give(LdapState *st, GPtrArray *list, Conn *c)
{
	if (c == NULL)
		return;
	if (c->ld == NULL) {
		g_free(c);
		return;
	}
	g_mutex_lock(&st->lock);
	g_ptr_array_add(list, c);
	g_mutex_unlock(&st->lock);
}

/* ------------------------------------------------------------ handshake guard */

/* libldap 2.5.13 with GnuTLS 3.7 spins in gnutls_handshake() -- no poll, 100%
 * CPU, no end -- when a server accepts the TCP connection but never answers
 * the TLS handshake: LDAP_OPT_NETWORK_TIMEOUT bounds the connect only.  So
 * while a TLS connection is being set up, a guard thread waits for the
 * deadline and then shuts the socket down: the handshake reads EOF and fails.
 * The socket comes from a connect callback (LDAP_OPT_CONNECT_CB), which
 * libldap calls on the connecting thread after the TCP connect, before TLS;
 * `current_guard` tells the callback which guard is this thread's. */
typedef struct {
	GMutex lock;
	GCond cond;
	int fd; /* -1 until the callback has seen the socket */
	gint64 deadline;
	gboolean done;
	gboolean fired;
	GThread *thread;
} Guard;

static GPrivate current_guard;

static int
guard_conn_add(
    LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv, struct sockaddr *addr, struct ldap_conncb *ctx)
{
	Guard *g = g_private_get(&current_guard);
	ber_socket_t fd = -1;

	(void)ld;
	(void)srv;
	(void)addr;
	(void)ctx;
	if (g != NULL && ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd) == 1 && fd >= 0) {
		g_mutex_lock(&g->lock);
		g->fd = fd;
		g_mutex_unlock(&g->lock);
	}
	return 0;
}

static void
guard_conn_del(LDAP *ld, Sockbuf *sb, struct ldap_conncb *ctx)
{
	(void)ld;
	(void)sb;
	(void)ctx;
}

/* libldap keeps the pointer: it must live as long as any handle */
static struct ldap_conncb guard_callbacks = {
    .lc_add = guard_conn_add,
    .lc_del = guard_conn_del,
};

static gpointer
guard_run(gpointer data)
{
	Guard *g = data;

	g_mutex_lock(&g->lock);
	while (!g->done) {
		if (g_cond_wait_until(&g->cond, &g->lock, g->deadline) ||
		    g_get_monotonic_time() < g->deadline)
			continue; /* signalled (done), or woken early */
		if (g->fd >= 0) {
			(void)shutdown(g->fd, SHUT_RDWR);
			g->fired = TRUE;
		}
		break;
	}
	g_mutex_unlock(&g->lock);
	return NULL;
}

static void
guard_start(Guard *g, guint seconds)
{
	g_mutex_init(&g->lock);
	g_cond_init(&g->cond);
	g->fd = -1;
	g->deadline = g_get_monotonic_time() + (gint64)seconds * G_USEC_PER_SEC;
	g->thread = g_thread_new("gh-ldap-guard", guard_run, g);
	g_private_set(&current_guard, g);
}

/* Returns TRUE when the guard had to cut the connection. */
static gboolean
guard_stop(Guard *g)
{
	g_private_set(&current_guard, NULL);
	g_mutex_lock(&g->lock);
	g->done = TRUE;
	g_cond_signal(&g->cond);
	g_mutex_unlock(&g->lock);
	g_thread_join(g->thread);
	g_mutex_clear(&g->lock);
	g_cond_clear(&g->cond);
	return g->fired;
}

/* ------------------------------------------------------------ handles */

/* A handle for one server with every option set, not yet connected.  TLS
 * options are set on the handle and take effect with LDAP_OPT_X_TLS_NEWCTX,
 * so several [auth] groups may each have their own CA. */
static int
handle_new(const LdapState *st, const Server *srv, LDAP **ld_out, char **why_out)
{
	LDAP *ld = NULL;
	int version = LDAP_VERSION3;
	struct timeval net = {.tv_sec = st->network_timeout};
	struct timeval op = {.tv_sec = st->timeout};
	int rc;

	*ld_out = NULL;
	rc = ldap_initialize(&ld, srv->uri);
	if (rc != LDAP_SUCCESS) {
		*why_out = g_strdup_printf("ldap_initialize: %s", ldap_err2string(rc));
		return rc;
	}
#define SET(opt, value, name)                                                                      \
	do {                                                                                       \
		rc = ldap_set_option(ld, (opt), (value));                                          \
		if (rc != LDAP_OPT_SUCCESS) {                                                      \
			*why_out =                                                                 \
			    g_strdup_printf("cannot set %s: %s", (name), ldap_err2string(rc));     \
			(void)ldap_unbind_ext_s(ld, NULL, NULL);                                   \
			return rc == LDAP_OPT_ERROR ? LDAP_LOCAL_ERROR : rc;                       \
		}                                                                                  \
	} while (0)
	SET(LDAP_OPT_PROTOCOL_VERSION, &version, "the protocol version");
	SET(LDAP_OPT_REFERRALS, LDAP_OPT_OFF, "referrals off");
	SET(LDAP_OPT_RESTART, LDAP_OPT_ON, "restart");
	SET(LDAP_OPT_NETWORK_TIMEOUT, &net, "network_timeout");
	SET(LDAP_OPT_TIMEOUT, &op, "timeout");
	if (srv->ldaps || st->start_tls) {
		int min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
		int is_server = 0;

		if (st->ca_file != NULL)
			SET(LDAP_OPT_X_TLS_CACERTFILE, st->ca_file, "ca_file");
		SET(LDAP_OPT_X_TLS_REQUIRE_CERT, &st->require_cert, "tls_require_cert");
		SET(LDAP_OPT_X_TLS_PROTOCOL_MIN, &min, "the minimum TLS version");
		SET(LDAP_OPT_X_TLS_NEWCTX, &is_server, "a TLS context");
		SET(LDAP_OPT_CONNECT_CB, &guard_callbacks, "the connect callback");
	}
#undef SET
	*ld_out = ld;
	return LDAP_SUCCESS;
}

/* Connect `c` to the first server that answers, starting with the one that
 * worked last, with StartTLS when configured (ldaps:// servers already
 * speak TLS).  Each server costs at most network_timeout to connect and
 * shake hands, plus timeout for StartTLS. */
static gboolean
conn_open(LdapState *st, Conn *c)
{
	guint first = (guint)g_atomic_int_get(&st->preferred) % st->n_servers;

	for (guint i = 0; i < st->n_servers; i++) {
		guint idx = (first + i) % st->n_servers;
		g_autofree char *why = NULL;
		const char *what = "cannot connect";
		LDAP *ld = NULL;
		gboolean tls = st->start_tls || st->servers[idx].ldaps;
		Guard guard = {0};
		int rc = handle_new(st, &st->servers[idx], &ld, &why);

		if (rc == LDAP_SUCCESS && tls)
			/* connect, handshake, and for StartTLS one operation */
			guard_start(&guard,
				    2 * st->network_timeout + (st->start_tls ? st->timeout : 0));
		if (rc == LDAP_SUCCESS)
			rc = ldap_connect(ld);
		if (rc == LDAP_SUCCESS && st->start_tls && !ldap_tls_inplace(ld)) {
			what = "StartTLS failed";
			rc = ldap_start_tls_s(ld, NULL, NULL);
		}
		if (guard.thread != NULL && guard_stop(&guard)) {
			if (rc == LDAP_SUCCESS)
				rc = LDAP_TIMEOUT; /* cut just as it succeeded */
			what = "TLS handshake timed out";
		}
		if (rc == LDAP_SUCCESS) {
			c->ld = ld;
			c->server = idx;
			c->bound = BOUND_ANONYMOUS;
			server_worked(st, idx);
			return TRUE;
		}
		if (why == NULL)
			why = error_text(ld, rc);
		server_failed(st, idx, what, why);
		if (ld != NULL)
			(void)ldap_unbind_ext_s(ld, NULL, NULL);
	}
	return FALSE;
}

static int
simple_bind(Conn *c, const char *dn, const char *password, gsize len)
{
	struct berval cred = {.bv_len = len, .bv_val = (char *)password};

	return ldap_sasl_bind_s(c->ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

/* Errors after which the connection is useless: close it, maybe retry. */
static gboolean
rc_is_transport(int rc)
{
	return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR;
}

/* ------------------------------------------------------------ one try */

typedef struct {
	LdapState *st;
	const GhAuthRequest *req;
	GhAuthResult *res;
	Conn *sc; /* for searches (and binds, unless bc) */
	Conn *bc; /* for users' binds (pool_size 2, search mode), or NULL */
	gboolean sc_reused, bc_reused;
	gboolean retry; /* set when a connection failed on the way: another try may work */
} Try;

static GhAuthVerdict
tempfail(Try *t, char *reason)
{
	g_free(t->res->reason);
	t->res->reason = reason;
	return GH_AUTH_TEMPFAIL;
}

/* A transport error on connection `c` during `what`. */
static GhAuthVerdict
transport_failed(Try *t, Conn *c, gboolean reused, const char *what, int rc)
{
	g_autofree char *why = error_text(c->ld, rc);

	server_failed(t->st, c->server, what, why);
	conn_close(c);
	if (reused || t->st->n_servers > 1)
		t->retry = TRUE;
	return tempfail(t, g_strdup_printf("LDAP %s: %s", what, why));
}

static gboolean
ensure_open(Try *t, Conn *c)
{
	return c->ld != NULL || conn_open(t->st, c);
}

/* Bind `c` as the search account, or anonymously, unless it is already. */
static GhAuthVerdict
bind_for_search(Try *t)
{
	LdapState *st = t->st;
	Conn *c = t->sc;
	int rc;

	if (st->bind_dn != NULL && c->bound != BOUND_SEARCH)
		rc = simple_bind(c, st->bind_dn, st->bind_password, st->bind_password_len);
	else if (st->bind_dn == NULL && c->bound != BOUND_ANONYMOUS)
		rc = simple_bind(c, "", "", 0);
	else
		return GH_AUTH_OK;
	if (rc == LDAP_SUCCESS) {
		c->bound = st->bind_dn != NULL ? BOUND_SEARCH : BOUND_ANONYMOUS;
		return GH_AUTH_OK;
	}
	c->bound = BOUND_OTHER;
	if (rc_is_transport(rc))
		return transport_failed(t, c, t->sc_reused, "bind for search", rc);
	{
		g_autofree char *why = error_text(c->ld, rc);

		warn_kind(st, WARN_SEARCH_BIND,
			  st->bind_dn != NULL ? "bind as the search account (bind_dn) failed"
					      : "anonymous bind for the search failed",
			  why);
		return tempfail(t, g_strdup_printf("search bind failed: %s", why));
	}
}

/* The first value of `attr` in `entry`, or NULL when there is none; *bad
 * is set when the value is not a string (holds a NUL).  (transfer full) */
static char *
first_value(LDAP *ld, LDAPMessage *entry, const char *attr, gboolean *bad)
{
	struct berval **values = ldap_get_values_len(ld, entry, attr);
	char *v = NULL;

	*bad = FALSE;
	if (values != NULL && values[0] != NULL) {
		if (memchr(values[0]->bv_val, '\0', values[0]->bv_len) != NULL)
			*bad = TRUE;
		else
			v = g_strndup(values[0]->bv_val, values[0]->bv_len);
	}
	ldap_value_free_len(values);
	return v;
}

/* Route and canonical name from the entry, checked, into *route_out and
 * *user_out (either may stay NULL).  Returns GH_AUTH_OK or TEMPFAIL: a
 * value the core cannot use is the directory's fault, not the client's. */
static GhAuthVerdict
read_attributes(Try *t, LDAP *ld, LDAPMessage *entry, char **route_out, char **user_out)
{
	LdapState *st = t->st;
	gboolean bad;

	if (st->route_attribute != NULL) {
		g_autofree char *v = first_value(ld, entry, st->route_attribute, &bad);

		if (bad || (v != NULL && !st->host->route_valid(v, strlen(v)))) {
			g_autofree char *clean = sanitize(v != NULL ? v : "");
			g_autofree char *what = g_strdup_printf(
			    "session %s: the %s value of the user's entry is not a route",
			    t->req->session_id, st->route_attribute);

			warn_kind(st, WARN_ATTRIBUTE, what, "login refused");
			return tempfail(t, g_strdup_printf("%s value '%s' is not a route (HOST, "
							   "HOST:PORT, [IPv6] or [IPv6]:PORT)",
							   st->route_attribute, clean));
		}
		*route_out = g_steal_pointer(&v);
	}
	if (st->user_attribute != NULL) {
		g_autofree char *v = first_value(ld, entry, st->user_attribute, &bad);

		if (bad || (v != NULL && !user_value_valid(v))) {
			g_autofree char *what = g_strdup_printf(
			    "session %s: the %s value of the user's entry is not a usable "
			    "user name",
			    t->req->session_id, st->user_attribute);

			warn_kind(st, WARN_ATTRIBUTE, what, "login refused");
			return tempfail(t, g_strdup_printf("%s value is not a usable user name",
							   st->user_attribute));
		}
		*user_out = g_steal_pointer(&v);
	}
	return GH_AUTH_OK;
}

/* Bind as the user's DN on `c`, and map the outcome. */
static GhAuthVerdict
bind_as_user(Try *t, Conn *c, gboolean reused, const char *dn, const char *wrong_reason)
{
	int rc = simple_bind(c, dn, t->req->password, t->req->password_len);
	g_autofree char *why = NULL;

	c->bound = BOUND_OTHER;
	switch (rc) {
	case LDAP_SUCCESS:
		return GH_AUTH_OK;
	case LDAP_INVALID_CREDENTIALS:
		t->res->reason = g_strdup(wrong_reason);
		return GH_AUTH_WRONG_PASSWORD;
	case LDAP_INAPPROPRIATE_AUTH:
	case LDAP_UNWILLING_TO_PERFORM:
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_CONSTRAINT_VIOLATION:
		/* no password stored, account locked or disabled (ppolicy) */
		why = error_text(c->ld, rc);
		t->res->reason = g_strdup_printf("bind refused: %s", why);
		return GH_AUTH_WRONG_PASSWORD;
	default:
		if (rc_is_transport(rc))
			return transport_failed(t, c, reused, "bind", rc);
		why = error_text(c->ld, rc);
		return tempfail(t, g_strdup_printf("bind failed: %s", why));
	}
}

/* Search-then-bind: find the one entry the filter names, bind as it. */
static GhAuthVerdict
try_search_bind(Try *t)
{
	LdapState *st = t->st;
	g_autofree char *escaped = filter_escape_value(t->req->user);
	g_autofree char *filter = NULL;
	g_autofree char *route = NULL;
	g_autofree char *user = NULL;
	struct timeval tv = {.tv_sec = st->timeout};
	LDAPMessage *msg = NULL;
	LDAPMessage *entry;
	char *dn_raw;
	g_autofree char *dn = NULL;
	GhAuthVerdict v;
	Conn *bc;
	int rc, n;

	if (escaped == NULL)
		return tempfail(t, g_strdup("cannot escape the user name for the filter"));
	filter = expand(st->filter, escaped, NULL);
	if (!ensure_open(t, t->sc))
		return tempfail(t, g_strdup("no LDAP server reachable"));
	v = bind_for_search(t);
	if (v != GH_AUTH_OK)
		return v;

	rc = ldap_search_ext_s(t->sc->ld, st->base, st->scope, filter, st->attrs, 0, NULL, NULL,
			       &tv, 2, &msg);
	if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
		g_autofree char *why = NULL;

		ldap_msgfree(msg);
		if (rc_is_transport(rc))
			return transport_failed(t, t->sc, t->sc_reused, "search", rc);
		why = error_text(t->sc->ld, rc);
		warn_kind(st, WARN_SEARCH,
			  rc == LDAP_NO_SUCH_OBJECT ? "search failed: the base does not exist"
						    : "search failed",
			  why);
		return tempfail(t, g_strdup_printf("search failed: %s", why));
	}
	n = ldap_count_entries(t->sc->ld, msg);
	if (rc == LDAP_SIZELIMIT_EXCEEDED || n > 1) {
		ldap_msgfree(msg);
		/* a TEMPFAIL would have clients retry forever; the admin must
		 * make the filter unique */
		g_warning("session %s: the search filter matches more than one entry; login "
			  "refused (make the filter match one entry per login name)",
			  t->req->session_id);
		t->res->reason = g_strdup("ambiguous: more than one entry");
		return GH_AUTH_UNKNOWN_USER;
	}
	entry = n == 1 ? ldap_first_entry(t->sc->ld, msg) : NULL;
	if (entry == NULL) {
		ldap_msgfree(msg);
		t->res->reason = g_strdup("unknown user");
		return GH_AUTH_UNKNOWN_USER;
	}
	dn_raw = ldap_get_dn(t->sc->ld, entry);
	dn = g_strdup(dn_raw);
	ldap_memfree(dn_raw);
	v = dn == NULL || *dn == '\0' ? tempfail(t, g_strdup("the entry found has no DN"))
				      : read_attributes(t, t->sc->ld, entry, &route, &user);
	ldap_msgfree(msg);
	if (v != GH_AUTH_OK)
		return v;

	bc = t->bc != NULL ? t->bc : t->sc;
	if (!ensure_open(t, bc))
		return tempfail(t, g_strdup("no LDAP server reachable"));
	v = bind_as_user(t, bc, t->bc != NULL ? t->bc_reused : t->sc_reused, dn, "wrong password");
	if (v == GH_AUTH_OK) {
		t->res->route = g_steal_pointer(&route);
		t->res->canonical_user = g_steal_pointer(&user);
	}
	return v;
}

/* Direct bind to the DN made from bind_dn_template; then, when route or
 * user attributes are wanted, read the entry as the user. */
static GhAuthVerdict
try_template_bind(Try *t)
{
	LdapState *st = t->st;
	g_autofree char *escaped = dn_escape_value(t->req->user);
	g_autofree char *dn = expand(st->bind_dn_template, escaped, NULL);
	g_autofree char *route = NULL;
	g_autofree char *user = NULL;
	struct timeval tv = {.tv_sec = st->timeout};
	LDAPMessage *msg = NULL;
	LDAPMessage *entry;
	GhAuthVerdict v;
	int rc;

	if (!ensure_open(t, t->sc))
		return tempfail(t, g_strdup("no LDAP server reachable"));
	/* LDAP answers "invalid credentials" for a DN that does not exist too
	 * (RFC 4513 section 6.3.1): an unknown user looks like a wrong password */
	v = bind_as_user(t, t->sc, t->sc_reused, dn, "wrong password or unknown user");
	if (v != GH_AUTH_OK || (st->route_attribute == NULL && st->user_attribute == NULL))
		return v;

	rc = ldap_search_ext_s(t->sc->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", st->attrs, 0,
			       NULL, NULL, &tv, 2, &msg);
	if (rc != LDAP_SUCCESS) {
		g_autofree char *why = NULL;

		ldap_msgfree(msg);
		if (rc_is_transport(rc))
			return transport_failed(t, t->sc, TRUE, "reading the user's entry", rc);
		why = error_text(t->sc->ld, rc);
		warn_kind(st, WARN_SEARCH, "reading the entry of a user after the bind failed",
			  why);
		return tempfail(t, g_strdup_printf("cannot read the user's entry: %s", why));
	}
	entry = ldap_first_entry(t->sc->ld, msg);
	if (entry == NULL) {
		ldap_msgfree(msg);
		warn_kind(st, WARN_SEARCH, "reading the entry of a user after the bind failed",
			  "no entry returned (access rights?)");
		return tempfail(t, g_strdup("cannot read the user's entry"));
	}
	v = read_attributes(t, t->sc->ld, entry, &route, &user);
	ldap_msgfree(msg);
	if (v == GH_AUTH_OK) {
		t->res->route = g_steal_pointer(&route);
		t->res->canonical_user = g_steal_pointer(&user);
	}
	return v;
}

/* ------------------------------------------------------------ verify */

static GhAuthVerdict
ldap_verify(gpointer state, const GhAuthRequest *req, GhAuthResult *res)
{
	LdapState *st = state;
	gboolean search_mode = st->bind_dn_template == NULL;
	GhAuthVerdict v = GH_AUTH_TEMPFAIL;

	if (req->password_len == 0 || req->password[0] == '\0') {
		/* an empty simple bind is an anonymous bind: it would succeed */
		res->reason = g_strdup("empty password");
		return GH_AUTH_WRONG_PASSWORD;
	}
	if (!g_utf8_validate(req->user, -1, NULL)) {
		/* LDAP strings are UTF-8: no entry can have this name */
		res->reason = g_strdup("user name is not UTF-8");
		return GH_AUTH_UNKNOWN_USER;
	}

	for (guint attempt = 0; attempt < 2; attempt++) {
		Try t = {.st = st, .req = req, .res = res};

		g_clear_pointer(&res->reason, g_free);
		g_clear_pointer(&res->route, g_free);
		g_clear_pointer(&res->canonical_user, g_free);
		t.sc = pool_take(st, st->idle_search);
		t.sc_reused = t.sc->ld != NULL;
		if (search_mode && st->pool_size > 1) {
			t.bc = pool_take(st, st->idle_bind);
			t.bc_reused = t.bc->ld != NULL;
		}
		v = search_mode ? try_search_bind(&t) : try_template_bind(&t);
		pool_give(st, st->idle_search, t.sc);
		pool_give(st, st->idle_bind, t.bc);
		if (!t.retry)
			break;
		if (attempt == 0)
			g_debug("session %s: retrying on a new connection", req->session_id);
	}
	if (v != GH_AUTH_OK) {
		g_clear_pointer(&res->route, g_free);
		g_clear_pointer(&res->canonical_user, g_free);
	}
	return v;
}

/* ------------------------------------------------------------ keys */

/* The key's value, stripped, or NULL when the key is absent (or its
 * escapes are bad: check_escapes reports that first).  Values follow the
 * file's syntax: \\ is one backslash, so an LDAP escape such as "\2a" in a
 * filter or "\," in a DN is written "\\2a", "\\,".  (transfer full) */
static char *
get_value(GKeyFile *kf, const char *group, const char *key)
{
	char *value = g_key_file_get_string(kf, group, key, NULL);

	return value != NULL ? g_strstrip(value) : NULL;
}

/* As get_value, but an empty value counts as absent. */
static char *
get_nonempty(GKeyFile *kf, const char *group, const char *key)
{
	char *value = get_value(kf, group, key);

	if (value != NULL && *value == '\0')
		g_clear_pointer(&value, g_free);
	return value;
}

static void
servers_free(GArray *servers)
{
	for (guint j = 0; j < servers->len; j++)
		g_free(g_array_index(servers, Server, j).uri);
	g_array_free(servers, TRUE);
}

static gboolean
parse_uris(
    LdapState *st, const GhAuthHost *host, const char *group, const char *value, GError **error)
{
	g_auto(GStrv) words = g_strsplit_set(value, " \t", -1);
	GArray *servers = g_array_new(FALSE, TRUE, sizeof(Server));

	for (guint i = 0; words[i] != NULL; i++) {
		LDAPURLDesc *lud = NULL;
		const char *w = words[i];
		gboolean ok;

		if (*w == '\0')
			continue;
		if (ldap_url_parse(w, &lud) != LDAP_URL_SUCCESS) {
			host->config_error(host, error, group, "uri",
					   "bad URI '%s': expected ldap://HOST[:PORT] or "
					   "ldaps://HOST[:PORT]",
					   w);
			servers_free(servers);
			return FALSE;
		}
		ok = (g_ascii_strcasecmp(lud->lud_scheme, "ldap") == 0 ||
		      g_ascii_strcasecmp(lud->lud_scheme, "ldaps") == 0) &&
		     lud->lud_host != NULL && *lud->lud_host != '\0' &&
		     (lud->lud_dn == NULL || *lud->lud_dn == '\0') && lud->lud_attrs == NULL &&
		     lud->lud_filter == NULL && lud->lud_exts == NULL;
		if (ok) {
			Server srv = {
			    .uri = g_strdup(w),
			    .ldaps = g_ascii_strcasecmp(lud->lud_scheme, "ldaps") == 0,
			};
			g_array_append_val(servers, srv);
		}
		ldap_free_urldesc(lud);
		if (!ok) {
			host->config_error(host, error, group, "uri",
					   "bad URI '%s': expected ldap://HOST[:PORT] or "
					   "ldaps://HOST[:PORT] (a host, no DN, attributes or "
					   "filter)",
					   w);
			servers_free(servers);
			return FALSE;
		}
	}
	if (servers->len == 0) {
		host->config_error(host, error, group, "uri",
				   "missing: module 'ldap' needs one or more ldap:// or ldaps:// "
				   "URIs");
		g_array_free(servers, TRUE);
		return FALSE;
	}
	st->n_servers = servers->len;
	st->servers = (Server *)(void *)g_array_free(servers, FALSE);
	return TRUE;
}

/* Read the search account's password: the file's contents without the
 * line ends at its end. */
static gboolean
read_password_file(
    LdapState *st, const GhAuthHost *host, const char *group, const char *path, GError **error)
{
	struct stat sb;
	char *buf;
	gsize len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int saved;

	if (fd < 0) {
		saved = errno;
		host->config_error(host, error, group, "bind_password_file", "%s: cannot open: %s",
				   path, g_strerror(saved));
		return FALSE;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > MAX_PASSWORD_FILE) {
		close(fd);
		host->config_error(host, error, group, "bind_password_file",
				   "%s: not a regular file of at most %d bytes", path,
				   MAX_PASSWORD_FILE);
		return FALSE;
	}
	buf = g_malloc0(MAX_PASSWORD_FILE + 1);
	for (;;) {
		gssize n = read(fd, buf + len, MAX_PASSWORD_FILE - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			saved = errno;
			close(fd);
			explicit_bzero(buf, MAX_PASSWORD_FILE + 1);
			g_free(buf);
			host->config_error(host, error, group, "bind_password_file",
					   "%s: cannot read: %s", path, g_strerror(saved));
			return FALSE;
		}
		if (n == 0 || len + (gsize)n >= MAX_PASSWORD_FILE) {
			len += (gsize)MAX(n, 0);
			break;
		}
		len += (gsize)n;
	}
	close(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0 || memchr(buf, '\0', len) != NULL) {
		explicit_bzero(buf, MAX_PASSWORD_FILE + 1);
		g_free(buf);
		host->config_error(host, error, group, "bind_password_file", "%s: %s", path,
				   len == 0 ? "empty (an empty password would be an anonymous bind)"
					    : "holds a NUL byte");
		return FALSE;
	}
	if (sb.st_mode & S_IROTH)
		g_warning("bind_password_file %s is readable by everyone", path);
	st->bind_password = buf;
	st->bind_password_len = len;
	return TRUE;
}

static gboolean
ldap_may_route(gpointer state)
{
	const LdapState *st = state;
	return st->route_attribute != NULL;
}

static void
ldap_deinit(gpointer state)
{
	LdapState *st = state;

	if (st == NULL)
		return;
	if (st->idle_search != NULL)
		g_ptr_array_unref(st->idle_search);
	if (st->idle_bind != NULL)
		g_ptr_array_unref(st->idle_bind);
	for (guint i = 0; i < st->n_servers; i++)
		g_free(st->servers[i].uri);
	g_free(st->servers);
	g_free(st->base);
	g_free(st->filter);
	g_free(st->bind_dn);
	if (st->bind_password != NULL) {
		explicit_bzero(st->bind_password, MAX_PASSWORD_FILE + 1);
		g_free(st->bind_password);
	}
	g_free(st->bind_dn_template);
	g_free(st->route_attribute);
	g_free(st->user_attribute);
	g_strfreev(st->attrs);
	g_free(st->ca_file);
	g_mutex_clear(&st->lock);
	g_free(st);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(LdapState, ldap_deinit)

/* Keys that only make sense in one mode. */
static gboolean
check_unused(const GhAuthHost *host,
	     GKeyFile *kf,
	     const char *group,
	     const char *const *keys,
	     const char *why,
	     GError **error)
{
	for (guint i = 0; keys[i] != NULL; i++) {
		if (g_key_file_has_key(kf, group, keys[i], NULL)) {
			host->config_error(host, error, group, keys[i], "has no effect %s", why);
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean
parse_search_keys(
    LdapState *st, const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	g_autofree char *scope = get_nonempty(kf, group, "scope");
	g_autofree char *filter = get_nonempty(kf, group, "filter");
	g_autofree char *bind_dn = get_nonempty(kf, group, "bind_dn");
	g_autofree char *pwfile = get_nonempty(kf, group, "bind_password_file");
	g_autofree char *sample = NULL;
	guint n = 0;

	st->base = get_nonempty(kf, group, "base");
	if (st->base == NULL) {
		host->config_error(host, error, group, "base",
				   "missing: search-then-bind needs the DN to search under "
				   "(or set bind_dn_template)");
		return FALSE;
	}
	if (!dn_valid(st->base)) {
		host->config_error(host, error, group, "base", "'%s' is not a valid DN", st->base);
		return FALSE;
	}

	st->scope = LDAP_SCOPE_SUBTREE;
	if (scope != NULL) {
		if (g_ascii_strcasecmp(scope, "sub") == 0)
			st->scope = LDAP_SCOPE_SUBTREE;
		else if (g_ascii_strcasecmp(scope, "one") == 0)
			st->scope = LDAP_SCOPE_ONELEVEL;
		else if (g_ascii_strcasecmp(scope, "base") == 0)
			st->scope = LDAP_SCOPE_BASE;
		else {
			host->config_error(host, error, group, "scope",
					   "bad value '%s': expected sub, one or base", scope);
			return FALSE;
		}
	}

	st->filter = g_strdup(filter != NULL ? filter : DEFAULT_FILTER);
	sample = expand(st->filter, "x", &n);
	if (sample == NULL || n == 0 || !filter_outline_valid(sample)) {
		host->config_error(host, error, group, "filter",
				   "bad filter '%s': expected an LDAP filter in parentheses with "
				   "%%u for the login name (%%%% for a literal %%)",
				   st->filter);
		return FALSE;
	}

	if (bind_dn != NULL && !dn_valid(bind_dn)) {
		host->config_error(host, error, group, "bind_dn", "'%s' is not a valid DN",
				   bind_dn);
		return FALSE;
	}
	if (bind_dn != NULL && pwfile == NULL) {
		host->config_error(host, error, group, "bind_password_file",
				   "missing: bind_dn needs the search account's password");
		return FALSE;
	}
	if (bind_dn == NULL && pwfile != NULL) {
		host->config_error(host, error, group, "bind_dn",
				   "missing: bind_password_file is set, but not the DN it is "
				   "the password of");
		return FALSE;
	}
	if (pwfile != NULL && !read_password_file(st, host, group, pwfile, error))
		return FALSE;
	st->bind_dn = g_steal_pointer(&bind_dn);
	return TRUE;
}

static gboolean
parse_template_keys(
    LdapState *st, const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	static const char *const search_only[] = {
	    "base", "scope", "filter", "bind_dn", "bind_password_file", NULL};
	g_autofree char *sample = NULL;
	guint n = 0;

	if (!check_unused(host, kf, group, search_only,
			  "with bind_dn_template (a direct bind does not search)", error))
		return FALSE;
	sample = expand(st->bind_dn_template, "x", &n);
	if (sample == NULL || n == 0 || !dn_valid(sample)) {
		host->config_error(host, error, group, "bind_dn_template",
				   "bad template '%s': expected a DN with %%u for the login name, "
				   "such as uid=%%u,ou=people,dc=example,dc=com",
				   st->bind_dn_template);
		return FALSE;
	}
	return TRUE;
}

/* libldap's GnuTLS back end reads PEM and quietly trusts nothing when the
 * file holds no certificate: every handshake would fail, so say it now. */
static gboolean
ca_file_has_certificate(const char *path)
{
	g_autofree char *text = NULL;
	gsize len = 0;

	if (!g_file_get_contents(path, &text, &len, NULL))
		return FALSE;
	return g_strstr_len(text, (gssize)len, "-----BEGIN CERTIFICATE-----") != NULL;
}

/* Make (and drop) a handle for every server with all its options: this
 * checks the URIs and ca_file now rather than at the first login, and runs
 * libldap's one-time global set-up on this thread -- it reads ldap.conf,
 * looks up this host's name (a glibc resolver context that would leak if a
 * worker thread made it) and initializes the TLS library, which is not
 * thread-safe the first time.  Connects to nothing. */
static gboolean
check_handles(LdapState *st, const GhAuthHost *host, const char *group, GError **error)
{
	gboolean tls = FALSE;

	for (guint i = 0; i < st->n_servers; i++) {
		g_autofree char *why = NULL;
		LDAP *ld = NULL;

		tls = tls || st->start_tls || st->servers[i].ldaps;
		if (handle_new(st, &st->servers[i], &ld, &why) != LDAP_SUCCESS) {
			host->config_error(host, error, group,
					   st->ca_file != NULL &&
						   (st->start_tls || st->servers[i].ldaps)
					       ? "ca_file"
					       : "uri",
					   "%s: %s", st->servers[i].uri, why);
			return FALSE;
		}
		(void)ldap_unbind_ext_s(ld, NULL, NULL);
	}
	if (st->ca_file != NULL && !tls)
		g_warning("[%s] ca_file is not used: no ldaps:// URI and start_tls = no", group);
	return TRUE;
}

static const char *const ldap_keys[] = {
    "uri",
    "start_tls",
    "base",
    "scope",
    "filter",
    "bind_dn",
    "bind_password_file",
    "bind_dn_template",
    "route_attribute",
    "user_attribute",
    "timeout",
    "network_timeout",
    "ca_file",
    "tls_require_cert",
    "pool_size",
    NULL,
};

/* Every key's escapes, before any value is used. */
static gboolean
check_escapes(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	for (guint i = 0; ldap_keys[i] != NULL; i++) {
		g_autoptr(GError) local = NULL;
		g_autofree char *value = NULL;

		if (!g_key_file_has_key(kf, group, ldap_keys[i], NULL))
			continue;
		value = g_key_file_get_string(kf, group, ldap_keys[i], &local);
		if (local != NULL) {
			host->config_error(host, error, group, ldap_keys[i],
					   "bad value: %s (write a backslash as \\\\, so an LDAP "
					   "escape such as \\2a as \\\\2a)",
					   local->message);
			return FALSE;
		}
	}
	return TRUE;
}

static gpointer
ldap_init(const GhAuthHost *host, GKeyFile *kf, const char *group, GError **error)
{
	g_autoptr(LdapState) st = g_new0(LdapState, 1);
	g_autofree char *uri = get_nonempty(kf, group, "uri");
	g_autofree char *start_tls = get_nonempty(kf, group, "start_tls");
	g_autofree char *timeout = get_nonempty(kf, group, "timeout");
	g_autofree char *network_timeout = get_nonempty(kf, group, "network_timeout");
	g_autofree char *require_cert = get_nonempty(kf, group, "tls_require_cert");
	g_autofree char *pool_size = get_nonempty(kf, group, "pool_size");
	GPtrArray *attrs;

	g_mutex_init(&st->lock);
	st->host = host;
	if (!check_escapes(host, kf, group, error))
		return NULL;
	st->idle_search = g_ptr_array_new_with_free_func(conn_free);
	st->idle_bind = g_ptr_array_new_with_free_func(conn_free);
	st->timeout = DEFAULT_TIMEOUT;
	st->network_timeout = DEFAULT_NETWORK_TIMEOUT;
	st->require_cert = LDAP_OPT_X_TLS_DEMAND;
	st->pool_size = 1;

	if (!parse_uris(st, host, group, uri != NULL ? uri : "", error))
		return NULL;

	if (start_tls != NULL && !gh_auth_parse_bool(start_tls, &st->start_tls)) {
		host->config_error(host, error, group, "start_tls",
				   "bad value '%s': expected yes or no", start_tls);
		return NULL;
	}

	st->bind_dn_template = get_nonempty(kf, group, "bind_dn_template");
	if (st->bind_dn_template != NULL ? !parse_template_keys(st, host, kf, group, error)
					 : !parse_search_keys(st, host, kf, group, error))
		return NULL;

	st->route_attribute = get_nonempty(kf, group, "route_attribute");
	if (st->route_attribute != NULL && !attribute_valid(st->route_attribute)) {
		host->config_error(host, error, group, "route_attribute",
				   "'%s' is not an attribute name", st->route_attribute);
		return NULL;
	}
	if (st->route_attribute != NULL && !GH_AUTH_HOST_HAS(host, route_valid)) {
		host->config_error(host, error, group, "route_attribute",
				   "needs a newer gatehouse (no route check)");
		return NULL;
	}
	st->user_attribute = get_nonempty(kf, group, "user_attribute");
	if (st->user_attribute != NULL && !attribute_valid(st->user_attribute)) {
		host->config_error(host, error, group, "user_attribute",
				   "'%s' is not an attribute name", st->user_attribute);
		return NULL;
	}
	attrs = g_ptr_array_new();
	if (st->route_attribute != NULL)
		g_ptr_array_add(attrs, g_strdup(st->route_attribute));
	if (st->user_attribute != NULL &&
	    (st->route_attribute == NULL ||
	     g_ascii_strcasecmp(st->user_attribute, st->route_attribute) != 0))
		g_ptr_array_add(attrs, g_strdup(st->user_attribute));
	if (attrs->len == 0)
		g_ptr_array_add(attrs, g_strdup(LDAP_NO_ATTRS)); /* "1.1": the DN only */
	g_ptr_array_add(attrs, NULL);
	st->attrs = (char **)g_ptr_array_free(attrs, FALSE);

	if (timeout != NULL && !gh_auth_parse_uint(timeout, 1, MAX_TIMEOUT, &st->timeout)) {
		host->config_error(host, error, group, "timeout",
				   "bad value '%s': expected a whole number of seconds from 1 "
				   "to %u",
				   timeout, MAX_TIMEOUT);
		return NULL;
	}
	if (network_timeout != NULL &&
	    !gh_auth_parse_uint(network_timeout, 1, MAX_TIMEOUT, &st->network_timeout)) {
		host->config_error(host, error, group, "network_timeout",
				   "bad value '%s': expected a whole number of seconds from 1 "
				   "to %u",
				   network_timeout, MAX_TIMEOUT);
		return NULL;
	}
	if (pool_size != NULL && !gh_auth_parse_uint(pool_size, 1, MAX_POOL_SIZE, &st->pool_size)) {
		host->config_error(host, error, group, "pool_size",
				   "bad value '%s': expected 1 (one connection per worker thread) "
				   "or 2 (one more for the users' binds)",
				   pool_size);
		return NULL;
	}

	if (require_cert != NULL) {
		static const struct {
			const char *name;
			int value;
		} levels[] = {
		    {"never", LDAP_OPT_X_TLS_NEVER},
		    {"allow", LDAP_OPT_X_TLS_ALLOW},
		    {"try", LDAP_OPT_X_TLS_TRY},
		    {"demand", LDAP_OPT_X_TLS_DEMAND},
		};
		gboolean found = FALSE;

		for (guint i = 0; i < G_N_ELEMENTS(levels) && !found; i++) {
			if (g_ascii_strcasecmp(require_cert, levels[i].name) == 0) {
				st->require_cert = levels[i].value;
				found = TRUE;
			}
		}
		if (!found) {
			host->config_error(host, error, group, "tls_require_cert",
					   "bad value '%s': expected never, allow, try or demand",
					   require_cert);
			return NULL;
		}
	}
	st->ca_file = get_nonempty(kf, group, "ca_file");
	if (st->ca_file != NULL && access(st->ca_file, R_OK) != 0) {
		int saved = errno;

		host->config_error(host, error, group, "ca_file", "%s: cannot read: %s",
				   st->ca_file, g_strerror(saved));
		return NULL;
	}
	if (st->ca_file != NULL && !ca_file_has_certificate(st->ca_file)) {
		host->config_error(host, error, group, "ca_file",
				   "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
				   st->ca_file);
		return NULL;
	}
	if (!check_handles(st, host, group, error))
		return NULL;

	g_debug("[%s] %u LDAP server(s), %s, timeouts %u s (operations) and %u s (connect)", group,
		st->n_servers,
		st->bind_dn_template != NULL ? "direct bind"
		: st->bind_dn != NULL        ? "search-then-bind with a search account"
					     : "search-then-bind, anonymous search",
		st->timeout, st->network_timeout);
	return g_steal_pointer(&st);
}

G_MODULE_EXPORT const GhAuthModule gh_auth_module = {
    .abi_version = GH_AUTH_MODULE_ABI,
    .struct_size = sizeof(GhAuthModule),
    .name = "ldap",
    .flags = GH_AUTH_MODULE_THREAD_SAFE,
    .keys = ldap_keys,
    .init = ldap_init,
    .verify = ldap_verify,
    .deinit = ldap_deinit,
    .may_route = ldap_may_route,
};
