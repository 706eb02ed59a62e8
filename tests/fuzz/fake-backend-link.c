/*
 * fake-backend-link.c: the backend link of the fuzz targets of the backend
 * dialogues (see fake-backend-link.h): the gh_backend_link_* functions a
 * dialogue calls, over a GhConn whose input buffer the target fills, with
 * no socket, timer, TLS or main loop.  It follows the real link
 * (daemon/session/backend-link.c) where a dialogue can tell: the input loop
 * (one unit per call while MORE and bytes remain), STARTTLS refused when
 * the server sent more after its reply, reading stops while TLS starts and
 * once the connection is given up, fail-over resets the dialogue.  And
 * what the targets of both dialogues share (see fake-backend-link.h): the
 * master password's file, made in fuzz_setup, the session's parameters
 * and the feeding in pieces.
 */
#include "gh-build.h"

#include "fake-backend-link.h"
#include "fuzz.h"

#include <stdarg.h>
#include <string.h>

static void
check_log_text(const char *text)
{
	for (const char *p = text; *p != '\0'; p++)
		FUZZ_CHECK((guchar)*p >= 0x20 && (guchar)*p < 0x7f);
}

GhBackendLink *
gh_backend_link_start(const GhBackendParams *params,
		      const GhBackendDialogue *dialogue,
		      gpointer d,
		      GMainContext *context,
		      GhBackendDone done,
		      gpointer user_data)
{
	GhBackendLink *l = g_new0(GhBackendLink, 1);

	(void)context;
	(void)done;
	(void)user_data;
	l->params = *params;
	l->dialogue = *dialogue;
	l->d = d;
	l->password = gh_secret_copy(params->password);
	l->params.password = NULL;
	if (params->login_later) {
		/* the session's part: the credentials come with the verdict */
		l->later_user = params->user;
		l->later_password = g_steal_pointer(&l->password);
		l->params.user = NULL;
	}
	l->conn.fd = -1;
	l->conn.in = g_byte_array_new();
	l->conn.out = g_byte_array_new();
	l->sent = g_string_new(NULL);
	l->sent_now = g_string_new(NULL);
	l->fed_now = g_string_new(NULL);
	return l;
}

GhBackendLink *
gh_backend_link_resume(const GhBackendParams *params,
		       const GhBackendDialogue *dialogue,
		       gpointer d,
		       GMainContext *context,
		       GhConn *conn,
		       const char *server,
		       GhBackendDone done,
		       gpointer user_data)
{
	GhBackendLink *l;

	/* as the real link asks */
	FUZZ_CHECK(params->login_later && params->route == NULL && dialogue->resumed != NULL);
	FUZZ_CHECK(conn == NULL && server != NULL); /* the target has no socket */
	l = gh_backend_link_start(params, dialogue, d, context, done, user_data);
	l->kept = TRUE;
	return l;
}

void
gh_backend_link_cancel(GhBackendLink *l)
{
	if (l == NULL)
		return;
	if (l->dialogue.free != NULL)
		l->dialogue.free(l->d);
	gh_secret_free(l->password);
	gh_secret_free(l->later_password);
	g_byte_array_unref(l->conn.in);
	g_byte_array_unref(l->conn.out);
	g_string_free(l->sent, TRUE);
	g_string_free(l->sent_now, TRUE);
	g_string_free(l->fed_now, TRUE);
	if (l->reply != NULL)
		g_bytes_unref(l->reply);
	g_free(l->error);
	g_free(l);
}

GhConn *
gh_backend_link_conn(GhBackendLink *l)
{
	return &l->conn;
}

const GhBackendParams *
gh_backend_link_params(GhBackendLink *l)
{
	return &l->params;
}

const char *
gh_backend_link_server(GhBackendLink *l)
{
	(void)l;
	return "backend.test:1";
}

const GhSecret *
gh_backend_link_password(GhBackendLink *l)
{
	return l->password;
}

void
gh_backend_link_forget_password(GhBackendLink *l)
{
	g_clear_pointer(&l->password, gh_secret_free);
}

gboolean
gh_backend_link_send(GhBackendLink *l, const char *text, gsize len)
{
	FUZZ_CHECK(!l->over && !l->reconnect);
	FUZZ_CHECK(!l->tls_pending);
	/* with tls = starttls nothing but the way to TLS goes out in clear */
	if (l->params.backend->tls == GH_TLS_STARTTLS && l->conn.tls == NULL &&
	    l->plaintext_ok != NULL && !l->plaintext_ok(text, len)) {
		fprintf(stderr, "sent before TLS: %.*s\n", (int)len, text);
		FUZZ_CHECK(!"a command other than the way to TLS was sent in clear");
	}
	g_string_append_len(l->sent, text, (gssize)len);
	g_string_append_len(l->sent_now, text, (gssize)len);
	return TRUE;
}

gboolean
gh_backend_link_parked(const GhBackendLink *l)
{
	return l->parked && !l->over;
}

/* What the real link does: the client's part of the parameters changes,
 * the rest must be what the link started with. */
void
gh_backend_link_adopt(GhBackendLink *l,
		      const GhBackendParams *p,
		      GhBackendDone done,
		      gpointer user_data)
{
	(void)done, (void)user_data;
	FUZZ_CHECK(gh_backend_link_parked(l) && l->params.login_later);
	FUZZ_CHECK(p->backend == l->params.backend);
	l->params.hash_key = p->hash_key;
	l->params.client_addr = p->client_addr;
	l->params.client_port = p->client_port;
	l->params.local_addr = p->local_addr;
	l->params.local_port = p->local_port;
	l->params.session_id = p->session_id;
	l->params.stats = p->stats;
}

gpointer
gh_backend_link_dialogue(GhBackendLink *l)
{
	return l->d;
}

gboolean
gh_backend_link_await_login(GhBackendLink *l)
{
	FUZZ_CHECK(!l->over && !l->reconnect && !l->parked);
	if (!l->params.login_later)
		return TRUE;
	/* nothing of the password went out before the verdict */
	FUZZ_CHECK(g_strstr_len(l->sent->str, (gssize)l->sent->len, "MARKER") == NULL);
	FUZZ_CHECK(l->dialogue.login != NULL);
	l->parked = TRUE;
	return FALSE;
}

/* The verdict comes to a parked link: what gh_backend_link_login does,
 * then the dialogue's login step, as the real link's resume does. */
static void
resume(GhBackendLink *l)
{
	if (l->adopt != NULL) {
		void (*adopt)(GhBackendLink *, gpointer) = l->adopt;
		l->adopt = NULL;
		l->adopted_at = l->sent_now->len;
		adopt(l, l->adopt_data);
	}
	l->parked = FALSE;
	l->params.user = l->later_user;
	l->password = g_steal_pointer(&l->later_password);
	l->params.login_later = FALSE;
	l->dialogue.login(l, l->d);
}

void
gh_backend_link_expect(GhBackendLink *l)
{
	FUZZ_CHECK(!l->over && !l->reconnect);
}

void
gh_backend_link_start_tls(GhBackendLink *l)
{
	FUZZ_CHECK(!l->over && !l->reconnect && !l->tls_pending);
	/* one TLS per connection */
	FUZZ_CHECK(l->conn.tls == NULL);
	if (l->conn.in->len > 0) {
		/* as gh_backend_tls_start: bytes after the STARTTLS reply */
		gh_backend_link_fail(l, FALSE, "sent data after its STARTTLS reply");
		return;
	}
	l->tls_pending = TRUE;
}

static void
end(GhBackendLink *l, GhBackendResult result)
{
	l->over = TRUE;
	l->result = result;
}

void
gh_backend_link_fail(GhBackendLink *l, gboolean retry, const char *format, ...)
{
	va_list ap;

	/* once over or failed, a dialogue says nothing more of this server */
	FUZZ_CHECK(!l->over && !l->reconnect);
	g_free(l->error);
	va_start(ap, format);
	l->error = g_strdup_vprintf(format, ap);
	va_end(ap);
	check_log_text(l->error);
	l->fails++;
	if (l->kept) {
		/* a kept connection that did not come back: no other server */
		end(l, GH_BACKEND_LOST);
		return;
	}
	/* the connection is given up with what it had buffered */
	g_byte_array_set_size(l->conn.in, 0);
	l->conn.tls = NULL;
	l->tls_pending = FALSE;
	if (l->dialogue.reset != NULL)
		l->dialogue.reset(l->d);
	if (!retry || l->server + 1 >= FAKE_LINK_SERVERS) {
		end(l, GH_BACKEND_FAILED);
		return;
	}
	/* the next server connects from the loop, as with the real link */
	l->server++;
	l->reconnect = TRUE;
	g_string_truncate(l->sent_now, 0);
	g_string_truncate(l->fed_now, 0);
	l->sent_clear = 0;
	l->adopted_at = 0; /* a new connection: all of it after the adoption */
}

void
gh_backend_link_finish(GhBackendLink *l, GhBackendResult result, GBytes *reply, const char *error)
{
	FUZZ_CHECK(!l->over && !l->reconnect);
	FUZZ_CHECK(result == GH_BACKEND_OK || result == GH_BACKEND_REFUSED ||
		   result == GH_BACKEND_DEFERRED);
	if (result != GH_BACKEND_OK) {
		/* a refusal's answer is ours to word; a deferral's may be the server's */
		FUZZ_CHECK(error != NULL && (reply == NULL || result == GH_BACKEND_DEFERRED));
		g_free(l->error);
		l->error = g_strdup(error);
		check_log_text(l->error);
	}
	l->reply = reply != NULL ? g_bytes_ref(reply) : NULL;
	end(l, result);
}

/* After every call into the dialogue: connect the next server if it
 * failed over to one. */
static void
settle(GhBackendLink *l)
{
	while (l->reconnect && !l->over) {
		l->reconnect = FALSE;
		if (l->kept) {
			if (l->params.backend->tls != GH_TLS_NONE)
				l->conn.tls = (gnutls_session_t)&l->tls_dummy;
			l->dialogue.resumed(l, l->d);
			/* parked at once, as a kept link may: the verdict comes */
			if (l->parked && !l->over)
				resume(l);
			continue;
		}
		if (l->params.backend->tls == GH_TLS_IMPLICIT)
			l->conn.tls = (gnutls_session_t)&l->tls_dummy;
		l->dialogue.connected(l, l->d);
	}
}

const char *const fake_link_passwords[4] = {"MARKER-pw-1", "MARKER \"q\" {5}\r\n)", "MARKER",
					    "MARKER\xc3\xa4\x01"};

static char *master_file;

/* The targets of the dialogues set up only this: the master password's
 * file. */
void
fuzz_setup(void)
{
	master_file = fuzz_scratch_file("master.secret", FAKE_LINK_MASTER_PASSWORD "\n");
}

FakeLinkInput
fake_link_input(const uint8_t *data, size_t size)
{
	FakeLinkInput in = {.servers = {data, size}};

	in.settings = fuzz_take_u8(&in.servers);
	in.choices = fuzz_take_u8(&in.servers);
	in.chunk = fuzz_take_u8(&in.servers);
	in.login_later = (in.chunk & 0x80) != 0;
	in.chunk &= 0x7f;
	in.password = fake_link_passwords[(in.choices >> 4) & 3];
	return in;
}

void
fake_link_params(GhBackendConfig *bc, GhBackendParams *p, const char *name, GhProtocolKind protocol)
{
	memset(bc, 0, sizeof(*bc));
	memset(p, 0, sizeof(*p));
	bc->name = (char *)name;
	bc->protocol = protocol;
	bc->master_user = (char *)FAKE_LINK_MASTER_USER;
	bc->master_password_file = master_file;
	p->backend = bc;
	p->client_port = 40000;
	p->hostname = "gw.test";
	p->session_id = "s1";
}

void
fake_link_connect(GhBackendLink *l, gboolean (*plaintext_ok)(const char *text, gsize len))
{
	FUZZ_CHECK(l != NULL);
	l->plaintext_ok = plaintext_ok;
	l->reconnect = TRUE;
	settle(l);
}

/* The current server sends these bytes: input until the dialogue waits or
 * stops.  Nothing happens once over. */
static void
feed(GhBackendLink *l, const char *bytes, gsize len)
{
	guint server = l->server;
	GhBackendStep step = GH_BACKEND_STEP_MORE;

	if (l->over)
		return;
	g_byte_array_append(l->conn.in, (const guint8 *)bytes, (guint)len);
	g_string_append_len(l->fed_now, bytes, (gssize)len);
	while (step == GH_BACKEND_STEP_MORE && l->conn.in->len > 0) {
		guint before = l->conn.in->len;

		step = l->dialogue.input(l, l->d);
		/* over, or failed over to another server: stop reading this one */
		if (l->over || l->server != server) {
			settle(l);
			return;
		}
		if (step == GH_BACKEND_STEP_MORE)
			FUZZ_CHECK(l->conn.in->len < before); /* a unit was taken */
		else if (step == GH_BACKEND_STEP_WAIT && !l->parked)
			FUZZ_CHECK(l->conn.in->len == before);
		if (l->parked) {
			resume(l);
			if (l->over || l->server != server) {
				settle(l);
				return;
			}
			step = GH_BACKEND_STEP_MORE;
		}
		if (l->tls_pending) {
			/* the handshake: what the server sends next comes
			 * through TLS, and the dialogue goes on inside it */
			l->tls_pending = FALSE;
			l->conn.tls = (gnutls_session_t)&l->tls_dummy;
			l->sent_clear = l->sent_now->len;
			l->dialogue.tls_ready(l, l->d);
			if (l->over || l->server != server) {
				settle(l);
				return;
			}
		}
	}
}

void
fake_link_feed_all(GhBackendLink *l, const FakeLinkInput *in, FakeLinkSent sent, gconstpointer data)
{
	const guint8 *bytes = in->servers.p;
	gsize len = in->servers.n;
	gsize checked = 0;

	for (gsize pos = 0; pos < len && !l->over;) {
		gsize n = in->chunk == 0 ? len - pos : MIN(in->chunk, len - pos);
		char *piece = g_memdup2(bytes + pos, n);

		feed(l, piece, n);
		g_free(piece);
		pos += n;
		if (sent != NULL && l->sent_now->len != checked) {
			sent(l, data);
			checked = l->sent_now->len;
		}
	}
}
