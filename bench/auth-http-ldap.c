/*
 * auth-http-ldap.c: the auth_http service that nginx's mail proxy needs to
 * check logins against LDAP, for bench/run's system row (gatehouse's `ldap`
 * module beside nginx plus this service, both against the same slapd).  Not
 * installed; a benchmark fixture, written the way an admin would write it in
 * C, with nothing gatehouse does not also do.
 *
 *   auth-http-ldap --port P --uri ldap://127.0.0.1:389 --base DN
 *                  [--filter '(uid=%s)'] --imap HOST:PORT [--smtp HOST:PORT]
 *                  [--threads N]
 *
 * What it does per request (nginx's protocol, ngx_mail_auth_http_module):
 * it reads Auth-User and Auth-Pass (URL-escaped by nginx), searches the base
 * for the one entry matching the filter, binds as that entry with the
 * password, and answers
 *   Auth-Status: OK, Auth-Server, Auth-Port    (the backend by Auth-Protocol)
 *   Auth-Status: Invalid login or password, Auth-Wait: 0
 *   Auth-Status: Temporary server problem, try again later, Auth-Wait: 1
 * with HTTP 200 and no body.
 *
 * Invariants, the same as gatehouse's ldap module's so the comparison is fair:
 *  - no cache of any kind: every request is one search and one bind;
 *  - each worker thread keeps two connections open (one for searches, bound
 *    anonymously; one for users' binds) and reconnects once when the server
 *    has closed them; an LDAP handle is only ever used by its own thread;
 *  - the LDAP calls run in a pool of worker threads; the HTTP server runs in
 *    the main thread and pauses each message until its worker is done;
 *  - the login name reaches LDAP only escaped (RFC 4515); the password is
 *    never printed.
 */
#include <glib.h>
#include <ldap.h>
#include <libsoup/soup.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct {
	char *uri;
	char *base;
	char *filter;      /* with one %s */
	char *filter_head; /* the filter before and after its %s */
	char *filter_tail;
	char *imap_host, *imap_port;
	char *smtp_host, *smtp_port;
} Config;

static Config cfg;
static GMainContext *main_ctx;

typedef enum { VERDICT_OK, VERDICT_NO, VERDICT_TEMP } Verdict;

typedef struct {
	SoupServerMessage *msg; /* a reference; paused until finish() */
	char *user;
	char *pass;
	gboolean smtp;
	Verdict verdict;
} Job;

/* One worker thread's two connections. */
typedef struct {
	LDAP *search;
	LDAP *bind;
} Conns;

static void
conns_free(gpointer p)
{
	Conns *c = p;
	if (c->search != NULL)
		ldap_unbind_ext_s(c->search, NULL, NULL);
	if (c->bind != NULL)
		ldap_unbind_ext_s(c->bind, NULL, NULL);
	g_free(c);
}

static GPrivate thread_conns = G_PRIVATE_INIT(conns_free);

static LDAP *
connect_ldap(void)
{
	LDAP *ld = NULL;
	int version = LDAP_VERSION3;
	if (ldap_initialize(&ld, cfg.uri) != LDAP_SUCCESS)
		return NULL;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	return ld;
}

static int
simple_bind(LDAP *ld, const char *dn, const char *password)
{
	struct berval cred = {.bv_val = (char *)password, .bv_len = strlen(password)};
	return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

/* The entry's DN for user, or NULL with *rc set (LDAP_SUCCESS: no such
 * user or more than one). */
static char *
search_dn(LDAP *ld, const char *user, int *rc)
{
	struct berval in = {.bv_val = (char *)user, .bv_len = strlen(user)};
	struct berval esc = {0};
	char *attrs[] = {LDAP_NO_ATTRS, NULL};
	LDAPMessage *res = NULL;
	char *dn = NULL;
	struct timeval tv = {5, 0};

	if (ldap_bv2escaped_filter_value(&in, &esc) != 0) {
		*rc = LDAP_NO_MEMORY;
		return NULL;
	}
	char *filter = g_strconcat(cfg.filter_head, esc.bv_val, cfg.filter_tail, NULL);
	ber_memfree(esc.bv_val);
	*rc = ldap_search_ext_s(ld, cfg.base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL, &tv,
				2, &res);
	g_free(filter);
	if (*rc == LDAP_SUCCESS && ldap_count_entries(ld, res) == 1) {
		char *d = ldap_get_dn(ld, ldap_first_entry(ld, res));
		dn = g_strdup(d);
		ldap_memfree(d);
	} else if (*rc == LDAP_SIZELIMIT_EXCEEDED) {
		*rc = LDAP_SUCCESS; /* two entries: no login */
	}
	ldap_msgfree(res);
	return dn;
}

static gboolean
transport_error(int rc)
{
	return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT;
}

/* One attempt; *retry is set when a connection broke and was dropped. */
static Verdict
check_once(Conns *c, const char *user, const char *pass, gboolean *retry)
{
	int rc;
	*retry = FALSE;
	if (c->search == NULL && (c->search = connect_ldap()) == NULL)
		return VERDICT_TEMP;
	if (c->bind == NULL && (c->bind = connect_ldap()) == NULL)
		return VERDICT_TEMP;

	g_autofree char *dn = search_dn(c->search, user, &rc);
	if (dn == NULL) {
		if (transport_error(rc)) {
			ldap_unbind_ext_s(c->search, NULL, NULL);
			c->search = NULL;
			*retry = TRUE;
			return VERDICT_TEMP;
		}
		return rc == LDAP_SUCCESS || rc == LDAP_NO_SUCH_OBJECT ? VERDICT_NO : VERDICT_TEMP;
	}
	rc = simple_bind(c->bind, dn, pass);
	if (rc == LDAP_SUCCESS)
		return VERDICT_OK;
	if (rc == LDAP_INVALID_CREDENTIALS)
		return VERDICT_NO;
	if (transport_error(rc)) {
		ldap_unbind_ext_s(c->bind, NULL, NULL);
		c->bind = NULL;
		*retry = TRUE;
	}
	return VERDICT_TEMP;
}

static gboolean
finish(gpointer data)
{
	Job *job = data;
	SoupMessageHeaders *h = soup_server_message_get_response_headers(job->msg);

	switch (job->verdict) {
	case VERDICT_OK:
		soup_message_headers_append(h, "Auth-Status", "OK");
		soup_message_headers_append(h, "Auth-Server",
					    job->smtp ? cfg.smtp_host : cfg.imap_host);
		soup_message_headers_append(h, "Auth-Port",
					    job->smtp ? cfg.smtp_port : cfg.imap_port);
		break;
	case VERDICT_NO:
		soup_message_headers_append(h, "Auth-Status", "Invalid login or password");
		soup_message_headers_append(h, "Auth-Wait", "0");
		break;
	case VERDICT_TEMP:
		soup_message_headers_append(h, "Auth-Status",
					    "Temporary server problem, try again later");
		soup_message_headers_append(h, "Auth-Wait", "1");
		break;
	}
	soup_server_message_set_status(job->msg, SOUP_STATUS_OK, NULL);
	soup_server_message_unpause(job->msg);
	g_object_unref(job->msg);
	g_free(job->user);
	if (job->pass != NULL)
		explicit_bzero(job->pass, strlen(job->pass));
	g_free(job->pass);
	g_free(job);
	return G_SOURCE_REMOVE;
}

static void
work(gpointer data, gpointer unused)
{
	Job *job = data;
	Conns *c = g_private_get(&thread_conns);
	gboolean retry;
	(void)unused;

	if (c == NULL) {
		c = g_new0(Conns, 1);
		g_private_set(&thread_conns, c);
	}
	if (job->user[0] == '\0' || job->pass[0] == '\0') {
		job->verdict = VERDICT_NO; /* an empty password would be an anonymous bind */
	} else {
		job->verdict = check_once(c, job->user, job->pass, &retry);
		if (retry)
			job->verdict = check_once(c, job->user, job->pass, &retry);
	}
	g_main_context_invoke(main_ctx, finish, job);
}

static GThreadPool *pool;

static void
handle(
    SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data)
{
	SoupMessageHeaders *req = soup_server_message_get_request_headers(msg);
	const char *user = soup_message_headers_get_one(req, "Auth-User");
	const char *pass = soup_message_headers_get_one(req, "Auth-Pass");
	const char *proto = soup_message_headers_get_one(req, "Auth-Protocol");
	(void)server, (void)path, (void)query, (void)data;

	Job *job = g_new0(Job, 1);
	job->msg = g_object_ref(msg);
	job->user = g_uri_unescape_string(user != NULL ? user : "", NULL);
	job->pass = g_uri_unescape_string(pass != NULL ? pass : "", NULL);
	job->smtp = g_strcmp0(proto, "smtp") == 0;
	if (job->user == NULL)
		job->user = g_strdup("");
	if (job->pass == NULL)
		job->pass = g_strdup("");
	soup_server_message_pause(msg);
	g_thread_pool_push(pool, job, NULL);
}

static gboolean
split_hostport(const char *s, char **host, char **port)
{
	const char *colon = s != NULL ? strrchr(s, ':') : NULL;
	if (colon == NULL || colon == s || colon[1] == '\0')
		return FALSE;
	*host = g_strndup(s, colon - s);
	*port = g_strdup(colon + 1);
	return TRUE;
}

int
main(int argc, char **argv)
{
	int port = 0, threads = 64;
	char *imap = NULL, *smtp = NULL;
	GOptionEntry entries[] = {
	    {"port", 0, 0, G_OPTION_ARG_INT, &port, "listen on 127.0.0.1:PORT", "PORT"},
	    {"uri", 0, 0, G_OPTION_ARG_STRING, &cfg.uri, "the LDAP server", "URI"},
	    {"base", 0, 0, G_OPTION_ARG_STRING, &cfg.base, "the search base", "DN"},
	    {"filter", 0, 0, G_OPTION_ARG_STRING, &cfg.filter, "with one %s (uid=%s)", "F"},
	    {"imap", 0, 0, G_OPTION_ARG_STRING, &imap, "the IMAP backend", "HOST:PORT"},
	    {"smtp", 0, 0, G_OPTION_ARG_STRING, &smtp, "the SMTP backend", "HOST:PORT"},
	    {"threads", 0, 0, G_OPTION_ARG_INT, &threads, "LDAP worker threads (64)", "N"},
	    {NULL},
	};
	g_autoptr(GOptionContext) oc = g_option_context_new("- nginx auth_http against LDAP");
	g_autoptr(GError) error = NULL;
	g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, &argc, &argv, &error)) {
		fprintf(stderr, "auth-http-ldap: %s\n", error->message);
		return 2;
	}
	if (cfg.filter == NULL)
		cfg.filter = g_strdup("(uid=%s)");
	if (port <= 0 || port > 65535 || cfg.uri == NULL || cfg.base == NULL ||
	    !split_hostport(imap, &cfg.imap_host, &cfg.imap_port) || threads < 1) {
		fprintf(stderr, "auth-http-ldap: --port, --uri, --base and --imap are needed\n");
		return 2;
	}
	const char *mark = strstr(cfg.filter, "%s");
	if (mark == NULL) {
		fprintf(stderr, "auth-http-ldap: --filter needs a %%s for the login name\n");
		return 2;
	}
	cfg.filter_head = g_strndup(cfg.filter, mark - cfg.filter);
	cfg.filter_tail = g_strdup(mark + 2);
	if (smtp == NULL || !split_hostport(smtp, &cfg.smtp_host, &cfg.smtp_port)) {
		cfg.smtp_host = g_strdup(cfg.imap_host);
		cfg.smtp_port = g_strdup(cfg.imap_port);
	}

	main_ctx = g_main_context_default();
	pool = g_thread_pool_new(work, NULL, threads, FALSE, NULL);
	SoupServer *server = soup_server_new("server-header", NULL, NULL);
	soup_server_add_handler(server, "/auth", handle, NULL, NULL);
	/* nginx opens a connection per login: a listen backlog as deep as
	 * nginx's own (511), not GLib's default of 10, or bursts of logins
	 * wait for SYN retransmits */
	g_autoptr(GSocket) sock =
	    g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
	g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
	g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, port);
	if (sock != NULL) {
		g_socket_set_listen_backlog(sock, 511);
		g_socket_set_option(sock, SOL_SOCKET, SO_REUSEADDR, 1, NULL);
	}
	if (sock == NULL || !g_socket_bind(sock, addr, TRUE, &error) ||
	    !g_socket_listen(sock, &error) || !soup_server_listen_socket(server, sock, 0, &error)) {
		fprintf(stderr, "auth-http-ldap: listen on port %d: %s\n", port, error->message);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	GMainLoop *loop = g_main_loop_new(NULL, FALSE);
	g_main_loop_run(loop);
	return 0;
}
