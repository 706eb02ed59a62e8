/*
 * test-siphash.c: common/siphash.c against the test vectors of the SipHash
 * paper (key 00 01 .. 0f, message 00 01 .. of each length), at the lengths
 * where the word handling changes (empty, one byte, 7, 8, 15, 16, 63), and
 * the output depending on every key and message byte.
 */
#include "gh-build.h"

#include "common/siphash.h"

static const struct {
	gsize len;
	guint64 want;
} vectors[] = {
    {0, G_GUINT64_CONSTANT(0x726fdb47dd0e0e31)},  {1, G_GUINT64_CONSTANT(0x74f839c593dc67fd)},
    {7, G_GUINT64_CONSTANT(0xab0200f58b01d137)},  {8, G_GUINT64_CONSTANT(0x93f5f5799a932462)},
    {15, G_GUINT64_CONSTANT(0xa129ca6149be45e5)}, {16, G_GUINT64_CONSTANT(0x3f2acc7f57c29bdb)},
    {63, G_GUINT64_CONSTANT(0x958a324ceb064572)},
};

static void
fill(guint8 *key, guint8 *msg)
{
	for (guint i = 0; i < GH_SIPHASH_KEY_LEN; i++)
		key[i] = (guint8)i;
	for (guint i = 0; i < 64; i++)
		msg[i] = (guint8)i;
}

static void
test_vectors(void)
{
	guint8 key[GH_SIPHASH_KEY_LEN], msg[64];

	fill(key, msg);
	for (guint i = 0; i < G_N_ELEMENTS(vectors); i++) {
		guint64 got = gh_siphash24(key, msg, vectors[i].len);
		if (got != vectors[i].want)
			g_test_message("length %zu: %016" G_GINT64_MODIFIER "x", vectors[i].len,
				       got);
		g_assert_cmpuint(got, ==, vectors[i].want);
	}
}

static void
test_every_byte_counts(void)
{
	guint8 key[GH_SIPHASH_KEY_LEN], msg[64];
	guint64 base;

	fill(key, msg);
	base = gh_siphash24(key, msg, 20);
	for (guint i = 0; i < 20; i++) {
		msg[i] ^= 1;
		g_assert_cmpuint(gh_siphash24(key, msg, 20), !=, base);
		msg[i] ^= 1;
	}
	for (guint i = 0; i < GH_SIPHASH_KEY_LEN; i++) {
		key[i] ^= 0x80;
		g_assert_cmpuint(gh_siphash24(key, msg, 20), !=, base);
		key[i] ^= 0x80;
	}
	/* the length is part of it: a trailing NUL is not "nothing" */
	msg[20] = 0;
	g_assert_cmpuint(gh_siphash24(key, msg, 21), !=, base);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/siphash/vectors", test_vectors);
	g_test_add_func("/siphash/every-byte-counts", test_every_byte_counts);
	return g_test_run();
}
