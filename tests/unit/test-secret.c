/*
 * test-secret.c: GhSecret's copies and their lengths, bytes with NULs in
 * them, and gh_secret_string_reserve: appending up to the reserved room
 * never moves a GString's block (a move frees the old one unwiped).
 */
#include "gh-build.h"

#include "secret.h"

#include <string.h>

static void
test_copy(void)
{
	g_autoptr(GhSecret) s = gh_secret_new("pw\0x", 4);
	g_autoptr(GhSecret) c = gh_secret_copy(s);
	gsize len = 0;
	const char *bytes = gh_secret_get(c, &len);

	g_assert_cmpuint(len, ==, 4);
	g_assert_cmpmem(bytes, len, "pw\0x", 4);
	g_assert_cmpint(bytes[4], ==, '\0');
	g_assert_true(bytes != gh_secret_get(s, NULL));
	g_assert_null(gh_secret_copy(NULL));
}

static void
test_reserve_keeps_the_block(void)
{
	for (gsize start = 0; start < 300; start += 7) {
		for (gsize more = 1; more < 300; more += 13) {
			GString *s = g_string_new(NULL);
			const char *block;

			for (gsize i = 0; i < start; i++)
				g_string_append_c(s, 'a');
			gh_secret_string_reserve(s, more);
			/* the length and the bytes are as they were */
			g_assert_cmpuint(s->len, ==, start);
			for (gsize i = 0; i < start; i++)
				g_assert_cmpint(s->str[i], ==, 'a');
			g_assert_cmpint(s->str[start], ==, '\0');
			block = s->str;
			for (gsize i = 0; i < more; i++)
				g_string_append_c(s, 's');
			g_assert_true(s->str == block);
			g_assert_cmpuint(s->len, ==, start + more);
			g_string_free(s, TRUE);
		}
	}
}

static void
test_reserve_with_room_left(void)
{
	GString *s = g_string_sized_new(256);
	const char *block = s->str;

	g_string_append(s, "tag LOGIN ");
	gh_secret_string_reserve(s, 10);
	g_assert_true(s->str == block);
	g_assert_cmpstr(s->str, ==, "tag LOGIN ");
	g_string_free(s, TRUE);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/gatehouse/secret/copy", test_copy);
	g_test_add_func("/gatehouse/secret/reserve-keeps-the-block", test_reserve_keeps_the_block);
	g_test_add_func("/gatehouse/secret/reserve-with-room-left", test_reserve_with_room_left);
	return g_test_run();
}
