/*
 * fuzz-pop3-backend.c: the libFuzzer target of the gateway as a POP3 client
 * of a backend server (daemon/pop3/pop3-backend.c, over the status line,
 * multi-line and CAPA parsers of daemon/pop3/pop3-parser.c), driven
 * through a fake backend link (fake-backend-link.c) by a server whose bytes
 * are the fuzz input: greetings (with [XCLIENT] or not), STLS, CAPA bodies,
 * XCLIENT's answer, "+" challenges and the login's answer.
 *
 * Input: one byte of settings (login = passthrough or master; tls = none,
 * starttls or implicit; forward_client; the client's address; the top bit,
 * with login_later: a warm link, started with no client and adopted at the
 * verdict, as session/backend-pool.c does), one byte of choices (the
 * client's user and password), one byte of chunk size (0: the server's
 * bytes in one piece; the top bit: the link starts before the verdict and
 * parks for it, login_later), then what the servers send; a failure that
 * another server may not have moves on to the next, which gets the rest.
 *
 * Asserted, besides what the fake link checks (nothing sent or ended once
 * the attempt is over, so the done callback runs at most once; with tls =
 * starttls only STLS goes out before TLS; log texts are printable):
 * nothing is sent on a connection before the server's +OK greeting; every
 * command is one line ending in CRLF with no other CR, LF or NUL, and one
 * of STLS, CAPA, XCLIENT, AUTH PLAIN [response], a response line after a
 * bare AUTH PLAIN, USER, PASS right after USER; the password goes out only
 * base64-encoded in AUTH PLAIN (whose contents are exactly what login =
 * says) or verbatim on a line that starts with "PASS " (and then is
 * exactly the client's password, never the master's); a connection gets at
 * most one login, XCLIENT only with forward_client, naming the (adopted)
 * client; the link's copy of the password is gone once it is sent; a warm
 * link sends nothing of the client before it is adopted; an OK ends a
 * login on that connection (inside TLS when tls is not none) and hands the
 * client a +OK line the server sent, as sent; a REFUSED has no reply; a
 * DEFERRED hands it one -ERR line with a code other than [AUTH], as sent.
 */
#include "gh-build.h"

#include "fake-backend-link.h"
#include "fuzz.h"
#include "pop3/pop3-backend.h"
#include "pop3/pop3-parser.h"
#include "session/sasl.h"

#include <string.h>

#define U40 "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"

/* the long ones: AUTH PLAIN with its response would pass 255 octets for
 * some passwords or for the master login, and goes out after a "+" */
static const char *const users[8] = {
    "alice",         "bob@example.com",   "c d",    "j\xc3\xb6rg",
    U40 U40 U40 U40, U40 U40 U40 U40 U40, "x\r\ny", "tab\tuser",
};

/* Before TLS with tls = starttls: STLS only. */
static gboolean
plaintext_ok(const char *text, gsize len)
{
	return len == 6 && memcmp(text, "STLS\r\n", 6) == 0;
}

typedef struct {
	const char *pw; /* the client's password */
	gboolean master;
} Ctx;

/* A line sent starts with this word: the rest, or NULL. */
static const char *
after(const char *line, gsize n, const char *word)
{
	gsize w = strlen(word);

	if (n < w || memcmp(line, word, w) != 0)
		return NULL;
	if (n == w)
		return line + n;
	return line[w] == ' ' ? line + w + 1 : NULL;
}

/* AUTH PLAIN's response: exactly (authzid, authcid, password) as login =
 * says, whatever the user name holds. */
static void
check_plain(GhBackendLink *l, const Ctx *c, const char *b64, gsize n)
{
	const char *user = l->params.user;
	g_autoptr(GString) want = g_string_new(NULL);
	guint8 *raw = NULL;
	gsize raw_len = 0;

	FUZZ_CHECK(user != NULL);
	if (c->master) {
		g_string_append(want, user);
		g_string_append_c(want, '\0');
		g_string_append(want, FAKE_LINK_MASTER_USER);
		g_string_append_c(want, '\0');
		g_string_append(want, FAKE_LINK_MASTER_PASSWORD);
	} else {
		g_string_append_c(want, '\0');
		g_string_append(want, user);
		g_string_append_c(want, '\0');
		g_string_append(want, c->pw);
	}
	FUZZ_CHECK(gh_sasl_base64_decode(b64, n, &raw, &raw_len) == GH_SASL_OK);
	FUZZ_CHECK(raw_len == want->len && memcmp(raw, want->str, raw_len) == 0);
	gh_secret_wipe_free(raw, raw_len);
	explicit_bzero(want->str, want->len);
}

/* The first line the current server sent is its +OK greeting. */
static gboolean
greeted(const GhBackendLink *l)
{
	const GString *f = l->fed_now;
	const char *lf = memchr(f->str, '\n', f->len);
	gsize n;

	if (lf == NULL)
		return FALSE;
	n = (gsize)(lf - f->str);
	if (n > 0 && f->str[n - 1] == '\r')
		n--;
	return n >= 3 && memcmp(f->str, "+OK", 3) == 0 && (n == 3 || f->str[3] == ' ');
}

/* What went to the current server, one line at a time. */
static void
check_sent(GhBackendLink *l, gconstpointer data)
{
	const Ctx *c = data;
	const GhBackendConfig *bc = l->params.backend;
	const GString *s = l->sent_now;
	gsize pos = 0;
	guint stls = 0, capa = 0, xclient = 0, logins = 0;
	gboolean after_user = FALSE, after_bare_auth = FALSE, login_done = FALSE;
	gboolean pw_out = FALSE;

	if (s->len == 0)
		return;
	/* nothing before the greeting */
	FUZZ_CHECK(greeted(l));
	while (pos < s->len) {
		const char *line = s->str + pos;
		const char *crlf = g_strstr_len(line, (gssize)(s->len - pos), "\r\n");
		const char *rest;
		gsize n;

		FUZZ_CHECK(crlf != NULL);
		n = (gsize)(crlf - line);
		FUZZ_CHECK(memchr(line, '\r', n) == NULL && memchr(line, '\n', n) == NULL);
		FUZZ_CHECK(memchr(line, '\0', n) == NULL);
		FUZZ_CHECK(!login_done);
		if (after_bare_auth) {
			/* the response alone, after the server's "+" */
			after_bare_auth = FALSE;
			check_plain(l, c, line, n);
			login_done = TRUE;
			pw_out = TRUE;
		} else if (after_user) {
			after_user = FALSE;
			rest = after(line, n, "PASS");
			FUZZ_CHECK(rest != NULL && rest == line + 5);
			FUZZ_CHECK(!c->master);
			FUZZ_CHECK((gsize)(crlf - rest) == strlen(c->pw) &&
				   memcmp(rest, c->pw, strlen(c->pw)) == 0);
			login_done = TRUE;
			pw_out = TRUE;
		} else if (n == 4 && memcmp(line, "STLS", 4) == 0) {
			FUZZ_CHECK(bc->tls == GH_TLS_STARTTLS && pos == 0);
			stls++;
		} else if (n == 4 && memcmp(line, "CAPA", 4) == 0) {
			capa++;
		} else if ((rest = after(line, n, "XCLIENT")) != NULL) {
			g_autofree char *want = g_strdup_printf(
			    "ADDR=%s PORT=%u", l->params.client_addr, (guint)l->params.client_port);

			FUZZ_CHECK(bc->forward_client && logins == 0);
			FUZZ_CHECK((gsize)(crlf - rest) == strlen(want) &&
				   memcmp(rest, want, strlen(want)) == 0);
			/* not a warm link's own address */
			FUZZ_CHECK(*l->params.client_addr != '\0');
			xclient++;
		} else if ((rest = after(line, n, "AUTH")) != NULL) {
			const char *b64 = after(rest, (gsize)(crlf - rest), "PLAIN");

			FUZZ_CHECK(b64 != NULL);
			logins++;
			if (b64 == crlf) {
				after_bare_auth = TRUE;
			} else {
				/* RFC 5034 4: within 255 octets with its response */
				FUZZ_CHECK(n + 2 <= 255);
				check_plain(l, c, b64, (gsize)(crlf - b64));
				login_done = TRUE;
				pw_out = TRUE;
			}
		} else if ((rest = after(line, n, "USER")) != NULL) {
			FUZZ_CHECK(!c->master && l->params.user != NULL);
			FUZZ_CHECK((gsize)(crlf - rest) == strlen(l->params.user) &&
				   memcmp(rest, l->params.user, strlen(l->params.user)) == 0);
			logins++;
			after_user = TRUE;
		} else {
			fprintf(stderr, "unknown command: %.*s\n", (int)n, line);
			FUZZ_CHECK(!"the dialogue sent an unknown command");
		}
		pos += n + 2;
	}
	FUZZ_CHECK(stls <= 1 && capa <= 2 && xclient <= 1 && logins <= 1);
	FUZZ_CHECK(capa <= 1 || bc->tls == GH_TLS_STARTTLS);
	/* once out, the link keeps no copy of the password */
	if (pw_out && !c->master)
		FUZZ_CHECK(gh_backend_link_password(l) == NULL);
	if (l->over && l->result == GH_BACKEND_OK) {
		/* the login was answered on this connection, inside TLS */
		FUZZ_CHECK(login_done && logins == 1);
		FUZZ_CHECK(bc->tls == GH_TLS_NONE || l->conn.tls != NULL);
	}
}

/* Every MARKER sent is a password on a PASS line, or inside base64 (where
 * it does not show). */
static void
check_password_shape(const GString *sent, const char *pw)
{
	const char *p = sent->str;
	const char *end = sent->str + sent->len;

	while ((p = g_strstr_len(p, end - p, "MARKER")) != NULL) {
		FUZZ_CHECK(p - sent->str >= 5 && memcmp(p - 5, "PASS ", 5) == 0);
		FUZZ_CHECK(p - sent->str == 5 || p[-6] == '\n');
		FUZZ_CHECK((gsize)(end - p) >= strlen(pw) + 2 && memcmp(p, pw, strlen(pw)) == 0 &&
			   memcmp(p + strlen(pw), "\r\n", 2) == 0);
		p += 6;
	}
}

/* The reply handed to the client: one line the server sent, as sent,
 * that starts with `start` (+OK, or a deferral's -ERR and its code). */
static void
check_reply(const GhBackendLink *l, const char *start)
{
	gsize n = 0, k = strlen(start);
	const char *r = l->reply != NULL ? g_bytes_get_data(l->reply, &n) : NULL;

	FUZZ_CHECK(r != NULL && n > k && r[n - 1] == '\n');
	FUZZ_CHECK(memchr(r, '\n', n - 1) == NULL);
	FUZZ_CHECK(g_ascii_strncasecmp(r, start, k) == 0);
	FUZZ_CHECK(memmem(l->fed_now->str, l->fed_now->len, r, n) != NULL);
}

/* A deferral's reply: one -ERR line the server sent, as sent, with a
 * response code other than [AUTH]. */
static void
check_deferral(const GhBackendLink *l)
{
	gsize n = 0;
	GhPop3StatusLine st;
	const char *r;

	check_reply(l, "-ERR");
	r = g_bytes_get_data(l->reply, &n);
	while (n > 0 && (r[n - 1] == '\n' || r[n - 1] == '\r'))
		n--;
	gh_pop3_parse_status(r, n, &st);
	FUZZ_CHECK(st.status == GH_POP3_STATUS_ERR && st.code_len > 0);
	FUZZ_CHECK(!gh_pop3_code_is(&st, "AUTH"));
}

/* A warm link goes to the session: nothing of the client went out before. */
static void
adopt(GhBackendLink *l, gpointer data)
{
	const GhBackendParams *p = data;

	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, "XCLIENT") == NULL);
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, p->client_addr) == NULL);
	gh_backend_link_adopt(l, p, NULL, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FakeLinkInput in = fake_link_input(data, size);
	gboolean master = in.settings & 1;
	g_autoptr(GhSecret) password = gh_secret_new(in.password, strlen(in.password));
	GhBackendConfig bc;
	GhBackendParams p;
	GhBackendLink *l;
	Ctx c;

	fake_link_params(&bc, &p, "pop3", GH_PROTO_POP3);
	bc.login = master ? GH_LOGIN_MASTER : GH_LOGIN_PASSTHROUGH;
	bc.tls = (GhTlsMode)(((in.settings >> 1) & 3) % 3);
	bc.forward_client = (in.settings >> 3) & 1;
	p.user = users[((in.choices & 3) | ((in.choices >> 4) & 4)) & 7];
	p.hash_key = p.user;
	p.password = master ? NULL : password;
	p.client_addr = (in.settings & 0x40) ? "2001:db8::1" : "192.0.2.1";
	p.local_addr = "192.0.2.110";
	p.local_port = 110;
	p.login_later = in.login_later;

	if (in.login_later && (in.settings & 0x80)) {
		/* warm: no client at the start; the session's at the verdict */
		GhBackendParams wp = p;

		wp.client_addr = "";
		wp.local_addr = "";
		wp.client_port = 0;
		wp.local_port = 0;
		wp.session_id = "warm";
		l = gh_pop3_backend_connect(&wp, NULL, NULL, NULL);
		l->adopt = adopt;
		l->adopt_data = &p;
	} else {
		l = gh_pop3_backend_connect(&p, NULL, NULL, NULL);
	}
	fake_link_connect(l, plaintext_ok);
	/* nothing before a greeting */
	FUZZ_CHECK(l->sent->len == 0);
	c.pw = in.password;
	c.master = master;
	fake_link_feed_all(l, &in, check_sent, &c);
	check_sent(l, &c);
	check_password_shape(l->sent, in.password);
	if (l->over && l->result == GH_BACKEND_OK)
		check_reply(l, "+OK");
	if (l->over && l->result == GH_BACKEND_REFUSED)
		FUZZ_CHECK(l->reply == NULL && l->error != NULL);
	if (l->over && l->result == GH_BACKEND_DEFERRED)
		check_deferral(l);
	FUZZ_CHECK(l->fails <= FAKE_LINK_SERVERS);
	gh_backend_link_cancel(l);
	return 0;
}
