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
 * server's bytes in one piece), then what the servers send; a failure that
 * another server may not have moves on to the next, which gets the rest.
 *
 * Asserted, besides what the fake link checks: every command is one line
 * with CRLF and no other CR, LF or NUL; with tls = starttls only EHLO and
 * STARTTLS go out before TLS; the password never goes out as text, only
 * inside AUTH PLAIN, whose base64 holds exactly (authzid, authcid,
 * password) as login = says, is sent at most once per server, only when
 * login = passthrough or master and a user is logged in, and the link's
 * copy of the password is forgotten once it is; XCLIENT carries known
 * attributes with xtext values, LOGIN= only for login = xclient; the
 * attempt ends OK only after what login = needs was done on that server.
 */
#include "gh-build.h"

#include "fake-backend-link.h"
#include "fuzz.h"
#include "session/sasl.h"
#include "smtp/smtp-backend.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define MASTER_PASSWORD "MARKER-master-pw"

static char *master_file;

static const char *const addrs[4] = {"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.7", "127.0.0.1"};
static const char *const users[4] = {"alice", "bob@example.com", "c d", "x+y=z"};
/* every password holds MARKER, which nothing else sent does */
static const char *const passwords[4] = {"MARKER-pw-1", "MARKER \"q\" {5}\r\n)", "MARKER",
					 "MARKER\xc3\xa4\x01"};
static const char *const helos[4] = {"client.test", "[192.0.2.1]", "a b", "x+y=z\x7f"};

static void
cleanup(void)
{
	(void)g_unlink(master_file);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void)argc;
	(void)argv;
	fuzz_glib_setup();
	fd = g_file_open_tmp("gh-fuzz-master-XXXXXX", &master_file, NULL);
	FUZZ_CHECK(fd >= 0);
	close(fd);
	FUZZ_CHECK(g_file_set_contents(master_file, MASTER_PASSWORD "\n", -1, NULL));
	atexit(cleanup);
	return 0;
}

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
		FUZZ_CHECK(strcmp(zid, user) == 0 && strcmp(cid, "master") == 0);
		FUZZ_CHECK(strcmp(got, MASTER_PASSWORD) == 0);
	}
	g_free(zid);
	g_free(cid);
	gh_secret_free(secret);
}

/* What went to the last server: one line at a time. */
static void
check_sent(const GhBackendLink *l, GhBackendLogin login, const char *user, const char *pw)
{
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
		FUZZ_CHECK(gh_backend_link_password((GhBackendLink *)l) == NULL);
	if (l->over && l->result == GH_BACKEND_OK) {
		if (user != NULL && (login == GH_LOGIN_PASSTHROUGH || login == GH_LOGIN_MASTER))
			FUZZ_CHECK(auths == 1);
		if (login == GH_LOGIN_XCLIENT)
			FUZZ_CHECK(xclients >= 1);
		FUZZ_CHECK(l->reply == NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzBytes b = {data, size};
	guint8 settings = fuzz_take_u8(&b);
	guint8 choices = fuzz_take_u8(&b);
	gsize chunk = fuzz_take_u8(&b);
	GhBackendConfig bc = {0};
	GhBackendParams p = {0};
	g_autoptr(GhSecret) password = NULL;
	const char *helo = (settings & 0x80) ? NULL : helos[(choices >> 6) & 3];
	const char *pw = passwords[(choices >> 4) & 3];
	GhBackendLink *l;

	bc.name = (char *)"mta";
	bc.protocol = GH_PROTO_SMTP;
	bc.login = (GhBackendLogin)(settings & 3);
	bc.tls = (GhTlsMode)(((settings >> 2) & 3) % 3);
	bc.forward_client = (settings >> 4) & 1;
	bc.master_user = (char *)"master";
	bc.master_password_file = master_file;
	password = gh_secret_new(pw, strlen(pw));

	p.backend = &bc;
	p.user = (settings & 0x20) ? NULL : users[(choices >> 2) & 3];
	p.hash_key = p.user != NULL ? p.user : "192.0.2.1";
	p.password = bc.login == GH_LOGIN_PASSTHROUGH ? password : NULL;
	p.client_addr = addrs[choices & 3];
	p.client_port = 40000;
	p.local_addr = "192.0.2.25";
	p.local_port = 587;
	p.hostname = "gw.test";
	p.session_id = "s1";

	l = gh_smtp_backend_connect(&p, helo, (settings >> 6) & 1, NULL, NULL, NULL);
	FUZZ_CHECK(l != NULL);
	l->plaintext_ok = plaintext_ok;
	fake_link_connect(l);
	gsize checked = 0;

	for (gsize pos = 0; pos < b.n && !l->over;) {
		gsize n = chunk == 0 ? b.n - pos : MIN(chunk, b.n - pos);
		/* an exact heap copy: ASan sees any read past the piece */
		char *piece = g_memdup2(b.p + pos, n);

		fake_link_feed(l, piece, n);
		g_free(piece);
		pos += n;
		if (l->sent_now->len != checked) { /* each server's, before it fails over */
			check_sent(l, bc.login, p.user, pw);
			checked = l->sent_now->len;
		}
	}
	check_sent(l, bc.login, p.user, pw);
	/* the password goes out only inside AUTH PLAIN's base64 */
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, "MARKER") == NULL);
	gh_backend_link_cancel(l);
	return 0;
}
