/*
 * fuzz-smtp-backend.c: the libFuzzer target of the gateway as an SMTP client
 * of a backend MTA (daemon/smtp/smtp-backend.c, over the reply parser of
 * daemon/smtp/smtp-parser.c), driven through a fake backend link
 * (fake-backend-link.c) by a server whose bytes are the fuzz input.
 * smtp-backend.c keeps its parsing static (it reads replies with
 * gh_smtp_parse_reply and EHLO keywords with gh_smtp_reply_has_extension,
 * both fuzzed on their own in fuzz-smtp-reply.c); this target fuzzes the
 * dialogue that acts on them, unchanged, through its public entry point.
 *
 * Input: one byte of settings (login = passthrough, master, xclient or none;
 * tls = none, starttls or implicit; forward_client; an MX session without
 * a user; the client's EHLO or HELO and its name), one byte of choices (the
 * client's address, user and password), one byte of chunk size (0: the
 * server's bytes in one piece; the top bit: the link starts before the
 * verdict and parks for it, login_later), then what the servers send; a failure that
 * another server may not have moves on to the next, which gets the rest.
 * With login = none and forward_client = no, or login = xclient, a user and
 * the EHLO bit, the link is one kept from an earlier session
 * (gh_smtp_backend_resume, login_later), whose connection remembers some
 * XCLIENT attributes (from the choices byte): it parks at once.
 *
 * Asserted, besides what the fake link checks: every command is one line
 * with CRLF and no other CR, LF or NUL; with tls = starttls only EHLO and
 * STARTTLS go out before TLS; the password never goes out as text, only
 * inside AUTH PLAIN, whose base64 holds exactly (authzid, authcid,
 * password) as login = says, is sent at most once per server, only when
 * login = passthrough or master and a user is logged in, and the link's
 * copy of the password is forgotten once it is; XCLIENT carries known
 * attributes with xtext values, LOGIN= only for login = xclient; the
 * attempt ends OK only after what login = needs was done on that server;
 * a kept connection is told nothing (login = none) or the next session's
 * XCLIENT first (login = xclient), and ends OK or LOST, never on another
 * server.
 */
#include "gh-build.h"

#include "fake-backend-link.h"
#include "fuzz.h"
#include "session/sasl.h"
#include "smtp/smtp-backend.h"

#include <string.h>

static const char *const addrs[4] = {"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.7", "127.0.0.1"};
static const char *const users[4] = {"alice", "bob@example.com", "c d", "x+y=z"};
static const char *const helos[4] = {"client.test", "[192.0.2.1]", "a b", "x+y=z\x7f"};

static gboolean
plaintext_ok(const char *text, gsize len)
{
	return (len > 5 && memcmp(text, "EHLO ", 5) == 0) ||
	       (len == 10 && memcmp(text, "STARTTLS\r\n", 10) == 0);
}

static gboolean
is_xtext(const char *s, gsize n)
{
	for (gsize i = 0; i < n; i++) {
		guchar u = (guchar)s[i];

		if (u == '+') {
			if (i + 2 >= n)
				return FALSE;
			if (!g_ascii_isxdigit(s[i + 1]) || !g_ascii_isxdigit(s[i + 2]))
				return FALSE;
			i += 2;
		} else if (u < 33 || u > 126 || u == '=') {
			return FALSE;
		}
	}
	return TRUE;
}

static void
check_xclient(const char *line, gsize n, GhBackendLogin login, const char *user)
{
	g_autofree char *copy = g_strndup(line, n);
	g_auto(GStrv) words = g_strsplit(copy, " ", -1);

	FUZZ_CHECK(strcmp(words[0], "XCLIENT") == 0);
	for (guint i = 1; words[i] != NULL; i++) {
		const char *eq = strchr(words[i], '=');
		gsize klen;

		FUZZ_CHECK(eq != NULL);
		klen = (gsize)(eq - words[i]);
		FUZZ_CHECK(is_xtext(eq + 1, strlen(eq + 1)));
		if (klen == 5 && memcmp(words[i], "LOGIN", 5) == 0) {
			FUZZ_CHECK(login == GH_LOGIN_XCLIENT && user != NULL);
		} else {
			static const char *const known[] = {"ADDR", "PORT", "NAME", "HELO",
							    "PROTO"};
			gboolean ok = FALSE;

			for (guint k = 0; k < G_N_ELEMENTS(known); k++)
				ok = ok || (klen == strlen(known[k]) &&
					    memcmp(words[i], known[k], klen) == 0);
			FUZZ_CHECK(ok);
		}
	}
}

static void
check_auth(const char *line, gsize n, GhBackendLogin login, const char *user, const char *pw)
{
	g_autofree char *b64 = g_strndup(line + strlen("AUTH PLAIN "), n - strlen("AUTH PLAIN "));
	char *zid = NULL, *cid = NULL;
	GhSecret *secret = NULL;
	gsize len = 0;
	const char *got;

	FUZZ_CHECK(user != NULL);
	FUZZ_CHECK(login == GH_LOGIN_PASSTHROUGH || login == GH_LOGIN_MASTER);
	FUZZ_CHECK(gh_sasl_plain_decode(b64, strlen(b64), &zid, &cid, &secret) == GH_SASL_OK);
	got = gh_secret_get(secret, &len);
	if (login == GH_LOGIN_PASSTHROUGH) {
		FUZZ_CHECK(*zid == '\0' && strcmp(cid, user) == 0);
		FUZZ_CHECK(len == strlen(pw) && memcmp(got, pw, len) == 0);
	} else {
		FUZZ_CHECK(strcmp(zid, user) == 0 && strcmp(cid, FAKE_LINK_MASTER_USER) == 0);
		FUZZ_CHECK(strcmp(got, FAKE_LINK_MASTER_PASSWORD) == 0);
	}
	g_free(zid);
	g_free(cid);
	gh_secret_free(secret);
}

/* What went to the last server: one line at a time.  PW: the client's
 * password. */
static void
check_sent(GhBackendLink *l, gconstpointer pw)
{
	GhBackendLogin login = l->params.backend->login;
	const char *user = l->params.user;
	const GString *s = l->sent_now;
	gsize pos = 0;
	guint auths = 0, xclients = 0;

	while (pos < s->len) {
		const char *line = s->str + pos;
		const char *crlf = g_strstr_len(line, (gssize)(s->len - pos), "\r\n");
		gsize n;

		FUZZ_CHECK(crlf != NULL);
		n = (gsize)(crlf - line);
		FUZZ_CHECK(memchr(line, '\r', n) == NULL && memchr(line, '\n', n) == NULL);
		FUZZ_CHECK(memchr(line, '\0', n) == NULL);
		/* a kept connection: nothing before the next session's XCLIENT */
		if (l->kept && pos == 0)
			FUZZ_CHECK(login == GH_LOGIN_XCLIENT && n >= 7 &&
				   memcmp(line, "XCLIENT", 7) == 0);
		if (n > 5 && memcmp(line, "EHLO ", 5) == 0) {
			;
		} else if (n == 8 && memcmp(line, "STARTTLS", 8) == 0) {
			;
		} else if (n >= 7 && memcmp(line, "XCLIENT", 7) == 0) {
			check_xclient(line, n, login, user);
			xclients++;
		} else if (n > 11 && memcmp(line, "AUTH PLAIN ", 11) == 0) {
			check_auth(line, n, login, user, pw);
			auths++;
		} else {
			fprintf(stderr, "unknown command: %.*s\n", (int)n, line);
			FUZZ_CHECK(!"the dialogue sent an unknown command");
		}
		pos += n + 2;
	}
	FUZZ_CHECK(auths <= 1);
	if (auths > 0 && login == GH_LOGIN_PASSTHROUGH)
		FUZZ_CHECK(gh_backend_link_password(l) == NULL);
	if (l->kept) {
		FUZZ_CHECK(l->server == 0 && (!l->over || l->result == GH_BACKEND_OK ||
					      l->result == GH_BACKEND_LOST));
		if (l->over && l->result == GH_BACKEND_OK && login == GH_LOGIN_NONE)
			FUZZ_CHECK(s->len == 0);
	}
	if (l->over && l->result == GH_BACKEND_OK) {
		if (user != NULL && (login == GH_LOGIN_PASSTHROUGH || login == GH_LOGIN_MASTER))
			FUZZ_CHECK(auths == 1);
		if (login == GH_LOGIN_XCLIENT)
			FUZZ_CHECK(xclients >= 1);
		FUZZ_CHECK(l->reply == NULL);
	}
	/* SMTP words its own refusals and deferrals */
	if (l->over && l->result != GH_BACKEND_OK)
		FUZZ_CHECK(l->reply == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FakeLinkInput in = fake_link_input(data, size);
	const char *helo = (in.settings & 0x80) ? NULL : helos[(in.choices >> 6) & 3];
	const char *pw = in.password;
	g_autoptr(GhSecret) password = gh_secret_new(pw, strlen(pw));
	GhBackendConfig bc;
	GhBackendParams p;
	GhBackendLink *l;

	fake_link_params(&bc, &p, "mta", GH_PROTO_SMTP);
	bc.login = (GhBackendLogin)(in.settings & 3);
	bc.tls = (GhTlsMode)(((in.settings >> 2) & 3) % 3);
	bc.forward_client = (in.settings >> 4) & 1;
	p.user = (in.settings & 0x20) ? NULL : users[(in.choices >> 2) & 3];
	p.hash_key = p.user != NULL ? p.user : "192.0.2.1";
	p.password = bc.login == GH_LOGIN_PASSTHROUGH ? password : NULL;
	p.client_addr = addrs[in.choices & 3];
	p.local_addr = "192.0.2.25";
	p.local_port = 587;
	p.login_later = in.login_later && p.user != NULL;

	if (((bc.login == GH_LOGIN_NONE && !bc.forward_client) || bc.login == GH_LOGIN_XCLIENT) &&
	    p.login_later && ((in.settings >> 6) & 1)) {
		l = gh_smtp_backend_resume(&p, NULL, NULL, "mta:25", NULL, NULL);
		/* what the connection's first EHLO offered, as bits */
		gh_backend_link_conn(l)->learned = (in.choices ^ (in.choices >> 3)) & 0x3f;
		bc.reuse_connections = TRUE;
	} else {
		l = gh_smtp_backend_connect(&p, helo, (in.settings >> 6) & 1, NULL, NULL, NULL);
	}
	fake_link_connect(l, plaintext_ok);
	/* each server's, as it goes (before it fails over), then the last one's */
	fake_link_feed_all(l, &in, check_sent, pw);
	check_sent(l, pw);
	/* the password goes out only inside AUTH PLAIN's base64 */
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, "MARKER") == NULL);
	gh_backend_link_cancel(l);
	return 0;
}
