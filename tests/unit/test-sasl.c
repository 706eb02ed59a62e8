/*
 * test-sasl.c: strict base64 decoding, SASL PLAIN and LOGIN decoding with
 * their limits and forbidden bytes, PLAIN encoding for the backends, and the
 * GhSecret they hand back.
 */
#include "gh-build.h"

#include "session/sasl.h"

#include <string.h>

/* A byte string literal that may hold NULs, as pointer and length. */
#define RAW(s) (s), (sizeof(s) - 1)

/* ------------------------------------------------------------------ secret */

static void
test_secret(void)
{
	static const char bytes[] = "p\0w\xff";
	g_autoptr(GhSecret) copy = gh_secret_new(bytes, sizeof bytes - 1);
	g_autoptr(GhSecret) empty = gh_secret_new(NULL, 0);
	g_autoptr(GhSecret) taken = NULL;
	char *buf = g_strdup("taken");
	gsize len = 99;

	g_assert_nonnull(copy);
	g_assert_cmpuint(gh_secret_len(copy), ==, 4);
	g_assert_true(gh_secret_get(copy, &len) != bytes);
	g_assert_cmpuint(len, ==, 4);
	g_assert_cmpmem(gh_secret_get(copy, NULL), 4, bytes, 4);
	g_assert_cmpint(gh_secret_get(copy, NULL)[4], ==, '\0');

	g_assert_cmpuint(gh_secret_len(empty), ==, 0);
	g_assert_cmpstr(gh_secret_get(empty, NULL), ==, "");

	taken = gh_secret_new_take(buf, 5);
	g_assert_true(gh_secret_get(taken, NULL) == buf);
	g_assert_cmpstr(gh_secret_get(taken, NULL), ==, "taken");

	gh_secret_free(NULL);
	gh_secret_wipe_free(NULL, 10);
	gh_secret_wipe_free(g_strdup("wipe me"), 7);
}

/* ------------------------------------------------------------------ base64 */

static void
test_base64(void)
{
	static const struct {
		const char *in;
		GhSaslStatus status;
		const char *out;
		gsize out_len;
	} cases[] = {
	    {"", GH_SASL_OK, RAW("")},
	    {"=", GH_SASL_OK, RAW("")},
	    {"=\r\n", GH_SASL_OK, RAW("")},
	    {"YQ==", GH_SASL_OK, RAW("a")},
	    {"YWI=", GH_SASL_OK, RAW("ab")},
	    {"YWJj", GH_SASL_OK, RAW("abc")},
	    {"YWJjZA==", GH_SASL_OK, RAW("abcd")},
	    {"YWJjZA==\r\n", GH_SASL_OK, RAW("abcd")},
	    {"YWJjZA==\n", GH_SASL_OK, RAW("abcd")},
	    {"YWJjZA==\r", GH_SASL_OK, RAW("abcd")},
	    {"/+8=", GH_SASL_OK, RAW("\xff\xef")},
	    {"+/+/", GH_SASL_OK, RAW("\xfb\xff\xbf")},
	    {"AHRpbQB0YW5zdGFhZnRhbnN0YWFm", GH_SASL_OK, RAW("\0tim\0tanstaaftanstaaf")},
	    {"!!!", GH_SASL_BAD_BASE64, NULL, 0},
	    {"!!!!", GH_SASL_BAD_BASE64, NULL, 0},
	    {"abc", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YQ=", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YQ", GH_SASL_BAD_BASE64, NULL, 0},
	    {"ab=c", GH_SASL_BAD_BASE64, NULL, 0},
	    {"a===", GH_SASL_BAD_BASE64, NULL, 0},
	    {"====", GH_SASL_BAD_BASE64, NULL, 0},
	    {"==", GH_SASL_BAD_BASE64, NULL, 0},
	    {"=YQ=", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YQ==YQ==", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YWJj ZA==", GH_SASL_BAD_BASE64, NULL, 0},
	    {" YWJjZA=", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YWJj\tZA=", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YWJj\r\nZA==", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YWJjZA== ", GH_SASL_BAD_BASE64, NULL, 0},
	    {"-_8=", GH_SASL_BAD_BASE64, NULL, 0},
	    {"*", GH_SASL_BAD_BASE64, NULL, 0},
	    {"YW\xc3\xa9", GH_SASL_BAD_BASE64, NULL, 0},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		guint8 *out = (guint8 *)"unchanged";
		gsize out_len = 77;
		GhSaslStatus st;

		g_test_message("base64 case %zu: \"%s\"", i, cases[i].in);
		st = gh_sasl_base64_decode(cases[i].in, strlen(cases[i].in), &out, &out_len);
		g_assert_cmpstr(gh_sasl_status_to_string(st), ==,
				gh_sasl_status_to_string(cases[i].status));
		if (st != GH_SASL_OK) {
			g_assert_null(out);
			continue;
		}
		g_assert_cmpmem(out, out_len, cases[i].out, cases[i].out_len);
		g_assert_cmpint(out[out_len], ==, '\0');
		gh_secret_wipe_free(out, out_len);
	}
}

/* The length, not a NUL, ends the input: a NUL inside is not base64. */
static void
test_base64_nul(void)
{
	guint8 *out = NULL;
	gsize out_len = 0;

	g_assert_cmpint(gh_sasl_base64_decode(RAW("YW\0j"), &out, &out_len), ==,
			GH_SASL_BAD_BASE64);
	g_assert_null(out);
	/* Only the first len bytes are read. */
	g_assert_cmpint(gh_sasl_base64_decode("YWJj!!!!", 4, &out, &out_len), ==, GH_SASL_OK);
	g_assert_cmpmem(out, out_len, "abc", 3);
	gh_secret_wipe_free(out, out_len);
}

static void
test_base64_limit(void)
{
	g_autofree char *at_limit = g_strnfill(GH_SASL_MAX_BASE64, 'Q');
	g_autofree char *over = g_strnfill(GH_SASL_MAX_BASE64 + 4, 'Q');
	g_autofree char *at_limit_crlf = g_strconcat(at_limit, "\r\n", NULL);
	guint8 *out = NULL;
	gsize out_len = 0;

	g_assert_cmpint(gh_sasl_base64_decode(at_limit, strlen(at_limit), &out, &out_len), ==,
			GH_SASL_OK);
	g_assert_cmpuint(out_len, ==, GH_SASL_MAX_BASE64 / 4 * 3);
	gh_secret_wipe_free(out, out_len);
	out = NULL;

	/* The line end does not count against the limit. */
	g_assert_cmpint(gh_sasl_base64_decode(at_limit_crlf, strlen(at_limit_crlf), &out, &out_len),
			==, GH_SASL_OK);
	gh_secret_wipe_free(out, out_len);
	out = NULL;

	g_assert_cmpint(gh_sasl_base64_decode(over, strlen(over), &out, &out_len), ==,
			GH_SASL_TOO_LONG);
	g_assert_null(out);
}

/* ------------------------------------------------------------------- PLAIN */

typedef struct {
	const char *name;
	const char *raw; /* encoded for the test, or NULL: use b64 */
	gsize raw_len;
	const char *b64;
	GhSaslStatus status;
	const char *authzid;
	const char *authcid;
	const char *password;
	gsize password_len;
} PlainCase;

#define FAIL_RAW(name, raw, status)                                                                \
	{                                                                                          \
		name, RAW(raw), NULL, status, NULL, NULL, NULL, 0                                  \
	}
#define FAIL_B64(name, b64, status)                                                                \
	{                                                                                          \
		name, NULL, 0, b64, status, NULL, NULL, NULL, 0                                    \
	}

static void
check_plain(const PlainCase *c)
{
	g_autofree char *b64 = NULL;
	char *authzid = (char *)"unchanged";
	char *authcid = (char *)"unchanged";
	GhSecret *password = GINT_TO_POINTER(1);
	GhSaslStatus st;

	g_test_message("PLAIN case %s", c->name);
	b64 =
	    c->raw != NULL ? g_base64_encode((const guchar *)c->raw, c->raw_len) : g_strdup(c->b64);
	st = gh_sasl_plain_decode(b64, strlen(b64), &authzid, &authcid, &password);
	g_assert_cmpstr(gh_sasl_status_to_string(st), ==, gh_sasl_status_to_string(c->status));
	if (st != GH_SASL_OK) {
		g_assert_null(authzid);
		g_assert_null(authcid);
		g_assert_null(password);
		return;
	}
	g_assert_cmpstr(authzid, ==, c->authzid);
	g_assert_cmpstr(authcid, ==, c->authcid);
	g_assert_nonnull(password);
	if (password != NULL) {
		gsize len = 0;
		const char *pw = gh_secret_get(password, &len);

		g_assert_cmpmem(pw, len, c->password, c->password_len);
		g_assert_cmpint(pw[len], ==, '\0');
	}
	g_free(authzid);
	g_free(authcid);
	gh_secret_free(password);
}

static void
test_plain(void)
{
	static const PlainCase cases[] = {
	    {"authzid", RAW("admin\0alice\0secret"), NULL, GH_SASL_OK, "admin", "alice",
	     RAW("secret")},
	    {"no-authzid", RAW("\0alice\0secret"), NULL, GH_SASL_OK, "", "alice", RAW("secret")},
	    {"empty-password", RAW("\0alice\0"), NULL, GH_SASL_OK, "", "alice", RAW("")},
	    {"password-bytes", RAW("\0bob\0 \xff\"'\r\n\t\x01"), NULL, GH_SASL_OK, "", "bob",
	     RAW(" \xff\"'\r\n\t\x01")},
	    {"rfc4616-example", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", GH_SASL_OK, "", "tim",
	     RAW("tanstaaftanstaaf")},
	    {"trailing-crlf", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n", GH_SASL_OK, "", "tim",
	     RAW("tanstaaftanstaaf")},
	    {"trailing-lf", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\n", GH_SASL_OK, "", "tim",
	     RAW("tanstaaftanstaaf")},
	    FAIL_B64("equals-empty", "=", GH_SASL_MALFORMED),
	    FAIL_B64("empty-line", "", GH_SASL_MALFORMED),
	    FAIL_B64("cancel", "*", GH_SASL_CANCELLED),
	    FAIL_B64("cancel-crlf", "*\r\n", GH_SASL_CANCELLED),
	    FAIL_B64("star-star", "**", GH_SASL_BAD_BASE64),
	    FAIL_B64("bang", "!!!", GH_SASL_BAD_BASE64),
	    FAIL_B64("abc", "abc", GH_SASL_BAD_BASE64),
	    FAIL_B64("ab=c", "ab=c", GH_SASL_BAD_BASE64),
	    FAIL_B64("a===", "a===", GH_SASL_BAD_BASE64),
	    FAIL_B64("space-inside", "AHRpbQB0 YW5zdGFhZnRhbnN0YWFm", GH_SASL_BAD_BASE64),
	    FAIL_B64("crlf-inside", "AHRpbQB0\r\nYW5zdGFhZnRhbnN0YWFm", GH_SASL_BAD_BASE64),
	    FAIL_RAW("no-nul", "alicesecret", GH_SASL_MALFORMED),
	    FAIL_RAW("one-nul", "\0alice", GH_SASL_MALFORMED),
	    FAIL_RAW("one-nul-end", "alice\0", GH_SASL_MALFORMED),
	    FAIL_RAW("three-nul", "\0alice\0sec\0ret", GH_SASL_MALFORMED),
	    FAIL_RAW("three-nul-end", "\0alice\0secret\0", GH_SASL_MALFORMED),
	    FAIL_RAW("empty-authcid", "admin\0\0secret", GH_SASL_MALFORMED),
	    FAIL_RAW("only-nuls", "\0\0", GH_SASL_MALFORMED),
	    FAIL_RAW("cr-in-user", "\0ali\rce\0secret", GH_SASL_MALFORMED),
	    FAIL_RAW("lf-in-user", "\0ali\nce\0secret", GH_SASL_MALFORMED),
	    FAIL_RAW("crlf-end-user", "\0alice\r\n\0secret", GH_SASL_MALFORMED),
	    FAIL_RAW("cr-in-authzid", "ad\rmin\0alice\0secret", GH_SASL_MALFORMED),
	    FAIL_RAW("lf-in-authzid", "ad\nmin\0alice\0secret", GH_SASL_MALFORMED),
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++)
		check_plain(&cases[i]);
}

/* Names up to GH_SASL_MAX_USER and passwords up to GH_SASL_MAX_PASSWORD pass;
 * one more byte is TOO_LONG. */
static void
test_plain_limits(void)
{
	g_autofree char *user_max = g_strnfill(GH_SASL_MAX_USER, 'u');
	g_autofree char *user_over = g_strnfill(GH_SASL_MAX_USER + 1, 'u');
	g_autofree char *pw_max = g_strnfill(GH_SASL_MAX_PASSWORD, 'p');
	g_autofree char *pw_over = g_strnfill(GH_SASL_MAX_PASSWORD + 1, 'p');
	g_autofree char *huge = g_strnfill(GH_SASL_MAX_BASE64 + 4, 'A');
	struct {
		const char *name;
		const char *zid, *cid, *pw;
		GhSaslStatus status;
	} cases[] = {
	    {"user-max", "", user_max, "pw", GH_SASL_OK},
	    {"user-over", "", user_over, "pw", GH_SASL_TOO_LONG},
	    {"authzid-max", user_max, "alice", "pw", GH_SASL_OK},
	    {"authzid-over", user_over, "alice", "pw", GH_SASL_TOO_LONG},
	    {"password-max", "", "alice", pw_max, GH_SASL_OK},
	    {"password-over", "", "alice", pw_over, GH_SASL_TOO_LONG},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *raw = NULL;
		gsize zl = strlen(cases[i].zid);
		gsize cl = strlen(cases[i].cid);
		gsize pl = strlen(cases[i].pw);
		gsize raw_len = zl + 1 + cl + 1 + pl;
		PlainCase c = {0};

		raw = g_malloc(raw_len);
		memcpy(raw, cases[i].zid, zl + 1);
		memcpy(raw + zl + 1, cases[i].cid, cl + 1);
		memcpy(raw + zl + 1 + cl + 1, cases[i].pw, pl);
		c.name = cases[i].name;
		c.raw = raw;
		c.raw_len = raw_len;
		c.status = cases[i].status;
		c.authzid = cases[i].zid;
		c.authcid = cases[i].cid;
		c.password = cases[i].pw;
		c.password_len = pl;
		check_plain(&c);
	}

	{
		PlainCase c = FAIL_B64("over-long-input", huge, GH_SASL_TOO_LONG);

		check_plain(&c);
	}
}

/* ------------------------------------------------------------------- LOGIN */

static void
test_login(void)
{
	g_autofree char *user_max = g_strnfill(GH_SASL_MAX_USER, 'u');
	g_autofree char *user_over = g_strnfill(GH_SASL_MAX_USER + 1, 'u');
	g_autofree char *pw_max = g_strnfill(GH_SASL_MAX_PASSWORD, 'p');
	g_autofree char *pw_over = g_strnfill(GH_SASL_MAX_PASSWORD + 1, 'p');
	g_autofree char *huge = g_strnfill(GH_SASL_MAX_BASE64 + 4, 'A');
	/* The value expected on OK is raw (empty when raw is NULL). */
	const struct {
		const char *name;
		gboolean is_password;
		const char *raw; /* encoded for the test, unless b64 is set */
		gsize raw_len;
		const char *b64;
		const char *suffix; /* appended to the base64 */
		GhSaslStatus status;
	} cases[] = {
	    {"user", FALSE, RAW("alice"), NULL, "", GH_SASL_OK},
	    {"user-utf8", FALSE, RAW("j\xc3\xb6rg@example.com"), NULL, "", GH_SASL_OK},
	    {"user-crlf", FALSE, RAW("alice"), NULL, "\r\n", GH_SASL_OK},
	    {"user-max", FALSE, user_max, GH_SASL_MAX_USER, NULL, "", GH_SASL_OK},
	    {"user-over", FALSE, user_over, GH_SASL_MAX_USER + 1, NULL, "", GH_SASL_TOO_LONG},
	    {"user-empty", FALSE, NULL, 0, "=", "", GH_SASL_MALFORMED},
	    {"user-empty-line", FALSE, NULL, 0, "", "", GH_SASL_MALFORMED},
	    {"user-cr", FALSE, RAW("ali\rce"), NULL, "", GH_SASL_MALFORMED},
	    {"user-lf", FALSE, RAW("alice\n"), NULL, "", GH_SASL_MALFORMED},
	    {"user-nul", FALSE, RAW("ali\0ce"), NULL, "", GH_SASL_MALFORMED},
	    {"user-cancel", FALSE, NULL, 0, "*", "", GH_SASL_CANCELLED},
	    {"user-cancel-crlf", FALSE, NULL, 0, "*", "\r\n", GH_SASL_CANCELLED},
	    {"user-bad", FALSE, NULL, 0, "YWxp!2U=", "", GH_SASL_BAD_BASE64},
	    {"user-space", FALSE, NULL, 0, "YWxp Y2U=", "", GH_SASL_BAD_BASE64},
	    {"user-huge", FALSE, NULL, 0, huge, "", GH_SASL_TOO_LONG},
	    {"password", TRUE, RAW("s3cret"), NULL, "", GH_SASL_OK},
	    {"password-crlf", TRUE, RAW("s3cret"), NULL, "\r\n", GH_SASL_OK},
	    {"password-empty", TRUE, NULL, 0, "=", "", GH_SASL_OK},
	    {"password-empty-line", TRUE, NULL, 0, "", "", GH_SASL_OK},
	    {"password-bytes", TRUE, RAW(" \xff\"'\r\n"), NULL, "", GH_SASL_OK},
	    {"password-max", TRUE, pw_max, GH_SASL_MAX_PASSWORD, NULL, "", GH_SASL_OK},
	    {"password-over", TRUE, pw_over, GH_SASL_MAX_PASSWORD + 1, NULL, "", GH_SASL_TOO_LONG},
	    {"password-nul", TRUE, RAW("s3\0cret"), NULL, "", GH_SASL_MALFORMED},
	    {"password-cancel", TRUE, NULL, 0, "*", "", GH_SASL_CANCELLED},
	    {"password-bad", TRUE, NULL, 0, "abc", "", GH_SASL_BAD_BASE64},
	    {"password-huge", TRUE, NULL, 0, huge, "", GH_SASL_TOO_LONG},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *enc = NULL;
		g_autofree char *b64 = NULL;
		GhSecret *value = GINT_TO_POINTER(1);
		GhSaslStatus st;

		g_test_message("LOGIN case %s", cases[i].name);
		if (cases[i].b64 == NULL)
			enc = g_base64_encode((const guchar *)cases[i].raw, cases[i].raw_len);
		b64 = g_strconcat(cases[i].b64 != NULL ? cases[i].b64 : enc, cases[i].suffix, NULL);
		st = gh_sasl_login_decode(b64, strlen(b64), cases[i].is_password, &value);
		g_assert_cmpstr(gh_sasl_status_to_string(st), ==,
				gh_sasl_status_to_string(cases[i].status));
		if (st != GH_SASL_OK) {
			g_assert_null(value);
			continue;
		}
		g_assert_nonnull(value);
		if (value == NULL)
			continue;
		g_assert_cmpmem(gh_secret_get(value, NULL), gh_secret_len(value),
				cases[i].raw != NULL ? cases[i].raw : "", cases[i].raw_len);
		g_assert_cmpint(gh_secret_get(value, NULL)[gh_secret_len(value)], ==, '\0');
		gh_secret_free(value);
	}
}

/* ------------------------------------------------------------------ encode */

static void
test_encode(void)
{
	static const struct {
		const char *authzid;
		const char *authcid;
		const char *password;
		gsize password_len;
	} cases[] = {
	    {NULL, "alice", RAW("secret")},
	    {"admin", "alice", RAW("secret")},
	    {"", "bob", RAW("")},
	    {NULL, "carol", RAW("\xff \"quoted\" 'single' \\ \xc3\xa9\x01\x7f\r\n")},
	    {NULL, "dave", RAW("\xff\xfe\xfd")},
	};
	g_autoptr(GhSecret) rfc_pw = gh_secret_new(RAW("tanstaaftanstaaf"));
	char *rfc = gh_sasl_plain_encode(NULL, "tim", rfc_pw);

	/* RFC 4616 4, the first example. */
	g_assert_cmpstr(rfc, ==, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	gh_secret_wipe_free(rfc, strlen(rfc));

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GhSecret) pw = gh_secret_new(cases[i].password, cases[i].password_len);
		g_autofree char *authzid = NULL;
		g_autofree char *authcid = NULL;
		g_autoptr(GhSecret) decoded = NULL;
		char *b64 = gh_sasl_plain_encode(cases[i].authzid, cases[i].authcid, pw);
		GhSaslStatus st;

		g_test_message("encode case %zu", i);
		g_assert_nonnull(b64);
		st = gh_sasl_plain_decode(b64, strlen(b64), &authzid, &authcid, &decoded);
		g_assert_cmpint(st, ==, GH_SASL_OK);
		g_assert_cmpstr(authzid, ==, cases[i].authzid != NULL ? cases[i].authzid : "");
		g_assert_cmpstr(authcid, ==, cases[i].authcid);
		g_assert_nonnull(decoded);
		if (decoded != NULL)
			g_assert_cmpmem(gh_secret_get(decoded, NULL), gh_secret_len(decoded),
					cases[i].password, cases[i].password_len);
		gh_secret_wipe_free(b64, strlen(b64));
	}
}

static void
test_status_strings(void)
{
	static const GhSaslStatus all[] = {
	    GH_SASL_OK, GH_SASL_CANCELLED, GH_SASL_BAD_BASE64, GH_SASL_MALFORMED, GH_SASL_TOO_LONG,
	};

	for (gsize i = 0; i < G_N_ELEMENTS(all); i++) {
		g_assert_nonnull(gh_sasl_status_to_string(all[i]));
		for (gsize j = 0; j < i; j++)
			g_assert_cmpstr(gh_sasl_status_to_string(all[i]), !=,
					gh_sasl_status_to_string(all[j]));
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_set_nonfatal_assertions();

	g_test_add_func("/gatehouse/sasl/secret", test_secret);
	g_test_add_func("/gatehouse/sasl/base64", test_base64);
	g_test_add_func("/gatehouse/sasl/base64-nul", test_base64_nul);
	g_test_add_func("/gatehouse/sasl/base64-limit", test_base64_limit);
	g_test_add_func("/gatehouse/sasl/plain", test_plain);
	g_test_add_func("/gatehouse/sasl/plain-limits", test_plain_limits);
	g_test_add_func("/gatehouse/sasl/login", test_login);
	g_test_add_func("/gatehouse/sasl/encode", test_encode);
	g_test_add_func("/gatehouse/sasl/status-strings", test_status_strings);
	return g_test_run();
}
