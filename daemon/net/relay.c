/*
 * relay.c: the byte pump between a client and its backend (see relay.h).
 *
 * Each direction is a flow from one connection to the other.  Bytes go
 * straight from a read into the other side's socket; only what that socket
 * does not take is queued, and nothing more is read for that direction until
 * the queue is out (back-pressure: at most one read per direction is ever
 * held).  Where both sides are plaintext and a read comes back full (a bulk
 * transfer, not commands), the flow switches to splice(2) through a pipe of
 * its own, so the bytes never enter user space.  `done` runs once, after
 * which nothing is read or written.
 *
 * A side's end is passed on with its last bytes: when epoll says the
 * peer's FIN is in (EPOLLRDHUP) and a read empties the socket, the read
 * that finds the end follows at once, and the bytes go to the other side
 * with its FIN in one segment (gh_conn_write_last), one wake-up and one
 * segment fewer per closing side: the backend's goodbye, the client's
 * half-close.
 *
 * A tap (relay.h) sees each read before it is written on; it is dropped
 * before a flow turns to splice, so it never misses a byte.  A held read
 * is consumed and not written, and ends the relay from the pump.
 */
#include "gh-build.h"

#include "net/relay.h"
#include "common/timer.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GH_RELAY_CHUNK (16 * 1024)   /* one read through user space */
#define GH_RELAY_SPLICE (256 * 1024) /* one splice into the pipe */
#define GH_RELAY_ROUNDS 16           /* reads per flow per wake-up (fairness) */

typedef struct _Flow {
	GhRelay *relay;
	gboolean is_up; /* client to backend */
	GhConn *src;
	GhConn *dst;
	int pipe_r; /* -1 until the flow turns to splice */
	int pipe_w;
	gsize piped;   /* bytes in the pipe, not yet in dst's socket */
	gboolean more; /* stopped for fairness with input left: come back */
	int last;      /* the last byte handed to dst, or -1 when not seen (splice) */
	gboolean shut; /* dst's write side is shut down, src's last bytes sent with it */
} Flow;

struct _GhRelay {
	GhConn *client;
	GhConn *backend;
	Flow up;   /* client to backend */
	Flow down; /* backend to client */
	GhRelayDone done;
	gpointer user_data;
	guint64 client_start;  /* client->bytes_in when the relay started */
	guint64 backend_start; /* backend->bytes_in when the relay started */
	gboolean finished;
	gboolean client_closed; /* its EOF was passed on to the backend */
	GhTimer kick;           /* set to yield: a pump from the loop */
	GhRelayTap tap_funcs;
	gpointer tap;                    /* NULL: none, or blind (tap_funcs stay as set) */
	gboolean held;                   /* the tap held the client's last read: end */
	guint64 held_len;                /* its bytes, not counted as relayed */
	void (*first_up)(gpointer data); /* gh_relay_after_first_up, until called */
	gpointer first_up_data;
};

static void
flow_init(Flow *f, GhRelay *r, gboolean is_up, GhConn *src, GhConn *dst)
{
	f->relay = r;
	f->is_up = is_up;
	f->src = src;
	f->dst = dst;
	f->pipe_r = f->pipe_w = -1;
	f->last = '\n'; /* the login's last reply ended a line */
}

static void
flow_close(Flow *f)
{
	if (f->pipe_r >= 0)
		close(f->pipe_r);
	if (f->pipe_w >= 0)
		close(f->pipe_w);
	f->pipe_r = f->pipe_w = -1;
}

/* Bytes of this flow not yet handed to dst's socket. */
static gsize
flow_pending(const Flow *f)
{
	return gh_conn_pending(f->dst) + f->piped;
}

static void
tap_drop(GhRelay *r)
{
	if (r->tap != NULL)
		r->tap_funcs.free(r->tap);
	r->tap = NULL;
}

/* Show buf[0..n) to the tap: TRUE to pass it on, FALSE when it is held
 * (then the relay ends). */
static gboolean
flow_show(Flow *f, const guint8 *buf, gsize n)
{
	GhRelay *r = f->relay;
	GhRelayTapVerdict v;

	if (r->tap == NULL)
		return TRUE;
	v = f->is_up ? r->tap_funcs.up(r->tap, buf, n) : r->tap_funcs.down(r->tap, buf, n);
	/* held only where nothing is in flight to the backend and nothing
	 * would be lost in a pipe (what is queued for the client stays
	 * queued in its connection) */
	if (v == GH_RELAY_TAP_HOLD && f->is_up && flow_pending(f) == 0 && r->down.piped == 0) {
		r->held = TRUE;
		r->held_len = n;
		return FALSE;
	}
	if (v != GH_RELAY_TAP_PASS)
		tap_drop(r);
	return TRUE;
}

/* Pipe to dst's socket; FALSE while some stay in the pipe. */
static gboolean
flow_drain_pipe(Flow *f)
{
	while (f->piped > 0) {
		ssize_t n = splice(f->pipe_r, NULL, f->dst->fd, NULL, f->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			f->piped -= (gsize)n;
			f->dst->bytes_out += (guint64)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return FALSE;
		} else {
			f->dst->error = n < 0 ? errno : EPIPE;
			return FALSE;
		}
	}
	return TRUE;
}

/* Splice from src's socket into the (empty) pipe: bytes moved, 0 when none
 * (would block, EOF or error, flagged on src). */
static gsize
flow_splice_in(Flow *f)
{
	for (;;) {
		ssize_t n = splice(f->src->fd, NULL, f->pipe_w, NULL, GH_RELAY_SPLICE,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			f->piped += (gsize)n;
			f->last = -1;
			f->src->bytes_in += (guint64)n;
			return (gsize)n;
		}
		if (n == 0)
			f->src->eof = TRUE;
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN)
			f->src->error = errno;
		return 0;
	}
}

static void
flow_try_splice(Flow *f)
{
	int fds[2];
	if (f->pipe_r >= 0 || f->src->tls != NULL || f->dst->tls != NULL)
		return;
	tap_drop(f->relay); /* it would not see what goes by splice */
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
		return; /* out of descriptors: keep copying */
	/* a bigger pipe means fewer round trips per megabyte; best effort */
	(void)fcntl(fds[1], F_SETPIPE_SZ, GH_RELAY_SPLICE);
	f->pipe_r = fds[0];
	f->pipe_w = fds[1];
}

/* Move what can move from src to dst now. */
static void
flow_run(Flow *f)
{
	GhConn *src = f->src, *dst = f->dst;

	f->more = FALSE;
	/* what was read before the relay started (pipelined behind a login) */
	if (src->in->len > 0 && gh_conn_pending(dst) == 0 && f->piped == 0) {
		gboolean pass = flow_show(f, src->in->data, src->in->len);
		if (pass) {
			f->last = src->in->data[src->in->len - 1];
			gh_conn_write(dst, src->in->data, src->in->len);
		}
		gh_conn_consume(src, src->in->len);
		gh_conn_trim(src);
		if (!pass)
			return;
	}
	for (int round = 0; round < GH_RELAY_ROUNDS; round++) {
		if (dst->error != 0 || src->error != 0)
			return;
		if (gh_conn_pending(dst) > 0) {
			if (!gh_conn_flush(dst))
				return; /* dst is full: its G_IO_OUT brings us back */
			gh_conn_trim(dst);
		}
		if (f->piped > 0 && !flow_drain_pipe(f))
			return;
		if (src->eof)
			return;
		if (f->pipe_r >= 0) {
			if (flow_splice_in(f) == 0)
				return;
			continue;
		}
		guint8 buf[GH_RELAY_CHUNK];
		gsize n = gh_conn_recv(src, buf, sizeof buf);
		if (n == 0)
			return;
		/* src's FIN is in and this read emptied the socket, so the
		 * next read finds the end: read it now, not a wake-up later,
		 * and these bytes leave with dst's FIN */
		if (n < sizeof buf && src->peer_shut && src->tls == NULL)
			n += gh_conn_recv(src, buf + n, sizeof buf - n);
		if (!flow_show(f, buf, n))
			return;
		f->last = buf[n - 1];
		if (src->eof)
			f->shut = gh_conn_write_last(dst, buf, n);
		else
			gh_conn_write(dst, buf, n);
		if (n == sizeof buf)
			flow_try_splice(f); /* a bulk transfer: no more copies */
		else if (src->tls == NULL)
			return; /* a short read emptied the socket; poll says when more comes */
	}
	f->more = TRUE;
}

static GIOCondition
want(const Flow *in, const Flow *out)
{
	/* `in` reads from this connection, `out` writes to it */
	GIOCondition cond = 0;
	if (!in->src->eof && flow_pending(in) == 0 && !in->more)
		cond |= G_IO_IN;
	if (flow_pending(out) > 0)
		cond |= G_IO_OUT;
	return cond;
}

static void
finish(GhRelay *r, const char *why)
{
	if (r->finished)
		return;
	r->finished = TRUE;
	gh_conn_want(r->client, 0);
	gh_conn_want(r->backend, 0);
	r->done(r, why, r->client->bytes_in - r->client_start - r->held_len,
		r->backend->bytes_in - r->backend_start, r->user_data);
}

static void schedule_kick(GhRelay *r);

/* Run the flows: both, or (conn != NULL) those an event on conn concerns:
 * a plaintext socket that became readable feeds its own flow, one that
 * became writable drains the other's.  TLS reads may need writes and the
 * other way round, so a TLS side runs both. */
static void
pump(GhRelay *r, GhConn *conn, GIOCondition cond)
{
	GhConn *c = r->client, *b = r->backend;
	gboolean up = TRUE, down = TRUE;

	if (conn != NULL && c->tls == NULL && b->tls == NULL) {
		gboolean readable = (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) != 0;
		gboolean writable = (cond & (G_IO_OUT | G_IO_ERR)) != 0;
		up = conn == c ? readable : writable;
		down = conn == b ? readable : writable;
	}
	if (up)
		flow_run(&r->up);
	if (down && !r->held)
		flow_run(&r->down);
	if (r->held) {
		finish(r, NULL);
		return;
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
	if (b->eof && flow_pending(&r->down) == 0) {
		finish(r, r->client_closed ? "client closed" : "backend closed");
		return;
	}
	if (c->eof && flow_pending(&r->up) == 0 && !r->client_closed) {
		r->client_closed = TRUE;
		if (!r->up.shut)
			(void)shutdown(b->fd, SHUT_WR);
	}
	gh_conn_want(c, want(&r->up, &r->down));
	gh_conn_want(b, want(&r->down, &r->up));
	/* Input that no watch would wake us for: a flow stopped for fairness,
	 * or records GnuTLS has already decrypted while the socket is empty. */
	if (!gh_timer_running(&r->kick) && (r->up.more || r->down.more ||
					    (c->tls != NULL && flow_pending(&r->up) == 0 &&
					     !c->eof && gnutls_record_check_pending(c->tls) > 0) ||
					    (b->tls != NULL && flow_pending(&r->down) == 0 &&
					     !b->eof && gnutls_record_check_pending(b->tls) > 0)))
		schedule_kick(r);
	if (r->first_up != NULL && c->bytes_in != r->client_start) {
		void (*func)(gpointer) = r->first_up;
		r->first_up = NULL;
		func(r->first_up_data);
	}
}

static void
on_io(GhConn *conn, GIOCondition cond, gpointer data)
{
	GhRelay *r = data;
	if (!r->finished)
		pump(r, conn, cond);
}

static void
on_kick(gpointer data)
{
	GhRelay *r = data;
	if (!r->finished)
		pump(r, NULL, 0);
}

/* A pump at the loop's next turn: a flow stopped for fairness goes on
 * after the other connections' events (its own kick sets it again). */
static void
schedule_kick(GhRelay *r)
{
	gh_timer_yield(&r->kick, r->client->context, on_kick, r);
}

GhRelay *
gh_relay_start(GhConn *client, GhConn *backend, GhRelayDone done, gpointer user_data)
{
	GhRelay *r = g_new0(GhRelay, 1);
	r->client = client;
	r->backend = backend;
	r->done = done;
	r->user_data = user_data;
	flow_init(&r->up, r, TRUE, client, backend);
	flow_init(&r->down, r, FALSE, backend, client);
	/* what the client pipelined behind its login was read before; count it */
	r->client_start = client->bytes_in - client->in->len;
	r->backend_start = backend->bytes_in - backend->in->len;
	/* from here on the bytes are the user's mail, not credentials */
	client->plain_data = TRUE;
	backend->plain_data = TRUE;
	gh_conn_trim(client);
	gh_conn_trim(backend);
	gh_conn_set_callback(client, on_io, r);
	gh_conn_set_callback(backend, on_io, r);
	/* watch at once: the client stopped reading while its login was
	 * checked, and its record is still in the epoll set (narrowing is
	 * lazy); a command it sent meanwhile must not take it out only for
	 * the first pump to put it back */
	gh_conn_want(client, want(&r->up, &r->down));
	gh_conn_want(backend, want(&r->down, &r->up));
	/* Pump from the loop (the caller may not expect `done` inside start),
	 * but only if the sockets cannot say it themselves: bytes read before
	 * the relay (pipelined behind the login), records GnuTLS holds, or an
	 * end already seen.  Otherwise the watches just set will wake us, and
	 * a login costs no idle source and no reads into EAGAIN. */
	if (client->in->len > 0 || backend->in->len > 0 || client->eof || backend->eof ||
	    client->error != 0 || backend->error != 0 ||
	    (client->tls != NULL && gnutls_record_check_pending(client->tls) > 0) ||
	    (backend->tls != NULL && gnutls_record_check_pending(backend->tls) > 0))
		schedule_kick(r);
	return r;
}

/* Stop watching `conn` for the relay. */
static void
unhook(GhConn *conn)
{
	gh_conn_want(conn, 0);
	gh_conn_set_callback(conn, NULL, NULL);
}

/* Everything of the relay but its connections, and the relay itself. */
static void
dismantle(GhRelay *r)
{
	tap_drop(r);
	gh_timer_stop(&r->kick);
	flow_close(&r->up);
	flow_close(&r->down);
	g_free(r);
}

void
gh_relay_set_tap(GhRelay *r, const GhRelayTap *funcs, gpointer tap)
{
	tap_drop(r);
	r->tap_funcs = *funcs;
	r->tap = tap;
}

void
gh_relay_after_first_up(GhRelay *r, void (*func)(gpointer data), gpointer data)
{
	r->first_up = func;
	r->first_up_data = data;
}

void
gh_relay_free(GhRelay *r)
{
	if (r == NULL)
		return;
	gh_conn_free(r->client);
	gh_conn_free(r->backend);
	dismantle(r);
}

void
gh_relay_counts(GhRelay *r, guint64 *client_to_backend, guint64 *backend_to_client)
{
	*client_to_backend = r->client->bytes_in - r->client_start;
	*backend_to_client = r->backend->bytes_in - r->backend_start;
}

GhConn *
gh_relay_release_client(GhRelay *r, gboolean *at_rest)
{
	GhConn *client = r->client;

	/* what waits in the pipe for the client is dropped with it: then we
	 * are in the middle of something */
	*at_rest =
	    r->down.last == '\n' && r->down.piped == 0 &&
	    (r->tap_funcs.at_rest == NULL || (r->tap != NULL && r->tap_funcs.at_rest(r->tap)));
	r->finished = TRUE;
	unhook(client);
	gh_conn_free(r->backend);
	dismantle(r);
	return client;
}

void
gh_relay_release(GhRelay *r, GhConn **client, GhConn **backend)
{
	g_return_if_fail(r->held);
	*client = r->client;
	*backend = r->backend;
	unhook(r->client);
	unhook(r->backend);
	dismantle(r);
}
