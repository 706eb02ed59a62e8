/*
 * relay.c: the byte pump between a client and its backend (see relay.h).
 *
 * Invariants: at most one of the two GhConns' buffers grows per direction
 * (src->in up to in_max, dst->out up to out_max); `done` runs once, after
 * which nothing is read or written.
 */
#include "gh-build.h"

#include "relay.h"

#include <string.h>
#include <sys/socket.h>

struct _GhRelay {
	GhConn *client;
	GhConn *backend;
	GhRelayDone done;
	gpointer user_data;
	guint64 client_start;  /* client->bytes_in when the relay started */
	guint64 backend_start; /* backend->bytes_in when the relay started */
	gboolean finished;
	gboolean client_closed; /* its EOF was passed on to the backend */
	GSource *kick;          /* runs the first pump from the loop, not from start */
};

/* Move what src has read into dst's output, as far as it has room. */
static void
move(GhConn *src, GhConn *dst)
{
	gsize room = dst->out_max > gh_conn_pending(dst) ? dst->out_max - gh_conn_pending(dst) : 0;
	gsize n = MIN(room, src->in->len);
	if (n == 0)
		return;
	(void)gh_conn_queue(dst, src->in->data, n);
	gh_conn_consume(src, n);
}

static void
finish(GhRelay *r, const char *why)
{
	if (r->finished)
		return;
	r->finished = TRUE;
	gh_conn_want(r->client, 0);
	gh_conn_want(r->backend, 0);
	r->done(r, why, r->client->bytes_in - r->client_start,
		r->backend->bytes_in - r->backend_start, r->user_data);
}

static void schedule_kick(GhRelay *r);

static void
pump(GhRelay *r)
{
	GhConn *c = r->client, *b = r->backend;

	for (int round = 0; round < 4; round++) {
		gsize before = c->in->len + b->in->len + gh_conn_pending(c) + gh_conn_pending(b);
		(void)gh_conn_fill(c);
		(void)gh_conn_fill(b);
		move(c, b);
		move(b, c);
		(void)gh_conn_flush(b);
		(void)gh_conn_flush(c);
		if (c->in->len + b->in->len + gh_conn_pending(c) + gh_conn_pending(b) == before)
			break;
	}
	if (c->error != 0) {
		g_autofree char *why = g_strdup_printf("client: %s", g_strerror(c->error));
		finish(r, why);
		return;
	}
	if (b->error != 0) {
		g_autofree char *why = g_strdup_printf("backend: %s", g_strerror(b->error));
		finish(r, why);
		return;
	}
	/* The backend closed: deliver what it sent, then end.  The client
	 * closed (or half-closed, as `socat` and scripts do after their last
	 * command): pass the half-close on and keep delivering the backend's
	 * replies until the backend closes in turn. */
	if (b->eof && b->in->len == 0 && gh_conn_pending(c) == 0) {
		finish(r, r->client_closed ? "client closed" : "backend closed");
		return;
	}
	if (c->eof && c->in->len == 0 && gh_conn_pending(b) == 0 && !r->client_closed) {
		r->client_closed = TRUE;
		(void)shutdown(b->fd, SHUT_WR);
	}
	gh_conn_want(c, (!c->eof && c->in->len < c->in_max ? G_IO_IN : 0) |
			    (gh_conn_pending(c) > 0 ? G_IO_OUT : 0));
	gh_conn_want(b, (!b->eof && b->in->len < b->in_max ? G_IO_IN : 0) |
			    (gh_conn_pending(b) > 0 ? G_IO_OUT : 0));
	/* Bytes that could still move but that no watch will wake us for: a
	 * side whose input is full (TLS drains records past in_max) while the
	 * other side's output is already empty.  The rounds above stop early
	 * for fairness; come back from the loop instead of stalling. */
	if (((c->in->len > 0 && gh_conn_pending(b) == 0) ||
	     (b->in->len > 0 && gh_conn_pending(c) == 0)) &&
	    r->kick == NULL)
		schedule_kick(r);
}

static void
on_io(GhConn *conn, GIOCondition cond, gpointer data)
{
	GhRelay *r = data;
	(void)conn;
	(void)cond;
	if (!r->finished)
		pump(r);
}

static gboolean
on_kick(gpointer data)
{
	GhRelay *r = data;
	g_source_unref(r->kick);
	r->kick = NULL;
	if (!r->finished)
		pump(r);
	return G_SOURCE_REMOVE;
}

static void
schedule_kick(GhRelay *r)
{
	r->kick = g_idle_source_new();
	g_source_set_callback(r->kick, on_kick, r, NULL);
	g_source_attach(r->kick, r->client->context);
}

GhRelay *
gh_relay_start(GhConn *client, GhConn *backend, GhRelayDone done, gpointer user_data)
{
	GhRelay *r = g_new0(GhRelay, 1);
	r->client = client;
	r->backend = backend;
	r->done = done;
	r->user_data = user_data;
	/* what the client pipelined behind its login was read before; count it */
	r->client_start = client->bytes_in - client->in->len;
	r->backend_start = backend->bytes_in - backend->in->len;
	gh_conn_set_callback(client, on_io, r);
	gh_conn_set_callback(backend, on_io, r);
	/* pump from the loop: the caller may not expect `done` inside start */
	schedule_kick(r);
	return r;
}

void
gh_relay_free(GhRelay *r)
{
	if (r == NULL)
		return;
	if (r->kick != NULL) {
		g_source_destroy(r->kick);
		g_source_unref(r->kick);
	}
	gh_conn_free(r->client);
	gh_conn_free(r->backend);
	g_free(r);
}
