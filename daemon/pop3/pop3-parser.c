/*
 * pop3-parser.c: POP3 commands and server responses (see pop3-parser.h).
 *
 * Invariants: every output points into the caller's buffer or is a new
 * string; no function reads past `len`; a NUL in the input is data, never
 * the end of the input (the multi-line body's lines come back as C strings,
 * cut at a NUL).
 */
#include "gh-build.h"

#include "pop3/pop3-parser.h"
#include "common/line.h"

#include <string.h>

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const struct {
	const char *name;
	GhPop3Verb verb;
} verbs[] = {
    {"USER", GH_POP3_CMD_USER},        {"PASS", GH_POP3_CMD_PASS},
    {"AUTH", GH_POP3_CMD_AUTH},        {"CAPA", GH_POP3_CMD_CAPA},
    {"STLS", GH_POP3_CMD_STLS},        {"QUIT", GH_POP3_CMD_QUIT},
    {"NOOP", GH_POP3_CMD_NOOP},        {"APOP", GH_POP3_CMD_APOP},
    {"STAT", GH_POP3_CMD_TRANSACTION}, {"LIST", GH_POP3_CMD_TRANSACTION},
    {"RETR", GH_POP3_CMD_TRANSACTION}, {"DELE", GH_POP3_CMD_TRANSACTION},
    {"RSET", GH_POP3_CMD_TRANSACTION}, {"TOP", GH_POP3_CMD_TRANSACTION},
    {"UIDL", GH_POP3_CMD_TRANSACTION}, {"LAST", GH_POP3_CMD_TRANSACTION},
};

void
gh_pop3_parse_command(const char *line, gsize len, GhPop3Command *out)
{
	gsize verb_end = 0;
	gsize i;

	out->verb = GH_POP3_CMD_UNKNOWN;
	out->arg = line + len;
	out->arg_len = 0;

	/* a NUL or a CR inside a line could not be passed on as sent */
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL) {
		out->verb = GH_POP3_CMD_INVALID;
		return;
	}
	while (verb_end < len && line[verb_end] != ' ')
		verb_end++;
	for (i = 0; i < G_N_ELEMENTS(verbs); i++) {
		if (strlen(verbs[i].name) == verb_end &&
		    g_ascii_strncasecmp(line, verbs[i].name, verb_end) == 0) {
			out->verb = verbs[i].verb;
			break;
		}
	}
	if (verb_end == len)
		return;
	if (out->verb == GH_POP3_CMD_PASS) {
		out->arg = line + verb_end + 1;
		out->arg_len = len - verb_end - 1;
		return;
	}
	i = verb_end;
	while (i < len && is_blank(line[i]))
		i++;
	while (len > i && is_blank(line[len - 1]))
		len--;
	out->arg = line + i;
	out->arg_len = len - i;
}

gboolean
gh_pop3_parse_auth(const char *arg, gsize len, char **mech, char **initial)
{
	const char *word[2] = {NULL, NULL};
	gsize word_len[2] = {0, 0};
	guint words = 0;
	gsize i = 0;

	*mech = NULL;
	*initial = NULL;
	/* "AUTH" [SP mechanism [SP initial-response]] */
	for (;;) {
		while (i < len && is_blank(arg[i]))
			i++;
		if (i == len)
			break;
		if (words == 2)
			return FALSE;
		word[words] = arg + i;
		while (i < len && !is_blank(arg[i]))
			i++;
		word_len[words] = (gsize)(arg + i - word[words]);
		words++;
	}
	/* SASL mechanism names are upper-case ASCII (RFC 4422 3.1) */
	if (words >= 1)
		*mech = g_ascii_strup(word[0], (gssize)word_len[0]);
	if (words == 2)
		*initial = g_strndup(word[1], word_len[1]);
	return TRUE;
}

/* ---- responses ---- */

/* `line` starts with `status` followed by the line end or a space */
static gboolean
starts_status(const char *line, gsize len, const char *status)
{
	gsize n = strlen(status);
	return len >= n && memcmp(line, status, n) == 0 && (len == n || line[n] == ' ');
}

void
gh_pop3_parse_status(const char *line, gsize len, GhPop3StatusLine *out)
{
	gsize i;

	memset(out, 0, sizeof(*out));
	out->code = line;
	out->text = line + len;
	if (starts_status(line, len, "+OK"))
		out->status = GH_POP3_STATUS_OK, i = 3;
	else if (starts_status(line, len, "-ERR"))
		out->status = GH_POP3_STATUS_ERR, i = 4;
	else if (starts_status(line, len, "+"))
		out->status = GH_POP3_STATUS_MORE, i = 1;
	else
		return;
	while (i < len && line[i] == ' ')
		i++;
	/* RFC 2449 8: a response code follows the status, in brackets; a
	 * challenge has none (its text is base64) */
	if (out->status != GH_POP3_STATUS_MORE && i < len && line[i] == '[') {
		const char *close = memchr(line + i + 1, ']', len - i - 1);
		if (close != NULL) {
			out->code = line + i + 1;
			out->code_len = (gsize)(close - out->code);
			i = (gsize)(close - line) + 1;
			while (i < len && line[i] == ' ')
				i++;
		}
	}
	out->text = line + i;
	out->text_len = len - i;
}

gboolean
gh_pop3_code_is(const GhPop3StatusLine *st, const char *want)
{
	gsize n = strlen(want);
	return st->code_len >= n && g_ascii_strncasecmp(st->code, want, n) == 0 &&
	       (st->code_len == n || st->code[n] == '/');
}

GhPop3MultiStatus
gh_pop3_parse_multiline(const char *buf, gsize len, gsize max, char ***lines, gsize *consumed)
{
	GPtrArray *out = NULL;
	gsize pos = 0;

	*lines = NULL;
	*consumed = 0;
	for (;;) {
		gsize line_len = 0, used = 0;
		GhLineStatus st = gh_line_next(buf + pos, len - pos, GH_POP3_MAX_REPLY_LINE,
					       &line_len, &used, NULL);
		if (st == GH_LINE_TOO_LONG || (st == GH_LINE_NEED_MORE && len > max))
			goto bad;
		if (st == GH_LINE_NEED_MORE)
			break;
		if (pos + used > max)
			goto bad;
		if (line_len == 1 && buf[pos] == '.') {
			if (out == NULL)
				out = g_ptr_array_new();
			g_ptr_array_add(out, NULL);
			*lines = (char **)g_ptr_array_free(out, FALSE);
			*consumed = pos + used;
			return GH_POP3_MULTI_OK;
		}
		if (out == NULL)
			out = g_ptr_array_new();
		/* RFC 1939 3: a line that starts with "." has one more in front */
		if (line_len > 0 && buf[pos] == '.')
			g_ptr_array_add(out, g_strndup(buf + pos + 1, line_len - 1));
		else
			g_ptr_array_add(out, g_strndup(buf + pos, line_len));
		pos += used;
	}
	if (out != NULL) {
		g_ptr_array_set_free_func(out, g_free);
		g_ptr_array_unref(out);
	}
	return GH_POP3_MULTI_NEED_MORE;
bad:
	if (out != NULL) {
		g_ptr_array_set_free_func(out, g_free);
		g_ptr_array_unref(out);
	}
	return GH_POP3_MULTI_BAD;
}

const char *
gh_pop3_capa_find(char *const *lines, const char *keyword, char ***params)
{
	gsize n = strlen(keyword);

	if (params != NULL)
		*params = NULL;
	for (guint i = 0; lines != NULL && lines[i] != NULL; i++) {
		const char *l = lines[i];
		if (g_ascii_strncasecmp(l, keyword, n) != 0 || (l[n] != '\0' && !is_blank(l[n])))
			continue;
		if (params != NULL) {
			g_autoptr(GPtrArray) words = g_ptr_array_new_with_free_func(g_free);
			const char *p = l + n;
			while (*p != '\0') {
				const char *start;
				while (is_blank(*p))
					p++;
				if (*p == '\0')
					break;
				start = p;
				while (*p != '\0' && !is_blank(*p))
					p++;
				g_ptr_array_add(words, g_strndup(start, (gsize)(p - start)));
			}
			g_ptr_array_add(words, NULL);
			g_ptr_array_set_free_func(words, NULL);
			*params = (char **)g_ptr_array_free(g_steal_pointer(&words), FALSE);
		}
		return l;
	}
	return NULL;
}
