/*
 * fuzz-auth-command.c: see fuzz-auth-command.h.  Linked into the targets
 * that read AUTH commands (fuzz-smtp-command, fuzz-pop3-command), with
 * sasl.c.
 */
#include "gh-build.h"

#include "fuzz-auth-command.h"
#include "fuzz.h"
#include "common/line.h"
#include "session/sasl.h"

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

void
fuzz_check_sasl_start(const char *mech, const char *initial)
{
	FUZZ_CHECK(*mech != '\0');
	for (const char *p = mech; *p != '\0'; p++)
		FUZZ_CHECK(!is_blank(*p) && !g_ascii_islower(*p));
	if (initial == NULL)
		return;
	FUZZ_CHECK(*initial != '\0');
	for (const char *p = initial; *p != '\0'; p++)
		FUZZ_CHECK(!is_blank(*p));
	/* what the session does next with it */
	if (strcmp(mech, "PLAIN") == 0) {
		char *zid = NULL, *cid = NULL;
		GhSecret *pw = NULL;

		if (gh_sasl_plain_decode(initial, strlen(initial), &zid, &cid, &pw) == GH_SASL_OK)
			FUZZ_CHECK(zid != NULL && cid != NULL && *cid != '\0' && pw != NULL);
		else
			FUZZ_CHECK(zid == NULL && cid == NULL && pw == NULL);
		g_free(zid);
		g_free(cid);
		gh_secret_free(pw);
	} else if (strcmp(mech, "LOGIN") == 0) {
		GhSecret *user = NULL;

		if (gh_sasl_login_decode(initial, strlen(initial), FALSE, &user) == GH_SASL_OK)
			FUZZ_CHECK(user != NULL && gh_secret_len(user) > 0);
		else
			FUZZ_CHECK(user == NULL);
		gh_secret_free(user);
	}
}

gboolean
fuzz_check_command_line(
    const char *p, gsize left, gsize line_len, gsize used, gsize max, gsize max_long)
{
	gsize l = 0, u = 0;
	gboolean term = FALSE;
	GhLineStatus st = gh_line_next_command(p, left, max, max_long, "AUTH", &l, &u, &term);
	gboolean auth = line_len >= 4 && g_ascii_strncasecmp(p, "AUTH", 4) == 0 &&
			(line_len == 4 || p[4] == ' ' || p[4] == '\t');

	FUZZ_CHECK(u == used && term);
	if (used > max && !auth) {
		FUZZ_CHECK(st == GH_LINE_TOO_LONG && l == 0);
		return FALSE;
	}
	FUZZ_CHECK(st == GH_LINE_OK && l == line_len);
	return TRUE;
}
