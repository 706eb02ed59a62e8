/*
 * fuzz-pop3-command.c: the libFuzzer target of what a POP3 client's bytes
 * meet before login: line framing (common/line.c, with the AUTH line limit
 * and the 255-octet rule for every other command, as pop3_command() in
 * daemon/pop3/pop3-session.c frames them), command classification and
 * arguments, AUTH arguments with their SASL initial response
 * (daemon/pop3/pop3-parser.c, daemon/session/sasl.c).  The same lines also
 * go through the status line parser and the input through the multi-line
 * parser, the pure parts of the backend side (fuzz-pop3-backend.c drives
 * them through the dialogue).
 *
 * Input: the client's bytes, as many lines as they hold.
 *
 * Asserted: framing consumes at least one byte and at most what it was
 * given, an OK line holds no LF and ends where its LF is, and the same line
 * without its LF is not yet a line; a line over 255 octets is a command only
 * when it is AUTH; a command's argument lies inside the line; INVALID
 * exactly when the line holds NUL or CR, with no argument; the verb is the
 * first word up to a space, matched case-insensitively (an independent
 * table here); PASS's argument is everything after "PASS ", the others'
 * have no blank at either end and only blanks around them; the verb and
 * argument do not change when the line is upper-cased, nor when blanks are
 * added at its end (PASS's argument grows by them); AUTH takes 0, 1 or 2
 * words and gives an upper-case mechanism and an initial response without
 * blanks, and what PLAIN or LOGIN decoding says of it is consistent.  A
 * status line's code and text lie inside it, the code between brackets
 * right after the status, the text to the line's end; a multi-line body
 * that parses ends with its "." line, within the limits, and any shorter
 * prefix of it needs more.
 */
#include "gh-build.h"

#include "fuzz-auth-command.h"
#include "fuzz.h"
#include "common/line.h"
#include "pop3/pop3-parser.h"
#include "session/sasl.h"

#include <string.h>

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The verbs of RFC 1939, 2449, 2595 and 5034, written down again here so
 * that the parser's own table is checked, not trusted. */
static GhPop3Verb
expected_verb(const char *word, gsize n)
{
	static const char *const names[] = {"USER", "PASS", "AUTH", "CAPA", "STLS", "QUIT",
					    "NOOP", "APOP", "STAT", "LIST", "RETR", "DELE",
					    "RSET", "TOP",  "UIDL", "LAST"};
	static const GhPop3Verb verbs[] = {
	    GH_POP3_CMD_USER,        GH_POP3_CMD_PASS,        GH_POP3_CMD_AUTH,
	    GH_POP3_CMD_CAPA,        GH_POP3_CMD_STLS,        GH_POP3_CMD_QUIT,
	    GH_POP3_CMD_NOOP,        GH_POP3_CMD_APOP,        GH_POP3_CMD_TRANSACTION,
	    GH_POP3_CMD_TRANSACTION, GH_POP3_CMD_TRANSACTION, GH_POP3_CMD_TRANSACTION,
	    GH_POP3_CMD_TRANSACTION, GH_POP3_CMD_TRANSACTION, GH_POP3_CMD_TRANSACTION,
	    GH_POP3_CMD_TRANSACTION,
	};

	G_STATIC_ASSERT(G_N_ELEMENTS(names) == G_N_ELEMENTS(verbs));
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
		gboolean same = strlen(names[i]) == n;

		for (gsize k = 0; same && k < n; k++)
			same = g_ascii_toupper(word[k]) == names[i][k];
		if (same)
			return verbs[i];
	}
	return GH_POP3_CMD_UNKNOWN;
}

static void
check_auth(const char *arg, gsize len)
{
	g_autofree char *mech = NULL;
	g_autofree char *initial = NULL;
	guint words = 0;
	gboolean ok;

	for (gsize i = 0; i < len; i++)
		if (!is_blank(arg[i]) && (i == 0 || is_blank(arg[i - 1])))
			words++;
	ok = gh_pop3_parse_auth(arg, len, &mech, &initial);
	FUZZ_CHECK(ok == (words <= 2));
	if (!ok) {
		FUZZ_CHECK(mech == NULL && initial == NULL);
		return;
	}
	/* AUTH alone lists the mechanisms */
	FUZZ_CHECK((mech == NULL) == (words == 0));
	FUZZ_CHECK((initial != NULL) == (words == 2));
	if (mech == NULL)
		return;
	fuzz_check_sasl_start(mech, initial);
}

static void
check_command(const char *line, gsize len)
{
	GhPop3Command cmd, again;
	gboolean bad = memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL;
	const char *sp = memchr(line, ' ', len);
	gsize verb_len = sp != NULL ? (gsize)(sp - line) : len;
	g_autofree char *upper = NULL;
	g_autofree char *padded = NULL;

	FUZZ_CHECK(memchr(line, '\n', len) == NULL);
	gh_pop3_parse_command(line, len, &cmd);
	FUZZ_CHECK(cmd.arg != NULL);
	FUZZ_CHECK(cmd.arg >= line && cmd.arg_len <= len && cmd.arg + cmd.arg_len <= line + len);
	FUZZ_CHECK((cmd.verb == GH_POP3_CMD_INVALID) == bad);
	if (cmd.verb == GH_POP3_CMD_INVALID) {
		FUZZ_CHECK(cmd.arg_len == 0);
		return;
	}
	/* the first word up to a space, any case */
	FUZZ_CHECK(cmd.verb == expected_verb(line, verb_len));
	if (cmd.verb == GH_POP3_CMD_PASS) {
		/* everything after "PASS ", as sent */
		if (len > 4)
			FUZZ_CHECK(cmd.arg == line + 5 && cmd.arg_len == len - 5);
		else
			FUZZ_CHECK(cmd.arg_len == 0);
	} else if (cmd.arg_len > 0) {
		FUZZ_CHECK(cmd.arg > line + verb_len);
		FUZZ_CHECK(!is_blank(cmd.arg[0]) && !is_blank(cmd.arg[cmd.arg_len - 1]));
		/* only blanks between the verb and the argument, and after it */
		for (const char *p = line + verb_len; p < cmd.arg; p++)
			FUZZ_CHECK(is_blank(*p));
		for (const char *p = cmd.arg + cmd.arg_len; p < line + len; p++)
			FUZZ_CHECK(is_blank(*p));
	} else {
		/* nothing but blanks after the verb */
		for (const char *p = line + verb_len; p < line + len; p++)
			FUZZ_CHECK(is_blank(*p));
	}

	/* case-insensitive verbs: the upper-cased line reads the same */
	upper = g_ascii_strup(line, (gssize)len);
	gh_pop3_parse_command(upper, len, &again);
	FUZZ_CHECK(again.verb == cmd.verb && again.arg_len == cmd.arg_len);
	FUZZ_CHECK(again.arg - upper == cmd.arg - line);

	/* blanks at the end: trimmed, except in PASS's argument */
	padded = g_malloc(len + 3);
	memcpy(padded, line, len);
	memcpy(padded + len, " \t ", 3);
	gh_pop3_parse_command(padded, len + 3, &again);
	/* "USER" + " \t " is still USER, "USER\t" + " \t " still unknown */
	FUZZ_CHECK(again.verb == cmd.verb);
	if (cmd.verb == GH_POP3_CMD_PASS) {
		FUZZ_CHECK(again.arg == padded + 5 && again.arg_len == len + 3 - 5);
	} else if (cmd.arg_len > 0) {
		FUZZ_CHECK(again.arg_len == cmd.arg_len && again.arg - padded == cmd.arg - line);
	} else {
		FUZZ_CHECK(again.arg_len == 0);
	}

	/* AUTH's arguments on every line: the session picks by verb, but the
	 * parser may not misbehave on any text */
	check_auth(cmd.arg, cmd.arg_len);
}

/* The same line as a server's status line. */
static void
check_status(const char *line, gsize len)
{
	GhPop3StatusLine st;
	gsize head;

	gh_pop3_parse_status(line, len, &st);
	FUZZ_CHECK(st.code != NULL && st.text != NULL);
	FUZZ_CHECK(st.code >= line && st.code + st.code_len <= line + len);
	FUZZ_CHECK(st.text >= line && st.text + st.text_len == line + len);
	switch (st.status) {
	case GH_POP3_STATUS_BAD:
		FUZZ_CHECK(st.code_len == 0 && st.text_len == 0);
		FUZZ_CHECK(!gh_pop3_code_is(&st, "SYS"));
		return;
	case GH_POP3_STATUS_OK:
		head = 3;
		FUZZ_CHECK(len >= 3 && memcmp(line, "+OK", 3) == 0);
		break;
	case GH_POP3_STATUS_ERR:
		head = 4;
		FUZZ_CHECK(len >= 4 && memcmp(line, "-ERR", 4) == 0);
		break;
	case GH_POP3_STATUS_MORE:
		head = 1;
		FUZZ_CHECK(len >= 1 && line[0] == '+');
		/* a challenge has no code */
		FUZZ_CHECK(st.code_len == 0);
		break;
	default:
		FUZZ_CHECK(!"no such status");
		return;
	}
	/* the status is a word of its own */
	FUZZ_CHECK(len == head || line[head] == ' ');
	FUZZ_CHECK(st.text_len == 0 || st.text[0] != ' ');
	FUZZ_CHECK(st.text >= line + head);
	if (st.code_len > 0) {
		g_autofree char *code = g_strndup(st.code, st.code_len);
		g_autofree char *below = NULL;

		/* "[code]" after the status and its spaces, before the text */
		FUZZ_CHECK(st.code > line + head && st.code[-1] == '[' &&
			   st.code[st.code_len] == ']');
		FUZZ_CHECK(memchr(st.code, ']', st.code_len) == NULL);
		for (const char *p = line + head; p < st.code - 1; p++)
			FUZZ_CHECK(*p == ' ');
		FUZZ_CHECK(st.text > st.code + st.code_len);
		/* a code is itself, and under each of its prefixes that end
		 * before a '/' */
		if (strlen(code) == st.code_len) {
			FUZZ_CHECK(gh_pop3_code_is(&st, code));
			for (gsize k = 0; k < st.code_len; k++) {
				if (code[k] != '/')
					continue;
				code[k] = '\0';
				FUZZ_CHECK(gh_pop3_code_is(&st, code));
				code[k] = '/';
			}
		}
		below = g_strdup_printf("%s/X", code);
		FUZZ_CHECK(!gh_pop3_code_is(&st, below));
	} else {
		FUZZ_CHECK(!gh_pop3_code_is(&st, "SYS") && !gh_pop3_code_is(&st, "AUTH"));
	}
}

/* The input as the body of a multi-line response. */
static void
check_multiline(const char *buf, gsize len, gsize max)
{
	char **lines = NULL;
	gsize used = 0;
	GhPop3MultiStatus ms = gh_pop3_parse_multiline(buf, len, max, &lines, &used);
	gsize lfs = 0;

	if (ms != GH_POP3_MULTI_OK) {
		FUZZ_CHECK(ms == GH_POP3_MULTI_NEED_MORE || ms == GH_POP3_MULTI_BAD);
		FUZZ_CHECK(lines == NULL && used == 0);
		if (ms == GH_POP3_MULTI_NEED_MORE)
			FUZZ_CHECK(len <= max);
		return;
	}
	FUZZ_CHECK(lines != NULL);
	FUZZ_CHECK(used >= 2 && used <= len && used <= max);
	/* it ends with the "." line */
	{
		const char *end = buf + used;
		gboolean lf = end[-2] == '.' && (used == 2 || end[-3] == '\n');
		gboolean crlf = used >= 3 && end[-2] == '\r' && end[-3] == '.' &&
				(used == 3 || end[-4] == '\n');

		FUZZ_CHECK(end[-1] == '\n' && (lf || crlf));
	}
	for (gsize i = 0; i < used; i++)
		lfs += buf[i] == '\n';
	/* one line each, the "." one not among them; none longer than sent */
	FUZZ_CHECK(g_strv_length(lines) == lfs - 1);
	for (guint i = 0; lines[i] != NULL; i++)
		FUZZ_CHECK(strlen(lines[i]) < GH_POP3_MAX_REPLY_LINE);
	g_strfreev(lines);
	/* any shorter prefix is not a whole body yet: the three longest,
	 * then halves */
	for (gsize n = used - 1;;) {
		char *copy = fuzz_copy(buf, n);
		gsize u = 1;

		lines = NULL;
		ms = gh_pop3_parse_multiline(copy, n, max, &lines, &u);
		g_free(copy);
		FUZZ_CHECK(ms == GH_POP3_MULTI_NEED_MORE && lines == NULL && u == 0);
		if (n == 0)
			break;
		n = n + 3 >= used ? n - 1 : n / 2;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact heap copy: ASan sees any read past the end */
	char *buf = fuzz_copy(data, size);
	gboolean discarding = FALSE;
	gsize pos = 0;

	check_multiline(buf, size, 4096);
	check_multiline(buf, size, 32);
	while (pos < size) {
		const char *p = buf + pos;
		gsize left = size - pos;
		gsize line_len = 0, used = 0;
		gboolean terminated = FALSE;
		GhLineStatus st;

		if (discarding) {
			/* the rest of an over-long line, as the session drops it */
			used = gh_line_skip(p, left, &terminated);
			FUZZ_CHECK(used > 0 && used <= left);
			FUZZ_CHECK(terminated ? p[used - 1] == '\n' : used == left);
			discarding = !terminated;
			pos += used;
			continue;
		}
		st = gh_line_next(p, left, GH_POP3_MAX_AUTH_LINE, &line_len, &used, &terminated);
		if (st == GH_LINE_NEED_MORE) {
			FUZZ_CHECK(used == 0 && left < GH_POP3_MAX_AUTH_LINE);
			FUZZ_CHECK(memchr(p, '\n', left) == NULL);
			/* the session waits: what there is still is no command */
			break;
		}
		FUZZ_CHECK(used > 0 && used <= left);
		if (st == GH_LINE_OK) {
			FUZZ_CHECK(terminated && used <= GH_POP3_MAX_AUTH_LINE);
			FUZZ_CHECK(p[used - 1] == '\n' && memchr(p, '\n', used - 1) == NULL);
			FUZZ_CHECK(line_len == used - 1 ||
				   (line_len == used - 2 && p[used - 2] == '\r'));
			{
				/* one byte short of its LF it is not a line yet */
				gsize l2 = 0, u2 = 0;
				GhLineStatus st2 = gh_line_next(p, used - 1, GH_POP3_MAX_AUTH_LINE,
								&l2, &u2, NULL);
				FUZZ_CHECK(st2 == GH_LINE_NEED_MORE && u2 == 0);
			}
			{
				/* the 255-octet rule: the same line under the command limit */
				gsize l3 = 0, u3 = 0;
				GhLineStatus st3 =
				    gh_line_next(p, left, GH_POP3_MAX_LINE, &l3, &u3, NULL);
				if (used <= GH_POP3_MAX_LINE)
					FUZZ_CHECK(st3 == GH_LINE_OK && l3 == line_len &&
						   u3 == used);
				else
					FUZZ_CHECK(st3 == GH_LINE_TOO_LONG && u3 == used);
			}
			/* only an AUTH line may be longer */
			if (!fuzz_check_command_line(p, left, line_len, used, GH_POP3_MAX_LINE,
						     GH_POP3_MAX_AUTH_LINE)) {
				st = GH_LINE_TOO_LONG;
				line_len = 0;
			}
		}
		if (st == GH_LINE_TOO_LONG) {
			FUZZ_CHECK(line_len == 0 || used > GH_POP3_MAX_LINE);
			FUZZ_CHECK(terminated ? p[used - 1] == '\n' : used == left);
			discarding = !terminated;
			pos += used;
			continue;
		}
		{
			char *line = fuzz_copy(p, line_len);

			check_command(line, line_len);
			check_status(line, line_len);
			g_free(line);
		}
		pos += used;
	}
	g_free(buf);
	return 0;
}
