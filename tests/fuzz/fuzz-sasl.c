/*
 * fuzz-sasl.c: the libFuzzer target of SASL PLAIN and LOGIN decoding
 * (daemon/session/sasl.c): the base64 a client sends as an AUTH initial
 * response or a continuation line, in SMTP and IMAP alike.
 *
 * Input: the response line as the client sent it (its CRLF may be there).
 * Every decoder sees it: base64, PLAIN, LOGIN as a user and as a password.
 *
 * Asserted: "*" (and only it) cancels; base64 that decodes is the strict
 * alphabet with at most two '=' at the end, decodes to a NUL-terminated
 * buffer of exactly 3/4 of its length less the padding, and re-encoded
 * decodes to the same bytes; PLAIN and LOGIN fail exactly as base64 does
 * when base64 fails; a decoded PLAIN is the three fields of the decoded
 * bytes, its names within 255 bytes with no CR, LF or NUL, a non-empty
 * authcid, a password within 1024 bytes with no NUL, and encoding the three
 * again (gh_sasl_plain_encode) decodes to them; a LOGIN user is not empty,
 * within 255 bytes, without CR, LF or NUL; a LOGIN password within 1024
 * bytes, without NUL.
 */
#include "gh-build.h"

#include "fuzz.h"
#include "session/sasl.h"

#include <string.h>

static gsize
strip_eol(const char *in, gsize len)
{
	while (len > 0 && (in[len - 1] == '\r' || in[len - 1] == '\n'))
		len--;
	return len;
}

static gboolean
b64_char(char c)
{
	return g_ascii_isalnum(c) || c == '+' || c == '/';
}

static gboolean
clean_name(const char *s, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return FALSE;
	}
	return TRUE;
}

/* base64: checked, and its decoded bytes handed back (or NULL). */
static guint8 *
check_base64(const char *in, gsize len, gsize *out_len, GhSaslStatus *status)
{
	gsize n = strip_eol(in, len);
	guint8 *out = NULL;

	*status = gh_sasl_base64_decode(in, len, &out, out_len);
	if (*status != GH_SASL_OK) {
		FUZZ_CHECK(out == NULL && *out_len == 0);
		FUZZ_CHECK(*status == GH_SASL_BAD_BASE64 || *status == GH_SASL_TOO_LONG);
		FUZZ_CHECK((*status == GH_SASL_TOO_LONG) == (n > GH_SASL_MAX_BASE64));
		return NULL;
	}
	FUZZ_CHECK(out != NULL && out[*out_len] == '\0');
	if (n == 1) {
		FUZZ_CHECK(in[0] == '=' && *out_len == 0);
	} else {
		gsize pad = 0;

		FUZZ_CHECK(n % 4 == 0 && n <= GH_SASL_MAX_BASE64);
		while (pad < n && in[n - 1 - pad] == '=')
			pad++;
		FUZZ_CHECK(pad <= 2);
		for (gsize i = 0; i < n - pad; i++)
			FUZZ_CHECK(b64_char(in[i]));
		FUZZ_CHECK(*out_len == n / 4 * 3 - pad);
	}
	if (*out_len > 0) {
		/* re-encoded, it decodes to the same bytes */
		g_autofree char *again = g_base64_encode(out, *out_len);
		guint8 *back = NULL;
		gsize back_len = 0;

		FUZZ_CHECK(gh_sasl_base64_decode(again, strlen(again), &back, &back_len) ==
			   GH_SASL_OK);
		FUZZ_CHECK(back_len == *out_len && memcmp(back, out, back_len) == 0);
		gh_secret_wipe_free(back, back_len);
	}
	return out;
}

/* PLAIN and LOGIN: "*" cancels, and a base64 that fails fails them alike. */
static void
check_status(GhSaslStatus st, gboolean cancel, GhSaslStatus b64_status)
{
	if (cancel) {
		FUZZ_CHECK(st == GH_SASL_CANCELLED);
	} else {
		FUZZ_CHECK(st != GH_SASL_CANCELLED);
		if (b64_status != GH_SASL_OK)
			FUZZ_CHECK(st == b64_status);
	}
}

static void
check_plain(const char *in,
	    gsize len,
	    gboolean cancel,
	    GhSaslStatus b64_status,
	    const guint8 *dec,
	    gsize dec_len)
{
	char *zid = NULL, *cid = NULL;
	GhSecret *pw = NULL;
	GhSaslStatus st = gh_sasl_plain_decode(in, len, &zid, &cid, &pw);
	gsize pw_len = 0;
	const char *pwb;

	FUZZ_CHECK(gh_sasl_status_to_string(st) != NULL);
	check_status(st, cancel, b64_status);
	if (st != GH_SASL_OK) {
		FUZZ_CHECK(zid == NULL && cid == NULL && pw == NULL);
		return;
	}
	FUZZ_CHECK(zid != NULL && cid != NULL && pw != NULL);
	pwb = gh_secret_get(pw, &pw_len);
	FUZZ_CHECK(strlen(zid) <= GH_SASL_MAX_USER && clean_name(zid, strlen(zid)));
	FUZZ_CHECK(*cid != '\0' && strlen(cid) <= GH_SASL_MAX_USER);
	FUZZ_CHECK(clean_name(cid, strlen(cid)));
	FUZZ_CHECK(pw_len <= GH_SASL_MAX_PASSWORD && pwb[pw_len] == '\0');
	FUZZ_CHECK(strlen(pwb) == pw_len);
	/* the three fields are exactly the decoded bytes */
	FUZZ_CHECK(strlen(zid) + 1 + strlen(cid) + 1 + pw_len == dec_len);
	FUZZ_CHECK(memcmp(dec, zid, strlen(zid) + 1) == 0);
	FUZZ_CHECK(memcmp(dec + strlen(zid) + 1, cid, strlen(cid) + 1) == 0);
	FUZZ_CHECK(memcmp(dec + strlen(zid) + 1 + strlen(cid) + 1, pwb, pw_len) == 0);
	{
		/* round trip through the backend's encoder */
		char *b64 = gh_sasl_plain_encode(*zid != '\0' ? zid : NULL, cid, pw);
		char *zid2 = NULL, *cid2 = NULL;
		GhSecret *pw2 = NULL;
		gsize pw2_len = 0;

		FUZZ_CHECK(b64 != NULL);
		FUZZ_CHECK(gh_sasl_plain_decode(b64, strlen(b64), &zid2, &cid2, &pw2) ==
			   GH_SASL_OK);
		FUZZ_CHECK(strcmp(zid, zid2) == 0 && strcmp(cid, cid2) == 0);
		FUZZ_CHECK(memcmp(gh_secret_get(pw2, &pw2_len), pwb, pw_len) == 0);
		FUZZ_CHECK(pw2_len == pw_len);
		gh_secret_wipe_free(b64, strlen(b64));
		g_free(zid2);
		g_free(cid2);
		gh_secret_free(pw2);
	}
	g_free(zid);
	g_free(cid);
	gh_secret_free(pw);
}

static void
check_login(const char *in,
	    gsize len,
	    gboolean is_password,
	    gboolean cancel,
	    GhSaslStatus b64_status,
	    const guint8 *dec,
	    gsize dec_len)
{
	GhSecret *v = NULL;
	GhSaslStatus st = gh_sasl_login_decode(in, len, is_password, &v);
	gsize vlen = 0;
	const char *vb;

	check_status(st, cancel, b64_status);
	if (st != GH_SASL_OK) {
		FUZZ_CHECK(v == NULL);
		return;
	}
	vb = gh_secret_get(v, &vlen);
	FUZZ_CHECK(vb[vlen] == '\0' && strlen(vb) == vlen);
	FUZZ_CHECK(vlen == dec_len && memcmp(vb, dec, vlen) == 0);
	if (is_password) {
		FUZZ_CHECK(vlen <= GH_SASL_MAX_PASSWORD);
	} else {
		FUZZ_CHECK(vlen > 0 && vlen <= GH_SASL_MAX_USER && clean_name(vb, vlen));
	}
	gh_secret_free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_copy(data, size);
	gboolean cancel;
	GhSaslStatus b64_status;
	gsize dec_len = 0;
	guint8 *dec;

	cancel = strip_eol(in, size) == 1 && in[0] == '*';
	dec = check_base64(in, size, &dec_len, &b64_status);
	check_plain(in, size, cancel, b64_status, dec, dec_len);
	check_login(in, size, FALSE, cancel, b64_status, dec, dec_len);
	check_login(in, size, TRUE, cancel, b64_status, dec, dec_len);
	gh_secret_wipe_free(dec, dec_len);
	g_free(in);
	return 0;
}
