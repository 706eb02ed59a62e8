/*
 * test-keyfile.c: the configuration key-file helper: admin-style comments,
 * duplicate keys and groups reported with their lines, syntax errors with
 * lines, line lookup, problem formatting and list splitting.
 */
#include "gh-build.h"

#include "common/keyfile.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

typedef struct {
	char *dir;
	char *path;
} TmpFile;

static void
tmp_file_write(TmpFile *t, const char *text)
{
	g_autoptr(GError) error = NULL;

	t->dir = g_dir_make_tmp("gh-keyfile-XXXXXX", &error);
	g_assert_no_error(error);
	t->path = g_build_filename(t->dir, "gatehouse.conf", NULL);
	g_file_set_contents(t->path, text, -1, &error);
	g_assert_no_error(error);
}

static void
tmp_file_clear(TmpFile *t)
{
	if (t->path != NULL)
		g_unlink(t->path);
	if (t->dir != NULL)
		g_rmdir(t->dir);
	g_clear_pointer(&t->path, g_free);
	g_clear_pointer(&t->dir, g_free);
}

static void
test_comments(void)
{
	static const char text[] = "; a whole-line comment\n"
				   "# another one\n"
				   "[g] ; after a header\n"
				   "a = 1 ; inline\n"
				   "b = 2 # inline hash\n"
				   "c = x;y\n"
				   "d = x#y\n"
				   "e = value   \n"
				   "   ; an indented comment\n"
				   "f=;\n"
				   "g = a\t;after a tab\n"
				   "h = (&(a=b)(uid=%u))   ; filter\n"
				   "i = #\n"
				   "j = one two\r\n";
	static const struct {
		const char *key;
		const char *value;
	} want[] = {
	    {"a", "1"},     {"b", "2"},       {"c", "x;y"}, {"d", "x#y"},
	    {"e", "value"}, {"f", ";"},       {"g", "a"},   {"h", "(&(a=b)(uid=%u))"},
	    {"i", ""},      {"j", "one two"},
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(GKeyFile) kf = gh_key_file_load_from_data("t.conf", text, strlen(text), &error);
	g_auto(GStrv) groups = NULL;
	g_auto(GStrv) keys = NULL;

	g_assert_no_error(error);
	g_assert_nonnull(kf);
	groups = g_key_file_get_groups(kf, NULL);
	g_assert_cmpuint(g_strv_length(groups), ==, 1);
	g_assert_cmpstr(groups[0], ==, "g");
	keys = g_key_file_get_keys(kf, "g", NULL, NULL);
	g_assert_cmpuint(g_strv_length(keys), ==, G_N_ELEMENTS(want));
	for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
		g_autofree char *v = g_key_file_get_string(kf, "g", want[i].key, &error);
		g_assert_no_error(error);
		g_assert_cmpstr(v, ==, want[i].value);
	}
}

static void
test_errors(void)
{
	static const struct {
		const char *text;
		const char *want; /* after "t.conf:", exact */
	} cases[] = {
	    {"[g]\na = 1\nb = 2\na = 3\n", "4: [g] a: given twice (first on line 2)"},
	    {"[g]\na = 1\n; a = 2\n[h]\na = 2\n", NULL},
	    {"[g]\na=1\n\n[h]\n[g]\nb = 2\n", "5: [g]: group given twice (first on line 1)"},
	    {"[g]\na = 1 ; x\na = 2 # y\n", "3: [g] a: given twice (first on line 2)"},
	    {"a = 1\n[g]\n", "1: a: key before any [group] header"},
	    {"[g]\nfoo\n", "2: \"foo\" is not a key = value pair, a [group] header or a comment"},
	    {"[g]\n[h\n", "2: \"[h\" is not a key = value pair, a [group] header or a comment"},
	    {"[g]\n= 1\n", "2: \"= 1\" is not a key = value pair, a [group] header or a comment"},
	    {"[g]\na\xff = 1\n", "2: line is not valid UTF-8"},
	    /* GKeyFile's own error, located by the text it quotes */
	    {"[g]\na = 1\nx[ = 1\n", "3: Invalid key name: x["},
	    /* several at once, in line order */
	    {"[g]\na = 1\na = 2\n[g]\nb\n",
	     "3: [g] a: given twice (first on line 2)\n"
	     "t.conf:4: [g]: group given twice (first on line 1)\n"
	     "t.conf:5: \"b\" is not a key = value pair, a [group] header or a comment"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(GKeyFile) kf = NULL;
		g_autofree char *want = NULL;

		g_test_message("case %u", i);
		kf = gh_key_file_load_from_data("t.conf", cases[i].text, strlen(cases[i].text),
						&error);
		if (cases[i].want == NULL) {
			g_assert_no_error(error);
			g_assert_nonnull(kf);
			continue;
		}
		g_assert_null(kf);
		g_assert_nonnull(error);
		if (error == NULL)
			continue;
		g_assert_true(error->domain == G_KEY_FILE_ERROR);
		want = g_strconcat("t.conf:", cases[i].want, NULL);
		g_assert_cmpstr(error->message, ==, want);
	}
}

static void
test_nul_byte(void)
{
	static const char text[] = "[g]\na = 1\nb = x\0y\n";
	g_autoptr(GError) error = NULL;
	g_autoptr(GKeyFile) kf =
	    gh_key_file_load_from_data("t.conf", text, sizeof text - 1, &error);

	g_assert_null(kf);
	g_assert_nonnull(error);
	if (error != NULL)
		g_assert_cmpstr(error->message, ==, "t.conf:3: line contains a NUL byte");
}

static void
test_load_file(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GKeyFile) kf = NULL;
	g_autofree char *missing = NULL;
	g_autofree char *want = NULL;
	g_autofree char *v = NULL;
	TmpFile t = {0};

	tmp_file_write(&t, "[g]\r\nk = v ; c\r\n");
	kf = gh_key_file_load(t.path, &error);
	g_assert_no_error(error);
	g_assert_nonnull(kf);
	v = g_key_file_get_string(kf, "g", "k", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(v, ==, "v");

	missing = g_build_filename(t.dir, "nosuch.conf", NULL);
	g_clear_pointer(&kf, g_key_file_unref);
	kf = gh_key_file_load(missing, &error);
	g_assert_null(kf);
	g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
	want = g_strdup_printf("%s: cannot read: %s", missing, g_strerror(ENOENT));
	g_assert_cmpstr(error->message, ==, want);
	tmp_file_clear(&t);
}

static void
test_line(void)
{
	static const char text[] = "; header comment\n"          /* 1 */
				   "[gatehouse]\n"               /* 2 */
				   "hostname = a ; x\n"          /* 3 */
				   "; workers = 4\n"             /* 4 */
				   "\n"                          /* 5 */
				   "  [listener smtp]   ; l\n"   /* 6 */
				   "protocol=smtp\n"             /* 7 */
				   "  listen   =  1.2.3.4:25\n"  /* 8 */
				   "[listener imap]\n"           /* 9 */
				   "protocol = imap\n"           /* 10 */
				   "listen = x # protocol = y\n" /* 11 */
				   "workers = 1\n";              /* 12 */
	static const struct {
		const char *group;
		const char *key;
		guint line;
	} cases[] = {
	    {"gatehouse", NULL, 2},
	    {"gatehouse", "hostname", 3},
	    {"gatehouse", "workers", 0}, /* commented out; the one on 12 is another group's */
	    {"listener smtp", NULL, 6},
	    {"listener smtp", "protocol", 7},
	    {"listener smtp", "listen", 8},
	    {"listener imap", NULL, 9},
	    {"listener imap", "protocol", 10},
	    {"listener imap", "listen", 11},
	    {"listener imap", "workers", 12},
	    {"listener imap", "hostname", 0},
	    {"listener", NULL, 0},
	    {"nosuch", NULL, 0},
	    {"nosuch", "protocol", 0},
	};
	g_autofree char *missing = NULL;
	TmpFile t = {0};

	tmp_file_write(&t, text);
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_test_message("[%s] %s", cases[i].group, cases[i].key);
		g_assert_cmpuint(gh_key_file_line(t.path, cases[i].group, cases[i].key), ==,
				 cases[i].line);
	}
	missing = g_build_filename(t.dir, "nosuch.conf", NULL);
	g_assert_cmpuint(gh_key_file_line(missing, "gatehouse", NULL), ==, 0);
	tmp_file_clear(&t);
}

static void
test_problem(void)
{
	TmpFile t = {0};
	g_autofree char *p1 = NULL;
	g_autofree char *p2 = NULL;
	g_autofree char *p3 = NULL;
	g_autofree char *p4 = NULL;
	g_autofree char *p5 = NULL;
	g_autofree char *p6 = NULL;
	g_autofree char *want = NULL;

	tmp_file_write(&t, "[a]\nx = 1\n\n[b]\ny = 2\n");
	p1 = gh_key_file_problem(t.path, "b", "y", "bad value '%s' (%d)", "2", 42);
	want = g_strdup_printf("%s:5: [b] y: bad value '2' (42)", t.path);
	g_assert_cmpstr(p1, ==, want);
	g_clear_pointer(&want, g_free);

	/* a key that is not there: the group's header */
	p2 = gh_key_file_problem(t.path, "b", "z", "missing");
	want = g_strdup_printf("%s:4: [b] z: missing", t.path);
	g_assert_cmpstr(p2, ==, want);
	g_clear_pointer(&want, g_free);

	p3 = gh_key_file_problem(t.path, "a", NULL, "unknown group");
	want = g_strdup_printf("%s:1: [a]: unknown group", t.path);
	g_assert_cmpstr(p3, ==, want);
	g_clear_pointer(&want, g_free);

	/* the line cannot be found: no line */
	p4 = gh_key_file_problem(t.path, "c", "k", "msg");
	want = g_strdup_printf("%s: [c] k: msg", t.path);
	g_assert_cmpstr(p4, ==, want);
	g_clear_pointer(&want, g_free);

	p5 = gh_key_file_problem("/nonexistent/x.conf", "a", "x", "msg");
	g_assert_cmpstr(p5, ==, "/nonexistent/x.conf: [a] x: msg");

	p6 = gh_key_file_problem(t.path, NULL, NULL, "no listener");
	want = g_strdup_printf("%s: no listener", t.path);
	g_assert_cmpstr(p6, ==, want);
	tmp_file_clear(&t);
}

static void
test_split_list(void)
{
	static const struct {
		const char *in;
		const char *out; /* items joined by '|' */
	} cases[] = {
	    {NULL, ""},
	    {"", ""},
	    {" \t ", ""},
	    {"a", "a"},
	    {"users ldap", "users|ldap"},
	    {"  a\t\tb  c ", "a|b|c"},
	    {"0.0.0.0:25 [::]:25", "0.0.0.0:25|[::]:25"},
	    {"a,b", "a,b"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_auto(GStrv) items = gh_key_file_split_list(cases[i].in);
		g_autofree char *joined = NULL;

		g_assert_nonnull(items);
		joined = g_strjoinv("|", items);
		g_assert_cmpstr(joined, ==, cases[i].out);
		for (guint j = 0; items[j] != NULL; j++)
			g_assert_cmpuint(strlen(items[j]), >, 0);
	}
}

/* A value found line by line in a file that does not load as a whole. */
static void
test_peek(void)
{
	static const char text[] = "[gatehouse]\n"
				   "control_socket =   /run/gh/control   ; where\n"
				   "this line has no equals sign\n"
				   "[listener imap\n"
				   "empty =\n"
				   "[other]\n"
				   "control_socket = /elsewhere\n";
	g_autofree char *missing = NULL;
	g_autofree char *v = NULL;
	g_autofree char *other = NULL;
	g_autofree char *none = NULL;
	TmpFile t = {0};
	g_autoptr(GError) error = NULL;

	tmp_file_write(&t, text);
	/* the loader refuses the file... */
	g_assert_null(gh_key_file_load(t.path, &error));
	g_assert_nonnull(error);
	/* ...the peek still finds what it can */
	v = gh_key_file_peek(t.path, "gatehouse", "control_socket");
	g_assert_cmpstr(v, ==, "/run/gh/control");
	other = gh_key_file_peek(t.path, "other", "control_socket");
	g_assert_cmpstr(other, ==, "/elsewhere");
	none = gh_key_file_peek(t.path, "gatehouse", "hostname");
	g_assert_null(none);
	missing = g_build_filename(t.dir, "nosuch.conf", NULL);
	g_assert_null(gh_key_file_peek(missing, "gatehouse", "control_socket"));
	tmp_file_clear(&t);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/keyfile/comments", test_comments);
	g_test_add_func("/gatehouse/keyfile/errors", test_errors);
	g_test_add_func("/gatehouse/keyfile/nul-byte", test_nul_byte);
	g_test_add_func("/gatehouse/keyfile/load-file", test_load_file);
	g_test_add_func("/gatehouse/keyfile/line", test_line);
	g_test_add_func("/gatehouse/keyfile/problem", test_problem);
	g_test_add_func("/gatehouse/keyfile/split-list", test_split_list);
	g_test_add_func("/gatehouse/keyfile/peek", test_peek);
	return g_test_run();
}
