/*
 * fuzz-imap-backend.c: the libFuzzer target of the gateway as an IMAP client
 * of a backend server (daemon/imap/imap-backend.c), driven through a fake
 * backend link (fake-backend-link.c) by a server whose bytes are the fuzz
 * input: greetings, capabilities (in the greeting's [CAPABILITY ...] code
 * or a CAPABILITY reply), STARTTLS, ID, continuations and the login's
 * answer.  imap-backend.c keeps the parsing of these lines static
 * (status_is, caps_from_code, set_caps, has_cap); they are fuzzed here
 * through the dialogue, unchanged, rather than exposed in its header.
 *
 * Input: one byte of settings (login = passthrough or master; tls = none,
 * starttls or implicit; forward_client; the client's ID fields; the top
 * bit, with login_later: a warm link, started with no client and adopted
 * at the verdict, as session/backend-pool.c does), one byte
 * of choices (the client's tag, user and password), one byte of chunk size
 * (0: the server's bytes in one piece; the top bit: the link starts before
 * the verdict and parks for it, login_later), then what the servers send; a
 * failure that another server may not have moves on to the next, which
 * gets the rest.
 *
 * Asserted, besides what the fake link checks: what the gateway sends is
 * IMAP that the gateway's own parser reads as commands (the AUTHENTICATE
 * continuation line aside); our CAPABILITY, STARTTLS and ID never use the
 * client's tag, the login always does; with tls = starttls only CAPABILITY
 * and STARTTLS go out before TLS; the password goes out only as a literal's
 * contents or inside base64, and the link holds no copy once it is out; an
 * a warm link sends nothing of the client before it is adopted, and its ID
 * then names the client; an
 * OK hands the client the backend's own lines, each exactly as
 * the server sent it, the last the tagged OK of the login; a REFUSED
 * follows a tagged NO; a DEFERRED hands the client one tagged NO the
 * server sent, as sent, with a code that says "not now".
 */
#include "gh-build.h"

#include "fake-backend-link.h"
#include "fuzz.h"
#include "imap/imap-backend.h"
#include "imap/imap-parser.h"
#include "session/sasl.h"

#include <string.h>

static const char *const tags[4] = {"a1", "ghc", "ghi", "ght"};
static const char *const users[4] = {"alice", "bob smith", "x\"y\\z", "j\xc3\xb6rg"};
static const char *const id_none[] = {NULL};
static const char *const id_mutt[] = {"name", "mutt", "version", "2.0", NULL};
static const char *const id_odd[] = {
    "x-originating-ip", "203.0.113.9", "name", "", "bad\r\nkey", "v", "k", "a\"b\\c", NULL};
static const char *const *const ids[4] = {NULL, id_none, id_mutt, id_odd};

/* Our own tags before TLS: CAPABILITY and STARTTLS only. */
static gboolean
plaintext_ok(const char *text, gsize len)
{
	const char *sp = memchr(text, ' ', len);
	gsize rest;

	if (sp == NULL)
		return FALSE;
	rest = len - (gsize)(sp + 1 - text);
	return (rest == 12 && memcmp(sp + 1, "CAPABILITY\r\n", 12) == 0) ||
	       (rest == 10 && memcmp(sp + 1, "STARTTLS\r\n", 10) == 0);
}

static gboolean
base64_line(const char *tag)
{
	for (const char *p = tag; *p != '\0'; p++) {
		if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' && *p != '=')
			return FALSE;
	}
	return TRUE;
}

/* Read what went to the last server with our own command parser. */
static void
check_sent(const GhBackendLink *l, const char *tag, const char *user, gboolean master)
{
	const GString *s = l->sent_now;
	GhImapParser *p = gh_imap_parser_new(64 * 1024, 64 * 1024);
	gsize pos = 0;
	guint logins = 0;

	while (pos < s->len) {
		GhImapCommand cmd = {0};
		gsize used = 0;
		/* a warm link's commands before a session adopted it did not
		 * know the client's tag (and were answered before it came) */
		gboolean before_adoption = l->adopt != NULL || pos < l->adopted_at;
		GhImapStatus st = gh_imap_parser_feed(p, s->str + pos, s->len - pos, &used, &cmd);

		pos += used;
		if (st == GH_IMAP_NEED_MORE)
			break;
		if (st == GH_IMAP_CONTINUE)
			continue;
		if (st == GH_IMAP_ERROR && cmd.tag != NULL && cmd.name == NULL &&
		    base64_line(cmd.tag)) {
			/* the AUTHENTICATE PLAIN response line after "+" */
			gh_imap_command_clear(&cmd);
			continue;
		}
		if (st != GH_IMAP_COMMAND) {
			fprintf(stderr, "not a command (%d, %s) in:\n%s\n", (int)st,
				cmd.error != NULL ? cmd.error : "", s->str);
			FUZZ_CHECK(!"the dialogue sent what is not an IMAP command");
		}
		if (strcmp(cmd.name, "LOGIN") == 0 || strcmp(cmd.name, "AUTHENTICATE") == 0) {
			FUZZ_CHECK(strcmp(cmd.tag, tag) == 0);
			if (strcmp(cmd.name, "LOGIN") == 0) {
				const GhImapToken *u;

				FUZZ_CHECK(!master && cmd.args->len == 2);
				u = g_ptr_array_index(cmd.args, 0);
				FUZZ_CHECK(u->literal && u->len == strlen(user) &&
					   memcmp(u->value, user, u->len) == 0);
			}
		} else {
			FUZZ_CHECK(strcmp(cmd.name, "CAPABILITY") == 0 ||
				   strcmp(cmd.name, "STARTTLS") == 0 ||
				   strcmp(cmd.name, "ID") == 0);
			FUZZ_CHECK(strcmp(cmd.tag, tag) != 0 ||
				   (before_adoption && strcmp(cmd.name, "ID") != 0));
		}
		gh_imap_command_clear(&cmd);
	}
	gh_imap_parser_free(p);
	/* the logins begun: a server may answer one before it has all of it
	 * (a tagged NO to a literal it refuses) */
	for (const char *c = s->str; c != NULL && *c != '\0'; c = strchr(c, '\n')) {
		if (*c == '\n')
			c++;
		if (g_str_has_prefix(c, tag) &&
		    (g_str_has_prefix(c + strlen(tag), " LOGIN ") ||
		     g_str_has_prefix(c + strlen(tag), " AUTHENTICATE ")))
			logins++;
	}
	if (logins > 1 || (l->over && l->result != GH_BACKEND_FAILED && logins != 1)) {
		fprintf(stderr, "%u logins (result %d) in:\n%s\n", logins, (int)l->result, s->str);
		FUZZ_CHECK(!"not one login on the server that answered it");
	}
}

/* Every MARKER sent is a password's first byte inside a literal or is not
 * there at all (base64 hides it). */
static void
check_password_shape(const GString *sent)
{
	const char *p = sent->str;
	const char *end = sent->str + sent->len;

	while ((p = g_strstr_len(p, end - p, "MARKER")) != NULL) {
		FUZZ_CHECK(p - sent->str >= 3 && memcmp(p - 3, "}\r\n", 3) == 0);
		p += 6;
	}
}

/* A deferral's reply: one line the server sent, as sent: the login's
 * tagged NO with one of the codes that put a login off. */
static void
check_deferral(const GhBackendLink *l, const char *tag)
{
	gsize n = 0, t = strlen(tag);
	const char *r = l->reply != NULL ? g_bytes_get_data(l->reply, &n) : NULL;

	FUZZ_CHECK(r != NULL && n > t + 4 && r[n - 1] == '\n');
	FUZZ_CHECK(memchr(r, '\n', n - 1) == NULL);
	FUZZ_CHECK(memmem(l->fed_now->str, l->fed_now->len, r, n) != NULL);
	FUZZ_CHECK(strncmp(r, tag, t) == 0 && r[t] == ' ');
	FUZZ_CHECK(g_ascii_strncasecmp(r + t + 1, "NO", 2) == 0);
	FUZZ_CHECK(memchr(r, '[', n) != NULL);
}

/* The reply handed to the client: whole lines the server sent, as sent,
 * the last one the login's tagged OK. */
static void
check_reply(const GhBackendLink *l, const char *tag)
{
	gsize n = 0;
	const char *r = g_bytes_get_data(l->reply, &n);
	gsize pos = 0;
	const char *last = NULL;

	FUZZ_CHECK(r != NULL && n > 0 && r[n - 1] == '\n');
	while (pos < n) {
		const char *lf = memchr(r + pos, '\n', n - pos);
		gsize len = (gsize)(lf - (r + pos)) + 1;

		if (g_strstr_len(l->fed_now->str, (gssize)l->fed_now->len, "") == NULL ||
		    memmem(l->fed_now->str, l->fed_now->len, r + pos, len) == NULL) {
			fprintf(stderr, "reply line not sent by the server: %.*s\n", (int)len,
				r + pos);
			FUZZ_CHECK(!"the reply holds a line the server did not send");
		}
		last = r + pos;
		pos += len;
	}
	FUZZ_CHECK(strncmp(last, tag, strlen(tag)) == 0 && last[strlen(tag)] == ' ');
	FUZZ_CHECK(g_ascii_strncasecmp(last + strlen(tag) + 1, "OK", 2) == 0);
}

/* Once the password is out (as a literal, or in AUTHENTICATE PLAIN's
 * base64), the link holds no copy of it. */
static void
check_forgotten(GhBackendLink *l, gconstpointer b64)
{
	const GString *s = l->sent_now;

	if (g_strstr_len(s->str, (gssize)s->len, "MARKER") != NULL ||
	    g_strstr_len(s->str, (gssize)s->len, b64) != NULL)
		FUZZ_CHECK(gh_backend_link_password(l) == NULL);
}

/* A warm link goes to the session: nothing of the client went out before. */
typedef struct {
	const GhBackendParams *p;
	const char *tag;
	const char *const *ids;
} Warm;

static void
adopt(GhBackendLink *l, gpointer data)
{
	const Warm *w = data;
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, w->p->client_addr) == NULL);
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, "x-originating") == NULL);
	gh_imap_backend_adopt(l, w->tag, w->ids);
	gh_backend_link_adopt(l, w->p, NULL, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FakeLinkInput in = fake_link_input(data, size);
	const char *tag = tags[in.choices & 3];
	gboolean master = in.settings & 1;
	g_autoptr(GhSecret) password = gh_secret_new(in.password, strlen(in.password));
	g_autofree char *b64 = NULL;
	GhBackendConfig bc;
	GhBackendParams p;
	GhBackendLink *l;
	Warm warm = {0};

	fake_link_params(&bc, &p, "imap", GH_PROTO_IMAP);
	bc.login = master ? GH_LOGIN_MASTER : GH_LOGIN_PASSTHROUGH;
	bc.tls = (GhTlsMode)(((in.settings >> 1) & 3) % 3);
	bc.forward_client = (in.settings >> 3) & 1;
	p.user = users[(in.choices >> 2) & 3];
	p.hash_key = p.user;
	p.password = master ? NULL : password;
	p.client_addr = (in.settings & 0x40) ? "2001:db8::1" : "192.0.2.1";
	p.local_addr = "192.0.2.143";
	p.local_port = 143;
	p.login_later = in.login_later;

	if (in.login_later && (in.settings & 0x80)) {
		/* warm: no client at the start; the session's at the verdict */
		GhBackendParams wp = p;
		wp.client_addr = "";
		wp.local_addr = "";
		wp.client_port = 0;
		wp.local_port = 0;
		wp.session_id = "warm";
		l = gh_imap_backend_connect(&wp, NULL, NULL, NULL, NULL, NULL);
		warm.p = &p;
		warm.tag = tag;
		warm.ids = ids[(in.settings >> 4) & 3];
		l->adopt = adopt;
		l->adopt_data = &warm;
	} else {
		l = gh_imap_backend_connect(&p, tag, ids[(in.settings >> 4) & 3], NULL, NULL, NULL);
	}
	fake_link_connect(l, plaintext_ok);
	b64 = gh_sasl_plain_encode(NULL, p.user, password);
	fake_link_feed_all(l, &in, master ? NULL : check_forgotten, b64);
	check_sent(l, tag, p.user, master);
	check_password_shape(l->sent);
	/* an adopted warm link's ID names the session's client */
	if (l->adopted_at > 0 && bc.forward_client) {
		const char *after = l->sent_now->str + l->adopted_at;
		const char *id = strstr(after, " ID (");
		if (id != NULL)
			FUZZ_CHECK(strstr(id, p.client_addr) != NULL);
	}
	if (l->over && l->result == GH_BACKEND_OK)
		check_reply(l, tag);
	if (l->over && l->result == GH_BACKEND_REFUSED)
		FUZZ_CHECK(l->reply == NULL && l->error != NULL);
	if (l->over && l->result == GH_BACKEND_DEFERRED)
		check_deferral(l, tag);
	gh_backend_link_cancel(l);
	return 0;
}
