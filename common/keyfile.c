/*
 * keyfile.c: reads gatehouse.conf into a GKeyFile and finds the line a
 * problem is on (see keyfile.h).
 *
 * The text goes through one pre-processing pass before GKeyFile sees it:
 * comments in the admin's style are blanked (a line whose first non-blank is
 * ';' or '#', and anything from a ';' or '#' that follows a space or tab),
 * trailing white space is dropped, and every line is classified (blank, group
 * header, key = value, other) so that duplicates, keys outside any group and
 * lines GKeyFile would reject can be reported with their line number.
 *
 * Invariants:
 *  - the pre-processed text has exactly the lines of the original, in order,
 *    so a line number found in one is the line number in the other;
 *  - gh_key_file_line() applies the very same pre-processing and the same
 *    rules for group and key names as the loader (and as GKeyFile), so the
 *    line it finds is the line GKeyFile read the value from;
 *  - all the problems the pre-processing pass finds are reported together,
 *    one per line of the GError message ("PATH:LINE: ...\nPATH:LINE: ...");
 *    GKeyFile's own parser stops at its first error.
 *
 * Only <glib.h> and the C library: this file is shared by the daemon, the
 * tool and the tests, and it neither logs nor touches sockets.
 */
#include "gh-build.h"

#include "common/keyfile.h"

#include <stdarg.h>
#include <string.h>

typedef enum {
	LINE_BLANK, /* empty, or only a comment */
	LINE_GROUP, /* "[name]" */
	LINE_KEY,   /* "key = value" */
	LINE_OTHER, /* anything GKeyFile would refuse to parse */
} LineKind;

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Blank out comments in `line` (in place) and drop the trailing white space,
 * '\r' of CRLF files included. */
static void
strip_comment(char *line)
{
	char *p = line;

	while (is_blank(*p))
		p++;
	if (*p == ';' || *p == '#') {
		*line = '\0';
		return;
	}
	/* A ';' or '#' glued to the text before it is data ("a;b", a colour
	 * "#fff" after '='): only one after white space opens a comment, so
	 * "key = value ; why" keeps "value". */
	for (; *p != '\0'; p++) {
		if ((*p == ';' || *p == '#') && p > line && is_blank(p[-1])) {
			*p = '\0';
			break;
		}
	}
	g_strchomp(line);
}

/* Classify a stripped line.  For a group header or a key, *name_out receives
 * the group name (between the brackets, as GKeyFile takes it) or the key name
 * (before '=', white space trimmed, as GKeyFile takes it).  (transfer full) */
static LineKind
classify(const char *line, char **name_out)
{
	const char *p = line;
	const char *eq;

	*name_out = NULL;
	while (g_ascii_isspace(*p))
		p++;
	if (*p == '\0')
		return LINE_BLANK;
	if (*p == '[') {
		/* GKeyFile: the first ']' ends the name and only blanks may
		 * follow it; the line is already chomped, so it must be last. */
		const char *close = strchr(p, ']');
		if (close == NULL || close[1] != '\0')
			return LINE_OTHER;
		*name_out = g_strndup(p + 1, close - p - 1);
		return LINE_GROUP;
	}
	eq = strchr(p, '=');
	if (eq == NULL || eq == p)
		return LINE_OTHER;
	while (eq > p && g_ascii_isspace(eq[-1]))
		eq--;
	*name_out = g_strndup(p, eq - p);
	return LINE_KEY;
}

/* Split `text` into lines with comments stripped.  A NUL byte in the middle
 * is kept as the end of its line; the caller checks for it with
 * `nul_line_out` (the 1-based line holding the first NUL, 0 when none). */
static GPtrArray *
split_lines(const char *text, gsize len, guint *nul_line_out)
{
	GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
	gsize start = 0;

	if (nul_line_out != NULL)
		*nul_line_out = 0;
	for (gsize i = 0; i <= len; i++) {
		char *line;
		if (i < len && text[i] != '\n')
			continue;
		/* a final line without '\n' counts; an empty tail after the
		 * last '\n' is not a line */
		if (i == len && start == len)
			break;
		line = g_strndup(text + start, i - start);
		if (nul_line_out != NULL && *nul_line_out == 0 && strlen(line) != i - start)
			*nul_line_out = lines->len + 1;
		strip_comment(line);
		g_ptr_array_add(lines, line);
		start = i + 1;
	}
	return lines;
}

static void add_problem(GString *problems, const char *path, guint line, const char *format, ...)
    G_GNUC_PRINTF(4, 5);

static void
add_problem(GString *problems, const char *path, guint line, const char *format, ...)
{
	va_list ap;

	if (problems->len > 0)
		g_string_append_c(problems, '\n');
	g_string_append_printf(problems, "%s:%u: ", path, line);
	va_start(ap, format);
	g_string_append_vprintf(problems, format, ap);
	va_end(ap);
}

/* Check what GKeyFile does not (duplicates) or reports without a line (stray
 * text, keys before the first group).  Problems are appended to `problems`,
 * one a line. */
static void
check_lines(const char *path, GPtrArray *lines, guint nul_line, GString *problems)
{
	g_autoptr(GHashTable) groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) keys = NULL; /* of the current group: name -> first line */
	g_autofree char *group = NULL;     /* the current group, NULL before the first */

	for (guint i = 0; i < lines->len; i++) {
		const char *line = g_ptr_array_index(lines, i);
		g_autofree char *name = NULL;
		guint lineno = i + 1;
		guint first;

		if (lineno == nul_line) {
			add_problem(problems, path, lineno, "line contains a NUL byte");
			continue;
		}
		if (!g_utf8_validate(line, -1, NULL)) {
			add_problem(problems, path, lineno, "line is not valid UTF-8");
			continue;
		}
		switch (classify(line, &name)) {
		case LINE_BLANK:
			break;
		case LINE_GROUP:
			first = GPOINTER_TO_UINT(g_hash_table_lookup(groups, name));
			if (first != 0)
				add_problem(problems, path, lineno,
					    "[%s]: group given twice (first on line %u)", name,
					    first);
			else
				g_hash_table_insert(groups, g_strdup(name),
						    GUINT_TO_POINTER(lineno));
			/* GKeyFile would merge a repeated group; its keys are
			 * only compared among themselves, since the repeated
			 * header is the error to fix. */
			g_clear_pointer(&keys, g_hash_table_unref);
			keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
			g_free(group);
			group = g_steal_pointer(&name);
			break;
		case LINE_KEY:
			if (group == NULL) {
				add_problem(problems, path, lineno,
					    "%s: key before any [group] header", name);
				break;
			}
			if (*name == '\0')
				break; /* GKeyFile reports the empty key name */
			first = GPOINTER_TO_UINT(g_hash_table_lookup(keys, name));
			if (first != 0)
				add_problem(problems, path, lineno,
					    "[%s] %s: given twice (first on line %u)", group, name,
					    first);
			else
				g_hash_table_insert(keys, g_steal_pointer(&name),
						    GUINT_TO_POINTER(lineno));
			break;
		case LINE_OTHER:
			add_problem(
			    problems, path, lineno,
			    "\"%s\" is not a key = value pair, a [group] header or a comment",
			    line + strspn(line, " \t"));
			break;
		}
	}
}

/* GKeyFile's parse errors name no line, but quote the text they refused
 * ("... line “xyz” which is ...", "Invalid key name: xyz"): find the first
 * line holding that text.  0 when it cannot be told. */
static guint
locate_error(GPtrArray *lines, const char *message)
{
	g_autofree char *quoted = NULL;
	const char *open = strstr(message, "\xe2\x80\x9c"); /* U+201C */
	const char *close = open != NULL ? strstr(open, "\xe2\x80\x9d") : NULL;

	if (open != NULL && close != NULL) {
		quoted = g_strndup(open + 3, close - open - 3);
	} else {
		const char *colon = g_strrstr(message, ": ");
		if (colon == NULL)
			return 0;
		quoted = g_strdup(colon + 2);
	}
	g_strstrip(quoted);
	if (*quoted == '\0')
		return 0;
	for (guint i = 0; i < lines->len; i++) {
		if (strstr(g_ptr_array_index(lines, i), quoted) != NULL)
			return i + 1;
	}
	return 0;
}

GKeyFile *
gh_key_file_load_from_data(const char *path, const char *text, gsize len, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GPtrArray) lines = NULL;
	g_autoptr(GString) problems = g_string_new(NULL);
	g_autoptr(GString) clean = g_string_new(NULL);
	g_autoptr(GError) local = NULL;
	guint nul_line = 0;

	g_return_val_if_fail(path != NULL, NULL);
	g_return_val_if_fail(text != NULL || len == 0, NULL);

	lines = split_lines(text != NULL ? text : "", len, &nul_line);
	check_lines(path, lines, nul_line, problems);
	if (problems->len > 0) {
		g_set_error_literal(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, problems->str);
		return NULL;
	}
	for (guint i = 0; i < lines->len; i++) {
		g_string_append(clean, g_ptr_array_index(lines, i));
		g_string_append_c(clean, '\n');
	}
	if (!g_key_file_load_from_data(kf, clean->str, clean->len, G_KEY_FILE_NONE, &local)) {
		guint line = locate_error(lines, local->message);
		if (line > 0)
			g_set_error(error, local->domain, local->code, "%s:%u: %s", path, line,
				    local->message);
		else
			g_set_error(error, local->domain, local->code, "%s: %s", path,
				    local->message);
		return NULL;
	}
	return g_steal_pointer(&kf);
}

/* The reason part of g_file_get_contents()'s message ("Failed to open file
 * “x”: No such file or directory" gives "No such file or directory"). */
static const char *
read_error_reason(const char *message)
{
	const char *close = g_strrstr(message, "\xe2\x80\x9d: "); /* U+201D */
	const char *colon;

	if (close != NULL)
		return close + strlen("\xe2\x80\x9d: ");
	colon = g_strrstr(message, ": ");
	return colon != NULL ? colon + 2 : message;
}

GKeyFile *
gh_key_file_load(const char *path, GError **error)
{
	g_autofree char *text = NULL;
	g_autoptr(GError) local = NULL;
	gsize len = 0;

	g_return_val_if_fail(path != NULL, NULL);

	if (!g_file_get_contents(path, &text, &len, &local)) {
		g_set_error(error, local->domain, local->code, "%s: cannot read: %s", path,
			    read_error_reason(local->message));
		return NULL;
	}
	return gh_key_file_load_from_data(path, text, len, error);
}

/* The index of `key`'s line in `[group]` (of the group header when key is
 * NULL) in split lines, or -1. */
static gint
find_line(GPtrArray *lines, const char *group, const char *key)
{
	gboolean inside = FALSE;
	for (guint i = 0; i < lines->len; i++) {
		g_autofree char *name = NULL;
		switch (classify(g_ptr_array_index(lines, i), &name)) {
		case LINE_GROUP:
			if (inside)
				return -1; /* the group ended without the key */
			if (strcmp(name, group) == 0) {
				if (key == NULL)
					return (gint)i;
				inside = TRUE;
			}
			break;
		case LINE_KEY:
			if (inside && strcmp(name, key) == 0)
				return (gint)i;
			break;
		case LINE_BLANK:
		case LINE_OTHER:
			break;
		}
	}
	return -1;
}

guint
gh_key_file_line(const char *path, const char *group, const char *key)
{
	g_autofree char *text = NULL;
	g_autoptr(GPtrArray) lines = NULL;
	gsize len = 0;

	if (path == NULL || group == NULL || !g_file_get_contents(path, &text, &len, NULL))
		return 0;
	lines = split_lines(text, len, NULL);
	return (guint)(find_line(lines, group, key) + 1);
}

char *
gh_key_file_peek(const char *path, const char *group, const char *key)
{
	g_autofree char *text = NULL;
	g_autoptr(GPtrArray) lines = NULL;
	gsize len = 0;
	gint i;

	if (!g_file_get_contents(path, &text, &len, NULL))
		return NULL;
	lines = split_lines(text, len, NULL);
	i = find_line(lines, group, key);
	if (i < 0)
		return NULL;
	/* a key line has its '='; the value is what follows, trimmed */
	return g_strstrip(g_strdup(strchr(g_ptr_array_index(lines, i), '=') + 1));
}

char *
gh_key_file_problemv(
    const char *path, const char *group, const char *key, const char *format, va_list ap)
{
	GString *s = g_string_new(path);
	guint line = 0;

	if (group != NULL) {
		line = gh_key_file_line(path, group, key);
		/* A key that is missing altogether is best pointed at by the
		 * header of the group it should be in. */
		if (line == 0 && key != NULL)
			line = gh_key_file_line(path, group, NULL);
	}
	if (line > 0)
		g_string_append_printf(s, ":%u", line);
	g_string_append(s, ": ");
	if (group != NULL)
		g_string_append_printf(s, "[%s]%s", group, key != NULL ? " " : "");
	if (key != NULL)
		g_string_append(s, key);
	if (group != NULL || key != NULL)
		g_string_append(s, ": ");
	g_string_append_vprintf(s, format, ap);
	return g_string_free(s, FALSE);
}

char *
gh_key_file_problem(const char *path, const char *group, const char *key, const char *format, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, format);
	msg = gh_key_file_problemv(path, group, key, format, ap);
	va_end(ap);
	return msg;
}

char **
gh_key_file_split_list(const char *value)
{
	GPtrArray *items = g_ptr_array_new();
	const char *p = value;

	while (p != NULL && *p != '\0') {
		const char *end;
		while (is_blank(*p))
			p++;
		end = p;
		while (*end != '\0' && !is_blank(*end))
			end++;
		if (end > p)
			g_ptr_array_add(items, g_strndup(p, end - p));
		p = end;
	}
	g_ptr_array_add(items, NULL);
	return (char **)g_ptr_array_free(items, FALSE);
}
