/*
 * secret.h: GhSecret, a byte string holding a password or another credential.
 *
 * Invariants: the bytes are always followed by a NUL (so a secret can be
 * handed to C APIs that want a string), there is no "%s" accessor, and
 * gh_secret_free() wipes the bytes with explicit_bzero() before freeing.
 * Pure: includes only <glib.h>.
 */
#pragma once

#include <glib.h>

typedef struct _GhSecret GhSecret;

/* Copy len bytes of data into a new secret.  (transfer full) */
GhSecret *gh_secret_new(const void *data, gsize len);
/* Take ownership of a g_malloc'ed buffer of len bytes plus a trailing NUL
 * (buf[len] == 0); the buffer is wiped when the secret is freed. */
GhSecret *gh_secret_new_take(char *buf, gsize len);
/* A copy of `secret` (its own wiped buffer), or NULL for NULL.  (transfer full) */
GhSecret *gh_secret_copy(const GhSecret *secret);
/* The bytes (NUL-terminated) and, when len_out is not NULL, their count.
 * (transfer none): valid until the secret is freed. */
const char *gh_secret_get(const GhSecret *secret, gsize *len_out);
gsize gh_secret_len(const GhSecret *secret);
/* Wipe and free; NULL is allowed. */
void gh_secret_free(GhSecret *secret);
/* Wipe a g_malloc'ed buffer of len bytes and free it; NULL is allowed. */
void gh_secret_wipe_free(void *buf, gsize len);
/* Make room in `s` for `more` bytes, so that appending up to that much
 * moves nothing.  Call it before a secret goes into a GString: a GString
 * grows by copying into a new block and freeing the old one unwiped. */
void gh_secret_string_reserve(GString *s, gsize more);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GhSecret, gh_secret_free)
