/*
 * smtp-parser.c: the pure SMTP parsers (see smtp-parser.h): finding a line
 * in the input buffer, classifying a command line, checking MAIL/RCPT paths
 * and AUTH arguments, parsing a (multi-line) server reply, reading EHLO
 * extensions and encoding xtext.
 *
 * Invariants:
 *  - every input buffer is a (pointer, length) pair, not NUL-terminated: no
 *    byte at or after `len` is read, and no str*() function is used on one;
 *  - nothing here keeps state between calls, logs, or looks at a clock, so
 *    feeding a buffer in pieces gives the same answers as feeding it whole;
 *  - memory is handed out only on success; on failure string outputs are
 *    NULL and a reply is left untouched, so callers need no cleanup.
 */
#include "gh-build.h"

#include "smtp/smtp-parser.h"

#include <string.h>

/* ---- commands: RFC 5321 4.1.1 ---- */

static const struct {
	const char *name;
	GhSmtpVerb verb;
} verbs[] = {
    {"HELO", GH_SMTP_CMD_HELO},
    {"EHLO", GH_SMTP_CMD_EHLO},
    {"AUTH", GH_SMTP_CMD_AUTH},
    {"MAIL", GH_SMTP_CMD_MAIL},
    {"RCPT", GH_SMTP_CMD_RCPT},
    {"DATA", GH_SMTP_CMD_DATA},
    {"RSET", GH_SMTP_CMD_RSET},
    {"NOOP", GH_SMTP_CMD_NOOP},
    {"QUIT", GH_SMTP_CMD_QUIT},
    {"HELP", GH_SMTP_CMD_HELP},
    {"VRFY", GH_SMTP_CMD_VRFY},
    {"EXPN", GH_SMTP_CMD_EXPN},
    {"STARTTLS", GH_SMTP_CMD_STARTTLS},
    /* RFC 821 commands that RFC 5321 dropped (SEND, SOML, SAML) or
     * deprecated as insecure (TURN): known, refused with 502. */
    {"SEND", GH_SMTP_CMD_NOT_IMPLEMENTED},
    {"SOML", GH_SMTP_CMD_NOT_IMPLEMENTED},
    {"SAML", GH_SMTP_CMD_NOT_IMPLEMENTED},
    {"TURN", GH_SMTP_CMD_NOT_IMPLEMENTED},
    /* RFC 3030: we do not offer CHUNKING, so BDAT is never valid here. */
    {"BDAT", GH_SMTP_CMD_BDAT},
};

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Case-insensitive comparison of the n bytes at s with the NUL-terminated
 * ASCII word `word`: equal only when the lengths match too. */
static gboolean
word_equal(const char *s, gsize n, const char *word)
{
	return strlen(word) == n && g_ascii_strncasecmp(s, word, n) == 0;
}

void
gh_smtp_parse_command(const char *line, gsize len, GhSmtpCommand *out)
{
	gsize verb_end = 0;
	gsize arg_start;
	gsize arg_end = len;

	out->verb = GH_SMTP_CMD_UNKNOWN;
	/* an empty argument points at the end of the line (never read) */
	out->arg = line != NULL ? line + len : "";
	out->arg_len = 0;
	if (len == 0)
		return;

	/* RFC 5321 2.3.8: CR and LF appear only together, as the line end, and
	 * a NUL is not text at all.  A line holding either was not written by a
	 * real SMTP client; it may be an attempt to smuggle a second command
	 * past a filter that splits lines differently from us. */
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL ||
	    memchr(line, '\n', len) != NULL) {
		out->verb = GH_SMTP_CMD_INVALID;
		return;
	}

	while (verb_end < len && !is_blank(line[verb_end]))
		verb_end++;
	for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++) {
		if (word_equal(line, verb_end, verbs[i].name)) {
			out->verb = verbs[i].verb;
			break;
		}
	}

	arg_start = verb_end;
	while (arg_start < len && is_blank(line[arg_start]))
		arg_start++;
	/* Clients pad lines with trailing white space; it is never part of an
	 * argument (RFC 5321 4.1.1 lets servers ignore it). */
	while (arg_end > arg_start && is_blank(line[arg_end - 1]))
		arg_end--;
	if (arg_end > arg_start) {
		out->arg = line + arg_start;
		out->arg_len = arg_end - arg_start;
	}
}

/* RFC 5321 4.1.2 esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). */
static gboolean
esmtp_keyword_char(char c, gboolean first)
{
	return g_ascii_isalnum(c) || (!first && c == '-');
}

/* RFC 5321 4.1.2 esmtp-value: any printable ASCII but "=" (33..60, 62..126);
 * RFC 6531 3.3 adds UTF-8, so bytes from 0x80 up are let through as well. */
static gboolean
esmtp_value_char(char c)
{
	guchar u = (guchar)c;

	return (u >= 33 && u <= 126 && u != '=') || u >= 0x80;
}

/* Check the ESMTP parameters after a path: `s[0..len)` is empty or starts
 * with a space, and holds keyword["="value] words separated by spaces. */
static gboolean
check_esmtp_params(const char *s, gsize len)
{
	gsize i = 0;

	if (len > 0 && !is_blank(s[0]))
		return FALSE; /* "<a@b>SIZE=1": the path must end at a space */
	for (;;) {
		gsize start;

		while (i < len && is_blank(s[i]))
			i++;
		if (i == len)
			return TRUE;
		start = i;
		while (i < len && esmtp_keyword_char(s[i], i == start))
			i++;
		if (i == start)
			return FALSE;
		if (i < len && s[i] == '=') {
			gsize vstart = ++i;

			while (i < len && esmtp_value_char(s[i]))
				i++;
			if (i == vstart)
				return FALSE;
		}
		if (i < len && !is_blank(s[i]))
			return FALSE;
	}
}

/* A byte that may stand in an address: not a space, an angle bracket or a
 * control character (RFC 5321 4.1.2 Mailbox has none of them unquoted;
 * quoted local parts holding them are not accepted, see the header). */
static gboolean
address_char(char c)
{
	guchar u = (guchar)c;

	return u > 32 && u != 127 && c != '<' && c != '>';
}

gboolean
gh_smtp_parse_path(const char *arg, gsize len, const char *keyword, char **address)
{
	gsize klen = strlen(keyword);
	gsize i, start, end;

	if (address != NULL)
		*address = NULL;
	/* RFC 5321 4.1.1.2/4.1.1.3: "FROM:" / "TO:" with no space before the
	 * colon (nobody sends one, and Postfix refuses it too). */
	if (len < klen + 1 || g_ascii_strncasecmp(arg, keyword, klen) != 0 || arg[klen] != ':')
		return FALSE;
	i = klen + 1;
	/* Leniency (see the header): spaces after the colon. */
	while (i < len && is_blank(arg[i]))
		i++;
	if (i == len)
		return FALSE;

	if (arg[i] == '<') {
		start = ++i;
		while (i < len && address_char(arg[i]))
			i++;
		if (i == len || arg[i] != '>')
			return FALSE; /* unclosed, or a space/control inside */
		end = i++;
		/* RFC 5321 4.1.1.2: "<>" is the null reverse-path, for bounces;
		 * a forward-path always names a mailbox (4.1.1.3). */
		if (end == start && g_ascii_strcasecmp(keyword, "FROM") != 0)
			return FALSE;
	} else {
		/* Leniency: no brackets, the address runs to the next space. */
		start = i;
		while (i < len && address_char(arg[i]))
			i++;
		end = i;
		if (end == start)
			return FALSE; /* a stray '>' or a control character */
	}

	if (!check_esmtp_params(arg + i, len - i))
		return FALSE;
	if (address != NULL)
		*address = g_strndup(arg + start, end - start);
	return TRUE;
}

/* ---- AUTH: RFC 4954 4 ---- */

gboolean
gh_smtp_parse_auth(const char *arg, gsize len, char **mech, char **initial)
{
	gsize word_start[2] = {0, 0};
	gsize word_end[2] = {0, 0};
	guint words = 0;
	gsize i = 0;

	if (mech != NULL)
		*mech = NULL;
	if (initial != NULL)
		*initial = NULL;

	/* "AUTH" SP sasl-mech [SP initial-response]: one or two words. */
	for (;;) {
		while (i < len && is_blank(arg[i]))
			i++;
		if (i == len)
			break;
		if (words == 2)
			return FALSE;
		word_start[words] = i;
		while (i < len && !is_blank(arg[i]))
			i++;
		word_end[words] = i;
		words++;
	}
	if (words == 0)
		return FALSE;

	/* SASL mechanism names are case-insensitive upper-case ASCII
	 * (RFC 4422 3.1); upper-casing lets callers compare with strcmp. */
	if (mech != NULL)
		*mech = g_ascii_strup(arg + word_start[0], (gssize)(word_end[0] - word_start[0]));
	if (initial != NULL && words == 2)
		*initial = g_strndup(arg + word_start[1], word_end[1] - word_start[1]);
	return TRUE;
}

/* ---- replies: RFC 5321 4.2 ---- */

/* Where one reply line sits in the buffer. */
typedef struct {
	guint code;
	gboolean more;  /* "NNN-": another line follows */
	gsize text;     /* start of the text after "NNN-" / "NNN " */
	gsize text_end; /* end of the text (before CR LF / LF) */
	gsize next;     /* the byte after the LF */
} ReplyLine;

/* Check the complete line buf[start..lf] (lf is the index of its LF).
 * RFC 5321 4.2: Reply-code [ ( "-" / SP ) textstring ] CRLF, where the
 * code is 2yz..5yz (1yz is not used by SMTP, 4.2.1). */
static gboolean
reply_line(const char *buf, gsize start, gsize lf, ReplyLine *out)
{
	gsize end = (lf > start && buf[lf - 1] == '\r') ? lf - 1 : lf;
	gsize n = end - start;
	const char *p = buf + start;

	if (n < 3 || !g_ascii_isdigit(p[0]) || !g_ascii_isdigit(p[1]) || !g_ascii_isdigit(p[2]))
		return FALSE;
	out->code = (guint)(p[0] - '0') * 100 + (guint)(p[1] - '0') * 10 + (guint)(p[2] - '0');
	if (out->code < 200 || out->code > 599)
		return FALSE;
	if (n > 3 && p[3] != '-' && p[3] != ' ')
		return FALSE;
	/* A NUL would silently cut the line short once it is a C string. */
	if (memchr(p, '\0', n) != NULL)
		return FALSE;
	out->more = n > 3 && p[3] == '-';
	out->text = n > 3 ? start + 4 : end;
	out->text_end = end;
	out->next = lf + 1;
	return TRUE;
}

GhSmtpReplyStatus
gh_smtp_parse_reply(const char *buf, gsize len, gsize max, GhSmtpReply *reply, gsize *consumed)
{
	/* Only the first `max` bytes can belong to an acceptable reply. */
	gsize window = MIN(len, max);
	gsize pos = 0;
	guint code = 0;
	guint nlines = 0;
	ReplyLine l;

	*consumed = 0;
	if (len == 0)
		return GH_SMTP_REPLY_NEED_MORE;
	/* First pass: check every complete line and find the reply's end, so
	 * nothing is allocated for a reply that is not whole yet. */
	for (;;) {
		gsize lf = gh_line_find_lf(buf, pos, window);

		if (lf == window)
			/* No line end within reach: wait, unless the reply is
			 * already at its limit without ending (then it is over). */
			return len >= max ? GH_SMTP_REPLY_BAD : GH_SMTP_REPLY_NEED_MORE;
		if (!reply_line(buf, pos, lf, &l))
			return GH_SMTP_REPLY_BAD;
		if (nlines > 0 && l.code != code)
			return GH_SMTP_REPLY_BAD; /* 4.2.1: one code for all lines */
		code = l.code;
		nlines++;
		pos = l.next;
		if (!l.more)
			break;
	}

	/* The lines' texts go into one block (each ends in a NUL where its
	 * CRLF was, and the block is no longer than the reply), the array
	 * points into it: three allocations for a reply of any length. */
	reply->code = code;
	reply->text = g_malloc(pos + 1);
	reply->lines = g_ptr_array_sized_new(nlines);
	for (gsize p = 0, at = 0; p < pos; p = l.next) {
		gsize lf = gh_line_find_lf(buf, p, pos);
		gsize n;

		(void)reply_line(buf, p, lf, &l);
		n = l.text_end - l.text;
		memcpy(reply->text + at, buf + l.text, n);
		reply->text[at + n] = '\0';
		g_ptr_array_add(reply->lines, reply->text + at);
		at += n + 1;
	}
	*consumed = pos;
	return GH_SMTP_REPLY_OK;
}

void
gh_smtp_reply_clear(GhSmtpReply *reply)
{
	if (reply == NULL)
		return;
	g_clear_pointer(&reply->lines, g_ptr_array_unref);
	g_clear_pointer(&reply->text, g_free);
	reply->code = 0;
}

/* RFC 5321 4.1.1.1: ehlo-line = ehlo-keyword *( SP ehlo-param ). */
gboolean
gh_smtp_reply_has_extension(const GhSmtpReply *ehlo, const char *keyword, char ***params)
{
	if (params != NULL)
		*params = NULL;
	if (ehlo == NULL || ehlo->lines == NULL)
		return FALSE;

	/* The first line is the server's name and greeting, not an extension. */
	for (guint i = 1; i < ehlo->lines->len; i++) {
		const char *line = g_ptr_array_index(ehlo->lines, i);
		gsize kw = strcspn(line, " ");

		if (!word_equal(line, kw, keyword))
			continue;
		if (params != NULL) {
			GPtrArray *out = g_ptr_array_new();
			const char *p = line + kw;

			for (;;) {
				gsize n;

				while (*p == ' ')
					p++;
				if (*p == '\0')
					break;
				n = strcspn(p, " ");
				g_ptr_array_add(out, g_strndup(p, n));
				p += n;
			}
			g_ptr_array_add(out, NULL);
			*params = (char **)g_ptr_array_free(out, FALSE);
		}
		return TRUE;
	}
	return FALSE;
}

/* ---- xtext: RFC 3461 4 ---- */

void
gh_smtp_xtext_append(GString *s, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	/* xchar is 33..126 except "+" and "="; everything else is "+" and two
	 * upper-case hex digits.  Postfix decodes XCLIENT values this way. */
	for (const char *p = value; *p != '\0'; p++) {
		guchar u = (guchar)*p;

		if (u >= 33 && u <= 126 && u != '+' && u != '=') {
			g_string_append_c(s, (char)u);
		} else {
			g_string_append_c(s, '+');
			g_string_append_c(s, hex[u >> 4]);
			g_string_append_c(s, hex[u & 0xf]);
		}
	}
}

char *
gh_smtp_xtext_encode(const char *value)
{
	GString *s = g_string_new(NULL);

	if (value != NULL)
		gh_smtp_xtext_append(s, value);
	return g_string_free(s, FALSE);
}
