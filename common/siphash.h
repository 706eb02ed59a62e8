/*
 * siphash.h: SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012), a keyed 64-bit pseudo-random function for short
 * inputs: what a hash table keyed by client-chosen strings needs, at a
 * few hundred instructions where HMAC-SHA256 takes several thousand.  Not
 * a password hash and not a MAC for secrets.
 *
 * Includes only <glib.h>; pure, thread-safe, no allocation.
 */
#pragma once

#include <glib.h>

#define GH_SIPHASH_KEY_LEN 16

/* SipHash-2-4 of data[0..len) under the 16-byte key (its two 64-bit words
 * read little-endian, as the paper's test vectors have it). */
guint64 gh_siphash24(const guint8 key[GH_SIPHASH_KEY_LEN], const void *data, gsize len);
