/*
 * test-config.c: gatehouse.conf loading: a full config with every field
 * checked, the defaults, bad configs reported with "FILE:LINE: [group] key:",
 * all problems of a file reported at once, the shipped sample, and the CIDR
 * and host:port parsers.
 *
 * Config texts name files as "@DIR@/..." and expected messages name the
 * config as "@FILE@"; both are replaced with the test's temporary directory.
 */
#include "gh-build.h"

#include "config/config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

#ifndef GH_MODULE_DIR
#define GH_MODULE_DIR "/usr/local/lib/gatehouse/modules"
#endif

typedef struct {
	char *dir;
	char *conf;
	GPtrArray *problems;
	GPtrArray *files; /* created in dir, removed at teardown */
} Fixture;

static char *
replace(const char *text, const char *from, const char *to)
{
	g_auto(GStrv) parts = g_strsplit(text, from, -1);
	return g_strjoinv(to, parts);
}

static char *
expand(const Fixture *f, const char *text)
{
	g_autofree char *a = replace(text, "@DIR@", f->dir);
	return replace(a, "@FILE@", f->conf);
}

static void
fixture_add_file(Fixture *f, const char *name, const char *content)
{
	g_autoptr(GError) error = NULL;
	char *path = g_build_filename(f->dir, name, NULL);

	g_file_set_contents(path, content, -1, &error);
	g_assert_no_error(error);
	g_ptr_array_add(f->files, path);
}

static void
fixture_setup(Fixture *f)
{
	g_autoptr(GError) error = NULL;

	f->dir = g_dir_make_tmp("gh-config-XXXXXX", &error);
	g_assert_no_error(error);
	f->conf = g_build_filename(f->dir, "gatehouse.conf", NULL);
	f->problems = g_ptr_array_new_with_free_func(g_free);
	f->files = g_ptr_array_new_with_free_func(g_free);
	fixture_add_file(f, "cert.pem", "cert\n");
	fixture_add_file(f, "key.pem", "key\n");
	fixture_add_file(f, "cert2.pem", "cert\n");
	fixture_add_file(f, "key2.pem", "key\n");
	fixture_add_file(f, "master.secret", "secret\n");
	fixture_add_file(f, "ca.pem", "ca\n");
	fixture_add_file(f, "users", "");
}

static void
fixture_teardown(Fixture *f)
{
	for (guint i = 0; i < f->files->len; i++)
		g_unlink(g_ptr_array_index(f->files, i));
	g_unlink(f->conf);
	g_rmdir(f->dir);
	g_ptr_array_unref(f->files);
	g_ptr_array_unref(f->problems);
	g_free(f->conf);
	g_free(f->dir);
}

/* Write `text` (with @DIR@ expanded) as the config and load it. */
static GhConfig *
fixture_load(Fixture *f, const char *text)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *expanded = expand(f, text);

	g_file_set_contents(f->conf, expanded, -1, &error);
	g_assert_no_error(error);
	g_ptr_array_set_size(f->problems, 0);
	return gh_config_load(f->conf, f->problems);
}

static void
dump_problems(const Fixture *f)
{
	for (guint i = 0; i < f->problems->len; i++)
		g_test_message("problem: %s", (const char *)g_ptr_array_index(f->problems, i));
}

/* Both forms (a GInetAddress, and the text the session has) must agree. */
static gboolean
cidr_list_matches(const GArray *nets, const char *ip)
{
	g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(ip);
	gboolean matched;

	g_assert_nonnull(addr);
	matched = gh_cidr_list_match(nets, addr);
	g_assert_cmpint(gh_cidr_list_match_text(nets, ip), ==, matched);
	return matched;
}

static void
assert_host_port(const GArray *a, guint i, const char *host, guint port)
{
	const GhHostPort *hp;

	g_assert_cmpuint(i, <, a->len);
	if (i >= a->len)
		return;
	hp = &g_array_index(a, GhHostPort, i);
	g_assert_cmpstr(hp->host, ==, host);
	g_assert_cmpuint(hp->port, ==, port);
}

/* ------------------------------------------------------------ a full config */

static const char full_config[] =
    "# like gatehouse.conf(5) and etc/gatehouse.conf.sample\n"
    "[gatehouse]\n"
    "hostname = mail.example.com        ; banner name\n"
    "user = gatehouse\n"
    "group = mail\n"
    "module_dir = @DIR@/modules\n"
    "control_socket = @DIR@/control\n"
    "trusted_networks = 127.0.0.0/8 ::1/128 192.0.2.0/24   ; comment\n"
    "shutdown_timeout = 45\n"
    "workers = 3\n"
    "failure_delay = 0\n"
    "auth_workers = 4\n"
    "auth_queue_max = 100\n"
    "auth_cache_size = 500\n"
    "auth_cache_ttl = 120\n"
    "auth_cache_negative_ttl = 30\n"
    "\n"
    "[tls]\n"
    "certificate = @DIR@/cert.pem @DIR@/cert2.pem\n"
    "key = @DIR@/key.pem\t@DIR@/key2.pem\n"
    "priorities = SECURE256:-VERS-TLS1.2\n"
    "\n"
    "; One group per listener.\n"
    "[listener smtp]\n"
    "protocol = smtp                    ; smtp | imap\n"
    "listen = 0.0.0.0:25 [::]:25        ; ignored for sockets passed by systemd\n"
    "tls = starttls\n"
    "plaintext_auth = trusted\n"
    "require_auth = no\n"
    "auth = users ldap\n"
    "backend = mx\n"
    "\n"
    "[listener submission]\n"
    "protocol = SMTP\n"
    "listen = *:587\n"
    "tls = starttls\n"
    "plaintext_auth = tls\n"
    "require_auth = Yes\n"
    "auth = users ldap\n"
    "backend = submission\n"
    "max_connections = 500\n"
    "\n"
    "[listener imap]\n"
    "protocol = imap\n"
    "listen = 127.0.0.1:143\n"
    "tls = implicit\n"
    "plaintext_auth = always\n"
    "auth = ldap users\n"
    "backend = imap\n"
    "idle_timeout = 600\n"
    "max_auth_failures = 5\n"
    "\n"
    "[listener from-systemd.1]\n"
    "protocol = imap\n"
    "auth = pam\n"
    "backend = imap\n"
    "\n"
    "[auth users]\n"
    "module = file\n"
    "path = @DIR@/users\n"
    "\n"
    "[auth ldap]\n"
    "module = ldap\n"
    "uri = ldap://ldap1.example.com ldap://ldap2.example.com\n"
    "start_tls = yes\n"
    "base = ou=people,dc=example,dc=com\n"
    "filter = (&(objectClass=inetOrgPerson)(uid=%u))   ; %u = escaped login name\n"
    "bind_dn = cn=gatehouse,dc=example,dc=com\n"
    "bind_password_file = @DIR@/ldap.secret\n"
    "route_attribute = mailHost\n"
    "user_attribute = uid\n"
    "\n"
    "[auth pam]\n"
    "module = pam\n"
    "service = gatehouse\n"
    "\n"
    "[backend imap]\n"
    "protocol = imap\n"
    "servers = 10.0.0.5:143 [2001:db8::6]:993\n"
    "port = 993\n"
    "follow_route = no\n"
    "early_connect = no\n"
    "tls = implicit\n"
    "login = master\n"
    "master_user = proxy\n"
    "master_password_file = @DIR@/master.secret\n"
    "forward_client = no\n"
    "ca_file = @DIR@/ca.pem\n"
    "verify = false\n"
    "connect_timeout = 5\n"
    "\n"
    "[backend submission]\n"
    "protocol = smtp\n"
    "servers = smtp.internal.example.com:587\n"
    "tls = starttls\n"
    "login = xclient\n"
    "\n"
    "[backend mx]\n"
    "protocol = smtp\n"
    "servers = 10.0.0.7:25\n"
    "login = none\n";

static void
test_full(void)
{
	Fixture f;
	g_autoptr(GhConfig) cfg = NULL;
	g_autofree char *s = NULL;
	const GhListenerConfig *lc;
	const GhBackendConfig *bc;
	const GhAuthGroupConfig *ac;

	fixture_setup(&f);
	cfg = fixture_load(&f, full_config);
	dump_problems(&f);
	g_assert_nonnull(cfg);
	g_assert_cmpuint(f.problems->len, ==, 0);
	if (cfg == NULL) {
		fixture_teardown(&f);
		return;
	}

	g_assert_cmpstr(cfg->path, ==, f.conf);
	g_assert_nonnull(cfg->kf);
	/* the module's own keys stay in the key file for the auth core */
	s = g_key_file_get_string(cfg->kf, "auth ldap", "filter", NULL);
	g_assert_cmpstr(s, ==, "(&(objectClass=inetOrgPerson)(uid=%u))");
	g_clear_pointer(&s, g_free);

	g_assert_cmpstr(cfg->hostname, ==, "mail.example.com");
	g_assert_cmpstr(cfg->user, ==, "gatehouse");
	g_assert_cmpstr(cfg->group, ==, "mail");
	s = g_build_filename(f.dir, "modules", NULL);
	g_assert_cmpstr(cfg->module_dir, ==, s);
	g_clear_pointer(&s, g_free);
	s = g_build_filename(f.dir, "control", NULL);
	g_assert_cmpstr(cfg->control_socket, ==, s);
	g_clear_pointer(&s, g_free);
	g_assert_cmpuint(cfg->trusted_networks->len, ==, 3);
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "127.0.0.1"));
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "::1"));
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "192.0.2.200"));
	g_assert_false(cidr_list_matches(cfg->trusted_networks, "192.0.3.1"));
	g_assert_cmpuint(cfg->shutdown_timeout, ==, 45);
	g_assert_cmpuint(cfg->workers, ==, 3);
	g_assert_cmpuint(cfg->failure_delay, ==, 0);
	g_assert_cmpuint(cfg->auth_workers, ==, 4);
	g_assert_cmpuint(cfg->auth_queue_max, ==, 100);
	g_assert_cmpuint(cfg->auth_cache_size, ==, 500);
	g_assert_cmpuint(cfg->auth_cache_ttl, ==, 120);
	g_assert_cmpuint(cfg->auth_cache_negative_ttl, ==, 30);

	g_assert_cmpuint(g_strv_length(cfg->tls.certificates), ==, 2);
	g_assert_cmpuint(g_strv_length(cfg->tls.keys), ==, 2);
	s = g_build_filename(f.dir, "cert2.pem", NULL);
	g_assert_cmpstr(cfg->tls.certificates[1], ==, s);
	g_clear_pointer(&s, g_free);
	s = g_build_filename(f.dir, "key.pem", NULL);
	g_assert_cmpstr(cfg->tls.keys[0], ==, s);
	g_clear_pointer(&s, g_free);
	g_assert_cmpstr(cfg->tls.priorities, ==, "SECURE256:-VERS-TLS1.2");

	/* listeners, in file order */
	g_assert_cmpuint(cfg->listeners->len, ==, 4);
	lc = g_ptr_array_index(cfg->listeners, 0);
	g_assert_cmpstr(lc->name, ==, "smtp");
	g_assert_true(gh_config_listener(cfg, "smtp") == lc);
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_SMTP);
	g_assert_cmpuint(lc->listen->len, ==, 2);
	assert_host_port(lc->listen, 0, "0.0.0.0", 25);
	assert_host_port(lc->listen, 1, "::", 25);
	g_assert_cmpint(lc->tls, ==, GH_TLS_STARTTLS);
	g_assert_cmpint(lc->plaintext_auth, ==, GH_PLAINTEXT_TRUSTED);
	g_assert_false(lc->require_auth);
	g_assert_cmpuint(g_strv_length(lc->auth), ==, 2);
	g_assert_cmpstr(lc->auth[0], ==, "users");
	g_assert_cmpstr(lc->auth[1], ==, "ldap");
	g_assert_cmpstr(lc->backend, ==, "mx");
	g_assert_cmpuint(lc->idle_timeout, ==, 300);
	g_assert_cmpuint(lc->max_connections, ==, 0);
	g_assert_cmpuint(lc->max_auth_failures, ==, 3);

	lc = gh_config_listener(cfg, "submission");
	g_assert_nonnull(lc);
	g_assert_true(lc == g_ptr_array_index(cfg->listeners, 1));
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_SMTP);
	g_assert_cmpuint(lc->listen->len, ==, 1);
	assert_host_port(lc->listen, 0, "*", 587);
	g_assert_cmpint(lc->plaintext_auth, ==, GH_PLAINTEXT_TLS);
	g_assert_true(lc->require_auth);
	g_assert_cmpstr(lc->backend, ==, "submission");
	g_assert_cmpuint(lc->max_connections, ==, 500);

	lc = gh_config_listener(cfg, "imap");
	g_assert_nonnull(lc);
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_IMAP);
	assert_host_port(lc->listen, 0, "127.0.0.1", 143);
	g_assert_cmpint(lc->tls, ==, GH_TLS_IMPLICIT);
	g_assert_cmpint(lc->plaintext_auth, ==, GH_PLAINTEXT_ALWAYS);
	g_assert_cmpstr(lc->auth[0], ==, "ldap");
	g_assert_cmpstr(lc->auth[1], ==, "users");
	g_assert_null(lc->auth[2]);
	g_assert_cmpuint(lc->idle_timeout, ==, 600);
	g_assert_cmpuint(lc->max_auth_failures, ==, 5);

	lc = gh_config_listener(cfg, "from-systemd.1");
	g_assert_nonnull(lc);
	g_assert_cmpuint(lc->listen->len, ==, 0);
	g_assert_cmpint(lc->tls, ==, GH_TLS_NONE);
	g_assert_cmpuint(lc->idle_timeout, ==, 1800);
	g_assert_cmpstr(lc->auth[0], ==, "pam");
	g_assert_null(gh_config_listener(cfg, "nosuch"));

	/* auth groups */
	g_assert_cmpuint(cfg->auths->len, ==, 3);
	ac = g_ptr_array_index(cfg->auths, 0);
	g_assert_cmpstr(ac->name, ==, "users");
	g_assert_cmpstr(ac->module, ==, "file");
	ac = gh_config_auth(cfg, "ldap");
	g_assert_nonnull(ac);
	g_assert_cmpstr(ac->module, ==, "ldap");
	ac = gh_config_auth(cfg, "pam");
	g_assert_nonnull(ac);
	g_assert_cmpstr(ac->module, ==, "pam");
	g_assert_null(gh_config_auth(cfg, "nosuch"));

	/* backends */
	g_assert_cmpuint(cfg->backends->len, ==, 3);
	bc = g_ptr_array_index(cfg->backends, 0);
	g_assert_cmpstr(bc->name, ==, "imap");
	g_assert_cmpint(bc->protocol, ==, GH_PROTO_IMAP);
	g_assert_cmpuint(bc->servers->len, ==, 2);
	assert_host_port(bc->servers, 0, "10.0.0.5", 143);
	assert_host_port(bc->servers, 1, "2001:db8::6", 993);
	g_assert_cmpuint(bc->port, ==, 993);
	g_assert_false(bc->follow_route);
	g_assert_false(bc->early_connect);
	g_assert_cmpint(bc->tls, ==, GH_TLS_IMPLICIT);
	g_assert_cmpint(bc->login, ==, GH_LOGIN_MASTER);
	g_assert_cmpstr(bc->master_user, ==, "proxy");
	s = g_build_filename(f.dir, "master.secret", NULL);
	g_assert_cmpstr(bc->master_password_file, ==, s);
	g_clear_pointer(&s, g_free);
	g_assert_false(bc->forward_client);
	s = g_build_filename(f.dir, "ca.pem", NULL);
	g_assert_cmpstr(bc->ca_file, ==, s);
	g_clear_pointer(&s, g_free);
	g_assert_false(bc->verify);
	g_assert_cmpuint(bc->connect_timeout, ==, 5);

	bc = gh_config_backend(cfg, "submission");
	g_assert_nonnull(bc);
	g_assert_cmpint(bc->protocol, ==, GH_PROTO_SMTP);
	assert_host_port(bc->servers, 0, "smtp.internal.example.com", 587);
	g_assert_cmpuint(bc->port, ==, 587);
	g_assert_true(bc->follow_route);
	g_assert_true(bc->early_connect); /* the default */
	g_assert_cmpint(bc->tls, ==, GH_TLS_STARTTLS);
	g_assert_cmpint(bc->login, ==, GH_LOGIN_XCLIENT);
	g_assert_null(bc->master_user);
	g_assert_null(bc->ca_file);
	g_assert_true(bc->verify);
	g_assert_true(bc->forward_client);

	bc = gh_config_backend(cfg, "mx");
	g_assert_nonnull(bc);
	g_assert_cmpint(bc->login, ==, GH_LOGIN_NONE);
	g_assert_null(gh_config_backend(cfg, "nosuch"));

	fixture_teardown(&f);
}

/* ------------------------------------------------------------ defaults */

static void
test_defaults(void)
{
	static const char text[] = "[listener smtp]\n"
				   "protocol = smtp\n"
				   "auth = users\n"
				   "backend = mx\n"
				   "[listener imap]\n"
				   "protocol = imap\n"
				   "listen = 127.0.0.1:1143\n"
				   "auth = users\n"
				   "backend = imap\n"
				   "[auth users]\n"
				   "module = file\n"
				   "[backend mx]\n"
				   "protocol = smtp\n"
				   "servers = 127.0.0.1:25\n"
				   "[backend imap]\n"
				   "protocol = imap\n"
				   "servers = localhost:143\n";
	Fixture f;
	g_autoptr(GhConfig) cfg = NULL;
	const GhListenerConfig *lc;
	const GhBackendConfig *bc;

	fixture_setup(&f);
	cfg = fixture_load(&f, text);
	dump_problems(&f);
	g_assert_nonnull(cfg);
	if (cfg == NULL) {
		fixture_teardown(&f);
		return;
	}
	g_assert_cmpstr(cfg->hostname, ==, g_get_host_name());
	g_assert_null(cfg->user);
	g_assert_null(cfg->group);
	g_assert_cmpstr(cfg->module_dir, ==, GH_MODULE_DIR);
	g_assert_cmpstr(cfg->control_socket, ==, "/run/gatehouse/control");
	g_assert_cmpuint(cfg->trusted_networks->len, ==, 2);
	g_assert_cmpuint(cfg->proxy_trusted_networks->len, ==, 0);
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "127.255.0.1"));
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "::1"));
	g_assert_true(cidr_list_matches(cfg->trusted_networks, "::ffff:127.0.0.1"));
	g_assert_false(cidr_list_matches(cfg->trusted_networks, "10.0.0.1"));
	/* text that is no address matches nothing */
	g_assert_false(gh_cidr_list_match_text(cfg->trusted_networks, "localhost"));
	g_assert_false(gh_cidr_list_match_text(cfg->trusted_networks, ""));
	g_assert_false(gh_cidr_list_match_text(cfg->trusted_networks, "127.0.0.1 "));
	g_assert_false(gh_cidr_list_match_text(NULL, "127.0.0.1"));
	g_assert_false(cidr_list_matches(cfg->trusted_networks, "::2"));
	g_assert_cmpuint(cfg->shutdown_timeout, ==, 30);
	g_assert_cmpuint(cfg->workers, ==, g_get_num_processors());
	g_assert_cmpuint(cfg->workers, >, 0);
	g_assert_cmpuint(cfg->failure_delay, ==, 2);
	g_assert_cmpuint(cfg->auth_workers, ==, 8);
	g_assert_cmpuint(cfg->auth_queue_max, ==, 1024);
	g_assert_cmpuint(cfg->auth_cache_size, ==, 10000);
	g_assert_cmpuint(cfg->auth_cache_ttl, ==, 300);
	g_assert_cmpuint(cfg->auth_cache_negative_ttl, ==, 60);
	g_assert_null(cfg->tls.certificates);
	g_assert_null(cfg->tls.keys);
	g_assert_cmpstr(cfg->tls.priorities, ==, "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1");

	lc = gh_config_listener(cfg, "smtp");
	g_assert_nonnull(lc);
	g_assert_cmpuint(lc->listen->len, ==, 0);
	g_assert_cmpint(lc->tls, ==, GH_TLS_NONE);
	g_assert_cmpint(lc->plaintext_auth, ==, GH_PLAINTEXT_TRUSTED);
	g_assert_true(lc->require_auth);
	g_assert_cmpuint(lc->idle_timeout, ==, 300);
	g_assert_cmpuint(lc->max_connections, ==, 0);
	g_assert_cmpuint(lc->max_auth_failures, ==, 3);
	g_assert_false(lc->proxy_protocol);
	lc = gh_config_listener(cfg, "imap");
	g_assert_nonnull(lc);
	g_assert_cmpuint(lc->idle_timeout, ==, 1800);

	bc = gh_config_backend(cfg, "imap");
	g_assert_nonnull(bc);
	assert_host_port(bc->servers, 0, "localhost", 143);
	g_assert_cmpuint(bc->port, ==, 143); /* the first server's */
	g_assert_true(bc->follow_route);
	g_assert_cmpint(bc->tls, ==, GH_TLS_NONE);
	g_assert_cmpint(bc->login, ==, GH_LOGIN_PASSTHROUGH);
	g_assert_true(bc->forward_client);
	g_assert_true(bc->verify);
	g_assert_null(bc->ca_file);
	g_assert_null(bc->master_user);
	g_assert_null(bc->master_password_file);
	g_assert_cmpuint(bc->connect_timeout, ==, 10);
	g_assert_cmpint(bc->proxy_protocol, ==, GH_PROXY_NONE);

	/* reference counting: the config outlives one extra ref */
	gh_config_unref(gh_config_ref(cfg));
	g_assert_cmpstr(cfg->hostname, ==, g_get_host_name());
	fixture_teardown(&f);
}

static void
test_to_string(void)
{
	g_assert_cmpstr(gh_protocol_to_string(GH_PROTO_SMTP), ==, "smtp");
	g_assert_cmpstr(gh_protocol_to_string(GH_PROTO_IMAP), ==, "imap");
	g_assert_cmpstr(gh_tls_mode_to_string(GH_TLS_NONE), ==, "none");
	g_assert_cmpstr(gh_tls_mode_to_string(GH_TLS_STARTTLS), ==, "starttls");
	g_assert_cmpstr(gh_tls_mode_to_string(GH_TLS_IMPLICIT), ==, "implicit");
	g_assert_cmpstr(gh_plaintext_auth_to_string(GH_PLAINTEXT_ALWAYS), ==, "always");
	g_assert_cmpstr(gh_plaintext_auth_to_string(GH_PLAINTEXT_TLS), ==, "tls");
	g_assert_cmpstr(gh_plaintext_auth_to_string(GH_PLAINTEXT_TRUSTED), ==, "trusted");
	g_assert_cmpstr(gh_backend_login_to_string(GH_LOGIN_PASSTHROUGH), ==, "passthrough");
	g_assert_cmpstr(gh_backend_login_to_string(GH_LOGIN_MASTER), ==, "master");
	g_assert_cmpstr(gh_backend_login_to_string(GH_LOGIN_XCLIENT), ==, "xclient");
	g_assert_cmpstr(gh_backend_login_to_string(GH_LOGIN_NONE), ==, "none");
}

/* ------------------------------------------------------------ bad configs */

/* lines 1-5: an auth group and a backend; the listener starts on line 6 */
#define HEAD                                                                                       \
	"[auth users]\n"                                                                           \
	"module = file\n"                                                                          \
	"[backend mx]\n"                                                                           \
	"protocol = smtp\n"                                                                        \
	"servers = 127.0.0.1:25\n"
/* lines 6-10; a case adds its line 11 */
#define LISTENER                                                                                   \
	"[listener smtp]\n"                                                                        \
	"protocol = smtp\n"                                                                        \
	"listen = 127.0.0.1:2525\n"                                                                \
	"auth = users\n"                                                                           \
	"backend = mx\n"

typedef struct {
	const char *name;
	const char *text;
	const char *want[12]; /* prefixes of every problem, in any order */
} BadCase;

static const BadCase bad_cases[] = {
    {"good", HEAD LISTENER, {NULL}},
    {"unknown-group",
     HEAD LISTENER "[frobnicate]\nx = 1\n",
     {"@FILE@:11: [frobnicate]: unknown group"}},
    {"unknown-group-prefix",
     HEAD LISTENER "[listeners x]\n",
     {"@FILE@:11: [listeners x]: unknown group"}},
    {"unknown-key",
     HEAD LISTENER "listne = 1\n",
     {"@FILE@:11: [listener smtp] listne: unknown key"}},
    {"unknown-key-gatehouse",
     HEAD LISTENER "[gatehouse]\nworkers = 2\nworker = 2\n",
     {"@FILE@:13: [gatehouse] worker: unknown key"}},
    {"unknown-key-tls", HEAD LISTENER "[tls]\ncert = x\n", {"@FILE@:12: [tls] cert: unknown key"}},
    {"unknown-key-backend",
     "[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\nlogn = none\n"
     "[auth users]\nmodule = file\n" LISTENER,
     {"@FILE@:4: [backend mx] logn: unknown key"}},
    {"auth-keys-belong-to-module",
     HEAD LISTENER "[auth other]\nmodule = ldap\nwhatever = 1\n",
     {NULL}},
    /* a bad protocol is one problem, not also a mismatch with the backend */
    {"bad-enum-protocol",
     HEAD "[listener smtp]\nprotocol = pop2\nauth = users\nbackend = mx\n",
     {"@FILE@:7: [listener smtp] protocol: bad value 'pop2': expected smtp, imap or pop3"}},
    {"bad-enum-tls",
     HEAD LISTENER "tls = sometimes\n",
     {"@FILE@:11: [listener smtp] tls: bad value 'sometimes': expected none, starttls or "
      "implicit"}},
    {"bad-enum-plaintext",
     HEAD LISTENER "plaintext_auth = never\n",
     {"@FILE@:11: [listener smtp] plaintext_auth: bad value 'never'"}},
    {"bad-enum-login",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "login = sasl\n" LISTENER,
     {"@FILE@:6: [backend mx] login: bad value 'sasl': expected passthrough, master, xclient "
      "or none"}},
    {"empty-enum", HEAD LISTENER "tls =\n", {"@FILE@:11: [listener smtp] tls: empty value"}},
    {"bad-boolean",
     HEAD LISTENER "require_auth = maybe\n",
     {"@FILE@:11: [listener smtp] require_auth: bad value 'maybe': expected yes or no"}},
    {"bad-boolean-backend",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "verify = 2\n" LISTENER,
     {"@FILE@:6: [backend mx] verify: bad value '2'"}},
    {"bad-port-zero",
     HEAD "port = 0\n" LISTENER,
     {"@FILE@:6: [backend mx] port: bad value '0': expected a whole number from 1 to 65535"}},
    {"bad-port-too-large",
     HEAD "port = 65536\n" LISTENER,
     {"@FILE@:6: [backend mx] port: bad value '65536': expected a whole number from 1 to "
      "65535"}},
    {"bad-port-not-a-number",
     HEAD "port = imap\n" LISTENER,
     {"@FILE@:6: [backend mx] port: bad value 'imap': expected a whole number from 1 to "
      "65535"}},
    {"bad-port-empty",
     HEAD "port =\n" LISTENER,
     {"@FILE@:6: [backend mx] port: bad value '': expected a whole number from 1 to 65535"}},
    {"bad-follow-route",
     HEAD "follow_route = sometimes\n" LISTENER,
     {"@FILE@:6: [backend mx] follow_route: bad value 'sometimes': expected yes or no"}},
    {"bad-early-connect",
     HEAD "early_connect = later\n" LISTENER,
     {"@FILE@:6: [backend mx] early_connect: bad value 'later': expected yes or no"}},
    {"port-and-follow-route", HEAD "port = 2525\nfollow_route = no\n" LISTENER, {NULL}},
    {"bad-integer-unit",
     HEAD LISTENER "idle_timeout = 30s\n",
     {"@FILE@:11: [listener smtp] idle_timeout: bad value '30s': expected a whole number "
      "from 1 to 86400"}},
    {"bad-integer-negative",
     HEAD LISTENER "max_connections = -1\n",
     {"@FILE@:11: [listener smtp] max_connections: bad value '-1'"}},
    {"bad-integer-zero",
     HEAD LISTENER "idle_timeout = 0\n",
     {"@FILE@:11: [listener smtp] idle_timeout: bad value '0'"}},
    {"bad-integer-huge",
     HEAD LISTENER "idle_timeout = 99999999999999999999\n",
     {"@FILE@:11: [listener smtp] idle_timeout: bad value"}},
    {"bad-integer-workers",
     HEAD LISTENER "[gatehouse]\nworkers = 257\nauth_workers = 0\n",
     {"@FILE@:12: [gatehouse] workers: bad value '257': expected a whole number from 0 to "
      "256",
      "@FILE@:13: [gatehouse] auth_workers: bad value '0': expected a whole number from 1 "
      "to 1024"}},
    {"bad-listen-address",
     HEAD "[listener smtp]\nprotocol = smtp\nlisten = 256.1.1.1:25\nauth = users\n"
	  "backend = mx\n",
     {"@FILE@:8: [listener smtp] listen: bad listen address '256.1.1.1:25': bad address"}},
    {"bad-listen-name",
     HEAD "[listener smtp]\nprotocol = smtp\nlisten = localhost:25\nauth = users\n"
	  "backend = mx\n",
     {"@FILE@:8: [listener smtp] listen: bad listen address 'localhost:25': an IP address"}},
    {"bad-listen-ipv6",
     HEAD "[listener smtp]\nprotocol = smtp\nlisten = ::1:25\nauth = users\n"
	  "backend = mx\n",
     {"@FILE@:8: [listener smtp] listen: bad listen address '::1:25': IPv6 address needs "
      "[brackets]"}},
    {"bad-port",
     HEAD "[listener smtp]\nprotocol = smtp\nlisten = 127.0.0.1:70000 [::1]:0\nauth = users\n"
	  "backend = mx\n",
     {"@FILE@:8: [listener smtp] listen: bad listen address '127.0.0.1:70000': bad port",
      "@FILE@:8: [listener smtp] listen: bad listen address '[::1]:0': bad port"}},
    {"missing-port",
     HEAD "[listener smtp]\nprotocol = smtp\nlisten = 127.0.0.1\nauth = users\n"
	  "backend = mx\n",
     {"@FILE@:8: [listener smtp] listen: bad listen address '127.0.0.1': missing port"}},
    {"bad-server",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = *:25 mx!:25\n" LISTENER,
     {"@FILE@:5: [backend mx] servers: bad server '*:25': a server needs an address",
      "@FILE@:5: [backend mx] servers: bad server 'mx!:25': bad host name"}},
    {"missing-backend-key",
     HEAD "[listener smtp]\nprotocol = smtp\nauth = users\n",
     {"@FILE@:6: [listener smtp] backend: missing"}},
    {"missing-protocol",
     HEAD "[listener smtp]\nauth = users\nbackend = mx\n",
     {"@FILE@:6: [listener smtp] protocol: missing: expected smtp, imap or pop3"}},
    {"missing-auth",
     HEAD "[listener smtp]\nprotocol = smtp\nbackend = mx\nauth =\n",
     {"@FILE@:9: [listener smtp] auth: missing"}},
    {"missing-servers",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\n" LISTENER,
     {"@FILE@:3: [backend mx] servers: missing"}},
    {"missing-module",
     "[auth users]\npath = /x\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n" LISTENER,
     {"@FILE@:1: [auth users] module: missing"}},
    {"unknown-auth",
     HEAD "[listener smtp]\nprotocol = smtp\nauth = users nosuch\nbackend = mx\n",
     {"@FILE@:8: [listener smtp] auth: unknown auth group 'nosuch'"}},
    {"auth-twice",
     HEAD "[listener smtp]\nprotocol = smtp\nauth = users users\nbackend = mx\n",
     {"@FILE@:8: [listener smtp] auth: 'users' listed twice"}},
    {"unknown-backend",
     HEAD "[listener smtp]\nprotocol = smtp\nauth = users\nbackend = nosuch\n",
     {"@FILE@:9: [listener smtp] backend: unknown backend 'nosuch'"}},
    {"two-backends",
     HEAD "[listener smtp]\nprotocol = smtp\nauth = users\nbackend = mx other\n",
     {"@FILE@:9: [listener smtp] backend: 'mx other': one backend name only"}},
    {"bad-escape",
     HEAD LISTENER "[gatehouse]\nhostname = a\\qb\n",
     {"@FILE@:12: [gatehouse] hostname: bad escape in the value"}},
    {"protocol-mismatch",
     HEAD "[listener smtp]\nprotocol = imap\nauth = users\nbackend = mx\n",
     {"@FILE@:9: [listener smtp] backend: backend 'mx' speaks smtp, listener speaks "
      "imap"}},
    {"missing-certificate-file",
     HEAD LISTENER "tls = starttls\n[tls]\ncertificate = @DIR@/nosuch.pem\n"
		   "key = @DIR@/key.pem\n",
     {"@FILE@:13: [tls] certificate: cannot read @DIR@/nosuch.pem: No such file or "
      "directory"}},
    {"certificate-is-directory",
     HEAD LISTENER "[tls]\ncertificate = @DIR@\nkey = @DIR@/key.pem\n",
     {"@FILE@:12: [tls] certificate: cannot read @DIR@: Is a directory"}},
    {"certificate-without-key",
     HEAD LISTENER "[tls]\ncertificate = @DIR@/cert.pem\n",
     {"@FILE@:11: [tls] key: missing"}},
    {"certificate-key-count",
     HEAD LISTENER "[tls]\ncertificate = @DIR@/cert.pem @DIR@/cert2.pem\n"
		   "key = @DIR@/key.pem\n",
     {"@FILE@:13: [tls] key: 2 certificate files but 1 key files"}},
    {"tls-without-certificate",
     HEAD LISTENER "tls = implicit\n",
     {"@FILE@:11: [listener smtp] tls: tls = implicit needs a certificate and key in "
      "[tls]"}},
    {"master-without-user",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "login = master\nmaster_password_file = @DIR@/master.secret\n" LISTENER,
     {"@FILE@:3: [backend mx] master_user: missing: login = master needs it"}},
    {"master-unreadable-file",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "login = master\nmaster_user = proxy\nmaster_password_file = @DIR@/nosuch\n" LISTENER,
     {"@FILE@:8: [backend mx] master_password_file: cannot read @DIR@/nosuch: No such "
      "file"}},
    {"xclient-imap",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = imap\nservers = 127.0.0.1:143\n"
     "login = xclient\n"
     "[listener imap]\nprotocol = imap\nauth = users\nbackend = mx\n",
     {"@FILE@:6: [backend mx] login: xclient is for smtp backends only"}},
    {"bad-ca-file",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "ca_file = @DIR@/nosuch.pem\n" LISTENER,
     {"@FILE@:6: [backend mx] ca_file: cannot read @DIR@/nosuch.pem"}},
    {"bad-trusted-network",
     HEAD LISTENER "[gatehouse]\ntrusted_networks = 10.0.0.0/8 10.0.0.0/33 nonsense\n",
     {"@FILE@:12: [gatehouse] trusted_networks: bad network '10.0.0.0/33'",
      "@FILE@:12: [gatehouse] trusted_networks: bad network 'nonsense'"}},
    {"bad-hostname",
     HEAD LISTENER "[gatehouse]\nhostname = mail example\n",
     {"@FILE@:12: [gatehouse] hostname: bad host name 'mail example'"}},
    {"bad-listener-name",
     HEAD "[listener a/b]\nprotocol = smtp\nauth = users\nbackend = mx\n",
     {"@FILE@:6: [listener a/b]: bad listener name 'a/b'", "@FILE@: no [listener NAME] group"}},
    {"group-without-name",
     HEAD LISTENER "[backend]\nprotocol = smtp\n",
     {"@FILE@:11: [backend]: bad backend name ''"}},
    {"no-listener", HEAD, {"@FILE@: no [listener NAME] group"}},
    {"empty-file", "", {"@FILE@: no [listener NAME] group"}},
    {"proxy-without-balancers",
     HEAD LISTENER "proxy_protocol = yes\n",
     {"@FILE@:11: [listener smtp] proxy_protocol: yes needs [gatehouse] proxy_trusted_networks"}},
    {"proxy-bad-value",
     HEAD LISTENER "proxy_protocol = v2\n",
     {"@FILE@:11: [listener smtp] proxy_protocol: bad value 'v2'"}},
    {"proxy-bad-backend-value",
     "[auth users]\nmodule = file\n[backend mx]\nprotocol = smtp\nservers = 127.0.0.1:25\n"
     "proxy_protocol = yes\n" LISTENER,
     {"@FILE@:6: [backend mx] proxy_protocol: bad value 'yes'"}},
    {"proxy-bad-network",
     "[gatehouse]\nproxy_trusted_networks = 10.0.0.0/33\n" HEAD LISTENER,
     {"@FILE@:2: [gatehouse] proxy_trusted_networks: bad network '10.0.0.0/33'"}},
    {"duplicate-key",
     HEAD LISTENER "backend = mx\n",
     {"@FILE@:11: [listener smtp] backend: given twice (first on line 10)"}},
    {"duplicate-group",
     HEAD LISTENER "[auth users]\nmodule = pam\n",
     {"@FILE@:11: [auth users]: group given twice (first on line 1)"}},
    {"syntax",
     HEAD LISTENER "this is not a key\n",
     {"@FILE@:11: \"this is not a key\" is not a key = value pair"}},
    {"several",
     "[gatehouse]\n"                         /* 1 */
     "workers = many\n"                      /* 2 */
     "colour = blue\n"                       /* 3 */
     "[listener smtp]\n"                     /* 4 */
     "protocol = smtp\n"                     /* 5 */
     "listen = 127.0.0.1:99999 0.0.0.0:25\n" /* 6 */
     "tls = starttls\n"                      /* 7 */
     "auth = users ldap\n"                   /* 8 */
     "backend = imap\n"                      /* 9 */
     "[listener imap]\n"                     /* 10 */
     "protocol = imap\n"                     /* 11 */
     "auth = users\n"                        /* 12 */
     "backend = nosuch\n"                    /* 13 */
     "[auth users]\n"                        /* 14 */
     "[backend imap]\n"                      /* 15 */
     "protocol = imap\n"                     /* 16 */
     "servers = 10.0.0.1:143\n"              /* 17 */
     "login = master\n"                      /* 18 */
     "[whatever]\n",                         /* 19 */
     {"@FILE@:2: [gatehouse] workers: bad value 'many'",
      "@FILE@:3: [gatehouse] colour: unknown key",
      "@FILE@:6: [listener smtp] listen: bad listen address '127.0.0.1:99999': bad port",
      "@FILE@:14: [auth users] module: missing", "@FILE@:15: [backend imap] master_user: missing",
      "@FILE@:15: [backend imap] master_password_file: missing",
      "@FILE@:19: [whatever]: unknown group",
      "@FILE@:8: [listener smtp] auth: unknown auth group 'ldap' (there is no [auth ldap])",
      "@FILE@:9: [listener smtp] backend: backend 'imap' speaks imap, listener speaks smtp",
      "@FILE@:7: [listener smtp] tls: tls = starttls needs a certificate and key in [tls]",
      "@FILE@:13: [listener imap] backend: unknown backend 'nosuch'"}},
};

/* Every problem starts with one of the wanted prefixes and every prefix
 * starts one problem: nothing missing, nothing extra.  The order is not part
 * of the contract. */
static void
assert_problems(Fixture *f, const char *const *want, guint n_want)
{
	g_autofree gboolean *used = g_new0(gboolean, f->problems->len + 1);

	g_assert_cmpuint(f->problems->len, ==, n_want);
	for (guint i = 0; i < n_want; i++) {
		g_autofree char *prefix = expand(f, want[i]);
		gboolean found = FALSE;

		for (guint j = 0; j < f->problems->len && !found; j++) {
			if (!used[j] && g_str_has_prefix(g_ptr_array_index(f->problems, j), prefix))
				used[j] = found = TRUE;
		}
		if (!found)
			g_test_message("no problem starts with '%s'", prefix);
		g_assert_true(found);
	}
}

static void
test_bad(gconstpointer data)
{
	const BadCase *c = data;
	g_autoptr(GhConfig) cfg = NULL;
	g_autoptr(GPtrArray) want = g_ptr_array_new();
	Fixture f;

	fixture_setup(&f);
	for (guint i = 0; i < G_N_ELEMENTS(c->want) && c->want[i] != NULL; i++)
		g_ptr_array_add(want, (gpointer)c->want[i]);
	cfg = fixture_load(&f, c->text);
	dump_problems(&f);
	if (want->len == 0)
		g_assert_nonnull(cfg);
	else
		g_assert_null(cfg);
	assert_problems(&f, (const char *const *)want->pdata, want->len);
	fixture_teardown(&f);
}

/* Problems come back in the order of the file, after whatever the caller's
 * list held already; those without a line come last. */
static void
test_problem_order(void)
{
	const BadCase *several = &bad_cases[G_N_ELEMENTS(bad_cases) - 1];
	g_autoptr(GhConfig) cfg = NULL;
	guint last = 0;
	Fixture f;

	g_assert_cmpstr(several->name, ==, "several");
	fixture_setup(&f);
	g_file_set_contents(f.conf, several->text, -1, NULL);
	g_ptr_array_add(f.problems, g_strdup("earlier"));
	cfg = gh_config_load(f.conf, f.problems);
	g_assert_null(cfg);
	g_assert_cmpuint(f.problems->len, ==, 12);
	g_assert_cmpstr(g_ptr_array_index(f.problems, 0), ==, "earlier");
	for (guint i = 1; i < f.problems->len; i++) {
		const char *p = g_ptr_array_index(f.problems, i);
		guint line;

		g_assert_true(g_str_has_prefix(p, f.conf));
		g_assert_cmpint(p[strlen(f.conf)], ==, ':');
		line = (guint)g_ascii_strtoull(p + strlen(f.conf) + 1, NULL, 10);
		g_assert_cmpuint(line, >=, last);
		last = line;
	}
	/* two problems on line 15, in the order they were found */
	g_assert_true(strstr(g_ptr_array_index(f.problems, 9), "] master_user:") != NULL);
	g_assert_true(strstr(g_ptr_array_index(f.problems, 10), "] master_password_file:") != NULL);
	fixture_teardown(&f);
}

/* An empty trusted_networks trusts nobody; it is not "use the default". */
static void
test_trusted_empty(void)
{
	g_autoptr(GhConfig) cfg = NULL;
	Fixture f;

	fixture_setup(&f);
	cfg = fixture_load(&f, HEAD LISTENER "[gatehouse]\ntrusted_networks =\n");
	dump_problems(&f);
	g_assert_nonnull(cfg);
	if (cfg != NULL) {
		g_assert_cmpuint(cfg->trusted_networks->len, ==, 0);
		g_assert_false(cidr_list_matches(cfg->trusted_networks, "127.0.0.1"));
	}
	fixture_teardown(&f);
}

/* The PROXY protocol keys, read as written. */
static void
test_proxy_keys(void)
{
	Fixture f;
	g_autoptr(GhConfig) cfg = NULL;
	const GhListenerConfig *lc;
	g_autoptr(GInetAddress) balancer = g_inet_address_new_from_string("10.1.2.3");
	g_autoptr(GInetAddress) other = g_inet_address_new_from_string("10.1.3.3");

	fixture_setup(&f);
	cfg = fixture_load(&f, "[gatehouse]\n"
			       "proxy_trusted_networks = 10.1.2.0/24 2001:db8::/32\n" HEAD LISTENER
			       "proxy_protocol = yes\n"
			       "[backend imap]\n"
			       "protocol = imap\n"
			       "servers = 127.0.0.1:143\n"
			       "proxy_protocol = v2\n");
	dump_problems(&f);
	g_assert_nonnull(cfg);
	lc = gh_config_listener(cfg, "smtp");
	g_assert_true(lc->proxy_protocol);
	g_assert_cmpuint(cfg->proxy_trusted_networks->len, ==, 2);
	g_assert_true(gh_cidr_list_match(cfg->proxy_trusted_networks, balancer));
	g_assert_false(gh_cidr_list_match(cfg->proxy_trusted_networks, other));
	g_assert_cmpint(gh_config_backend(cfg, "mx")->proxy_protocol, ==, GH_PROXY_NONE);
	g_assert_cmpint(gh_config_backend(cfg, "imap")->proxy_protocol, ==, GH_PROXY_V2);
	g_assert_cmpstr(gh_proxy_version_to_string(GH_PROXY_V1), ==, "v1");
	fixture_teardown(&f);
}

static void
test_missing_file(void)
{
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GhConfig) cfg = gh_config_load("/nonexistent/gatehouse.conf", problems);
	g_autofree char *want =
	    g_strdup_printf("/nonexistent/gatehouse.conf: cannot read: %s", g_strerror(ENOENT));

	g_assert_null(cfg);
	g_assert_cmpuint(problems->len, ==, 1);
	if (problems->len == 1)
		g_assert_cmpstr(g_ptr_array_index(problems, 0), ==, want);
	/* problems may be NULL when the caller only wants the verdict */
	g_assert_null(gh_config_load("/nonexistent/gatehouse.conf", NULL));
}

/* ------------------------------------------------------------ the sample */

static char *
sample_path(void)
{
	const char *srcdir = g_getenv("GH_SRCDIR");

	if (srcdir != NULL)
		return g_build_filename(srcdir, "etc", "gatehouse.conf.sample", NULL);
	return g_strdup("etc/gatehouse.conf.sample");
}

static void
test_sample(void)
{
	g_autofree char *path = sample_path();
	g_autofree char *text = NULL;
	g_autofree char *dir_slash = NULL;
	g_autofree char *rewritten = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GhConfig) cfg = NULL;
	const GhListenerConfig *lc;
	const GhBackendConfig *bc;
	Fixture f;

	if (!g_file_get_contents(path, &text, NULL, &error)) {
		g_test_message("cannot read the sample (set GH_SRCDIR): %s", error->message);
		g_assert_no_error(error);
		return;
	}
	fixture_setup(&f);
	/* the sample's files live under /etc/gatehouse/; the test's in its
	 * temporary directory */
	dir_slash = g_strconcat(f.dir, "/", NULL);
	rewritten = replace(text, "/etc/gatehouse/", dir_slash);
	g_assert_null(strstr(rewritten, "/etc/gatehouse/"));
	cfg = fixture_load(&f, rewritten);
	dump_problems(&f);
	g_assert_nonnull(cfg);
	g_assert_cmpuint(f.problems->len, ==, 0);
	if (cfg == NULL) {
		fixture_teardown(&f);
		return;
	}
	g_assert_cmpuint(cfg->listeners->len, ==, 4);
	lc = gh_config_listener(cfg, "smtp");
	g_assert_nonnull(lc);
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_SMTP);
	g_assert_false(lc->require_auth);
	assert_host_port(lc->listen, 0, "0.0.0.0", 25);
	lc = gh_config_listener(cfg, "submission");
	g_assert_nonnull(lc);
	g_assert_true(lc->require_auth);
	assert_host_port(lc->listen, 0, "0.0.0.0", 587);
	lc = gh_config_listener(cfg, "imap");
	g_assert_nonnull(lc);
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_IMAP);
	assert_host_port(lc->listen, 0, "0.0.0.0", 143);
	g_assert_cmpint(lc->tls, ==, GH_TLS_NONE);
	lc = gh_config_listener(cfg, "pop3");
	g_assert_nonnull(lc);
	g_assert_cmpint(lc->protocol, ==, GH_PROTO_POP3);
	assert_host_port(lc->listen, 0, "0.0.0.0", 110);
	g_assert_cmpuint(lc->idle_timeout, ==, 600);     /* RFC 1939 3 */
	g_assert_null(gh_config_listener(cfg, "pop3s")); /* commented out, as [tls] */
	g_assert_nonnull(gh_config_auth(cfg, "users"));
	g_assert_null(gh_config_auth(cfg, "ldap")); /* commented out */
	bc = gh_config_backend(cfg, "submission");
	g_assert_nonnull(bc);
	g_assert_cmpint(bc->login, ==, GH_LOGIN_XCLIENT);
	g_assert_nonnull(gh_config_backend(cfg, "mx"));
	g_assert_nonnull(gh_config_backend(cfg, "imap"));
	bc = gh_config_backend(cfg, "pop3");
	g_assert_nonnull(bc);
	g_assert_cmpint(bc->protocol, ==, GH_PROTO_POP3);
	g_assert_true(bc->forward_client);
	fixture_teardown(&f);
}

/* ------------------------------------------------------------ CIDR */

static void
test_cidr(void)
{
	static const struct {
		const char *net;
		gboolean valid;
		guint prefix;
		const char *network; /* the address stored, host bits cleared */
		const char *inside[4];
		const char *outside[4];
	} cases[] = {
	    {"127.0.0.0/8",
	     TRUE,
	     8,
	     "127.0.0.0",
	     {"127.0.0.1", "127.255.255.255", "::ffff:127.1.2.3"},
	     {"128.0.0.1", "126.255.255.255", "::1", "::127.0.0.1"}},
	    {"::1/128", TRUE, 128, "::1", {"::1"}, {"::2", "127.0.0.1", "::"}},
	    {"::1", TRUE, 128, "::1", {"::1"}, {"::"}},
	    {"10.1.2.3", TRUE, 32, "10.1.2.3", {"10.1.2.3", "::ffff:10.1.2.3"}, {"10.1.2.4"}},
	    {"192.168.1.128/25",
	     TRUE,
	     25,
	     "192.168.1.128",
	     {"192.168.1.128", "192.168.1.200", "192.168.1.255"},
	     {"192.168.1.127", "192.168.1.1", "192.168.0.200"}},
	    {"10.9.8.7/8", TRUE, 8, "10.0.0.0", {"10.0.0.1", "10.255.0.0"}, {"11.0.0.0"}},
	    {"0.0.0.0/0",
	     TRUE,
	     0,
	     "0.0.0.0",
	     {"1.2.3.4", "255.255.255.255", "::ffff:8.8.8.8"},
	     {"2001:db8::1", "::"}},
	    {"2001:db8::/32",
	     TRUE,
	     32,
	     "2001:db8::",
	     {"2001:db8::1", "2001:db8:ffff::"},
	     {"2001:db9::", "2001:db7:ffff::", "32.1.13.184"}},
	    {"2001:db8::/33", TRUE, 33, "2001:db8::", {"2001:db8:7fff::1"}, {"2001:db8:8000::"}},
	    {"::ffff:0:0/96", TRUE, 96, "::ffff:0.0.0.0", {"1.2.3.4", "::ffff:1.2.3.4"}, {"::1"}},
	    {"::/0", TRUE, 0, "::", {"::1", "2001:db8::1"}, {NULL}},
	    {"10.0.0.0/33", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"::/129", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"/8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/+8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/-1", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/8/8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/ 8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {" 10.0.0.0/8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0/8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"256.0.0.0/8", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"localhost", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"", FALSE, 0, NULL, {NULL}, {NULL}},
	    {"10.0.0.0/00000008", FALSE, 0, NULL, {NULL}, {NULL}},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		GhCidr net;
		gboolean ok;

		g_test_message("net '%s'", cases[i].net);
		memset(&net, 0xaa, sizeof net);
		ok = gh_cidr_parse(cases[i].net, &net);
		g_assert_cmpint(ok, ==, cases[i].valid);
		if (!ok)
			continue;
		g_assert_cmpuint(net.prefix, ==, cases[i].prefix);
		{
			g_autoptr(GInetAddress) stored =
			    g_inet_address_new_from_bytes(net.addr, net.family);
			g_autofree char *text = g_inet_address_to_string(stored);
			g_assert_cmpstr(text, ==, cases[i].network);
		}
		for (guint j = 0; j < 4 && cases[i].inside[j] != NULL; j++) {
			g_autoptr(GInetAddress) a =
			    g_inet_address_new_from_string(cases[i].inside[j]);
			g_assert_nonnull(a);
			g_test_message("  inside %s", cases[i].inside[j]);
			g_assert_true(gh_cidr_match(&net, a));
		}
		for (guint j = 0; j < 4 && cases[i].outside[j] != NULL; j++) {
			g_autoptr(GInetAddress) a =
			    g_inet_address_new_from_string(cases[i].outside[j]);
			g_assert_nonnull(a);
			g_test_message("  outside %s", cases[i].outside[j]);
			g_assert_false(gh_cidr_match(&net, a));
		}
	}
	g_assert_false(gh_cidr_parse(NULL, &(GhCidr){0}));
}

static void
test_cidr_list(void)
{
	g_autoptr(GArray) nets = g_array_new(FALSE, TRUE, sizeof(GhCidr));
	g_autoptr(GInetAddress) a = g_inet_address_new_from_string("192.0.2.1");
	g_autoptr(GInetAddress) b = g_inet_address_new_from_string("2001:db8::1");
	GhCidr net;

	g_assert_false(gh_cidr_list_match(NULL, a));
	g_assert_false(gh_cidr_list_match(nets, a));
	g_assert_true(gh_cidr_parse("2001:db8::/32", &net));
	g_array_append_val(nets, net);
	g_assert_false(gh_cidr_list_match(nets, a));
	g_assert_true(gh_cidr_list_match(nets, b));
	g_assert_true(gh_cidr_parse("192.0.2.0/24", &net));
	g_array_append_val(nets, net);
	g_assert_true(gh_cidr_list_match(nets, a));
}

/* ------------------------------------------------------------ host:port */

static void
test_host_port(void)
{
	static const struct {
		const char *text;
		const char *host; /* NULL: invalid */
		guint port;
		const char *error;
	} cases[] = {
	    {"1.2.3.4:25", "1.2.3.4", 25, NULL},
	    {"[::1]:143", "::1", 143, NULL},
	    {"[::]:25", "::", 25, NULL},
	    {"[2001:db8::1]:65535", "2001:db8::1", 65535, NULL},
	    {"mail.example.com:587", "mail.example.com", 587, NULL},
	    {"mx_1.example-2.com:1", "mx_1.example-2.com", 1, NULL},
	    {"*:25", "*", 25, NULL},
	    {"0.0.0.0:25", "0.0.0.0", 25, NULL},
	    {"localhost:143", "localhost", 143, NULL},
	    {"1.2.3.4", NULL, 0, "missing port"},
	    {"1.2.3.4:", NULL, 0, "missing port"},
	    {"mail.example.com", NULL, 0, "missing port"},
	    {"[::1]", NULL, 0, "missing port"},
	    {"[::1]:", NULL, 0, "missing port"},
	    {"1.2.3.4:0", NULL, 0, "bad port"},
	    {"1.2.3.4:65536", NULL, 0, "bad port"},
	    {"1.2.3.4:100000", NULL, 0, "bad port"},
	    {"1.2.3.4:x", NULL, 0, "bad port"},
	    {"1.2.3.4:+25", NULL, 0, "bad port"},
	    {"1.2.3.4:-25", NULL, 0, "bad port"},
	    {"1.2.3.4: 25", NULL, 0, "bad port"},
	    {"[::1]:http", NULL, 0, "bad port"},
	    {":25", NULL, 0, "missing host"},
	    {"", NULL, 0, "empty"},
	    {"[::1:143", NULL, 0, "missing ']'"},
	    {"::1:143", NULL, 0, "IPv6 address needs [brackets]"},
	    {"[1.2.3.4]:25", NULL, 0, "bad address"},
	    {"[::g]:25", NULL, 0, "bad address"},
	    {"[::1]x25", NULL, 0, "bad address"},
	    {"999.1.1.1:25", NULL, 0, "bad address"},
	    {"1.2.3:25", NULL, 0, "bad address"},
	    {"bad!host:25", NULL, 0, "bad host name"},
	    {"a..b:25", NULL, 0, "bad host name"},
	    {"host name:25", NULL, 0, "bad host name"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		GhHostPort hp = {0};
		const char *error = NULL;
		gboolean ok;

		g_test_message("'%s'", cases[i].text);
		ok = gh_host_port_parse(cases[i].text, &hp, &error);
		if (cases[i].host != NULL) {
			g_assert_true(ok);
			g_assert_null(error);
			g_assert_cmpstr(hp.host, ==, cases[i].host);
			g_assert_cmpuint(hp.port, ==, cases[i].port);
		} else {
			g_assert_false(ok);
			g_assert_null(hp.host);
			g_assert_cmpstr(error, ==, cases[i].error);
		}
		gh_host_port_clear(&hp);
		g_assert_null(hp.host);
	}
	/* error_out is optional */
	g_assert_false(gh_host_port_parse("x", &(GhHostPort){0}, NULL));
}

/* control_socket: absent is the default, empty is none, relative is refused */
static void
test_control_socket(void)
{
	static const char rest[] = "[listener imap]\nprotocol = imap\nlisten = 127.0.0.1:1143\n"
				   "auth = users\nbackend = imap\n[auth users]\nmodule = file\n"
				   "[backend imap]\nprotocol = imap\nservers = localhost:143\n";
	static const struct {
		const char *line;
		const char *want; /* NULL: refused */
	} cases[] = {
	    {"", "/run/gatehouse/control"},
	    {"control_socket = /srv/gh.sock\n", "/srv/gh.sock"},
	    {"control_socket = /srv/gh.sock   ; a comment\n", "/srv/gh.sock"},
	    {"control_socket =\n", ""},
	    {"control_socket = run/gh.sock\n", NULL},
	};
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		Fixture f;
		g_autofree char *text = g_strdup_printf("[gatehouse]\n%s%s", cases[i].line, rest);
		g_autoptr(GhConfig) cfg = NULL;
		fixture_setup(&f);
		cfg = fixture_load(&f, text);
		dump_problems(&f);
		if (cases[i].want != NULL) {
			g_assert_nonnull(cfg);
			g_assert_cmpstr(cfg->control_socket, ==, cases[i].want);
		} else {
			static const char *const want[] = {
			    "@FILE@:2: [gatehouse] control_socket: 'run/gh.sock' is not an "
			    "absolute path (empty: no control socket)"};
			g_assert_null(cfg);
			assert_problems(&f, want, 1);
		}
		fixture_teardown(&f);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/config/full", test_full);
	g_test_add_func("/gatehouse/config/defaults", test_defaults);
	g_test_add_func("/gatehouse/config/control-socket", test_control_socket);
	g_test_add_func("/gatehouse/config/trusted-empty", test_trusted_empty);
	g_test_add_func("/gatehouse/config/to-string", test_to_string);
	for (guint i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
		g_autofree char *path =
		    g_strdup_printf("/gatehouse/config/bad/%s", bad_cases[i].name);
		g_test_add_data_func(path, &bad_cases[i], test_bad);
	}
	g_test_add_func("/gatehouse/config/problem-order", test_problem_order);
	g_test_add_func("/gatehouse/config/missing-file", test_missing_file);
	g_test_add_func("/gatehouse/config/proxy-keys", test_proxy_keys);
	g_test_add_func("/gatehouse/config/sample", test_sample);
	g_test_add_func("/gatehouse/config/cidr", test_cidr);
	g_test_add_func("/gatehouse/config/cidr-list", test_cidr_list);
	g_test_add_func("/gatehouse/config/host-port", test_host_port);
	return g_test_run();
}
