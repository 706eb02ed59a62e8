/*
 * users-file-parse.c: turns the text of a users file (gatehouse.conf(5),
 * USERS FILE) into a table of GhUserEntry, or into the first problem with
 * its line.
 *
 * A line is `name:hash[:attributes]`, split on its first two colons only, so
 * that route values may hold colons (route=[::1]:143).  Blank lines and lines
 * whose first non-blank character is '#' are skipped.  Surrounding blanks
 * (spaces, tabs, the '\r' of CRLF files) are dropped from the line and from
 * the name and hash fields; a {PLAIN} password therefore cannot begin or end
 * with a blank and cannot contain ':'.
 *
 * Invariants:
 *  - the reason of an error never contains the hash or any part of a
 *    {PLAIN} password: words after the second colon of a {PLAIN} line may be
 *    a password cut at a ':', so they are not quoted either;
 *  - the text is read in place; the only copies of a password are the ones
 *    in the returned entries, and every entry's hash is wiped when freed;
 *  - the table owns its entries; the key of each is the entry's own name.
 *
 * Pure: includes only <glib.h> and <string.h>; no I/O, no logging.  Whether
 * a route= value is a route (HOST, HOST:PORT, [IPv6], [IPv6]:PORT) is the
 * caller's route check's to say.
 */
#include "gh-build.h"

#include "users-file-parse.h"

#include <string.h>

#define PLAIN_PREFIX "{PLAIN}"
#define QUOTE_MAX 64

typedef struct {
	const char *p;
	gsize len;
} Span;

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static gboolean
is_control(char c)
{
	return (guchar)c < 0x20 || (guchar)c == 0x7f;
}

static Span
span_trim(Span s)
{
	while (s.len > 0 && is_blank(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && is_blank(s.p[s.len - 1]))
		s.len--;
	return s;
}

static gboolean
span_eq(Span s, const char *str)
{
	return s.len == strlen(str) && memcmp(s.p, str, s.len) == 0;
}

static gboolean
span_has_control(Span s)
{
	for (gsize i = 0; i < s.len; i++)
		if (is_control(s.p[i]))
			return TRUE;
	return FALSE;
}

static gboolean
span_has_space(Span s)
{
	for (gsize i = 0; i < s.len; i++)
		if (g_ascii_isspace(s.p[i]))
			return TRUE;
	return FALSE;
}

/* " 'text'" when the text may go into a log line as it is (short, printable,
 * UTF-8, and not possibly part of a password), else "": the reason then just
 * names the problem. */
static char *
quote(Span s, gboolean may_quote)
{
	if (!may_quote || s.len == 0 || s.len > QUOTE_MAX || span_has_control(s) ||
	    !g_utf8_validate(s.p, (gssize)s.len, NULL))
		return g_strdup("");
	return g_strdup_printf(" '%.*s'", (int)s.len, s.p);
}

static void
entry_free(gpointer data)
{
	GhUserEntry *e = data;

	if (e == NULL)
		return;
	if (e->hash != NULL)
		explicit_bzero(e->hash, strlen(e->hash));
	g_free(e->hash);
	g_free(e->name);
	g_free(e->route);
	g_free(e->user);
	g_free(e);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhUserEntry, entry_free)

/* The crypt(3) strings libxcrypt can check all look like "$id$...": we only
 * make sure of that shape here and leave the method to crypt_rn(), which
 * tells the module at login whether this system supports it. */
static char *
check_crypt_hash(Span h)
{
	static const char des_chars[] = "./0123456789"
					"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					"abcdefghijklmnopqrstuvwxyz";
	gboolean des_like = h.len == 13 || (h.len == 20 && h.p[0] == '_');

	for (gsize i = h.len == 20 ? 1 : 0; des_like && i < h.len; i++)
		des_like = h.p[i] != '\0' && strchr(des_chars, h.p[i]) != NULL;
	if (des_like)
		return g_strdup("DES crypt(3) hashes are not supported (too weak): make a new "
				"hash with gatehousectl hash-password");
	if (h.len < 3 || h.p[0] != '$' || memchr(h.p + 1, '$', h.len - 1) == NULL)
		return g_strdup("hash is not a crypt(3) string or {PLAIN}password");
	for (gsize i = 0; i < h.len; i++)
		if ((guchar)h.p[i] <= 0x20 || (guchar)h.p[i] >= 0x7f)
			return g_strdup("hash is not a crypt(3) string or {PLAIN}password");
	return NULL;
}

/* Parse the attributes of entry `e` (the text after the second colon).
 * Returns NULL, or the reason (transfer full). */
static char *
parse_attributes(GhUserEntry *e, Span attrs, GhUsersFileRouteCheck route_valid)
{
	/* After a {PLAIN} password the words may be the rest of a password
	 * that held a ':': never quote them. */
	gboolean may_quote = e->kind != GH_HASH_PLAIN;
	const char *p = attrs.p;
	const char *end = attrs.p + attrs.len;

	while (p < end) {
		Span word, key, value;
		const char *eq;

		while (p < end && g_ascii_isspace(*p))
			p++;
		if (p == end)
			break;
		word.p = p;
		while (p < end && !g_ascii_isspace(*p))
			p++;
		word.len = (gsize)(p - word.p);
		eq = memchr(word.p, '=', word.len);
		if (eq == NULL || eq == word.p) {
			g_autofree char *q = quote(word, may_quote);
			const char *hint =
			    may_quote ? "" : "; a {PLAIN} password cannot contain ':'";
			return g_strdup_printf("bad attribute%s (want key=value%s)", q, hint);
		}
		key = (Span){word.p, (gsize)(eq - word.p)};
		value = (Span){eq + 1, (gsize)(word.p + word.len - eq - 1)};
		if (span_eq(key, "route")) {
			if (e->route != NULL)
				return g_strdup("attribute 'route' given twice");
			if (!route_valid(value.p, value.len)) {
				g_autofree char *q = quote(value, may_quote);
				return g_strdup_printf(
				    "bad route%s (want HOST, HOST:PORT, [IPv6] or "
				    "[IPv6]:PORT)",
				    q);
			}
			e->route = g_strndup(value.p, value.len);
		} else if (span_eq(key, "user")) {
			if (e->user != NULL)
				return g_strdup("attribute 'user' given twice");
			if (value.len == 0)
				return g_strdup("empty value for attribute 'user'");
			if (span_has_control(value))
				return g_strdup("attribute 'user' contains a control character");
			e->user = g_strndup(value.p, value.len);
		} else if (!may_quote) {
			return g_strdup("unknown attribute "
					"(a {PLAIN} password cannot contain ':')");
		} else {
			g_autofree char *q = quote(key, may_quote);
			return g_strdup_printf("unknown attribute%s", q);
		}
	}
	return NULL;
}

/* Parse one line (without its '\n') into uf.  Returns NULL, or the reason
 * (transfer full). */
static char *
parse_line(GhUsersFile *uf, Span line, guint line_no, GhUsersFileRouteCheck route_valid)
{
	g_autoptr(GhUserEntry) e = NULL;
	const GhUserEntry *first;
	const char *colon1, *colon2;
	Span name, hash, attrs = {"", 0};
	char *reason;

	if (memchr(line.p, '\0', line.len) != NULL)
		return g_strdup("the line contains a NUL byte");
	line = span_trim(line);
	if (line.len == 0 || line.p[0] == '#')
		return NULL;

	colon1 = memchr(line.p, ':', line.len);
	if (colon1 == NULL)
		return g_strdup("missing ':' after the user name");
	name = span_trim((Span){line.p, (gsize)(colon1 - line.p)});
	if (name.len == 0)
		return g_strdup("empty user name");
	if (span_has_space(name))
		return g_strdup("user name contains white space");
	if (span_has_control(name))
		return g_strdup("user name contains a control character");

	hash.p = colon1 + 1;
	hash.len = (gsize)(line.p + line.len - hash.p);
	colon2 = memchr(hash.p, ':', hash.len);
	if (colon2 != NULL) {
		attrs.p = colon2 + 1;
		attrs.len = (gsize)(line.p + line.len - attrs.p);
		hash.len = (gsize)(colon2 - hash.p);
	}
	hash = span_trim(hash);
	if (hash.len == 0)
		return g_strdup("empty hash");

	e = g_new0(GhUserEntry, 1);
	e->name = g_strndup(name.p, name.len);
	e->line = line_no;
	if (hash.len >= strlen(PLAIN_PREFIX) &&
	    memcmp(hash.p, PLAIN_PREFIX, strlen(PLAIN_PREFIX)) == 0) {
		e->kind = GH_HASH_PLAIN;
		hash.p += strlen(PLAIN_PREFIX);
		hash.len -= strlen(PLAIN_PREFIX);
		/* the field's blanks are dropped: those after the prefix too */
		hash = span_trim(hash);
		if (hash.len == 0)
			return g_strdup("empty password after {PLAIN}");
	} else {
		e->kind = GH_HASH_CRYPT;
		reason = check_crypt_hash(hash);
		if (reason != NULL)
			return reason;
	}
	e->hash = g_strndup(hash.p, hash.len);

	reason = parse_attributes(e, attrs, route_valid);
	if (reason != NULL)
		return reason;

	first = g_hash_table_lookup(uf->users, e->name);
	if (first != NULL)
		return g_strdup_printf("user '%s' given twice (first on line %u)", e->name,
				       first->line);
	if (e->kind == GH_HASH_PLAIN)
		uf->n_plain++;
	if (e->route != NULL)
		uf->n_routes++;
	uf->n_users++;
	g_hash_table_insert(uf->users, e->name, e);
	e = NULL;
	return NULL;
}

GhUsersFile *
gh_users_file_parse(const char *text,
		    gsize len,
		    GhUsersFileRouteCheck route_valid,
		    guint *error_line_out,
		    GError **error)
{
	g_autoptr(GhUsersFile) uf = g_new0(GhUsersFile, 1);
	gsize pos = 0;
	guint line_no = 0;

	g_return_val_if_fail(text != NULL || len == 0, NULL);
	g_return_val_if_fail(route_valid != NULL, NULL);

	if (error_line_out != NULL)
		*error_line_out = 0;
	uf->users = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, entry_free);
	while (pos < len) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		Span line = {start, nl != NULL ? (gsize)(nl - start) : len - pos};
		g_autofree char *reason = NULL;

		pos += line.len + (nl != NULL ? 1 : 0);
		line_no++;
		reason = parse_line(uf, line, line_no, route_valid);
		if (reason != NULL) {
			if (error_line_out != NULL)
				*error_line_out = line_no;
			g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "line %u: %s",
				    line_no, reason);
			return NULL;
		}
	}
	return g_steal_pointer(&uf);
}

void
gh_users_file_free(GhUsersFile *uf)
{
	if (uf == NULL)
		return;
	g_clear_pointer(&uf->users, g_hash_table_unref);
	g_free(uf);
}

const GhUserEntry *
gh_users_file_lookup(const GhUsersFile *uf, const char *name)
{
	if (uf == NULL || name == NULL)
		return NULL;
	return g_hash_table_lookup(uf->users, name);
}
