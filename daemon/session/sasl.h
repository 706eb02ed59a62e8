/*
 * sasl.h: decoding (and, for backends, encoding) of the SASL PLAIN (RFC 4616)
 * and LOGIN mechanisms as SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE
 * (RFC 9051 6.2.2) carry them: base64 text on one line.
 *
 * Pure functions: no I/O, no logging, includes only <glib.h>.  Decoded
 * passwords come back as GhSecret and every temporary copy is wiped.
 */
#pragma once

#include <glib.h>
#include "secret.h"

/* Longest base64 response accepted (the SMTP AUTH line limit, RFC 4954 4). */
#define GH_SASL_MAX_BASE64 12288
/* Longest decoded user name / authzid. */
#define GH_SASL_MAX_USER 255
/* Longest decoded password. */
#define GH_SASL_MAX_PASSWORD 1024

typedef enum {
	GH_SASL_OK = 0,
	GH_SASL_CANCELLED,  /* the client sent "*" (RFC 4954 4, RFC 9051 6.2.2) */
	GH_SASL_BAD_BASE64, /* not base64: wrong alphabet, bad padding, bad length */
	GH_SASL_MALFORMED,  /* base64 fine, contents not: missing NULs, CR/LF/NUL in a name, empty
			       user */
	GH_SASL_TOO_LONG,   /* over one of the limits above */
} GhSaslStatus;

const char *gh_sasl_status_to_string(GhSaslStatus status);

/* Strict base64 decoding (RFC 4648 4, with padding; no white space; "=" alone
 * decodes to the empty string, as RFC 4954 says for an empty initial
 * response).  A trailing CR and/or LF in the input is ignored.  On GH_SASL_OK,
 * *out is a g_malloc'ed buffer of *out_len bytes plus a NUL (transfer full;
 * wipe it with gh_secret_wipe_free() when it held a secret). */
GhSaslStatus gh_sasl_base64_decode(const char *in, gsize in_len, guint8 **out, gsize *out_len);

/* Decode an AUTH PLAIN response "authzid NUL authcid NUL password" (RFC 4616)
 * given as base64.  "*" gives GH_SASL_CANCELLED.  authzid may be empty (then
 * *authzid_out is ""), authcid must not be; neither may contain CR, LF or NUL
 * or be longer than GH_SASL_MAX_USER; the password must not contain NUL and
 * may be empty.  On GH_SASL_OK all three outputs are set (transfer full). */
GhSaslStatus gh_sasl_plain_decode(
    const char *b64, gsize len, char **authzid_out, char **authcid_out, GhSecret **password_out);

/* Decode one AUTH LOGIN response given as base64.  When is_password is
 * FALSE the value is a user name: not empty, no CR, LF or NUL, at most
 * GH_SASL_MAX_USER bytes.  When TRUE it is a password: no NUL, at most
 * GH_SASL_MAX_PASSWORD.  "*" gives GH_SASL_CANCELLED.  The value comes back
 * as a GhSecret in both cases (transfer full); callers copy a user name out. */
GhSaslStatus
gh_sasl_login_decode(const char *b64, gsize len, gboolean is_password, GhSecret **value_out);

/* Base64 of "authzid NUL authcid NUL password" for an AUTH PLAIN towards a
 * backend; authzid may be NULL (empty).  Returns a NUL-terminated string
 * (transfer full) that holds the password in encoded form: free it with
 * gh_secret_wipe_free(s, strlen(s)). */
char *gh_sasl_plain_encode(const char *authzid, const char *authcid, const GhSecret *password);
