/*
 * siphash.c: see siphash.h.  Written from the paper's description: four
 * 64-bit words of state, two rounds per 8-byte message word, four to
 * finish; the last word carries the length in its top byte.
 */
#include "gh-build.h"

#include "common/siphash.h"

#define ROTL(x, b) (guint64)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
	G_STMT_START                                                                               \
	{                                                                                          \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	}                                                                                          \
	G_STMT_END

/* Up to 8 bytes at p as a little-endian word. */
static inline guint64
load_le(const guint8 *p, gsize n)
{
	guint64 w = 0;
	for (gsize i = 0; i < n; i++)
		w |= (guint64)p[i] << (8 * i);
	return w;
}

guint64
gh_siphash24(const guint8 key[GH_SIPHASH_KEY_LEN], const void *data, gsize len)
{
	const guint8 *p = data;
	guint64 k0 = load_le(key, 8), k1 = load_le(key + 8, 8);
	/* "somepseudorandomlygeneratedbytes" */
	guint64 v0 = k0 ^ G_GUINT64_CONSTANT(0x736f6d6570736575);
	guint64 v1 = k1 ^ G_GUINT64_CONSTANT(0x646f72616e646f6d);
	guint64 v2 = k0 ^ G_GUINT64_CONSTANT(0x6c7967656e657261);
	guint64 v3 = k1 ^ G_GUINT64_CONSTANT(0x7465646279746573);
	gsize whole = len - len % 8;
	guint64 m;

	for (gsize i = 0; i < whole; i += 8) {
		m = load_le(p + i, 8);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	m = load_le(p + whole, len % 8) | ((guint64)(len & 0xff) << 56);
	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
