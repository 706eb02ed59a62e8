/*
 * fuzz-smtp-reply.c: the libFuzzer target of the SMTP reply parser
 * (gh_smtp_parse_reply, gh_smtp_reply_has_extension in
 * daemon/smtp/smtp-parser.c): what a backend MTA, or something posing as
 * one, sends the gateway.
 *
 * Input: one byte choosing the size limit (the backend dialogue's 16 KiB
 * when 0), then the server's bytes, parsed reply after reply as the
 * dialogue does.
 *
 * Asserted: consumed is within the input and the limit and ends at an LF;
 * the code is 200..599; every line of the reply is a NUL-free string; the
 * reply one byte short is not yet a reply (split invariance); written out
 * again as "CODE-text" lines it parses to the same code and lines with the
 * same length; every extension line's keyword is found by
 * gh_smtp_reply_has_extension, with parameters that are non-empty words
 * without spaces.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "smtp/smtp-parser.h"

#include <string.h>

static const gsize limits[8] = {16 * 1024, 512, 64, 8, 4, 100, 1000, 3};

static void
check_extensions(const GhSmtpReply *r)
{
	for (guint i = 1; i < r->lines->len; i++) {
		const char *line = g_ptr_array_index(r->lines, i);
		gsize kw = strcspn(line, " ");
		g_autofree char *word = g_strndup(line, kw);
		g_auto(GStrv) params = NULL;
		guint n = 0;

		FUZZ_CHECK(gh_smtp_reply_has_extension(r, word, &params));
		FUZZ_CHECK(params != NULL);
		for (n = 0; params[n] != NULL; n++)
			FUZZ_CHECK(*params[n] != '\0' && strchr(params[n], ' ') == NULL);
		FUZZ_CHECK(gh_smtp_reply_has_extension(r, word, NULL));
	}
	/* the greeting line is never an extension */
	if (r->lines->len == 1) {
		g_auto(GStrv) params = NULL;
		const char *line = g_ptr_array_index(r->lines, 0);
		g_autofree char *word = g_strndup(line, strcspn(line, " "));

		FUZZ_CHECK(!gh_smtp_reply_has_extension(r, word, &params) && params == NULL);
	}
}

static void
round_trip(const GhSmtpReply *r, gsize max)
{
	GString *s = g_string_new(NULL);
	GhSmtpReply again = {0};
	gsize used = 0;
	GhSmtpReplyStatus st;

	for (guint i = 0; i < r->lines->len; i++)
		g_string_append_printf(s, "%u%c%s\r\n", r->code, i + 1 < r->lines->len ? '-' : ' ',
				       (const char *)g_ptr_array_index(r->lines, i));
	st = gh_smtp_parse_reply(s->str, s->len, MAX(max, s->len), &again, &used);
	FUZZ_CHECK(st == GH_SMTP_REPLY_OK && used == s->len);
	FUZZ_CHECK(again.code == r->code && again.lines->len == r->lines->len);
	for (guint i = 0; i < r->lines->len; i++)
		FUZZ_CHECK(
		    strcmp(g_ptr_array_index(again.lines, i), g_ptr_array_index(r->lines, i)) == 0);
	gh_smtp_reply_clear(&again);
	FUZZ_CHECK(again.lines == NULL && again.code == 0);
	g_string_free(s, TRUE);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzBytes b = {data, size};
	gsize max = limits[fuzz_take_u8(&b) & 7];
	char *buf = g_memdup2(b.p, b.n);
	gsize pos = 0;

	while (pos < b.n) {
		GhSmtpReply r = {0};
		gsize used = 1;
		gsize left = b.n - pos;
		GhSmtpReplyStatus st = gh_smtp_parse_reply(buf + pos, left, max, &r, &used);

		if (st != GH_SMTP_REPLY_OK) {
			FUZZ_CHECK(used == 0 && r.lines == NULL);
			if (st == GH_SMTP_REPLY_NEED_MORE)
				FUZZ_CHECK(left < max);
			break;
		}
		FUZZ_CHECK(used > 0 && used <= left && used <= max);
		FUZZ_CHECK(buf[pos + used - 1] == '\n');
		FUZZ_CHECK(r.code >= 200 && r.code <= 599);
		FUZZ_CHECK(r.lines != NULL && r.lines->len > 0);
		for (guint i = 0; i < r.lines->len; i++) {
			const char *line = g_ptr_array_index(r.lines, i);
			FUZZ_CHECK(line != NULL && strlen(line) < used);
			FUZZ_CHECK(strchr(line, '\n') == NULL);
		}
		{
			/* one byte short of its last LF it is not whole yet */
			GhSmtpReply part = {0};
			gsize u2 = 1;
			FUZZ_CHECK(gh_smtp_parse_reply(buf + pos, used - 1, max, &part, &u2) ==
				   GH_SMTP_REPLY_NEED_MORE);
			FUZZ_CHECK(u2 == 0 && part.lines == NULL);
		}
		check_extensions(&r);
		round_trip(&r, max);
		gh_smtp_reply_clear(&r);
		pos += used;
	}
	g_free(buf);
	return 0;
}
