/*
 * sasl.c: decoding of SASL PLAIN (RFC 4616) and LOGIN responses as SMTP AUTH
 * (RFC 4954) and IMAP AUTHENTICATE (RFC 9051 6.2.2) carry them, and encoding
 * of PLAIN for the backends (see sasl.h).
 *
 * Invariants:
 *  - base64 is validated whole (alphabet, length, padding) before a single
 *    byte is decoded: GLib's decoder skips what it does not know, so "!!!"
 *    would come out as an empty string, i.e. an empty password;
 *  - every buffer that held decoded bytes (which may be a password) is wiped
 *    with gh_secret_wipe_free() before it is freed, on every path;
 *  - pure: no I/O, no logging, only <glib.h> and the C library.
 */
#include "gh-build.h"

#include "session/sasl.h"

#include <string.h>

const char *
gh_sasl_status_to_string(GhSaslStatus status)
{
	switch (status) {
	case GH_SASL_OK:
		return "ok";
	case GH_SASL_CANCELLED:
		return "cancelled";
	case GH_SASL_BAD_BASE64:
		return "bad base64";
	case GH_SASL_MALFORMED:
		return "malformed";
	case GH_SASL_TOO_LONG:
		return "too long";
	}
	return "unknown";
}

/* Drop the line end the caller may have left on the response. */
static gsize
strip_eol(const char *in, gsize len)
{
	while (len > 0 && (in[len - 1] == '\r' || in[len - 1] == '\n'))
		len--;
	return len;
}

/* The 6-bit value of a base64 symbol (RFC 4648 4, Table 1), or -1. */
static int
b64_value(guchar c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

GhSaslStatus
gh_sasl_base64_decode(const char *in, gsize in_len, guint8 **out, gsize *out_len)
{
	gsize pad = 0;
	gsize n;
	gsize o = 0;
	guint8 *buf;

	g_return_val_if_fail(in != NULL || in_len == 0, GH_SASL_BAD_BASE64);
	g_return_val_if_fail(out != NULL && out_len != NULL, GH_SASL_BAD_BASE64);

	*out = NULL;
	*out_len = 0;
	in_len = strip_eol(in, in_len);
	if (in_len > GH_SASL_MAX_BASE64)
		return GH_SASL_TOO_LONG;

	/* RFC 4954 4: a lone "=" stands for an empty response. */
	if (in_len == 1 && in[0] == '=') {
		*out = g_malloc0(1);
		return GH_SASL_OK;
	}
	if (in_len % 4 != 0)
		return GH_SASL_BAD_BASE64;

	/* Padding: at most two '=', and only at the very end (RFC 4648 4). */
	while (pad < 2 && pad < in_len && in[in_len - 1 - pad] == '=')
		pad++;
	n = in_len - pad;
	for (gsize i = 0; i < n; i++) {
		if (b64_value((guchar)in[i]) < 0)
			return GH_SASL_BAD_BASE64;
	}

	*out_len = in_len / 4 * 3 - pad;
	buf = g_malloc(*out_len + 1);
	for (gsize i = 0; i < n; i += 4) {
		guint32 v = 0;
		gsize syms = MIN(4, n - i);

		for (gsize k = 0; k < 4; k++)
			v = (v << 6) | (k < syms ? (guint32)b64_value((guchar)in[i + k]) : 0);
		/* syms is 4, 3 or 2 here: 3, 2 or 1 bytes. */
		buf[o++] = (v >> 16) & 0xff;
		if (syms > 2)
			buf[o++] = (v >> 8) & 0xff;
		if (syms > 3)
			buf[o++] = v & 0xff;
	}
	g_assert(o == *out_len);
	buf[o] = '\0';
	*out = buf;
	return GH_SASL_OK;
}

/* "*" cancels the exchange (RFC 4954 4, RFC 9051 6.2.2). */
static gboolean
is_cancel(const char *b64, gsize len)
{
	len = strip_eol(b64, len);
	return len == 1 && b64[0] == '*';
}

/* A name (authzid, authcid or LOGIN user) must not carry CR, LF or NUL: they
 * would let a client smuggle a second line into whatever the name is pasted
 * into (RFC 4616 2 forbids NUL; CR and LF as OpenSMTPD does). */
static gboolean
name_is_clean(const char *name, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		if (name[i] == '\r' || name[i] == '\n' || name[i] == '\0')
			return FALSE;
	}
	return TRUE;
}

/* Split "authzid NUL authcid NUL password" (RFC 4616 2). */
static GhSaslStatus
plain_split(
    const char *buf, gsize len, char **authzid_out, char **authcid_out, GhSecret **password_out)
{
	const char *nul1 = memchr(buf, '\0', len);
	const char *nul2;
	const char *authcid;
	const char *password;
	gsize zid_len;
	gsize cid_len;
	gsize pw_len;

	if (nul1 == NULL)
		return GH_SASL_MALFORMED;
	authcid = nul1 + 1;
	nul2 = memchr(authcid, '\0', len - (gsize)(authcid - buf));
	if (nul2 == NULL)
		return GH_SASL_MALFORMED;
	password = nul2 + 1;
	zid_len = (gsize)(nul1 - buf);
	cid_len = (gsize)(nul2 - authcid);
	pw_len = len - (gsize)(password - buf);

	/* A third NUL: the password would contain one, which RFC 4616 2 forbids. */
	if (memchr(password, '\0', pw_len) != NULL)
		return GH_SASL_MALFORMED;
	if (cid_len == 0)
		return GH_SASL_MALFORMED;
	if (!name_is_clean(buf, zid_len) || !name_is_clean(authcid, cid_len))
		return GH_SASL_MALFORMED;
	if (zid_len > GH_SASL_MAX_USER || cid_len > GH_SASL_MAX_USER ||
	    pw_len > GH_SASL_MAX_PASSWORD)
		return GH_SASL_TOO_LONG;

	*authzid_out = g_strndup(buf, zid_len);
	*authcid_out = g_strndup(authcid, cid_len);
	*password_out = gh_secret_new(password, pw_len);
	return GH_SASL_OK;
}

GhSaslStatus
gh_sasl_plain_decode(
    const char *b64, gsize len, char **authzid_out, char **authcid_out, GhSecret **password_out)
{
	guint8 *buf = NULL;
	gsize buf_len = 0;
	GhSaslStatus status;

	g_return_val_if_fail(b64 != NULL || len == 0, GH_SASL_MALFORMED);
	g_return_val_if_fail(authzid_out != NULL, GH_SASL_MALFORMED);
	g_return_val_if_fail(authcid_out != NULL, GH_SASL_MALFORMED);
	g_return_val_if_fail(password_out != NULL, GH_SASL_MALFORMED);

	*authzid_out = NULL;
	*authcid_out = NULL;
	*password_out = NULL;
	if (is_cancel(b64, len))
		return GH_SASL_CANCELLED;
	status = gh_sasl_base64_decode(b64, len, &buf, &buf_len);
	if (status != GH_SASL_OK)
		return status;
	status = plain_split((const char *)buf, buf_len, authzid_out, authcid_out, password_out);
	gh_secret_wipe_free(buf, buf_len);
	return status;
}

static GhSaslStatus
login_check(const char *buf, gsize len, gboolean is_password)
{
	if (is_password) {
		/* The password goes on as a C string: a NUL would cut it short. */
		if (memchr(buf, '\0', len) != NULL)
			return GH_SASL_MALFORMED;
		if (len > GH_SASL_MAX_PASSWORD)
			return GH_SASL_TOO_LONG;
		return GH_SASL_OK;
	}
	if (len == 0 || !name_is_clean(buf, len))
		return GH_SASL_MALFORMED;
	if (len > GH_SASL_MAX_USER)
		return GH_SASL_TOO_LONG;
	return GH_SASL_OK;
}

GhSaslStatus
gh_sasl_login_decode(const char *b64, gsize len, gboolean is_password, GhSecret **value_out)
{
	guint8 *buf = NULL;
	gsize buf_len = 0;
	GhSaslStatus status;

	g_return_val_if_fail(b64 != NULL || len == 0, GH_SASL_MALFORMED);
	g_return_val_if_fail(value_out != NULL, GH_SASL_MALFORMED);

	*value_out = NULL;
	if (is_cancel(b64, len))
		return GH_SASL_CANCELLED;
	status = gh_sasl_base64_decode(b64, len, &buf, &buf_len);
	if (status != GH_SASL_OK)
		return status;
	status = login_check((const char *)buf, buf_len, is_password);
	if (status != GH_SASL_OK) {
		gh_secret_wipe_free(buf, buf_len);
		return status;
	}
	/* The decoded buffer is NUL-terminated: the secret takes it over. */
	*value_out = gh_secret_new_take((char *)buf, buf_len);
	return GH_SASL_OK;
}

char *
gh_sasl_plain_encode(const char *authzid, const char *authcid, const GhSecret *password)
{
	gsize zid_len = authzid != NULL ? strlen(authzid) : 0;
	gsize cid_len;
	gsize pw_len = 0;
	const char *pw;
	gsize len;
	guchar *buf;
	char *b64;

	g_return_val_if_fail(authcid != NULL, NULL);
	g_return_val_if_fail(password != NULL, NULL);

	cid_len = strlen(authcid);
	pw = gh_secret_get(password, &pw_len);
	len = zid_len + 1 + cid_len + 1 + pw_len;
	buf = g_malloc(len);
	if (zid_len > 0)
		memcpy(buf, authzid, zid_len);
	buf[zid_len] = '\0';
	memcpy(buf + zid_len + 1, authcid, cid_len);
	buf[zid_len + 1 + cid_len] = '\0';
	if (pw_len > 0)
		memcpy(buf + zid_len + 1 + cid_len + 1, pw, pw_len);
	b64 = g_base64_encode(buf, len);
	gh_secret_wipe_free(buf, len);
	return b64;
}
