/*
 * test-users-file.c: the users file parser (good files, every error with its
 * line, the colon split, duplicates, {PLAIN} counting and blanks, lookup)
 * and, when the built `file` module can be found, the module end to end
 * through its ABI: verdicts for yescrypt, SHA-512, bcrypt and {PLAIN} users,
 * init errors, reloads good and bad, concurrent verifies during reloads, and
 * the time an unknown user costs compared with a known one.
 *
 * The module is found at $GH_FILE_MODULE, else at
 * $GH_MODULE_BUILD_DIR/file/.libs/file.so (set by `make check`); with neither
 * variable set the module tests are skipped.  The hashes below were made with
 * crypt_gensalt_rn() + crypt_rn() (libxcrypt) and `openssl passwd -6`, so this
 * program needs no -lcrypt.  Routes are checked with gh_route_valid, the
 * function the core hands the module as GhAuthHost.route_valid.
 */
#include "gh-build.h"

#include "common/route.h"
#include "gh-auth-module.h"
#include "users-file-parse.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <gmodule.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* yes-pass */
#define HASH_YES "$y$j9T$kCIy9PJy80ttkJX9yeoqt.$VRs5DZ24qe64PuvHJSO7XvBlP/xBbgHJLNX.hC6JEK7"
/* sha-pass */
#define HASH_SHA                                                                                   \
	"$6$7KlJ0lpE8wfuJLY.$RJE1uDby0bauoK80ry8vvV74t.OAv8o7bAD4flgOIRgY5TR.zmAx1mIpqidPxzPVozqO" \
	".22KZFMAkTZfXdsUh1"
/* bcrypt-pass, cost 5 */
#define HASH_BCRYPT "$2b$05$APgdr7uHKtRQekq1nFv4q.RrNx1JFeFRQqSzYIh4P.ZPQ0SK6weGO"
/* ossl-pass, by `openssl passwd -6` */
#define HASH_OSSL                                                                                  \
	"$6$Xy9kLmN0pQ$ShO3ISX5KVi.YxVwu4v5B3o/QRViPdPrSLXPK5pVY6i9e5.BoWP84XFJ0YlHNref2hJN08Q0g"  \
	"WP7ziGQ5YN6m1"
/* new-pass, 1000 rounds */
#define HASH_NEW                                                                                   \
	"$6$rounds=1000$XaiSQ8JVsR4hRwcm$5Cs9wWJ3fL9jbKItpb77HCPCo9zLLrATxnngl/bE6kgzRoBuiM5ud"    \
	"ctXB1ckcDadmJVjlUCGrTP.wePcCHxrn0"

#define DOMAIN "gh-auth-file"

/* ================================================================ parser */

static GhUsersFile *
parse(const char *text, guint *line_out, GError **error)
{
	return gh_users_file_parse(text, strlen(text), gh_route_valid, line_out, error);
}

static void
test_parse_good(void)
{
	static const char text[] =
	    "# gatehouse users\n"
	    "\n"
	    "   # an indented comment\n"
	    "alice:" HASH_YES "\r\n"
	    "bob:" HASH_SHA ":user=bob@example.com route=10.0.0.5:143\n"
	    "\t \r\n"
	    "carol:" HASH_BCRYPT ":route=[2001:db8::7]:993\n"
	    "  dave : " HASH_NEW " :  route=mail-2.example.com:587   user=d  \n"
	    "erin:{PLAIN}two words here\n"
	    "frank:" HASH_OSSL ":\n"
	    "gina:" HASH_SHA; /* no newline at the end */
	g_autoptr(GError) error = NULL;
	guint line = 99;
	g_autoptr(GhUsersFile) uf = parse(text, &line, &error);
	const GhUserEntry *e;

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	g_assert_cmpuint(line, ==, 0);
	g_assert_cmpuint(uf->n_users, ==, 7);
	g_assert_cmpuint(uf->n_plain, ==, 1);
	g_assert_cmpuint(g_hash_table_size(uf->users), ==, 7);

	e = gh_users_file_lookup(uf, "alice");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->name, ==, "alice");
	g_assert_cmpint(e->kind, ==, GH_HASH_CRYPT);
	g_assert_cmpstr(e->hash, ==, HASH_YES); /* the CR is not part of it */
	g_assert_null(e->route);
	g_assert_null(e->user);
	g_assert_cmpuint(e->line, ==, 4);

	e = gh_users_file_lookup(uf, "bob");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, HASH_SHA);
	g_assert_cmpstr(e->user, ==, "bob@example.com");
	g_assert_cmpstr(e->route, ==, "10.0.0.5:143");
	g_assert_cmpuint(e->line, ==, 5);

	e = gh_users_file_lookup(uf, "carol");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, HASH_BCRYPT);
	g_assert_cmpstr(e->route, ==, "[2001:db8::7]:993");
	g_assert_null(e->user);
	g_assert_cmpuint(e->line, ==, 7);

	e = gh_users_file_lookup(uf, "dave");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, HASH_NEW);
	g_assert_cmpstr(e->route, ==, "mail-2.example.com:587");
	g_assert_cmpstr(e->user, ==, "d");
	g_assert_cmpuint(e->line, ==, 8);

	e = gh_users_file_lookup(uf, "erin");
	g_assert_nonnull(e);
	g_assert_cmpint(e->kind, ==, GH_HASH_PLAIN);
	g_assert_cmpstr(e->hash, ==, "two words here");
	g_assert_cmpuint(e->line, ==, 9);

	e = gh_users_file_lookup(uf, "frank");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, HASH_OSSL);
	g_assert_null(e->route);

	e = gh_users_file_lookup(uf, "gina");
	g_assert_nonnull(e);
	g_assert_cmpuint(e->line, ==, 11);
}

#define ALICE "alice:" HASH_SHA
#define ROUTE_WANT "(want HOST, HOST:PORT, [IPv6] or [IPv6]:PORT)"
#define ROUTE_ERR(r) "line 1: bad route '" r "' " ROUTE_WANT
#define NOT_CRYPT(n) "line " #n ": hash is not a crypt(3) string or {PLAIN}password"
#define DES_ERR                                                                                    \
	"line 1: DES crypt(3) hashes are not supported (too weak): make a new hash with "          \
	"gatehousectl hash-password"

static void
test_parse_errors(void)
{
	static const struct {
		const char *text;
		guint line;
		const char *reason; /* the whole message */
		const char *secret; /* must not appear in the message */
	} cases[] = {
	    {"alice\n", 1, "line 1: missing ':' after the user name", NULL},
	    {"# c\n\n\nalice " HASH_YES "\n", 4, "line 4: missing ':' after the user name",
	     "kCIy9"},
	    {"alice:" HASH_YES "\n\n\n\n\n\nbob:\n", 7, "line 7: empty hash", NULL},
	    {"bob:  :route=a:1\n", 1, "line 1: empty hash", NULL},
	    {":" HASH_YES "\n", 1, "line 1: empty user name", "kCIy9"},
	    {"al ice:" HASH_YES "\n", 1, "line 1: user name contains white space", "kCIy9"},
	    {"al\tice:" HASH_YES "\n", 1, "line 1: user name contains white space", NULL},
	    {"al\001ice:" HASH_YES "\n", 1, "line 1: user name contains a control character", NULL},
	    {"a\nb\nc\nd\ne\nf\ng\nh\nalice:" HASH_SHA ":foo=bar\n", 1,
	     "line 1: missing ':' after the user name", NULL},
	    {"#\n#\n#\n#\n#\n#\n#\n#\nalice:" HASH_SHA ":foo=bar\n", 9,
	     "line 9: unknown attribute 'foo'", "7KlJ0"},
	    {"#\n#\n#\n#\n#\n#\n#\n#\nalice:" HASH_SHA ":route=x:\n", 9,
	     "line 9: bad route 'x:' " ROUTE_WANT, "7KlJ0"},
	    {ALICE ":route=host:0\n", 1, ROUTE_ERR("host:0"), NULL},
	    {ALICE ":route=host:65536\n", 1, ROUTE_ERR("host:65536"), NULL},
	    {ALICE ":route=host:\n", 1, ROUTE_ERR("host:"), NULL},
	    {ALICE ":route=:143\n", 1, ROUTE_ERR(":143"), NULL},
	    {ALICE ":route=host:1a\n", 1, ROUTE_ERR("host:1a"), NULL},
	    {ALICE ":route=-host:143\n", 1, ROUTE_ERR("-host:143"), NULL},
	    {ALICE ":route=::1:143\n", 1, ROUTE_ERR("::1:143"), NULL},
	    {ALICE ":route=[::1]143\n", 1, ROUTE_ERR("[::1]143"), NULL},
	    {ALICE ":route=[::1]:\n", 1, ROUTE_ERR("[::1]:"), NULL},
	    {ALICE ":route=[::1\n", 1, ROUTE_ERR("[::1"), NULL},
	    {ALICE ":route=[]:143\n", 1, ROUTE_ERR("[]:143"), NULL},
	    {ALICE ":route=[10.0.0.1]:143\n", 1, ROUTE_ERR("[10.0.0.1]:143"), NULL},
	    {ALICE ":route=[zz::1]:143\n", 1, ROUTE_ERR("[zz::1]:143"), NULL},
	    {ALICE ":route=::1\n", 1, ROUTE_ERR("::1"), NULL},
	    {ALICE ":route=[::1]x\n", 1, ROUTE_ERR("[::1]x"), NULL},
	    {ALICE ":route=-host\n", 1, ROUTE_ERR("-host"), NULL},
	    {ALICE ":route=.host\n", 1, ROUTE_ERR(".host"), NULL},
	    {ALICE ":route=[10.0.0.1]\n", 1, ROUTE_ERR("[10.0.0.1]"), NULL},
	    {ALICE ":route=a:1 route=b:2\n", 1, "line 1: attribute 'route' given twice", NULL},
	    {ALICE ":user=a user=b\n", 1, "line 1: attribute 'user' given twice", NULL},
	    {ALICE ":user=\n", 1, "line 1: empty value for attribute 'user'", NULL},
	    {ALICE ":user=a\001b\n", 1, "line 1: attribute 'user' contains a control character",
	     NULL},
	    {ALICE ":route\n", 1, "line 1: bad attribute 'route' (want key=value)", NULL},
	    {ALICE ":=x\n", 1, "line 1: bad attribute '=x' (want key=value)", NULL},
	    {"alice:" HASH_YES "\nbob:" HASH_SHA "\nalice:" HASH_BCRYPT "\n", 3,
	     "line 3: user 'alice' given twice (first on line 1)", "APgdr7"},
	    {"#\n#\n#\n#\nalice:s3cr3t-pw\n", 5, NOT_CRYPT(5), "s3cr3t"},
	    {"alice:$nodollar\n", 1, NOT_CRYPT(1), "nodollar"},
	    {"alice:$y$ab cd$ef\n", 1, NOT_CRYPT(1), "ab cd"},
	    {"alice:$y$ab\001cd$ef\n", 1, NOT_CRYPT(1), "cd$ef"},
	    {"alice:!" HASH_YES "\n", 1, NOT_CRYPT(1), "kCIy9"},
	    {"alice:{plain}secret\n", 1, NOT_CRYPT(1), "secret"},
	    {"alice:abJnggxhB/yWI\n", 1, DES_ERR, "abJngg"},
	    {"alice:_J9..K0AyUubDrfOgO4s\n", 1, DES_ERR, "K0AyU"},
	    {"alice:{PLAIN}\n", 1, "line 1: empty password after {PLAIN}", NULL},
	    /* A {PLAIN} password cut at its ':': the rest is never quoted. */
	    {"alice:{PLAIN}abc:zq9x\n", 1,
	     "line 1: bad attribute "
	     "(want key=value; a {PLAIN} password cannot contain ':')",
	     "zq9x"},
	    {"alice:{PLAIN}abc:zq9=x\n", 1,
	     "line 1: unknown attribute (a {PLAIN} password cannot contain ':')", "zq9"},
	    {"alice:{PLAIN}abc:route=zq9:\n", 1, "line 1: bad route " ROUTE_WANT, "zq9"},
	    /* Unprintable: not quoted. */
	    {ALICE ":k\001=v\n", 1, "line 1: unknown attribute", NULL},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		guint line = 0;
		g_autoptr(GhUsersFile) uf = parse(cases[i].text, &line, &error);

		g_test_message("case %u: %s", i, cases[i].reason);
		g_assert_null(uf);
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
		g_assert_cmpuint(line, ==, cases[i].line);
		if (error == NULL)
			continue;
		g_assert_cmpstr(error->message, ==, cases[i].reason);
		if (cases[i].secret != NULL)
			g_assert_null(strstr(error->message, cases[i].secret));
	}
}

static void
test_parse_nul(void)
{
	static const char text[] = "alice:" HASH_YES "\nbob:{PLAIN}a\0b\n";
	g_autoptr(GError) error = NULL;
	guint line = 0;
	g_autoptr(GhUsersFile) uf =
	    gh_users_file_parse(text, sizeof text - 1, gh_route_valid, &line, &error);

	g_assert_null(uf);
	g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
	g_assert_cmpuint(line, ==, 2);
	g_assert_cmpstr(error != NULL ? error->message : NULL, ==,
			"line 2: the line contains a NUL byte");
}

/* Only the first two colons split; the rest belongs to the attributes. */
static void
test_parse_colons(void)
{
	static const char text[] = "a:" HASH_YES ":route=[::1]:143\n"
				   "b:" HASH_SHA ":user=b route=[fe80::1:2:3]:10143\n"
				   "c:{PLAIN}p=w:user=c\n"
				   "d:{PLAIN}a b c\n";
	g_autoptr(GError) error = NULL;
	g_autoptr(GhUsersFile) uf = parse(text, NULL, &error);
	const GhUserEntry *e;

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	e = gh_users_file_lookup(uf, "a");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, HASH_YES);
	g_assert_cmpstr(e->route, ==, "[::1]:143");
	e = gh_users_file_lookup(uf, "b");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->route, ==, "[fe80::1:2:3]:10143");
	g_assert_cmpstr(e->user, ==, "b");
	e = gh_users_file_lookup(uf, "c");
	g_assert_nonnull(e);
	g_assert_cmpint(e->kind, ==, GH_HASH_PLAIN);
	g_assert_cmpstr(e->hash, ==, "p=w");
	g_assert_cmpstr(e->user, ==, "c");
	e = gh_users_file_lookup(uf, "d");
	g_assert_nonnull(e);
	g_assert_cmpstr(e->hash, ==, "a b c");
	g_assert_cmpuint(uf->n_plain, ==, 2);
}

/* Blanks around a {PLAIN} password are the field's, not the password's:
 * "{PLAIN} pw" is "pw", as gatehouse.conf(5) says such a password cannot
 * begin or end with a blank (found by tests/fuzz/fuzz-users-file: the
 * blanks after the prefix were kept). */
static void
test_parse_plain_blanks(void)
{
	static const char text[] = "a:{PLAIN} pw\n"
				   "b:  {PLAIN}\t pw b \r\n"
				   "c:{PLAIN} p w :user=c\n";
	g_autoptr(GError) error = NULL;
	g_autoptr(GhUsersFile) uf = parse(text, NULL, &error);
	guint line = 0;
	GhUsersFile *bad;

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	g_assert_cmpstr(gh_users_file_lookup(uf, "a")->hash, ==, "pw");
	g_assert_cmpstr(gh_users_file_lookup(uf, "b")->hash, ==, "pw b");
	g_assert_cmpstr(gh_users_file_lookup(uf, "c")->hash, ==, "p w");
	g_assert_cmpstr(gh_users_file_lookup(uf, "c")->user, ==, "c");

	/* only blanks after the prefix: no password at all */
	bad = parse("a:{PLAIN} \t \n", &line, &error);
	g_assert_null(bad);
	g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
	g_assert_cmpstr(error->message, ==, "line 1: empty password after {PLAIN}");
	g_assert_cmpuint(line, ==, 1);
}

/* Routes without a port, as directories keep mail hosts: kept as written
 * (the connector adds the backend's port). */
static void
test_parse_routes_without_port(void)
{
	static const char text[] = "a:" HASH_YES ":route=127.0.0.1\n"
				   "b:" HASH_SHA ":route=imap2.example.test user=b\n"
				   "c:{PLAIN}pw:route=[::1]\n"
				   "d:{PLAIN}pw:route=[2001:db8::7]:993\n";
	static const struct {
		const char *name, *route;
	} want[] = {
	    {"a", "127.0.0.1"},
	    {"b", "imap2.example.test"},
	    {"c", "[::1]"},
	    {"d", "[2001:db8::7]:993"},
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(GhUsersFile) uf = parse(text, NULL, &error);

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	for (guint i = 0; uf != NULL && i < G_N_ELEMENTS(want); i++) {
		const GhUserEntry *e = gh_users_file_lookup(uf, want[i].name);

		g_assert_nonnull(e);
		g_assert_cmpstr(e->route, ==, want[i].route);
	}
}

static void
test_parse_plain_count(void)
{
	static const struct {
		const char *text;
		guint n_users;
		guint n_plain;
	} cases[] = {
	    {"", 0, 0},
	    {"\n\n# only comments\n   \n", 0, 0},
	    {"a:" HASH_YES "\n", 1, 0},
	    {"a:{PLAIN}x\n", 1, 1},
	    {"a:{PLAIN}x\nb:" HASH_SHA "\nc:{PLAIN}y:route=h:1\n", 3, 2},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(GhUsersFile) uf = parse(cases[i].text, NULL, &error);

		g_assert_no_error(error);
		g_assert_nonnull(uf);
		if (uf == NULL)
			continue;
		g_assert_cmpuint(uf->n_users, ==, cases[i].n_users);
		g_assert_cmpuint(uf->n_plain, ==, cases[i].n_plain);
		g_assert_cmpuint(g_hash_table_size(uf->users), ==, cases[i].n_users);
	}
}

static void
test_parse_empty(void)
{
	g_autoptr(GError) error = NULL;
	guint line = 7;
	g_autoptr(GhUsersFile) uf = gh_users_file_parse(NULL, 0, gh_route_valid, &line, &error);

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	g_assert_cmpuint(line, ==, 0);
	g_assert_cmpuint(uf->n_users, ==, 0);
	g_assert_null(gh_users_file_lookup(uf, "alice"));
}

/* The parser reads `len` bytes, not up to a NUL. */
static void
test_parse_length(void)
{
	static const char text[] = "alice:" HASH_YES "\nbob:garbage";
	g_autoptr(GError) error = NULL;
	g_autoptr(GhUsersFile) uf = gh_users_file_parse(text, strlen(text) - strlen("bob:garbage"),
							gh_route_valid, NULL, &error);

	g_assert_no_error(error);
	g_assert_nonnull(uf);
	g_assert_cmpuint(uf->n_users, ==, 1);
}

static void
test_parse_lookup(void)
{
	static const char text[] = "alice:" HASH_YES "\nAlice:{PLAIN}x\n";
	g_autoptr(GhUsersFile) uf = parse(text, NULL, NULL);

	g_assert_nonnull(uf);
	g_assert_nonnull(gh_users_file_lookup(uf, "alice"));
	g_assert_cmpint(gh_users_file_lookup(uf, "alice")->kind, ==, GH_HASH_CRYPT);
	g_assert_cmpint(gh_users_file_lookup(uf, "Alice")->kind, ==, GH_HASH_PLAIN);
	g_assert_null(gh_users_file_lookup(uf, "ALICE"));
	g_assert_null(gh_users_file_lookup(uf, "alic"));
	g_assert_null(gh_users_file_lookup(uf, ""));
	g_assert_null(gh_users_file_lookup(uf, NULL));
	g_assert_null(gh_users_file_lookup(NULL, "alice"));
	gh_users_file_free(NULL);
}

/* ================================================================ module */

typedef struct {
	GhAuthHost host;
	gint data_changed;
	char *error_key;
} TestHost;

static GModule *module_handle;
static const GhAuthModule *module_desc;

static void test_host_config_error(const GhAuthHost *host,
				   GError **error,
				   const char *group,
				   const char *key,
				   const char *format,
				   ...) G_GNUC_PRINTF(5, 6);

static void
test_host_config_error(const GhAuthHost *host,
		       GError **error,
		       const char *group,
		       const char *key,
		       const char *format,
		       ...)
{
	TestHost *th = host->priv;
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, format);
	msg = g_strdup_vprintf(format, ap);
	va_end(ap);
	g_free(th->error_key);
	th->error_key = g_strdup(key);
	g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
		    "test.conf:3: [%s] %s: %s", group, key != NULL ? key : "", msg);
}

static void
test_host_data_changed(const GhAuthHost *host)
{
	TestHost *th = host->priv;
	g_atomic_int_inc(&th->data_changed);
}

static void
test_host_init(TestHost *th)
{
	memset(th, 0, sizeof *th);
	th->host.struct_size = sizeof th->host;
	th->host.config_error = test_host_config_error;
	th->host.data_changed = test_host_data_changed;
	th->host.priv = th;
	th->host.route_valid = gh_route_valid;
}

static void
test_host_clear(TestHost *th)
{
	g_clear_pointer(&th->error_key, g_free);
}

/* The built module, or NULL after marking the test skipped (no module named
 * by the environment) or failed (named but not loadable). */
static const GhAuthModule *
get_module(void)
{
	const char *path = g_getenv("GH_FILE_MODULE");
	g_autofree char *built = NULL;
	gpointer sym = NULL;

	if (module_desc != NULL)
		return module_desc;
	if (path == NULL && g_getenv("GH_MODULE_BUILD_DIR") != NULL) {
		built = g_build_filename(g_getenv("GH_MODULE_BUILD_DIR"), "file", ".libs",
					 "file.so", NULL);
		path = built;
	}
	if (path == NULL) {
		g_test_skip("set GH_FILE_MODULE or GH_MODULE_BUILD_DIR to test the module");
		return NULL;
	}
	module_handle = g_module_open(path, G_MODULE_BIND_LOCAL);
	if (module_handle == NULL) {
		g_test_fail_printf("cannot load %s: %s", path, g_module_error());
		return NULL;
	}
	if (!g_module_symbol(module_handle, "gh_auth_module", &sym) || sym == NULL) {
		g_test_fail_printf("%s exports no gh_auth_module", path);
		return NULL;
	}
	module_desc = sym;
	return module_desc;
}

typedef struct {
	char *dir;
	char *path;
} TmpUsers;

static void
tmp_users_write(TmpUsers *t, const char *text)
{
	g_autoptr(GError) error = NULL;

	if (t->dir == NULL) {
		t->dir = g_dir_make_tmp("gh-users-XXXXXX", &error);
		g_assert_no_error(error);
		t->path = g_build_filename(t->dir, "users", NULL);
	}
	/* Written to a new file renamed over the old one, as editors and
	 * configuration tools do. */
	g_file_set_contents(t->path, text, -1, &error);
	g_assert_no_error(error);
}

static void
tmp_users_clear(TmpUsers *t)
{
	if (t->path != NULL)
		g_unlink(t->path);
	if (t->dir != NULL)
		g_rmdir(t->dir);
	g_clear_pointer(&t->path, g_free);
	g_clear_pointer(&t->dir, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TmpUsers, tmp_users_clear)

static gpointer
module_init(const GhAuthModule *m, TestHost *th, const char *path, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();

	if (path != NULL)
		g_key_file_set_string(kf, "auth users", "path", path);
	return m->init(&th->host, kf, "auth users", error);
}

static void
result_clear(GhAuthResult *r)
{
	g_clear_pointer(&r->canonical_user, g_free);
	g_clear_pointer(&r->route, g_free);
	g_clear_pointer(&r->reason, g_free);
}

static GhAuthVerdict
module_verify(const GhAuthModule *m,
	      gpointer state,
	      const char *user,
	      const char *password,
	      GhAuthResult *result)
{
	GhAuthRequest req = {
	    .user = user,
	    .password = password,
	    .password_len = strlen(password),
	    .service = "imap",
	    .listener = "imap",
	    .remote_addr = "192.0.2.1",
	    .remote_port = 50000,
	    .local_addr = "127.0.0.1",
	    .local_port = 143,
	    .tls = TRUE,
	    .session_id = "test",
	};

	result_clear(result);
	return m->verify(state, &req, result);
}

static const char users_text[] = "# test users\n"
				 "yes:" HASH_YES ":user=yes@example.com route=10.0.0.5:143\n"
				 "sha:" HASH_SHA "\n"
				 "bcrypt:" HASH_BCRYPT ":route=[2001:db8::5]:993\n"
				 "plain:{PLAIN}plain-pass\n"
				 "ossl:" HASH_OSSL "\n";

static void
expect_loaded(const char *path, guint n_users, guint n_plain, gboolean reload)
{
	g_autofree char *loaded =
	    reload ? g_strdup_printf("users file %s reloaded: %u users", path, n_users)
		   : g_strdup_printf("users file %s: %u users loaded", path, n_users);

	g_test_expect_message(DOMAIN, G_LOG_LEVEL_MESSAGE, loaded);
	if (n_plain > 0) {
		g_autofree char *warn = g_strdup_printf(
		    "users file %s: %u entries use {PLAIN} passwords; use crypt hashes "
		    "(gatehousectl hash-password)",
		    path, n_plain);
		g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, warn);
	}
}

/* The module set up on a new users file holding `text`, whose load logs
 * n_users and n_plain; NULL when that failed (and so did the test). */
static gpointer
module_start(const GhAuthModule *m,
	     TestHost *th,
	     TmpUsers *t,
	     const char *text,
	     guint n_users,
	     guint n_plain)
{
	g_autoptr(GError) error = NULL;
	gpointer st;

	tmp_users_write(t, text);
	expect_loaded(t->path, n_users, n_plain, FALSE);
	st = module_init(m, th, t->path, &error);
	g_test_assert_expected_messages();
	g_assert_no_error(error);
	g_assert_nonnull(st);
	return st;
}

static void
test_module_descriptor(void)
{
	const GhAuthModule *m = get_module();

	if (m == NULL)
		return;
	g_assert_cmpuint(m->abi_version, ==, GH_AUTH_MODULE_ABI);
	g_assert_cmpuint(m->struct_size, ==, sizeof(GhAuthModule));
	g_assert_cmpstr(m->name, ==, "file");
	g_assert_cmpuint(m->flags, ==, GH_AUTH_MODULE_THREAD_SAFE);
	g_assert_nonnull(m->keys);
	g_assert_cmpstr(m->keys[0], ==, "path");
	g_assert_null(m->keys[1]);
	g_assert_nonnull(m->init);
	g_assert_nonnull(m->refresh);
	g_assert_nonnull(m->verify);
	g_assert_nonnull(m->deinit);
}

static void
test_module_verify(void)
{
	static const struct {
		const char *user;
		const char *password;
		GhAuthVerdict verdict;
		const char *canonical;
		const char *route;
		const char *reason;
	} cases[] = {
	    {"yes", "yes-pass", GH_AUTH_OK, "yes@example.com", "10.0.0.5:143", NULL},
	    {"yes", "yes-pasS", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"yes", "", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"sha", "sha-pass", GH_AUTH_OK, NULL, NULL, NULL},
	    {"sha", "yes-pass", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"bcrypt", "bcrypt-pass", GH_AUTH_OK, NULL, "[2001:db8::5]:993", NULL},
	    {"bcrypt", "bcrypt-pas", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"plain", "plain-pass", GH_AUTH_OK, NULL, NULL, NULL},
	    {"plain", "plain-pass ", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"plain", "plain-pas", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"ossl", "ossl-pass", GH_AUTH_OK, NULL, NULL, NULL},
	    {"ossl", "sha-pass", GH_AUTH_WRONG_PASSWORD, NULL, NULL, "wrong password"},
	    {"nobody", "yes-pass", GH_AUTH_UNKNOWN_USER, NULL, NULL, "unknown user"},
	    {"Yes", "yes-pass", GH_AUTH_UNKNOWN_USER, NULL, NULL, "unknown user"},
	};
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	GhAuthResult res = {NULL, NULL, NULL};
	TestHost th;
	gpointer st;

	if (m == NULL)
		return;
	test_host_init(&th);
	st = module_start(m, &th, &t, users_text, 5, 1);

	for (guint i = 0; st != NULL && i < G_N_ELEMENTS(cases); i++) {
		GhAuthVerdict v = module_verify(m, st, cases[i].user, cases[i].password, &res);

		g_test_message("case %u: %s", i, cases[i].user);
		g_assert_cmpint(v, ==, cases[i].verdict);
		g_assert_cmpstr(res.canonical_user, ==, cases[i].canonical);
		g_assert_cmpstr(res.route, ==, cases[i].route);
		g_assert_cmpstr(res.reason, ==, cases[i].reason);
	}
	/* A password crypt(3) cannot take (> 511 bytes) is simply wrong. */
	if (st != NULL) {
		g_autofree char *longpw = g_strnfill(600, 'x');
		g_assert_cmpint(module_verify(m, st, "yes", longpw, &res), ==,
				GH_AUTH_WRONG_PASSWORD);
		g_assert_cmpint(module_verify(m, st, "nobody", longpw, &res), ==,
				GH_AUTH_UNKNOWN_USER);
	}
	result_clear(&res);
	g_assert_cmpint(th.data_changed, ==, 0);
	if (st != NULL)
		m->deinit(st);
	test_host_clear(&th);
}

static void
test_module_init_errors(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	g_autofree char *missing = NULL;
	g_autofree char *want = NULL;
	TestHost th;

	if (m == NULL)
		return;
	test_host_init(&th);
	tmp_users_write(&t, "# users\nalice:" HASH_YES "\nbob " HASH_SHA "\n");
	missing = g_build_filename(t.dir, "no-such-file", NULL);

	{
		g_autoptr(GError) error = NULL;
		g_assert_null(module_init(m, &th, NULL, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_cmpstr(th.error_key, ==, "path");
	}
	{
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		g_assert_null(module_init(m, &th, "   ", &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_cmpstr(th.error_key, ==, "path");
	}
	{
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		g_assert_null(module_init(m, &th, missing, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_cmpstr(th.error_key, ==, "path");
		g_free(want);
		want = g_strdup_printf("*users file %s: cannot open: *", missing);
		g_assert_true(g_pattern_match_simple(want, error->message));
	}
	{
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		g_assert_null(module_init(m, &th, t.dir, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_nonnull(strstr(error->message, "not a regular file"));
	}
	{
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		g_assert_null(module_init(m, &th, t.path, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_cmpstr(th.error_key, ==, "path");
		g_free(want);
		want = g_strdup_printf("test.conf:3: [auth users] path: users file %s line 3: "
				       "missing ':' after the user name",
				       t.path);
		g_assert_cmpstr(error->message, ==, want);
		g_assert_null(strstr(error->message, "7KlJ0"));
	}
	{
		/* routes are checked with the host's route_valid */
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		tmp_users_write(&t, "alice:" HASH_YES ":route=[::1]:0\n");
		g_assert_null(module_init(m, &th, t.path, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_free(want);
		want = g_strdup_printf("test.conf:3: [auth users] path: users file %s line 1: "
				       "bad route '[::1]:0' " ROUTE_WANT,
				       t.path);
		g_assert_cmpstr(error->message, ==, want);
	}
	{
		/* a core older than route_valid: refused, not called */
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&th.error_key, g_free);
		tmp_users_write(&t, "alice:" HASH_YES "\n");
		th.host.struct_size = G_STRUCT_OFFSET(GhAuthHost, route_valid);
		th.host.route_valid = NULL;
		g_assert_null(module_init(m, &th, t.path, &error));
		g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
		g_assert_nonnull(strstr(error->message, "needs a newer gatehouse"));
	}
	test_host_clear(&th);
}

/* The first check after a change only notes it (the file may still be
 * being written): nothing read, nothing logged, the old contents stay. */
static void
refresh_sees_change(const GhAuthModule *m, gpointer st)
{
	g_autoptr(GError) error = NULL;

	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);
	g_assert_no_error(error);
}

static void
test_module_refresh(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	g_autoptr(GError) error = NULL;
	g_autofree char *pattern = NULL;
	GhAuthResult res = {NULL, NULL, NULL};
	TestHost th;
	gpointer st;

	if (m == NULL)
		return;
	test_host_init(&th);
	st = module_start(m, &th, &t, "sha:" HASH_SHA "\n", 1, 0);
	if (st == NULL)
		return;

	/* Unchanged: nothing to do. */
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);
	g_assert_no_error(error);
	g_assert_cmpint(th.data_changed, ==, 0);

	/* Rewritten: the new contents are in force, the cache is told. */
	tmp_users_write(&t, "sha:" HASH_NEW ":route=10.1.1.1:143\nother:{PLAIN}o-pass\n");
	refresh_sees_change(m, st);
	g_assert_cmpint(th.data_changed, ==, 0);
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	expect_loaded(t.path, 2, 1, TRUE);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_no_error(error);
	g_assert_cmpint(th.data_changed, ==, 1);
	g_assert_cmpint(module_verify(m, st, "sha", "new-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpstr(res.route, ==, "10.1.1.1:143");
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_WRONG_PASSWORD);
	g_assert_cmpint(module_verify(m, st, "other", "o-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);

	/* Broken: -1, one warning, the old contents stay. */
	tmp_users_write(&t, "sha:" HASH_SHA "\n\nbroken line\n");
	pattern = g_strdup_printf("users file %s: line 3: missing ':' after the user name; "
				  "keeping the previous contents (2 users)",
				  t.path);
	refresh_sees_change(m, st);
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, pattern);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, -1);
	g_test_assert_expected_messages();
	g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
	g_clear_error(&error);
	g_assert_cmpint(th.data_changed, ==, 1);
	g_assert_cmpint(module_verify(m, st, "sha", "new-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpint(module_verify(m, st, "other", "o-pass", &res), ==, GH_AUTH_OK);

	/* The same broken file is not reported every second (an unexpected
	 * warning would abort this test)... */
	for (guint i = 0; i < 3; i++) {
		g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);
		g_assert_no_error(error);
	}
	/* ...but a forced reload (SIGHUP) reports it again... */
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, pattern);
	g_assert_cmpint(m->refresh(st, TRUE, &error), ==, -1);
	g_test_assert_expected_messages();
	g_clear_error(&error);
	/* ...and so does a further change. */
	tmp_users_write(&t, "sha:" HASH_SHA ":colour=blue\n");
	g_free(pattern);
	pattern = g_strdup_printf("users file %s: line 1: unknown attribute 'colour'; "
				  "keeping the previous contents (2 users)",
				  t.path);
	refresh_sees_change(m, st);
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, pattern);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, -1);
	g_test_assert_expected_messages();
	g_assert_nonnull(error);
	if (error != NULL)
		g_assert_cmpstr(strstr(error->message, "line 1: unknown attribute 'colour'"), !=,
				NULL);
	g_clear_error(&error);

	/* Missing: the same as broken. */
	g_unlink(t.path);
	g_free(pattern);
	pattern = g_strdup_printf("users file %s: cannot open: *; keeping the previous "
				  "contents (2 users)",
				  t.path);
	refresh_sees_change(m, st);
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, pattern);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, -1);
	g_test_assert_expected_messages();
	g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	g_clear_error(&error);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);
	g_assert_cmpint(module_verify(m, st, "sha", "new-pass", &res), ==, GH_AUTH_OK);

	/* Back, good: in force again. */
	tmp_users_write(&t, "sha:" HASH_SHA "\n");
	refresh_sees_change(m, st);
	expect_loaded(t.path, 1, 0, TRUE);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_no_error(error);
	g_assert_cmpint(th.data_changed, ==, 2);
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpint(module_verify(m, st, "other", "o-pass", &res), ==, GH_AUTH_UNKNOWN_USER);

	/* A forced reload of an unchanged good file reloads. */
	expect_loaded(t.path, 1, 0, TRUE);
	g_assert_cmpint(m->refresh(st, TRUE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(th.data_changed, ==, 3);

	result_clear(&res);
	m->deinit(st);
	test_host_clear(&th);
}

/* Written in place (as `cat > users` or an editor that does not rename):
 * opened with O_TRUNC, then written.  A check between the two finds an
 * empty file, which must not replace the users in force. */
static void
write_in_place(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

	g_assert_cmpint(fd, >=, 0);
	if (*text != '\0')
		g_assert_cmpint(write(fd, text, strlen(text)), ==, (gssize)strlen(text));
	close(fd);
}

static void
test_module_refresh_in_place(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	g_autoptr(GError) error = NULL;
	GhAuthResult res = {NULL, NULL, NULL};
	TestHost th;
	gpointer st;

	if (m == NULL)
		return;
	test_host_init(&th);
	st = module_start(m, &th, &t, "sha:" HASH_SHA "\n", 1, 0);
	if (st == NULL)
		return;

	/* Caught truncated: noted, not read; the user can still log in. */
	write_in_place(t.path, "");
	refresh_sees_change(m, st);
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	/* Written by the next check: changed again, still not read... */
	write_in_place(t.path, "sha:" HASH_NEW "\n");
	refresh_sees_change(m, st);
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpint(th.data_changed, ==, 0);
	/* ...and read by the one after, which finds it unchanged. */
	expect_loaded(t.path, 1, 0, TRUE);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_no_error(error);
	g_assert_cmpint(th.data_changed, ==, 1);
	g_assert_cmpint(module_verify(m, st, "sha", "new-pass", &res), ==, GH_AUTH_OK);

	/* A file left empty for two checks is what the admin wrote: read. */
	write_in_place(t.path, "");
	refresh_sees_change(m, st);
	expect_loaded(t.path, 0, 0, TRUE);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(module_verify(m, st, "sha", "new-pass", &res), ==, GH_AUTH_UNKNOWN_USER);

	/* A forced reload (SIGHUP) does not wait for a second check. */
	write_in_place(t.path, "sha:" HASH_SHA "\n");
	expect_loaded(t.path, 1, 0, TRUE);
	g_assert_cmpint(m->refresh(st, TRUE, &error), ==, 1);
	g_test_assert_expected_messages();
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	g_assert_cmpint(m->refresh(st, FALSE, &error), ==, 0);

	result_clear(&res);
	m->deinit(st);
	test_host_clear(&th);
}

static void
test_module_unsupported(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	g_autoptr(GError) error = NULL;
	g_autofree char *pattern = NULL;
	GhAuthResult res = {NULL, NULL, NULL};
	TestHost th;
	gpointer st;

	if (m == NULL)
		return;
	test_host_init(&th);
	tmp_users_write(&t, "odd:$unknown$salt$hash\nsha:" HASH_SHA "\n");
	pattern = g_strdup_printf("users file %s line 1: the hash of user 'odd' is not "
				  "supported by this system's crypt(3); that user cannot log in",
				  t.path);
	/* The hash table's order decides which comes first: load logs the
	 * count after the per-user check. */
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_MESSAGE, "*: 2 users loaded");
	g_test_expect_message(DOMAIN, G_LOG_LEVEL_WARNING, pattern);
	st = module_init(m, &th, t.path, &error);
	g_test_assert_expected_messages();
	g_assert_no_error(error);
	g_assert_nonnull(st);
	if (st == NULL)
		return;
	/* Already reported at load: no warning per login. */
	for (guint i = 0; i < 2; i++) {
		g_assert_cmpint(module_verify(m, st, "odd", "x", &res), ==, GH_AUTH_TEMPFAIL);
		g_assert_cmpstr(res.reason, ==, "unsupported hash for user");
	}
	g_assert_cmpint(module_verify(m, st, "sha", "sha-pass", &res), ==, GH_AUTH_OK);
	result_clear(&res);
	m->deinit(st);
	test_host_clear(&th);
}

typedef struct {
	const GhAuthModule *m;
	gpointer st;
	gint failures;
} ThreadCtx;

static gpointer
verify_thread(gpointer data)
{
	ThreadCtx *ctx = data;
	GhAuthResult res = {NULL, NULL, NULL};

	for (guint i = 0; i < 20; i++) {
		/* "sha" has the same password in both files the main
		 * thread swaps under our feet. */
		if (module_verify(ctx->m, ctx->st, "sha", "new-pass", &res) != GH_AUTH_OK ||
		    module_verify(ctx->m, ctx->st, "sha", "bad", &res) != GH_AUTH_WRONG_PASSWORD)
			g_atomic_int_inc(&ctx->failures);
	}
	result_clear(&res);
	return NULL;
}

static void
test_module_threads(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	g_autoptr(GError) error = NULL;
	GThread *threads[4];
	ThreadCtx ctx = {m, NULL, 0};
	TestHost th;

	if (m == NULL)
		return;
	test_host_init(&th);
	ctx.st = module_start(m, &th, &t, "sha:" HASH_NEW "\n", 1, 0);
	if (ctx.st == NULL)
		return;
	for (guint i = 0; i < G_N_ELEMENTS(threads); i++)
		threads[i] = g_thread_new("verify", verify_thread, &ctx);
	for (guint i = 0; i < 10; i++) {
		tmp_users_write(&t, i % 2 ? "sha:" HASH_NEW "\n"
					  : "sha:" HASH_NEW ":route=10.0.0.1:143\nx:" HASH_SHA
					    "\n");
		/* Only this thread logs: verify() says nothing on success. */
		expect_loaded(t.path, i % 2 ? 1 : 2, 0, TRUE);
		g_assert_cmpint(m->refresh(ctx.st, TRUE, &error), ==, 1);
		g_test_assert_expected_messages();
		g_assert_no_error(error);
		g_usleep(2000);
	}
	for (guint i = 0; i < G_N_ELEMENTS(threads); i++)
		g_thread_join(threads[i]);
	g_assert_cmpint(ctx.failures, ==, 0);
	g_assert_cmpint(th.data_changed, ==, 10);
	m->deinit(ctx.st);
	test_host_clear(&th);
}

static int
cmp_gint64(gconstpointer a, gconstpointer b)
{
	gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
	return x < y ? -1 : x > y;
}

/* CPU time of this thread, in microseconds: what a verify costs, whatever
 * else the machine is doing (wall-clock time would measure the load). */
static gint64
thread_cpu_us(void)
{
	struct timespec ts;

	g_assert_cmpint(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), ==, 0);
	return (gint64)ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static gint64
median_verify_us(const GhAuthModule *m, gpointer st, const char *user, const char *password)
{
	GhAuthResult res = {NULL, NULL, NULL};
	gint64 t[5];

	for (guint i = 0; i < G_N_ELEMENTS(t); i++) {
		gint64 start = thread_cpu_us();
		(void)module_verify(m, st, user, password, &res);
		t[i] = thread_cpu_us() - start;
	}
	result_clear(&res);
	qsort(t, G_N_ELEMENTS(t), sizeof t[0], cmp_gint64);
	return t[G_N_ELEMENTS(t) / 2];
}

/* An unknown user costs about what a known yescrypt user costs, so the time
 * of an answer does not tell which names exist.  Costs are compared as CPU
 * time, within a factor of 4, so a busy machine does not tip them. */
static void
test_module_timing(void)
{
	const GhAuthModule *m = get_module();
	g_auto(TmpUsers) t = {NULL, NULL};
	gint64 known, unknown, plain, sha;
	TestHost th;
	gpointer st;

	if (m == NULL)
		return;
	test_host_init(&th);
	st = module_start(m, &th, &t, users_text, 5, 1);
	if (st == NULL)
		return;
	known = median_verify_us(m, st, "yes", "wrong");
	unknown = median_verify_us(m, st, "nobody", "wrong");
	plain = median_verify_us(m, st, "plain", "wrong");
	sha = median_verify_us(m, st, "sha", "wrong");
	g_test_message("verify CPU time, median of 5: known yescrypt user %" G_GINT64_FORMAT
		       " us, unknown user %" G_GINT64_FORMAT " us, {PLAIN} user %" G_GINT64_FORMAT
		       " us, SHA-512 user %" G_GINT64_FORMAT " us",
		       known, unknown, plain, sha);
	g_assert_cmpint(known, >, 0);
	g_assert_cmpint(unknown * 4, >, known);
	g_assert_cmpint(unknown, <, known * 4);
	g_assert_cmpint(plain * 4, >, known);
	m->deinit(st);
	test_host_clear(&th);
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/users-file/good", test_parse_good);
	g_test_add_func("/gatehouse/users-file/errors", test_parse_errors);
	g_test_add_func("/gatehouse/users-file/nul", test_parse_nul);
	g_test_add_func("/gatehouse/users-file/colons", test_parse_colons);
	g_test_add_func("/gatehouse/users-file/plain-blanks", test_parse_plain_blanks);
	g_test_add_func("/gatehouse/users-file/routes-without-port",
			test_parse_routes_without_port);
	g_test_add_func("/gatehouse/users-file/plain-count", test_parse_plain_count);
	g_test_add_func("/gatehouse/users-file/empty", test_parse_empty);
	g_test_add_func("/gatehouse/users-file/length", test_parse_length);
	g_test_add_func("/gatehouse/users-file/lookup", test_parse_lookup);
	g_test_add_func("/gatehouse/users-file/module/descriptor", test_module_descriptor);
	g_test_add_func("/gatehouse/users-file/module/verify", test_module_verify);
	g_test_add_func("/gatehouse/users-file/module/init-errors", test_module_init_errors);
	g_test_add_func("/gatehouse/users-file/module/refresh", test_module_refresh);
	g_test_add_func("/gatehouse/users-file/module/refresh-in-place",
			test_module_refresh_in_place);
	g_test_add_func("/gatehouse/users-file/module/unsupported", test_module_unsupported);
	g_test_add_func("/gatehouse/users-file/module/threads", test_module_threads);
	g_test_add_func("/gatehouse/users-file/module/timing", test_module_timing);

	rc = g_test_run();
	if (module_handle != NULL)
		g_module_close(module_handle);
	return rc;
}
