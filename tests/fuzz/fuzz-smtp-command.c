/*
 * fuzz-smtp-command.c: the libFuzzer target of what an SMTP client's bytes
 * meet before login: line framing (common/line.c, with the AUTH line limit
 * and the 512-byte rule for other commands, as smtp-session.c frames them),
 * command classification, MAIL/RCPT paths, AUTH arguments with their SASL
 * initial response (daemon/smtp/smtp-parser.c, daemon/session/sasl.c), and
 * xtext, which carries a client's HELO name to the backend.
 *
 * Input: the client's bytes, as many lines as they hold.
 *
 * Asserted: framing consumes at least one byte and at most what it was
 * given, an OK line holds no LF and ends where its LF is, and the same line
 * without its LF is not yet a line; a command's argument lies inside the
 * line with no blank at either end; INVALID exactly when the line holds NUL,
 * CR or LF; the verb and argument do not change when the line is
 * upper-cased or padded with blanks; a path that parses holds no blank,
 * bracket or control byte, and "<address>" parses back to it, for any case
 * of the keyword; AUTH gives an upper-case mechanism and an initial response
 * without blanks; xtext output is xchars and "+XX" only and decodes back.
 */
#include "gh-build.h"

#include "fuzz-auth-command.h"
#include "fuzz.h"
#include "common/line.h"
#include "session/sasl.h"
#include "smtp/smtp-parser.h"

#include <string.h>

static gboolean
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void
check_xtext(const char *value)
{
	g_autofree char *x = gh_smtp_xtext_encode(value);
	GString *back = g_string_new(NULL);

	for (const char *p = x; *p != '\0'; p++) {
		guchar u = (guchar)*p;

		FUZZ_CHECK(u >= 33 && u <= 126 && u != '=');
		if (u == '+') {
			FUZZ_CHECK(g_ascii_isxdigit(p[1]) && g_ascii_isxdigit(p[2]));
			FUZZ_CHECK(!g_ascii_islower(p[1]) && !g_ascii_islower(p[2]));
			g_string_append_c(back, (char)(g_ascii_xdigit_value(p[1]) * 16 +
						       g_ascii_xdigit_value(p[2])));
			p += 2;
		} else {
			g_string_append_c(back, (char)u);
		}
	}
	FUZZ_CHECK(strcmp(back->str, value) == 0);
	g_string_free(back, TRUE);
}

static void
check_path(const char *arg, gsize len, const char *keyword)
{
	g_autofree char *addr = NULL;
	g_autofree char *line = NULL;
	g_autofree char *again = NULL;
	g_autofree char *lower = g_ascii_strdown(keyword, -1);
	gboolean ok = gh_smtp_parse_path(arg, len, keyword, &addr);

	/* the answer does not depend on wanting the address */
	FUZZ_CHECK(gh_smtp_parse_path(arg, len, keyword, NULL) == ok);
	if (!ok) {
		FUZZ_CHECK(addr == NULL);
		return;
	}
	FUZZ_CHECK(addr != NULL);
	for (const char *p = addr; *p != '\0'; p++) {
		guchar u = (guchar)*p;
		FUZZ_CHECK(u > 32 && u != 127 && u != '<' && u != '>');
	}
	/* "<address>" is the same address, whatever the keyword's case */
	line = g_strdup_printf("%s:<%s>", lower, addr);
	FUZZ_CHECK(gh_smtp_parse_path(line, strlen(line), keyword, &again));
	FUZZ_CHECK(strcmp(again, addr) == 0);
	check_xtext(addr);
}

static void
check_auth(const char *arg, gsize len)
{
	g_autofree char *mech = NULL;
	g_autofree char *initial = NULL;

	if (!gh_smtp_parse_auth(arg, len, &mech, &initial)) {
		FUZZ_CHECK(mech == NULL && initial == NULL);
		return;
	}
	FUZZ_CHECK(mech != NULL && *mech != '\0');
	fuzz_check_sasl_start(mech, initial);
}

static void
check_command(const char *line, gsize len)
{
	GhSmtpCommand cmd, again;
	gboolean bad = memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL ||
		       memchr(line, '\n', len) != NULL;
	g_autofree char *upper = NULL;
	g_autofree char *padded = NULL;

	gh_smtp_parse_command(line, len, &cmd);
	FUZZ_CHECK(cmd.arg != NULL);
	FUZZ_CHECK(cmd.arg >= line && cmd.arg + cmd.arg_len <= line + len);
	FUZZ_CHECK((cmd.verb == GH_SMTP_CMD_INVALID) == (bad && len > 0));
	if (cmd.verb == GH_SMTP_CMD_INVALID) {
		FUZZ_CHECK(cmd.arg_len == 0);
		return;
	}
	if (cmd.arg_len > 0) {
		FUZZ_CHECK(!is_blank(cmd.arg[0]) && !is_blank(cmd.arg[cmd.arg_len - 1]));
		/* the verb is the first word, then blanks */
		FUZZ_CHECK(cmd.arg > line && is_blank(cmd.arg[-1]));
	}
	if (cmd.verb != GH_SMTP_CMD_UNKNOWN)
		FUZZ_CHECK(len >= 4 && g_ascii_isalpha(line[0]));

	/* case-insensitive verbs: the upper-cased line has the same verb */
	upper = g_ascii_strup(line, (gssize)len);
	gh_smtp_parse_command(upper, len, &again);
	FUZZ_CHECK(again.verb == cmd.verb && again.arg_len == cmd.arg_len);
	FUZZ_CHECK(again.arg - upper == cmd.arg - line);

	/* trailing blanks are never part of the argument */
	padded = g_malloc(len + 3);
	memcpy(padded, line, len);
	memcpy(padded + len, " \t ", 3);
	gh_smtp_parse_command(padded, len + 3, &again);
	FUZZ_CHECK(again.verb == cmd.verb);
	if (cmd.arg_len > 0) {
		FUZZ_CHECK(again.arg_len == cmd.arg_len && again.arg - padded == cmd.arg - line);
	}

	/* every argument parser on every line: the session picks by verb, but
	 * none may misbehave on any text */
	check_path(cmd.arg, cmd.arg_len, "FROM");
	check_path(cmd.arg, cmd.arg_len, "TO");
	check_auth(cmd.arg, cmd.arg_len);
	if (cmd.verb == GH_SMTP_CMD_HELO || cmd.verb == GH_SMTP_CMD_EHLO) {
		g_autofree char *helo = g_strndup(cmd.arg, cmd.arg_len);
		check_xtext(helo);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact heap copy: ASan sees any read past the end */
	char *buf = g_memdup2(data, size);
	gsize pos = 0;

	while (pos < size) {
		const char *p = buf + pos;
		gsize left = size - pos;
		gsize line_len = 0, used = 0;
		gboolean terminated = FALSE;
		GhLineStatus st =
		    gh_line_next(p, left, GH_SMTP_MAX_AUTH_LINE, &line_len, &used, &terminated);

		if (st == GH_LINE_NEED_MORE) {
			FUZZ_CHECK(used == 0 && left < GH_SMTP_MAX_AUTH_LINE);
			FUZZ_CHECK(memchr(p, '\n', left) == NULL);
			/* the session waits: what there is still is no command */
			break;
		}
		FUZZ_CHECK(used > 0 && used <= left);
		if (st == GH_LINE_TOO_LONG) {
			FUZZ_CHECK(line_len == 0);
			FUZZ_CHECK(terminated ? p[used - 1] == '\n' : used == left);
			pos += used;
			continue;
		}
		FUZZ_CHECK(st == GH_LINE_OK && terminated);
		FUZZ_CHECK(used <= GH_SMTP_MAX_AUTH_LINE);
		FUZZ_CHECK(p[used - 1] == '\n' && memchr(p, '\n', used - 1) == NULL);
		FUZZ_CHECK(line_len == used - 1 || (line_len == used - 2 && p[used - 2] == '\r'));
		{
			/* one byte short of its LF it is not a line yet */
			gsize l2 = 0, u2 = 0;
			GhLineStatus st2 =
			    gh_line_next(p, used - 1, GH_SMTP_MAX_AUTH_LINE, &l2, &u2, NULL);
			FUZZ_CHECK(st2 == GH_LINE_NEED_MORE && u2 == 0);
		}
		{
			/* the 512-byte rule: the same line under the command limit */
			gsize l3 = 0, u3 = 0;
			GhLineStatus st3 = gh_line_next(p, left, GH_SMTP_MAX_LINE, &l3, &u3, NULL);
			if (used <= GH_SMTP_MAX_LINE)
				FUZZ_CHECK(st3 == GH_LINE_OK && l3 == line_len && u3 == used);
			else
				FUZZ_CHECK(st3 == GH_LINE_TOO_LONG && u3 == used);
		}
		/* only an AUTH line may pass the 512 bytes */
		if (!fuzz_check_command_line(p, left, line_len, used, GH_SMTP_MAX_LINE,
					     GH_SMTP_MAX_AUTH_LINE)) {
			pos += used;
			continue;
		}
		{
			char *line = fuzz_copy(p, line_len);

			check_command(line, line_len);
			g_free(line);
		}
		pos += used;
	}
	g_free(buf);
	return 0;
}
