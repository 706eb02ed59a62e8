/*
 * secret.c: GhSecret, the byte string that holds a password (see secret.h).
 *
 * Invariants:
 *  - data always points to len bytes followed by a NUL, allocated with
 *    g_malloc, and owned by the secret alone;
 *  - every buffer this file frees is first wiped with explicit_bzero(), which
 *    the compiler may not drop as a dead store (a plain memset before free
 *    can be optimized away);
 *  - nothing here prints or logs the bytes.
 */
#include "gh-build.h"

#include "secret.h"

#include <string.h>

struct _GhSecret {
	char *data; /* len bytes + NUL */
	gsize len;
};

GhSecret *
gh_secret_new(const void *data, gsize len)
{
	char *buf;

	g_return_val_if_fail(data != NULL || len == 0, NULL);
	g_return_val_if_fail(len < G_MAXSIZE, NULL);

	buf = g_malloc(len + 1);
	if (len > 0)
		memcpy(buf, data, len);
	buf[len] = '\0';
	return gh_secret_new_take(buf, len);
}

GhSecret *
gh_secret_copy(const GhSecret *secret)
{
	gsize len = 0;
	const char *bytes;

	if (secret == NULL)
		return NULL;
	bytes = gh_secret_get(secret, &len);
	return gh_secret_new(bytes, len);
}

GhSecret *
gh_secret_new_take(char *buf, gsize len)
{
	GhSecret *secret;

	g_return_val_if_fail(buf != NULL, NULL);
	g_return_val_if_fail(buf[len] == '\0', NULL);

	secret = g_new0(GhSecret, 1);
	secret->data = buf;
	secret->len = len;
	return secret;
}

const char *
gh_secret_get(const GhSecret *secret, gsize *len_out)
{
	g_return_val_if_fail(secret != NULL, NULL);

	if (len_out != NULL)
		*len_out = secret->len;
	return secret->data;
}

gsize
gh_secret_len(const GhSecret *secret)
{
	g_return_val_if_fail(secret != NULL, 0);

	return secret->len;
}

void
gh_secret_wipe_free(void *buf, gsize len)
{
	if (buf == NULL)
		return;
	explicit_bzero(buf, len);
	g_free(buf);
}

void
gh_secret_string_reserve(GString *s, gsize more)
{
	gsize len = s->len;

	/* GLib has no reserve for a GString: growing the length and cutting
	 * it back leaves the capacity (the block moves now, secret-free) */
	if (s->allocated_len > len + more)
		return;
	g_string_set_size(s, len + more);
	g_string_truncate(s, len);
}

void
gh_secret_free(GhSecret *secret)
{
	if (secret == NULL)
		return;
	/* The trailing NUL is already zero: wiping len bytes is enough. */
	gh_secret_wipe_free(secret->data, secret->len);
	secret->data = NULL;
	secret->len = 0;
	g_free(secret);
}
