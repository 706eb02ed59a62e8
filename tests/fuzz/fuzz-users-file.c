/*
 * fuzz-users-file.c: the libFuzzer target of the users file parser of the
 * file module (modules/file/users-file-parse.c), with the core's route rule
 * (common/route.c) as the route check, as the module runs it.  An admin
 * writes the file, but tools and other people's scripts generate it, and
 * its error lines go to the log: a password must never show there.
 *
 * Input: the file's text.
 *
 * Asserted: on success every entry is found under its own name, with a
 * non-empty name free of blanks and control bytes, a non-empty hash (a
 * "$id$..." crypt string of printable bytes unless {PLAIN}), a route the
 * route rule accepts, a user= free of control bytes, and a line number
 * within the file; the counts match the table.  On failure: an error in
 * G_KEY_FILE_ERROR_PARSE reading "line N: ..." with N a line of the file
 * and the same N in *error_line_out; and it never quotes the hash or any
 * word after a {PLAIN} on that line (a password cut at a ':'): a word of
 * six bytes or more holding a character no message has of its own (so it
 * cannot match the message's own text) must not appear in the message
 * unless the line's user name (or, after a crypt hash, an attribute, which
 * may be quoted) holds it too.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "common/route.h"
#include "users-file-parse.h"

#include <string.h>

static gboolean
route_valid(const char *route, gsize len)
{
	return gh_route_valid(route, len);
}

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The line (1-based) of the text, without its '\n'. */
static gboolean
find_line(const char *text, gsize len, guint n, const char **line, gsize *line_len)
{
	gsize pos = 0;

	for (guint i = 1; pos <= len; i++) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		gsize l = nl != NULL ? (gsize)(nl - (text + pos)) : len - pos;

		if (i == n) {
			*line = text + pos;
			*line_len = l;
			return TRUE;
		}
		if (nl == NULL)
			return FALSE;
		pos += l + 1;
	}
	return FALSE;
}

static gboolean
telling_word(const char *w, gsize n)
{
	if (n < 6)
		return FALSE;
	for (gsize i = 0; i < n; i++) {
		if (strchr("!%&*?~^|@", w[i]) != NULL && w[i] != '\0')
			return TRUE;
	}
	return FALSE;
}

/* The message must not hold the line's hash or, after {PLAIN}, any word. */
static void
check_no_secret(const char *msg, const char *line, gsize len)
{
	const char *colon1 = memchr(line, ':', len);
	const char *name = line;
	gsize name_len;
	const char *rest;
	gsize rest_len;
	const char *attrs = "";
	gsize attrs_len = 0;
	gboolean plain;
	const char *p, *end;

	if (colon1 == NULL)
		return;
	name_len = (gsize)(colon1 - line);
	rest = colon1 + 1;
	rest_len = len - name_len - 1;
	while (rest_len > 0 && is_blank(*rest)) {
		rest++;
		rest_len--;
	}
	plain = rest_len >= 7 && memcmp(rest, "{PLAIN}", 7) == 0;
	if (plain) {
		rest += 7;
		rest_len -= 7;
	} else {
		/* a crypt hash: only up to the second colon */
		const char *colon2 = memchr(rest, ':', rest_len);
		if (colon2 != NULL) {
			attrs = colon2 + 1;
			attrs_len = rest_len - (gsize)(attrs - rest);
			rest_len = (gsize)(colon2 - rest);
		}
	}
	/* words: runs of bytes other than blanks, ':' and '=' (an attribute's
	 * key and value are quoted apart) */
	p = rest;
	end = rest + rest_len;
	while (p < end) {
		const char *w;
		gsize n;

		while (p < end && (g_ascii_isspace(*p) || *p == ':' || *p == '='))
			p++;
		w = p;
		while (p < end && !g_ascii_isspace(*p) && *p != ':' && *p != '=')
			p++;
		n = (gsize)(p - w);
		/* (a telling word is never empty, which memmem would find) */
		if (telling_word(w, n) && memmem(name, name_len, w, n) == NULL &&
		    memmem(attrs, attrs_len, w, n) == NULL)
			FUZZ_CHECK(memmem(msg, strlen(msg), w, n) == NULL);
	}
}

static void
check_entry(const GhUsersFile *uf, const char *name, const GhUserEntry *e, guint lines)
{
	FUZZ_CHECK(e != NULL && e->name != NULL && strcmp(e->name, name) == 0);
	FUZZ_CHECK(gh_users_file_lookup(uf, name) == e);
	FUZZ_CHECK(*e->name != '\0');
	for (const char *p = e->name; *p != '\0'; p++)
		FUZZ_CHECK(!g_ascii_isspace(*p) && (guchar)*p >= 0x20 && (guchar)*p != 0x7f);
	FUZZ_CHECK(e->hash != NULL && *e->hash != '\0');
	if (e->kind == GH_HASH_CRYPT) {
		FUZZ_CHECK(e->hash[0] == '$' && strchr(e->hash + 1, '$') != NULL);
		for (const char *p = e->hash; *p != '\0'; p++)
			FUZZ_CHECK((guchar)*p > 0x20 && (guchar)*p < 0x7f);
	} else {
		FUZZ_CHECK(e->kind == GH_HASH_PLAIN);
		FUZZ_CHECK(strchr(e->hash, ':') == NULL);
		FUZZ_CHECK(!is_blank(e->hash[0]) && !is_blank(e->hash[strlen(e->hash) - 1]));
	}
	if (e->route != NULL)
		FUZZ_CHECK(gh_route_valid(e->route, strlen(e->route)));
	if (e->user != NULL) {
		FUZZ_CHECK(*e->user != '\0');
		for (const char *p = e->user; *p != '\0'; p++)
			FUZZ_CHECK((guchar)*p >= 0x20 && (guchar)*p != 0x7f);
	}
	FUZZ_CHECK(e->line >= 1 && e->line <= lines);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_copy(data, size);
	GError *error = NULL;
	guint error_line = 12345;
	GhUsersFile *uf;
	guint lines = 1;

	for (gsize i = 0; i < size; i++)
		lines += text[i] == '\n';
	uf = gh_users_file_parse(text, size, route_valid, &error_line, &error);
	if (uf != NULL) {
		GHashTableIter it;
		gpointer k, v;
		guint n = 0, n_plain = 0;

		FUZZ_CHECK(error == NULL && error_line == 0);
		g_hash_table_iter_init(&it, uf->users);
		while (g_hash_table_iter_next(&it, &k, &v)) {
			const GhUserEntry *e = v;

			check_entry(uf, k, e, lines);
			n++;
			n_plain += e->kind == GH_HASH_PLAIN;
		}
		FUZZ_CHECK(n == uf->n_users && n_plain == uf->n_plain);
		FUZZ_CHECK(gh_users_file_lookup(uf, NULL) == NULL);
		gh_users_file_free(uf);
	} else {
		const char *line = NULL;
		gsize line_len = 0;
		guint n = 0;

		FUZZ_CHECK(error != NULL);
		FUZZ_CHECK(g_error_matches(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE));
		FUZZ_CHECK(sscanf(error->message, "line %u: ", &n) == 1);
		FUZZ_CHECK(n == error_line && n >= 1 && n <= lines);
		FUZZ_CHECK(g_str_has_prefix(error->message, "line ") &&
			   strstr(error->message, ": ") != NULL);
		FUZZ_CHECK(find_line(text, size, n, &line, &line_len));
		check_no_secret(error->message, line, line_len);
		g_error_free(error);
	}
	gh_users_file_free(NULL);
	g_free(text);
	return 0;
}
